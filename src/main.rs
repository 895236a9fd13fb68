//! The `switchboard` command.

use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Duration;
use switchboard::server::echo;

const USAGE: &str = "\
switchboard: a WebSocket server with RFC 6455 written by hand

usage:
  switchboard echo [options]        echo every message back to its sender
      --listen ADDR                 address to listen on (default 127.0.0.1:9001)
      --mode echo                   what to do with messages (only 'echo' for now)
      --trace-frames                print every frame in and out, annotated
      --handshake-timeout SECONDS   time to send the opening handshake (default 10)
      --idle-timeout SECONDS        close a connection silent this long, 1001 (default 120)
      --write-timeout SECONDS       drop a peer that does not read for this long (default 30)
      --max-frame-bytes N           longest frame payload (default 16777216)
      --max-message-bytes N         longest message (default 67108864)
  switchboard bench codec [--seconds S]
                                    measure masking and frame decoding in-process
  switchboard --help | --version
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
        Some("bench") => run_bench(&args[1..]),
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

/// A positive number of seconds, up to a day.
fn seconds(text: &str, name: &str) -> Result<Duration, String> {
    let secs: f64 = number(text, name)?;
    if !(secs > 0.0 && secs <= 86400.0) {
        return Err(format!("{name}: give seconds between 0 and 86400"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn run_echo(args: &[String]) -> Result<(), String> {
    let mut config = echo::Config::default();
    let mut listen = String::from("127.0.0.1:9001");
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--listen" => listen = value(&mut it, arg)?.to_owned(),
            "--mode" => match value(&mut it, arg)? {
                "echo" => {}
                other => return Err(format!("--mode {other}: only 'echo' is implemented")),
            },
            "--trace-frames" => config.trace_frames = true,
            "--handshake-timeout" => config.handshake_timeout = seconds(value(&mut it, arg)?, arg)?,
            "--idle-timeout" => config.idle_timeout = seconds(value(&mut it, arg)?, arg)?,
            "--write-timeout" => config.write_timeout = seconds(value(&mut it, arg)?, arg)?,
            "--max-frame-bytes" => {
                config.ws.limits.max_frame_bytes = number(value(&mut it, arg)?, arg)?
            }
            "--max-message-bytes" => {
                config.ws.limits.max_message_bytes = number(value(&mut it, arg)?, arg)?
            }
            other => return Err(format!("echo: unknown option '{other}'")),
        }
    }
    let listener =
        TcpListener::bind(&listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // The first line on stdout says where we listen: tests bind port 0 and read it.
    println!("listening on {addr}");
    echo::serve(listener, config).map_err(|e| e.to_string())
}

fn run_bench(args: &[String]) -> Result<(), String> {
    let mut seconds = 1.0f64;
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("codec") => {}
        _ => return Err("bench: say which benchmark ('codec')".into()),
    }
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
