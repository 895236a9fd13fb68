//! How a connection says who it is, in the three ways sites already use
//! (docs/CONTRACTS.md), and the decision on its upgrade request.
//!
//! - **User to session**: `?userId=..&softId=..` with the session id in a `sessid`
//!   header or, from a browser, as the `Sec-WebSocket-Protocol` value. The site wrote
//!   the session id under the user's key; it must match, compared in constant time.
//! - **Session key**: `?session_key=..`; the site wrote the user's name and chat room
//!   under the key.
//! - **Session to user**: nothing in the request; the client sends `authenticate` with
//!   its session id once connected, and the site's `session-store-<id>` names the user
//!   (checked by the hub, not here).
//!
//! A request that tries the first two ways and fails gets 401 before any upgrade; a
//! request from a browser page whose `Origin` is not allowed gets 403.

use super::{Config, SessionId, UserId};
use crate::secure::constant_time_eq;
use crate::server::{Reject, Upgrade};
use crate::store::{Error as StoreError, Sessions};
use serde_json::Value;

/// A key template without exactly one `{placeholder}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadTemplate {
    /// The template as given.
    pub text: String,
}

impl std::fmt::Display for BadTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key template {:?} must hold one placeholder, such as {{userId}}",
            self.text
        )
    }
}

impl std::error::Error for BadTemplate {}

/// A key name with one placeholder, such as `session-store-{sessionId}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    prefix: String,
    suffix: String,
}

impl Template {
    /// Reads a template: text with exactly one `{name}` placeholder.
    pub fn parse(text: &str) -> Result<Template, BadTemplate> {
        let open = text.find('{');
        let close = text.find('}');
        match (open, close) {
            (Some(o), Some(c))
                if o < c
                    && text[c + 1..].find(['{', '}']).is_none()
                    && text[..o].find('}').is_none() =>
            {
                Ok(Template {
                    prefix: text[..o].to_owned(),
                    suffix: text[c + 1..].to_owned(),
                })
            }
            _ => Err(BadTemplate {
                text: text.to_owned(),
            }),
        }
    }

    /// The key for `value`.
    pub fn fill(&self, value: &str) -> String {
        format!("{}{value}{}", self.prefix, self.suffix)
    }

    /// The value a key was made from, if it was made from this template.
    pub fn extract<'k>(&self, key: &'k str) -> Option<&'k str> {
        let rest = key
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())?;
        (!rest.is_empty()).then_some(rest)
    }
}

/// What an accepted upgrade request said about its peer, kept as the connection's
/// handshake note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// `?userId` with a session id that matched the user's key.
    User {
        /// The user.
        user: UserId,
        /// The session id presented.
        session: SessionId,
    },
    /// `?session_key` found in the store.
    SessionKey {
        /// The key presented: the connection's session.
        key: SessionId,
        /// The user's name the site stored.
        user: UserId,
        /// The chat room the site stored, if any.
        room: Option<String>,
    },
    /// Nothing yet; the connection may `authenticate` later.
    Anonymous,
}

/// What the hub keeps with an accepted connection ([`crate::server::Note`]): its
/// claim, and the application it said it comes from (`softId`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// Who the upgrade said the peer is.
    pub claim: Claim,
    /// `softId` from the query, if any.
    pub soft_id: Option<String>,
}

/// Why an upgrade was refused, for the log and the metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP answer.
    pub reject: Reject,
    /// A label for metrics (`auth_missing_session`...).
    pub kind: &'static str,
    /// The store's error behind a 503, for the log.
    pub cause: Option<StoreError>,
}

fn refuse(status: u16, kind: &'static str, body: &str) -> Refusal {
    Refusal {
        reject: Reject {
            status,
            body: body.to_owned(),
            retry_after: None,
        },
        kind,
        cause: None,
    }
}

/// The session store failed: a 503 that the client may retry after a few seconds,
/// as it would after the server's own 503 when it is full.
fn unavailable(e: StoreError) -> Refusal {
    let mut r = refuse(
        503,
        "auth_store_unavailable",
        "the session store cannot be reached",
    );
    r.reject.retry_after = Some(5);
    r.cause = Some(e);
    r
}

/// Decides on an upgrade request: the claim it makes and the subprotocol to select,
/// or the refusal.
pub fn decide(
    config: &Config,
    sessions: &dyn Sessions,
    upgrade: &Upgrade,
) -> Result<(Admission, Option<String>), Refusal> {
    if !config.origins.is_empty() {
        // Browsers always send Origin, exactly once (RFC 6454 7.3); other clients need
        // not, and are not refused for its absence (RFC 6455 10.2: the check protects
        // pages, not servers). Two or more Origin fields come
        // from no browser: they are refused, since a check reading one and a proxy
        // reading the other would disagree.
        let mut origins = upgrade.headers("origin");
        match (origins.next(), origins.next()) {
            (Some(_), Some(_)) => {
                return Err(refuse(403, "origin_refused", "more than one Origin header"));
            }
            (Some(origin), None)
                if !config
                    .origins
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(origin.trim())) =>
            {
                return Err(refuse(403, "origin_refused", "this origin is not allowed"));
            }
            _ => {}
        }
    }
    let pairs = upgrade.query();
    let param = |names: &[&str]| {
        names.iter().find_map(|n| {
            pairs
                .iter()
                .find(|(k, v)| k == n && !v.is_empty())
                .map(|(_, v)| v.clone())
        })
    };
    let soft_id = param(&["softId", "softid"]);
    if let (Some(template), Some(user)) = (&config.user_session_key, param(&["userId"])) {
        // The header first; a browser offers the session id as its subprotocol.
        let header = upgrade
            .header("sessid")
            .map(str::trim)
            .filter(|h| !h.is_empty());
        let candidates: Vec<&str> = match header {
            Some(h) if !h.is_empty() => vec![h],
            _ => upgrade.protocols().iter().map(String::as_str).collect(),
        };
        if candidates.is_empty() {
            return Err(refuse(
                401,
                "auth_missing_session",
                "no session id was given",
            ));
        }
        let stored = sessions
            .get(&template.fill(&user))
            .map_err(unavailable)?
            .ok_or_else(|| refuse(401, "auth_unknown_user", "the session check failed"))?;
        let found = candidates
            .iter()
            .fold(None, |hit, c| {
                match constant_time_eq(c.as_bytes(), stored.as_bytes()) {
                    true => Some(*c),
                    false => hit,
                }
            })
            .ok_or_else(|| refuse(401, "auth_wrong_session", "the session check failed"))?;
        // A browser drops a connection whose 101 does not select its protocol.
        let protocol = header.is_none().then(|| found.to_owned());
        let claim = Claim::User {
            user: UserId::new(user),
            session: SessionId::from(found),
        };
        return Ok((Admission { claim, soft_id }, protocol));
    }
    if let (Some(template), Some(key)) = (&config.chat_session_key, param(&["session_key"])) {
        let stored = sessions
            .get(&template.fill(&key))
            .map_err(unavailable)?
            .ok_or_else(|| refuse(401, "auth_unknown_session", "the session check failed"))?;
        let (user, room) = read_chat_session(&stored)
            .ok_or_else(|| refuse(401, "auth_bad_session", "the session check failed"))?;
        let claim = Claim::SessionKey {
            key: SessionId::new(key),
            user: UserId::new(user),
            room,
        };
        return Ok((Admission { claim, soft_id }, None));
    }
    if !config.anonymous && config.session_user_key.is_none() {
        return Err(refuse(
            401,
            "auth_anonymous",
            "a session is required (userId or session_key)",
        ));
    }
    Ok((
        Admission {
            claim: Claim::Anonymous,
            soft_id,
        },
        None,
    ))
}

/// The user's name and chat room from a stored chat session: a JSON object with
/// `user` (or `user_name`) and `room` (or `chat_room`, a string or a number), or a
/// plain string, the name alone.
pub fn read_chat_session(stored: &str) -> Option<(String, Option<String>)> {
    let name_ok = |s: &str| !s.trim().is_empty();
    match serde_json::from_str::<Value>(stored) {
        Ok(Value::Object(map)) => {
            let user = ["user", "user_name"]
                .iter()
                .find_map(|k| map.get(*k).and_then(Value::as_str))
                .filter(|s| name_ok(s))?;
            let room = ["room", "chat_room"]
                .iter()
                .find_map(|k| match map.get(*k) {
                    Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                });
            Some((user.to_owned(), room))
        }
        // A name written as a JSON string is the name, without its quotes.
        Ok(Value::String(name)) if name_ok(&name) => Some((name, None)),
        Ok(_) | Err(_) if name_ok(stored) && !stored.trim_start().starts_with('{') => {
            Some((stored.to_owned(), None))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_and_extract() {
        let t = Template::parse("session-store-{sessionId}").unwrap();
        assert_eq!(t.fill("abc"), "session-store-abc");
        assert_eq!(t.extract("session-store-abc"), Some("abc"));
        assert_eq!(t.extract("session-store-"), None);
        assert_eq!(t.extract("other-abc"), None);
        let bare = Template::parse("{userId}").unwrap();
        assert_eq!(bare.extract("23"), Some("23"));
        let both = Template::parse("u:{id}:sess").unwrap();
        assert_eq!(both.fill("7"), "u:7:sess");
        assert_eq!(both.extract("u:7:sess"), Some("7"));
        assert_eq!(both.extract("u:7:sessx"), None);
        for bad in ["plain", "{a}{b}", "}x{", "{", "a}b{c}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chat_sessions_in_every_stored_form() {
        assert_eq!(
            read_chat_session(r#"{"user_name":"Michael Redman","chat_room":0}"#),
            Some(("Michael Redman".into(), Some("0".into())))
        );
        assert_eq!(
            read_chat_session(r#"{"user":"ann","room":"lobby"}"#),
            Some(("ann".into(), Some("lobby".into())))
        );
        assert_eq!(read_chat_session("ann"), Some(("ann".into(), None)));
        assert_eq!(read_chat_session(r#""ann""#), Some(("ann".into(), None)));
        assert_eq!(read_chat_session("42"), Some(("42".into(), None)));
        for bad in [
            "",
            "  ",
            r#"{"room":1}"#,
            r#"{"user":""}"#,
            r#"{"user":3}"#,
            "{broken",
        ] {
            assert_eq!(read_chat_session(bad), None, "{bad}");
        }
    }
}
