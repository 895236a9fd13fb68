//! The Redis back end against a real `redis-server` started on a free port. Keys are
//! written with `redis-cli`, the way a site's back end writes them.

mod common;

use common::redis::RedisServer;
use serde_json::json;
use std::sync::mpsc::Receiver;
use std::time::Duration;
use switchboard::store::redis::{Config, RedisStore};
use switchboard::store::{Bus, EntryId, Error, History, KeyEvent, Sessions};

const WAIT: Duration = Duration::from_secs(10);

fn store(redis: &RedisServer) -> RedisStore {
    RedisStore::new(Config::new(&redis.url())).unwrap()
}

/// The next item, or a failure after WAIT.
fn next<T>(rx: &Receiver<T>) -> T {
    rx.recv_timeout(WAIT).expect("an item within the wait")
}

#[test]
fn sessions_read_what_the_site_wrote() {
    let redis = RedisServer::start();
    let s = store(&redis);
    redis.cli(&[
        "SET",
        "session-store-eerwauvu9314k0swy11wm7pnrgoy442y",
        "79",
    ]);
    assert_eq!(
        s.get("session-store-eerwauvu9314k0swy11wm7pnrgoy442y")
            .unwrap()
            .as_deref(),
        Some("79")
    );
    assert_eq!(s.get("session-store-nope").unwrap(), None);
    s.set("23", "sess-abc", Some(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(redis.cli(&["GET", "23"]).trim(), "sess-abc");
    let ttl: i64 = redis.cli(&["PTTL", "23"]).trim().parse().unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
    assert!(s.delete("23").unwrap());
    assert!(!s.delete("23").unwrap());
}

#[test]
fn key_changes_arrive_as_events() {
    let redis = RedisServer::start();
    let s = store(&redis);
    let flags = s.enable_keyspace_events().unwrap();
    assert!(
        flags.contains('K') && ['$', 'g', 'x', 'e'].iter().all(|f| flags.contains(*f)),
        "{flags}"
    );
    let events = s.watch().unwrap();
    // The subscription is up once a change made after it arrives.
    let mut first = None;
    for _ in 0..100 {
        redis.cli(&["SET", "probe", "1"]);
        if let Ok(e) = events.recv_timeout(Duration::from_millis(100)) {
            first = Some(e);
            break;
        }
    }
    assert_eq!(first, Some(KeyEvent::Set("probe".into())));
    while events.try_recv().is_ok() {}
    redis.cli(&["SET", "session-store-x", "5"]);
    assert_eq!(next(&events), KeyEvent::Set("session-store-x".into()));
    redis.cli(&["DEL", "session-store-x"]);
    assert_eq!(next(&events), KeyEvent::Deleted("session-store-x".into()));
    redis.cli(&["SET", "session-store-y", "6", "PX", "50"]);
    assert_eq!(next(&events), KeyEvent::Set("session-store-y".into()));
    assert_eq!(
        next(&events),
        KeyEvent::Deleted("session-store-y".into()),
        "expiry"
    );
}

#[test]
fn history_in_a_stream_resumes_after_an_id() {
    let redis = RedisServer::start();
    let h = store(&redis);
    let ids: Vec<_> = (0..5)
        .map(|i| h.append("room:lobby", &json!({ "n": i })).unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let all = h.after("room:lobby", None, 100).unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[4], (ids[4], json!({ "n": 4 })));
    let missed = h.after("room:lobby", Some(ids[1]), 100).unwrap();
    assert_eq!(
        missed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        ids[2..].to_vec()
    );
    let last = h.last("room:lobby", 2).unwrap();
    assert_eq!(
        last.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        ids[3..].to_vec()
    );
    assert_eq!(h.after("room:empty", None, 10).unwrap(), vec![]);
    // XDEL: the entry is gone from reads; a second delete finds nothing.
    assert!(h.remove("room:lobby", ids[3]).unwrap());
    assert!(!h.remove("room:lobby", ids[3]).unwrap());
    let after = h.after("room:lobby", Some(ids[2]), 100).unwrap();
    assert_eq!(
        after.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![ids[4]]
    );
    // The stream is bounded (approximately, as MAXLEN ~ trims whole nodes).
    let bounded = RedisStore::new(Config {
        max_history: 10,
        ..Config::new(&redis.url())
    })
    .unwrap();
    for i in 0..1000 {
        bounded.append("room:busy", &json!(i)).unwrap();
    }
    let len: usize = redis.cli(&["XLEN", "room:busy"]).trim().parse().unwrap();
    assert!((10..1000).contains(&len), "{len}");
    // An entry that is not ours is an Invalid answer, not a crash.
    redis.cli(&["XADD", "room:odd", "*", "other", "x"]);
    assert!(matches!(
        h.after("room:odd", None, 10),
        Err(Error::Invalid(_))
    ));
    // Streams live 30 days after their last entry.
    let ttl: u64 = redis.cli(&["TTL", "room:lobby"]).trim().parse().unwrap();
    assert!((29 * 24 * 3600..=30 * 24 * 3600).contains(&ttl), "{ttl}");
    // After the largest id there is nothing (Redis would refuse the range).
    assert_eq!(
        h.after("room:lobby", Some(EntryId::MAX), 10).unwrap(),
        vec![]
    );
}

#[test]
fn a_command_redis_refuses_is_not_an_outage() {
    let redis = RedisServer::start();
    // One connection for commands, so that a new one would show.
    let s = RedisStore::new(Config {
        connections: 1,
        ..Config::new(&redis.url())
    })
    .unwrap();
    s.append("room:lobby", &json!(1)).unwrap();
    let before = redis.cli(&["INFO", "stats"]);
    let connections = |info: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    // A key that is a stream is no session; a wrong-type command is refused, and the
    // line is kept: no new connection is made for the next command.
    assert_eq!(s.get("room:lobby").unwrap(), None);
    s.set("k", "v", None).unwrap();
    assert!(matches!(s.append("k", &json!(1)), Err(Error::Invalid(_))));
    assert_eq!(s.get("k").unwrap().as_deref(), Some("v"));
    let after = redis.cli(&["INFO", "stats"]);
    // The two INFO calls are redis-cli's own connections.
    assert_eq!(connections(&after), connections(&before) + 1);
}

#[test]
fn bus_gets_what_the_site_publishes() {
    let redis = RedisServer::start();
    let bus = store(&redis);
    let rx = bus.subscribe("notifications").unwrap();
    let mut got = None;
    for _ in 0..100 {
        redis.cli(&[
            "PUBLISH",
            "notifications",
            r#"{"users":[23,"user5"],"data":{"a":"b"}}"#,
        ]);
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
            got = Some(m);
            break;
        }
    }
    assert_eq!(
        got.as_deref(),
        Some(r#"{"users":[23,"user5"],"data":{"a":"b"}}"#)
    );
    bus.publish("notifications", "from the store").unwrap();
    loop {
        let m = next(&rx);
        if m == "from the store" {
            break;
        }
    }
}

#[test]
fn an_outage_fails_calls_and_everything_comes_back() {
    let mut redis = RedisServer::start();
    let s = store(&redis);
    // Every connection of the pool in use before the outage.
    for i in 0..8 {
        s.set(&format!("warm{i}"), "x", None).unwrap();
    }
    let rx = s.subscribe("notifications").unwrap();
    s.set("k", "v", None).unwrap();
    // The subscription is live before the outage.
    let mut live = false;
    for _ in 0..100 {
        redis.cli(&["PUBLISH", "notifications", "probe"]);
        if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
            live = true;
            break;
        }
    }
    assert!(live);
    let before = s.subscriptions();
    redis.stop();
    assert!(matches!(s.get("k"), Err(Error::Unavailable(_))));
    assert!(matches!(
        s.publish("notifications", "x"),
        Err(Error::Unavailable(_))
    ));
    redis.restart();
    // Marked down, the store lets one call every 500 ms try Redis, and fails the
    // others at once; within a second a call finds it back.
    assert!(
        common::wait_until(Duration::from_secs(2), || s.get("k").is_ok()),
        "Redis not found back"
    );
    // Commands connect again by themselves (the data is gone: nothing on disk), on
    // every connection of the pool: none is used stale.
    for _ in 0..8 {
        assert_eq!(s.get("k").unwrap(), None);
    }
    s.set("k", "again", None).unwrap();
    // The subscription comes back, and a message published after that arrives.
    let mut got = None;
    for _ in 0..200 {
        redis.cli(&["PUBLISH", "notifications", "after the outage"]);
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
            if m != "probe" {
                got = Some(m);
                break;
            }
        }
    }
    assert_eq!(got.as_deref(), Some("after the outage"));
    assert!(
        s.subscriptions() > before,
        "the subscription did not come back"
    );
}

#[test]
fn a_quiet_subscription_stays_subscribed() {
    let redis = RedisServer::start();
    let bus = store(&redis);
    let rx = bus.subscribe("quiet").unwrap();
    // Subscribed once: a message arrives.
    let mut arrived = false;
    for _ in 0..100 {
        redis.cli(&["PUBLISH", "quiet", "first"]);
        if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
            arrived = true;
            break;
        }
    }
    assert!(arrived);
    while rx.try_recv().is_ok() {}
    let before = bus.subscriptions();
    // Quiet for longer than the subscriber's 1 s liveness check, three times over:
    // the line is checked, not dropped and made again (which would lose messages
    // published in between).
    assert!(rx.recv_timeout(Duration::from_millis(3500)).is_err());
    assert_eq!(bus.subscriptions(), before);
    redis.cli(&["PUBLISH", "quiet", "second"]);
    assert_eq!(next(&rx), "second");
}
