//! The server runtime: it accepts TCP connections, runs the opening handshake, gives
//! each WebSocket a reader thread and a bounded send queue, keeps the connections
//! alive with heartbeats, enforces every limit, answers plain HTTP requests (health,
//! metrics) on the same port, and shuts down gracefully.
//!
//! It knows sockets, not users: what to do with a message is a [`Handler`]'s business.
//! [`echo`] has the two handlers of `switchboard echo`; the event emitter
//! applications program against is built on the same trait.
//!
//! # Files
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | the [`Server`] handle: sending to connections, health, shutdown |
//! | `config.rs` | [`Config`], every limit with its default |
//! | `handler.rs` | the [`Handler`] trait and what it decides with ([`Upgrade`], [`Accept`], [`Reject`], [`Note`]) |
//! | `accept.rs` | the accept loop, admission, each connection's thread up to its handshake |
//! | [`conn`], `outbound.rs` | a connection, and its send queue; `reader.rs` and `writer.rs` drive them |
//! | [`events`] | the event emitter applications program against |
//! | [`admin`], `http.rs` | the admin listener, and plain HTTP on the WebSocket port |
//! | [`log`], [`metrics`] | log lines within budgets, Prometheus counters |
//!
//! # Threads
//!
//! - the accept loop, in the thread that calls [`Server::run`];
//! - one reader thread per connection, with a small stack: it runs the handshake,
//!   then reads, decodes and calls the handler, so one connection's messages are
//!   handled in order; it sends its own answers before it blocks again;
//! - [`Config::writer_threads`] writer threads (`writer`): they send what other
//!   threads queued (broadcasts, replies to other connections) and what full sockets
//!   left behind, never blocking on any one peer;
//! - one thread that answers connections turned away (503, 429), so that the accept
//!   loop never waits on a client.

mod accept;
pub mod admin;
mod config;
pub mod conn;
pub mod echo;
pub mod events;
mod handler;
mod http;
pub mod log;
pub mod metrics;
pub mod nodes;
mod outbound;
mod reader;
mod writer;

pub use admin::{AdminRequest, AdminResponse};
pub use config::Config;
pub use conn::{Conn, ConnId, Frame, Handshake, Message};
pub use events::Builder;
pub use handler::{Accept, Handler, HttpAnswer, HttpRequest, Note, Reject, Unhealthy, Upgrade};

use crate::protocol;
use crate::protocol::close;
use crate::protocol::handshake;
use crate::socket::{self, DeadlineStream};
use crate::sys;
use log::{Level, Logger};
use metrics::{inc, Metrics};
use reader::{end_connection, read_loop, End};
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// Close code sent when a connection stayed silent for `heartbeat_timeout` after a
/// ping. In the 4000-4999 range RFC 6455 7.4.2 leaves to applications; a client
/// should reconnect.
pub const CLOSE_HEARTBEAT_TIMEOUT: u16 = 4000;

/// Deliveries to at most this many connections are written from the sending thread
/// ([`Server::send_many`]): a private message reaches its recipient without a thread
/// hop. More go through the writer threads, where one `writev` carries everything a
/// connection has queued, which is what a room's burst needs.
pub const DIRECT_FANOUT: usize = 8;
/// Close code sent when a connection sent no message for `idle_timeout`; a client
/// may reconnect when it has something to do.
pub const CLOSE_IDLE_TIMEOUT: u16 = 4001;

/// What can go wrong in the server layer. Each variant that ends a connection maps to
/// the close code it is answered with.
#[derive(Debug)]
pub enum Error {
    /// The socket failed or timed out.
    Io(io::Error),
    /// The peer broke RFC 6455; closed with [`protocol::Error::close_code`].
    Protocol(protocol::Error),
    /// The connection is closing or closed; nothing more is sent.
    Closed,
    /// The send queue went over [`Config::max_queue_bytes`]; closed with 1008.
    QueueOverflow,
    /// The peer sent more than [`Config::max_messages_per_second`]; closed with 1008.
    RateLimited,
    /// No answer to a ping within [`Config::heartbeat_timeout`].
    HeartbeatTimeout,
    /// No message within [`Config::idle_timeout`].
    IdleTimeout,
    /// The handler panicked; closed with 1011.
    HandlerFailed,
    /// A fragmented message stayed unfinished past [`Config::message_timeout`]; 1008.
    MessageTimeout,
    /// This connection held the most buffered bytes when all of them together went
    /// over [`Config::max_buffered_bytes`]; closed with 1013.
    OverBudget,
}

impl Error {
    /// The close code this error is answered with, if the connection is still there
    /// to receive one.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Error::Io(_) | Error::Closed => None,
            Error::Protocol(e) => e.close_code().or(Some(close::PROTOCOL_ERROR)),
            Error::QueueOverflow | Error::RateLimited | Error::MessageTimeout => {
                Some(close::POLICY_VIOLATION)
            }
            Error::OverBudget => Some(close::TRY_AGAIN_LATER),
            Error::HeartbeatTimeout => Some(CLOSE_HEARTBEAT_TIMEOUT),
            Error::IdleTimeout => Some(CLOSE_IDLE_TIMEOUT),
            Error::HandlerFailed => Some(close::INTERNAL_ERROR),
        }
    }

    /// The close reason sent with [`Error::close_code`].
    pub fn close_reason(&self) -> &'static str {
        match self {
            Error::Io(_) | Error::Closed => "",
            Error::Protocol(e) => e.reason(),
            Error::QueueOverflow => "send queue overflow",
            Error::RateLimited => "message rate exceeded",
            Error::HeartbeatTimeout => "heartbeat timeout",
            Error::IdleTimeout => "idle timeout",
            Error::HandlerFailed => "internal error",
            Error::MessageTimeout => "message not finished in time",
            Error::OverBudget => "server memory budget exceeded, try again later",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "i/o: {e}"),
            Error::Protocol(e) => write!(f, "protocol: {e}"),
            Error::Closed => f.write_str("connection closed"),
            other => f.write_str(other.close_reason()),
        }
    }
}

impl std::error::Error for Error {}

/// State shared by every thread of one server.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) metrics: Metrics,
    pub(crate) log: Logger,
    registry: RwLock<HashMap<ConnId, Arc<Conn>>>,
    writers: Vec<Arc<writer::Writer>>,
    handler: Box<dyn Handler>,
    /// TCP connections being served (handshaking, WebSocket or HTTP).
    active: Mutex<usize>,
    /// Connections past their handshake (WebSocket or HTTP), which
    /// [`Config::max_connections`] bounds.
    established: AtomicUsize,
    /// Connections still sending their handshake, by id (so oldest first), with a
    /// handle to drop the oldest when [`Config::max_handshakes`] are pending.
    handshaking: Mutex<std::collections::BTreeMap<ConnId, TcpStream>>,
    drained: Condvar,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    next_id: AtomicU64,
    shutting_down: AtomicBool,
    local_addr: Mutex<Option<SocketAddr>>,
    /// Threads started and not yet ended (readers, writers, the rejecter), for tests
    /// and metrics.
    threads: AtomicUsize,
    /// The bus shared with other nodes, when the program joined one.
    nodes: std::sync::OnceLock<nodes::Nodes>,
    /// The event handlers, for an `emit_all` from any node.
    emit: std::sync::OnceLock<nodes::Emit>,
}

impl Shared {
    pub(crate) fn conn(&self, id: ConnId) -> Option<Arc<Conn>> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    fn writer_for(&self, id: ConnId) -> &writer::Writer {
        &self.writers[(id.0 as usize) % self.writers.len()]
    }
}

/// A handle on a running server: what handlers use to reach other connections. Cheap
/// to clone.
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("connections", &self.connection_count())
            .finish_non_exhaustive()
    }
}

/// A handle that does not keep the server alive, for threads and hooks that the server
/// itself owns (a handle they kept would keep the server from ever being dropped).
#[derive(Clone, Debug)]
pub struct WeakServer(std::sync::Weak<Shared>);

impl WeakServer {
    /// The server, unless it is gone.
    pub fn upgrade(&self) -> Option<Server> {
        self.0.upgrade().map(|shared| Server { shared })
    }
}

impl Server {
    /// A handle that does not keep the server alive.
    pub fn downgrade(&self) -> WeakServer {
        WeakServer(Arc::downgrade(&self.shared))
    }

    /// A server with `config` whose connections are handled by `handler`. Nothing
    /// runs until [`Server::run`].
    pub fn new(config: Config, handler: impl Handler) -> io::Result<Server> {
        let writers = (0..config.writer_threads.max(1))
            .map(|_| writer::Writer::new().map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        let log = Logger::new(config.log_format, config.log_level);
        Ok(Server {
            shared: Arc::new(Shared {
                config,
                metrics: Metrics::default(),
                log,
                registry: RwLock::new(HashMap::new()),
                writers,
                handler: Box::new(handler),
                active: Mutex::new(0),
                established: AtomicUsize::new(0),
                handshaking: Mutex::new(std::collections::BTreeMap::new()),
                drained: Condvar::new(),
                per_ip: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                shutting_down: AtomicBool::new(false),
                local_addr: Mutex::new(None),
                threads: AtomicUsize::new(0),
                nodes: std::sync::OnceLock::new(),
                emit: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The counters behind `GET /metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The logger: handlers log through it so that their lines look like the rest.
    pub fn logger(&self) -> &Logger {
        &self.shared.log
    }

    /// The open WebSocket connection with this id.
    pub fn connection(&self, id: ConnId) -> Option<Arc<Conn>> {
        self.shared.conn(id)
    }

    /// Every open WebSocket connection, in no particular order.
    pub fn connections(&self) -> Vec<Arc<Conn>> {
        self.shared
            .registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// `GET /health`'s answer: its status and JSON body. 503 once a shutdown started
    /// (so that a load balancer stops sending clients) or while the handler reports
    /// what it depends on as down ([`Handler::health`]), with the reason.
    pub fn health(&self) -> (u16, serde_json::Value) {
        let connections = self.connection_count();
        if self.is_shutting_down() {
            return (
                503,
                serde_json::json!({ "status": "shutting_down", "connections": connections }),
            );
        }
        let checked = guarded(&self.shared, None, "health", || {
            self.shared.handler.health(self)
        })
        .unwrap_or_else(|| Err(Unhealthy::new("the health check failed")));
        match checked {
            Ok(()) => (
                200,
                serde_json::json!({ "status": "ok", "connections": connections }),
            ),
            Err(why) => (
                503,
                serde_json::json!({
                    "status": "store_down",
                    "error": why.reason,
                    "connections": connections,
                }),
            ),
        }
    }

    /// How many WebSocket connections are open.
    pub fn connection_count(&self) -> usize {
        self.shared
            .registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Queues `frame` to every open connection; the frame's bytes are shared, not
    /// copied. Returns how many connections took it (a connection that is closing, or
    /// whose queue overflows, does not).
    pub fn broadcast(&self, frame: &Frame) -> usize {
        let shared = &self.shared;
        let mut batch = Vec::new();
        let registry = shared.registry.read().unwrap_or_else(|p| p.into_inner());
        let taken = registry
            .values()
            .filter(|c| c.send_frame_batched(frame, Some(&mut batch)).is_ok())
            .count();
        drop(registry);
        self.hand_to_writers(batch);
        taken
    }

    /// Sends `frame` to the open connections among `ids`. Up to [`DIRECT_FANOUT`]
    /// recipients are written to from this thread when their sockets have room; more
    /// go to the writer threads in one batch. Returns how many took it.
    pub fn send_many(&self, ids: &[ConnId], frame: &Frame) -> usize {
        if ids.len() <= DIRECT_FANOUT {
            return ids
                .iter()
                .filter_map(|id| self.connection(*id))
                .filter(|c| c.send_frame(frame).is_ok())
                .count();
        }
        let mut batch = Vec::new();
        let taken = {
            let registry = self
                .shared
                .registry
                .read()
                .unwrap_or_else(|p| p.into_inner());
            ids.iter()
                .filter_map(|id| registry.get(id))
                .filter(|c| c.send_frame_batched(frame, Some(&mut batch)).is_ok())
                .count()
        };
        self.hand_to_writers(batch);
        taken
    }

    /// Hands connections with something queued to their writer threads, one hand-over
    /// per writer rather than one per connection.
    fn hand_to_writers(&self, batch: Vec<Arc<Conn>>) {
        let shared = &self.shared;
        if batch.is_empty() {
            return;
        }
        let n = shared.writers.len();
        let mut per_writer: Vec<Vec<Arc<Conn>>> = vec![Vec::new(); n];
        for conn in batch {
            per_writer[(conn.id().0 as usize) % n].push(conn);
        }
        for (w, conns) in shared.writers.iter().zip(per_writer) {
            if !conns.is_empty() {
                w.schedule_many(conns);
            }
        }
    }

    /// Starts a graceful shutdown: stops accepting, lets the handler say goodbye
    /// ([`Handler::on_shutdown`]), then closes every connection with 1001. [`Server::run`]
    /// returns once every connection is gone or `shutdown_grace` has passed.
    pub fn shutdown(&self) {
        let shared = &self.shared;
        if shared.shutting_down.swap(true, SeqCst) {
            return;
        }
        shared.log.log(
            Level::Info,
            None,
            "shutting down",
            &[("connections", &self.connection_count())],
        );
        // Wake the accept loop with a connection of our own.
        let addr = *shared.local_addr.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(addr) = addr {
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
        guarded(shared, None, "on_shutdown", || {
            shared.handler.on_shutdown(self)
        });
        for conn in self.connections() {
            conn.close(close::GOING_AWAY, "server shutting down");
        }
    }

    /// Whether [`Server::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutting_down.load(SeqCst)
    }

    /// Threads this server runs now: readers, writers and the rejecter (not the one
    /// in [`Server::run`]).
    pub fn thread_count(&self) -> usize {
        self.shared.threads.load(SeqCst)
    }

    /// Calls [`Server::shutdown`] on SIGINT or SIGTERM; a second signal ends the process
    /// at once, with status 1. Once per process.
    pub fn shutdown_on_signals(&self) -> io::Result<()> {
        let mut pipe = sys::on_shutdown_signals()?;
        let server = self.clone();
        thread::Builder::new()
            .name("signals".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut byte = [0u8; 1];
                let mut first = true;
                while pipe.read_exact(&mut byte).is_ok() {
                    let name = if byte[0] == 15 { "SIGTERM" } else { "SIGINT" };
                    if first {
                        server.logger().log(
                            Level::Info,
                            None,
                            "signal received",
                            &[("signal", &name)],
                        );
                        server.shutdown();
                        first = false;
                    } else {
                        // A second signal while closing: the operator does not want to wait.
                        server.logger().log(
                            Level::Warn,
                            None,
                            "second signal, exiting now",
                            &[("signal", &name)],
                        );
                        std::process::exit(1);
                    }
                }
            })?;
        Ok(())
    }

    fn wait_drained(&self) {
        let shared = &self.shared;
        let deadline = Instant::now() + shared.config.shutdown_grace;
        let mut active = shared.active.lock().unwrap_or_else(|p| p.into_inner());
        while *active > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            active = shared
                .drained
                .wait_timeout(active, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let left = *active;
        drop(active);
        if left > 0 {
            shared.log.log(
                Level::Warn,
                None,
                "grace period over, dropping the rest",
                &[("connections_left", &left)],
            );
            // Their threads end once their sockets are shut; without the writers, no
            // close deadline would do it.
            for conn in self.connections() {
                conn.abort();
            }
        }
    }
}

/// Runs a handler method, catching a panic: it is logged, and `None` returned, so that
/// the connection is closed (1011) and counted out like any other, rather than left
/// behind in the registry by an unwinding thread.
fn guarded<T>(
    shared: &Shared,
    conn: Option<ConnId>,
    what: &'static str,
    f: impl FnOnce() -> T,
) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(_) => {
            shared
                .log
                .log(Level::Error, conn, "handler panicked", &[("in", &what)]);
            None
        }
    }
}
