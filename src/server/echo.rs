//! The two handlers of `switchboard echo`, run on the server runtime so that the
//! conformance suites, the interop suites and the benchmarks all drive the same code
//! as applications do.
//!
//! - [`Echo`]: every text and binary message goes back to its sender.
//! - [`Broadcast`]: every message goes to every open connection, sender included,
//!   encoded once and shared.
//!
//! Both select the first subprotocol a client offers that is in their list
//! (`--protocol`, RFC 6455 4.2.2), and none when the list is empty.

use super::{Conn, Frame, Handler, Message, Reject, Server};
use crate::protocol::handshake::{choose_protocol, Offer, Request};
use std::net::SocketAddr;
use std::sync::Arc;

fn select(supported: &[String], offer: &Offer) -> Result<Option<String>, Reject> {
    let supported: Vec<&str> = supported.iter().map(String::as_str).collect();
    Ok(choose_protocol(&offer.protocols, &supported).map(str::to_owned))
}

/// Sends every message back to its sender, in one frame, uncopied.
#[derive(Clone, Debug, Default)]
pub struct Echo {
    /// Subprotocols this server speaks, in no order: the client's order decides.
    pub protocols: Vec<String>,
}

impl Handler for Echo {
    fn on_upgrade(
        &self,
        _: &Request,
        offer: &Offer,
        _: SocketAddr,
    ) -> Result<Option<String>, Reject> {
        select(&self.protocols, offer)
    }

    fn on_message(&self, _server: &Server, conn: &Arc<Conn>, message: Message) {
        // Fails only when the connection is closing: the message has nowhere to go.
        let _ = conn.send_message(message);
    }
}

/// Sends every message to every open connection.
#[derive(Clone, Debug, Default)]
pub struct Broadcast {
    /// Subprotocols this server speaks, as for [`Echo`].
    pub protocols: Vec<String>,
}

impl Handler for Broadcast {
    fn on_upgrade(
        &self,
        _: &Request,
        offer: &Offer,
        _: SocketAddr,
    ) -> Result<Option<String>, Reject> {
        select(&self.protocols, offer)
    }

    fn on_message(&self, server: &Server, _conn: &Arc<Conn>, message: Message) {
        let frame = match &message {
            Message::Text(t) => Frame::text(t),
            Message::Binary(b) => Frame::binary(b),
        };
        server.broadcast(&frame);
    }
}
