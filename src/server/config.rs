//! The server runtime's settings: every limit with its documented default
//! (docs/OPERATIONS.md has the table).

use super::*;

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
    /// a run of small reads or [`Config::quiet_after`], so an idle connection holds no
    /// read buffer on the heap.
    pub max_read_buffer_bytes: usize,
    /// After this long with nothing read, a connection's reader gives back what its
    /// busier moments took: its heap read buffer, its decoder's spare buffers, and the
    /// pages of its thread's stack below the frame it waits in. Default 2 s: a
    /// connection that talks more often keeps them (no system call is added to a busy
    /// one), one that went quiet costs the least it can while it waits.
    pub quiet_after: Duration,
    /// Largest body of a plain HTTP `POST` on the WebSocket port that is read for the
    /// handler ([`Handler::on_http`]); a larger one gets 413. Default 64 KiB.
    pub max_http_body_bytes: usize,
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
            quiet_after: Duration::from_secs(2),
            max_http_body_bytes: 64 * 1024,
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
