//! `switchboard bench`, the load generator, against real server processes: each
//! scenario prints one JSON object whose counts add up.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

fn bench(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run switchboard bench");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {output:?}"))
}

#[test]
fn echo_scenario_counts_round_trips() {
    let server = Server::start(&[]);
    let url = format!("ws://{}/", server.addr);
    let r = bench(&[
        "echo",
        &url,
        "--conns",
        "3",
        "--inflight",
        "4",
        "--size",
        "64",
        "--seconds",
        "0.5",
    ]);
    assert_eq!(r["scenario"], "echo");
    assert_eq!(r["errors"], serde_json::json!([]));
    assert!(r["messages"].as_u64().unwrap() > 0, "{r}");
    assert!(
        r["p50_us"].as_u64().unwrap() <= r["p99_us"].as_u64().unwrap(),
        "{r}"
    );
    // The server saw at least what the generator counted, plus warm-up.
    assert!(
        server.metric("switchboard_messages_received_total") >= r["messages"].as_u64().unwrap()
    );
}

#[test]
fn broadcast_scenario_delivers_everything_in_order() {
    let server = Server::start(&["--mode", "broadcast"]);
    let url = format!("ws://{}/", server.addr);
    let r = bench(&[
        "broadcast",
        &url,
        "--subs",
        "5",
        "--messages",
        "50",
        "--rate",
        "500",
        "--drain",
        "5",
    ]);
    assert_eq!(r["delivered"], 250, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["out_of_order"], 0, "{r}");
}

#[test]
fn hold_scenario_keeps_connections_through_pings() {
    let server = Server::start(&["--ping-interval", "0.2", "--heartbeat-timeout", "0.5"]);
    let url = format!("ws://{}/", server.addr);
    let r = bench(&["hold", &url, "--conns", "20", "--seconds", "1"]);
    assert_eq!(r["connected"], 20, "{r}");
    assert_eq!(r["alive_after_hold"], 20, "{r}");
    assert_eq!(server.metric("switchboard_closes_total{code=\"4000\"}"), 0);
}

#[test]
fn chat_scenario_hears_every_word() {
    let server = Server::start_example("chat", &[]);
    let url = format!("ws://{}/", server.addr);
    let r = bench(&[
        "chat",
        &url,
        "--users",
        "4",
        "--every",
        "0.2",
        "--seconds",
        "1",
    ]);
    let said = r["said"].as_u64().unwrap();
    assert!(said >= 4, "{r}");
    assert_eq!(r["heard"].as_u64().unwrap(), said * 4, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
}

#[test]
fn unknown_options_are_refused_before_any_load() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["bench", "echo", "ws://127.0.0.1:9/", "--subs", "3"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--subs does not apply"));
}
