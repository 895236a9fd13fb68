/*
 * switchboard client.js: events over a WebSocket, for browsers, with no build step.
 *
 *   var client = new WsClient('ws://' + location.host + '/', { protocols: ['v1'] });
 *   client.on('ready', function () { client.emit('join', { name: 'ann' }); })
 *         .on('userlist', function (names) { console.log(names); });
 *
 * Messages are JSON text frames {"event": name, "data": any}. Besides the server's
 * events, the client emits its own:
 *   ready             connected (first time or again); data {protocol}
 *   reconnecting      the connection is gone; data {attempt, delay} (ms)
 *   reconnectionFail  maxAttempts attempts in a row failed; the client stops
 *   end               the server is restarting; the client comes back within the
 *                     window it gave (minDelayMs..maxDelayMs)
 *   close             the socket closed; data {code, reason}. After a code in
 *                     options.finalCodes (default [4003], kicked) it stays closed
 *   message           a message that is not an event (data: the text or value);
 *                     switchboard serve also sends notifications as `message`
 * on('*', fn) sees every event as fn(name, data).
 *
 * options.recover (switchboard serve): after a reconnection, once the connection is
 * `authenticated` again, the client asks for what it missed while away, by the last
 * id it saw: `chat.join` with `lastId` for each room it is in, `private.history` with
 * `after` for each user it exchanged private messages with, and
 * `notification.history` with `after` when kept notifications came with ids, each
 * from 2 s before that id: the answers may repeat messages the page has, by id. They
 * come as those events do when the page asks itself.
 *
 * Browsers cannot set request headers on a WebSocket; a value such as a session id
 * travels as a subprotocol (options.protocols), and the server selects it back.
 */
(function (root) {
  'use strict';

  function WsClient(url, options) {
    if (!(this instanceof WsClient)) {
      return new WsClient(url, options);
    }
    options = options || {};
    this.url = url;
    this.protocols = options.protocols;
    this.maxAttempts = options.maxAttempts === undefined ? 3 : options.maxAttempts;
    this.minDelay = options.minDelay === undefined ? 1000 : options.minDelay;
    this.maxDelay = options.maxDelay === undefined ? 30000 : options.maxDelay;
    // Close codes after which the client does not come back (4003: kicked).
    this.finalCodes = options.finalCodes || [4003];
    this.recover = !!options.recover;
    // What recovery asks for: the last id seen per room, per private peer, and of
    // kept notifications; who this user is; whether a connection was ready before.
    this.rooms = {};
    this.peers = {};
    this.lastNotification = null;
    this.userId = null;
    this.wasReady = false;
    this.missed = false;
    this.listeners = {};
    this.attempts = 0;
    this.hint = null;
    this.stopped = false;
    this.socket = null;
    this.protocol = '';
    var self = this;
    // Let the caller register listeners before anything is emitted.
    setTimeout(function () { self._connect(); }, 0);
  }

  WsClient.prototype.on = function (event, fn) {
    (this.listeners[event] = this.listeners[event] || []).push(fn);
    return this;
  };

  WsClient.prototype.off = function (event, fn) {
    var fns = this.listeners[event] || [];
    this.listeners[event] = fns.filter(function (f) { return f !== fn; });
    return this;
  };

  /** Sends an event; returns false when not connected (nothing is queued). */
  WsClient.prototype.emit = function (event, data) {
    if (!this.socket || this.socket.readyState !== 1) {
      return false;
    }
    this.socket.send(JSON.stringify({ event: event, data: data === undefined ? null : data }));
    return true;
  };

  /** Closes with 1000 and does not come back. */
  WsClient.prototype.close = function () {
    this.stopped = true;
    if (this.socket) {
      this.socket.close(1000);
    }
  };

  WsClient.prototype._fire = function (event, data) {
    var fns = (this.listeners[event] || []).slice();
    for (var i = 0; i < fns.length; i++) {
      fns[i].call(this, data);
    }
    var any = (this.listeners['*'] || []).slice();
    for (var j = 0; j < any.length; j++) {
      any[j].call(this, event, data);
    }
  };

  WsClient.prototype._connect = function () {
    var self = this;
    var ws;
    try {
      ws = this.protocols ? new WebSocket(this.url, this.protocols) : new WebSocket(this.url);
    } catch (e) {
      // A malformed URL or protocol list: no retry can fix it.
      this.stopped = true;
      this._fire('reconnectionFail', { error: String(e) });
      return;
    }
    this.socket = ws;
    ws.onopen = function () {
      self.attempts = 0;
      self.hint = null;
      self.protocol = ws.protocol;
      self.missed = self.wasReady;
      self.wasReady = true;
      self._fire('ready', { protocol: ws.protocol });
    };
    ws.onmessage = function (m) {
      var msg;
      try {
        msg = JSON.parse(m.data);
      } catch (e) {
        self._fire('message', m.data);
        return;
      }
      if (!msg || typeof msg.event !== 'string') {
        self._fire('message', msg);
        return;
      }
      if (self.recover) {
        self._note(msg);
      }
      if (msg.event === 'end' && msg.data && typeof msg.data.minDelayMs === 'number' &&
          typeof msg.data.maxDelayMs === 'number') {
        self.hint = [msg.data.minDelayMs, Math.max(msg.data.minDelayMs, msg.data.maxDelayMs)];
      }
      self._fire(msg.event, msg.data === undefined ? null : msg.data);
    };
    ws.onclose = function (e) {
      // 4003: an admin kicked this user; coming back would only be kicked again.
      if (self.finalCodes.indexOf(e.code) >= 0) {
        self.stopped = true;
      }
      self._fire('close', { code: e.code, reason: e.reason });
      if (!self.stopped) {
        self._retry();
      }
    };
    // A failed connection also closes; onclose decides what to do.
    ws.onerror = function () {};
  };

  /* The last id of a list of history entries, or `keep` when there is none. */
  function lastId(messages, keep) {
    if (messages && messages.length && typeof messages[messages.length - 1].id === 'string') {
      return messages[messages.length - 1].id;
    }
    return keep;
  }

  /* Notes what recovery will ask for: rooms and last ids, from every event. */
  WsClient.prototype._note = function (msg) {
    var d = msg.data || {};
    switch (msg.event) {
      case 'authenticated':
        this.userId = d.userId;
        if (this.missed) {
          this.missed = false;
          this._recover();
        }
        break;
      case 'chat.create':
      case 'chat.join':
        if (typeof d.room === 'string') {
          this.rooms[d.room] = lastId(d.messages, this.rooms[d.room] || null);
        }
        break;
      case 'chat.history':
        if (typeof d.room === 'string' && d.room in this.rooms) {
          this.rooms[d.room] = lastId(d.messages, this.rooms[d.room]);
        }
        break;
      case 'chat.message':
        if (d.room in this.rooms && typeof d.id === 'string') {
          this.rooms[d.room] = d.id;
        }
        break;
      case 'chat.leave':
        delete this.rooms[d.room];
        break;
      case 'chat.kicked':
      case 'chat.banned':
        if (d.user === this.userId) {
          delete this.rooms[d.room];
        }
        break;
      case 'private.message':
        if (typeof d.id === 'string') {
          this.peers[d.user === this.userId ? d.to : d.user] = d.id;
        }
        break;
      case 'private.history':
        if (typeof d.with === 'string') {
          this.peers[d.with] = lastId(d.messages, this.peers[d.with] || null);
        }
        break;
      case 'message':
        if (typeof msg.id === 'string') {
          this.lastNotification = msg.id;
        }
        break;
      case 'notification.history':
        this.lastNotification = lastId(d.messages, this.lastNotification);
        break;
    }
  };

  /* An id `RESUME_MARGIN_MS` before `id` (ids are "ms-seq"). On several nodes a
   * message from a sender on another node can arrive after a later one from this
   * connection's node, so recovery starts a little before the last id seen; what
   * comes again has an id the page has seen. */
  var RESUME_MARGIN_MS = 2000;
  function before(id) {
    var ms = parseInt(String(id).split('-')[0], 10);
    return isNaN(ms) ? id : Math.max(0, ms - RESUME_MARGIN_MS) + '-0';
  }

  /* Asks for what was missed while away, from a little before the last ids noted. */
  WsClient.prototype._recover = function () {
    for (var room in this.rooms) {
      var join = { room: room };
      if (this.rooms[room]) {
        join.lastId = before(this.rooms[room]);
      }
      this.emit('chat.join', join);
    }
    for (var peer in this.peers) {
      if (this.peers[peer]) {
        this.emit('private.history', { with: peer, after: before(this.peers[peer]) });
      }
    }
    if (this.lastNotification) {
      this.emit('notification.history', { after: before(this.lastNotification) });
    }
  };

  WsClient.prototype._retry = function () {
    if (this.attempts >= this.maxAttempts) {
      this.stopped = true;
      this._fire('reconnectionFail', { attempts: this.attempts });
      return;
    }
    this.attempts += 1;
    var delay = this._delay();
    this._fire('reconnecting', { attempt: this.attempts, delay: delay });
    var self = this;
    setTimeout(function () {
      if (!self.stopped) {
        self._connect();
      }
    }, delay);
  };

  /* Within the window the server's `end` gave, once; otherwise minDelay doubled per
   * attempt up to maxDelay, half of it fixed and half random, so that clients do not
   * all come back at once. */
  WsClient.prototype._delay = function () {
    if (this.hint) {
      var h = this.hint;
      this.hint = null;
      return Math.round(h[0] + Math.random() * (h[1] - h[0]));
    }
    var full = Math.min(this.maxDelay, this.minDelay * Math.pow(2, this.attempts - 1));
    return Math.round(full / 2 + Math.random() * full / 2);
  };

  root.WsClient = WsClient;
  if (typeof module !== 'undefined' && module.exports) {
    module.exports = WsClient;
  }
})(typeof window !== 'undefined' ? window : this);
