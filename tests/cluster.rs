//! Several nodes on one Redis: `switchboard serve --redis` three times on the same real
//! `redis-server`, with clients spread over them. The hub must behave the same
//! whichever node a connection lands on, and a node that dies must not leave its users
//! in rooms.

mod common;

use common::admin_request;
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

#[test]
fn the_listing_and_stats_of_every_node_on_any_node() {
    let redis = RedisServer::start();
    let (one, admin) = serve(&redis, &[]);
    let (two, _) = serve(&redis, &[]);
    let (mut three, _) = serve(&redis, &[]);
    let _ann = signed_in(&one, &redis, "a", "ann");
    let _bob = signed_in(&two, &redis, "b", "bob");
    let _cat = signed_in(&three, &redis, "c", "cat");
    let _anonymous = connect(&three, "/", &[]);

    let (status, body) = admin_request(admin, "GET", "/cluster/connections", "", None);
    assert_eq!(status, 200, "{body}");
    let listing: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listing["nodes"].as_array().unwrap().len(), 3, "{listing}");
    assert_eq!(listing["missing"], json!([]));
    let mut users: Vec<&str> = listing["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["userId"].as_str().unwrap())
        .collect();
    users.sort();
    assert_eq!(users, ["__nouser__", "ann", "bob", "cat"]);
    // Each entry names its node, and a node's entries are its own.
    let nodes: std::collections::BTreeSet<&str> = listing["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes.len(), 3);

    let (status, body) = admin_request(admin, "GET", "/cluster/stats", "", None);
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["connections"], 4, "{stats}");

    // A node that stopped answering, but whose heartbeat has not lapsed yet, is named
    // as missing once the wait is over; the others still answer.
    three.signal("STOP");
    let asked = Instant::now();
    let (status, body) = admin_request(admin, "GET", "/cluster/stats", "", None);
    let took = asked.elapsed();
    three.signal("CONT");
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["missing"].as_array().unwrap().len(), 1, "{stats}");
    assert_eq!(stats["connections"], 2, "{stats}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn the_bridge_s_commands_with_match_reach_every_node() {
    let redis = RedisServer::start();
    // No back end listens: this is about the commands the site POSTs.
    let bridge = ["--backend", "http://127.0.0.1:9/", "--allow", "127.0.0.1"];
    let (one, _) = serve(&redis, &bridge);
    let (_two, admin_two) = serve(&redis, &bridge);
    let (three, _) = serve(&redis, &bridge);
    let mut here = signed_in(&one, &redis, "s1", "23");
    let mut there = signed_in(&three, &redis, "s3", "23");
    let mut other = signed_in(&three, &redis, "s4", "24");

    let (status, body) = admin_request(
        admin_two,
        "POST",
        "/broker",
        r#"[{"type":"send","message":{"type":"to-23"},"match":{"userId":"23"}}]"#,
        None,
    );
    assert_eq!((status, body.as_str()), (200, "[null]"));
    for c in [&mut here, &mut there] {
        let v: serde_json::Value = serde_json::from_str(&c.recv_text()).unwrap();
        assert_eq!(v["type"], "to-23", "{v}");
    }
    // Closed on every node, and only theirs.
    let (status, _) = admin_request(
        admin_two,
        "POST",
        "/broker",
        r#"[{"type":"close","match":{"userId":"23"}}]"#,
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(closed_with(&mut here), 1000);
    assert_eq!(closed_with(&mut there), 1000);
    assert_eq!(whoami(&mut other)["userId"], "24");
}
