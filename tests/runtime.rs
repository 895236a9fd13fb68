//! The server runtime, driven through `switchboard echo` and the chat example: send
//! queues, overflow, order, heartbeats, limits, HTTP routes, shutdown on signals, and
//! threads that end when their connections do.

mod common;

use common::*;
use std::thread;
use std::time::{Duration, Instant};

fn close_code(f: &Frame) -> u16 {
    assert_eq!(f.opcode, CLOSE, "expected a close frame, got {f:?}");
    u16::from_be_bytes([f.payload[0], f.payload[1]])
}

#[test]
fn stalled_reader_is_closed_for_overflow_while_others_keep_receiving() {
    let server = Server::start(&["--mode", "broadcast", "--max-queue-bytes", "65536"]);
    let mut publisher = server.client();
    let mut reader = server.client();
    // Never reads: once the kernel buffers between us are full, its queue grows.
    let stalled = server.client();
    let payload = binary(64 * 1024);
    let count = 400; // 25 MiB: far more than loopback socket buffers hold
    for i in 0..count {
        let mut p = payload.clone();
        p[..4].copy_from_slice(&(i as u32).to_be_bytes());
        publisher.send_frame(true, 0, BINARY, &p, Whole);
        // Lockstep: both healthy clients get every message, in order, at once.
        for c in [&mut publisher, &mut reader] {
            let f = c.recv().expect("a broadcast frame");
            assert_eq!(f.opcode, BINARY);
            assert_eq!(f.payload[..4], (i as u32).to_be_bytes(), "order");
            assert_eq!(f.payload.len(), payload.len());
        }
    }
    assert_eq!(server.metric("switchboard_queue_overflows_total"), 1);
    assert!(
        server
            .stderr
            .wait_for(TIMEOUT, |l| l.contains("send queue overflow")),
        "no log line: {:?}",
        server.stderr.snapshot()
    );
    // The stalled client's connection is over: it reads what was queued before the
    // overflow, then the close (1008) or, if that never fit, the end of TCP.
    drop(stalled);
    publisher.close_normally();
    reader.close_normally();
}

#[test]
fn order_per_connection_is_kept_under_concurrent_senders() {
    let server = Server::start(&["--mode", "broadcast"]);
    let senders = 4;
    let per_sender = 200u32;
    let mut clients: Vec<Client> = (0..senders).map(|_| server.client()).collect();
    let received: Vec<Vec<(u8, u32)>> = thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter_mut()
            .enumerate()
            .map(|(id, c)| {
                let mut writer = c.stream.try_clone().unwrap();
                s.spawn(move || {
                    for n in 0..per_sender {
                        let mut p = vec![id as u8];
                        p.extend_from_slice(&n.to_be_bytes());
                        let bytes = frame_bytes(true, 0, BINARY, &p);
                        std::io::Write::write_all(&mut writer, &bytes).unwrap();
                    }
                })
            })
            .collect();
        let readers: Vec<_> = clients
            .iter_mut()
            .map(|c| {
                s.spawn(move || {
                    (0..senders as u32 * per_sender)
                        .map(|_| {
                            let f = c.recv().expect("frame");
                            (
                                f.payload[0],
                                u32::from_be_bytes(f.payload[1..5].try_into().unwrap()),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        readers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (who, got) in received.iter().enumerate() {
        for sender in 0..senders as u8 {
            let seq: Vec<u32> = got
                .iter()
                .filter(|(s, _)| *s == sender)
                .map(|(_, n)| *n)
                .collect();
            assert_eq!(
                seq,
                (0..per_sender).collect::<Vec<_>>(),
                "client {who} saw sender {sender}'s messages out of order or missing"
            );
        }
    }
    for mut c in clients {
        c.close_normally();
    }
}

#[test]
fn silent_client_is_pinged_then_closed_with_4000() {
    let server = Server::start(&["--ping-interval", "0.2", "--heartbeat-timeout", "0.3"]);
    let mut silent = server.client();
    let start = Instant::now();
    let ping = silent.recv().expect("a ping");
    assert_eq!(ping.opcode, PING);
    let close = silent.recv().expect("a close");
    assert_eq!(close_code(&close), 4000);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    // A client that answers pings stays: after several intervals it still echoes.
    let mut lively = server.client();
    let until = Instant::now() + Duration::from_millis(1200);
    let mut pongs = 0;
    while Instant::now() < until {
        lively
            .stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut b = [0u8; 2];
        match lively.stream.peek(&mut b) {
            Ok(_) => {
                let f = lively.recv().expect("frame");
                assert_eq!(f.opcode, PING, "only pings while idle");
                lively.send_frame(true, 0, PONG, &f.payload, Whole);
                pongs += 1;
            }
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{e}"
            ),
        }
    }
    lively.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert!(pongs >= 3, "only {pongs} pings in 1.2 s");
    lively.send_frame(true, 0, TEXT, b"still here", Whole);
    // A ping may still come before the echo: the interval is short.
    loop {
        let f = lively.recv().expect("the echo");
        if f.opcode == PING {
            lively.send_frame(true, 0, PONG, &f.payload, Whole);
            continue;
        }
        assert_eq!((f.opcode, f.payload.as_slice()), (TEXT, &b"still here"[..]));
        break;
    }
    lively.close_normally();
    assert_eq!(server.metric("switchboard_closes_total{code=\"4000\"}"), 1);
}

/// Sends an upgrade request; returns the client if the answer is 101, else the head.
fn try_client(server: &Server) -> Result<Client, String> {
    let mut c = Client::raw(server.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", Whole);
    let head = c.read_http_head();
    if head.starts_with("HTTP/1.1 101 ") {
        Ok(c)
    } else {
        Err(head)
    }
}

#[test]
fn over_max_connections_gets_503_and_a_freed_slot_is_reused() {
    let server = Server::start(&["--max-connections", "2"]);
    let mut a = server.client();
    let mut b = server.client();
    let head = try_client(&server)
        .err()
        .expect("a third connection is refused");
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    assert!(head.contains("\r\nRetry-After: "), "{head}");
    a.close_normally();
    // The slot frees once a's thread has finished its close.
    let mut d = None;
    assert!(wait_until(TIMEOUT, || {
        d = try_client(&server).ok();
        d.is_some()
    }));
    let mut d = d.unwrap();
    d.send_frame(true, 0, TEXT, b"in", Whole);
    d.expect_frame(TEXT, b"in");
    d.close_normally();
    b.close_normally();
    assert!(
        server
            .stderr
            .wait_for(TIMEOUT, |l| l.contains("connection refused")
                && l.contains("reason=max_connections")),
        "no log line for the refusal: {:?}",
        server.stderr.snapshot()
    );
}

#[test]
fn over_max_connections_per_ip_gets_429() {
    let server = Server::start(&["--max-connections-per-ip", "1"]);
    let mut a = server.client();
    let (status, text) = server.http("GET", "/health");
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("\r\nRetry-After: "), "{text}");
    a.close_normally();
    // Once a is gone, the address may connect again.
    let mut metrics = String::new();
    assert!(wait_until(TIMEOUT, || {
        let (status, text) = server.http("GET", "/metrics");
        metrics = text;
        status == 200
    }));
    assert!(
        metrics.contains(
            "\nswitchboard_rejected_connections_total{reason=\"max_connections_per_ip\"} "
        ),
        "{metrics}"
    );
}

#[test]
fn message_rate_over_the_limit_closes_with_1008() {
    let server = Server::start(&["--max-messages-per-second", "20"]);
    let mut c = server.client();
    for _ in 0..40 {
        c.send_frame(true, 0, TEXT, b"x", Whole);
    }
    // The first 20 are echoed (the bucket starts full), then the close.
    for _ in 0..20 {
        c.expect_frame(TEXT, b"x");
    }
    c.expect_close(Some(1008));
}

#[test]
fn http_routes_answer_plain_requests() {
    let server = Server::start(&[]);
    let _ws = server.client();
    let (status, text) = server.http("GET", "/health");
    assert_eq!(status, 200, "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    let health: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["connections"], 1);
    let (status, text) = server.http("GET", "/metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains("Content-Type: text/plain; version=0.0.4"),
        "{text}"
    );
    assert!(text.contains("\nswitchboard_connections 1\n"), "{text}");
    let (status, _) = server.http("GET", "/no-such-page");
    assert_eq!(status, 404);
    let (status, text) = server.http("POST", "/health");
    assert_eq!(status, 405);
    assert!(text.contains("\r\nAllow: GET\r\n"), "{text}");
    assert_eq!(
        server.metric("switchboard_http_requests_total{route=\"other\",status=\"404\"}"),
        1
    );
}

#[test]
fn bad_and_slow_requests_leave_no_thread_behind() {
    let server = Server::start(&["--handshake-timeout", "0.3"]);
    let baseline = server.threads();
    let mut clients = Vec::new();
    for i in 0..30 {
        let mut c = Client::raw(server.addr);
        match i % 3 {
            // Malformed: answered 400 at once.
            0 => c.send(b"GARBAGE\r\n\r\n", Whole),
            // Oversized head: 431.
            1 => c.send(
                format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000)).as_bytes(),
                Whole,
            ),
            // Half-sent: dropped when the handshake timeout passes.
            _ => c.send(b"GET / HTTP/1.1\r\nHost: x\r\n", Whole),
        }
        clients.push(c);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let answer = c.read_to_end_text();
        match i % 3 {
            0 => assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}"),
            1 => assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}"),
            _ => assert_eq!(answer, "", "a half-sent request gets no answer"),
        }
    }
    assert!(
        wait_until(TIMEOUT, || server.threads() == baseline),
        "threads: {} now, {baseline} before",
        server.threads()
    );
    assert_eq!(
        server.metric("switchboard_handshake_failures_total{reason=\"timeout\"}"),
        10
    );
}

#[test]
fn closed_connections_leave_no_thread_behind() {
    let server = Server::start(&[]);
    let baseline = server.threads();
    let mut clients: Vec<Client> = (0..20).map(|_| server.client()).collect();
    assert_eq!(server.threads(), baseline + 20);
    for (i, c) in clients.iter_mut().enumerate() {
        if i % 2 == 0 {
            c.close_normally();
        }
    }
    // The others vanish without a close frame.
    drop(clients);
    assert!(
        wait_until(TIMEOUT, || server.threads() == baseline),
        "threads: {} now, {baseline} before",
        server.threads()
    );
    assert_eq!(server.metric("switchboard_closes_total{code=\"1000\"}"), 10);
    assert_eq!(server.metric("switchboard_closes_total{code=\"1006\"}"), 10);
}

/// SIGINT on the chat example with three clients: each gets `end`, then a 1001 close,
/// and the process exits 0 within the grace period.
#[test]
fn sigint_sends_end_then_1001_and_exits_0() {
    let mut server = Server::start_example("chat", &["--shutdown-grace", "3"]);
    let mut clients: Vec<Client> = (0..3).map(|_| server.client()).collect();
    for c in &mut clients {
        let welcome: serde_json::Value = serde_json::from_str(&c.recv_text()).unwrap();
        assert_eq!(welcome["event"], "welcome");
    }
    let start = Instant::now();
    server.signal("INT");
    for c in &mut clients {
        let end: serde_json::Value = serde_json::from_str(&c.recv_text()).unwrap();
        assert_eq!(end["event"], "end", "{end}");
        assert_eq!(end["data"]["reconnect"], true);
        assert!(
            end["data"]["maxDelayMs"].as_u64().unwrap()
                >= end["data"]["minDelayMs"].as_u64().unwrap()
        );
        let close = c.recv().expect("a close frame");
        assert_eq!(close_code(&close), 1001);
        // Answer the close, as a client does.
        c.send_frame(true, 0, CLOSE, &close.payload[..2], Whole);
        c.expect_tcp_closed();
        c.stream.shutdown(std::net::Shutdown::Both).unwrap();
    }
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("the server exits");
    assert!(status.success(), "exit status {status}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
}

/// SIGTERM with a client that never answers the close: the process still exits 0,
/// once the grace period is over.
#[test]
fn sigterm_exits_0_after_the_grace_period_with_a_silent_client() {
    let mut server = Server::start(&["--shutdown-grace", "0.5"]);
    let mut c = server.client();
    server.signal("TERM");
    let close = c.recv().expect("a close frame");
    assert_eq!(close_code(&close), 1001);
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("the server exits");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let server = Server::start(&["--log-format", "json", "--log-level", "debug"]);
    let mut c = server.client();
    c.close_normally();
    assert!(
        server
            .stderr
            .wait_for(TIMEOUT, |l| l.contains("\"msg\":\"closed\"")),
        "{:?}",
        server.stderr.snapshot()
    );
    let lines = server.stderr.snapshot();
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(
            v["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
        assert!(v["level"].is_string() && v["msg"].is_string(), "{line}");
    }
    let open: serde_json::Value = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["msg"] == "open")
        .expect("an open record");
    assert_eq!(open["level"], "debug");
    assert_eq!(open["target"], "/");
    assert!(open["conn"].is_u64());
}

fn admin_get(addr: std::net::SocketAddr, path: &str, auth: Option<&str>) -> (u16, String) {
    admin_request(addr, "GET", path, "", auth)
}

#[test]
fn admin_listener_lists_connections_with_their_handshake() {
    let server = Server::start(&["--admin-listen", "127.0.0.1:0"]);
    let admin = admin_addr(&server);
    let mut c = Client::raw(server.addr);
    c.send(b"GET /room?userId=23&softId=web%20app HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Custom: a\r\nX-Custom: b\r\n\r\n", Whole);
    assert!(c.read_http_head().starts_with("HTTP/1.1 101 "));
    let (status, body) = admin_get(admin, "/connections", None);
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let conn = &list[0];
    assert!(conn["connectionId"].is_u64());
    assert_eq!(conn["address"], c.stream.local_addr().unwrap().to_string());
    assert_eq!(conn["url"], "/room?userId=23&softId=web%20app");
    assert_eq!(conn["path"], "/room");
    assert_eq!(
        conn["query"],
        serde_json::json!({"userId": "23", "softId": "web app"})
    );
    assert_eq!(conn["headers"]["host"], "127.0.0.1");
    assert_eq!(conn["headers"]["x-custom"], "a, b");
    assert!(conn["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(admin_get(admin, "/nope", None).0, 404);
    c.close_normally();
    assert!(wait_until(TIMEOUT, || admin_get(
        admin,
        "/connections",
        None
    )
    .1 == "[]"));
}

#[test]
fn admin_listener_with_a_token_refuses_requests_without_it() {
    let server = Server::start(&["--admin-listen", "127.0.0.1:0", "--admin-token", "s3cret"]);
    let admin = admin_addr(&server);
    let (status, _) = admin_get(admin, "/health", None);
    assert_eq!(status, 401);
    assert_eq!(admin_get(admin, "/health", Some("s3creT")).0, 401);
    let (status, body) = admin_get(admin, "/health", Some("s3cret"));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn admin_listener_off_loopback_needs_a_token() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "echo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("set an admin token"),
        "{output:?}"
    );
}

/// A second signal while connections are still closing ends the process at once.
#[test]
fn a_second_sigint_exits_at_once_with_1() {
    let mut server = Server::start(&["--shutdown-grace", "30"]);
    let mut c = server.client();
    server.signal("INT");
    let close = c.recv().expect("a close frame");
    assert_eq!(close_code(&close), 1001);
    // The client does not answer: the server would wait up to its close timeout.
    let start = Instant::now();
    server.signal("INT");
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the server exits");
    assert_eq!(status.code(), Some(1));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
}

/// A client that pauses reading while broadcasts keep coming gets everything once it
/// reads again: the writer keeps polling for room even while new jobs keep it busy.
#[test]
fn a_client_that_pauses_under_sustained_broadcasts_catches_up() {
    let server = Server::start(&["--mode", "broadcast", "--max-queue-bytes", "67108864"]);
    let count = 600u32;
    let size = 16 * 1024;
    let mut publisher = server.client();
    let mut steady = server.client();
    let mut pausing = server.client();
    let mut writer = publisher.stream.try_clone().unwrap();
    thread::scope(|s| {
        s.spawn(move || {
            for i in 0..count {
                let mut p = vec![7u8; size];
                p[..4].copy_from_slice(&i.to_be_bytes());
                std::io::Write::write_all(&mut writer, &frame_bytes(true, 0, BINARY, &p)).unwrap();
            }
        });
        let readers: Vec<_> = [&mut publisher, &mut steady, &mut pausing]
            .into_iter()
            .enumerate()
            .map(|(who, c)| {
                s.spawn(move || {
                    if who == 2 {
                        // Stay away while the broadcasts pile up; then read them all.
                        thread::sleep(Duration::from_millis(500));
                    }
                    for i in 0..count {
                        let f = c.recv().expect("a frame");
                        assert_eq!(f.opcode, BINARY, "client {who}");
                        assert_eq!(f.payload[..4], i.to_be_bytes(), "client {who}");
                    }
                })
            })
            .collect();
        for r in readers {
            r.join().unwrap();
        }
    });
    assert_eq!(server.metric("switchboard_queue_overflows_total"), 0);
    for mut c in [publisher, steady, pausing] {
        c.close_normally();
    }
}
