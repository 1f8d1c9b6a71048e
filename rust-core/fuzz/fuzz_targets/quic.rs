//! QUIC: datagrams (header parsing, header protection, AEAD, gQUIC clear CHLO) and decrypted
//! payloads (frames, CRYPTO reassembly, the TLS hello and the CHLO), since random bytes never
//! pass the AEAD check. The input is split into pieces at 0xff 0xff markers.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../targets.rs"]
mod targets;

fuzz_target!(|data: &[u8]| targets::quic(data));
