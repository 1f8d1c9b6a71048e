//! IP and TCP headers with options as the engine reads them (smoltcp::wire).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../targets.rs"]
mod targets;

fuzz_target!(|data: &[u8]| targets::wire(data));
