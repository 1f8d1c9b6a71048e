//! HTTP/1.x request heads, and the identifier scanner on the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../targets.rs"]
mod targets;

fuzz_target!(|data: &[u8]| targets::http(data));
