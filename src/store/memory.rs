//! The embedded store: sessions, history and bus in this process's memory. It is the
//! default, so that switchboard runs on one box with no Redis; what it holds is lost
//! on restart, and it does not reach other nodes.

use super::{Bus, Decision, EntryId, Error, History, KeyEvent, Sessions, Shared, Write};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends `event` to every watcher still listening; forgets the others.
fn notify(watchers: &mut Vec<Sender<KeyEvent>>, event: &KeyEvent) {
    watchers.retain(|w| w.send(event.clone()).is_ok());
}

#[derive(Default)]
struct SessionsInner {
    values: HashMap<String, (String, Option<Instant>)>,
    watchers: Vec<Sender<KeyEvent>>,
}

/// Session keys in memory, with expiry. Expired keys read as absent at once; their
/// [`KeyEvent::Deleted`] goes out when they are read or at the next [`MemorySessions::sweep`].
#[derive(Default)]
pub struct MemorySessions {
    inner: Mutex<SessionsInner>,
}

impl MemorySessions {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes every key whose time is up, telling the watchers. Call it now and then
    /// (the hub does, on its timer); returns how many keys expired.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut inner = lock(&self.inner);
        let expired: Vec<String> = inner
            .values
            .iter()
            .filter(|(_, (_, until))| until.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &expired {
            inner.values.remove(key);
            notify(&mut inner.watchers, &KeyEvent::Deleted(key.clone()));
        }
        expired.len()
    }
}

impl Sessions for MemorySessions {
    fn expire(&self) -> usize {
        self.sweep()
    }

    fn get(&self, key: &str) -> Result<Option<String>, Error> {
        let mut inner = lock(&self.inner);
        match inner.values.get(key) {
            Some((_, Some(until))) if *until <= Instant::now() => {
                inner.values.remove(key);
                notify(&mut inner.watchers, &KeyEvent::Deleted(key.to_owned()));
                Ok(None)
            }
            Some((value, _)) => Ok(Some(value.clone())),
            None => Ok(None),
        }
    }

    fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), Error> {
        let mut inner = lock(&self.inner);
        let until = ttl.map(|t| Instant::now() + t);
        inner
            .values
            .insert(key.to_owned(), (value.to_owned(), until));
        notify(&mut inner.watchers, &KeyEvent::Set(key.to_owned()));
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<bool, Error> {
        let mut inner = lock(&self.inner);
        let was = inner.values.remove(key).is_some();
        if was {
            notify(&mut inner.watchers, &KeyEvent::Deleted(key.to_owned()));
        }
        Ok(was)
    }

    fn watch(&self) -> Result<Receiver<KeyEvent>, Error> {
        let (tx, rx) = channel();
        lock(&self.inner).watchers.push(tx);
        Ok(rx)
    }
}

/// An entry as it was appended (its text is JSON that this store wrote).
fn parsed((id, text): &(EntryId, Box<str>)) -> (EntryId, Value) {
    (*id, serde_json::from_str(text).unwrap_or(Value::Null))
}

#[derive(Default)]
struct HistoryInner {
    /// Entries as JSON text: a few times smaller than a `Value` tree, and read far
    /// less often than written.
    streams: HashMap<String, VecDeque<(EntryId, Box<str>)>>,
    /// Each stream's last append, and the streams by it, to forget the stalest.
    appended: HashMap<String, EntryId>,
    by_append: BTreeMap<EntryId, String>,
    last: Option<EntryId>,
}

/// Bounded streams in memory: each keeps its newest `max_entries` entries, and the
/// newest `max_streams` streams are kept (by last append), so that clients writing
/// to ever new conversations cannot grow memory without end.
pub struct MemoryHistory {
    max_entries: usize,
    max_streams: usize,
    inner: Mutex<HistoryInner>,
}

/// Streams kept in memory by default.
pub const MAX_STREAMS: usize = 10_000;

impl MemoryHistory {
    /// Streams that keep at most `max_entries` entries each, [`MAX_STREAMS`] of them.
    pub fn new(max_entries: usize) -> Self {
        Self::with_streams(max_entries, MAX_STREAMS)
    }

    /// At most `max_streams` streams of at most `max_entries` entries.
    pub fn with_streams(max_entries: usize, max_streams: usize) -> Self {
        MemoryHistory {
            max_entries: max_entries.max(1),
            max_streams: max_streams.max(1),
            inner: Mutex::new(HistoryInner::default()),
        }
    }

    /// A new id: the current millisecond, or the last id's if the clock is behind it,
    /// so that ids only grow.
    fn next_id(last: Option<EntryId>) -> EntryId {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        match last {
            Some(l) if l.ms >= ms => EntryId {
                ms: l.ms,
                seq: l.seq + 1,
            },
            _ => EntryId { ms, seq: 0 },
        }
    }
}

impl History for MemoryHistory {
    fn append(&self, stream: &str, entry: &Value) -> Result<EntryId, Error> {
        let mut inner = lock(&self.inner);
        let id = Self::next_id(inner.last);
        inner.last = Some(id);
        let max = self.max_entries;
        let entries = inner.streams.entry(stream.to_owned()).or_default();
        entries.push_back((id, entry.to_string().into_boxed_str()));
        while entries.len() > max {
            entries.pop_front();
        }
        if let Some(before) = inner.appended.insert(stream.to_owned(), id) {
            inner.by_append.remove(&before);
        }
        inner.by_append.insert(id, stream.to_owned());
        while inner.streams.len() > self.max_streams {
            let Some((_, stalest)) = inner.by_append.pop_first() else {
                break;
            };
            inner.streams.remove(&stalest);
            inner.appended.remove(&stalest);
        }
        Ok(id)
    }

    fn after(
        &self,
        stream: &str,
        after: Option<EntryId>,
        limit: usize,
    ) -> Result<Vec<(EntryId, Value)>, Error> {
        let inner = lock(&self.inner);
        let Some(entries) = inner.streams.get(stream) else {
            return Ok(Vec::new());
        };
        let start = match after {
            Some(a) => entries.partition_point(|(id, _)| *id <= a),
            None => 0,
        };
        Ok(entries.iter().skip(start).take(limit).map(parsed).collect())
    }

    fn last(&self, stream: &str, limit: usize) -> Result<Vec<(EntryId, Value)>, Error> {
        let inner = lock(&self.inner);
        let Some(entries) = inner.streams.get(stream) else {
            return Ok(Vec::new());
        };
        let skip = entries.len().saturating_sub(limit);
        Ok(entries.iter().skip(skip).map(parsed).collect())
    }

    fn remove(&self, stream: &str, id: EntryId) -> Result<bool, Error> {
        let mut inner = lock(&self.inner);
        let Some(entries) = inner.streams.get_mut(stream) else {
            return Ok(false);
        };
        match entries.binary_search_by_key(&id, |(i, _)| *i) {
            Ok(at) => {
                entries.remove(at);
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }
}

/// Channels in memory: every subscriber of this process gets every message.
#[derive(Default)]
pub struct MemoryBus {
    channels: Mutex<HashMap<String, Vec<Sender<String>>>>,
}

impl MemoryBus {
    /// A bus with no subscribers.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Bus for MemoryBus {
    fn publish(&self, name: &str, payload: &str) -> Result<(), Error> {
        if let Some(subs) = lock(&self.channels).get_mut(name) {
            subs.retain(|s| s.send(payload.to_owned()).is_ok());
        }
        Ok(())
    }

    fn subscribe(&self, name: &str) -> Result<Receiver<String>, Error> {
        let (tx, rx) = channel();
        lock(&self.channels)
            .entry(name.to_owned())
            .or_default()
            .push(tx);
        Ok(rx)
    }

    fn reaches_other_nodes(&self) -> bool {
        false
    }
}

/// The shared state of one node: it is the only node, so nothing lapses, and what
/// [`Shared::update`] would publish has nobody to reach. A removed document leaves no
/// tombstone: no other node can still be hearing of it.
#[derive(Default)]
pub struct MemoryShared {
    inner: Mutex<SharedInner>,
}

#[derive(Default)]
struct SharedInner {
    /// Documents by index, then name.
    documents: HashMap<String, BTreeMap<String, String>>,
    /// Names held, by node; and nodes holding, by name.
    held: HashMap<String, BTreeSet<String>>,
    holders: HashMap<String, BTreeSet<String>>,
}

impl MemoryShared {
    /// No documents, and nothing held.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Shared for MemoryShared {
    fn update(
        &self,
        ns: &str,
        index: &str,
        name: &str,
        decide: &mut dyn FnMut(Option<&str>, usize) -> Decision,
    ) -> Result<bool, Error> {
        let mut inner = lock(&self.inner);
        let docs = inner.documents.entry(format!("{ns}:{index}")).or_default();
        let Some((write, _announce)) = decide(docs.get(name).map(String::as_str), docs.len())
        else {
            return Ok(false);
        };
        match write {
            Write::Put(text) => docs.insert(name.to_owned(), text),
            Write::Remove { .. } => docs.remove(name),
        };
        Ok(true)
    }

    fn documents(&self, ns: &str, index: &str) -> Result<Vec<(String, String)>, Error> {
        let inner = lock(&self.inner);
        Ok(inner
            .documents
            .get(&format!("{ns}:{index}"))
            .map(|d| d.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    fn beat(&self, _: &str, _: &str, _: Duration) -> Result<bool, Error> {
        Ok(true)
    }

    fn nodes(&self, _: &str) -> Result<Vec<(String, bool)>, Error> {
        Ok(Vec::new())
    }

    fn hold(&self, _: &str, node: &str, names: &[&str]) -> Result<(), Error> {
        let mut inner = lock(&self.inner);
        for name in names {
            let name = (*name).to_owned();
            inner
                .held
                .entry(node.to_owned())
                .or_default()
                .insert(name.clone());
            inner
                .holders
                .entry(name)
                .or_default()
                .insert(node.to_owned());
        }
        Ok(())
    }

    fn release(&self, _: &str, node: &str, names: &[&str]) -> Result<Vec<String>, Error> {
        let mut inner = lock(&self.inner);
        let mut gone = Vec::new();
        for name in names {
            if let Some(held) = inner.held.get_mut(node) {
                held.remove(*name);
            }
            let holders = inner.holders.entry((*name).to_owned()).or_default();
            holders.remove(node);
            if holders.is_empty() {
                inner.holders.remove(*name);
                gone.push((*name).to_owned());
            }
        }
        Ok(gone)
    }

    fn held(&self, _: &str, node: &str) -> Result<Vec<String>, Error> {
        let inner = lock(&self.inner);
        Ok(inner
            .held
            .get(node)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default())
    }

    fn bury(&self, _: &str, _: &str) -> Result<Option<Vec<String>>, Error> {
        Ok(None)
    }

    fn publish_to_holders(
        &self,
        _: &str,
        _: &[&str],
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<usize, Error> {
        Ok(0)
    }

    fn answer(&self, _: &str, _: &str, _: &str, _: Duration) -> Result<(), Error> {
        Ok(())
    }

    fn gather(&self, _: &str, _: &str, _: usize, _: Duration) -> Result<Vec<String>, Error> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sessions_set_get_delete_and_expire_with_events() {
        let s = MemorySessions::new();
        let events = s.watch().unwrap();
        assert_eq!(s.get("session-store-a").unwrap(), None);
        s.set("session-store-a", "79", None).unwrap();
        assert_eq!(s.get("session-store-a").unwrap().as_deref(), Some("79"));
        assert!(s.delete("session-store-a").unwrap());
        assert!(!s.delete("session-store-a").unwrap());
        s.set("short", "x", Some(Duration::ZERO)).unwrap();
        assert_eq!(
            s.get("short").unwrap(),
            None,
            "an expired key reads as absent"
        );
        s.set("also-short", "x", Some(Duration::ZERO)).unwrap();
        assert_eq!(s.sweep(), 1);
        let got: Vec<KeyEvent> = events.try_iter().collect();
        assert_eq!(
            got,
            vec![
                KeyEvent::Set("session-store-a".into()),
                KeyEvent::Deleted("session-store-a".into()),
                KeyEvent::Set("short".into()),
                KeyEvent::Deleted("short".into()),
                KeyEvent::Set("also-short".into()),
                KeyEvent::Deleted("also-short".into()),
            ]
        );
        // A watcher that went away is forgotten, not an error.
        drop(events);
        s.set("k", "v", None).unwrap();
    }

    #[test]
    fn the_stalest_streams_are_forgotten_past_the_bound() {
        let h = MemoryHistory::with_streams(10, 3);
        for s in ["a", "b", "c"] {
            h.append(s, &json!(s)).unwrap();
        }
        // `a` written again is the freshest; `d` pushes out `b`, the stalest.
        h.append("a", &json!("a2")).unwrap();
        h.append("d", &json!("d")).unwrap();
        let len = |s: &str| h.last(s, 10).unwrap().len();
        assert_eq!((len("a"), len("b"), len("c"), len("d")), (2, 0, 1, 1));
        let inner = lock(&h.inner);
        assert_eq!(
            (
                inner.streams.len(),
                inner.appended.len(),
                inner.by_append.len()
            ),
            (3, 3, 3)
        );
    }

    #[test]
    fn history_is_bounded_ordered_and_resumable() {
        let h = MemoryHistory::new(3);
        let ids: Vec<EntryId> = (0..5)
            .map(|i| h.append("room:a", &json!({ "n": i })).unwrap())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        h.append("room:b", &json!("other")).unwrap();
        let kept = h.after("room:a", None, 10).unwrap();
        assert_eq!(
            kept.iter()
                .map(|(_, v)| v["n"].as_i64().unwrap())
                .collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        // Resuming after an id returns exactly what came later.
        let missed = h.after("room:a", Some(ids[2]), 10).unwrap();
        assert_eq!(
            missed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![ids[3], ids[4]]
        );
        assert_eq!(h.after("room:a", Some(ids[4]), 10).unwrap(), vec![]);
        assert_eq!(h.after("room:a", None, 1).unwrap().len(), 1);
        assert_eq!(
            h.last("room:a", 2)
                .unwrap()
                .iter()
                .map(|(id, _)| *id)
                .collect::<Vec<_>>(),
            vec![ids[3], ids[4]]
        );
        assert_eq!(h.after("nowhere", None, 5).unwrap(), vec![]);
        // A deleted entry is gone from every read; deleting it again finds nothing.
        assert!(h.remove("room:a", ids[3]).unwrap());
        assert!(!h.remove("room:a", ids[3]).unwrap());
        assert!(!h.remove("nowhere", ids[3]).unwrap());
        assert_eq!(
            h.after("room:a", Some(ids[2]), 10)
                .unwrap()
                .iter()
                .map(|(id, _)| *id)
                .collect::<Vec<_>>(),
            vec![ids[4]]
        );
    }

    #[test]
    fn ids_grow_even_when_the_clock_does_not() {
        let far = EntryId {
            ms: u64::MAX / 2,
            seq: 7,
        };
        assert_eq!(
            MemoryHistory::next_id(Some(far)),
            EntryId { ms: far.ms, seq: 8 }
        );
        assert_eq!(MemoryHistory::next_id(None).seq, 0);
    }

    #[test]
    fn bus_delivers_to_every_subscriber_of_the_channel() {
        let bus = MemoryBus::new();
        let a = bus.subscribe("notifications").unwrap();
        let b = bus.subscribe("notifications").unwrap();
        let other = bus.subscribe("elsewhere").unwrap();
        bus.publish("notifications", r#"{"users":[23],"data":{}}"#)
            .unwrap();
        bus.publish("nobody-listens", "x").unwrap();
        assert_eq!(a.try_recv().unwrap(), r#"{"users":[23],"data":{}}"#);
        assert_eq!(b.try_recv().unwrap(), r#"{"users":[23],"data":{}}"#);
        assert!(other.try_recv().is_err());
        drop(a);
        bus.publish("notifications", "again").unwrap();
        assert_eq!(b.try_recv().unwrap(), "again");
    }
}
