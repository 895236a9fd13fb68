//! The two handlers of `switchboard echo`, run on the server runtime so that the
//! conformance suites, the interop suites and the benchmarks all drive the same code
//! as applications do.
//!
//! - [`Echo`]: every text and binary message goes back to its sender.
//! - [`Broadcast`]: every message goes to every open connection, sender included,
//!   encoded once and shared.

use super::{Conn, Frame, Handler, Message, Server};
use std::sync::Arc;

/// Sends every message back to its sender, in one frame, uncopied.
#[derive(Clone, Copy, Debug, Default)]
pub struct Echo;

impl Handler for Echo {
    fn on_message(&self, _server: &Server, conn: &Arc<Conn>, message: Message) {
        // Fails only when the connection is closing: the message has nowhere to go.
        let _ = conn.send_message(message);
    }
}

/// Sends every message to every open connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct Broadcast;

impl Handler for Broadcast {
    fn on_message(&self, server: &Server, _conn: &Arc<Conn>, message: Message) {
        let frame = match &message {
            Message::Text(t) => Frame::text(t),
            Message::Binary(b) => Frame::binary(b),
        };
        server.broadcast(&frame);
    }
}
