//! Autobahn section 7: the closing handshake (RFC 6455 5.5.1, 7).

mod common;
use common::*;

#[test]
fn case_7_1_close_echoed_then_tcp_closed() {
    let server = Server::start(&[]);
    for how in ALL_WAYS {
        let mut c = server.client();
        c.send_frame(true, 0, CLOSE, &close_payload(1000, b"bye"), how);
        c.expect_close(Some(1000));
    }
}

#[test]
fn case_7_1_3_nothing_after_close_is_answered() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let mut burst = frame_bytes(true, 0, CLOSE, &close_payload(1000, b""));
    burst.extend(frame_bytes(true, 0, TEXT, b"after close"));
    burst.extend(frame_bytes(true, 0, PING, b"after close"));
    c.send(&burst, Whole);
    c.expect_close(Some(1000));
}

#[test]
fn case_7_3_1_empty_close_answered_with_empty_close() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send_frame(true, 0, CLOSE, &[], Whole);
    c.expect_close(None);
}

#[test]
fn case_7_3_2_one_byte_close_payload_fails() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send_frame(true, 0, CLOSE, &[0x03], Whole);
    c.expect_close(Some(1002));
}

#[test]
fn case_7_3_4_to_7_3_6_reason_lengths() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send_frame(true, 0, CLOSE, &close_payload(1000, &text(123)), Bytewise);
    c.expect_close(Some(1000));
    let mut c = server.client();
    c.send_frame(true, 0, CLOSE, &close_payload(1000, &text(124)), Whole);
    c.expect_close(Some(1002));
}

#[test]
fn case_7_5_1_invalid_utf8_reason_closes_1007() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send_frame(
        true,
        0,
        CLOSE,
        &close_payload(
            1000,
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
        ),
        Whole,
    );
    c.expect_close(Some(1007));
}

#[test]
fn case_7_7_valid_codes_echoed() {
    let server = Server::start(&[]);
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let mut c = server.client();
        c.send_frame(true, 0, CLOSE, &close_payload(code, b""), Whole);
        c.expect_close(Some(code));
    }
}

#[test]
fn case_7_9_invalid_codes_fail_with_1002() {
    let server = Server::start(&[]);
    for code in [
        0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let mut c = server.client();
        c.send_frame(true, 0, CLOSE, &close_payload(code, b""), Whole);
        c.expect_close(Some(1002));
    }
}

#[test]
fn peer_vanishing_without_close_leaves_server_healthy() {
    let mut server = Server::start(&[]);
    {
        let mut c = server.client();
        c.send_frame(false, 0, TEXT, b"half a message", Whole);
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
    }
    let mut c = server.client();
    c.send_frame(true, 0, TEXT, b"still here", Whole);
    c.expect_frame(TEXT, b"still here");
    c.close_normally();
    assert!(server.is_running());
}
