//! Autobahn section 2: pings and pongs (RFC 6455 5.5.2, 5.5.3).

mod common;
use common::*;

#[test]
fn case_2_1_to_2_3_ping_answered_with_same_payload() {
    let server = Server::start(&[]);
    for payload in [
        &b""[..],
        b"Hello, world!",
        &[0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff],
    ] {
        for how in ALL_WAYS {
            let mut c = server.client();
            c.send_frame(true, 0, PING, payload, how);
            c.expect_frame(PONG, payload);
            c.close_normally();
        }
    }
}

#[test]
fn case_2_4_ping_of_125_bytes() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let payload = binary(125);
    c.send_frame(true, 0, PING, &payload, Bytewise);
    c.expect_frame(PONG, &payload);
    c.close_normally();
}

#[test]
fn case_2_5_ping_of_126_bytes_is_protocol_error() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send_frame(true, 0, PING, &binary(126), Whole);
    c.expect_close(Some(1002));
}

#[test]
fn case_2_7_unsolicited_pong_gets_no_answer() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send_frame(true, 0, PONG, b"unsolicited", Whole);
    // The next thing the server sends must be the answer to what follows.
    c.send_frame(true, 0, TEXT, b"after", Whole);
    c.expect_frame(TEXT, b"after");
    c.close_normally();
}

#[test]
fn case_2_9_pong_then_ping_only_ping_answered() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send_frame(true, 0, PONG, b"unsolicited pong payload", Whole);
    c.send_frame(true, 0, PING, b"ping payload", Whole);
    c.expect_frame(PONG, b"ping payload");
    c.close_normally();
}

#[test]
fn case_2_10_and_2_11_ten_pings_ten_pongs_in_order() {
    let server = Server::start(&[]);
    for how in [Whole, Bytewise] {
        let mut c = server.client();
        for i in 0..10u8 {
            c.send_frame(true, 0, PING, &[b'p', i], how);
        }
        for i in 0..10u8 {
            c.expect_frame(PONG, &[b'p', i]);
        }
        c.close_normally();
    }
}

#[test]
fn fragmented_ping_is_protocol_error() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send_frame(false, 0, PING, b"frag", Whole);
    c.expect_close(Some(1002));
}
