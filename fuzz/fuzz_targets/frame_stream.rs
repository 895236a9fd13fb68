#![no_main]
//! See `switchboard::fuzzing::frame_stream` for what this target checks.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| switchboard::fuzzing::frame_stream(data));
