//! Back ends behind small traits: [`Sessions`] (what the site wrote about who is who),
//! [`History`] (messages kept for late or returning readers) and [`Bus`] (fan-out
//! between nodes). This layer knows neither sockets nor users: keys, values, streams
//! and channels only.
//!
//! [`memory`] is the embedded default, so that switchboard runs with no Redis at all;
//! a Redis back end implements the same traits for sites whose sessions live there.

mod master;
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

/// The stores a hub works with, and the Redis back end behind them if that is what
/// they are (for what only Redis has: keyspace settings, outage reports).
#[derive(Clone)]
pub struct Stores {
    /// Session keys.
    pub sessions: Arc<dyn Sessions>,
    /// Message history.
    pub history: Arc<dyn History>,
    /// Fan-out between nodes.
    pub bus: Arc<dyn Bus>,
    /// State the nodes share: documents changed atomically, and which node holds what.
    pub shared: Arc<dyn Shared>,
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
            shared: Arc::new(memory::MemoryShared::new()),
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
            shared: store.clone(),
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

/// What [`Shared::update`] writes in place of a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// The document's new text; its name is listed in the index.
    Put(String),
    /// The document is gone from the index; `tombstone` stays under its key for `ttl`,
    /// so that a document made again under the same name carries on from it (its
    /// version, say) while nodes may still hear of the old one.
    Remove {
        /// What stays under the key.
        tombstone: String,
        /// How long it stays.
        ttl: Duration,
    },
}

/// What [`Shared::update`]'s decision asks for: a write, and a message published on the
/// bus in the same transaction, so that every node hears of the changes in the order
/// they were made.
pub type Decision = Option<(Write, Option<(String, String)>)>;

/// The state several nodes share, in a namespace `ns` (a Redis hash tag such as
/// `{switchboard}`, so that every key of it stays in one slot of a Redis Cluster):
///
/// - documents, listed by name in an index and changed atomically by read, decide,
///   write (`{ns}:<index>` is the set of names, `{ns}:<index>:<name>` a document);
/// - nodes that say they are alive (`{ns}:nodes`, and `{ns}:node:<id>` with a time to
///   live), and the names each holds (`{ns}:held:<node>`, and `{ns}:holders:<name>` the
///   nodes that hold a name), so that what a dead node held can be let go by another;
/// - answers one node gathers from the others (`{ns}:<key>`, a list that expires).
///
/// It knows names, not what they name.
pub trait Shared: Send + Sync {
    /// Reads document `name` of `index` (`None` when there is none) and how many names
    /// the index lists, and gives both to `decide`. What it returns is written, and its
    /// message published, atomically, provided neither changed since they were read;
    /// otherwise they are read and `decide` is called again. `Ok(false)`: `decide`
    /// wrote nothing.
    fn update(
        &self,
        ns: &str,
        index: &str,
        name: &str,
        decide: &mut dyn FnMut(Option<&str>, usize) -> Decision,
    ) -> Result<bool, Error>;
    /// Every document of `index`: name and text.
    fn documents(&self, ns: &str, index: &str) -> Result<Vec<(String, String)>, Error>;
    /// `node` is alive for `ttl` more, and listed among the nodes. Returns whether it
    /// was listed already (`false` the first time, and after another node buried it).
    fn beat(&self, ns: &str, node: &str, ttl: Duration) -> Result<bool, Error>;
    /// Every node listed, and whether its time to live still runs.
    fn nodes(&self, ns: &str) -> Result<Vec<(String, bool)>, Error>;
    /// `node` holds `names`.
    fn hold(&self, ns: &str, node: &str, names: &[&str]) -> Result<(), Error>;
    /// `node` holds `names` no more; returns those of them no node holds now.
    fn release(&self, ns: &str, node: &str, names: &[&str]) -> Result<Vec<String>, Error>;
    /// What `node` holds, as the store knows it.
    fn held(&self, ns: &str, node: &str) -> Result<Vec<String>, Error>;
    /// Takes lapsed `node` off the list and lets go of all it held; returns the names
    /// no node holds now. `None`: another caller buried it first (exactly one does).
    fn bury(&self, ns: &str, node: &str) -> Result<Option<Vec<String>>, Error>;
    /// Publishes `payload` on `<prefix><node>` for every node that holds one of
    /// `names`, but `node` itself, in one round trip; returns how many it published
    /// to. The way a delivery reaches only the nodes its recipients are on.
    fn publish_to_holders(
        &self,
        ns: &str,
        names: &[&str],
        node: &str,
        prefix: &str,
        payload: &str,
    ) -> Result<usize, Error>;
    /// Adds `text` to the answers gathered under `key`, which are kept for `ttl`.
    fn answer(&self, ns: &str, key: &str, text: &str, ttl: Duration) -> Result<(), Error>;
    /// Takes up to `count` answers gathered under `key`, waiting for them up to `wait`.
    fn gather(
        &self,
        ns: &str,
        key: &str,
        count: usize,
        wait: Duration,
    ) -> Result<Vec<String>, Error>;
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
