//! The admin module: events for users the site lists as admins.

use super::*;

impl Hub {
    pub(super) fn stats(&self) -> Value {
        let st = self.state();
        json!({
            "node": self.node,
            "connections": st.identity.len(),
            "users": st.identity.users().len(),
            "sessions": st.identity.sessions().len(),
            "rooms": st.rooms.names().len(),
        })
    }

    pub(super) fn admin_stats(&self, ctx: &Call, _: &Value) -> Outcome {
        self.admin_of(ctx)?;
        ctx.reply("admin.stats", self.stats());
        Ok(())
    }

    /// Every connection with its session, user and handshake.
    pub(super) fn listing(&self, server: &Server) -> Value {
        let mut conns = server.connections();
        conns.sort_by_key(|c| c.id());
        let st = self.state();
        Value::Array(
            conns
                .iter()
                .map(|c| {
                    let m = st.identity.member(c.id()).cloned().unwrap_or_default();
                    json!({
                        "connectionId": c.id(),
                        "sessionId": m.session.as_deref().unwrap_or("__nosession__"),
                        "userId": m.user.as_deref().unwrap_or("__nouser__"),
                        "softId": m.soft_id,
                        "handshake": c.describe(),
                    })
                })
                .collect(),
        )
    }

    pub(super) fn admin_connections(&self, ctx: &Call, _: &Value) -> Outcome {
        self.admin_of(ctx)?;
        let listing = self
            .server()
            .map_or_else(|| Value::Array(Vec::new()), |s| self.listing(&s));
        ctx.reply("admin.connections", listing);
        Ok(())
    }

    /// `admin.kick` `{"user": id, "reason": text?}`: every connection of the user, on
    /// every node, is closed with [`KICKED`].
    pub(super) fn admin_kick(&self, ctx: &Call, data: &Value) -> Outcome {
        self.admin_of(ctx)?;
        let Kick { user, reason } = self.read(data)?;
        self.publish_kick(&user, &reason)?;
        ctx.reply("admin.kick", json!({ "user": user }));
        Ok(())
    }

    /// `admin.broadcast` `{"text": .., "data": ..}`: a `broadcast` event to every
    /// connection with a user, on every node.
    pub(super) fn admin_broadcast(&self, ctx: &Call, data: &Value) -> Outcome {
        let from = self.admin_of(ctx)?;
        let Broadcast { text, data } = self.read(data)?;
        let out = json!({ "from": from, "time": now_iso8601(), "text": text, "data": data });
        self.publish_all("broadcast", &out)?;
        ctx.reply("admin.broadcast", json!({ "sent": true }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::TestHub;
    use super::*;

    #[test]
    fn admins_kick_and_broadcast_to_signed_in_connections() {
        let t = TestHub::with_admin(&[(1, "root"), (2, "ann"), (3, "ann")]);
        t.hub.opened(ConnId(4), &Claim::Anonymous, None).unwrap();
        t.call(1, "admin.broadcast", json!({ "text": "maintenance" }))
            .unwrap();
        for c in [1, 2, 3] {
            assert!(t.events(c).contains(&"broadcast".to_owned()), "{c}");
        }
        assert!(t.events(4).is_empty(), "anonymous connections are not told");
        t.call(1, "admin.kick", json!({ "user": "ann" })).unwrap();
        let mut closes = t.closes();
        closes.sort();
        assert_eq!(closes, [(2, KICKED), (3, KICKED)]);
        let e = t
            .call(2, "admin.kick", json!({ "user": "root" }))
            .unwrap_err();
        assert_eq!(e.code(), "not_admin");
    }
}
