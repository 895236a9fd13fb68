//! The hub's settings, each with its default.

use super::auth::Template;
use super::UserId;
use std::time::Duration;

/// Settings of the hub. Every key template holds one placeholder; `None` turns that way
/// of authenticating off.
#[derive(Clone, Debug)]
pub struct Config {
    /// User to session: the key under which the site writes a user's session id.
    /// Default `{userId}` (the user id itself, as in the earlier system).
    pub user_session_key: Option<Template>,
    /// Session to user: the key under which the site writes a session's user id.
    /// Default `session-store-{sessionId}`.
    pub session_user_key: Option<Template>,
    /// Session key in the query: the key under which the site writes the user's name
    /// and chat room. Default `chat-session-{sessionKey}`.
    pub chat_session_key: Option<Template>,
    /// Whether a connection may stay without a session. Default `true`. When `false`,
    /// one that presents none at the upgrade must `authenticate` within
    /// [`Config::auth_timeout`], or is closed with [`AUTH_TIMEOUT`](super::AUTH_TIMEOUT).
    pub anonymous: bool,
    /// Time to `authenticate` when anonymous connections are refused. Default 30 s.
    pub auth_timeout: Duration,
    /// Origins allowed to open connections from a browser page, such as
    /// `https://example.com`; others get 403. Default empty: any.
    pub origins: Vec<String>,
    /// User ids that may use the admin module and send notices. Default none.
    pub admins: Vec<UserId>,
    /// Most history entries sent in one answer. Default 100.
    pub history_page: usize,
    /// Longest chat or private message, and notice text, in characters. Default 4000.
    pub max_text_chars: usize,
    /// Longest room name, in characters. Default 64.
    pub max_room_name_chars: usize,
    /// Most rooms at once, on the whole site (every node on the same store). Default
    /// 1000.
    pub max_rooms: usize,
    /// Most rooms one user owns (made with `chat.create`). Default 10.
    pub max_rooms_per_user: usize,
    /// Most bans, and most moderators, of one room. Default 1000.
    pub max_room_list: usize,
    /// Longest user id or session id a client may name (`to`, `with`, `user`,
    /// `sessionId`), in characters. Default 128.
    pub max_id_chars: usize,
    /// The bus channel deliveries go through. Default `switchboard`.
    pub channel: String,
    /// The channel the site publishes notifications on. Default `notifications`.
    pub notifications_channel: String,
    /// How long a node that stops renewing its heartbeat in the shared store counts as
    /// alive; after that, another node takes its users out of their rooms. Renewed four
    /// times within it. Default 10 s.
    pub node_timeout: Duration,
    /// Whether a notification POSTed to the admin listener (`/notify`) is kept in each
    /// of its users' history (`notifications:<user>`) and delivered with its id beside
    /// the data, so that a client coming back asks for what it missed
    /// (`notification.history`). Notifications published straight on the channel are
    /// delivered only. Default `false`: a site opts in.
    pub keep_notifications: bool,
    /// How long a listing of every node (`/cluster/...`) waits for the other nodes'
    /// answers; a node that has not answered by then is named as missing. Default 2 s.
    pub gather_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        let t = |s: &str| Template::parse(s).ok();
        Config {
            user_session_key: t("{userId}"),
            session_user_key: t("session-store-{sessionId}"),
            chat_session_key: t("chat-session-{sessionKey}"),
            anonymous: true,
            auth_timeout: Duration::from_secs(30),
            origins: Vec::new(),
            admins: Vec::new(),
            history_page: 100,
            max_text_chars: 4000,
            max_room_name_chars: 64,
            max_rooms: 1000,
            max_rooms_per_user: 10,
            max_room_list: 1000,
            max_id_chars: 128,
            channel: "switchboard".into(),
            notifications_channel: "notifications".into(),
            node_timeout: Duration::from_secs(10),
            gather_timeout: Duration::from_secs(2),
            keep_notifications: false,
        }
    }
}
