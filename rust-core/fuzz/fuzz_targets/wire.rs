//! IP and TCP headers with options as the engine reads them (smoltcp::wire).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpPacket, TcpRepr, UdpPacket, UdpRepr};

fuzz_target!(|data: &[u8]| {
    let caps = ChecksumCapabilities::ignored();
    if let Ok(p) = Ipv4Packet::new_checked(data)
        && let Ok(repr) = Ipv4Repr::parse(&p, &caps)
    {
        transport(p.payload(), IpAddress::Ipv4(repr.src_addr), IpAddress::Ipv4(repr.dst_addr), &caps);
    }
    if let Ok(p) = Ipv6Packet::new_checked(data)
        && let Ok(repr) = Ipv6Repr::parse(&p)
    {
        transport(p.payload(), IpAddress::Ipv6(repr.src_addr), IpAddress::Ipv6(repr.dst_addr), &caps);
    }
    transport(data, IpAddress::v4(10, 0, 0, 1), IpAddress::v4(10, 0, 0, 2), &caps);
});

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
