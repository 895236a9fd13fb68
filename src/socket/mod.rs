//! A blocking WebSocket over any `Read + Write`, in either role.
//!
//! This layer moves bytes between a stream and the sans-I/O [`protocol`]: it reads
//! into one reused buffer and decodes every frame a read returned, answers pings,
//! echoes a peer's close, fails the connection with the right close code when the peer
//! breaks a rule, and writes each frame's header and payload with one system call. It
//! knows nothing of users or JSON.
//!
//! [`accept`] and [`connect`] run the opening handshake over the stream; a stream that
//! is already past it is wrapped with [`WebSocket::from_raw`].

use crate::protocol::close;
use crate::protocol::connection::{Connection, SendError};
use crate::protocol::frame::{OpCode, COPY_PAYLOAD_BYTES, MAX_HEADER_BYTES};
use crate::protocol::handshake::HeadLimits;
use crate::protocol::message::{Event, FrameTrace, Limits};
use crate::protocol::{self, Role};
use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

mod opening;
pub use opening::{
    accept, accept_request, accept_with, client_handshake, connect, read_request, DeadlineStream,
};

/// Settings of one WebSocket. Every limit has a documented default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Frame and message size limits (1009 when exceeded). See [`Limits`].
    pub limits: Limits,
    /// Bounds on the opening handshake's head (431 when exceeded). See [`HeadLimits`].
    pub head_limits: HeadLimits,
    /// Size of the reused read buffer. Default 16 KiB: one read takes a whole 16 KiB
    /// message or many small frames, and an idle connection holds no more.
    pub read_buffer_bytes: usize,
    /// How long [`WebSocket::close_and_wait`] waits for the peer's close, and how long a
    /// closing server drains the peer before it drops TCP. Default 5 s.
    pub close_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            head_limits: HeadLimits::default(),
            read_buffer_bytes: 16 * 1024,
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// What can go wrong on a WebSocket.
#[derive(Debug)]
pub enum Error {
    /// The stream failed, timed out, or ended without a close frame (close code 1006
    /// in the terms of RFC 6455 7.1.5).
    Io(io::Error),
    /// The peer broke a rule of RFC 6455. The answer has already been sent: an HTTP
    /// error during the handshake, a close frame with [`protocol::Error::close_code`]
    /// after it.
    Protocol(protocol::Error),
    /// The closing handshake is over; nothing more can be read or sent.
    Closed,
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "i/o: {e}"),
            Error::Protocol(e) => write!(f, "protocol: {e}"),
            Error::Closed => f.write_str("connection closed"),
        }
    }
}

impl std::error::Error for Error {}

/// Where a traced frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received from the peer.
    In,
    /// Sent to the peer.
    Out,
}

/// Receives every frame in and out when tracing is on (`--trace-frames`).
pub type Tracer = Box<dyn FnMut(Direction, &FrameTrace) + Send>;

pub use crate::protocol::connection::State;

/// Bytes read from a stream and not yet decoded: one buffer, reused for every read,
/// whose bytes are decoded before the next read. Shared by [`WebSocket`] and the
/// client.
pub(crate) struct ReadBuffer {
    buf: Vec<u8>,
    pos: usize,
    len: usize,
}

impl ReadBuffer {
    /// A buffer of `size` bytes (more if `leftover` needs it) holding `leftover`, the
    /// bytes read past the handshake.
    pub(crate) fn new(size: usize, leftover: &[u8]) -> Self {
        let mut buf = vec![0; size.max(leftover.len()).max(MAX_HEADER_BYTES)];
        buf[..leftover.len()].copy_from_slice(leftover);
        ReadBuffer {
            buf,
            pos: 0,
            len: leftover.len(),
        }
    }

    /// Decodes with `conn` until one event, or until what was read is used up
    /// (`Ok(None)`). What the event calls for is in `conn`'s output.
    pub(crate) fn decode(
        &mut self,
        conn: &mut Connection,
    ) -> Result<Option<Event>, protocol::Error> {
        while self.pos < self.len {
            let (n, event) = conn.receive(&self.buf[self.pos..self.len])?;
            self.pos += n;
            if event.is_some() {
                return Ok(event);
            }
        }
        Ok(None)
    }

    /// Refills the buffer with one read; `UnexpectedEof` when the peer closed TCP.
    pub(crate) fn fill(&mut self, stream: &mut impl Read) -> io::Result<()> {
        self.pos = 0;
        self.len = 0;
        loop {
            match stream.read(&mut self.buf) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed TCP without a close frame",
                    ))
                }
                Ok(n) => {
                    self.len = n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// A write buffer grown past this by one large frame is given back afterwards.
const KEEP_WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Queued frames are written once they add up to this much, so the queue stays small
/// however many frames one read answers.
const FLUSH_AT_BYTES: usize = 64 * 1024;

/// A WebSocket connection over a blocking stream: a [`Connection`] (every protocol
/// decision) driven by reads and writes on `stream`.
pub struct WebSocket<S> {
    stream: S,
    config: Config,
    conn: Connection,
    input: ReadBuffer,
    tracer: Option<Tracer>,
}

impl<S: Read + Write> WebSocket<S> {
    /// Wraps a stream whose opening handshake is done. `leftover` holds bytes read past
    /// the handshake (frames the peer sent right away); they are decoded first.
    pub fn from_raw(stream: S, role: Role, config: Config, leftover: &[u8]) -> Self {
        let conn = match role {
            Role::Server => Connection::server(config.limits),
            Role::Client => Connection::client(config.limits, crate::secure::masking_keys()),
        };
        WebSocket {
            stream,
            config,
            conn,
            input: ReadBuffer::new(config.read_buffer_bytes, leftover),
            tracer: None,
        }
    }

    /// Calls `tracer` with every frame received and sent from now on.
    pub fn set_tracer(&mut self, tracer: Option<Tracer>) {
        self.conn.set_tracing(tracer.is_some());
        self.tracer = tracer;
    }

    /// The connection state.
    pub fn state(&self) -> State {
        self.conn.state()
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.conn.role()
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Reads the next message or control frame.
    ///
    /// [`Connection`] decides the answers: a ping's pong (5.5.2) is queued when the
    /// ping is returned and leaves with the next write or flush, at the latest before
    /// this method next blocks. A close from the peer is echoed with its status code
    /// (5.5.1) before it is returned; after that, [`Error::Closed`]. When the peer
    /// breaks a rule, the connection is failed (7.1.7): a close frame with the
    /// matching code is sent and [`Error::Protocol`] returned.
    pub fn read(&mut self) -> Result<Event, Error> {
        loop {
            // 1. Decode what the last read left in the buffer.
            let decoded = self.input.decode(&mut self.conn);
            self.emit_traces();
            match decoded {
                Ok(Some(event)) => {
                    if matches!(event, Event::Close(_)) {
                        self.flush()?;
                    }
                    return Ok(event);
                }
                Ok(None) => {}
                Err(e) => {
                    // The peer already broke the protocol; if the close cannot be
                    // written either, the error to report is still the peer's.
                    let _ = self.flush();
                    self.conn.terminate();
                    return Err(Error::Protocol(e));
                }
            }
            if self.conn.state() == State::Closed {
                return Err(Error::Closed);
            }
            // 2. Everything queued goes out before we block: the answers to all the
            //    frames the last read held leave in one write.
            self.flush()?;
            // 3. Refill the buffer with one read.
            if let Err(e) = self.input.fill(&mut self.stream) {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    self.conn.terminate();
                }
                return Err(Error::Io(e));
            }
        }
    }

    fn emit_traces(&mut self) {
        if let Some(tracer) = self.tracer.as_mut() {
            for t in self.conn.take_received_traces() {
                tracer(Direction::In, &t);
            }
            for t in self.conn.take_sent_traces() {
                tracer(Direction::Out, &t);
            }
        }
    }

    /// Queues a text message in one frame. Queued frames leave with [`WebSocket::flush`],
    /// before the next blocking read, or once the queue holds `FLUSH_AT_BYTES`; so a
    /// loop that answers every message it reads sends all the answers to one read in
    /// one system call.
    pub fn write_text(&mut self, text: &str) -> Result<(), Error> {
        self.queue_frame(true, OpCode::Text, text.as_bytes())
    }

    /// Queues a binary message in one frame; see [`WebSocket::write_text`].
    pub fn write_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.queue_frame(true, OpCode::Binary, data)
    }

    /// Sends a text message in one frame, now.
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.write_text(text)?;
        self.flush()
    }

    /// Sends a binary message in one frame, now.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.write_binary(data)?;
        self.flush()
    }

    /// Sends a message in frames of at most `fragment_bytes` payload each (5.4). A text
    /// message may be cut inside a code point: the receiver validates across frames.
    pub fn send_fragmented(
        &mut self,
        opcode: OpCode,
        data: &[u8],
        fragment_bytes: usize,
    ) -> Result<(), Error> {
        let sent = self.conn.send_fragmented(opcode, data, fragment_bytes);
        self.emit_traces();
        sent.map_err(refused)?;
        self.flush()
    }

    /// Sends a ping (5.5.2), now. At most 125 bytes of payload.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.send_control(OpCode::Ping, payload)
    }

    /// Sends an unsolicited pong, a one-way heartbeat (5.5.3), now.
    pub fn pong(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.send_control(OpCode::Pong, payload)
    }

    /// Starts the closing handshake (7.1.2): sends a close and keeps reading until the
    /// peer's close arrives ([`WebSocket::read`] returns it). `code` must be valid on the
    /// wire (7.4); the reason is cut to fit 123 bytes. Nothing is sent when a close
    /// already went out.
    pub fn close(&mut self, code: u16, reason: &str) -> Result<(), Error> {
        if code == close::NO_STATUS {
            return Err(refused(SendError::BadCloseCode(code)));
        }
        self.conn.close(code, reason).map_err(refused)?;
        self.emit_traces();
        self.flush()
    }

    /// Writes everything queued.
    ///
    /// A write that fails (or times out) may have sent part of a frame, so nothing more
    /// can be sent on this stream: the state becomes `Closed`.
    pub fn flush(&mut self) -> Result<(), Error> {
        let out = self.conn.output();
        if !out.is_empty() {
            if let Err(e) = self.stream.write_all(out) {
                return Err(self.write_failed(e));
            }
            out.clear();
            if out.capacity() > KEEP_WRITE_BUFFER_BYTES {
                *out = Vec::new();
            }
        }
        self.stream.flush().map_err(|e| self.write_failed(e))
    }

    /// After a failed write the stream may end inside a frame: give up on it.
    fn write_failed(&mut self, e: io::Error) -> Error {
        self.conn.terminate();
        Error::Io(e)
    }

    fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        self.queue_frame(true, opcode, payload)?;
        self.flush()
    }

    /// Queues one frame ([`Connection::send`]: a client masks it with a fresh key, a
    /// server never masks). Header and payload leave in the same system call: small
    /// frames are copied into the queue; a large server frame goes out at once with
    /// one `writev` of the queue, its header and its payload, uncopied.
    fn queue_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        if self.conn.role() == Role::Server && payload.len() > COPY_PAYLOAD_BYTES {
            let header = self.conn.send_header(fin, opcode, payload.len());
            self.emit_traces();
            let header = header.map_err(refused)?;
            let mut head = Vec::with_capacity(MAX_HEADER_BYTES);
            header.encode(&mut head);
            let written = write_all_vectored(
                &mut self.stream,
                &mut [
                    IoSlice::new(self.conn.output()),
                    IoSlice::new(&head),
                    IoSlice::new(payload),
                ],
            );
            if let Err(e) = written {
                return Err(self.write_failed(e));
            }
            self.conn.output().clear();
            return Ok(());
        }
        let sent = self.conn.send(fin, opcode, payload);
        self.emit_traces();
        sent.map_err(refused)?;
        if self.conn.output().len() >= FLUSH_AT_BYTES {
            self.flush()?;
        }
        Ok(())
    }
}

/// What [`Connection`] refuses to send, as this layer's error: sending after a close
/// is [`Error::Closed`]; the rest is the caller's mistake.
fn refused(e: SendError) -> Error {
    match e {
        SendError::Closed => Error::Closed,
        other => Error::Io(io::Error::new(io::ErrorKind::InvalidInput, other)),
    }
}

/// `write_all` for a list of buffers: one `writev` when the kernel takes it all.
fn write_all_vectored<W: Write>(w: &mut W, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "stream took no bytes",
                ))
            }
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl WebSocket<TcpStream> {
    /// Closes and waits up to `close_timeout` for the peer's close (7.1.2), then drops
    /// TCP the way [`WebSocket::shutdown`] does.
    pub fn close_and_wait(&mut self, code: u16, reason: &str) -> Result<(), Error> {
        self.close(code, reason)?;
        let deadline = Instant::now() + self.config.close_timeout;
        while self.conn.state() == State::Closing {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.read() {
                Ok(_) => {}
                Err(Error::Io(_)) | Err(Error::Closed) => break,
                Err(e) => return Err(e),
            }
        }
        self.shutdown();
        Ok(())
    }

    /// Ends the TCP connection after the close frames. 7.1.1: "the server SHOULD close
    /// the underlying TCP connection first", and the client SHOULD wait for it. So a
    /// server sends FIN at once and drains the peer ([`linger_close`]); a client
    /// drains until the server's FIN, then closes. Either waits at most
    /// `close_timeout`.
    pub fn shutdown(&mut self) {
        if self.conn.role() == Role::Client {
            drain_until_eof(&self.stream, self.config.close_timeout);
        }
        linger_close(&self.stream, self.config.close_timeout);
        self.conn.terminate();
    }
}

/// Closes our side of `stream` and drains the peer until it closes too or `timeout`
/// passes, so that the last bytes we wrote (a close frame, an HTTP error) are read by
/// the peer rather than lost to an RST sent for unread input.
pub fn linger_close(stream: &TcpStream, timeout: Duration) {
    let _ = stream.shutdown(Shutdown::Write);
    drain_until_eof(stream, timeout);
}

/// Reads and discards until the peer closes, an error, or `timeout` passes.
fn drain_until_eof(stream: &TcpStream, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut sink = [0u8; 4096];
    let mut reader = stream;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match reader.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// One line describing a frame, for people watching the protocol:
/// `<- FIN=1 RSV=000 op=0x1 text MASK=1 key=37fa213d len=5 | 48 65 6c 6c 6f | "Hello"`.
pub fn describe_frame(direction: Direction, t: &FrameTrace) -> String {
    let h = &t.header;
    let mut line = format!(
        "{} FIN={} RSV={}{}{} op={:#x} {} MASK={}",
        if direction == Direction::In {
            "<-"
        } else {
            "->"
        },
        h.fin as u8,
        h.rsv1 as u8,
        h.rsv2 as u8,
        h.rsv3 as u8,
        h.opcode.bits(),
        h.opcode.name(),
        h.masking_key.is_some() as u8,
    );
    if let Some(k) = h.masking_key {
        line.push_str(&format!(
            " key={:02x}{:02x}{:02x}{:02x}",
            k[0], k[1], k[2], k[3]
        ));
    }
    line.push_str(&format!(" len={}", h.payload_len));
    if !t.preview.is_empty() {
        line.push_str(" |");
        for b in &t.preview {
            line.push_str(&format!(" {b:02x}"));
        }
        if (t.preview.len() as u64) < h.payload_len {
            line.push_str(" ..");
        }
        match h.opcode {
            OpCode::Close if t.preview.len() >= 2 => {
                let code = u16::from_be_bytes([t.preview[0], t.preview[1]]);
                line.push_str(&format!(
                    " | code={code} {:?}",
                    String::from_utf8_lossy(&t.preview[2..])
                ));
            }
            _ => {
                let text: String = String::from_utf8_lossy(&t.preview)
                    .chars()
                    .map(|c| if c.is_control() { '.' } else { c })
                    .collect();
                line.push_str(&format!(" | {text:?}"));
            }
        }
    }
    line
}

#[cfg(test)]
mod tests;
