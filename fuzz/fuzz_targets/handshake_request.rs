#![no_main]
//! See `switchboard::fuzzing::handshake_request` for what this target checks.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| switchboard::fuzzing::handshake_request(data));
