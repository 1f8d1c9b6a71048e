//! TLS ClientHello: the record-layer path (TCP) and the bare handshake path (QUIC CRYPTO).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../targets.rs"]
mod targets;

fuzz_target!(|data: &[u8]| targets::tls(data));
