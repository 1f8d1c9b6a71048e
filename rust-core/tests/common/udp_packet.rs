//! An IPv4/UDP packet from 198.18.0.2 to 198.18.1.1 for the capture-file tests, included with
//! `#[path = "common/udp_packet.rs"] mod udp_packet;` (without the namespace rig of `mod.rs`).

use std::net::Ipv4Addr;

/// `payload` from port `sport` to `dport`, with a correct IPv4 header checksum (which keeps
/// tshark's expert info quiet) and no UDP checksum.
pub fn udp_packet(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let src = Ipv4Addr::new(198, 18, 0, 2).octets();
    let dst = Ipv4Addr::new(198, 18, 1, 1).octets();
    let mut udp = Vec::new();
    udp.extend(sport.to_be_bytes());
    udp.extend(dport.to_be_bytes());
    udp.extend(((8 + payload.len()) as u16).to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(payload);
    let mut ip = vec![0x45, 0];
    ip.extend(((20 + udp.len()) as u16).to_be_bytes());
    ip.extend([0, 1, 0x40, 0, 64, 17]);
    let mut hdr = ip.clone();
    hdr.extend([0, 0]);
    hdr.extend(src);
    hdr.extend(dst);
    let mut sum: u32 = hdr
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip.extend((!(sum as u16)).to_be_bytes());
    ip.extend(src);
    ip.extend(dst);
    ip.extend(udp);
    ip
}
