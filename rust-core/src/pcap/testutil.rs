//! Packet builders for the tests of this module.

use std::net::Ipv4Addr;

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;

pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend(total.to_be_bytes());
    p.extend([0, 0, 0x40, 0, 64, proto, 0, 0]);
    p.extend(src.octets());
    p.extend(dst.octets());
    p.extend(payload);
    p
}

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

pub fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend(sport.to_be_bytes());
    u.extend(dport.to_be_bytes());
    u.extend(((8 + data.len()) as u16).to_be_bytes());
    u.extend([0, 0]);
    u.extend(data);
    u
}

/// A GTP-U T-PDU as a 5G UPF sends it: E flag, a PDU session container (QFI 9), then `inner`.
pub fn gtpu_with_extension(inner: &[u8]) -> Vec<u8> {
    let mut ext = vec![0, 0, 0, 0x85]; // sequence, N-PDU, next = PDU session container
    ext.extend([1, 0x10, 0x09, 0]); // one 4-byte unit: type/QFI, next = none
    let mut g = vec![0x34, 0xff];
    g.extend(((ext.len() + inner.len()) as u16).to_be_bytes());
    g.extend(0x0000_1234u32.to_be_bytes());
    g.extend(ext);
    g.extend(inner);
    g
}
