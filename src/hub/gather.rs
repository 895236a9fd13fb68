//! What one node asks of every node, and what it hands to every node: listings and
//! stats gathered from all (the admin listener's `/cluster/...` routes), and payloads
//! relayed to a part of the program on all (the back-end bridge's commands with
//! `match`). Both go through the bus; answers come back through the shared store,
//! under a key the asking node picks and waits on, so nodes never talk directly.

use super::bus::BusMessage;
use super::*;

/// How long answers stay in the store for a node that asked and stopped waiting.
const ANSWER_TTL: Duration = Duration::from_secs(30);

/// What runs a relayed payload on this node.
pub type RelayHandler = Arc<dyn Fn(&Value) + Send + Sync>;

/// What every node's answers came to: the answers, this node's first, and the live
/// nodes that did not answer in time.
pub(super) struct Gathered {
    pub answers: Vec<Value>,
    pub missing: Vec<String>,
}

/// Whether `key` is one [`Hub::ask_all`] makes: `ask:` and 16 hex digits. A key from
/// the bus is checked before anything is written under it.
fn is_reply_key(key: &str) -> bool {
    key.strip_prefix("ask:")
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Hub {
    /// This node's answer to `what` (`stats`, `connections`), naming the node.
    fn answer_of(&self, what: &str) -> Option<Value> {
        match what {
            "stats" => Some(self.stats()),
            "connections" => {
                let server = self.server()?;
                Some(json!({ "node": self.node, "connections": self.listing(&server) }))
            }
            _ => None,
        }
    }

    /// Another node asks every node for `what`, to be answered under `reply`.
    pub(super) fn asked(&self, what: &str, reply: &str) {
        let answer = self.answer_of(what).filter(|_| is_reply_key(reply));
        let Some(answer) = answer else {
            self.count("bus_invalid");
            self.log(
                Level::Warn,
                None,
                "invalid question on the bus",
                &[("ask", &self.clip(what)), ("reply", &self.clip(reply))],
            );
            return;
        };
        let text = answer.to_string();
        if let Err(e) = self
            .stores
            .shared
            .answer(&self.ns, reply, &text, ANSWER_TTL)
        {
            self.log(
                Level::Warn,
                None,
                "another node's question could not be answered",
                &[("ask", &what), ("error", &e)],
            );
        }
    }

    /// Asks every live node for `what`, waiting up to [`Config::gather_timeout`].
    pub(super) fn ask_all(&self, what: &str) -> Result<Gathered, Error> {
        let mine = self
            .answer_of(what)
            .ok_or_else(|| Error::BadRequest(format!("nothing to ask about {what}")))?;
        let mut answers = vec![mine];
        if !self.stores.bus.reaches_other_nodes() {
            return Ok(Gathered {
                answers,
                missing: Vec::new(),
            });
        }
        let others: Vec<String> = self
            .stores
            .shared
            .nodes(&self.ns)?
            .into_iter()
            .filter(|(node, alive)| *alive && *node != self.node)
            .map(|(node, _)| node)
            .collect();
        if others.is_empty() {
            return Ok(Gathered {
                answers,
                missing: others,
            });
        }
        let reply = format!("ask:{:016x}", crate::secure::random_u64());
        let question = BusMessage::Ask {
            node: self.node.clone(),
            what: what.to_owned(),
            reply: reply.clone(),
        };
        self.stores
            .bus
            .publish(&self.config.channel, &question.to_json())?;
        let texts = self.stores.shared.gather(
            &self.ns,
            &reply,
            others.len(),
            self.config.gather_timeout,
        )?;
        let mut answered = BTreeSet::new();
        for text in texts {
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if let Some(node) = v.get("node").and_then(Value::as_str) {
                answered.insert(node.to_owned());
            }
            answers.push(v);
        }
        let missing = others
            .into_iter()
            .filter(|n| !answered.contains(n))
            .collect();
        Ok(Gathered { answers, missing })
    }

    /// Runs `handler` with each payload another node relays on `topic`.
    pub fn on_relay(&self, topic: &str, handler: RelayHandler) {
        self.relays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_owned(), handler);
    }

    /// Hands `payload` to the handler of `topic` on every other node, when the bus
    /// reaches any; this node's part is the caller's to do. A failure is counted
    /// (`relay_errors`) and logged here too.
    pub fn relay(&self, topic: &str, payload: &Value) -> Result<(), Error> {
        let sent = self.forward(|| BusMessage::Relay {
            node: self.node.clone(),
            topic: topic.to_owned(),
            payload: payload.clone(),
        });
        if let Err(e) = &sent {
            self.count("relay_errors");
            self.log(
                Level::Warn,
                None,
                "not relayed to the other nodes",
                &[("topic", &topic), ("error", e)],
            );
        }
        sent
    }

    /// Another node relayed `payload` on `topic`.
    pub(super) fn relayed(&self, topic: &str, payload: &Value) {
        let handler = self
            .relays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .cloned();
        match handler {
            Some(handler) => handler(payload),
            None => self.count("relay_unhandled"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_made_for_answers_are_written() {
        assert!(is_reply_key("ask:00ff00ff00ff00ff"));
        for bad in [
            "",
            "ask:",
            "ask:00ff",
            "session-store-1",
            "ask:00ff00ff00ff00fg",
        ] {
            assert!(!is_reply_key(bad), "{bad}");
        }
    }
}
