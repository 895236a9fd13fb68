//! Frame headers (RFC 6455 5.2): parse and encode, with every bit-level rule.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```

use super::mask;
use super::{Error, Role, Status};

/// The longest header: 2 bytes, 8 bytes of extended length, 4 bytes of masking key.
pub const MAX_HEADER_BYTES: usize = 14;

/// Payloads up to this size are copied next to their header, so that small frames
/// coalesce into one buffer and leave in one write; longer ones are sent from their
/// own buffer beside the header (`writev`), uncopied. One value for every sender in
/// the crate. 4 KiB: above it the copy costs more than the extra iovec (a 16 KiB echo
/// spent 8% of its time in `memmove` when it was copied).
pub const COPY_PAYLOAD_BYTES: usize = 4 * 1024;

/// The longest payload a control frame may carry (5.5).
pub const MAX_CONTROL_PAYLOAD_BYTES: usize = 125;

/// Frame opcodes (5.2). The reserved ones (0x3-0x7, 0xB-0xF) have no variant: a
/// frame carrying one fails to parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message (5.4).
    Continuation,
    /// 0x1: the first frame of a UTF-8 text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: close (5.5.1).
    Close,
    /// 0x9: ping (5.5.2).
    Ping,
    /// 0xA: pong (5.5.3).
    Pong,
}

impl OpCode {
    /// Decodes the 4-bit opcode field.
    pub fn from_bits(bits: u8) -> Result<OpCode, Error> {
        Ok(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            // 5.2: "If an unknown opcode is received, the receiving endpoint MUST
            // _Fail the WebSocket Connection_."
            other => return Err(Error::ReservedOpcode(other)),
        })
    }

    /// The 4-bit value on the wire.
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Control frames have the most significant opcode bit set (5.5).
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }

    /// A short lower-case name, for traces and logs.
    pub fn name(self) -> &'static str {
        match self {
            OpCode::Continuation => "continuation",
            OpCode::Text => "text",
            OpCode::Binary => "binary",
            OpCode::Close => "close",
            OpCode::Ping => "ping",
            OpCode::Pong => "pong",
        }
    }
}

/// One frame header, as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Last fragment of a message.
    pub fin: bool,
    /// Reserved bits; meaningful only with a negotiated extension (5.2).
    pub rsv1: bool,
    /// Reserved bit 2 (5.2).
    pub rsv2: bool,
    /// Reserved bit 3 (5.2).
    pub rsv3: bool,
    /// What the payload is (5.2).
    pub opcode: OpCode,
    /// Present exactly on frames sent by a client (5.3).
    pub masking_key: Option<[u8; 4]>,
    /// Length of the payload that follows the header.
    pub payload_len: u64,
}

impl FrameHeader {
    /// A header with the reserved bits clear: every frame this crate sends, since it
    /// negotiates no extension.
    pub fn new(fin: bool, opcode: OpCode, masking_key: Option<[u8; 4]>, payload_len: u64) -> Self {
        FrameHeader {
            fin,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            masking_key,
            payload_len,
        }
    }

    /// The whole header's length, known from its second byte (MASK and the 7-bit
    /// length): 2, plus 2 or 8 bytes of extended length, plus 4 of masking key.
    pub fn len_from_second_byte(b1: u8) -> usize {
        let ext = match b1 & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let key = if b1 & 0x80 != 0 { 4 } else { 0 };
        2 + ext + key
    }

    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Partial` until the whole header is there, then the header and how many
    /// bytes it took. Checks the rules that hold whatever the role: known opcode,
    /// control frames short and unfragmented, lengths minimal with the top bit clear.
    /// Role-dependent rules are in [`FrameHeader::check`].
    pub fn parse(buf: &[u8]) -> Result<Status<(FrameHeader, usize)>, Error> {
        // 1. The second byte says how long the whole header is.
        let Some(&b1) = buf.get(1) else {
            return Ok(Status::Partial);
        };
        let header_len = Self::len_from_second_byte(b1);
        let Some(head) = buf.get(..header_len) else {
            return Ok(Status::Partial);
        };
        let mut whole = [0u8; MAX_HEADER_BYTES];
        whole[..header_len].copy_from_slice(head);
        Ok(Status::Complete((Self::from_whole(&whole)?, header_len)))
    }

    /// Decodes a header that is all present at the start of `head` (the bytes past its
    /// length are ignored). A fixed-size array: no index can fall outside it.
    pub(super) fn from_whole(head: &[u8; MAX_HEADER_BYTES]) -> Result<FrameHeader, Error> {
        let (b0, b1) = (head[0], head[1]);
        let opcode = OpCode::from_bits(b0 & 0x0F)?;
        let fin = b0 & 0x80 != 0;
        let len7 = b1 & 0x7F;

        // 2. 5.5: "All control frames MUST have a payload length of 125 bytes or less
        //    and MUST NOT be fragmented."
        if opcode.is_control() {
            if !fin {
                return Err(Error::FragmentedControlFrame);
            }
            if len7 > 125 {
                return Err(Error::ControlFrameTooLong);
            }
        }

        // 3. The length: 7 bits, or 126 + 16 bits, or 127 + 64 bits (5.2). "In all
        //    cases, the minimal number of bytes MUST be used to encode the length", and
        //    "the most significant bit MUST be 0" for the 64-bit form.
        let (payload_len, key_at) = match len7 {
            126 => {
                let n = u16::from_be_bytes([head[2], head[3]]) as u64;
                if n < 126 {
                    return Err(Error::NonMinimalLength);
                }
                (n, 4)
            }
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&head[2..10]);
                let n = u64::from_be_bytes(b);
                if n >> 63 != 0 {
                    return Err(Error::LengthTopBitSet);
                }
                if n <= u16::MAX as u64 {
                    return Err(Error::NonMinimalLength);
                }
                (n, 10)
            }
            n => (n as u64, 2),
        };

        // 4. The masking key, when the MASK bit is set.
        let masking_key = if b1 & 0x80 != 0 {
            Some([
                head[key_at],
                head[key_at + 1],
                head[key_at + 2],
                head[key_at + 3],
            ])
        } else {
            None
        };

        let header = FrameHeader {
            fin,
            rsv1: b0 & 0x40 != 0,
            rsv2: b0 & 0x20 != 0,
            rsv3: b0 & 0x10 != 0,
            opcode,
            masking_key,
            payload_len,
        };
        Ok(header)
    }

    /// Checks the rules that depend on who receives the frame. `receiver` is the role
    /// of the endpoint that parsed it. No extension is implemented, so no RSV bit may
    /// be set.
    pub fn check(&self, receiver: Role) -> Result<(), Error> {
        // 5.2: "MUST be 0 unless an extension is negotiated that defines meanings for
        // non-zero values. If a nonzero value is received and none of the negotiated
        // extensions defines the meaning of such a nonzero value, the receiving
        // endpoint MUST _Fail the WebSocket Connection_."
        if self.rsv1 || self.rsv2 || self.rsv3 {
            return Err(Error::ReservedBits);
        }
        // 5.1: "a client MUST mask all frames that it sends to the server ... A server
        // MUST NOT mask any frames that it sends to the client." Both sides close on a
        // breach ("MAY" for the client; we do, as browsers do).
        match (receiver, self.masking_key.is_some()) {
            (Role::Server, false) => Err(Error::UnmaskedFrame),
            (Role::Client, true) => Err(Error::MaskedFrame),
            _ => Ok(()),
        }
    }

    /// How many bytes [`FrameHeader::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let ext = match self.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        2 + ext + if self.masking_key.is_some() { 4 } else { 0 }
    }

    /// Appends the header to `out`, with the length in its minimal form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let b0 = (self.fin as u8) << 7
            | (self.rsv1 as u8) << 6
            | (self.rsv2 as u8) << 5
            | (self.rsv3 as u8) << 4
            | self.opcode.bits();
        let mask_bit = if self.masking_key.is_some() { 0x80 } else { 0 };
        out.push(b0);
        match self.payload_len {
            n @ 0..=125 => out.push(mask_bit | n as u8),
            n @ 126..=0xFFFF => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        if let Some(key) = self.masking_key {
            out.extend_from_slice(&key);
        }
    }
}

/// Appends a whole frame to `out`: header, then the payload, masked while it is copied
/// when a key is given (a client's frame). Header and payload end up in one buffer so
/// they go out in one write.
pub fn encode_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: OpCode,
    masking_key: Option<[u8; 4]>,
    payload: &[u8],
) {
    let header = FrameHeader::new(fin, opcode, masking_key, payload.len() as u64);
    out.reserve(header.encoded_len() + payload.len());
    header.encode(out);
    match masking_key {
        Some(key) => {
            mask::extend_masked(out, payload, key, 0);
        }
        None => out.extend_from_slice(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(buf: &[u8]) -> Result<(FrameHeader, usize), Error> {
        match FrameHeader::parse(buf)? {
            Status::Complete(x) => Ok(x),
            Status::Partial => panic!("partial"),
        }
    }

    #[test]
    fn rfc_5_7_examples() {
        // A single-frame unmasked text message
        let (h, n) = parse_all(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]).unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.masking_key, h.payload_len, n),
            (true, OpCode::Text, None, 5, 2)
        );
        // A single-frame masked text message
        let (h, n) = parse_all(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f]).unwrap();
        assert_eq!(
            (h.masking_key, h.payload_len, n),
            (Some([0x37, 0xfa, 0x21, 0x3d]), 5, 6)
        );
        // A fragmented unmasked text message: "Hel" then "lo"
        let (h, _) = parse_all(&[0x01, 0x03, 0x48, 0x65, 0x6c]).unwrap();
        assert_eq!((h.fin, h.opcode), (false, OpCode::Text));
        let (h, _) = parse_all(&[0x80, 0x02, 0x6c, 0x6f]).unwrap();
        assert_eq!((h.fin, h.opcode), (true, OpCode::Continuation));
        // Unmasked ping and masked pong with "Hello"
        let (h, _) = parse_all(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]).unwrap();
        assert_eq!(h.opcode, OpCode::Ping);
        let (h, _) = parse_all(&[
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ])
        .unwrap();
        assert_eq!(h.opcode, OpCode::Pong);
        // 256 bytes binary message in a single unmasked frame
        let (h, n) = parse_all(&[0x82, 0x7E, 0x01, 0x00]).unwrap();
        assert_eq!((h.payload_len, n), (256, 4));
        // 64KiB binary message in a single unmasked frame
        let (h, n) = parse_all(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]).unwrap();
        assert_eq!((h.payload_len, n), (65536, 10));
    }

    #[test]
    fn encode_matches_rfc_bytes() {
        let mut out = Vec::new();
        encode_frame(&mut out, true, OpCode::Text, None, b"Hello");
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        encode_frame(
            &mut out,
            true,
            OpCode::Text,
            Some([0x37, 0xfa, 0x21, 0x3d]),
            b"Hello",
        );
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn every_length_boundary_round_trips() {
        for len in [
            0u64,
            1,
            125,
            126,
            127,
            65535,
            65536,
            u32::MAX as u64 + 1,
            (1 << 63) - 1,
        ] {
            for key in [None, Some([1, 2, 3, 4])] {
                let h = FrameHeader::new(true, OpCode::Binary, key, len);
                let mut out = Vec::new();
                h.encode(&mut out);
                assert_eq!(out.len(), h.encoded_len());
                assert_eq!(FrameHeader::len_from_second_byte(out[1]), out.len());
                // Every proper prefix is Partial; the whole is the same header.
                for cut in 0..out.len() {
                    assert_eq!(
                        FrameHeader::parse(&out[..cut]),
                        Ok(Status::Partial),
                        "len {len} cut {cut}"
                    );
                }
                assert_eq!(parse_all(&out), Ok((h, out.len())), "len {len}");
            }
        }
    }

    #[test]
    fn reserved_opcodes_fail() {
        for op in (0x3..=0x7).chain(0xB..=0xF) {
            assert_eq!(
                FrameHeader::parse(&[0x80 | op, 0x00]),
                Err(Error::ReservedOpcode(op))
            );
        }
    }

    #[test]
    fn control_frame_rules() {
        assert_eq!(
            FrameHeader::parse(&[0x09, 0x00]),
            Err(Error::FragmentedControlFrame)
        );
        assert_eq!(
            FrameHeader::parse(&[0x89, 126, 0, 126]),
            Err(Error::ControlFrameTooLong)
        );
        assert!(FrameHeader::parse(&[0x89, 125]).is_ok());
    }

    #[test]
    fn length_rules() {
        assert_eq!(
            FrameHeader::parse(&[0x82, 126, 0, 125]),
            Err(Error::NonMinimalLength)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]),
            Err(Error::NonMinimalLength)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(Error::LengthTopBitSet)
        );
    }

    #[test]
    fn role_rules() {
        let (masked, _) = parse_all(&[0x81, 0x80, 1, 2, 3, 4]).unwrap();
        let (plain, _) = parse_all(&[0x81, 0x00]).unwrap();
        assert_eq!(masked.check(Role::Server), Ok(()));
        assert_eq!(masked.check(Role::Client), Err(Error::MaskedFrame));
        assert_eq!(plain.check(Role::Client), Ok(()));
        assert_eq!(plain.check(Role::Server), Err(Error::UnmaskedFrame));
        for rsv in [0x40, 0x20, 0x10] {
            let (h, _) = parse_all(&[0x81 | rsv, 0x00]).unwrap();
            assert_eq!(h.check(Role::Client), Err(Error::ReservedBits));
        }
    }
}
