//! Turning a byte stream into messages (RFC 6455 5.4, 5.5, 5.6, 8.1).
//!
//! [`Decoder`] takes bytes in pieces of any size and yields [`Event`]s: whole text and
//! binary messages, pings, pongs and a close. It reassembles fragmented messages,
//! lets control frames through between fragments, unmasks payloads while copying them
//! out of the caller's buffer, checks text as UTF-8 as it arrives, and enforces the
//! size limits before it buffers anything. It keeps no more than one partial header
//! (14 bytes) besides the message it is assembling, so the caller's read buffer can be
//! reused for every read.

use super::close::{self, CloseFrame};
use super::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD_BYTES, MAX_HEADER_BYTES};
use super::mask;
use super::utf8::Validator;
use super::{Error, Role, Status};

/// Size limits for received data. Every limit has a default; both answer 1009.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest payload of one frame. Default 16 MiB: Autobahn 9.1.6 and 9.2.6 send a
    /// 16 MiB message in one frame, and browsers send a message as one frame.
    pub max_frame_bytes: usize,
    /// Longest message, all its fragments together. Default 64 MiB.
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 16 << 20,
            max_message_bytes: 64 << 20,
        }
    }
}

/// What the decoder found in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A whole text message, valid UTF-8.
    Text(String),
    /// A whole binary message.
    Binary(Vec<u8>),
    /// A ping and its payload; the receiver owes a pong with the same payload (5.5.2).
    Ping(Vec<u8>),
    /// A pong and its payload (5.5.3).
    Pong(Vec<u8>),
    /// The peer started or answered the closing handshake (5.5.1). After it the decoder
    /// reads nothing more: 5.5.1, "the endpoint MUST NOT send any more data frames"
    /// after a close, so anything that follows is ignored.
    Close(Option<CloseFrame>),
}

/// One frame as it was received, kept for `--trace-frames`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameTrace {
    /// The frame's header, as received or sent.
    pub header: FrameHeader,
    /// The first bytes of the payload, unmasked.
    pub preview: Vec<u8>,
}

/// How many payload bytes a [`FrameTrace`] keeps.
pub const TRACE_PREVIEW_BYTES: usize = 16;

/// The frame being received.
#[derive(Clone, Copy, Debug)]
struct InFrame {
    header: FrameHeader,
    /// Payload bytes not yet received.
    remaining: u64,
    /// Position in the masking key for the next payload byte.
    mask_offset: usize,
    /// Where this frame's payload starts in the buffer it is copied to.
    start: usize,
}

/// The receive side of one connection, in either role.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    limits: Limits,
    /// A header split across reads, at most [`MAX_HEADER_BYTES`].
    head: [u8; MAX_HEADER_BYTES],
    head_len: usize,
    frame: Option<InFrame>,
    /// The data message being assembled: its opcode (Text or Binary) while one is open.
    message: Option<OpCode>,
    payload: Vec<u8>,
    utf8: Validator,
    /// The payload of the control frame being received (at most 125 bytes).
    control: Vec<u8>,
    traces: Option<Vec<FrameTrace>>,
    /// A close was received, or an error met: nothing more is decoded.
    done: bool,
    /// Payload buffers the caller gave back ([`Decoder::recycle`]), used for the next
    /// messages instead of new allocations.
    spare: Vec<Vec<u8>>,
}

/// At most this many buffers are kept for reuse.
const MAX_SPARE_BUFFERS: usize = 4;
/// A buffer larger than this is not kept: one huge message must not pin its memory.
const MAX_SPARE_BYTES: usize = 1 << 20;

impl Decoder {
    /// A decoder for the endpoint playing `role`: a server expects masked frames, a
    /// client unmasked ones.
    pub fn new(role: Role, limits: Limits) -> Self {
        Decoder {
            role,
            limits,
            head: [0; MAX_HEADER_BYTES],
            head_len: 0,
            frame: None,
            message: None,
            payload: Vec::new(),
            utf8: Validator::new(),
            control: Vec::new(),
            traces: None,
            done: false,
            spare: Vec::new(),
        }
    }

    /// Gives back the buffer of a message the caller is done with, so that a later
    /// message reuses it rather than allocating: a server that echoes or forwards
    /// messages then allocates nothing per message once warm.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < MAX_SPARE_BUFFERS && buf.capacity() <= MAX_SPARE_BYTES {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// Frees the buffers kept by [`Decoder::recycle`]: an idle connection holds none.
    pub fn release_spares(&mut self) {
        self.spare = Vec::new();
    }

    /// Whether a data message is open: a first fragment arrived and its last has not.
    /// The caller times how long it stays open, since RFC 6455 5.4 sets no bound and a
    /// peer could otherwise hold a half-sent message open with pings for ever.
    pub fn in_message(&self) -> bool {
        self.message.is_some()
    }

    /// Bytes of heap this decoder holds now: the message being assembled (or the
    /// buffer kept from the last one) and the spare buffers. The caller adds these up
    /// across connections to keep a global budget.
    pub fn held_bytes(&self) -> usize {
        self.payload.capacity()
            + self.control.capacity()
            + self.spare.iter().map(Vec::capacity).sum::<usize>()
    }

    /// Keeps a [`FrameTrace`] of every frame received, to be taken with
    /// [`Decoder::take_traces`].
    pub fn set_tracing(&mut self, on: bool) {
        self.traces = if on { Some(Vec::new()) } else { None };
    }

    /// The frames received since the last call (empty unless tracing is on).
    pub fn take_traces(&mut self) -> Vec<FrameTrace> {
        self.traces.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Decodes from `input` until one event is complete or the input is used up.
    ///
    /// Returns how many bytes were consumed and the event, if one completed; call again
    /// with the rest of the input. Bytes of an incomplete frame are remembered, so the
    /// caller never has to keep them. After an error, or after a close frame, the
    /// decoder consumes and ignores everything: the connection is over.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), Error> {
        let mut pos = 0;
        loop {
            if self.done {
                return Ok((input.len(), None));
            }
            // 1. No frame open: gather the header, then check it before any payload
            //    is buffered.
            let frame = match self.frame {
                Some(frame) => frame,
                None => {
                    let header = match self.read_header(input, &mut pos) {
                        Ok(Some(h)) => h,
                        Ok(None) => return Ok((pos, None)),
                        Err(e) => return Err(self.fail(e)),
                    };
                    if let Err(e) = self.begin_frame(header) {
                        return Err(self.fail(e));
                    }
                    match self.frame {
                        Some(frame) => frame,
                        None => continue,
                    }
                }
            };
            // 2. Copy (and unmask) as much of the payload as this input holds.
            if frame.remaining > 0 {
                let available = input.len() - pos;
                if available == 0 {
                    return Ok((pos, None));
                }
                let n = frame.remaining.min(available as u64) as usize;
                let chunk = &input[pos..pos + n];
                pos += n;
                if let Err(e) = self.take_payload(chunk) {
                    return Err(self.fail(e));
                }
            }
            // 3. The frame is complete: finish it, which may complete an event.
            if self.frame.is_some_and(|f| f.remaining == 0) {
                match self.end_frame() {
                    Ok(Some(event)) => return Ok((pos, Some(event))),
                    Ok(None) => {}
                    Err(e) => return Err(self.fail(e)),
                }
            }
        }
    }

    /// Marks the decoder finished and passes the error on.
    fn fail(&mut self, e: Error) -> Error {
        self.done = true;
        e
    }

    /// Gathers header bytes into `self.head`; `None` while incomplete.
    fn read_header(&mut self, input: &[u8], pos: &mut usize) -> Result<Option<FrameHeader>, Error> {
        // Fast path: no partial header saved and the whole header is in the input, so
        // parse it in place without copying.
        if self.head_len == 0 {
            if let Status::Complete((header, n)) = FrameHeader::parse(&input[*pos..])? {
                *pos += n;
                return Ok(Some(header));
            }
        }
        // Slow path: copy header bytes until the length known so far is reached.
        loop {
            let want = if self.head_len < 2 {
                2
            } else {
                FrameHeader::len_from_second_byte(self.head[1])
            };
            if self.head_len >= want {
                break;
            }
            let take = (want - self.head_len).min(input.len() - *pos);
            if take == 0 {
                return Ok(None);
            }
            self.head[self.head_len..self.head_len + take]
                .copy_from_slice(&input[*pos..*pos + take]);
            self.head_len += take;
            *pos += take;
        }
        self.head_len = 0;
        FrameHeader::from_whole(&self.head).map(Some)
    }

    /// Checks a new frame against the role, the message state and the limits, and
    /// opens it. A frame with an empty payload is left open with nothing remaining.
    fn begin_frame(&mut self, header: FrameHeader) -> Result<(), Error> {
        header.check(self.role)?;
        let start = if header.opcode.is_control() {
            self.control.clear();
            0
        } else {
            // 5.4: a continuation needs an open message, and a new message may not
            // start inside one ("fragments of one message MUST NOT be interleaved
            // between fragments of another message").
            match (header.opcode, self.message) {
                (OpCode::Continuation, None) => return Err(Error::UnexpectedContinuation),
                (OpCode::Text | OpCode::Binary, Some(_)) => {
                    return Err(Error::ExpectedContinuation)
                }
                _ => {}
            }
            // Limits are checked on the header, before a byte of payload is kept.
            if header.payload_len > self.limits.max_frame_bytes as u64 {
                return Err(Error::FrameTooLarge {
                    size: header.payload_len,
                    max_bytes: self.limits.max_frame_bytes,
                });
            }
            let total = self.payload.len() as u64 + header.payload_len;
            if total > self.limits.max_message_bytes as u64 {
                return Err(Error::MessageTooLarge {
                    size: total,
                    max_bytes: self.limits.max_message_bytes,
                });
            }
            if header.opcode != OpCode::Continuation {
                self.message = Some(header.opcode);
                if self.payload.capacity() == 0 {
                    if let Some(buf) = self.spare.pop() {
                        self.payload = buf;
                    }
                }
                self.payload.clear();
                self.utf8 = Validator::new();
            }
            self.payload.len()
        };
        self.frame = Some(InFrame {
            header,
            remaining: header.payload_len,
            mask_offset: 0,
            start,
        });
        Ok(())
    }

    /// Copies one piece of the open frame's payload into place, unmasking it, and
    /// checks new text bytes as UTF-8 at once so invalid text fails fast.
    fn take_payload(&mut self, chunk: &[u8]) -> Result<(), Error> {
        let Some(frame) = self.frame.as_mut() else {
            return Ok(());
        };
        let dst = if frame.header.opcode.is_control() {
            &mut self.control
        } else {
            &mut self.payload
        };
        let from = dst.len();
        frame.mask_offset = match frame.header.masking_key {
            Some(key) => mask::extend_masked(dst, chunk, key, frame.mask_offset),
            None => {
                dst.extend_from_slice(chunk);
                0
            }
        };
        frame.remaining -= chunk.len() as u64;
        if !frame.header.opcode.is_control() && self.message == Some(OpCode::Text) {
            self.utf8
                .feed(&self.payload[from..])
                .map_err(|_| Error::InvalidUtf8)?;
        }
        Ok(())
    }

    /// Finishes the open frame, whose payload is all in.
    fn end_frame(&mut self) -> Result<Option<Event>, Error> {
        let Some(frame) = self.frame.take() else {
            return Ok(None);
        };
        let header = frame.header;
        if let Some(traces) = self.traces.as_mut() {
            let body = if header.opcode.is_control() {
                &self.control[..]
            } else {
                &self.payload[frame.start..]
            };
            traces.push(FrameTrace {
                header,
                preview: body[..body.len().min(TRACE_PREVIEW_BYTES)].to_vec(),
            });
        }
        let event = match header.opcode {
            OpCode::Ping => Event::Ping(self.control.clone()),
            OpCode::Pong => Event::Pong(self.control.clone()),
            OpCode::Close => {
                self.done = true;
                debug_assert!(self.control.len() <= MAX_CONTROL_PAYLOAD_BYTES);
                Event::Close(close::parse_payload(&self.control)?)
            }
            _ if !header.fin => return Ok(None),
            _ => match self.message.take() {
                Some(OpCode::Text) => {
                    if !self.utf8.is_complete() {
                        // 8.1: the message ended inside a code point.
                        return Err(Error::InvalidUtf8);
                    }
                    let bytes = std::mem::take(&mut self.payload);
                    Event::Text(String::from_utf8(bytes).map_err(|_| Error::InvalidUtf8)?)
                }
                _ => Event::Binary(std::mem::take(&mut self.payload)),
            },
        };
        Ok(Some(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::encode_frame;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, fin, op, Some(KEY), payload);
        out
    }

    /// Feeds `input` in pieces of `chunk` bytes; collects events until the first error.
    fn run(input: &[u8], chunk: usize, limits: Limits) -> (Vec<Event>, Option<Error>) {
        let mut d = Decoder::new(Role::Server, limits);
        let mut events = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            let mut rest = piece;
            while !rest.is_empty() {
                match d.decode(rest) {
                    Ok((n, ev)) => {
                        rest = &rest[n..];
                        events.extend(ev);
                    }
                    Err(e) => return (events, Some(e)),
                }
            }
        }
        (events, None)
    }

    /// The same events and the same error whether fed whole, in halves or byte by byte.
    fn run_all_ways(input: &[u8], limits: Limits) -> (Vec<Event>, Option<Error>) {
        let whole = run(input, input.len(), limits);
        let halves = run(input, input.len().div_ceil(2), limits);
        let bytes = run(input, 1, limits);
        assert_eq!(whole, halves, "whole vs halves");
        assert_eq!(whole, bytes, "whole vs one byte at a time");
        whole
    }

    #[test]
    fn rfc_5_7_masked_hello() {
        let input = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            run_all_ways(&input, Limits::default()),
            (vec![Event::Text("Hello".into())], None)
        );
    }

    #[test]
    fn rfc_5_7_fragmented_hello_unmasked_as_client() {
        let input = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        let mut d = Decoder::new(Role::Client, Limits::default());
        let (n, ev) = d.decode(&input).unwrap();
        assert_eq!((n, ev), (input.len(), Some(Event::Text("Hello".into()))));
    }

    #[test]
    fn every_length_boundary_all_ways() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let input = frame(true, OpCode::Binary, &payload);
            let (events, err) = run_all_ways(&input, Limits::default());
            assert_eq!(err, None);
            assert_eq!(events, vec![Event::Binary(payload)], "len {len}");
        }
    }

    #[test]
    fn ping_between_fragments() {
        let mut input = frame(false, OpCode::Text, b"frag1 ");
        input.extend(frame(true, OpCode::Ping, b"hi"));
        input.extend(frame(false, OpCode::Continuation, b"frag2 "));
        input.extend(frame(true, OpCode::Pong, b""));
        input.extend(frame(true, OpCode::Continuation, b"frag3"));
        let (events, err) = run_all_ways(&input, Limits::default());
        assert_eq!(err, None);
        assert_eq!(
            events,
            vec![
                Event::Ping(b"hi".to_vec()),
                Event::Pong(vec![]),
                Event::Text("frag1 frag2 frag3".into())
            ]
        );
    }

    #[test]
    fn continuation_rules() {
        let input = frame(true, OpCode::Continuation, b"x");
        assert_eq!(
            run_all_ways(&input, Limits::default()).1,
            Some(Error::UnexpectedContinuation)
        );
        let mut input = frame(false, OpCode::Text, b"a");
        input.extend(frame(true, OpCode::Text, b"b"));
        assert_eq!(
            run_all_ways(&input, Limits::default()).1,
            Some(Error::ExpectedContinuation)
        );
    }

    #[test]
    fn utf8_fails_fast_across_fragments() {
        // Autobahn 6.4.1-like: a valid prefix, then a fragment starting an impossible
        // sequence; the message never ends, yet the error comes at once.
        let mut input = frame(false, OpCode::Text, "κόσμε".as_bytes());
        input.extend(frame(false, OpCode::Continuation, b"\xf4\x90\x80\x80"));
        let (events, err) = run_all_ways(&input, Limits::default());
        assert!(events.is_empty());
        assert_eq!(err, Some(Error::InvalidUtf8));
    }

    #[test]
    fn code_point_split_across_frames_is_fine() {
        let euro = "€".as_bytes();
        let mut input = frame(false, OpCode::Text, &euro[..1]);
        input.extend(frame(false, OpCode::Continuation, &euro[1..2]));
        input.extend(frame(true, OpCode::Continuation, &euro[2..]));
        assert_eq!(
            run_all_ways(&input, Limits::default()),
            (vec![Event::Text("€".into())], None)
        );
    }

    #[test]
    fn text_ending_inside_a_code_point_is_invalid() {
        let input = frame(true, OpCode::Text, &"€".as_bytes()[..2]);
        assert_eq!(
            run_all_ways(&input, Limits::default()).1,
            Some(Error::InvalidUtf8)
        );
    }

    #[test]
    fn limits_checked_on_the_header() {
        let limits = Limits {
            max_frame_bytes: 100,
            max_message_bytes: 150,
        };
        // Only the header is sent: the error must not wait for the payload.
        let mut header = Vec::new();
        FrameHeader::new(true, OpCode::Binary, Some(KEY), 101).encode(&mut header);
        assert_eq!(
            run_all_ways(&header, limits).1,
            Some(Error::FrameTooLarge {
                size: 101,
                max_bytes: 100
            })
        );
        let mut input = frame(false, OpCode::Binary, &[0; 100]);
        input.extend(frame(true, OpCode::Continuation, &[0; 51]));
        assert_eq!(
            run_all_ways(&input, limits).1,
            Some(Error::MessageTooLarge {
                size: 151,
                max_bytes: 150
            })
        );
        let mut input = frame(false, OpCode::Binary, &[0; 100]);
        input.extend(frame(true, OpCode::Continuation, &[0; 50]));
        assert_eq!(
            run_all_ways(&input, limits),
            (vec![Event::Binary(vec![0; 150])], None)
        );
    }

    #[test]
    fn close_is_last_event() {
        let mut input = frame(true, OpCode::Close, &[0x03, 0xe8, b'o', b'k']);
        input.extend(frame(true, OpCode::Text, b"ignored"));
        let (events, err) = run_all_ways(&input, Limits::default());
        assert_eq!(err, None);
        assert_eq!(
            events,
            vec![Event::Close(Some(CloseFrame {
                code: 1000,
                reason: "ok".into()
            }))]
        );
    }

    #[test]
    fn bad_close_payloads() {
        assert_eq!(
            run_all_ways(&frame(true, OpCode::Close, &[3]), Limits::default()).1,
            Some(Error::ClosePayloadOneByte)
        );
        assert_eq!(
            run_all_ways(
                &frame(true, OpCode::Close, &[0x03, 0xed]),
                Limits::default()
            )
            .1,
            Some(Error::InvalidCloseCode(1005))
        );
    }

    #[test]
    fn unmasked_client_frame_fails() {
        let mut input = Vec::new();
        encode_frame(&mut input, true, OpCode::Text, None, b"hi");
        assert_eq!(
            run_all_ways(&input, Limits::default()).1,
            Some(Error::UnmaskedFrame)
        );
    }

    #[test]
    fn traces_record_each_frame() {
        let mut d = Decoder::new(Role::Server, Limits::default());
        d.set_tracing(true);
        let mut input = frame(false, OpCode::Text, b"Hel");
        input.extend(frame(true, OpCode::Continuation, b"lo"));
        let (_, ev) = d.decode(&input).unwrap();
        assert_eq!(ev, Some(Event::Text("Hello".into())));
        let traces = d.take_traces();
        assert_eq!(traces.len(), 2);
        assert_eq!(traces[0].preview, b"Hel");
        assert_eq!(traces[1].preview, b"lo");
        assert_eq!(traces[1].header.opcode, OpCode::Continuation);
    }

    fn decode_one(d: &mut Decoder, input: &[u8]) -> Event {
        match d.decode(input) {
            Ok((n, Some(event))) if n == input.len() => event,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn recycled_buffers_carry_the_next_messages() {
        let mut d = Decoder::new(Role::Server, Limits::default());
        let Event::Binary(first) = decode_one(&mut d, &frame(true, OpCode::Binary, &[1; 100]))
        else {
            panic!("not binary")
        };
        let ptr = first.as_ptr();
        d.recycle(first);
        // The next message, text this time, lands in the same allocation, cleared.
        let Event::Text(text) = decode_one(&mut d, &frame(true, OpCode::Text, b"hi")) else {
            panic!("not text")
        };
        assert_eq!(text, "hi");
        assert_eq!(text.as_ptr(), ptr);
        // Buffers over the size bound are not kept, and at most four are.
        d.recycle(Vec::with_capacity(MAX_SPARE_BYTES + 1));
        assert!(d.spare.is_empty());
        for _ in 0..6 {
            d.recycle(Vec::with_capacity(16));
        }
        assert_eq!(d.spare.len(), MAX_SPARE_BUFFERS);
        d.release_spares();
        assert!(d.spare.is_empty() && d.spare.capacity() == 0);
    }
}
