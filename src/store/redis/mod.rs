//! The Redis back end: session keys with `GET`/`SET`/`DEL` and keyspace notifications,
//! history in streams (`XADD ... MAXLEN ~`, `XRANGE`), the bus with `PUBLISH` and
//! `SUBSCRIBE`. Keys and values are exactly what a site writes; nothing is wrapped.
//!
//! Commands run on a small pool of connections. Every call has one deadline,
//! [`Config::timeout`], that covers waiting for a free connection, connecting, and
//! the round trip, so a Redis that hangs (stopped, overloaded, a network that drops
//! packets) costs a caller at most that long. A connection that fails is dropped and
//! the next call connects again. Once a call found Redis down, the store is marked
//! down ([`RedisStore::health`]): until a call succeeds again, one call every 500 ms
//! tries Redis and the others fail at once with [`Error::Unavailable`], so that an
//! outage does not make every handler wait out its deadline in turn.
//!
//! Each subscription has its own connection and thread, which reconnects with backoff
//! and subscribes again; it counts its subscriptions ([`RedisStore::subscriptions`])
//! so that the caller can see an outage end.

mod pool;
mod shared;

use super::master::Master;
use super::{Bus, EntryId, Error, History, KeyEvent, Sessions, Shared};
use pool::Pool;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Why a call failed, for the store's view of Redis.
enum Failure {
    /// Every pooled connection stayed busy until the deadline: this node's load, not
    /// Redis's state, which is left as it was.
    Busy(Error),
    /// Redis answered, refusing this one command or with a reply we cannot use: it is
    /// up.
    Answered(Error),
    /// Redis did not answer, or could not be reached: it is marked down.
    Down(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Down(e)
    }
}

/// While Redis is down, one call in this time may try it; the others fail at once.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// What is left of `deadline`, or the error of a call that ran out of time.
fn time_left(deadline: Instant) -> Result<Duration, Error> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left < Duration::from_millis(1) {
        return Err(Error::Unavailable("Redis did not answer in time".into()));
    }
    Ok(left)
}

/// The socket timeout that keeps one call within `left`: half of it, since the redis
/// crate's reply parser reads once more after a read that timed out (seen with strace
/// against a redis-server stopped with SIGSTOP: two `recvfrom`, each waiting out the
/// timeout, in the command and in the connection's setup alike).
fn socket_timeout(left: Duration) -> Duration {
    (left / 2).max(Duration::from_millis(1))
}

/// Clears the probing flag when the call that set it ends.
struct Probe<'a>(&'a AtomicBool);

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Settings of the Redis back end.
#[derive(Clone, Debug)]
pub struct Config {
    /// `redis://host:port/db`.
    pub url: String,
    /// Time one call has in all: waiting for a pooled connection, connecting, and
    /// the command's round trip. Default 2 s.
    pub timeout: Duration,
    /// Entries kept per history stream (`XADD MAXLEN ~`: Redis may keep a few more
    /// until a whole node of the stream can go). Default 1000.
    pub max_history: usize,
    /// How long a history stream lives after its last entry (`EXPIRE`), so that
    /// conversations nobody continues do not keep keys for ever. Default 30 days;
    /// `None` keeps them. A node renews a stream's expiry at most once per
    /// [`EXPIRE_EVERY`], so a stream lives that much less at worst.
    pub history_ttl: Option<Duration>,
    /// Connections for commands, used by whichever handler finds one free, so that
    /// one handler's round trip does not hold up all the others. Default 4.
    pub connections: usize,
    /// Replicas that must have a message (`WAIT`) before it counts as taken: with 1,
    /// a message answered as taken survives a failover to a replica (Redis Sentinel);
    /// one the replicas did not confirm within a quarter of `timeout` is an error to
    /// its sender. Default 0: answered once the master has it.
    pub replicas: usize,
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
            replicas: 0,
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
    /// Where the master is: fixed, or followed through Redis Sentinel.
    master: Arc<Master>,
    db: i64,
    pool: Pool,
    /// Why Redis was last found down, and when a call may try it again, while it is
    /// down; `None` once a call succeeded.
    down: Arc<Mutex<Option<(String, Instant)>>>,
    /// A call is trying Redis while it is marked down; the others fail at once.
    probing: AtomicBool,
    /// Mirrors `down.is_some()`, so that a call while Redis is up takes no lock for it.
    is_down: Arc<AtomicBool>,
    /// Advanced when a line to Redis is found dead (a command's, or a
    /// subscription's): connections made before are remade before their next use, as
    /// after a restart of Redis they all are.
    epoch: Arc<AtomicU64>,
    subscriptions: Arc<AtomicU64>,
    /// Subscriptions lost and not back yet, with why.
    lost: Arc<Mutex<std::collections::BTreeMap<String, String>>>,
    observer: Arc<Mutex<Option<Observer>>>,
    /// Cleared when the store is dropped, so that its subscription threads end (a
    /// thread waiting on a quiet channel would not notice otherwise).
    open: Arc<AtomicBool>,
    /// When this node last renewed each history stream's expiry.
    renewed: Mutex<std::collections::HashMap<String, Instant>>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.open.store(false, Ordering::Relaxed);
    }
}

fn unavailable(e: redis::RedisError) -> Error {
    if e.is_timeout() {
        return Error::Unavailable("Redis did not answer in time".into());
    }
    Error::Unavailable(e.to_string())
}

/// Whether Redis answered with an error about this command (a wrong type, a bad
/// argument), as opposed to being unable to serve any: the line is fine.
fn refused_command(e: &redis::RedisError) -> bool {
    const NOT_SERVING: [&str; 6] = [
        "LOADING",
        "BUSY",
        "MASTERDOWN",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "READONLY",
    ];
    matches!(
        e.kind(),
        redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
    ) && !e.code().is_some_and(|c| NOT_SERVING.contains(&c))
}

impl RedisStore {
    /// A store for `config.url`; no connection is made until the first command.
    pub fn new(config: Config) -> Result<RedisStore, Error> {
        let master = Arc::new(Master::parse(&config.url)?);
        let db = master.db();
        let pool = Pool::new(config.connections.max(1));
        Ok(RedisStore {
            config,
            master,
            db,
            pool,
            down: Arc::new(Mutex::new(None)),
            probing: AtomicBool::new(false),
            is_down: Arc::new(AtomicBool::new(false)),
            epoch: Arc::new(AtomicU64::new(0)),
            subscriptions: Arc::new(AtomicU64::new(0)),
            lost: Arc::new(Mutex::new(std::collections::BTreeMap::new())),
            observer: Arc::new(Mutex::new(None)),
            open: Arc::new(AtomicBool::new(true)),
            renewed: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Whether `stream`'s expiry is due for renewal ([`EXPIRE_EVERY`]); notes that it
    /// is renewed now.
    fn renew(&self, stream: &str) -> bool {
        let now = Instant::now();
        let mut renewed = self.renewed.lock().unwrap_or_else(|p| p.into_inner());
        if renewed
            .get(stream)
            .is_some_and(|at| now.duration_since(*at) < EXPIRE_EVERY)
        {
            return false;
        }
        if renewed.len() >= EXPIRES_KEPT {
            renewed.clear();
        }
        renewed.insert(stream.to_owned(), now);
        true
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

    /// Whether Redis answered the last call and every subscription is up:
    /// [`Error::Unavailable`] with why not, while one of them is down.
    pub fn health(&self) -> Result<(), Error> {
        if let Some((why, _)) = &*self.down.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(Error::Unavailable(why.clone()));
        }
        let lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        match lost.iter().next() {
            Some((channel, why)) => Err(Error::Unavailable(format!(
                "subscription to {channel} lost: {why}"
            ))),
            None => Ok(()),
        }
    }

    fn connect(&self, deadline: Instant) -> Result<redis::Connection, Error> {
        let timeout = socket_timeout(time_left(deadline)?);
        let connected = self
            .master
            .client(timeout)?
            .get_connection_with_timeout(timeout);
        connected.map_err(|e| {
            self.master.forget();
            unavailable(e)
        })
    }

    /// Runs one command, within the store's deadline.
    fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Error> {
        self.run(|conn| cmd.query(conn))
    }

    /// Runs `f` on a pooled connection, connecting first if needed, all within
    /// [`Config::timeout`]. While Redis is marked down, one call every
    /// [`PROBE_INTERVAL`] tries it, and the others fail at once.
    fn run<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Error> {
        let now = Instant::now();
        let was_down = self.is_down.load(Ordering::Acquire);
        let _probe = if !was_down {
            None
        } else {
            let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
            match down.as_mut() {
                None => None,
                Some((why, next_try)) => {
                    if now < *next_try || self.probing.swap(true, Ordering::SeqCst) {
                        return Err(Error::Unavailable(why.clone()));
                    }
                    *next_try = now + PROBE_INTERVAL;
                    Some(Probe(&self.probing))
                }
            }
        };
        let result = self.run_within(now + self.config.timeout, f);
        match &result {
            Err(Failure::Busy(_)) => {}
            Err(Failure::Down(Error::Unavailable(why))) => {
                let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
                *down = Some((why.clone(), Instant::now() + PROBE_INTERVAL));
                self.is_down.store(true, Ordering::Release);
            }
            _ if was_down || self.is_down.load(Ordering::Acquire) => {
                let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
                *down = None;
                self.is_down.store(false, Ordering::Release);
            }
            _ => {}
        }
        result.map_err(|f| match f {
            Failure::Busy(e) | Failure::Down(e) | Failure::Answered(e) => e,
        })
    }

    fn run_within<T>(
        &self,
        deadline: Instant,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Failure> {
        let epoch = self.epoch.load(Ordering::Relaxed);
        // All connections busy until the deadline is this node's load, not Redis
        // down: it refuses this call, and marks nothing.
        let mut slot = self.pool.take(deadline, epoch).map_err(Failure::Busy)?;
        if slot.conn.is_none() {
            slot.conn = Some((epoch, self.connect(deadline)?, None));
        }
        let Some((_, conn, set)) = slot.conn.as_mut() else {
            return Err(Error::Unavailable("no connection".into()).into());
        };
        // The socket's timeouts are what is left of the deadline, set again only when
        // that changed by more than a few milliseconds (each is a system call).
        let left = socket_timeout(time_left(deadline).map_err(Failure::Busy)?);
        if set.is_none_or(|t: Duration| t.abs_diff(left) > Duration::from_millis(5)) {
            conn.set_read_timeout(Some(left)).map_err(unavailable)?;
            conn.set_write_timeout(Some(left)).map_err(unavailable)?;
            *set = Some(left);
        }
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
                    return Err(Failure::Answered(Error::Invalid(e.to_string())));
                }
                if e.code() == Some("READONLY") {
                    // A master demoted to a replica (a failover): find the new one.
                    slot.conn = None;
                    self.master.forget();
                    self.epoch.fetch_add(1, Ordering::Relaxed);
                    return Err(unavailable(e).into());
                }
                if !e.is_io_error() && e.code().is_some() {
                    // Redis is up but not serving (LOADING...): keep the line.
                    return Err(unavailable(e).into());
                }
                slot.conn = None;
                self.master.forget();
                self.epoch.fetch_add(1, Ordering::Relaxed);
                Err(unavailable(e).into())
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
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let master = self.master.clone();
        let timeout = self.config.timeout;
        let subscriptions = self.subscriptions.clone();
        let observer = self.observer.clone();
        let open = self.open.clone();
        let epoch = self.epoch.clone();
        let lost = self.lost.clone();
        let down = self.down.clone();
        let is_down = self.is_down.clone();
        let name = name.to_owned();
        thread::Builder::new()
            .name(format!("redis-sub {name}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                let report = |status: Status| {
                    match &status {
                        Status::Lost { channel, error } => {
                            let mut lost = lost.lock().unwrap_or_else(|p| p.into_inner());
                            lost.insert(channel.clone(), error.clone());
                        }
                        Status::Restored { channel } => {
                            let mut lost = lost.lock().unwrap_or_else(|p| p.into_inner());
                            lost.remove(channel);
                            // Redis answered this line: commands may try it at once
                            // (the observer turns keyspace events on and reads the
                            // sessions again, and must not be refused).
                            *down.lock().unwrap_or_else(|p| p.into_inner()) = None;
                            is_down.store(false, Ordering::Release);
                        }
                    }
                    let observer = observer.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    if let Some(observer) = observer {
                        observer(status);
                    }
                };
                let line = Line {
                    master,
                    timeout,
                    name: &name,
                    pattern,
                    open,
                    epoch,
                    ready: Some(ready_tx),
                };
                subscribe_loop(line, &tx, subscriptions, report, convert)
            })
            .map_err(|e| Error::Unavailable(format!("no thread for a subscription: {e}")))?;
        // Subscribed, or found Redis down, before the caller goes on: what is
        // published once this returns reaches the subscriber while Redis is up.
        let _ = ready_rx.recv_timeout(self.config.timeout);
        Ok(rx)
    }
}

/// Where a subscription connects, and to what.
struct Line<'a> {
    master: Arc<Master>,
    timeout: Duration,
    name: &'a str,
    pattern: bool,
    open: Arc<AtomicBool>,
    epoch: Arc<AtomicU64>,
    /// Told once the first attempt to subscribe is over.
    ready: Option<std::sync::mpsc::SyncSender<()>>,
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
        master,
        timeout,
        name,
        pattern,
        open,
        epoch,
        mut ready,
    } = line;
    // Tells the caller the first attempt is over, whichever way.
    let mut attempted = move || {
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
    };
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
        let connected = master
            .client(timeout)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                c.get_connection_with_timeout(timeout)
                    .map_err(|e| e.to_string())
            });
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(e) => {
                master.forget();
                if !lost {
                    lost = true;
                    report(Status::Lost {
                        channel: name.to_owned(),
                        error: e.to_string(),
                    });
                }
                attempted();
                continue;
            }
        };
        // A read timeout lets the thread notice a dropped store and a dead server.
        if conn.set_read_timeout(Some(Duration::from_secs(1))).is_err() {
            attempted();
            continue;
        }
        let mut pubsub = conn.as_pubsub();
        let subscribed = if pattern {
            pubsub.psubscribe(name)
        } else {
            pubsub.subscribe(name)
        };
        if subscribed.is_err() {
            attempted();
            continue;
        }
        subscriptions.fetch_add(1, Ordering::Relaxed);
        attempted();
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
        // The command connections most likely went with this one, and the master too.
        epoch.fetch_add(1, Ordering::Relaxed);
        master.forget();
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
        if let Some(ttl) = self.config.history_ttl.filter(|_| self.renew(stream)) {
            pipe.cmd("EXPIRE")
                .arg(stream)
                .arg(ttl.as_secs().max(1))
                .ignore();
        }
        if self.config.replicas == 0 {
            let (id,): (String,) = self.run(|conn| pipe.query(conn))?;
            return id.parse();
        }
        let wait = (self.config.timeout / 4).as_millis().max(1) as u64;
        pipe.cmd("WAIT").arg(self.config.replicas).arg(wait);
        let (id, confirmed): (String, usize) = self.run(|conn| pipe.query(conn))?;
        if confirmed < self.config.replicas {
            return Err(Error::Unavailable(format!(
                "{confirmed} of {} replicas confirmed the message in {wait} ms",
                self.config.replicas
            )));
        }
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

/// How often a node renews the expiry of one history stream. Renewing it with every
/// entry cost an `EXPIRE` per message, and a keyspace event that every node, which
/// follows session keys through keyspace events, received and dropped.
pub const EXPIRE_EVERY: Duration = Duration::from_secs(3600);

/// Streams whose expiry a node renewed, and when, up to this many; then it starts
/// again from none (each renews once more).
const EXPIRES_KEPT: usize = 100_000;
