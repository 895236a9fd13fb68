//! The `switchboard` command.

mod bench_command;
#[macro_use]
mod cli;
mod broker_command;

use cli::{HasServer, Opt, Parsed};
use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Duration;
use switchboard::client::{Client, Error as ClientError, Sender};
use switchboard::hub::{self, auth::Template, Hub};
use switchboard::protocol::message::Event;
use switchboard::server::{self, echo, log, Server};
use switchboard::store::{self, Stores};

/// The commands, with what each does; `switchboard COMMAND --help` gives its options.
const COMMANDS: &str = "\
switchboard: a WebSocket server with RFC 6455 written by hand

usage:
  switchboard serve [options]       sessions, users, notifications, private messages and
                                    chat rooms (docs/EVENTS.md, docs/OPERATIONS.md)
  switchboard broker --backend URL  each client event POSTed to an HTTP back end, which
                                    answers with commands (WSBroker; docs/BROKER.md)
  switchboard echo [options]        echo every message back to its sender
  switchboard connect URL [options] send typed lines, print messages received (like wscat)
  switchboard bench SCENARIO ...    load generators and codec measurements
  switchboard --help | --version

switchboard COMMAND --help lists a command's options; defaults are in docs/OPERATIONS.md.
";

/// The help of a command that runs a server: its own options, then the server's.
fn server_command_help<S: HasServer>(usage: &str, own: &[Opt<S>]) -> String {
    let mut out = format!("usage: {usage}\n\noptions:\n{}", cli::help(own));
    out.push_str("\nserver options:\n");
    out.push_str(&cli::help(&cli::server_options::<S>()));
    out
}

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
            print!("{COMMANDS}");
            Ok(())
        }
        Some("-V" | "--version") => {
            println!("switchboard {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some("echo") => run_echo(&args[1..]),
        Some("serve") => run_serve(&args[1..]),
        Some("broker") => broker_command::run(&args[1..]),
        Some("bench") => bench_command::run_bench(&args[1..]),
        Some("connect") => run_connect(&args[1..]),
        Some(other) => Err(format!("unknown command '{other}'\n\n{COMMANDS}")),
    }
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

/// What `switchboard echo` is told.
struct EchoSettings {
    server: server::Config,
    listen: String,
    broadcast: bool,
    protocols: Vec<String>,
}

impl HasServer for EchoSettings {
    fn server(&mut self) -> &mut server::Config {
        &mut self.server
    }
}

fn echo_options() -> Vec<Opt<EchoSettings>> {
    vec![
        opt!(
            "--listen",
            "ADDR",
            "address to listen on (default 127.0.0.1:9001)",
            |s, v| s.listen = v.to_owned()
        ),
        opt!(
            "--mode",
            "echo|broadcast",
            "back to the sender, or to every connection (default echo)",
            |s, v| {
                s.broadcast = match v {
                    "echo" => false,
                    "broadcast" => true,
                    other => return Err(format!("'{other}': 'echo' or 'broadcast'")),
                };
            }
        ),
        opt!(
            "--protocol",
            "NAME",
            "a subprotocol to select when offered (repeatable)",
            |s, v| s.protocols.push(v.to_owned())
        ),
    ]
}

fn run_echo(args: &[String]) -> Result<(), String> {
    let mut settings = EchoSettings {
        server: server::Config {
            // Benchmarks and Autobahn send far faster than an application's clients.
            max_messages_per_second: None,
            ..server::Config::default()
        },
        listen: String::from("127.0.0.1:9001"),
        broadcast: false,
        protocols: Vec::new(),
    };
    let own = echo_options();
    let mut opts = echo_options();
    opts.extend(cli::server_options());
    let parsed = cli::parse("echo", args, &opts, &mut settings, |_, arg| {
        Err(format!("echo: unexpected '{arg}'"))
    })?;
    if parsed == Parsed::Help {
        print!(
            "{}",
            server_command_help("switchboard echo [options]", &own)
        );
        return Ok(());
    }
    let mode = if settings.broadcast {
        echo::Mode::Broadcast
    } else {
        echo::Mode::Echo
    };
    let handler = echo::Echo {
        mode,
        protocols: settings.protocols,
    };
    let server = Server::new(settings.server, handler).map_err(|e| e.to_string())?;
    listen_and_run(&settings.listen, server)
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

/// What `switchboard serve` is told.
struct ServeSettings {
    server: server::Config,
    hub: hub::Config,
    listen: String,
    redis_url: Option<String>,
    history: usize,
    history_ttl: Option<Duration>,
    store_timeout: Duration,
    redis_replicas: usize,
    bridge: broker_command::Bridge,
}

impl broker_command::HasBridge for ServeSettings {
    fn bridge(&mut self) -> &mut broker_command::Bridge {
        &mut self.bridge
    }
}

impl HasServer for ServeSettings {
    fn server(&mut self) -> &mut server::Config {
        &mut self.server
    }
}

/// A key template, or `off`.
fn template(text: &str) -> Result<Option<Template>, String> {
    if text == "off" {
        return Ok(None);
    }
    Template::parse(text).map(Some).map_err(|e| e.to_string())
}

fn serve_options() -> Vec<Opt<ServeSettings>> {
    vec![
        opt!(
            "--listen",
            "ADDR",
            "address to listen on (default 127.0.0.1:9001)",
            |s, v| s.listen = v.to_owned()
        ),
        opt!(
            "--redis",
            "URL",
            "sessions, history and bus on Redis, such as\n\
                   redis://127.0.0.1:6379/0, or through Redis Sentinel,\n\
                   redis-sentinel://host:port,host:port/name/0\n\
                   (default: in memory)",
            |s, v| s.redis_url = Some(v.to_owned())
        ),
        opt!(
            "--keep-notifications",
            "",
            "notifications POSTed to /notify are kept per user, with\n\
                   ids, for notification.history (default: not kept)",
            |s, _| s.hub.keep_notifications = true
        ),
        opt!(
            "--no-anonymous",
            "",
            "connections must authenticate (default: allowed)",
            |s, _| s.hub.anonymous = false
        ),
        opt!(
            "--auth-timeout",
            "SECONDS",
            "time to authenticate then, or close 4002 (default 30)",
            |s, v| s.hub.auth_timeout = cli::seconds(v)?
        ),
        opt!(
            "--origin",
            "ORIGIN",
            "allow browser pages from ORIGIN only (repeatable)",
            |s, v| s.hub.origins.push(v.to_owned())
        ),
        opt!(
            "--admin-user",
            "ID",
            "a user who may use the admin module (repeatable)",
            |s, v| s.hub.admins.push(v.into())
        ),
        opt!(
            "--user-session-key",
            "T|off",
            "key of a user's session id (default {userId})",
            |s, v| s.hub.user_session_key = template(v)?
        ),
        opt!(
            "--session-user-key",
            "T|off",
            "key of a session's user id\n\
                   (default session-store-{sessionId})",
            |s, v| s.hub.session_user_key = template(v)?
        ),
        opt!(
            "--chat-session-key",
            "T|off",
            "key of a session key's user and room\n\
                   (default chat-session-{sessionKey})",
            |s, v| s.hub.chat_session_key = template(v)?
        ),
        opt!(
            "--history",
            "N",
            "entries kept per room or conversation (default 1000)",
            |s, v| s.history = cli::at_least(1, v)?
        ),
        opt!(
            "--history-ttl",
            "SECONDS",
            "with --redis, a history's life after its last entry;\n\
                   0 keeps it (default 2592000, 30 days)",
            |s, v| s.history_ttl = cli::lifetime(v)?
        ),
        opt!(
            "--history-page",
            "N",
            "most history entries in one answer (default 100)",
            |s, v| s.hub.history_page = cli::at_least(1, v)?
        ),
        opt!(
            "--max-text-chars",
            "N",
            "longest message or notice text (default 4000)",
            |s, v| s.hub.max_text_chars = cli::at_least(1, v)?
        ),
        opt!(
            "--max-room-name-chars",
            "N",
            "longest room name (default 64)",
            |s, v| s.hub.max_room_name_chars = cli::at_least(1, v)?
        ),
        opt!(
            "--max-rooms",
            "N",
            "rooms at once, on every node of the store (default 1000)",
            |s, v| s.hub.max_rooms = cli::number(v)?
        ),
        opt!(
            "--max-rooms-per-user",
            "N",
            "rooms one user owns (default 10)",
            |s, v| s.hub.max_rooms_per_user = cli::number(v)?
        ),
        opt!(
            "--max-room-list",
            "N",
            "bans, and moderators, of one room (default 1000)",
            |s, v| s.hub.max_room_list = cli::number(v)?
        ),
        opt!(
            "--max-id-chars",
            "N",
            "longest user or session id a client names (default 128)",
            |s, v| s.hub.max_id_chars = cli::at_least(1, v)?
        ),
        opt!(
            "--store-timeout",
            "SECONDS",
            "with --redis, time one store call has in all, waiting\n\
                   for a pooled connection included (default 2)",
            |s, v| s.store_timeout = cli::seconds(v)?
        ),
        opt!(
            "--redis-replicas",
            "N",
            "with --redis, replicas that must confirm a message\n\
                   before it is answered as taken (default 0)",
            |s, v| s.redis_replicas = cli::number(v)?
        ),
        opt!(
            "--node-timeout",
            "SECONDS",
            "with --redis, how long a node whose heartbeat stopped\n\
                   counts as alive (default 10)",
            |s, v| s.hub.node_timeout = cli::seconds(v)?
        ),
    ]
}

/// The help of `serve`, with the server defaults it changes.
fn serve_help() -> String {
    let mut out = server_command_help("switchboard serve [options]", &serve_options());
    out.push_str("\nback-end bridge options (docs/BROKER.md):\n");
    out.push_str(&cli::help(
        &broker_command::bridge_options::<ServeSettings>(),
    ));
    out.push_str(
        "\nserve's own defaults for server options: --max-message-bytes and\n\
         --max-frame-bytes 65536, --max-json-values 4096\n",
    );
    out
}

fn run_serve(args: &[String]) -> Result<(), String> {
    let mut settings = ServeSettings {
        server: serve_defaults(),
        hub: hub::Config::default(),
        listen: String::from("127.0.0.1:9001"),
        redis_url: None,
        history: 1000,
        history_ttl: Some(Duration::from_secs(30 * 24 * 3600)),
        store_timeout: Duration::from_secs(2),
        redis_replicas: 0,
        bridge: broker_command::Bridge::default(),
    };
    let mut opts = serve_options();
    opts.extend(broker_command::bridge_options());
    opts.extend(cli::server_options());
    let parsed = cli::parse("serve", args, &opts, &mut settings, |_, arg| {
        Err(format!("serve: unexpected '{arg}'"))
    })?;
    if parsed == Parsed::Help {
        print!("{}", serve_help());
        return Ok(());
    }
    let ServeSettings {
        server: config,
        hub: hub_config,
        listen,
        redis_url,
        history,
        history_ttl,
        store_timeout,
        redis_replicas,
        bridge,
    } = settings;
    let stores = match &redis_url {
        None => Stores::memory(history),
        Some(url) => Stores::redis(store::redis::Config {
            max_history: history,
            history_ttl,
            timeout: store_timeout,
            replicas: redis_replicas,
            ..store::redis::Config::new(url)
        })
        .map_err(|e| format!("--redis: {e}"))?,
    };
    let hub_config_origins_empty = hub_config.origins.is_empty();
    let no_admin_listener = config.admin_listen.is_none();
    let hub = Hub::new(hub_config, stores);
    let broker = bridge.config()?.map(switchboard::broker::Broker::new);
    let mut builder = Server::builder().config(config);
    if let Some(broker) = &broker {
        builder = broker_command::bridge_serve_first(builder, broker);
    }
    builder = hub.install(builder);
    if let Some(broker) = &broker {
        builder = broker_command::bridge_serve(builder, &hub, broker);
    }
    let server = builder.build().map_err(|e| e.to_string())?;
    hub.start(&server)
        .map_err(|e| format!("cannot start: {e}"))?;
    if let Some(broker) = &broker {
        broker
            .start(&server)
            .map_err(|e| format!("cannot start the back-end bridge: {e}"))?;
    }
    server.logger().log(
        log::Level::Info,
        None,
        "store",
        &[(
            "backend",
            &redis_url.as_deref().map_or("memory".into(), redact_url),
        )],
    );
    if redis_url.is_none() && no_admin_listener {
        server.logger().log(
            log::Level::Warn,
            None,
            "memory store and no --admin-listen: no session can be written, so nobody can sign in and only anonymous connections work; give --admin-listen 127.0.0.1:9002 (or --redis)",
            &[],
        );
    }
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

/// What `switchboard connect` is told.
#[derive(Default)]
struct ConnectSettings {
    url: Option<String>,
    json: bool,
    protocols: Vec<String>,
}

fn connect_options() -> Vec<Opt<ConnectSettings>> {
    vec![
        opt!(
            "--json",
            "",
            "lines are events: 'name {\"some\":1}'; a line\n\
                   starting with '{' is sent as it is",
            |s, _| s.json = true
        ),
        opt!(
            "--protocol",
            "P",
            "offer subprotocol P (repeatable)",
            |s, v| s.protocols.push(v.to_owned())
        ),
    ]
}

fn run_connect(args: &[String]) -> Result<(), String> {
    let opts = connect_options();
    let mut settings = ConnectSettings::default();
    let parsed = cli::parse("connect", args, &opts, &mut settings, |s, arg| {
        if s.url.is_some() {
            return Err(format!("connect: one URL only, not also '{arg}'"));
        }
        s.url = Some(arg.to_owned());
        Ok(())
    })?;
    if parsed == Parsed::Help {
        print!(
            "usage: switchboard connect URL [options]\n\noptions:\n{}",
            cli::help(&opts)
        );
        return Ok(());
    }
    let ConnectSettings {
        url,
        json,
        protocols,
    } = settings;
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

#[cfg(test)]
#[path = "main_tests.rs"]
mod tests;
