//! Writer threads: they send what other threads queued to a connection, and what a
//! full socket left behind, without ever blocking on one peer.
//!
//! A writer keeps a set of connections with something to do. It sends from each
//! queue without blocking (`MSG_DONTWAIT`); a connection whose socket is full stays in
//! the set and the writer `poll`s for room. Under a broadcast burst, frames pile up in
//! every queue while the writer goes round, so each `sendmsg` carries many frames.
//!
//! The writer also keeps two deadlines: a queue that makes no progress for
//! `write_timeout` (the peer stopped reading), and a close this server started that the
//! peer has not answered within `close_timeout`. Either drops TCP.
//!
//! Connections are spread over [`super::Config::writer_threads`] writers by id.

use super::conn::Conn;
use super::outbound::Drained;
use super::Shared;
use crate::protocol::close;
use crate::sys::{self, PollFd, POLLIN, POLLOUT};
use std::io::{self, PipeReader, PipeWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The part of a writer other threads talk to.
pub(super) struct Writer {
    jobs: Mutex<Vec<Arc<Conn>>>,
    /// The writer is about to block, or blocks, in `poll`: wake it with a byte.
    sleeping: AtomicBool,
    stop: AtomicBool,
    wake_tx: PipeWriter,
    wake_rx: Mutex<Option<PipeReader>>,
}

impl Writer {
    pub(super) fn new() -> io::Result<Writer> {
        let (rx, tx) = io::pipe()?;
        Ok(Writer {
            jobs: Mutex::new(Vec::new()),
            sleeping: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            wake_tx: tx,
            wake_rx: Mutex::new(Some(rx)),
        })
    }

    /// Hands a connection to this writer. The caller has set its `scheduled` flag, so
    /// a connection is in at most one job list or set at a time.
    pub(super) fn schedule(&self, conn: Arc<Conn>) {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        self.wake();
    }

    /// Hands over many connections with one lock and at most one wake-up.
    pub(super) fn schedule_many(&self, conns: impl IntoIterator<Item = Arc<Conn>>) {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(conns);
        self.wake();
    }

    /// Makes the writer go round its set once more, to see a new deadline.
    pub(super) fn nudge(&self) {
        self.wake();
    }

    fn wake(&self) {
        if self.sleeping.swap(false, SeqCst) {
            // A full pipe means a wake-up is already pending; nothing is lost.
            let _ = (&self.wake_tx).write(&[1]);
        }
    }

    /// Asks the thread to end; it returns at its next wake-up.
    pub(super) fn stop(&self) {
        self.stop.store(true, SeqCst);
        self.sleeping.store(true, SeqCst);
        self.wake();
    }

    fn take_jobs(&self) -> Vec<Arc<Conn>> {
        std::mem::take(&mut *self.jobs.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The writer thread's loop. `shared` is weak so that a stopped server is freed.
pub(super) fn run(index: usize, shared: Weak<Shared>) {
    let Some(me) = shared.upgrade().map(|s| s.writers[index].clone()) else {
        return;
    };
    let Some(mut wake_rx) = me.wake_rx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return;
    };
    let mut set: Vec<Arc<Conn>> = Vec::new();
    // ready[i]: set[i] may have room (new, or poll said so).
    let mut ready: Vec<bool> = Vec::new();
    let mut fds: Vec<PollFd> = Vec::new();
    loop {
        if me.stop.load(SeqCst) {
            return;
        }
        for conn in me.take_jobs() {
            set.push(conn);
            ready.push(true);
        }
        let now = Instant::now();
        let mut next_deadline: Option<Instant> = None;
        let mut i = 0;
        while i < set.len() {
            match service(&set[i], ready[i], now) {
                Keep::Drop => {
                    set.swap_remove(i);
                    ready.swap_remove(i);
                }
                Keep::Until(deadline) => {
                    next_deadline = Some(next_deadline.map_or(deadline, |d| d.min(deadline)));
                    ready[i] = false;
                    i += 1;
                }
            }
        }
        if me.stop.load(SeqCst) {
            return;
        }
        // Sleep only if no job arrived since the list was taken (see `Writer::wake`).
        // When jobs are waiting, poll all the same, without waiting: a connection
        // kept for lack of room must learn that it has room again, even while
        // broadcasts keep the job list full.
        me.sleeping.store(true, SeqCst);
        let jobs_waiting = !me.jobs.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
        if jobs_waiting {
            me.sleeping.store(false, SeqCst);
        }
        fds.clear();
        fds.push(PollFd {
            fd: wake_rx.as_raw_fd(),
            events: POLLIN,
            revents: 0,
        });
        for conn in &set {
            // Room to write is what every member waits for, except a closing one whose
            // close went out: it waits only for its deadline (POLLOUT would fire at
            // once, for ever). A member whose queue someone else emptied is woken at
            // once and leaves the set.
            let out = conn.lock();
            let events = if out.is_empty() && !out.lifecycle.is_open() {
                0
            } else {
                POLLOUT
            };
            drop(out);
            fds.push(PollFd {
                fd: conn.stream.as_raw_fd(),
                events,
                revents: 0,
            });
        }
        let timeout = if jobs_waiting {
            Some(Duration::ZERO)
        } else {
            next_deadline.map(|d| d.saturating_duration_since(Instant::now()))
        };
        if let Err(e) = sys::poll(&mut fds, timeout) {
            // EINVAL or ENOMEM: nothing sensible to wait on. Retry soon rather than spin.
            if let Some(s) = shared.upgrade() {
                s.log.log(
                    super::log::Level::Error,
                    None,
                    "writer poll failed",
                    &[("error", &e)],
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        me.sleeping.store(false, SeqCst);
        if fds[0].revents != 0 {
            let mut sink = [0u8; 64];
            let _ = wake_rx.read(&mut sink);
        }
        for (flag, fd) in ready.iter_mut().zip(&fds[1..]) {
            *flag = fd.revents != 0;
        }
    }
}

enum Keep {
    Drop,
    Until(Instant),
}

/// Sends what it can for one connection and decides whether it stays in the set.
fn service(conn: &Arc<Conn>, ready: bool, now: Instant) -> Keep {
    let config = &conn.shared.config;
    let mut out = conn.lock();
    if let Some(queued) = out.overflowed.take() {
        drop(out);
        conn.shared.log.log(
            super::log::Level::Warn,
            Some(conn.id()),
            "send queue overflow",
            &[("queued", &queued), ("limit", &config.max_queue_bytes)],
        );
        out = conn.lock();
    }
    if out.done {
        out.scheduled = false;
        return Keep::Drop;
    }
    if ready && !out.is_empty() {
        if let Drained::Failed(_) = conn.drain(&mut out) {
            out.scheduled = false;
            drop(out);
            conn.abort();
            return Keep::Drop;
        }
    }
    let mut deadline = None;
    if !out.is_empty() {
        let since = *out.blocked_since.get_or_insert(now);
        deadline = Some(since + config.write_timeout);
    }
    if let Some(close_by) = out.close_deadline {
        deadline = Some(deadline.map_or(close_by, |d: Instant| d.min(close_by)));
    }
    match deadline {
        None => {
            // Nothing queued and no close to watch: the reader sends its own again.
            out.scheduled = false;
            Keep::Drop
        }
        Some(d) if d <= now => {
            out.scheduled = false;
            // Which deadline ran out: a close this server started (after an overflow,
            // a kick...) has `close_timeout`, a peer that stopped reading otherwise
            // has `write_timeout`. The log line names the one that fired.
            let closing = out.close_deadline.is_some_and(|c| c <= now);
            let queued = out.queued;
            let code = out.lifecycle.close_sent();
            drop(out);
            if closing {
                let level = if queued > 0 {
                    super::log::Level::Warn
                } else {
                    super::log::Level::Debug
                };
                conn.shared.log.log(
                    level,
                    Some(conn.id()),
                    "close not completed in time, dropped",
                    &[
                        ("code", &code.unwrap_or(close::NO_STATUS)),
                        ("queued", &queued),
                        (
                            "close_timeout",
                            &format_args!("{:?}", config.ws.close_timeout),
                        ),
                    ],
                );
                conn.abort();
            } else {
                conn.stalled();
            }
            Keep::Drop
        }
        Some(d) => Keep::Until(d),
    }
}
