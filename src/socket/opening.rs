//! The opening handshake (RFC 6455 4) over a blocking stream: reading a request or
//! response head within its limits, answering it, and the client's request; then a
//! [`WebSocket`] over the same stream.

use super::{Config, Error, WebSocket};
use crate::protocol::handshake::{
    self, HeadLimits, Offer, Request, RequestParser, Response, ResponseParser,
};
use crate::protocol::{self, Role, Status};
use crate::secure::Urandom;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Reads an HTTP request head from `stream`. Returns the request and any bytes read
/// past the head. On a malformed or oversized head, the error response has been
/// written when this returns.
pub fn read_request<S: Read + Write>(
    stream: &mut S,
    limits: HeadLimits,
) -> Result<(Request, Vec<u8>), Error> {
    let mut parser = RequestParser::new(limits);
    match read_head(stream, |buf| parser.parse(buf)) {
        Err(Error::Protocol(e)) => {
            let _ = stream.write_all(&handshake::encode_reject(&e));
            Err(Error::Protocol(e))
        }
        other => other,
    }
}

/// Reads from `stream` until `parse`, given everything read so far, finds a whole HTTP
/// head. Returns what it parsed and the bytes read past the head.
fn read_head<S, T, P>(stream: &mut S, mut parse: P) -> Result<(T, Vec<u8>), Error>
where
    S: Read,
    P: FnMut(&[u8]) -> Result<Status<(T, usize)>, protocol::Error>,
{
    // Read straight into the growing buffer: no copy, and no buffer on the stack of
    // a connection thread that may be kept small.
    const READ_BYTES: usize = 1024;
    let mut buf = Vec::with_capacity(READ_BYTES);
    loop {
        let filled = buf.len();
        buf.resize(filled + READ_BYTES, 0);
        let read = stream.read(&mut buf[filled..]);
        buf.truncate(filled + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during the handshake",
                )))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Io(e)),
        }
        if let Status::Complete((head, used)) = parse(&buf).map_err(Error::Protocol)? {
            return Ok((head, buf.split_off(used)));
        }
    }
}

/// Answers a request already read with [`read_request`]: checks it (RFC 6455 4.2.1),
/// lets `choose` pick a subprotocol from those offered, and writes the 101 or the
/// matching 4xx. `leftover` are the bytes read past the head.
pub fn accept_request<S, F>(
    mut stream: S,
    req: &Request,
    leftover: &[u8],
    config: Config,
    choose: F,
) -> Result<WebSocket<S>, Error>
where
    S: Read + Write,
    F: FnOnce(&Request, &Offer) -> Option<String>,
{
    let offer = match handshake::validate_request(req) {
        Ok(offer) => offer,
        Err(e) => {
            let _ = stream.write_all(&handshake::encode_reject(&e));
            return Err(Error::Protocol(e));
        }
    };
    // A subprotocol the client did not offer would make it fail the connection (4.1).
    let protocol = choose(req, &offer).filter(|p| offer.protocols.contains(p));
    stream.write_all(&handshake::encode_accept(&offer, protocol.as_deref(), &[]))?;
    stream.flush()?;
    Ok(WebSocket::from_raw(stream, Role::Server, config, leftover))
}

/// The server's opening handshake: [`read_request`], then [`accept_request`].
pub fn accept_with<S, F>(
    mut stream: S,
    config: Config,
    choose: F,
) -> Result<(WebSocket<S>, Request), Error>
where
    S: Read + Write,
    F: FnOnce(&Request, &Offer) -> Option<String>,
{
    let (req, leftover) = read_request(&mut stream, config.head_limits)?;
    let ws = accept_request(stream, &req, &leftover, config, choose)?;
    Ok((ws, req))
}

/// A TCP stream whose reads all end by one deadline: a per-read timeout alone lets a
/// client that sends one byte just before each timeout hold the connection for ever.
pub struct DeadlineStream<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl<'a> DeadlineStream<'a> {
    /// Reads on `stream` fail with `TimedOut` once `timeout` from now has passed.
    pub fn new(stream: &'a TcpStream, timeout: Duration) -> Self {
        DeadlineStream {
            stream,
            deadline: Instant::now() + timeout,
        }
    }
}

impl Read for DeadlineStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut s = self.stream;
        s.read(buf)
    }
}

impl Write for DeadlineStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.stream;
        s.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The server's opening handshake with no subprotocol.
pub fn accept<S: Read + Write>(
    stream: S,
    config: Config,
) -> Result<(WebSocket<S>, Request), Error> {
    accept_with(stream, config, |_, _| None)
}

/// The client's opening handshake (4.1) on `stream`: sends a request for `target` on
/// `host` with a fresh random key, offering `protocols`, and checks the response.
/// Returns the response, the subprotocol the server chose, and the bytes read past the
/// response's head (frames the server sent at once).
pub fn client_handshake<S: Read + Write>(
    stream: &mut S,
    host: &str,
    target: &str,
    protocols: &[&str],
    head_limits: HeadLimits,
) -> Result<(Response, Option<String>, Vec<u8>), Error> {
    let mut nonce = [0u8; 16];
    Urandom::new().fill(&mut nonce)?;
    let (request, key) = handshake::encode_request(host, target, nonce, protocols, &[]);
    stream.write_all(&request)?;
    stream.flush()?;
    let mut parser = ResponseParser::new(head_limits);
    let (resp, leftover) = read_head(stream, |buf| parser.parse(buf))?;
    let protocol = handshake::check_response(&resp, &key, protocols).map_err(Error::Protocol)?;
    Ok((resp, protocol, leftover))
}

/// The client's opening handshake ([`client_handshake`]), then a [`WebSocket`] over
/// `stream`. Returns the socket, the response, and the subprotocol the server chose.
pub fn connect<S: Read + Write>(
    mut stream: S,
    host: &str,
    target: &str,
    protocols: &[&str],
    config: Config,
) -> Result<(WebSocket<S>, Response, Option<String>), Error> {
    let (resp, protocol, leftover) =
        client_handshake(&mut stream, host, target, protocols, config.head_limits)?;
    let ws = WebSocket::from_raw(stream, Role::Client, config, &leftover);
    Ok((ws, resp, protocol))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{self, OpCode};
    use crate::protocol::message::Event;
    use std::io::Cursor;

    /// A stream that reads from a script and records what is written.
    struct Duplex {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
        read_max: usize,
    }

    impl Read for Duplex {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.read_max);
            self.input.read(&mut buf[..n])
        }
    }

    impl Write for Duplex {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn masked(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame::encode_frame(&mut out, fin, op, Some([1, 2, 3, 4]), payload);
        out
    }

    #[test]
    fn handshake_over_a_stream() {
        let req = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: a, b\r\n\r\n";
        let mut input = req.to_vec();
        input.extend(masked(true, OpCode::Text, b"early"));
        let duplex = Duplex {
            input: Cursor::new(input),
            output: Vec::new(),
            read_max: 7,
        };
        let (mut ws, req) = accept_with(duplex, Config::default(), |_, offer| {
            offer.protocols.last().cloned()
        })
        .unwrap();
        assert_eq!(req.target, "/echo");
        let out = String::from_utf8(ws.stream.output.clone()).unwrap();
        assert!(out.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(out.contains("Sec-WebSocket-Protocol: b\r\n"));
        assert_eq!(
            ws.read().unwrap(),
            Event::Text("early".into()),
            "bytes after the head are kept"
        );
    }
}
