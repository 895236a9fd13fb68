//! `switchboard broker`: its options and its start.

use crate::cli::{self, HasServer, Opt, Parsed};
use std::net::IpAddr;
use switchboard::broker::{backend::Url, Broker, BrokerHandler, Config};
use switchboard::server::{self, Server};

struct BrokerSettings {
    server: server::Config,
    listen: String,
    backend: Option<String>,
    allow: Vec<IpAddr>,
    trusted: Option<Vec<IpAddr>>,
    broker: Config,
}

impl HasServer for BrokerSettings {
    fn server(&mut self) -> &mut server::Config {
        &mut self.server
    }
}

fn ip(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("'{text}' is not an IP address"))
}

fn options() -> Vec<Opt<BrokerSettings>> {
    vec![
        opt!(
            "--listen",
            "ADDR",
            "address to listen on (default 127.0.0.1:9001)",
            |s, v| s.listen = v.to_owned()
        ),
        opt!(
            "--backend",
            "URL",
            "the back end's http:// URL, POSTed every event (required)",
            |s, v| s.backend = Some(v.to_owned())
        ),
        opt!(
            "--allow",
            "IP",
            "an address that may POST commands to the WebSocket port (repeatable; default none)",
            |s, v| s.allow.push(ip(v)?)
        ),
        opt!(
            "--trusted-proxy",
            "IP",
            "a proxy whose X-Forwarded-For gives sessionInfo.ip (repeatable; default 127.0.0.1 and ::1; 'none' for none)",
            |s, v| {
                let list = s.trusted.get_or_insert_with(Vec::new);
                if v != "none" {
                    list.push(ip(v)?);
                }
            }
        ),
        opt!(
            "--backend-connections",
            "N",
            "requests to the back end at once, each on a kept connection (default 4)",
            |s, v| s.broker.backend_connections = cli::at_least(1, v)?
        ),
        opt!(
            "--backend-timeout",
            "SECONDS",
            "time for one request to the back end, answer included (default 10)",
            |s, v| s.broker.backend_timeout = cli::seconds(v)?
        ),
        opt!(
            "--backend-queue",
            "N",
            "events waiting for the back end; more are dropped and logged (default 10000)",
            |s, v| s.broker.backend_queue = cli::at_least(1, v)?
        ),
        opt!(
            "--backend-wait",
            "SECONDS",
            "how long an event is tried while the back end is unreachable (default 10)",
            |s, v| s.broker.backend_wait = cli::seconds(v)?
        ),
        opt!(
            "--max-answer-bytes",
            "N",
            "largest answer read from the back end (default 1048576)",
            |s, v| s.broker.max_answer_bytes = cli::at_least(1, v)?
        ),
    ]
}

pub fn run(args: &[String]) -> Result<(), String> {
    let placeholder = Url::parse("http://127.0.0.1/").map_err(|e| e.to_string())?;
    let mut server_config = server::Config::default();
    // Clients' messages are JSON for the back end; 64 KiB holds any a page sends.
    server_config.ws.limits.max_message_bytes = 64 * 1024;
    server_config.ws.limits.max_frame_bytes = 64 * 1024;
    let mut settings = BrokerSettings {
        server: server_config,
        listen: String::from("127.0.0.1:9001"),
        backend: None,
        allow: Vec::new(),
        trusted: None,
        broker: Config::new(placeholder),
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
    let backend = settings
        .backend
        .ok_or("broker: give --backend URL, where events are POSTed")?;
    let mut config = settings.broker;
    config.backend = Url::parse(&backend).map_err(|e| format!("broker: {e}"))?;
    config.allow = settings.allow;
    if let Some(trusted) = settings.trusted {
        config.trusted_proxies = trusted;
    }
    let broker = Broker::new(config);
    let server =
        Server::new(settings.server, BrokerHandler(broker.clone())).map_err(|e| e.to_string())?;
    broker
        .start(&server)
        .map_err(|e| format!("broker: cannot start its threads: {e}"))?;
    crate::listen_and_run(&settings.listen, server)
}
