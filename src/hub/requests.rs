//! Clients' requests, each read once from the envelope's `data` into its type, within
//! the limits of [`Config`]. A handler gets fields that are already checked: ids
//! within [`Config::max_id_chars`], texts within [`Config::max_text_chars`], room names
//! within [`Config::max_room_name_chars`]. What is wrong with a request is an
//! [`Error::BadRequest`] naming the field, before anything is done for it.
//!
//! Ids may be sent as numbers (`"to": 23`); they are read as their decimal text, so
//! `23` and `"23"` are one user, as the earlier systems' sites expect.

use super::{Config, Error, SessionId, UserId};
use crate::store::EntryId;
use serde_json::Value;

/// A request read from `data` within `config`'s limits.
pub(super) trait Request: Sized {
    fn read(data: &Value, config: &Config) -> Result<Self, Error>;
}

/// A string field, or a number read as its decimal text; `None` when absent, empty or
/// of another type.
pub(super) fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A list of user ids, numbers or strings; a single id is a list of one.
pub(super) fn user_list(v: Option<&Value>) -> Option<Vec<UserId>> {
    let user = |v: &Value| text_of(v).map(UserId::new);
    match v? {
        Value::Array(items) => items.iter().map(user).collect(),
        one => user(one).map(|u| vec![u]),
    }
}

fn bad(why: String) -> Error {
    Error::BadRequest(why)
}

/// The fields of one request's data.
struct Fields<'a> {
    data: &'a Value,
    config: &'a Config,
}

impl Fields<'_> {
    /// A user or session id: text or a number, within [`Config::max_id_chars`].
    fn id(&self, name: &str) -> Result<String, Error> {
        let id = self
            .data
            .get(name)
            .and_then(text_of)
            .ok_or_else(|| bad(format!("\"{name}\" is required (a string)")))?;
        if id.chars().count() > self.config.max_id_chars {
            return Err(bad(format!(
                "\"{name}\" is longer than {} characters",
                self.config.max_id_chars
            )));
        }
        Ok(id)
    }

    fn user(&self, name: &str) -> Result<UserId, Error> {
        self.id(name).map(UserId::new)
    }

    /// A message's text: not blank, within [`Config::max_text_chars`].
    fn text(&self, name: &str) -> Result<String, Error> {
        let text = self
            .data
            .get(name)
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| bad(format!("\"{name}\" is required (text)")))?;
        self.check_length(name, text)?;
        Ok(text.to_owned())
    }

    /// An optional text, within [`Config::max_text_chars`].
    fn optional_text(&self, name: &str) -> Result<Option<String>, Error> {
        match self.data.get(name).and_then(Value::as_str) {
            Some(text) => self
                .check_length(name, text)
                .map(|()| Some(text.to_owned())),
            None => Ok(None),
        }
    }

    fn check_length(&self, name: &str, text: &str) -> Result<(), Error> {
        if text.chars().count() > self.config.max_text_chars {
            return Err(bad(format!(
                "\"{name}\" is longer than {} characters",
                self.config.max_text_chars
            )));
        }
        Ok(())
    }

    /// `room`: 1 to [`Config::max_room_name_chars`] characters, no control characters.
    fn room(&self) -> Result<String, Error> {
        let room = self
            .data
            .get("room")
            .and_then(text_of)
            .ok_or_else(|| bad("\"room\" is required (a string)".into()))?;
        check_room_name(&room, self.config)?;
        Ok(room)
    }

    /// A history entry's id, when present.
    fn entry_id(&self, name: &str) -> Result<Option<EntryId>, Error> {
        match self.data.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| bad(format!("\"{name}\" is not a message id"))),
            Some(_) => Err(bad(format!("\"{name}\" is not a message id"))),
        }
    }

    /// `limit`, `after` and `lastId` of a history request.
    fn page(&self) -> Result<Page, Error> {
        let limit = match self.data.get("limit") {
            None | Some(Value::Null) => self.config.history_page,
            Some(v) => v
                .as_u64()
                .filter(|n| *n >= 1)
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
                .map(|n| n.min(self.config.history_page))
                .ok_or_else(|| bad("\"limit\" is a whole number from 1".into()))?,
        };
        let after = match self.data.get("after") {
            Some(v) if !v.is_null() => self.entry_id("after")?,
            _ => self.entry_id("lastId")?,
        };
        Ok(Page { limit, after })
    }
}

/// Checks a room name against [`Config::max_room_name_chars`]: a name in a chat
/// session key is checked the same way as one a client sends.
pub(super) fn check_room_name(room: &str, config: &Config) -> Result<(), Error> {
    if room.is_empty()
        || room.chars().count() > config.max_room_name_chars
        || room.chars().any(char::is_control)
    {
        return Err(bad(format!(
            "a room name is 1 to {} characters, none of them control characters",
            config.max_room_name_chars
        )));
    }
    Ok(())
}

fn fields<'a>(data: &'a Value, config: &'a Config) -> Fields<'a> {
    Fields { data, config }
}

/// Which part of a history to send: at most `limit` entries (1 to
/// [`Config::history_page`]; larger asks get a full page), after `after` (`after`, or
/// else `lastId`, what a client last saw), or the last page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Page {
    pub limit: usize,
    pub after: Option<EntryId>,
}

/// `authenticate` `{"sessionId": id}`.
pub(super) struct Authenticate {
    pub session: SessionId,
}

impl Request for Authenticate {
    fn read(data: &Value, config: &Config) -> Result<Self, Error> {
        let session = SessionId::new(fields(data, config).id("sessionId")?);
        Ok(Authenticate { session })
    }
}

/// `notice.send` `{"users": [..], "text": .., "data": ..}` (`userId` in the earlier
/// form, `notice.notice`), and the admin listener's `POST /notice`.
pub(super) struct Notice {
    pub users: Vec<UserId>,
    pub text: Option<String>,
    pub data: Option<Value>,
}

impl Request for Notice {
    fn read(data: &Value, config: &Config) -> Result<Self, Error> {
        let users = user_list(data.get("users").or_else(|| data.get("userId")))
            .filter(|u| !u.is_empty())
            .ok_or_else(|| bad("\"users\" is required: a list of user ids".into()))?;
        let text = fields(data, config).optional_text("text")?;
        let extra = data.get("data").cloned();
        if text.is_none() && extra.is_none() {
            return Err(bad("a notice needs \"text\" or \"data\"".into()));
        }
        Ok(Notice {
            users,
            text,
            data: extra,
        })
    }
}

/// `private.send` `{"to": user, "message": text}`.
pub(super) struct PrivateSend {
    pub to: UserId,
    pub message: String,
}

impl Request for PrivateSend {
    fn read(data: &Value, config: &Config) -> Result<Self, Error> {
        let f = fields(data, config);
        Ok(PrivateSend {
            to: f.user("to")?,
            message: f.text("message")?,
        })
    }
}

/// `private.history` `{"with": user, "after"|"lastId": id?, "limit": n?}`.
pub(super) struct PrivateHistory {
    pub with: UserId,
    pub page: Page,
}

impl Request for PrivateHistory {
    fn read(data: &Value, config: &Config) -> Result<Self, Error> {
        let f = fields(data, config);
        Ok(PrivateHistory {
            with: f.user("with")?,
            page: f.page()?,
        })
    }
}

/// `notification.history` `{"after": id?, "limit": n?}`.
pub(super) struct NotificationHistory {
    pub page: Page,
}

impl Request for NotificationHistory {
    fn read(data: &Value, config: &Config) -> Result<Self, Error> {
        Ok(NotificationHistory {
            page: fields(data, config).page()?,
        })
    }
}

/// `chat.create`, `chat.leave`, `chat.members`: `{"room": name}`.
pub(super) struct Room {
    pub room: String,
}

impl Request for Room {
    fn read(data: &Value, config: &Config) -> Result<Self, Error> {
        Ok(Room {
            room: fields(data, config).room()?,
        })
    }
}

/// `chat.join` and `chat.history`: `{"room": name, "after"|"lastId": id?, "limit": n?}`.
pub(super) struct RoomPage {
    pub room: String,
    pub page: Page,
}

impl Request for RoomPage {
    fn read(data: &Value, config: &Config) -> Result<Self, Error> {
        let f = fields(data, config);
        Ok(RoomPage {
            room: f.room()?,
            page: f.page()?,
        })
    }
}

/// `chat.send` `{"room": name, "message": text}`.
pub(super) struct ChatSend {
    pub room: String,
    pub message: String,
}

impl Request for ChatSend {
    fn read(data: &Value, config: &Config) -> Result<Self, Error> {
        let f = fields(data, config);
        Ok(ChatSend {
            room: f.room()?,
            message: f.text("message")?,
        })
    }
}

/// `chat.delete` `{"room": name, "id": id}`.
pub(super) struct ChatDelete {
    pub room: String,
    pub id: EntryId,
}

impl Request for ChatDelete {
    fn read(data: &Value, config: &Config) -> Result<Self, Error> {
        let f = fields(data, config);
        let room = f.room()?;
        let id = f
            .entry_id("id")?
            .ok_or_else(|| bad("\"id\" is required".into()))?;
        Ok(ChatDelete { room, id })
    }
}

/// `chat.kick`, `ban`, `unban`, `mute`, `unmute`, `appoint`, `dismiss`:
/// `{"room": name, "user": id}`.
pub(super) struct Moderate {
    pub room: String,
    pub user: UserId,
}

impl Request for Moderate {
    fn read(data: &Value, config: &Config) -> Result<Self, Error> {
        let f = fields(data, config);
        Ok(Moderate {
            room: f.room()?,
            user: f.user("user")?,
        })
    }
}

/// `admin.kick` `{"user": id, "reason": text?}`. The reason is cut to 60 characters:
/// a close reason is at most 123 bytes (RFC 6455 5.5.1).
pub(super) struct Kick {
    pub user: UserId,
    pub reason: String,
}

impl Request for Kick {
    fn read(data: &Value, config: &Config) -> Result<Self, Error> {
        let reason = data
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("kicked by an admin");
        Ok(Kick {
            user: fields(data, config).user("user")?,
            reason: reason.chars().take(60).collect(),
        })
    }
}

/// `admin.broadcast` `{"text": .., "data": ..}`: one of them at least.
pub(super) struct Broadcast {
    pub text: Option<String>,
    pub data: Option<Value>,
}

impl Request for Broadcast {
    fn read(data: &Value, config: &Config) -> Result<Self, Error> {
        let text = fields(data, config).optional_text("text")?;
        let extra = data.get("data").filter(|d| !d.is_null()).cloned();
        if text.is_none() && extra.is_none() {
            return Err(bad("\"text\" or \"data\" is required".into()));
        }
        Ok(Broadcast { text, data: extra })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        Config {
            max_id_chars: 4,
            max_text_chars: 5,
            max_room_name_chars: 3,
            history_page: 10,
            ..Config::default()
        }
    }

    fn refused<R: Request>(data: Value) -> String {
        match R::read(&data, &config()) {
            Err(Error::BadRequest(why)) => why,
            Err(e) => panic!("{data}: {e:?}"),
            Ok(_) => panic!("{data} was taken"),
        }
    }

    #[test]
    fn ids_are_text_or_numbers_within_the_limit() {
        let r = PrivateSend::read(&json!({ "to": 23, "message": "hi" }), &config()).unwrap();
        assert_eq!((r.to.as_str(), r.message.as_str()), ("23", "hi"));
        assert!(
            refused::<PrivateSend>(json!({ "to": "12345", "message": "hi" })).contains("\"to\"")
        );
        assert!(refused::<PrivateSend>(json!({ "to": "", "message": "hi" })).contains("\"to\""));
        assert!(refused::<PrivateSend>(json!({ "to": [1], "message": "hi" })).contains("\"to\""));
        assert!(refused::<PrivateSend>(json!({ "to": "a", "message": " " })).contains("message"));
        assert!(
            refused::<PrivateSend>(json!({ "to": "a", "message": "123456" })).contains("longer")
        );
        assert!(refused::<Authenticate>(json!({})).contains("sessionId"));
    }

    #[test]
    fn pages_are_bounded_and_resume_from_after_or_last_id() {
        let p = |d: Value| PrivateHistory::read(&d, &config()).map(|r| r.page);
        assert_eq!(
            p(json!({ "with": "a" })).unwrap(),
            Page {
                limit: 10,
                after: None
            }
        );
        assert_eq!(p(json!({ "with": "a", "limit": 99 })).unwrap().limit, 10);
        assert_eq!(p(json!({ "with": "a", "limit": 3 })).unwrap().limit, 3);
        let after = p(json!({ "with": "a", "lastId": "5-0" })).unwrap().after;
        assert_eq!(after.map(|a| a.to_string()), Some("5-0".into()));
        let after = p(json!({ "with": "a", "after": "6-0", "lastId": "5-0" }))
            .unwrap()
            .after;
        assert_eq!(after.map(|a| a.to_string()), Some("6-0".into()));
        for bad in [json!(0), json!(-1), json!("3"), json!(1.5)] {
            assert!(
                refused::<PrivateHistory>(json!({ "with": "a", "limit": bad })).contains("limit")
            );
        }
        assert!(refused::<PrivateHistory>(json!({ "with": "a", "after": "x" })).contains("after"));
    }

    #[test]
    fn rooms_notices_and_broadcasts() {
        assert_eq!(
            Room::read(&json!({ "room": 7 }), &config()).unwrap().room,
            "7"
        );
        assert!(refused::<Room>(json!({ "room": "long" })).contains("room name"));
        assert!(refused::<Room>(json!({ "room": "a\u{7}" })).contains("room name"));
        assert!(refused::<ChatDelete>(json!({ "room": "r" })).contains("\"id\""));
        let n = Notice::read(&json!({ "userId": 5, "text": "hi" }), &config()).unwrap();
        assert_eq!(n.users, vec![UserId::new("5")]);
        assert!(refused::<Notice>(json!({ "users": [] , "text": "x"})).contains("users"));
        assert!(refused::<Notice>(json!({ "users": ["a"] })).contains("text"));
        assert!(refused::<Broadcast>(json!({ "data": null })).contains("text"));
        let k = Kick::read(
            &json!({ "user": "u", "reason": "x".repeat(200) }),
            &config(),
        )
        .unwrap();
        assert_eq!(k.reason.chars().count(), 60);
    }
}
