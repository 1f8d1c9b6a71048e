//! The per-flow Inspector fed arbitrary chunk sequences in both directions, TCP and UDP.
//! First byte: protocol and direction pattern; next two: destination port; the rest is cut into
//! chunks at 0xff 0xfe markers.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../targets.rs"]
mod targets;

fuzz_target!(|data: &[u8]| targets::inspector(data));
