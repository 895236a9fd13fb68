//! The crate's own client role (`socket::connect`) against the `switchboard echo`
//! binary: handshake with a random key, masked frames, fragmentation, ping/pong and a
//! closing handshake started by the client.

mod common;
use common::*;
use std::net::TcpStream;
use switchboard::protocol::close::CloseFrame;
use switchboard::protocol::frame::OpCode;
use switchboard::protocol::message::Event;
use switchboard::protocol::Role;
use switchboard::socket::{self, Config, State};

fn connect(server: &Server) -> socket::WebSocket<TcpStream> {
    let stream = TcpStream::connect(server.addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let host = server.addr.to_string();
    let (ws, resp, protocol) =
        socket::connect(stream, &host, "/", &[], Config::default()).expect("handshake");
    assert_eq!(resp.status, 101);
    assert_eq!(protocol, None);
    assert_eq!(ws.role(), Role::Client);
    ws
}

#[test]
fn client_round_trip() {
    let server = Server::start(&[]);
    let mut ws = connect(&server);
    ws.send_text("héllo").unwrap();
    assert_eq!(ws.read().unwrap(), Event::Text("héllo".into()));
    let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    ws.send_binary(&big).unwrap();
    assert_eq!(ws.read().unwrap(), Event::Binary(big.clone()));
    // Cut inside the two-byte 'é': the server validates across frames.
    ws.send_fragmented(OpCode::Text, "héllo wörld".as_bytes(), 2)
        .unwrap();
    assert_eq!(ws.read().unwrap(), Event::Text("héllo wörld".into()));
    ws.ping(b"are you there").unwrap();
    assert_eq!(ws.read().unwrap(), Event::Pong(b"are you there".to_vec()));
    ws.close_and_wait(1000, "done").unwrap();
    assert_eq!(ws.state(), State::Closed);
}

#[test]
fn client_sees_the_servers_close_code_on_a_protocol_error() {
    let server = Server::start(&["--max-message-bytes", "10"]);
    let mut ws = connect(&server);
    ws.send_binary(&[0; 11]).unwrap();
    match ws.read().unwrap() {
        Event::Close(Some(CloseFrame { code, .. })) => assert_eq!(code, 1009),
        other => panic!("expected close 1009, got {other:?}"),
    }
    assert_eq!(ws.state(), State::Closed);
}

#[test]
fn client_refuses_a_non_websocket_answer() {
    let server = Server::start(&[]);
    // An old protocol version: the server answers 426, and the client must not
    // treat that as an upgrade. Done by hand since `connect` always offers 13.
    let mut raw = Client::raw(server.addr);
    raw.send(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n", Whole);
    assert!(raw.read_http_head().starts_with("HTTP/1.1 426 "));
    // And a server that is not WebSocket at all: the client fails with the status.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = [0u8; 1024];
        let _ = std::io::Read::read(&mut s, &mut buf);
        std::io::Write::write_all(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
    });
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let err = socket::connect(stream, "x", "/", &[], Config::default())
        .err()
        .expect("must fail");
    assert!(
        matches!(
            err,
            socket::Error::Protocol(switchboard::protocol::Error::UnexpectedStatus(200))
        ),
        "{err}"
    );
    fake.join().unwrap();
}
