//! switchboard: a WebSocket server and message broker for web applications, with the
//! WebSocket protocol (RFC 6455) written by hand.
//!
//! The layers, bottom up:
//!
//! - [`protocol`]: RFC 6455 without I/O; [`protocol::connection`] is the one state
//!   machine every driver below uses.
//! - [`socket`]: a blocking WebSocket over any `Read + Write`, in both roles.
//! - [`server`]: accepts connections, queues and sends frames, keeps connections alive,
//!   enforces limits; its event API ([`server::events`]) speaks the envelope of
//!   [`envelope`].
//! - [`store`]: sessions, history and the bus between nodes, in memory or on Redis.
//! - [`hub`]: `switchboard serve`: users, sessions, notifications, private messages,
//!   rooms and the admin module, on the event API and a store.
//! - [`broker`]: `switchboard broker`: client events to an HTTP back end, its commands
//!   back (the WSBroker contract).
//! - [`client`]: connects to a server, plain or with events and reconnection.
//! - [`mod@bench`] and [`loadgen`]: measurements; [`time`]: timestamps; [`form`] and
//!   [`secure`]: urlencoded forms, random bytes and constant-time comparison, which
//!   several layers use.
//!
//! DESIGN.md beside the repository is the map.

#![deny(unsafe_code)]

pub mod bench;
pub mod broker;
pub mod client;
pub mod envelope;
pub mod form;
#[doc(hidden)]
pub mod fuzzing;
pub mod hub;
pub mod loadgen;
pub mod protocol;
pub mod secure;
pub mod server;
pub mod socket;
pub mod store;
mod sys;
pub mod time;
