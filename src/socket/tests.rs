use super::*;
use crate::protocol::close::CloseFrame;
use crate::protocol::frame::{self, FrameHeader};
use std::io::Cursor;

/// A stream that reads from a script and records what is written.
struct Duplex {
    input: Cursor<Vec<u8>>,
    output: Vec<u8>,
    /// Largest read handed out at once, to test chunked input.
    read_max: usize,
    /// How many write calls were made.
    writes: usize,
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.read_max);
        self.input.read(&mut buf[..n])
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writes += 1;
        self.output.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn masked(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode_frame(&mut out, fin, op, Some([1, 2, 3, 4]), payload);
    out
}

fn server(input: Vec<u8>, read_max: usize) -> WebSocket<Duplex> {
    WebSocket::from_raw(
        Duplex {
            input: Cursor::new(input),
            output: Vec::new(),
            read_max,
            writes: 0,
        },
        Role::Server,
        Config::default(),
        &[],
    )
}

#[test]
fn ping_is_answered_and_close_echoed() {
    for read_max in [1, 3, 1 << 16] {
        let mut input = masked(true, OpCode::Ping, b"abc");
        input.extend(masked(true, OpCode::Text, b"hi"));
        input.extend(masked(true, OpCode::Close, &[0x03, 0xe8]));
        let mut ws = server(input, read_max);
        assert_eq!(ws.read().unwrap(), Event::Ping(b"abc".to_vec()));
        assert_eq!(ws.read().unwrap(), Event::Text("hi".into()));
        assert!(matches!(
            ws.read().unwrap(),
            Event::Close(Some(CloseFrame { code: 1000, .. }))
        ));
        assert!(matches!(ws.read(), Err(Error::Closed)));
        // pong "abc", then the echoed close 1000, unmasked
        assert_eq!(
            ws.stream.output,
            [0x8a, 3, b'a', b'b', b'c', 0x88, 2, 0x03, 0xe8]
        );
    }
}

#[test]
fn answers_to_one_read_leave_in_one_write() {
    let mut input = Vec::new();
    for i in 0..10u8 {
        input.extend(masked(true, OpCode::Binary, &[i]));
    }
    input.extend(masked(true, OpCode::Ping, b"p"));
    let mut ws = server(input, 1 << 16);
    for _ in 0..10 {
        let Event::Binary(m) = ws.read().unwrap() else {
            panic!()
        };
        ws.write_binary(&m).unwrap();
    }
    assert_eq!(ws.read().unwrap(), Event::Ping(b"p".to_vec()));
    assert_eq!(
        ws.stream.writes, 0,
        "nothing written while frames remain to decode"
    );
    // The input is used up: the next read flushes, then finds end of stream.
    assert!(matches!(ws.read(), Err(Error::Io(_))));
    assert_eq!(ws.stream.writes, 1, "ten echoes and a pong in one write");
    let mut expected = Vec::new();
    for i in 0..10u8 {
        expected.extend([0x82, 1, i]);
    }
    expected.extend([0x8a, 1, b'p']);
    assert_eq!(ws.stream.output, expected);
}

#[test]
fn large_server_frame_goes_out_with_the_queue_uncopied() {
    let mut ws = server(Vec::new(), 1);
    ws.write_text("first").unwrap();
    let big = vec![7u8; COPY_PAYLOAD_BYTES + 1];
    ws.write_binary(&big).unwrap();
    let out = &ws.stream.output;
    assert_eq!(&out[..7], b"\x81\x05first");
    let len = (big.len() as u16).to_be_bytes();
    assert_eq!(&out[7..11], &[0x82, 126, len[0], len[1]]);
    assert_eq!(
        out.len(),
        11 + big.len(),
        "queue, header and payload all written, in order"
    );
}

/// Takes `room` bytes, then every write fails as if timed out.
struct Stalled {
    room: usize,
    written: Vec<u8>,
}

impl Read for Stalled {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Ok(0)
    }
}

impl Write for Stalled {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_write_ends_the_connection_instead_of_resending() {
    let stalled = Stalled {
        room: 3,
        written: Vec::new(),
    };
    let mut ws = WebSocket::from_raw(stalled, Role::Server, Config::default(), &[]);
    assert!(matches!(ws.send_text("hello"), Err(Error::Io(_))));
    assert_eq!(ws.state(), State::Closed);
    assert!(matches!(ws.send_text("again"), Err(Error::Closed)));
    assert!(matches!(ws.flush(), Ok(())), "nothing left queued");
    assert_eq!(
        ws.stream.written,
        [0x81, 0x05, b'h'],
        "the cut frame is not written again"
    );
}

#[test]
fn protocol_error_sends_matching_close() {
    let mut ws = server(masked(true, OpCode::Text, b"\xff"), 1 << 16);
    assert!(matches!(
        ws.read(),
        Err(Error::Protocol(protocol::Error::InvalidUtf8))
    ));
    assert_eq!(
        &ws.stream.output[..4],
        &[0x88, ws.stream.output[1], 0x03, 0xef]
    ); // 1007
    assert_eq!(ws.state(), State::Closed);
}

#[test]
fn eof_without_close_is_io_error() {
    let mut ws = server(Vec::new(), 10);
    assert!(matches!(ws.read(), Err(Error::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof));
}

#[test]
fn client_masks_and_fragments() {
    let duplex = Duplex {
        input: Cursor::new(Vec::new()),
        output: Vec::new(),
        read_max: 100,
        writes: 0,
    };
    let mut ws = WebSocket::from_raw(duplex, Role::Client, Config::default(), &[]);
    ws.send_fragmented(OpCode::Text, "héllo".as_bytes(), 2)
        .unwrap();
    let written = ws.stream.output.clone();
    let mut d = crate::protocol::message::Decoder::new(Role::Server, Limits::default());
    let (_, ev) = d.decode(&written).unwrap();
    assert_eq!(ev, Some(Event::Text("héllo".into())));
}

#[test]
fn describe_is_readable() {
    let t = FrameTrace {
        header: FrameHeader {
            fin: true,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode: OpCode::Text,
            masking_key: Some([0x37, 0xfa, 0x21, 0x3d]),
            payload_len: 5,
        },
        preview: b"Hello".to_vec(),
    };
    assert_eq!(
        describe_frame(Direction::In, &t),
        "<- FIN=1 RSV=000 op=0x1 text MASK=1 key=37fa213d len=5 | 48 65 6c 6c 6f | \"Hello\""
    );
}

/// A connected pair of TCP streams on loopback.
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    (server, client)
}

#[test]
fn close_and_wait_returns_when_the_peer_answers() {
    let (server, client) = tcp_pair();
    let peer = std::thread::spawn(move || {
        let mut ws = WebSocket::from_raw(client, Role::Client, Config::default(), &[]);
        // The client sees the server's close, echoes it, and reads EOF after.
        let got = ws.read().unwrap();
        assert!(
            matches!(got, Event::Close(Some(CloseFrame { code: 1001, .. }))),
            "{got:?}"
        );
        assert!(matches!(ws.read(), Err(Error::Closed)));
    });
    let config = Config {
        close_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    let mut ws = WebSocket::from_raw(server, Role::Server, config, &[]);
    let start = Instant::now();
    ws.close_and_wait(1001, "going away").unwrap();
    assert_eq!(ws.state(), State::Closed);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "waited the whole timeout: {:?}",
        start.elapsed()
    );
    peer.join().unwrap();
}

#[test]
fn close_and_wait_gives_up_after_the_timeout() {
    let (server, client) = tcp_pair();
    let config = Config {
        close_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let mut ws = WebSocket::from_raw(server, Role::Server, config, &[]);
    let start = Instant::now();
    ws.close_and_wait(1000, "").unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // The silent peer got the close frame all the same.
    let mut buf = [0u8; 16];
    let n = (&client).read(&mut buf).unwrap();
    assert_eq!(&buf[..n], &[0x88, 0x02, 0x03, 0xe8]);
}
