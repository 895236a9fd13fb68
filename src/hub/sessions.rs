//! Connections, sessions and users: a connection's claim at the upgrade, the
//! `authenticate` event, the session keys' changes in the store (key events), and who
//! is whom.

use super::*;

impl Hub {
    /// A connection opened: note what its upgrade claimed, and confirm it.
    pub(super) fn open(&self, ctx: &Ctx) {
        let Some(conn) = ctx.conn() else { return };
        let admission = conn.handshake().note.as_ref();
        let admission = admission.and_then(|n| n.get::<auth::Admission>());
        let (claim, soft_id) = match admission {
            Some(a) => (&a.claim, a.soft_id.clone()),
            None => (&Claim::Anonymous, None),
        };
        if let Err(e) = self.opened(conn.id(), claim, soft_id) {
            ctx.fail(e.code(), &e.to_string());
        }
    }

    /// Connection `id` opened with `claim`: note it and confirm it. An error is the
    /// connection's to hear (a room in its session key it may not enter); it stays
    /// open.
    pub fn opened(&self, id: ConnId, claim: &Claim, soft_id: Option<String>) -> Outcome {
        let mut outcome = Ok(());
        match claim {
            Claim::User { user, session } => {
                {
                    let mut st = self.state();
                    st.identity.add(id, soft_id);
                    st.identity.attach(id, session);
                    st.note_way(session, Way::UserKey(user.clone()));
                }
                self.bind(session, user, None, Some(id));
                // A key changed between the upgrade's check and here sent its event
                // before this session was held: read once more.
                self.recheck_session(session);
            }
            Claim::SessionKey { key, user, room } => {
                {
                    let mut st = self.state();
                    st.identity.add(id, soft_id);
                    st.identity.attach(id, key);
                    st.note_way(key, Way::ChatKey);
                }
                self.bind(key, user, room.as_deref(), Some(id));
                if let Some(room) = room {
                    outcome = self.enter_room(room, user, true);
                }
                self.recheck_session(key);
            }
            Claim::Anonymous => {
                self.state().identity.add(id, soft_id);
                self.start_deadline(id);
            }
        }
        outcome
    }

    /// What the hub knows of connection `id`, for another part of the program (the
    /// back-end bridge's `sessionInfo`): `userId`, `sessionId` and `softId`, those
    /// known.
    pub fn known_of(&self, id: ConnId) -> serde_json::Map<String, Value> {
        let mut out = serde_json::Map::new();
        if let Some(m) = self.state().identity.member(id) {
            if let Some(u) = &m.user {
                out.insert("userId".into(), Value::String(u.to_string()));
            }
            if let Some(s) = &m.session {
                out.insert("sessionId".into(), Value::String(s.to_string()));
            }
            if let Some(s) = &m.soft_id {
                out.insert("softId".into(), Value::String(s.clone()));
            }
        }
        out
    }

    /// Connection `id` closed (the `disconnect` event).
    pub fn closed(&self, id: ConnId) {
        self.close(id);
    }

    /// When anonymous connections are refused, connection `id` has
    /// [`Config::auth_timeout`] from now to belong to a user.
    pub(super) fn start_deadline(&self, id: ConnId) {
        if self.config.anonymous {
            return;
        }
        let deadline = Instant::now() + self.config.auth_timeout;
        self.state().deadlines.insert(id, deadline);
        if let Some(tx) = &*self.deadlines.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = tx.send((deadline, id));
        }
    }

    /// Binds `session` to `user` and confirms to every connection whose user that
    /// changed, and to `also` in any case (a connection that just presented the
    /// session). The users those connections had before leave their rooms if that was
    /// their last connection here.
    pub(super) fn bind(
        &self,
        session: &SessionId,
        user: &UserId,
        room: Option<&str>,
        also: Option<ConnId>,
    ) {
        self.hold_user(user);
        let before = {
            let mut st = self.state();
            let before: BTreeSet<UserId> = st
                .identity
                .connections_of_session(session)
                .iter()
                .filter_map(|c| st.identity.member(*c)?.user.clone())
                .filter(|u| u != user)
                .collect();
            let mut told = st.identity.bind_session(session, user);
            if let Some(id) = also.filter(|id| !told.contains(id)) {
                told.push(id);
            }
            // Sent under the lock: a delivery to this user must take the lock to find
            // these connections, so it comes after the confirmation, which is then
            // the first thing a connection hears as the user.
            let now = (user.clone(), session.clone());
            told.retain(|c| st.confirmed.get(c) != Some(&now));
            for c in &told {
                st.confirmed.insert(*c, now.clone());
            }
            self.with_sink(|sink| {
                for c in told {
                    sink.send_text(&[c], &confirmation(&st, c, user, session, room));
                }
            });
            before
        };
        // Held above for a connection that closed meanwhile: let go again.
        self.user_may_be_gone(user);
        for old in before {
            self.user_may_be_gone(&old);
        }
    }

    pub(super) fn unconfirm(&self, id: ConnId, session: &SessionId, reason: &str) {
        self.state().confirmed.remove(&id);
        self.deliver_here(
            &[id],
            "unauthenticated",
            &json!({ "sessionId": session, "reason": reason }),
        );
    }

    /// A connection closed: forget it, and take its user out of their rooms if it was
    /// their last connection anywhere. While this node shuts down, its users stay held:
    /// in a rolling restart they come back through another node within the `end`
    /// window, still in their rooms; those who do not are let go when this node's
    /// heartbeat lapses (see `cluster.rs`).
    pub(super) fn close(&self, id: ConnId) {
        let mut st = self.state();
        st.deadlines.remove(&id);
        st.confirmed.remove(&id);
        let Some(member) = st.identity.remove(id) else {
            return;
        };
        if let Some(session) = &member.session {
            st.forget_if_unheld(session);
        }
        drop(st);
        let leaving = self.stores.bus.reaches_other_nodes()
            && self.server().is_some_and(|s| s.is_shutting_down());
        if let Some(user) = member.user.filter(|_| !leaving) {
            self.user_may_be_gone(&user);
        }
    }

    /// `authenticate` `{"sessionId": ..}`: the session-to-user way.
    pub(super) fn authenticate(&self, ctx: &Call, data: &Value) -> Outcome {
        let Some(template) = &self.config.session_user_key else {
            return Err(Error::BadRequest("authenticate is turned off here".into()));
        };
        let Authenticate { session } = self.read(data)?;
        let id = ctx.id();
        let old_user = {
            let mut st = self.state();
            let before = st.identity.member(id).cloned().unwrap_or_default();
            // A request is answered: this connection is told again whom it belongs to.
            st.confirmed.remove(&id);
            st.identity.attach(id, &session);
            st.note_way(&session, Way::SessionStore);
            if let Some(old) = before.session.filter(|b| *b != session) {
                st.forget_if_unheld(&old);
            }
            before.user
        };
        // Attached first, read second: a key set in between is seen by the watcher.
        let read = self.stores.sessions.get(&template.fill(&session));
        match &read {
            Ok(Some(user)) => {
                self.bind(&session, &UserId::new(user.as_str()), None, Some(id));
                // A key deleted between the read and the binding sent its event
                // before there was anything to take out: read once more.
                self.recheck_session(&session);
            }
            Ok(None) => self.unconfirm(id, &session, "waiting for the session"),
            Err(_) => {}
        }
        // The user this connection had leaves their rooms only now, in case the new
        // session is theirs too.
        if let Some(old) = old_user {
            self.user_may_be_gone(&old);
            // Left with no user, it has the time again to get one.
            if self
                .state()
                .identity
                .member(id)
                .is_some_and(|m| m.user.is_none())
            {
                self.start_deadline(id);
            }
        }
        read.map(drop).map_err(Error::from)
    }

    /// `whoami`: what the hub knows of this connection.
    pub(super) fn whoami(&self, ctx: &Call, _: &Value) -> Outcome {
        let member = self
            .state()
            .identity
            .member(ctx.id())
            .cloned()
            .unwrap_or_default();
        ctx.reply(
            "whoami",
            json!({
                "connectionId": ctx.id(),
                "userId": member.user,
                "sessionId": member.session,
                "softId": member.soft_id,
                "admin": member.user.as_ref().is_some_and(|u| self.is_admin(u)),
            }),
        );
        Ok(())
    }

    /// A session key changed in the store.
    pub(super) fn on_key(&self, event: KeyEvent) {
        let key = match &event {
            KeyEvent::Set(k) | KeyEvent::Deleted(k) => k.as_str(),
        };
        let (session_way, chat_way, user_way) = {
            let st = self.state();
            let pick = |t: &Option<Template>, way: Way| {
                t.as_ref()
                    .and_then(|t| t.extract(key))
                    .filter(|s| st.ways.get(*s) == Some(&way))
                    .map(SessionId::from)
            };
            let user_way = self
                .config
                .user_session_key
                .as_ref()
                .and_then(|t| t.extract(key))
                .filter(|u| st.user_sessions.contains_key(*u))
                .map(UserId::from);
            (
                pick(&self.config.session_user_key, Way::SessionStore),
                pick(&self.config.chat_session_key, Way::ChatKey),
                user_way,
            )
        };
        for session in [session_way, chat_way].into_iter().flatten() {
            self.recheck_session(&session);
        }
        if let Some(user) = user_way {
            self.recheck_user(&user);
        }
    }

    /// Reads a held session's key again, the way it was presented, and binds or
    /// unbinds its connections.
    pub(super) fn recheck_session(&self, session: &SessionId) {
        let way = self.state().ways.get(session).cloned();
        let (template, chat) = match way {
            None => return,
            Some(Way::UserKey(user)) => return self.recheck_user(&user),
            Some(Way::SessionStore) => (&self.config.session_user_key, false),
            Some(Way::ChatKey) => (&self.config.chat_session_key, true),
        };
        let Some(template) = template else { return };
        let found = match self.stores.sessions.get(&template.fill(session)) {
            Ok(Some(v)) if chat => auth::read_chat_session(&v),
            Ok(v) => v.map(|u| (u, None)),
            Err(e) => {
                self.log(Level::Warn, None, "session check failed", &[("error", &e)]);
                return;
            }
        };
        match found {
            Some((user, room)) => {
                let user = UserId::new(user);
                self.bind(session, &user, room.as_deref(), None);
                // A session key that came back puts its user in its room again.
                if let Some(room) = room {
                    if let Err(e) = self.enter_room(&room, &user, true) {
                        self.log(Level::Warn, None, "room of a session key", &[("error", &e)]);
                    }
                }
            }
            None => self.end_session(session, "session ended"),
        }
    }

    /// The user's key of the user-to-session way changed: sessions that still match it
    /// stay (or come back), the others end.
    pub(super) fn recheck_user(&self, user: &UserId) {
        let Some(template) = &self.config.user_session_key else {
            return;
        };
        let stored = match self.stores.sessions.get(&template.fill(user)) {
            Ok(v) => v,
            Err(e) => {
                self.log(Level::Warn, None, "session check failed", &[("error", &e)]);
                return;
            }
        };
        let sessions: Vec<SessionId> = self
            .state()
            .user_sessions
            .get(user)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for session in sessions {
            let valid = stored
                .as_deref()
                .is_some_and(|v| crate::secure::constant_time_eq(v.as_bytes(), session.as_bytes()));
            if valid {
                self.bind(&session, user, None, None);
            } else {
                self.end_session(&session, "session ended");
            }
        }
    }

    /// The session's key is gone: its connections leave their user at once and stay
    /// open, waiting for it to come back.
    pub(super) fn end_session(&self, session: &SessionId, reason: &str) {
        let (changed, users) = {
            let mut st = self.state();
            let users: BTreeSet<UserId> = st
                .identity
                .connections_of_session(session)
                .iter()
                .filter_map(|c| st.identity.member(*c)?.user.clone())
                .collect();
            (st.identity.unbind_session(session), users)
        };
        if changed.is_empty() {
            return;
        }
        self.count("sessions_ended");
        self.log(
            Level::Info,
            None,
            "session ended",
            &[("connections", &changed.len())],
        );
        for c in &changed {
            self.unconfirm(*c, session, reason);
            self.start_deadline(*c);
        }
        for user in users {
            self.user_may_be_gone(&user);
        }
    }

    /// The user of a connection, or [`Error::NotAuthenticated`].
    pub(super) fn user_of(&self, ctx: &Call) -> Result<UserId, Error> {
        self.state()
            .identity
            .member(ctx.id())
            .and_then(|m| m.user.clone())
            .ok_or(Error::NotAuthenticated)
    }

    pub(super) fn is_admin(&self, user: &str) -> bool {
        self.config.admins.iter().any(|a| a.as_str() == user)
    }

    pub(super) fn admin_of(&self, ctx: &Call) -> Result<UserId, Error> {
        let user = self.user_of(ctx)?;
        if !self.is_admin(&user) {
            return Err(Error::NotAdmin);
        }
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::TestHub;
    use super::*;

    #[test]
    fn a_session_signs_in_every_connection_that_presents_it() {
        let t = TestHub::with_users(Config::default(), &[(1, "ann")]);
        t.call(1, "whoami", Value::Null).unwrap();
        assert_eq!(t.take(1)[0].1["userId"], "ann");
        // A session the site has not written yet: the connection hears so, and
        // follows the key; once the site writes it, the connection is that user.
        t.hub.opened(ConnId(2), &Claim::Anonymous, None).unwrap();
        t.call(2, "authenticate", json!({ "sessionId": "later" }))
            .unwrap();
        let heard = t.take(2);
        assert_eq!(heard[0].0, "unauthenticated", "{heard:?}");
        assert_eq!(heard[0].1["sessionId"], "later");
        t.hub
            .stores
            .sessions
            .set("session-store-later", "bob", None)
            .unwrap();
        t.hub.on_key(KeyEvent::Set("session-store-later".into()));
        assert_eq!(t.take(2)[0].1["userId"], "bob");
    }

    #[test]
    fn the_last_connection_of_a_user_takes_them_out_of_their_rooms() {
        let t = TestHub::with_users(Config::default(), &[(1, "ann"), (2, "bob"), (3, "bob")]);
        t.call(1, "chat.create", json!({ "room": "r" })).unwrap();
        t.call(2, "chat.join", json!({ "room": "r" })).unwrap();
        t.take(1);
        t.hub.closed(ConnId(2));
        assert!(t.take(1).is_empty(), "bob is still here on connection 3");
        t.hub.closed(ConnId(3));
        assert_eq!(
            t.take(1),
            [("userlist".into(), json!({ "room": "r", "users": ["ann"] }))]
        );
    }

    #[test]
    fn a_key_event_racing_authenticate_confirms_once() {
        let t = TestHub::new(Config::default());
        t.hub.opened(ConnId(1), &Claim::Anonymous, None).unwrap();
        let (s, u) = (SessionId::new("s"), UserId::new("ann"));
        t.hub.state().identity.attach(ConnId(1), &s);
        // The site's key event binds the session first, then `authenticate` reads the
        // key and binds it again for the connection that asked.
        t.hub.bind(&s, &u, None, None);
        t.hub.bind(&s, &u, None, Some(ConnId(1)));
        assert_eq!(t.events(1), ["authenticated"]);
        // Another `authenticate` is a request of its own, and is answered.
        t.hub
            .stores
            .sessions
            .set("session-store-s", "ann", None)
            .unwrap();
        t.call(1, "authenticate", json!({ "sessionId": "s" }))
            .unwrap();
        assert_eq!(t.events(1), ["authenticated"]);
    }
}
