//! `switchboard bench codec`: the protocol core's hot loops, measured in-process.
//!
//! Reports unmasking throughput of the word-at-a-time path and of the byte-wise
//! reference, and how fast the [`Decoder`] turns masked client frames into messages at
//! two sizes. It measures the code, not the network: see docs/PERFORMANCE.md for the
//! socket benchmarks.

use crate::protocol::frame::{encode_frame, OpCode};
use crate::protocol::mask::{apply_mask, apply_mask_reference};
use crate::protocol::message::{Decoder, Event, Limits};
use crate::protocol::utf8::Validator;
use crate::protocol::Role;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// One measured figure.
#[derive(Clone, Debug)]
pub struct Figure {
    pub name: &'static str,
    /// Bytes processed per second.
    pub bytes_per_sec: f64,
    /// Items (frames) processed per second, where that means something.
    pub items_per_sec: Option<f64>,
}

/// Runs `step` (which processes `bytes` bytes and `items` items) repeatedly for about
/// `time`, after a short warm-up.
fn measure(
    name: &'static str,
    time: Duration,
    bytes: usize,
    items: Option<usize>,
    mut step: impl FnMut(),
) -> Figure {
    let warm = Instant::now();
    while warm.elapsed() < time / 10 {
        step();
    }
    let start = Instant::now();
    let mut rounds = 0u64;
    while start.elapsed() < time {
        step();
        rounds += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    Figure {
        name,
        bytes_per_sec: rounds as f64 * bytes as f64 / secs,
        items_per_sec: items.map(|n| rounds as f64 * n as f64 / secs),
    }
}

/// Decodes `stream` (whole frames) once, checking that `frames` messages came out.
fn decode_all(stream: &[u8], frames: usize) {
    let mut d = Decoder::new(Role::Server, Limits::default());
    let mut rest = stream;
    let mut seen = 0;
    while !rest.is_empty() {
        match d.decode(rest) {
            Ok((n, ev)) => {
                rest = &rest[n..];
                match ev {
                    Some(Event::Binary(m)) => {
                        black_box(&m);
                        seen += 1;
                    }
                    Some(Event::Text(t)) => {
                        black_box(&t);
                        seen += 1;
                    }
                    _ => {}
                }
            }
            Err(e) => panic!("benchmark input failed to decode: {e}"),
        }
    }
    assert_eq!(seen, frames);
}

/// `size` bytes of valid UTF-8: ASCII with a two-byte character every 64 bytes.
fn text_payload(size: usize) -> Vec<u8> {
    let line = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZé";
    let mut out: Vec<u8> = line.bytes().cycle().take(size).collect();
    // Do not end inside the two-byte character.
    while std::str::from_utf8(&out).is_err() {
        out.pop();
    }
    out
}

/// Masked frames of `size` bytes, about `total` bytes of them: binary, or text (ASCII
/// with a two-byte character every 64 bytes).
fn frame_stream(opcode: OpCode, size: usize, total: usize) -> (Vec<u8>, usize) {
    let payload: Vec<u8> = match opcode {
        OpCode::Text => "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZé."
            .bytes()
            .cycle()
            .take(size)
            .collect(),
        _ => (0..size).map(|i| i as u8).collect(),
    };
    let count = (total / size.max(1)).max(1);
    let mut out = Vec::new();
    for i in 0..count {
        encode_frame(
            &mut out,
            true,
            opcode,
            Some([i as u8, 0x5a, 0xa5, 0x3c]),
            &payload,
        );
    }
    (out, count)
}

/// Runs every codec benchmark, each for about `time`.
pub fn codec(time: Duration) -> Vec<Figure> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut buf = vec![0xabu8; 64 * 1024];
    let mut figures = Vec::new();
    figures.push(measure(
        "unmask 64 KiB, word-at-a-time",
        time,
        buf.len(),
        None,
        || {
            apply_mask(black_box(&mut buf), key, 1);
        },
    ));
    figures.push(measure(
        "unmask 64 KiB, byte-wise reference",
        time,
        buf.len(),
        None,
        || {
            apply_mask_reference(black_box(&mut buf), key, 1);
        },
    ));
    let text = text_payload(64 * 1024);
    figures.push(measure(
        "validate UTF-8 64 KiB, incremental",
        time,
        text.len(),
        None,
        || {
            let mut v = Validator::new();
            assert!(v.feed(black_box(&text)).is_ok());
        },
    ));
    figures.push(measure(
        "validate UTF-8 64 KiB, std::str::from_utf8",
        time,
        text.len(),
        None,
        || {
            assert!(std::str::from_utf8(black_box(&text)).is_ok());
        },
    ));
    let (small, n_small) = frame_stream(OpCode::Binary, 32, 1 << 20);
    figures.push(measure(
        "decode 32 B masked frames",
        time,
        small.len(),
        Some(n_small),
        || decode_all(black_box(&small), n_small),
    ));
    let (large, n_large) = frame_stream(OpCode::Binary, 64 * 1024, 8 << 20);
    figures.push(measure(
        "decode 64 KiB masked frames",
        time,
        large.len(),
        Some(n_large),
        || decode_all(black_box(&large), n_large),
    ));
    let (large_text, n_text) = frame_stream(OpCode::Text, 64 * 1024, 8 << 20);
    figures.push(measure(
        "decode 64 KiB masked text frames",
        time,
        large_text.len(),
        Some(n_text),
        || decode_all(black_box(&large_text), n_text),
    ));
    figures
}

/// The figures as text, one per line.
pub fn report(figures: &[Figure]) -> String {
    let mut out = String::new();
    for f in figures {
        out.push_str(&format!(
            "{:<40} {:>8.2} GB/s",
            f.name,
            f.bytes_per_sec / 1e9
        ));
        if let Some(items) = f.items_per_sec {
            out.push_str(&format!("  {:>12.0} frames/s", items));
        }
        out.push('\n');
    }
    if let (Some(fast), Some(slow)) = (figures.first(), figures.get(1)) {
        out.push_str(&format!(
            "word-at-a-time / reference: {:.1}x\n",
            fast.bytes_per_sec / slow.bytes_per_sec
        ));
    }
    out
}
