//! Deliveries: to this node's connections straight into their queues, and to other
//! nodes through the bus ([`crate::store::Bus`]); what comes in on the bus and on the
//! notifications channel.

use super::*;

/// What one node tells the others on the bus ([`Config::channel`]). It is built and
/// matched as this type, and turned into JSON only where it crosses Redis:
///
/// - `{"node", "users": [..], "event", "data"}`: to every connection of `users`;
/// - `{"node", "all": true, "event", "data"}`: to every signed-in connection;
/// - `{"node", "to_room": name, "event", "data"}`: to every connection of the room's
///   members, as each node's mirror of the room lists them (one message for a room of
///   any size);
/// - `{"node", "kick": user, "reason"}`: close every connection of `user` with 4003;
/// - `{"node", "room": name, "v": version, "state": {..} | null}`: room `name` is now
///   `state` (a [`super::rooms::Room`] document; `null`: removed), published in the
///   transaction that changed it, so that every node's mirror follows the changes in
///   the order they were made;
/// - `{"node", "ask": what, "reply": key}`: every node answers `what` (`connections`,
///   `stats`) under `key` in the shared store, for the node that asks;
/// - `{"node", "relay": topic, "payload": ..}`: for the handler of `topic` on every
///   node ([`Hub::on_relay`]), such as the back-end bridge's commands.
///
/// `node` tells a node its own messages, which it delivered when it sent them.
#[derive(Clone, Debug, PartialEq)]
pub enum BusMessage {
    /// An event for the connections of some users; `id`: its history id, sent
    /// beside the data (a kept notification).
    Deliver {
        node: String,
        users: Vec<UserId>,
        event: String,
        data: Value,
        id: Option<String>,
    },
    /// An event for the members of a room.
    ToRoom {
        node: String,
        room: String,
        event: String,
        data: Value,
    },
    /// An event for every signed-in connection.
    All {
        node: String,
        event: String,
        data: Value,
    },
    /// A user kicked off every node.
    Kick {
        node: String,
        user: UserId,
        reason: String,
    },
    /// A room changed.
    Room {
        node: String,
        room: String,
        version: u64,
        state: Value,
    },
    /// A question for every node, answered in the shared store.
    Ask {
        node: String,
        what: String,
        reply: String,
    },
    /// Something for a part of the program on every node.
    Relay {
        node: String,
        topic: String,
        payload: Value,
    },
}

impl BusMessage {
    /// The node that sent it.
    pub fn node(&self) -> &str {
        match self {
            BusMessage::Deliver { node, .. }
            | BusMessage::ToRoom { node, .. }
            | BusMessage::All { node, .. }
            | BusMessage::Kick { node, .. }
            | BusMessage::Room { node, .. }
            | BusMessage::Ask { node, .. }
            | BusMessage::Relay { node, .. } => node,
        }
    }

    /// The JSON sent on the bus, `node` first: a node tells its own messages by
    /// their first bytes ([`BusMessage::is_from`]) without parsing them.
    pub fn to_json(&self) -> String {
        let rest = match self {
            BusMessage::Deliver {
                users,
                event,
                data,
                id,
                ..
            } => {
                let mut m = json!({ "users": users, "event": event, "data": data });
                if let Some(id) = id {
                    m["id"] = json!(id);
                }
                m
            }
            BusMessage::ToRoom {
                room, event, data, ..
            } => json!({ "to_room": room, "event": event, "data": data }),
            BusMessage::All { event, data, .. } => {
                json!({ "all": true, "event": event, "data": data })
            }
            BusMessage::Kick { user, reason, .. } => json!({ "kick": user, "reason": reason }),
            BusMessage::Room {
                room,
                version,
                state,
                ..
            } => json!({ "room": room, "v": version, "state": state }),
            BusMessage::Ask { what, reply, .. } => json!({ "ask": what, "reply": reply }),
            BusMessage::Relay { topic, payload, .. } => {
                json!({ "relay": topic, "payload": payload })
            }
        }
        .to_string();
        // `rest` is a non-empty object: `{"..":..}`; the node goes in front of its keys.
        let mut out = format!("{{\"node\":{},", Value::from(self.node()));
        out.push_str(&rest[1..]);
        out
    }

    /// Whether `payload` was written by [`BusMessage::to_json`] on `node`, told by its
    /// first bytes alone. A message that is not, or that another version wrote with
    /// its keys in another order, is parsed and its `node` compared.
    pub fn is_from(payload: &str, node: &str) -> bool {
        payload
            .strip_prefix("{\"node\":\"")
            .and_then(|rest| rest.strip_prefix(node))
            .is_some_and(|rest| rest.starts_with("\","))
    }

    /// Reads a message from the bus; `None` when it is none of the three forms.
    pub fn parse(text: &str) -> Option<BusMessage> {
        let Ok(Value::Object(mut m)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let mut take_str = |key: &str| match m.remove(key) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        let node = take_str("node").unwrap_or_default();
        if let Some(user) = take_str("kick") {
            let reason = take_str("reason").unwrap_or_else(|| "kicked".into());
            let user = UserId::new(user);
            return Some(BusMessage::Kick { node, user, reason });
        }
        if let Some(what) = take_str("ask") {
            let reply = take_str("reply")?;
            return Some(BusMessage::Ask { node, what, reply });
        }
        if let Some(topic) = take_str("relay") {
            let payload = m.remove("payload")?;
            return Some(BusMessage::Relay {
                node,
                topic,
                payload,
            });
        }
        if let Some(room) = take_str("room") {
            let version = m.get("v")?.as_u64()?;
            let state = m.remove("state")?;
            return Some(BusMessage::Room {
                node,
                room,
                version,
                state,
            });
        }
        let to_room = take_str("to_room");
        let id = take_str("id");
        let event = take_str("event")?;
        let data = m.remove("data")?;
        if let Some(room) = to_room {
            return Some(BusMessage::ToRoom {
                node,
                room,
                event,
                data,
            });
        }
        if m.get("all").and_then(Value::as_bool) == Some(true) {
            return Some(BusMessage::All { node, event, data });
        }
        let users = match m.get("users") {
            Some(Value::Array(_)) => user_list(m.get("users"))?,
            _ => return None,
        };
        Some(BusMessage::Deliver {
            node,
            users,
            event,
            data,
            id,
        })
    }
}

impl Hub {
    /// Sends `event` to every connection of `users` on every node, but `except` (a
    /// connection of this node).
    pub(super) fn publish(
        &self,
        users: &[UserId],
        event: &str,
        data: &Value,
        except: Option<ConnId>,
    ) -> Outcome {
        self.publish_kept(users, event, data, None, except)
    }

    /// [`Hub::publish`] of something kept in history under `id`, which goes with it
    /// beside the data.
    pub(super) fn publish_kept(
        &self,
        users: &[UserId],
        event: &str,
        data: &Value,
        id: Option<&str>,
        except: Option<ConnId>,
    ) -> Outcome {
        let mut ids = self.held_by(Some(users));
        ids.retain(|c| Some(*c) != except);
        self.deliver_here_with(&ids, event, data, id);
        if !self.stores.bus.reaches_other_nodes() {
            return Ok(());
        }
        // Only to the nodes that hold one of the users, on each node's own channel: a
        // node holding none of them is not woken, and a lone node publishes nothing.
        let message = BusMessage::Deliver {
            node: self.node.clone(),
            users: users.to_vec(),
            event: event.to_owned(),
            data: data.clone(),
            id: id.map(str::to_owned),
        };
        let names: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
        self.stores
            .shared
            .publish_to_holders(
                &self.ns,
                &names,
                &self.node,
                &self.node_channel_prefix(),
                &message.to_json(),
            )
            .map(drop)
            .map_err(Error::NotForwarded)
    }

    /// What a node's own channel is named before its id: `switchboard:`.
    pub(super) fn node_channel_prefix(&self) -> String {
        format!("{}:", self.config.channel)
    }

    /// Sends `event` to every connection of the members of `room` on every node, as
    /// each node's mirror lists them: one message on the bus whatever the room's size.
    pub(super) fn publish_room(&self, room: &str, event: &str, data: &Value) -> Outcome {
        self.deliver_here(&self.held_by(Some(&self.members(room))), event, data);
        self.forward(|| BusMessage::ToRoom {
            node: self.node.clone(),
            room: room.to_owned(),
            event: event.to_owned(),
            data: data.clone(),
        })
    }

    /// Sends `event` to every connection on every node that has a user.
    pub(super) fn publish_all(&self, event: &str, data: &Value) -> Outcome {
        self.deliver_here(&self.held_by(None), event, data);
        self.forward(|| BusMessage::All {
            node: self.node.clone(),
            event: event.to_owned(),
            data: data.clone(),
        })
    }

    /// Kicks `user` off every node.
    pub(super) fn publish_kick(&self, user: &UserId, reason: &str) -> Outcome {
        self.kick_here(user, reason);
        self.forward(|| BusMessage::Kick {
            node: self.node.clone(),
            user: user.clone(),
            reason: reason.to_owned(),
        })
    }

    /// The connections of this node that belong to `users`, each once; `None`: those of
    /// every user.
    pub(super) fn held_by(&self, users: Option<&[UserId]>) -> Vec<ConnId> {
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
        self.deliver_here_with(ids, event, data, None);
    }

    /// [`Hub::deliver_here`], with the history id beside the data when there is one.
    fn deliver_here_with(&self, ids: &[ConnId], event: &str, data: &Value, id: Option<&str>) {
        if ids.is_empty() {
            return;
        }
        let text = match id {
            Some(id) => crate::envelope::envelope_with_id(event, data, id),
            None => crate::envelope::envelope(event, data),
        };
        self.with_sink(|sink| sink.send_text(ids, &text));
    }

    pub(super) fn kick_here(&self, user: &UserId, reason: &str) {
        let conns = self.state().identity.connections_of(user);
        self.with_sink(|sink| {
            for c in conns {
                sink.close(c, KICKED, reason);
            }
        });
    }

    /// Hands a delivery to the bus for the other nodes, when the bus reaches any (the
    /// memory bus reaches this process only). A failure is the sender's to hear of:
    /// [`Error::NotForwarded`], since this node's recipients already have it.
    pub(super) fn forward(&self, message: impl FnOnce() -> BusMessage) -> Outcome {
        if !self.stores.bus.reaches_other_nodes() {
            return Ok(());
        }
        self.stores
            .bus
            .publish(&self.config.channel, &message().to_json())
            .map_err(Error::NotForwarded)
    }

    /// A delivery from the bus: another node's (this node's own were delivered when
    /// they were sent).
    pub(super) fn on_bus(&self, payload: &str) {
        // This node's own messages come back to it; they were delivered when sent.
        if BusMessage::is_from(payload, &self.node) {
            self.own_echo(payload);
            return;
        }
        let Some(message) = BusMessage::parse(payload) else {
            self.count("bus_invalid");
            self.log(
                Level::Warn,
                None,
                "invalid message on the bus",
                &[("bytes", &payload.len())],
            );
            return;
        };
        if message.node() == self.node {
            return;
        }
        match message {
            BusMessage::Kick { user, reason, .. } => self.kick_here(&user, &reason),
            BusMessage::Room {
                room,
                version,
                state,
                ..
            } => self.room_changed(&room, version, &state),
            BusMessage::Ask { what, reply, .. } => self.asked(&what, &reply),
            BusMessage::Relay { topic, payload, .. } => self.relayed(&topic, &payload),
            BusMessage::All { event, data, .. } => {
                self.deliver_here(&self.held_by(None), &event, &data)
            }
            BusMessage::ToRoom {
                room, event, data, ..
            } => self.deliver_here(&self.held_by(Some(&self.members(&room))), &event, &data),
            BusMessage::Deliver {
                users,
                event,
                data,
                id,
                ..
            } => self.deliver_here_with(&self.held_by(Some(&users)), &event, &data, id.as_deref()),
        }
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
        let ids = self.held_by(Some(&users));
        self.deliver_here(&ids, "message", &data);
    }
}

/// Reads a notification, `{"users": [..], "data": ..}`, with user ids as strings.
pub fn read_notification(payload: &str) -> Option<(Vec<UserId>, Value)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_messages_cross_as_they_were_sent() {
        let all = [
            BusMessage::Deliver {
                node: "n1".into(),
                users: vec!["23".into(), "ann".into()],
                event: "private.message".into(),
                data: json!({"message": "hi", "id": "1-0"}),
                id: None,
            },
            BusMessage::Deliver {
                node: "n1".into(),
                users: vec!["23".into()],
                event: "message".into(),
                data: json!({"title": "hello"}),
                id: Some("1-0".into()),
            },
            BusMessage::All {
                node: "n1".into(),
                event: "admin.broadcast".into(),
                data: json!("all of you"),
            },
            BusMessage::ToRoom {
                node: "n1".into(),
                room: "lobby".into(),
                event: "chat.message".into(),
                data: json!({"message": "hi"}),
            },
            BusMessage::Kick {
                node: "n2".into(),
                user: "bob".into(),
                reason: "spam".into(),
            },
            BusMessage::Room {
                node: "n3".into(),
                room: "lobby".into(),
                version: 4,
                state: json!({"v": 4, "members": ["ann"]}),
            },
            BusMessage::Room {
                node: "n3".into(),
                room: "lobby".into(),
                version: 5,
                state: Value::Null,
            },
            BusMessage::Ask {
                node: "n1".into(),
                what: "stats".into(),
                reply: "ask:00ff".into(),
            },
            BusMessage::Relay {
                node: "n2".into(),
                topic: "broker".into(),
                payload: json!([{"send": "hi", "match": {"userId": "ann"}}]),
            },
        ];
        for m in all {
            assert_eq!(BusMessage::parse(&m.to_json()), Some(m.clone()), "{m:?}");
        }
    }

    #[test]
    fn the_wire_form_is_kept_and_numbers_read_as_ids() {
        let m = BusMessage::parse(r#"{"node":"x","users":[23],"event":"e","data":null}"#);
        assert_eq!(
            m,
            Some(BusMessage::Deliver {
                node: "x".into(),
                users: vec!["23".into()],
                event: "e".into(),
                data: Value::Null,
                id: None,
            })
        );
        let kick = BusMessage::Kick {
            node: "a".into(),
            user: "u".into(),
            reason: "r".into(),
        };
        let v: Value = serde_json::from_str(&kick.to_json()).unwrap();
        assert_eq!(v, json!({"node": "a", "kick": "u", "reason": "r"}));
    }

    #[test]
    fn a_node_knows_its_own_messages_by_their_first_bytes() {
        let m = BusMessage::Deliver {
            node: "00ff".into(),
            users: vec!["u".into()],
            event: "e".into(),
            data: json!({"node": "elsewhere"}),
            id: None,
        };
        let text = m.to_json();
        assert!(text.starts_with(r#"{"node":"00ff","#), "{text}");
        assert!(BusMessage::is_from(&text, "00ff"));
        assert!(!BusMessage::is_from(&text, "00f"));
        assert!(!BusMessage::is_from(&text, "00ffa"));
        assert!(!BusMessage::is_from(r#"{"data":1,"node":"00ff"}"#, "00ff"));
        assert_eq!(BusMessage::parse(&text), Some(m));
    }

    #[test]
    fn what_is_no_bus_message_is_refused() {
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"node":"x","event":"e"}"#,
            r#"{"node":"x","users":"u","event":"e","data":1}"#,
            r#"{"node":"x","users":[{}],"event":"e","data":1}"#,
            r#"{"node":"x","data":1,"users":[]}"#,
            r#"{"node":"x","room":"r","state":null}"#,
            r#"{"node":"x","room":"r","v":"1","state":null}"#,
            r#"{"node":"x","room":"r","v":1}"#,
            r#"{"node":"x","ask":"stats"}"#,
            r#"{"node":"x","relay":"broker"}"#,
        ] {
            assert_eq!(BusMessage::parse(bad), None, "{bad}");
        }
    }
}
