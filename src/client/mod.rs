//! Clients for `ws://` URLs.
//!
//! - [`Client`]: a blocking WebSocket client. One thread reads ([`Client::read`]);
//!   its [`Sender`] can be cloned into other threads, which send whole frames under
//!   one lock, so frames from different threads never interleave on the wire.
//! - [`EventClient`]: speaks the event envelope `{"event": .., "data": ..}` and comes
//!   back by itself: after a lost connection, or the server's `end`, it reconnects
//!   with exponential backoff and jitter, at most `max_attempts` times in a row
//!   (default 3), reporting `ready`, `reconnecting`, `reconnectionFail` and `end` as
//!   it goes.
//!
//! `wss://` is not spoken: TLS belongs to the proxy in front (nginx), as in
//! docs/OPERATIONS.md.

use crate::envelope::{envelope, parse_envelope};
use crate::protocol::close;
use crate::protocol::connection::{Connection, SendError, State};
use crate::protocol::frame::OpCode;
use crate::protocol::handshake::HeadLimits;
use crate::protocol::message::{Event, Limits};
use crate::secure::Urandom;
use crate::socket::{self, ReadBuffer};
use serde_json::Value;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What can go wrong for a client.
#[derive(Debug)]
pub enum Error {
    /// The URL is not a `ws://` URL this client can reach.
    Url(String),
    /// Connecting or the handshake failed, or the connection did.
    Ws(socket::Error),
    /// The connection is closed; nothing more can be sent.
    Closed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Url(why) => write!(f, "bad URL: {why}"),
            Error::Ws(e) => write!(f, "{e}"),
            Error::Closed => f.write_str("connection closed"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// Whether this is only [`Client::set_read_timeout`] passing: the connection is
    /// intact, and a later read goes on where this one stopped.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Ws(socket::Error::Io(e))
            if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
    }
}

impl From<socket::Error> for Error {
    fn from(e: socket::Error) -> Self {
        Error::Ws(e)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Ws(socket::Error::Io(e))
    }
}

/// A `ws://host[:port]/path?query` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// Host name or address, without brackets for IPv6.
    pub host: String,
    /// Port; 80 when not given.
    pub port: u16,
    /// Path and query, at least `/`.
    pub target: String,
}

impl Url {
    /// Parses a `ws://` URL. `wss://` is refused: TLS is the proxy's job.
    pub fn parse(url: &str) -> Result<Url, Error> {
        let rest = match url.split_once("://") {
            Some(("ws", rest)) => rest,
            Some(("wss", _)) => {
                return Err(Error::Url(
                    "wss:// is not supported; put TLS in a proxy".into(),
                ))
            }
            _ => return Err(Error::Url(format!("{url:?} does not start with ws://"))),
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        if authority.contains('@') {
            return Err(Error::Url(
                "user information in URLs is not supported".into(),
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| Error::Url("unclosed [ in host".into()))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(Error::Url("no host".into()));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse()
                .map_err(|_| Error::Url(format!("bad port {p:?}")))?,
        };
        if target.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
            return Err(Error::Url(
                "the path has spaces or non-ASCII bytes; percent-encode them".into(),
            ));
        }
        Ok(Url {
            host: host.to_owned(),
            port,
            target,
        })
    }

    /// The `Host` header value.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A client connection's [`Connection`] and the socket it writes to, shared by the
/// reading thread (which decodes and sends the answers the connection owes) and every
/// [`Sender`]. One lock for both: a frame is encoded and written whole before another
/// thread's, and every decision about what may be sent is the connection's.
struct Link {
    conn: Connection,
    write: TcpStream,
}

impl Link {
    /// Writes what the connection queued. A write that fails may have cut a frame:
    /// nothing more is sent.
    fn flush(&mut self) -> Result<(), Error> {
        let out = self.conn.output();
        if out.is_empty() {
            return Ok(());
        }
        let written = self.write.write_all(out);
        out.clear();
        if let Err(e) = written {
            self.conn.terminate();
            return Err(e.into());
        }
        Ok(())
    }
}

/// What the connection refuses to send, as the client's error.
fn refused(e: SendError) -> Error {
    match e {
        SendError::Closed => Error::Closed,
        other => Error::Ws(socket::Error::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            other,
        ))),
    }
}

/// The sending half of a [`Client`], for any thread. Cheap to clone.
#[derive(Clone)]
pub struct Sender {
    link: Arc<Mutex<Link>>,
}

impl Sender {
    /// Sends a text message in one masked frame (RFC 6455 5.3).
    pub fn send_text(&self, text: &str) -> Result<(), Error> {
        self.send(OpCode::Text, text.as_bytes())
    }

    /// Sends a binary message in one masked frame.
    pub fn send_binary(&self, data: &[u8]) -> Result<(), Error> {
        self.send(OpCode::Binary, data)
    }

    /// Sends a message in frames of at most `fragment_bytes` payload each (5.4).
    pub fn send_fragmented(
        &self,
        opcode: OpCode,
        data: &[u8],
        fragment_bytes: usize,
    ) -> Result<(), Error> {
        let mut link = self.lock();
        link.conn
            .send_fragmented(opcode, data, fragment_bytes)
            .map_err(refused)?;
        link.flush()
    }

    /// Sends an event in the envelope `{"event": .., "data": ..}`.
    pub fn emit(&self, event: &str, data: &Value) -> Result<(), Error> {
        self.send_text(&envelope(event, data))
    }

    /// Sends a ping (5.5.2) with at most 125 bytes of payload.
    pub fn ping(&self, payload: &[u8]) -> Result<(), Error> {
        self.send(OpCode::Ping, payload)
    }

    /// Starts the closing handshake (RFC 6455 7.1.2) with `code`; the reading side
    /// then sees the server's close. Nothing more can be sent.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), Error> {
        let mut link = self.lock();
        if code == close::NO_STATUS {
            return Err(refused(SendError::BadCloseCode(code)));
        }
        link.conn.close(code, reason).map_err(refused)?;
        link.flush()
    }

    /// Whether data may still be sent: no close went out and the connection stands.
    pub fn is_open(&self) -> bool {
        self.lock().conn.state() == State::Open
    }

    fn send(&self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        let mut link = self.lock();
        link.conn.send(true, opcode, payload).map_err(refused)?;
        link.flush()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Link> {
        // Every method leaves the link consistent before it can panic.
        self.link.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Size of a client's read buffer: a whole 16 KiB message or many small frames per
/// read.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// A blocking WebSocket client.
pub struct Client {
    read: TcpStream,
    input: ReadBuffer,
    sender: Sender,
    protocol: Option<String>,
}

impl Client {
    /// Connects to a `ws://` URL and runs the opening handshake, within 10 s.
    pub fn connect(url: &str) -> Result<Client, Error> {
        Client::connect_with(url, &[], Duration::from_secs(10))
    }

    /// Connects offering `protocols` (`Sec-WebSocket-Protocol`), with a deadline for
    /// the TCP connection and one for the handshake.
    pub fn connect_with(url: &str, protocols: &[&str], timeout: Duration) -> Result<Client, Error> {
        Client::connect_limited(url, protocols, timeout, Limits::default())
    }

    /// [`Client::connect_with`], receiving frames and messages up to `limits`.
    pub fn connect_limited(
        url: &str,
        protocols: &[&str],
        timeout: Duration,
        limits: Limits,
    ) -> Result<Client, Error> {
        let url = Url::parse(url)?;
        let addrs: Vec<_> = (url.host.as_str(), url.port).to_socket_addrs()?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let mut stream = stream.ok_or(last)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let (_response, protocol, leftover) = socket::client_handshake(
            &mut stream,
            &url.host_header(),
            &url.target,
            protocols,
            HeadLimits::default(),
        )?;
        stream.set_read_timeout(None)?;
        let link = Link {
            conn: Connection::client(limits, crate::secure::masking_keys()),
            write: stream.try_clone()?,
        };
        Ok(Client {
            read: stream,
            input: ReadBuffer::new(READ_BUFFER_BYTES, &leftover),
            sender: Sender {
                link: Arc::new(Mutex::new(link)),
            },
            protocol,
        })
    }

    /// The subprotocol the server selected.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// A sending half for other threads.
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// Sends a text message.
    pub fn send_text(&self, text: &str) -> Result<(), Error> {
        self.sender.send_text(text)
    }

    /// Sends an event in the envelope.
    pub fn emit(&self, event: &str, data: &Value) -> Result<(), Error> {
        self.sender.emit(event, data)
    }

    /// Waits for the next message or control frame. The [`Connection`] answers: a
    /// ping with a pong (5.5.2), a close with its echo (5.5.1), a broken rule with the
    /// failing close (7.1.7); after a close nothing more can be sent.
    pub fn read(&mut self) -> Result<Event, Error> {
        loop {
            {
                let mut link = self.sender.lock();
                match self.input.decode(&mut link.conn) {
                    Ok(Some(event)) => {
                        link.flush()?;
                        return Ok(event);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = link.flush();
                        link.conn.terminate();
                        return Err(Error::Ws(socket::Error::Protocol(e)));
                    }
                }
                if link.conn.state() == State::Closed {
                    return Err(Error::Ws(socket::Error::Closed));
                }
            }
            if let Err(e) = self.input.fill(&mut self.read) {
                // A timeout leaves the connection as it was: a later read goes on.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    self.sender.lock().conn.terminate();
                }
                return Err(Error::Ws(socket::Error::Io(e)));
            }
        }
    }

    /// Sets how long [`Client::read`] may wait (`None`: for ever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), Error> {
        Ok(self.read.set_read_timeout(timeout)?)
    }

    /// Closes with `code` and waits up to 5 s for the server's close, then ends TCP.
    pub fn close(mut self, code: u16, reason: &str) -> Result<(), Error> {
        self.sender.close(code, reason)?;
        self.set_read_timeout(Some(Duration::from_secs(5)))?;
        while let Ok(event) = self.read() {
            if let Event::Close(_) = event {
                break;
            }
        }
        // The server closes TCP first (7.1.1); then we do.
        let mut sink = [0u8; 256];
        while matches!(self.read.read(&mut sink), Ok(n) if n > 0) {}
        let _ = self.read.shutdown(Shutdown::Both);
        Ok(())
    }
}

/// What an [`EventClient`] reports.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// Connected (first time or again); events can be sent.
    Ready,
    /// The connection is gone; attempt `attempt` follows after `delay`.
    Reconnecting {
        /// 1 for the first attempt after a loss.
        attempt: u32,
        /// The wait before this attempt.
        delay: Duration,
    },
    /// `max_attempts` attempts in a row failed; the client gives up.
    ReconnectionFail,
    /// The server closed with one of [`Options::final_codes`]; the client stops.
    Stopped {
        /// The close code, such as 4003.
        code: u16,
        /// The server's reason.
        reason: String,
    },
    /// The server said `end` (it is restarting): the client will come back.
    End(Value),
    /// An event from the server.
    Event(String, Value),
    /// A message that is not an event (not JSON, or binary), as text.
    Other(String),
}

/// Settings of an [`EventClient`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Reconnection attempts in a row before giving up. Default 3.
    pub max_attempts: u32,
    /// The first backoff. Default 1 s; each failed attempt doubles it.
    pub min_delay: Duration,
    /// The longest backoff. Default 30 s.
    pub max_delay: Duration,
    /// Deadline of each connection and handshake. Default 10 s.
    pub connect_timeout: Duration,
    /// Subprotocols offered.
    pub protocols: Vec<String>,
    /// Close codes after which the client does not come back: the server said not to.
    /// Default `[4003]`, a user kicked by an admin (docs/EVENTS.md, close codes).
    pub final_codes: Vec<u16>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_attempts: 3,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            protocols: Vec::new(),
            final_codes: vec![4003],
        }
    }
}

/// The longest wait a server's `end` can ask of an [`EventClient`]: 10 minutes.
pub const MAX_SERVER_DELAY: Duration = Duration::from_secs(600);

/// A client that speaks events and reconnects by itself. Iterate over it (each item
/// waits for the next thing to happen); send with [`EventClient::emit`] or a [`EventClient::sender`].
pub struct EventClient {
    url: String,
    options: Options,
    client: Option<Client>,
    /// Failed attempts since the connection was lost.
    failed: u32,
    /// The delay window the server's `end` suggested, for the next attempt.
    hint: Option<(Duration, Duration)>,
    pending: VecDeque<Incoming>,
    /// An attempt was announced; it waits this long, then connects.
    due: Option<Duration>,
    dead: bool,
    random: Urandom,
}

impl EventClient {
    /// Connects; the first item is [`Incoming::Ready`]. A first
    /// connection that fails is an error: nothing was lost yet to come back to.
    pub fn connect(url: &str, options: Options) -> Result<EventClient, Error> {
        let mut me = EventClient::unconnected(url, options);
        me.client = Some(me.open()?);
        me.pending.push_back(Incoming::Ready);
        Ok(me)
    }

    fn unconnected(url: &str, options: Options) -> EventClient {
        EventClient {
            url: url.to_owned(),
            options,
            client: None,
            failed: 0,
            hint: None,
            pending: VecDeque::new(),
            due: None,
            dead: false,
            random: Urandom::new(),
        }
    }

    fn open(&self) -> Result<Client, Error> {
        let protocols: Vec<&str> = self.options.protocols.iter().map(String::as_str).collect();
        Client::connect_with(&self.url, &protocols, self.options.connect_timeout)
    }

    /// Sends an event; fails while disconnected.
    pub fn emit(&self, event: &str, data: &Value) -> Result<(), Error> {
        self.client.as_ref().ok_or(Error::Closed)?.emit(event, data)
    }

    /// The current connection's sender, if connected.
    pub fn sender(&self) -> Option<Sender> {
        self.client.as_ref().map(Client::sender)
    }

    /// Closes the current connection (1000) and stops: `next` returns `None`.
    pub fn close(&mut self) {
        self.dead = true;
        if let Some(c) = self.client.take() {
            let _ = c.close(close::NORMAL, "");
        }
    }

    fn on_text(&mut self, text: String) -> Incoming {
        match parse_envelope(&text) {
            Ok((name, data)) if name == "end" => {
                let ms = |key: &str| {
                    data.get(key)
                        .and_then(Value::as_u64)
                        .map(Duration::from_millis)
                };
                if let (Some(min), Some(max)) = (ms("minDelayMs"), ms("maxDelayMs")) {
                    self.hint = Some((min, max.max(min)));
                }
                Incoming::End(data)
            }
            Ok((name, data)) => Incoming::Event(name, data),
            Err(_) => Incoming::Other(text),
        }
    }

    /// One attempt: report it (the caller sees [`Incoming::Reconnecting`] first), then,
    /// on the next call, wait and connect.
    fn reconnect(&mut self) {
        if let Some(delay) = self.due.take() {
            std::thread::sleep(delay);
            if let Ok(client) = self.open() {
                self.client = Some(client);
                self.failed = 0;
                self.hint = None;
                self.pending.push_back(Incoming::Ready);
            }
            return;
        }
        if self.failed >= self.options.max_attempts {
            self.dead = true;
            self.pending.push_back(Incoming::ReconnectionFail);
            return;
        }
        self.failed += 1;
        let delay = self.delay();
        self.due = Some(delay);
        self.pending.push_back(Incoming::Reconnecting {
            attempt: self.failed,
            delay,
        });
    }

    /// The wait before the next attempt: within the server's `end` window if it gave
    /// one, else `min_delay` doubled per failed attempt up to `max_delay`; either way
    /// spread at random so that clients do not all come back at once.
    fn delay(&mut self) -> Duration {
        let mut bytes = [0u8; 4];
        let r = match self.random.fill(&mut bytes) {
            Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
            Err(_) => 0.5,
        };
        if let Some((min, max)) = self.hint.take() {
            // A server's window is followed, up to a bound: a bad value must not park
            // the client for ever.
            let (min, max) = (min.min(MAX_SERVER_DELAY), max.min(MAX_SERVER_DELAY));
            return min + (max - min).mul_f64(r);
        }
        let doubling = 2u32.saturating_pow(self.failed.saturating_sub(1).min(16));
        let full = self
            .options
            .min_delay
            .saturating_mul(doubling)
            .min(self.options.max_delay);
        // "Equal jitter": half fixed, half random.
        full / 2 + (full / 2).mul_f64(r)
    }
}

/// Each item is the next thing that happened, waited for; the iteration ends once
/// the client gave up or was closed.
impl Iterator for EventClient {
    type Item = Incoming;

    /// The next thing that happened, waiting for it; `None` once the client gave up
    /// or was closed.
    fn next(&mut self) -> Option<Incoming> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.dead {
                return None;
            }
            match self.client.as_mut() {
                Some(client) => match client.read() {
                    Ok(Event::Text(text)) => return Some(self.on_text(text)),
                    Ok(Event::Binary(data)) => {
                        return Some(Incoming::Other(String::from_utf8_lossy(&data).into_owned()))
                    }
                    Ok(Event::Ping(_) | Event::Pong(_)) => {}
                    Ok(Event::Close(Some(f))) if self.options.final_codes.contains(&f.code) => {
                        self.client = None;
                        self.dead = true;
                        return Some(Incoming::Stopped {
                            code: f.code,
                            reason: f.reason,
                        });
                    }
                    Ok(Event::Close(_)) | Err(_) => self.client = None,
                },
                None => self.reconnect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("ws://127.0.0.1:9001/chat?room=a").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("127.0.0.1", 9001, "/chat?room=a")
        );
        assert_eq!(u.host_header(), "127.0.0.1:9001");
        let u = Url::parse("ws://example.com").unwrap();
        assert_eq!(
            (u.port, u.target.as_str(), u.host_header().as_str()),
            (80, "/", "example.com")
        );
        let u = Url::parse("ws://example.com?x=1").unwrap();
        assert_eq!(u.target, "/?x=1");
        let u = Url::parse("ws://[::1]:9001/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.host_header().as_str()),
            ("::1", "[::1]:9001")
        );
        for bad in [
            "http://x/",
            "wss://x/",
            "ws://",
            "ws://:80/",
            "ws://x:port/",
            "ws://u@x/",
            "ws://x/a b",
            "ws://[::1/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_and_follows_the_end_hint() {
        let mut c = EventClient::unconnected(
            "",
            Options {
                min_delay: Duration::from_millis(100),
                max_delay: Duration::from_millis(1000),
                ..Options::default()
            },
        );
        for (failed, full) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (9, 1000)] {
            c.failed = failed;
            for _ in 0..20 {
                let d = c.delay();
                assert!(
                    d >= Duration::from_millis(full / 2) && d <= Duration::from_millis(full),
                    "attempt {failed}: {d:?}"
                );
            }
        }
        c.hint = Some((Duration::from_millis(200), Duration::from_millis(300)));
        let d = c.delay();
        assert!(
            d >= Duration::from_millis(200) && d <= Duration::from_millis(300),
            "{d:?}"
        );
        assert!(c.hint.is_none(), "the hint is used once");
        // A window past MAX_SERVER_DELAY is cut to it.
        c.hint = Some((Duration::from_secs(u64::MAX / 2000), Duration::MAX));
        assert_eq!(c.delay(), MAX_SERVER_DELAY);
    }
}
