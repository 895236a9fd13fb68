//! Plain HTTP on the WebSocket port, for requests that are not upgrades: one request
//! per connection, answered and closed (`Connection: close`).
//!
//! | route | answer |
//! |---|---|
//! | `GET /health` | 200, `{"status":"ok","connections":N}`; 503 with `"status":"shutting_down"` once a shutdown started, so a load balancer stops sending clients, and 503 with `"status":"store_down"` and `"error"` while the store is down ([`super::Server::health`]) |
//! | `GET /metrics` | 200, the Prometheus text format ([`super::metrics`]) |
//! | `GET /client.js` | the browser client (`web/client.js`) |
//! | `GET /` | a demo page on the browser client (`web/index.html`) |
//! | any other path | 404 |
//! | any other method | 405 with `Allow: GET` |

use super::Server;
use crate::protocol::handshake::{reason_phrase, Request};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};

/// The browser client, plain JavaScript with no build step.
pub const CLIENT_JS: &str = include_str!("../../web/client.js");
/// A demo page on the browser client.
const DEMO_PAGE: &str = include_str!("../../web/index.html");

/// A whole response: status line, headers, body.
pub(super) fn response(
    status: u16,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
        reason_phrase(status),
        body.len()
    );
    for (name, value) in extra {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Answers one request that is not an upgrade: the handler's answer if it has one
/// ([`super::Handler::on_http`]), else the built-in routes'. `leftover` is what was
/// read past the head.
pub(super) fn serve(
    server: &Server,
    stream: &TcpStream,
    request: &Request,
    leftover: Vec<u8>,
    peer: SocketAddr,
) {
    let path = request.target.split(['?', '#']).next().unwrap_or_default();
    let (route, status, bytes) = match handler_answer(server, stream, request, leftover, peer) {
        Some(Ok(answer)) => {
            let bytes = response(answer.status, answer.content_type, &[], &answer.body);
            ("handler", answer.status, bytes)
        }
        Some(Err(status)) => {
            let body = format!("{}\n", reason_phrase(status));
            let bytes = response(status, "text/plain; charset=utf-8", &[], body.as_bytes());
            ("handler", status, bytes)
        }
        None => route(server, &request.method, path),
    };
    server.metrics().http_request(route, status);
    let mut stream = stream;
    let _ = stream.set_write_timeout(Some(server.config().write_timeout));
    let _ = stream.write_all(&bytes);
}

/// Reads a request's body (by `Content-Length`, within
/// [`super::Config::max_http_body_bytes`] and the handshake's deadline) and asks the
/// handler. `Err` is a status to answer with: 411 for a body without a length (chunked
/// bodies are not read here), 413 for one too large, 400 for one cut short.
fn handler_answer(
    server: &Server,
    stream: &TcpStream,
    request: &Request,
    mut body: Vec<u8>,
    peer: SocketAddr,
) -> Option<Result<super::HttpAnswer, u16>> {
    let config = server.config();
    if request.method != "GET" && request.method != "HEAD" {
        if request.headers.one("transfer-encoding").is_some() {
            return Some(Err(411));
        }
        let len = match request.headers.one("content-length").map(str::trim) {
            None => 0,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n <= config.max_http_body_bytes => n,
                Ok(_) => return Some(Err(413)),
                Err(_) => return Some(Err(400)),
            },
        };
        // A client that asked to be told first (curl does, for larger bodies) is told
        // to go on, rather than left to wait out its own timer (RFC 9110 10.1.1).
        if len > body.len() && request.headers.has_token("expect", "100-continue") {
            let _ = (&mut &*stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let mut s = crate::socket::DeadlineStream::new(stream, config.handshake_timeout);
        while body.len() < len {
            let mut chunk = [0u8; 4096];
            match std::io::Read::read(&mut s, &mut chunk) {
                Ok(0) | Err(_) => return Some(Err(400)),
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        body.truncate(len);
    } else {
        body.clear();
    }
    let ask = super::HttpRequest {
        head: request,
        body: &body,
        peer,
    };
    server.shared.handler.on_http(server, &ask).map(Ok)
}

fn route(server: &Server, method: &str, path: &str) -> (&'static str, u16, Vec<u8>) {
    let known = match path {
        "/health" => "/health",
        "/metrics" => "/metrics",
        "/client.js" => "/client.js",
        "/" | "/index.html" => "/",
        _ => "other",
    };
    if method != "GET" {
        let body = b"only GET is served here\n";
        return (
            known,
            405,
            response(405, "text/plain; charset=utf-8", &[("Allow", "GET")], body),
        );
    }
    match known {
        "/health" => {
            let (status, body) = server.health();
            let body = body.to_string();
            (
                known,
                status,
                response(status, "application/json", &[], body.as_bytes()),
            )
        }
        "/metrics" => {
            let body = server.metrics().render();
            (
                known,
                200,
                response(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    &[],
                    body.as_bytes(),
                ),
            )
        }
        "/client.js" => (
            known,
            200,
            response(
                200,
                "application/javascript; charset=utf-8",
                &[],
                CLIENT_JS.as_bytes(),
            ),
        ),
        "/" => (
            known,
            200,
            response(200, "text/html; charset=utf-8", &[], DEMO_PAGE.as_bytes()),
        ),
        _ => (
            known,
            404,
            response(404, "text/plain; charset=utf-8", &[], b"not found\n"),
        ),
    }
}
