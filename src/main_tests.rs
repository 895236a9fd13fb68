//! The command line's tables, checked against their help.

use super::*;

/// A value each placeholder accepts.
fn sample(placeholder: &str) -> Option<&'static str> {
    match placeholder {
        "" => None,
        "ADDR" => Some("127.0.0.1:0"),
        "URL" => Some("redis://127.0.0.1:1/0"),
        "T|off" => Some("key-{x}"),
        "echo|broadcast" => Some("broadcast"),
        "SECONDS" => Some("7"),
        "N" => Some("3"),
        "IP" => Some("127.0.0.1"),
        _ => Some("value"),
    }
}

fn check_table<S>(command: &str, opts: &[Opt<S>], text: &str, mut fresh: impl FnMut() -> S) {
    for o in opts {
        assert!(
            text.contains(o.name),
            "{command}: {} not in the help",
            o.name
        );
        let mut args = vec![o.name.to_owned()];
        args.extend(sample(o.value).map(str::to_owned));
        let mut settings = fresh();
        assert_eq!(
            cli::parse(command, &args, opts, &mut settings, |_, _| Ok(())),
            Ok(Parsed::Run),
            "{command} {args:?}"
        );
    }
}

/// `serve`'s settings, for a parse.
fn serve_settings() -> ServeSettings {
    ServeSettings {
        server: serve_defaults(),
        hub: hub::Config::default(),
        listen: String::new(),
        redis_url: None,
        history: 1,
        history_ttl: None,
        store_timeout: Duration::from_secs(1),
        redis_replicas: 0,
        bridge: broker_command::Bridge::default(),
    }
}

#[test]
fn every_command_option_parses_and_is_in_its_help() {
    check_table("serve", &serve_options(), &serve_help(), serve_settings);
    check_table(
        "serve",
        &broker_command::bridge_options(),
        &serve_help(),
        serve_settings,
    );
    let echo_help = server_command_help("switchboard echo", &echo_options());
    check_table("echo", &echo_options(), &echo_help, || EchoSettings {
        server: server::Config::default(),
        listen: String::new(),
        broadcast: false,
        protocols: Vec::new(),
    });
    check_table(
        "connect",
        &connect_options(),
        &cli::help(&connect_options()),
        ConnectSettings::default,
    );
    assert!(serve_help().contains("--max-buffered-bytes"));
}

#[test]
fn history_ttl_takes_what_its_help_promises() {
    let mut s = serve_settings();
    for (given, kept) in [("0", None), ("2592000", Some(2_592_000))] {
        let args = vec!["--history-ttl".to_owned(), given.to_owned()];
        cli::parse("serve", &args, &serve_options(), &mut s, |_, _| Ok(())).unwrap();
        assert_eq!(s.history_ttl, kept.map(Duration::from_secs));
    }
}

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
