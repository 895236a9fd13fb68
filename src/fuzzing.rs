//! The checks behind the fuzz targets in `fuzz/`.
//!
//! They live in the library so that the fuzzer and `cargo test` (which replays the
//! committed seeds in `fuzz/seeds/`) run exactly the same code. Each takes arbitrary
//! bytes and panics only when an invariant breaks; none may panic for any other reason.
//!
//! Several checks cut the input into pieces at points chosen by the first bytes of the
//! input, so the fuzzer explores partial reads too, and assert that pieces and whole
//! give the same result.

use crate::protocol::frame::FrameHeader;
use crate::protocol::handshake::{self, RequestParser, ResponseParser};
use crate::protocol::message::{Decoder, Event, Limits};
use crate::protocol::utf8::Validator;
use crate::protocol::{Error, Role, Status};

/// Splits `data` into a control prefix (at most 4 bytes) and the body, and turns the
/// control bytes into a cycle of piece lengths (1 to 256).
fn pieces(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let n = data
        .first()
        .map_or(0, |b| (*b as usize % 4) + 1)
        .min(data.len());
    let (ctl, body) = data.split_at(n);
    let sizes = ctl
        .iter()
        .skip(1)
        .map(|b| *b as usize + 1)
        .collect::<Vec<_>>();
    (
        if sizes.is_empty() {
            vec![body.len().max(1)]
        } else {
            sizes
        },
        body,
    )
}

/// Cuts `body` into pieces with lengths cycling through `sizes`.
fn cut<'a>(body: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    out
}

/// Frame header: parsing never panics; a parsed header encodes back to exactly the
/// bytes it was read from (lengths are minimal and all bits are kept), and every
/// shorter prefix of those bytes is `Partial`.
pub fn frame_header(data: &[u8]) {
    let Ok(Status::Complete((header, n))) = FrameHeader::parse(data) else {
        return;
    };
    let mut again = Vec::new();
    header.encode(&mut again);
    assert_eq!(again, &data[..n], "re-encoded header differs");
    assert_eq!(header.encoded_len(), n);
    for cut in 0..n {
        assert_eq!(
            FrameHeader::parse(&data[..cut]),
            Ok(Status::Partial),
            "prefix {cut} of {n}"
        );
    }
    let _ = header.check(Role::Server);
    let _ = header.check(Role::Client);
}

/// Decodes `pieces` in order; events until the first error, and that error.
fn decode_pieces(role: Role, limits: Limits, pieces: &[&[u8]]) -> (Vec<Event>, Option<Error>) {
    let mut d = Decoder::new(role, limits);
    let mut events = Vec::new();
    for piece in pieces {
        let mut rest = *piece;
        while !rest.is_empty() {
            match d.decode(rest) {
                Ok((n, ev)) => {
                    assert!(n > 0 || ev.is_some(), "decoder made no progress");
                    assert!(n <= rest.len());
                    rest = &rest[n..];
                    events.extend(ev);
                }
                Err(e) => {
                    assert!(
                        e.close_code().is_some(),
                        "a frame error without a close code: {e:?}"
                    );
                    return (events, Some(e));
                }
            }
        }
    }
    (events, None)
}

/// A frame stream in either role (the control prefix picks it): whole and cut into
/// pieces, the decoder gives the same events and the same error. Limits are small so
/// that the fuzzer reaches them.
pub fn frame_stream(data: &[u8]) {
    let (sizes, body) = pieces(data);
    let role = if data.first().is_some_and(|b| b & 0x80 != 0) {
        Role::Client
    } else {
        Role::Server
    };
    let limits = Limits {
        max_frame_bytes: 4096,
        max_message_bytes: 8192,
    };
    let whole = decode_pieces(role, limits, &[body]);
    let chunked = decode_pieces(role, limits, &cut(body, &sizes));
    assert_eq!(whole, chunked, "whole and chunked input disagree");
    for event in &whole.0 {
        match event {
            Event::Text(t) => assert!(t.len() <= limits.max_message_bytes),
            Event::Binary(b) => assert!(b.len() <= limits.max_message_bytes),
            Event::Ping(p) | Event::Pong(p) => assert!(p.len() <= 125),
            Event::Close(_) => {}
        }
    }
}

/// Calls `parse` with a buffer that grows by one piece at a time, as reads would
/// grow it, until it stops answering `Partial`.
fn grow_in_pieces<T>(
    body: &[u8],
    sizes: &[usize],
    mut parse: impl FnMut(&[u8]) -> Result<Status<T>, Error>,
) -> Result<Status<T>, Error> {
    let mut seen = 0;
    let mut result = Ok(Status::Partial);
    for piece in cut(body, sizes) {
        seen += piece.len();
        result = parse(&body[..seen]);
        if !matches!(result, Ok(Status::Partial)) {
            break;
        }
    }
    result
}

/// The request parser, fed in pieces, agrees with the whole; a request it accepts gets
/// a 101 that the client side checks and accepts; a refusal maps to an HTTP status.
pub fn handshake_request(data: &[u8]) {
    let (sizes, body) = pieces(data);
    let whole = RequestParser::default().parse(body);
    let mut p = RequestParser::default();
    let chunked = grow_in_pieces(body, &sizes, |buf| p.parse(buf));
    assert_eq!(whole, chunked, "whole and chunked request parsing disagree");
    match whole {
        Err(e) => assert!(e.http_status().is_some(), "{e:?} has no HTTP status"),
        Ok(Status::Partial) => {}
        Ok(Status::Complete((req, n))) => {
            assert!(n <= body.len());
            match handshake::validate_request(&req) {
                Err(e) => assert!(e
                    .http_status()
                    .is_some_and(|s| (400..500).contains(&s) || s == 505)),
                Ok(offer) => {
                    let offered: Vec<&str> = offer.protocols.iter().map(String::as_str).collect();
                    let chosen = offered.first().copied();
                    let resp = handshake::encode_accept(&offer, chosen, &[]);
                    let Ok(Status::Complete((parsed, m))) = ResponseParser::default().parse(&resp)
                    else {
                        panic!("our own 101 does not parse");
                    };
                    assert_eq!(m, resp.len());
                    let got = handshake::check_response(&parsed, &offer.key, &offered);
                    assert_eq!(
                        got,
                        Ok(chosen.map(str::to_owned)),
                        "our own 101 fails the client checks"
                    );
                }
            }
        }
    }
}

/// The response parser and the client's checks never panic, and pieces agree with
/// the whole.
pub fn handshake_response(data: &[u8]) {
    let (sizes, body) = pieces(data);
    let whole = ResponseParser::default().parse(body);
    let mut p = ResponseParser::default();
    let chunked = grow_in_pieces(body, &sizes, |buf| p.parse(buf));
    assert_eq!(
        whole, chunked,
        "whole and chunked response parsing disagree"
    );
    if let Ok(Status::Complete((resp, _))) = whole {
        let _ = handshake::check_response(&resp, "dGhlIHNhbXBsZSBub25jZQ==", &["chat"]);
    }
}

/// The incremental UTF-8 validator agrees with `std::str::from_utf8`, whatever the
/// pieces, and fails fast: when it rejects a piece, the bytes up to the end of that
/// piece already hold an error std also sees.
pub fn utf8(data: &[u8]) {
    let (sizes, body) = pieces(data);
    let std_result = std::str::from_utf8(body);
    let mut v = Validator::new();
    let mut seen = 0;
    let mut rejected = false;
    for piece in cut(body, &sizes) {
        seen += piece.len();
        if v.feed(piece).is_err() {
            rejected = true;
            // std, given only the bytes so far, must see an invalid sequence, not just
            // one cut short.
            let prefix = std::str::from_utf8(&body[..seen]);
            assert!(
                matches!(prefix, Err(e) if e.error_len().is_some()),
                "rejected a valid prefix"
            );
            break;
        }
    }
    match std_result {
        Ok(_) => assert!(!rejected && v.is_complete(), "valid UTF-8 rejected"),
        Err(e) if e.error_len().is_none() => {
            // Only cut short at the end: not rejected early, but not complete either.
            assert!(!rejected && !v.is_complete(), "truncated UTF-8 mishandled");
        }
        Err(e) => {
            assert!(rejected, "invalid UTF-8 accepted");
            // Fail fast: no later than the piece holding the first invalid byte.
            let bad_at = e.valid_up_to() + e.error_len().unwrap_or(1);
            assert!(
                seen <= bad_at + sizes.iter().max().copied().unwrap_or(1),
                "rejected too late"
            );
        }
    }
}
