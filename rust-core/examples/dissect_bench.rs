//! Dissector benchmarks (run by scripts/bench-dissect.sh; not a pass/fail test).
//!
//! Times the per-flow cost of naming: a TLS ClientHello of post-quantum size in two segments,
//! a QUIC v1 Initial (RFC 9001 A.2: key derivation, header protection, AES-GCM, CRYPTO frames),
//! a DNS answer with a CNAME chain and the DNS cache, and an HTTP flow whose 16 KiB each way are
//! scanned for device identifiers. Prints the median of 5 runs.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use phonehome::dissect::{DeviceContext, DeviceScan, Inspector, dns};
use phonehome::flow::{Direction, FlowKey, FlowRecord, Proto};
use phonehome::naming::Namer;

fn median_ns(iters: u32, mut f: impl FnMut()) -> f64 {
    let mut runs = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        runs.push(start.elapsed().as_nanos() as f64 / f64::from(iters));
    }
    runs.sort_by(f64::total_cmp);
    runs[2]
}

fn ext(t: u16, d: &[u8]) -> Vec<u8> {
    let mut v = t.to_be_bytes().to_vec();
    v.extend_from_slice(&(d.len() as u16).to_be_bytes());
    v.extend_from_slice(d);
    v
}

/// A Chrome-like ClientHello with an X25519MLKEM768-sized key share (about 1.8 KB).
fn client_hello_records(host: &str) -> Vec<u8> {
    let mut sni = ((host.len() + 3) as u16).to_be_bytes().to_vec();
    sni.push(0);
    sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
    sni.extend_from_slice(host.as_bytes());
    let mut exts = ext(0, &sni);
    exts.extend(ext(16, b"\x00\x0c\x02h2\x08http/1.1"));
    exts.extend(ext(43, b"\x06\x7a\x7a\x03\x04\x03\x03"));
    exts.extend(ext(51, &[0x55; 1250]));
    exts.extend(ext(0xfe0d, &[0; 250]));
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]);
    body.push(32);
    body.extend_from_slice(&[0x22; 32]);
    body.extend_from_slice(&[0, 32]);
    body.extend_from_slice(&[0x13; 32]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut rec = vec![22, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(char::is_ascii_hexdigit).collect();
    (0..s.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn name(n: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for l in n.split('.') {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
    out
}

fn dns_response() -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 5, 0, 0, 0, 0];
    m.extend(name("www.example.com"));
    m.extend_from_slice(&[0, 1, 0, 1]);
    let target = name("edge.cdn.example.net");
    m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 1, 44, 0, target.len() as u8]);
    let target_at = m.len();
    m.extend(target);
    for i in 0..4u8 {
        m.extend_from_slice(&[
            0xc0,
            target_at as u8,
            0,
            1,
            0,
            1,
            0,
            0,
            0,
            60,
            0,
            4,
            198,
            18,
            0,
            i,
        ]);
    }
    m
}

fn main() {
    let hello = client_hello_records("www.example.org");
    let (seg1, seg2) = hello.split_at(1200);
    let tls = median_ns(20_000, || {
        let mut ins = Inspector::new(Proto::Tcp, 443);
        ins.on_stream(Direction::Up, seg1);
        ins.on_stream(Direction::Up, seg2);
        black_box(ins.result().hostname.is_some());
    });
    println!(
        "tls  ClientHello {} B in 2 segments: {:>8.0} ns/flow",
        hello.len(),
        tls
    );

    let initial = unhex(include_str!(
        "../src/dissect/testdata/rfc9001-a2-client-initial.hex"
    ));
    let quic = median_ns(5_000, || {
        let mut ins = Inspector::new(Proto::Udp, 443);
        ins.on_datagram(Direction::Up, &initial);
        black_box(ins.result().hostname.is_some());
    });
    println!(
        "quic v1 Initial {} B (decrypt + hello): {:>8.0} ns/flow",
        initial.len(),
        quic
    );

    let resp = dns_response();
    let parse = median_ns(100_000, || {
        black_box(dns::parse(black_box(&resp)).map(|m| m.answers.len()).ok());
    });
    println!(
        "dns  parse answer ({} B, CNAME + 4 A): {:>8.0} ns/message",
        resp.len(),
        parse
    );

    let mut namer = Namer::new();
    let ex = dns::Exchange {
        time: 0,
        client: SocketAddr::from(([10, 0, 0, 2], 40000)),
        server: SocketAddr::from(([198, 18, 0, 53], 53)),
        transport: Proto::Udp,
    };
    let msg = dns::parse(&resp).ok();
    let mut base =
        dns::record_from(ex, None, msg.as_ref()).unwrap_or_else(|| std::process::exit(1));
    for i in 0..10_000u32 {
        base.answer_ips = vec![IpAddr::V4(Ipv4Addr::from(0xc613_0000 + i))];
        namer.on_dns(&base);
    }
    let key = FlowKey {
        proto: Proto::Tcp,
        src: SocketAddr::from(([10, 0, 0, 2], 50000)),
        dst: SocketAddr::from(([198, 19, 0, 77], 443)),
    };
    let empty = Inspector::new(Proto::Tcp, 443);
    let naming = median_ns(100_000, || {
        let mut flow = FlowRecord::new(1, key, 1_000);
        namer.name_flow(&mut flow, empty.result(), 1_000);
        black_box(flow.hostname.is_some());
    });
    println!(
        "name flow from a 10,000-address DNS cache (+ catalog): {:>8.0} ns/flow",
        naming
    );

    let ctx = Arc::new(DeviceScan::new(DeviceContext {
        own_ips: vec![IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))],
        model: Some("Redmi Note 9S".into()),
        os_version: Some("V12.5.1.0.RJWEUXM".into()),
    }));
    let mut request = b"POST /api/v1/report HTTP/1.1\r\nHost: data.example.com\r\nContent-Type: application/json\r\n\r\n".to_vec();
    while request.len() < 16 * 1024 {
        request.extend_from_slice(
            br#"{"event":"screen_view","ts":1732170000000,"session":"a8f3","v":3},"#,
        );
    }
    let response = vec![b'x'; 16 * 1024];
    let http = median_ns(500, || {
        let mut ins = Inspector::new(Proto::Tcp, 80).with_context(ctx.clone());
        for chunk in request.chunks(1448) {
            ins.on_stream(Direction::Up, chunk);
        }
        for chunk in response.chunks(1448) {
            ins.on_stream(Direction::Down, chunk);
        }
        black_box(ins.result().leaks.len());
    });
    let mb_s = (request.len() + response.len()) as f64 / http * 1e3;
    println!(
        "http flow, 2 x 16 KiB scanned for identifiers: {:>8.0} ns/flow ({mb_s:.0} MB/s)",
        http
    );
}
