//! Autobahn section 5: fragmentation (RFC 6455 5.4).

mod common;
use common::*;

#[test]
fn case_5_1_and_5_2_fragmented_control_frames_fail() {
    let server = Server::start(&[]);
    for opcode in [PING, PONG] {
        let mut c = server.client();
        c.send_frame(false, 0, opcode, b"frag1", Whole);
        c.send_frame(true, 0, CONT, b"frag2", Whole);
        c.expect_close(Some(1002));
    }
}

#[test]
fn case_5_3_to_5_5_fragmented_text_echoed_whole() {
    let server = Server::start(&[]);
    for how in ALL_WAYS {
        let mut c = server.client();
        c.send_frame(false, 0, TEXT, b"frag1", how);
        c.send_frame(true, 0, CONT, b"frag2", how);
        c.expect_frame(TEXT, b"frag1frag2");
        c.close_normally();
    }
}

#[test]
fn case_5_6_to_5_8_ping_between_fragments_answered_first() {
    let server = Server::start(&[]);
    for how in ALL_WAYS {
        let mut c = server.client();
        c.send_frame(false, 0, TEXT, b"fragment1", how);
        c.send_frame(true, 0, PING, b"ping", how);
        c.send_frame(true, 0, CONT, b"fragment2", how);
        c.expect_frame(PONG, b"ping");
        c.expect_frame(TEXT, b"fragment1fragment2");
        c.close_normally();
    }
}

#[test]
fn case_5_9_to_5_14_continuation_without_message_fails() {
    let server = Server::start(&[]);
    for fin in [true, false] {
        let mut c = server.client();
        c.send_frame(fin, 0, CONT, b"non-continuation payload", Whole);
        c.send_frame(true, 0, TEXT, b"Hello, world!", Whole);
        c.expect_close(Some(1002));
    }
}

#[test]
fn case_5_18_new_message_inside_a_fragmented_one_fails() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send_frame(false, 0, TEXT, b"fragment1", Whole);
    c.send_frame(true, 0, TEXT, b"fragment2", Whole);
    c.expect_close(Some(1002));
}

#[test]
fn case_5_19_and_5_20_pings_between_many_fragments() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send_frame(false, 0, TEXT, b"fragment1", Whole);
    c.send_frame(false, 0, CONT, b"fragment2", Whole);
    c.send_frame(true, 0, PING, b"pongme 1!", Whole);
    c.expect_frame(PONG, b"pongme 1!");
    c.send_frame(false, 0, CONT, b"fragment3", Whole);
    c.send_frame(false, 0, CONT, b"fragment4", Whole);
    c.send_frame(true, 0, PING, b"pongme 2!", Whole);
    c.expect_frame(PONG, b"pongme 2!");
    c.send_frame(true, 0, CONT, b"fragment5", Whole);
    c.expect_frame(TEXT, b"fragment1fragment2fragment3fragment4fragment5");
    c.close_normally();
}

#[test]
fn one_byte_fragments_and_empty_fragments() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let msg = b"fragmented one byte at a time";
    c.send_frame(false, 0, BINARY, &[], Whole);
    for b in msg.iter() {
        c.send_frame(false, 0, CONT, &[*b], Bytewise);
    }
    c.send_frame(true, 0, CONT, &[], Whole);
    c.expect_frame(BINARY, msg);
    c.close_normally();
}
