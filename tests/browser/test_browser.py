"""Headless Chromium loads the demo page and exchanges events with the server through
client.js, twice; then a page written for the earlier broker talks to `switchboard
broker` and its PHP back end.

Echo: against `switchboard echo --mode broadcast`, the page (web/index.html with
?selftest) connects with client.js, emits `selftest-ping`, and once that comes back (a
broadcast reaches its sender too) emits `selftest` with {"ok": true}. An observer
connection on the same server sees both events.

Hub: against `switchboard serve` (memory store), the test writes user 23's session
`sess-23` through the admin listener; the page (?selftest=hub) connects as
`?userId=23` with `sess-23` as its subprotocol, the way a site's page passes its
session id, and once `authenticated` creates a room, says something in it and reports
what came back in a private message to the observer, who signed in with a `sessid`
header.

Broker: `php -S` serves tests/broker/page.html and its back end
tests/broker/backend.php; the page sets a cookie, opens a plain WebSocket to the
broker, says hello, and reports what the back end sent back; the back end's log shows
both, with the cookie in sessionInfo.

The observer is a minimal client written with the standard library; the client under
test is the browser.

Usage: python3 test_browser.py SWITCHBOARD_BINARY CHROMIUM
Exit status 0 when every check passed.
"""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

TIMEOUT = 60  # seconds for the browser to start, load and exchange


def wait_for_item(cond, items, pred, timeout):
    """The first of `items` (filled under `cond`) that satisfies `pred`, waiting up to
    `timeout` seconds for it; None if none came."""
    deadline = time.monotonic() + timeout
    with cond:
        while True:
            for item in items:
                if pred(item):
                    return item
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            cond.wait(left)


class Program:
    """The server under test; its stderr is collected by a thread."""

    def __init__(self, binary, args):
        self.proc = subprocess.Popen([binary] + args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._collect, daemon=True).start()
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise SystemExit(f"unexpected first line {line!r}; {self.stderr()[-500:]}")
        self.port = int(line.rsplit(":", 1)[1])

    def _collect(self):
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()

    def stderr(self):
        with self.cond:
            return "".join(self.lines)

    def wait_line(self, pred, timeout):
        return wait_for_item(self.cond, self.lines, pred, timeout)

    def stop(self):
        """SIGINT, as an operator stops it; returns the exit status."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "timeout"


def admin(port, method, path, body=""):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body.encode() or None,
                                 method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read().decode()


class Browser:
    """Headless Chromium on one page, killed with its process group."""

    def __init__(self, chromium, url):
        profile = tempfile.mkdtemp(prefix="switchboard-chromium-")
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def http_get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()


class Observer:
    """A raw WebSocket client that collects the text messages it receives."""

    def __init__(self, port, target="/", headers=""):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: " + key + "\r\n"
            "Sec-WebSocket-Version: 13\r\n" + headers + "\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise SystemExit("observer: closed during the handshake")
            buf += chunk
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101 "):
            raise SystemExit(f"observer: {head!r}")
        self.messages = []
        self.cond = threading.Condition()
        self.sock.settimeout(None)
        threading.Thread(target=self._read, daemon=True).start()

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def _read(self):
        try:
            while True:
                self._need(2)
                opcode, length = self.buf[0] & 0x0F, self.buf[1] & 0x7F
                at = 2
                if length == 126:
                    self._need(4)
                    length, at = int.from_bytes(self.buf[2:4], "big"), 4
                elif length == 127:
                    self._need(10)
                    length, at = int.from_bytes(self.buf[2:10], "big"), 10
                self._need(at + length)
                payload, self.buf = self.buf[at:at + length], self.buf[at + length:]
                if opcode == 0x1:
                    with self.cond:
                        self.messages.append(json.loads(payload))
                        self.cond.notify_all()
                elif opcode == 0x9:
                    self._send(0xA, payload)
                elif opcode == 0x8:
                    return
        except (EOFError, OSError):
            return

    def _send(self, opcode, payload):
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def wait_for(self, pred, timeout):
        return wait_for_item(self.cond, self.messages, pred, timeout)


def stop_both(browser, server, check, label):
    """Stops the browser, then the server with SIGINT, and checks how it ended."""
    if browser is not None:
        browser.stop()
    code = server.stop()
    stderr = server.stderr()
    check(f"{label}: the server exits 0 on SIGINT", code == 0, f"{code}; {stderr[-500:]}")
    check(f"{label}: the server did not panic", "panicked" not in stderr, stderr[-500:])


def echo_checks(binary, chromium, check):
    server = Program(binary, ["echo", "--listen", "127.0.0.1:0", "--mode", "broadcast",
                              "--protocol", "switchboard.v1"])
    port = server.port
    browser = None
    try:
        status, ctype, body = http_get(port, "/client.js")
        check("client.js is served", status == 200 and "javascript" in ctype and "WsClient" in body,
              f"{status} {ctype}")
        status, ctype, body = http_get(port, "/")
        check("demo page is served", status == 200 and "text/html" in ctype and "/client.js" in body,
              f"{status} {ctype}")

        observer = Observer(port)
        browser = Browser(chromium, f"http://127.0.0.1:{port}/?selftest")
        ping = observer.wait_for(lambda m: m.get("event") == "selftest-ping", TIMEOUT)
        check("the browser emits an event through client.js", ping is not None and ping["data"] == {"n": 1},
              repr(ping))
        report = observer.wait_for(lambda m: m.get("event") == "selftest", TIMEOUT)
        check("the browser receives the event back and reports", report is not None
              and report["data"].get("ok") is True, repr(report))
        check("the browser offered a subprotocol and the server selected it",
              report is not None and report["data"].get("protocol") == "switchboard.v1",
              repr(report))
        if report:
            print("   browser:", report["data"].get("userAgent"))
    finally:
        stop_both(browser, server, check, "echo")


def hub_checks(binary, chromium, check):
    server = Program(binary, ["serve", "--listen", "127.0.0.1:0",
                              "--admin-listen", "127.0.0.1:0"])
    browser = None
    try:
        line = server.wait_line(lambda l: "admin listener" in l, 10)
        if line is None:
            check("serve: the admin listener is up", False, server.stderr()[-500:])
            return
        admin_port = int(line.strip().rsplit(":", 1)[1])
        # The keys a site writes: user id -> session id (the `{userId}` template).
        for key, value in [("23", "sess-23"), ("observer", "sess-obs")]:
            status, _ = admin(admin_port, "PUT", f"/sessions/{key}", value)
            check(f"serve: session {key} stored over the admin listener", status == 200, status)
        observer = Observer(server.port, "/?userId=observer", "sessid: sess-obs\r\n")
        signed = observer.wait_for(lambda m: m.get("event") == "authenticated", 10)
        check("serve: the observer signs in with a sessid header", signed is not None
              and signed["data"].get("userId") == "observer", repr(signed))

        browser = Browser(chromium, f"http://127.0.0.1:{server.port}/"
                                    "?selftest=hub&userId=23&session=sess-23&to=observer")
        pm = observer.wait_for(lambda m: m.get("event") == "private.message", TIMEOUT)
        report = {}
        if pm is not None:
            try:
                report = json.loads(pm["data"]["message"])
            except (KeyError, TypeError, ValueError):
                report = {"unreadable": pm}
        check("serve: the browser's private message reaches the observer from user 23",
              pm is not None and pm["data"].get("user") == "23",
              f"{pm!r}; the observer had {observer.messages!r}; {server.stderr()[-800:]}")
        check("serve: the session id went as the subprotocol and came back selected",
              report.get("protocol") == "sess-23", repr(report))
        auth = report.get("authenticated") or {}
        check("serve: the browser was authenticated as user 23 from softId browser",
              auth.get("userId") == "23" and auth.get("sessionId") == "sess-23"
              and auth.get("softId") == "browser", repr(report))
        chat = report.get("chat") or {}
        check("serve: the browser's room message came back with user, time and id",
              chat.get("room") == "browser" and chat.get("user") == "23"
              and chat.get("message") == "hello from the browser"
              and str(chat.get("time", "")).endswith("Z") and bool(chat.get("id")),
              repr(report))
        status, body = admin(admin_port, "GET", "/connections")
        listed = [c for c in json.loads(body) if c.get("userId") == "23"]
        check("serve: the admin listener lists the browser's connection",
              status == 200 and len(listed) == 1 and listed[0].get("softId") == "browser"
              and "Chrome" in listed[0]["handshake"]["headers"].get("user-agent", ""),
              body[:500])
    finally:
        stop_both(browser, server, check, "serve")


def broker_checks(binary, chromium, check):
    """A page written for the earlier broker (tests/broker/page.html), served with its
    PHP back end (tests/broker/backend.php) by `php -S`, against `switchboard broker`."""
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "broker")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    php_port = sock.getsockname()[1]
    sock.close()
    log = tempfile.NamedTemporaryFile(prefix="switchboard-broker-", delete=False).name
    env = dict(os.environ, BROKER_TEST_LOG=log)
    php = subprocess.Popen(["php", "-S", f"127.0.0.1:{php_port}", "-t", here], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    server = browser = None
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", php_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        server = Program(binary, ["broker", "--listen", "127.0.0.1:0", "--backend",
                                  f"http://127.0.0.1:{php_port}/backend.php"])
        browser = Browser(chromium, f"http://127.0.0.1:{php_port}/page.html?port={server.port}")

        def events():
            with open(log) as f:
                return [json.loads(line) for line in f if line.strip()]

        report = None
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and report is None:
            report = next((e for e in events() if e["message"].get("type") == "client-report"), None)
            time.sleep(0.1)
        seen = [e["message"].get("type") for e in events()]
        check("broker: the page's hello reached the PHP back end as client-hello",
              "client-hello" in seen, repr(seen))
        check("broker: the back end's send reached the page, which reported it",
              report is not None and report["message"]["got"] == {
                  "type": "echoed", "content": "there", "name": "Ann"}, repr(report))
        check("broker: the page's cookie is in sessionInfo",
              report is not None and report["connection"].get("name") == "Ann", repr(report))
    finally:
        if server is not None:
            stop_both(browser, server, check, "broker")
        elif browser is not None:
            browser.stop()
        os.killpg(php.pid, signal.SIGKILL)
        php.wait()
        os.unlink(log)


def main():
    binary, chromium = sys.argv[1], sys.argv[2]
    failures = []
    passed = []

    def check(name, ok, detail=""):
        print(("ok " if ok else "FAIL ") + name + (f": {detail}" if detail and not ok else ""))
        (passed if ok else failures).append(name)

    echo_checks(binary, chromium, check)
    hub_checks(binary, chromium, check)
    broker_checks(binary, chromium, check)
    print(f"browser: {len(passed)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
