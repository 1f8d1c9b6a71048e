//! The bodies of the fuzz targets, one function per target, shared by the cargo-fuzz binaries
//! (fuzz_targets/*.rs) and by rust-core/tests/fuzz_seeds.rs, which runs every committed seed
//! through them on any target (CI: i686, where `u32 as usize` arithmetic can wrap).
#![allow(dead_code)] // each fuzz binary uses one function

use phonehome::dissect::dns;
use phonehome::dissect::quic::{self, ClientInitials};
use phonehome::dissect::tls;
use phonehome::dissect::{DeviceContext, DeviceScan, Inspector};
use phonehome::dissect::{http, leaks, mipush};
use phonehome::flow::{Direction, Proto};
use phonehome::pcap::{CaptureReader, observe_reader};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    IpAddress, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::mpsc;

const LINKS: [u32; 8] = [0, 1, 9, 101, 108, 113, 228, 276];
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

fn transport(data: &[u8], src: IpAddress, dst: IpAddress, caps: &ChecksumCapabilities) {
    if let Ok(t) = TcpPacket::new_checked(data) {
        let _ = TcpRepr::parse(&t, &src, &dst, caps);
        for opt in t.options().chunks(1) {
            let _ = opt;
        }
    }
    if let Ok(u) = UdpPacket::new_checked(data) {
        let _ = UdpRepr::parse(&u, &src, &dst, caps);
    }
}

/// DNS messages: every entry point the engine and the pcap observer use.
pub fn dns(data: &[u8]) {
    let parsed = dns::parse(data);
    let lenient = dns::parse_lenient(data);
    if let Ok(m) = &parsed {
        // A strict parse must also succeed leniently, with the same question.
        assert_eq!(
            lenient.as_ref().ok().and_then(|l| l.query_name()),
            m.query_name()
        );
        let _ = m.answer_addresses();
        for rr in &m.answers {
            let _ = rr.data_text();
        }
    }
    let ex = dns::Exchange {
        time: 0,
        client: "10.0.0.2:5353".parse().unwrap(),
        server: "198.18.0.53:53".parse().unwrap(),
        transport: Proto::Udp,
    };
    let _ = dns::record_from(ex, parsed.as_ref().ok(), lenient.as_ref().ok());
    let (msgs, used) = dns::split_tcp(data);
    assert!(used <= data.len());
    for m in msgs {
        let _ = dns::parse(m);
    }
    let _ = dns::parse_tcp(data);
}

/// HTTP/1.x request heads, and the identifier scanner on the same bytes.
pub fn http(data: &[u8]) {
    if let Ok(Some(req)) = http::parse_request(data) {
        assert!(!req.method.is_empty());
        if let Some(host) = req.host {
            assert!(
                !host.is_empty() && !host.contains(':') || host.parse::<std::net::IpAddr>().is_ok()
            );
        }
    }
    let _ = http::host_without_port(data);
    let ctx = DeviceScan::new(DeviceContext {
        own_ips: vec!["10.1.2.3".parse().unwrap()],
        model: Some("Redmi Note 9S".into()),
        os_version: Some("V12.5.1.0.RJWEUXM".into()),
    });
    let mut found = BTreeSet::new();
    leaks::scan(data, Some(&ctx), &mut found);
    let _ = mipush::recognise(data);
    let _ = mipush::carries_model(data);
}

/// The per-flow Inspector fed arbitrary chunk sequences in both directions, TCP and UDP.
/// First byte: protocol and direction pattern; next two: destination port; the rest is cut into
/// chunks at 0xff 0xfe markers.
pub fn inspector(data: &[u8]) {
    let [mode, p0, p1, rest @ ..] = data else {
        return;
    };
    let proto = if mode & 1 == 0 {
        Proto::Tcp
    } else {
        Proto::Udp
    };
    let port = match mode >> 1 & 3 {
        0 => 443,
        1 => 53,
        2 => 5222,
        _ => u16::from_be_bytes([*p0, *p1]),
    };
    let ctx = Arc::new(DeviceScan::new(DeviceContext {
        own_ips: vec!["10.1.2.3".parse().unwrap()],
        ..DeviceContext::default()
    }));
    let mut ins = Inspector::new(proto, port).with_context(ctx);
    let mut i = 0;
    for (n, chunk) in rest.split(|&b| b == 0xfe).enumerate() {
        let dir = if (mode >> (3 + n % 5)) & 1 == 0 {
            Direction::Up
        } else {
            Direction::Down
        };
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
}

/// pcap files through the reader and the observer: any bytes after a valid file header.
/// The first input byte picks the header's byte order, resolution and link type, so the fuzzer
/// spends its time on records, link layers, IP, TCP reassembly and the dissectors.
pub fn pcap(data: &[u8]) {
    let Some((&pick, records)) = data.split_first() else {
        return;
    };
    let big_endian = pick & 0x80 != 0;
    let magic: u32 = if pick & 0x40 != 0 {
        0xa1b2_3c4d
    } else {
        0xa1b2_c3d4
    };
    let link = LINKS[usize::from(pick) % LINKS.len()];
    let mut file = Vec::with_capacity(24 + records.len());
    for (i, word) in [magic, 0x0002_0004, 0, 0, 65_535, link]
        .into_iter()
        .enumerate()
    {
        if i == 1 {
            // version 2.4 as two u16
            let (major, minor) = (2u16, 4u16);
            if big_endian {
                file.extend(major.to_be_bytes());
                file.extend(minor.to_be_bytes());
            } else {
                file.extend(major.to_le_bytes());
                file.extend(minor.to_le_bytes());
            }
            continue;
        }
        file.extend(if big_endian {
            word.to_be_bytes()
        } else {
            word.to_le_bytes()
        });
    }
    file.extend_from_slice(records);

    let (tx, rx) = mpsc::channel();
    if let Ok(reader) = CaptureReader::new(&file[..]) {
        observe_reader(reader, tx, |_| {});
    }
    drop(rx);
}

/// pcapng files through the reader and the observer: any blocks after a valid section header
/// (little- or big-endian by the first input byte).
pub fn pcapng(data: &[u8]) {
    let Some((&pick, blocks)) = data.split_first() else {
        return;
    };
    let big_endian = pick & 1 != 0;
    let w32 = |x: u32| {
        if big_endian {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        }
    };
    let mut file = Vec::with_capacity(28 + blocks.len());
    file.extend(w32(0x0a0d_0d0a));
    file.extend(w32(28));
    file.extend(w32(0x1a2b_3c4d));
    file.extend(if big_endian {
        [0, 1, 0, 0]
    } else {
        [1, 0, 0, 0]
    });
    file.extend([0xff; 8]);
    file.extend(w32(28));
    file.extend_from_slice(blocks);

    let (tx, rx) = mpsc::channel();
    if let Ok(reader) = CaptureReader::new(&file[..]) {
        observe_reader(reader, tx, |_| {});
    }
    drop(rx);
}

/// QUIC: datagrams (header parsing, header protection, AEAD, gQUIC clear CHLO) and decrypted
/// payloads (frames, CRYPTO reassembly, the TLS hello and the CHLO), since random bytes never
/// pass the AEAD check. The input is split into pieces at 0xff 0xff markers.
pub fn quic(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
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
}

/// TLS ClientHello: the record-layer path (TCP) and the bare handshake path (QUIC CRYPTO).
pub fn tls(data: &[u8]) {
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
}

/// IP and TCP headers with options as the engine reads them (smoltcp::wire).
pub fn wire(data: &[u8]) {
    let caps = ChecksumCapabilities::ignored();
    if let Ok(p) = Ipv4Packet::new_checked(data)
        && let Ok(repr) = Ipv4Repr::parse(&p, &caps)
    {
        transport(
            p.payload(),
            IpAddress::Ipv4(repr.src_addr),
            IpAddress::Ipv4(repr.dst_addr),
            &caps,
        );
    }
    if let Ok(p) = Ipv6Packet::new_checked(data)
        && let Ok(repr) = Ipv6Repr::parse(&p)
    {
        transport(
            p.payload(),
            IpAddress::Ipv6(repr.src_addr),
            IpAddress::Ipv6(repr.dst_addr),
            &caps,
        );
    }
    transport(
        data,
        IpAddress::v4(10, 0, 0, 1),
        IpAddress::v4(10, 0, 0, 2),
        &caps,
    );
}

/// The engine's own packet entry: a classification must stay inside the packet.
pub fn engine_packet(data: &[u8]) {
    assert!(
        phonehome::engine::fuzz_packet_entry(data).is_ok(),
        "{:?}",
        phonehome::engine::fuzz_packet_entry(data)
    );
}
