//! The client role under test: an agent for Autobahn|Testsuite's `fuzzingserver`,
//! built on [`switchboard::client::Client`].
//!
//! It asks the fuzzing server how many cases there are, runs each one by echoing every
//! message it receives (the client's [`Connection`](switchboard::protocol::connection)
//! answers pings and closes, and fails on broken rules), then asks the server to write
//! its reports.
//!
//! ```text
//! cargo run --release --example autobahn_client -- ws://127.0.0.1:9001 [AGENT]
//! ```

use std::process::ExitCode;
use std::time::Duration;
use switchboard::client::{Client, Error};
use switchboard::protocol::message::Event;

/// How long one case may stay silent before the agent gives up on it.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(base) = args.next() else {
        eprintln!("usage: autobahn_client ws://HOST:PORT [AGENT]");
        return ExitCode::from(2);
    };
    let agent = args.next().unwrap_or_else(|| "switchboard".into());
    let base = base.trim_end_matches('/');
    match run(base, &agent) {
        Ok(count) => {
            println!("autobahn client: {count} cases run");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("autobahn client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(base: &str, agent: &str) -> Result<u32, Error> {
    let count = case_count(base)?;
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        // A case that fails the connection is the case's verdict, not the agent's.
        if let Err(e) = echo_case(&url) {
            eprintln!("case {case}: {e}");
        }
    }
    let mut reports = Client::connect(&format!("{base}/updateReports?agent={agent}"))?;
    reports.set_read_timeout(Some(CASE_TIMEOUT))?;
    while !matches!(reports.read(), Err(_) | Ok(Event::Close(_))) {}
    reports.close(1000, "")?;
    Ok(count)
}

fn case_count(base: &str) -> Result<u32, Error> {
    let mut client = Client::connect(&format!("{base}/getCaseCount"))?;
    client.set_read_timeout(Some(CASE_TIMEOUT))?;
    let mut count = None;
    loop {
        match client.read()? {
            Event::Text(t) => count = t.trim().parse().ok(),
            Event::Close(_) => break,
            _ => {}
        }
    }
    client.close(1000, "")?;
    count.ok_or_else(|| std::io::Error::other("the fuzzing server sent no case count").into())
}

/// Echoes every message until the server closes, then waits for it to end TCP
/// (RFC 6455 7.1.1: the server closes TCP first).
fn echo_case(url: &str) -> Result<(), Error> {
    let mut client = Client::connect(url)?;
    client.set_read_timeout(Some(CASE_TIMEOUT))?;
    let sender = client.sender();
    let ended = loop {
        match client.read() {
            Ok(Event::Text(t)) => sender.send_text(&t),
            Ok(Event::Binary(b)) => sender.send_binary(&b),
            Ok(Event::Close(_)) => break Ok(()),
            Ok(Event::Ping(_) | Event::Pong(_)) => Ok(()),
            Err(e) => break Err(e),
        }
        .ok();
    };
    // The close (the echo, or the failing one) is out: wait for the server's FIN.
    client.close(1000, "")?;
    ended
}
