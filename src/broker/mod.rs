//! `switchboard broker`: the WSBroker contract. Each client event goes to the site's
//! HTTP back end as a form POST; the back end answers with commands (`send`, `close`,
//! `session`, `list`, `log`) run on the connections its `match` selects. Commands may
//! also be POSTed to the WebSocket port from allowed addresses. docs/BROKER.md is the
//! contract as built.
//!
//! Threads: [`Config::backend_connections`] workers, each with its own kept
//! connection to the back end. A connection's events always go to the same worker, so
//! they reach the back end in order, each after the answer to the one before (and
//! the commands of that answer) has been run.

pub mod backend;
pub mod commands;

use crate::server::log::{clip, Level, LogBudget};
use crate::server::{
    AdminRequest, AdminResponse, Conn, ConnId, Frame, Handler, HttpAnswer, HttpRequest, Message,
    Server, WeakServer,
};
use commands::{Command, SessionInfo, Target};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Settings of the broker. Every bound has a documented default (docs/OPERATIONS.md).
#[derive(Clone, Debug)]
pub struct Config {
    /// Where events are POSTed.
    pub backend: backend::Url,
    /// Addresses that may POST commands to the WebSocket port. Default none: every
    /// direct command is refused, as with the earlier broker.
    pub allow: Vec<IpAddr>,
    /// Peers whose `X-Forwarded-For` is believed for `sessionInfo.ip` (a proxy in front
    /// of the broker). Default loopback: nginx on the same machine. From any other
    /// peer the header is ignored and `ip` is the peer's address.
    pub trusted_proxies: Vec<IpAddr>,
    /// Requests to the back end at once (each a kept connection and a thread).
    /// Default 4.
    pub backend_connections: usize,
    /// Time for one request, from its start to its whole answer. Default 10 s.
    pub backend_timeout: Duration,
    /// Events waiting for the back end, in all. Over it an event is dropped, with a log
    /// line and a count. Default 10,000.
    pub backend_queue: usize,
    /// Bytes of events waiting for the back end, in all: over it an event is dropped
    /// like one over [`Config::backend_queue`]. Default 16 MiB.
    pub backend_queue_bytes: usize,
    /// Events of one connection waiting for the back end: over it that connection's
    /// next events are dropped (logged and counted), so that one client cannot fill the
    /// queue the others share. Default 100.
    pub backend_queue_per_connection: usize,
    /// How long an event waits while the back end cannot be reached, tried again
    /// meanwhile, before it is dropped (logged and counted). Default 10 s.
    pub backend_wait: Duration,
    /// Largest answer body read from the back end. Default 1 MiB.
    pub max_answer_bytes: usize,
}

impl Config {
    /// The defaults, for `backend`.
    pub fn new(backend: backend::Url) -> Self {
        Config {
            backend,
            allow: Vec::new(),
            trusted_proxies: vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            ],
            backend_connections: 4,
            backend_timeout: Duration::from_secs(10),
            backend_queue: 10_000,
            backend_queue_bytes: 16 * 1024 * 1024,
            backend_queue_per_connection: 100,
            backend_wait: Duration::from_secs(10),
            max_answer_bytes: 1024 * 1024,
        }
    }
}

/// One event for the back end.
struct Job {
    conn: ConnId,
    /// The event, as sent.
    message: String,
    /// Its `type`, cut for log lines.
    kind: String,
    /// `session-disconnect`: the connection's entry goes once it is sent.
    last: bool,
    since: Instant,
}

/// What the broker holds of one connection.
struct Entry {
    info: SessionInfo,
    /// Its events waiting for the back end.
    queued: usize,
    /// Once closed: its `sessionInfo` as it was then, identity included, for the
    /// events still queued; it takes no more commands.
    closed: Option<SessionInfo>,
}

/// The broker: the server's [`Handler`], and the workers that talk to the back end.
pub struct Broker {
    config: Config,
    infos: Mutex<HashMap<ConnId, Entry>>,
    /// Bytes of the events queued ([`Config::backend_queue_bytes`]).
    queued_bytes: std::sync::atomic::AtomicUsize,
    queues: Vec<SyncSender<Job>>,
    receivers: Mutex<Vec<Receiver<Job>>>,
    server: OnceLock<WeakServer>,
    log_budget: Mutex<LogBudget>,
    identity: OnceLock<Identity>,
    relay: OnceLock<Relay>,
}

/// Hands commands to the other nodes' brokers ([`Broker::set_relay`]).
pub type Relay = Box<dyn Fn(Vec<Value>) + Send + Sync>;

/// What another part of the program knows of a connection, added to its
/// `sessionInfo` whenever that is read: under `serve`, its `userId`, `sessionId` and
/// `softId` once known ([`Broker::set_identity`]).
pub type Identity = Box<dyn Fn(ConnId) -> Map<String, Value> + Send + Sync>;

/// The handler given to the server; the broker itself stays shared with the workers.
pub struct BrokerHandler(pub Arc<Broker>);

impl Broker {
    /// A broker; it handles nothing until [`Broker::start`] gives it its server.
    pub fn new(mut config: Config) -> Arc<Broker> {
        // `::ffff:127.0.0.1` and `127.0.0.1` are one address, as peers are compared.
        for ip in config
            .allow
            .iter_mut()
            .chain(config.trusted_proxies.iter_mut())
        {
            *ip = ip.to_canonical();
        }
        let workers = config.backend_connections.max(1);
        let per_worker = (config.backend_queue / workers).max(1);
        let (queues, receivers) = (0..workers).map(|_| sync_channel(per_worker)).unzip();
        Arc::new(Broker {
            config,
            infos: Mutex::new(HashMap::new()),
            queued_bytes: std::sync::atomic::AtomicUsize::new(0),
            queues,
            receivers: Mutex::new(receivers),
            server: OnceLock::new(),
            log_budget: Mutex::new(LogBudget::new(60)),
            identity: OnceLock::new(),
            relay: OnceLock::new(),
        })
    }

    /// Adds what `identity` knows of a connection to its `sessionInfo` wherever that is
    /// read (events, `match`, `list`). Once only.
    pub fn set_identity(&self, identity: Identity) {
        let _ = self.identity.set(identity);
    }

    /// Hands the commands that reach beyond one connection (a `match`, or a direct
    /// command without one) to `relay` too, for the other nodes' connections; they run
    /// there with [`Broker::run_relayed`]. Once only.
    pub fn set_relay(&self, relay: Relay) {
        let _ = self.relay.set(relay);
    }

    /// Commands another node's broker ran and relayed: each runs here on this node's
    /// connections, as a direct command would; `list` and `log` do not come.
    pub fn run_relayed(&self, payload: &Value) {
        let Value::Array(list) = payload else {
            self.count("backend_commands_skipped");
            return;
        };
        for entry in list {
            if let Ok(command) = commands::read_command(entry) {
                if command.reaches_every_node(true) {
                    self.apply(command, None);
                }
            }
        }
    }

    /// A connection's `sessionInfo` with what [`Broker::set_identity`] adds; the
    /// identity's fields win over fields of the same name.
    fn view<'a>(&self, id: ConnId, info: &'a SessionInfo) -> Cow<'a, SessionInfo> {
        match self.identity.get() {
            None => Cow::Borrowed(info),
            Some(identity) => {
                let extra = identity(id);
                if extra.is_empty() {
                    return Cow::Borrowed(info);
                }
                let mut all = info.clone();
                all.extend(extra);
                Cow::Owned(all)
            }
        }
    }

    /// A connection opened: its `sessionInfo` from its upgrade request, and
    /// `session-connect` for the back end.
    pub fn opened(&self, conn: &Conn) {
        let request = &conn.handshake().request;
        let cookies: Vec<&str> = request.headers.all("cookie").collect();
        let wskey = request.headers.one("sec-websocket-key").unwrap_or("");
        let info = commands::session_info(&cookies, &self.client_ip(conn), wskey);
        let entry = Entry {
            info,
            queued: 0,
            closed: None,
        };
        self.infos().insert(conn.id(), entry);
        self.enqueue(conn.id(), json!({ "type": "session-connect" }), false);
    }

    /// A client's message for the back end (see [`commands::client_event`]).
    pub fn message(&self, conn: ConnId, message: Value) {
        self.enqueue(conn, message, false);
    }

    /// A connection closed: `session-disconnect` with its last `sessionInfo`, after
    /// its events still queued, which are sent with that `sessionInfo` too.
    pub fn closed(&self, conn: ConnId) {
        {
            let mut infos = self.infos();
            let Some(entry) = infos.get_mut(&conn) else {
                return;
            };
            let last = self.view(conn, &entry.info).into_owned();
            entry.closed = Some(last);
        }
        self.enqueue(conn, json!({ "type": "session-disconnect" }), true);
    }

    /// `POST /broker` on the admin listener (its token checked already): the back
    /// end's commands, as a JSON list in the body or urlencoded in `data`, answered
    /// with one entry per command as a direct POST is.
    pub fn admin_route(&self, request: &AdminRequest) -> Option<AdminResponse> {
        if request.path != "/broker" {
            return None;
        }
        if request.method != "POST" {
            return Some(AdminResponse::error(405, "POST a list of commands"));
        }
        let list = commands::read_answer(request.body).or_else(|| form_commands(request.body));
        Some(match list {
            Some(list) => {
                self.count("direct_commands");
                AdminResponse::new(200, Value::Array(self.run(&list, None)))
            }
            None => AdminResponse::error(400, "expected a non-empty JSON list of commands"),
        })
    }

    /// Starts the workers on `server`. Once only.
    pub fn start(self: &Arc<Self>, server: &Server) -> std::io::Result<()> {
        let _ = self.server.set(server.downgrade());
        let receivers = std::mem::take(&mut *lock(&self.receivers));
        for (i, rx) in receivers.into_iter().enumerate() {
            let broker = Arc::downgrade(self);
            let mut client = backend::Client::new(
                self.config.backend.clone(),
                self.config.backend_timeout,
                self.config.max_answer_bytes,
            );
            thread::Builder::new()
                .name(format!("backend-{i}"))
                .stack_size(256 * 1024)
                .spawn(move || {
                    for job in rx {
                        let Some(broker) = broker.upgrade() else {
                            return;
                        };
                        let posted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            broker.post(&mut client, &job)
                        }));
                        // The event has left the queue before its answer's commands
                        // run: a client that answers the back end's reply at once
                        // (its `welcome`) finds its place free.
                        broker.done(&job);
                        let ran = match posted {
                            Ok(Some(answer)) => {
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    broker.answered(&job, &answer)
                                }))
                                .is_ok()
                            }
                            Ok(None) => true,
                            Err(_) => {
                                // A new connection to the back end, in case the old one
                                // is left in the middle of an exchange.
                                client = backend::Client::new(
                                    broker.config.backend.clone(),
                                    broker.config.backend_timeout,
                                    broker.config.max_answer_bytes,
                                );
                                false
                            }
                        };
                        if !ran {
                            // A bug, not an input: counted and logged, and the worker
                            // goes on.
                            broker.count("backend_worker_panicked");
                            broker.warn(Some(job.conn), "back-end worker panicked", &[]);
                        }
                    }
                })?;
        }
        Ok(())
    }

    fn server(&self) -> Option<Server> {
        self.server.get()?.upgrade()
    }

    fn infos(&self) -> MutexGuard<'_, HashMap<ConnId, Entry>> {
        lock(&self.infos)
    }

    fn count(&self, kind: &'static str) {
        if let Some(s) = self.server() {
            s.metrics().app_event(kind);
        }
    }

    /// A warning within the broker's budget of 60 lines a minute: a back end that is
    /// down fails every event, and the log must not grow with the event rate.
    fn warn(
        &self,
        conn: Option<ConnId>,
        msg: &str,
        fields: &[(&'static str, &dyn std::fmt::Display)],
    ) {
        let Some(s) = self.server() else { return };
        if !s
            .logger()
            .log_within(&self.log_budget, Level::Warn, conn, msg, fields)
        {
            crate::server::metrics::inc(&s.metrics().log_lines_suppressed);
        }
    }

    /// An event's `type` for a log line, cut to `max_logged_input_bytes`: a client
    /// chooses it.
    fn kind_of(&self, message: &Value) -> String {
        let max = self
            .server()
            .map_or(256, |s| s.config().max_logged_input_bytes);
        clip(message["type"].as_str().unwrap_or(""), max).into_owned()
    }

    /// Queues an event of `conn` for the back end, on the worker that has its others,
    /// within the queue's bounds ([`Config::backend_queue`], `_bytes`,
    /// `_per_connection`); an event over them is dropped, logged and counted. The last
    /// event of a connection (`last`) passes the per-connection bound, and when it
    /// cannot be queued at all the connection's entry goes at once.
    fn enqueue(&self, conn: ConnId, message: Value, last: bool) {
        use std::sync::atomic::Ordering::SeqCst;
        let kind = self.kind_of(&message);
        let text = message.to_string();
        let full = {
            let mut infos = self.infos();
            let Some(entry) = infos.get_mut(&conn) else {
                return;
            };
            let bytes = self.queued_bytes.load(SeqCst);
            if !last && entry.queued >= self.config.backend_queue_per_connection {
                Some("backend_dropped_connection_full")
            } else if bytes + text.len() > self.config.backend_queue_bytes {
                Some("backend_dropped_queue_full")
            } else {
                entry.queued += 1;
                None
            }
        };
        if let Some(why) = full {
            return self.dropped(conn, &kind, why, last);
        }
        self.queued_bytes.fetch_add(text.len(), SeqCst);
        let len = text.len();
        let job = Job {
            conn,
            message: text,
            kind,
            last,
            since: Instant::now(),
        };
        let worker = (conn.get() as usize) % self.queues.len();
        if let Err(e) = self.queues[worker].try_send(job) {
            self.queued_bytes.fetch_sub(len, SeqCst);
            if let Some(entry) = self.infos().get_mut(&conn) {
                entry.queued -= 1;
            }
            let (job, why) = match e {
                TrySendError::Full(job) => (job, "backend_dropped_queue_full"),
                TrySendError::Disconnected(job) => (job, "backend_dropped_no_worker"),
            };
            self.dropped(conn, &job.kind, why, last);
        }
    }

    /// An event that could not be queued: logged and counted; the connection's entry
    /// goes when it was its last.
    fn dropped(&self, conn: ConnId, kind: &str, why: &'static str, last: bool) {
        self.count(why);
        self.warn(
            Some(conn),
            "event dropped before the back end",
            &[("type", &kind), ("why", &why)],
        );
        if last {
            self.infos().remove(&conn);
        }
    }

    /// A job is done (sent or dropped): its bytes leave the queue, and a connection's
    /// last job takes its entry with it.
    fn done(&self, job: &Job) {
        use std::sync::atomic::Ordering::SeqCst;
        self.queued_bytes.fetch_sub(job.message.len(), SeqCst);
        let mut infos = self.infos();
        if job.last {
            infos.remove(&job.conn);
        } else if let Some(entry) = infos.get_mut(&job.conn) {
            entry.queued = entry.queued.saturating_sub(1);
        }
    }

    /// Sends one event; returns the back end's answer, for [`Broker::answered`]. While
    /// the back end cannot be reached, the event is tried again (every 100 ms, then up
    /// to every second) until it is [`Config::backend_wait`] old.
    fn post(&self, client: &mut backend::Client, job: &Job) -> Option<backend::Answer> {
        let info = {
            let infos = self.infos();
            match infos.get(&job.conn) {
                Some(Entry {
                    closed: Some(last), ..
                }) => last.clone(),
                Some(entry) => self.view(job.conn, &entry.info).into_owned(),
                None => SessionInfo::new(),
            }
        };
        let (content_type, body) = backend::multipart(&[
            ("message", &job.message),
            ("connection", &Value::Object(info).to_string()),
        ]);
        let mut pause = Duration::from_millis(100);
        let answer = loop {
            match client.post(&content_type, &body) {
                Ok(a) => break a,
                Err(e @ backend::Error::Connect(_))
                    if job.since.elapsed() < self.config.backend_wait =>
                {
                    self.count("backend_unreachable");
                    self.warn(
                        Some(job.conn),
                        "back end unreachable, trying again",
                        &[("error", &e)],
                    );
                    thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => {
                    self.count("backend_dropped");
                    self.warn(
                        Some(job.conn),
                        "event dropped: the back end failed",
                        &[("type", &job.kind), ("why", &e.label()), ("error", &e)],
                    );
                    return None;
                }
            }
        };
        self.count("backend_events");
        if !(200..300).contains(&answer.status) {
            self.count("backend_status_not_2xx");
            self.warn(
                Some(job.conn),
                "the back end answered with an error status",
                &[("status", &answer.status)],
            );
        }
        Some(answer)
    }

    /// Runs the commands of the back end's `answer` to `job`'s event.
    fn answered(&self, job: &Job, answer: &backend::Answer) {
        match commands::read_answer(&answer.body) {
            Some(list) => {
                self.run(&list, Some(job.conn));
            }
            None if !answer.body.is_empty()
                && serde_json::from_slice::<Value>(&answer.body).is_err() =>
            {
                self.count("backend_answer_not_json");
                let text = String::from_utf8_lossy(&answer.body);
                let max = self
                    .server()
                    .map_or(256, |s| s.config().max_logged_input_bytes);
                self.warn(
                    Some(job.conn),
                    "the back end's answer is not JSON",
                    &[("status", &answer.status), ("body", &clip(&text, max))],
                );
            }
            None => {}
        }
    }

    /// Runs the back end's commands in order, for the event of `origin`, or (`None`)
    /// POSTed directly. Returns one entry per command: `null`, or for `list` the
    /// matching connections' `sessionInfo`.
    pub fn run(&self, list: &[Value], origin: Option<ConnId>) -> Vec<Value> {
        let mut relayed = Vec::new();
        let answers = list
            .iter()
            .map(|entry| match commands::read_command(entry) {
                Ok(command) => {
                    if self.relay.get().is_some() && command.reaches_every_node(origin.is_none()) {
                        relayed.push(entry.clone());
                    }
                    self.apply(command, origin)
                }
                Err(why) => {
                    self.count("backend_commands_skipped");
                    let max = self
                        .server()
                        .map_or(256, |s| s.config().max_logged_input_bytes);
                    let why = why.to_string();
                    self.warn(
                        origin,
                        "back-end command skipped",
                        &[("why", &clip(&why, max))],
                    );
                    Value::Null
                }
            })
            .collect();
        if let (Some(relay), false) = (self.relay.get(), relayed.is_empty()) {
            relay(relayed);
        }
        answers
    }

    /// The connections `target` selects, in id order.
    fn select(&self, target: &Target, origin: Option<ConnId>) -> Vec<ConnId> {
        let direct = origin.is_none();
        let mut ids: Vec<ConnId> = self
            .infos()
            .iter()
            .filter(|(id, e)| {
                e.closed.is_none()
                    && target.selects(&self.view(**id, &e.info), Some(**id) == origin, direct)
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    fn apply(&self, command: Command, origin: Option<ConnId>) -> Value {
        let Some(server) = self.server() else {
            return Value::Null;
        };
        match command {
            Command::Close(target) => {
                for id in self.select(&target, origin) {
                    if let Some(c) = server.connection(id) {
                        c.close(1000, "");
                    }
                }
            }
            Command::List(criteria) => {
                let infos = self.infos();
                let mut listed: Vec<(ConnId, SessionInfo)> = infos
                    .iter()
                    .filter(|(_, e)| e.closed.is_none())
                    .map(|(id, e)| (*id, self.view(*id, &e.info).into_owned()))
                    .filter(|(_, i)| criteria.as_ref().is_none_or(|c| c.matches(i)))
                    .collect();
                listed.sort_by_key(|(id, _)| *id);
                return Value::Array(listed.into_iter().map(|(_, i)| Value::Object(i)).collect());
            }
            Command::Log(text) => {
                let max = server.config().max_logged_input_bytes;
                server.logger().log(
                    Level::Info,
                    origin,
                    "back end",
                    &[("text", &clip(&text, max))],
                );
            }
            Command::Send { text, target } => {
                let ids = self.select(&target, origin);
                let sent = server.send_many(&ids, &Frame::text(&text));
                if sent < ids.len() {
                    self.count("backend_send_not_taken");
                }
            }
            Command::Session { data, target } => {
                let ids = self.select(&target, origin);
                let mut infos = self.infos();
                for id in ids {
                    if let Some(entry) = infos.get_mut(&id) {
                        commands::merge(&mut entry.info, &data);
                    }
                }
            }
        }
        Value::Null
    }

    /// `sessionInfo.ip`: the peer's address, or, from a trusted proxy, the last address
    /// of its `X-Forwarded-For` (the one that proxy saw; those before it are the
    /// client's word).
    fn client_ip(&self, conn: &Conn) -> String {
        let peer = conn.peer().ip().to_canonical();
        if self.config.trusted_proxies.contains(&peer) {
            let forwarded = conn
                .handshake()
                .request
                .headers
                .all("x-forwarded-for")
                .last();
            if let Some(last) = forwarded.and_then(|v| v.rsplit(',').next()).map(str::trim) {
                if !last.is_empty() {
                    return last.to_owned();
                }
            }
        }
        peer.to_string()
    }

    /// A direct command POST: `data`, a JSON list of commands, urlencoded; from an
    /// allowed address only.
    pub fn direct(&self, request: &HttpRequest) -> HttpAnswer {
        let html = |body: Vec<u8>| HttpAnswer {
            status: 200,
            content_type: "text/html",
            body,
        };
        if !self
            .config
            .allow
            .contains(&request.peer.ip().to_canonical())
        {
            self.count("direct_refused");
            self.warn(None, "direct command refused", &[("peer", &request.peer)]);
            return html(b"access denied".to_vec());
        }
        self.count("direct_commands");
        match form_commands(request.body) {
            Some(list) => html(Value::Array(self.run(&list, None)).to_string().into_bytes()),
            None => html(Vec::new()),
        }
    }
}

impl Handler for BrokerHandler {
    fn on_open(&self, _server: &Server, conn: &Arc<Conn>) {
        self.0.opened(conn);
    }

    fn on_message(&self, _server: &Server, conn: &Arc<Conn>, message: Message) {
        // A binary message is read as the text it holds, as the earlier broker did
        // (bytes that are not UTF-8 become U+FFFD, and so most likely a json_error).
        let text = match &message {
            Message::Text(t) => Cow::Borrowed(t.as_str()),
            Message::Binary(b) => String::from_utf8_lossy(b),
        };
        self.0.message(conn.id(), commands::client_event(&text));
    }

    fn on_close(&self, _server: &Server, conn: &Arc<Conn>, _code: u16) {
        self.0.closed(conn.id());
    }

    fn on_admin(&self, _server: &Server, request: &AdminRequest) -> Option<AdminResponse> {
        self.0.admin_route(request)
    }

    fn on_http(&self, _server: &Server, request: &HttpRequest) -> Option<HttpAnswer> {
        (request.head.method == "POST").then(|| self.0.direct(request))
    }
}

/// The commands of a urlencoded body's `data` field, when it is a non-empty list.
fn form_commands(body: &[u8]) -> Option<Vec<Value>> {
    let body = String::from_utf8_lossy(body);
    let (_, data) = crate::form::parse_query(&body)
        .into_iter()
        .find(|(k, _)| k == "data")?;
    commands::read_answer(data.as_bytes())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
