//! The handler of `switchboard echo`, run on the server runtime so that the
//! conformance suites, the interop suites and the benchmarks all drive the same code
//! as applications do. In [`Mode::Echo`] every text and binary message goes back to
//! its sender; in [`Mode::Broadcast`] it goes to every open connection, sender
//! included, encoded once and shared.
//!
//! It selects the first subprotocol a client offers that is in its list
//! (`--protocol`, RFC 6455 4.2.2), and none when the list is empty.

use super::{Accept, Conn, Frame, Handler, Message, Reject, Server, Upgrade};
use crate::protocol::handshake::choose_protocol;
use std::sync::Arc;

/// Where a message goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Back to its sender, in one frame, uncopied.
    #[default]
    Echo,
    /// To every open connection.
    Broadcast,
}

/// The echo server's handler.
#[derive(Clone, Debug, Default)]
pub struct Echo {
    /// Where messages go.
    pub mode: Mode,
    /// Subprotocols this server speaks, in no order: the client's order decides.
    pub protocols: Vec<String>,
}

impl Handler for Echo {
    fn on_upgrade(&self, upgrade: &Upgrade) -> Result<Accept, Reject> {
        let supported: Vec<&str> = self.protocols.iter().map(String::as_str).collect();
        Ok(Accept::protocol(
            choose_protocol(upgrade.protocols(), &supported).map(str::to_owned),
        ))
    }

    fn on_message(&self, server: &Server, conn: &Arc<Conn>, message: Message) {
        match self.mode {
            // Fails only when the connection is closing: the message has nowhere to go.
            Mode::Echo => {
                let _ = conn.send_message(message);
            }
            Mode::Broadcast => {
                let frame = match &message {
                    Message::Text(t) => Frame::text(t),
                    Message::Binary(b) => Frame::binary(b),
                };
                server.broadcast(&frame);
            }
        }
    }
}
