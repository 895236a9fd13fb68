//! switchboard: a WebSocket server and message broker for web applications, with the
//! WebSocket protocol (RFC 6455) written by hand.
//!
//! The layers, bottom up: [`protocol`] is RFC 6455 without I/O; [`socket`] runs it over
//! any blocking `Read + Write`; [`server`] accepts connections. DESIGN.md beside the
//! repository is the map.

pub mod bench;
#[doc(hidden)]
pub mod fuzzing;
pub mod protocol;
pub mod server;
pub mod socket;
