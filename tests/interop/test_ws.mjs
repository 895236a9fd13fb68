// Interop cases for `switchboard echo` with the Node `ws` package.
//
// Usage: node test_ws.mjs ws://127.0.0.1:PORT/
//   `ws` is loaded from $INTEROP_NODE_PREFIX/node_modules (default: <repo>/.cache/interop/node),
//   where tests/interop/run.sh installs it.
//
// Prints `ok NAME` or `FAIL NAME: reason` per case, then `ws: N passed, M failed`;
// exits 1 if any case failed.

import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PREFIX = process.env.INTEROP_NODE_PREFIX || path.join(HERE, '..', '..', '.cache', 'interop', 'node');
const require = createRequire(path.join(PREFIX, 'package.json'));
const WebSocket = require('ws');
const WS_VERSION = require('ws/package.json').version;

const MIB = 1 << 20;
const CASE_TIMEOUT_MS = 60_000; // one whole case
const OPEN_TIMEOUT_MS = 10_000; // the opening handshake

const URL_ = process.argv[2];
if (!URL_) {
  console.error('usage: node test_ws.mjs ws://127.0.0.1:PORT/');
  process.exit(2);
}

// Sockets of the running case, terminated if it times out.
let live = [];

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

function describe(data, isBinary) {
  const kind = isBinary ? 'binary' : 'text';
  if (data.length <= 40) return `${kind} ${JSON.stringify(isBinary ? [...data] : data.toString())}`;
  return `${kind} of ${data.length} bytes`;
}

// Opens a client without compression; resolves once open. Also collects incoming
// messages, pongs and the close event so a case can wait for them.
function openWs() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(URL_, {
      perMessageDeflate: false,
      maxPayload: 32 * MIB,
      handshakeTimeout: OPEN_TIMEOUT_MS,
    });
    live.push(ws);
    const state = { ws, messages: [], pongs: [], close: null, error: null, waiters: [] };
    const wake = () => {
      const waiters = state.waiters;
      state.waiters = [];
      for (const w of waiters) w();
    };
    ws.on('upgrade', (res) => {
      const ext = res.headers['sec-websocket-extensions'];
      if (ext !== undefined) state.error = new Error(`server offered extensions: ${ext}`);
    });
    ws.on('message', (data, isBinary) => {
      state.messages.push({ data, isBinary });
      wake();
    });
    ws.on('pong', (data) => {
      state.pongs.push(data);
      wake();
    });
    ws.on('error', (err) => {
      state.error = state.error || err;
      wake();
      reject(err);
    });
    ws.on('close', (code, reason) => {
      state.close = { code, reason: reason.toString() };
      wake();
      reject(new Error(`closed before open: ${code}`));
    });
    ws.on('open', () => {
      if (state.error) reject(state.error);
      else resolve(state);
    });
  });
}

// Waits until pred(state) is true; throws on a connection error.
async function waitFor(state, pred, what) {
  for (;;) {
    const v = pred(state);
    if (v) return v;
    if (state.error) throw new Error(`${what}: connection error: ${state.error.message}`);
    if (state.close) {
      throw new Error(`${what}: connection closed with ${state.close.code} ${JSON.stringify(state.close.reason)}`);
    }
    await new Promise((r) => state.waiters.push(r));
  }
}

function sendP(ws, data, opts) {
  return new Promise((resolve, reject) => ws.send(data, opts, (err) => (err ? reject(err) : resolve())));
}

async function closeWs(state) {
  const { ws } = state;
  if (ws.readyState === WebSocket.OPEN) ws.close(1000);
  if (ws.readyState !== WebSocket.CLOSED) {
    await new Promise((resolve) => {
      const t = setTimeout(() => {
        ws.terminate();
        resolve();
      }, 5000);
      ws.once('close', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}

// Sends one message (as one or more frames) and checks the echo: same type and bytes.
async function echo(frames, isBinary) {
  const state = await openWs();
  try {
    for (let i = 0; i < frames.length; i++) {
      await sendP(state.ws, frames[i], { binary: isBinary, fin: i === frames.length - 1 });
    }
    const msg = await waitFor(state, (s) => s.messages[0], 'waiting for the echo');
    const expected = Buffer.concat(frames.map((f) => (typeof f === 'string' ? Buffer.from(f) : f)));
    check(msg.isBinary === isBinary, `sent ${describe(expected, isBinary)}, got ${describe(msg.data, msg.isBinary)}`);
    if (!msg.data.equals(expected)) {
      let i = 0;
      while (i < msg.data.length && i < expected.length && msg.data[i] === expected[i]) i++;
      throw new Error(
        `echo differs: got ${describe(msg.data, msg.isBinary)}, expected ${describe(expected, isBinary)}` +
          ` (first difference at byte ${i})`,
      );
    }
    if (!isBinary) {
      // The server must have sent valid UTF-8; `ws` already validated it on receipt.
      check(msg.data.toString() === expected.toString(), 'text differs after decoding');
    }
  } finally {
    await closeWs(state);
  }
}

function textOf(size) {
  const unit = 'the quick brown fox jumps over the lazy dog 0123456789\n';
  return unit.repeat(Math.ceil(size / unit.length)).slice(0, size);
}

// --- raw TCP client, for the frame-level invalid UTF-8 case ------------------

// Opens a TCP connection, does the opening handshake by hand, writes `frame` and
// resolves with everything the server sends until it closes TCP.
function rawExchange(frame) {
  const { hostname, port, pathname } = new URL(URL_);
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: hostname, port: Number(port) });
    live.push(sock);
    const key = randomBytes(16).toString('base64');
    let buf = Buffer.alloc(0);
    let upgraded = false;
    sock.on('connect', () => {
      sock.write(
        `GET ${pathname || '/'} HTTP/1.1\r\n` +
          `Host: ${hostname}:${port}\r\n` +
          'Upgrade: websocket\r\n' +
          'Connection: Upgrade\r\n' +
          `Sec-WebSocket-Key: ${key}\r\n` +
          'Sec-WebSocket-Version: 13\r\n\r\n',
      );
    });
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        if (!/^HTTP\/1\.1 101 /.test(head)) {
          reject(new Error(`handshake refused: ${head.split('\r\n')[0]}`));
          sock.destroy();
          return;
        }
        upgraded = true;
        buf = buf.subarray(end + 4);
        sock.write(frame);
      }
    });
    sock.on('error', reject);
    sock.on('close', () => (upgraded ? resolve(buf) : reject(new Error('TCP closed before the handshake'))));
  });
}

// A masked client frame (payload < 126 bytes).
function maskedFrame(opcode, payload) {
  const mask = randomBytes(4);
  const out = Buffer.alloc(2 + 4 + payload.length);
  out[0] = 0x80 | opcode;
  out[1] = 0x80 | payload.length;
  mask.copy(out, 2);
  for (let i = 0; i < payload.length; i++) out[6 + i] = payload[i] ^ mask[i % 4];
  return out;
}

// --- cases -------------------------------------------------------------------

const CASES = [
  ['text_ascii', () => echo(['Hello, switchboard!'], false)],
  // 2-, 3- and 4-byte UTF-8 sequences.
  ['text_multibyte', () => echo(['héllo wörld — ¿qué tal? 你好世界 Ελληνικά 🎉🚀 𝄞'], false)],
  ['binary', () => echo([Buffer.from(Array.from({ length: 1024 }, (_, i) => i & 0xff))], true)],
  ['empty_text', () => echo([''], false)],
  ['empty_binary', () => echo([Buffer.alloc(0)], true)],
  ['text_1mib', () => echo([textOf(1 * MIB)], false)],
  ['binary_1mib', () => echo([randomBytes(1 * MIB)], true)],
  ['text_16mib', () => echo([textOf(16 * MIB)], false)],
  ['binary_16mib', () => echo([randomBytes(16 * MIB)], true)],
  // send(data, {fin: false}) ... send(data, {fin: true}): first frame text, then continuations.
  ['fragmented_text', () => echo(['frag', 'mented ', '', 'text ✓'], false)],
  ['fragmented_binary', () => echo([randomBytes(1000), Buffer.from([0]), randomBytes(70000)], true)],
  // Code points cut across frames: the server must validate UTF-8 across fragments.
  [
    'fragmented_text_split_code_point',
    () =>
      echo(
        [Buffer.from('caf\xc3', 'latin1'), Buffer.from('\xa9 \xe2\x82', 'latin1'), Buffer.from('\xac \xf0\x9f', 'latin1'), Buffer.from('\x8e\x89', 'latin1')],
        false,
      ),
  ],
  [
    'ping_pong_payload',
    async () => {
      const state = await openWs();
      try {
        state.ws.ping(Buffer.from('data'));
        const pong = await waitFor(state, (s) => s.pongs[0], 'waiting for the pong');
        check(pong.toString() === 'data', `pong payload ${JSON.stringify(pong.toString())}, expected "data"`);
        const big = Buffer.alloc(125, 0xa5); // the largest control payload
        state.ws.ping(big);
        const pong2 = await waitFor(state, (s) => s.pongs[1], 'waiting for the second pong');
        check(pong2.equals(big), `second pong payload differs (${pong2.length} bytes)`);
        await sendP(state.ws, 'after ping', {});
        const msg = await waitFor(state, (s) => s.messages[0], 'waiting for the echo after the pings');
        check(msg.data.toString() === 'after ping', `after the pings got ${describe(msg.data, msg.isBinary)}`);
      } finally {
        await closeWs(state);
      }
    },
  ],
  [
    'close_4000_echoed',
    async () => {
      const state = await openWs();
      state.ws.close(4000, 'bye');
      const close = await waitFor(state, (s) => s.close, 'waiting for the close event');
      check(close.code === 4000, `close event code ${close.code}, expected 4000 echoed`);
    },
  ],
  [
    'invalid_utf8_1007',
    async () => {
      // `ws` sends a Buffer with {binary: false} as a text frame without validating it.
      const state = await openWs();
      await sendP(state.ws, Buffer.from([0x6f, 0x6b, 0x20, 0xff, 0xfe]), { binary: false });
      const close = await waitFor(state, (s) => s.close, 'waiting for the close event');
      check(state.messages.length === 0, 'the server echoed invalid UTF-8');
      check(close.code === 1007, `close event code ${close.code}, expected 1007`);
    },
  ],
  [
    'invalid_utf8_1007_raw_frame',
    async () => {
      // The same at the frame level: a hand-written handshake and one masked text frame
      // with payload 0xff; the server must answer with a close frame carrying 1007.
      const bytes = await rawExchange(maskedFrame(0x1, Buffer.from([0xff])));
      check(bytes.length >= 2, `server sent ${bytes.length} bytes after the handshake, expected a close frame`);
      const opcode = bytes[0] & 0x0f;
      const fin = bytes[0] & 0x80;
      const masked = bytes[1] & 0x80;
      const len = bytes[1] & 0x7f;
      check(opcode === 0x8, `first frame has opcode ${opcode}, expected 8 (close)`);
      check(fin && !masked, `close frame header ${bytes.subarray(0, 2).toString('hex')}: FIN unset or masked`);
      check(len >= 2 && bytes.length >= 2 + len, `close frame payload length ${len}`);
      const code = bytes.readUInt16BE(2);
      check(code === 1007, `close code ${code}, expected 1007`);
    },
  ],
];

function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`case took longer than ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function main() {
  console.log(`# ws ${WS_VERSION} against ${URL_}`);
  let passed = 0;
  let failed = 0;
  for (const [name, fn] of CASES) {
    live = [];
    try {
      await withTimeout(fn(), CASE_TIMEOUT_MS);
      passed++;
      console.log(`ok ${name}`);
    } catch (err) {
      failed++;
      console.log(`FAIL ${name}: ${err && err.message ? err.message : err}`);
    } finally {
      for (const s of live) {
        if (s instanceof WebSocket) {
          if (s.readyState !== WebSocket.CLOSED) s.terminate();
        } else {
          s.destroy();
        }
      }
    }
  }
  console.log(`ws: ${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

main().catch((err) => {
  console.log(`FAIL (harness): ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
