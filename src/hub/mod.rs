//! Identity and messaging: connections, sessions and users, and the modules that carry
//! messages between them (notice, private, chat, admin). The hub knows users, not
//! sockets: it reaches a connection through the server's handle, by id.
//!
//! Everything meant for users goes out through the bus ([`crate::store::Bus`]): a
//! node publishes `{"users": [..], "event": .., "data": ..}` on [`Config::channel`], and
//! every node, itself included, delivers it to the connections of those users that it
//! holds. With the memory store the bus is in this process; with Redis, a second node
//! pointed at the same Redis reaches the same users. The site's notifications come in
//! on [`Config::notifications_channel`] the same way.
//!
//! Room state (members, owners, bans) is kept by the node its users are on; it is not
//! shared between nodes yet. Histories are in the store and shared.
//!
//! Threads: one reads the bus, one the notifications, one the session keys' changes,
//! and one times out connections that do not authenticate and expires in-memory keys.
//! Each holds the hub weakly and ends when its channel closes.

pub mod auth;
pub mod identity;
pub mod rooms;

use crate::server::admin::describe;
use crate::server::events::{Builder, Ctx};
use crate::server::log::{Level, LogBudget};
use crate::server::{Accept, AdminRequest, AdminResponse, Server, WeakServer};
use crate::store::{self, EntryId, KeyEvent, Stores};
use crate::time::now_iso8601;
use auth::{Claim, Template};
use identity::{ConnId, Identity};
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

/// Settings of the hub. Every key template holds one placeholder; `None` turns that way
/// of authenticating off.
#[derive(Clone, Debug)]
pub struct Config {
    /// User to session: the key under which the site writes a user's session id.
    /// Default `{userId}` (the user id itself, as in the earlier system).
    pub user_session_key: Option<Template>,
    /// Session to user: the key under which the site writes a session's user id.
    /// Default `session-store-{sessionId}`.
    pub session_user_key: Option<Template>,
    /// Session key in the query: the key under which the site writes the user's name
    /// and chat room. Default `chat-session-{sessionKey}`.
    pub chat_session_key: Option<Template>,
    /// Whether a connection may stay without a session. Default `true`. When `false`,
    /// one that presents none at the upgrade must `authenticate` within
    /// [`Config::auth_timeout`], or is closed with [`AUTH_TIMEOUT`].
    pub anonymous: bool,
    /// Time to `authenticate` when anonymous connections are refused. Default 30 s.
    pub auth_timeout: Duration,
    /// Origins allowed to open connections from a browser page, such as
    /// `https://example.com`; others get 403. Default empty: any.
    pub origins: Vec<String>,
    /// User ids that may use the admin module and send notices. Default none.
    pub admins: Vec<String>,
    /// Most history entries sent in one answer. Default 100.
    pub history_page: usize,
    /// Longest chat or private message, and notice text, in characters. Default 4000.
    pub max_text_chars: usize,
    /// Longest room name, in characters. Default 64.
    pub max_room_name_chars: usize,
    /// Most rooms a node holds. Default 1000.
    pub max_rooms: usize,
    /// Most rooms one user owns (made with `chat.create`). Default 10.
    pub max_rooms_per_user: usize,
    /// Most bans, and most moderators, of one room. Default 1000.
    pub max_room_list: usize,
    /// Longest user id or session id a client may name (`to`, `with`, `user`,
    /// `sessionId`), in characters. Default 128.
    pub max_id_chars: usize,
    /// The bus channel deliveries go through. Default `switchboard`.
    pub channel: String,
    /// The channel the site publishes notifications on. Default `notifications`.
    pub notifications_channel: String,
}

impl Default for Config {
    fn default() -> Self {
        let t = |s: &str| Template::parse(s).ok();
        Config {
            user_session_key: t("{userId}"),
            session_user_key: t("session-store-{sessionId}"),
            chat_session_key: t("chat-session-{sessionKey}"),
            anonymous: true,
            auth_timeout: Duration::from_secs(30),
            origins: Vec::new(),
            admins: Vec::new(),
            history_page: 100,
            max_text_chars: 4000,
            max_room_name_chars: 64,
            max_rooms: 1000,
            max_rooms_per_user: 10,
            max_room_list: 1000,
            max_id_chars: 128,
            channel: "switchboard".into(),
            notifications_channel: "notifications".into(),
        }
    }
}

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

/// The way a session was presented, which says which key to read for it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Way {
    /// `?userId` with a session id: the user's key holds the session id.
    UserKey(String),
    /// `authenticate`: the session's key holds the user id.
    SessionStore,
    /// `?session_key`: the key holds the user's name and room.
    ChatKey,
}

/// What the hub holds under its lock.
struct State {
    identity: Identity,
    rooms: Rooms,
    /// How each held session was presented.
    ways: HashMap<String, Way>,
    /// Sessions presented the user-to-session way, by user: the key to watch is the
    /// user's.
    user_sessions: HashMap<String, BTreeSet<String>>,
    /// When each connection that must get a user has to have one; only the latest
    /// deadline of a connection counts.
    deadlines: HashMap<ConnId, Instant>,
}

impl State {
    /// Notes how `session` was presented.
    fn note_way(&mut self, session: &str, way: Way) {
        if let Some(Way::UserKey(old)) = self.ways.insert(session.to_owned(), way.clone()) {
            self.drop_user_session(&old, session);
        }
        if let Way::UserKey(user) = way {
            self.user_sessions
                .entry(user)
                .or_default()
                .insert(session.to_owned());
        }
    }

    fn drop_user_session(&mut self, user: &str, session: &str) {
        if let Some(set) = self.user_sessions.get_mut(user) {
            set.remove(session);
            if set.is_empty() {
                self.user_sessions.remove(user);
            }
        }
    }

    /// Forgets how `session` was presented once no connection holds it.
    fn forget_if_unheld(&mut self, session: &str) {
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
    /// Tells this node's deliveries from other nodes' on the bus.
    node: String,
    state: Mutex<State>,
    server: OnceLock<WeakServer>,
    deadlines: Mutex<Option<Sender<(Instant, ConnId)>>>,
    /// Allowance of `store failed` log lines.
    store_log: Mutex<LogBudget>,
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A string field (a number is read as its decimal text), required.
fn field(data: &Value, name: &str) -> Result<String, Error> {
    data.get(name)
        .and_then(text_of)
        .ok_or_else(|| Error::BadRequest(format!("\"{name}\" is required (a string)")))
}

/// A list of user ids, numbers or strings, compared as strings.
fn user_list(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::Array(items) => items.iter().map(text_of).collect(),
        one => text_of(one).map(|u| vec![u]),
    }
}

/// Tells connection `id` whom it belongs to now. The frame carries
/// `"authenticated": true` beside the envelope, the confirmation clients of the
/// session-key way wait for before they send.
fn confirmation(st: &State, id: ConnId, user: &str, session: &str, room: Option<&str>) -> String {
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
        let mut bytes = [0u8; 8];
        // Without /dev/urandom, the time tells nodes apart well enough.
        if crate::socket::Urandom::new().fill(&mut bytes).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            bytes = (t.as_nanos() as u64 ^ u64::from(std::process::id())).to_le_bytes();
        }
        let node = format!("{:016x}", u64::from_le_bytes(bytes));
        Arc::new(Hub {
            config,
            stores,
            node,
            state: Mutex::new(State {
                identity: Identity::new(),
                rooms,
                ways: HashMap::new(),
                user_sessions: HashMap::new(),
                deadlines: HashMap::new(),
            }),
            server: OnceLock::new(),
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

    fn log(
        &self,
        level: Level,
        conn: Option<u64>,
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
        let mut builder = builder.on_upgrade(move |request, offer, peer| {
            match auth::decide(&hub.config, hub.stores.sessions.as_ref(), request, offer) {
                Ok((claim, protocol, soft_id)) => Ok(Accept {
                    protocol,
                    note: Some(auth::note(&claim, soft_id.as_deref())),
                }),
                Err(refusal) => {
                    hub.count(refusal.kind);
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
            Some(redis) => redis.health().map_err(|why| format!("redis: {why}")),
            None => Ok(()),
        });
        let hub = self.clone();
        builder = builder.on("connection", move |ctx, _| hub.open(ctx));
        let hub = self.clone();
        builder = builder.on("disconnect", move |ctx, _| hub.close(ctx.id()));
        type Method = fn(&Hub, &Ctx, &Value) -> Outcome;
        let methods: [(&str, Method); 24] = [
            ("authenticate", Hub::authenticate),
            ("notice.send", Hub::notice_send),
            ("notice.notice", Hub::notice_send),
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
        for (name, method) in methods {
            let hub = self.clone();
            builder = builder.on(name, move |ctx, data| {
                if let Err(e) = method(&hub, ctx, data) {
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

    // --- Connections and identity -------------------------------------------------

    /// A connection opened: note what its upgrade claimed, and confirm it.
    fn open(&self, ctx: &Ctx) {
        let Some(conn) = ctx.conn() else { return };
        let id = conn.id();
        let (claim, soft_id) = auth::read_note(conn.handshake().note.as_ref());
        match &claim {
            Claim::User { user, session } => {
                {
                    let mut st = self.state();
                    st.identity.add(id, soft_id);
                    st.identity.attach(id, session);
                    st.note_way(session, Way::UserKey(user.clone()));
                }
                self.bind(session, user, None, Some(id));
                // A key changed between the upgrade's check and here sent its event
                // before this session was held: read once more.
                self.recheck_session(session);
            }
            Claim::SessionKey { key, user, room } => {
                {
                    let mut st = self.state();
                    st.identity.add(id, soft_id);
                    st.identity.attach(id, key);
                    st.note_way(key, Way::ChatKey);
                }
                self.bind(key, user, room.as_deref(), Some(id));
                if let Some(room) = room {
                    if let Err(e) = self.enter_room(room, user, true) {
                        ctx.fail(e.code(), &e.to_string());
                    }
                }
                self.recheck_session(key);
            }
            Claim::Anonymous => {
                self.state().identity.add(id, soft_id);
                self.start_deadline(id);
            }
        }
    }

    /// When anonymous connections are refused, connection `id` has
    /// [`Config::auth_timeout`] from now to belong to a user.
    fn start_deadline(&self, id: ConnId) {
        if self.config.anonymous {
            return;
        }
        let deadline = Instant::now() + self.config.auth_timeout;
        self.state().deadlines.insert(id, deadline);
        if let Some(tx) = &*self.deadlines.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = tx.send((deadline, id));
        }
    }

    /// Binds `session` to `user` and confirms to every connection whose user that
    /// changed, and to `also` in any case (a connection that just presented the
    /// session). The users those connections had before leave their rooms if that was
    /// their last connection here.
    fn bind(&self, session: &str, user: &str, room: Option<&str>, also: Option<ConnId>) {
        let server = self.server();
        let before = {
            let mut st = self.state();
            let before: BTreeSet<String> = st
                .identity
                .connections_of_session(session)
                .iter()
                .filter_map(|c| st.identity.member(*c)?.user.clone())
                .filter(|u| u != user)
                .collect();
            let mut told = st.identity.bind_session(session, user);
            if let Some(id) = also.filter(|id| !told.contains(id)) {
                told.push(id);
            }
            // Sent under the lock: a delivery to this user must take the lock to find
            // these connections, so it comes after the confirmation, which is then
            // the first thing a connection hears as the user.
            for c in told {
                if let Some(conn) = server.as_ref().and_then(|s| s.connection(c)) {
                    let _ = conn.send_text(&confirmation(&st, c, user, session, room));
                }
            }
            before
        };
        for old in before {
            self.user_may_be_gone(&old);
        }
    }

    fn unconfirm(&self, id: ConnId, session: &str, reason: &str) {
        if let Some(server) = self.server() {
            server.reply_many(
                &[id],
                "unauthenticated",
                &json!({ "sessionId": session, "reason": reason }),
            );
        }
    }

    /// A connection closed: forget it, and take its user out of their rooms if it was
    /// their last connection here.
    fn close(&self, id: ConnId) {
        let mut st = self.state();
        st.deadlines.remove(&id);
        let Some(member) = st.identity.remove(id) else {
            return;
        };
        if let Some(session) = &member.session {
            st.forget_if_unheld(session);
        }
        drop(st);
        if let Some(user) = member.user {
            self.user_may_be_gone(&user);
        }
    }

    /// If `user` has no connection left on this node, they leave every room.
    fn user_may_be_gone(&self, user: &str) {
        let left = {
            let mut st = self.state();
            if !st.identity.connections_of(user).is_empty() {
                return;
            }
            st.rooms.leave_all(user)
        };
        for room in left {
            self.send_userlist(&room);
        }
    }

    /// `authenticate` `{"sessionId": ..}`: the session-to-user way.
    fn authenticate(&self, ctx: &Ctx, data: &Value) -> Outcome {
        let Some(template) = &self.config.session_user_key else {
            return Err(Error::BadRequest("authenticate is turned off here".into()));
        };
        let session = self.id_field(data, "sessionId")?;
        let id = ctx.id();
        let old_user = {
            let mut st = self.state();
            let before = st.identity.member(id).cloned().unwrap_or_default();
            st.identity.attach(id, &session);
            st.note_way(&session, Way::SessionStore);
            if let Some(old) = before.session.filter(|b| *b != session) {
                st.forget_if_unheld(&old);
            }
            before.user
        };
        // Attached first, read second: a key set in between is seen by the watcher.
        let read = self.stores.sessions.get(&template.fill(&session));
        match &read {
            Ok(Some(user)) => {
                self.bind(&session, user, None, Some(id));
                // A key deleted between the read and the binding sent its event
                // before there was anything to take out: read once more.
                self.recheck_session(&session);
            }
            Ok(None) => self.unconfirm(id, &session, "waiting for the session"),
            Err(_) => {}
        }
        // The user this connection had leaves their rooms only now, in case the new
        // session is theirs too.
        if let Some(old) = old_user {
            self.user_may_be_gone(&old);
            // Left with no user, it has the time again to get one.
            if self
                .state()
                .identity
                .member(id)
                .is_some_and(|m| m.user.is_none())
            {
                self.start_deadline(id);
            }
        }
        read.map(drop).map_err(Error::from)
    }

    /// `whoami`: what the hub knows of this connection.
    fn whoami(&self, ctx: &Ctx, _: &Value) -> Outcome {
        let member = self
            .state()
            .identity
            .member(ctx.id())
            .cloned()
            .unwrap_or_default();
        let _ = ctx.reply(
            "whoami",
            json!({
                "connectionId": ctx.id(),
                "userId": member.user,
                "sessionId": member.session,
                "softId": member.soft_id,
                "admin": member.user.as_ref().is_some_and(|u| self.config.admins.contains(u)),
            }),
        );
        Ok(())
    }

    /// A session key changed in the store.
    fn on_key(&self, event: KeyEvent) {
        let key = match &event {
            KeyEvent::Set(k) | KeyEvent::Deleted(k) => k.as_str(),
        };
        let (session_way, chat_way, user_way) = {
            let st = self.state();
            let pick = |t: &Option<Template>, way: Way| {
                t.as_ref()
                    .and_then(|t| t.extract(key))
                    .filter(|s| st.ways.get(*s) == Some(&way))
                    .map(str::to_owned)
            };
            let user_way = self
                .config
                .user_session_key
                .as_ref()
                .and_then(|t| t.extract(key))
                .filter(|u| st.user_sessions.contains_key(*u))
                .map(str::to_owned);
            (
                pick(&self.config.session_user_key, Way::SessionStore),
                pick(&self.config.chat_session_key, Way::ChatKey),
                user_way,
            )
        };
        for session in [session_way, chat_way].into_iter().flatten() {
            self.recheck_session(&session);
        }
        if let Some(user) = user_way {
            self.recheck_user(&user);
        }
    }

    /// Reads a held session's key again, the way it was presented, and binds or
    /// unbinds its connections.
    fn recheck_session(&self, session: &str) {
        let way = self.state().ways.get(session).cloned();
        let (template, chat) = match way {
            None => return,
            Some(Way::UserKey(user)) => return self.recheck_user(&user),
            Some(Way::SessionStore) => (&self.config.session_user_key, false),
            Some(Way::ChatKey) => (&self.config.chat_session_key, true),
        };
        let Some(template) = template else { return };
        let found = match self.stores.sessions.get(&template.fill(session)) {
            Ok(Some(v)) if chat => auth::read_chat_session(&v),
            Ok(v) => v.map(|u| (u, None)),
            Err(e) => {
                self.log(Level::Warn, None, "session check failed", &[("error", &e)]);
                return;
            }
        };
        match found {
            Some((user, room)) => {
                self.bind(session, &user, room.as_deref(), None);
                // A session key that came back puts its user in its room again.
                if let Some(room) = room {
                    if let Err(e) = self.enter_room(&room, &user, true) {
                        self.log(Level::Warn, None, "room of a session key", &[("error", &e)]);
                    }
                }
            }
            None => self.end_session(session, "session ended"),
        }
    }

    /// The user's key of the user-to-session way changed: sessions that still match it
    /// stay (or come back), the others end.
    fn recheck_user(&self, user: &str) {
        let Some(template) = &self.config.user_session_key else {
            return;
        };
        let stored = match self.stores.sessions.get(&template.fill(user)) {
            Ok(v) => v,
            Err(e) => {
                self.log(Level::Warn, None, "session check failed", &[("error", &e)]);
                return;
            }
        };
        let sessions: Vec<String> = self
            .state()
            .user_sessions
            .get(user)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for session in sessions {
            let valid = stored.as_deref().is_some_and(|v| {
                crate::server::admin::constant_time_eq(v.as_bytes(), session.as_bytes())
            });
            if valid {
                self.bind(&session, user, None, None);
            } else {
                self.end_session(&session, "session ended");
            }
        }
    }

    /// The session's key is gone: its connections leave their user at once and stay
    /// open, waiting for it to come back.
    fn end_session(&self, session: &str, reason: &str) {
        let (changed, users) = {
            let mut st = self.state();
            let users: BTreeSet<String> = st
                .identity
                .connections_of_session(session)
                .iter()
                .filter_map(|c| st.identity.member(*c)?.user.clone())
                .collect();
            (st.identity.unbind_session(session), users)
        };
        if changed.is_empty() {
            return;
        }
        self.count("sessions_ended");
        self.log(
            Level::Info,
            None,
            "session ended",
            &[("connections", &changed.len())],
        );
        for c in &changed {
            self.unconfirm(*c, session, reason);
            self.start_deadline(*c);
        }
        for user in users {
            self.user_may_be_gone(&user);
        }
    }

    /// The user of a connection, or [`Error::NotAuthenticated`].
    fn user_of(&self, ctx: &Ctx) -> Result<String, Error> {
        self.state()
            .identity
            .member(ctx.id())
            .and_then(|m| m.user.clone())
            .ok_or(Error::NotAuthenticated)
    }

    fn is_admin(&self, user: &str) -> bool {
        self.config.admins.iter().any(|a| a == user)
    }

    fn admin_of(&self, ctx: &Ctx) -> Result<String, Error> {
        let user = self.user_of(ctx)?;
        if !self.is_admin(&user) {
            return Err(Error::NotAdmin);
        }
        Ok(user)
    }

    // --- Deliveries -----------------------------------------------------------------

    /// Sends `event` to every connection of `users` on every node, but `except` (a
    /// connection of this node).
    fn publish(
        &self,
        users: &[String],
        event: &str,
        data: &Value,
        except: Option<ConnId>,
    ) -> Outcome {
        let mut ids = self.held_by(Some(users));
        ids.retain(|c| Some(*c) != except);
        self.deliver_here(&ids, event, data);
        self.forward(|| json!({ "node": self.node, "users": users, "event": event, "data": data }))
    }

    /// Sends `event` to every connection on every node that has a user.
    fn publish_all(&self, event: &str, data: &Value) -> Outcome {
        self.deliver_here(&self.held_by(None), event, data);
        self.forward(|| json!({ "node": self.node, "all": true, "event": event, "data": data }))
    }

    /// Kicks `user` off every node.
    fn publish_kick(&self, user: &str, reason: &str) -> Outcome {
        self.kick_here(user, reason);
        self.forward(|| json!({ "node": self.node, "kick": user, "reason": reason }))
    }

    /// The connections of this node that belong to `users`, each once; `None`: those of
    /// every user.
    fn held_by(&self, users: Option<&[String]>) -> Vec<ConnId> {
        let st = self.state();
        match users {
            Some(users) => st.identity.connections_of_users(users),
            None => st.identity.connections_of_users(&st.identity.users()),
        }
    }

    /// Delivers to connections of this node, straight to their queues: a delivery
    /// here never waits on the bus, so it does not depend on Redis being up or on
    /// this node's subscription being back after an outage.
    fn deliver_here(&self, ids: &[ConnId], event: &str, data: &Value) {
        if ids.is_empty() {
            return;
        }
        if let Some(server) = self.server() {
            server.reply_many(ids, event, data);
        }
    }

    fn kick_here(&self, user: &str, reason: &str) {
        let Some(server) = self.server() else { return };
        let conns = self.state().identity.connections_of(user);
        for c in conns {
            if let Some(conn) = server.connection(c) {
                conn.close(KICKED, reason);
            }
        }
    }

    /// Hands a delivery to the bus for the other nodes, when the bus reaches any (the
    /// memory bus reaches this process only). A failure is the sender's to hear of:
    /// [`Error::NotForwarded`], since this node's recipients already have it.
    fn forward(&self, message: impl FnOnce() -> Value) -> Outcome {
        if !self.stores.bus.reaches_other_nodes() {
            return Ok(());
        }
        self.stores
            .bus
            .publish(&self.config.channel, &message().to_string())
            .map_err(Error::NotForwarded)
    }

    /// A delivery from the bus: another node's (this node's own were delivered when
    /// they were sent).
    fn on_bus(&self, payload: &str) {
        let Ok(Value::Object(m)) = serde_json::from_str::<Value>(payload) else {
            self.count("bus_invalid");
            self.log(
                Level::Warn,
                None,
                "invalid message on the bus",
                &[("bytes", &payload.len())],
            );
            return;
        };
        if m.get("node").and_then(Value::as_str) == Some(self.node.as_str()) {
            return;
        }
        if let Some(user) = m.get("kick").and_then(Value::as_str) {
            let reason = m.get("reason").and_then(Value::as_str).unwrap_or("kicked");
            self.kick_here(user, reason);
            return;
        }
        let (Some(event), Some(data)) = (m.get("event").and_then(Value::as_str), m.get("data"))
        else {
            self.count("bus_invalid");
            return;
        };
        let ids = if m.get("all").and_then(Value::as_bool) == Some(true) {
            self.held_by(None)
        } else {
            self.held_by(Some(&user_list(m.get("users")).unwrap_or_default()))
        };
        self.deliver_here(&ids, event, data);
    }

    /// A notification from the site: `{"users": [23, "user5"], "data": {..}}`.
    fn on_notification(&self, payload: &str) {
        let Some((users, data)) = read_notification(payload) else {
            self.count("notifications_invalid");
            self.log(
                Level::Warn,
                None,
                "invalid notification ignored; expected {\"users\": [..], \"data\": ..}",
                &[("bytes", &payload.len())],
            );
            return;
        };
        self.count("notifications");
        let Some(server) = self.server() else { return };
        let ids = self.held_by(Some(&users));
        server.reply_many(&ids, "message", &data);
    }

    // --- notice ------------------------------------------------------------------------

    /// `notice.send` `{"users": [..], "text": .., "data": ..}` from an admin (also
    /// `notice.notice` with `userId`, the earlier form).
    fn notice_send(&self, ctx: &Ctx, data: &Value) -> Outcome {
        let from = self.admin_of(ctx)?;
        let (users, notice) = self.read_notice(data, Some(&from))?;
        self.publish(&users, "notice", &notice, None)?;
        let _ = ctx.reply(ctx.event(), json!({ "users": users }));
        Ok(())
    }

    fn read_notice(&self, data: &Value, from: Option<&str>) -> Result<(Vec<String>, Value), Error> {
        let users = user_list(data.get("users").or_else(|| data.get("userId")))
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Error::BadRequest("\"users\" is required: a list of user ids".into()))?;
        let text = data.get("text").and_then(Value::as_str);
        if text.is_some_and(|t| t.chars().count() > self.config.max_text_chars) {
            return Err(Error::BadRequest("\"text\" is too long".into()));
        }
        if text.is_none() && data.get("data").is_none() {
            return Err(Error::BadRequest(
                "a notice needs \"text\" or \"data\"".into(),
            ));
        }
        let notice = json!({
            "from": from,
            "time": now_iso8601(),
            "text": text,
            "data": data.get("data"),
        });
        Ok((users, notice))
    }

    // --- private -----------------------------------------------------------------------

    fn text_field(&self, data: &Value, name: &str) -> Result<String, Error> {
        let text = data
            .get(name)
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| Error::BadRequest(format!("\"{name}\" is required (text)")))?;
        if text.chars().count() > self.config.max_text_chars {
            return Err(Error::BadRequest(format!(
                "\"{name}\" is longer than {} characters",
                self.config.max_text_chars
            )));
        }
        Ok(text.to_owned())
    }

    /// The stream of two users' private messages, whatever the order of the two.
    fn private_stream(a: &str, b: &str) -> String {
        let (x, y) = if a <= b { (a, b) } else { (b, a) };
        format!("private:{}:{x}:{y}", x.len())
    }

    fn after_id(data: &Value, name: &str) -> Result<Option<EntryId>, Error> {
        match data.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| Error::BadRequest(format!("\"{name}\" is not a message id"))),
            Some(_) => Err(Error::BadRequest(format!("\"{name}\" is not a message id"))),
        }
    }

    /// `limit`: how many entries, 1 to [`Config::history_page`]; larger asks get a
    /// full page.
    fn page(&self, data: &Value) -> Result<usize, Error> {
        match data.get("limit") {
            None | Some(Value::Null) => Ok(self.config.history_page),
            Some(v) => v
                .as_u64()
                .filter(|n| *n >= 1)
                .map(|n| (n as usize).min(self.config.history_page))
                .ok_or_else(|| Error::BadRequest("\"limit\" is a whole number from 1".into())),
        }
    }

    /// `private.send` `{"to": user, "message": text}`: to every connection of the
    /// recipient, a copy to the sender's other connections, kept in their history.
    fn private_send(&self, ctx: &Ctx, data: &Value) -> Outcome {
        let from = self.user_of(ctx)?;
        let to = self.id_field(data, "to")?;
        let message = self.text_field(data, "message")?;
        let entry = json!({ "time": now_iso8601(), "user": from, "to": to, "message": message });
        let id = self
            .stores
            .history
            .append(&Self::private_stream(&from, &to), &entry)?;
        let mut sent = entry;
        sent["id"] = json!(id.to_string());
        let mut users = vec![from.clone()];
        if to != from {
            users.push(to);
        }
        self.publish(&users, "private.message", &sent, Some(ctx.id()))?;
        let _ = ctx.reply("private.send", sent);
        Ok(())
    }

    /// `private.history` `{"with": user, "after": id?, "limit": n?}`.
    fn private_history(&self, ctx: &Ctx, data: &Value) -> Outcome {
        let me = self.user_of(ctx)?;
        let with = self.id_field(data, "with")?;
        let stream = Self::private_stream(&me, &with);
        let list = self.history(&stream, self.history_request(data)?)?;
        let _ = ctx.reply("private.history", json!({ "with": with, "messages": list }));
        Ok(())
    }

    /// Where a history request starts: after `after`, or else after `lastId`, or
    /// (none) at the last page.
    fn resume_from(data: &Value) -> Result<Option<EntryId>, Error> {
        match data.get("after") {
            Some(v) if !v.is_null() => Self::after_id(data, "after"),
            _ => Self::after_id(data, "lastId"),
        }
    }

    /// A history request's `limit` and starting point, read before anything is done
    /// for it.
    fn history_request(&self, data: &Value) -> Result<(usize, Option<EntryId>), Error> {
        Ok((self.page(data)?, Self::resume_from(data)?))
    }

    /// Entries of `stream` after `from`, or the last page, at most `limit`.
    fn history(
        &self,
        stream: &str,
        (limit, from): (usize, Option<EntryId>),
    ) -> Result<Value, Error> {
        let list = match from {
            Some(after) => self.stores.history.after(stream, Some(after), limit)?,
            None => self.stores.history.last(stream, limit)?,
        };
        Ok(entries(list))
    }

    // --- chat ----------------------------------------------------------------------------

    /// A user or session id that a client names: [`field`], within
    /// [`Config::max_id_chars`].
    fn id_field(&self, data: &Value, name: &str) -> Result<String, Error> {
        let id = field(data, name)?;
        if id.chars().count() > self.config.max_id_chars {
            return Err(Error::BadRequest(format!(
                "\"{name}\" is longer than {} characters",
                self.config.max_id_chars
            )));
        }
        Ok(id)
    }

    fn room_name(&self, data: &Value) -> Result<String, Error> {
        let room = field(data, "room")?;
        self.check_room_name(&room)?;
        Ok(room)
    }

    fn check_room_name(&self, room: &str) -> Outcome {
        if room.is_empty()
            || room.chars().count() > self.config.max_room_name_chars
            || room.chars().any(char::is_control)
        {
            return Err(Error::BadRequest(format!(
                "a room name is 1 to {} characters, none of them control characters",
                self.config.max_room_name_chars
            )));
        }
        Ok(())
    }

    fn room_stream(room: &str) -> String {
        format!("room:{room}")
    }

    fn room_view(&self, room: &str) -> Value {
        let st = self.state();
        match st.rooms.get(room) {
            Some(r) => json!({
                "room": room,
                "owner": r.owner,
                "moderators": r.moderators,
                "users": r.members,
                "muted": r.muted,
                "banned": r.banned,
            }),
            None => json!({ "room": room, "users": [] }),
        }
    }

    fn members(&self, room: &str) -> Vec<String> {
        self.state()
            .rooms
            .get(room)
            .map(|r| r.members.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Tells the room's members who is in it.
    fn send_userlist(&self, room: &str) {
        let members = self.members(room);
        let data = json!({ "room": room, "users": members });
        if let Err(e) = self.publish(&members, "userlist", &data, None) {
            self.log(
                Level::Warn,
                None,
                "userlist not sent to other nodes",
                &[("error", &e)],
            );
        }
    }

    fn enter_room(&self, room: &str, user: &str, open: bool) -> Outcome {
        self.check_room_name(room)?;
        let joined = self.state().rooms.join(room, user, open)?;
        if joined {
            self.send_userlist(room);
        }
        Ok(())
    }

    /// `chat.create` `{"room": name}`: the sender owns it and is in it.
    fn chat_create(&self, ctx: &Ctx, data: &Value) -> Outcome {
        let user = self.user_of(ctx)?;
        let room = self.room_name(data)?;
        self.state().rooms.create(&room, &user)?;
        let _ = ctx.reply("chat.create", self.room_view(&room));
        self.send_userlist(&room);
        Ok(())
    }

    /// `chat.join` `{"room": name, "lastId": id?}`: the answer holds the room and its
    /// history, after `lastId` when given (what was missed), or the last page.
    fn chat_join(&self, ctx: &Ctx, data: &Value) -> Outcome {
        let user = self.user_of(ctx)?;
        let room = self.room_name(data)?;
        // A malformed history request is refused before it joins anyone.
        let request = self.history_request(data)?;
        let joined = self.state().rooms.join(&room, &user, false)?;
        let answered = self
            .history(&Self::room_stream(&room), request)
            .map(|messages| {
                let mut view = self.room_view(&room);
                view["messages"] = messages;
                let _ = ctx.reply("chat.join", view);
            });
        // Joined is joined, even if the store cannot give the history now.
        if joined {
            self.send_userlist(&room);
        }
        answered
    }

    fn chat_leave(&self, ctx: &Ctx, data: &Value) -> Outcome {
        let user = self.user_of(ctx)?;
        let room = self.room_name(data)?;
        self.state().rooms.leave(&room, &user)?;
        let _ = ctx.reply("chat.leave", json!({ "room": room }));
        self.send_userlist(&room);
        Ok(())
    }

    fn chat_members(&self, ctx: &Ctx, data: &Value) -> Outcome {
        let user = self.user_of(ctx)?;
        let room = self.room_name(data)?;
        self.state().rooms.check_member(&room, &user)?;
        let _ = ctx.reply("chat.members", self.room_view(&room));
        Ok(())
    }

    /// `chat.send` `{"room": name, "message": text}`: to every member as
    /// `chat.message` `{"id", "room", "time", "user", "message"}`.
    fn chat_send(&self, ctx: &Ctx, data: &Value) -> Outcome {
        let user = self.user_of(ctx)?;
        let room = self.room_name(data)?;
        let message = self.text_field(data, "message")?;
        self.state().rooms.check_send(&room, &user)?;
        let entry =
            json!({ "room": room, "time": now_iso8601(), "user": user, "message": message });
        let id = self
            .stores
            .history
            .append(&Self::room_stream(&room), &entry)?;
        let mut sent = entry;
        sent["id"] = json!(id.to_string());
        self.publish(&self.members(&room), "chat.message", &sent, None)?;
        // Answered like every other request, so that a sender can tell a message
        // taken from one lost (its chat.message may come on another connection).
        let _ = ctx.reply("chat.send", sent);
        Ok(())
    }

    fn chat_history(&self, ctx: &Ctx, data: &Value) -> Outcome {
        let user = self.user_of(ctx)?;
        let room = self.room_name(data)?;
        self.state().rooms.check_member(&room, &user)?;
        let list = self.history(&Self::room_stream(&room), self.history_request(data)?)?;
        let _ = ctx.reply("chat.history", json!({ "room": room, "messages": list }));
        Ok(())
    }

    /// `chat.delete` `{"room": name, "id": id}`, by a moderator.
    fn chat_delete(&self, ctx: &Ctx, data: &Value) -> Outcome {
        let user = self.user_of(ctx)?;
        let room = self.room_name(data)?;
        let id = Self::after_id(data, "id")?
            .ok_or_else(|| Error::BadRequest("\"id\" is required".into()))?;
        self.state()
            .rooms
            .check_moderator(&room, &user, self.is_admin(&user))?;
        if !self.stores.history.remove(&Self::room_stream(&room), id)? {
            return Err(Error::NotFound);
        }
        let data = json!({ "room": room, "id": id.to_string(), "by": user });
        self.publish(&self.members(&room), "chat.deleted", &data, None)?;
        // A moderator or admin outside the room hears of it too.
        let _ = ctx.reply("chat.delete", data);
        Ok(())
    }

    /// `chat.kick`, `ban`, `unban`, `mute`, `unmute`, `appoint`, `dismiss`
    /// `{"room": name, "user": id}`: the members and the target are told.
    fn chat_moderate(&self, ctx: &Ctx, data: &Value) -> Outcome {
        let actor = self.user_of(ctx)?;
        let room = self.room_name(data)?;
        let target = self.id_field(data, "user")?;
        let method = ctx.event().trim_start_matches("chat.");
        let action = Action::from_method(method)
            .ok_or_else(|| Error::BadRequest(format!("no such action {method}")))?;
        // The members before and after, read under the lock the moderation takes: read
        // later, a join in between would count as this action's change.
        let (before, changed) = {
            let mut st = self.state();
            let members = |st: &State| -> Vec<String> {
                st.rooms
                    .get(&room)
                    .map(|r| r.members.iter().cloned().collect())
                    .unwrap_or_default()
            };
            let before = members(&st);
            st.rooms
                .moderate(&room, &actor, action, &target, |u| self.is_admin(u))?;
            let changed = members(&st) != before;
            (before, changed)
        };
        let mut told = before.clone();
        if !told.contains(&target) {
            told.push(target.clone());
        }
        let note = json!({ "room": room, "user": target, "by": actor });
        self.publish(&told, action.event(), &note, None)?;
        let _ = ctx.reply(ctx.event(), note);
        if changed {
            self.send_userlist(&room);
        }
        Ok(())
    }

    // --- admin -------------------------------------------------------------------------

    fn stats(&self) -> Value {
        let st = self.state();
        json!({
            "node": self.node,
            "connections": st.identity.len(),
            "users": st.identity.users().len(),
            "sessions": st.identity.sessions().len(),
            "rooms": st.rooms.names().len(),
        })
    }

    fn admin_stats(&self, ctx: &Ctx, _: &Value) -> Outcome {
        self.admin_of(ctx)?;
        let _ = ctx.reply("admin.stats", self.stats());
        Ok(())
    }

    /// Every connection with its session, user and handshake.
    fn listing(&self, server: &Server) -> Value {
        let mut conns = server.connections();
        conns.sort_by_key(|c| c.id());
        let st = self.state();
        Value::Array(
            conns
                .iter()
                .map(|c| {
                    let m = st.identity.member(c.id()).cloned().unwrap_or_default();
                    json!({
                        "connectionId": c.id(),
                        "sessionId": m.session.as_deref().unwrap_or("__nosession__"),
                        "userId": m.user.as_deref().unwrap_or("__nouser__"),
                        "softId": m.soft_id,
                        "handshake": describe(c),
                    })
                })
                .collect(),
        )
    }

    fn admin_connections(&self, ctx: &Ctx, _: &Value) -> Outcome {
        self.admin_of(ctx)?;
        let _ = ctx.reply("admin.connections", self.listing(ctx.server()));
        Ok(())
    }

    /// `admin.kick` `{"user": id, "reason": text?}`: every connection of the user, on
    /// every node, is closed with [`KICKED`].
    fn admin_kick(&self, ctx: &Ctx, data: &Value) -> Outcome {
        self.admin_of(ctx)?;
        let user = self.id_field(data, "user")?;
        let reason = data
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("kicked by an admin");
        // A close reason is at most 123 bytes (RFC 6455 5.5.1).
        let reason: String = reason.chars().take(60).collect();
        self.publish_kick(&user, &reason)?;
        let _ = ctx.reply("admin.kick", json!({ "user": user }));
        Ok(())
    }

    /// `admin.broadcast` `{"text": .., "data": ..}`: a `broadcast` event to every
    /// connection with a user, on every node.
    fn admin_broadcast(&self, ctx: &Ctx, data: &Value) -> Outcome {
        let from = self.admin_of(ctx)?;
        let text = data.get("text").and_then(Value::as_str);
        if text.is_some_and(|t| t.chars().count() > self.config.max_text_chars) {
            return Err(Error::BadRequest("\"text\" is too long".into()));
        }
        if text.is_none() && data.get("data").is_none_or(Value::is_null) {
            return Err(Error::BadRequest("\"text\" or \"data\" is required".into()));
        }
        let out =
            json!({ "from": from, "time": now_iso8601(), "text": text, "data": data.get("data") });
        self.publish_all("broadcast", &out)?;
        let _ = ctx.reply("admin.broadcast", json!({ "sent": true }));
        Ok(())
    }

    // --- The admin listener ---------------------------------------------------------

    fn admin_route(&self, server: &Server, request: &AdminRequest) -> Option<AdminResponse> {
        let ok = |body: Value| Some(AdminResponse::new(200, body));
        let body_json = || serde_json::from_slice::<Value>(request.body);
        match (request.method, request.path) {
            ("GET", "/connections") => ok(self.listing(server)),
            ("GET", "/users") => {
                let st = self.state();
                ok(Value::Array(
                    st.identity
                        .users()
                        .iter()
                        .map(|u| {
                            let conns = st.identity.connections_of(u);
                            let sessions: BTreeSet<String> = conns
                                .iter()
                                .filter_map(|c| st.identity.member(*c)?.session.clone())
                                .collect();
                            json!({ "userId": u, "sessions": sessions, "connections": conns })
                        })
                        .collect(),
                ))
            }
            ("GET", "/sessions") => {
                let st = self.state();
                ok(Value::Array(
                    st.identity
                        .sessions()
                        .iter()
                        .map(|s| {
                            let conns = st.identity.connections_of_session(s);
                            let user = conns
                                .first()
                                .and_then(|c| st.identity.member(*c)?.user.clone());
                            json!({
                                "sessionId": s,
                                "userId": user.as_deref().unwrap_or("__nouser__"),
                                "connections": conns,
                            })
                        })
                        .collect(),
                ))
            }
            ("GET", "/rooms") => {
                let names = self.state().rooms.names();
                ok(Value::Array(
                    names.iter().map(|r| self.room_view(r)).collect(),
                ))
            }
            ("GET", "/stats") => ok(self.stats()),
            ("POST", "/notify") => {
                let text = std::str::from_utf8(request.body).unwrap_or("");
                if read_notification(text).is_none() {
                    return Some(AdminResponse::error(
                        400,
                        "expected {\"users\": [..], \"data\": ..}",
                    ));
                }
                Some(
                    match self
                        .stores
                        .bus
                        .publish(&self.config.notifications_channel, text)
                    {
                        Ok(()) => AdminResponse::new(202, json!({ "published": true })),
                        Err(e) => AdminResponse::error(503, &e.to_string()),
                    },
                )
            }
            ("POST", "/notice") => {
                let Ok(data) = body_json() else {
                    return Some(AdminResponse::error(400, "the body must be JSON"));
                };
                Some(match self.read_notice(&data, None) {
                    Err(e) => AdminResponse::error(400, &e.to_string()),
                    Ok((users, notice)) => match self.publish(&users, "notice", &notice, None) {
                        Ok(()) => AdminResponse::new(202, json!({ "published": true })),
                        Err(e) => AdminResponse::error(503, &e.to_string()),
                    },
                })
            }
            (method, path) if path.starts_with("/sessions/") => {
                let key = &path["/sessions/".len()..];
                let key = crate::server::parse_query(&format!("k={key}"))
                    .pop()
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                if key.is_empty() {
                    return Some(AdminResponse::error(400, "give a key: /sessions/<key>"));
                }
                Some(self.admin_session(method, &key, request))
            }
            _ => None,
        }
    }

    /// `PUT /sessions/<key>` (the body is the value; `?ttl=SECONDS`) and `DELETE`: for
    /// sites without Redis, the way a site writes its sessions.
    fn admin_session(&self, method: &str, key: &str, request: &AdminRequest) -> AdminResponse {
        let sessions = &self.stores.sessions;
        let result = match method {
            "PUT" | "POST" => {
                let Ok(value) = std::str::from_utf8(request.body) else {
                    return AdminResponse::error(400, "the value must be UTF-8");
                };
                let ttl = match request.query.iter().find(|(k, _)| k == "ttl") {
                    None => None,
                    Some((_, v)) => match v.parse::<f64>() {
                        Ok(s) if s > 0.0 && s <= 366.0 * 86400.0 => {
                            Some(Duration::from_secs_f64(s))
                        }
                        _ => return AdminResponse::error(400, "ttl is a number of seconds"),
                    },
                };
                sessions
                    .set(key, value.trim_end_matches(['\r', '\n']), ttl)
                    .map(|()| json!({ "key": key, "set": true }))
            }
            "DELETE" => sessions
                .delete(key)
                .map(|d| json!({ "key": key, "deleted": d })),
            "GET" => sessions.get(key).map(|v| json!({ "key": key, "value": v })),
            _ => return AdminResponse::error(405, "GET, PUT or DELETE"),
        };
        match result {
            Ok(body) => AdminResponse::new(200, body),
            Err(e) => AdminResponse::error(503, &e.to_string()),
        }
    }
}

/// Reads a notification, `{"users": [..], "data": ..}`, with user ids as strings.
pub fn read_notification(payload: &str) -> Option<(Vec<String>, Value)> {
    let Ok(Value::Object(mut m)) = serde_json::from_str::<Value>(payload) else {
        return None;
    };
    let users = match m.get("users") {
        Some(Value::Array(_)) => user_list(m.get("users"))?,
        _ => return None,
    };
    let data = m.remove("data")?;
    Some((users, data))
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
