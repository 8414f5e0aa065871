//! Bytes whose length field and checksum are made right before they are loaded: libFuzzer's
//! mutations of the real checkpoints of the seed corpus reach the parser of the content.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(bytes) = optkern_fuzz::mend(data) {
        optkern_fuzz::check(&bytes);
    }
});
