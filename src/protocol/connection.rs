//! One WebSocket connection's state machine (RFC 6455 4.1, 5.5, 7.1), sans-I/O.
//!
//! [`Lifecycle`] holds every decision a connection makes on its own: a ping is answered
//! with a pong (5.5.2), a peer's close is echoed with its code (5.5.1), a broken rule
//! fails the connection with the matching close code (7.1.7), a close is sent at most
//! once and no data frame follows it (5.5.1). It takes events and returns the
//! [`Reply`] the peer is owed; it holds no bytes, so a multi-threaded caller can keep
//! it under the same lock as its send queue while the decoder stays on the reading
//! thread.
//!
//! [`Connection`] is a [`Lifecycle`] with its [`Decoder`] and an output buffer, for a
//! caller that owns the whole connection: bytes in, events out, bytes to send. The
//! masking keys a client needs (5.3) come from the caller.

use super::close;
use super::frame::{self, FrameHeader, OpCode, MAX_CONTROL_PAYLOAD_BYTES};
use super::mask;
use super::message::{Decoder, Event, FrameTrace, Limits, TRACE_PREVIEW_BYTES};
use super::{Error, Role};
use std::fmt;

/// The connection states of RFC 6455 4.1 and 7.1, from this end's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Data flows both ways.
    Open,
    /// This end sent a close and waits for the peer's (7.1.2).
    Closing,
    /// Both closes were exchanged, or the connection failed (7.1.7): nothing more is
    /// sent; the caller ends the transport.
    Closed,
}

/// A control frame this end owes the peer. The caller encodes it (masked in the client
/// role) and sends it after anything already queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The answer to a ping, with its payload (5.5.2).
    Pong(Vec<u8>),
    /// A close frame's payload: an echo (5.5.1), a failure (7.1.7), or a close this
    /// end started (7.1.2).
    Close(Vec<u8>),
}

impl Reply {
    /// The frame's opcode.
    pub fn opcode(&self) -> OpCode {
        match self {
            Reply::Pong(_) => OpCode::Pong,
            Reply::Close(_) => OpCode::Close,
        }
    }

    /// The frame's payload.
    pub fn payload(&self) -> &[u8] {
        match self {
            Reply::Pong(p) | Reply::Close(p) => p,
        }
    }

    /// Appends the encoded frame to `out`, masked with `masking_key` when given.
    pub fn encode(&self, masking_key: Option<[u8; 4]>, out: &mut Vec<u8>) {
        frame::encode_frame(out, true, self.opcode(), masking_key, self.payload());
    }
}

/// What this end may not send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// A close was already sent or the connection failed: no data frame may follow
    /// (5.5.1).
    Closed,
    /// The close code may not appear on the wire (7.4.1: 1005, 1006 and 1015 are for
    /// reporting only; 7.4.2 for the reserved ranges).
    BadCloseCode(u16),
    /// A control frame's payload is over 125 bytes (5.5).
    ControlTooLarge,
    /// Only text and binary messages are fragmented (5.4).
    NotData,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed => f.write_str("a close was sent: nothing more may be sent"),
            SendError::BadCloseCode(c) => write!(f, "close code {c} may not be sent"),
            SendError::ControlTooLarge => f.write_str("control frame payload over 125 bytes"),
            SendError::NotData => f.write_str("only text and binary messages are fragmented"),
        }
    }
}

impl std::error::Error for SendError {}

/// The closing handshake and the answers the peer's frames call for, for either role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    state: State,
    /// The code this end sent in its close (1005 for an empty close), once it did.
    close_sent: Option<u16>,
    /// The code the peer's close carried (1005 for an empty one), once it came.
    close_received: Option<u16>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    /// An open connection: the opening handshake is done.
    pub fn new() -> Self {
        Lifecycle {
            state: State::Open,
            close_sent: None,
            close_received: None,
        }
    }

    /// Where the connection stands.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether data frames may still be sent: no close went out (5.5.1).
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// The code of the close this end sent, if it sent one.
    pub fn close_sent(&self) -> Option<u16> {
        self.close_sent
    }

    /// The code of the peer's close, if one came.
    pub fn close_received(&self) -> Option<u16> {
        self.close_received
    }

    /// The close code that describes how the connection ended (7.1.5): the one this end
    /// sent first if it closed first, else the peer's; 1006 when neither came.
    pub fn close_code(&self) -> u16 {
        self.close_sent
            .or(self.close_received)
            .unwrap_or(close::ABNORMAL)
    }

    /// Checks that a data frame may go out now.
    pub fn check_send(&self) -> Result<(), SendError> {
        match self.state {
            State::Open => Ok(()),
            State::Closing | State::Closed => Err(SendError::Closed),
        }
    }

    /// The peer's frame arrived; returns what it is owed.
    ///
    /// - A ping, while open: a pong with the same payload (5.5.2). After this end's
    ///   close, no answer: the close handshake is under way.
    /// - A close, while open: a close echoing its code (5.5.1, "typically echoing the
    ///   status code it received"), and the connection is closed. While closing: the
    ///   handshake is complete, nothing is owed.
    /// - Messages and pongs: nothing.
    pub fn received(&mut self, event: &Event) -> Option<Reply> {
        match event {
            Event::Ping(payload) if self.state == State::Open => Some(Reply::Pong(payload.clone())),
            Event::Close(frame) => self.peer_closed(frame.as_ref().map(|f| f.code)),
            _ => None,
        }
    }

    /// The peer's close arrived, with `code` (`None`: an empty close). While open:
    /// the echo this end owes (5.5.1), and the connection is closed. While closing:
    /// the handshake is complete, nothing is owed.
    pub fn peer_closed(&mut self, code: Option<u16>) -> Option<Reply> {
        self.close_received = Some(code.unwrap_or(close::NO_STATUS));
        let was = std::mem::replace(&mut self.state, State::Closed);
        if was != State::Open {
            return None;
        }
        let mut payload = Vec::new();
        if let Some(code) = code {
            close::encode_payload(code, "", &mut payload);
        }
        self.close_sent = self.close_received;
        Some(Reply::Close(payload))
    }

    /// The peer broke a rule: the connection fails (7.1.7) with a close carrying the
    /// error's code and fixed reason, unless a close was already sent.
    pub fn failed(&mut self, e: &Error) -> Option<Reply> {
        let code = e.close_code().unwrap_or(close::PROTOCOL_ERROR);
        self.fail_with(code, e.reason())
    }

    /// This end fails the connection for a reason of its own (a policy, a limit, a
    /// deadline): like [`Lifecycle::failed`], with `code`.
    pub fn fail_with(&mut self, code: u16, reason: &str) -> Option<Reply> {
        let reply = self.close(code, reason).ok().flatten();
        self.state = State::Closed;
        reply
    }

    /// Starts the closing handshake from this end (7.1.2) with `code`, or with an empty
    /// close when `code` is 1005. Returns the close to send, or `None` when a close
    /// already went out.
    pub fn close(&mut self, code: u16, reason: &str) -> Result<Option<Reply>, SendError> {
        if code != close::NO_STATUS && !close::is_valid_wire_code(code) {
            return Err(SendError::BadCloseCode(code));
        }
        if self.state != State::Open {
            return Ok(None);
        }
        let mut payload = Vec::new();
        if code != close::NO_STATUS {
            close::encode_payload(code, reason, &mut payload);
        }
        self.close_sent = Some(code);
        self.state = State::Closing;
        Ok(Some(Reply::Close(payload)))
    }

    /// The transport ended or failed: nothing more is sent or received.
    pub fn terminate(&mut self) {
        self.state = State::Closed;
    }
}

/// A whole connection for a caller that owns it: decoder, state machine, and the bytes
/// waiting to be sent.
pub struct Connection {
    role: Role,
    decoder: Decoder,
    lifecycle: Lifecycle,
    out: Vec<u8>,
    /// Masking keys for the client role (5.3: from "a strong source of entropy").
    keys: Option<Box<dyn FnMut() -> [u8; 4] + Send>>,
    /// Frames sent, kept while tracing is on.
    sent: Option<Vec<FrameTrace>>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("lifecycle", &self.lifecycle)
            .field("out", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A server's end of a connection: it expects masked frames and sends unmasked.
    pub fn server(limits: Limits) -> Self {
        Connection {
            role: Role::Server,
            decoder: Decoder::new(Role::Server, limits),
            lifecycle: Lifecycle::new(),
            out: Vec::new(),
            keys: None,
            sent: None,
        }
    }

    /// A client's end: every frame it sends is masked with a key from `keys`.
    pub fn client(limits: Limits, keys: impl FnMut() -> [u8; 4] + Send + 'static) -> Self {
        Connection {
            role: Role::Client,
            decoder: Decoder::new(Role::Client, limits),
            lifecycle: Lifecycle::new(),
            out: Vec::new(),
            keys: Some(Box::new(keys)),
            sent: None,
        }
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the connection stands.
    pub fn state(&self) -> State {
        self.lifecycle.state()
    }

    /// The state machine, for its close codes.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// Gives back a received message's buffer for reuse ([`Decoder::recycle`]).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.decoder.recycle(buf);
    }

    /// Keeps a [`FrameTrace`] of every frame received and sent, for people watching
    /// the protocol (`--trace-frames`).
    pub fn set_tracing(&mut self, on: bool) {
        self.decoder.set_tracing(on);
        self.sent = on.then(Vec::new);
    }

    /// The frames received since the last call, when tracing.
    pub fn take_received_traces(&mut self) -> Vec<FrameTrace> {
        self.decoder.take_traces()
    }

    /// The frames sent since the last call, when tracing.
    pub fn take_sent_traces(&mut self) -> Vec<FrameTrace> {
        self.sent.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Decodes from `bytes` until one event or the end of `bytes`; returns how many
    /// bytes it took and the event. What the event calls for (a pong, an echoed close)
    /// is added to the bytes to send. When the peer broke a rule, the failing close is
    /// added and the error returned; nothing more is decoded after it or after a close.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<(usize, Option<Event>), Error> {
        match self.decoder.decode(bytes) {
            Ok((n, Some(event))) => {
                if let Some(reply) = self.lifecycle.received(&event) {
                    self.queue_reply(&reply);
                }
                Ok((n, Some(event)))
            }
            Ok((n, None)) => Ok((n, None)),
            Err(e) => {
                if let Some(reply) = self.lifecycle.failed(&e) {
                    self.queue_reply(&reply);
                }
                Err(e)
            }
        }
    }

    /// Checks that a frame may go out and returns its header, masked in the client
    /// role, for a caller that writes a large payload itself (masking it with
    /// [`super::mask::apply_mask`] when the header has a key).
    pub fn send_header(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload_len: usize,
    ) -> Result<FrameHeader, SendError> {
        self.check_frame(opcode, payload_len)?;
        let header = FrameHeader::new(fin, opcode, self.next_key(), payload_len as u64);
        self.trace(header, &[]);
        Ok(header)
    }

    /// Adds one frame to the bytes to send. Data frames only while open; pings and
    /// unsolicited pongs (5.5.3) too.
    pub fn send(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        self.check_frame(opcode, payload.len())?;
        let header = FrameHeader::new(fin, opcode, self.next_key(), payload.len() as u64);
        self.push(header, payload);
        Ok(())
    }

    /// Adds a message in frames of at most `fragment_bytes` payload each (5.4). Text
    /// may be cut inside a code point: the receiver validates across frames.
    pub fn send_fragmented(
        &mut self,
        opcode: OpCode,
        data: &[u8],
        fragment_bytes: usize,
    ) -> Result<(), SendError> {
        if !matches!(opcode, OpCode::Text | OpCode::Binary) {
            return Err(SendError::NotData);
        }
        self.lifecycle.check_send()?;
        let mut pieces = data.chunks(fragment_bytes.max(1)).peekable();
        if pieces.peek().is_none() {
            return self.send(true, opcode, &[]);
        }
        let mut op = opcode;
        while let Some(piece) = pieces.next() {
            self.send(pieces.peek().is_none(), op, piece)?;
            op = OpCode::Continuation;
        }
        Ok(())
    }

    /// Starts the closing handshake (7.1.2). Nothing is added when a close already went
    /// out.
    pub fn close(&mut self, code: u16, reason: &str) -> Result<(), SendError> {
        if let Some(reply) = self.lifecycle.close(code, reason)? {
            self.queue_reply(&reply);
        }
        Ok(())
    }

    /// The transport ended: nothing more is sent.
    pub fn terminate(&mut self) {
        self.lifecycle.terminate();
        self.out.clear();
    }

    /// The bytes waiting to be sent. The caller writes them and clears the buffer (or
    /// drains what it wrote).
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    fn check_frame(&self, opcode: OpCode, payload_len: usize) -> Result<(), SendError> {
        if opcode.is_control() && payload_len > MAX_CONTROL_PAYLOAD_BYTES {
            return Err(SendError::ControlTooLarge);
        }
        if opcode == OpCode::Close {
            // A close goes through `close`, which keeps the state.
            return Err(SendError::NotData);
        }
        self.lifecycle.check_send()
    }

    fn next_key(&mut self) -> Option<[u8; 4]> {
        self.keys.as_mut().map(|k| k())
    }

    fn queue_reply(&mut self, reply: &Reply) {
        let payload = reply.payload();
        let header = FrameHeader::new(true, reply.opcode(), self.next_key(), payload.len() as u64);
        self.push(header, payload);
    }

    /// Encodes one frame into the output, masking the payload while copying it.
    fn push(&mut self, header: FrameHeader, payload: &[u8]) {
        self.out.reserve(header.encoded_len() + payload.len());
        header.encode(&mut self.out);
        match header.masking_key {
            Some(key) => {
                mask::extend_masked(&mut self.out, payload, key, 0);
            }
            None => self.out.extend_from_slice(payload),
        }
        self.trace(header, payload);
    }

    fn trace(&mut self, header: FrameHeader, payload: &[u8]) {
        if let Some(sent) = self.sent.as_mut() {
            let preview = payload[..payload.len().min(TRACE_PREVIEW_BYTES)].to_vec();
            sent.push(FrameTrace { header, preview });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::encode_frame;

    fn masked(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_frame(&mut v, fin, op, Some([1, 2, 3, 4]), payload);
        v
    }

    fn unmasked(op: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_frame(&mut v, true, op, None, payload);
        v
    }

    fn close_payload(code: u16) -> Vec<u8> {
        let mut p = Vec::new();
        close::encode_payload(code, "", &mut p);
        p
    }

    /// Feeds all of `input`, collecting the events and the first error.
    fn feed(c: &mut Connection, input: &[u8]) -> (Vec<Event>, Option<Error>) {
        let mut events = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            match c.receive(&input[pos..]) {
                Ok((n, e)) => {
                    pos += n;
                    events.extend(e);
                    if c.state() == State::Closed {
                        break;
                    }
                }
                Err(e) => return (events, Some(e)),
            }
        }
        (events, None)
    }

    #[test]
    fn a_ping_is_answered_with_its_payload() {
        let mut c = Connection::server(Limits::default());
        let (events, err) = feed(&mut c, &masked(true, OpCode::Ping, b"hi"));
        assert_eq!((events, err), (vec![Event::Ping(b"hi".to_vec())], None));
        assert_eq!(c.output(), &unmasked(OpCode::Pong, b"hi"));
        assert_eq!(c.state(), State::Open);
    }

    #[test]
    fn a_peer_close_is_echoed_with_its_code_once() {
        let mut c = Connection::server(Limits::default());
        let mut input = masked(true, OpCode::Close, &close_payload(4000));
        input.extend(masked(true, OpCode::Text, b"after"));
        let (events, _) = feed(&mut c, &input);
        assert_eq!(events.len(), 1);
        assert_eq!(c.output(), &unmasked(OpCode::Close, &close_payload(4000)));
        assert_eq!(c.state(), State::Closed);
        assert_eq!(c.lifecycle().close_code(), 4000);
        assert_eq!(c.send(true, OpCode::Text, b"x"), Err(SendError::Closed));
    }

    #[test]
    fn an_empty_close_is_echoed_empty() {
        let mut c = Connection::server(Limits::default());
        feed(&mut c, &masked(true, OpCode::Close, b""));
        assert_eq!(c.output(), &unmasked(OpCode::Close, b""));
        assert_eq!(c.lifecycle().close_received(), Some(close::NO_STATUS));
    }

    #[test]
    fn our_close_answered_completes_without_a_second_close() {
        let mut c = Connection::server(Limits::default());
        c.close(1000, "bye").unwrap();
        assert_eq!(c.state(), State::Closing);
        let sent = std::mem::take(c.output());
        assert_eq!(sent[0], 0x88);
        // Data and pings still arrive while closing; neither is answered.
        let mut input = masked(true, OpCode::Text, b"late");
        input.extend(masked(true, OpCode::Ping, b""));
        input.extend(masked(true, OpCode::Close, &close_payload(1000)));
        let (events, err) = feed(&mut c, &input);
        assert_eq!((events.len(), err), (3, None));
        assert!(c.output().is_empty());
        assert_eq!(c.state(), State::Closed);
        // A second close is a no-op, not a second frame.
        c.close(1001, "").unwrap();
        assert!(c.output().is_empty());
    }

    #[test]
    fn a_broken_rule_fails_with_its_code() {
        // Unmasked frame to a server: 1002.
        let mut c = Connection::server(Limits::default());
        let (_, err) = feed(&mut c, &unmasked(OpCode::Text, b"x"));
        let err = err.expect("an error");
        assert_eq!(err.close_code(), Some(close::PROTOCOL_ERROR));
        let mut expected = Vec::new();
        close::encode_payload(close::PROTOCOL_ERROR, err.reason(), &mut expected);
        assert_eq!(c.output(), &unmasked(OpCode::Close, &expected));
        assert_eq!(c.state(), State::Closed);
        // Invalid UTF-8: 1007.
        let mut c = Connection::server(Limits::default());
        let (_, err) = feed(&mut c, &masked(true, OpCode::Text, &[0xff]));
        assert_eq!(err.unwrap().close_code(), Some(close::INVALID_PAYLOAD));
        assert_eq!(&c.output()[2..4], &1007u16.to_be_bytes());
    }

    #[test]
    fn a_failure_after_our_close_sends_nothing_more() {
        let mut c = Connection::server(Limits::default());
        c.close(1000, "").unwrap();
        c.output().clear();
        let (_, err) = feed(&mut c, &unmasked(OpCode::Text, b"x"));
        assert!(err.is_some());
        assert!(c.output().is_empty());
        assert_eq!(c.lifecycle().close_code(), 1000);
    }

    #[test]
    fn the_client_masks_every_frame_it_sends_and_answers() {
        let mut c = Connection::client(Limits::default(), || [9, 9, 9, 9]);
        c.send(true, OpCode::Text, b"ab").unwrap();
        assert_eq!(c.output(), &[0x81, 0x82, 9, 9, 9, 9, b'a' ^ 9, b'b' ^ 9]);
        c.output().clear();
        feed(&mut c, &unmasked(OpCode::Ping, b"p"));
        assert_eq!(c.output(), &[0x8a, 0x81, 9, 9, 9, 9, b'p' ^ 9]);
        // A masked frame to a client breaks 5.1.
        let (_, err) = feed(&mut c, &masked(true, OpCode::Text, b"x"));
        assert_eq!(err.unwrap().close_code(), Some(close::PROTOCOL_ERROR));
    }

    #[test]
    fn what_may_not_be_sent_is_refused() {
        let mut c = Connection::server(Limits::default());
        assert_eq!(c.close(1005 + 1, ""), Err(SendError::BadCloseCode(1006)));
        assert_eq!(
            c.send(true, OpCode::Ping, &[0; 126]),
            Err(SendError::ControlTooLarge)
        );
        assert_eq!(
            c.send_fragmented(OpCode::Ping, b"", 1),
            Err(SendError::NotData)
        );
        c.send_fragmented(OpCode::Text, b"abc", 2).unwrap();
        assert_eq!(c.output(), &[0x01, 2, b'a', b'b', 0x80, 1, b'c']);
        assert_eq!(c.state(), State::Open);
    }

    #[test]
    fn lifecycle_alone_answers_the_same() {
        let mut l = Lifecycle::new();
        assert_eq!(
            l.received(&Event::Ping(b"x".to_vec())),
            Some(Reply::Pong(b"x".to_vec()))
        );
        assert_eq!(l.received(&Event::Pong(vec![])), None);
        assert_eq!(l.fail_with(1008, "slow"), {
            let mut p = Vec::new();
            close::encode_payload(1008, "slow", &mut p);
            Some(Reply::Close(p))
        });
        assert_eq!((l.state(), l.close_code()), (State::Closed, 1008));
        assert_eq!(l.received(&Event::Close(None)), None);
        assert_eq!(l.close_code(), 1008);
    }
}
