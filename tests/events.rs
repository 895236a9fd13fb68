//! The event-emitter API, in process: a server built with `Server::builder()` on
//! 127.0.0.1:0, driven by the raw test client.

mod common;

use common::*;
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;
use switchboard::server::{events::Ctx, Builder, ConnId, Server};

/// A server running on its own thread; shut down and joined on drop.
struct Running {
    server: Server,
    addr: SocketAddr,
    thread: Option<thread::JoinHandle<()>>,
}

impl Running {
    fn start(builder: Builder) -> Running {
        let server = builder.build().expect("build");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let runner = server.clone();
        let thread = Some(thread::spawn(move || runner.run(listener).unwrap()));
        Running {
            server,
            addr,
            thread,
        }
    }

    fn client(&self) -> Client {
        let mut c = Client::raw(self.addr);
        c.handshake();
        c
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.shutdown();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn event(c: &mut Client) -> (String, Value) {
    let v: Value = serde_json::from_str(&c.recv_text()).expect("JSON");
    (
        v["event"].as_str().expect("event name").to_owned(),
        v["data"].clone(),
    )
}

fn echo_builder() -> Builder {
    Server::builder().on("echo", |ctx: &Ctx, data: &Value| {
        let _ = ctx.reply("echo", data.clone());
    })
}

#[test]
fn bad_input_gets_an_error_event_and_the_connection_stays() {
    let run = Running::start(echo_builder());
    let mut c = run.client();
    let cases: [(&[u8], u8, &str); 6] = [
        (b"{not json", TEXT, "bad_json"),
        (b"[1,2,3]", TEXT, "bad_json"),
        (br#"{"data":1}"#, TEXT, "bad_json"),
        (br#"{"event":"nobody-listens"}"#, TEXT, "unknown_event"),
        (
            br#"{"event":"connection","data":{}}"#,
            TEXT,
            "reserved_event",
        ),
        (b"\x00\x01", BINARY, "binary_unsupported"),
    ];
    for (payload, opcode, code) in cases {
        c.send_frame(true, 0, opcode, payload, Whole);
        let (name, data) = event(&mut c);
        assert_eq!(name, "error");
        assert_eq!(data["code"], code, "{data}");
        assert!(data["message"].as_str().is_some_and(|m| !m.is_empty()));
        // Still open and serving.
        c.send_text(r#"{"event":"echo","data":[1]}"#);
        assert_eq!(event(&mut c), ("echo".into(), json!([1])));
    }
    let metrics = run.server.metrics().render();
    assert!(
        metrics.contains("switchboard_error_events_total{kind=\"bad_json\"} 3"),
        "{metrics}"
    );
    c.close_normally();
}

#[test]
fn seed_forms_are_normalised() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let run = Running::start(
        Server::builder().on("chat.send", move |ctx: &Ctx, data: &Value| {
            log.lock().unwrap().push(data.clone());
            let _ = ctx.reply("ok", Value::Null);
        }),
    );
    let mut c = run.client();
    c.send_text(r#"{"module":"chat","method":"send","room":"a","message":"hi"}"#);
    assert_eq!(event(&mut c).0, "ok");
    c.send_text(r#"{"type":"chat.send","message":"yo"}"#);
    assert_eq!(event(&mut c).0, "ok");
    c.send_text(r#"{"event":"chat.send","data":"plain"}"#);
    assert_eq!(event(&mut c).0, "ok");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            json!({"room":"a","message":"hi"}),
            json!({"message":"yo"}),
            json!("plain")
        ]
    );
}

#[test]
fn handlers_of_one_connection_run_in_order() {
    let run = Running::start(Server::builder().on("n", |ctx: &Ctx, data: &Value| {
        // Replies go out in the order the messages came in, however many at once.
        let _ = ctx.reply("n", data.clone());
    }));
    let mut c = run.client();
    let mut burst = Vec::new();
    for i in 0..500 {
        burst.extend(frame_bytes(
            true,
            0,
            TEXT,
            format!(r#"{{"event":"n","data":{i}}}"#).as_bytes(),
        ));
    }
    c.send(&burst, Chunks(777));
    for i in 0..500 {
        assert_eq!(event(&mut c), ("n".into(), json!(i)));
    }
}

#[test]
fn built_in_events_and_replies_to_one_some_and_all() {
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (l1, l2) = (log.clone(), log.clone());
    let run = Running::start(
        Server::builder()
            .on("connection", move |ctx: &Ctx, data: &Value| {
                assert_eq!(data["id"], ctx.id().get());
                l1.lock().unwrap().push(format!("connection {}", ctx.id()));
                let _ = ctx.reply("hello", json!({ "id": ctx.id() }));
            })
            .on("disconnect", move |ctx: &Ctx, data: &Value| {
                l2.lock()
                    .unwrap()
                    .push(format!("disconnect {} {}", ctx.id(), data["code"]));
            })
            .on("all", |ctx: &Ctx, data: &Value| {
                ctx.reply_all("all", data.clone());
            })
            .on("some", |ctx: &Ctx, data: &Value| {
                let ids: Vec<ConnId> = data
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_u64)
                    .map(ConnId)
                    .collect();
                ctx.server().reply_many(&ids, "some", &json!(ids));
            }),
    );
    let mut clients: Vec<Client> = (0..3).map(|_| run.client()).collect();
    let ids: Vec<u64> = clients
        .iter_mut()
        .map(|c| {
            let (name, data) = event(c);
            assert_eq!(name, "hello");
            data["id"].as_u64().unwrap()
        })
        .collect();
    clients[0].send_text(r#"{"event":"all","data":"to everyone"}"#);
    for c in &mut clients {
        assert_eq!(event(c), ("all".into(), json!("to everyone")));
    }
    // To connections 1 and 2 only: connection 0 gets nothing (checked by what it
    // reads next).
    clients[0].send_text(&json!({"event": "some", "data": [ids[1], ids[2]]}).to_string());
    for c in &mut clients[1..] {
        assert_eq!(event(c).0, "some");
    }
    clients[0].send_text(r#"{"event":"all","data":"next"}"#);
    for c in &mut clients {
        assert_eq!(event(c), ("all".into(), json!("next")));
    }
    for mut c in clients {
        c.close_normally();
    }
    drop(run);
    let log = log.lock().unwrap();
    for id in ids {
        assert!(log.contains(&format!("connection {id}")), "{log:?}");
        assert!(log.contains(&format!("disconnect {id} 1000")), "{log:?}");
    }
}

#[test]
fn a_panicking_handler_is_reported_and_the_connection_stays() {
    let run = Running::start(echo_builder().on("boom", |_: &Ctx, _: &Value| panic!("handler bug")));
    let mut c = run.client();
    c.send_text(r#"{"event":"boom"}"#);
    let (name, data) = event(&mut c);
    assert_eq!(name, "error");
    assert_eq!(data["code"], "internal_error");
    c.send_text(r#"{"event":"echo","data":"after"}"#);
    assert_eq!(event(&mut c), ("echo".into(), json!("after")));
}

#[test]
fn log_listeners_see_records_and_error_listeners_see_bad_input() {
    let records = Arc::new(Mutex::new(Vec::<Value>::new()));
    let errors = Arc::new(Mutex::new(Vec::<Value>::new()));
    let (r, e) = (records.clone(), errors.clone());
    let run = Running::start(
        echo_builder()
            .on("log", move |_: &Ctx, data: &Value| {
                r.lock().unwrap().push(data.clone())
            })
            .on("error", move |ctx: &Ctx, data: &Value| {
                assert!(ctx.conn().is_some());
                e.lock().unwrap().push(data.clone());
            }),
    );
    let mut c = run.client();
    c.send_text("nope");
    assert_eq!(event(&mut c).0, "error");
    c.close_normally();
    drop(run);
    let errors = errors.lock().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["code"], "bad_json");
    let records = records.lock().unwrap();
    assert!(
        records
            .iter()
            .any(|r| r["msg"] == "bad input" && r["level"] == "warn"),
        "{records:?}"
    );
    assert!(
        records.iter().any(|r| r["msg"] == "open"),
        "debug records reach listeners too"
    );
}

/// A handler of the runtime's own trait that panics: the connection is closed with
/// 1011 and counted out, and the server carries on.
#[test]
fn a_panicking_runtime_handler_closes_its_connection_with_1011() {
    use switchboard::server::{Config, Conn, Handler, Message};
    struct Fragile;
    impl Handler for Fragile {
        fn on_message(&self, _: &Server, conn: &Arc<Conn>, message: Message) {
            if message == Message::Text("boom".into()) {
                panic!("handler bug");
            }
            let _ = conn.send_message(message);
        }
    }
    let server = Server::new(Config::default(), Fragile).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let runner = server.clone();
    let thread = thread::spawn(move || runner.run(listener).unwrap());
    let mut c = Client::raw(addr);
    c.handshake();
    c.send_text("fine");
    c.expect_frame(TEXT, b"fine");
    c.send_text("boom");
    c.expect_close(Some(1011));
    drop(c);
    assert!(wait_until(TIMEOUT, || server.connection_count() == 0));
    let mut d = Client::raw(addr);
    d.handshake();
    d.send_text("still serving");
    d.expect_frame(TEXT, b"still serving");
    d.close_normally();
    server.shutdown();
    thread.join().unwrap();
    assert_eq!(server.metrics().closes_with(1011), 1);
}

#[test]
fn a_quiet_connection_gives_back_its_read_buffer_and_still_talks() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::{Duration, Instant};
    let config = switchboard::server::Config {
        quiet_after: Duration::from_millis(200),
        ..Default::default()
    };
    let run = Running::start(echo_builder().config(config));
    let mut c = run.client();
    let big = "x".repeat(48 * 1024);
    let message = json!({ "event": "echo", "data": big }).to_string();
    // Reads that fill the stack buffer move the reader to a heap buffer, which the
    // global count of buffered bytes includes while it is held.
    c.send_text(&message);
    assert_eq!(event(&mut c).1, json!(big));
    let held = || run.server.metrics().buffered_bytes.load(SeqCst);
    assert!(
        held() > 0,
        "a heap read buffer is held after a large message"
    );
    let start = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || held() == 0),
        "still {} bytes held after {:?}",
        held(),
        start.elapsed()
    );
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "given back too early"
    );
    // Its stack pages went too; the connection works as before.
    c.send_text(&message);
    assert_eq!(event(&mut c).1, json!(big));
    c.send_text(r#"{"event":"echo","data":"small"}"#);
    assert_eq!(event(&mut c).1, json!("small"));
}

/// Two programs built on `Server::builder()` share one Redis: `reply_all` on one
/// reaches the other's connections, and `emit_all` runs the handlers of both.
#[test]
fn reply_all_and_emit_all_reach_every_node_on_one_redis() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use switchboard::store::redis::{Config, RedisStore};
    let redis = common::redis::RedisServer::start();
    let ticks: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let node = |i: usize| {
        let store = Arc::new(RedisStore::new(Config::new(&redis.url())).unwrap());
        let ticks = ticks.clone();
        Running::start(
            Server::builder()
                .nodes(store, "app")
                .on("say", |ctx: &Ctx, data: &Value| {
                    ctx.reply_all("said", data.clone());
                })
                .on("tick", move |ctx: &Ctx, data: &Value| {
                    assert!(ctx.conn().is_none());
                    ticks[i].fetch_add(data.as_u64().unwrap() as usize, Ordering::SeqCst);
                }),
        )
    };
    let one = node(0);
    let two = node(1);
    let mut here = one.client();
    let mut there = two.client();
    here.send_text(r#"{"event":"say","data":"hello"}"#);
    for c in [&mut here, &mut there] {
        assert_eq!(event(c), ("said".to_owned(), json!("hello")));
    }
    two.server.emit_all("tick", &json!(5)).unwrap();
    assert!(wait_until(TIMEOUT, || ticks
        .iter()
        .all(|t| t.load(Ordering::SeqCst) == 5)));
    // Once each, not once per node that heard it.
    there.send_text(r#"{"event":"say","data":"again"}"#);
    assert_eq!(event(&mut here), ("said".to_owned(), json!("again")));
    assert_eq!(event(&mut there), ("said".to_owned(), json!("again")));
}
