//! pcapng files through the reader and the observer: any blocks after a valid section header
//! (little- or big-endian by the first input byte).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../targets.rs"]
mod targets;

fuzz_target!(|data: &[u8]| targets::pcapng(data));
