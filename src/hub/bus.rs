//! Deliveries: to this node's connections straight into their queues, and to other
//! nodes through the bus ([`crate::store::Bus`]); what comes in on the bus and on the
//! notifications channel.

use super::*;

impl Hub {
    /// Sends `event` to every connection of `users` on every node, but `except` (a
    /// connection of this node).
    pub(super) fn publish(
        &self,
        users: &[String],
        event: &str,
        data: &Value,
        except: Option<ConnId>,
    ) -> Outcome {
        let mut ids = self.held_by(Some(users));
        ids.retain(|c| Some(*c) != except);
        self.deliver_here(&ids, event, data);
        self.forward(|| json!({ "node": self.node, "users": users, "event": event, "data": data }))
    }

    /// Sends `event` to every connection on every node that has a user.
    pub(super) fn publish_all(&self, event: &str, data: &Value) -> Outcome {
        self.deliver_here(&self.held_by(None), event, data);
        self.forward(|| json!({ "node": self.node, "all": true, "event": event, "data": data }))
    }

    /// Kicks `user` off every node.
    pub(super) fn publish_kick(&self, user: &str, reason: &str) -> Outcome {
        self.kick_here(user, reason);
        self.forward(|| json!({ "node": self.node, "kick": user, "reason": reason }))
    }

    /// The connections of this node that belong to `users`, each once; `None`: those of
    /// every user.
    pub(super) fn held_by(&self, users: Option<&[String]>) -> Vec<ConnId> {
        let st = self.state();
        match users {
            Some(users) => st.identity.connections_of_users(users),
            None => st.identity.connections_of_users(&st.identity.users()),
        }
    }

    /// Delivers to connections of this node, straight to their queues: a delivery
    /// here never waits on the bus, so it does not depend on Redis being up or on
    /// this node's subscription being back after an outage.
    pub(super) fn deliver_here(&self, ids: &[ConnId], event: &str, data: &Value) {
        if ids.is_empty() {
            return;
        }
        if let Some(server) = self.server() {
            server.reply_many(ids, event, data);
        }
    }

    pub(super) fn kick_here(&self, user: &str, reason: &str) {
        let Some(server) = self.server() else { return };
        let conns = self.state().identity.connections_of(user);
        for c in conns {
            if let Some(conn) = server.connection(c) {
                conn.close(KICKED, reason);
            }
        }
    }

    /// Hands a delivery to the bus for the other nodes, when the bus reaches any (the
    /// memory bus reaches this process only). A failure is the sender's to hear of:
    /// [`Error::NotForwarded`], since this node's recipients already have it.
    pub(super) fn forward(&self, message: impl FnOnce() -> Value) -> Outcome {
        if !self.stores.bus.reaches_other_nodes() {
            return Ok(());
        }
        self.stores
            .bus
            .publish(&self.config.channel, &message().to_string())
            .map_err(Error::NotForwarded)
    }

    /// A delivery from the bus: another node's (this node's own were delivered when
    /// they were sent).
    pub(super) fn on_bus(&self, payload: &str) {
        let Ok(Value::Object(m)) = serde_json::from_str::<Value>(payload) else {
            self.count("bus_invalid");
            self.log(
                Level::Warn,
                None,
                "invalid message on the bus",
                &[("bytes", &payload.len())],
            );
            return;
        };
        if m.get("node").and_then(Value::as_str) == Some(self.node.as_str()) {
            return;
        }
        if let Some(user) = m.get("kick").and_then(Value::as_str) {
            let reason = m.get("reason").and_then(Value::as_str).unwrap_or("kicked");
            self.kick_here(user, reason);
            return;
        }
        let (Some(event), Some(data)) = (m.get("event").and_then(Value::as_str), m.get("data"))
        else {
            self.count("bus_invalid");
            return;
        };
        let ids = if m.get("all").and_then(Value::as_bool) == Some(true) {
            self.held_by(None)
        } else {
            self.held_by(Some(&user_list(m.get("users")).unwrap_or_default()))
        };
        self.deliver_here(&ids, event, data);
    }

    /// A notification from the site: `{"users": [23, "user5"], "data": {..}}`.
    pub(super) fn on_notification(&self, payload: &str) {
        let Some((users, data)) = read_notification(payload) else {
            self.count("notifications_invalid");
            self.log(
                Level::Warn,
                None,
                "invalid notification ignored; expected {\"users\": [..], \"data\": ..}",
                &[("bytes", &payload.len())],
            );
            return;
        };
        self.count("notifications");
        let Some(server) = self.server() else { return };
        let ids = self.held_by(Some(&users));
        server.reply_many(&ids, "message", &data);
    }
}

/// Reads a notification, `{"users": [..], "data": ..}`, with user ids as strings.
pub fn read_notification(payload: &str) -> Option<(Vec<String>, Value)> {
    let Ok(Value::Object(mut m)) = serde_json::from_str::<Value>(payload) else {
        return None;
    };
    let users = match m.get("users") {
        Some(Value::Array(_)) => user_list(m.get("users"))?,
        _ => return None,
    };
    let data = m.remove("data")?;
    Some((users, data))
}
