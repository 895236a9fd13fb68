//! Identity and messaging, end to end: `switchboard serve --redis` against a real
//! `redis-server` started on a free port, with keys written by `redis-cli` the way a
//! site writes them, and clients speaking raw WebSocket.

mod common;

use common::hub::*;
use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use switchboard::client::{EventClient, Incoming, Options};

#[test]
fn user_to_session_in_a_header_or_a_subprotocol() {
    let redis = RedisServer::start();
    let (server, _) = serve(&redis, &[]);
    redis.cli(&["SET", "23", "sess-23"]);

    // The session id in a `sessid` header.
    let mut c = connect(
        &server,
        "/?userId=23&softId=mobile",
        &[("sessid", "sess-23")],
    );
    let (name, data, whole) = next(&mut c);
    assert_eq!(name, "authenticated");
    assert_eq!(whole["authenticated"], true);
    assert_eq!(
        data,
        json!({ "userId": "23", "sessionId": "sess-23", "softId": "mobile" })
    );

    // From a browser, as the subprotocol, which the 101 selects back; `softid` as
    // the earlier Node example spelt it.
    let (status, head, mut b) = upgrade(
        &server,
        "/?userId=23&softid=web",
        &[("Sec-WebSocket-Protocol", "sess-23")],
    );
    assert_eq!(status, 101, "{head}");
    assert!(
        head.contains("\r\nSec-WebSocket-Protocol: sess-23\r\n"),
        "{head}"
    );
    assert_eq!(expect(&mut b, "authenticated")["softId"], "web");
    // An empty `sessid` header is no header: the subprotocol counts, and is selected.
    let (status, head, _) = upgrade(
        &server,
        "/?userId=23",
        &[("sessid", ""), ("Sec-WebSocket-Protocol", "sess-23")],
    );
    assert_eq!(status, 101, "{head}");
    assert!(
        head.contains("\r\nSec-WebSocket-Protocol: sess-23\r\n"),
        "{head}"
    );

    // Wrong session, no session, unknown user, expired key: 401 before any upgrade.
    let refused = [
        ("/?userId=23", vec![("sessid", "sess-other")]),
        (
            "/?userId=23",
            vec![("Sec-WebSocket-Protocol", "sess-other")],
        ),
        ("/?userId=23", vec![]),
        ("/?userId=24", vec![("sessid", "sess-23")]),
    ];
    for (target, headers) in &refused {
        let (status, head, _) = upgrade(&server, target, headers);
        assert_eq!(status, 401, "{target} {headers:?}: {head}");
    }
    redis.cli(&["SET", "25", "sess-25", "PX", "50"]);
    assert!(wait_until(TIMEOUT, || redis.cli(&["EXISTS", "25"]).trim() == "0"));
    assert_eq!(
        upgrade(&server, "/?userId=25", &[("sessid", "sess-25")]).0,
        401
    );
    assert!(server.metric("switchboard_app_events_total{kind=\"auth_wrong_session\"}") >= 2);
    assert!(server.metric("switchboard_app_events_total{kind=\"auth_unknown_user\"}") >= 2);

    // The key deleted while connected: both tabs leave the user at once and stay open;
    // a notification for the user reaches neither. Set again, they come back.
    redis.cli(&["DEL", "23"]);
    for tab in [&mut c, &mut b] {
        let data = expect(tab, "unauthenticated");
        assert_eq!(data["sessionId"], "sess-23");
        assert_eq!(whoami(tab)["userId"], Value::Null);
    }
    redis.cli(&["SET", "23", "sess-23"]);
    for tab in [&mut c, &mut b] {
        expect(tab, "authenticated");
    }
    publish(&redis, &json!({ "users": [23], "data": { "n": 1 } }));
    for tab in [&mut c, &mut b] {
        assert_eq!(expect(tab, "message"), json!({ "n": 1 }));
    }
    // Set to another session: the connections of the old one are out.
    redis.cli(&["SET", "23", "sess-new"]);
    for tab in [&mut c, &mut b] {
        expect(tab, "unauthenticated");
    }
}

#[test]
fn session_to_user_follows_the_key_live() {
    let redis = RedisServer::start();
    let (server, _) = serve(&redis, &[]);
    assert!(
        server
            .stderr
            .wait_for(TIMEOUT, |l| l.contains("redis keyspace notifications on")),
        "{:?}",
        server.stderr.snapshot()
    );
    let flags = redis.cli(&["CONFIG", "GET", "notify-keyspace-events"]);
    assert!(flags.contains('K'), "{flags}");

    let mut witness = signed_in(&server, &redis, "w", "witness");

    // A session whose key is not written yet: the connection waits and gets nothing.
    let mut c = connect(&server, "/?softId=app", &[]);
    send(&mut c, "authenticate", json!({ "sessionId": "later" }));
    assert_eq!(
        expect(&mut c, "unauthenticated")["reason"],
        "waiting for the session"
    );
    publish(&redis, &json!({ "users": [79], "data": "early" }));
    publish(&redis, &json!({ "users": ["witness"], "data": "after" }));
    assert_eq!(expect(&mut witness, "message"), "after");
    assert_eq!(whoami(&mut c)["sessionId"], "later");

    // The site writes the key: the connection joins user 79 at once.
    redis.cli(&["SET", "session-store-later", "79"]);
    let data = expect(&mut c, "authenticated");
    assert_eq!(
        (data["userId"].as_str(), data["softId"].as_str()),
        (Some("79"), Some("app"))
    );
    publish(&redis, &json!({ "users": [79], "data": "now" }));
    assert_eq!(expect(&mut c, "message"), "now");

    // Deleted: out at once, still open.
    redis.cli(&["DEL", "session-store-later"]);
    expect(&mut c, "unauthenticated");
    publish(&redis, &json!({ "users": [79], "data": "gone" }));
    publish(&redis, &json!({ "users": ["witness"], "data": "after2" }));
    assert_eq!(expect(&mut witness, "message"), "after2");
    assert_eq!(whoami(&mut c)["userId"], Value::Null);

    // Expired: the same.
    redis.cli(&["SET", "session-store-later", "79", "PX", "300"]);
    expect(&mut c, "authenticated");
    assert_eq!(expect(&mut c, "unauthenticated")["reason"], "session ended");

    // A wrong session id is a session nobody wrote: waiting, not an error.
    let mut d = connect(&server, "/", &[]);
    send(&mut d, "authenticate", json!({ "sessionId": "nope" }));
    expect(&mut d, "unauthenticated");
    // A malformed authenticate is an error event; the connection stays.
    send(&mut d, "authenticate", json!({ "session": 1 }));
    let e = expect(&mut d, "error");
    assert_eq!(
        (e["code"].as_str(), e["event"].as_str()),
        (Some("bad_request"), Some("authenticate"))
    );
    whoami(&mut d);
}

#[test]
fn session_key_in_the_query_gives_user_and_room() {
    let redis = RedisServer::start();
    let (server, _) = serve(&redis, &[]);
    redis.cli(&[
        "SET",
        "chat-session-1cf9a304",
        r#"{"user_name":"Michael Redman","chat_room":0}"#,
    ]);
    let mut c = connect(&server, "/chat?session_key=1cf9a304", &[]);
    // The first message confirms, with `authenticated: true` at the top.
    let (name, data, whole) = next(&mut c);
    assert_eq!(name, "authenticated");
    assert_eq!(whole["authenticated"], true);
    assert_eq!(data["userId"], "Michael Redman");
    assert_eq!(data["room"], "0");
    let list = expect(&mut c, "userlist");
    assert_eq!(list, json!({ "room": "0", "users": ["Michael Redman"] }));
    send(
        &mut c,
        "chat.send",
        json!({ "room": "0", "message": "hello" }),
    );
    let m = expect(&mut c, "chat.message");
    assert_eq!(
        (m["user"].as_str(), m["message"].as_str()),
        (Some("Michael Redman"), Some("hello"))
    );
    // The sender's answer: the message as kept, the same id.
    assert_eq!(expect(&mut c, "chat.send")["id"], m["id"]);
    assert!(m["id"].as_str().is_some_and(|id| id.contains('-')), "{m}");
    // ISO 8601 UTC with milliseconds, as 2016-08-08T17:20:32.421Z.
    let t = m["time"].as_str().unwrap();
    assert_eq!(
        (t.len(), &t[10..11], &t[19..20], &t[23..]),
        (24, "T", ".", "Z"),
        "{t}"
    );

    // The key deleted: out of the user and the room; written again: back in both.
    redis.cli(&["DEL", "chat-session-1cf9a304"]);
    expect(&mut c, "unauthenticated");
    redis.cli(&[
        "SET",
        "chat-session-1cf9a304",
        r#"{"user_name":"Michael Redman","chat_room":0}"#,
    ]);
    assert_eq!(expect(&mut c, "authenticated")["room"], "0");
    assert_eq!(
        wait_event(&mut c, "userlist"),
        json!({ "room": "0", "users": ["Michael Redman"] })
    );
    // A room name past the limit in the stored session: signed in, not in a room.
    let long = "x".repeat(65);
    redis.cli(&[
        "SET",
        "chat-session-long",
        &json!({ "user": "ann", "room": long }).to_string(),
    ]);
    let mut d = connect(&server, "/?session_key=long", &[]);
    expect(&mut d, "authenticated");
    assert_eq!(expect(&mut d, "error")["code"], "bad_request");
    assert_eq!(whoami(&mut d)["userId"], "ann");

    for target in ["/?session_key=unknown", "/?session_key="] {
        let (status, head, _) = upgrade(&server, target, &[]);
        // An empty key is no key: an anonymous connection, allowed by default.
        let want = if target.ends_with('=') { 101 } else { 401 };
        assert_eq!(status, want, "{target}: {head}");
    }
    redis.cli(&["SET", "chat-session-broken", "{not json"]);
    assert_eq!(upgrade(&server, "/?session_key=broken", &[]).0, 401);
}

#[test]
fn anonymous_refused_means_authenticate_in_time_and_origins_are_checked() {
    let redis = RedisServer::start();
    let (server, _) = serve(
        &redis,
        &[
            "--no-anonymous",
            "--auth-timeout",
            "0.5",
            "--origin",
            "https://site.example",
        ],
    );
    let mut idle = connect(&server, "/", &[]);
    // A session id nobody wrote is not a user: the deadline still runs.
    let mut pretender = connect(&server, "/", &[]);
    send(
        &mut pretender,
        "authenticate",
        json!({ "sessionId": "made-up" }),
    );
    expect(&mut pretender, "unauthenticated");
    let mut quick = signed_in(&server, &redis, "q", "7");
    assert_eq!(closed_with(&mut idle), 4002);
    assert_eq!(closed_with(&mut pretender), 4002);
    whoami(&mut quick);
    // Signed in at the upgrade, then off to a session nobody wrote: no user, so the
    // deadline runs again.
    redis.cli(&["SET", "8", "s8"]);
    let mut switcher = connect(&server, "/?userId=8", &[("sessid", "s8")]);
    expect(&mut switcher, "authenticated");
    send(
        &mut switcher,
        "authenticate",
        json!({ "sessionId": "bogus" }),
    );
    expect(&mut switcher, "unauthenticated");
    assert_eq!(closed_with(&mut switcher), 4002);
    // A session that ends starts a new deadline.
    redis.cli(&["DEL", "session-store-q"]);
    expect(&mut quick, "unauthenticated");
    assert_eq!(closed_with(&mut quick), 4002);
    assert_eq!(
        server.metric("switchboard_app_events_total{kind=\"auth_timeouts\"}"),
        4
    );

    let (status, _, _) = upgrade(&server, "/", &[("Origin", "https://evil.example")]);
    assert_eq!(status, 403);
    let (status, _, _) = upgrade(&server, "/", &[("Origin", "https://site.example")]);
    assert_eq!(status, 101);
}

#[test]
fn anonymous_refused_without_authenticate_is_401() {
    let redis = RedisServer::start();
    let (server, _) = serve(&redis, &["--no-anonymous", "--session-user-key", "off"]);
    assert_eq!(upgrade(&server, "/", &[]).0, 401);
    redis.cli(&["SET", "5", "s5"]);
    connect(&server, "/?userId=5", &[("sessid", "s5")]);
}

#[test]
fn notifications_reach_every_tab_of_every_listed_user() {
    let redis = RedisServer::start();
    let (server, admin) = serve(&redis, &[]);
    let mut tab1 = signed_in(&server, &redis, "a", "23");
    let mut tab2 = signed_in(&server, &redis, "a", "23");
    let mut other = signed_in(&server, &redis, "b", "user5");
    let mut bystander = signed_in(&server, &redis, "c", "99");

    publish(
        &redis,
        &json!({ "users": [23, "user5"], "data": { "title": "hi" } }),
    );
    for c in [&mut tab1, &mut tab2, &mut other] {
        assert_eq!(expect(c, "message"), json!({ "title": "hi" }));
    }
    // Bad JSON is counted and logged; the next good one still arrives.
    redis.cli(&["PUBLISH", "notifications", "{not json"]);
    redis.cli(&["PUBLISH", "notifications", r#"{"users":"23"}"#]);
    publish(&redis, &json!({ "users": [99], "data": 1 }));
    assert_eq!(expect(&mut bystander, "message"), 1);
    assert_eq!(
        server.metric("switchboard_app_events_total{kind=\"notifications_invalid\"}"),
        2
    );
    assert!(server
        .stderr
        .wait_for(TIMEOUT, |l| l.contains("invalid notification ignored")));

    // The same JSON over the admin listener.
    let (status, body) = admin_request(
        admin,
        "POST",
        "/notify",
        r#"{"users":["23"],"data":"by http"}"#,
        None,
    );
    assert_eq!(status, 202, "{body}");
    for c in [&mut tab1, &mut tab2] {
        assert_eq!(expect(c, "message"), "by http");
    }
    assert_eq!(admin_request(admin, "POST", "/notify", "{}", None).0, 400);
    // A user listed twice gets it once.
    publish(&redis, &json!({ "users": [99, "99"], "data": "once" }));
    publish(&redis, &json!({ "users": [99], "data": "next" }));
    assert_eq!(expect(&mut bystander, "message"), "once");
    assert_eq!(expect(&mut bystander, "message"), "next");
    // Nothing reached the bystander but its own.
    assert_eq!(whoami(&mut bystander)["userId"], "99");
}

#[test]
fn private_messages_reach_every_connection_and_are_kept() {
    let redis = RedisServer::start();
    let (server, _) = serve(&redis, &[]);
    let mut ann1 = signed_in(&server, &redis, "ann-phone", "ann");
    let mut ann2 = signed_in(&server, &redis, "ann-laptop", "ann");
    let mut bob1 = signed_in(&server, &redis, "bob-1", "bob");
    let mut bob2 = signed_in(&server, &redis, "bob-1", "bob");

    send(
        &mut ann1,
        "private.send",
        json!({ "to": "bob", "message": "hi bob" }),
    );
    let sent = expect(&mut ann1, "private.send");
    assert_eq!(
        (sent["user"].as_str(), sent["to"].as_str()),
        (Some("ann"), Some("bob"))
    );
    for c in [&mut bob1, &mut bob2, &mut ann2] {
        assert_eq!(expect(c, "private.message"), sent);
    }
    // The sending connection has its answer, not a second copy.
    assert_eq!(whoami(&mut ann1)["userId"], "ann");

    send(
        &mut bob2,
        "private.send",
        json!({ "to": "ann", "message": "hi ann" }),
    );
    let reply = expect(&mut bob2, "private.send");
    expect(&mut ann1, "private.message");
    send(&mut ann1, "private.history", json!({ "with": "bob" }));
    let h = expect(&mut ann1, "private.history");
    let texts: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hi bob", "hi ann"]);
    send(
        &mut ann1,
        "private.history",
        json!({ "with": "bob", "after": sent["id"] }),
    );
    let h = expect(&mut ann1, "private.history");
    assert_eq!(h["messages"], json!([reply]));
    send(
        &mut ann1,
        "private.history",
        json!({ "with": "bob", "limit": 1 }),
    );
    assert_eq!(
        expect(&mut ann1, "private.history")["messages"],
        json!([reply])
    );
    for limit in [json!(0), json!("2"), json!(-1)] {
        send(
            &mut ann1,
            "private.history",
            json!({ "with": "bob", "limit": limit }),
        );
        assert_eq!(expect(&mut ann1, "error")["code"], "bad_request", "{limit}");
    }

    // Not signed in, empty text, a bad id: error events, and the connection stays.
    let mut anon = connect(&server, "/", &[]);
    send(
        &mut anon,
        "private.send",
        json!({ "to": "bob", "message": "x" }),
    );
    assert_eq!(expect(&mut anon, "error")["code"], "not_authenticated");
    send(
        &mut ann1,
        "private.send",
        json!({ "to": "bob", "message": " " }),
    );
    assert_eq!(expect(&mut ann1, "error")["code"], "bad_request");
    send(
        &mut ann1,
        "private.history",
        json!({ "with": "bob", "after": "x" }),
    );
    assert_eq!(expect(&mut ann1, "error")["code"], "bad_request");
    let long = "u".repeat(129);
    send(
        &mut ann1,
        "private.send",
        json!({ "to": long, "message": "x" }),
    );
    let e = expect(&mut ann1, "error");
    assert_eq!(e["code"], "bad_request");
    assert!(e["message"].as_str().unwrap().contains("128"), "{e}");
    whoami(&mut ann1);
}

/// `chat.<action>` of `user` in room `lobby`.
#[test]
fn rooms_are_moderated() {
    let redis = RedisServer::start();
    let (server, admin) = serve(&redis, &[]);
    moderation_across(&redis, [&server; 3], admin);
}

#[test]
fn a_reconnect_with_the_last_id_gets_exactly_what_it_missed() {
    let redis = RedisServer::start();
    let (server, _) = serve(&redis, &[]);
    let mut ann = signed_in(&server, &redis, "a", "ann");
    send(&mut ann, "chat.create", json!({ "room": "r" }));
    expect(&mut ann, "chat.create");
    let mut bob = signed_in(&server, &redis, "b", "bob");
    send(&mut bob, "chat.join", json!({ "room": "r" }));
    expect(&mut bob, "chat.join");
    let say = |c: &mut Client, text: &str| {
        send(c, "chat.send", json!({ "room": "r", "message": text }));
    };
    say(&mut ann, "one");
    say(&mut ann, "two");
    assert_eq!(wait_event(&mut bob, "chat.message")["message"], "one");
    let two = wait_event(&mut bob, "chat.message");
    assert_eq!(two["message"], "two");
    let last_id = two["id"].clone();
    bob.close_normally();
    drop(bob);
    say(&mut ann, "three");
    say(&mut ann, "four");
    // Until both are in, read ann's own copies.
    wait_event(&mut ann, "chat.message");
    wait_event(&mut ann, "chat.message");

    let mut bob = signed_in(&server, &redis, "b", "bob");
    send(
        &mut bob,
        "chat.join",
        json!({ "room": "r", "lastId": last_id }),
    );
    let joined = expect(&mut bob, "chat.join");
    let texts: Vec<&str> = joined["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["three", "four"]);
    // Without an id: the last page, all four.
    send(&mut bob, "chat.history", json!({ "room": "r", "limit": 3 }));
    // The userlist of bob's joining comes through the bus, in no set order with replies.
    let page = wait_event(&mut bob, "chat.history");
    assert_eq!(page["messages"].as_array().unwrap().len(), 3);
}

#[test]
fn admins_list_kick_and_broadcast() {
    let redis = RedisServer::start();
    let (server, admin) = serve(&redis, &["--admin-user", "root"]);
    let mut root = signed_in(&server, &redis, "r", "root");
    let mut ann = signed_in(&server, &redis, "a", "ann");
    let mut anon = connect(&server, "/?softId=kiosk", &[("X-Test", "1")]);
    whoami(&mut anon);

    let (status, body) = admin_request(admin, "GET", "/connections", "", None);
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&body).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(
        (list[0]["sessionId"].as_str(), list[0]["userId"].as_str()),
        (Some("r"), Some("root"))
    );
    assert_eq!(
        (list[2]["sessionId"].as_str(), list[2]["userId"].as_str()),
        (Some("__nosession__"), Some("__nouser__"))
    );
    let hs = &list[2]["handshake"];
    assert_eq!(hs["headers"]["x-test"], "1");
    assert_eq!(hs["query"]["softId"], "kiosk");
    assert_eq!(hs["url"], "/?softId=kiosk");
    assert!(hs["address"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(hs["time"].as_str().unwrap().ends_with('Z'));
    let (_, users) = admin_request(admin, "GET", "/users", "", None);
    let users: Value = serde_json::from_str(&users).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 2);
    let (_, sessions) = admin_request(admin, "GET", "/sessions", "", None);
    assert!(sessions.contains(r#""sessionId":"a""#), "{sessions}");

    // The admin module, for admins only.
    send(&mut ann, "admin.stats", Value::Null);
    assert_eq!(expect(&mut ann, "error")["code"], "not_admin");
    send(&mut root, "admin.stats", Value::Null);
    let stats = expect(&mut root, "admin.stats");
    assert_eq!(
        (stats["connections"].as_u64(), stats["users"].as_u64()),
        (Some(3), Some(2))
    );
    send(&mut root, "admin.connections", Value::Null);
    assert_eq!(
        expect(&mut root, "admin.connections")
            .as_array()
            .unwrap()
            .len(),
        3
    );
    send(
        &mut root,
        "notice.send",
        json!({ "users": ["ann"], "text": "maintenance" }),
    );
    let notice = expect(&mut ann, "notice");
    assert_eq!(
        (notice["from"].as_str(), notice["text"].as_str()),
        (Some("root"), Some("maintenance"))
    );
    expect(&mut root, "notice.send");
    // The earlier form: module, method, userId and text at the top.
    root.send_text(r#"{"module":"notice","method":"notice","userId":"ann","text":"old form"}"#);
    assert_eq!(expect(&mut ann, "notice")["text"], "old form");
    send(&mut root, "admin.broadcast", json!({}));
    assert_eq!(wait_event(&mut root, "error")["code"], "bad_request");
    send(&mut root, "admin.broadcast", json!({ "text": "to all" }));
    assert_eq!(expect(&mut ann, "broadcast")["text"], "to all");
    send(
        &mut ann,
        "notice.send",
        json!({ "users": ["root"], "text": "x" }),
    );
    assert_eq!(expect(&mut ann, "error")["code"], "not_admin");
    send(&mut root, "admin.kick", json!({ "user": "ann" }));
    assert_eq!(closed_with(&mut ann), 4003);
    // The back end's notice over HTTP.
    let (status, _) = admin_request(
        admin,
        "POST",
        "/notice",
        r#"{"users":["root"],"text":"from the site"}"#,
        None,
    );
    assert_eq!(status, 202);
    assert_eq!(wait_event(&mut root, "notice")["text"], "from the site");
}

#[test]
fn redis_restarted_under_the_server() {
    let mut redis = RedisServer::start();
    let (server, _) = serve(&redis, &[]);
    let mut c = signed_in(&server, &redis, "s", "42");
    redis.stop();
    assert!(
        server
            .stderr
            .wait_for(TIMEOUT, |l| l.contains("redis subscription lost")),
        "{:?}",
        server.stderr.snapshot()
    );
    // The connection stays, and what needs no store still works.
    assert_eq!(whoami(&mut c)["userId"], "42");
    // What needs the store says so.
    send(&mut c, "private.send", json!({ "to": "7", "message": "x" }));
    assert_eq!(expect(&mut c, "error")["code"], "store_unavailable");
    // A sign-in that needs the store: 503, to be retried, and the cause in the log.
    let (status, head, _) = upgrade(&server, "/?userId=42", &[("sessid", "s")]);
    assert_eq!(status, 503, "{head}");
    assert!(head.contains("\r\nRetry-After: 5\r\n"), "{head}");
    assert!(server
        .stderr
        .wait_for(TIMEOUT, |l| l.contains("upgrade refused")
            && l.contains("error=")));
    redis.restart();
    for channel in ["channel=notifications", "channel=switchboard"] {
        assert!(
            server
                .stderr
                .wait_for(TIMEOUT, |l| l.contains("redis subscription back")
                    && l.contains(channel)),
            "{channel}: {:?}",
            server.stderr.snapshot()
        );
    }
    // The restarted Redis kept nothing (the test runs it without persistence): once
    // keyspace events are back the hub reads the sessions again, and this one is gone.
    assert!(
        server
            .stderr
            .wait_for(TIMEOUT, |l| l.contains("sessions read again")),
        "{:?}",
        server.stderr.snapshot()
    );
    assert_eq!(expect(&mut c, "unauthenticated")["reason"], "session ended");
    redis.cli(&["SET", "session-store-s", "42"]);
    expect(&mut c, "authenticated");
    publish(
        &redis,
        &json!({ "users": [42], "data": "after the outage" }),
    );
    assert_eq!(expect(&mut c, "message"), "after the outage");
    // The restarted Redis had forgotten keyspace notifications; they are on again.
    assert!(wait_until(TIMEOUT, || redis
        .cli(&["CONFIG", "GET", "notify-keyspace-events"])
        .contains('K')));
    assert!(server.metric("switchboard_app_events_total{kind=\"store_outages\"}") >= 1);
}

#[test]
fn memory_store_with_sessions_over_the_admin_listener() {
    let (server, admin) = serve_on_memory(&[]);
    let (status, _) = admin_request(admin, "PUT", "/sessions/session-store-m1", "12", None);
    assert_eq!(status, 200);
    let mut c = connect(&server, "/", &[]);
    send(&mut c, "authenticate", json!({ "sessionId": "m1" }));
    assert_eq!(expect(&mut c, "authenticated")["userId"], "12");
    let (status, _) = admin_request(
        admin,
        "POST",
        "/notify",
        r#"{"users":[12],"data":"mem"}"#,
        None,
    );
    assert_eq!(status, 202);
    assert_eq!(expect(&mut c, "message"), "mem");
    // A key with a time to live: expired by the hub's timer, the connection is out.
    admin_request(
        admin,
        "PUT",
        "/sessions/session-store-m1?ttl=0.3",
        "12",
        None,
    );
    assert_eq!(expect(&mut c, "unauthenticated")["reason"], "session ended");
    let (status, body) = admin_request(admin, "DELETE", "/sessions/session-store-m1", "", None);
    assert_eq!(
        (status, body.contains(r#""deleted":false"#)),
        (200, true),
        "{body}"
    );
}

#[test]
fn a_connection_that_changes_user_takes_the_old_one_out_of_its_rooms() {
    let redis = RedisServer::start();
    let (server, admin) = serve(&redis, &[]);
    let mut ann = signed_in(&server, &redis, "a", "ann");
    let mut bob = signed_in(&server, &redis, "b", "bob");
    let mut eve = signed_in(&server, &redis, "e", "eve");
    send(&mut ann, "chat.create", json!({ "room": "r" }));
    expect(&mut ann, "chat.create");
    for c in [&mut bob, &mut eve] {
        send(c, "chat.join", json!({ "room": "r" }));
        expect(c, "chat.join");
    }
    wait_userlist(&mut eve, &["ann", "bob", "eve"]);

    // The site moves session `a` to another user: ann has no connection left.
    redis.cli(&["SET", "session-store-a", "carol"]);
    assert_eq!(wait_event(&mut ann, "authenticated")["userId"], "carol");
    wait_userlist(&mut eve, &["bob", "eve"]);

    // Bob's connection authenticates with eve's session: bob is gone too.
    send(&mut bob, "authenticate", json!({ "sessionId": "e" }));
    assert_eq!(wait_event(&mut bob, "authenticated")["userId"], "eve");
    wait_userlist(&mut eve, &["eve"]);
    let (_, rooms) = admin_request(admin, "GET", "/rooms", "", None);
    let rooms: Value = serde_json::from_str(&rooms).unwrap();
    assert_eq!(rooms[0]["users"], json!(["eve"]));
}

#[test]
fn the_event_client_signs_in_with_a_subprotocol_and_stays_away_once_kicked() {
    let (server, admin) = serve_on_memory(&["--admin-user", "root"]);
    for (key, value) in [("7", "s7"), ("root", "sr")] {
        assert_eq!(
            admin_request(admin, "PUT", &format!("/sessions/{key}"), value, None).0,
            200
        );
    }
    let mut root = connect(&server, "/?userId=root", &[("sessid", "sr")]);
    expect(&mut root, "authenticated");
    let mut client = EventClient::connect(
        &format!("ws://{}/?userId=7&softId=cli", server.addr),
        Options {
            protocols: vec!["s7".into()],
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            ..Options::default()
        },
    )
    .unwrap();
    let mut next = || client.next().expect("the client is running");
    assert_eq!(next(), Incoming::Ready);
    let Incoming::Event(name, data) = next() else {
        panic!("not an event")
    };
    assert_eq!(
        (name.as_str(), &data["softId"]),
        ("authenticated", &json!("cli"))
    );
    send(&mut root, "admin.kick", json!({ "user": "7" }));
    assert_eq!(
        next(),
        Incoming::Stopped {
            code: 4003,
            reason: "kicked by an admin".into()
        }
    );
    assert_eq!(client.next(), None);
}

#[test]
fn redis_down_at_start_is_followed_once_it_comes() {
    let mut redis = RedisServer::start();
    redis.stop();
    let (server, _) = serve(&redis, &[]);
    assert!(
        server.stderr.wait_for(TIMEOUT, |l| l
            .contains("keyspace notifications could not be turned on")),
        "{:?}",
        server.stderr.snapshot()
    );
    // Until Redis is there, a sign-in that needs it is refused, to be retried.
    assert_eq!(upgrade(&server, "/?userId=1", &[("sessid", "s")]).0, 503);
    redis.restart();
    assert!(
        server
            .stderr
            .wait_for(TIMEOUT, |l| l.contains("redis subscription back")
                && l.contains("channel=__keyspace@")),
        "{:?}",
        server.stderr.snapshot()
    );
    assert!(wait_until(TIMEOUT, || redis
        .cli(&["CONFIG", "GET", "notify-keyspace-events"])
        .contains('K')));
    // Keys are followed live: a session written after connecting joins its user.
    let mut c = connect(&server, "/", &[]);
    send(&mut c, "authenticate", json!({ "sessionId": "late" }));
    expect(&mut c, "unauthenticated");
    redis.cli(&["SET", "session-store-late", "5"]);
    assert_eq!(expect(&mut c, "authenticated")["userId"], "5");
}

#[test]
fn every_module_works_from_the_command_line_client() {
    let (server, admin) = serve_on_memory(&["--admin-user", "root"]);
    admin_request(admin, "PUT", "/sessions/session-store-cli", "root", None);
    // Each is answered on the connection itself, before the close that ends input.
    let output = connect_command(
        server.addr,
        &[
            r#"authenticate {"sessionId":"cli"}"#,
            "whoami",
            r#"chat.create {"room":"cli"}"#,
            r#"chat.members {"room":"cli"}"#,
            r#"private.send {"to":"ann","message":"from the terminal"}"#,
            r#"private.history {"with":"ann"}"#,
            r#"notice.send {"users":["ann"],"text":"hi"}"#,
            "admin.stats",
            r#"{"module":"chat","method":"leave","room":"cli"}"#,
        ],
    );
    let events: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    for want in [
        "authenticated",
        "whoami",
        "chat.create",
        "chat.members",
        "private.send",
        "private.history",
        "notice.send",
        "admin.stats",
        "chat.leave",
    ] {
        assert!(names.contains(&want), "no {want} in {names:?}");
    }
    assert!(!names.contains(&"error"), "{events:?}");
    let history = events
        .iter()
        .find(|e| e["event"] == "private.history")
        .unwrap();
    assert_eq!(
        history["data"]["messages"][0]["message"],
        "from the terminal"
    );
}
