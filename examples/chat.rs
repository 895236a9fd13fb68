//! A small chat room on the event API, with a user list.
//!
//! ```text
//! cargo run --example chat -- --listen 127.0.0.1:9002
//! ```
//!
//! Client events: `join` `{"name": "ann"}`, then `say` `{"text": "hello"}`.
//! Server events: `welcome` `{"id": 3, "users": [..]}` on connecting; `userlist`
//! `["ann", "bob"]` to everyone whenever someone joins or leaves; `said`
//! `{"time": "2026-11-22T09:15:02.123Z", "user": "ann", "message": "hello"}`; and `end`
//! when the server shuts down (SIGINT or SIGTERM), after which clients reconnect.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard::server::{events::Ctx, Config, ConnId, Server};

/// Longest name, in characters.
const MAX_NAME_CHARS: usize = 32;
/// Longest message, in characters.
const MAX_TEXT_CHARS: usize = 2000;

type Users = Arc<Mutex<BTreeMap<ConnId, String>>>;

fn names(users: &Users) -> Value {
    let users = users.lock().unwrap_or_else(|p| p.into_inner());
    json!(users.values().collect::<Vec<_>>())
}

/// A non-empty string field of at most `max` characters.
fn text_field<'a>(data: &'a Value, key: &str, max: usize) -> Option<&'a str> {
    data.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.chars().count() <= max)
}

fn main() {
    let mut listen = String::from("127.0.0.1:9002");
    let mut config = Config::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--listen", Some(v)) => listen = v,
            ("--shutdown-grace", Some(v)) => match v.parse::<f64>() {
                Ok(s) if s > 0.0 => config.shutdown_grace = Duration::from_secs_f64(s),
                _ => fail(&format!("--shutdown-grace {v}: give seconds")),
            },
            _ => fail(&format!(
                "usage: chat [--listen ADDR] [--shutdown-grace SECONDS] (not {arg})"
            )),
        }
    }

    let users: Users = Arc::default();
    let server = Server::builder()
        .config(config)
        .on("connection", {
            let users = users.clone();
            move |ctx: &Ctx, _: &Value| {
                let _ = ctx.reply("welcome", json!({ "id": ctx.id(), "users": names(&users) }));
            }
        })
        .on("join", {
            let users = users.clone();
            move |ctx: &Ctx, data: &Value| {
                let Some(name) = text_field(data, "name", MAX_NAME_CHARS) else {
                    let message =
                        format!("join needs a \"name\" of 1 to {MAX_NAME_CHARS} characters");
                    let _ = ctx.reply("error", json!({ "code": "bad_name", "message": message }));
                    return;
                };
                users
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(ctx.id(), name.to_owned());
                ctx.reply_all("userlist", names(&users));
            }
        })
        .on("say", {
            let users = users.clone();
            move |ctx: &Ctx, data: &Value| {
                let name = users
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&ctx.id())
                    .cloned();
                let Some(name) = name else {
                    let message = "send join with a name first";
                    let _ = ctx.reply("error", json!({ "code": "not_joined", "message": message }));
                    return;
                };
                let Some(text) = text_field(data, "text", MAX_TEXT_CHARS) else {
                    let message =
                        format!("say needs a \"text\" of 1 to {MAX_TEXT_CHARS} characters");
                    let _ = ctx.reply("error", json!({ "code": "bad_text", "message": message }));
                    return;
                };
                ctx.reply_all(
                    "said",
                    json!({
                        "time": switchboard::time::now_iso8601(),
                        "user": name,
                        "message": text,
                    }),
                );
            }
        })
        .on("disconnect", move |ctx: &Ctx, _: &Value| {
            let left = users
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&ctx.id());
            if left.is_some() {
                ctx.reply_all("userlist", names(&users));
            }
        })
        .build()
        .unwrap_or_else(|e| fail(&format!("cannot start: {e}")));

    let listener = TcpListener::bind(&listen)
        .unwrap_or_else(|e| fail(&format!("cannot listen on {listen}: {e}")));
    server
        .shutdown_on_signals()
        .unwrap_or_else(|e| fail(&format!("cannot handle signals: {e}")));
    if let Err(e) = server.run_with(listener, |addr| println!("listening on {addr}")) {
        fail(&e.to_string());
    }
}

fn fail(message: &str) -> ! {
    eprintln!("chat: {message}");
    std::process::exit(2)
}
