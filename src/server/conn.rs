//! One connection as the rest of the server sees it: an id, the handshake it came
//! with, and a bounded send queue that any thread may add to.
//!
//! # Who writes
//!
//! Frames are appended to the queue under its mutex; whoever holds the mutex may send
//! from the front of it, always without blocking (`MSG_DONTWAIT`), so order is kept
//! and nobody ever waits on a peer:
//! - the connection's own reader thread sends its answers (echoes, pongs, replies of
//!   its handlers) just before it blocks in `read`, so the answers to everything one
//!   read returned leave in one system call;
//! - frames from other threads (a broadcast, a reply to another connection) are handed
//!   to a writer thread (`super::writer`), which sends them once the socket has room;
//! - when the socket is full, what is left waits for the writer to see room (`poll`).
//!
//! The queue is bounded in bytes ([`super::Config::max_queue_bytes`]). A frame from
//! another thread that would take it over the bound closes the connection with 1008:
//! that peer is not reading, and its queue must not grow without end. The reader's own
//! answers are never refused; when they pass the bound the reader waits for the peer to
//! read (backpressure on the one client that causes it). The queue itself is
//! `outbound.rs`.

use super::metrics::{add, inc};
use super::outbound::{Drained, Outbound};
use super::{Error, Shared};
use crate::protocol::close;
use crate::protocol::connection::Reply;
use crate::protocol::frame::{FrameHeader, OpCode, COPY_PAYLOAD_BYTES, MAX_HEADER_BYTES};
use crate::protocol::handshake::Request;
use crate::protocol::message::{Event, FrameTrace, TRACE_PREVIEW_BYTES};
use crate::socket::{describe_frame, Direction};
use crate::sys;
use std::cell::Cell;
use std::io::{self, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// The reader sends what its handlers queued once this much is waiting, without
/// waiting for its next blocking read (as much as the socket takes at once).
const READER_FLUSH_BYTES: usize = 64 * 1024;

thread_local! {
    /// The connection whose reader thread this is (0: none). Sends to it from this
    /// thread are left for the reader's flush instead of the writer thread.
    static READER_OF: Cell<u64> = const { Cell::new(0) };
}

pub(super) fn set_reader_of(id: ConnId) {
    READER_OF.with(|c| c.set(id.0));
}

/// A message as received: text (valid UTF-8) or binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// A server frame encoded once, to be queued to any number of connections without
/// copying (server frames are unmasked, RFC 6455 5.1, so the same bytes fit every
/// connection).
#[derive(Clone, Debug)]
pub struct Frame {
    bytes: Arc<[u8]>,
}

impl Frame {
    /// A text message in one frame.
    pub fn text(text: &str) -> Frame {
        Frame::encode(OpCode::Text, text.as_bytes())
    }

    /// A binary message in one frame.
    pub fn binary(data: &[u8]) -> Frame {
        Frame::encode(OpCode::Binary, data)
    }

    fn encode(opcode: OpCode, payload: &[u8]) -> Frame {
        let mut bytes = Vec::with_capacity(MAX_HEADER_BYTES + payload.len());
        crate::protocol::frame::encode_frame(&mut bytes, true, opcode, None, payload);
        Frame {
            bytes: bytes.into(),
        }
    }

    /// The encoded frame, header and payload.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// What the peer sent to open the connection, kept for handlers and the admin listener.
#[derive(Clone, Debug)]
pub struct Handshake {
    /// The request head: method, target (path and query), headers.
    pub request: Request,
    /// When the 101 was sent.
    pub time: SystemTime,
    /// The subprotocol selected, if any.
    pub protocol: Option<String>,
    /// What the handler noted when it accepted the upgrade ([`super::Accept::note`]).
    pub note: Option<super::Note>,
}

/// A connection's number, unique within one process, counted from 1. Shown as the
/// number (`7`), and sent as one in JSON (`"connectionId": 7`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl ConnId {
    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl serde::Serialize for ConnId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// A connection: its identity, its handshake, and its send queue. Shared by its reader
/// thread, its writer thread, and any handler that sends to it.
pub struct Conn {
    id: ConnId,
    peer: SocketAddr,
    handshake: Handshake,
    pub(super) stream: TcpStream,
    out: Mutex<Outbound>,
    /// Mirrors `out.lifecycle.is_open()`, so that the reader can check it for every
    /// message without taking the lock.
    open: AtomicBool,
    pub(super) shared: Arc<Shared>,
    /// Bytes its reader holds in an unfinished message and its read buffer, as last
    /// added to the global count ([`super::Config::max_buffered_bytes`]).
    pub(super) held: AtomicUsize,
    /// Chosen to be closed to bring the global count under its budget: not chosen
    /// again while its reader winds down.
    pub(super) evicted: AtomicBool,
    /// Its allowance of bad-input log lines.
    pub(super) log_budget: Mutex<super::log::LogBudget>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Conn {
    pub(super) fn new(
        id: ConnId,
        peer: SocketAddr,
        handshake: Handshake,
        stream: TcpStream,
        shared: Arc<Shared>,
    ) -> Conn {
        Conn {
            id,
            peer,
            handshake,
            stream,
            out: Mutex::new(Outbound::new()),
            open: AtomicBool::new(true),
            held: AtomicUsize::new(0),
            evicted: AtomicBool::new(false),
            log_budget: Mutex::new(super::log::LogBudget::new(
                shared.config.bad_input_logs_per_minute,
            )),
            shared,
        }
    }

    /// The connection's id, unique in this process.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The opening handshake.
    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    /// Whether data frames are still accepted.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Nothing more is written: the connection is over or its socket failed.
    fn set_done(&self, out: &mut Outbound) {
        out.done = true;
        out.lifecycle.terminate();
        self.open.store(false, Ordering::Release);
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Outbound> {
        // A handler that panicked while holding the lock leaves a queue that is
        // still consistent: every method restores its invariants before it can panic.
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_reader_thread(&self) -> bool {
        READER_OF.with(|c| c.get()) == self.id.0
    }

    /// Puts bytes that are not a frame (the 101 response) at the end of the queue.
    pub(super) fn queue_raw(&self, bytes: &[u8]) {
        self.lock().push_encoded(bytes);
    }

    /// Queues a text message in one frame.
    pub fn send_text(self: &Arc<Self>, text: &str) -> Result<(), Error> {
        self.send_payload(OpCode::Text, text.as_bytes(), None)
    }

    /// Queues a binary message in one frame.
    pub fn send_binary(self: &Arc<Self>, data: &[u8]) -> Result<(), Error> {
        self.send_payload(OpCode::Binary, data, None)
    }

    /// Queues a message, taking its buffer: a large payload is sent from it without
    /// a copy.
    pub fn send_message(self: &Arc<Self>, message: Message) -> Result<(), Error> {
        match message {
            Message::Text(t) => self.send_owned(OpCode::Text, t.into_bytes()),
            Message::Binary(b) => self.send_owned(OpCode::Binary, b),
        }
    }

    fn send_owned(self: &Arc<Self>, opcode: OpCode, payload: Vec<u8>) -> Result<(), Error> {
        if payload.len() <= COPY_PAYLOAD_BYTES {
            return self.send_payload(opcode, &payload, None);
        }
        self.send_payload(opcode, &[], Some(payload))
    }

    /// Queues a frame encoded once for many connections (see [`Frame`]).
    pub fn send_frame(self: &Arc<Self>, frame: &Frame) -> Result<(), Error> {
        self.send_frame_batched(frame, None)
    }

    /// [`Conn::send_frame`] for a broadcast, which hands every connection that needs
    /// its writer over at once (see `enqueue_batched`).
    pub(super) fn send_frame_batched(
        self: &Arc<Self>,
        frame: &Frame,
        batch: Option<&mut Vec<Arc<Conn>>>,
    ) -> Result<(), Error> {
        let len = frame.bytes.len();
        self.enqueue_batched(len, true, |out| out.push_shared(&frame.bytes), batch)?;
        if self.shared.config.trace_frames {
            if let Some((header, at)) = parse_own_header(&frame.bytes) {
                self.trace_out(header, &frame.bytes[at..]);
            }
        }
        Ok(())
    }

    /// Either `borrowed` or `owned` is the payload.
    fn send_payload(
        self: &Arc<Self>,
        opcode: OpCode,
        borrowed: &[u8],
        owned: Option<Vec<u8>>,
    ) -> Result<(), Error> {
        let payload_len = owned.as_ref().map_or(borrowed.len(), Vec::len);
        let header = FrameHeader::new(true, opcode, None, payload_len as u64);
        self.trace_out(header, owned.as_deref().unwrap_or(borrowed));
        let len = header.encoded_len() + payload_len;
        self.enqueue(len, true, move |out| match owned {
            Some(payload) => out.push_frame(&header, payload),
            None => out.push_small(&header, borrowed),
        })
    }

    /// Queues a pong or ping from the reader thread. Control frames are not messages
    /// and are not counted as such.
    pub(super) fn send_control(
        self: &Arc<Self>,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<(), Error> {
        let header = FrameHeader::new(true, opcode, None, payload.len() as u64);
        self.trace_out(header, payload);
        self.enqueue(header.encoded_len() + payload.len(), false, |out| {
            out.push_small(&header, payload)
        })
    }

    /// Adds to the queue under the rules of the module comment.
    fn enqueue(
        self: &Arc<Self>,
        len: usize,
        is_message: bool,
        append: impl FnOnce(&mut Outbound),
    ) -> Result<(), Error> {
        self.enqueue_batched(len, is_message, append, None)
    }

    /// [`Conn::enqueue`]; with `batch`, a connection that needs its writer is added
    /// to `batch` for the caller to hand over with others, in one go.
    fn enqueue_batched(
        self: &Arc<Self>,
        len: usize,
        is_message: bool,
        append: impl FnOnce(&mut Outbound),
        batch: Option<&mut Vec<Arc<Conn>>>,
    ) -> Result<(), Error> {
        let own = self.on_reader_thread();
        let metrics = &self.shared.metrics;
        let mut out = self.lock();
        if !out.lifecycle.is_open() {
            inc(&metrics.dropped_after_close);
            return Err(Error::Closed);
        }
        if !own && out.queued > 0 && out.queued + len > self.shared.config.max_queue_bytes {
            // What is queued stays: frames cut short would break the stream. The
            // close goes after it, and the close deadline drops TCP if the peer
            // never reads that far.
            // The writer thread logs it: this may run under the registry's lock (a
            // broadcast), where no callback such as a `log` listener may run.
            out.overflowed = Some(out.queued);
            let hand_over =
                self.start_close(&mut out, close::POLICY_VIOLATION, "send queue overflow");
            drop(out);
            inc(&metrics.queue_overflows);
            match batch {
                Some(batch) if hand_over => batch.push(self.clone()),
                _ if hand_over => self.schedule(),
                // The writer has it: wake it to see the new deadline.
                _ => self.shared.writer_for(self.id).nudge(),
            }
            return Err(Error::QueueOverflow);
        }
        append(&mut out);
        if is_message {
            inc(&metrics.messages_out);
        }
        if own {
            // Without waiting: this may run under the registry's lock (a broadcast from
            // this connection's handler). The reader waits for room before its next read.
            if out.queued >= READER_FLUSH_BYTES && !out.scheduled {
                if let Drained::Failed(e) = self.drain(&mut out) {
                    self.set_done(&mut out);
                    drop(out);
                    let _ = self.stream.shutdown(Shutdown::Both);
                    return Err(Error::Io(e));
                }
            }
        } else if !out.scheduled {
            if batch.is_none() {
                // A single delivery from another thread (a private message, a reply to
                // a few users) is written at once from this thread when the socket has
                // room: no hand-over, no writer thread woken. Never blocks; what does
                // not fit goes to the writer as before.
                match self.drain(&mut out) {
                    Drained::Empty => return Ok(()),
                    Drained::Blocked => {}
                    Drained::Failed(e) => {
                        self.set_done(&mut out);
                        drop(out);
                        let _ = self.stream.shutdown(Shutdown::Both);
                        return Err(Error::Io(e));
                    }
                }
            }
            out.scheduled = true;
            drop(out);
            match batch {
                Some(batch) => batch.push(self.clone()),
                None => self.schedule(),
            }
        }
        Ok(())
    }

    /// Starts the closing handshake from this side (7.1.2): whatever is queued goes
    /// out first, then a close frame with `code`; the peer has `close_timeout` to
    /// answer before TCP is dropped. Returns `false` when a close was already under way.
    pub fn close(self: &Arc<Self>, code: u16, reason: &str) -> bool {
        let mut out = self.lock();
        if !out.lifecycle.is_open() {
            return false;
        }
        let hand_over = self.start_close(&mut out, code, reason);
        drop(out);
        if hand_over {
            self.schedule();
        } else {
            // The writer has it: wake it to see the new deadline.
            self.shared.writer_for(self.id).nudge();
        }
        true
    }

    /// Queues the close frame, with the deadline the writer thread enforces, and marks
    /// the connection as the writer's. Returns whether the caller must hand it over
    /// (it was not the writer's already).
    #[must_use]
    fn start_close(&self, out: &mut Outbound, code: u16, reason: &str) -> bool {
        self.queue_close(out, code, reason);
        out.close_deadline = Some(Instant::now() + self.shared.config.ws.close_timeout);
        !std::mem::replace(&mut out.scheduled, true)
    }

    /// Answers the peer's close (5.5.1) from the reader thread, as the connection's
    /// [`Lifecycle`] decides: an echo of its code while open, nothing after our own.
    pub(super) fn peer_closed(&self, code: Option<u16>) {
        let mut out = self.lock();
        let reply = out.lifecycle.peer_closed(code);
        self.queue_reply(&mut out, reply);
    }

    /// Fails the connection from its reader thread (7.1.7): a close with `code`, unless
    /// one was already sent.
    pub(super) fn fail(&self, code: u16, reason: &str) {
        let mut out = self.lock();
        let reply = out.lifecycle.fail_with(code, reason);
        self.queue_reply(&mut out, reply);
    }

    /// The pong a ping calls for (5.5.2), as the [`Lifecycle`] decides: none once a
    /// close went out. Queued with the other answers before the next blocking read.
    pub(super) fn answer_ping(self: &Arc<Self>, ping: &Event) {
        let reply = self.lock().lifecycle.received(ping);
        if let Some(reply) = reply {
            let _ = self.send_control(reply.opcode(), reply.payload());
        }
    }

    /// Queues a close frame with `code` and stops accepting data frames (5.5.1).
    fn queue_close(&self, out: &mut Outbound, code: u16, reason: &str) {
        // Codes here are the server's own constants, all valid on the wire.
        let reply = out.lifecycle.close(code, reason).ok().flatten();
        self.queue_reply(out, reply);
    }

    /// Queues a close the [`Lifecycle`] produced, after everything queued before it.
    fn queue_reply(&self, out: &mut Outbound, reply: Option<Reply>) {
        self.open.store(out.lifecycle.is_open(), Ordering::Release);
        let Some(reply) = reply else { return };
        let header = FrameHeader::new(true, reply.opcode(), None, reply.payload().len() as u64);
        self.trace_out(header, reply.payload());
        out.push_small(&header, reply.payload());
    }

    /// Hands the connection to its writer thread. Takes the `Arc` itself rather than
    /// looking the connection up: a broadcast calls this while it holds the registry's
    /// read lock, and taking that lock again could wait behind a writer forever.
    fn schedule(self: &Arc<Conn>) {
        self.shared.writer_for(self.id).schedule(self.clone());
    }

    /// Sends what is queued, from the reader thread, before it blocks in `read`, and
    /// hands over the payload buffers sent so far, for reuse.
    ///
    /// When the writer thread already owns the queue (the socket was full), this
    /// leaves it to the writer, unless the queue is over its bound: then the reader
    /// waits here until the peer reads (backpressure), for at most `write_timeout`.
    pub(super) fn flush_from_reader(
        self: &Arc<Self>,
        spent: &mut Vec<Vec<u8>>,
    ) -> Result<(), Error> {
        let limit = self.shared.config.max_queue_bytes;
        loop {
            let mut out = self.lock();
            spent.append(&mut out.spent);
            if out.is_empty() || out.done {
                return Ok(());
            }
            if !out.scheduled || out.queued > limit {
                match self.drain(&mut out) {
                    Drained::Empty => return Ok(()),
                    Drained::Failed(e) => {
                        self.set_done(&mut out);
                        drop(out);
                        let _ = self.stream.shutdown(Shutdown::Both);
                        return Err(Error::Io(e));
                    }
                    Drained::Blocked => {}
                }
            }
            if out.queued <= limit {
                // The writer takes it from here once the socket has room.
                if !out.scheduled {
                    out.scheduled = true;
                    drop(out);
                    self.schedule();
                }
                return Ok(());
            }
            let since = out.blocked_since.unwrap_or_else(Instant::now);
            drop(out);
            let left = self
                .shared
                .config
                .write_timeout
                .saturating_sub(since.elapsed());
            if left.is_zero() {
                self.stalled();
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "peer did not read for write_timeout",
                )));
            }
            self.wait_writable(left)?;
        }
    }

    /// Sends everything queued, waiting for room up to `deadline`. Used by a reader
    /// that is ending its connection, so that the close frame gets out.
    pub(super) fn flush_until(&self, deadline: Instant) -> Result<(), Error> {
        loop {
            let mut out = self.lock();
            if out.done {
                return Err(Error::Closed);
            }
            match self.drain(&mut out) {
                Drained::Empty => return Ok(()),
                Drained::Failed(e) => {
                    self.set_done(&mut out);
                    return Err(Error::Io(e));
                }
                Drained::Blocked => {}
            }
            drop(out);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "close frame not sent in time",
                )));
            }
            self.wait_writable(left)?;
        }
    }

    /// [`Outbound::drain`] on this connection's socket, counted in the metrics.
    pub(super) fn drain(&self, out: &mut Outbound) -> Drained {
        let (result, sent, calls) = out.drain(&self.stream);
        add(&self.shared.metrics.bytes_out, sent as u64);
        add(&self.shared.metrics.write_calls, calls);
        result
    }

    fn wait_writable(&self, timeout: Duration) -> Result<(), Error> {
        let mut fds = [sys::PollFd {
            fd: self.stream.as_raw_fd(),
            events: sys::POLLOUT,
            revents: 0,
        }];
        sys::poll(&mut fds, Some(timeout)).map_err(Error::Io)?;
        Ok(())
    }

    /// Gives up on the connection at once: nothing more is sent, and both directions
    /// of TCP are shut, which also wakes its reader thread.
    pub(super) fn abort(&self) {
        let mut out = self.lock();
        self.set_done(&mut out);
        out.chunks.clear();
        out.queued = 0;
        out.front_sent = 0;
        drop(out);
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Drops a peer that has not read for `write_timeout`, and says so.
    pub(super) fn stalled(&self) {
        let queued = self.lock().queued;
        self.shared.log.log(
            super::log::Level::Warn,
            Some(self.id),
            "peer stopped reading, dropped",
            &[
                ("queued", &queued),
                (
                    "write_timeout",
                    &format_args!("{:?}", self.shared.config.write_timeout),
                ),
            ],
        );
        inc(&self.shared.metrics.write_timeouts);
        self.abort();
    }

    /// Marks the sending side over: the writer drops the connection from its set.
    pub(super) fn finish(&self) {
        let mut out = self.lock();
        self.set_done(&mut out);
        out.chunks.clear();
        out.queued = 0;
    }

    /// Prints one sent frame, with `--trace-frames`.
    fn trace_out(&self, header: FrameHeader, payload: &[u8]) {
        if !self.shared.config.trace_frames {
            return;
        }
        let preview = payload[..payload.len().min(TRACE_PREVIEW_BYTES)].to_vec();
        let line = describe_frame(Direction::Out, &FrameTrace { header, preview });
        let _ = writeln!(io::stdout().lock(), "[conn {}] {line}", self.id);
    }
}

/// The header of a frame we encoded, and where its payload starts.
fn parse_own_header(bytes: &[u8]) -> Option<(FrameHeader, usize)> {
    match FrameHeader::parse(bytes) {
        Ok(crate::protocol::Status::Complete((h, n))) => Some((h, n)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_of(frames: &[&[u8]]) -> Outbound {
        let mut out = Outbound::new();
        for f in frames {
            let h = FrameHeader::new(true, OpCode::Binary, None, f.len() as u64);
            out.push_frame(&h, f.to_vec());
        }
        out
    }

    #[test]
    fn small_frames_coalesce_and_large_ones_stay_apart() {
        let big = vec![9u8; COPY_PAYLOAD_BYTES + 1];
        let out = queue_of(&[b"a", b"bc", &big, b"d"]);
        // [a, bc, header of big] in one buffer, big as it is, [d] in a new buffer.
        assert_eq!(out.chunks.len(), 3);
        assert_eq!(
            out.chunks[0].bytes(),
            &[0x82, 1, b'a', 0x82, 2, b'b', b'c', 0x82, 126, 0x10, 0x01]
        );
        assert_eq!(out.chunks[1].bytes().len(), big.len());
        assert_eq!(out.queued, 3 + 4 + 4 + big.len() + 3);
    }

    #[test]
    fn consume_walks_across_chunks() {
        let big = vec![9u8; COPY_PAYLOAD_BYTES + 1];
        let mut out = queue_of(&[b"a", &big, b"xyz"]);
        let total = out.queued;
        out.consume(5); // [a] (3) + 2 of big's header (4)
        assert_eq!((out.chunks.len(), out.front_sent), (3, 5));
        out.consume(2 + big.len());
        assert_eq!((out.chunks.len(), out.front_sent), (1, 0));
        assert_eq!(out.queued, total - 7 - big.len());
        out.consume(out.queued);
        assert!(out.is_empty() && out.chunks.is_empty());
    }
}
