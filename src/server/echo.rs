//! `switchboard echo`: every text and binary message goes back to its sender.
//!
//! One thread per connection, plain blocking I/O. It exists so that the protocol can
//! be driven by the Autobahn|Testsuite, by real clients (tests/interop) and by the
//! benchmark harness, and so that people can watch frames go by (`--trace-frames`).

use crate::protocol::close;
use crate::protocol::message::Event;
use crate::socket::{
    self, describe_frame, Config as WsConfig, DeadlineStream, Error as WsError, State, WebSocket,
};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

/// Settings of the echo server. Every limit has a documented default.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Per-connection WebSocket settings and limits.
    pub ws: WsConfig,
    /// Time a client has to send its whole opening handshake. Default 10 s: a slow or
    /// half-sent request must not hold a thread for ever.
    pub handshake_timeout: Duration,
    /// Time a connection may stay silent before it is closed with 1001. Default 120 s.
    /// Without it a peer that vanished without a FIN holds its thread for ever;
    /// heartbeats, which arrive with the server runtime, will replace it.
    pub idle_timeout: Duration,
    /// Time one write may block on a peer that does not read. Default 30 s; then the
    /// connection is dropped (a close frame could not get through either).
    pub write_timeout: Duration,
    /// Stack of each connection thread. Default 128 KiB: messages live on the heap,
    /// and the read path has no recursion.
    pub thread_stack_bytes: usize,
    /// Print every frame in and out, annotated (see [`describe_frame`]).
    pub trace_frames: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ws: WsConfig::default(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(30),
            thread_stack_bytes: 128 * 1024,
            trace_frames: false,
        }
    }
}

/// Accepts connections on `listener` for ever, a thread for each.
pub fn serve(listener: TcpListener, config: Config) -> io::Result<()> {
    let next_id = AtomicU64::new(1);
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors or the like: say so, back off a little
                // rather than spin on a failing accept.
                eprintln!("accept failed: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let spawned = thread::Builder::new()
            .name(format!("conn-{id}"))
            .stack_size(config.thread_stack_bytes)
            .spawn(move || handle(stream, id, config));
        if let Err(e) = spawned {
            eprintln!("conn {id}: no thread for it: {e}");
        }
    }
    Ok(())
}

/// One connection, from handshake to TCP close.
fn handle(stream: TcpStream, id: u64, config: Config) {
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    // Small frames go out at once: echo latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    // The whole handshake must arrive within the timeout, however it is trickled.
    let read = socket::read_request(
        &mut DeadlineStream::new(&stream, config.handshake_timeout),
        config.ws.head_limits,
    );
    let accepted = read.and_then(|(req, leftover)| {
        let answer = stream.try_clone().map_err(WsError::Io)?;
        socket::accept_request(answer, &req, &leftover, config.ws, |_, _| None)
    });
    let mut ws = match accepted {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("conn {id} {peer}: handshake failed: {e}");
            socket::linger_close(&stream, config.ws.close_timeout);
            return;
        }
    };
    drop(stream);
    let _ = ws.get_ref().set_read_timeout(Some(config.idle_timeout));
    let _ = ws.get_ref().set_write_timeout(Some(config.write_timeout));
    if config.trace_frames {
        ws.set_tracer(Some(Box::new(move |dir, frame| {
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "[conn {id}] {}", describe_frame(dir, frame));
        })));
    }
    match echo_loop(&mut ws) {
        Ok(()) | Err(WsError::Closed) => {}
        // A read timed out: the peer was silent for idle_timeout. (A write that timed
        // out has closed the socket's state already: nothing more can be sent.)
        Err(WsError::Io(e)) if is_timeout(&e) && ws.state() == State::Open => {
            eprintln!("conn {id} {peer}: timed out ({e})");
            let _ = ws.close(close::GOING_AWAY, "idle timeout");
        }
        Err(e) => eprintln!("conn {id} {peer}: {e}"),
    }
    ws.shutdown();
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Answers are queued, not sent one by one: `read` flushes them before it blocks, so
/// the echoes of every frame one read returned leave in one write.
fn echo_loop(ws: &mut WebSocket<TcpStream>) -> Result<(), WsError> {
    loop {
        match ws.read()? {
            Event::Text(text) => ws.write_text(&text)?,
            Event::Binary(data) => ws.write_binary(&data)?,
            Event::Ping(_) | Event::Pong(_) => {}
            Event::Close(_) => return Ok(()),
        }
    }
}
