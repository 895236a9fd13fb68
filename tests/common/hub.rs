//! The hub's side of a test: `switchboard serve` on a real Redis, clients signed in
//! the way a site signs them in, and the events they wait for.

use super::redis::RedisServer;
use super::*;
use serde_json::{json, Value};
use std::net::SocketAddr;

/// `switchboard serve` on `redis`, with an admin listener and `extra` options.
pub fn serve(redis: &RedisServer, extra: &[&str]) -> (Server, SocketAddr) {
    let url = redis.url();
    let mut args = vec!["--redis", url.as_str()];
    // These tests are about what the hub does, not about a slow Redis: a store call
    // that waits behind a loaded machine must not turn into an error event here
    // (tests/hardening.rs tests the deadline itself).
    if !extra.contains(&"--store-timeout") {
        args.extend(["--store-timeout", "20"]);
    }
    args.extend_from_slice(extra);
    serve_on_memory(&args)
}

/// The status of an upgrade request, and the client when it was 101.
pub fn upgrade(server: &Server, target: &str, headers: &[(&str, &str)]) -> (u16, String, Client) {
    let mut c = Client::raw(server.addr);
    let head = c.upgrade(target, headers);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head, c)
}

/// A client that connected with a 101.
pub fn connect(server: &Server, target: &str, headers: &[(&str, &str)]) -> Client {
    let (status, head, c) = upgrade(server, target, headers);
    assert_eq!(status, 101, "{head}");
    c
}

/// The next message: its event name, its data, and the whole object.
pub fn next(c: &mut Client) -> (String, Value, Value) {
    let v: Value = serde_json::from_str(&c.recv_text()).expect("JSON");
    (
        v["event"].as_str().expect("an event").to_owned(),
        v["data"].clone(),
        v,
    )
}

/// The next message, which must be `event`; returns its data.
pub fn expect(c: &mut Client, event: &str) -> Value {
    let (name, data, whole) = next(c);
    if name != event {
        // Whatever follows tells why the order was not the expected one.
        panic!("expected {event}, got {whole}; then {:?}", c.what_follows());
    }
    data
}

/// Skips messages until `event` comes; returns its data.
pub fn wait_event(c: &mut Client, event: &str) -> Value {
    let mut skipped = Vec::new();
    for _ in 0..50 {
        let (name, data, _) = next(c);
        if name == event {
            return data;
        }
        skipped.push(name);
    }
    panic!("no {event}; got {skipped:?}");
}

pub fn send(c: &mut Client, event: &str, data: Value) {
    c.send_text(&json!({ "event": event, "data": data }).to_string());
}

/// Asks the server who this is; the answer comes after anything queued before it.
pub fn whoami(c: &mut Client) -> Value {
    send(c, "whoami", Value::Null);
    expect(c, "whoami")
}

/// Connects the session-to-user way and authenticates with `session`, whose key the
/// site wrote for `user`.
pub fn signed_in(server: &Server, redis: &RedisServer, session: &str, user: &str) -> Client {
    redis.cli(&["SET", &format!("session-store-{session}"), user]);
    let mut c = connect(server, "/", &[]);
    send(&mut c, "authenticate", json!({ "sessionId": session }));
    let data = expect(&mut c, "authenticated");
    assert_eq!(data["userId"], user);
    c
}

/// Reads until the server's close frame, answers it, and returns its code.
pub fn closed_with(c: &mut Client) -> u16 {
    loop {
        let f = c.recv().expect("a close frame");
        if f.opcode == CLOSE {
            c.send_frame(true, 0, CLOSE, &f.payload, Whole);
            return u16::from_be_bytes([f.payload[0], f.payload[1]]);
        }
    }
}

pub fn publish(redis: &RedisServer, payload: &Value) {
    redis.cli(&["PUBLISH", "notifications", &payload.to_string()]);
}

/// Skips messages until a `userlist` of `room` names exactly `users`.
pub fn wait_userlist(c: &mut Client, users: &[&str]) {
    let mut seen = Vec::new();
    for _ in 0..20 {
        let list = wait_event(c, "userlist");
        if list["users"] == json!(users) {
            return;
        }
        seen.push(list);
    }
    panic!("no userlist {users:?}; saw {seen:?}");
}

fn moderate(c: &mut Client, action: &str, user: &str) {
    send(
        c,
        &format!("chat.{action}"),
        json!({ "room": "lobby", "user": user }),
    );
}

/// A moderated room used from `nodes` (the same node three times, or three nodes on
/// one Redis): the owner signs in on the first, ann on the second, bob and eve on the
/// third. `admin` is one node's admin listener.
pub fn moderation_across(redis: &RedisServer, nodes: [&Server; 3], admin: SocketAddr) {
    let [one, two, three] = nodes;
    let mut owner = signed_in(one, redis, "o", "owner");
    let mut ann = signed_in(two, redis, "a", "ann");
    let mut bob = signed_in(three, redis, "b", "bob");

    send(&mut owner, "chat.create", json!({ "room": "lobby" }));
    assert_eq!(expect(&mut owner, "chat.create")["owner"], "owner");
    assert_eq!(expect(&mut owner, "userlist")["users"], json!(["owner"]));
    send(&mut ann, "chat.join", json!({ "room": "lobby" }));
    let joined = expect(&mut ann, "chat.join");
    assert_eq!(joined["users"], json!(["ann", "owner"]));
    assert_eq!(
        wait_event(&mut owner, "userlist")["users"],
        json!(["ann", "owner"])
    );
    expect(&mut ann, "userlist");
    send(&mut bob, "chat.join", json!({ "room": "lobby" }));
    expect(&mut bob, "chat.join");
    for c in [&mut owner, &mut ann, &mut bob] {
        assert_eq!(
            expect(c, "userlist")["users"],
            json!(["ann", "bob", "owner"])
        );
    }
    send(&mut owner, "chat.create", json!({ "room": "lobby" }));
    assert_eq!(expect(&mut owner, "error")["code"], "room_exists");
    send(&mut bob, "chat.create", json!({ "room": "lobby" }));
    assert_eq!(expect(&mut bob, "error")["code"], "room_exists");

    // Members may not moderate.
    moderate(&mut bob, "mute", "ann");
    assert_eq!(expect(&mut bob, "error")["code"], "forbidden");

    // The owner appoints ann; ann mutes bob; bob cannot send until unmuted.
    moderate(&mut owner, "appoint", "ann");
    wait_event(&mut owner, "chat.appoint");
    expect(&mut ann, "chat.appointed");
    expect(&mut bob, "chat.appointed");
    moderate(&mut ann, "mute", "bob");
    assert_eq!(expect(&mut bob, "chat.muted")["by"], "ann");
    send(
        &mut bob,
        "chat.send",
        json!({ "room": "lobby", "message": "let me" }),
    );
    assert_eq!(expect(&mut bob, "error")["code"], "muted");
    moderate(&mut ann, "unmute", "bob");
    expect(&mut bob, "chat.unmuted");
    send(
        &mut bob,
        "chat.send",
        json!({ "room": "lobby", "message": "thanks" }),
    );
    let m = expect(&mut bob, "chat.message");
    assert_eq!(m["message"], "thanks");
    assert_eq!(expect(&mut bob, "chat.send")["id"], m["id"]);

    // A message deleted by a moderator, not by a member.
    send(
        &mut bob,
        "chat.delete",
        json!({ "room": "lobby", "id": m["id"] }),
    );
    assert_eq!(expect(&mut bob, "error")["code"], "forbidden");
    send(
        &mut ann,
        "chat.delete",
        json!({ "room": "lobby", "id": m["id"] }),
    );
    assert_eq!(wait_event(&mut bob, "chat.deleted")["id"], m["id"]);
    assert_eq!(wait_event(&mut ann, "chat.delete")["id"], m["id"]);
    send(&mut bob, "chat.history", json!({ "room": "lobby" }));
    assert_eq!(expect(&mut bob, "chat.history")["messages"], json!([]));

    // Kicked: out, may come back. Banned: out, may not, until unbanned.
    moderate(&mut ann, "kick", "bob");
    expect(&mut bob, "chat.kicked");
    send(
        &mut bob,
        "chat.send",
        json!({ "room": "lobby", "message": "?" }),
    );
    assert_eq!(expect(&mut bob, "error")["code"], "not_member");
    send(&mut bob, "chat.join", json!({ "room": "lobby" }));
    expect(&mut bob, "chat.join");
    moderate(&mut ann, "ban", "bob");
    assert_eq!(wait_event(&mut bob, "chat.banned")["user"], "bob");
    send(&mut bob, "chat.join", json!({ "room": "lobby" }));
    assert_eq!(wait_event(&mut bob, "error")["code"], "banned");
    // A moderator cannot act on the owner.
    moderate(&mut ann, "kick", "owner");
    assert_eq!(wait_event(&mut ann, "error")["code"], "forbidden");
    moderate(&mut owner, "unban", "bob");
    assert_eq!(wait_event(&mut bob, "chat.unbanned")["user"], "bob");
    send(&mut bob, "chat.join", json!({ "room": "lobby" }));
    expect(&mut bob, "chat.join");

    let (status, rooms) = admin_request(admin, "GET", "/rooms", "", None);
    assert_eq!(status, 200);
    let rooms: Value = serde_json::from_str(&rooms).unwrap();
    assert_eq!(rooms[0]["moderators"], json!(["ann"]));
    assert_eq!(rooms[0]["users"], json!(["ann", "bob", "owner"]));

    // An entry written into the stream by something else comes as a value.
    redis.cli(&["XADD", "room:lobby", "*", "entry", "5"]);
    send(
        &mut bob,
        "chat.history",
        json!({ "room": "lobby", "limit": 1 }),
    );
    let page = wait_event(&mut bob, "chat.history");
    assert_eq!(page["messages"][0]["value"], 5, "{page}");

    // A malformed history request does not join.
    let mut eve = signed_in(three, redis, "e", "eve");
    send(
        &mut eve,
        "chat.join",
        json!({ "room": "lobby", "limit": 0 }),
    );
    assert_eq!(expect(&mut eve, "error")["code"], "bad_request");
    send(&mut eve, "chat.members", json!({ "room": "lobby" }));
    assert_eq!(expect(&mut eve, "error")["code"], "not_member");

    // One user owns at most 10 rooms.
    for i in 0..10 {
        send(&mut eve, "chat.create", json!({ "room": format!("e{i}") }));
        wait_event(&mut eve, "chat.create");
    }
    send(&mut eve, "chat.create", json!({ "room": "e10" }));
    assert_eq!(wait_event(&mut eve, "error")["code"], "too_many_owned");
}
