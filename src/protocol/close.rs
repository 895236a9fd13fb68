//! Close codes and close frame payloads (RFC 6455 5.5.1, 7.4).

use super::utf8;
use super::Error;

/// 1000: the purpose of the connection has been fulfilled (7.4.1).
pub const NORMAL: u16 = 1000;
/// 1001: an endpoint is going away, such as a server shutting down (7.4.1).
pub const GOING_AWAY: u16 = 1001;
/// 1002: a protocol error (7.4.1).
pub const PROTOCOL_ERROR: u16 = 1002;
/// 1003: a data type the endpoint cannot accept (7.4.1).
pub const UNSUPPORTED_DATA: u16 = 1003;
/// 1005: no status code was present. Reserved: MUST NOT be sent (7.4.1).
pub const NO_STATUS: u16 = 1005;
/// 1006: closed without a close frame. Reserved: MUST NOT be sent (7.4.1).
pub const ABNORMAL: u16 = 1006;
/// 1007: message data not consistent with its type, such as non-UTF-8 text (7.4.1).
pub const INVALID_PAYLOAD: u16 = 1007;
/// 1008: a message that violates the endpoint's policy (7.4.1).
pub const POLICY_VIOLATION: u16 = 1008;
/// 1009: a message too big to process (7.4.1).
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// 1011: the server met an unexpected condition (IANA registry, 7.4.2).
pub const INTERNAL_ERROR: u16 = 1011;
/// 1013: try again later, the server is overloaded for now (IANA registry, 7.4.2).
pub const TRY_AGAIN_LATER: u16 = 1013;

/// Whether `code` may appear in a close frame on the wire.
///
/// RFC 6455 7.4.1 defines 1000-1003 and 1007-1011 (1004 is reserved; 1005 and 1006
/// are for reporting only and MUST NOT be sent); the IANA registry added 1012-1014;
/// 1015 (TLS failure) MUST NOT be sent either. 1016-2999 are reserved for future
/// RFCs, 3000-3999 are registered with IANA, 4000-4999 are private use (7.4.2).
/// Anything below 1000 or above 4999 is never valid.
pub fn is_valid_wire_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A parsed close frame payload: a status code and a UTF-8 reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code (7.4).
    pub code: u16,
    /// The reason, possibly empty. RFC 6455 5.5.1: "the data ... is not guaranteed to
    /// be human readable", but it MUST be UTF-8.
    pub reason: String,
}

/// Parses a close frame's payload (RFC 6455 5.5.1).
///
/// An empty payload is a close without a status (`None`). Otherwise the first two
/// bytes are the code in network byte order and the rest is a UTF-8 reason.
pub fn parse_payload(payload: &[u8]) -> Result<Option<CloseFrame>, Error> {
    match payload {
        [] => Ok(None),
        // 5.5.1: "If there is a body, the first two bytes of the body MUST be a
        // 2-byte unsigned integer", so one byte cannot be a valid body.
        [_] => Err(Error::ClosePayloadOneByte),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_wire_code(code) {
                return Err(Error::InvalidCloseCode(code));
            }
            if !utf8::is_valid(reason) {
                return Err(Error::InvalidUtf8);
            }
            // Validated just above: cannot fail, but stay panic-free regardless.
            let reason = String::from_utf8(reason.to_vec()).map_err(|_| Error::InvalidUtf8)?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

/// Writes a close payload for `code` and `reason` into `out`.
///
/// The reason is cut at a character boundary so the payload fits the 125 bytes a
/// control frame may carry (5.5).
pub fn encode_payload(code: u16, reason: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&code.to_be_bytes());
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&reason.as_bytes()[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_payload_is_close_without_status() {
        assert_eq!(parse_payload(&[]), Ok(None));
    }

    #[test]
    fn one_byte_payload_is_protocol_error() {
        assert_eq!(parse_payload(&[0x03]), Err(Error::ClosePayloadOneByte));
    }

    #[test]
    fn code_and_reason() {
        let p = [0x03, 0xe8, b'b', b'y', b'e'];
        assert_eq!(
            parse_payload(&p),
            Ok(Some(CloseFrame {
                code: 1000,
                reason: "bye".into()
            }))
        );
    }

    #[test]
    fn codes_that_must_not_be_sent() {
        // Autobahn 7.9.x sends exactly these.
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let p = code_bytes(code);
            assert_eq!(
                parse_payload(&p),
                Err(Error::InvalidCloseCode(code)),
                "{code}"
            );
        }
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            assert!(parse_payload(&code_bytes(code)).is_ok(), "{code}");
        }
    }

    #[test]
    fn reason_must_be_utf8() {
        let p = [
            0x03, 0xe8, 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed,
            0xa0, 0x80,
        ];
        assert_eq!(parse_payload(&p), Err(Error::InvalidUtf8));
    }

    #[test]
    fn encode_truncates_at_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let mut out = Vec::new();
        encode_payload(1000, &reason, &mut out);
        assert!(out.len() <= 125);
        assert_eq!(out.len() % 2, 0, "2-byte code + whole 2-byte chars");
        assert!(parse_payload(&out).is_ok());
    }

    fn code_bytes(code: u16) -> [u8; 2] {
        code.to_be_bytes()
    }
}
