//! Replays the committed fuzz seeds (fuzz/seeds/<target>/*) through the same checks the
//! fuzz targets run, so `cargo test` covers them without cargo-fuzz.

use std::fs;
use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        let data = fs::read(&path).expect("seed");
        // Name the seed if its check panics.
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "seed {} fails its check", path.display());
        count += 1;
    }
    assert!(count > 0, "no seeds in {}", dir.display());
}

#[test]
fn frame_header_seeds() {
    replay("frame_header", switchboard::fuzzing::frame_header);
}

#[test]
fn frame_stream_seeds() {
    replay("frame_stream", switchboard::fuzzing::frame_stream);
}

#[test]
fn handshake_request_seeds() {
    replay("handshake_request", switchboard::fuzzing::handshake_request);
}

#[test]
fn handshake_response_seeds() {
    replay(
        "handshake_response",
        switchboard::fuzzing::handshake_response,
    );
}

#[test]
fn utf8_seeds() {
    replay("utf8", switchboard::fuzzing::utf8);
}
