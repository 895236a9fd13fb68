//! Autobahn section 4: reserved opcodes fail the connection with 1002 (RFC 6455 5.2),
//! with or without a payload, after a valid message that is still echoed.

mod common;
use common::*;

#[test]
fn reserved_opcodes() {
    let server = Server::start(&[]);
    for opcode in (0x3..=0x7u8).chain(0xB..=0xF) {
        for payload in [&b""[..], b"reserved"] {
            let mut c = server.client();
            c.send_frame(true, 0, TEXT, b"before", Whole);
            c.send_frame(true, 0, opcode, payload, Whole);
            c.send_frame(true, 0, PING, b"after", Whole);
            c.expect_frame(TEXT, b"before");
            c.expect_close(Some(1002));
        }
    }
}
