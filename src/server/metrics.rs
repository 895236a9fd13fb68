//! Counters of the server, served as `GET /metrics` in the Prometheus text format
//! (version 0.0.4: `# HELP`, `# TYPE`, then `name{label="value"} number` lines).
//!
//! Counters on the message path are relaxed atomics: one add per message. Counters
//! with a label (closes by code, handshake failures by reason) are rarer and sit in a
//! map behind a mutex.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Every counter the server keeps.
#[derive(Debug, Default)]
pub struct Metrics {
    /// WebSocket connections open now (after the 101, until TCP is closed).
    pub connections: AtomicU64,
    /// WebSocket connections opened since start.
    pub connections_total: AtomicU64,
    /// Text and binary messages received.
    pub messages_in: AtomicU64,
    /// Text and binary messages queued to a connection (a broadcast counts once per
    /// receiver).
    pub messages_out: AtomicU64,
    /// Bytes read from WebSocket connections, frame headers included.
    pub bytes_in: AtomicU64,
    /// Bytes written to WebSocket connections, frame headers included.
    pub bytes_out: AtomicU64,
    /// `sendmsg` calls that sent something: with `bytes_out` and `messages_out`, how
    /// well frames are coalesced.
    pub write_calls: AtomicU64,
    /// Connections closed because their send queue went over its bound.
    pub queue_overflows: AtomicU64,
    /// Connections dropped because the peer did not read for `write_timeout`.
    pub write_timeouts: AtomicU64,
    /// Frames a connection's queue refused because it was already closing or closed.
    pub dropped_after_close: AtomicU64,
    /// Bytes held now in unfinished messages and read buffers, all connections
    /// together: what [`super::Config::max_buffered_bytes`] bounds.
    pub buffered_bytes: AtomicU64,
    /// Bad-input log lines left out by [`super::Config::bad_input_logs_per_minute`].
    pub log_lines_suppressed: AtomicU64,
    closes: Mutex<BTreeMap<u16, u64>>,
    handshake_failures: Mutex<BTreeMap<&'static str, u64>>,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    http_requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    app: Mutex<BTreeMap<&'static str, u64>>,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    *map.entry(key).or_insert(0) += 1;
}

fn snapshot<K: Ord + Clone>(map: &Mutex<BTreeMap<K, u64>>) -> Vec<(K, u64)> {
    let map = map.lock().unwrap_or_else(|p| p.into_inner());
    map.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

impl Metrics {
    /// Counts a connection closed with `code`: the code we sent, or the peer's if it
    /// closed first; 1006 when TCP ended without a close frame.
    pub fn closed_with(&self, code: u16) {
        bump(&self.closes, code);
    }

    /// Counts an opening handshake that failed, by a short reason such as `bad_request`.
    pub fn handshake_failed(&self, reason: &'static str) {
        bump(&self.handshake_failures, reason);
    }

    /// Counts a TCP connection turned away before its handshake, by reason.
    pub fn rejected(&self, reason: &'static str) {
        bump(&self.rejected, reason);
    }

    /// Counts a plain HTTP request (not an upgrade) by route and status.
    pub fn http_request(&self, route: &'static str, status: u16) {
        bump(&self.http_requests, (route, status));
    }

    /// Counts an `error` event sent to a client, by kind (`bad_json`, `unknown_event`).
    pub fn error_event(&self, kind: &'static str) {
        bump(&self.errors, kind);
    }

    /// How many connections were closed with `code` so far.
    pub fn closes_with(&self, code: u16) -> u64 {
        snapshot(&self.closes)
            .into_iter()
            .find(|(c, _)| *c == code)
            .map_or(0, |(_, n)| n)
    }

    /// Counts something the application on top of the server saw (a notification
    /// delivered, a bad one dropped, a store outage), by kind.
    pub fn app_event(&self, kind: &'static str) {
        bump(&self.app, kind);
    }

    /// How many of `kind` [`Metrics::app_event`] counted.
    pub fn app_events(&self, kind: &str) -> u64 {
        snapshot(&self.app)
            .into_iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| n)
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let plain: [(&str, &str, &str, &AtomicU64); 12] = [
            (
                "connections",
                "gauge",
                "Open WebSocket connections.",
                &self.connections,
            ),
            (
                "connections_total",
                "counter",
                "WebSocket connections opened.",
                &self.connections_total,
            ),
            (
                "messages_received_total",
                "counter",
                "Text and binary messages received.",
                &self.messages_in,
            ),
            (
                "messages_sent_total",
                "counter",
                "Text and binary messages queued to connections.",
                &self.messages_out,
            ),
            (
                "received_bytes_total",
                "counter",
                "Bytes read from WebSocket connections.",
                &self.bytes_in,
            ),
            (
                "sent_bytes_total",
                "counter",
                "Bytes written to WebSocket connections.",
                &self.bytes_out,
            ),
            (
                "write_calls_total",
                "counter",
                "System calls that sent bytes to connections.",
                &self.write_calls,
            ),
            (
                "queue_overflows_total",
                "counter",
                "Connections closed because their send queue overflowed.",
                &self.queue_overflows,
            ),
            (
                "write_timeouts_total",
                "counter",
                "Connections dropped because the peer stopped reading.",
                &self.write_timeouts,
            ),
            (
                "dropped_after_close_total",
                "counter",
                "Frames not queued because the connection was closing.",
                &self.dropped_after_close,
            ),
            (
                "buffered_bytes",
                "gauge",
                "Bytes held in unfinished messages and read buffers.",
                &self.buffered_bytes,
            ),
            (
                "log_lines_suppressed_total",
                "counter",
                "Bad-input log lines left out by the per-connection log budget.",
                &self.log_lines_suppressed,
            ),
        ];
        for (name, kind, help, value) in plain {
            let _ = writeln!(out, "# HELP switchboard_{name} {help}");
            let _ = writeln!(out, "# TYPE switchboard_{name} {kind}");
            let _ = writeln!(out, "switchboard_{name} {}", value.load(Relaxed));
        }
        family(
            &mut out,
            "closes_total",
            "Connections closed, by close code.",
        );
        for (code, n) in snapshot(&self.closes) {
            let _ = writeln!(out, "switchboard_closes_total{{code=\"{code}\"}} {n}");
        }
        family(
            &mut out,
            "handshake_failures_total",
            "Opening handshakes that failed, by reason.",
        );
        for (reason, n) in snapshot(&self.handshake_failures) {
            let _ = writeln!(
                out,
                "switchboard_handshake_failures_total{{reason=\"{reason}\"}} {n}"
            );
        }
        family(
            &mut out,
            "rejected_connections_total",
            "TCP connections turned away before the handshake, by reason.",
        );
        for (reason, n) in snapshot(&self.rejected) {
            let _ = writeln!(
                out,
                "switchboard_rejected_connections_total{{reason=\"{reason}\"}} {n}"
            );
        }
        family(
            &mut out,
            "http_requests_total",
            "Plain HTTP requests, by route and status.",
        );
        for ((route, status), n) in snapshot(&self.http_requests) {
            let _ = writeln!(
                out,
                "switchboard_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        family(
            &mut out,
            "error_events_total",
            "error events sent to clients, by kind.",
        );
        for (kind, n) in snapshot(&self.errors) {
            let _ = writeln!(out, "switchboard_error_events_total{{kind=\"{kind}\"}} {n}");
        }
        family(
            &mut out,
            "app_events_total",
            "Events of the application on the server (identity, messaging, stores), by kind.",
        );
        for (kind, n) in snapshot(&self.app) {
            let _ = writeln!(out, "switchboard_app_events_total{{kind=\"{kind}\"}} {n}");
        }
        out
    }
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP switchboard_{name} {help}");
    let _ = writeln!(out, "# TYPE switchboard_{name} counter");
}

/// Adds one to a counter.
pub(crate) fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_prometheus_text() {
        let m = Metrics::default();
        inc(&m.connections_total);
        add(&m.bytes_in, 42);
        m.closed_with(1000);
        m.closed_with(1000);
        m.closed_with(1008);
        m.handshake_failed("bad_request");
        m.http_request("/health", 200);
        let text = m.render();
        for line in [
            "switchboard_connections_total 1",
            "switchboard_received_bytes_total 42",
            "switchboard_closes_total{code=\"1000\"} 2",
            "switchboard_closes_total{code=\"1008\"} 1",
            "switchboard_handshake_failures_total{reason=\"bad_request\"} 1",
            "switchboard_http_requests_total{route=\"/health\",status=\"200\"} 1",
            "# TYPE switchboard_connections gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        // Every sample line is a name, an optional label set, and an integer.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("switchboard_"), "{line}");
            value.parse::<u64>().unwrap();
        }
        assert_eq!(m.closes_with(1000), 2);
        assert_eq!(m.closes_with(1011), 0);
    }
}
