//! Autobahn section 3: reserved bits. No extension is negotiated, so any RSV bit set
//! fails the connection with 1002 (RFC 6455 5.2); what came before is still answered.

mod common;
use common::*;

#[test]
fn rsv_bits_on_every_kind_of_frame() {
    let server = Server::start(&[]);
    for rsv in 1..=7u8 {
        for (opcode, payload) in [
            (TEXT, &b"hello"[..]),
            (BINARY, &[0xff, 0x00][..]),
            (PING, &b"p"[..]),
            (CLOSE, &[0x03, 0xe8][..]),
        ] {
            let mut c = server.client();
            c.send_frame(true, 0, TEXT, b"before", Whole);
            c.send_frame(true, rsv, opcode, payload, Bytewise);
            c.send_frame(true, 0, PING, b"after", Whole);
            c.expect_frame(TEXT, b"before");
            c.expect_close(Some(1002));
        }
    }
}
