//! Autobahn section 9: large messages, and the size limits (1009).

mod common;
use common::*;

#[test]
fn case_9_1_and_9_2_sixteen_mib_in_one_frame() {
    let server = Server::start(&[]);
    for opcode in [TEXT, BINARY] {
        let mut c = server.client();
        let payload = if opcode == TEXT {
            text(16 << 20)
        } else {
            binary(16 << 20)
        };
        c.send_frame(true, 0, opcode, &payload, Chunks(1 << 20));
        c.expect_frame(opcode, &payload);
        c.close_normally();
    }
}

#[test]
fn case_9_3_and_9_4_four_mib_in_small_fragments() {
    let server = Server::start(&[]);
    for fragment in [64, 4096, 65536, 1 << 20] {
        let mut c = server.client();
        let payload = binary(4 << 20);
        let mut burst = Vec::new();
        for (i, piece) in payload.chunks(fragment).enumerate() {
            let last = (i + 1) * fragment >= payload.len();
            burst.extend(frame_bytes(
                last,
                0,
                if i == 0 { BINARY } else { CONT },
                piece,
            ));
        }
        c.send(&burst, Chunks(1 << 20));
        c.expect_frame(BINARY, &payload);
        c.close_normally();
    }
}

#[test]
fn frame_over_the_limit_closes_1009_from_the_header_alone() {
    let server = Server::start(&["--max-frame-bytes", "1000"]);
    let mut c = server.client();
    // Header only: the answer must not wait for a payload that is never sent.
    let f = frame_bytes(true, 0, BINARY, &binary(1001));
    c.send(&f[..8], Whole);
    c.expect_close(Some(1009));
    // At the limit exactly, fine.
    let mut c = server.client();
    c.send_frame(true, 0, BINARY, &binary(1000), Whole);
    c.expect_frame(BINARY, &binary(1000));
    c.close_normally();
}

#[test]
fn message_over_the_limit_closes_1009() {
    let server = Server::start(&["--max-message-bytes", "1000"]);
    let mut c = server.client();
    c.send_frame(false, 0, TEXT, &text(600), Whole);
    c.send_frame(true, 0, CONT, &text(401), Whole);
    c.expect_close(Some(1009));
    let mut c = server.client();
    c.send_frame(false, 0, TEXT, &text(600), Whole);
    c.send_frame(true, 0, CONT, &text(400), Whole);
    c.expect_frame(TEXT, &[text(600), text(400)].concat());
    c.close_normally();
}
