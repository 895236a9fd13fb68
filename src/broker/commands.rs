//! The WSBroker contract without I/O: what a connection's `sessionInfo` holds, what
//! the back end is told of each event, the commands it answers with, and how a
//! `match` selects connections. docs/BROKER.md gives each rule and where it differs
//! from the earlier broker.

use serde_json::{Map, Value};

/// What is known of one connection: cookies, `ip`, `wskey`, and what `session`
/// commands set. Sent to the back end with every event as the `connection` field.
pub type SessionInfo = Map<String, Value>;

/// A value as JavaScript's `String(value)` writes it: what the earlier broker compared
/// `match` criteria as, so that `42` matches `"42"`. `None` (a missing key) is
/// `"undefined"`.
pub fn js_string(value: Option<&Value>) -> String {
    match value {
        None => "undefined".into(),
        Some(Value::Null) => "null".into(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            // A whole number written as a float (`1.0`) is `1` in JavaScript.
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
            _ => n.to_string(),
        },
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::Null => String::new(),
                v => js_string(Some(v)),
            })
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::Object(_)) => "[object Object]".into(),
    }
}

/// A `match`: every key must match the connection's `sessionInfo`, compared as
/// lowercased strings; `'*'` matches any value, or none. An empty `match` matches
/// every connection. The wanted values are lowercased once, when the command is read,
/// not once per connection it is matched against.
#[derive(Clone, Debug, PartialEq)]
pub struct Criteria(Vec<(String, Option<String>)>);

impl Criteria {
    /// Criteria from a `match` object.
    pub fn new(map: Map<String, Value>) -> Self {
        Criteria(
            map.into_iter()
                .map(|(key, wanted)| {
                    let wanted = js_string(Some(&wanted));
                    (key, (wanted != "*").then(|| lowercase(&wanted)))
                })
                .collect(),
        )
    }

    /// Whether `info` matches.
    pub fn matches(&self, info: &SessionInfo) -> bool {
        self.0.iter().all(|(key, wanted)| match wanted {
            None => true,
            Some(wanted) => match info.get(key) {
                // The common case, compared without a copy.
                Some(Value::String(s)) => s.chars().flat_map(char::to_lowercase).eq(wanted.chars()),
                other => lowercase(&js_string(other)) == *wanted,
            },
        })
    }
}

/// Lowercased a character at a time, the same way on both sides of a comparison.
fn lowercase(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// Which connections a command applies to.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Those whose `sessionInfo` matches.
    Matching(Criteria),
    /// No `match`: the connection whose event the back end answers, or, in a command
    /// POSTed directly, every connection.
    Default,
}

impl Target {
    /// Whether a connection is selected: `origin` says whether it caused the event
    /// being answered (always `false` for a direct command).
    pub fn selects(&self, info: &SessionInfo, origin: bool, direct: bool) -> bool {
        match self {
            Target::Matching(c) => c.matches(info),
            Target::Default => direct || origin,
        }
    }
}

/// One command of the back end.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Close the connections with 1000.
    Close(Target),
    /// The `sessionInfo` of matching connections (every connection without `match`);
    /// answered to a direct command.
    List(Option<Criteria>),
    /// Write `text` to the log.
    Log(String),
    /// Send the JSON text of `message` to the connections.
    Send {
        /// The text sent: `JSON.stringify(message)`.
        text: String,
        /// To whom.
        target: Target,
    },
    /// Merge `data` into the connections' `sessionInfo`.
    Session {
        /// An object, merged key by key (objects within it too).
        data: Map<String, Value>,
        /// Whose.
        target: Target,
    },
}

impl Command {
    /// Whether the command is for connections beyond the one whose event is answered
    /// (a `match`, or none in a direct command): with several nodes, for every node's.
    /// `list` and `log` are answered and written where they were sent.
    pub fn reaches_every_node(&self, direct: bool) -> bool {
        match self {
            Command::Close(target)
            | Command::Send { target, .. }
            | Command::Session { target, .. } => direct || matches!(target, Target::Matching(_)),
            Command::List(_) | Command::Log(_) => false,
        }
    }
}

/// Why one entry of the back end's list was not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// Not an object with a string `type`.
    NotACommand,
    /// A `type` the broker does not know (the earlier broker handed these to a hook).
    Unknown(String),
    /// A known command with a field of the wrong kind: which field, of which command.
    BadField(&'static str, &'static str),
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skipped::NotACommand => f.write_str("not an object with a \"type\""),
            Skipped::Unknown(kind) => write!(f, "unknown command {kind:?}"),
            Skipped::BadField(command, field) => {
                write!(f, "\"{field}\" of {command} is not what it should be")
            }
        }
    }
}

/// `match`: absent or null is none; an object is criteria; anything else is wrong.
fn target(cmd: &Map<String, Value>, command: &'static str) -> Result<Target, Skipped> {
    match cmd.get("match") {
        None | Some(Value::Null) => Ok(Target::Default),
        Some(Value::Object(m)) => Ok(Target::Matching(Criteria::new(m.clone()))),
        Some(_) => Err(Skipped::BadField(command, "match")),
    }
}

/// Reads one entry of the back end's list.
pub fn read_command(entry: &Value) -> Result<Command, Skipped> {
    let Value::Object(cmd) = entry else {
        return Err(Skipped::NotACommand);
    };
    let Some(Value::String(kind)) = cmd.get("type") else {
        return Err(Skipped::NotACommand);
    };
    match kind.as_str() {
        "close" => Ok(Command::Close(target(cmd, "close")?)),
        "list" => match target(cmd, "list")? {
            Target::Matching(c) => Ok(Command::List(Some(c))),
            Target::Default => Ok(Command::List(None)),
        },
        "log" => Ok(Command::Log(match cmd.get("text") {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        })),
        "send" => {
            let target = target(cmd, "send")?;
            let message = cmd
                .get("message")
                .ok_or(Skipped::BadField("send", "message"))?;
            Ok(Command::Send {
                text: message.to_string(),
                target,
            })
        }
        "session" => {
            let target = target(cmd, "session")?;
            match cmd.get("data") {
                Some(Value::Object(data)) => Ok(Command::Session {
                    data: data.clone(),
                    target,
                }),
                _ => Err(Skipped::BadField("session", "data")),
            }
        }
        other => Err(Skipped::Unknown(other.to_owned())),
    }
}

/// The back end's answer, when it is a list of commands: a non-empty JSON array,
/// whatever the HTTP status. Anything else (an object, an empty list, HTML, nothing)
/// is no commands.
pub fn read_answer(body: &[u8]) -> Option<Vec<Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(list)) if !list.is_empty() => Some(list),
        _ => None,
    }
}

/// Merges `data` into `info` the way lodash's `merge` does for JSON: objects key by
/// key and arrays index by index, recursively; any other value replaces.
pub fn merge(info: &mut Map<String, Value>, data: &Map<String, Value>) {
    for (key, value) in data {
        match info.get_mut(key) {
            Some(old) => merge_value(old, value),
            None => {
                info.insert(key.clone(), value.clone());
            }
        }
    }
}

fn merge_value(old: &mut Value, new: &Value) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => merge(o, n),
        (Value::Array(o), Value::Array(n)) => {
            for (i, v) in n.iter().enumerate() {
                match o.get_mut(i) {
                    Some(slot) => merge_value(slot, v),
                    None => o.push(v.clone()),
                }
            }
        }
        (old, new) => *old = new.clone(),
    }
}

/// The message the back end is told of for a client's text: the client's JSON object
/// with `type` made `client-<type>` (kept when it starts with `client-` already;
/// `client-message` when absent or empty). A `type` that is not a string is written
/// as JavaScript would (`5` gives `client-5`). JSON that is not an object is passed as
/// `{"type": "client-message", "data": value}`; text that is not JSON as
/// `{"type": "client-message", "json_error": "SyntaxError: .. // source: <text>"}`.
pub fn client_event(text: &str) -> Value {
    let mut message = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => m,
        Ok(other) => {
            let mut m = Map::new();
            m.insert("data".into(), other);
            m
        }
        Err(e) => {
            let mut m = Map::new();
            m.insert(
                "json_error".into(),
                Value::String(format!("SyntaxError: {e} // source: {text}")),
            );
            m
        }
    };
    // What JavaScript counts as false (`!message.type`) gives `client-message`.
    let kind = match message.get("type") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => "message".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "message".to_owned(),
        Some(Value::Number(n)) if n.as_f64() == Some(0.0) => "message".to_owned(),
        Some(v) => js_string(Some(v)),
    };
    let kind = if kind.starts_with("client-") {
        kind
    } else {
        format!("client-{kind}")
    };
    message.insert("type".into(), Value::String(kind));
    Value::Object(message)
}

/// The message the back end is told of for an event `name` of `switchboard serve`'s
/// envelope (`{"event": name, "data": data}`): `{"type": "client-<name>"}` with the
/// fields of `data` when it is an object (so a page that sends the earlier broker's
/// `{"type": "hello", "content": ..}` gives what it gave there), else with `"data"`.
pub fn serve_event(name: &str, data: &Value) -> Value {
    let mut message = match data {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        other => {
            let mut m = Map::new();
            m.insert("data".into(), other.clone());
            m
        }
    };
    let kind = if name.starts_with("client-") {
        name.to_owned()
    } else {
        format!("client-{name}")
    };
    message.insert("type".into(), Value::String(kind));
    Value::Object(message)
}

/// A connection's first `sessionInfo`: its cookies (names lowercased, values as sent),
/// then `ip` and `wskey`, which no cookie can set.
pub fn session_info(cookie_headers: &[&str], ip: &str, wskey: &str) -> SessionInfo {
    let mut info = Map::new();
    for header in cookie_headers {
        for item in header.split(';') {
            let Some((name, value)) = item.split_once('=') else {
                continue;
            };
            let name = name.trim().to_lowercase();
            if !name.is_empty() {
                info.insert(name, Value::String(value.to_owned()));
            }
        }
    }
    info.insert("ip".into(), Value::String(ip.to_owned()));
    info.insert("wskey".into(), Value::String(wskey.to_owned()));
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(v: Value) -> SessionInfo {
        match v {
            Value::Object(m) => m,
            _ => panic!("an object"),
        }
    }

    fn criteria(v: Value) -> Criteria {
        Criteria::new(info(v))
    }

    #[test]
    fn matching_is_by_lowercased_strings_with_a_wildcard() {
        let c = info(json!({ "room": "Lobby", "userId": 42, "admin": true }));
        assert!(criteria(json!({ "room": "lobby" })).matches(&c));
        assert!(!criteria(json!({ "ROOM": "lobby" })).matches(&info(json!({ "ROOM": "x" }))));
        assert!(
            criteria(json!({ "userid": "*" })).matches(&c),
            "* matches a missing key too"
        );
        assert!(criteria(json!({ "userId": "42", "room": "LOBBY" })).matches(&c));
        assert!(criteria(json!({ "userId": 42.0 })).matches(&c));
        assert!(criteria(json!({ "admin": "TRUE" })).matches(&c));
        assert!(!criteria(json!({ "userId": "4" })).matches(&c));
        assert!(!criteria(json!({ "room": "lobby", "x": "y" })).matches(&c));
        assert!(
            criteria(json!({})).matches(&c),
            "an empty match is every connection"
        );
        // A missing key is "undefined", as it was.
        assert!(criteria(json!({ "nope": "undefined" })).matches(&c));
    }

    #[test]
    fn commands_are_read_and_wrong_ones_skipped_with_a_reason() {
        let read = |v: Value| read_command(&v);
        assert_eq!(
            read(json!({ "type": "close" })),
            Ok(Command::Close(Target::Default))
        );
        assert_eq!(
            read(json!({ "type": "send", "message": { "a": 1 }, "match": { "r": "x" } })),
            Ok(Command::Send {
                text: r#"{"a":1}"#.into(),
                target: Target::Matching(criteria(json!({ "r": "x" })))
            })
        );
        assert_eq!(read(json!({ "type": "list" })), Ok(Command::List(None)));
        assert_eq!(
            read(json!({ "type": "log", "text": "hi" })),
            Ok(Command::Log("hi".into()))
        );
        assert_eq!(
            read(json!({ "type": "jump" })),
            Err(Skipped::Unknown("jump".into()))
        );
        assert_eq!(read(json!(null)), Err(Skipped::NotACommand));
        assert_eq!(read(json!({ "type": 5 })), Err(Skipped::NotACommand));
        assert_eq!(
            read(json!({ "type": "send" })),
            Err(Skipped::BadField("send", "message"))
        );
        assert_eq!(
            read(json!({ "type": "session", "data": "x" })),
            Err(Skipped::BadField("session", "data"))
        );
        assert_eq!(
            read(json!({ "type": "close", "match": "all" })),
            Err(Skipped::BadField("close", "match"))
        );
    }

    #[test]
    fn only_a_non_empty_list_is_an_answer() {
        assert_eq!(
            read_answer(br#"[{"type":"log"}]"#).map(|l| l.len()),
            Some(1)
        );
        for body in [&b"[]"[..], b"{}", b"", b"<html>", b"\"[1]\"", b"null"] {
            assert_eq!(read_answer(body), None, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn client_messages_become_client_events() {
        assert_eq!(
            client_event(r#"{"type":"hello","content":"there"}"#),
            json!({ "type": "client-hello", "content": "there" })
        );
        assert_eq!(
            client_event(r#"{"type":"client-x"}"#),
            json!({ "type": "client-x" })
        );
        assert_eq!(
            client_event(r#"{"a":1}"#),
            json!({ "type": "client-message", "a": 1 })
        );
        assert_eq!(client_event(r#"{"type":5}"#), json!({ "type": "client-5" }));
        assert_eq!(
            client_event(r#"{"type":0}"#),
            json!({ "type": "client-message" })
        );
        assert_eq!(
            client_event("null"),
            json!({ "type": "client-message", "data": null })
        );
        assert_eq!(
            client_event("[1,2]"),
            json!({ "type": "client-message", "data": [1, 2] })
        );
        let bad = client_event("not json");
        assert_eq!(bad["type"], "client-message");
        let why = bad["json_error"].as_str().unwrap();
        assert!(
            why.starts_with("SyntaxError: ") && why.ends_with("// source: not json"),
            "{why}"
        );
    }

    #[test]
    fn serve_events_become_client_events() {
        assert_eq!(
            serve_event("hello", &json!({ "content": "there" })),
            json!({ "type": "client-hello", "content": "there" })
        );
        assert_eq!(
            serve_event("client-x", &json!(null)),
            json!({ "type": "client-x" })
        );
        assert_eq!(
            serve_event("move", &json!([1, 2])),
            json!({ "type": "client-move", "data": [1, 2] })
        );
        // The event's name wins over a `type` in its data.
        assert_eq!(
            serve_event("a", &json!({ "type": "b" })),
            json!({ "type": "client-a" })
        );
    }

    #[test]
    fn session_info_takes_cookies_but_not_their_ip() {
        let i = session_info(
            &["Room=Lobby; ip=6.6.6.6; token=a=b; flag", " X = y "],
            "10.0.0.1",
            "k==",
        );
        assert_eq!(i["room"], "Lobby");
        assert_eq!(i["token"], "a=b", "a value is kept as sent, '=' and all");
        assert_eq!(i["x"], " y ");
        assert_eq!(i["ip"], "10.0.0.1");
        assert_eq!(i["wskey"], "k==");
        assert!(!i.contains_key("flag"));
    }

    #[test]
    fn session_data_merges_deeply() {
        let mut i = info(json!({ "a": { "x": 1, "y": 2 }, "list": [1, 2, 3], "n": 1 }));
        merge(
            &mut i,
            &info(json!({ "a": { "y": 5, "z": 6 }, "list": [9], "n": "s", "new": true })),
        );
        assert_eq!(
            Value::Object(i),
            json!({ "a": { "x": 1, "y": 5, "z": 6 }, "list": [9, 2, 3], "n": "s", "new": true })
        );
    }

    #[test]
    fn values_are_written_as_javascript_writes_them() {
        for (v, s) in [
            (json!(42), "42"),
            (json!(1.5), "1.5"),
            (json!(2.0), "2"),
            (json!(true), "true"),
            (json!(null), "null"),
            (json!([1, "a", null]), "1,a,"),
            (json!({}), "[object Object]"),
        ] {
            assert_eq!(js_string(Some(&v)), s, "{v}");
        }
        assert_eq!(js_string(None), "undefined");
    }
}
