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

use super::master::Master;
use super::{Bus, Decision, EntryId, Error, History, KeyEvent, Sessions, Shared, Write};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
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

/// A pooled connection: the epoch it was made in, the line, and the socket timeout
/// set on it.
type Pooled = (u64, redis::Connection, Option<Duration>);

/// Connections for commands: at most `size`, each used by one call at a time.
struct Pool {
    size: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Pooled>,
    /// Connections in use or idle, and places taken by calls about to connect.
    taken: usize,
    /// Calls waiting for a place: a place given back wakes one (a wake-up is a system
    /// call, not spent when nobody waits).
    waiting: usize,
}

/// One place in the pool, held by one call: a connection, or none yet (the call
/// connects). Dropping it gives the place back, with its connection if still good.
struct Slot<'a> {
    pool: &'a Pool,
    conn: Option<Pooled>,
}

impl Pool {
    fn new(size: usize) -> Pool {
        Pool {
            size,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                taken: 0,
                waiting: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place, with an idle connection made since `epoch` if there is one; waits
    /// for one to be given back until `deadline`.
    fn take(&self, deadline: Instant, epoch: u64) -> Result<Slot<'_>, Error> {
        let mut state = self.lock();
        loop {
            while let Some(pooled) = state.idle.pop() {
                if pooled.0 >= epoch {
                    return Ok(Slot {
                        pool: self,
                        conn: Some(pooled),
                    });
                }
                // Made before Redis was last found dead: never used again.
                state.taken -= 1;
            }
            if state.taken < self.size {
                state.taken += 1;
                return Ok(Slot {
                    pool: self,
                    conn: None,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Unavailable(format!(
                    "all {} Redis connections busy",
                    self.size
                )));
            }
            state.waiting += 1;
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            state.waiting -= 1;
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        match self.conn.take() {
            Some(pooled) => state.idle.push(pooled),
            None => state.taken -= 1,
        }
        let wake = state.waiting > 0;
        drop(state);
        if wake {
            self.pool.freed.notify_one();
        }
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

/// How many times [`Shared::update`] reads and decides again when another node changed
/// the document in between, before it gives up: contention, not an outage.
const MAX_TRIES: usize = 32;

/// [`Shared::release`]: KEYS are the node's held set, then each name's holders;
/// ARGV the node, then the names. Atomic, so that two nodes letting go of the same name
/// at once cannot both see the other still holding it.
const RELEASE: &str = r"
local gone = {}
for i = 2, #KEYS do
  redis.call('SREM', KEYS[1], ARGV[i])
  redis.call('SREM', KEYS[i], ARGV[1])
  if redis.call('SCARD', KEYS[i]) == 0 then gone[#gone + 1] = ARGV[i] end
end
return gone
";

/// [`Shared::bury`]: KEYS are the node list and the node's held set; ARGV the node and
/// the prefix of the holders' keys. Only the caller whose SREM took the node off the
/// list goes on (the others get nil), so exactly one survivor lets go of what it held.
/// The holders' keys are not declared: they are in the same hash slot as KEYS.
const BURY: &str = r"
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return false end
local gone = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local k = ARGV[2] .. name
  redis.call('SREM', k, ARGV[1])
  if redis.call('SCARD', k) == 0 then gone[#gone + 1] = name end
end
redis.call('DEL', KEYS[2])
return gone
";

/// [`Shared::publish_to_holders`]: KEYS are the names' holders sets; ARGV the channel
/// prefix, this node, and the payload.
const PUBLISH_TO_HOLDERS: &str = r"
local n = 0
for _, node in ipairs(redis.call('SUNION', unpack(KEYS))) do
  if node ~= ARGV[2] then
    redis.call('PUBLISH', ARGV[1] .. node, ARGV[3])
    n = n + 1
  end
end
return n
";

impl Shared for RedisStore {
    fn update(
        &self,
        ns: &str,
        index: &str,
        name: &str,
        decide: &mut dyn FnMut(Option<&str>, usize) -> Decision,
    ) -> Result<bool, Error> {
        let index_key = format!("{ns}:{index}");
        let key = format!("{index_key}:{name}");
        let outcome = self.run(|conn| {
            for _ in 0..MAX_TRIES {
                redis::cmd("WATCH")
                    .arg(&key)
                    .arg(&index_key)
                    .query::<()>(conn)?;
                let (text, count): (Option<String>, usize) = redis::pipe()
                    .cmd("GET")
                    .arg(&key)
                    .cmd("SCARD")
                    .arg(&index_key)
                    .query(conn)?;
                let Some((write, announce)) = decide(text.as_deref(), count) else {
                    redis::cmd("UNWATCH").query::<()>(conn)?;
                    return Ok(Some(false));
                };
                let mut pipe = redis::pipe();
                pipe.atomic();
                match write {
                    Write::Put(text) => {
                        pipe.cmd("SET").arg(&key).arg(text).ignore();
                        pipe.cmd("SADD").arg(&index_key).arg(name).ignore();
                    }
                    Write::Remove { tombstone, ttl } => {
                        pipe.cmd("SET")
                            .arg(&key)
                            .arg(tombstone)
                            .arg("PX")
                            .arg(ttl.as_millis().max(1) as u64)
                            .ignore();
                        pipe.cmd("SREM").arg(&index_key).arg(name).ignore();
                    }
                }
                if let Some((channel, payload)) = announce {
                    pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
                }
                // EXEC answers nil when a watched key changed: read and decide again.
                let done: Option<()> = pipe.query(conn)?;
                if done.is_some() {
                    return Ok(Some(true));
                }
            }
            Ok(None)
        })?;
        outcome.ok_or_else(|| {
            Error::Unavailable(format!(
                "{key} changed by other nodes {MAX_TRIES} times in a row"
            ))
        })
    }

    fn documents(&self, ns: &str, index: &str) -> Result<Vec<(String, String)>, Error> {
        let index_key = format!("{ns}:{index}");
        let names: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(&index_key))?;
        let mut out = Vec::with_capacity(names.len());
        for chunk in names.chunks(500) {
            let mut mget = redis::cmd("MGET");
            for name in chunk {
                mget.arg(format!("{index_key}:{name}"));
            }
            let texts: Vec<Option<String>> = self.query(&mget)?;
            out.extend(
                chunk
                    .iter()
                    .zip(texts)
                    .filter_map(|(name, text)| Some((name.clone(), text?))),
            );
        }
        Ok(out)
    }

    fn beat(&self, ns: &str, node: &str, ttl: Duration) -> Result<bool, Error> {
        let (added,): (i64,) = self.run(|conn| {
            redis::pipe()
                .cmd("SET")
                .arg(format!("{ns}:node:{node}"))
                .arg(1)
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .ignore()
                .cmd("SADD")
                .arg(format!("{ns}:nodes"))
                .arg(node)
                .query(conn)
        })?;
        Ok(added == 0)
    }

    fn nodes(&self, ns: &str) -> Result<Vec<(String, bool)>, Error> {
        let nodes: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(format!("{ns}:nodes")))?;
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for n in &nodes {
            pipe.cmd("EXISTS").arg(format!("{ns}:node:{n}"));
        }
        let alive: Vec<i64> = self.run(|conn| pipe.query(conn))?;
        Ok(nodes
            .into_iter()
            .zip(alive.into_iter().map(|a| a > 0))
            .collect())
    }

    fn hold(&self, ns: &str, node: &str, names: &[&str]) -> Result<(), Error> {
        if names.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("SADD")
            .arg(format!("{ns}:held:{node}"))
            .arg(names)
            .ignore();
        for name in names {
            pipe.cmd("SADD")
                .arg(format!("{ns}:holders:{name}"))
                .arg(node)
                .ignore();
        }
        self.run(|conn| pipe.query(conn))
    }

    fn release(&self, ns: &str, node: &str, names: &[&str]) -> Result<Vec<String>, Error> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut eval = redis::cmd("EVAL");
        eval.arg(RELEASE)
            .arg(names.len() + 1)
            .arg(format!("{ns}:held:{node}"));
        for name in names {
            eval.arg(format!("{ns}:holders:{name}"));
        }
        eval.arg(node).arg(names);
        self.query(&eval)
    }

    fn held(&self, ns: &str, node: &str) -> Result<Vec<String>, Error> {
        self.query(redis::cmd("SMEMBERS").arg(format!("{ns}:held:{node}")))
    }

    fn publish_to_holders(
        &self,
        ns: &str,
        names: &[&str],
        node: &str,
        prefix: &str,
        payload: &str,
    ) -> Result<usize, Error> {
        if names.is_empty() {
            return Ok(0);
        }
        let mut eval = redis::cmd("EVAL");
        eval.arg(PUBLISH_TO_HOLDERS).arg(names.len());
        for name in names {
            eval.arg(format!("{ns}:holders:{name}"));
        }
        eval.arg(prefix).arg(node).arg(payload);
        self.query(&eval)
    }

    fn answer(&self, ns: &str, key: &str, text: &str, ttl: Duration) -> Result<(), Error> {
        let key = format!("{ns}:{key}");
        self.run(|conn| {
            redis::pipe()
                .cmd("RPUSH")
                .arg(&key)
                .arg(text)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(ttl.as_millis().max(1) as u64)
                .ignore()
                .query(conn)
        })
    }

    /// `BLPOP`, each call waiting at most a quarter of the store's deadline, so that
    /// the socket's timeout (half of it) never cuts a wait short.
    fn gather(
        &self,
        ns: &str,
        key: &str,
        count: usize,
        wait: Duration,
    ) -> Result<Vec<String>, Error> {
        let key = format!("{ns}:{key}");
        let until = Instant::now() + wait;
        let mut out = Vec::new();
        while out.len() < count {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let block = left
                .min(self.config.timeout / 4)
                .max(Duration::from_millis(10));
            let got: Option<(String, String)> = self.query(
                redis::cmd("BLPOP")
                    .arg(&key)
                    .arg(format!("{:.3}", block.as_secs_f64())),
            )?;
            if let Some((_, text)) = got {
                out.push(text);
            }
        }
        Ok(out)
    }

    fn bury(&self, ns: &str, node: &str) -> Result<Option<Vec<String>>, Error> {
        self.query(
            redis::cmd("EVAL")
                .arg(BURY)
                .arg(2)
                .arg(format!("{ns}:nodes"))
                .arg(format!("{ns}:held:{node}"))
                .arg(node)
                .arg(format!("{ns}:holders:")),
        )
    }
}
