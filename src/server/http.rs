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
use std::net::TcpStream;

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

/// Answers one request that is not an upgrade.
pub(super) fn serve(server: &Server, stream: &TcpStream, request: &Request) {
    let path = request.target.split(['?', '#']).next().unwrap_or_default();
    let (route, status, bytes) = route(server, &request.method, path);
    server.metrics().http_request(route, status);
    let mut stream = stream;
    let _ = stream.set_write_timeout(Some(server.config().write_timeout));
    let _ = stream.write_all(&bytes);
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

/// The pairs of a query string (`a=1&b=x%20y`), percent-decoded, `+` read as a space.
/// A pair without `=` has an empty value; bytes that do not decode to UTF-8 are
/// replaced.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs() {
        assert_eq!(
            parse_query("userId=23&softId=web&name=a%20b+c&flag&=x&bad=%zz%4"),
            vec![
                ("userId".into(), "23".into()),
                ("softId".into(), "web".into()),
                ("name".into(), "a b c".into()),
                ("flag".into(), "".into()),
                ("".into(), "x".into()),
                ("bad".into(), "%zz%4".into()),
            ]
        );
        assert_eq!(parse_query(""), vec![]);
        assert_eq!(parse_query("k=%C3%A9"), vec![("k".into(), "é".into())]);
    }
}
