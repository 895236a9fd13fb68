//! The broker's load: clients in one room, each message through the back end and to
//! every member (`switchboard bench broker`, bench/broker/).

use super::{connect_all, spawn, Error, Histogram};
use crate::protocol::message::Event;
use serde_json::{json, Value};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// `clients` connect to a broker whose back end (bench/broker/backend.php) puts every
/// connection in one room and answers each `say` with a `send` to the room; once all
/// are in, each sends `messages` as fast as it can. Waits up to `drain` seconds after
/// the last send for every delivery.
pub fn broker(url: &str, clients: usize, messages: u64, drain: f64) -> Result<Value, Error> {
    let mut conns = connect_all(url, clients)?;
    // In the room once the back end said so.
    for (i, c) in conns.iter_mut().enumerate() {
        let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
        loop {
            match c.read() {
                Ok(Event::Text(t)) if t.contains("\"ready\"") => break,
                Ok(Event::Text(_)) => continue,
                Ok(_) => continue,
                Err(e) => {
                    return Err(Error::Client {
                        who: format!("client {i}, not ready"),
                        error: e,
                    })
                }
            }
        }
    }
    let expected = clients as u64 * messages * clients as u64;
    let per_client = clients as u64 * messages;
    let barrier = Arc::new(Barrier::new(clients));
    let start = Instant::now();
    let handles: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let barrier = barrier.clone();
            spawn(move || {
                let sender = c.sender();
                barrier.wait();
                let sent_at = Instant::now();
                let talker = spawn(move || {
                    for n in 0..messages {
                        let t = start.elapsed().as_nanos() as u64;
                        let m = json!({ "type": "say", "t": t, "n": n, "from": i });
                        if sender.send_text(&m.to_string()).is_err() {
                            break;
                        }
                    }
                });
                let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                let mut hist = Histogram::default();
                let mut heard = 0u64;
                let mut last = start.elapsed();
                let deadline = Duration::from_secs_f64(drain);
                while heard < per_client && sent_at.elapsed() < deadline {
                    match c.read() {
                        Ok(Event::Text(t)) => {
                            let Ok(v) = serde_json::from_str::<Value>(&t) else {
                                continue;
                            };
                            if v["type"] != "said" {
                                continue;
                            }
                            heard += 1;
                            last = start.elapsed();
                            if let Some(t) = v["t"].as_u64() {
                                let now = start.elapsed().as_nanos() as u64;
                                hist.record(Duration::from_nanos(now.saturating_sub(t)));
                            }
                        }
                        Ok(Event::Close(_)) => break,
                        Ok(_) => {}
                        Err(e) if e.is_timeout() => {}
                        Err(_) => break,
                    }
                }
                let _ = talker.join();
                let _ = c.close(1000, "");
                (heard, last, hist)
            })
        })
        .collect();
    let mut heard = 0;
    let mut last = Duration::ZERO;
    let mut hist = Histogram::default();
    for h in handles {
        let (n, l, h) = h.join().map_err(|_| Error::Panicked("a client thread"))?;
        heard += n;
        last = last.max(l);
        hist.merge(&h);
    }
    let secs = last.as_secs_f64().max(1e-9);
    Ok(json!({
        "scenario": "broker",
        "clients": clients,
        "messages_per_client": messages,
        "backend_requests": clients as u64 * messages,
        "expected": expected,
        "delivered": heard,
        "lost": expected - heard.min(expected),
        "seconds": (secs * 1000.0).round() / 1000.0,
        "events_per_s": (clients as f64 * messages as f64 / secs).round(),
        "deliveries_per_s": (heard as f64 / secs).round(),
        "p50_ms": hist.quantile(0.5) as f64 / 1000.0,
        "p99_ms": hist.quantile(0.99) as f64 / 1000.0,
    }))
}
