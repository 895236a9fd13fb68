//! What the server asks of an application: the [`Handler`] trait, and the types it
//! decides with (an [`Upgrade`] request to accept or [`Reject`], a [`Note`] kept with
//! the connection, a reason to be [`Unhealthy`]).

use super::{AdminRequest, AdminResponse, Conn, Message, Server};
use crate::form::parse_query;
use crate::protocol::handshake::{Offer, Request};
use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// Why what an application depends on (a store) does not work now: `GET /health`
/// answers 503 with the reason ([`Handler::health`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unhealthy {
    /// For people: what is down, and why.
    pub reason: String,
}

impl Unhealthy {
    /// A reason for 503.
    pub fn new(reason: impl Into<String>) -> Self {
        Unhealthy {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// An upgrade request that is valid WebSocket, as a [`Handler`] decides on it: the
/// request's target and headers, the subprotocols offered, and the peer's address.
/// The server checked what RFC 6455 4.2.1 requires; the rest is the application's.
#[derive(Clone, Copy, Debug)]
pub struct Upgrade<'a> {
    request: &'a Request,
    offer: &'a Offer,
    peer: SocketAddr,
}

impl<'a> Upgrade<'a> {
    pub(crate) fn new(request: &'a Request, offer: &'a Offer, peer: SocketAddr) -> Self {
        Upgrade {
            request,
            offer,
            peer,
        }
    }

    /// The request target as sent: path and query.
    pub fn target(&self) -> &'a str {
        &self.request.target
    }

    /// The path, without the query.
    pub fn path(&self) -> &'a str {
        self.target()
            .split_once('?')
            .map_or(self.target(), |(p, _)| p)
    }

    /// The query's pairs, percent-decoded ([`crate::form::parse_query`]).
    pub fn query(&self) -> Vec<(String, String)> {
        parse_query(self.target().split_once('?').map_or("", |(_, q)| q))
    }

    /// Every value of header `name` (any case), in order.
    pub fn headers(&self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.request.headers.all(name)
    }

    /// The value of header `name` when it was sent exactly once.
    pub fn header(&self, name: &'a str) -> Option<&'a str> {
        self.request.headers.one(name)
    }

    /// `Sec-WebSocket-Protocol` values, in the client's order of preference (RFC 6455
    /// 4.1: the server selects at most one of them).
    pub fn protocols(&self) -> &'a [String] {
        &self.offer.protocols
    }

    /// The address the connection came from.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The whole request head, for what the methods above do not give.
    pub fn request(&self) -> &'a Request {
        self.request
    }
}

/// A plain HTTP request on the WebSocket port ([`Handler::on_http`]).
#[derive(Debug)]
pub struct HttpRequest<'a> {
    /// The request head.
    pub head: &'a Request,
    /// The body (empty unless `Content-Length` said otherwise).
    pub body: &'a [u8],
    /// The address it came from.
    pub peer: SocketAddr,
}

/// An answer to a plain HTTP request; sent with `Connection: close`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpAnswer {
    /// The status.
    pub status: u16,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

/// What a handler noted on accepting an upgrade, of any type: the hub keeps who the
/// peer claimed to be. Read back with [`Note::get`] from [`super::Handshake::note`].
#[derive(Clone)]
pub struct Note(Arc<dyn Any + Send + Sync>);

impl Note {
    /// Keeps `value`.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Note(Arc::new(value))
    }

    /// The value, when it is a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl fmt::Debug for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Note(..)")
    }
}

impl PartialEq for Note {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// An answer that refuses an upgrade request before the 101: an HTTP status and a
/// short body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// The HTTP status, such as 401 or 403.
    pub status: u16,
    /// A short text saying why.
    pub body: String,
    /// Seconds after which a retry may succeed, sent as `Retry-After` (RFC 9110
    /// 10.2.3), for a refusal that is temporary, such as a 503.
    pub retry_after: Option<u32>,
}

/// An upgrade request accepted by [`Handler::on_upgrade`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Accept {
    /// The subprotocol to select; it must be one the client offered, or none is
    /// selected (a client fails a connection that selects one it did not offer, RFC
    /// 6455 4.1).
    pub protocol: Option<String>,
    /// What the handler learnt while deciding (who the peer is, say), kept with the
    /// connection's handshake ([`super::Handshake::note`]). The server does not read it.
    pub note: Option<Note>,
}

impl Accept {
    /// Accepts with `protocol` selected, if any, and no note.
    pub fn protocol(protocol: Option<String>) -> Accept {
        Accept {
            protocol,
            note: None,
        }
    }
}

/// What the server does with connections and their messages. Every method but
/// `on_message` has a default that does nothing.
///
/// Methods of one connection are called on its reader thread, in order: `on_open`,
/// then `on_message` for each message, then `on_close`. Different connections run in
/// parallel.
pub trait Handler: Send + Sync + 'static {
    /// Decides on an upgrade request that is valid WebSocket: accept it, choosing a
    /// subprotocol among those offered (or none), or refuse it with an HTTP status.
    fn on_upgrade(&self, _upgrade: &Upgrade) -> Result<Accept, Reject> {
        Ok(Accept::default())
    }

    /// Answers a plain HTTP request on the WebSocket port (not an upgrade), before the
    /// built-in routes: a `POST` comes with its body, read up to
    /// [`super::Config::max_http_body_bytes`]. `None` leaves it to them (`/health`,
    /// `/metrics`... and 405 for other methods).
    fn on_http(&self, _server: &Server, _request: &HttpRequest) -> Option<HttpAnswer> {
        None
    }

    /// Answers a request to the admin listener (`Config::admin_listen`) before its
    /// built-in routes, which it may replace; `None` leaves the request to them. The
    /// token, if any, was checked already.
    fn on_admin(&self, _server: &Server, _request: &AdminRequest) -> Option<AdminResponse> {
        None
    }

    /// Whether what the handler depends on (a store) works, for `GET /health` on both
    /// ports: `Err` with why not makes it answer 503 with the reason. It must not
    /// block: it reports what is known, it does not go and ask.
    fn health(&self, _server: &Server) -> Result<(), Unhealthy> {
        Ok(())
    }

    /// A WebSocket connection is open.
    fn on_open(&self, _server: &Server, _conn: &Arc<Conn>) {}

    /// A text or binary message arrived.
    fn on_message(&self, server: &Server, conn: &Arc<Conn>, message: Message);

    /// The connection is over; `code` is the close code we sent or received, 1006 if
    /// TCP ended without one (RFC 6455 7.1.5).
    fn on_close(&self, _server: &Server, _conn: &Arc<Conn>, _code: u16) {}

    /// The server is shutting down: the last chance to send something to every
    /// connection before each is closed with 1001.
    fn on_shutdown(&self, _server: &Server) {}
}
