//! Log lines on stderr, human-readable by default or one JSON object per line
//! (`--log-format json`), and the same records handed to `log` listeners of the
//! event API.
//!
//! Human: `2026-11-22T09:15:02.123Z info  conn=5 closed code=1000 peer=127.0.0.1:40112`
//! JSON:  `{"time":"2026-11-22T09:15:02.123Z","level":"info","conn":5,"msg":"closed","code":"1000",...}`

use super::ConnId;
use crate::time;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// A per-connection allowance of log lines about bad input: `per_minute` lines a
/// minute on average, up to `per_minute` at once (a token bucket), so that a client
/// sending garbage in a loop cannot turn the log into a weapon. What is left out is
/// counted, and the next line allowed says how many.
#[derive(Debug)]
pub struct LogBudget {
    per_minute: f64,
    tokens: f64,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogBudget {
    /// A full allowance of `per_minute` lines.
    pub fn new(per_minute: u32) -> Self {
        LogBudget {
            per_minute: f64::from(per_minute),
            tokens: f64::from(per_minute),
            last: None,
            suppressed: 0,
        }
    }

    /// Whether one more line may be written: `Some(n)` with the lines suppressed
    /// since the last one written, `None` when this one is left out (and counted).
    pub fn take(&mut self) -> Option<u64> {
        let now = Instant::now();
        if let Some(last) = self.last {
            let refill = now.duration_since(last).as_secs_f64() * self.per_minute / 60.0;
            self.tokens = (self.tokens + refill).min(self.per_minute);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary, with `...` when it was
/// cut: client-supplied text goes into logs and replies only this long.
pub fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}...", &text[..end]))
}

/// How lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// One readable line per record.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// How much a record matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Per-connection detail: opened, closed.
    Debug,
    /// Normal operation: started, shutting down.
    Info,
    /// Something a peer or a back end did wrong; the server carries on.
    Warn,
    /// Something on our side failed.
    Error,
}

impl Level {
    /// The level's name as written.
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// One log record.
#[derive(Clone, Debug)]
pub struct Record {
    /// When it happened, ISO 8601 UTC.
    pub time: String,
    /// How much it matters.
    pub level: Level,
    /// The connection it is about, if any.
    pub conn: Option<ConnId>,
    /// What happened, a few words.
    pub message: String,
    /// Details, in order.
    pub fields: Vec<(&'static str, String)>,
}

impl Record {
    /// The record as a JSON object with `time`, `level`, `conn` (if any), `msg` and
    /// the fields; its keys come out in alphabetical order (serde_json's map).
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("time".into(), self.time.clone().into());
        map.insert("level".into(), self.level.name().into());
        if let Some(id) = self.conn {
            map.insert("conn".into(), id.0.into());
        }
        map.insert("msg".into(), self.message.clone().into());
        for (k, v) in &self.fields {
            map.insert((*k).into(), v.clone().into());
        }
        serde_json::Value::Object(map)
    }

    /// The record as one line, without the newline.
    pub fn line(&self, format: Format) -> String {
        let mut out = String::with_capacity(96);
        match format {
            Format::Human => {
                let _ = write!(out, "{} {:<5}", self.time, self.level.name());
                if let Some(id) = self.conn {
                    let _ = write!(out, " conn={id}");
                }
                let _ = write!(out, " {}", self.message);
                for (k, v) in &self.fields {
                    if v.is_empty() || v.contains([' ', '"', '=']) {
                        let _ = write!(out, " {k}={v:?}");
                    } else {
                        let _ = write!(out, " {k}={v}");
                    }
                }
            }
            Format::Json => out = self.to_json().to_string(),
        }
        out
    }
}

/// A listener given every record (the event API's `log` event).
pub type Hook = Arc<dyn Fn(&Record) + Send + Sync>;

/// Writes records at or above a level to stderr, and hands every record to a hook.
pub struct Logger {
    format: Format,
    min_level: Level,
    hook: RwLock<Option<Hook>>,
}

impl Logger {
    /// A logger writing records at `min_level` and above in `format`.
    pub fn new(format: Format, min_level: Level) -> Self {
        Logger {
            format,
            min_level,
            hook: RwLock::new(None),
        }
    }

    /// Sets the hook that sees every record, whatever its level. It runs on the thread
    /// that logs, writer threads included: it must not block.
    pub fn set_hook(&self, hook: Option<Hook>) {
        *self.hook.write().unwrap_or_else(|p| p.into_inner()) = hook;
    }

    /// Logs one record.
    /// [`Logger::log`] if `budget` allows one more line, with `suppressed_before=N`
    /// when lines were left out since the last one written. Returns whether it was
    /// written; the caller counts the lines left out.
    pub fn log_within(
        &self,
        budget: &std::sync::Mutex<LogBudget>,
        level: Level,
        conn: Option<ConnId>,
        message: &str,
        fields: &[(&'static str, &dyn std::fmt::Display)],
    ) -> bool {
        let allowed = budget.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(suppressed) = allowed else {
            return false;
        };
        if suppressed == 0 {
            self.log(level, conn, message, fields);
        } else {
            let mut all = fields.to_vec();
            all.push(("suppressed_before", &suppressed));
            self.log(level, conn, message, &all);
        }
        true
    }

    pub fn log(
        &self,
        level: Level,
        conn: Option<ConnId>,
        message: &str,
        fields: &[(&'static str, &dyn std::fmt::Display)],
    ) {
        let hook = self.hook.read().unwrap_or_else(|p| p.into_inner()).clone();
        if level < self.min_level && hook.is_none() {
            return;
        }
        let record = Record {
            time: time::now_iso8601(),
            level,
            conn,
            message: message.to_owned(),
            fields: fields.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        };
        if level >= self.min_level {
            let mut line = record.line(self.format);
            line.push('\n');
            // One write per line, so that lines of different threads do not mix.
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
        if let Some(hook) = hook {
            // A listener that panics must not take the logging thread with it (a
            // writer thread logs too). Its panic is not logged: that could loop.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&record)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_on_a_character_boundary() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("abcdef", 3), "abc...");
        // 'é' is two bytes: a cut inside it backs off to before it.
        assert_eq!(clip("aé", 2), "a...");
    }

    #[test]
    fn log_budget_allows_a_burst_then_counts() {
        let mut b = LogBudget::new(3);
        assert_eq!(b.take(), Some(0));
        assert_eq!(b.take(), Some(0));
        assert_eq!(b.take(), Some(0));
        assert_eq!(b.take(), None);
        assert_eq!(b.take(), None);
        // Refilled: the next line says two were left out.
        b.tokens = 1.0;
        assert_eq!(b.take(), Some(2));
    }

    fn record() -> Record {
        Record {
            time: "2026-11-22T09:15:02.123Z".into(),
            level: Level::Info,
            conn: Some(ConnId(5)),
            message: "closed".into(),
            fields: vec![("code", "1000".into()), ("reason", "bye now".into())],
        }
    }

    #[test]
    fn human_line() {
        assert_eq!(
            record().line(Format::Human),
            "2026-11-22T09:15:02.123Z info  conn=5 closed code=1000 reason=\"bye now\""
        );
    }

    #[test]
    fn json_line() {
        let v: serde_json::Value = serde_json::from_str(&record().line(Format::Json)).unwrap();
        assert_eq!(v["level"], "info");
        assert_eq!(v["conn"], 5);
        assert_eq!(v["msg"], "closed");
        assert_eq!(v["reason"], "bye now");
        assert_eq!(v["time"], "2026-11-22T09:15:02.123Z");
    }

    #[test]
    fn hook_sees_records_below_the_level() {
        let logger = Logger::new(Format::Human, Level::Error);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        logger.set_hook(Some(Arc::new(move |r: &Record| {
            sink.lock().unwrap().push(r.message.clone())
        })));
        logger.log(Level::Debug, None, "opened", &[("peer", &"127.0.0.1:1")]);
        assert_eq!(*seen.lock().unwrap(), vec!["opened".to_string()]);
    }
}
