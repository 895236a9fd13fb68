//! switchboard: a WebSocket server and message broker for web applications, with the
//! WebSocket protocol (RFC 6455) written by hand.
//!
//! The layers, bottom up: [`protocol`] is RFC 6455 without I/O; [`ws`] runs it over any
//! blocking `Read + Write`; [`server`] accepts connections. See DESIGN.md in the
//! repository for the map.

pub mod protocol;
