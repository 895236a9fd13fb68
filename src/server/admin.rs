//! The admin listener: a separate HTTP port for operators, answering JSON about the
//! connections. It is off unless `Config::admin_listen` is set. It binds to a loopback
//! address unless `Config::admin_token` is set too, and with a token every request must
//! carry `Authorization: Bearer <token>` (compared in constant time), or it gets 401.
//!
//! | route | answer |
//! |---|---|
//! | `GET /connections` | `[{"connectionId", "address", "time", "url", "path", "query", "protocol", "headers"}, ...]` |
//! | `GET /health` | `{"status": "ok", "connections": N}` |
//!
//! Requests are answered one at a time on one thread, each within 5 s.

use super::http::{parse_query, response};
use super::log::Level;
use super::Server;
use crate::protocol::handshake::Request;
use crate::socket::{self, DeadlineStream};
use crate::time;
use serde_json::{json, Map, Value};
use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Time one admin request has, from connection to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the admin listener, refusing a non-loopback address without a token.
pub(super) fn bind(addr: &str, token: Option<&str>) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() && token.is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the admin listener on {local} is not loopback: set an admin token"),
        ));
    }
    Ok(listener)
}

/// Serves admin requests until the server shuts down.
pub(super) fn serve(server: &Server, listener: TcpListener) {
    for stream in listener.incoming() {
        if server.is_shutting_down() {
            return;
        }
        let Ok(stream) = stream else { continue };
        if let Err(e) = answer(server, &stream) {
            server
                .logger()
                .log(Level::Debug, None, "admin request failed", &[("error", &e)]);
        }
        socket::linger_close(&stream, Duration::from_secs(1));
    }
}

fn answer(server: &Server, stream: &TcpStream) -> Result<(), socket::Error> {
    let (request, _) = socket::read_request(
        &mut DeadlineStream::new(stream, REQUEST_TIMEOUT),
        server.config().ws.head_limits,
    )?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let (status, extra, body) = route(server, &request);
    let mut out = stream;
    out.write_all(&response(
        status,
        "application/json",
        extra,
        body.to_string().as_bytes(),
    ))?;
    Ok(())
}

fn route(
    server: &Server,
    request: &Request,
) -> (u16, &'static [(&'static str, &'static str)], Value) {
    if let Some(token) = &server.config().admin_token {
        let given = request
            .headers
            .one("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return (
                401,
                &[("WWW-Authenticate", "Bearer")],
                json!({ "error": "a valid bearer token is required" }),
            );
        }
    }
    if request.method != "GET" {
        return (
            405,
            &[("Allow", "GET")],
            json!({ "error": "only GET is served here" }),
        );
    }
    let path = request.target.split('?').next().unwrap_or_default();
    match path {
        "/connections" => (200, &[], connections(server)),
        "/health" => (
            200,
            &[],
            json!({ "status": "ok", "connections": server.connection_count() }),
        ),
        _ => (
            404,
            &[],
            json!({ "error": "not found", "routes": ["/connections", "/health"] }),
        ),
    }
}

/// Every open connection with its handshake, oldest first.
fn connections(server: &Server) -> Value {
    let mut conns = server.connections();
    conns.sort_by_key(|c| c.id());
    Value::Array(
        conns
            .iter()
            .map(|c| {
                let hs = c.handshake();
                let target = &hs.request.target;
                let (path, query) = match target.split_once('?') {
                    Some((p, q)) => (p, q),
                    None => (target.as_str(), ""),
                };
                let mut headers = Map::new();
                for (name, value) in &hs.request.headers.0 {
                    let name = name.to_ascii_lowercase();
                    let joined = match headers.remove(&name) {
                        Some(Value::String(prev)) => format!("{prev}, {value}"),
                        _ => value.clone(),
                    };
                    headers.insert(name, Value::String(joined));
                }
                let query: Map<String, Value> = parse_query(query)
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
                json!({
                    "connectionId": c.id(),
                    "address": c.peer().to_string(),
                    "time": time::iso8601(hs.time),
                    "url": target,
                    "path": path,
                    "query": query,
                    "protocol": hs.protocol,
                    "headers": headers,
                })
            })
            .collect(),
    )
}

/// Compares two byte strings in time that depends only on their lengths, so that a
/// wrong token does not leak how much of it was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(constant_time_eq(b"", b""));
    }
}
