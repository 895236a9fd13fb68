"""Interop cases for `switchboard echo` with the Python `websockets` library (sync client).

Usage: test_websockets.py ws://127.0.0.1:PORT/

Prints `ok NAME` or `FAIL NAME: reason` per case, then `websockets: N passed, M failed`;
exits 1 if any case failed. Run by tests/interop/run.sh.
"""

import random
import signal
import sys
import traceback

import websockets
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

MIB = 1 << 20
RECV_TIMEOUT = 20.0  # seconds for one recv()
CASE_TIMEOUT = 60  # seconds for one whole case (SIGALRM backstop, e.g. a blocked send)

URL = ""


class CaseTimeout(Exception):
    pass


def open_ws():
    """A client connection without compression, keepalive pings or proxies."""
    ws = connect(
        URL,
        compression=None,
        proxy=None,
        open_timeout=10,
        close_timeout=5,
        ping_interval=None,
        max_size=32 * MIB,
        max_queue=None,
    )
    ext = ws.response.headers.get("Sec-WebSocket-Extensions")
    if ext is not None:
        with ws:  # entering first avoids websockets' legacy-use warning
            pass
        raise AssertionError(f"server offered extensions: {ext!r}")
    return ws


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def describe(data):
    kind = "str" if isinstance(data, str) else "bytes"
    if len(data) <= 40:
        return f"{kind} {data!r}"
    return f"{kind} of length {len(data)}"


def echo(sent, expected=None):
    """Sends one message and checks that the same message (type and content) comes back."""
    expected = sent if expected is None else expected
    with open_ws() as ws:
        ws.send(sent)
        got = ws.recv(timeout=RECV_TIMEOUT)
        check(type(got) is type(expected), f"sent {describe(expected)}, got {describe(got)}")
        if got != expected:
            first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), None)
            raise AssertionError(
                f"echo differs: got {describe(got)}, expected {describe(expected)}"
                f" (first difference at index {first})"
            )


def text_of(size):
    """ASCII text of exactly `size` bytes."""
    unit = "the quick brown fox jumps over the lazy dog 0123456789\n"
    return (unit * (size // len(unit) + 1))[:size]


def bytes_of(size, seed):
    return random.Random(seed).randbytes(size)


# --- cases -------------------------------------------------------------------


def case_text_ascii():
    echo("Hello, switchboard!")


def case_text_multibyte():
    # 2-, 3- and 4-byte UTF-8 sequences.
    echo("héllo wörld — ¿qué tal? 你好世界 Ελληνικά 🎉🚀 𝄞")


def case_binary():
    echo(bytes(range(256)) * 4)


def case_empty_text():
    echo("")


def case_empty_binary():
    echo(b"")


def case_text_1mib():
    echo(text_of(1 * MIB))


def case_binary_1mib():
    echo(bytes_of(1 * MIB, 1))


def case_text_16mib():
    echo(text_of(16 * MIB))


def case_binary_16mib():
    echo(bytes_of(16 * MIB, 16))


def case_fragmented_text():
    # send(iterable) sends one frame per item plus an empty final continuation frame.
    echo(iter(["frag", "mented ", "", "text ✓"]), "fragmented text ✓")


def case_fragmented_binary():
    parts = [bytes_of(1000, 3), b"\x00", bytes_of(70000, 4)]
    echo(iter(parts), b"".join(parts))


def case_fragmented_text_split_code_point():
    # Code points cut across frames: the server must validate UTF-8 across fragments.
    with open_ws() as ws:
        ws.send(iter([b"caf\xc3", b"\xa9 \xe2\x82", b"\xac \xf0\x9f", b"\x8e\x89"]), text=True)
        got = ws.recv(timeout=RECV_TIMEOUT)
        check(got == "café € 🎉", f"got {got!r}")


def case_ping_pong_payload():
    with open_ws() as ws:
        # The event is set only by a pong whose payload matches this ping's.
        pong = ws.ping(b"data")
        check(pong.wait(RECV_TIMEOUT), "no pong with payload b'data'")
        pong2 = ws.ping(b"\x00\x01\xfe\xff" * 31)  # 124 bytes, close to the 125 limit
        check(pong2.wait(RECV_TIMEOUT), "no pong with a 124-byte payload")
        # Still usable afterwards.
        ws.send("after ping")
        got = ws.recv(timeout=RECV_TIMEOUT)
        check(got == "after ping", f"after the pings got {got!r}")


def case_close_4000_echoed():
    with open_ws() as ws:
        ws.close(4000, "bye")
        check(ws.wait_closed(10), "connection not closed 10 s after close()")
        rcvd = ws.protocol.close_rcvd
        check(rcvd is not None, "no close frame received from the server")
        check(rcvd.code == 4000, f"server closed with {rcvd.code}, expected 4000 echoed")
        check(ws.close_code == 4000, f"close_code is {ws.close_code}")


def case_invalid_utf8_1007():
    # send(bytes, text=True) puts the bytes in a text frame as they are (no validation).
    with open_ws() as ws:
        ws.send(b"ok \xff\xfe", text=True)
        try:
            got = ws.recv(timeout=RECV_TIMEOUT)
        except ConnectionClosed as e:
            check(e.rcvd is not None, f"connection closed without a close frame ({e})")
            check(e.rcvd.code == 1007, f"server closed with {e.rcvd.code}, expected 1007")
        except TimeoutError:
            raise AssertionError("no close frame within the timeout")
        else:
            raise AssertionError(f"server echoed invalid UTF-8 as {got!r} instead of closing")
        check(ws.wait_closed(10), "connection not closed 10 s after the close frame")
        check(ws.close_code == 1007, f"close_code is {ws.close_code}")


CASES = [
    ("text_ascii", case_text_ascii),
    ("text_multibyte", case_text_multibyte),
    ("binary", case_binary),
    ("empty_text", case_empty_text),
    ("empty_binary", case_empty_binary),
    ("text_1mib", case_text_1mib),
    ("binary_1mib", case_binary_1mib),
    ("text_16mib", case_text_16mib),
    ("binary_16mib", case_binary_16mib),
    ("fragmented_text", case_fragmented_text),
    ("fragmented_binary", case_fragmented_binary),
    ("fragmented_text_split_code_point", case_fragmented_text_split_code_point),
    ("ping_pong_payload", case_ping_pong_payload),
    ("close_4000_echoed", case_close_4000_echoed),
    ("invalid_utf8_1007", case_invalid_utf8_1007),
]


def on_alarm(signum, frame):
    raise CaseTimeout(f"case took longer than {CASE_TIMEOUT} s")


def main():
    global URL
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    URL = sys.argv[1]
    print(f"# websockets {websockets.__version__} against {URL}", flush=True)
    signal.signal(signal.SIGALRM, on_alarm)
    passed = failed = 0
    for name, fn in CASES:
        signal.alarm(CASE_TIMEOUT)
        try:
            fn()
        except Exception as e:
            signal.alarm(0)
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            if not isinstance(e, (AssertionError, CaseTimeout)):
                traceback.print_exc(file=sys.stderr)
        else:
            signal.alarm(0)
            passed += 1
            print(f"ok {name}", flush=True)
    print(f"websockets: {passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
