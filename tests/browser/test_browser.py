"""Headless Chromium loads the demo page served by `switchboard echo --mode broadcast`
and exchanges events with it through client.js.

The page (web/index.html with ?selftest) connects with client.js, emits
`selftest-ping`, and once that comes back (a broadcast reaches its sender too) emits
`selftest` with {"ok": true}. An observer connection on the same server sees both
events. The observer is a minimal client written with the standard library; the
client under test is the browser.

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


def start_server(binary):
    proc = subprocess.Popen(
        [binary, "echo", "--listen", "127.0.0.1:0", "--mode", "broadcast",
         "--protocol", "switchboard.v1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        raise SystemExit(f"unexpected first line {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def http_get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()


class Observer:
    """A raw WebSocket client that collects the text messages it receives."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: " + key + "\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode())
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
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for m in self.messages:
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)


def main():
    binary, chromium = sys.argv[1], sys.argv[2]
    failures = []
    passed = []

    def check(name, ok, detail=""):
        print(("ok " if ok else "FAIL ") + name + (f": {detail}" if detail and not ok else ""))
        (passed if ok else failures).append(name)

    server, port = start_server(binary)
    browser = None
    try:
        status, ctype, body = http_get(port, "/client.js")
        check("client.js is served", status == 200 and "javascript" in ctype and "WsClient" in body,
              f"{status} {ctype}")
        status, ctype, body = http_get(port, "/")
        check("demo page is served", status == 200 and "text/html" in ctype and "/client.js" in body,
              f"{status} {ctype}")

        observer = Observer(port)
        profile = tempfile.mkdtemp(prefix="switchboard-chromium-")
        browser = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
             f"http://127.0.0.1:{port}/?selftest"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
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
        if browser is not None:
            os.killpg(browser.pid, signal.SIGKILL)
            browser.wait()
        server.send_signal(signal.SIGINT)
        try:
            code = server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            code = "timeout"
        stderr = server.stderr.read()
    check("the server exits 0 on SIGINT", code == 0, f"{code}; {stderr[-500:]}")
    check("the server did not panic", "panicked" not in stderr, stderr[-500:])
    print(f"browser: {len(passed)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
