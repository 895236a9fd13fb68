//! The `switchboard` command.

use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Duration;
use switchboard::client::{Client, Error as ClientError, Sender};
use switchboard::hub::{self, auth::Template, Hub};
use switchboard::protocol::message::Event;
use switchboard::server::{self, echo, log, Server};
use switchboard::store::{self, Stores};

const USAGE: &str = "\
switchboard: a WebSocket server with RFC 6455 written by hand

usage:
  switchboard serve [options]       sessions, users, notifications, private messages and
                                    chat rooms (docs/EVENTS.md, docs/OPERATIONS.md)
      --listen ADDR                 address to listen on (default 127.0.0.1:9001)
      --redis URL                   sessions, history and bus on Redis, such as
                                    redis://127.0.0.1:6379/0 (default: in memory)
      --no-anonymous                connections must authenticate (default: allowed)
      --auth-timeout SECONDS        time to authenticate then, or close 4002 (default 30)
      --origin ORIGIN               allow browser pages from ORIGIN only (repeatable)
      --admin-user ID               a user who may use the admin module (repeatable)
      --user-session-key T|off      key of a user's session id (default {userId})
      --session-user-key T|off      key of a session's user id (default session-store-{sessionId})
      --chat-session-key T|off      key of a session key's user and room
                                    (default chat-session-{sessionKey})
      --history N                   entries kept per room or conversation (default 1000)
      --history-ttl SECONDS         with --redis, a history's life after its last entry;
                                    0 keeps it (default 2592000, 30 days)
      --history-page N              most history entries in one answer (default 100)
      --max-text-chars N            longest message or notice text (default 4000)
      --max-room-name-chars N       longest room name (default 64)
      --max-rooms N                 rooms on this node (default 1000)
      --max-rooms-per-user N        rooms one user owns (default 10)
      --max-room-list N             bans, and moderators, of one room (default 1000)
      --max-id-chars N              longest user or session id a client names (default 128)
      --store-timeout SECONDS       with --redis, time one store call has in all, waiting
                                    for a pooled connection included (default 2)
      serve's own defaults for server options: --max-message-bytes and
      --max-frame-bytes 65536, --max-json-values 4096
      and the server options below
  switchboard echo [options]        echo every message back to its sender
      --listen ADDR                 address to listen on (default 127.0.0.1:9001)
      --mode echo|broadcast         back to the sender, or to every connection (default echo)
      --protocol NAME               a subprotocol to select when offered (repeatable)
      --max-messages-per-second N   as below, but 0 (no limit) by default here
      and the server options below
  switchboard connect URL [options] send typed lines, print messages received (like wscat)
      --json                        lines are events: 'name {\"some\":1}'; a line
                                    starting with '{' is sent as it is
      --protocol P                  offer subprotocol P (repeatable)
  switchboard bench codec [--seconds S]
                                    measure masking and frame decoding in-process
  switchboard bench echo URL        load a ws:// server; each prints one JSON line
      [--conns 50] [--inflight 16] [--size 32] [--seconds 10]
  switchboard bench broadcast URL   (against a server in broadcast mode)
      [--subs 100] [--stalled 0] [--messages 1000] [--rate 100] [--size 32] [--drain 5]
  switchboard bench hold URL [--conns 1000] [--seconds 10]
  switchboard bench chat URL        (against examples/chat.rs)
      [--users 50] [--every 1] [--seconds 10]
  switchboard bench private URL --admin-port P   (against switchboard serve)
      [--users 50] [--every 1] [--seconds 10]
  switchboard --help | --version

server options (defaults in docs/OPERATIONS.md):
      --handshake-timeout SECONDS   time to send the opening handshake (default 10)
      --ping-interval SECONDS       ping a connection silent this long (default 25)
      --heartbeat-timeout SECONDS   close one that does not answer a ping in time, 4000 (default 20)
      --idle-timeout SECONDS        close one that sends no message this long, 4001 (default: never)
      --write-timeout SECONDS       drop a peer that does not read for this long (default 30)
      --shutdown-grace SECONDS      time for closing handshakes on SIGINT/SIGTERM (default 5)
      --max-frame-bytes N           longest frame payload, 1009 (default 16777216)
      --max-message-bytes N         longest message, 1009 (default 67108864)
      --message-timeout SECONDS     time to finish a fragmented message, 1008 (default 30)
      --max-buffered-bytes N        bytes of unfinished messages and read buffers, all
                                    connections together; over it the largest holder
                                    is closed with 1013 (default 268435456)
      --max-json-values N           JSON values in one event message, more is an
                                    error event; 0 for no limit (default: no limit)
      --max-handshakes N            connections still sending their handshake; a new
                                    one drops the oldest (default 1024)
      --max-queue-bytes N           send queue bound per connection, 1008 (default 1048576)
      --max-connections N           over it, HTTP 503 (default 16384)
      --max-connections-per-ip N    over it, HTTP 429 (default: no limit)
      --max-messages-per-second N   per connection, over it 1008; 0 for no limit (default 1000)
      --trace-frames                print every frame in and out, annotated
      --writer-threads N            threads sending for other threads (default 1)
      --thread-stack-bytes N        stack of each connection thread (default 131072)
      --admin-listen ADDR           admin listener (JSON of the connections); loopback
                                    unless --admin-token is given (default: none)
      --admin-token TOKEN           bearer token the admin listener requires; not empty
      --max-admin-requests N        admin requests served at once, 503 beyond (default 16)
      --bad-input-logs-per-minute N log lines about one connection's bad input (default 10)
      --max-logged-input-bytes N    client text copied into logs and errors (default 256)
      --log-format human|json       log line format (default human)
      --log-level debug|info|warn|error
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("switchboard: {msg}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(())
        }
        Some("-V" | "--version") => {
            println!("switchboard {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some("echo") => run_echo(&args[1..]),
        Some("serve") => run_serve(&args[1..]),
        Some("bench") => run_bench(&args[1..]),
        Some("connect") => run_connect(&args[1..]),
        Some(other) => Err(format!("unknown command '{other}'\n\n{USAGE}")),
    }
}

/// Takes the value that follows option `name`.
fn value<'a>(it: &mut impl Iterator<Item = &'a String>, name: &str) -> Result<&'a str, String> {
    it.next()
        .map(String::as_str)
        .ok_or_else(|| format!("{name} needs a value"))
}

fn number<T: std::str::FromStr>(text: &str, name: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{name}: '{text}' is not a number"))
}

/// A whole number of at least `min`.
fn at_least(min: usize, text: &str, name: &str) -> Result<usize, String> {
    let n: usize = number(text, name)?;
    if n < min {
        return Err(format!("{name}: at least {min}"));
    }
    Ok(n)
}

/// A positive number of seconds, up to a day.
fn seconds(text: &str, name: &str) -> Result<Duration, String> {
    let secs: f64 = number(text, name)?;
    if !(secs > 0.0 && secs <= 86400.0) {
        return Err(format!("{name}: give seconds between 0 and 86400"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Applies one server option, if `arg` is one. Returns whether it was.
fn server_option<'a>(
    config: &mut server::Config,
    arg: &str,
    it: &mut impl Iterator<Item = &'a String>,
) -> Result<bool, String> {
    match arg {
        "--trace-frames" => config.trace_frames = true,
        "--handshake-timeout" => config.handshake_timeout = seconds(value(it, arg)?, arg)?,
        "--ping-interval" => config.ping_interval = seconds(value(it, arg)?, arg)?,
        "--heartbeat-timeout" => config.heartbeat_timeout = seconds(value(it, arg)?, arg)?,
        "--idle-timeout" => config.idle_timeout = Some(seconds(value(it, arg)?, arg)?),
        "--write-timeout" => config.write_timeout = seconds(value(it, arg)?, arg)?,
        "--shutdown-grace" => config.shutdown_grace = seconds(value(it, arg)?, arg)?,
        "--max-frame-bytes" => config.ws.limits.max_frame_bytes = number(value(it, arg)?, arg)?,
        "--max-message-bytes" => config.ws.limits.max_message_bytes = number(value(it, arg)?, arg)?,
        "--max-queue-bytes" => config.max_queue_bytes = number(value(it, arg)?, arg)?,
        "--max-connections" => config.max_connections = number(value(it, arg)?, arg)?,
        "--message-timeout" => config.message_timeout = seconds(value(it, arg)?, arg)?,
        "--max-buffered-bytes" => config.max_buffered_bytes = number(value(it, arg)?, arg)?,
        "--max-json-values" => {
            let n: usize = number(value(it, arg)?, arg)?;
            config.max_json_values = (n > 0).then_some(n);
        }
        "--max-handshakes" => config.max_handshakes = at_least(1, value(it, arg)?, arg)?,
        "--max-admin-requests" => config.max_admin_requests = at_least(1, value(it, arg)?, arg)?,
        "--bad-input-logs-per-minute" => {
            config.bad_input_logs_per_minute = number(value(it, arg)?, arg)?
        }
        "--max-logged-input-bytes" => config.max_logged_input_bytes = number(value(it, arg)?, arg)?,
        "--max-connections-per-ip" => {
            config.max_connections_per_ip = Some(number(value(it, arg)?, arg)?)
        }
        "--max-messages-per-second" => {
            let n: u32 = number(value(it, arg)?, arg)?;
            config.max_messages_per_second = (n > 0).then_some(n);
        }
        "--writer-threads" => config.writer_threads = at_least(1, value(it, arg)?, arg)?,
        "--thread-stack-bytes" => {
            config.thread_stack_bytes = at_least(32 * 1024, value(it, arg)?, arg)?
        }
        "--admin-listen" => config.admin_listen = Some(value(it, arg)?.to_owned()),
        "--admin-token" => {
            let token = value(it, arg)?;
            // `--admin-token "$UNSET"` must not leave the admin routes open to all.
            if token.trim().is_empty() {
                return Err(format!("{arg}: the token is empty"));
            }
            config.admin_token = Some(token.to_owned());
        }
        "--log-format" => {
            config.log_format = match value(it, arg)? {
                "human" => log::Format::Human,
                "json" => log::Format::Json,
                other => return Err(format!("{arg} {other}: 'human' or 'json'")),
            }
        }
        "--log-level" => {
            config.log_level = match value(it, arg)? {
                "debug" => log::Level::Debug,
                "info" => log::Level::Info,
                "warn" => log::Level::Warn,
                "error" => log::Level::Error,
                other => return Err(format!("{arg} {other}: debug, info, warn or error")),
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Binds, says where on stdout, runs until SIGINT or SIGTERM.
fn listen_and_run(listen: &str, server: Server) -> Result<(), String> {
    let listener =
        TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    server
        .shutdown_on_signals()
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    // The first line on stdout says where we listen: tests bind port 0 and read it.
    server
        .run_with(listener, |addr| println!("listening on {addr}"))
        .map_err(|e| e.to_string())
}

fn run_echo(args: &[String]) -> Result<(), String> {
    let mut config = server::Config {
        // Benchmarks and Autobahn send far faster than an application's clients.
        max_messages_per_second: None,
        ..server::Config::default()
    };
    let mut listen = String::from("127.0.0.1:9001");
    let mut broadcast = false;
    let mut protocols = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--listen" => listen = value(&mut it, arg)?.to_owned(),
            "--mode" => match value(&mut it, arg)? {
                "echo" => broadcast = false,
                "broadcast" => broadcast = true,
                other => return Err(format!("--mode {other}: 'echo' or 'broadcast'")),
            },
            "--protocol" => protocols.push(value(&mut it, arg)?.to_owned()),
            other => {
                if !server_option(&mut config, other, &mut it)? {
                    return Err(format!("echo: unknown option '{other}'"));
                }
            }
        }
    }
    let mode = if broadcast {
        echo::Mode::Broadcast
    } else {
        echo::Mode::Echo
    };
    let server = Server::new(config, echo::Echo { mode, protocols }).map_err(|e| e.to_string())?;
    listen_and_run(&listen, server)
}

/// What `serve` changes in the server's defaults: its largest request is a text of
/// `max_text_chars` (4000, up to 12 bytes each once JSON-escaped) in a small envelope,
/// so 64 KiB holds any legitimate one, where the echo server's 64 MiB would let one
/// anonymous client take a gigabyte to parse.
fn serve_defaults() -> server::Config {
    let mut config = server::Config::default();
    config.ws.limits.max_message_bytes = 64 * 1024;
    config.ws.limits.max_frame_bytes = 64 * 1024;
    config.max_json_values = Some(4096);
    config
}

fn run_serve(args: &[String]) -> Result<(), String> {
    let mut config = serve_defaults();
    let mut store_timeout = Duration::from_secs(2);
    let mut hub_config = hub::Config::default();
    let mut listen = String::from("127.0.0.1:9001");
    let mut redis_url = None;
    let mut history = 1000usize;
    let mut history_ttl = Some(Duration::from_secs(30 * 24 * 3600));
    let template = |text: &str, name: &str| -> Result<Option<Template>, String> {
        if text == "off" {
            return Ok(None);
        }
        Template::parse(text)
            .map(Some)
            .map_err(|e| format!("{name}: {e}"))
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--listen" => listen = value(&mut it, arg)?.to_owned(),
            "--redis" => redis_url = Some(value(&mut it, arg)?.to_owned()),
            "--no-anonymous" => hub_config.anonymous = false,
            "--auth-timeout" => hub_config.auth_timeout = seconds(value(&mut it, arg)?, arg)?,
            "--origin" => hub_config.origins.push(value(&mut it, arg)?.to_owned()),
            "--admin-user" => hub_config.admins.push(value(&mut it, arg)?.to_owned()),
            "--user-session-key" => {
                hub_config.user_session_key = template(value(&mut it, arg)?, arg)?
            }
            "--session-user-key" => {
                hub_config.session_user_key = template(value(&mut it, arg)?, arg)?
            }
            "--chat-session-key" => {
                hub_config.chat_session_key = template(value(&mut it, arg)?, arg)?
            }
            "--history" => history = number(value(&mut it, arg)?, arg)?,
            "--history-ttl" => {
                let t = seconds(value(&mut it, arg)?, arg)?;
                history_ttl = (!t.is_zero()).then_some(t);
            }
            "--max-rooms" => hub_config.max_rooms = number(value(&mut it, arg)?, arg)?,
            "--history-page" => hub_config.history_page = number(value(&mut it, arg)?, arg)?,
            "--max-rooms-per-user" => {
                hub_config.max_rooms_per_user = number(value(&mut it, arg)?, arg)?
            }
            "--max-room-list" => hub_config.max_room_list = number(value(&mut it, arg)?, arg)?,
            "--max-id-chars" => hub_config.max_id_chars = number(value(&mut it, arg)?, arg)?,
            "--store-timeout" => store_timeout = seconds(value(&mut it, arg)?, arg)?,
            "--max-text-chars" => hub_config.max_text_chars = number(value(&mut it, arg)?, arg)?,
            "--max-room-name-chars" => {
                hub_config.max_room_name_chars = number(value(&mut it, arg)?, arg)?
            }
            other => {
                if !server_option(&mut config, other, &mut it)? {
                    return Err(format!("serve: unknown option '{other}'"));
                }
            }
        }
    }
    if history == 0 {
        return Err("--history: keep at least 1 entry".into());
    }
    for (name, n) in [
        ("--history-page", hub_config.history_page),
        ("--max-text-chars", hub_config.max_text_chars),
        ("--max-room-name-chars", hub_config.max_room_name_chars),
        ("--max-id-chars", hub_config.max_id_chars),
    ] {
        if n == 0 {
            return Err(format!("{name}: at least 1"));
        }
    }
    let stores = match &redis_url {
        None => Stores::memory(history),
        Some(url) => Stores::redis(store::redis::Config {
            max_history: history,
            history_ttl,
            timeout: store_timeout,
            ..store::redis::Config::new(url)
        })
        .map_err(|e| format!("--redis: {e}"))?,
    };
    let hub_config_origins_empty = hub_config.origins.is_empty();
    let hub = Hub::new(hub_config, stores);
    let server = hub
        .install(Server::builder().config(config))
        .build()
        .map_err(|e| e.to_string())?;
    hub.start(&server)
        .map_err(|e| format!("cannot start: {e}"))?;
    server.logger().log(
        log::Level::Info,
        None,
        "store",
        &[(
            "backend",
            &redis_url.as_deref().map_or("memory".into(), redact_url),
        )],
    );
    let public = std::net::ToSocketAddrs::to_socket_addrs(listen.as_str())
        .map_or(true, |mut addrs| addrs.any(|a| !a.ip().is_loopback()));
    if public && hub_config_origins_empty {
        server.logger().log(
            log::Level::Warn,
            None,
            "listening beyond loopback with no --origin: any web page may open connections with its visitors' cookies",
            &[("listen", &listen)],
        );
    }
    listen_and_run(&listen, server)
}

/// The URL without its user and password, for the log: `redis://***@host:6379/0`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

fn run_connect(args: &[String]) -> Result<(), String> {
    let mut url = None;
    let mut json = false;
    let mut protocols = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--protocol" => protocols.push(value(&mut it, arg)?.to_owned()),
            other if other.starts_with("--") => {
                return Err(format!("connect: unknown option '{other}'"))
            }
            other if url.is_none() => url = Some(other.to_owned()),
            other => return Err(format!("connect: one URL only, not also '{other}'")),
        }
    }
    let url = url.ok_or("connect: give a ws:// URL")?;
    let offered: Vec<&str> = protocols.iter().map(String::as_str).collect();
    let mut client = Client::connect_with(&url, &offered, Duration::from_secs(10))
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    match client.protocol() {
        Some(p) => eprintln!("connected to {url} (subprotocol {p})"),
        None => eprintln!("connected to {url}"),
    }
    let sender = client.sender();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if let Err(e) = send_line(&sender, &line, json) {
                eprintln!("not sent: {e}");
                if matches!(e, ClientError::Closed) {
                    return;
                }
            }
        }
        // End of input: close, and the reader below sees the server's answer.
        let _ = sender.close(1000, "");
    });
    loop {
        match client.read() {
            Ok(Event::Text(text)) => println!("{text}"),
            Ok(Event::Binary(data)) => println!("<binary message, {} bytes>", data.len()),
            Ok(Event::Ping(_) | Event::Pong(_)) => {}
            Ok(Event::Close(frame)) => {
                match frame {
                    Some(f) => eprintln!("closed: {} {}", f.code, f.reason),
                    None => eprintln!("closed"),
                }
                return Ok(());
            }
            Err(e) => return Err(format!("connection lost: {e}")),
        }
    }
}

/// One typed line: text as it is, or with `--json` an event `name data`.
fn send_line(sender: &Sender, line: &str, json: bool) -> Result<(), ClientError> {
    if !json || line.trim_start().starts_with('{') {
        return sender.send_text(line);
    }
    let (name, rest) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
    let data = match rest.trim() {
        "" => serde_json::Value::Null,
        text => serde_json::from_str(text).unwrap_or_else(|_| text.into()),
    };
    sender.emit(name, &data)
}

fn run_bench(args: &[String]) -> Result<(), String> {
    let scenario = args.first().map(String::as_str);
    if scenario == Some("codec") {
        return run_bench_codec(&args[1..]);
    }
    let url = args
        .get(1)
        .filter(|u| !u.starts_with("--"))
        .ok_or("bench: give a ws:// URL after the scenario")?;
    let mut opts: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
    let mut it = args[2..].iter();
    while let Some(arg) = it.next() {
        let name = arg
            .strip_prefix("--")
            .ok_or_else(|| format!("bench: unexpected '{arg}'"))?;
        let v: f64 = number(value(&mut it, arg)?, arg)?;
        if !(v >= 0.0 && v.is_finite()) {
            return Err(format!("{arg}: give a number of 0 or more"));
        }
        opts.insert(name, v);
    }
    let mut take = |name: &str, default: f64| opts.remove(name).unwrap_or(default);
    let url = url.clone();
    let run: Box<dyn FnOnce() -> Result<serde_json::Value, String>> = match scenario {
        Some("echo") => {
            let (c, w, size, secs) = (
                take("conns", 50.0),
                take("inflight", 16.0),
                take("size", 32.0),
                take("seconds", 10.0),
            );
            Box::new(move || {
                switchboard::loadgen::echo(
                    &url,
                    c as usize,
                    w.max(1.0) as usize,
                    size as usize,
                    secs.max(0.1),
                )
            })
        }
        Some("broadcast") => {
            let (subs, stalled, n, rate, size, drain) = (
                take("subs", 100.0),
                take("stalled", 0.0),
                take("messages", 1000.0),
                take("rate", 100.0),
                take("size", 32.0),
                take("drain", 5.0),
            );
            Box::new(move || {
                switchboard::loadgen::broadcast(
                    &url,
                    subs as usize,
                    stalled as usize,
                    n as u64,
                    rate,
                    size as usize,
                    drain,
                )
            })
        }
        Some("hold") => {
            let (c, secs) = (take("conns", 1000.0), take("seconds", 10.0));
            Box::new(move || switchboard::loadgen::hold(&url, c as usize, secs))
        }
        Some("chat") => {
            let (users, every, secs) = (
                take("users", 50.0),
                take("every", 1.0),
                take("seconds", 10.0),
            );
            Box::new(move || {
                switchboard::loadgen::chat(&url, users as usize, every.max(0.001), secs)
            })
        }
        Some("private") => {
            let (admin, users, every, secs) = (
                take("admin-port", 0.0),
                take("users", 50.0),
                take("every", 1.0),
                take("seconds", 10.0),
            );
            if !(1.0..=65535.0).contains(&admin) {
                return Err("bench private: give --admin-port, the serve's admin listener".into());
            }
            Box::new(move || {
                switchboard::loadgen::private(
                    &url,
                    admin as u16,
                    users.max(2.0) as usize,
                    every.max(0.001),
                    secs,
                )
            })
        }
        _ => return Err("bench: echo, broadcast, hold, chat, private or codec".into()),
    };
    if let Some(unused) = opts.keys().next() {
        return Err(format!("bench: --{unused} does not apply here"));
    }
    let report = run()?;
    println!("{report}");
    Ok(())
}

fn run_bench_codec(args: &[String]) -> Result<(), String> {
    let mut seconds = 1.0f64;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = number(value(&mut it, arg)?, arg)?;
                if !(seconds > 0.0 && seconds <= 3600.0) {
                    return Err(format!("{arg}: give seconds between 0 and 3600"));
                }
            }
            other => return Err(format!("bench codec: unknown option '{other}'")),
        }
    }
    let report = switchboard::bench::codec(Duration::from_secs_f64(seconds));
    print!("{}", switchboard::bench::report(&report));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_stay_out_of_the_log() {
        assert_eq!(
            redact_url("redis://:secret@10.0.0.5:6379/0"),
            "redis://***@10.0.0.5:6379/0"
        );
        assert_eq!(redact_url("redis://user:p@ss@host/1"), "redis://***@host/1");
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
