//! The server runtime: it accepts TCP connections, runs the opening handshake, gives
//! each WebSocket a reader thread and a bounded send queue, keeps the connections
//! alive with heartbeats, enforces every limit, answers plain HTTP requests (health,
//! metrics) on the same port, and shuts down gracefully.
//!
//! It knows sockets, not users: what to do with a message is a [`Handler`]'s business.
//! [`echo`] has the two handlers of `switchboard echo`; the event emitter
//! applications program against is built on the same trait.
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

pub mod admin;
pub mod conn;
pub mod echo;
pub mod events;
mod handler;
mod http;
pub mod log;
pub mod metrics;
mod reader;
mod writer;

pub use admin::{AdminRequest, AdminResponse};
pub use conn::{Conn, ConnId, Frame, Handshake, Message};
pub use events::Builder;
pub use handler::{Accept, Handler, Note, Reject, Unhealthy, Upgrade};

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

/// Settings of the server runtime. Every limit has a documented default; docs/OPERATIONS.md
/// has the table.
#[derive(Clone, Debug)]
pub struct Config {
    /// Frame, message and handshake-head limits and the close timeout of each
    /// WebSocket (see [`socket::Config`]; its `read_buffer_bytes` is not used here).
    pub ws: socket::Config,
    /// Reads land in a 512-byte buffer on the reader's stack while traffic is light. A
    /// read that fills it moves the connection to a heap buffer of this size. Default
    /// 16 KiB: a whole 16 KiB message, or hundreds of small ones, per system call.
    pub min_read_buffer_bytes: usize,
    /// The heap buffer doubles, up to this size, while reads keep filling it. Default
    /// 64 KiB: four 16 KiB messages per system call under load. It is given back after
    /// a run of small reads or a quiet read timeout, so an idle connection holds no
    /// read buffer on the heap.
    pub max_read_buffer_bytes: usize,
    /// Time a client has to send its whole opening handshake (or HTTP request). Default
    /// 10 s; slow or half-sent requests are dropped.
    pub handshake_timeout: Duration,
    /// Connections still sending their opening handshake (or HTTP request) at most,
    /// counted apart from [`Config::max_connections`] so that slow handshakes never
    /// take the slots of upgraded connections. When a new connection finds them all
    /// taken, the oldest pending handshake is dropped to make room: a real client
    /// sends its handshake in one packet and is never the oldest for long, while a
    /// slowloris that trickles its head is. Default 1024.
    pub max_handshakes: usize,
    /// Time a peer has to finish a fragmented message once its first fragment came.
    /// RFC 6455 5.4 sets no bound, and pings may come between fragments, so without
    /// one a peer could hold a half-sent message (and its memory) open for ever. Over
    /// it: close 1008. Default 30 s.
    pub message_timeout: Duration,
    /// Bytes held in unfinished messages and read buffers across all connections at
    /// most. Over it, the connection holding the most is closed with 1013 (try again
    /// later, IANA registry of RFC 6455 7.4.2), so that a few clients with huge
    /// half-sent messages cannot take the memory of everyone else. Default 256 MiB.
    pub max_buffered_bytes: usize,
    /// Values (numbers, strings, arrays, objects...) one JSON message of the event API
    /// may hold, counted before it is parsed. A parsed value takes 30 to 100 bytes of
    /// heap where its text took as few as 2, so this keeps the parse of one message
    /// within a small multiple of its size. Over it: an `error` event (`too_complex`).
    /// Default `None` (only the message limit bounds it); `switchboard serve` sets 4096.
    pub max_json_values: Option<usize>,
    /// Bad-input log lines (and `error` listener calls) one connection may cause per
    /// minute; beyond it they are counted, and the next line says how many were
    /// suppressed. The `error` event is still sent and counted in /metrics every time.
    /// Default 10.
    pub bad_input_logs_per_minute: u32,
    /// Longest piece of client-supplied text (an event name, a JSON error) copied into
    /// a log line or an `error` event, in bytes; the rest is cut and marked with `...`.
    /// Default 256.
    pub max_logged_input_bytes: usize,
    /// Admin requests served at once; further connections get 503 at once. Each has
    /// 5 s from its connection to its answer. Default 16.
    pub max_admin_requests: usize,
    /// A connection that has sent nothing for this long is pinged (RFC 6455 5.5.2).
    /// Default 25 s, the interval Socket.IO uses; below the 60 s after which nginx
    /// drops a quiet proxied connection.
    pub ping_interval: Duration,
    /// After a ping, the peer must send something (the pong, or anything else) within
    /// this time, or it is closed with [`CLOSE_HEARTBEAT_TIMEOUT`]. Default 20 s.
    pub heartbeat_timeout: Duration,
    /// A connection that sends no text or binary message for this long is closed with
    /// [`CLOSE_IDLE_TIMEOUT`]; checked at heartbeat ticks. Default `None`: a client that
    /// only listens for notifications is idle by design, and heartbeats already catch
    /// peers that are gone.
    pub idle_timeout: Option<Duration>,
    /// A send queue that makes no progress for this long (the peer stopped reading)
    /// drops the connection. Default 30 s.
    pub write_timeout: Duration,
    /// Bound on one connection's send queue, in bytes. Default 1 MiB. A frame from
    /// another connection (a broadcast, a reply) that would take the queue over it
    /// closes the connection with 1008; a single message larger than the bound is
    /// still queued when the queue is empty.
    pub max_queue_bytes: usize,
    /// Open connections (WebSocket and plain HTTP) at most; over it a new client gets
    /// HTTP 503 before any upgrade. Default 16 384.
    pub max_connections: usize,
    /// Open connections from one IP address at most; over it, HTTP 429. Default `None`
    /// (no limit): behind nginx every client has the proxy's address.
    pub max_connections_per_ip: Option<usize>,
    /// Text and binary messages a connection may send per second, averaged over one
    /// second (a token bucket of that size). Over it: close 1008. Default `Some(1000)`;
    /// `switchboard echo` sets `None`, since benchmarks and Autobahn send faster.
    pub max_messages_per_second: Option<u32>,
    /// After SIGINT or SIGTERM, how long closing handshakes may take before the
    /// process exits anyway. Default 5 s.
    pub shutdown_grace: Duration,
    /// Threads that send for other threads (see `writer`). Default 1: on the 2-core
    /// machine of docs/PERFORMANCE.md one writer delivered a broadcast burst to 1000
    /// clients at 4.4 M frames/s and two at 2.6 M, since more frames pile up per
    /// `sendmsg` and the reference counts of shared frames stay on one core.
    pub writer_threads: usize,
    /// Stack of each connection's reader thread. Default 128 KiB: messages live on the
    /// heap and the read path does not recurse; handlers needing deep recursion
    /// should raise it.
    pub thread_stack_bytes: usize,
    /// Address of the admin listener (docs/OPERATIONS.md), such as `127.0.0.1:9101`.
    /// Default `None`: no admin listener. It must be a loopback address unless
    /// `admin_token` is set.
    pub admin_listen: Option<String>,
    /// Bearer token the admin listener requires. Default `None`: none, which is only
    /// allowed on a loopback address.
    pub admin_token: Option<String>,
    /// Print every frame in and out, annotated, on stdout.
    pub trace_frames: bool,
    /// Log lines: human-readable or JSON.
    pub log_format: log::Format,
    /// Least important log records written. Default `Info`.
    pub log_level: Level,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ws: socket::Config::default(),
            min_read_buffer_bytes: 16 * 1024,
            max_read_buffer_bytes: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 1024,
            message_timeout: Duration::from_secs(30),
            max_buffered_bytes: 256 << 20,
            max_json_values: None,
            bad_input_logs_per_minute: 10,
            max_logged_input_bytes: 256,
            max_admin_requests: 16,
            ping_interval: Duration::from_secs(25),
            heartbeat_timeout: Duration::from_secs(20),
            idle_timeout: None,
            write_timeout: Duration::from_secs(30),
            max_queue_bytes: 1 << 20,
            max_connections: 16_384,
            max_connections_per_ip: None,
            max_messages_per_second: Some(1000),
            shutdown_grace: Duration::from_secs(5),
            writer_threads: 1,
            thread_stack_bytes: 128 * 1024,
            admin_listen: None,
            admin_token: None,
            trace_frames: false,
            log_format: log::Format::Human,
            log_level: Level::Info,
        }
    }
}

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

    /// Accepts connections on `listener` until [`Server::shutdown`], then waits up to
    /// `shutdown_grace` for the connections to close, stops the writers and returns.
    pub fn run(&self, listener: TcpListener) -> io::Result<()> {
        self.run_with(listener, |_| {})
    }

    /// [`Server::run`], calling `ready` with the address once every helper thread runs
    /// and connections are about to be accepted.
    pub fn run_with(
        &self,
        listener: TcpListener,
        ready: impl FnOnce(SocketAddr),
    ) -> io::Result<()> {
        let shared = &self.shared;
        *shared.local_addr.lock().unwrap_or_else(|p| p.into_inner()) = listener.local_addr().ok();
        match sys::raise_open_file_limit() {
            Ok(limit) if (limit as usize) < shared.config.max_connections + 64 => shared.log.log(
                Level::Warn,
                None,
                "open file limit is below max_connections",
                &[
                    ("limit", &limit),
                    ("max_connections", &shared.config.max_connections),
                ],
            ),
            Ok(_) => {}
            Err(e) => shared.log.log(
                Level::Warn,
                None,
                "cannot raise the open file limit",
                &[("error", &e)],
            ),
        }
        for i in 0..shared.writers.len() {
            let weak = Arc::downgrade(shared);
            self.spawn(format!("writer-{i}"), 64 * 1024, move || {
                writer::run(i, weak)
            })?;
        }
        let rejecter = self.start_rejecter()?;
        let admin_addr = match &shared.config.admin_listen {
            Some(addr) => {
                let admin = admin::bind(addr, shared.config.admin_token.as_deref())?;
                let local = admin.local_addr()?;
                let server = self.clone();
                self.spawn("admin".into(), 128 * 1024, move || {
                    admin::serve(&server, admin)
                })?;
                shared
                    .log
                    .log(Level::Info, None, "admin listener", &[("address", &local)]);
                Some(local)
            }
            None => None,
        };
        ready(listener.local_addr()?);
        while !self.is_shutting_down() {
            let (stream, peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors or the like: say so and back off a little
                    // rather than spin on a failing accept.
                    shared
                        .log
                        .log(Level::Error, None, "accept failed", &[("error", &e)]);
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            if self.is_shutting_down() {
                break;
            }
            self.admit(stream, peer, &rejecter);
        }
        drop(listener);
        drop(rejecter);
        if let Some(addr) = admin_addr {
            // Wake the admin thread so that it sees the shutdown and ends.
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
        self.wait_drained();
        for w in &shared.writers {
            w.stop();
        }
        Ok(())
    }

    /// Counts the connection in, or turns it away with 503 or 429.
    fn admit(&self, stream: TcpStream, peer: SocketAddr, rejecter: &SyncSender<(TcpStream, u16)>) {
        let shared = &self.shared;
        let config = &shared.config;
        let refuse = |reason: &'static str, status: u16, stream: TcpStream| {
            shared.metrics.rejected(reason);
            shared.log.log(
                Level::Warn,
                None,
                "connection refused",
                &[("peer", &peer), ("reason", &reason)],
            );
            if let Err(TrySendError::Full((stream, _))) = rejecter.try_send((stream, status)) {
                // The rejecter is busy with slow clients: these get no answer at all.
                shared.metrics.rejected("rejecter_busy");
                drop(stream);
            }
        };
        {
            let mut active = shared.active.lock().unwrap_or_else(|p| p.into_inner());
            if shared.established.load(SeqCst) >= config.max_connections {
                drop(active);
                return refuse("max_connections", 503, stream);
            }
            if let Some(max) = config.max_connections_per_ip {
                let mut per_ip = shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
                let n = per_ip.entry(peer.ip()).or_insert(0);
                if *n >= max {
                    drop(per_ip);
                    drop(active);
                    return refuse("max_connections_per_ip", 429, stream);
                }
                *n += 1;
            }
            *active += 1;
        }
        let guard = Admitted {
            shared: shared.clone(),
            ip: peer.ip(),
            established: std::cell::Cell::new(false),
        };
        let id = ConnId(shared.next_id.fetch_add(1, SeqCst));
        self.hold_handshake_slot(id, &stream);
        let server = self.clone();
        let spawned = self.spawn(format!("conn-{id}"), config.thread_stack_bytes, move || {
            serve_connection(&server, stream, peer, id, &guard);
        });
        if let Err(e) = spawned {
            shared
                .handshaking
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            // The guard went down with the closure: the counts are back.
            shared.log.log(
                Level::Error,
                Some(id),
                "no thread for connection",
                &[("error", &e)],
            );
            shared.metrics.rejected("no_thread");
        }
    }

    /// Counts connection `id` among those sending their handshake, dropping the oldest
    /// pending one first when [`Config::max_handshakes`] are.
    fn hold_handshake_slot(&self, id: ConnId, stream: &TcpStream) {
        let shared = &self.shared;
        let mut pending = shared.handshaking.lock().unwrap_or_else(|p| p.into_inner());
        while pending.len() >= shared.config.max_handshakes.max(1) {
            let Some((_, oldest)) = pending.pop_first() else {
                break;
            };
            // Its reader's read fails at once and its thread ends.
            let _ = oldest.shutdown(Shutdown::Both);
            shared.metrics.rejected("handshake_evicted");
        }
        if let Ok(handle) = stream.try_clone() {
            pending.insert(id, handle);
        }
    }

    fn spawn(
        &self,
        name: String,
        stack: usize,
        f: impl FnOnce() + Send + 'static,
    ) -> io::Result<thread::JoinHandle<()>> {
        let shared = self.shared.clone();
        shared.threads.fetch_add(1, SeqCst);
        let counted = shared.clone();
        let result = thread::Builder::new()
            .name(name)
            .stack_size(stack)
            .spawn(move || {
                struct Done(Arc<Shared>);
                impl Drop for Done {
                    fn drop(&mut self) {
                        self.0.threads.fetch_sub(1, SeqCst);
                    }
                }
                let _done = Done(counted);
                f()
            });
        if result.is_err() {
            shared.threads.fetch_sub(1, SeqCst);
        }
        result
    }

    /// A thread that answers turned-away connections: the status line, then a
    /// lingering close so that the answer is read rather than reset.
    fn start_rejecter(&self) -> io::Result<SyncSender<(TcpStream, u16)>> {
        let (tx, rx) = mpsc::sync_channel::<(TcpStream, u16)>(256);
        let linger = self
            .shared
            .config
            .ws
            .close_timeout
            .min(Duration::from_secs(1));
        self.spawn("rejecter".into(), 64 * 1024, move || {
            for (mut stream, status) in rx {
                let _ = stream.set_write_timeout(Some(linger));
                let body = match status {
                    503 => "too many connections",
                    _ => "too many connections from this address",
                };
                let _ = stream.write_all(&http::response(
                    status,
                    "text/plain",
                    &[("Retry-After", "5")],
                    body.as_bytes(),
                ));
                socket::linger_close(&stream, linger);
            }
        })?;
        Ok(tx)
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

/// A connection counted in `active` and `per_ip`; dropping it counts it out.
struct Admitted {
    shared: Arc<Shared>,
    ip: IpAddr,
    /// Counted in `established` too.
    established: std::cell::Cell<bool>,
}

impl Admitted {
    /// Moves the connection from its handshake slot to the established ones, unless
    /// [`Config::max_connections`] are: then `false`.
    fn establish(&self) -> bool {
        let max = self.shared.config.max_connections;
        let taken = self
            .shared
            .established
            .fetch_update(SeqCst, SeqCst, |n| (n < max).then_some(n + 1))
            .is_ok();
        self.established.set(taken);
        taken
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if self.established.get() {
            self.shared.established.fetch_sub(1, SeqCst);
        }
        if self.shared.config.max_connections_per_ip.is_some() {
            let mut per_ip = self.shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
        let mut active = self.shared.active.lock().unwrap_or_else(|p| p.into_inner());
        *active -= 1;
        if *active == 0 {
            self.shared.drained.notify_all();
        }
    }
}

/// A short name for a handshake failure, for the metric's label.
fn failure_label(e: &socket::Error) -> &'static str {
    match e {
        socket::Error::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            "timeout"
        }
        socket::Error::Io(_) | socket::Error::Closed => "io",
        socket::Error::Protocol(p) => match p.http_status() {
            Some(405) => "method_not_allowed",
            Some(426) => "bad_version",
            Some(431) => "head_too_large",
            Some(505) => "http_version",
            _ => "bad_request",
        },
    }
}

/// One TCP connection, on its own thread: the request, then HTTP or WebSocket.
fn serve_connection(
    server: &Server,
    stream: TcpStream,
    peer: SocketAddr,
    id: ConnId,
    admitted: &Admitted,
) {
    let shared = &server.shared;
    let config = &shared.config;
    // Small frames go out at once: latency matters more than packet count here.
    let _ = stream.set_nodelay(true);
    let read = socket::read_request(
        &mut DeadlineStream::new(&stream, config.handshake_timeout),
        config.ws.head_limits,
    );
    let still_pending = shared
        .handshaking
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id)
        .is_some();
    let (request, leftover) = match read {
        Ok(x) => x,
        Err(_) if !still_pending => {
            // Dropped for a newer connection (counted then), not failed.
            socket::linger_close(&stream, config.ws.close_timeout);
            return;
        }
        Err(e) => {
            let label = failure_label(&e);
            shared.metrics.handshake_failed(label);
            if !(label == "io"
                && matches!(&e, socket::Error::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof))
            {
                shared.log.log(
                    Level::Debug,
                    Some(id),
                    "handshake failed",
                    &[("peer", &peer), ("error", &e)],
                );
            }
            socket::linger_close(&stream, config.ws.close_timeout);
            return;
        }
    };
    let _ = stream.set_read_timeout(None);
    if !admitted.establish() {
        shared.metrics.rejected("max_connections");
        let _ = (&stream).write_all(&http::response(
            503,
            "text/plain",
            &[("Retry-After", "5")],
            b"too many connections",
        ));
        socket::linger_close(&stream, config.ws.close_timeout);
        return;
    }
    if !request.headers.has_token("connection", "upgrade")
        && request.headers.one("upgrade").is_none()
    {
        http::serve(server, &stream, &request);
        socket::linger_close(&stream, config.ws.close_timeout);
        return;
    }
    let offer = match handshake::validate_request(&request) {
        Ok(offer) => offer,
        Err(e) => {
            shared
                .metrics
                .handshake_failed(failure_label(&socket::Error::Protocol(e.clone())));
            shared.log.log(
                Level::Debug,
                Some(id),
                "handshake refused",
                &[("peer", &peer), ("error", &e)],
            );
            let _ = (&stream).write_all(&handshake::encode_reject(&e));
            socket::linger_close(&stream, config.ws.close_timeout);
            return;
        }
    };
    let decided = guarded(shared, Some(id), "on_upgrade", || {
        shared
            .handler
            .on_upgrade(&Upgrade::new(&request, &offer, peer))
    })
    .unwrap_or_else(|| {
        Err(Reject {
            status: 500,
            body: "internal error".into(),
            retry_after: None,
        })
    });
    let (protocol, note) = match decided {
        // A subprotocol the client did not offer would make it fail the connection (4.1).
        Ok(accept) => (
            accept.protocol.filter(|p| offer.protocols.contains(p)),
            accept.note,
        ),
        Err(reject) => {
            shared.metrics.handshake_failed("refused_by_handler");
            shared.log.log(
                Level::Debug,
                Some(id),
                "upgrade refused",
                &[("peer", &peer), ("status", &reject.status)],
            );
            let retry = reject.retry_after.map(|s| s.to_string());
            let extra: Vec<(&str, &str)> =
                retry.iter().map(|s| ("Retry-After", s.as_str())).collect();
            let _ = (&stream).write_all(&handshake::encode_error_with(
                reject.status,
                &reject.body,
                &extra,
            ));
            socket::linger_close(&stream, config.ws.close_timeout);
            return;
        }
    };
    let accept = handshake::encode_accept(&offer, protocol.as_deref(), &[]);
    let handshake = Handshake {
        request,
        time: SystemTime::now(),
        protocol,
        note,
    };
    let conn = Arc::new(Conn::new(id, peer, handshake, stream, shared.clone()));
    // The 101 is the first thing in the send queue, and the connection is in the
    // registry before it leaves: a client that hears the 101 and at once gets others
    // to broadcast misses nothing, and nothing can overtake the 101 on the wire. The
    // reader sends it before its first read.
    conn.queue_raw(&accept);
    conn::set_reader_of(id);
    shared
        .registry
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, conn.clone());
    inc(&shared.metrics.connections);
    inc(&shared.metrics.connections_total);
    shared.log.log(
        Level::Debug,
        Some(id),
        "open",
        &[
            ("peer", &peer),
            ("target", &conn.handshake().request.target),
        ],
    );
    if server.is_shutting_down() {
        // The shutdown's sweep may have missed it: close it like the others.
        conn.close(close::GOING_AWAY, "server shutting down");
    }
    let end = match guarded(shared, Some(id), "on_open", || {
        shared.handler.on_open(server, &conn)
    }) {
        Some(()) => read_loop(server, &conn, leftover),
        None => End::Failed(Error::HandlerFailed),
    };
    end_connection(server, &conn, end);
    conn::set_reader_of(ConnId(0));
}
