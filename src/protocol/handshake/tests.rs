use super::*;

const RFC_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn parse_whole(buf: &[u8]) -> Result<Request, Error> {
    match RequestParser::default().parse(buf)? {
        Status::Complete((req, n)) => {
            assert_eq!(n, buf.len());
            Ok(req)
        }
        Status::Partial => panic!("partial"),
    }
}

fn with_header(name: &str, value: Option<&str>) -> Vec<u8> {
    let text = std::str::from_utf8(RFC_REQUEST).unwrap();
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        if line
            .to_ascii_lowercase()
            .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        {
            if let Some(v) = value {
                out.push_str(&format!("{name}: {v}\r\n"));
            }
        } else {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

#[test]
fn rfc_example_accept_key() {
    // RFC 6455 1.3.
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn rfc_request_is_valid() {
    let req = parse_whole(RFC_REQUEST).unwrap();
    assert_eq!(req.target, "/chat");
    let offer = validate_request(&req).unwrap();
    assert_eq!(offer.protocols, ["chat", "superchat"]);
    let resp = encode_accept(&offer, choose_protocol(&offer.protocols, &["chat"]), &[]);
    let text = String::from_utf8(resp).unwrap();
    assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(text.contains("Sec-WebSocket-Protocol: chat\r\n"));
    assert!(
        text.ends_with("\r\n\r\n"),
        "the response ends with the empty line"
    );
}

#[test]
fn same_result_whole_halves_and_byte_by_byte() {
    let mut trailing = RFC_REQUEST.to_vec();
    trailing.extend_from_slice(&[0x81, 0x80]); // a frame sent right after the head
    for step in [1, 2, 7, trailing.len() / 2, trailing.len()] {
        let mut p = RequestParser::default();
        let mut got = None;
        for end in (step..=trailing.len())
            .step_by(step)
            .chain([trailing.len()])
        {
            if let Status::Complete(x) = p.parse(&trailing[..end]).unwrap() {
                got = Some(x);
                break;
            }
        }
        let (req, n) = got.expect("complete");
        assert_eq!(n, RFC_REQUEST.len(), "step {step}");
        assert_eq!(req, parse_whole(RFC_REQUEST).unwrap());
    }
}

#[test]
fn header_tokens_are_case_insensitive_lists() {
    let req = with_header("Connection", Some("keep-alive, UPGRADE"));
    let req = String::from_utf8(req)
        .unwrap()
        .replace("Upgrade: websocket", "Upgrade: WebSocket");
    assert!(validate_request(&parse_whole(req.as_bytes()).unwrap()).is_ok());
}

#[test]
fn each_missing_piece_has_its_answer() {
    let cases: [(&str, Option<&str>, Error, u16); 7] = [
        ("Host", None, Error::MissingHost, 400),
        ("Upgrade", None, Error::MissingUpgradeWebsocket, 400),
        ("Upgrade", Some("h2c"), Error::MissingUpgradeWebsocket, 400),
        (
            "Connection",
            Some("keep-alive"),
            Error::MissingConnectionUpgrade,
            400,
        ),
        ("Sec-WebSocket-Key", Some("c2hvcnQ="), Error::BadKey, 400),
        (
            "Sec-WebSocket-Version",
            Some("8"),
            Error::UnsupportedVersion,
            426,
        ),
        (
            "Sec-WebSocket-Version",
            None,
            Error::UnsupportedVersion,
            426,
        ),
    ];
    for (name, value, err, status) in cases {
        let req = parse_whole(&with_header(name, value)).unwrap();
        assert_eq!(
            validate_request(&req),
            Err(err.clone()),
            "{name}: {value:?}"
        );
        assert_eq!(err.http_status(), Some(status));
    }
    let post = String::from_utf8(RFC_REQUEST.to_vec())
        .unwrap()
        .replacen("GET", "POST", 1);
    assert_eq!(
        validate_request(&parse_whole(post.as_bytes()).unwrap()),
        Err(Error::MethodNotGet)
    );
    let http10 = String::from_utf8(RFC_REQUEST.to_vec())
        .unwrap()
        .replacen("HTTP/1.1", "HTTP/1.0", 1);
    assert_eq!(
        validate_request(&parse_whole(http10.as_bytes()).unwrap()),
        Err(Error::UnsupportedHttpVersion)
    );
}

#[test]
fn subprotocols_must_be_tokens() {
    for bad in ["chat, sup(er)", "a b", "caf\u{e9}", "x;y"] {
        let req = parse_whole(&with_header("Sec-WebSocket-Protocol", Some(bad))).unwrap();
        assert_eq!(validate_request(&req), Err(Error::BadSubprotocol), "{bad}");
    }
    let req = parse_whole(&with_header(
        "Sec-WebSocket-Protocol",
        Some("v1.chat, mqtt"),
    ))
    .unwrap();
    assert_eq!(
        validate_request(&req).unwrap().protocols,
        ["v1.chat", "mqtt"]
    );
}

#[test]
fn client_requires_upgrade_to_be_exactly_websocket() {
    let (_, key) = encode_request("h", "/", [1; 16], &[], &[]);
    let resp = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket, h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n", accept_key(&key));
    let Status::Complete((r, _)) = ResponseParser::default().parse(resp.as_bytes()).unwrap() else {
        panic!()
    };
    assert_eq!(
        check_response(&r, &key, &[]),
        Err(Error::MissingUpgradeWebsocket)
    );
    let ok = resp.replace("websocket, h2c", "WebSocket");
    let Status::Complete((r, _)) = ResponseParser::default().parse(ok.as_bytes()).unwrap() else {
        panic!()
    };
    assert_eq!(check_response(&r, &key, &[]), Ok(None));
}

#[test]
fn version_rejection_names_version_13() {
    let text = String::from_utf8(encode_reject(&Error::UnsupportedVersion)).unwrap();
    assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
    assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains(&format!("Content-Length: {}", body.len())));
}

#[test]
fn head_limits() {
    let limits = HeadLimits {
        max_head_bytes: 64,
        max_headers: 3,
    };
    let mut p = RequestParser::new(limits);
    assert_eq!(p.parse(&[b'a'; 63]), Ok(Status::Partial));
    assert_eq!(
        p.parse(&[b'a'; 64]),
        Err(Error::HeadTooLarge { max_bytes: 64 })
    );
    let many = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n";
    let mut p = RequestParser::new(HeadLimits {
        max_head_bytes: 8192,
        max_headers: 3,
    });
    assert_eq!(p.parse(many), Err(Error::TooManyHeaders { max_headers: 3 }));
    let three = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
    let mut p = RequestParser::new(HeadLimits {
        max_head_bytes: 8192,
        max_headers: 3,
    });
    assert!(matches!(p.parse(three), Ok(Status::Complete(_))));
    assert_eq!(
        Error::TooManyHeaders { max_headers: 3 }.http_status(),
        Some(431)
    );
}

#[test]
fn malformed_heads() {
    for bad in [
        &b"GET /\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\n folded: x\r\n\r\n",
        b"GET / HTTP/1.1\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nbad name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nx: a\x01b\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET /a\x01b HTTP/1.1\r\n\r\n",
        b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n",
        b"GET / HTTP/one\r\n\r\n",
        b"GET / HTTP/1.1x\r\n\r\n",
    ] {
        assert!(
            matches!(parse_whole(bad), Err(Error::MalformedHttp(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn a_head_of_bare_lf_lines_fails_without_waiting_for_more() {
    // No CRLF CRLF ever comes: the parser must not answer Partial.
    for bad in [&b"GET / HTTP/1.1\nHost: x\n\n"[..], b"GET / HTTP/1.1\n"] {
        let mut p = RequestParser::default();
        assert!(
            matches!(p.parse(bad), Err(Error::MalformedHttp(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // One byte at a time, too.
    let bad = b"GET / HTTP/1.1\r\nHost: x\n";
    let mut p = RequestParser::default();
    let mut result = Ok(Status::Partial);
    for n in 1..=bad.len() {
        result = p.parse(&bad[..n]);
        if result.is_err() {
            break;
        }
    }
    assert!(matches!(result, Err(Error::MalformedHttp(_))));
}

#[test]
fn client_request_and_response_checks() {
    let (req, key) = encode_request("localhost:9001", "/", [7; 16], &["chat"], &[]);
    let parsed = parse_whole(&req).unwrap();
    let offer = validate_request(&parsed).unwrap();
    assert_eq!(offer.key, key);
    let resp = encode_accept(&offer, Some("chat"), &[]);
    let Status::Complete((r, n)) = ResponseParser::default().parse(&resp).unwrap() else {
        panic!()
    };
    assert_eq!(n, resp.len());
    assert_eq!(check_response(&r, &key, &["chat"]), Ok(Some("chat".into())));
    assert_eq!(
        check_response(&r, &key, &["other"]),
        Err(Error::UnofferedSubprotocol)
    );
    assert_eq!(
        check_response(&r, "AAAAAAAAAAAAAAAAAAAAAA==", &["chat"]),
        Err(Error::BadAccept)
    );
    let with_ext = String::from_utf8(resp.clone()).unwrap().replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    );
    let Status::Complete((r, _)) = ResponseParser::default()
        .parse(with_ext.as_bytes())
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        check_response(&r, &key, &["chat"]),
        Err(Error::UnrequestedExtension)
    );
    let not_found = encode_error(404, "nope");
    let Status::Complete((r, _)) = ResponseParser::default().parse(&not_found).unwrap() else {
        panic!()
    };
    assert_eq!(
        check_response(&r, &key, &[]),
        Err(Error::UnexpectedStatus(404))
    );
}
