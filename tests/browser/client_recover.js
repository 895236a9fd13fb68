// client.js's recovery, in Node with a stand-in WebSocket: after a reconnection and a
// new `authenticated`, a client made with {recover: true} asks for what it missed from
// 2 s before the last ids it saw; one without the option asks nothing.
//
// Usage: node tests/browser/client_recover.js
'use strict';
const assert = require('assert');
const path = require('path');

const sockets = [];
class StandIn {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.protocol = '';
    this.sent = [];
    sockets.push(this);
    setTimeout(() => {
      this.readyState = 1;
      if (this.onopen) this.onopen();
    }, 0);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code) {
    this.drop(code || 1000);
  }
  drop(code) {
    this.readyState = 3;
    if (this.onclose) this.onclose({ code: code, reason: '' });
  }
  push(msg) {
    this.onmessage({ data: JSON.stringify(msg) });
  }
}
global.WebSocket = StandIn;
const WsClient = require(path.join(__dirname, '..', '..', 'web', 'client.js'));

function ready(client) {
  return new Promise((resolve) => client.on('ready', resolve));
}

async function run(recover) {
  sockets.length = 0;
  const client = new WsClient('ws://x/', { recover: recover, minDelay: 5, maxDelay: 10 });
  await ready(client);
  const first = sockets[0];
  first.push({ event: 'authenticated', data: { userId: 'ann', sessionId: 's' } });
  first.push({ event: 'chat.join', data: { room: 'lobby', messages: [{ id: '1000-0' }] } });
  first.push({ event: 'chat.message', data: { room: 'lobby', id: '1764755102123-4', user: 'bob' } });
  first.push({ event: 'chat.join', data: { room: 'quiet', messages: [] } });
  first.push({ event: 'chat.join', data: { room: 'gone', messages: [] } });
  first.push({ event: 'chat.leave', data: { room: 'gone' } });
  first.push({ event: 'private.message', data: { user: 'bob', to: 'ann', id: '3000-0' } });
  first.push({ event: 'private.message', data: { user: 'ann', to: 'cat', id: '1500-1' } });
  first.push({ event: 'message', data: { title: 'hi' }, id: '4000-0' });
  const again = ready(client);
  first.drop(1006);
  await again;
  const second = sockets[1];
  assert.deepStrictEqual(second.sent, [], 'nothing is asked before the new sign-in');
  second.push({ event: 'authenticated', data: { userId: 'ann', sessionId: 's' } });
  client.close();
  return second.sent;
}

(async () => {
  const asked = await run(true);
  assert.deepStrictEqual(asked, [
    // From 2 s before each last id seen (never below 0).
    { event: 'chat.join', data: { room: 'lobby', lastId: '1764755100123-0' } },
    { event: 'chat.join', data: { room: 'quiet' } },
    { event: 'private.history', data: { with: 'bob', after: '1000-0' } },
    { event: 'private.history', data: { with: 'cat', after: '0-0' } },
    { event: 'notification.history', data: { after: '2000-0' } },
  ]);
  assert.deepStrictEqual(await run(false), [], 'without recover, nothing is asked');
  console.log('client.js recovery: 2 passed, 0 failed');
})().catch((e) => {
  console.error('client.js recovery: FAILED:', e.message);
  process.exit(1);
});
