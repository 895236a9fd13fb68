//! Who is who: connections, sessions and users, kept apart.
//!
//! - A **connection** is one WebSocket (one browser tab, one app instance).
//! - A **session** is what the site logged in; several connections may share it (tabs).
//! - A **user** may have several sessions (phone and laptop).
//!
//! A connection may know its session before the session is known to belong to a user
//! (the key is not written yet): it then belongs to no user and receives nothing meant
//! for users, until [`Identity::bind_session`] joins it. Deleting the key
//! ([`Identity::unbind_session`]) takes it out again at once. No I/O here: the hub
//! feeds in what the store and the connections say.

use std::collections::{BTreeSet, HashMap};

pub use super::ids::{SessionId, UserId};
pub use crate::server::ConnId;

/// What is known of one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    /// The session it presented, if any.
    pub session: Option<SessionId>,
    /// The user that session belongs to, once known.
    pub user: Option<UserId>,
    /// Which application it comes from (`softId`), if it said.
    pub soft_id: Option<String>,
}

/// The three maps, always consistent with one another.
#[derive(Debug, Default)]
pub struct Identity {
    members: HashMap<ConnId, Member>,
    /// Session to its connections, whether or not the session has a user yet.
    sessions: HashMap<SessionId, BTreeSet<ConnId>>,
    /// User to its connections.
    users: HashMap<UserId, BTreeSet<ConnId>>,
    /// Session to its user, for sessions whose key has been seen.
    owners: HashMap<SessionId, UserId>,
}

fn insert<K: Clone + Eq + std::hash::Hash>(
    map: &mut HashMap<K, BTreeSet<ConnId>>,
    key: &K,
    conn: ConnId,
) {
    match map.get_mut(key) {
        Some(set) => {
            set.insert(conn);
        }
        None => {
            map.insert(key.clone(), BTreeSet::from([conn]));
        }
    }
}

fn remove<K: Eq + std::hash::Hash>(map: &mut HashMap<K, BTreeSet<ConnId>>, key: &K, conn: ConnId) {
    if let Some(set) = map.get_mut(key) {
        set.remove(&conn);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

impl Identity {
    /// An empty identity.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new connection, with no session yet.
    pub fn add(&mut self, conn: ConnId, soft_id: Option<String>) {
        self.remove(conn);
        self.members.insert(
            conn,
            Member {
                soft_id,
                ..Member::default()
            },
        );
    }

    /// Forgets a connection; returns what was known of it.
    pub fn remove(&mut self, conn: ConnId) -> Option<Member> {
        let member = self.members.remove(&conn)?;
        if let Some(s) = &member.session {
            remove(&mut self.sessions, s, conn);
            if !self.sessions.contains_key(s) {
                self.owners.remove(s);
            }
        }
        if let Some(u) = &member.user {
            remove(&mut self.users, u, conn);
        }
        Some(member)
    }

    /// The connection presents `session`. If the session's user is known (another
    /// connection holds the session and its key was seen), the connection joins that
    /// user at once; otherwise it waits for [`Identity::bind_session`]. A session's
    /// user is remembered only while some connection holds the session, so the hub
    /// reads the store when a connection attaches. Returns the user it belongs to now,
    /// if any.
    pub fn attach(&mut self, conn: ConnId, session: &SessionId) -> Option<UserId> {
        let previous = self.members.get(&conn)?.session.clone();
        if let Some(prev) = previous {
            if &prev == session {
                return self.members.get(&conn)?.user.clone();
            }
            self.detach(conn);
        }
        insert(&mut self.sessions, session, conn);
        let user = self.owners.get(session).cloned();
        if let Some(u) = &user {
            insert(&mut self.users, u, conn);
        }
        let member = self.members.get_mut(&conn)?;
        member.session = Some(session.clone());
        member.user = user.clone();
        user
    }

    /// The connection gives up its session (and so its user).
    pub fn detach(&mut self, conn: ConnId) {
        let Some(member) = self.members.get_mut(&conn) else {
            return;
        };
        let (session, user) = (member.session.take(), member.user.take());
        if let Some(s) = session {
            remove(&mut self.sessions, &s, conn);
            if !self.sessions.contains_key(&s) {
                self.owners.remove(&s);
            }
        }
        if let Some(u) = user {
            remove(&mut self.users, &u, conn);
        }
    }

    /// The session's key says it belongs to `user` (it appeared, or was set again to
    /// another user). Every connection of the session joins that user. Returns the
    /// connections whose user changed.
    pub fn bind_session(&mut self, session: &SessionId, user: &UserId) -> Vec<ConnId> {
        let conns: Vec<ConnId> = self
            .sessions
            .get(session)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        if conns.is_empty() {
            return conns;
        }
        self.owners.insert(session.clone(), user.clone());
        let mut changed = Vec::new();
        for conn in conns {
            let Some(member) = self.members.get_mut(&conn) else {
                continue;
            };
            if member.user.as_ref() == Some(user) {
                continue;
            }
            if let Some(old) = member.user.replace(user.clone()) {
                remove(&mut self.users, &old, conn);
            }
            insert(&mut self.users, user, conn);
            changed.push(conn);
        }
        changed
    }

    /// The session's key is gone (deleted or expired): its connections leave their
    /// user at once, and keep waiting on the session. Returns them.
    pub fn unbind_session(&mut self, session: &SessionId) -> Vec<ConnId> {
        self.owners.remove(session);
        let conns: Vec<ConnId> = self
            .sessions
            .get(session)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let mut changed = Vec::new();
        for conn in conns {
            if let Some(member) = self.members.get_mut(&conn) {
                if let Some(old) = member.user.take() {
                    remove(&mut self.users, &old, conn);
                    changed.push(conn);
                }
            }
        }
        changed
    }

    /// What is known of a connection.
    pub fn member(&self, conn: ConnId) -> Option<&Member> {
        self.members.get(&conn)
    }

    /// The connections of a user, in id order.
    pub fn connections_of(&self, user: &UserId) -> Vec<ConnId> {
        self.users
            .get(user)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Every connection of `users`, each once, even for a user listed twice.
    pub fn connections_of_users(&self, users: &[UserId]) -> Vec<ConnId> {
        let ids: BTreeSet<ConnId> = users
            .iter()
            .filter_map(|u| self.users.get(u))
            .flatten()
            .copied()
            .collect();
        ids.into_iter().collect()
    }

    /// The connections that presented a session, in id order.
    pub fn connections_of_session(&self, session: &SessionId) -> Vec<ConnId> {
        self.sessions
            .get(session)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Users with at least one connection, sorted.
    pub fn users(&self) -> Vec<UserId> {
        let mut users: Vec<UserId> = self.users.keys().cloned().collect();
        users.sort();
        users
    }

    /// Sessions with at least one connection, sorted.
    pub fn sessions(&self) -> Vec<SessionId> {
        let mut sessions: Vec<SessionId> = self.sessions.keys().cloned().collect();
        sessions.sort();
        sessions
    }

    /// How many connections are known.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether no connection is known.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: u64) -> ConnId {
        ConnId(n)
    }

    fn cs(ns: &[u64]) -> Vec<ConnId> {
        ns.iter().copied().map(ConnId).collect()
    }

    fn s(text: &str) -> SessionId {
        SessionId::new(text)
    }

    fn u(text: &str) -> UserId {
        UserId::new(text)
    }

    /// The maps agree with the members, whatever happened.
    fn check(id: &Identity) {
        for (conn, m) in &id.members {
            if let Some(s) = &m.session {
                assert!(id.sessions[s].contains(conn));
            }
            if let Some(u) = &m.user {
                assert!(id.users[u].contains(conn));
                assert!(m.session.is_some(), "a user only through a session");
            }
        }
        for (s, conns) in &id.sessions {
            assert!(!conns.is_empty());
            for c in conns {
                assert_eq!(id.members[c].session.as_deref(), Some(s.as_str()));
            }
        }
        for (u, conns) in &id.users {
            assert!(!conns.is_empty());
            for c in conns {
                assert_eq!(id.members[c].user.as_deref(), Some(u.as_str()));
            }
        }
        for s in id.owners.keys() {
            assert!(
                id.sessions.contains_key(s),
                "owner kept for a session nobody holds"
            );
        }
    }

    #[test]
    fn tabs_share_a_session_and_devices_share_a_user() {
        let mut id = Identity::new();
        for conn in 1..=3 {
            id.add(c(conn), Some("web".into()));
        }
        // Two tabs of the laptop session, one phone session; the key is not there yet.
        assert_eq!(id.attach(c(1), &s("laptop")), None);
        assert_eq!(id.attach(c(2), &s("laptop")), None);
        assert_eq!(id.attach(c(3), &s("phone")), None);
        assert!(
            id.connections_of(&u("79")).is_empty(),
            "nothing before the key appears"
        );
        check(&id);
        assert_eq!(id.bind_session(&s("laptop"), &u("79")), cs(&[1, 2]));
        assert_eq!(id.bind_session(&s("phone"), &u("79")), cs(&[3]));
        assert_eq!(id.connections_of(&u("79")), cs(&[1, 2, 3]));
        // A new tab of a known session joins at once.
        id.add(c(4), None);
        assert_eq!(id.attach(c(4), &s("laptop")).as_deref(), Some("79"));
        assert_eq!(id.connections_of(&u("79")), cs(&[1, 2, 3, 4]));
        check(&id);
        // The laptop session's key is deleted: its tabs leave, the phone stays.
        assert_eq!(id.unbind_session(&s("laptop")), cs(&[1, 2, 4]));
        assert_eq!(id.connections_of(&u("79")), cs(&[3]));
        assert_eq!(id.connections_of_session(&s("laptop")), cs(&[1, 2, 4]));
        check(&id);
        // It comes back, for another user this time.
        assert_eq!(id.bind_session(&s("laptop"), &u("80")), cs(&[1, 2, 4]));
        assert_eq!(id.users(), [u("79"), u("80")]);
        check(&id);
    }

    #[test]
    fn removing_and_reattaching_keeps_the_maps_consistent() {
        let mut id = Identity::new();
        id.add(c(1), None);
        id.add(c(2), None);
        id.attach(c(1), &s("s"));
        id.attach(c(2), &s("s"));
        id.bind_session(&s("s"), &u("u"));
        assert_eq!(id.remove(c(1)).unwrap().user.as_deref(), Some("u"));
        assert_eq!(id.connections_of(&u("u")), cs(&[2]));
        // Switching sessions moves the connection out of the old user.
        id.add(c(3), None);
        id.attach(c(3), &s("t"));
        id.bind_session(&s("t"), &u("v"));
        assert_eq!(id.attach(c(2), &s("t")).as_deref(), Some("v"));
        assert!(id.connections_of(&u("u")).is_empty());
        assert_eq!(id.sessions(), [s("t")]);
        check(&id);
        id.detach(c(2));
        assert_eq!(id.member(c(2)), Some(&Member::default()));
        id.remove(c(2));
        id.remove(c(3));
        assert!(id.is_empty() && id.users().is_empty() && id.sessions().is_empty());
        assert!(id.owners.is_empty());
        // Unknown connections and sessions are no-ops.
        assert_eq!(id.attach(c(99), &s("s")), None);
        assert!(id.bind_session(&s("nobody"), &u("u")).is_empty());
        assert!(id.unbind_session(&s("nobody")).is_empty());
        assert_eq!(id.remove(c(99)), None);
        check(&id);
    }

    #[test]
    fn a_long_random_walk_stays_consistent() {
        // A fixed pseudo-random sequence of operations; the invariants hold after each.
        let mut id = Identity::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let conn = x % 12;
            let sess = format!("s{}", (x >> 8) % 4);
            let user = format!("u{}", (x >> 16) % 3);
            match (x >> 24) % 6 {
                0 => id.add(c(conn), None),
                1 => {
                    id.remove(c(conn));
                }
                2 => {
                    id.attach(c(conn), &s(&sess));
                }
                3 => id.detach(c(conn)),
                4 => {
                    id.bind_session(&s(&sess), &u(&user));
                }
                _ => {
                    id.unbind_session(&s(&sess));
                }
            }
            check(&id);
        }
    }
}
