//! HTTP/1.x request heads, and the identifier scanner on the same bytes.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use phonehome::dissect::{http, leaks, mipush};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(req)) = http::parse_request(data) {
        assert!(!req.method.is_empty());
        if let Some(host) = req.host {
            assert!(!host.is_empty() && !host.contains(':') || host.parse::<std::net::IpAddr>().is_ok());
        }
    }
    let _ = http::host_without_port(data);
    let ctx = leaks::DeviceContext {
        own_ips: vec!["10.1.2.3".parse().unwrap()],
        model: Some("Redmi Note 9S".into()),
        os_version: Some("V12.5.1.0.RJWEUXM".into()),
    };
    let mut found = BTreeSet::new();
    leaks::scan(data, Some(&ctx), &mut found);
    let _ = mipush::recognise(data);
    let _ = mipush::carries_model(data);
});
