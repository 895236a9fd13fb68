//! Identity and messaging: connections, sessions and users, and the modules that carry
//! messages between them (notice, private, chat, admin). The hub knows users, not
//! sockets: it reaches a connection through the server's handle, by id.
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | errors, the dispatch table from event name to handler, threads |
//! | `config.rs` | settings, with their defaults |
//! | [`auth`] | the upgrade's claim: session keys, the ways of signing in |
//! | [`identity`] | who is whom: connections, sessions, users |
//! | `sessions.rs` | connections opening and closing, `authenticate`, key events |
//! | `bus.rs` | deliveries: this node's connections directly, other nodes by the bus |
//! | `cluster.rs` | several nodes: shared rooms and their mirror, presence, heartbeats |
//! | `gather.rs` | listings gathered from every node, payloads relayed to every node |
//! | `notice.rs`, `private.rs`, `chat.rs`, `admin.rs` | the modules' events |
//! | [`rooms`] | the room model: members, owners, moderators, bans, mutes |
//! | `routes.rs` | the admin listener's routes |
//! | `testing.rs` | the hub in-process for unit tests: memory store, a recording [`Sink`] |
//!
//! A delivery to users goes straight to the queues of the connections this node holds,
//! and, when the bus reaches other nodes (Redis), once onto the bus as
//! `{"node": .., "users": [..], "event": .., "data": ..}` on [`Config::channel`] for
//! them; a node ignores its own messages there. The site's notifications come in on
//! [`Config::notifications_channel`].
//!
//! Rooms (members, owners, moderators, bans, mutes) are documents of the shared store,
//! each node holding a mirror of them; histories are in the store too. Which node holds
//! which user is in the store, so a user leaves their rooms when their last connection
//! on any node closes, or their node dies (see `cluster.rs`).
//!
//! Threads: one reads the bus, one the notifications, one the session keys' changes,
//! and one times out connections that do not authenticate and expires in-memory keys.
//! Each holds the hub weakly and ends when its channel closes. On a store shared by
//! nodes (Redis), one more keeps this node's heartbeat and buries nodes that died.

mod admin;
pub mod auth;
mod bus;
mod chat;
mod cluster;
mod config;
mod gather;
pub mod identity;
mod ids;
mod notice;
mod private;
mod requests;
pub mod rooms;
mod routes;
mod sessions;
#[cfg(test)]
mod testing;

pub use bus::read_notification;
pub use config::Config;
pub use gather::RelayHandler;

use crate::server::events::{Builder, Ctx};
use crate::server::log::{Level, LogBudget};
use crate::server::{Accept, AdminRequest, AdminResponse, Note, Server, Unhealthy, WeakServer};
use crate::store::{self, EntryId, KeyEvent, Stores};
use crate::time::now_iso8601;
use auth::{Claim, Template};
use identity::Identity;
pub use identity::{ConnId, SessionId, UserId};
use notice::notice_event;
use requests::*;
use rooms::{Action, RoomError, Rooms};
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::fmt;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

/// Close code for a connection that did not authenticate within
/// [`Config::auth_timeout`] (an application code, RFC 6455 7.4.2).
pub const AUTH_TIMEOUT: u16 = 4002;
/// Close code for a connection whose user an admin kicked.
pub const KICKED: u16 = 4003;

/// Why a client's request was refused: the `error` event's code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The connection has no user (yet).
    NotAuthenticated,
    /// The user is not an admin.
    NotAdmin,
    /// A field is missing or wrong.
    BadRequest(String),
    /// A room rule refused it.
    Room(RoomError),
    /// A history entry that is not there.
    NotFound,
    /// The store could not be reached, or answered nonsense.
    Store(store::Error),
    /// Delivered to this node's recipients, but the bus to the other nodes failed:
    /// recipients there get it only from history (resume by last id).
    NotForwarded(store::Error),
}

impl Error {
    /// The `error` event's code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotAuthenticated => "not_authenticated",
            Error::NotAdmin => "not_admin",
            Error::BadRequest(_) => "bad_request",
            Error::Room(e) => e.code(),
            Error::NotFound => "not_found",
            Error::Store(_) | Error::NotForwarded(_) => "store_unavailable",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotAuthenticated => f.write_str("this connection has no user yet"),
            Error::NotAdmin => f.write_str("only admins may do that"),
            Error::BadRequest(why) => f.write_str(why),
            Error::Room(e) => f.write_str(e.message()),
            Error::NotFound => f.write_str("no such message"),
            Error::Store(e) => write!(f, "{e}"),
            Error::NotForwarded(e) => write!(
                f,
                "delivered on this node only, other nodes were not reached: {e}"
            ),
        }
    }
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        Error::Store(e)
    }
}

impl From<RoomError> for Error {
    fn from(e: RoomError) -> Self {
        Error::Room(e)
    }
}

type Outcome = Result<(), Error>;

/// Where the hub's frames go, by connection id: the server's connections in
/// production ([`Server`] is one), a recorder in the hub's unit tests. The hub knows
/// users, not sockets.
pub trait Sink: Send + Sync {
    /// Sends one text message to each of `ids` that is open; how many took it.
    fn send_text(&self, ids: &[ConnId], text: &str) -> usize;
    /// Starts the closing handshake of connection `id` with `code`.
    fn close(&self, id: ConnId, code: u16, reason: &str);
}

impl Sink for Server {
    fn send_text(&self, ids: &[ConnId], text: &str) -> usize {
        self.send_many(ids, &crate::server::Frame::text(text))
    }

    fn close(&self, id: ConnId, code: u16, reason: &str) {
        if let Some(conn) = self.connection(id) {
            conn.close(code, reason);
        }
    }
}

/// The server as seen from one event: an answer to the connection the event came
/// from goes straight to its queue, without looking it up again.
impl Sink for Ctx<'_> {
    fn send_text(&self, ids: &[ConnId], text: &str) -> usize {
        match (ids, self.conn()) {
            ([id], Some(conn)) if *id == conn.id() => usize::from(conn.send_text(text).is_ok()),
            _ => self.server().send_text(ids, text),
        }
    }

    fn close(&self, id: ConnId, code: u16, reason: &str) {
        self.server().close(id, code, reason);
    }
}

/// One event being handled: which connection sent it, its name, and where the
/// answer goes.
pub struct Call<'a> {
    id: ConnId,
    event: &'a str,
    sink: &'a dyn Sink,
}

impl Call<'_> {
    /// The connection the event came from.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The event's name.
    pub fn event(&self) -> &str {
        self.event
    }

    /// Answers the connection the event came from.
    pub fn reply(&self, event: &str, data: Value) {
        self.sink
            .send_text(&[self.id], &crate::envelope::envelope(event, &data));
    }
}

/// A handler of a client's event.
type Method = fn(&Hub, &Call, &Value) -> Outcome;

/// The dispatch table: each client event the hub answers, and its handler.
const METHODS: [(&str, Method); 25] = [
    ("authenticate", Hub::authenticate),
    ("notice.send", Hub::notice_send),
    ("notice.notice", Hub::notice_send),
    ("notification.history", Hub::notification_history),
    ("private.send", Hub::private_send),
    ("private.history", Hub::private_history),
    ("chat.create", Hub::chat_create),
    ("chat.join", Hub::chat_join),
    ("chat.leave", Hub::chat_leave),
    ("chat.members", Hub::chat_members),
    ("chat.send", Hub::chat_send),
    ("chat.history", Hub::chat_history),
    ("chat.delete", Hub::chat_delete),
    ("chat.kick", Hub::chat_moderate),
    ("chat.ban", Hub::chat_moderate),
    ("chat.unban", Hub::chat_moderate),
    ("chat.mute", Hub::chat_moderate),
    ("chat.unmute", Hub::chat_moderate),
    ("chat.appoint", Hub::chat_moderate),
    ("chat.dismiss", Hub::chat_moderate),
    ("admin.stats", Hub::admin_stats),
    ("admin.connections", Hub::admin_connections),
    ("admin.kick", Hub::admin_kick),
    ("admin.broadcast", Hub::admin_broadcast),
    ("whoami", Hub::whoami),
];

/// The way a session was presented, which says which key to read for it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Way {
    /// `?userId` with a session id: the user's key holds the session id.
    UserKey(UserId),
    /// `authenticate`: the session's key holds the user id.
    SessionStore,
    /// `?session_key`: the key holds the user's name and room.
    ChatKey,
}

/// What the hub holds under its lock.
struct State {
    identity: Identity,
    /// This node's mirror of every room of the site.
    rooms: Rooms,
    /// The version of each room in the mirror.
    room_versions: HashMap<String, u64>,
    /// Rooms this node removed, with the version of the removal, until its message
    /// comes back on the bus.
    room_tombstones: HashMap<String, u64>,
    /// How each held session was presented.
    ways: HashMap<SessionId, Way>,
    /// Sessions presented the user-to-session way, by user: the key to watch is the
    /// user's.
    user_sessions: HashMap<UserId, BTreeSet<SessionId>>,
    /// When each connection that must get a user has to have one; only the latest
    /// deadline of a connection counts.
    deadlines: HashMap<ConnId, Instant>,
    /// The user and session each connection was last told it has (`authenticated`):
    /// a connection is told once, even when the site's key event and its own
    /// `authenticate` bind it at nearly the same time.
    confirmed: HashMap<ConnId, (UserId, SessionId)>,
}

impl State {
    /// Notes how `session` was presented.
    fn note_way(&mut self, session: &SessionId, way: Way) {
        if let Some(Way::UserKey(old)) = self.ways.insert(session.clone(), way.clone()) {
            self.drop_user_session(&old, session);
        }
        if let Way::UserKey(user) = way {
            self.user_sessions
                .entry(user)
                .or_default()
                .insert(session.clone());
        }
    }

    fn drop_user_session(&mut self, user: &UserId, session: &SessionId) {
        if let Some(set) = self.user_sessions.get_mut(user) {
            set.remove(session);
            if set.is_empty() {
                self.user_sessions.remove(user);
            }
        }
    }

    /// Forgets how `session` was presented once no connection holds it.
    fn forget_if_unheld(&mut self, session: &SessionId) {
        if !self.identity.connections_of_session(session).is_empty() {
            return;
        }
        if let Some(Way::UserKey(user)) = self.ways.remove(session) {
            self.drop_user_session(&user, session);
        }
    }
}

/// Identity and messaging on top of an event [`Server`].
pub struct Hub {
    config: Config,
    stores: Stores,
    /// Tells this node's deliveries from other nodes' on the bus; names it in the
    /// shared store.
    node: String,
    /// The shared store's namespace: the bus channel as a hash tag, `{switchboard}`.
    ns: String,
    /// What the liveness thread has to do again.
    pending: Mutex<cluster::Pending>,
    /// Handlers of payloads relayed from other nodes, by topic.
    relays: Mutex<HashMap<String, RelayHandler>>,
    state: Mutex<State>,
    server: OnceLock<WeakServer>,
    /// Where frames go instead of the server's connections ([`Hub::attach_sink`]).
    sink: OnceLock<Arc<dyn Sink>>,
    deadlines: Mutex<Option<Sender<(Instant, ConnId)>>>,
    /// Allowance of `store failed` log lines.
    store_log: Mutex<LogBudget>,
}

/// Tells connection `id` whom it belongs to now. The frame carries
/// `"authenticated": true` beside the envelope, the confirmation clients of the
/// session-key way wait for before they send.
fn confirmation(
    st: &State,
    id: ConnId,
    user: &UserId,
    session: &SessionId,
    room: Option<&str>,
) -> String {
    let soft_id = st.identity.member(id).and_then(|m| m.soft_id.clone());
    let mut data = json!({ "userId": user, "sessionId": session, "softId": soft_id });
    if let Some(room) = room {
        data["room"] = json!(room);
    }
    json!({ "event": "authenticated", "data": data, "authenticated": true }).to_string()
}

/// History entries with their ids. An entry that is not an object (written into the
/// stream by something else) is given as `{"value": ..}`.
fn entries(list: Vec<(EntryId, Value)>) -> Value {
    Value::Array(
        list.into_iter()
            .map(|(id, v)| {
                let mut v = match v {
                    Value::Object(_) => v,
                    other => json!({ "value": other }),
                };
                v["id"] = json!(id.to_string());
                v
            })
            .collect(),
    )
}

impl Hub {
    /// A hub on `stores`; nothing runs until [`Hub::install`] and [`Hub::start`].
    pub fn new(config: Config, stores: Stores) -> Arc<Hub> {
        let rooms = Rooms::new(rooms::Limits {
            rooms: config.max_rooms,
            owned_per_user: config.max_rooms_per_user,
            listed_per_room: config.max_room_list,
        });
        let node = format!("{:016x}", crate::secure::random_u64());
        let ns = format!("{{{}}}", config.channel);
        Arc::new(Hub {
            config,
            stores,
            node,
            ns,
            pending: Mutex::new(cluster::Pending::default()),
            relays: Mutex::new(HashMap::new()),
            state: Mutex::new(State {
                identity: Identity::new(),
                rooms,
                room_versions: HashMap::new(),
                room_tombstones: HashMap::new(),
                ways: HashMap::new(),
                user_sessions: HashMap::new(),
                deadlines: HashMap::new(),
                confirmed: HashMap::new(),
            }),
            server: OnceLock::new(),
            sink: OnceLock::new(),
            deadlines: Mutex::new(None),
            store_log: Mutex::new(LogBudget::new(60)),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn server(&self) -> Option<Server> {
        self.server.get()?.upgrade()
    }

    /// Runs `f` with where frames go: the sink given to [`Hub::attach_sink`], else the
    /// server started with; `None` before either.
    fn with_sink<R>(&self, f: impl FnOnce(&dyn Sink) -> R) -> Option<R> {
        if let Some(sink) = self.sink.get() {
            return Some(f(sink.as_ref()));
        }
        let server = self.server()?;
        Some(f(&server))
    }

    /// Sends the hub's frames to `sink` rather than to a server: for running the hub's
    /// handlers in-process, as its unit tests do. Once only.
    pub fn attach_sink(&self, sink: Arc<dyn Sink>) {
        let _ = self.sink.set(sink);
    }

    /// Handles client event `event` from connection `id` as if it came over the
    /// network, answering through the attached sink. `Ok(false)`: no such event.
    pub fn handle(&self, id: ConnId, event: &str, data: &Value) -> Result<bool, Error> {
        let Some((_, method)) = METHODS.iter().find(|(name, _)| *name == event) else {
            return Ok(false);
        };
        self.with_sink(|sink| method(self, &Call { id, event, sink }, data))
            .unwrap_or(Ok(()))
            .map(|()| true)
    }

    /// Reads a request of type `R` from an event's data, within [`Config`]'s limits.
    fn read<R: Request>(&self, data: &Value) -> Result<R, Error> {
        R::read(data, &self.config)
    }

    fn log(
        &self,
        level: Level,
        conn: Option<ConnId>,
        msg: &str,
        fields: &[(&'static str, &dyn fmt::Display)],
    ) {
        if let Some(server) = self.server() {
            server.logger().log(level, conn, msg, fields);
        }
    }

    /// Logs a request that failed on the store, at most 60 lines a minute: during an
    /// outage every request fails, and the log must not grow with the request rate.
    fn store_failed(&self, conn: ConnId, why: &store::Error) {
        let Some(server) = self.server() else { return };
        let written = server.logger().log_within(
            &self.store_log,
            Level::Warn,
            Some(conn),
            "store failed",
            &[("error", why)],
        );
        if !written {
            crate::server::metrics::inc(&server.metrics().log_lines_suppressed);
        }
    }

    fn count(&self, kind: &'static str) {
        if let Some(server) = self.server() {
            server.metrics().app_event(kind);
        }
    }

    /// Registers the hub's upgrade check, admin routes and events on `builder`.
    pub fn install(self: &Arc<Self>, builder: Builder) -> Builder {
        let hub = self.clone();
        let mut builder = builder.on_upgrade(move |upgrade| {
            match auth::decide(&hub.config, hub.stores.sessions.as_ref(), upgrade) {
                Ok((admission, protocol)) => Ok(Accept {
                    protocol,
                    note: Some(Note::new(admission)),
                }),
                Err(refusal) => {
                    hub.count(refusal.kind);
                    let peer = upgrade.peer();
                    let mut fields: Vec<(&str, &dyn fmt::Display)> = vec![
                        ("peer", &peer),
                        ("why", &refusal.kind),
                        ("status", &refusal.reject.status),
                    ];
                    // A store that failed is worth a warning, with its cause.
                    let level = match &refusal.cause {
                        Some(cause) => {
                            fields.push(("error", cause));
                            Level::Warn
                        }
                        None => Level::Info,
                    };
                    hub.log(level, None, "upgrade refused", &fields);
                    Err(refusal.reject)
                }
            }
        });
        let hub = self.clone();
        builder = builder.on_admin(move |server, request| hub.admin_route(server, request));
        let redis = self.stores.redis.clone();
        builder = builder.on_health(move || match &redis {
            Some(redis) => redis.health().map_err(|e| {
                let why = match e {
                    store::Error::Unavailable(why) | store::Error::Invalid(why) => why,
                };
                Unhealthy::new(format!("redis: {why}"))
            }),
            None => Ok(()),
        });
        let hub = self.clone();
        builder = builder.on("connection", move |ctx, _| hub.open(ctx));
        let hub = self.clone();
        builder = builder.on("disconnect", move |ctx, _| hub.close(ctx.id()));
        for (name, method) in METHODS {
            let hub = self.clone();
            builder = builder.on(name, move |ctx, data| {
                let call = Call {
                    id: ctx.id(),
                    event: ctx.event(),
                    sink: ctx,
                };
                if let Err(e) = method(&hub, &call, data) {
                    if let Error::Store(why) | Error::NotForwarded(why) = &e {
                        hub.count("store_errors");
                        hub.store_failed(ctx.id(), why);
                    }
                    ctx.fail(e.code(), &e.to_string());
                }
            });
        }
        builder
    }

    /// Starts the hub's threads on `server`: the bus, the notifications, the session
    /// keys' changes (turning on Redis keyspace notifications, and saying so in the
    /// log), and the timer.
    pub fn start(self: &Arc<Self>, server: &Server) -> Result<(), store::Error> {
        let _ = self.server.set(server.downgrade());
        if let Some(redis) = &self.stores.redis {
            match redis.enable_keyspace_events() {
                Ok(flags) => self.log(
                    Level::Info,
                    None,
                    "redis keyspace notifications on",
                    &[("notify-keyspace-events", &flags)],
                ),
                Err(e) => self.log(
                    Level::Warn,
                    None,
                    "redis keyspace notifications could not be turned on; until they are, sessions set or deleted later are not followed live",
                    &[("error", &e)],
                ),
            }
            let weak = Arc::downgrade(self);
            redis.set_observer(Arc::new(move |status| {
                if let Some(hub) = weak.upgrade() {
                    hub.store_status(status);
                }
            }));
        }
        let bus = self.stores.bus.subscribe(&self.config.channel)?;
        self.spawn("hub-bus", bus, |hub, payload: String| hub.on_bus(&payload))?;
        if self.stores.bus.reaches_other_nodes() {
            // Deliveries to this node's users alone come on a channel of its own.
            let own = format!("{}{}", self.node_channel_prefix(), self.node);
            let mine = self.stores.bus.subscribe(&own)?;
            self.spawn("hub-node-bus", mine, |hub, payload: String| {
                hub.on_bus(&payload)
            })?;
            self.join_cluster()?;
        }
        let notes = self
            .stores
            .bus
            .subscribe(&self.config.notifications_channel)?;
        self.spawn("hub-notify", notes, |hub, payload: String| {
            hub.on_notification(&payload)
        })?;
        let keys = self.stores.sessions.watch()?;
        self.spawn("hub-keys", keys, |hub, event: KeyEvent| hub.on_key(event))?;
        let (tx, rx) = channel();
        *self.deadlines.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        let weak = Arc::downgrade(self);
        thread::Builder::new()
            .name("hub-timer".into())
            .stack_size(128 * 1024)
            .spawn(move || timer(weak, rx))
            .map_err(|e| store::Error::Unavailable(format!("no thread for the hub: {e}")))?;
        Ok(())
    }

    fn spawn<T: Send + 'static>(
        self: &Arc<Self>,
        name: &str,
        rx: Receiver<T>,
        each: impl Fn(&Hub, T) + Send + 'static,
    ) -> Result<(), store::Error> {
        let weak: Weak<Hub> = Arc::downgrade(self);
        thread::Builder::new()
            .name(name.into())
            .stack_size(256 * 1024)
            .spawn(move || {
                for item in rx {
                    let Some(hub) = weak.upgrade() else { return };
                    each(&hub, item);
                }
            })
            .map(|_| ())
            .map_err(|e| store::Error::Unavailable(format!("no thread for the hub: {e}")))
    }

    fn store_status(&self, status: store::redis::Status) {
        match status {
            store::redis::Status::Lost { channel, error } => {
                self.count("store_outages");
                self.log(
                    Level::Warn,
                    None,
                    "redis subscription lost; retrying",
                    &[("channel", &channel), ("error", &error)],
                );
            }
            store::redis::Status::Restored { channel } => {
                self.log(
                    Level::Info,
                    None,
                    "redis subscription back",
                    &[("channel", &channel)],
                );
                if channel == self.config.channel {
                    self.bus_restored();
                }
                if channel.starts_with("__keyspace@") {
                    if let Some(redis) = &self.stores.redis {
                        // A restarted Redis forgot the setting.
                        if let Err(e) = redis.enable_keyspace_events() {
                            self.log(
                                Level::Warn,
                                None,
                                "keyspace notifications",
                                &[("error", &e)],
                            );
                        }
                    }
                    // Keys set or deleted during the outage sent no event: read them.
                    let sessions = self.state().identity.sessions();
                    for s in &sessions {
                        self.recheck_session(s);
                    }
                    self.log(
                        Level::Info,
                        None,
                        "sessions read again after the outage",
                        &[("sessions", &sessions.len())],
                    );
                }
            }
        }
    }
}

/// Closes connections that did not authenticate in time, and expires in-memory keys.
fn timer(hub: Weak<Hub>, rx: Receiver<(Instant, ConnId)>) {
    let mut due: BinaryHeap<Reverse<(Instant, ConnId)>> = BinaryHeap::new();
    let tick = Duration::from_secs(1);
    let mut next_sweep = Instant::now() + tick;
    loop {
        let now = Instant::now();
        let until = due
            .peek()
            .map_or(next_sweep, |Reverse((t, _))| (*t).min(next_sweep));
        match rx.recv_timeout(until.saturating_duration_since(now)) {
            Ok(item) => {
                due.push(Reverse(item));
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(hub) = hub.upgrade() else { return };
        let now = Instant::now();
        if now >= next_sweep {
            hub.stores.sessions.expire();
            next_sweep = now + tick;
        }
        while let Some(Reverse((t, id))) = due.peek().copied() {
            if t > now {
                break;
            }
            due.pop();
            // A session id alone is not enough: the connection must belong to a user.
            // An earlier deadline that a later one replaced does not count.
            let waiting = {
                let mut st = hub.state();
                if st.deadlines.get(&id) == Some(&t) {
                    st.deadlines.remove(&id);
                    st.identity.member(id).is_some_and(|m| m.user.is_none())
                } else {
                    false
                }
            };
            if waiting {
                if let Some(conn) = hub.server().and_then(|s| s.connection(id)) {
                    hub.count("auth_timeouts");
                    hub.log(Level::Info, Some(id), "authentication timeout", &[]);
                    conn.close(AUTH_TIMEOUT, "authentication timeout");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_read_with_ids_as_strings() {
        assert_eq!(
            read_notification(r#"{"users":[23,"user5"],"data":{"n":1}}"#),
            Some((vec!["23".into(), "user5".into()], json!({"n":1})))
        );
        for bad in [
            "",
            "not json",
            "[]",
            r#"{"users":[1]}"#,
            r#"{"data":{}}"#,
            r#"{"users":"1","data":{}}"#,
            r#"{"users":[{}],"data":{}}"#,
            r#"{"users":[true],"data":{}}"#,
        ] {
            assert_eq!(read_notification(bad), None, "{bad}");
        }
    }

    #[test]
    fn private_streams_do_not_depend_on_order_or_collide() {
        assert_eq!(Hub::private_stream("a", "b"), Hub::private_stream("b", "a"));
        assert_ne!(
            Hub::private_stream("a:b", "c"),
            Hub::private_stream("a", "b:c")
        );
    }
}
