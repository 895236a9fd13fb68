//! A connection's send queue: frames waiting to be sent, coalesced into few buffers,
//! sent with one vectored write each time without blocking; and the connection's
//! [`Lifecycle`] (RFC 6455 7.1), kept under the same lock so that nothing is queued
//! after its close frame.

use crate::protocol::connection::Lifecycle;
use crate::protocol::frame::{FrameHeader, COPY_PAYLOAD_BYTES};
use crate::sys;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

/// A run of small frames is coalesced into one buffer up to this size.
const COALESCE_BYTES: usize = 64 * 1024;
/// At most this many buffers go into one `sendmsg`. The array lives on the reader
/// thread's stack; see `STACK_READ_BYTES` in the parent module for why it is small.
const MAX_IOVECS: usize = 32;
#[derive(Debug)]
pub(super) enum Chunk {
    /// Small frames, coalesced; more may be appended.
    Frames(Vec<u8>),
    /// The payload of one large message, sent from the buffer it arrived in.
    Payload(Vec<u8>),
    /// A frame encoded once for many connections.
    Shared(Arc<[u8]>),
}

impl Chunk {
    pub(super) fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Frames(v) | Chunk::Payload(v) => v,
            Chunk::Shared(b) => b,
        }
    }
}

#[derive(Debug)]
pub(super) struct Outbound {
    pub(super) chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already sent.
    pub(super) front_sent: usize,
    /// Bytes queued and not yet sent.
    pub(super) queued: usize,
    /// The protocol's state machine: which closes went out and came in, and so
    /// whether data frames are still accepted (5.5.1).
    pub(super) lifecycle: Lifecycle,
    /// Nothing more is written: the connection is over or its socket failed.
    pub(super) done: bool,
    /// A close started by this server must be answered by then, or TCP is dropped.
    pub(super) close_deadline: Option<Instant>,
    /// The connection sits in its writer thread's set.
    pub(super) scheduled: bool,
    /// Since when the socket has been full with bytes still queued.
    pub(super) blocked_since: Option<Instant>,
    /// Payload buffers sent, kept for the reader to reuse (see `Decoder::recycle`).
    pub(super) spent: Vec<Vec<u8>>,
    /// The queue overflowed with this many bytes in it; not yet logged.
    pub(super) overflowed: Option<usize>,
}

/// At most this many sent payload buffers wait for reuse.
const MAX_SPENT_BUFFERS: usize = 4;

/// What one attempt to send the queue achieved.
#[derive(Debug)]
pub(super) enum Drained {
    /// Everything queued is sent.
    Empty,
    /// The socket is full; bytes remain.
    Blocked,
    /// The socket failed; the connection is over.
    Failed(io::Error),
}

impl Outbound {
    pub(super) fn new() -> Self {
        Outbound {
            chunks: VecDeque::new(),
            front_sent: 0,
            queued: 0,
            lifecycle: Lifecycle::new(),
            done: false,
            close_deadline: None,
            scheduled: false,
            blocked_since: None,
            spent: Vec::new(),
            overflowed: None,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// The coalescing buffer at the back of the queue, with room for `len` more bytes:
    /// the last one if it has room, else a new one.
    pub(super) fn tail_buffer(&mut self, len: usize) -> &mut Vec<u8> {
        let reuse = match self.chunks.back() {
            Some(Chunk::Frames(v)) => v.len() + len <= COALESCE_BYTES,
            _ => false,
        };
        if !reuse {
            self.chunks
                .push_back(Chunk::Frames(Vec::with_capacity(len.max(256))));
        }
        self.queued += len;
        match self.chunks.back_mut() {
            Some(Chunk::Frames(v)) => v,
            _ => unreachable!("a Frames buffer was just ensured at the back"),
        }
    }

    /// Appends a small frame, coalescing it with the frames before it.
    pub(super) fn push_small(&mut self, header: &FrameHeader, payload: &[u8]) {
        let v = self.tail_buffer(header.encoded_len() + payload.len());
        header.encode(v);
        v.extend_from_slice(payload);
    }

    /// Appends bytes already encoded (the 101 response), coalescing them likewise.
    pub(super) fn push_encoded(&mut self, bytes: &[u8]) {
        self.tail_buffer(bytes.len()).extend_from_slice(bytes);
    }

    pub(super) fn push_frame(&mut self, header: &FrameHeader, payload: Vec<u8>) {
        if payload.len() <= COPY_PAYLOAD_BYTES {
            self.push_small(header, &payload);
            return;
        }
        self.push_small(header, &[]);
        self.queued += payload.len();
        self.chunks.push_back(Chunk::Payload(payload));
    }

    pub(super) fn push_shared(&mut self, bytes: &Arc<[u8]>) {
        self.queued += bytes.len();
        self.chunks.push_back(Chunk::Shared(bytes.clone()));
    }

    /// Sends from the front of the queue without blocking, until it is empty or the
    /// socket is full. Returns what happened, how many bytes went out, and in how many
    /// system calls.
    pub(super) fn drain(&mut self, socket: &TcpStream) -> (Drained, usize, u64) {
        let mut total = 0;
        let mut calls = 0;
        while !self.chunks.is_empty() {
            let mut iov: [IoSlice<'_>; MAX_IOVECS] = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
                let bytes = chunk.bytes();
                iov[i] = IoSlice::new(if i == 0 {
                    &bytes[self.front_sent..]
                } else {
                    bytes
                });
                count += 1;
            }
            match sys::send_nonblocking(socket, &iov[..count]) {
                Ok(n) => {
                    total += n;
                    calls += 1;
                    self.consume(n);
                    self.blocked_since = None;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked_since.get_or_insert_with(Instant::now);
                    return (Drained::Blocked, total, calls);
                }
                Err(e) => {
                    self.chunks.clear();
                    self.queued = 0;
                    self.front_sent = 0;
                    return (Drained::Failed(e), total, calls);
                }
            }
        }
        (Drained::Empty, total, calls)
    }

    pub(super) fn consume(&mut self, mut n: usize) {
        self.queued -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.bytes().len() - self.front_sent;
            if n < left {
                self.front_sent += n;
                return;
            }
            n -= left;
            self.front_sent = 0;
            if let Some(Chunk::Payload(buf)) = self.chunks.pop_front() {
                if self.spent.len() < MAX_SPENT_BUFFERS {
                    self.spent.push(buf);
                }
            }
        }
    }
}
