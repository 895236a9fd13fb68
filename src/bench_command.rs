//! `switchboard bench`: the load generators of `switchboard::loadgen` and the codec
//! measurements, from the command line.

use crate::cli;
use std::time::Duration;

const BENCH_USAGE: &str = "\
usage:
  switchboard bench codec [--seconds S]
                                    measure masking and frame decoding in-process
  switchboard bench echo URL        load a ws:// server; each prints one JSON line
      [--conns 50] [--inflight 16] [--size 32] [--seconds 10]
  switchboard bench broadcast URL   (against a server in broadcast mode)
      [--subs 100] [--stalled 0] [--messages 1000] [--rate 100] [--size 32] [--drain 5]
  switchboard bench hold URL [--conns 1000] [--seconds 10]
  switchboard bench chat URL        (against examples/chat.rs)
      [--users 50] [--every 1] [--seconds 10]
  switchboard bench broker URL      clients in one room, each message through the back end
      [--clients 200] [--messages 10] [--drain 30]   (bench/broker/)
  switchboard bench private URL --admin-port P   (against switchboard serve)
      [--users 50] [--every 1] [--seconds 10] [--pids P,P] [--redis-port R]
  switchboard bench room URL --admin-port P      (against switchboard serve)
      [--members 1000] [--rate 20] [--seconds 10] [--pids P,P] [--redis-port R]
      URL may list several nodes, comma-separated: users are spread over them in
      turn; --pids and --redis-port add the nodes' and Redis's CPU per message
      (bench/cluster.sh)
";

/// What the hub's benches (`private`, `room`) are aimed at: the admin port of one node,
/// which they write sessions through, and the Redis port the meter reads, if given.
fn hub_target(
    take: &mut impl FnMut(&str, f64) -> f64,
    meter: &mut switchboard::loadgen::Meter,
    scenario: &str,
) -> Result<u16, String> {
    let admin = take("admin-port", 0.0);
    if !(1.0..=65535.0).contains(&admin) {
        return Err(format!(
            "bench {scenario}: give --admin-port, the serve's admin listener"
        ));
    }
    let redis = take("redis-port", 0.0);
    meter.redis_port = (1.0..=65535.0).contains(&redis).then_some(redis as u16);
    Ok(admin as u16)
}

/// Takes the value that follows option `name`.
fn value<'a>(it: &mut impl Iterator<Item = &'a String>, name: &str) -> Result<&'a str, String> {
    it.next()
        .map(String::as_str)
        .ok_or_else(|| format!("{name} needs a value"))
}

fn number<T: std::str::FromStr>(text: &str, name: &str) -> Result<T, String> {
    cli::number(text).map_err(|e| format!("{name}: {e}"))
}

pub fn run_bench(args: &[String]) -> Result<(), String> {
    let scenario = args.first().map(String::as_str);
    if args.iter().any(|a| a == "--help" || a == "-h") || scenario.is_none() {
        print!("{BENCH_USAGE}");
        return Ok(());
    }
    if scenario == Some("codec") {
        return run_bench_codec(&args[1..]);
    }
    let url = args
        .get(1)
        .filter(|u| !u.starts_with("--"))
        .ok_or("bench: give a ws:// URL after the scenario")?;
    let mut opts: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
    let mut meter = switchboard::loadgen::Meter::default();
    let mut it = args[2..].iter();
    while let Some(arg) = it.next() {
        if arg == "--pids" {
            let list = value(&mut it, arg)?;
            for pid in list.split(',') {
                meter.pids.push(number(pid, arg)?);
            }
            continue;
        }
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
    type Run = Box<dyn FnOnce() -> Result<serde_json::Value, switchboard::loadgen::Error>>;
    let run: Run = match scenario {
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
        Some("broker") => {
            let (clients, messages, drain) = (
                take("clients", 200.0),
                take("messages", 10.0),
                take("drain", 30.0),
            );
            Box::new(move || {
                switchboard::loadgen::broker(
                    &url,
                    clients.max(1.0) as usize,
                    messages as u64,
                    drain,
                )
            })
        }
        Some("private") => {
            let admin = hub_target(&mut take, &mut meter, "private")?;
            let (users, every, secs) = (
                take("users", 50.0),
                take("every", 1.0),
                take("seconds", 10.0),
            );
            Box::new(move || {
                switchboard::loadgen::private(
                    &url,
                    admin,
                    users.max(2.0) as usize,
                    every.max(0.001),
                    secs,
                    &meter,
                )
            })
        }
        Some("room") => {
            let admin = hub_target(&mut take, &mut meter, "room")?;
            let (members, rate, secs) = (
                take("members", 1000.0),
                take("rate", 20.0),
                take("seconds", 10.0),
            );
            Box::new(move || {
                switchboard::loadgen::room(
                    &url,
                    admin,
                    members.max(2.0) as usize,
                    rate.max(0.01),
                    secs,
                    &meter,
                )
            })
        }
        _ => {
            return Err("bench: echo, broadcast, hold, chat, private, room, broker or codec".into())
        }
    };
    if let Some(unused) = opts.keys().next() {
        return Err(format!("bench: --{unused} does not apply here"));
    }
    let report = run().map_err(|e| format!("bench: {e}"))?;
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
