//! The event emitter applications program against: JSON text frames
//! `{"event": "<name>", "data": <any JSON>}` in both directions, handlers registered by
//! name, and replies to one connection, to a set of them, or to all.
//!
//! ```no_run
//! use switchboard::server::{events::Ctx, Server};
//! use serde_json::{json, Value};
//!
//! let server = Server::builder()
//!     .on("connection", |ctx: &Ctx, _: &Value| {
//!         let _ = ctx.reply("welcome", json!({ "id": ctx.id() }));
//!     })
//!     .on("say", |ctx: &Ctx, data: &Value| {
//!         ctx.reply_all("said", json!({ "from": ctx.id(), "text": data }));
//!     })
//!     .build()
//!     .unwrap();
//! let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! server.shutdown_on_signals().unwrap();
//! server.run(listener).unwrap();
//! ```
//!
//! Input is normalised in one place ([`parse_envelope`]): besides the envelope above,
//! `{"module": m, "method": f, ...}` is event `m.f` and `{"type": t, ...}` is event
//! `t`, the forms earlier clients sent. Built-in events, emitted by the server and
//! never accepted from a client: `connection`, `disconnect`, `log`, `error`.
//!
//! Bad input never closes a connection: invalid JSON, a binary message, an unknown or
//! reserved event name each get an `error` event back (`{"code": .., "message": ..}`),
//! a log line, a count in `/metrics`, and the `error` listeners are called.
//!
//! Handlers of one connection run on its reader thread, in the order its messages
//! arrived. A handler that panics is caught: the connection gets an `error` event
//! (`internal_error`) and stays.

use super::log::{clip, Level, Record};
use super::metrics::inc;
use super::{
    Accept, AdminRequest, AdminResponse, Config, Conn, ConnId, Frame, Handler, HttpAnswer,
    HttpRequest, Message, Reject, Server, Upgrade,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

/// Events the server emits itself; a client may not send them.
pub const BUILT_IN: [&str; 4] = ["connection", "disconnect", "log", "error"];

/// A registered handler.
pub type Listener = Arc<dyn Fn(&Ctx, &Value) + Send + Sync>;

/// What a handler is called with besides the event's data: the server, and the
/// connection the event came from (none for `log`).
pub struct Ctx<'a> {
    server: &'a Server,
    conn: Option<&'a Arc<Conn>>,
    emitter: &'a Emitter,
    event: &'a str,
}

impl<'a> Ctx<'a> {
    /// The server, to reach other connections.
    pub fn server(&self) -> &'a Server {
        self.server
    }

    /// The connection the event came from; `None` for `log`.
    pub fn conn(&self) -> Option<&'a Arc<Conn>> {
        self.conn
    }

    /// The id of the connection the event came from (0 for `log`).
    pub fn id(&self) -> ConnId {
        self.conn.map_or(ConnId(0), |c| c.id())
    }

    /// Sends `event` to the connection the event came from.
    pub fn reply(&self, event: &str, data: Value) -> Result<(), super::Error> {
        match self.conn {
            Some(conn) => self.server.reply_one(conn, event, &data),
            None => Err(super::Error::Closed),
        }
    }

    /// The name of the event being handled.
    pub fn event(&self) -> &'a str {
        self.event
    }

    /// Answers the event as bad input, the way the server answers its own: an `error`
    /// event to the connection (`{"code", "message", "event"}`), a log line at `warn`,
    /// a count in `/metrics` under `code`, and the `error` listeners. The connection
    /// stays open.
    pub fn fail(&self, code: &'static str, message: &str) {
        if let Some(conn) = self.conn {
            self.emitter
                .error_about(self.server, conn, code, message, Some(self.event));
        }
    }

    /// Sends `event` to every open connection.
    pub fn reply_all(&self, event: &str, data: Value) -> usize {
        self.server.reply_all(event, &data)
    }
}

pub use crate::envelope::{envelope, parse_envelope, parse_envelope_bounded, BadInput};

/// The code of [`EventError::HandlerFailed`].
const INTERNAL_ERROR: &str = "internal_error";

/// Why the event layer refused a client's message, before any handler saw it: the
/// `error` event's `code` and `message`. An application's own refusals use
/// [`Ctx::fail`] with codes of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventError {
    /// A binary message: events are JSON text (RFC 6455 5.6 leaves the meaning of
    /// data to the application).
    Binary,
    /// Not JSON, or not an `{"event", "data"}` object.
    BadJson(String),
    /// More JSON values than [`Config::max_json_values`].
    TooComplex {
        /// The limit.
        max_values: usize,
    },
    /// A client named an event only the server sends (`connection`, `error`...).
    Reserved(String),
    /// No handler for the event.
    Unknown(String),
    /// The event's handler panicked.
    HandlerFailed(String),
}

impl EventError {
    /// The `error` event's code, also the label of its count in `/metrics`.
    pub fn code(&self) -> &'static str {
        match self {
            EventError::Binary => "binary_unsupported",
            EventError::BadJson(_) => "bad_json",
            EventError::TooComplex { .. } => "too_complex",
            EventError::Reserved(_) => "reserved_event",
            EventError::Unknown(_) => "unknown_event",
            EventError::HandlerFailed(_) => INTERNAL_ERROR,
        }
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::Binary => f.write_str("messages are JSON text frames"),
            EventError::BadJson(why) => f.write_str(why),
            EventError::TooComplex { max_values } => {
                write!(f, "more than {max_values} JSON values in one message")
            }
            EventError::Reserved(name) => write!(f, "\"{name}\" is sent by the server only"),
            EventError::Unknown(name) => write!(f, "no handler for \"{name}\""),
            EventError::HandlerFailed(name) => write!(f, "the handler of \"{name}\" failed"),
        }
    }
}

impl std::error::Error for EventError {}

impl Server {
    /// Starts an event-emitter server: register handlers with [`Builder::on`].
    pub fn builder() -> Builder {
        Builder {
            config: Config::default(),
            listeners: HashMap::new(),
            reconnect_delay: (Duration::from_secs(1), Duration::from_secs(5)),
            upgrade: None,
            admin: Vec::new(),
            http: None,
            otherwise: None,
            health: None,
            nodes: None,
        }
    }

    /// Sends `event` to one connection.
    pub fn reply_one(
        &self,
        conn: &Arc<Conn>,
        event: &str,
        data: &Value,
    ) -> Result<(), super::Error> {
        conn.send_text(&envelope(event, data))
    }

    /// Sends `event` to every open connection: encoded once, shared by all. Returns how
    /// many of this node's took it. With [`Builder::nodes`], every other node's
    /// connections get it too, through the bus.
    pub fn reply_all(&self, event: &str, data: &Value) -> usize {
        let taken = self.broadcast(&Frame::text(&envelope(event, data)));
        self.reply_all_nodes(event, data);
        taken
    }

    /// Sends `event` to the open connections among `ids`, encoded once. Returns how
    /// many took it.
    ///
    /// A few recipients are written to at once from the calling thread; many are
    /// handed to the writer threads in one batch, which coalesces what each
    /// connection is sent.
    pub fn reply_many(&self, ids: &[ConnId], event: &str, data: &Value) -> usize {
        self.send_many(ids, &Frame::text(&envelope(event, data)))
    }
}

/// Builds an event-emitter [`Server`].
pub struct Builder {
    config: Config,
    listeners: HashMap<String, Vec<Listener>>,
    reconnect_delay: (Duration, Duration),
    upgrade: Option<UpgradeHook>,
    admin: Vec<AdminHook>,
    http: Option<HttpHook>,
    otherwise: Option<Otherwise>,
    health: Option<HealthHook>,
    nodes: Option<(Arc<dyn crate::store::Bus>, String)>,
}

/// Answers plain HTTP requests on the WebSocket port ([`Handler::on_http`]).
pub type HttpHook = Box<dyn Fn(&Server, &HttpRequest) -> Option<HttpAnswer> + Send + Sync>;
/// Takes client events no listener is registered for: the context, the event's name
/// and its data ([`Builder::otherwise`]).
pub type Otherwise = Box<dyn Fn(&Ctx, &str, &Value) + Send + Sync>;

/// Decides on upgrade requests ([`Handler::on_upgrade`]).
pub type UpgradeHook = Box<dyn Fn(&Upgrade) -> Result<Accept, Reject> + Send + Sync>;
/// Reports whether what the application depends on works ([`Handler::health`]).
pub type HealthHook = Box<dyn Fn() -> Result<(), super::Unhealthy> + Send + Sync>;
/// Adds admin routes ([`Handler::on_admin`]).
pub type AdminHook = Box<dyn Fn(&Server, &AdminRequest) -> Option<AdminResponse> + Send + Sync>;

impl Builder {
    /// Uses `config` instead of the defaults.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Calls `handler` for every event named `event`, after the handlers registered
    /// before it. Client events, and the built-in `connection`, `disconnect`, `log`,
    /// `error`.
    pub fn on(
        mut self,
        event: &str,
        handler: impl Fn(&Ctx, &Value) + Send + Sync + 'static,
    ) -> Self {
        self.listeners
            .entry(event.to_owned())
            .or_default()
            .push(Arc::new(handler));
        self
    }

    /// Decides on each upgrade request before the 101: accept it (choosing a
    /// subprotocol, noting what was learnt) or refuse it with an HTTP status. Without
    /// one, every valid request is accepted with no subprotocol.
    pub fn on_upgrade(
        mut self,
        hook: impl Fn(&Upgrade) -> Result<Accept, Reject> + Send + Sync + 'static,
    ) -> Self {
        self.upgrade = Some(Box::new(hook));
        self
    }

    /// Answers admin requests before the admin listener's built-in routes
    /// ([`Handler::on_admin`]). Hooks are asked in the order they were added; the
    /// first answer is sent.
    pub fn on_admin(
        mut self,
        hook: impl Fn(&Server, &AdminRequest) -> Option<AdminResponse> + Send + Sync + 'static,
    ) -> Self {
        self.admin.push(Box::new(hook));
        self
    }

    /// Answers plain HTTP requests on the WebSocket port before the built-in routes
    /// ([`Handler::on_http`]): a `POST` comes with its body.
    pub fn on_http(
        mut self,
        hook: impl Fn(&Server, &HttpRequest) -> Option<HttpAnswer> + Send + Sync + 'static,
    ) -> Self {
        self.http = Some(Box::new(hook));
        self
    }

    /// Takes every client event that has no listener, instead of the `unknown_event`
    /// error: a bridge to another program (the broker's back end under `serve`).
    pub fn otherwise(mut self, hook: impl Fn(&Ctx, &str, &Value) + Send + Sync + 'static) -> Self {
        self.otherwise = Some(Box::new(hook));
        self
    }

    /// Reports what the application depends on to `GET /health`: `Err` with a reason
    /// makes it answer 503. The hook must answer from what it knows, without blocking.
    pub fn on_health(
        mut self,
        hook: impl Fn() -> Result<(), super::Unhealthy> + Send + Sync + 'static,
    ) -> Self {
        self.health = Some(Box::new(hook));
        self
    }

    /// The delay, chosen at random in `min..=max` by each client, after which clients
    /// should come back when the server says `end`. Default 1 to 5 s: spread out, a
    /// restart does not come back as a stampede.
    pub fn reconnect_delay(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_delay = (min, max.max(min));
        self
    }

    /// Shares `bus` (a [`crate::store::redis::RedisStore`], for nodes on one Redis)
    /// with the other nodes on `channel`: [`Server::reply_all`] reaches their
    /// connections, and [`Server::emit_all`] calls the handlers of an event on all of
    /// them (see [`super::nodes`]). The subscription is made by [`Builder::build`].
    pub fn nodes(mut self, bus: Arc<dyn crate::store::Bus>, channel: &str) -> Self {
        self.nodes = Some((bus, channel.to_owned()));
        self
    }

    /// The server, ready to [`Server::run`].
    pub fn build(self) -> io::Result<Server> {
        let emitter = Emitter {
            listeners: self.listeners,
            reconnect_delay: self.reconnect_delay,
            upgrade: self.upgrade,
            admin: self.admin,
            http: self.http,
            otherwise: self.otherwise,
            health: self.health,
        };
        let wants_log = emitter.listeners.contains_key("log");
        let emitter = Arc::new(emitter);
        let server = Server::new(self.config, Shared(emitter.clone()))?;
        let from_nodes = emitter.clone();
        let emit: super::nodes::Emit = Box::new(move |server, event, data| {
            from_nodes.emit(server, None, event, data);
        });
        match self.nodes {
            Some((bus, channel)) => super::nodes::join(&server, bus, &channel, emit)?,
            None => {
                let _ = server.shared.emit.set(emit);
            }
        }
        if wants_log {
            let weak = Arc::downgrade(&server.shared);
            server
                .logger()
                .set_hook(Some(Arc::new(move |record: &Record| {
                    if let Some(shared) = weak.upgrade() {
                        emitter.emit(&Server { shared }, None, "log", &record.to_json());
                    }
                })));
        }
        Ok(server)
    }
}

/// What [`Server::builder`] built: the listeners by event name.
struct Emitter {
    listeners: HashMap<String, Vec<Listener>>,
    reconnect_delay: (Duration, Duration),
    upgrade: Option<UpgradeHook>,
    admin: Vec<AdminHook>,
    http: Option<HttpHook>,
    otherwise: Option<Otherwise>,
    health: Option<HealthHook>,
}

/// The [`Handler`] behind [`Server::builder`]; the log hook shares the emitter.
struct Shared(Arc<Emitter>);

impl Emitter {
    /// Calls the listeners of `event`; returns whether there were any. A listener that
    /// panics is caught and reported.
    fn emit(&self, server: &Server, conn: Option<&Arc<Conn>>, event: &str, data: &Value) -> bool {
        let Some(listeners) = self.listeners.get(event) else {
            return false;
        };
        let ctx = Ctx {
            server,
            conn,
            emitter: self,
            event,
        };
        for listener in listeners {
            if catch_unwind(AssertUnwindSafe(|| listener(&ctx, data))).is_err() {
                // `log` listeners are not logged about: that could loop.
                if event != "log" {
                    server.logger().log(
                        Level::Error,
                        conn.map(|c| c.id()),
                        "handler panicked",
                        &[("event", &event)],
                    );
                    if let Some(conn) = conn {
                        self.error(server, conn, &EventError::HandlerFailed(event.into()));
                    }
                }
            }
        }
        true
    }

    /// Answers bad input: an `error` event to the client, a log line, a count, and the
    /// `error` listeners.
    fn error(&self, server: &Server, conn: &Arc<Conn>, e: &EventError) {
        self.error_about(server, conn, e.code(), &e.to_string(), None)
    }

    /// [`Emitter::error`] about a named event, which the `error` event names too.
    fn error_about(
        &self,
        server: &Server,
        conn: &Arc<Conn>,
        code: &'static str,
        message: &str,
        event: Option<&str>,
    ) {
        server.metrics().error_event(code);
        // What a client named is cut short in the log and in the answer, so that a
        // 4 MiB event name costs a few hundred bytes, not 4 MiB twice.
        let max = server.config().max_logged_input_bytes;
        let message = clip(message, max);
        let event = event.map(|e| clip(e, max));
        let mut data = json!({ "code": code, "message": message });
        if let Some(event) = &event {
            data["event"] = json!(event);
        }
        let _ = server.reply_one(conn, "error", &data);
        let written = server.logger().log_within(
            &conn.log_budget,
            Level::Warn,
            Some(conn.id()),
            "bad input",
            &[("code", &code), ("detail", &message)],
        );
        if !written {
            inc(&server.metrics().log_lines_suppressed);
            return;
        }
        // A failed handler is not reported to the `error` listeners: one of them
        // could be what failed.
        if code != INTERNAL_ERROR {
            self.emit(server, Some(conn), "error", &data);
        }
    }
}

impl Handler for Shared {
    fn on_upgrade(&self, upgrade: &Upgrade) -> Result<Accept, Reject> {
        match &self.0.upgrade {
            Some(hook) => hook(upgrade),
            None => Ok(Accept::default()),
        }
    }

    fn on_admin(&self, server: &Server, request: &AdminRequest) -> Option<AdminResponse> {
        self.0.admin.iter().find_map(|hook| hook(server, request))
    }

    fn on_http(&self, server: &Server, request: &HttpRequest) -> Option<HttpAnswer> {
        self.0.http.as_ref().and_then(|hook| hook(server, request))
    }

    fn health(&self, _server: &Server) -> Result<(), super::Unhealthy> {
        self.0.health.as_ref().map_or(Ok(()), |hook| hook())
    }

    fn on_open(&self, server: &Server, conn: &Arc<Conn>) {
        self.0.on_open(server, conn)
    }

    fn on_message(&self, server: &Server, conn: &Arc<Conn>, message: Message) {
        self.0.on_message(server, conn, message)
    }

    fn on_close(&self, server: &Server, conn: &Arc<Conn>, code: u16) {
        self.0.on_close(server, conn, code)
    }

    fn on_shutdown(&self, server: &Server) {
        self.0.on_shutdown(server)
    }
}

impl Emitter {
    fn on_open(&self, server: &Server, conn: &Arc<Conn>) {
        let data = json!({
            "id": conn.id(),
            "peer": conn.peer().to_string(),
            "target": conn.handshake().request.target,
        });
        self.emit(server, Some(conn), "connection", &data);
    }

    fn on_message(&self, server: &Server, conn: &Arc<Conn>, message: Message) {
        let text = match message {
            Message::Text(t) => t,
            Message::Binary(_) => return self.error(server, conn, &EventError::Binary),
        };
        let (name, data) = match parse_envelope_bounded(&text, server.config().max_json_values) {
            Ok(x) => x,
            Err(BadInput::BadJson(why)) => {
                return self.error(server, conn, &EventError::BadJson(why))
            }
            Err(BadInput::TooComplex { max_values }) => {
                return self.error(server, conn, &EventError::TooComplex { max_values })
            }
        };
        if BUILT_IN.contains(&name.as_str()) {
            return self.error(server, conn, &EventError::Reserved(name));
        }
        if !self.emit(server, Some(conn), &name, &data) {
            match &self.otherwise {
                Some(hook) => {
                    let ctx = Ctx {
                        server,
                        conn: Some(conn),
                        emitter: self,
                        event: &name,
                    };
                    if catch_unwind(AssertUnwindSafe(|| hook(&ctx, &name, &data))).is_err() {
                        self.error(server, conn, &EventError::HandlerFailed(name.clone()));
                    }
                }
                None => self.error(server, conn, &EventError::Unknown(name)),
            }
        }
    }

    fn on_close(&self, server: &Server, conn: &Arc<Conn>, code: u16) {
        self.emit(
            server,
            Some(conn),
            "disconnect",
            &json!({ "id": conn.id(), "code": code }),
        );
    }

    fn on_shutdown(&self, server: &Server) {
        let (min, max) = self.reconnect_delay;
        server.reply_all(
            "end",
            &json!({
                "reason": "server shutting down",
                "reconnect": true,
                "minDelayMs": min.as_millis() as u64,
                "maxDelayMs": max.as_millis() as u64,
            }),
        );
    }
}
