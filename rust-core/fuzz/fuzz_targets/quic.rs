//! QUIC: datagrams (header parsing, header protection, AEAD, gQUIC clear CHLO) and decrypted
//! payloads (frames, CRYPTO reassembly, the TLS hello and the CHLO), since random bytes never
//! pass the AEAD check. The input is split into pieces at 0xff 0xff markers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phonehome::dissect::quic::{self, ClientInitials};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let pieces: Vec<&[u8]> = split(rest);
    let mut datagrams = ClientInitials::new();
    for p in &pieces {
        let _ = datagrams.on_datagram(p);
        let _ = quic::client_version(p);
    }
    let version = match selector % 5 {
        0 => quic::VERSION_1,
        1 => quic::VERSION_2,
        2 => 0xff00_001d,
        3 => u32::from_be_bytes(*b"Q050"),
        _ => u32::from_be_bytes(*b"T051"),
    };
    let mut plain = ClientInitials::new();
    for p in &pieces {
        let _ = plain.on_plaintext(p, version);
    }
    let _ = quic::version_name(u32::from_le_bytes([selector, selector, 0, 0xff]));
});

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == 0xff && data[i + 1] == 0xff {
            out.push(&data[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push(&data[start.min(data.len())..]);
    out
}
