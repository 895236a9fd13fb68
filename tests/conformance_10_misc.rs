//! Autobahn section 10 (auto-fragmentation), the opening handshake's answers to bad
//! requests (RFC 6455 4.2.1, 4.4), and frame tracing.

mod common;
use common::*;
use std::io::Write;
use std::time::{Duration, Instant};

const GOOD: &str = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[test]
fn case_10_1_1_sixty_four_kib_in_1300_byte_fragments() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let payload = text(65536);
    for (i, piece) in payload.chunks(1300).enumerate() {
        let last = (i + 1) * 1300 >= payload.len();
        c.send_frame(last, 0, if i == 0 { TEXT } else { CONT }, piece, Whole);
    }
    c.expect_frame(TEXT, &payload);
    c.close_normally();
}

/// Sends `request` and returns the response's status line and the whole response.
fn answer(server: &Server, request: &[u8]) -> (String, String) {
    let mut c = Client::raw(server.addr);
    c.send(request, Whole);
    let all = c.read_to_end_text();
    let status = all.lines().next().unwrap_or("").to_owned();
    (status, all)
}

#[test]
fn bad_requests_get_their_status_and_no_upgrade() {
    let server = Server::start(&[]);
    let cases: Vec<(String, &str)> = vec![
        (
            GOOD.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
            "426",
        ),
        (
            GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            "400",
        ),
        (GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="), "400"),
        (GOOD.replace("Upgrade: websocket\r\n", ""), "400"),
        (
            GOOD.replace("Connection: Upgrade", "Connection: keep-alive"),
            "400",
        ),
        (GOOD.replace("Host: 127.0.0.1\r\n", ""), "400"),
        (GOOD.replacen("GET", "POST", 1), "405"),
        (GOOD.replacen("HTTP/1.1", "HTTP/1.0", 1), "505"),
        (
            "\x16\x03\x01\x02\x00\x01\x00\x01\x7f\x03\x03\r\n\r\n".to_owned(),
            "400",
        ),
    ];
    for (request, status) in cases {
        let (line, all) = answer(&server, request.as_bytes());
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request:?} -> {line}"
        );
        assert!(!all.contains("Sec-WebSocket-Accept"), "no upgrade on error");
        let (_, body) = all.split_once("\r\n\r\n").expect("a body");
        assert!(!body.trim().is_empty(), "a short reason in the body");
        if status == "426" {
            assert!(
                all.contains("\r\nSec-WebSocket-Version: 13\r\n"),
                "426 names the version: {all}"
            );
        }
    }
}

#[test]
fn oversized_heads_get_431() {
    let server = Server::start(&[]);
    let big = GOOD.replace(
        "\r\n\r\n",
        &format!("\r\nX-Big: {}\r\n\r\n", "a".repeat(9000)),
    );
    let (line, _) = answer(&server, big.as_bytes());
    assert!(line.starts_with("HTTP/1.1 431 "), "{line}");
    let mut many = GOOD.trim_end().to_owned();
    for i in 0..101 {
        many.push_str(&format!("\r\nX-H{i}: v"));
    }
    many.push_str("\r\n\r\n");
    let (line, _) = answer(&server, many.as_bytes());
    assert!(line.starts_with("HTTP/1.1 431 "), "{line}");
}

#[test]
fn handshake_written_one_byte_at_a_time() {
    let server = Server::start(&[]);
    let mut c = Client::raw(server.addr);
    c.send(GOOD.as_bytes(), Bytewise);
    let head = c.read_http_head();
    assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(head.ends_with("\r\n\r\n"));
    c.send_frame(true, 0, TEXT, b"ok", Whole);
    c.expect_frame(TEXT, b"ok");
    c.close_normally();
}

#[test]
fn frames_sent_with_the_handshake_are_kept() {
    let server = Server::start(&[]);
    let mut c = Client::raw(server.addr);
    let mut burst = GOOD.as_bytes().to_vec();
    burst.extend(frame_bytes(true, 0, TEXT, b"early"));
    c.send(&burst, Whole);
    c.read_http_head();
    c.expect_frame(TEXT, b"early");
    c.close_normally();
}

#[test]
fn half_sent_handshake_is_dropped_after_the_timeout() {
    let server = Server::start(&["--handshake-timeout", "0.3"]);
    let mut c = Client::raw(server.addr);
    c.send(&GOOD.as_bytes()[..40], Whole);
    let start = Instant::now();
    let rest = c.read_to_end_text();
    assert!(
        rest.is_empty() || rest.starts_with("HTTP/1.1 408"),
        "{rest:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "dropped in {:?}",
        start.elapsed()
    );
}

#[test]
fn trace_frames_prints_each_frame_annotated() {
    let server = Server::start(&["--trace-frames"]);
    let mut c = server.client();
    c.send_frame(true, 0, TEXT, b"Hello", Whole);
    c.expect_frame(TEXT, b"Hello");
    c.close_normally();
    drop(c);
    // The server prints each line before the frame goes out; the lines may still be
    // on their way through the pipe, so wait for each with a timeout.
    let t = Duration::from_secs(5);
    let wanted = [
        "<- FIN=1 RSV=000 op=0x1 text MASK=1 key=12345678 len=5 | 48 65 6c 6c 6f | \"Hello\"",
        "-> FIN=1 RSV=000 op=0x1 text MASK=0 len=5 | 48 65 6c 6c 6f | \"Hello\"",
        "<- FIN=1 RSV=000 op=0x8 close MASK=1 key=12345678 len=2 | 03 e8 | code=1000 \"\"",
        "-> FIN=1 RSV=000 op=0x8 close MASK=0 len=2 | 03 e8 | code=1000 \"\"",
    ];
    for w in wanted {
        assert!(
            server.stdout.wait_for(t, |l| l.ends_with(w)),
            "missing {w:?} in {:#?}",
            server.stdout.snapshot()
        );
    }
}

#[test]
fn trickled_handshake_is_dropped_at_the_deadline() {
    // One byte every 100 ms never trips a per-read timeout of 300 ms, but the whole
    // head is due within 300 ms of connecting.
    let server = Server::start(&["--handshake-timeout", "0.3"]);
    let mut c = Client::raw(server.addr);
    let start = Instant::now();
    for b in &GOOD.as_bytes()[..15] {
        if c.stream.write_all(&[*b]).is_err() {
            break;
        }
        // Pacing a deliberately slow client, not waiting for the server.
        std::thread::sleep(Duration::from_millis(100));
    }
    // 1.5 s in, 100 ms after the last byte: the server must have closed already. A
    // server with only a per-read timeout would still be waiting for this read.
    c.stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    match std::io::Read::read(&mut c.stream, &mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected answer {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "server still holding the trickled handshake after {:?}: {e}",
            start.elapsed()
        ),
    }
}

#[test]
fn connection_without_messages_closed_after_idle_timeout_with_4001() {
    let server = Server::start(&["--idle-timeout", "0.3"]);
    let mut c = server.client();
    let start = Instant::now();
    c.expect_close(Some(4001));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        start.elapsed()
    );
}

#[test]
fn peer_that_stops_reading_is_dropped_after_write_timeout() {
    let server = Server::start(&["--write-timeout", "0.3"]);
    let mut c = server.client();
    // 16 MiB echoed to a client that reads nothing: far more than the socket buffers
    // hold, so the server's write blocks.
    let payload = binary(16 << 20);
    c.send_frame(true, 0, BINARY, &payload, Chunks(1 << 20));
    // Stay away from the socket well past the write timeout: this is the stalled
    // client under test, not a wait for the server.
    std::thread::sleep(Duration::from_millis(1500));
    let echoed = c.read_to_end_text().len();
    assert!(
        echoed < payload.len(),
        "the whole echo arrived ({echoed} bytes): the write never timed out"
    );
    assert!(
        server.stderr.wait_for(Duration::from_secs(5), |l| l
            .contains("peer stopped reading, dropped")),
        "no log line for the dropped peer: {:?}",
        server.stderr.snapshot()
    );
}
