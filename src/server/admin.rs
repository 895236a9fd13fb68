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
//! A [`super::Handler`] may add routes or replace these ([`super::Handler::on_admin`]);
//! it sees the method, path, query and body. A body is read only with a
//! `Content-Length` of at most [`MAX_BODY`] bytes (413 beyond).
//!
//! Each request has a thread of its own, up to `Config::max_admin_requests` at once
//! (503 beyond), and 5 s from its connection to its answer, so an idle or slow client
//! delays nobody else. The token is checked on the head, before any body is read.
//! An empty token is refused at start: `--admin-token "$UNSET"` must not open the
//! listener to everyone.

use super::http::response;
use super::log::Level;
use super::{Conn, Server};
use crate::form::parse_query;
use crate::protocol::handshake::Request;
use crate::secure::constant_time_eq;
use crate::socket::{self, DeadlineStream};
use crate::time;
use serde_json::{json, Map, Value};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

/// Time one admin request has, from connection to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest request body read, in bytes: a notification or a session, not a file.
pub const MAX_BODY: usize = 1 << 20;

/// A request to the admin listener, as a [`super::Handler::on_admin`] sees it.
#[derive(Debug)]
pub struct AdminRequest<'a> {
    /// `GET`, `POST`, `PUT`, `DELETE`...
    pub method: &'a str,
    /// The target's path, without the query.
    pub path: &'a str,
    /// The query's pairs, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// The body (empty without one).
    pub body: &'a [u8],
}

/// An answer to an admin request: a status and a JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct AdminResponse {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
}

impl AdminResponse {
    /// An answer with `status` and `body`.
    pub fn new(status: u16, body: Value) -> Self {
        AdminResponse { status, body }
    }

    /// An error answer, `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Self {
        AdminResponse::new(status, json!({ "error": message }))
    }
}

/// Binds the admin listener, refusing an empty token, and a non-loopback address
/// without a token.
pub(super) fn bind(addr: &str, token: Option<&str>) -> io::Result<TcpListener> {
    if token.is_some_and(|t| t.trim().is_empty()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the admin token is empty: give a secret, or no token on a loopback address",
        ));
    }
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

/// Serves admin requests until the server shuts down: each on a thread of its own,
/// at most `max_admin_requests` at once.
pub(super) fn serve(server: &Server, listener: TcpListener) {
    let busy = Arc::new(AtomicUsize::new(0));
    let max = server.config().max_admin_requests.max(1);
    for stream in listener.incoming() {
        if server.is_shutting_down() {
            return;
        }
        let Ok(stream) = stream else { continue };
        if busy.fetch_add(1, SeqCst) >= max {
            busy.fetch_sub(1, SeqCst);
            server.metrics().rejected("admin_busy");
            // Said without waiting: a client that does not read loses the answer.
            let _ = stream.set_nonblocking(true);
            let _ = (&stream).write_all(&response(
                503,
                "application/json",
                &[("Retry-After", "1")],
                br#"{"error":"too many admin requests at once"}"#,
            ));
            let _ = stream.shutdown(std::net::Shutdown::Both);
            continue;
        }
        let done = Busy(busy.clone());
        let worker = server.clone();
        let spawned = server.spawn("admin-request".into(), 128 * 1024, move || {
            let _done = done;
            if let Err(e) = answer(&worker, &stream) {
                worker
                    .logger()
                    .log(Level::Debug, None, "admin request failed", &[("error", &e)]);
            }
            socket::linger_close(&stream, Duration::from_secs(1));
        });
        if let Err(e) = spawned {
            server.logger().log(
                Level::Error,
                None,
                "no thread for an admin request",
                &[("error", &e)],
            );
        }
    }
}

/// One admin request in progress; dropping it counts it out.
struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

fn answer(server: &Server, stream: &TcpStream) -> Result<(), socket::Error> {
    let mut input = DeadlineStream::new(stream, REQUEST_TIMEOUT);
    let (request, leftover) = socket::read_request(&mut input, server.config().ws.head_limits)?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let (status, extra, body) = if !authorized(server, &request) {
        // Refused on the head alone: no body is read for a caller without the token.
        (
            401,
            &[("WWW-Authenticate", "Bearer")][..],
            json!({ "error": "a valid bearer token is required" }),
        )
    } else {
        match read_body(&mut input, &request, leftover) {
            Ok(body) => route(server, &request, &body),
            Err(status) => (
                status,
                &[][..],
                json!({ "error": format!("a body must have a Content-Length of at most {MAX_BODY}") }),
            ),
        }
    };
    let mut out = stream;
    out.write_all(&response(
        status,
        "application/json",
        extra,
        body.to_string().as_bytes(),
    ))?;
    Ok(())
}

/// The request's body, by its `Content-Length`: 411 for a body without one (chunked),
/// 413 for one over [`MAX_BODY`], 400 for one cut short.
fn read_body(input: &mut impl Read, request: &Request, mut body: Vec<u8>) -> Result<Vec<u8>, u16> {
    if request.headers.one("transfer-encoding").is_some() {
        return Err(411);
    }
    let length = match request.headers.one("content-length") {
        None => 0,
        Some(v) => v.trim().parse::<usize>().map_err(|_| 400u16)?,
    };
    if length > MAX_BODY {
        return Err(413);
    }
    if body.len() > length {
        body.truncate(length);
    }
    let have = body.len();
    body.resize(length, 0);
    input.read_exact(&mut body[have..]).map_err(|_| 400u16)?;
    Ok(body)
}

fn route(
    server: &Server,
    request: &Request,
    body: &[u8],
) -> (u16, &'static [(&'static str, &'static str)], Value) {
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    let asked = AdminRequest {
        method: &request.method,
        path,
        query: parse_query(query),
        body,
    };
    let answer = server.shared.handler.on_admin(server, &asked);
    if let Some(AdminResponse { status, body }) = answer {
        return (status, &[], body);
    }
    if request.method != "GET" {
        return (
            405,
            &[("Allow", "GET")],
            json!({ "error": "only GET is served here" }),
        );
    }
    match path {
        "/connections" => (200, &[], connections(server)),
        "/health" => {
            let (status, body) = server.health();
            (status, &[], body)
        }
        _ => (
            404,
            &[],
            json!({ "error": "not found", "routes": ["/connections", "/health"] }),
        ),
    }
}

/// Whether the request carries the admin token, if one is set.
fn authorized(server: &Server, request: &Request) -> bool {
    let Some(token) = &server.config().admin_token else {
        return true;
    };
    let given = request
        .headers
        .one("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    !token.is_empty() && constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// Every open connection with its handshake, oldest first.
fn connections(server: &Server) -> Value {
    let mut conns = server.connections();
    conns.sort_by_key(|c| c.id());
    Value::Array(conns.iter().map(|c| c.describe()).collect())
}

impl Conn {
    /// One connection as the admin listing shows it: `connectionId`, `address`, `time`
    /// (ISO 8601 UTC), `url`, `path`, `query`, `protocol` and `headers` (names in lower
    /// case, repeated headers joined with `, `).
    pub fn describe(&self) -> Value {
        let c = self;
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
    }
}
