//! Attacks on `switchboard serve` and `switchboard echo` from outside, one test per
//! way the server was once found to fail: memory from one anonymous client, memory
//! held by an unfinished message, the admin listener (empty token, idle connections,
//! the token checked before the body), a Redis that hangs or restarts, logs as a
//! weapon, two Origin headers, slow handshakes taking the slots, a bare-LF request and
//! the log line of an overflow. Memory is read from the server process's
//! /proc/PID/status; Redis is a real redis-server, stopped with SIGSTOP and killed.

mod common;

use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// A line of /proc/PID/status, in bytes (`VmRSS`, `VmHWM`).
fn memory(server: &Server, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    kb * 1024
}

fn send(c: &mut Client, event: &str, data: Value) {
    c.send_text(&json!({ "event": event, "data": data }).to_string());
}

/// The next message's event name and data.
fn next(c: &mut Client) -> (String, Value) {
    let v: Value = serde_json::from_str(&c.recv_text()).expect("JSON");
    (
        v["event"].as_str().expect("an event").to_owned(),
        v["data"].clone(),
    )
}

/// Reads until the server's close frame and returns its code; fails if none comes
/// within `TIMEOUT` (pongs and other frames do not count).
fn close_code(c: &mut Client) -> u16 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "no close frame in {TIMEOUT:?}");
        let f = c.recv().expect("a close frame");
        if f.opcode == CLOSE {
            return u16::from_be_bytes([f.payload[0], f.payload[1]]);
        }
    }
}

/// A client whose WebSocket upgrade got 101.
fn connect(addr: SocketAddr, target: &str) -> Client {
    let mut c = Client::raw(addr);
    let head = c.upgrade(target, &[]);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    c
}

/// Finding 1: one anonymous client sending a huge message (the JSON of `whoami` with
/// an array of zeros) in 1 MiB fragments, and four sending 16 MiB each, cannot raise
/// the server's RSS by 64 MB: serve's limit is 64 KiB (1009), and a message within
/// it but with more JSON values than 4096 is refused before it is parsed.
#[test]
fn one_anonymous_client_cannot_take_the_memory() {
    let (server, _) = serve_on_memory(&[]);
    let before = memory(&server, "VmRSS");
    let head = br#"{"event":"whoami","data":[0"#;
    let fragment: Vec<u8> = b",0".repeat(512 * 1024);
    let attack = |total_mib: usize| {
        let mut c = connect(server.addr, "/");
        c.send_frame(false, 0, TEXT, head, Whole);
        for _ in 0..total_mib {
            c.send_frame(false, 0, CONT, &fragment, Whole);
        }
        close_code(&mut c)
    };
    assert_eq!(attack(64), 1009);
    let codes: Vec<u16> = thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| attack(16))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(codes, [1009; 4]);

    // Within the limit: 60 KiB of zeros is 30,000 values, refused unparsed, and the
    // connection stays.
    let mut c = connect(server.addr, "/");
    let mut text = String::from(r#"{"event":"whoami","data":[0"#);
    text.push_str(&",0".repeat(30_000));
    text.push_str("]}");
    c.send_text(&text);
    let (event, data) = next(&mut c);
    assert_eq!(
        (event.as_str(), &data["code"]),
        ("error", &json!("too_complex"))
    );
    send(&mut c, "whoami", Value::Null);
    assert_eq!(next(&mut c).0, "whoami");

    let peak = memory(&server, "VmHWM");
    eprintln!("RSS {} KiB before, peak {} KiB", before / 1024, peak / 1024);
    assert!(
        peak < before + 64 * MIB,
        "RSS went from {} to a peak of {} MiB",
        before / MIB,
        peak / MIB
    );
}

/// Finding 1, the global budget: ten clients each holding an unfinished 8 MiB message
/// on the echo server (whose limit is 64 MiB) cannot hold more than the budget, 32 MiB
/// here; the largest holders are closed with 1013 and the rest stay.
#[test]
fn ten_clients_cannot_hold_more_than_the_global_budget() {
    let server = Server::start(&["--max-buffered-bytes", &(32 * MIB).to_string()]);
    let before = memory(&server, "VmRSS");
    let fragment = vec![b'x'; MIB as usize];
    let codes: Vec<Option<u16>> = thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|_| {
                s.spawn(|| {
                    let mut c = Client::raw(server.addr);
                    c.handshake();
                    c.send_frame(false, 0, TEXT, b"", Whole);
                    for _ in 0..8 {
                        c.send_frame(false, 0, CONT, &fragment, Whole);
                    }
                    // Closed, or still open holding 8 MiB: a ping tells which.
                    c.send_frame(true, 0, PING, b"here?", Whole);
                    match c.recv() {
                        Some(f) if f.opcode == CLOSE => {
                            Some(u16::from_be_bytes([f.payload[0], f.payload[1]]))
                        }
                        Some(f) => {
                            assert_eq!(f.opcode, PONG);
                            None
                        }
                        None => panic!("TCP closed without a close frame"),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let closed = codes.iter().filter(|c| c.is_some()).count();
    assert!(
        codes.iter().flatten().all(|c| *c == 1013),
        "closed with {codes:?}"
    );
    // 80 MiB were sent; at most 32 MiB may be held, so at least six were closed, and
    // those held under the budget stay.
    assert!(
        (6..10).contains(&closed),
        "{closed} of 10 closed: {codes:?}"
    );
    assert!(server.metric("switchboard_buffered_bytes") <= 32 * MIB);
    let peak = memory(&server, "VmHWM");
    eprintln!(
        "RSS {} KiB before, peak {} KiB; closed {codes:?}",
        before / 1024,
        peak / 1024
    );
    assert!(
        peak < before + 32 * MIB + 16 * MIB,
        "RSS went from {} to a peak of {} MiB with a budget of 32",
        before / MIB,
        peak / MIB
    );
}

/// Finding 2: a message left unfinished, its sender pinging to look alive, is closed
/// with 1008 once `--message-timeout` has passed.
#[test]
fn an_unfinished_message_is_closed_within_its_deadline() {
    let (server, _) = serve_on_memory(&["--message-timeout", "2"]);
    let mut c = connect(server.addr, "/");
    c.send_frame(false, 0, TEXT, &[b'x'; 1000], Whole);
    let started = Instant::now();
    let mut pinger = c.stream.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let pings = thread::spawn(move || {
        while !stopped.load(Ordering::Relaxed) {
            if pinger.write_all(&frame_bytes(true, 0, PING, b"")).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(300));
        }
    });
    let code = close_code(&mut c);
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    pings.join().unwrap();
    assert_eq!(code, 1008);
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(3500),
        "closed after {took:?}"
    );
}

/// Finding 3: an empty admin token is refused at start, from the command line and
/// from the library.
#[test]
fn an_empty_admin_token_is_refused() {
    for token in ["", "  "] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--admin-token",
                token,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let exited = wait_until(Duration::from_secs(5), || {
            child.try_wait().unwrap().is_some()
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve started with the admin token {token:?}");
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("empty"),
            "{out:?}"
        );
    }
    let config = switchboard::server::Config {
        admin_listen: Some("127.0.0.1:0".into()),
        admin_token: Some(String::new()),
        ..Default::default()
    };
    let server = switchboard::server::Server::builder()
        .config(config)
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let running = server.clone();
    let t = thread::spawn(move || tx.send(running.run(listener)).unwrap());
    let Ok(result) = rx.recv_timeout(Duration::from_secs(5)) else {
        server.shutdown();
        t.join().unwrap();
        panic!("the server ran with an empty admin token");
    };
    t.join().unwrap();
    let e = result.unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
}

/// Finding 4: three idle connections to the admin listener delay nobody; a request
/// without the token is refused on its head, before a body it announced is read.
#[test]
fn the_admin_listener_answers_beside_idle_connections() {
    let (server, admin) = serve_on_memory(&["--admin-token", "s3cret"]);
    let idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(admin).unwrap()).collect();
    let started = Instant::now();
    let (status, body) = admin_request(admin, "GET", "/stats", "", Some("s3cret"));
    assert_eq!(status, 200, "{body}");
    eprintln!("/stats beside 3 idle connections: {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let mut c = Client::raw(admin);
    c.send(
        b"POST /notify HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
        Whole,
    );
    let text = c.read_to_end_text();
    assert!(text.starts_with("HTTP/1.1 401 "), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
    drop(server);
}

/// One request from `c`, answered by `answer` or an `error`: returns the answer's
/// event and data, skipping deliveries, and how long it took.
fn request(c: &mut Client, event: &str, data: Value, answer: &str) -> (String, Value, Duration) {
    let started = Instant::now();
    send(c, event, data);
    loop {
        let (name, data) = next(c);
        if name == answer || name == "error" {
            return (name, data, started.elapsed());
        }
    }
}

/// What one side of the Redis test saw: messages answered with their id, and those
/// answered with an error.
#[derive(Default)]
struct Tally {
    acked: Vec<String>,
    refused: usize,
    /// The longest a request took to be answered.
    slowest: Duration,
}

/// Sends one private message and one chat message from `c`; every request must be
/// answered within 3 s.
fn exchange(c: &mut Client, tally: &mut Tally, n: usize) {
    let text = format!("m{n}");
    for (event, data, answer) in [
        (
            "private.send",
            json!({ "to": "bob", "message": format!("p{text}") }),
            "private.send",
        ),
        (
            "chat.send",
            json!({ "room": "r", "message": format!("c{text}") }),
            "chat.send",
        ),
    ] {
        let (name, data, took) = request(c, event, data, answer);
        tally.slowest = tally.slowest.max(took);
        assert!(
            took < Duration::from_secs(3),
            "{event} answered after {took:?}"
        );
        if name == "error" {
            assert_eq!(data["code"], "store_unavailable", "{data}");
            tally.refused += 1;
        } else {
            tally
                .acked
                .push(data["message"].as_str().unwrap().to_owned());
        }
    }
}

/// Finding 5: Redis stopped with SIGSTOP for 10 s, then killed and restarted. Requests
/// that need no store answer within 1 s, store requests within 3 s (an error is
/// fine), and every message answered as taken reaches its recipient on this node.
#[test]
fn a_redis_hang_or_restart_loses_no_message_silently() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let (server, admin) = serve_on_memory(&["--redis", &url]);
    let sign_in = |session: &str, user: &str| {
        redis.cli(&["SET", &format!("session-store-{session}"), user]);
        let mut c = connect(server.addr, "/");
        let (_, data, _) = request(
            &mut c,
            "authenticate",
            json!({ "sessionId": session }),
            "authenticated",
        );
        assert_eq!(data["userId"], user);
        c
    };
    let mut ann = sign_in("a", "ann");
    let mut bob = sign_in("b", "bob");
    request(
        &mut ann,
        "chat.create",
        json!({ "room": "r" }),
        "chat.create",
    );
    request(&mut bob, "chat.join", json!({ "room": "r" }), "chat.join");
    let mut anonymous = connect(server.addr, "/");
    let mut tally = Tally::default();
    let mut n = 0;
    let mut slowest_free = Duration::ZERO;

    redis.signal("STOP");
    let stopped = Instant::now();
    while stopped.elapsed() < Duration::from_secs(10) {
        // Paced like a person typing, well under the message rate limit.
        thread::sleep(Duration::from_millis(50));
        exchange(&mut ann, &mut tally, n);
        n += 1;
        let (_, data, took) = request(&mut anonymous, "whoami", Value::Null, "whoami");
        assert!(data["connectionId"].is_u64());
        assert!(took < Duration::from_secs(1), "whoami took {took:?}");
        let started = Instant::now();
        let (status, _) = admin_request(admin, "GET", "/stats", "", None);
        assert_eq!(status, 200);
        let stats_took = started.elapsed();
        assert!(stats_took < Duration::from_secs(1), "{stats_took:?}");
        slowest_free = slowest_free.max(took).max(stats_took);
        // An upgrade whose user must be checked in Redis: answered, 503, in time.
        let started = Instant::now();
        let mut c = Client::raw(server.addr);
        let head = c.upgrade("/?userId=ann", &[("sessid", "x")]);
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
    let (status, health) = admin_request(admin, "GET", "/health", "", None);
    assert_eq!(status, 503, "{health}");
    assert!(health.contains("store_down"), "{health}");
    redis.signal("CONT");
    assert!(wait_until(Duration::from_secs(10), || {
        admin_request(admin, "GET", "/health", "", None).0 == 200
    }));
    let during_stop = (tally.acked.len(), tally.refused);
    eprintln!(
        "during the stop: the slowest store request answered in {:?}, the slowest whoami or /stats in {:?}",
        tally.slowest, slowest_free
    );

    // Killed and started again (empty: the site writes its sessions again), and used
    // at once, before the subscriptions are back.
    redis.stop();
    redis.restart_with_keys(&[("session-store-a", "ann"), ("session-store-b", "bob")]);
    let restarted = Instant::now();
    while restarted.elapsed() < Duration::from_secs(2) {
        thread::sleep(Duration::from_millis(10));
        exchange(&mut ann, &mut tally, n);
        n += 1;
    }
    assert!(wait_until(Duration::from_secs(10), || {
        admin_request(admin, "GET", "/health", "", None).0 == 200
    }));
    exchange(&mut ann, &mut tally, n);
    let last = [format!("pm{n}"), format!("cm{n}")];
    assert!(
        tally.acked.ends_with(&last),
        "the last exchange must go through"
    );

    // Everything bob got, up to the last message; deliveries to one connection keep
    // their order.
    let mut got = Vec::new();
    while !(got.contains(&last[0]) && got.contains(&last[1])) {
        let (name, data) = next(&mut bob);
        if name == "private.message" || name == "chat.message" {
            got.push(data["message"].as_str().unwrap().to_owned());
        }
    }
    let lost: Vec<&String> = tally.acked.iter().filter(|m| !got.contains(m)).collect();
    eprintln!(
        "sent {} messages: {} taken, {} refused ({} and {} during the stop); bob got {}",
        2 * (n + 1),
        tally.acked.len(),
        tally.refused,
        during_stop.0,
        during_stop.1,
        got.len()
    );
    assert!(lost.is_empty(), "taken but never delivered: {lost:?}");
    assert_eq!(tally.acked.len() + tally.refused, 2 * (n + 1));
    assert!(
        during_stop.1 > 0,
        "the stop refused nothing: was Redis stopped?"
    );
}

/// Finding 6: ten connections sending 2,000 unknown events each write less than 1 MB
/// of log; every one is still answered and counted; a 60 KB event name is cut short
/// in the answer and in the log.
#[test]
fn bad_input_cannot_flood_the_log() {
    let (server, _) = serve_on_memory(&["--max-messages-per-second", "0"]);
    let name = "n".repeat(200);
    thread::scope(|s| {
        for _ in 0..10 {
            s.spawn(|| {
                let mut c = connect(server.addr, "/");
                let text = json!({ "event": name, "data": 1 }).to_string();
                for _ in 0..2000 {
                    c.send_text(&text);
                }
                for _ in 0..2000 {
                    let (event, data) = next(&mut c);
                    assert_eq!(
                        (event.as_str(), &data["code"]),
                        ("error", &json!("unknown_event"))
                    );
                }
            });
        }
    });
    let mut c = connect(server.addr, "/");
    c.send_text(&json!({ "event": "x".repeat(60_000), "data": 1 }).to_string());
    let (event, data) = next(&mut c);
    assert_eq!(event, "error");
    assert!(
        data.to_string().len() < 1000,
        "{} bytes",
        data.to_string().len()
    );
    send(&mut c, "whoami", Value::Null);
    assert_eq!(next(&mut c).0, "whoami");

    assert_eq!(
        server.metric("switchboard_error_events_total{kind=\"unknown_event\"}"),
        20_001
    );
    assert!(server.metric("switchboard_log_lines_suppressed_total") > 19_000);
    let lines = server.stderr.snapshot();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    eprintln!("{bytes} bytes of log in {} lines", lines.len());
    assert!(
        bytes < 1_000_000,
        "{bytes} bytes of log in {} lines",
        lines.len()
    );
    assert!(
        lines.iter().all(|l| l.len() < 2000),
        "a line of {} bytes",
        { lines.iter().map(String::len).max().unwrap_or(0) }
    );
}

/// Finding 7: with an allow-list, a handshake with two Origin headers is refused.
#[test]
fn two_origin_headers_are_refused() {
    let (server, _) = serve_on_memory(&["--origin", "https://good.example"]);
    let status = |headers: &[(&str, &str)]| {
        let mut c = Client::raw(server.addr);
        let head = c.upgrade("/", headers);
        head.split(' ').nth(1).unwrap().parse::<u16>().unwrap()
    };
    assert_eq!(status(&[("Origin", "https://good.example")]), 101);
    assert_eq!(status(&[("Origin", "https://evil.example")]), 403);
    assert_eq!(
        status(&[
            ("Origin", "https://good.example"),
            ("Origin", "https://evil.example")
        ]),
        403
    );
    assert_eq!(
        status(&[
            ("Origin", "https://evil.example"),
            ("Origin", "https://good.example")
        ]),
        403
    );
}

/// Finding 8: 300 slow clients that never finish their handshake, more coming all
/// the time, take none of the 10 connection slots: 7 real clients all get 101.
#[test]
fn slow_handshakes_do_not_take_connection_slots() {
    let (server, _) = serve_on_memory(&["--max-connections", "10", "--max-handshakes", "50"]);
    let addr = server.addr;
    let slow = move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n");
        s
    };
    let mut held: Vec<TcpStream> = (0..300).map(|_| slow()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let churn = thread::spawn(move || {
        let mut more = Vec::new();
        let until = Instant::now() + Duration::from_secs(5);
        while !stopped.load(Ordering::Relaxed) && Instant::now() < until {
            more.push(slow());
            if more.len() > 200 {
                more.drain(..100);
            }
            thread::sleep(Duration::from_millis(2));
        }
    });
    let statuses: Vec<u16> = (0..7)
        .map(|_| {
            let mut c = Client::raw(addr);
            let head = c.upgrade("/", &[]);
            held.push(c.stream);
            head.split(' ').nth(1).unwrap().parse().unwrap()
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap();
    assert_eq!(statuses, [101; 7]);
    drop(held);
}

/// Finding 9: a request whose lines end with a bare LF is answered 400 at once.
#[test]
fn a_bare_lf_request_gets_400_at_once() {
    let (server, _) = serve_on_memory(&[]);
    let started = Instant::now();
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(b"GET / HTTP/1.1\nHost: x\n\n").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// Finding 9: a client closed for a send queue overflow that then never reads its
/// close is dropped after `close_timeout`, and the log line says so, not
/// `write_timeout`.
#[test]
fn an_overflow_close_is_logged_with_its_real_cause() {
    let server = Server::start(&[
        "--mode",
        "broadcast",
        // Large enough that the queue overflows only once the kernel's buffers for the
        // stalled client are full: what is queued then stays queued.
        "--max-queue-bytes",
        "8388608",
        "--log-level",
        "debug",
    ]);
    // The stalled client: it never reads.
    let stalled = stalled_client(server.addr);
    let mut sender = Client::raw(server.addr);
    sender.handshake();
    let mut reader = sender.stream.try_clone().unwrap();
    let drain = thread::spawn(move || {
        let mut sink = vec![0u8; 1 << 16];
        reader
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
    });
    let payload = vec![b'x'; 32 * 1024];
    for _ in 0..1600 {
        sender.send_frame(true, 0, BINARY, &payload, Whole);
    }
    assert!(
        server.stderr.wait_for(Duration::from_secs(15), |l| l
            .contains("close not completed in time")),
        "{:?}",
        server.stderr.snapshot()
    );
    let lines = server.stderr.snapshot();
    let line = lines
        .iter()
        .find(|l| l.contains("close not completed in time"))
        .unwrap();
    assert!(
        line.contains(" warn ") && line.contains("code=1008") && line.contains("close_timeout=5s"),
        "{line}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("write_timeout")),
        "{lines:?}"
    );
    drop(stalled);
    let _ = sender.stream.shutdown(std::net::Shutdown::Both);
    drain.join().unwrap();
}

/// A WebSocket client that completed its handshake and then reads nothing more.
fn stalled_client(addr: SocketAddr) -> Client {
    let mut c = Client::raw(addr);
    c.handshake();
    c
}
