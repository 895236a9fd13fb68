//! The Rust clients and the `switchboard connect` command, against real server
//! processes on 127.0.0.1:0.

mod common;

use common::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use switchboard::client::{Client, EventClient, Incoming, Options};
use switchboard::protocol::message::Event;

#[test]
fn blocking_client_sends_reads_and_closes() {
    let server = Server::start(&[]);
    let mut client = Client::connect(&format!("ws://{}/some/path?x=1", server.addr)).unwrap();
    client.send_text("hello").unwrap();
    assert_eq!(client.read().unwrap(), Event::Text("hello".into()));
    // The sender works from another thread; its frames are whole.
    let sender = client.sender();
    std::thread::spawn(move || {
        for i in 0..100 {
            sender.send_text(&format!("from a thread {i}")).unwrap();
        }
    })
    .join()
    .unwrap();
    for i in 0..100 {
        assert_eq!(
            client.read().unwrap(),
            Event::Text(format!("from a thread {i}"))
        );
    }
    client.close(1000, "done").unwrap();
    assert!(
        wait_until(TIMEOUT, || server
            .metric("switchboard_closes_total{code=\"1000\"}")
            == 1),
        "the server did not count a clean close"
    );
}

#[test]
fn connect_command_sends_lines_and_prints_messages() {
    let server = Server::start(&[]);
    let output = connect_command(
        server.addr,
        &[
            r#"say {"text":"hi"}"#,
            r#"{"event":"raw"}"#,
            "plain words here",
        ],
    );
    let lines: Vec<serde_json::Value> = BufReader::new(&output.stdout[..])
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![
            json!({"event": "say", "data": {"text": "hi"}}),
            json!({"event": "raw"}),
            json!({"event": "plain", "data": "words here"}),
        ]
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("closed: 1000"), "{stderr}");
}

#[test]
fn connect_command_fails_cleanly_without_a_server() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["connect", &format!("ws://{addr}/")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot connect"));
}

fn fast_options() -> Options {
    Options {
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        ..Options::default()
    }
}

/// Next event from the client, skipping nothing.
fn next(c: &mut EventClient) -> Incoming {
    c.next().expect("the client is still running")
}

#[test]
fn event_client_comes_back_after_a_restart() {
    let mut first = Server::start_example("chat", &[]);
    let port = first.addr.port();
    let url = format!("ws://127.0.0.1:{port}/");
    let mut client = EventClient::connect(&url, fast_options()).unwrap();
    assert_eq!(next(&mut client), Incoming::Ready);
    assert!(matches!(next(&mut client), Incoming::Event(name, _) if name == "welcome"));
    client.emit("join", &json!({"name": "ann"})).unwrap();
    assert_eq!(
        next(&mut client),
        Incoming::Event("userlist".into(), json!(["ann"]))
    );

    first.signal("INT");
    let Incoming::End(data) = next(&mut client) else {
        panic!("expected end")
    };
    assert_eq!(data["reconnect"], true);
    // The server's window (1-5 s by default) sets the first attempt's delay.
    let Incoming::Reconnecting { attempt, delay } = next(&mut client) else {
        panic!("expected reconnecting")
    };
    assert_eq!(attempt, 1);
    assert!(
        delay >= Duration::from_secs(1) && delay <= Duration::from_secs(5),
        "{delay:?}"
    );
    assert!(first
        .wait_exit(Duration::from_secs(10))
        .expect("exit")
        .success());
    // The new process on the same port is up before the attempt is made.
    let _second = Server::start_example("chat", &["--listen", &format!("127.0.0.1:{port}")]);
    assert_eq!(next(&mut client), Incoming::Ready);
    assert!(matches!(next(&mut client), Incoming::Event(name, _) if name == "welcome"));
    client.emit("join", &json!({"name": "ann"})).unwrap();
    assert_eq!(
        next(&mut client),
        Incoming::Event("userlist".into(), json!(["ann"]))
    );
    client.close();
    assert_eq!(client.next(), None);
}

#[test]
fn event_client_gives_up_after_max_attempts() {
    let mut server = Server::start(&[]);
    let url = format!("ws://{}/", server.addr);
    let mut client = EventClient::connect(&url, fast_options()).unwrap();
    assert_eq!(next(&mut client), Incoming::Ready);
    server.signal("KILL");
    assert!(server.wait_exit(TIMEOUT).is_some());
    for expected in 1..=3 {
        match next(&mut client) {
            Incoming::Reconnecting { attempt, delay } => {
                assert_eq!(attempt, expected);
                assert!(delay <= Duration::from_millis(100), "{delay:?}");
            }
            other => panic!("expected attempt {expected}, got {other:?}"),
        }
    }
    assert_eq!(next(&mut client), Incoming::ReconnectionFail);
    assert_eq!(client.next(), None);
    assert!(client.emit("x", &json!(1)).is_err());
}

#[test]
fn echo_selects_the_first_offered_subprotocol_it_speaks() {
    let server = Server::start(&["--protocol", "chat", "--protocol", "json"]);
    let url = format!("ws://{}/", server.addr);
    let c = Client::connect_with(&url, &["x", "json", "chat"], Duration::from_secs(5)).unwrap();
    assert_eq!(c.protocol(), Some("json"));
    c.close(1000, "").unwrap();
    let c = Client::connect_with(&url, &["x"], Duration::from_secs(5)).unwrap();
    assert_eq!(c.protocol(), None);
    c.close(1000, "").unwrap();
}

#[test]
fn a_read_timeout_leaves_the_client_usable() {
    let server = Server::start(&[]);
    let mut client = Client::connect(&format!("ws://{}/", server.addr)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let err = client.read().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // Both the client and its sender still send, and the echo is read.
    client.sender().send_text("after a timeout").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        client.read().unwrap(),
        Event::Text("after a timeout".into())
    );
}
