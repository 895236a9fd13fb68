//! `switchboard broker` against a real PHP back end (`php -S`, tests/broker/backend.php,
//! written the way the earlier broker's sites were), with raw clients.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `php -S` serving tests/broker on a free loopback port; each event the back end sees
/// is appended to `log` as a JSON line. Stopped on drop.
struct Php {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Php {
    fn start() -> Php {
        let log = std::env::temp_dir().join(format!(
            "switchboard-broker-{}-{}.log",
            std::process::id(),
            PORTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let _ = std::fs::remove_file(&log);
        let mut php = Php {
            child: None,
            port: free_port(),
            log,
        };
        php.run();
        php
    }

    fn run(&mut self) {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/broker");
        // Its own process group: its workers are forked, and stop with it.
        let child = Command::new("php")
            .process_group(0)
            .args(["-S", &format!("127.0.0.1:{}", self.port), "-t", dir])
            .env("BROKER_TEST_LOG", &self.log)
            .env("PHP_CLI_SERVER_WORKERS", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("php (php-cli) must be installed; .ci/run installs it");
        self.child = Some(child);
        assert!(
            wait_until(TIMEOUT, || TcpStream::connect(("127.0.0.1", self.port))
                .is_ok()),
            "php -S did not start"
        );
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The group this test started: php and the workers it forked.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.kill();
            let _ = c.wait();
            assert!(
                wait_until(TIMEOUT, || TcpStream::connect(("127.0.0.1", self.port))
                    .is_err()),
                "php -S still answers"
            );
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/backend.php", self.port)
    }

    /// The events the back end saw, in order.
    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// Waits until the back end has seen an event that `pred` accepts.
    fn wait_event(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "no such event: {:?}",
                self.events()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Php {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.log);
    }
}

static PORTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A port nothing listens on now (php -S takes a port number, not 0).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn broker(php: &Php, extra: &[&str]) -> Server {
    let url = php.url();
    // BROKER_ORIGINAL=path/to/run.js runs the same checks against the earlier broker
    // (docs/BROKER.md, "Against the original"); its allow list needs the IPv6-mapped
    // form of an address, since it listens on an IPv6 socket.
    if let Ok(script) = std::env::var("BROKER_ORIGINAL") {
        let mut args = vec![script, url.clone()];
        let mut it = extra.iter();
        while let Some(a) = it.next() {
            if *a == "--allow" {
                let ip = it.next().expect("an address");
                args.push(ip.to_string());
                args.push(format!("::ffff:{ip}"));
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        return Server::start_program("node", &args);
    }
    let mut args = vec![
        "broker",
        "--listen",
        "127.0.0.1:0",
        "--backend",
        url.as_str(),
    ];
    args.extend_from_slice(extra);
    Server::start_program(env!("CARGO_BIN_EXE_switchboard"), &args)
}

/// A client that connected with `headers`, past the back end's welcome.
fn connect(server: &Server, headers: &[(&str, &str)]) -> Client {
    let mut c = Client::raw(server.addr);
    let head = c.upgrade("/", headers);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(next(&mut c)["type"], "welcome");
    c
}

fn next(c: &mut Client) -> Value {
    serde_json::from_str(&c.recv_text()).expect("JSON from the back end")
}

fn send(c: &mut Client, v: Value) {
    c.send_text(&v.to_string());
}

/// A form POST to the broker's port: the status line and the body.
fn post(addr: SocketAddr, body: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let mut body = body.to_owned();
    // The earlier broker (Node) answers chunked; this one with a length.
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body.as_str();
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        body = out;
    }
    (head.lines().next().unwrap_or("").to_owned(), body)
}

fn form(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn events_reach_the_back_end_with_their_session_and_its_commands_come_back() {
    let php = Php::start();
    let server = broker(&php, &[]);
    let mut ann = connect(
        &server,
        &[
            ("Cookie", "Name=Ann; ip=6.6.6.6"),
            ("X-Forwarded-For", "198.51.100.7, 203.0.113.5"),
        ],
    );
    send(&mut ann, json!({ "type": "whoami", "x": [1, 2] }));
    let you = next(&mut ann);
    assert_eq!(you["type"], "you");
    let conn = &you["connection"];
    assert_eq!(
        conn["room"], "lobby",
        "set by the answer to session-connect"
    );
    assert_eq!(
        conn["name"], "Ann",
        "cookie names lowercased, values as sent"
    );
    assert_eq!(
        conn["ip"], "203.0.113.5",
        "the address the trusted proxy saw; no cookie sets it"
    );
    assert_eq!(conn["wskey"], "dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(
        you["message"],
        json!({ "type": "client-whoami", "x": [1, 2] })
    );
    let first = &php.events()[0];
    assert_eq!(first["message"], json!({ "type": "session-connect" }));
    assert!(first["content_type"]
        .as_str()
        .unwrap()
        .starts_with("multipart/form-data; boundary="));

    // Not JSON, null and a numeric type still reach the back end, and nothing breaks.
    ann.send_text("hello there");
    ann.send_text("null");
    send(&mut ann, json!({ "type": 5 }));
    let bad = php.wait_event(|e| e["message"]["json_error"].is_string());
    assert_eq!(bad["message"]["type"], "client-message");
    assert!(bad["message"]["json_error"]
        .as_str()
        .unwrap()
        .ends_with("// source: hello there"));
    php.wait_event(|e| e["message"] == json!({ "type": "client-message", "data": null }));
    php.wait_event(|e| e["message"]["type"] == "client-5");
    send(&mut ann, json!({ "type": "client-whoami" }));
    assert_eq!(
        next(&mut ann)["message"]["type"],
        "client-whoami",
        "not doubled"
    );
    // A binary message is read as the text it holds.
    ann.send_frame(true, 0, BINARY, br#"{"type":"whoami","b":1}"#, Whole);
    assert_eq!(
        next(&mut ann)["message"],
        json!({ "type": "client-whoami", "b": 1 })
    );
}

#[test]
fn a_match_selects_connections_by_session_ignoring_case() {
    let php = Php::start();
    let server = broker(&php, &[]);
    let mut a = connect(&server, &[("Cookie", "n=a")]);
    let mut b = connect(&server, &[("Cookie", "n=b")]);
    let mut c = connect(&server, &[("Cookie", "n=c")]);
    send(&mut a, json!({ "type": "join", "room": "Kitchen" }));
    assert_eq!(next(&mut a)["type"], "joined");
    send(&mut b, json!({ "type": "join", "room": "KITCHEN" }));
    assert_eq!(next(&mut b)["type"], "joined");
    send(&mut a, json!({ "type": "say", "text": "hi" }));
    for x in [&mut a, &mut b] {
        let said = next(x);
        assert_eq!(
            (&said["type"], &said["text"]),
            (&json!("said"), &json!("hi"))
        );
    }
    // '*' matches every connection; c heard nothing of the kitchen before this.
    send(&mut c, json!({ "type": "shout", "text": "all" }));
    for x in [&mut a, &mut b, &mut c] {
        assert_eq!(next(x)["type"], "shouted");
    }
}

#[test]
fn bad_answers_are_skipped_and_the_rest_runs() {
    let php = Php::start();
    let server = broker(&php, &[]);
    let mut a = connect(&server, &[]);
    send(&mut a, json!({ "type": "odd" }));
    assert_eq!(next(&mut a)["type"], "after-odd");
    send(&mut a, json!({ "type": "garbage" }));
    send(&mut a, json!({ "type": "error" }));
    assert_eq!(
        next(&mut a)["type"],
        "despite-500",
        "an answer runs whatever its status; the garbage before it ran nothing"
    );
    send(&mut a, json!({ "type": "log" }));
    assert!(server
        .stderr
        .wait_for(TIMEOUT, |l| l.contains("the back end says hello")));
    assert!(server
        .stderr
        .wait_for(TIMEOUT, |l| l.contains("the back end's answer is not JSON")));
    assert_eq!(
        server.metric("switchboard_app_events_total{kind=\"backend_commands_skipped\"}"),
        2
    );
    send(&mut a, json!({ "type": "bye" }));
    a.expect_close(Some(1000));
    let gone = php.wait_event(|e| e["message"]["type"] == "session-disconnect");
    assert_eq!(gone["connection"]["room"], "lobby");
}

#[test]
fn direct_commands_come_from_allowed_addresses_only() {
    let php = Php::start();
    let allowed = broker(&php, &["--allow", "127.0.0.1"]);
    let mut a = connect(&allowed, &[("Cookie", "who=a")]);
    let commands = json!([
        { "type": "list" },
        { "type": "send", "message": { "type": "direct" }, "match": { "room": "LOBBY" } },
        { "type": "list", "match": { "who": "nobody" } },
    ]);
    let (status, body) = post(
        allowed.addr,
        &format!("data={}", form(&commands.to_string())),
    );
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let answer: Value = serde_json::from_str(&body).expect(&body);
    assert_eq!(answer[0][0]["who"], "a");
    assert_eq!(answer[0][0]["room"], "lobby");
    assert_eq!((&answer[1], &answer[2]), (&Value::Null, &json!([])));
    assert_eq!(next(&mut a)["type"], "direct");
    // A direct `send` without `match` goes to every connection.
    let (_, body) = post(
        allowed.addr,
        &format!(
            "data={}",
            form(r#"[{"type":"send","message":{"type":"all"}}]"#)
        ),
    );
    assert_eq!(body, "[null]");
    assert_eq!(next(&mut a)["type"], "all");

    // An allow list without this address: refused, and nothing sent.
    let refusing = broker(&php, &["--allow", "192.0.2.1"]);
    let mut b = connect(&refusing, &[]);
    let (status, body) = post(
        refusing.addr,
        &format!(
            "data={}",
            form(r#"[{"type":"send","message":{"type":"sneaky"}}]"#)
        ),
    );
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body, "access denied");
    send(&mut b, json!({ "type": "whoami" }));
    assert_eq!(next(&mut b)["type"], "you", "the sneaky send never came");
}

#[test]
fn clients_stay_while_the_back_end_is_down_and_events_flow_when_it_is_back() {
    let mut php = Php::start();
    let server = broker(&php, &["--backend-wait", "20"]);
    let mut a = connect(&server, &[]);
    php.stop();
    send(&mut a, json!({ "type": "whoami" }));
    assert!(server
        .stderr
        .wait_for(TIMEOUT, |l| l.contains("back end unreachable")));
    php.run();
    assert_eq!(
        next(&mut a)["type"],
        "you",
        "the event waited and went through"
    );
    send(&mut a, json!({ "type": "say", "text": "again" }));
    assert_eq!(next(&mut a)["type"], "said");
}

#[test]
fn a_slow_back_end_costs_events_not_connections() {
    let php = Php::start();
    let server = broker(
        &php,
        &[
            "--backend-connections",
            "1",
            "--backend-queue",
            "2",
            "--backend-timeout",
            "1",
        ],
    );
    let mut a = connect(&server, &[]);
    // The first waits on the back end (3 s, over the 1 s timeout: dropped); two more
    // wait in the queue; the rest find it full.
    for _ in 0..6 {
        send(&mut a, json!({ "type": "slow" }));
    }
    assert!(server
        .stderr
        .wait_for(TIMEOUT, |l| l.contains("why=backend_dropped_queue_full")));
    assert!(server
        .stderr
        .wait_for(TIMEOUT, |l| l.contains("why=timeout")));
    // Each of the six is accounted for: dropped at the full queue, or sent and
    // dropped at the timeout (the back end takes 3 s for each).
    let metric =
        |kind: &str| server.metric(&format!("switchboard_app_events_total{{kind=\"{kind}\"}}"));
    assert!(
        wait_until(Duration::from_secs(15), || metric(
            "backend_dropped_queue_full"
        ) + metric("backend_dropped")
            == 6),
        "queue full {}, timed out {}",
        metric("backend_dropped_queue_full"),
        metric("backend_dropped")
    );
    assert!(metric("backend_dropped_queue_full") >= 3);
    // The connection stays, and once the queue drains, events flow again.
    send(&mut a, json!({ "type": "whoami" }));
    assert_eq!(next(&mut a)["type"], "you");
}

/// Reads messages until one whose `type` (the back end's) or `event` (the hub's) is
/// `name`; returns it.
fn wait_for(c: &mut Client, name: &str) -> Value {
    for _ in 0..20 {
        let v = next(c);
        if v["type"] == name || v["event"] == name {
            return v;
        }
    }
    panic!("no {name}");
}

#[test]
fn under_serve_the_events_the_hub_does_not_handle_go_to_the_back_end_with_the_user() {
    let php = Php::start();
    let url = php.url();
    let (server, admin) = serve_on_memory(&["--backend", &url, "--allow", "127.0.0.1"]);
    let (status, _) = admin_request(admin, "PUT", "/sessions/session-store-s1", "23", None);
    assert_eq!(status, 200);
    let mut tabs: Vec<Client> = (0..2)
        .map(|_| {
            let mut c = Client::raw(server.addr);
            assert!(c.upgrade("/", &[]).starts_with("HTTP/1.1 101"));
            send(
                &mut c,
                json!({ "event": "authenticate", "data": { "sessionId": "s1" } }),
            );
            wait_for(&mut c, "authenticated");
            c
        })
        .collect();
    let mut anonymous = Client::raw(server.addr);
    assert!(anonymous.upgrade("/", &[]).starts_with("HTTP/1.1 101"));

    // The earlier broker's form, and the envelope, both reach the back end.
    send(&mut tabs[0], json!({ "type": "me", "x": 1 }));
    let you = wait_for(&mut tabs[0], "you");
    assert_eq!(you["message"], json!({ "type": "client-me", "x": 1 }));
    let conn = &you["connection"];
    assert_eq!(
        (&conn["userId"], &conn["sessionId"]),
        (&json!("23"), &json!("s1"))
    );
    assert_eq!(conn["room"], "lobby");
    send(&mut tabs[1], json!({ "event": "me", "data": [1] }));
    assert_eq!(
        wait_for(&mut tabs[1], "you")["message"],
        json!({ "type": "client-me", "data": [1] })
    );
    // The hub's own events stay the hub's.
    send(&mut tabs[0], json!({ "event": "whoami" }));
    assert_eq!(wait_for(&mut tabs[0], "whoami")["data"]["userId"], "23");

    // The admin listener takes commands: to every connection of user 23.
    let (status, body) = admin_request(
        admin,
        "POST",
        "/broker",
        r#"[{"type":"send","message":{"type":"to-23"},"match":{"userId":"23"}}]"#,
        None,
    );
    assert_eq!((status, body.as_str()), (200, "[null]"));
    for tab in &mut tabs {
        wait_for(tab, "to-23");
    }
    // So does the WebSocket port, from an allowed address.
    let commands = r#"[{"type":"send","message":{"type":"direct-23"},"match":{"userId":"23"}}]"#;
    let (_, body) = post(server.addr, &format!("data={}", form(commands)));
    assert_eq!(body, "[null]");
    for tab in &mut tabs {
        wait_for(tab, "direct-23");
    }
    // The anonymous connection got its welcome, and nothing for user 23.
    assert_eq!(wait_for(&mut anonymous, "welcome")["type"], "welcome");
    send(&mut anonymous, json!({ "type": "me" }));
    let you = wait_for(&mut anonymous, "you");
    assert!(you["connection"].get("userId").is_none());

    // A closed connection's disconnect still carries its user.
    tabs.pop()
        .unwrap()
        .send_frame(true, 0, CLOSE, &close_payload(1000, b""), Whole);
    let gone = php.wait_event(|e| e["message"]["type"] == "session-disconnect");
    assert_eq!(gone["connection"]["userId"], "23");
}

#[test]
fn oversized_and_redirected_answers_and_oversized_posts_are_refused() {
    let php = Php::start();
    let server = broker(
        &php,
        &["--max-answer-bytes", "10000", "--allow", "127.0.0.1"],
    );
    let mut a = connect(&server, &[]);
    send(&mut a, json!({ "type": "huge" }));
    assert!(server
        .stderr
        .wait_for(TIMEOUT, |l| l.contains("why=too_large")));
    send(&mut a, json!({ "type": "redirect" }));
    assert!(server
        .stderr
        .wait_for(TIMEOUT, |l| l.contains("error status")
            && l.contains("status=302")));
    // Still served, in order.
    send(&mut a, json!({ "type": "whoami" }));
    assert_eq!(next(&mut a)["type"], "you");
    // A direct command over the POST body limit (64 KiB): 413, not read.
    let big = format!("data={}", "x".repeat(70_000));
    let (status, _) = post(server.addr, &big);
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
}

#[test]
fn one_client_cannot_fill_the_queue_the_others_share() {
    let php = Php::start();
    let server = broker(
        &php,
        &[
            "--backend-connections",
            "1",
            "--backend-queue-per-connection",
            "1",
        ],
    );
    let mut a = connect(&server, &[]);
    let mut b = connect(&server, &[]);
    for _ in 0..4 {
        send(&mut a, json!({ "type": "slow" }));
    }
    assert!(wait_until(TIMEOUT, || server.metric(
        "switchboard_app_events_total{kind=\"backend_dropped_connection_full\"}"
    ) >= 3));
    // b's event waits behind a's one slow event only.
    send(&mut b, json!({ "type": "whoami" }));
    assert_eq!(next(&mut b)["type"], "you");
    assert_eq!(next(&mut a)["type"], "slow-done");
}

#[test]
fn a_direct_post_that_expects_100_continue_is_told_to_go_on() {
    let php = Php::start();
    let server = broker(&php, &["--allow", "127.0.0.1"]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let body = format!("data={}", form(r#"[{"type":"list"}]"#));
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut first = [0u8; 25];
    s.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("[[]]"), "{answer}");
}

#[test]
fn events_queued_when_a_connection_closes_keep_its_session() {
    let php = Php::start();
    let server = broker(&php, &["--backend-connections", "1"]);
    let mut a = connect(&server, &[("Cookie", "who=a")]);
    // Held behind a slow event, so that the rest are still queued when it closes.
    let mut b = connect(&server, &[]);
    send(&mut b, json!({ "type": "slow" }));
    send(&mut a, json!({ "type": "me", "last": true }));
    a.send_frame(true, 0, CLOSE, &close_payload(1000, b""), Whole);
    let me = php.wait_event(|e| e["message"]["last"] == true);
    assert_eq!(
        (&me["connection"]["who"], &me["connection"]["room"]),
        (&json!("a"), &json!("lobby"))
    );
    let gone = php.wait_event(|e| {
        e["message"]["type"] == "session-disconnect" && e["connection"]["who"] == "a"
    });
    assert_eq!(gone["connection"]["room"], "lobby");
}
