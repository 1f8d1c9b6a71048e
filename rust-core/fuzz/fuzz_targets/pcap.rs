//! pcap files through the reader and the observer: any bytes after a valid file header.
//! The first input byte picks the header's byte order, resolution and link type, so the fuzzer
//! spends its time on records, link layers, IP, TCP reassembly and the dissectors.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../targets.rs"]
mod targets;

fuzz_target!(|data: &[u8]| targets::pcap(data));
