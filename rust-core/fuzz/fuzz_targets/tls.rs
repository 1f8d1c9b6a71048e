//! TLS ClientHello: the record-layer path (TCP) and the bare handshake path (QUIC CRYPTO).
#![no_main]

use libfuzzer_sys::fuzz_target;
use phonehome::dissect::tls;

fuzz_target!(|data: &[u8]| {
    let whole = tls::client_hello_from_records(data);
    // Feeding a prefix never yields a different hello than the whole stream.
    if let Ok(Some(hello)) = &whole {
        for cut in [data.len() / 2, data.len().saturating_sub(1)] {
            if let Ok(Some(h)) = tls::client_hello_from_records(&data[..cut]) {
                assert_eq!(&h, hello);
            }
        }
    }
    let _ = tls::parse_handshake(data);
    let _ = tls::handshake_len(data);
});
