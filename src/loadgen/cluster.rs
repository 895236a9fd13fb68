//! Load on a site of several nodes on one Redis (`switchboard bench private` and
//! `bench room` given a comma-separated list of URLs): users are spread over the nodes
//! in turn, so that user i and user i+1 are on different nodes, and a room's members on
//! all of them. A [`Meter`] reads the nodes' CPU time (`/proc/PID/stat`) and Redis's
//! (`INFO cpu`, and `INFO commandstats` for how many `PUBLISH` it ran) over the measured
//! window, so that a cost per message includes what Redis spends on it.

use super::{admin_put, spawn, Error, Histogram};
use crate::client::{Client, Sender};
use crate::protocol::message::Event;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// What to read the cost of a window from: the nodes' processes, and Redis.
#[derive(Clone, Debug, Default)]
pub struct Meter {
    /// Process ids of the nodes.
    pub pids: Vec<u32>,
    /// The port of the Redis the nodes share, on 127.0.0.1.
    pub redis_port: Option<u16>,
}

/// What a [`Meter`] read at one moment.
#[derive(Clone, Copy, Debug, Default)]
struct Reading {
    server_cpu_s: f64,
    redis_cpu_s: f64,
    publishes: u64,
}

impl Meter {
    fn read(&self) -> Reading {
        let tick = 100.0; // USER_HZ on Linux
        let server_cpu_s = self
            .pids
            .iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .filter_map(|stat| {
                // Fields after the command's closing parenthesis: utime is the 12th.
                let rest = stat.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / tick)
            })
            .sum();
        let (redis_cpu_s, publishes) = self.redis_port.map_or((0.0, 0), redis_reading);
        Reading {
            server_cpu_s,
            redis_cpu_s,
            publishes,
        }
    }
}

/// Redis's CPU time (user and system) and its count of `PUBLISH` calls.
fn redis_reading(port: u16) -> (f64, u64) {
    let info = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .and_then(|mut c| redis::cmd("INFO").arg("all").query::<String>(&mut c))
        .unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let publishes = info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_publish:calls="))
        .and_then(|v| v.split(',').next()?.parse().ok())
        .unwrap_or(0);
    (field("used_cpu_user") + field("used_cpu_sys"), publishes)
}

/// The difference of two readings, as the report's fields.
fn cost(before: Reading, after: Reading) -> (f64, f64, u64) {
    (
        after.server_cpu_s - before.server_cpu_s,
        after.redis_cpu_s - before.redis_cpu_s,
        after.publishes.saturating_sub(before.publishes),
    )
}

/// A name for this run's sessions and room, apart from any earlier run's.
fn run_id() -> String {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{:x}", since_epoch.as_nanos())
}

/// `users` users, user i signed in on `urls[i % urls.len()]` with a session written
/// over the admin listener on `admin_port` (on Redis, one node's listener writes for
/// all).
fn sign_in_all(urls: &[&str], admin_port: u16, users: usize) -> Result<Vec<Client>, Error> {
    let run = run_id();
    let mut clients = Vec::with_capacity(users);
    for i in 0..users {
        let session = format!("bench-{run}-{i}");
        admin_put(
            admin_port,
            &format!("/sessions/session-store-{session}"),
            &format!("u{i}"),
        )?;
        let url = urls[i % urls.len()];
        let mut c = Client::connect(url).map_err(Error::client(format!("user {i}")))?;
        c.emit("authenticate", &json!({ "sessionId": session }))
            .map_err(Error::client("a client"))?;
        let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
        loop {
            match c.read() {
                Ok(Event::Text(t)) if t.contains("\"event\":\"authenticated\"") => break,
                Ok(_) => continue,
                Err(e) => return Err(Error::client(format!("user {i}, not authenticated"))(e)),
            }
        }
        clients.push(c);
    }
    Ok(clients)
}

/// Private messages on `switchboard serve`: `users` users, signed in with sessions
/// written over the admin listener on `admin_port`, each sending a private message to
/// the next user every `every` seconds for `seconds`. Each message goes through the
/// history store and the bus (Redis, with `--redis`), so this measures both. With
/// several URLs (comma-separated) every message crosses from one node to another;
/// `meter` reads their cost.
pub fn private(
    url_list: &str,
    admin_port: u16,
    users: usize,
    every: f64,
    seconds: f64,
    meter: &Meter,
) -> Result<Value, Error> {
    let urls: Vec<&str> = url_list.split(',').collect();
    let clients = sign_in_all(&urls, admin_port, users)?;
    let send = move |sender: &Sender, i: usize, text: String| {
        let to = format!("u{}", (i + 1) % users);
        sender.emit("private.send", &json!({ "to": to, "message": text }))
    };
    let before = meter.read();
    let (said, heard, hist) = super::talk(clients, every, seconds, send, "private.message")?;
    let (server_cpu_s, redis_cpu_s, publishes) = cost(before, meter.read());
    let per = |s: f64| (s * 1e6 / said.max(1) as f64 * 10.0).round() / 10.0;
    Ok(json!({
        "scenario": "private",
        "nodes": urls.len(),
        "users": users,
        "every_s": every,
        "seconds": seconds,
        "said": said,
        "heard": heard,
        "lost": said.saturating_sub(heard),
        "p50_us": hist.quantile(0.5),
        "p99_us": hist.quantile(0.99),
        "server_cpu_us_per_message": per(server_cpu_s),
        "redis_cpu_us_per_message": per(redis_cpu_s),
        "publishes_per_message": publishes as f64 / said.max(1) as f64,
    }))
}

/// A room of `members` users spread over the nodes: user 0 creates it, the others join
/// one at a time (each waits for its answer), and once the userlists of the joins are
/// drained, user 0 sends `rate` messages a second for `seconds`. Every member must get
/// every message; up to 5 s to drain.
pub fn room(
    url_list: &str,
    admin_port: u16,
    members: usize,
    rate: f64,
    seconds: f64,
    meter: &Meter,
) -> Result<Value, Error> {
    let urls: Vec<&str> = url_list.split(',').collect();
    let clients = sign_in_all(&urls, admin_port, members)?;
    let room = format!("bench-{}", run_id());
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let last_frame = Arc::new(AtomicU64::new(0));
    let heard_total = Arc::new(AtomicU64::new(0));
    let (answers, answered) = channel::<(usize, String)>();
    let senders: Vec<Sender> = clients.iter().map(Client::sender).collect();
    let readers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let (stop, last_frame, heard_total, answers) = (
                stop.clone(),
                last_frame.clone(),
                heard_total.clone(),
                answers.clone(),
            );
            spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                let mut hist = Histogram::default();
                let mut heard = 0u64;
                while !stop.load(Relaxed) {
                    let text = match c.read() {
                        Ok(Event::Text(t)) => t,
                        Ok(Event::Close(_)) => break,
                        Ok(_) => continue,
                        Err(e) if e.is_timeout() => continue,
                        Err(_) => break,
                    };
                    last_frame.store(start.elapsed().as_nanos() as u64, Relaxed);
                    let Ok((name, data)) = crate::envelope::parse_envelope(&text) else {
                        continue;
                    };
                    match name.as_str() {
                        "chat.message" => {
                            heard += 1;
                            heard_total.fetch_add(1, Relaxed);
                            super::record_sent(&mut hist, start, &data);
                        }
                        "chat.create" | "chat.join" | "error" => {
                            let _ = answers.send((i, name));
                        }
                        _ => {}
                    }
                }
                (heard, hist)
            })
        })
        .collect();
    let wait_answer = |who: usize| -> Result<(), Error> {
        loop {
            match answered.recv_timeout(Duration::from_secs(30)) {
                Ok((i, name)) if i == who && name != "error" => return Ok(()),
                Ok((i, _)) if i == who => return Err(Error::Closed),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    return Err(Error::Closed)
                }
            }
        }
    };
    let setup = Instant::now();
    let emit = |i: usize, event: &str, data: Value| {
        senders[i]
            .emit(event, &data)
            .map_err(Error::client(format!("member {i}")))
    };
    emit(0, "chat.create", json!({ "room": room }))?;
    wait_answer(0)?;
    for i in 1..members {
        emit(i, "chat.join", json!({ "room": room }))?;
        wait_answer(i)?;
    }
    // The userlists of the joins are drained once no frame came for half a second.
    while start.elapsed().as_nanos() as u64 - last_frame.load(Relaxed) < 500_000_000 {
        thread::sleep(Duration::from_millis(50));
    }
    let setup_s = setup.elapsed().as_secs_f64();
    let before = meter.read();
    let sent = (rate * seconds).round() as u64;
    let sending = Instant::now();
    for k in 0..sent {
        let due = Duration::from_secs_f64(k as f64 / rate);
        if let Some(wait) = due.checked_sub(sending.elapsed()) {
            thread::sleep(wait);
        }
        let text = format!("{} {k}", start.elapsed().as_nanos());
        emit(0, "chat.send", json!({ "room": room, "message": text }))?;
    }
    let expected = sent * members as u64;
    let drain = Instant::now();
    while heard_total.load(Relaxed) < expected && drain.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(20));
    }
    let (server_cpu_s, redis_cpu_s, publishes) = cost(before, meter.read());
    stop.store(true, Relaxed);
    let mut delivered = 0;
    let mut hist = Histogram::default();
    for r in readers {
        let (heard, h) = r.join().map_err(|_| Error::Panicked("a member"))?;
        delivered += heard;
        hist.merge(&h);
    }
    let per = |s: f64| (s * 1e6 / delivered.max(1) as f64 * 100.0).round() / 100.0;
    Ok(json!({
        "scenario": "room",
        "nodes": urls.len(),
        "members": members,
        "rate": rate,
        "seconds": seconds,
        "setup_s": (setup_s * 10.0).round() / 10.0,
        "sent": sent,
        "delivered": delivered,
        "lost": expected.saturating_sub(delivered),
        "p50_us": hist.quantile(0.5),
        "p99_us": hist.quantile(0.99),
        "server_cpu_us_per_delivery": per(server_cpu_s),
        "redis_cpu_us_per_delivery": per(redis_cpu_s),
        "publishes_per_message": publishes as f64 / sent.max(1) as f64,
    }))
}
