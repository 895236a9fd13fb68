//! Autobahn section 6: UTF-8 handling (RFC 6455 8.1). Valid text in any split comes
//! back; invalid text fails with 1007, as soon as the bytes so far cannot be UTF-8.

mod common;
use common::*;

const VALID: &[&str] = &[
    "",
    "Hello-µ@ßöäüàá-UTF-8!!",
    "κόσμε",
    "\u{10FFFF}",
    "\u{FEFF}",
    "𝄞 ♫ €",
    "\u{7F}\u{80}\u{7FF}\u{800}\u{FFFF}\u{10000}",
];

const INVALID: &[&[u8]] = &[
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64", // surrogate
    b"\x80",             // lone continuation
    b"\xc0\xaf",         // overlong
    b"\xe0\x80\xaf",     // overlong
    b"\xf4\x90\x80\x80", // above U+10FFFF
    b"\xfe",             // never in UTF-8
    b"\xed\xbf\xbf",     // surrogate
    b"\xce",             // ends inside a code point
];

#[test]
fn valid_text_echoed_whole_and_in_one_byte_fragments() {
    let server = Server::start(&[]);
    for s in VALID {
        for how in ALL_WAYS {
            let mut c = server.client();
            c.send_frame(true, 0, TEXT, s.as_bytes(), how);
            c.expect_frame(TEXT, s.as_bytes());
            c.close_normally();
        }
        // Split into one-byte fragments: code points cross frame boundaries.
        let mut c = server.client();
        let bytes = s.as_bytes();
        if bytes.is_empty() {
            continue;
        }
        for (i, b) in bytes.iter().enumerate() {
            let op = if i == 0 { TEXT } else { CONT };
            c.send_frame(i + 1 == bytes.len(), 0, op, &[*b], Whole);
        }
        c.expect_frame(TEXT, bytes);
        c.close_normally();
    }
}

#[test]
fn invalid_text_closes_1007() {
    let server = Server::start(&[]);
    for bad in INVALID {
        for how in ALL_WAYS {
            let mut c = server.client();
            c.send_frame(true, 0, TEXT, bad, how);
            c.expect_close(Some(1007));
        }
    }
}

#[test]
fn case_6_4_fails_fast_before_the_message_ends() {
    // Autobahn 6.4.1: valid fragment, then a fragment holding F4 90 80 80 with FIN
    // clear, then nothing: the server must close with 1007 without waiting for the
    // end of the message.
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send_frame(false, 0, TEXT, "κόσμε".as_bytes(), Whole);
    c.send_frame(false, 0, CONT, b"\xf4\x90\x80\x80", Whole);
    c.expect_close(Some(1007));
    // Autobahn 6.4.3: one frame, the invalid bytes in the middle, the rest never sent.
    let mut c = server.client();
    let mut f = frame_bytes(
        true,
        0,
        TEXT,
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64",
    );
    f.truncate(f.len() - 6); // withhold "edited"
    c.send(&f, Whole);
    c.expect_close(Some(1007));
}

#[test]
fn invalid_utf8_in_a_later_fragment() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send_frame(false, 0, TEXT, b"valid start ", Whole);
    c.send_frame(true, 0, CONT, b"\xff", Whole);
    c.expect_close(Some(1007));
}

#[test]
fn binary_is_never_checked_as_utf8() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send_frame(true, 0, BINARY, b"\xff\xfe\xed\xa0\x80", Whole);
    c.expect_frame(BINARY, b"\xff\xfe\xed\xa0\x80");
    c.close_normally();
}
