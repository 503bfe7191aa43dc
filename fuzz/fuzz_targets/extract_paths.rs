#![no_main]
//! See `lockbox_fuzz::drivers::extract_paths` for the input format and the checks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lockbox_fuzz::drivers::extract_paths(data);
});
