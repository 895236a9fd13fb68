//! Autobahn section 1: framing. Text and binary messages at every length boundary,
//! written whole, in small chunks and one byte at a time, come back unchanged.

mod common;
use common::*;

const LENGTHS: [usize; 7] = [0, 125, 126, 127, 128, 65535, 65536];

fn echo_each(opcode: u8, make: fn(usize) -> Vec<u8>) {
    let server = Server::start(&[]);
    for len in LENGTHS {
        // One byte at a time costs a system call per byte: keep it for the short ones.
        let ways: &[Write_] = if len <= 1024 {
            &ALL_WAYS
        } else {
            &[Whole, Chunks(997), Chunks(4096)]
        };
        for &how in ways {
            let mut c = server.client();
            let payload = make(len);
            c.send_frame(true, 0, opcode, &payload, how);
            c.expect_frame(opcode, &payload);
            c.close_normally();
        }
    }
}

#[test]
fn case_1_1_text_lengths() {
    echo_each(TEXT, text);
}

#[test]
fn case_1_2_binary_lengths() {
    echo_each(BINARY, binary);
}

#[test]
fn many_frames_in_one_write_all_echoed_in_order() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let mut burst = Vec::new();
    for i in 0..100u32 {
        burst.extend(frame_bytes(true, 0, BINARY, &i.to_be_bytes()));
    }
    c.send(&burst, Whole);
    for i in 0..100u32 {
        c.expect_frame(BINARY, &i.to_be_bytes());
    }
    c.close_normally();
}

#[test]
fn unmasked_client_frame_is_protocol_error() {
    // RFC 6455 5.1: "The server MUST close the connection upon receiving a frame that
    // is not masked."
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send(&[0x81, 0x02, b'h', b'i'], Whole);
    c.expect_close(Some(1002));
}

#[test]
fn non_minimal_length_is_protocol_error() {
    // RFC 6455 5.2: "the minimal number of bytes MUST be used to encode the length".
    let server = Server::start(&[]);
    let mut c = server.client();
    let mut f = vec![0x82, 0x80 | 126, 0, 5];
    f.extend_from_slice(&KEY);
    f.extend_from_slice(&[0; 5]);
    c.send(&f, Whole);
    c.expect_close(Some(1002));
}

#[test]
fn length_with_top_bit_set_is_protocol_error() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let mut f = vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1];
    f.extend_from_slice(&KEY);
    c.send(&f, Whole);
    c.expect_close(Some(1002));
}
