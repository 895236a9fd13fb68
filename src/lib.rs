//! switchboard: a WebSocket server and message broker for web applications, with the
//! WebSocket protocol (RFC 6455) written by hand.
//!
//! The layers, bottom up: [`protocol`] is RFC 6455 without I/O; [`socket`] runs it over
//! any blocking `Read + Write`; [`server`] accepts connections, queues and sends
//! frames, keeps connections alive and enforces limits; [`store`] keeps sessions,
//! history and the bus between nodes; [`client`] connects to a server. DESIGN.md beside the
//! repository is the map.

#![deny(unsafe_code)]

pub mod bench;
pub mod client;
pub mod envelope;
#[doc(hidden)]
pub mod fuzzing;
pub mod hub;
pub mod loadgen;
pub mod protocol;
pub mod server;
pub mod socket;
pub mod store;
mod sys;
pub mod time;
