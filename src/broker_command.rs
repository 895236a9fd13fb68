//! `switchboard broker`, and the back-end bridge's options, which `serve --backend`
//! takes too.

use crate::cli::{self, HasServer, Opt, Parsed};
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;
use switchboard::broker::{backend::Url, commands, Broker, BrokerHandler, Config};
use switchboard::hub::Hub;
use switchboard::server::{self, events::Builder, Server};

/// The bus topic of the back-end bridge's commands relayed to every node.
const RELAY_TOPIC: &str = "broker";

/// The bridge's options as given.
pub struct Bridge {
    backend: Option<String>,
    allow: Vec<IpAddr>,
    trusted: Option<Vec<IpAddr>>,
    config: Config,
}

impl Default for Bridge {
    fn default() -> Self {
        let placeholder = Url {
            host: "127.0.0.1".into(),
            port: 80,
            path: "/".into(),
        };
        Bridge {
            backend: None,
            allow: Vec::new(),
            trusted: None,
            config: Config::new(placeholder),
        }
    }
}

impl Bridge {
    /// The broker's settings; `None` without `--backend`.
    pub fn config(self) -> Result<Option<Config>, String> {
        let Some(backend) = self.backend else {
            return Ok(None);
        };
        let mut config = self.config;
        config.backend = Url::parse(&backend).map_err(|e| format!("--backend: {e}"))?;
        config.allow = self.allow;
        if let Some(trusted) = self.trusted {
            config.trusted_proxies = trusted;
        }
        Ok(Some(config))
    }
}

/// Settings that hold the bridge's options.
pub trait HasBridge {
    fn bridge(&mut self) -> &mut Bridge;
}

fn ip(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("'{text}' is not an IP address"))
}

/// The bridge's options, for `broker` and `serve`.
pub fn bridge_options<S: HasBridge>() -> Vec<Opt<S>> {
    vec![
        opt!(
            "--backend",
            "URL",
            "the back end's http:// URL, POSTed every client event (docs/BROKER.md)",
            |s, v| s.bridge().backend = Some(v.to_owned())
        ),
        opt!(
            "--allow",
            "IP",
            "an address that may POST commands to the WebSocket port (repeatable; default none)",
            |s, v| s.bridge().allow.push(ip(v)?)
        ),
        opt!(
            "--trusted-proxy",
            "IP",
            "a proxy whose X-Forwarded-For gives sessionInfo.ip (repeatable; default 127.0.0.1 and ::1; 'none' for none)",
            |s, v| {
                let list = s.bridge().trusted.get_or_insert_with(Vec::new);
                if v != "none" {
                    list.push(ip(v)?);
                }
            }
        ),
        opt!(
            "--backend-connections",
            "N",
            "requests to the back end at once, each on a kept connection (default 4)",
            |s, v| s.bridge().config.backend_connections = cli::at_least(1, v)?
        ),
        opt!(
            "--backend-timeout",
            "SECONDS",
            "time for one request to the back end, answer included (default 10)",
            |s, v| s.bridge().config.backend_timeout = cli::seconds(v)?
        ),
        opt!(
            "--backend-queue",
            "N",
            "events waiting for the back end; more are dropped and logged (default 10000)",
            |s, v| s.bridge().config.backend_queue = cli::at_least(1, v)?
        ),
        opt!(
            "--backend-queue-bytes",
            "N",
            "bytes of events waiting for the back end; more are dropped and logged (default 16777216)",
            |s, v| s.bridge().config.backend_queue_bytes = cli::at_least(1, v)?
        ),
        opt!(
            "--backend-queue-per-connection",
            "N",
            "events of one connection waiting; more of its events are dropped (default 100)",
            |s, v| s.bridge().config.backend_queue_per_connection = cli::at_least(1, v)?
        ),
        opt!(
            "--backend-wait",
            "SECONDS",
            "how long an event is tried while the back end is unreachable (default 10)",
            |s, v| s.bridge().config.backend_wait = cli::seconds(v)?
        ),
        opt!(
            "--max-answer-bytes",
            "N",
            "largest answer read from the back end (default 1048576)",
            |s, v| s.bridge().config.max_answer_bytes = cli::at_least(1, v)?
        ),
    ]
}

struct BrokerSettings {
    server: server::Config,
    listen: String,
    bridge: Bridge,
}

impl HasServer for BrokerSettings {
    fn server(&mut self) -> &mut server::Config {
        &mut self.server
    }
}

impl HasBridge for BrokerSettings {
    fn bridge(&mut self) -> &mut Bridge {
        &mut self.bridge
    }
}

fn options() -> Vec<Opt<BrokerSettings>> {
    let mut opts: Vec<Opt<BrokerSettings>> = vec![opt!(
        "--listen",
        "ADDR",
        "address to listen on (default 127.0.0.1:9001)",
        |s, v| s.listen = v.to_owned()
    )];
    opts.extend(bridge_options());
    opts
}

/// `switchboard broker`.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut server_config = server::Config::default();
    // Clients' messages are JSON for the back end; 64 KiB holds any a page sends.
    server_config.ws.limits.max_message_bytes = 64 * 1024;
    server_config.ws.limits.max_frame_bytes = 64 * 1024;
    let mut settings = BrokerSettings {
        server: server_config,
        listen: String::from("127.0.0.1:9001"),
        bridge: Bridge::default(),
    };
    let own = options();
    let mut opts = options();
    opts.extend(cli::server_options());
    let parsed = cli::parse("broker", args, &opts, &mut settings, |_, arg| {
        Err(format!("broker: unexpected '{arg}'"))
    })?;
    if parsed == Parsed::Help {
        print!(
            "{}",
            crate::server_command_help("switchboard broker --backend URL [options]", &own)
        );
        return Ok(());
    }
    let config = settings
        .bridge
        .config()
        .map_err(|e| format!("broker: {e}"))?
        .ok_or("broker: give --backend URL, where events are POSTed")?;
    let broker = Broker::new(config);
    let server =
        Server::new(settings.server, BrokerHandler(broker.clone())).map_err(|e| e.to_string())?;
    broker
        .start(&server)
        .map_err(|e| format!("broker: cannot start its threads: {e}"))?;
    crate::listen_and_run(&settings.listen, server)
}

/// `serve --backend`, before the hub installs its listeners: a closed connection's
/// `session-disconnect` is taken while the hub still knows its user.
pub fn bridge_serve_first(builder: Builder, broker: &Arc<Broker>) -> Builder {
    let b = broker.clone();
    builder.on("disconnect", move |ctx, _| b.closed(ctx.id()))
}

/// `serve --backend`, after the hub: events the hub does not handle go to the back
/// end, with the hub's `userId`, `sessionId` and `softId` in `sessionInfo` (a new
/// connection's claim is the hub's by the time `session-connect` is sent); direct
/// commands come from `--allow` addresses and from the admin listener (`POST /broker`).
pub fn bridge_serve(builder: Builder, hub: &Arc<Hub>, broker: &Arc<Broker>) -> Builder {
    let known = Arc::downgrade(hub);
    broker.set_identity(Box::new(move |id| {
        known.upgrade().map(|h| h.known_of(id)).unwrap_or_default()
    }));
    // Commands with `match` reach the connections of every node on the same store.
    let nodes = Arc::downgrade(hub);
    broker.set_relay(Box::new(move |list| {
        if let Some(hub) = nodes.upgrade() {
            // A failure is counted and logged by the hub.
            let _ = hub.relay(RELAY_TOPIC, &Value::Array(list));
        }
    }));
    let here = Arc::downgrade(broker);
    hub.on_relay(
        RELAY_TOPIC,
        Arc::new(move |payload| {
            if let Some(broker) = here.upgrade() {
                broker.run_relayed(payload);
            }
        }),
    );
    let (b1, b3, b4, b5) = (
        broker.clone(),
        broker.clone(),
        broker.clone(),
        broker.clone(),
    );
    builder
        .on("connection", move |ctx, _| {
            if let Some(conn) = ctx.conn() {
                b1.opened(conn);
            }
        })
        .otherwise(move |ctx, name, data| b3.message(ctx.id(), commands::serve_event(name, data)))
        .on_http(move |_, request| (request.head.method == "POST").then(|| b4.direct(request)))
        .on_admin(move |_, request| b5.admin_route(request))
}
