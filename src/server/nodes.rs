//! The event API across nodes: a program built on [`Server::builder`] that joins a bus
//! shared by several processes ([`super::events::Builder::nodes`], Redis in practice)
//! has [`Server::reply_all`] reach every node's connections, and [`Server::emit_all`]
//! call the handlers of an event on every node, as Socket.IO's Redis adapter does with
//! `io.emit` and `serverSideEmit`. Nodes never talk to each other directly.
//!
//! On the bus, channel of the program's choosing:
//! - `{"node", "all": true, "event", "data"}`: `event` to every connection (the node
//!   that sends it has already sent it to its own);
//! - `{"node", "emit": event, "data"}`: the handlers of `event` on every node, the
//!   sender's included, each on its bus thread with no connection ([`Ctx::conn`] is
//!   `None`).
//!
//! [`Ctx::conn`]: super::events::Ctx::conn

use super::log::Level;
use super::{Frame, Server, Shared};
use crate::envelope::envelope;
use crate::store::{self, Bus};
use serde_json::{json, Value};
use std::sync::{Arc, Weak};
use std::thread;

/// The bus a server shares with the other nodes, and its name on it.
pub(crate) struct Nodes {
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) channel: String,
    pub(crate) node: String,
}

/// What one node tells the others.
#[derive(Clone, Debug, PartialEq)]
enum NodeMessage {
    All { event: String, data: Value },
    Emit { event: String, data: Value },
}

impl NodeMessage {
    fn to_json(&self, node: &str) -> String {
        match self {
            NodeMessage::All { event, data } => {
                json!({ "node": node, "all": true, "event": event, "data": data })
            }
            NodeMessage::Emit { event, data } => {
                json!({ "node": node, "emit": event, "data": data })
            }
        }
        .to_string()
    }

    /// The message and the node that sent it; `None` for anything else.
    fn parse(text: &str) -> Option<(String, NodeMessage)> {
        let Ok(Value::Object(mut m)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let node = m.get("node")?.as_str()?.to_owned();
        let data = m.remove("data")?;
        if let Some(event) = m.get("emit").and_then(Value::as_str) {
            let event = event.to_owned();
            return Some((node, NodeMessage::Emit { event, data }));
        }
        if m.get("all").and_then(Value::as_bool) == Some(true) {
            let event = m.get("event")?.as_str()?.to_owned();
            return Some((node, NodeMessage::All { event, data }));
        }
        None
    }
}

/// What the bus thread calls for an `emit` from any node: the handlers of the event.
pub(crate) type Emit = Box<dyn Fn(&Server, &str, &Value) + Send + Sync>;

impl Server {
    fn publish_to_nodes(&self, message: &NodeMessage) -> Result<(), store::Error> {
        let Some(nodes) = self.shared.nodes.get() else {
            return Ok(());
        };
        let sent = nodes
            .bus
            .publish(&nodes.channel, &message.to_json(&nodes.node));
        if let Err(e) = &sent {
            self.metrics().app_event("node_bus_errors");
            self.logger().log(
                Level::Warn,
                None,
                "not published to the other nodes",
                &[("channel", &nodes.channel), ("error", e)],
            );
        }
        sent
    }

    /// [`Server::reply_all`]'s part for the other nodes.
    pub(crate) fn reply_all_nodes(&self, event: &str, data: &Value) {
        // A failure is counted and logged; this node's connections have it.
        let _ = self.publish_to_nodes(&NodeMessage::All {
            event: event.to_owned(),
            data: data.clone(),
        });
    }

    /// Calls the handlers of `event` on every node that shares this server's bus, this
    /// one included, with no connection. Without a bus, on this node alone. They run
    /// on each node's bus thread, after this returns.
    pub fn emit_all(&self, event: &str, data: &Value) -> Result<(), store::Error> {
        if self.shared.nodes.get().is_none() {
            if let Some(emit) = self.shared.emit.get() {
                emit(self, event, data);
            }
            return Ok(());
        }
        self.publish_to_nodes(&NodeMessage::Emit {
            event: event.to_owned(),
            data: data.clone(),
        })
    }
}

/// Joins `server` to the other nodes on `bus`: subscribes to `channel` and starts the
/// thread that runs what comes, which ends with the server.
pub(crate) fn join(
    server: &Server,
    bus: Arc<dyn Bus>,
    channel: &str,
    emit: Emit,
) -> std::io::Result<()> {
    let node = format!("{:016x}", crate::secure::random_u64());
    let rx = bus
        .subscribe(channel)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let _ = server.shared.emit.set(emit);
    let _ = server.shared.nodes.set(Nodes {
        bus,
        channel: channel.to_owned(),
        node: node.clone(),
    });
    let weak: Weak<Shared> = Arc::downgrade(&server.shared);
    thread::Builder::new()
        .name("events-bus".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            for text in rx {
                let Some(shared) = weak.upgrade() else { return };
                let server = Server { shared };
                match NodeMessage::parse(&text) {
                    Some((from, NodeMessage::All { event, data })) => {
                        if from != node {
                            server.broadcast(&Frame::text(&envelope(&event, &data)));
                        }
                    }
                    Some((_, NodeMessage::Emit { event, data })) => {
                        if let Some(emit) = server.shared.emit.get() {
                            emit(&server, &event, &data);
                        }
                    }
                    None => {
                        server.metrics().app_event("node_bus_invalid");
                        server.logger().log(
                            Level::Warn,
                            None,
                            "invalid message on the nodes' bus",
                            &[("bytes", &text.len())],
                        );
                    }
                }
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_messages_cross_as_they_were_sent() {
        for m in [
            NodeMessage::All {
                event: "said".into(),
                data: json!({"text": "hi"}),
            },
            NodeMessage::Emit {
                event: "tick".into(),
                data: json!(3),
            },
        ] {
            assert_eq!(NodeMessage::parse(&m.to_json("n1")), Some(("n1".into(), m)));
        }
        for bad in [
            "",
            "{}",
            r#"{"node":"n","all":true,"data":1}"#,
            r#"{"node":"n","emit":"e"}"#,
            r#"{"all":true,"event":"e","data":1}"#,
        ] {
            assert_eq!(NodeMessage::parse(bad), None, "{bad}");
        }
    }
}
