//! Arbitrary bytes into the checkpoint loader (most stop at the magic, the length or the
//! checksum; the seed corpus starts it from real checkpoints).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| optkern_fuzz::check(data));
