//! The Redis back end: session keys with `GET`/`SET`/`DEL` and keyspace notifications,
//! history in streams (`XADD ... MAXLEN ~`, `XRANGE`), the bus with `PUBLISH` and
//! `SUBSCRIBE`. Keys and values are exactly what a site writes; nothing is wrapped.
//!
//! Commands share one connection behind a lock; a command that fails drops it, and the
//! next one connects again, so an outage costs the calls made during it
//! ([`Error::Unavailable`]) and nothing after. Each subscription has its own
//! connection and thread, which reconnects with backoff and subscribes again; it
//! counts its subscriptions ([`RedisStore::subscriptions`]) so that the caller can see
//! an outage end.

use super::{Bus, EntryId, Error, History, KeyEvent, Sessions};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Settings of the Redis back end.
#[derive(Clone, Debug)]
pub struct Config {
    /// `redis://host:port/db`.
    pub url: String,
    /// Deadline of each connection attempt and each command. Default 2 s.
    pub timeout: Duration,
    /// Entries kept per history stream (`XADD MAXLEN ~`: Redis may keep a few more
    /// until a whole node of the stream can go). Default 1000.
    pub max_history: usize,
    /// How long a history stream lives after its last entry (`EXPIRE`), so that
    /// conversations nobody continues do not keep keys for ever. Default 30 days;
    /// `None` keeps them.
    pub history_ttl: Option<Duration>,
    /// Connections for commands, used by whichever handler finds one free, so that
    /// one handler's round trip does not hold up all the others. Default 4.
    pub connections: usize,
}

impl Config {
    /// Defaults for `url`.
    pub fn new(url: &str) -> Self {
        Config {
            url: url.to_owned(),
            timeout: Duration::from_secs(2),
            max_history: 1000,
            history_ttl: Some(Duration::from_secs(30 * 24 * 3600)),
            connections: 4,
        }
    }
}

/// What a subscription reports about its line to Redis, for the caller's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// A subscription that was up lost its connection; it will try again with backoff.
    Lost {
        /// The channel or pattern.
        channel: String,
        /// Why.
        error: String,
    },
    /// It subscribed again after [`Status::Lost`]. Messages published in between
    /// were not received (pub/sub keeps nothing).
    Restored {
        /// The channel or pattern.
        channel: String,
    },
}

/// Called with each [`Status`] change, on the subscription's thread.
pub type Observer = Arc<dyn Fn(Status) + Send + Sync>;

/// Sessions, history and bus on one Redis server.
pub struct RedisStore {
    config: Config,
    client: redis::Client,
    db: i64,
    /// Each with the epoch it was made in.
    conns: Vec<Mutex<Option<(u64, redis::Connection)>>>,
    /// Where the next command starts looking for a free connection.
    next: AtomicU64,
    /// Advanced when a line to Redis is found dead (a command's, or a
    /// subscription's): connections made before are remade before their next use, as
    /// after a restart of Redis they all are.
    epoch: Arc<AtomicU64>,
    subscriptions: Arc<AtomicU64>,
    observer: Arc<Mutex<Option<Observer>>>,
    /// Cleared when the store is dropped, so that its subscription threads end (a
    /// thread waiting on a quiet channel would not notice otherwise).
    open: Arc<AtomicBool>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.open.store(false, Ordering::Relaxed);
    }
}

fn unavailable(e: redis::RedisError) -> Error {
    Error::Unavailable(e.to_string())
}

/// Whether Redis answered with an error about this command (a wrong type, a bad
/// argument), as opposed to being unable to serve any: the line is fine.
fn refused_command(e: &redis::RedisError) -> bool {
    const NOT_SERVING: [&str; 5] = ["LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"];
    matches!(
        e.kind(),
        redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
    ) && !e.code().is_some_and(|c| NOT_SERVING.contains(&c))
}

impl RedisStore {
    /// A store for `config.url`; no connection is made until the first command.
    pub fn new(config: Config) -> Result<RedisStore, Error> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| Error::Invalid(format!("{}: {e}", config.url)))?;
        let db = client.get_connection_info().redis_settings().db();
        let conns = (0..config.connections.max(1))
            .map(|_| Mutex::new(None))
            .collect();
        Ok(RedisStore {
            config,
            client,
            db,
            conns,
            next: AtomicU64::new(0),
            epoch: Arc::new(AtomicU64::new(0)),
            subscriptions: Arc::new(AtomicU64::new(0)),
            observer: Arc::new(Mutex::new(None)),
            open: Arc::new(AtomicBool::new(true)),
        })
    }

    /// Calls `observer` when a subscription loses Redis and when it is back, so that
    /// an outage is logged and what it may have missed is looked at again.
    pub fn set_observer(&self, observer: Observer) {
        *self.observer.lock().unwrap_or_else(|p| p.into_inner()) = Some(observer);
    }

    /// How many times a subscription connected and subscribed, the first time
    /// included: it grows again when subscriptions come back after an outage.
    pub fn subscriptions(&self) -> u64 {
        self.subscriptions.load(Ordering::Relaxed)
    }

    fn connect(&self) -> Result<redis::Connection, Error> {
        let conn = self
            .client
            .get_connection_with_timeout(self.config.timeout)
            .map_err(unavailable)?;
        conn.set_read_timeout(Some(self.config.timeout))
            .map_err(unavailable)?;
        conn.set_write_timeout(Some(self.config.timeout))
            .map_err(unavailable)?;
        Ok(conn)
    }

    /// Runs one command on the shared connection, connecting first if needed.
    fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Error> {
        self.run(|conn| cmd.query(conn))
    }

    /// Runs `f` on the shared connection, connecting first if needed.
    fn run<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Error> {
        // The first free connection from a rotating start; if all are busy, wait
        // for the one at the start.
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) as usize % n;
        let mut slot = (0..n)
            .find_map(|i| self.conns[(start + i) % n].try_lock().ok())
            .unwrap_or_else(|| self.conns[start].lock().unwrap_or_else(|p| p.into_inner()));
        let epoch = self.epoch.load(Ordering::Relaxed);
        if slot.as_ref().is_none_or(|(made, _)| *made < epoch) {
            *slot = None;
            *slot = Some((epoch, self.connect()?));
        }
        let Some((_, conn)) = slot.as_mut() else {
            return Err(Error::Unavailable("no connection".into()));
        };
        match f(conn) {
            Ok(v) => Ok(v),
            Err(e) => {
                // A reply we cannot use, or Redis refusing this one command (such as
                // WRONGTYPE), is not an outage; anything else drops the connection so
                // that the next command starts afresh.
                if e.kind() == redis::ErrorKind::Parse
                    || e.kind() == redis::ErrorKind::UnexpectedReturnType
                    || refused_command(&e)
                {
                    return Err(Error::Invalid(e.to_string()));
                }
                if !e.is_io_error() && e.code().is_some() {
                    // Redis is up but not serving (LOADING...): keep the line.
                    return Err(unavailable(e));
                }
                *slot = None;
                self.epoch.fetch_add(1, Ordering::Relaxed);
                Err(unavailable(e))
            }
        }
    }

    /// Makes sure Redis sends keyspace notifications for string commands, generic
    /// commands and expiries (`K$gxe` added to `notify-keyspace-events`). Returns the
    /// flags in force, so that the caller can log them. A managed Redis that forbids
    /// `CONFIG SET` gives an error saying so.
    pub fn enable_keyspace_events(&self) -> Result<String, Error> {
        let current: Vec<String> = self.query(
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("notify-keyspace-events"),
        )?;
        let flags = current.get(1).cloned().unwrap_or_default();
        let mut wanted = flags.clone();
        // K: keyspace events; $: string commands (SET); g: DEL and the like; x: expiry;
        // e: eviction under maxmemory. 'A' already covers all but 'K'.
        for f in ['K', '$', 'g', 'x', 'e'] {
            let covered = wanted.contains(f) || (f != 'K' && wanted.contains('A'));
            if !covered {
                wanted.push(f);
            }
        }
        if wanted != flags {
            let _: () = self
                .query(
                    redis::cmd("CONFIG")
                        .arg("SET")
                        .arg("notify-keyspace-events")
                        .arg(&wanted),
                )
                .map_err(|e| Error::Unavailable(format!("cannot enable keyspace events: {e}")))?;
        }
        Ok(wanted)
    }

    /// A thread that keeps a (pattern) subscription alive and forwards what arrives.
    fn subscription<T: Send + 'static>(
        &self,
        name: &str,
        pattern: bool,
        convert: impl Fn(&redis::Msg) -> Option<T> + Send + 'static,
    ) -> Result<Receiver<T>, Error> {
        let (tx, rx) = channel();
        let client = self.client.clone();
        let timeout = self.config.timeout;
        let subscriptions = self.subscriptions.clone();
        let observer = self.observer.clone();
        let open = self.open.clone();
        let epoch = self.epoch.clone();
        let name = name.to_owned();
        thread::Builder::new()
            .name(format!("redis-sub {name}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                let report = |status: Status| {
                    let observer = observer.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    if let Some(observer) = observer {
                        observer(status);
                    }
                };
                let line = Line {
                    client,
                    timeout,
                    name: &name,
                    pattern,
                    open,
                    epoch,
                };
                subscribe_loop(line, &tx, subscriptions, report, convert)
            })
            .map_err(|e| Error::Unavailable(format!("no thread for a subscription: {e}")))?;
        Ok(rx)
    }
}

/// Where a subscription connects, and to what.
struct Line<'a> {
    client: redis::Client,
    timeout: Duration,
    name: &'a str,
    pattern: bool,
    open: Arc<AtomicBool>,
    epoch: Arc<AtomicU64>,
}

/// Subscribes, forwards messages, and on any failure waits (0.1 s doubling to 5 s)
/// and subscribes again, reporting the loss and the return. A first subscription that
/// fails (Redis down at start) is reported as a loss too, so that the return is seen.
/// Ends when the store is dropped (seen within the 1 s read timeout, or the backoff),
/// or when a message finds the receiver dropped.
fn subscribe_loop<T>(
    line: Line,
    tx: &Sender<T>,
    subscriptions: Arc<AtomicU64>,
    report: impl Fn(Status),
    convert: impl Fn(&redis::Msg) -> Option<T>,
) {
    let Line {
        client,
        timeout,
        name,
        pattern,
        open,
        epoch,
    } = line;
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    let mut lost = false;
    loop {
        if !open.load(Ordering::Relaxed) {
            return;
        }
        if !first {
            thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        first = false;
        let mut conn = match client.get_connection_with_timeout(timeout) {
            Ok(conn) => conn,
            Err(e) => {
                if !lost {
                    lost = true;
                    report(Status::Lost {
                        channel: name.to_owned(),
                        error: e.to_string(),
                    });
                }
                continue;
            }
        };
        // A read timeout lets the thread notice a dropped store and a dead server.
        if conn.set_read_timeout(Some(Duration::from_secs(1))).is_err() {
            continue;
        }
        let mut pubsub = conn.as_pubsub();
        let subscribed = if pattern {
            pubsub.psubscribe(name)
        } else {
            pubsub.subscribe(name)
        };
        if subscribed.is_err() {
            continue;
        }
        subscriptions.fetch_add(1, Ordering::Relaxed);
        backoff = Duration::from_millis(100);
        if lost {
            report(Status::Restored {
                channel: name.to_owned(),
            });
        }
        let error = loop {
            match pubsub.get_message() {
                Ok(msg) => {
                    if let Some(item) = convert(&msg) {
                        if tx.send(item).is_err() {
                            return;
                        }
                    }
                }
                Err(e) if e.is_timeout() => {
                    if !open.load(Ordering::Relaxed) {
                        return;
                    }
                    // Quiet: check the line.
                    // Subscribed, Redis answers PING with ["pong", ""], not a
                    // status; any answer will do.
                    if let Err(e) = pubsub.ping::<redis::Value>() {
                        break e;
                    }
                }
                Err(e) => break e,
            }
        };
        lost = true;
        // The command connections most likely went with this one.
        epoch.fetch_add(1, Ordering::Relaxed);
        report(Status::Lost {
            channel: name.to_owned(),
            error: error.to_string(),
        });
    }
}

impl Sessions for RedisStore {
    fn get(&self, key: &str) -> Result<Option<String>, Error> {
        match self.query(redis::cmd("GET").arg(key)) {
            // A key that holds a list or a stream is no session.
            Err(Error::Invalid(why)) if why.contains("WRONGTYPE") => Ok(None),
            other => other,
        }
    }

    fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), Error> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
        }
        self.query(&cmd)
    }

    fn delete(&self, key: &str) -> Result<bool, Error> {
        let n: i64 = self.query(redis::cmd("DEL").arg(key))?;
        Ok(n > 0)
    }

    /// Keyspace notifications of database `db` (see
    /// [`RedisStore::enable_keyspace_events`]): `set` is a [`KeyEvent::Set`]; `del`,
    /// `expired` and `evicted` are a [`KeyEvent::Deleted`].
    fn watch(&self) -> Result<Receiver<KeyEvent>, Error> {
        let prefix = format!("__keyspace@{}__:", self.db);
        let pattern = format!("{prefix}*");
        self.subscription(&pattern, true, move |msg| {
            let key = msg
                .get_channel_name()
                .strip_prefix(prefix.as_str())?
                .to_owned();
            let event: String = msg.get_payload().ok()?;
            match event.as_str() {
                "set" => Some(KeyEvent::Set(key)),
                "del" | "expired" | "evicted" => Some(KeyEvent::Deleted(key)),
                _ => None,
            }
        })
    }
}

impl History for RedisStore {
    fn append(&self, stream: &str, entry: &Value) -> Result<EntryId, Error> {
        let mut pipe = redis::pipe();
        pipe.cmd("XADD")
            .arg(stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.config.max_history)
            .arg("*")
            .arg("entry")
            .arg(entry.to_string());
        if let Some(ttl) = self.config.history_ttl {
            pipe.cmd("EXPIRE")
                .arg(stream)
                .arg(ttl.as_secs().max(1))
                .ignore();
        }
        let (id,): (String,) = self.run(|conn| pipe.query(conn))?;
        id.parse()
    }

    fn after(
        &self,
        stream: &str,
        after: Option<EntryId>,
        limit: usize,
    ) -> Result<Vec<(EntryId, Value)>, Error> {
        if after == Some(EntryId::MAX) {
            // Nothing comes after the last id there can be (and Redis refuses it).
            return Ok(Vec::new());
        }
        let start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let rows: Vec<(String, Vec<String>)> = self.query(
            redis::cmd("XRANGE")
                .arg(stream)
                .arg(start)
                .arg("+")
                .arg("COUNT")
                .arg(limit),
        )?;
        rows.into_iter().map(entry).collect()
    }

    fn last(&self, stream: &str, limit: usize) -> Result<Vec<(EntryId, Value)>, Error> {
        let rows: Vec<(String, Vec<String>)> = self.query(
            redis::cmd("XREVRANGE")
                .arg(stream)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(limit),
        )?;
        let mut entries = rows.into_iter().map(entry).collect::<Result<Vec<_>, _>>()?;
        entries.reverse();
        Ok(entries)
    }

    fn remove(&self, stream: &str, id: EntryId) -> Result<bool, Error> {
        let n: i64 = self.query(redis::cmd("XDEL").arg(stream).arg(id.to_string()))?;
        Ok(n > 0)
    }
}

/// One stream entry as written by [`History::append`]: field `entry`, JSON.
fn entry((id, fields): (String, Vec<String>)) -> Result<(EntryId, Value), Error> {
    let json = fields
        .chunks(2)
        .find(|kv| kv.first().map(String::as_str) == Some("entry"))
        .and_then(|kv| kv.get(1))
        .ok_or_else(|| Error::Invalid(format!("stream entry {id} has no entry field")))?;
    let value = serde_json::from_str(json)
        .map_err(|e| Error::Invalid(format!("stream entry {id}: {e}")))?;
    Ok((id.parse()?, value))
}

impl Bus for RedisStore {
    fn publish(&self, name: &str, payload: &str) -> Result<(), Error> {
        let _receivers: i64 = self.query(redis::cmd("PUBLISH").arg(name).arg(payload))?;
        Ok(())
    }

    fn subscribe(&self, name: &str) -> Result<Receiver<String>, Error> {
        self.subscription(name, false, |msg| msg.get_payload::<String>().ok())
    }
}
