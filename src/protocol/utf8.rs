//! Incremental UTF-8 validation (RFC 6455 8.1, RFC 3629 section 4).
//!
//! A text message may arrive in any number of frames and reads, and a code point may be
//! split anywhere between them. RFC 6455 8.1: "When an endpoint is to interpret a byte
//! stream as UTF-8 but finds that the byte stream is not, in fact, a valid UTF-8
//! stream, that endpoint MUST _Fail the WebSocket Connection_." Failing *fast* means
//! rejecting as soon as the bytes seen so far cannot be the start of valid UTF-8,
//! without waiting for the message to end (Autobahn 6.4.x checks this).
//!
//! The validator keeps three bytes of state: how many continuation bytes are still
//! owed, and the range the next one must fall in. The narrowed ranges after E0, ED,
//! F0 and F4 are what rules out overlong forms, UTF-16 surrogates and code points
//! above U+10FFFF (RFC 3629 section 4, the table of well-formed byte sequences).

/// The high bit of each of 16 bytes: zero for an all-ASCII block.
const ASCII_MASK: u128 = 0x8080_8080_8080_8080_8080_8080_8080_8080;

/// The bytes so far cannot start a valid UTF-8 sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error;

/// Validates UTF-8 fed in pieces of any size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Validator {
    /// Continuation bytes still owed by the sequence in progress (0 between characters).
    need: u8,
    /// Inclusive range the next continuation byte must fall in.
    lo: u8,
    hi: u8,
}

impl Validator {
    /// A validator between characters.
    pub const fn new() -> Self {
        Validator {
            need: 0,
            lo: 0x80,
            hi: 0xBF,
        }
    }

    /// Whether the input so far ends between characters, so it may end here.
    pub fn is_complete(&self) -> bool {
        self.need == 0
    }

    /// Checks the next piece. On error the validator must not be used again.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Utf8Error> {
        let mut i = 0;
        while i < bytes.len() {
            // 1. Between characters, skip ASCII: 16 bytes at a time, then byte by
            //    byte up to the next non-ASCII byte. Text on the wire is mostly
            //    ASCII, and this is the hot loop for it.
            if self.need == 0 {
                let (blocks, _) = bytes[i..].as_chunks::<16>();
                i += 16
                    * blocks
                        .iter()
                        .take_while(|b| u128::from_ne_bytes(**b) & ASCII_MASK == 0)
                        .count();
                i += bytes[i..].iter().take_while(|b| b.is_ascii()).count();
                if i == bytes.len() {
                    break;
                }
            }
            let b = bytes[i];
            i += 1;
            // 2. A continuation byte owed by the sequence in progress.
            if self.need > 0 {
                if b < self.lo || b > self.hi {
                    return Err(Utf8Error);
                }
                self.need -= 1;
                self.lo = 0x80;
                self.hi = 0xBF;
                continue;
            }
            // 3. A lead byte: how many continuation bytes follow, and the range of the
            //    first one (RFC 3629 section 4).
            let (need, lo, hi) = match b {
                0x00..=0x7F => continue,
                0xC2..=0xDF => (1, 0x80, 0xBF),
                0xE0 => (2, 0xA0, 0xBF), // no overlong 3-byte forms
                0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
                0xED => (2, 0x80, 0x9F), // no surrogates U+D800..U+DFFF
                0xF0 => (3, 0x90, 0xBF), // no overlong 4-byte forms
                0xF1..=0xF3 => (3, 0x80, 0xBF),
                0xF4 => (3, 0x80, 0x8F), // nothing above U+10FFFF
                // 80..BF without a lead, C0/C1 (overlong), F5..FF (never in UTF-8)
                _ => return Err(Utf8Error),
            };
            self.need = need;
            self.lo = lo;
            self.hi = hi;
        }
        Ok(())
    }
}

/// Whether `bytes` is complete, valid UTF-8.
pub fn is_valid(bytes: &[u8]) -> bool {
    let mut v = Validator::new();
    v.feed(bytes).is_ok() && v.is_complete()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked_ok(bytes: &[u8], chunk: usize) -> Result<bool, usize> {
        let mut v = Validator::new();
        for (n, piece) in bytes.chunks(chunk.max(1)).enumerate() {
            if v.feed(piece).is_err() {
                return Err(n);
            }
        }
        Ok(v.is_complete())
    }

    #[test]
    fn agrees_with_std_on_every_two_byte_string() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let s = [a, b];
                assert_eq!(is_valid(&s), std::str::from_utf8(&s).is_ok(), "{s:02x?}");
            }
        }
    }

    #[test]
    fn agrees_with_std_on_three_and_four_byte_leads() {
        // Every lead byte E0..F4 with every second byte and a fixed valid tail.
        for a in 0xE0..=0xF4u8 {
            for b in 0..=255u8 {
                let s = [a, b, 0x80, 0x80];
                let std_ok = std::str::from_utf8(&s).is_ok();
                assert_eq!(is_valid(&s), std_ok, "{s:02x?}");
            }
        }
    }

    #[test]
    fn fails_fast_on_impossible_prefix() {
        // Autobahn 6.4.1: U+10FFFF followed by F4 90: the 90 cannot follow F4.
        let s = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80";
        let mut v = Validator::new();
        assert!(v.feed(&s[..12]).is_ok(), "prefix up to F4 is still valid");
        assert_eq!(v.feed(&s[12..13]), Err(Utf8Error), "F4 90 fails at once");
    }

    #[test]
    fn split_code_points_are_fine() {
        let text = "κόσμε 𝄞 hello €".as_bytes();
        for chunk in 1..=text.len() {
            assert_eq!(chunked_ok(text, chunk), Ok(true), "chunk {chunk}");
        }
    }

    #[test]
    fn incomplete_at_end_is_not_valid() {
        assert!(!is_valid(b"abc\xe2\x82"));
        assert!(is_valid(b"abc\xe2\x82\xac"));
    }

    #[test]
    fn surrogates_and_overlongs_rejected() {
        for s in [
            &b"\xed\xa0\x80"[..],
            b"\xed\xbf\xbf",
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xf0\x80\x80\xaf",
            b"\xf4\x90\x80\x80",
            b"\xf8\x88\x80\x80\x80",
            b"\xff",
        ] {
            assert!(!is_valid(s), "{s:02x?}");
            assert!(std::str::from_utf8(s).is_err());
        }
    }

    #[test]
    fn ascii_fast_path_boundaries() {
        for len in 0..40 {
            let mut s = vec![b'a'; len];
            assert!(is_valid(&s));
            s.push(0x80);
            assert!(!is_valid(&s), "{len}");
        }
    }
}
