//! Packet builders for the tests that write captures: IPv4 with TCP or UDP, a DNS exchange, a
//! GTP-U tunnel. One copy for the library's unit tests (`pcap::testutil`, by `#[path]`) and the
//! integration tests (`#[path = "support/packets.rs"] mod packets;`). Plain std: no crate paths.

#![allow(dead_code)]

use std::net::Ipv4Addr;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// An IPv4 packet (no options, DF, TTL 64) around `payload`, with its header checksum.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).expect("an IPv4 packet fits 64 KiB");
    let mut ip = vec![0x45, 0];
    ip.extend(total.to_be_bytes());
    ip.extend([0, 0, 0x40, 0, 64, proto, 0, 0]);
    ip.extend(src.octets());
    ip.extend(dst.octets());
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    ip.extend(payload);
    ip
}

/// A TCP segment without options (window 65535; the checksum is left 0, no reader checks it).
pub fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend(sport.to_be_bytes());
    t.extend(dport.to_be_bytes());
    t.extend(seq.to_be_bytes());
    t.extend(ack.to_be_bytes());
    t.extend([0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend(data);
    t
}

/// A UDP datagram (checksum 0: none, as IPv4 allows).
pub fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let length = u16::try_from(8 + data.len()).expect("a UDP datagram fits 64 KiB");
    let mut u = Vec::new();
    u.extend(sport.to_be_bytes());
    u.extend(dport.to_be_bytes());
    u.extend(length.to_be_bytes());
    u.extend([0, 0]);
    u.extend(data);
    u
}

/// `name` in DNS wire form.
pub fn qname(name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).expect("a DNS label is at most 63 bytes"));
        q.extend(label.as_bytes());
    }
    q.push(0);
    q
}

/// A DNS query for `host` of `qtype`, and its answer: one A record, `addr`, for an A query;
/// no record for any other type.
pub fn dns_exchange(id: u16, qtype: u16, host: &str, addr: Ipv4Addr) -> (Vec<u8>, Vec<u8>) {
    let mut question = qname(host);
    question.extend(qtype.to_be_bytes());
    question.extend(1u16.to_be_bytes());
    let mut query = id.to_be_bytes().to_vec();
    query.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    query.extend(&question);
    let answers: u16 = if qtype == 1 { 1 } else { 0 };
    let mut answer = id.to_be_bytes().to_vec();
    answer.extend([0x81, 0x80, 0, 1]);
    answer.extend(answers.to_be_bytes());
    answer.extend([0, 0, 0, 0]);
    answer.extend(&question);
    if qtype == 1 {
        answer.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        answer.extend(addr.octets());
    }
    (query, answer)
}

/// A GTP-U T-PDU as a 5G UPF sends it: E flag, a PDU session container (QFI 9), then `inner`.
pub fn gtpu_with_extension(inner: &[u8]) -> Vec<u8> {
    let mut ext = vec![0, 0, 0, 0x85]; // sequence, N-PDU, next = PDU session container
    ext.extend([1, 0x10, 0x09, 0]); // one 4-byte unit: type/QFI, next = none
    let length = u16::try_from(ext.len() + inner.len()).expect("a GTP-U packet fits 64 KiB");
    let mut g = vec![0x34, 0xff];
    g.extend(length.to_be_bytes());
    g.extend(0x0000_1234u32.to_be_bytes());
    g.extend(ext);
    g.extend(inner);
    g
}
