//! Back ends behind small traits: [`Sessions`] (what the site wrote about who is who),
//! [`History`] (messages kept for late or returning readers) and [`Bus`] (fan-out
//! between nodes). This layer knows neither sockets nor users: keys, values, streams
//! and channels only.
//!
//! [`memory`] is the embedded default, so that switchboard runs with no Redis at all;
//! a Redis back end implements the same traits for sites whose sessions live there.

pub mod memory;
pub mod redis;

use serde_json::Value;
use std::fmt;
use std::str::FromStr;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

/// What can go wrong in a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The back end cannot be reached now; the caller may retry later.
    Unavailable(String),
    /// The back end answered something this layer cannot use.
    Invalid(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unavailable(why) => write!(f, "store unavailable: {why}"),
            Error::Invalid(why) => write!(f, "store answer not usable: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// A change to a session key, for connections whose membership follows it live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyEvent {
    /// The key was set (created or overwritten).
    Set(String),
    /// The key was deleted or expired.
    Deleted(String),
}

/// Session keys: plain string values under plain string keys, as a site writes them
/// (`session-store-<id>` holding a user id, or a user id holding a session id).
pub trait Sessions: Send + Sync {
    /// The value under `key`, if it is there and not expired.
    fn get(&self, key: &str) -> Result<Option<String>, Error>;
    /// Sets `key`, expiring after `ttl` if given.
    fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), Error>;
    /// Deletes `key`; returns whether it was there.
    fn delete(&self, key: &str) -> Result<bool, Error>;
    /// Every later change to any key.
    fn watch(&self) -> Result<Receiver<KeyEvent>, Error>;
    /// Expires the keys whose time is up, where the back end does not do it itself
    /// (in memory); called now and then. Returns how many expired.
    fn expire(&self) -> usize {
        0
    }
}

/// The id of a history entry: milliseconds since the epoch and a sequence number
/// within that millisecond, written `ms-seq` as Redis stream ids are. Ids of one
/// stream only grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    /// Milliseconds since the Unix epoch.
    pub ms: u64,
    /// Order within the millisecond.
    pub seq: u64,
}

impl EntryId {
    /// The largest id there can be.
    pub const MAX: EntryId = EntryId {
        ms: u64::MAX,
        seq: u64::MAX,
    };
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for EntryId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::Invalid(format!("{s:?} is not an entry id (ms-seq)"));
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(bad());
        }
        Ok(EntryId {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// The three stores a hub works with, and the Redis back end behind them if that is
/// what they are (for what only Redis has: keyspace settings, outage reports).
#[derive(Clone)]
pub struct Stores {
    /// Session keys.
    pub sessions: Arc<dyn Sessions>,
    /// Message history.
    pub history: Arc<dyn History>,
    /// Fan-out between nodes.
    pub bus: Arc<dyn Bus>,
    /// The Redis back end, when the three are on Redis.
    pub redis: Option<Arc<redis::RedisStore>>,
}

impl Stores {
    /// All three in this process's memory; history keeps `max_history` entries per
    /// stream.
    pub fn memory(max_history: usize) -> Stores {
        Stores {
            sessions: Arc::new(memory::MemorySessions::new()),
            history: Arc::new(memory::MemoryHistory::new(max_history)),
            bus: Arc::new(memory::MemoryBus::new()),
            redis: None,
        }
    }

    /// All three on the Redis server of `config`.
    pub fn redis(config: redis::Config) -> Result<Stores, Error> {
        let store = Arc::new(redis::RedisStore::new(config)?);
        Ok(Stores {
            sessions: store.clone(),
            history: store.clone(),
            bus: store.clone(),
            redis: Some(store),
        })
    }
}

/// Bounded streams of JSON entries: room messages, private messages.
pub trait History: Send + Sync {
    /// Appends `entry` to `stream`; returns its id. The oldest entries beyond the
    /// store's bound are dropped.
    fn append(&self, stream: &str, entry: &Value) -> Result<EntryId, Error>;
    /// Up to `limit` entries after `after` (from the oldest kept, with `None`), oldest
    /// first.
    fn after(
        &self,
        stream: &str,
        after: Option<EntryId>,
        limit: usize,
    ) -> Result<Vec<(EntryId, Value)>, Error>;
    /// Up to `limit` of the newest entries, oldest first.
    fn last(&self, stream: &str, limit: usize) -> Result<Vec<(EntryId, Value)>, Error>;
    /// Removes one entry (a moderator deleted the message); returns whether it was there.
    fn remove(&self, stream: &str, id: EntryId) -> Result<bool, Error>;
}

/// Publish and subscribe on named channels, the way nodes hear each other and the
/// site's back end reaches users (channel `notifications`).
pub trait Bus: Send + Sync {
    /// Sends `payload` to every subscriber of `channel`.
    fn publish(&self, channel: &str, payload: &str) -> Result<(), Error>;
    /// Every later message on `channel`.
    fn subscribe(&self, channel: &str) -> Result<Receiver<String>, Error>;
    /// Whether a message published here can reach another process (another node).
    /// Default `true`; the memory bus reaches this process only.
    fn reaches_other_nodes(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_parse_print_and_order() {
        let id: EntryId = "1700000000000-3".parse().unwrap();
        assert_eq!(
            id,
            EntryId {
                ms: 1_700_000_000_000,
                seq: 3
            }
        );
        assert_eq!(id.to_string(), "1700000000000-3");
        assert!(EntryId { ms: 1, seq: 9 } < EntryId { ms: 2, seq: 0 });
        for bad in [
            "",
            "1",
            "1-",
            "-1",
            "a-1",
            "1-2-3",
            "+1-2",
            "1 -2",
            "99999999999999999999-0",
        ] {
            assert!(bad.parse::<EntryId>().is_err(), "{bad:?} was accepted");
        }
    }
}
