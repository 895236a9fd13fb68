//! The chat module: rooms, their members and moderation ([`super::rooms`] keeps the
//! model), and their histories.

use super::*;

impl Hub {
    pub(super) fn room_stream(room: &str) -> String {
        format!("room:{room}")
    }

    pub(super) fn room_view(&self, room: &str) -> Value {
        let st = self.state();
        match st.rooms.get(room) {
            Some(r) => json!({
                "room": room,
                "owner": r.owner,
                "moderators": r.moderators,
                "users": r.members,
                "muted": r.muted,
                "banned": r.banned,
            }),
            None => json!({ "room": room, "users": [] }),
        }
    }

    pub(super) fn members(&self, room: &str) -> Vec<UserId> {
        members_of(&self.state(), room)
    }

    /// Tells `members` who is in `room`: the list as it was right after the change that
    /// calls for it, read under the same lock. Read later, it could include a user
    /// who joined since, and reach them before their own join's answer.
    pub(super) fn send_userlist(&self, room: &str, members: Vec<UserId>) {
        let data = json!({ "room": room, "users": members });
        if let Err(e) = self.publish(&members, "userlist", &data, None) {
            self.log(
                Level::Warn,
                None,
                "userlist not sent to other nodes",
                &[("error", &e)],
            );
        }
    }

    pub(super) fn enter_room(&self, room: &str, user: &str, open: bool) -> Outcome {
        check_room_name(room, &self.config)?;
        let (joined, members) = self.change_room(room, |r| r.join(room, user, open))?;
        if joined {
            self.send_userlist(room, members);
        }
        Ok(())
    }

    /// `chat.create` `{"room": name}`: the sender owns it and is in it.
    pub(super) fn chat_create(&self, ctx: &Call, data: &Value) -> Outcome {
        let user = self.user_of(ctx)?;
        let Room { room } = self.read(data)?;
        let ((), members) = self.change_room(&room, |r| r.create(&room, &user))?;
        ctx.reply("chat.create", self.room_view(&room));
        self.send_userlist(&room, members);
        Ok(())
    }

    /// `chat.join` `{"room": name, "lastId": id?}`: the answer holds the room and its
    /// history, after `lastId` when given (what was missed), or the last page.
    pub(super) fn chat_join(&self, ctx: &Call, data: &Value) -> Outcome {
        let user = self.user_of(ctx)?;
        // A malformed history request is refused before it joins anyone.
        let RoomPage { room, page } = self.read(data)?;
        let (joined, members) = self.change_room(&room, |r| r.join(&room, &user, false))?;
        let answered = self
            .history(&Self::room_stream(&room), page)
            .map(|messages| {
                let mut view = self.room_view(&room);
                view["messages"] = messages;
                ctx.reply("chat.join", view);
            });
        // Joined is joined, even if the store cannot give the history now.
        if joined {
            self.send_userlist(&room, members);
        }
        answered
    }

    pub(super) fn chat_leave(&self, ctx: &Call, data: &Value) -> Outcome {
        let user = self.user_of(ctx)?;
        let Room { room } = self.read(data)?;
        let ((), members) = self.change_room(&room, |r| r.leave(&room, &user))?;
        ctx.reply("chat.leave", json!({ "room": room }));
        self.send_userlist(&room, members);
        Ok(())
    }

    pub(super) fn chat_members(&self, ctx: &Call, data: &Value) -> Outcome {
        let user = self.user_of(ctx)?;
        let Room { room } = self.read(data)?;
        self.state().rooms.check_member(&room, &user)?;
        ctx.reply("chat.members", self.room_view(&room));
        Ok(())
    }

    /// `chat.send` `{"room": name, "message": text}`: to every member as
    /// `chat.message` `{"id", "room", "time", "user", "message"}`.
    pub(super) fn chat_send(&self, ctx: &Call, data: &Value) -> Outcome {
        let user = self.user_of(ctx)?;
        let ChatSend { room, message } = self.read(data)?;
        self.state().rooms.check_send(&room, &user)?;
        let entry =
            json!({ "room": room, "time": now_iso8601(), "user": user, "message": message });
        let id = self
            .stores
            .history
            .append(&Self::room_stream(&room), &entry)?;
        let mut sent = entry;
        sent["id"] = json!(id.to_string());
        self.publish_room(&room, "chat.message", &sent)?;
        // Answered like every other request, so that a sender can tell a message
        // taken from one lost (its chat.message may come on another connection).
        ctx.reply("chat.send", sent);
        Ok(())
    }

    pub(super) fn chat_history(&self, ctx: &Call, data: &Value) -> Outcome {
        let user = self.user_of(ctx)?;
        let RoomPage { room, page } = self.read(data)?;
        self.state().rooms.check_member(&room, &user)?;
        let list = self.history(&Self::room_stream(&room), page)?;
        ctx.reply("chat.history", json!({ "room": room, "messages": list }));
        Ok(())
    }

    /// `chat.delete` `{"room": name, "id": id}`, by a moderator.
    pub(super) fn chat_delete(&self, ctx: &Call, data: &Value) -> Outcome {
        let user = self.user_of(ctx)?;
        let ChatDelete { room, id } = self.read(data)?;
        self.state()
            .rooms
            .check_moderator(&room, &user, self.is_admin(&user))?;
        if !self.stores.history.remove(&Self::room_stream(&room), id)? {
            return Err(Error::NotFound);
        }
        let data = json!({ "room": room, "id": id.to_string(), "by": user });
        self.publish_room(&room, "chat.deleted", &data)?;
        // A moderator or admin outside the room hears of it too.
        ctx.reply("chat.delete", data);
        Ok(())
    }

    /// `chat.kick`, `ban`, `unban`, `mute`, `unmute`, `appoint`, `dismiss`
    /// `{"room": name, "user": id}`: the members and the target are told.
    pub(super) fn chat_moderate(&self, ctx: &Call, data: &Value) -> Outcome {
        let actor = self.user_of(ctx)?;
        let Moderate { room, user: target } = self.read(data)?;
        let method = ctx.event().trim_start_matches("chat.");
        let action = Action::from_method(method)
            .ok_or_else(|| Error::BadRequest(format!("no such action {method}")))?;
        // The members before and after, read in the change itself: read apart, a join
        // in between would count as this action's change.
        let (before, after) = self.change_room(&room, |r| {
            let before: Vec<UserId> = r
                .get(&room)
                .map(|r| r.members.iter().cloned().collect())
                .unwrap_or_default();
            r.moderate(&room, &actor, action, &target, |u| self.is_admin(u))?;
            Ok(before)
        })?;
        let mut told = before.clone();
        if !told.contains(&target) {
            told.push(target.clone());
        }
        let note = json!({ "room": room, "user": target, "by": actor });
        self.publish(&told, action.event(), &note, None)?;
        ctx.reply(ctx.event(), note);
        if after != before {
            self.send_userlist(&room, after);
        }
        Ok(())
    }
}

/// The members of `room`, sorted; none when there is no such room.
pub(super) fn members_of(st: &State, room: &str) -> Vec<UserId> {
    st.rooms
        .get(room)
        .map(|r| r.members.iter().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::testing::TestHub;
    use super::*;

    #[test]
    fn a_room_is_joined_spoken_in_and_left_with_userlists() {
        let t = TestHub::with_users(Config::default(), &[(1, "owner"), (2, "ann")]);
        t.call(1, "chat.create", json!({ "room": "lobby" }))
            .unwrap();
        assert_eq!(t.events(1), ["chat.create", "userlist"]);
        t.call(2, "chat.join", json!({ "room": "lobby" })).unwrap();
        let joined = t.take(2);
        assert_eq!(joined[0].0, "chat.join", "the answer comes first");
        assert_eq!(joined[0].1["users"], json!(["ann", "owner"]));
        assert_eq!(
            joined[1],
            (
                "userlist".into(),
                json!({ "room": "lobby", "users": ["ann", "owner"] })
            )
        );
        assert_eq!(t.events(1), ["userlist"]);

        t.call(
            2,
            "chat.send",
            json!({ "room": "lobby", "message": "hello" }),
        )
        .unwrap();
        let to_ann = t.take(2);
        assert_eq!(
            to_ann.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(),
            ["chat.message", "chat.send"],
            "the sender's copy, then the answer"
        );
        let heard = t.take(1);
        assert_eq!(heard[0].1["message"], "hello");
        assert_eq!(heard[0].1["id"], to_ann[1].1["id"]);

        // A late joiner gets the history in the answer.
        t.sign_in(3, "bob");
        t.call(3, "chat.join", json!({ "room": "lobby" })).unwrap();
        assert_eq!(t.take(3)[0].1["messages"][0]["message"], "hello");
        t.take(1);
        t.take(2);
        t.call(3, "chat.leave", json!({ "room": "lobby" })).unwrap();
        assert_eq!(t.take(1)[0].1["users"], json!(["ann", "owner"]));
        let e = t
            .call(3, "chat.send", json!({ "room": "lobby", "message": "?" }))
            .unwrap_err();
        assert_eq!(e.code(), "not_member");
    }

    #[test]
    fn moderation_follows_rank() {
        let t = TestHub::with_users(Config::default(), &[(1, "owner"), (2, "ann"), (3, "bob")]);
        t.call(1, "chat.create", json!({ "room": "r" })).unwrap();
        for c in [2, 3] {
            t.call(c, "chat.join", json!({ "room": "r" })).unwrap();
        }
        let e = t
            .call(3, "chat.kick", json!({ "room": "r", "user": "ann" }))
            .unwrap_err();
        assert_eq!(e.code(), "forbidden");
        t.call(1, "chat.appoint", json!({ "room": "r", "user": "ann" }))
            .unwrap();
        t.call(2, "chat.ban", json!({ "room": "r", "user": "bob" }))
            .unwrap();
        assert!(t.events(3).contains(&"chat.banned".to_owned()));
        let e = t.call(3, "chat.join", json!({ "room": "r" })).unwrap_err();
        assert_eq!(e.code(), "banned");
        let e = t
            .call(2, "chat.kick", json!({ "room": "r", "user": "owner" }))
            .unwrap_err();
        assert_eq!(e.code(), "forbidden", "a moderator cannot act on the owner");
        t.take(1);
        t.call(1, "chat.unban", json!({ "room": "r", "user": "bob" }))
            .unwrap();
        t.call(3, "chat.join", json!({ "room": "r" })).unwrap();
        assert_eq!(
            t.take(1).last().unwrap().1["users"],
            json!(["ann", "bob", "owner"])
        );
    }
}
