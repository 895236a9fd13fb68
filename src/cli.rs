//! The command line's options. Each command has one table of [`Opt`]s, and the same
//! table drives the parser ([`parse`]), `switchboard COMMAND --help` ([`help`]) and the
//! usage text: an option cannot be parsed without being documented, or the reverse.

use std::time::Duration;
use switchboard::server::{self, log};

/// One option: its name, its value's placeholder (empty for a flag), its help (lines
/// after the first are continuations), and how it changes the settings `S`.
pub struct Opt<S> {
    pub name: &'static str,
    pub value: &'static str,
    pub help: &'static str,
    pub apply: fn(&mut S, &str) -> Result<(), String>,
}

/// An [`Opt`] whose `apply` is one statement (or block) on the settings `s` and the
/// value `v`; `?` in it returns the value's error.
macro_rules! opt {
    ($name:expr, $value:expr, $help:expr, |$s:ident, $v:tt| $body:expr) => {
        Opt {
            name: $name,
            value: $value,
            help: $help,
            apply: |$s, $v| {
                $body;
                Ok(())
            },
        }
    };
}

/// Settings that hold a server's [`server::Config`], so that the server options apply
/// to them.
pub trait HasServer {
    fn server(&mut self) -> &mut server::Config;
}

impl HasServer for server::Config {
    fn server(&mut self) -> &mut server::Config {
        self
    }
}

/// What the arguments asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Run the command.
    Run,
    /// Print the command's help.
    Help,
}

/// Applies `args` to `settings` through `opts`; anything that does not start with
/// `--` goes to `positional`.
pub fn parse<S>(
    command: &str,
    args: &[String],
    opts: &[Opt<S>],
    settings: &mut S,
    mut positional: impl FnMut(&mut S, &str) -> Result<(), String>,
) -> Result<Parsed, String> {
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(Parsed::Help);
        }
        if !arg.starts_with("--") {
            positional(settings, arg)?;
            continue;
        }
        let opt = opts.iter().find(|o| o.name == arg).ok_or_else(|| {
            format!("{command}: unknown option '{arg}' (switchboard {command} --help)")
        })?;
        let value = if opt.value.is_empty() {
            ""
        } else {
            it.next()
                .map(String::as_str)
                .ok_or_else(|| format!("{arg} needs a value ({})", opt.value))?
        };
        (opt.apply)(settings, value).map_err(|e| format!("{arg}: {e}"))?;
    }
    Ok(Parsed::Run)
}

/// Column where the help of an option starts.
const HELP_COLUMN: usize = 36;

/// The help of `opts`, one option a line, as `--help` and the usage show it.
pub fn help<S>(opts: &[Opt<S>]) -> String {
    let mut out = String::new();
    for o in opts {
        let mut left = format!("      {}", o.name);
        if !o.value.is_empty() {
            left.push(' ');
            left.push_str(o.value);
        }
        let mut lines = o.help.lines();
        if left.len() < HELP_COLUMN {
            let first = lines.next().unwrap_or("");
            out.push_str(&format!("{left:HELP_COLUMN$}{first}\n"));
        } else {
            out.push_str(&left);
            out.push('\n');
        }
        for line in lines {
            out.push_str(&format!("{:HELP_COLUMN$}{}\n", "", line.trim_start()));
        }
    }
    out
}

// ---- values

pub fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("'{text}' is not a number"))
}

/// A whole number of at least `min`.
pub fn at_least(min: usize, text: &str) -> Result<usize, String> {
    let n: usize = number(text)?;
    if n < min {
        return Err(format!("at least {min}"));
    }
    Ok(n)
}

/// A positive number of seconds, up to a day: the timeouts.
pub fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = number(text)?;
    if !(secs > 0.0 && secs <= 86400.0) {
        return Err("give seconds between 0 and 86400".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A whole number of seconds from 0 up to ten years: lifetimes of stored data, where
/// 0 means for ever.
pub fn lifetime(text: &str) -> Result<Option<Duration>, String> {
    const MAX: u64 = 10 * 365 * 24 * 3600;
    let secs: u64 = number(text)?;
    if secs > MAX {
        return Err(format!("at most {MAX} seconds"));
    }
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}

/// The server options, shared by every command that runs a server.
pub fn server_options<S: HasServer>() -> Vec<Opt<S>> {
    vec![
        opt!(
            "--handshake-timeout",
            "SECONDS",
            "time to send the opening handshake (default 10)",
            |s, v| s.server().handshake_timeout = seconds(v)?
        ),
        opt!(
            "--ping-interval",
            "SECONDS",
            "ping a connection silent this long (default 25)",
            |s, v| s.server().ping_interval = seconds(v)?
        ),
        opt!(
            "--heartbeat-timeout",
            "SECONDS",
            "close one that does not answer a ping in time, 4000 (default 20)",
            |s, v| s.server().heartbeat_timeout = seconds(v)?
        ),
        opt!(
            "--idle-timeout",
            "SECONDS",
            "close one that sends no message this long, 4001 (default: never)",
            |s, v| s.server().idle_timeout = Some(seconds(v)?)
        ),
        opt!(
            "--write-timeout",
            "SECONDS",
            "drop a peer that does not read for this long (default 30)",
            |s, v| s.server().write_timeout = seconds(v)?
        ),
        opt!(
            "--shutdown-grace",
            "SECONDS",
            "time for closing handshakes on SIGINT/SIGTERM (default 5)",
            |s, v| s.server().shutdown_grace = seconds(v)?
        ),
        opt!(
            "--max-frame-bytes",
            "N",
            "longest frame payload, 1009 (default 16777216; serve 65536)",
            |s, v| s.server().ws.limits.max_frame_bytes = at_least(1, v)?
        ),
        opt!(
            "--max-message-bytes",
            "N",
            "longest message, 1009 (default 67108864; serve 65536)",
            |s, v| s.server().ws.limits.max_message_bytes = at_least(1, v)?
        ),
        opt!(
            "--message-timeout",
            "SECONDS",
            "time to finish a fragmented message, 1008 (default 30)",
            |s, v| s.server().message_timeout = seconds(v)?
        ),
        opt!(
            "--max-buffered-bytes",
            "N",
            "bytes of unfinished messages and read buffers, all\n\
                   connections together; over it the largest holder\n\
                   is closed with 1013 (default 268435456)",
            |s, v| s.server().max_buffered_bytes = number(v)?
        ),
        opt!(
            "--max-json-values",
            "N",
            "JSON values in one event message, more is an error\n\
                   event; 0 for no limit (default: no limit; serve 4096)",
            |s, v| {
                let n: usize = number(v)?;
                s.server().max_json_values = (n > 0).then_some(n);
            }
        ),
        opt!(
            "--max-handshakes",
            "N",
            "connections still sending their handshake; a new\n\
                   one drops the oldest (default 1024)",
            |s, v| s.server().max_handshakes = at_least(1, v)?
        ),
        opt!(
            "--max-queue-bytes",
            "N",
            "send queue bound per connection, 1008 (default 1048576)",
            |s, v| s.server().max_queue_bytes = number(v)?
        ),
        opt!(
            "--max-connections",
            "N",
            "over it, HTTP 503 (default 16384)",
            |s, v| s.server().max_connections = number(v)?
        ),
        opt!(
            "--max-connections-per-ip",
            "N",
            "over it, HTTP 429 (default: no limit)",
            |s, v| s.server().max_connections_per_ip = Some(number(v)?)
        ),
        opt!(
            "--max-messages-per-second",
            "N",
            "per connection, over it 1008; 0 for no limit\n\
                   (default 1000; echo: no limit)",
            |s, v| {
                let n: u32 = number(v)?;
                s.server().max_messages_per_second = (n > 0).then_some(n);
            }
        ),
        opt!(
            "--trace-frames",
            "",
            "print every frame in and out, annotated",
            |s, _| s.server().trace_frames = true
        ),
        opt!(
            "--writer-threads",
            "N",
            "threads sending for other threads (default 1)",
            |s, v| s.server().writer_threads = at_least(1, v)?
        ),
        opt!(
            "--thread-stack-bytes",
            "N",
            "stack of each connection thread (default 131072)",
            |s, v| s.server().thread_stack_bytes = at_least(32 * 1024, v)?
        ),
        opt!(
            "--admin-listen",
            "ADDR",
            "admin listener (JSON of the connections); loopback\n\
                   unless --admin-token is given (default: none)",
            |s, v| s.server().admin_listen = Some(v.to_owned())
        ),
        opt!(
            "--admin-token",
            "TOKEN",
            "bearer token the admin listener requires; not empty",
            |s, v| {
                // `--admin-token "$UNSET"` must not leave the admin routes open to all.
                if v.trim().is_empty() {
                    return Err("the token is empty".into());
                }
                s.server().admin_token = Some(v.to_owned());
            }
        ),
        opt!(
            "--max-admin-requests",
            "N",
            "admin requests served at once, 503 beyond (default 16)",
            |s, v| s.server().max_admin_requests = at_least(1, v)?
        ),
        opt!(
            "--bad-input-logs-per-minute",
            "N",
            "log lines about one connection's bad input (default 10)",
            |s, v| s.server().bad_input_logs_per_minute = number(v)?
        ),
        opt!(
            "--max-http-body-bytes",
            "N",
            "largest POST body on the WebSocket port read for the handler, 413 over it (default 65536)",
            |s, v| s.server().max_http_body_bytes = number(v)?
        ),
        opt!(
            "--max-logged-input-bytes",
            "N",
            "client text copied into logs and errors (default 256)",
            |s, v| s.server().max_logged_input_bytes = number(v)?
        ),
        opt!(
            "--log-format",
            "human|json",
            "log line format (default human)",
            |s, v| {
                s.server().log_format = match v {
                    "human" => log::Format::Human,
                    "json" => log::Format::Json,
                    other => return Err(format!("'{other}': 'human' or 'json'")),
                };
            }
        ),
        opt!(
            "--log-level",
            "LEVEL",
            "debug, info, warn or error (default info)",
            |s, v| {
                s.server().log_level = match v {
                    "debug" => log::Level::Debug,
                    "info" => log::Level::Info,
                    "warn" => log::Level::Warn,
                    "error" => log::Level::Error,
                    other => return Err(format!("'{other}': debug, info, warn or error")),
                };
            }
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_server_option_parses_and_is_in_the_help() {
        let opts = server_options::<server::Config>();
        let text = help(&opts);
        for o in &opts {
            assert!(text.contains(o.name), "{} missing from the help", o.name);
            let value = match o.value {
                "" => vec![],
                "human|json" => vec!["json"],
                "LEVEL" => vec!["warn"],
                "ADDR" => vec!["127.0.0.1:0"],
                "TOKEN" => vec!["t"],
                _ => vec!["40000"],
            };
            let mut list = vec![o.name];
            list.extend(value);
            let mut config = server::Config::default();
            let parsed = parse("echo", &args(&list), &opts, &mut config, |_, p| {
                Err(format!("positional {p}"))
            });
            assert_eq!(parsed, Ok(Parsed::Run), "{}", o.name);
            assert_ne!(
                format!("{config:?}"),
                format!("{:?}", server::Config::default()),
                "{} changed nothing",
                o.name
            );
        }
    }

    #[test]
    fn mistakes_are_named() {
        let opts = server_options::<server::Config>();
        let mut config = server::Config::default();
        let mut run = |list: &[&str]| parse("echo", &args(list), &opts, &mut config, |_, _| Ok(()));
        assert!(run(&["--nope"])
            .unwrap_err()
            .contains("unknown option '--nope'"));
        assert!(run(&["--ping-interval"])
            .unwrap_err()
            .contains("needs a value"));
        assert!(run(&["--ping-interval", "0"])
            .unwrap_err()
            .starts_with("--ping-interval: give seconds"));
        assert!(run(&["--admin-token", " "]).unwrap_err().contains("empty"));
        assert_eq!(run(&["--help"]), Ok(Parsed::Help));
    }

    #[test]
    fn lifetimes_take_zero_and_long_spans() {
        assert_eq!(lifetime("0"), Ok(None));
        assert_eq!(
            lifetime("2592000"),
            Ok(Some(Duration::from_secs(2_592_000)))
        );
        assert!(lifetime("-1").is_err() && lifetime("1.5").is_err());
        assert!(lifetime("400000000").is_err());
    }

    #[test]
    fn long_names_put_their_help_on_the_next_line() {
        let opts: Vec<Opt<()>> = vec![Opt {
            name: "--a-very-long-option-name-indeed",
            value: "N",
            help: "first\nsecond",
            apply: |_, _| Ok(()),
        }];
        let text = help(&opts);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0].trim(), "--a-very-long-option-name-indeed N");
        assert_eq!(lines[1], format!("{:36}first", ""));
        assert_eq!(lines[2], format!("{:36}second", ""));
    }
}
