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

/// The fast mask and the reference on the same buffer, in alternating rounds so that
/// both see the same machine: a shared host's speed drifts by tens of percent within
/// seconds. Returns both medians and the median of the per-round ratios.
fn mask_pair(size: usize, names: [&'static str; 2], time: Duration) -> (Figure, Figure, f64) {
    const ROUNDS: usize = 9;
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut buf = vec![0xabu8; size];
    let slice = time / ROUNDS as u32 / 2;
    let (mut fast, mut slow, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let f = measure("", slice, size, None, || {
            apply_mask(black_box(&mut buf), key, 1);
        });
        let r = measure("", slice, size, None, || {
            apply_mask_reference(black_box(&mut buf), key, 1);
        });
        ratios.push(f.bytes_per_sec / r.bytes_per_sec);
        fast.push(f.bytes_per_sec);
        slow.push(r.bytes_per_sec);
    }
    let [name_fast, name_slow] = names;
    (
        Figure {
            name: name_fast,
            bytes_per_sec: median(&mut fast),
            items_per_sec: None,
        },
        Figure {
            name: name_slow,
            bytes_per_sec: median(&mut slow),
            items_per_sec: None,
        },
        median(&mut ratios),
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// What `bench codec` measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub figures: Vec<Figure>,
    /// Word-at-a-time over reference, median of per-round ratios, by buffer size.
    pub mask_ratios: Vec<(&'static str, f64)>,
}

/// Runs every codec benchmark, each for about `time`. 16 KiB is the size that matters
/// on the receive path: the decoder unmasks each read's piece of payload, and a read
/// fills at most the 16 KiB read buffer.
pub fn codec(time: Duration) -> Report {
    let mut figures = Vec::new();
    let mut mask_ratios = Vec::new();
    let sizes = [
        (
            16 * 1024,
            "16 KiB",
            [
                "unmask 16 KiB, word-at-a-time",
                "unmask 16 KiB, byte-wise reference",
            ],
        ),
        (
            64 * 1024,
            "64 KiB",
            [
                "unmask 64 KiB, word-at-a-time",
                "unmask 64 KiB, byte-wise reference",
            ],
        ),
    ];
    for (size, label, names) in sizes {
        let (fast, slow, ratio) = mask_pair(size, names, time * 2);
        figures.push(fast);
        figures.push(slow);
        mask_ratios.push((label, ratio));
    }
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
    Report {
        figures,
        mask_ratios,
    }
}

/// The figures as text, one per line, then the mask ratios.
pub fn report(report: &Report) -> String {
    let mut out = String::new();
    for f in &report.figures {
        out.push_str(&format!(
            "{:<44} {:>8.2} GB/s",
            f.name,
            f.bytes_per_sec / 1e9
        ));
        if let Some(items) = f.items_per_sec {
            out.push_str(&format!("  {:>12.0} frames/s", items));
        }
        out.push('\n');
    }
    for (label, ratio) in &report.mask_ratios {
        out.push_str(&format!("unmask {label}: word-at-a-time / reference {ratio:.1}x (median of 9 alternating rounds)\n"));
    }
    out
}
