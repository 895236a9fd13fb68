//! Several nodes on one Redis: `switchboard serve --redis` three times on the same real
//! `redis-server`, with clients spread over them. The hub must behave the same
//! whichever node a connection lands on, and a node that dies must not leave its users
//! in rooms.

mod common;

use common::hub::*;
use common::redis::RedisServer;

use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn two_nodes_on_one_redis_reach_each_others_users() {
    let redis = RedisServer::start();
    let (one, _) = serve(&redis, &["--admin-user", "root"]);
    let (two, _) = serve(&redis, &["--admin-user", "root"]);
    let mut root = signed_in(&one, &redis, "r", "root");
    let mut ann = signed_in(&one, &redis, "a", "ann");
    let mut bob_here = signed_in(&one, &redis, "b1", "bob");
    let mut bob_there = signed_in(&two, &redis, "b2", "bob");

    // A private message reaches the recipient on both nodes: this node's connection
    // directly, the other node's through the bus.
    send(
        &mut ann,
        "private.send",
        json!({ "to": "bob", "message": "across" }),
    );
    let taken = expect(&mut ann, "private.send");
    for bob in [&mut bob_here, &mut bob_there] {
        let got = expect(bob, "private.message");
        assert_eq!(
            (&got["message"], &got["id"]),
            (&json!("across"), &taken["id"])
        );
    }
    // A broadcast reaches every signed-in connection on every node, once.
    send(&mut root, "admin.broadcast", json!({ "text": "all" }));
    expect(&mut root, "broadcast");
    expect(&mut root, "admin.broadcast");
    for c in [&mut ann, &mut bob_here, &mut bob_there] {
        assert_eq!(expect(c, "broadcast")["text"], "all");
    }
    // A kick closes the user's connections on every node with 4003.
    send(&mut root, "admin.kick", json!({ "user": "bob" }));
    expect(&mut root, "admin.kick");
    assert_eq!(closed_with(&mut bob_here), 4003);
    assert_eq!(closed_with(&mut bob_there), 4003);
    // Nothing came twice: the sender's own node ignored its messages on the bus.
    assert_eq!(whoami(&mut ann)["userId"], "ann");
}

#[test]
fn a_room_is_the_same_room_on_three_nodes() {
    let redis = RedisServer::start();
    let (one, _) = serve(&redis, &[]);
    let (two, _) = serve(&redis, &[]);
    let (three, admin) = serve(&redis, &[]);
    moderation_across(&redis, [&one, &two, &three], admin);
}

#[test]
fn a_killed_node_s_users_leave_their_rooms_in_time() {
    let redis = RedisServer::start();
    let (one, _) = serve(&redis, &[]);
    let (two, _) = serve(&redis, &[]);
    let (mut three, _) = serve(&redis, &[]);
    let mut ann = signed_in(&one, &redis, "a", "ann");
    let mut bob_two = signed_in(&two, &redis, "b2", "bob");
    let bob_three = signed_in(&three, &redis, "b3", "bob");
    let mut cat = signed_in(&three, &redis, "c", "cat");
    send(&mut ann, "chat.create", json!({ "room": "lobby" }));
    expect(&mut ann, "chat.create");
    for c in [&mut bob_two, &mut cat] {
        send(c, "chat.join", json!({ "room": "lobby" }));
        expect(c, "chat.join");
    }
    wait_userlist(&mut ann, &["ann", "bob", "cat"]);

    // Bob's connection on the third node is his, not his only one.
    three.signal("KILL");
    let killed = Instant::now();
    drop((bob_three, cat));
    // Longer than one read's usual timeout: the node is buried after its heartbeat's
    // time to live.
    ann.stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    wait_userlist(&mut ann, &["ann", "bob"]);
    let took = killed.elapsed();
    eprintln!("the killed node's users left their rooms after {took:?}");
    // The documented bound: node_timeout (10 s) and a quarter of it.
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_eq!(
        wait_event(&mut bob_two, "userlist")["users"],
        json!(["ann", "bob"])
    );

    // The room is still the same room on the survivors.
    send(
        &mut bob_two,
        "chat.send",
        json!({ "room": "lobby", "message": "still here" }),
    );
    assert_eq!(
        wait_event(&mut ann, "chat.message")["message"],
        "still here"
    );
}
