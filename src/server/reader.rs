//! A connection's reader thread after the upgrade: it reads, decodes and dispatches
//! until the connection ends, keeps the heartbeat and idle clocks on the read timeout,
//! the rate limit, the deadline of an unfinished message and this connection's share
//! of the bytes buffered across all connections; then it closes the connection the
//! way its end calls for.

use super::metrics::{add, inc};
use super::{close, guarded, Config, Conn, Error, Message, Server};
use crate::protocol::frame::OpCode;
use crate::protocol::message::{Decoder, Event};
use crate::protocol::Role;
use crate::server::log::Level;
use crate::socket::{self, describe_frame, Direction};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a connection's read loop ended.
#[derive(Debug)]
pub(super) enum End {
    /// The peer sent a close frame (its code, if any).
    PeerClosed(Option<u16>),
    /// TCP ended without a close frame, or failed.
    Gone(Option<io::Error>),
    /// A rule was broken or a limit reached: answered with the error's close code.
    Failed(Error),
}

/// A token bucket: `rate` messages per second on average, at most `rate` at once.
struct RateLimit {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new(rate: u32) -> Self {
        RateLimit {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.last = now;
        self.tokens = (self.tokens + refill).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Reads, decodes and dispatches until the connection ends.
///
/// Heartbeats ride on the read timeout: after `ping_interval` without a byte from the
/// peer we ping and wait `heartbeat_timeout` for anything at all.
pub(super) fn read_loop(server: &Server, conn: &Arc<Conn>, leftover: Vec<u8>) -> End {
    let shared = &server.shared;
    let config = &shared.config;
    let mut input = Input {
        server,
        conn,
        decoder: Decoder::new(Role::Server, config.ws.limits),
        rate: config.max_messages_per_second.map(RateLimit::new),
        beat: Heartbeat::new(config),
        held: 0,
    };
    let end = read_frames(&mut input, leftover);
    // Whatever it held is no longer held.
    let held = conn.held.swap(0, SeqCst);
    shared.metrics.buffered_bytes.fetch_sub(held as u64, SeqCst);
    end
}

fn read_frames(input: &mut Input<'_>, leftover: Vec<u8>) -> End {
    let server = input.server;
    let conn = input.conn;
    let shared = &server.shared;
    let config = &shared.config;
    let stream = &conn.stream;
    input.decoder.set_tracing(config.trace_frames);
    if let Err(e) = stream.set_read_timeout(Some(input.beat.timeout)) {
        return End::Gone(Some(e));
    }
    if let Some(end) = input.process(&leftover) {
        return end;
    }
    drop(leftover);
    if let Some(end) = input.account(0) {
        return end;
    }
    // Reads land on the stack while traffic is light, so an idle connection holds no
    // read buffer on the heap; a read that fills its buffer moves to a heap buffer,
    // which doubles while reads keep filling it, and is given back after a run of
    // small reads or a quiet read timeout. The decoder keeps any partial frame, so
    // nothing in a read buffer outlives the read.
    let mut on_stack = [0u8; STACK_READ_BYTES];
    let mut heap: Vec<u8> = Vec::new();
    let mut small_reads = 0u32;
    let mut spent = Vec::new();
    loop {
        if let Err(e) = conn.flush_from_reader(&mut spent) {
            return End::Gone(match e {
                Error::Io(e) => Some(e),
                _ => None,
            });
        }
        for buf in spent.drain(..) {
            input.decoder.recycle(buf);
        }
        let buf: &mut [u8] = if heap.is_empty() {
            &mut on_stack
        } else {
            &mut heap
        };
        let capacity = buf.len();
        let timed_out = match (&conn.stream).read(buf) {
            Ok(0) => return End::Gone(None),
            Ok(n) => {
                add(&shared.metrics.bytes_in, n as u64);
                input.beat.heard();
                if let Some(end) = input.process(&buf[..n]) {
                    return end;
                }
                if let Some(end) = input.account(heap.capacity()) {
                    return end;
                }
                if n == capacity {
                    let next = if heap.is_empty() {
                        config.min_read_buffer_bytes
                    } else {
                        capacity * 2
                    };
                    if next > capacity
                        && next
                            <= config
                                .max_read_buffer_bytes
                                .max(config.min_read_buffer_bytes)
                    {
                        heap = vec![0u8; next];
                    }
                    small_reads = 0;
                } else if !heap.is_empty() && n <= STACK_READ_BYTES {
                    small_reads += 1;
                    if small_reads >= SMALL_READS_TO_SHRINK {
                        heap = Vec::new();
                    }
                } else {
                    small_reads = 0;
                }
                false
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                true
            }
            Err(e) => return End::Gone(Some(e)),
        };
        if timed_out {
            if input.beat.settle() {
                heap = Vec::new();
                input.decoder.release_spares();
                if let Some(end) = input.account(0) {
                    return end;
                }
                // Best effort: a thread whose stack bounds cannot be read keeps its
                // pages, which costs memory, not correctness.
                let _ = crate::sys::release_unused_stack();
            }
            match input.beat.tick() {
                Tick::Wait => {}
                Tick::Ping => {
                    let _ = conn.send_control(OpCode::Ping, b"");
                }
                Tick::Fail(e) => return End::Failed(e),
            }
        }
        if let Some(timeout) = input.beat.new_timeout(timed_out) {
            if let Err(e) = stream.set_read_timeout(Some(timeout)) {
                return End::Gone(Some(e));
            }
        }
    }
}

/// Size of the read buffer on the reader thread's stack. Measured with
/// /proc/PID/pagemap: with 512 bytes here and 32 iovecs in `conn::drain`, a reader
/// thread that did a handshake, an echo and a ping touches 2 pages of its stack, the
/// least any thread does; 1024 bytes here makes it 3 (12 KiB instead of 8 per idle
/// connection).
const STACK_READ_BYTES: usize = 512;
/// After this many reads in a row that would have fit on the stack, the heap read
/// buffer is given back.
const SMALL_READS_TO_SHRINK: u32 = 16;

/// The receiving half of a connection's reader: decoder, rate limit, heartbeat clocks.
struct Input<'a> {
    server: &'a Server,
    conn: &'a Arc<Conn>,
    decoder: Decoder,
    rate: Option<RateLimit>,
    beat: Heartbeat,
    /// What this connection last added to the global count of buffered bytes.
    held: usize,
}

impl Input<'_> {
    /// After a read: starts or stops the clock of an unfinished message and fails it
    /// when overdue, and brings this connection's share of the global count of
    /// buffered bytes up to date, closing the largest holder when the count is over
    /// [`Config::max_buffered_bytes`]. `read_buffer` is the heap read buffer's size
    /// (0 while reads land on the stack).
    fn account(&mut self, read_buffer: usize) -> Option<End> {
        let shared = &self.server.shared;
        if self.beat.message(self.decoder.in_message()) {
            return Some(End::Failed(Error::MessageTimeout));
        }
        // The common case, a read that changed nothing held, touches no atomic.
        let held = self.decoder.held_bytes() + read_buffer;
        let before = self.held;
        if held == before {
            return None;
        }
        self.held = held;
        self.conn.held.store(held, SeqCst);
        let total = if held > before {
            let grown = (held - before) as u64;
            shared.metrics.buffered_bytes.fetch_add(grown, SeqCst) + grown
        } else {
            let shrunk = (before - held) as u64;
            shared.metrics.buffered_bytes.fetch_sub(shrunk, SeqCst) - shrunk
        };
        if held <= before || total <= shared.config.max_buffered_bytes as u64 {
            return None;
        }
        self.over_budget(total)
    }

    /// The buffered bytes of all connections went over the budget while this one's
    /// grew: the connection holding the most is closed with 1013, this one or another.
    /// Another's reader is woken by shutting its socket for reading, so that it frees
    /// what it holds at once, after its close frame is queued.
    fn over_budget(&self, total: u64) -> Option<End> {
        let shared = &self.server.shared;
        let (largest, freeing) = {
            let registry = shared.registry.read().unwrap_or_else(|p| p.into_inner());
            // What connections already chosen will free once their readers end counts
            // as freed: without this, every read while they wind down would choose
            // one more.
            let freeing: u64 = registry
                .values()
                .filter(|c| c.evicted.load(SeqCst))
                .map(|c| c.held.load(SeqCst) as u64)
                .sum();
            let largest = registry
                .values()
                .filter(|c| !c.evicted.load(SeqCst))
                .max_by_key(|c| c.held.load(SeqCst))
                .cloned();
            (largest, freeing)
        };
        if total.saturating_sub(freeing) <= shared.config.max_buffered_bytes as u64 {
            return None;
        }
        let victim = match largest {
            Some(c) if c.held.load(SeqCst) > self.conn.held.load(SeqCst) => c,
            _ => self.conn.clone(),
        };
        victim.evicted.store(true, SeqCst);
        shared.log.log(
            Level::Warn,
            Some(victim.id()),
            "buffered bytes over budget, closing the largest holder",
            &[
                ("held", &victim.held.load(SeqCst)),
                ("total", &total),
                ("max_buffered_bytes", &shared.config.max_buffered_bytes),
            ],
        );
        if Arc::ptr_eq(&victim, self.conn) {
            return Some(End::Failed(Error::OverBudget));
        }
        let e = Error::OverBudget;
        victim.close(
            e.close_code().unwrap_or(close::TRY_AGAIN_LATER),
            e.close_reason(),
        );
        let _ = victim.stream.shutdown(Shutdown::Read);
        None
    }

    /// Decodes everything in `bytes` and dispatches each event. Returns why the
    /// connection ends, if it does.
    fn process(&mut self, bytes: &[u8]) -> Option<End> {
        let shared = &self.server.shared;
        let config = &shared.config;
        let conn = self.conn;
        let mut pos = 0;
        while pos < bytes.len() {
            let decoded = self.decoder.decode(&bytes[pos..]);
            if config.trace_frames {
                for t in self.decoder.take_traces() {
                    let line = describe_frame(Direction::In, &t);
                    let _ = writeln!(io::stdout().lock(), "[conn {}] {line}", conn.id());
                }
            }
            let (n, event) = match decoded {
                Ok(x) => x,
                Err(e) => return Some(End::Failed(Error::Protocol(e))),
            };
            pos += n;
            let message = match event {
                None => continue,
                Some(Event::Text(t)) => Message::Text(t),
                Some(Event::Binary(b)) => Message::Binary(b),
                Some(ping @ Event::Ping(_)) => {
                    conn.answer_ping(&ping);
                    continue;
                }
                Some(Event::Pong(_)) => continue,
                Some(Event::Close(frame)) => return Some(End::PeerClosed(frame.map(|f| f.code))),
            };
            inc(&shared.metrics.messages_in);
            if !conn.is_open() {
                // We are closing: 5.5.1 lets data still arrive; nobody handles it.
                continue;
            }
            if let Some(rate) = self.rate.as_mut() {
                if !rate.allow() {
                    return Some(End::Failed(Error::RateLimited));
                }
            }
            if config.idle_timeout.is_some() {
                self.beat.last_message = Instant::now();
            }
            let handled = guarded(shared, Some(conn.id()), "on_message", || {
                shared.handler.on_message(self.server, conn, message)
            });
            if handled.is_none() {
                return Some(End::Failed(Error::HandlerFailed));
            }
        }
        None
    }
}

/// What a read timeout calls for.
#[derive(Debug)]
enum Tick {
    /// Nothing yet: the timeout fired early, for another deadline.
    Wait,
    /// Send a ping.
    Ping,
    /// Close the connection.
    Fail(Error),
}

/// The heartbeat and idle clocks of one connection, kept on its read timeout
/// (`SO_RCVTIMEO` counts the silence of one blocking read).
///
/// After `ping_interval` without a byte from the peer we ping; if nothing at all comes
/// within `heartbeat_timeout` after it, the peer is gone. Independently, no text or
/// binary message for `idle_timeout` ends the connection. The socket option is set only
/// when the wanted timeout drops below the one in force, or after a timeout fired, so
/// a busy connection makes no extra system call.
struct Heartbeat {
    ping_interval: Duration,
    heartbeat_timeout: Duration,
    idle_timeout: Option<Duration>,
    last_heard: Instant,
    last_message: Instant,
    pinged: Option<Instant>,
    /// The read timeout in force.
    timeout: Duration,
    message_timeout: Duration,
    /// When the unfinished message's first fragment came.
    message_started: Option<Instant>,
    /// [`Config::quiet_after`].
    quiet_after: Duration,
    /// Whether the reader gave back its buffers since it last heard anything.
    settled: bool,
}

impl Heartbeat {
    fn new(config: &Config) -> Self {
        let now = Instant::now();
        let mut beat = Heartbeat {
            ping_interval: config.ping_interval,
            heartbeat_timeout: config.heartbeat_timeout,
            idle_timeout: config.idle_timeout,
            last_heard: now,
            last_message: now,
            pinged: None,
            timeout: config.ping_interval,
            message_timeout: config.message_timeout,
            message_started: None,
            quiet_after: config.quiet_after,
            settled: false,
        };
        beat.timeout = beat.wanted(now);
        beat
    }

    /// Bytes arrived.
    fn heard(&mut self) {
        self.last_heard = Instant::now();
        self.pinged = None;
        self.settled = false;
    }

    /// The read timed out: whether it is time to give back what the last busy moment
    /// took ([`Config::quiet_after`]), once per quiet spell.
    fn settle(&mut self) -> bool {
        if self.settled || self.last_heard.elapsed() < self.quiet_after {
            return false;
        }
        self.settled = true;
        true
    }

    /// Whether a message is open now; starts its clock when one opened. Returns
    /// whether it is past [`Config::message_timeout`].
    fn message(&mut self, open: bool) -> bool {
        if !open {
            self.message_started = None;
            return false;
        }
        let now = Instant::now();
        let started = *self.message_started.get_or_insert(now);
        now.duration_since(started) >= self.message_timeout
    }

    /// The read timed out: decide what is due.
    fn tick(&mut self) -> Tick {
        let now = Instant::now();
        if self
            .message_started
            .is_some_and(|at| now.duration_since(at) >= self.message_timeout)
        {
            return Tick::Fail(Error::MessageTimeout);
        }
        if let Some(at) = self.pinged {
            if now.duration_since(at) >= self.heartbeat_timeout {
                return Tick::Fail(Error::HeartbeatTimeout);
            }
        }
        if let Some(idle) = self.idle_timeout {
            if now.duration_since(self.last_message) >= idle {
                return Tick::Fail(Error::IdleTimeout);
            }
        }
        if self.pinged.is_none() && now.duration_since(self.last_heard) >= self.ping_interval {
            self.pinged = Some(now);
            return Tick::Ping;
        }
        Tick::Wait
    }

    /// The silence after which the next read should time out.
    fn wanted(&self, now: Instant) -> Duration {
        let mut t = match self.pinged {
            Some(at) => self
                .heartbeat_timeout
                .saturating_sub(now.duration_since(at)),
            None => self.ping_interval,
        };
        if let Some(idle) = self.idle_timeout {
            t = t.min(idle.saturating_sub(now.duration_since(self.last_message)));
        }
        if let Some(at) = self.message_started {
            t = t.min(self.message_timeout.saturating_sub(now.duration_since(at)));
        }
        // A read timeout is a silence after the last read (SO_RCVTIMEO), so a constant
        // here changes nothing while reads keep coming.
        if !self.settled {
            t = t.min(self.quiet_after);
        }
        // A zero timeout would mean "block for ever" to the socket.
        t.max(Duration::from_millis(1))
    }

    /// The timeout to set before the next read, if it must change.
    fn new_timeout(&mut self, fired: bool) -> Option<Duration> {
        let wanted = self.wanted(Instant::now());
        if fired || wanted < self.timeout {
            self.timeout = wanted;
            return Some(wanted);
        }
        None
    }
}

/// Closes the connection the way `end` calls for, tells the handler, and ends TCP.
pub(super) fn end_connection(server: &Server, conn: &Arc<Conn>, end: End) {
    let shared = &server.shared;
    let config = &shared.config;
    // The connection's Lifecycle decides what goes out: the echo of the peer's close
    // (5.5.1), or the failing close (7.1.7), unless a close was already sent; and the
    // code counted, ours if we closed first, else the peer's, else 1006.
    match &end {
        End::PeerClosed(code) => conn.peer_closed(*code),
        End::Failed(e) => conn.fail(
            e.close_code().unwrap_or(close::INTERNAL_ERROR),
            e.close_reason(),
        ),
        End::Gone(_) => {}
    }
    let close_code = conn.lock().lifecycle.close_code();
    // Out of the registry first, so that broadcasts stop queuing to it.
    shared
        .registry
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&conn.id());
    let level = match &end {
        End::Failed(
            Error::Protocol(_) | Error::RateLimited | Error::MessageTimeout | Error::OverBudget,
        ) => Level::Warn,
        _ => Level::Debug,
    };
    let detail = match &end {
        End::Failed(e) => e.to_string(),
        End::Gone(Some(e)) => e.to_string(),
        End::Gone(None) => "peer closed TCP".into(),
        End::PeerClosed(_) => "peer closed".into(),
    };
    shared.log.log(
        level,
        Some(conn.id()),
        "closed",
        &[("code", &close_code), ("why", &detail)],
    );
    shared.metrics.closed_with(close_code);
    shared.metrics.connections.fetch_sub(1, SeqCst);
    guarded(shared, Some(conn.id()), "on_close", || {
        shared.handler.on_close(server, conn, close_code)
    });
    // The close frame gets out, then a lingering close ends TCP (7.1.1: the server
    // closes TCP first).
    let deadline = Instant::now() + config.ws.close_timeout;
    let flushed = conn.flush_until(deadline);
    conn.finish();
    match end {
        End::Gone(_) => {
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
        _ if flushed.is_err() => {
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
        _ => socket::linger_close(
            &conn.stream,
            deadline.saturating_duration_since(Instant::now()),
        ),
    }
}
