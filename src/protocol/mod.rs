//! RFC 6455, sans-I/O.
//!
//! Bytes go in, events and bytes come out. Nothing here touches a socket, a thread, a
//! clock or a random number generator: the caller moves the bytes and passes masking
//! keys and handshake nonces in. The same code serves the server and the client role
//! ([`Role`]), and the same code runs under the fuzzer (`fuzz/`) as in production.
//!
//! | module        | RFC 6455 | what it does |
//! |---------------|----------|--------------|
//! | [`handshake`] | 4        | opening handshake, both sides, incremental and bounded |
//! | [`frame`]     | 5.2      | frame header parse and encode, every bit-level rule |
//! | [`mask`]      | 5.3      | XOR masking, word at a time, with a byte-wise reference |
//! | [`message`]   | 5.4, 5.5 | reassembly, interleaved control frames, limits |
//! | [`utf8`]      | 8.1      | incremental UTF-8 validation that fails fast |
//! | [`close`]     | 5.5.1, 7.4 | close codes and close payloads |
//! | [`connection`] | 4.1, 5.5, 7.1 | the state machine: pongs, close echo, failing, the closing handshake |
//!
//! This module imports nothing else of the crate.

pub mod close;
pub mod connection;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;
pub mod utf8;

use std::fmt;

/// Which end of the connection this code plays. Masking direction (RFC 6455 5.1) and
/// which handshake message is parsed follow from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Accepts the opening handshake; receives masked frames, sends unmasked ones.
    Server,
    /// Opens the connection; sends masked frames, receives unmasked ones.
    Client,
}

/// Result of feeding a parser some bytes: not enough yet, or done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status<T> {
    /// More bytes are needed; everything given so far was looked at and remembered, so
    /// the next call resumes where this one stopped.
    Partial,
    /// Parsing finished; the value, and for byte parsers how many bytes it took.
    Complete(T),
}

/// Everything a peer can get wrong, one variant per RFC rule.
///
/// Each variant maps either to an HTTP status (the opening handshake, before the
/// connection is a WebSocket) or to a close code (after). Display strings are fixed
/// text: a close reason never echoes the peer's bytes back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    // ---- opening handshake, server side (RFC 6455 4.2.1) -> HTTP status
    /// The request head is larger than the configured maximum (431).
    HeadTooLarge { max_bytes: usize },
    /// More header lines than the configured maximum (431).
    TooManyHeaders { max_headers: usize },
    /// The request or status line, or a header line, is not HTTP/1.1 syntax (400).
    MalformedHttp(&'static str),
    /// The method is not GET (405). RFC 6455 4.2.1 item 1.
    MethodNotGet,
    /// The version is not HTTP/1.1 (505). RFC 6455 4.2.1 item 1.
    UnsupportedHttpVersion,
    /// No Host header, or more than one (400). RFC 6455 4.2.1 item 2.
    MissingHost,
    /// `Upgrade` does not list `websocket` (400). RFC 6455 4.2.1 item 3.
    MissingUpgradeWebsocket,
    /// `Connection` does not list `upgrade` (400). RFC 6455 4.2.1 item 4.
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Key` missing, repeated, or not 16 bytes in base64 (400). 4.2.1 item 5.
    BadKey,
    /// `Sec-WebSocket-Version` is not 13 (426 with `Sec-WebSocket-Version: 13`). 4.2.1 item 6.
    UnsupportedVersion,
    /// A `Sec-WebSocket-Protocol` element that is not a token (400). RFC 6455 4.1: the
    /// elements "MUST be non-empty strings with characters in the range U+0021 to
    /// U+007E not including separator characters".
    BadSubprotocol,

    // ---- opening handshake, client side (RFC 6455 4.1, the server's response)
    /// The status is not 101 (4.1: "the client MUST ... fail the WebSocket Connection").
    UnexpectedStatus(u16),
    /// `Sec-WebSocket-Accept` is missing or does not match the key we sent.
    BadAccept,
    /// The server selected a subprotocol the client did not offer.
    UnofferedSubprotocol,
    /// The server answered with an extension the client did not ask for.
    UnrequestedExtension,

    // ---- framing (RFC 6455 5.2) -> close 1002 unless said otherwise
    /// RSV1, RSV2 or RSV3 set without an extension that defines them.
    ReservedBits,
    /// Opcode 0x3-0x7 or 0xB-0xF.
    ReservedOpcode(u8),
    /// A control frame with FIN clear (5.5: control frames MUST NOT be fragmented).
    FragmentedControlFrame,
    /// A control frame whose payload is longer than 125 bytes (5.5).
    ControlFrameTooLong,
    /// A 64-bit length with the most significant bit set (5.2).
    LengthTopBitSet,
    /// A length written with more bytes than needed (5.2: "the minimal number of
    /// bytes MUST be used to encode the length").
    NonMinimalLength,
    /// A client sent an unmasked frame (5.1).
    UnmaskedFrame,
    /// A server sent a masked frame (5.1).
    MaskedFrame,
    /// A frame's payload is longer than `max_frame_bytes` (close 1009).
    FrameTooLarge { size: u64, max_bytes: usize },

    // ---- messages (RFC 6455 5.4)
    /// A continuation frame with no message open.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is still open.
    ExpectedContinuation,
    /// The message would be longer than `max_message_bytes` (close 1009).
    MessageTooLarge { size: u64, max_bytes: usize },
    /// A text message, or a close reason, is not UTF-8 (close 1007, RFC 6455 8.1).
    InvalidUtf8,

    // ---- close frames (RFC 6455 5.5.1, 7.4)
    /// A close payload of exactly one byte.
    ClosePayloadOneByte,
    /// A close code that must not appear on the wire (7.4.1, 7.4.2).
    InvalidCloseCode(u16),
}

impl Error {
    /// The HTTP status a server answers this handshake error with, or `None` for
    /// errors that are not about the request.
    pub fn http_status(&self) -> Option<u16> {
        use Error::*;
        Some(match self {
            HeadTooLarge { .. } | TooManyHeaders { .. } => 431,
            MalformedHttp(_)
            | MissingHost
            | MissingUpgradeWebsocket
            | MissingConnectionUpgrade
            | BadKey
            | BadSubprotocol => 400,
            MethodNotGet => 405,
            UnsupportedHttpVersion => 505,
            UnsupportedVersion => 426,
            _ => return None,
        })
    }

    /// The close code to fail the connection with (RFC 6455 7.4.1), or `None` for
    /// handshake errors, which happen before there is a WebSocket to close.
    pub fn close_code(&self) -> Option<u16> {
        use Error::*;
        match self {
            ReservedBits
            | ReservedOpcode(_)
            | FragmentedControlFrame
            | ControlFrameTooLong
            | LengthTopBitSet
            | NonMinimalLength
            | UnmaskedFrame
            | MaskedFrame
            | UnexpectedContinuation
            | ExpectedContinuation
            | ClosePayloadOneByte
            | InvalidCloseCode(_) => Some(close::PROTOCOL_ERROR),
            InvalidUtf8 => Some(close::INVALID_PAYLOAD),
            FrameTooLarge { .. } | MessageTooLarge { .. } => Some(close::MESSAGE_TOO_BIG),
            _ => None,
        }
    }

    /// Short fixed text for a close reason or an HTTP error body.
    pub fn reason(&self) -> &'static str {
        use Error::*;
        match self {
            HeadTooLarge { .. } => "request head too large",
            TooManyHeaders { .. } => "too many header fields",
            MalformedHttp(what) => what,
            MethodNotGet => "method must be GET",
            UnsupportedHttpVersion => "HTTP/1.1 required",
            MissingHost => "Host header required",
            MissingUpgradeWebsocket => "Upgrade: websocket required",
            MissingConnectionUpgrade => "Connection: upgrade required",
            BadKey => "Sec-WebSocket-Key must be 16 bytes in base64",
            UnsupportedVersion => "Sec-WebSocket-Version 13 required",
            BadSubprotocol => "Sec-WebSocket-Protocol values must be tokens",
            UnexpectedStatus(_) => "server did not answer 101",
            BadAccept => "Sec-WebSocket-Accept does not match",
            UnofferedSubprotocol => "server chose a subprotocol that was not offered",
            UnrequestedExtension => "server chose an extension that was not offered",
            ReservedBits => "reserved bits set",
            ReservedOpcode(_) => "reserved opcode",
            FragmentedControlFrame => "fragmented control frame",
            ControlFrameTooLong => "control frame payload over 125 bytes",
            LengthTopBitSet => "64-bit length with top bit set",
            NonMinimalLength => "length not minimally encoded",
            UnmaskedFrame => "client frame not masked",
            MaskedFrame => "server frame masked",
            FrameTooLarge { .. } => "frame too large",
            UnexpectedContinuation => "continuation without a message",
            ExpectedContinuation => "new message inside a fragmented one",
            MessageTooLarge { .. } => "message too large",
            InvalidUtf8 => "invalid UTF-8",
            ClosePayloadOneByte => "close payload of one byte",
            InvalidCloseCode(_) => "invalid close code",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match self {
            HeadTooLarge { max_bytes } => write!(f, "request head over {max_bytes} bytes"),
            TooManyHeaders { max_headers } => write!(f, "more than {max_headers} header fields"),
            UnexpectedStatus(s) => write!(f, "server answered {s}, not 101"),
            ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            FrameTooLarge { size, max_bytes } => {
                write!(f, "frame of {size} bytes over the limit of {max_bytes}")
            }
            MessageTooLarge { size, max_bytes } => {
                write!(f, "message of {size} bytes over the limit of {max_bytes}")
            }
            InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        // Errors travel through every read path; keep them two words at most.
        assert!(
            std::mem::size_of::<Error>() <= 24,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    /// Where each error is answered: before the upgrade (HTTP), after it (close
    /// frame), or on the client, which only fails. The match has no wildcard, so a new
    /// variant does not compile until it is placed here.
    fn expected(e: &Error) -> (&'static str, u16) {
        use Error::*;
        match e {
            HeadTooLarge { .. } | TooManyHeaders { .. } => ("http", 431),
            MalformedHttp(_)
            | MissingHost
            | MissingUpgradeWebsocket
            | MissingConnectionUpgrade
            | BadKey
            | BadSubprotocol => ("http", 400),
            MethodNotGet => ("http", 405),
            UnsupportedHttpVersion => ("http", 505),
            UnsupportedVersion => ("http", 426),
            UnexpectedStatus(_) | BadAccept | UnofferedSubprotocol | UnrequestedExtension => {
                ("client", 0)
            }
            ReservedBits
            | ReservedOpcode(_)
            | FragmentedControlFrame
            | ControlFrameTooLong
            | LengthTopBitSet
            | NonMinimalLength
            | UnmaskedFrame
            | MaskedFrame
            | UnexpectedContinuation
            | ExpectedContinuation
            | ClosePayloadOneByte
            | InvalidCloseCode(_) => ("close", 1002),
            InvalidUtf8 => ("close", 1007),
            FrameTooLarge { .. } | MessageTooLarge { .. } => ("close", 1009),
        }
    }

    #[test]
    fn every_error_maps_to_exactly_one_answer() {
        use Error::*;
        let all = [
            HeadTooLarge { max_bytes: 1 },
            TooManyHeaders { max_headers: 1 },
            MalformedHttp("x"),
            MethodNotGet,
            UnsupportedHttpVersion,
            MissingHost,
            MissingUpgradeWebsocket,
            MissingConnectionUpgrade,
            BadKey,
            UnsupportedVersion,
            BadSubprotocol,
            UnexpectedStatus(200),
            BadAccept,
            UnofferedSubprotocol,
            UnrequestedExtension,
            ReservedBits,
            ReservedOpcode(3),
            FragmentedControlFrame,
            ControlFrameTooLong,
            LengthTopBitSet,
            NonMinimalLength,
            UnmaskedFrame,
            MaskedFrame,
            FrameTooLarge {
                size: 2,
                max_bytes: 1,
            },
            UnexpectedContinuation,
            ExpectedContinuation,
            MessageTooLarge {
                size: 2,
                max_bytes: 1,
            },
            InvalidUtf8,
            ClosePayloadOneByte,
            InvalidCloseCode(1005),
        ];
        for e in &all {
            let got = match (e.http_status(), e.close_code()) {
                (Some(s), None) => ("http", s),
                (None, Some(c)) => ("close", c),
                (None, None) => ("client", 0),
                (Some(_), Some(_)) => panic!("{e:?} has two answers"),
            };
            assert_eq!(got, expected(e), "{e:?}");
            assert!(
                !e.reason().is_empty() && e.reason().len() <= 123,
                "{e:?}: reason fits a close frame"
            );
            assert!(!e.to_string().is_empty());
        }
    }
}
