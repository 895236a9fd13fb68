#![no_main]
//! See `switchboard::fuzzing::utf8` for what this target checks.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| switchboard::fuzzing::utf8(data));
