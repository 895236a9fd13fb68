//! A raw TCP test client for `switchboard echo`, written apart from the crate's own
//! codec so that the server is checked against a second reading of RFC 6455.
//!
//! Every test starts its own server process on 127.0.0.1:0 (the port is read from its
//! first line of output) and stops it when the test ends. Every socket has a timeout,
//! so a server that fails to answer makes the test fail instead of hang.

#![allow(dead_code)]

pub mod hub;
pub mod nginx;
pub mod redis;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single read may wait.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A running `switchboard echo`.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// Lines the server printed on stdout after the first (frame traces).
    pub stdout: Lines,
    pub stderr: Lines,
    drains: Vec<thread::JoinHandle<()>>,
    /// The test stops the process itself (a signal): its exit is not a failure.
    exit_expected: bool,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let mut args = vec!["echo", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Server::start_program(env!("CARGO_BIN_EXE_switchboard"), &args)
    }

    /// Runs an example program of this crate (built by `cargo test`), with `args`.
    pub fn start_example(name: &str, extra: &[&str]) -> Server {
        // Test binaries live in target/<profile>/deps; examples in target/<profile>/examples.
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
        let path = profile_dir.join("examples").join(name);
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Server::start_program(path.to_str().expect("utf-8 path"), &args)
    }

    pub fn start_program(program: &str, args: &[&str]) -> Server {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchboard");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        out.read_line(&mut first).expect("read first line");
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        let addr: SocketAddr = addr.parse().expect("address");
        let stdout = Lines::default();
        let stderr = Lines::default();
        let drains = vec![
            drain(out, stdout.clone()),
            drain(
                BufReader::new(child.stderr.take().expect("stderr")),
                stderr.clone(),
            ),
        ];
        Server {
            child,
            addr,
            stdout,
            stderr,
            drains,
            exit_expected: false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`"INT"`, `"TERM"`) to the server with kill(1).
    pub fn signal(&mut self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
        self.exit_expected = true;
    }

    /// Waits up to `timeout` for the process to exit; returns its status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Threads of the server process now, from /proc.
    pub fn threads(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("Threads: line")
    }

    /// A plain HTTP request (no upgrade); returns the status code and the whole response.
    pub fn http(&self, method: &str, path: &str) -> (u16, String) {
        let mut c = Client::raw(self.addr);
        c.send(
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes(),
            Whole,
        );
        let text = c.read_to_end_text();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        (status, text)
    }

    /// The value of one sample line of GET /metrics, such as
    /// `switchboard_closes_total{code="1008"}`; 0 when absent.
    pub fn metric(&self, sample: &str) -> u64 {
        let (status, text) = self.http("GET", "/metrics");
        assert_eq!(status, 200);
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }
}

/// Waits until `cond` holds, checking every 10 ms, for at most `timeout`; returns
/// whether it held. For conditions no socket can wait on (thread counts, metrics).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

impl Server {
    /// A client that has completed the opening handshake.
    pub fn client(&self) -> Client {
        let mut c = Client::raw(self.addr);
        c.handshake();
        c
    }

    /// Whether the process is still running (it must never die on bad input).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let alive = self.is_running();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The pipes are closed now: wait until every line the server wrote is in.
        for reader in self.drains.drain(..) {
            let _ = reader.join();
        }
        // A test that made the server exit, or panic in a connection thread (which
        // does not end the process), must not pass quietly.
        if !thread::panicking() {
            let stderr = self.stderr.snapshot();
            assert!(
                alive || self.exit_expected,
                "the server process exited during the test; stderr: {stderr:?}"
            );
            let panics: Vec<&String> = stderr.iter().filter(|l| l.contains("panicked")).collect();
            assert!(panics.is_empty(), "the server panicked: {panics:?}");
        } else {
            // The test failed: what the server said is what explains it.
            let stderr = self.stderr.snapshot();
            let tail = &stderr[stderr.len().saturating_sub(40)..];
            eprintln!("server stderr, last {} lines:", tail.len());
            for line in tail {
                eprintln!("  {line}");
            }
        }
    }
}

/// Output lines collected from the server, with a way to wait for one.
#[derive(Clone, Default)]
pub struct Lines(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Lines {
    fn push(&self, line: String) {
        self.0 .0.lock().unwrap().push(line);
        self.0 .1.notify_all();
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.0 .0.lock().unwrap().clone()
    }

    /// Waits until a line satisfies `pred`, at most `timeout`; returns whether one did.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut lines = self.0 .0.lock().unwrap();
        loop {
            if lines.iter().any(|l| pred(l)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            lines = self.0 .1.wait_timeout(lines, left).unwrap().0;
        }
    }
}

fn drain<R: BufRead + Send + 'static>(mut r: R, into: Lines) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut line = String::new();
        while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
            into.push(line.trim_end().to_owned());
            line.clear();
        }
    })
}

/// How frames are written to the socket.
#[derive(Clone, Copy, Debug)]
pub enum Write_ {
    /// One write per frame.
    Whole,
    /// One write per byte, so the server sees every possible split.
    Bytewise,
    /// Writes of at most this many bytes.
    Chunks(usize),
}

pub use Write_::*;

/// A frame as received from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// The key every test frame is masked with.
pub const KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// A masked client frame, built by hand: `b0` is FIN|RSV|opcode.
pub fn frame_bytes(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(fin as u8) << 7 | (rsv & 7) << 4 | (opcode & 0x0F)];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&KEY);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    out
}

pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// A connection to the server, speaking raw bytes.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn raw(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends the RFC 6455 1.3 sample request and checks the 101 response.
    pub fn handshake(&mut self) {
        self.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", Whole);
        let head = self.read_http_head();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(
            head.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{head}"
        );
    }

    /// Sends an upgrade request for `target` with `headers` added; returns the
    /// response's head, whatever its status.
    pub fn upgrade(&mut self, target: &str, headers: &[(&str, &str)]) -> String {
        let mut req = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n");
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        self.send(req.as_bytes(), Whole);
        self.read_http_head()
    }

    /// Reads an HTTP head (through the empty line); bytes after it stay buffered.
    pub fn read_http_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                return String::from_utf8(head).expect("head is text");
            }
            assert!(
                self.fill() > 0,
                "connection closed before the end of the head: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// Reads everything until the server closes; returns it as text.
    pub fn read_to_end_text(&mut self) -> String {
        while self.fill() > 0 {}
        String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned()
    }

    pub fn send(&mut self, bytes: &[u8], how: Write_) {
        let step = match how {
            Whole => bytes.len().max(1),
            Bytewise => 1,
            Chunks(n) => n.max(1),
        };
        for piece in bytes.chunks(step) {
            if let Err(e) = self.stream.write_all(piece) {
                // The server may close in the middle of a frame it rejects early.
                assert!(
                    matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
                    "{e}"
                );
                return;
            }
        }
    }

    pub fn send_frame(&mut self, fin: bool, rsv: u8, opcode: u8, payload: &[u8], how: Write_) {
        self.send(&frame_bytes(fin, rsv, opcode, payload), how);
    }

    /// Reads more bytes into the buffer; 0 at end of stream.
    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("read failed (timeout means the server did not answer): {e}"),
        }
    }

    fn need(&mut self, n: usize) {
        while self.buf.len() < n {
            assert!(self.fill() > 0, "connection closed inside a frame");
        }
    }

    /// For a failing test's message: the bytes already read and whatever comes within
    /// half a second, as text where they are text.
    pub fn what_follows(&mut self) -> String {
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(500)));
        let mut more = [0u8; 4096];
        let n = self.stream.read(&mut more).unwrap_or(0);
        self.buf.extend_from_slice(&more[..n]);
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Reads one frame, or `None` if the server closed TCP first.
    pub fn recv(&mut self) -> Option<Frame> {
        if self.buf.is_empty() && self.fill() == 0 {
            return None;
        }
        self.need(2);
        let (b0, b1) = (self.buf[0], self.buf[1]);
        let mut at = 2;
        let mut len = (b1 & 0x7F) as u64;
        if len == 126 {
            self.need(4);
            len = u16::from_be_bytes([self.buf[2], self.buf[3]]) as u64;
            at = 4;
        } else if len == 127 {
            self.need(10);
            len = u64::from_be_bytes(self.buf[2..10].try_into().unwrap());
            at = 10;
        }
        let masked = b1 & 0x80 != 0;
        if masked {
            at += 4;
        }
        let total = at + len as usize;
        self.need(total);
        let frame: Vec<u8> = self.buf.drain(..total).collect();
        Some(Frame {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 7,
            opcode: b0 & 0x0F,
            masked,
            payload: frame[at..].to_vec(),
        })
    }

    pub fn expect_frame(&mut self, opcode: u8, payload: &[u8]) {
        let f = self.recv().expect("a frame, not the end of the connection");
        assert!(!f.masked, "server frames are never masked");
        assert_eq!(f.rsv, 0);
        assert!(f.fin, "the echo server sends whole messages");
        assert_eq!(f.opcode, opcode, "opcode");
        assert!(
            f.payload == payload,
            "payload differs: got {} bytes, expected {}",
            f.payload.len(),
            payload.len()
        );
    }

    /// The server's close frame with `code` (or an empty one for `None`), then TCP closed.
    pub fn expect_close(&mut self, code: Option<u16>) {
        let f = self.recv().expect("a close frame");
        assert_eq!(f.opcode, CLOSE, "expected close, got {f:?}");
        assert!(!f.masked);
        match code {
            None => assert!(
                f.payload.is_empty(),
                "expected an empty close, got {:?}",
                f.payload
            ),
            Some(c) => {
                assert!(f.payload.len() >= 2, "close without a code");
                assert_eq!(
                    u16::from_be_bytes([f.payload[0], f.payload[1]]),
                    c,
                    "close code"
                );
                assert!(
                    std::str::from_utf8(&f.payload[2..]).is_ok(),
                    "close reason is UTF-8"
                );
            }
        }
        self.expect_tcp_closed();
    }

    /// The server closes TCP: nothing more arrives, neither already buffered nor later.
    pub fn expect_tcp_closed(&mut self) {
        assert!(
            self.buf.is_empty(),
            "expected TCP close, but more bytes came first: {:02x?}",
            &self.buf[..self.buf.len().min(32)]
        );
        let mut chunk = [0u8; 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {}
            Ok(n) => panic!(
                "expected TCP close, got {n} more bytes: {:02x?}",
                &chunk[..n.min(32)]
            ),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected TCP close, got {e}"),
        }
    }

    /// Sends one text frame.
    pub fn send_text(&mut self, text: &str) {
        self.send_frame(true, 0, TEXT, text.as_bytes(), Whole);
    }

    /// Reads the next data frame as text, answering pings on the way.
    pub fn recv_text(&mut self) -> String {
        loop {
            let f = self.recv().expect("a frame, not the end of the connection");
            match f.opcode {
                TEXT => return String::from_utf8(f.payload).expect("UTF-8 text"),
                PING => self.send_frame(true, 0, PONG, &f.payload, Whole),
                other => panic!("expected text, got opcode {other:#x}: {:?}", f.payload),
            }
        }
    }

    /// A clean close started by the client: close 1000, echoed, then TCP closed.
    pub fn close_normally(&mut self) {
        self.send_frame(true, 0, CLOSE, &close_payload(1000, b""), Whole);
        self.expect_close(Some(1000));
        // The server closed TCP first (RFC 6455 7.1.1); the client closes its end too.
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// The three ways every small case is written.
pub const ALL_WAYS: [Write_; 3] = [Whole, Chunks(3), Bytewise];

/// `n` bytes of text payload.
pub fn text(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// `n` bytes of binary payload.
pub fn binary(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 256) as u8).collect()
}

/// The admin listener's address, from the server's log.
pub fn admin_addr(server: &Server) -> SocketAddr {
    assert!(
        server
            .stderr
            .wait_for(TIMEOUT, |l| l.contains("admin listener")),
        "{:?}",
        server.stderr.snapshot()
    );
    let line = server
        .stderr
        .snapshot()
        .into_iter()
        .find(|l| l.contains("admin listener"))
        .unwrap();
    line.split("address=")
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `switchboard serve` on its embedded defaults (the memory store unless `extra` says
/// `--redis`), with an admin listener and `extra` options.
pub fn serve_on_memory(extra: &[&str]) -> (Server, SocketAddr) {
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let server = Server::start_program(env!("CARGO_BIN_EXE_switchboard"), &args);
    let admin = admin_addr(&server);
    (server, admin)
}

/// One request to the admin listener; returns the status and the body.
pub fn admin_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    auth: Option<&str>,
) -> (u16, String) {
    let mut c = Client::raw(addr);
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    c.send(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
        Whole,
    );
    let text = c.read_to_end_text();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned(),
    )
}

/// Runs `switchboard connect ws://addr/ --json`, writes `lines` to it, ends its input
/// (so it closes), and returns what it printed; it must have exited 0.
pub fn connect_command(addr: SocketAddr, lines: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["connect", &format!("ws://{addr}/"), "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchboard connect");
    let mut stdin = child.stdin.take().expect("stdin");
    for line in lines {
        writeln!(stdin, "{line}").expect("write a line");
    }
    drop(stdin);
    let output = child.wait_with_output().expect("switchboard connect");
    assert!(output.status.success(), "{output:?}");
    output
}
