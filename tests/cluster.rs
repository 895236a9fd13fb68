//! Several nodes on one Redis: `switchboard serve --redis` three times on the same real
//! `redis-server`, with clients spread over them. The hub must behave the same
//! whichever node a connection lands on, and a node that dies must not leave its users
//! in rooms.

mod common;

use common::hub::*;
use common::redis::RedisServer;
use common::{admin_request, wait_until, Server, TIMEOUT};

use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use switchboard::client::{EventClient, Incoming, Options, Sender};

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

/// What the clients of the rolling restart saw, shared by their threads.
#[derive(Default)]
struct Seen {
    /// Per client: whether it is connected now, and how many times it got ready.
    connected: Vec<bool>,
    readies: Vec<usize>,
    /// Per client: the ids of its room's messages it got, live or recovered.
    got: Vec<std::collections::BTreeSet<String>>,
    /// Per room: the ids of the messages answered as taken.
    acked: Vec<std::collections::BTreeSet<String>>,
    /// A chat.join that failed, or a client that gave up.
    failures: Vec<String>,
}

const CLIENTS: usize = 200;
const ROOMS: usize = 10;

/// One client of the rolling restart: signs in through nginx, joins its room, and
/// after each reconnection joins again with the last id it saw, to recover what it
/// missed. Ends when its room says `done`.
fn rolling_client(i: usize, url: String, seen: Arc<Mutex<Seen>>, slot: Arc<Mutex<Option<Sender>>>) {
    let options = Options {
        max_attempts: 20,
        min_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        protocols: vec![format!("s{i}")],
        ..Options::default()
    };
    let mut client = EventClient::connect(&url, options).expect("connect through nginx");
    let room = format!("r{}", i % ROOMS);
    let mut last: Option<String> = None;
    let note = |seen: &Arc<Mutex<Seen>>, id: &serde_json::Value, last: &mut Option<String>| {
        if let Some(id) = id.as_str() {
            seen.lock().unwrap().got[i].insert(id.to_owned());
            *last = Some(id.to_owned());
        }
    };
    while let Some(item) = client.next() {
        match item {
            Incoming::Ready => {
                {
                    let mut s = seen.lock().unwrap();
                    s.connected[i] = true;
                    s.readies[i] += 1;
                }
                *slot.lock().unwrap() = client.sender();
                let mut join = json!({ "room": room });
                if let Some(id) = &last {
                    join["lastId"] = json!(a_little_before(id));
                }
                let _ = client.emit("chat.join", &join);
            }
            Incoming::Reconnecting { .. } | Incoming::End(_) => {
                seen.lock().unwrap().connected[i] = false;
                *slot.lock().unwrap() = None;
            }
            Incoming::Event(name, data) => match name.as_str() {
                "chat.join" => {
                    for m in data["messages"].as_array().into_iter().flatten() {
                        note(&seen, &m["id"], &mut last);
                    }
                }
                "chat.message" => {
                    if data["message"] == "done" {
                        break;
                    }
                    note(&seen, &data["id"], &mut last);
                }
                "chat.send" => {
                    if let Some(id) = data["id"].as_str() {
                        seen.lock().unwrap().acked[i % ROOMS].insert(id.to_owned());
                    }
                }
                "error" => seen.lock().unwrap().failures.push(format!("u{i}: {data}")),
                _ => {}
            },
            Incoming::ReconnectionFail | Incoming::Stopped { .. } => {
                seen.lock()
                    .unwrap()
                    .failures
                    .push(format!("u{i}: {item:?}"));
                break;
            }
            Incoming::Other(_) => {}
        }
    }
    client.close();
}

/// An id 2 s before `id` (ids are `ms-seq`): messages from senders on other nodes can
/// reach a connection after later ones from its own node, so a client resumes from a
/// little before the last id it saw, and drops what it has (docs/EVENTS.md).
fn a_little_before(id: &str) -> String {
    let ms: u64 = id
        .split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0);
    format!("{}-0", ms.saturating_sub(2000))
}

/// `switchboard serve` on a port of its own, so that it can start again on it.
fn node_on(redis: &RedisServer, port: u16) -> (Server, std::net::SocketAddr) {
    serve(
        redis,
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--max-messages-per-second",
            "0",
        ],
    )
}

#[test]
fn a_rolling_restart_behind_nginx_loses_nobody_and_nothing() {
    let redis = RedisServer::start();
    let ports: Vec<u16> = (0..3).map(|_| common::nginx::free_port()).collect();
    let mut nodes: Vec<(Server, std::net::SocketAddr)> =
        ports.iter().map(|p| node_on(&redis, *p)).collect();
    for i in 0..CLIENTS {
        redis.cli(&["SET", &format!("u{i}"), &format!("s{i}")]);
    }
    let mut owner = signed_in(&nodes[0].0, &redis, "o", "owner");
    for r in 0..ROOMS {
        send(
            &mut owner,
            "chat.create",
            json!({ "room": format!("r{r}") }),
        );
        wait_event(&mut owner, "chat.create");
    }
    let nginx = common::nginx::Nginx::start(&ports);
    let url = |i: usize| format!("ws://127.0.0.1:{}/?userId=u{i}", nginx.port);

    let seen = Arc::new(Mutex::new(Seen {
        connected: vec![false; CLIENTS],
        readies: vec![0; CLIENTS],
        got: vec![Default::default(); CLIENTS],
        acked: vec![Default::default(); ROOMS],
        failures: Vec::new(),
    }));
    let slots: Vec<Arc<Mutex<Option<Sender>>>> =
        (0..CLIENTS).map(|_| Arc::new(Mutex::new(None))).collect();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (url, seen, slot) = (url(i), seen.clone(), slots[i].clone());
            thread::spawn(move || rolling_client(i, url, seen, slot))
        })
        .collect();
    let all_in = |s: &Seen| s.connected.iter().all(|c| *c);
    assert!(wait_until(Duration::from_secs(30), || all_in(
        &seen.lock().unwrap()
    )));
    // Every room lists its 20 members and its owner, whichever node is asked.
    let members_of = |admin| -> Vec<usize> {
        let (_, body) = admin_request(admin, "GET", "/rooms", "", None);
        let rooms: serde_json::Value = serde_json::from_str(&body).unwrap();
        rooms
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let users = r["users"].as_array().unwrap();
                users
                    .iter()
                    .filter(|u| u.as_str().unwrap().starts_with('u'))
                    .count()
            })
            .collect()
    };
    // Each room's 20 clients (the owner, whose connection is not one of them, leaves
    // once the node that held it is restarted).
    let full = vec![CLIENTS / ROOMS; ROOMS];
    assert!(wait_until(TIMEOUT, || members_of(nodes[2].1) == full));

    // Two senders per room, a message every 200 ms each, for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..2 * ROOMS)
        .map(|i| {
            let (slot, stop) = (slots[i].clone(), stop.clone());
            thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    if let Some(sender) = slot.lock().unwrap().clone() {
                        let m = json!({ "room": format!("r{}", i % ROOMS), "message": format!("m{i}-{n}") });
                        let _ = sender.emit("chat.send", &m);
                        n += 1;
                    }
                    thread::sleep(Duration::from_millis(200));
                }
            })
        })
        .collect();

    // Each node in turn: SIGINT (clients are told `end`), started again on its port.
    let mut back_within = Vec::new();
    for k in 0..3 {
        thread::sleep(Duration::from_secs(1));
        // The test's clients this node holds (not the owner's own connection).
        let (_, listing) = admin_request(nodes[k].1, "GET", "/connections", "", None);
        let listing: serde_json::Value = serde_json::from_str(&listing).unwrap();
        let held = listing
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["userId"].as_str().is_some_and(|u| u.starts_with('u')))
            .count();
        let before: usize = seen.lock().unwrap().readies.iter().sum();
        let signalled = Instant::now();
        nodes[k].0.signal("INT");
        assert!(
            nodes[k].0.wait_exit(Duration::from_secs(15)).is_some(),
            "node {k} did not exit"
        );
        nodes[k] = node_on(&redis, ports[k]);
        let back = wait_until(Duration::from_secs(30), || {
            let s = seen.lock().unwrap();
            s.readies.iter().sum::<usize>() >= before + held && all_in(&s)
        });
        let took = signalled.elapsed();
        if !back {
            let s = seen.lock().unwrap();
            let (ready, connected) = (
                s.readies.iter().sum::<usize>() - before,
                s.connected.iter().filter(|c| **c).count(),
            );
            let failures = s.failures.clone();
            drop(s);
            panic!("node {k}'s {held} clients were not all back: {ready} came back, {connected} connected; {failures:?}");
        }
        back_within.push((held, took));
    }
    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.join().unwrap();
    }
    assert!(
        wait_until(TIMEOUT, || members_of(nodes[0].1) == full),
        "{:?}",
        members_of(nodes[0].1)
    );
    // Each room's last word, after every message answered; then every client ends.
    thread::sleep(Duration::from_millis(500));
    let mut owner = signed_in(&nodes[1].0, &redis, "o2", "owner");
    for r in 0..ROOMS {
        send(&mut owner, "chat.join", json!({ "room": format!("r{r}") }));
        wait_event(&mut owner, "chat.join");
        send(
            &mut owner,
            "chat.send",
            json!({ "room": format!("r{r}"), "message": "done" }),
        );
        wait_event(&mut owner, "chat.send");
    }
    for c in clients {
        c.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    assert!(seen.failures.is_empty(), "{:?}", seen.failures);
    let acked: usize = seen.acked.iter().map(|a| a.len()).sum();
    let mut lost = 0;
    for i in 0..CLIENTS {
        lost += seen.acked[i % ROOMS].difference(&seen.got[i]).count();
    }
    eprintln!(
        "clients back after each restart (clients, time): {back_within:?}; {acked} messages taken, {lost} deliveries missing"
    );
    assert!(acked > 100, "too few messages to tell: {acked}");
    assert_eq!(lost, 0);
    for (held, took) in back_within {
        assert!(held > 0);
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
    assert!(!nginx.errors().contains("[emerg]"), "{}", nginx.errors());
}

#[test]
fn a_sentinel_failover_is_followed_and_loses_no_message_taken() {
    use common::redis::Sentinels;
    let mut master = RedisServer::start();
    // Two replicas: after the failover, one is the master and the other its replica,
    // which --redis-replicas 1 waits for.
    let master_port = master.port.to_string();
    let replicas: Vec<RedisServer> = (0..2)
        .map(|_| RedisServer::start_with(&["--replicaof", "127.0.0.1", &master_port]))
        .collect();
    assert!(wait_until(TIMEOUT, || replicas.iter().all(|r| r
        .cli(&["INFO", "replication"])
        .contains("master_link_status:up"))));
    let sentinels = Sentinels::start(master.port);
    // Each sentinel knows the replica and the two other sentinels: a failover needs them.
    assert!(wait_until(Duration::from_secs(20), || (0..3).all(|i| {
        sentinels
            .cli(i, &["SENTINEL", "replicas", "mymaster"])
            .matches("127.0.0.1")
            .count()
            >= 2
            && sentinels
                .cli(i, &["SENTINEL", "sentinels", "mymaster"])
                .matches("runid")
                .count()
                == 2
    })));
    let url = sentinels.url();
    let (node, admin) = common::serve_on_memory(&["--redis", &url, "--redis-replicas", "1"]);
    master.cli(&["SET", "session-store-a", "ann"]);
    master.cli(&["SET", "session-store-b", "bob"]);
    let sign_in = |session: &str| {
        let mut c = connect(&node, "/", &[]);
        send(&mut c, "authenticate", json!({ "sessionId": session }));
        wait_event(&mut c, "authenticated");
        c
    };
    let mut ann = sign_in("a");
    let mut bob = sign_in("b");
    send(&mut ann, "chat.create", json!({ "room": "r" }));
    wait_event(&mut ann, "chat.create");
    send(&mut bob, "chat.join", json!({ "room": "r" }));
    wait_event(&mut bob, "chat.join");

    let mut acked = Vec::new();
    let mut refused = 0;
    let mut killed: Option<Instant> = None;
    let mut first_refusal: Option<Instant> = None;
    let mut recovered: Option<Duration> = None;
    let mut taken_since = 0;
    let started = Instant::now();
    for n in 0.. {
        if killed.is_none() && started.elapsed() > Duration::from_secs(1) {
            master.stop();
            killed = Some(Instant::now());
        }
        send(
            &mut ann,
            "chat.send",
            json!({ "room": "r", "message": format!("m{n}") }),
        );
        let (name, data) = loop {
            let (name, data, _) = next(&mut ann);
            if name == "chat.send" || name == "error" {
                break (name, data);
            }
        };
        if name == "chat.send" {
            acked.push(data["id"].as_str().unwrap().to_owned());
            if let Some(since) = first_refusal {
                recovered.get_or_insert_with(|| since.elapsed());
                taken_since += 1;
            }
        } else {
            assert_eq!(data["code"], "store_unavailable", "{data}");
            assert!(
                recovered.is_none(),
                "refused again after the failover: {data}"
            );
            refused += 1;
            first_refusal.get_or_insert_with(Instant::now);
        }
        if taken_since >= 10 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no failover followed"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let recovered = recovered.expect("sends work again");
    // Every message taken reached bob and is in the new master's history.
    let mut got = std::collections::BTreeSet::new();
    while !acked.iter().all(|id| got.contains(id)) {
        let (name, data, _) = next(&mut bob);
        if name == "chat.message" {
            got.insert(data["id"].as_str().unwrap().to_owned());
        }
    }
    let promoted = sentinels.cli(0, &["SENTINEL", "get-master-addr-by-name", "mymaster"]);
    let new_master = replicas
        .iter()
        .find(|r| promoted.contains(&r.port.to_string()))
        .unwrap_or_else(|| panic!("a replica was not promoted: {promoted}"));
    let stream = new_master.cli(&["XRANGE", "room:r", "-", "+"]);
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !stream.contains(id.as_str()))
        .collect();
    eprintln!(
        "master killed after {:?}; sends refused for {recovered:?} ({refused} refused), {} taken, {} missing from the new master",
        killed.map(|k| k - started),
        acked.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "{missing:?}");
    assert!(
        refused > 0,
        "the failover refused nothing: was the master killed?"
    );
    assert!(recovered < Duration::from_secs(10), "{recovered:?}");
    assert!(wait_until(TIMEOUT, || admin_request(
        admin, "GET", "/health", "", None
    )
    .0 == 200));
}

#[test]
fn kept_notifications_are_recovered_by_last_id_on_another_node() {
    let redis = RedisServer::start();
    let (one, admin) = serve(&redis, &["--keep-notifications"]);
    let (two, _) = serve(&redis, &["--keep-notifications"]);
    let mut bob = signed_in(&two, &redis, "b", "bob");
    let notify = |n: u32| {
        let body =
            json!({ "users": ["bob"], "data": { "title": format!("n{n}"), "id": "site's own" } });
        let (status, answer) = admin_request(admin, "POST", "/notify", &body.to_string(), None);
        assert_eq!(status, 202, "{answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        answer["ids"]["bob"].as_str().unwrap().to_owned()
    };
    // Delivered across nodes with its id beside the data, the data as the site sent it.
    let first = notify(1);
    let (name, data, whole) = next(&mut bob);
    assert_eq!(name, "message");
    assert_eq!(data, json!({ "title": "n1", "id": "site's own" }));
    assert_eq!(whole["id"], json!(first));
    // Away for two, then back on the other node: what was missed, by last id.
    drop(bob);
    let missed = [notify(2), notify(3)];
    let mut bob = signed_in(&one, &redis, "b", "bob");
    send(&mut bob, "notification.history", json!({ "after": first }));
    let page = wait_event(&mut bob, "notification.history");
    let got: Vec<(&str, &str)> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap(),
                m["data"]["title"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [(missed[0].as_str(), "n2"), (missed[1].as_str(), "n3")]
    );
}
