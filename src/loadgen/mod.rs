//! `switchboard bench`: a load generator for any `ws://` server, one thread per
//! connection, built on [`crate::client`]. Each scenario prints one JSON object.
//!
//! - `echo`: C connections, each keeping W messages of S bytes in flight (a new one
//!   for each echo received): messages/s, MB/s, round-trip p50/p99.
//! - `broadcast`: N subscribers and one publisher sending M messages at R per second
//!   to a server that sends every message to every connection: deliveries/s, send to
//!   receipt p50/p99, lost. `--stalled K` adds K connections that never read, to show
//!   what a client that stops reading does to the others.
//! - `hold`: N idle connections opened and held: how many connected, how many are
//!   still open at the end (pings answered meanwhile).
//! - `chat`: N users of the chat example (`examples/chat.rs`), each saying something
//!   every S seconds: said-to-heard p50/p99, lost.
//! - `private`: N users of `switchboard serve`, each sending a private message to the
//!   next every S seconds: sent-to-received p50/p99, lost.
//!
//! Payloads carry their send time (nanoseconds since the run started) and a sequence
//! number in their first 16 bytes, so latency is measured on every message.

mod broker;
mod cluster;
pub use broker::broker;
pub use cluster::{private, room, Meter};

use crate::client::{Client, Sender};
use crate::protocol::message::Event;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Latencies in microseconds, in buckets 1/16 of a power of two wide (about 6%).
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

const SUB_BUCKETS: u64 = 16;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; 64 * SUB_BUCKETS as usize],
            total: 0,
        }
    }
}

impl Histogram {
    fn index(us: u64) -> usize {
        if us < SUB_BUCKETS {
            return us as usize;
        }
        let exp = 63 - u64::from(us.leading_zeros()); // us >= 16: exp >= 4
        let sub = (us >> (exp - 4)) - SUB_BUCKETS; // the 4 bits after the leading one
        ((exp - 3) * SUB_BUCKETS + sub) as usize
    }

    /// The smallest value of bucket `i`.
    fn low(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB_BUCKETS {
            return i;
        }
        let exp = i / SUB_BUCKETS + 3;
        (SUB_BUCKETS + i % SUB_BUCKETS) << (exp - 4)
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let i = Self::index(latency.as_micros().min(u128::from(u64::MAX >> 1)) as u64);
        let last = self.counts.len() - 1;
        self.counts[i.min(last)] += 1;
        self.total += 1;
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// The latency at quantile `q` (0.5 for the median), in microseconds: the low edge
    /// of the bucket it falls in. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::low(i);
            }
        }
        Self::low(self.counts.len() - 1)
    }
}

/// A payload of `size` bytes (at least 16) stamped with the time since `start` and `seq`.
fn stamp(start: Instant, seq: u64, size: usize) -> Vec<u8> {
    let mut p = vec![b'x'; size.max(16)];
    p[..8].copy_from_slice(&(start.elapsed().as_nanos() as u64).to_be_bytes());
    p[8..16].copy_from_slice(&seq.to_be_bytes());
    p
}

/// The send time and sequence number a stamped payload carries.
fn read_stamp(start: Instant, p: &[u8]) -> Option<(Duration, u64)> {
    let sent = u64::from_be_bytes(p.get(..8)?.try_into().ok()?);
    let seq = u64::from_be_bytes(p.get(8..16)?.try_into().ok()?);
    let now = start.elapsed().as_nanos() as u64;
    Some((Duration::from_nanos(now.saturating_sub(sent)), seq))
}

/// Why a load run could not go on.
#[derive(Debug)]
pub enum Error {
    /// A client of the run failed to connect, send or read; `who` says which.
    Client {
        /// Which client: `user 3`, `publisher`...
        who: String,
        /// What failed.
        error: crate::client::Error,
    },
    /// The server closed a connection the run still used.
    Closed,
    /// The admin listener, through which the run writes its sessions, failed.
    Admin(std::io::Error),
    /// The admin listener answered with something other than 2xx: its status line.
    AdminRefused(String),
    /// A thread of the run could not start.
    Spawn(std::io::Error),
    /// A thread of the run panicked.
    Panicked(&'static str),
}

impl Error {
    /// Wraps a client's error, naming the client.
    fn client(who: impl Into<String>) -> impl FnOnce(crate::client::Error) -> Error {
        let who = who.into();
        move |error| Error::Client { who, error }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Client { who, error } => write!(f, "{who}: {error}"),
            Error::Closed => f.write_str("the server closed a connection of the run"),
            Error::Admin(e) => write!(f, "admin listener: {e}"),
            Error::AdminRefused(status) => write!(f, "admin listener: {status}"),
            Error::Spawn(e) => write!(f, "cannot start a thread: {e}"),
            Error::Panicked(what) => write!(f, "{what} panicked"),
        }
    }
}

impl std::error::Error for Error {}

pub(crate) fn connect_all(url: &str, n: usize) -> Result<Vec<Client>, Error> {
    (0..n)
        .map(|i| Client::connect(url).map_err(Error::client(format!("connection {i}"))))
        .collect()
}

pub(crate) fn spawn<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("spawn a load generator thread")
}

/// Echo throughput: `conns` connections, `inflight` binary messages of `size` bytes
/// each in flight, for `seconds` after a one-second warm-up.
pub fn echo(
    url: &str,
    conns: usize,
    inflight: usize,
    size: usize,
    seconds: f64,
) -> Result<Value, Error> {
    let clients = connect_all(url, conns)?;
    let start = Instant::now();
    let warmup = Duration::from_secs(1);
    let end = warmup + Duration::from_secs_f64(seconds);
    let barrier = Arc::new(Barrier::new(conns));
    let handles: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let barrier = barrier.clone();
            spawn(move || -> Result<(u64, Histogram), Error> {
                let sender = c.sender();
                barrier.wait();
                let mut hist = Histogram::default();
                let mut done = 0u64;
                for seq in 0..inflight as u64 {
                    sender
                        .send_binary(&stamp(start, seq, size))
                        .map_err(Error::client("a client"))?;
                }
                let mut seq = inflight as u64;
                loop {
                    match c.read().map_err(Error::client("a client"))? {
                        Event::Binary(p) => {
                            let now = start.elapsed();
                            if now >= end {
                                break;
                            }
                            if now >= warmup {
                                if let Some((latency, _)) = read_stamp(start, &p) {
                                    hist.record(latency);
                                }
                                done += 1;
                            }
                            sender
                                .send_binary(&stamp(start, seq, size))
                                .map_err(Error::client("a client"))?;
                            seq += 1;
                        }
                        Event::Close(_) => return Err(Error::Closed),
                        _ => {}
                    }
                }
                let _ = c.close(1000, "");
                Ok((done, hist))
            })
        })
        .collect();
    let mut hist = Histogram::default();
    let mut messages = 0;
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok((n, h))) => {
                messages += n;
                hist.merge(&h);
            }
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(_) => errors.push(Error::Panicked("a connection thread").to_string()),
        }
    }
    let rate = messages as f64 / seconds;
    Ok(json!({
        "scenario": "echo",
        "connections": conns,
        "inflight": inflight,
        "size": size,
        "seconds": seconds,
        "messages": messages,
        "msgs_per_s": rate.round(),
        "mb_per_s": (rate * size as f64 / 1e6 * 100.0).round() / 100.0,
        "p50_us": hist.quantile(0.5),
        "p99_us": hist.quantile(0.99),
        "errors": errors,
    }))
}

/// Broadcast fan-out: `subs` subscribers, one publisher sending `messages` messages of
/// `size` bytes at `rate` per second, `stalled` connections that never read; waits up
/// to `drain` seconds for the last deliveries.
pub fn broadcast(
    url: &str,
    subs: usize,
    stalled: usize,
    messages: u64,
    rate: f64,
    size: usize,
    drain: f64,
) -> Result<Value, Error> {
    let subscribers = connect_all(url, subs)?;
    // Held, never read: their queues fill on the server.
    let stalled_conns = connect_all(url, stalled)?;
    let publisher = Client::connect(url).map_err(Error::client("publisher"))?;
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let first_send = Arc::new(AtomicU64::new(0));
    let last_receipt = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = subscribers
        .into_iter()
        .map(|mut c| {
            let (stop, last_receipt) = (stop.clone(), last_receipt.clone());
            spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                let mut hist = Histogram::default();
                let mut got = 0u64;
                let mut out_of_order = 0u64;
                let mut next = 0u64;
                while got < messages && !stop.load(Relaxed) {
                    match c.read() {
                        Ok(Event::Binary(p)) => {
                            if let Some((latency, seq)) = read_stamp(start, &p) {
                                hist.record(latency);
                                out_of_order += u64::from(seq != next);
                                next = seq + 1;
                            }
                            got += 1;
                            last_receipt.fetch_max(start.elapsed().as_nanos() as u64, Relaxed);
                        }
                        Ok(Event::Close(_)) => break,
                        Ok(_) => {}
                        Err(e) if e.is_timeout() => {}
                        Err(_) => break,
                    }
                }
                let _ = c.close(1000, "");
                (got, out_of_order, hist)
            })
        })
        .collect();
    // The publisher receives its own messages too; a thread reads them away.
    let sender: Sender = publisher.sender();
    let pub_stop = stop.clone();
    let pub_reader = spawn(move || {
        let mut publisher = publisher;
        let _ = publisher.set_read_timeout(Some(Duration::from_millis(200)));
        while !pub_stop.load(Relaxed) {
            match publisher.read() {
                Ok(Event::Close(_)) => break,
                Ok(_) => {}
                Err(e) if e.is_timeout() => {}
                Err(_) => break,
            }
        }
        let _ = publisher.close(1000, "");
    });
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let send_start = Instant::now();
    first_send.store(start.elapsed().as_nanos() as u64, Relaxed);
    for seq in 0..messages {
        let due = send_start + interval.mul_f64(seq as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        sender
            .send_binary(&stamp(start, seq, size))
            .map_err(Error::client("publisher"))?;
    }
    let sent_at = Instant::now();
    // Subscribers that have everything end by themselves; the rest get `drain`.
    let deadline = sent_at + Duration::from_secs_f64(drain);
    let mut results = Vec::new();
    for h in handles {
        while !h.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        if !h.is_finished() {
            stop.store(true, Relaxed);
        }
        results.push(
            h.join()
                .map_err(|_| Error::Panicked("a subscriber thread"))?,
        );
    }
    stop.store(true, Relaxed);
    let _ = pub_reader.join();
    drop(stalled_conns);
    let mut hist = Histogram::default();
    let mut delivered = 0;
    let mut out_of_order = 0;
    for (got, ooo, h) in &results {
        delivered += got;
        out_of_order += ooo;
        hist.merge(h);
    }
    let span = Duration::from_nanos(
        last_receipt
            .load(Relaxed)
            .saturating_sub(first_send.load(Relaxed)),
    );
    Ok(json!({
        "scenario": "broadcast",
        "subscribers": subs,
        "stalled": stalled,
        "messages": messages,
        "rate": rate,
        "size": size,
        "delivered": delivered,
        "lost": messages * subs as u64 - delivered,
        "out_of_order": out_of_order,
        "deliveries_per_s": (delivered as f64 / span.as_secs_f64().max(1e-9)).round(),
        "p50_us": hist.quantile(0.5),
        "p99_us": hist.quantile(0.99),
    }))
}

/// Opens `conns` idle connections, holds them `seconds` (answering pings), and counts
/// how many are still open at the end.
pub fn hold(url: &str, conns: usize, seconds: f64) -> Result<Value, Error> {
    let started = Instant::now();
    let closed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::with_capacity(conns);
    for i in 0..conns {
        let client = match Client::connect(url) {
            Ok(c) => c,
            Err(e) => {
                failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{i}: {e}"));
                continue;
            }
        };
        let (closed, stop) = (closed.clone(), stop.clone());
        handles.push(
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut c = client;
                    let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
                    while !stop.load(Relaxed) {
                        match c.read() {
                            Ok(Event::Close(_)) => break,
                            Ok(_) => {}
                            Err(e) if e.is_timeout() => continue,
                            Err(_) => break,
                        }
                    }
                    if !stop.load(Relaxed) {
                        closed.fetch_add(1, Relaxed);
                    }
                })
                .map_err(Error::Spawn)?,
        );
    }
    let connect_s = started.elapsed().as_secs_f64();
    thread::sleep(Duration::from_secs_f64(seconds));
    let lost = closed.load(Relaxed);
    stop.store(true, Relaxed);
    for h in handles.drain(..) {
        let _ = h.join();
    }
    let failed = failed.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let connected = conns - failed.len();
    Ok(json!({
        "scenario": "hold",
        "connections": conns,
        "connected": connected,
        "connect_s": (connect_s * 1000.0).round() / 1000.0,
        "held_s": seconds,
        "alive_after_hold": connected as u64 - lost,
        "failed": failed.into_iter().take(5).collect::<Vec<_>>(),
    }))
}

/// Chat: `users` clients of the chat example join and each says something every
/// `every` seconds for `seconds`; every `said` is heard by every user.
pub fn chat(url: &str, users: usize, every: f64, seconds: f64) -> Result<Value, Error> {
    let mut clients = Vec::with_capacity(users);
    for i in 0..users {
        let c = Client::connect(url).map_err(Error::client(format!("user {i}")))?;
        c.emit("join", &json!({ "name": format!("user{i}") }))
            .map_err(Error::client("a client"))?;
        clients.push(c);
    }
    let say =
        |sender: &Sender, _: usize, text: String| sender.emit("say", &json!({ "text": text }));
    let (said, heard, hist) = talk(clients, every, seconds, say, "said")?;
    Ok(json!({
        "scenario": "chat",
        "users": users,
        "every_s": every,
        "seconds": seconds,
        "said": said,
        "heard": heard,
        "lost": (said * users as u64).saturating_sub(heard),
        "p50_us": hist.quantile(0.5),
        "p99_us": hist.quantile(0.99),
    }))
}

/// Records the latency of a message whose text starts with the nanoseconds since
/// `start` at which it was sent (`"<ns> <n>"`, as [`talk`] and the room write it).
pub(crate) fn record_sent(hist: &mut Histogram, start: Instant, data: &Value) {
    let sent = data["message"]
        .as_str()
        .and_then(|t| t.split(' ').next())
        .and_then(|t| t.parse::<u64>().ok());
    if let Some(sent) = sent {
        let now = start.elapsed().as_nanos() as u64;
        hist.record(Duration::from_nanos(now.saturating_sub(sent)));
    }
}

/// `PUT` on the admin listener of 127.0.0.1:`port`; fails unless it answers 2xx.
fn admin_put(port: u16, path: &str, body: &str) -> Result<(), Error> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(Error::Admin)?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(Error::Admin)?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    match answer.split(' ').nth(1) {
        Some(code) if code.starts_with('2') => Ok(()),
        _ => Err(Error::AdminRefused(
            answer.lines().next().unwrap_or("no answer").to_owned(),
        )),
    }
}

/// Each client sends with `send(sender, index, text)` every `every` seconds for
/// `seconds`, its users spread over the interval, and counts the `heard` events it
/// receives, whose `message` starts with the send time. Returns messages sent,
/// heard, and the send-to-hear latencies.
fn talk(
    clients: Vec<Client>,
    every: f64,
    seconds: f64,
    send: impl Fn(&Sender, usize, String) -> Result<(), crate::client::Error>
        + Send
        + Sync
        + Copy
        + 'static,
    heard_event: &'static str,
) -> Result<(u64, u64, Histogram), Error> {
    let users = clients.len();
    let start = Instant::now();
    let end = Duration::from_secs_f64(seconds);
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            spawn(move || {
                let sender = c.sender();
                let talker = spawn(move || {
                    // Spread the users over the interval.
                    let offset = Duration::from_secs_f64(every * i as f64 / users.max(1) as f64);
                    let mut n = 0u64;
                    loop {
                        let due = offset + Duration::from_secs_f64(every * n as f64);
                        if due >= end {
                            break;
                        }
                        if let Some(wait) = due.checked_sub(start.elapsed()) {
                            thread::sleep(wait);
                        }
                        let text = format!("{} {}", start.elapsed().as_nanos(), n);
                        if send(&sender, i, text).is_err() {
                            break;
                        }
                        n += 1;
                    }
                    n
                });
                let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                let mut hist = Histogram::default();
                let mut heard = 0u64;
                // Two more seconds to hear the last words.
                let listen_until = end + Duration::from_secs(2);
                while start.elapsed() < listen_until {
                    let text = match c.read() {
                        Ok(Event::Text(t)) => t,
                        Ok(Event::Close(_)) => break,
                        Ok(_) => continue,
                        Err(e) if e.is_timeout() => continue,
                        Err(_) => break,
                    };
                    let Ok((name, data)) = crate::envelope::parse_envelope(&text) else {
                        continue;
                    };
                    if name != heard_event {
                        continue;
                    }
                    heard += 1;
                    record_sent(&mut hist, start, &data);
                }
                let said = talker.join().unwrap_or(0);
                let _ = c.close(1000, "");
                (said, heard, hist)
            })
        })
        .collect();
    let mut said = 0;
    let mut heard = 0;
    let mut hist = Histogram::default();
    for h in handles {
        let (s, hd, hh) = h.join().map_err(|_| Error::Panicked("a user thread"))?;
        said += s;
        heard += hd;
        hist.merge(&hh);
    }
    Ok((said, heard, hist))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut prev = 0;
        for us in 0..100_000u64 {
            let i = Histogram::index(us);
            assert!(i >= prev, "{us}");
            prev = i;
            let low = Histogram::low(i);
            assert!(low <= us, "{us} below its bucket's low {low}");
            // Within 1/16 of the value.
            assert!(us - low <= us / 16 + 1, "{us} in bucket from {low}");
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), 0);
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5);
        let p99 = h.quantile(0.99);
        assert!((470..=500).contains(&p50), "{p50}");
        assert!((930..=990).contains(&p99), "{p99}");
        let mut other = Histogram::default();
        other.record(Duration::from_secs(1));
        h.merge(&other);
        assert_eq!(h.total, 1001);
        assert!(h.quantile(1.0) >= 950_000);
    }

    #[test]
    fn stamps_round_trip() {
        let start = Instant::now();
        let p = stamp(start, 42, 32);
        assert_eq!(p.len(), 32);
        let (latency, seq) = read_stamp(start, &p).unwrap();
        assert_eq!(seq, 42);
        assert!(latency < Duration::from_secs(1));
        assert!(read_stamp(start, b"short").is_none());
    }
}
