//! The opening handshake (RFC 6455 section 4), both sides.
//!
//! The server side reads an HTTP/1.1 Upgrade request ([`RequestParser`]), checks it
//! ([`validate_request`]) and answers with a 101 ([`encode_accept`]) or a 4xx with a
//! short plain-text reason ([`encode_reject`]). The client side writes a request
//! ([`encode_request`]), reads the response ([`ResponseParser`]) and checks it
//! ([`check_response`]).
//!
//! Heads are read incrementally and bounded: each call looks only at bytes it has not
//! looked at before (re-scanning a growing buffer from byte 0 after every read turns a
//! slow sender into quadratic work, as tungstenite's CVE-2023-43669 showed), and a head
//! over `max_head_bytes` or `max_headers` fails at once with 431.

use super::{Error, Status};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

/// The GUID appended to the key before hashing (RFC 6455 1.3, 4.2.2).
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Bounds on an HTTP head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// Longest head, request line and headers and the empty line. Default 8 KiB, the
    /// common limit of HTTP servers (nginx's default large header buffer, Node's was 8).
    pub max_head_bytes: usize,
    /// Most header fields. Default 100, as in Node's `http` module.
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_head_bytes: 8 * 1024,
            max_headers: 100,
        }
    }
}

/// Finds the end of an HTTP head (the empty line) across calls without re-reading.
#[derive(Clone, Copy, Debug, Default)]
struct HeadScanner {
    /// Bytes of the buffer already looked at.
    scanned: usize,
    /// Line feeds seen so far: lines of the head.
    lines: usize,
}

impl HeadScanner {
    /// Looks at the bytes of `buf` not seen before. `buf` must start with the bytes
    /// given to earlier calls. Returns the head's length, empty line included.
    fn scan(&mut self, buf: &[u8], limits: HeadLimits) -> Result<Status<usize>, Error> {
        let end = buf.len().min(limits.max_head_bytes);
        while self.scanned < end {
            let i = self.scanned;
            self.scanned += 1;
            if buf[i] != b'\n' {
                continue;
            }
            // A bare LF fails here, at once: waiting for a CRLF CRLF that a client
            // ending its lines with LF never sends would hold the connection until the
            // handshake timeout and answer nothing.
            if i == 0 || buf[i - 1] != b'\r' {
                return Err(Error::MalformedHttp("lines must end with CRLF"));
            }
            // The request or status line, then one line per header, then the empty
            // line: more than max_headers + 2 lines means too many headers.
            self.lines += 1;
            if i >= 3 && &buf[i - 3..=i] == b"\r\n\r\n" {
                return Ok(Status::Complete(i + 1));
            }
            if self.lines > limits.max_headers + 1 {
                return Err(Error::TooManyHeaders {
                    max_headers: limits.max_headers,
                });
            }
        }
        if buf.len() >= limits.max_head_bytes {
            return Err(Error::HeadTooLarge {
                max_bytes: limits.max_head_bytes,
            });
        }
        Ok(Status::Partial)
    }
}

/// Header fields in the order received. Names keep their case; look-ups ignore it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// Every value of the field `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name` when it appears exactly once.
    pub fn one<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        let mut it = self.all(name);
        match (it.next(), it.next()) {
            (Some(v), None) => Some(v),
            _ => None,
        }
    }

    /// The comma-separated elements of every `name` field (RFC 7230 7), trimmed, empty
    /// ones dropped.
    pub fn list<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.all(name)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    /// Whether the list `name` holds `token`, ignoring ASCII case.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.list(name).any(|t| t.eq_ignore_ascii_case(token))
    }
}

/// An HTTP request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method, a token such as `GET`.
    pub method: String,
    /// The request target as sent: path and query, visible ASCII only.
    pub target: String,
    /// `HTTP/1.1` and the like.
    pub version: String,
    /// The header fields, in order.
    pub headers: Headers,
}

/// An HTTP response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// `HTTP/1.1` and the like.
    pub version: String,
    /// The three-digit status code.
    pub status: u16,
    /// The reason phrase, possibly empty.
    pub reason: String,
    /// The header fields, in order.
    pub headers: Headers,
}

/// Reads a request head from a buffer that grows between calls.
#[derive(Clone, Debug, Default)]
pub struct RequestParser {
    scanner: HeadScanner,
    limits: HeadLimits,
}

impl RequestParser {
    /// A parser for one request head within `limits`.
    pub fn new(limits: HeadLimits) -> Self {
        RequestParser {
            scanner: HeadScanner::default(),
            limits,
        }
    }

    /// Call with everything received so far. Returns the request and the head's
    /// length; bytes after it (frames the client sent right away) are the caller's.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Status<(Request, usize)>, Error> {
        match self.scanner.scan(buf, self.limits)? {
            Status::Partial => Ok(Status::Partial),
            Status::Complete(n) => Ok(Status::Complete((parse_request_head(&buf[..n])?, n))),
        }
    }
}

/// Reads a response head from a buffer that grows between calls.
#[derive(Clone, Debug, Default)]
pub struct ResponseParser {
    scanner: HeadScanner,
    limits: HeadLimits,
}

impl ResponseParser {
    /// A parser for one response head within `limits`.
    pub fn new(limits: HeadLimits) -> Self {
        ResponseParser {
            scanner: HeadScanner::default(),
            limits,
        }
    }

    /// Call with everything received so far; see [`RequestParser::parse`].
    pub fn parse(&mut self, buf: &[u8]) -> Result<Status<(Response, usize)>, Error> {
        match self.scanner.scan(buf, self.limits)? {
            Status::Partial => Ok(Status::Partial),
            Status::Complete(n) => Ok(Status::Complete((parse_response_head(&buf[..n])?, n))),
        }
    }
}

/// RFC 7230 3.2.6 `tchar`: what a header name (a `token`) is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Splits a complete head into its first line and its header fields.
fn split_head(head: &[u8]) -> Result<(&str, Headers), Error> {
    // Drop the empty line; every line left ends with CRLF (RFC 7230 3: a bare LF is
    // not accepted as a line end here).
    let body = head.strip_suffix(b"\r\n").filter(|b| b.ends_with(b"\r\n"));
    let body = body.ok_or(Error::MalformedHttp("head must end with an empty line"))?;
    let mut lines = body
        .split_inclusive(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r\n"));
    let first = lines
        .next()
        .flatten()
        .ok_or(Error::MalformedHttp("lines must end with CRLF"))?;
    let first =
        std::str::from_utf8(first).map_err(|_| Error::MalformedHttp("first line is not text"))?;
    let mut headers = Vec::new();
    for line in lines {
        let line = line.ok_or(Error::MalformedHttp("lines must end with CRLF"))?;
        // RFC 7230 3.2.4: obsolete line folding "MUST" be rejected with 400.
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(Error::MalformedHttp("header line without a colon"))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(Error::MalformedHttp("bad header name"));
        }
        // Field values are visible characters, spaces and tabs (obs-text allowed);
        // control characters are not.
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7F) {
            return Err(Error::MalformedHttp("control character in header value"));
        }
        let name = String::from_utf8_lossy(name).into_owned();
        let value = String::from_utf8_lossy(value)
            .trim_matches([' ', '\t'])
            .to_owned();
        headers.push((name, value));
    }
    Ok((first, Headers(headers)))
}

/// `HTTP/` followed by one digit, a dot and one digit (RFC 7230 2.6).
fn is_http_version(v: &str) -> bool {
    matches!(v.as_bytes(), [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit())
}

/// Parses a complete request head (`METHOD SP target SP version CRLF headers CRLF`).
pub fn parse_request_head(head: &[u8]) -> Result<Request, Error> {
    let (line, headers) = split_head(head)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::MalformedHttp("bad request line"));
    };
    // RFC 7230 3.1.1: method is a token; the target holds no spaces and no control
    // characters (a bare CR "MUST" be treated as invalid, 3.5); version is HTTP/d.d.
    if method.is_empty()
        || !method.bytes().all(is_tchar)
        || target.is_empty()
        || !target.bytes().all(|b| (0x21..=0x7E).contains(&b))
        || !is_http_version(version)
    {
        return Err(Error::MalformedHttp("bad request line"));
    }
    Ok(Request {
        method: method.into(),
        target: target.into(),
        version: version.into(),
        headers,
    })
}

/// Parses a complete response head (`version SP status SP reason CRLF headers CRLF`).
pub fn parse_response_head(head: &[u8]) -> Result<Response, Error> {
    let (line, headers) = split_head(head)?;
    let mut parts = line.splitn(3, ' ');
    let (Some(version), Some(status)) = (parts.next(), parts.next()) else {
        return Err(Error::MalformedHttp("bad status line"));
    };
    let status = match status.parse::<u16>() {
        Ok(s) if status.len() == 3 && version.starts_with("HTTP/") => s,
        _ => return Err(Error::MalformedHttp("bad status line")),
    };
    let reason = parts.next().unwrap_or("").to_owned();
    Ok(Response {
        version: version.into(),
        status,
        reason,
        headers,
    })
}

/// What a valid client handshake asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// `Sec-WebSocket-Key`, as sent.
    pub key: String,
    /// `Sec-WebSocket-Protocol` values, in the client's order of preference.
    pub protocols: Vec<String>,
    /// `Sec-WebSocket-Extensions` offers; none is implemented, so none is accepted.
    pub extensions: Vec<String>,
}

/// Checks a request against RFC 6455 4.2.1, in the order of its items.
pub fn validate_request(req: &Request) -> Result<Offer, Error> {
    // 1. "An HTTP/1.1 or higher GET request".
    if req.method != "GET" {
        return Err(Error::MethodNotGet);
    }
    if req.version != "HTTP/1.1" {
        return Err(Error::UnsupportedHttpVersion);
    }
    // 2. "A |Host| header field".
    if req.headers.one("Host").is_none_or(str::is_empty) {
        return Err(Error::MissingHost);
    }
    // 3. "An |Upgrade| header field containing the value "websocket", treated as an
    //    ASCII case-insensitive value".
    if !req.headers.has_token("Upgrade", "websocket") {
        return Err(Error::MissingUpgradeWebsocket);
    }
    // 4. "A |Connection| header field that includes the token "Upgrade"".
    if !req.headers.has_token("Connection", "upgrade") {
        return Err(Error::MissingConnectionUpgrade);
    }
    // 5. "A |Sec-WebSocket-Key| header field with a base64-encoded value that, when
    //    decoded, is 16 bytes in length."
    let key = req.headers.one("Sec-WebSocket-Key").ok_or(Error::BadKey)?;
    match BASE64.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(Error::BadKey),
    }
    // 6. "A |Sec-WebSocket-Version| header field, with a value of 13." 4.4: otherwise
    //    answer with the versions we speak (426 and `Sec-WebSocket-Version: 13`).
    if req.headers.one("Sec-WebSocket-Version") != Some("13") {
        return Err(Error::UnsupportedVersion);
    }
    // RFC 6455 4.1: each element of Sec-WebSocket-Protocol "MUST be a non-empty string
    // with characters in the range U+0021 to U+007E not including separator
    // characters" - an RFC 2616 token. Selecting a value that is not one would send
    // the client something it cannot have offered.
    if !req
        .headers
        .list("Sec-WebSocket-Protocol")
        .all(|p| p.bytes().all(is_tchar))
    {
        return Err(Error::BadSubprotocol);
    }
    Ok(Offer {
        key: key.to_owned(),
        protocols: req
            .headers
            .list("Sec-WebSocket-Protocol")
            .map(str::to_owned)
            .collect(),
        extensions: req
            .headers
            .list("Sec-WebSocket-Extensions")
            .map(str::to_owned)
            .collect(),
    })
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)) (4.2.2 item 5.4).
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    BASE64.encode(sha.digest().bytes())
}

/// The first protocol in the client's list that the server supports (4.2.2 item
/// 5.4: the server selects "one or none" of the offered values).
pub fn choose_protocol<'a>(offered: &'a [String], supported: &[&str]) -> Option<&'a str> {
    offered
        .iter()
        .map(String::as_str)
        .find(|p| supported.contains(p))
}

/// The 101 response that completes the server's side (4.2.2 item 5), ending with the
/// empty line. `protocol` must be one of the offered values; no extension is
/// accepted. `extra` headers are written as given.
pub fn encode_accept(offer: &Offer, protocol: Option<&str>, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut out = String::with_capacity(160);
    out.push_str("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    out.push_str(&accept_key(&offer.key));
    out.push_str("\r\n");
    if let Some(p) = protocol {
        out.push_str("Sec-WebSocket-Protocol: ");
        out.push_str(p);
        out.push_str("\r\n");
    }
    for (name, value) in extra {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The standard reason phrase of the statuses this crate sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// An error response with a short plain-text body, then the connection closes. The
/// headers the status calls for are added: `Sec-WebSocket-Version: 13` with 426
/// (4.4), `Allow: GET` with 405 (RFC 7231 6.5.5).
pub fn encode_error(status: u16, body: &str) -> Vec<u8> {
    encode_error_with(status, body, &[])
}

/// [`encode_error`] with more header fields, such as `Retry-After` on a 503.
pub fn encode_error_with(status: u16, body: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut extra = String::from(match status {
        426 => "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n",
        405 => "Allow: GET\r\n",
        _ => "",
    });
    for (name, value) in headers {
        extra.push_str(&format!("{name}: {value}\r\n"));
    }
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}\n",
        reason_phrase(status),
        body.len() + 1,
    )
    .into_bytes()
}

/// The answer to a rejected request: the error's status and fixed reason.
pub fn encode_reject(err: &Error) -> Vec<u8> {
    encode_error(err.http_status().unwrap_or(400), err.reason())
}

/// A client's opening handshake (4.1). `key` is 16 bytes from a good random source;
/// the caller supplies it. Returns the request and the base64 key to check the
/// response with.
pub fn encode_request(
    host: &str,
    target: &str,
    key: [u8; 16],
    protocols: &[&str],
    extra: &[(&str, &str)],
) -> (Vec<u8>, String) {
    let key = BASE64.encode(key);
    let mut out = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if !protocols.is_empty() {
        out.push_str("Sec-WebSocket-Protocol: ");
        out.push_str(&protocols.join(", "));
        out.push_str("\r\n");
    }
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    (out.into_bytes(), key)
}

/// Checks the server's response against RFC 6455 4.1 (the client's checks 1-6).
/// Returns the subprotocol the server selected, if any.
pub fn check_response(
    resp: &Response,
    key: &str,
    offered: &[&str],
) -> Result<Option<String>, Error> {
    // 1. "If the status code received from the server is not 101, the client handles
    //    the response per HTTP procedures" - for us, the connection fails.
    if resp.status != 101 {
        return Err(Error::UnexpectedStatus(resp.status));
    }
    // 2-3. Upgrade: websocket, Connection: upgrade, case-insensitive.
    // 4.1: "If the response lacks an |Upgrade| header field or the |Upgrade| header
    // field contains a value that is not an ASCII case-insensitive match for the
    // value "websocket", the client MUST _Fail the WebSocket Connection_."
    if !resp
        .headers
        .one("Upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    {
        return Err(Error::MissingUpgradeWebsocket);
    }
    if !resp.headers.has_token("Connection", "upgrade") {
        return Err(Error::MissingConnectionUpgrade);
    }
    // 4. Sec-WebSocket-Accept must be base64(SHA-1(key + GUID)).
    if resp.headers.one("Sec-WebSocket-Accept") != Some(accept_key(key).as_str()) {
        return Err(Error::BadAccept);
    }
    // 5. "If the response includes a |Sec-WebSocket-Extensions| header field and this
    //    header field indicates the use of an extension that was not present in the
    //    client's handshake ... the client MUST _Fail the WebSocket Connection_."
    //    This client offers none.
    if resp
        .headers
        .list("Sec-WebSocket-Extensions")
        .next()
        .is_some()
    {
        return Err(Error::UnrequestedExtension);
    }
    // 6. The same for a subprotocol that was not offered.
    let mut chosen = resp.headers.list("Sec-WebSocket-Protocol");
    match (chosen.next(), chosen.next()) {
        (None, _) => Ok(None),
        (Some(p), None) if offered.contains(&p) => Ok(Some(p.to_owned())),
        _ => Err(Error::UnofferedSubprotocol),
    }
}

#[cfg(test)]
mod tests;
