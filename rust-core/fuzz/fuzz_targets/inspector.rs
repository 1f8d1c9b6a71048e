//! The per-flow Inspector fed arbitrary chunk sequences in both directions, TCP and UDP.
//! First byte: protocol and direction pattern; next two: destination port; the rest is cut into
//! chunks at 0xff 0xfe markers.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use phonehome::dissect::{DeviceContext, Inspector};
use phonehome::flow::{Direction, Proto};

fuzz_target!(|data: &[u8]| {
    let [mode, p0, p1, rest @ ..] = data else { return };
    let proto = if mode & 1 == 0 { Proto::Tcp } else { Proto::Udp };
    let port = match mode >> 1 & 3 {
        0 => 443,
        1 => 53,
        2 => 5222,
        _ => u16::from_be_bytes([*p0, *p1]),
    };
    let ctx = Arc::new(DeviceContext { own_ips: vec!["10.1.2.3".parse().unwrap()], ..DeviceContext::default() });
    let mut ins = Inspector::new(proto, port).with_context(ctx);
    let mut i = 0;
    for (n, chunk) in rest.split(|&b| b == 0xfe).enumerate() {
        let dir = if (mode >> (3 + n % 5)) & 1 == 0 { Direction::Up } else { Direction::Down };
        match proto {
            Proto::Udp => ins.on_datagram(dir, chunk),
            _ => ins.on_stream(dir, chunk),
        }
        let _ = ins.wants_more();
        i += 1;
        if i > 64 {
            break;
        }
    }
    let r = ins.result();
    if let Some((name, _)) = &r.hostname {
        assert!(!name.is_empty());
    }
});
