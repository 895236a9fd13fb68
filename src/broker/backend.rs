//! An HTTP/1.1 client for the back end, written here (the project takes no HTTP
//! crate): `POST` with a body, answers with `Content-Length`, chunked or read to the
//! close (RFC 9112 6.3), keep-alive connections reused while the back end keeps them,
//! a deadline per request and a bound on the answer's size.

use crate::protocol::handshake::{HeadLimits, Response, ResponseParser};
use crate::protocol::Status;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// An `http://host[:port]/path` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// Host name or address, as written (IPv6 without its brackets).
    pub host: String,
    /// Port; 80 when not written.
    pub port: u16,
    /// Path and query; `/` when not written.
    pub path: String,
}

impl Url {
    /// Reads an `http://` URL. `https` is refused: a back end on another machine is
    /// reached through a local proxy (docs/BROKER.md).
    pub fn parse(text: &str) -> Result<Url, Error> {
        let bad = |why: &str| Error::BadUrl(format!("{text}: {why}"));
        let rest = text
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// URLs"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(bad("no user information"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            None => 80,
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
        };
        if host.is_empty() || path.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err(bad("no host, or a path with spaces"));
        }
        Ok(Url {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// The `Host` header's value.
    fn host_header(&self) -> String {
        let host = match self.host.contains(':') {
            true => format!("[{}]", self.host),
            false => self.host.clone(),
        };
        match self.port {
            80 => host,
            p => format!("{host}:{p}"),
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.host_header(), self.path)
    }
}

/// Why a request to the back end got no answer.
#[derive(Debug)]
pub enum Error {
    /// The URL is not one this client speaks.
    BadUrl(String),
    /// The back end could not be reached (refused, unresolvable).
    Connect(io::Error),
    /// The connection failed or the deadline passed mid-request.
    Io(io::Error),
    /// What came back is not HTTP/1.x.
    BadAnswer(&'static str),
    /// The answer's body is larger than allowed.
    TooLarge(usize),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadUrl(why) => write!(f, "bad back-end URL {why}"),
            Error::Connect(e) => write!(f, "cannot reach the back end: {e}"),
            Error::Io(e) if is_timeout(e) => f.write_str("the back end did not answer in time"),
            Error::Io(e) => write!(f, "the back end's connection failed: {e}"),
            Error::BadAnswer(why) => write!(f, "the back end's answer is not HTTP: {why}"),
            Error::TooLarge(max) => write!(f, "the back end's answer is over {max} bytes"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Error::BadUrl(_) => "bad_url",
            Error::Connect(_) => "unreachable",
            Error::Io(e) if is_timeout(e) => "timeout",
            Error::Io(_) => "io",
            Error::BadAnswer(_) => "bad_answer",
            Error::TooLarge(_) => "too_large",
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// An answer: its status and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// Requests to one back end over one connection at a time, kept open between
/// requests when the back end allows it.
#[derive(Debug)]
pub struct Client {
    url: Url,
    timeout: Duration,
    max_answer_bytes: usize,
    conn: Option<TcpStream>,
}

impl Client {
    /// A client of `url`; each request has `timeout` from its start to its whole
    /// answer, whose body may be at most `max_answer_bytes`.
    pub fn new(url: Url, timeout: Duration, max_answer_bytes: usize) -> Client {
        Client {
            url,
            timeout,
            max_answer_bytes,
            conn: None,
        }
    }

    /// The back end's URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `POST`s `body` with `content_type`. On a kept connection that the back end had
    /// closed meanwhile (nothing at all came back), the request is sent once more on a
    /// new connection, which is safe: the back end never saw it.
    pub fn post(&mut self, content_type: &str, body: &[u8]) -> Result<Answer, Error> {
        let deadline = Instant::now() + self.timeout;
        let request = self.request_bytes(content_type, body);
        if let Some(stream) = self.conn.take().filter(quiet) {
            match self.exchange(&stream, &request, deadline) {
                Ok((answer, keep)) => {
                    if keep {
                        self.conn = Some(stream);
                    }
                    return Ok(answer);
                }
                Err(Sent::Unanswered(_)) => {}
                Err(Sent::Failed(e)) => return Err(e),
            }
        }
        let stream = self.connect(deadline)?;
        match self.exchange(&stream, &request, deadline) {
            Ok((answer, keep)) => {
                if keep {
                    self.conn = Some(stream);
                }
                Ok(answer)
            }
            Err(Sent::Unanswered(e)) | Err(Sent::Failed(e)) => Err(e),
        }
    }

    fn request_bytes(&self, content_type: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: switchboard\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
            self.url.path,
            self.url.host_header(),
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    }

    fn connect(&self, deadline: Instant) -> Result<TcpStream, Error> {
        let addrs = (self.url.host.as_str(), self.url.port)
            .to_socket_addrs()
            .map_err(Error::Connect)?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            let left = left(deadline).map_err(Error::Connect)?;
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = e,
            }
        }
        Err(Error::Connect(last))
    }

    /// Sends the request and reads the answer; `Ok` with whether the connection may
    /// serve another request.
    fn exchange(
        &self,
        stream: &TcpStream,
        request: &[u8],
        deadline: Instant,
    ) -> Result<(Answer, bool), Sent> {
        let failed = |e| Sent::Failed(Error::Io(e));
        let mut s = stream;
        let mut rest = request;
        while !rest.is_empty() {
            s.set_write_timeout(Some(left(deadline).map_err(failed)?))
                .map_err(failed)?;
            match s.write(rest) {
                Ok(0) => return Err(Sent::Unanswered(Error::Io(io::ErrorKind::WriteZero.into()))),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Sent::Unanswered(Error::Io(e))),
            }
        }
        let mut buf = Vec::with_capacity(1024);
        let mut parser = ResponseParser::new(HeadLimits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
        });
        // After an interim answer the back end has the request: it is not sent again.
        let mut interim = false;
        loop {
            let (head, len) = loop {
                match parser.parse(&buf) {
                    Ok(Status::Complete(x)) => break x,
                    Ok(Status::Partial) => {}
                    Err(_) => return Err(Sent::Failed(Error::BadAnswer("a malformed head"))),
                }
                match read_more(s, &mut buf, deadline) {
                    Ok(0) if buf.is_empty() && !interim => {
                        return Err(Sent::Unanswered(Error::Io(
                            io::ErrorKind::UnexpectedEof.into(),
                        )))
                    }
                    Ok(0) => return Err(Sent::Failed(Error::BadAnswer("closed within the head"))),
                    Ok(_) => {}
                    Err(e) if buf.is_empty() && !interim && !is_timeout(&e) => {
                        return Err(Sent::Unanswered(Error::Io(e)))
                    }
                    Err(e) => return Err(failed(e)),
                }
            };
            buf.drain(..len);
            // An interim answer (100 Continue) is followed by the real one.
            if (100..200).contains(&head.status) {
                interim = true;
                parser = ResponseParser::new(HeadLimits {
                    max_head_bytes: 16 * 1024,
                    max_headers: 100,
                });
                continue;
            }
            let (body, closes) = self.read_body(s, &head, buf, deadline)?;
            let keep = !closes
                && head.version == "HTTP/1.1"
                && !head.headers.has_token("connection", "close");
            return Ok((
                Answer {
                    status: head.status,
                    body,
                },
                keep,
            ));
        }
    }

    /// The body after the head; `true` when it ran to the connection's close.
    fn read_body(
        &self,
        mut s: &TcpStream,
        head: &Response,
        mut buf: Vec<u8>,
        deadline: Instant,
    ) -> Result<(Vec<u8>, bool), Sent> {
        let max = self.max_answer_bytes;
        let failed = |e| Sent::Failed(Error::Io(e));
        if head.status == 204 || head.status == 304 {
            return Ok((Vec::new(), false));
        }
        if head.headers.has_token("transfer-encoding", "chunked") {
            let mut body = Vec::new();
            loop {
                // A chunk's size line, then that many bytes and CRLF; size 0 ends.
                let line_end = loop {
                    if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    if buf.len() > 1024 {
                        return Err(Sent::Failed(Error::BadAnswer("a chunk size line")));
                    }
                    if read_more(s, &mut buf, deadline).map_err(failed)? == 0 {
                        return Err(Sent::Failed(Error::BadAnswer("closed within a chunk")));
                    }
                };
                let line = std::str::from_utf8(&buf[..line_end]).unwrap_or("");
                let size = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size, 16)
                    .map_err(|_| Sent::Failed(Error::BadAnswer("a chunk size")))?;
                buf.drain(..line_end + 2);
                if size == 0 {
                    // Trailers end with an empty line. With none (the usual case) the
                    // connection serves the next request; with some, it is not kept,
                    // since they are not read.
                    let clean = buf.starts_with(b"\r\n") || {
                        read_more(s, &mut buf, deadline).map_err(failed)?;
                        buf.starts_with(b"\r\n")
                    };
                    // Anything after the end is not this answer's: not kept then.
                    return Ok((body, !clean || buf.len() > 2));
                }
                // A size no answer of ours can have is refused before any sum with it.
                if size > max || body.len() + size > max {
                    return Err(Sent::Failed(Error::TooLarge(max)));
                }
                while buf.len() < size + 2 {
                    if read_more(s, &mut buf, deadline).map_err(failed)? == 0 {
                        return Err(Sent::Failed(Error::BadAnswer("closed within a chunk")));
                    }
                }
                if &buf[size..size + 2] != b"\r\n" {
                    return Err(Sent::Failed(Error::BadAnswer("a chunk's end")));
                }
                body.extend_from_slice(&buf[..size]);
                buf.drain(..size + 2);
            }
        }
        let lengths: Vec<&str> = head.headers.all("content-length").collect();
        if let Some(first) = lengths.first() {
            // Repeated with one value is one length (RFC 9112 6.3); differing, none.
            if lengths.iter().any(|l| l.trim() != first.trim()) {
                return Err(Sent::Failed(Error::BadAnswer("conflicting Content-Length")));
            }
            let len: usize = first
                .trim()
                .parse()
                .map_err(|_| Sent::Failed(Error::BadAnswer("a Content-Length")))?;
            if len > max {
                return Err(Sent::Failed(Error::TooLarge(max)));
            }
            while buf.len() < len {
                if read_more(s, &mut buf, deadline).map_err(failed)? == 0 {
                    return Err(Sent::Failed(Error::BadAnswer("closed within the body")));
                }
            }
            // Bytes past the body are not this answer's: the connection is not kept.
            let extra = buf.len() > len;
            buf.truncate(len);
            return Ok((buf, extra));
        }
        // Neither: the body runs to the close.
        loop {
            if buf.len() > max {
                return Err(Sent::Failed(Error::TooLarge(max)));
            }
            let mut chunk = [0u8; 4096];
            s.set_read_timeout(Some(left(deadline).map_err(failed)?))
                .map_err(failed)?;
            match s.read(&mut chunk) {
                Ok(0) => return Ok((buf, true)),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(failed(e)),
            }
        }
    }
}

/// Whether a kept connection has nothing to read and is not closed: anything the back
/// end sent between answers (a 408, a close) would be read as the next answer.
fn quiet(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    let quiet = matches!(stream.peek(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).is_ok() && quiet
}

/// How an exchange failed: before anything came back (the request may be sent again
/// on a new connection when this one was a kept one), or after.
enum Sent {
    Unanswered(Error),
    Failed(Error),
}

/// Time left before `deadline`, or a timeout error.
fn left(deadline: Instant) -> io::Result<Duration> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// Reads what is there into `buf`, within the deadline; how many bytes came.
fn read_more(mut s: &TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> io::Result<usize> {
    s.set_read_timeout(Some(left(deadline)?))?;
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A `multipart/form-data` body (RFC 7578) of text fields, in order, and its
/// Content-Type. The boundary is chosen to occur in none of the values.
pub fn multipart(fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let mut n = crate::secure::random_u64();
    let boundary = loop {
        let b = format!("----switchboard{n:016x}");
        if fields.iter().all(|(_, v)| !v.contains(&b)) {
            break b;
        }
        n = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    };
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(value.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn urls() {
        let u = Url::parse("http://localhost:8080/app/ws.php?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("localhost", 8080, "/app/ws.php?x=1")
        );
        let u = Url::parse("http://[::1]/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 80));
        assert_eq!(u.to_string(), "http://[::1]/");
        assert_eq!(Url::parse("http://example.com").unwrap().path, "/");
        for bad in [
            "https://x/",
            "x",
            "http://:80/",
            "http://h:port/",
            "http://u@h/",
            "http://h/a b",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    /// A back end that answers each request on a connection with the next of
    /// `answers`, then closes.
    fn backend(answers: Vec<&'static [u8]>) -> (Url, thread::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut seen = Vec::new();
            for answer in answers {
                let mut buf = Vec::new();
                let mut b = [0u8; 4096];
                // Read a whole request: head, then Content-Length bytes.
                loop {
                    let n = s.read(&mut b).unwrap();
                    if n == 0 {
                        return seen;
                    }
                    buf.extend_from_slice(&b[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(i) = text.find("\r\n\r\n") {
                        let len: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if buf.len() >= i + 4 + len {
                            seen.push(text);
                            break;
                        }
                    }
                }
                s.write_all(answer).unwrap();
            }
            seen
        });
        (
            Url::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap(),
            t,
        )
    }

    /// How one request to `url` fails.
    fn failure(url: Url, timeout: Duration) -> Error {
        Client::new(url, timeout, 1024)
            .post("text/plain", b"x")
            .unwrap_err()
    }

    #[test]
    fn answers_by_length_chunks_and_close_on_one_kept_connection() {
        let (url, t) = backend(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[{}\r\n1;x=y\r\n]\r\n0\r\n\r\n",
            b"HTTP/1.0 200 OK\r\n\r\nto the end",
        ]);
        let mut c = Client::new(url, Duration::from_secs(5), 1024);
        let a = c.post("text/plain", b"one").unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"[]"[..]));
        let a = c.post("text/plain", b"two").unwrap();
        assert_eq!((a.status, a.body.as_slice()), (500, &b"[{}]"[..]));
        // The chunked answer was read whole; the same connection serves the next.
        let a = c.post("text/plain", b"three").unwrap();
        assert_eq!(a.body, b"to the end");
        let seen = t.join().unwrap();
        assert_eq!(seen.len(), 3, "one connection for all three");
        assert!(
            seen[0].starts_with("POST /hook HTTP/1.1\r\nHost: 127.0.0.1:"),
            "{}",
            seen[0]
        );
        assert!(seen[1].ends_with("\r\n\r\ntwo"));
    }

    #[test]
    fn oversized_silent_and_garbled_answers_are_errors() {
        let (url, _t) = backend(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"]);
        let e = failure(url, Duration::from_secs(5));
        assert_eq!(e.label(), "too_large", "{e}");
        let (url, _t) = backend(vec![b"SSH-2.0-OpenSSH\r\n\r\n"]);
        let e = failure(url, Duration::from_secs(5));
        assert_eq!(e.label(), "bad_answer", "{e}");
        // A back end that takes the request and says nothing: the deadline.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/", l.local_addr().unwrap())).unwrap();
        let started = Instant::now();
        let e = failure(url, Duration::from_millis(300));
        assert_eq!(e.label(), "timeout", "{e}");
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(l);
        // Nobody listening.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/", l.local_addr().unwrap())).unwrap();
        drop(l);
        let e = failure(url, Duration::from_secs(2));
        assert_eq!(e.label(), "unreachable", "{e}");
    }

    #[test]
    fn hostile_framing_is_an_error_not_a_panic_nor_a_kept_connection() {
        let (url, _t) = backend(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[{}\r\nfffffffffffffffe\r\n",
        ]);
        let e = failure(url, Duration::from_secs(5));
        assert_eq!(e.label(), "too_large", "{e}");
        let (url, _t) = backend(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n[]]",
        ]);
        let e = failure(url, Duration::from_secs(5));
        assert_eq!(e.label(), "bad_answer", "{e}");
        let (url, _t) = backend(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]XX",
        ]);
        let e = failure(url, Duration::from_secs(5));
        assert_eq!(e.label(), "bad_answer", "{e}");
        // Bytes after an answer's body: that answer is taken, the connection is not
        // kept, and the next request goes on a new one.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/", l.local_addr().unwrap())).unwrap();
        let t = thread::spawn(move || {
            let answers: [&[u8]; 2] = [
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale",
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh",
            ];
            let mut kept = Vec::new();
            for answer in answers {
                let (mut s, _) = l.accept().unwrap();
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b).unwrap();
                s.write_all(answer).unwrap();
                kept.push(s);
            }
        });
        let mut c = Client::new(url, Duration::from_secs(5), 1024);
        assert_eq!(c.post("text/plain", b"1").unwrap().body, b"[]");
        assert_eq!(c.post("text/plain", b"2").unwrap().body, b"fresh");
        t.join().unwrap();
    }

    #[test]
    fn a_kept_connection_the_back_end_closed_is_replaced() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/", l.local_addr().unwrap())).unwrap();
        let t = thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, _) = l.accept().unwrap();
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b).unwrap();
                // Says it keeps the connection, then closes it anyway.
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .unwrap();
            }
        });
        let mut c = Client::new(url, Duration::from_secs(5), 1024);
        assert_eq!(c.post("text/plain", b"1").unwrap().body, b"ok");
        thread::sleep(Duration::from_millis(50));
        assert_eq!(c.post("text/plain", b"2").unwrap().body, b"ok");
        t.join().unwrap();
    }

    #[test]
    fn multipart_bodies_name_each_field_in_order() {
        let (ct, body) = multipart(&[("message", r#"{"type":"x"}"#), ("connection", "{}")]);
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8(body).unwrap();
        assert_eq!(
            text,
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\n{{\"type\":\"x\"}}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"connection\"\r\n\r\n{{}}\r\n--{boundary}--\r\n"
            )
        );
    }
}
