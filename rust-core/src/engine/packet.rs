//! Classifying packets read from the tun and building the few packets the engine writes itself
//! (UDP replies, ICMP echo replies and errors, TCP resets). TCP segments of live flows are built
//! by smoltcp; everything here is plain `smoltcp::wire`.
//!
//! Every parser returns an error for malformed bytes: the packet path never panics on input.

use std::net::{IpAddr, SocketAddr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv4Message, Icmpv4Packet, Icmpv6Message, Icmpv6Packet, IpAddress, IpProtocol, IpRepr,
    Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket, UdpRepr,
};

/// Why a packet from the tun was not handled. Each is counted and the packet dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    /// Too short, wrong version, bad lengths.
    Malformed,
    /// An IP fragment: the tun's MTU bounds what the app's kernel sends as one packet, so a UDP
    /// (or ICMP) datagram larger than the MTU arrives in pieces. The core reassembles them
    /// (`pcap::ip::Defrag`, as replays do) and handles the whole packet.
    Fragment,
    /// A protocol or message type the engine does not relay (e.g. ICMP other than echo,
    /// IPv6 extension headers, SCTP).
    Unsupported,
}

/// The transport part of a packet, as much as the engine needs to route it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp {
        src_port: u16,
        dst_port: u16,
        seq: u32,
        syn: bool,
        ack: bool,
        rst: bool,
        payload_len: usize,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    /// An ICMP (v4) or ICMPv6 echo request.
    Echo {
        ident: u16,
        seq: u16,
    },
}

/// A packet from the app, classified. Offsets index into the original buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub transport: Transport,
    /// Where the transport payload (UDP data, ICMP echo data) starts and ends in the buffer.
    pub payload: (usize, usize),
    /// Total IP length (may be shorter than the buffer read).
    pub ip_len: usize,
}

impl Parsed {
    pub fn src_addr(&self) -> SocketAddr {
        SocketAddr::new(self.src, self.src_port())
    }

    pub fn dst_addr(&self) -> SocketAddr {
        SocketAddr::new(self.dst, self.dst_port())
    }

    fn src_port(&self) -> u16 {
        match self.transport {
            Transport::Tcp { src_port, .. } | Transport::Udp { src_port, .. } => src_port,
            Transport::Echo { ident, .. } => ident,
        }
    }

    fn dst_port(&self) -> u16 {
        match self.transport {
            Transport::Tcp { dst_port, .. } | Transport::Udp { dst_port, .. } => dst_port,
            Transport::Echo { .. } => 0,
        }
    }
}

/// Classify one IP packet read from the tun.
pub fn parse(buf: &[u8]) -> Result<Parsed, Drop> {
    match buf.first().map(|b| b >> 4) {
        Some(4) => parse_v4(buf),
        Some(6) => parse_v6(buf),
        _ => Err(Drop::Malformed),
    }
}

fn parse_v4(buf: &[u8]) -> Result<Parsed, Drop> {
    let ip = Ipv4Packet::new_checked(buf).map_err(|_| Drop::Malformed)?;
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Err(Drop::Fragment);
    }
    let header_len = usize::from(ip.header_len());
    let ip_len = usize::from(ip.total_len());
    let src = IpAddr::V4(ip.src_addr());
    let dst = IpAddr::V4(ip.dst_addr());
    let l4 = &buf[header_len..ip_len];
    let (transport, payload) = match ip.next_header() {
        IpProtocol::Tcp => parse_tcp(l4)?,
        IpProtocol::Udp => parse_udp(l4)?,
        IpProtocol::Icmp => {
            let icmp = Icmpv4Packet::new_checked(l4).map_err(|_| Drop::Malformed)?;
            if icmp.msg_type() != Icmpv4Message::EchoRequest || icmp.msg_code() != 0 {
                return Err(Drop::Unsupported);
            }
            (
                Transport::Echo {
                    ident: icmp.echo_ident(),
                    seq: icmp.echo_seq_no(),
                },
                (8, l4.len()),
            )
        }
        _ => return Err(Drop::Unsupported),
    };
    Ok(Parsed {
        src,
        dst,
        transport,
        payload: (header_len + payload.0, header_len + payload.1),
        ip_len,
    })
}

fn parse_v6(buf: &[u8]) -> Result<Parsed, Drop> {
    let ip = Ipv6Packet::new_checked(buf).map_err(|_| Drop::Malformed)?;
    let header_len = ip.header_len();
    let ip_len = header_len + usize::from(ip.payload_len());
    let src = IpAddr::V6(ip.src_addr());
    let dst = IpAddr::V6(ip.dst_addr());
    let l4 = &buf[header_len..ip_len];
    let (transport, payload) = match ip.next_header() {
        IpProtocol::Tcp => parse_tcp(l4)?,
        IpProtocol::Udp => parse_udp(l4)?,
        IpProtocol::Icmpv6 => {
            let icmp = Icmpv6Packet::new_checked(l4).map_err(|_| Drop::Malformed)?;
            if icmp.msg_type() != Icmpv6Message::EchoRequest || icmp.msg_code() != 0 {
                return Err(Drop::Unsupported);
            }
            (
                Transport::Echo {
                    ident: icmp.echo_ident(),
                    seq: icmp.echo_seq_no(),
                },
                (8, l4.len()),
            )
        }
        IpProtocol::Ipv6Frag => return Err(Drop::Fragment),
        _ => return Err(Drop::Unsupported),
    };
    Ok(Parsed {
        src,
        dst,
        transport,
        payload: (header_len + payload.0, header_len + payload.1),
        ip_len,
    })
}

fn parse_tcp(l4: &[u8]) -> Result<(Transport, (usize, usize)), Drop> {
    let tcp = TcpPacket::new_checked(l4).map_err(|_| Drop::Malformed)?;
    let header_len = usize::from(tcp.header_len());
    if tcp.src_port() == 0 || tcp.dst_port() == 0 {
        return Err(Drop::Malformed);
    }
    Ok((
        Transport::Tcp {
            src_port: tcp.src_port(),
            dst_port: tcp.dst_port(),
            seq: tcp.seq_number().0 as u32,
            syn: tcp.syn(),
            ack: tcp.ack(),
            rst: tcp.rst(),
            payload_len: l4.len() - header_len,
        },
        (header_len, l4.len()),
    ))
}

fn parse_udp(l4: &[u8]) -> Result<(Transport, (usize, usize)), Drop> {
    let udp = UdpPacket::new_checked(l4).map_err(|_| Drop::Malformed)?;
    if udp.src_port() == 0 || udp.dst_port() == 0 {
        return Err(Drop::Malformed);
    }
    let end = usize::from(udp.len());
    Ok((
        Transport::Udp {
            src_port: udp.src_port(),
            dst_port: udp.dst_port(),
        },
        (8, end),
    ))
}

fn ip_address(addr: IpAddr) -> IpAddress {
    match addr {
        IpAddr::V4(a) => IpAddress::Ipv4(a),
        IpAddr::V6(a) => IpAddress::Ipv6(a),
    }
}

const HOP_LIMIT: u8 = 64;

/// Write an IP header for `proto` with `payload_len` bytes of transport data into `out`
/// (cleared first) and return the header length. `None` when the addresses are of different
/// families.
fn emit_ip(
    out: &mut Vec<u8>,
    src: IpAddr,
    dst: IpAddr,
    proto: IpProtocol,
    payload_len: usize,
) -> Option<usize> {
    if src.is_ipv4() != dst.is_ipv4() {
        return None;
    }
    let repr = IpRepr::new(
        ip_address(src),
        ip_address(dst),
        proto,
        payload_len,
        HOP_LIMIT,
    );
    out.clear();
    out.resize(repr.buffer_len(), 0);
    repr.emit(&mut out[..], &ChecksumCapabilities::default());
    Some(repr.header_len())
}

/// An unfragmented IP packet carrying `payload` (a transport header and its data, as
/// reassembled from fragments). False when it cannot be one packet (over 64 KiB, mixed families)
/// or `proto` is not a transport the engine relays: the packet carries no extension header, so
/// it can never be a fragment again.
pub fn build_ip(out: &mut Vec<u8>, src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> bool {
    let proto = IpProtocol::from(proto);
    if !matches!(
        proto,
        IpProtocol::Icmp | IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Icmpv6
    ) {
        return false;
    }
    // IPv4 counts its header in the 16-bit total length; IPv6 only the payload.
    let header = if src.is_ipv4() { 20 } else { 0 };
    if payload.len() > usize::from(u16::MAX) - header {
        return false;
    }
    let Some(header_len) = emit_ip(out, src, dst, proto, payload.len()) else {
        return false;
    };
    match out.get_mut(header_len..) {
        Some(body) if body.len() == payload.len() => {
            body.copy_from_slice(payload);
            true
        }
        _ => false,
    }
}

/// A UDP datagram from `src` (the flow's destination) to `dst` (the app) carrying `payload`.
pub fn build_udp(out: &mut Vec<u8>, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> bool {
    let udp_len = 8 + payload.len();
    if udp_len > usize::from(u16::MAX) - 40 {
        return false;
    }
    let Some(header_len) = emit_ip(out, src.ip(), dst.ip(), IpProtocol::Udp, udp_len) else {
        return false;
    };
    let repr = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    let mut packet = UdpPacket::new_unchecked(&mut out[header_len..]);
    repr.emit(
        &mut packet,
        &ip_address(src.ip()),
        &ip_address(dst.ip()),
        payload.len(),
        |p| p.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
    true
}

/// An echo reply from `src` to `dst`. `icmp` is the ICMP message the kernel's ping socket
/// returned (type, code, checksum, ident, seq, data); its ident is replaced by `ident`.
pub fn build_echo_reply(
    out: &mut Vec<u8>,
    src: IpAddr,
    dst: IpAddr,
    ident: u16,
    icmp: &[u8],
) -> bool {
    if icmp.len() < 8 || icmp.len() > usize::from(u16::MAX) - 40 {
        return false;
    }
    let proto = if src.is_ipv4() {
        IpProtocol::Icmp
    } else {
        IpProtocol::Icmpv6
    };
    let Some(header_len) = emit_ip(out, src, dst, proto, icmp.len()) else {
        return false;
    };
    let body = &mut out[header_len..];
    body.copy_from_slice(icmp);
    if src.is_ipv4() {
        let mut packet = Icmpv4Packet::new_unchecked(body);
        packet.set_msg_type(Icmpv4Message::EchoReply);
        packet.set_msg_code(0);
        packet.set_echo_ident(ident);
        packet.fill_checksum();
    } else {
        let mut packet = Icmpv6Packet::new_unchecked(body);
        packet.set_msg_type(Icmpv6Message::EchoReply);
        packet.set_msg_code(0);
        packet.set_echo_ident(ident);
        if let (IpAddr::V6(src), IpAddr::V6(dst)) = (src, dst) {
            packet.fill_checksum(&src, &dst);
        }
    }
    true
}

/// An ICMP "destination unreachable" (host unreachable, or port unreachable for UDP) from
/// `router` about `original` (the app's packet), so the app fails fast.
pub fn build_unreachable(out: &mut Vec<u8>, router: IpAddr, original: &[u8], port: bool) -> bool {
    let Ok(parsed) = parse(original) else {
        return false;
    };
    // RFC 792 / 4443: as much of the original as fits in a minimum MTU.
    let quoted = &original[..original.len().min(parsed.ip_len).min(520)];
    let icmp_len = 8 + quoted.len();
    let v4 = parsed.src.is_ipv4();
    let proto = if v4 {
        IpProtocol::Icmp
    } else {
        IpProtocol::Icmpv6
    };
    let Some(header_len) = emit_ip(out, router, parsed.src, proto, icmp_len) else {
        return false;
    };
    let body = &mut out[header_len..];
    body[8..].copy_from_slice(quoted);
    if v4 {
        let mut packet = Icmpv4Packet::new_unchecked(body);
        packet.set_msg_type(Icmpv4Message::DstUnreachable);
        packet.set_msg_code(if port { 3 } else { 1 });
        packet.fill_checksum();
    } else {
        let mut packet = Icmpv6Packet::new_unchecked(body);
        packet.set_msg_type(Icmpv6Message::DstUnreachable);
        packet.set_msg_code(if port { 4 } else { 3 });
        if let (IpAddr::V6(router), IpAddr::V6(client)) = (router, parsed.src) {
            packet.fill_checksum(&router, &client);
        }
    }
    true
}

/// A TCP RST answering the app's segment `original` (RFC 793 reset generation), for flows
/// refused before a smoltcp socket exists.
pub fn build_rst(out: &mut Vec<u8>, original: &[u8]) -> bool {
    let Ok(parsed) = parse(original) else {
        return false;
    };
    let Transport::Tcp { .. } = parsed.transport else {
        return false;
    };
    let Ok(tcp) = TcpPacket::new_checked(&original[ip_header_len(original)..parsed.ip_len]) else {
        return false;
    };
    let mut seg_len = tcp.payload().len() as u32;
    if tcp.syn() {
        seg_len += 1;
    }
    if tcp.fin() {
        seg_len += 1;
    }
    let (seq, ack) = if tcp.ack() {
        (tcp.ack_number(), None)
    } else {
        (
            smoltcp::wire::TcpSeqNumber(0),
            Some(tcp.seq_number() + seg_len as usize),
        )
    };
    let Some(ip_header) = emit_ip(out, parsed.dst, parsed.src, IpProtocol::Tcp, 20) else {
        return false;
    };
    let mut packet = TcpPacket::new_unchecked(&mut out[ip_header..]);
    packet.set_src_port(tcp.dst_port());
    packet.set_dst_port(tcp.src_port());
    packet.set_seq_number(seq);
    packet.set_ack_number(ack.unwrap_or(smoltcp::wire::TcpSeqNumber(0)));
    packet.set_header_len(20);
    packet.clear_flags();
    packet.set_rst(true);
    packet.set_ack(ack.is_some());
    packet.set_window_len(0);
    packet.set_urgent_at(0);
    packet.fill_checksum(&ip_address(parsed.dst), &ip_address(parsed.src));
    true
}

fn ip_header_len(packet: &[u8]) -> usize {
    match packet.first().map(|b| b >> 4) {
        Some(4) => usize::from(packet[0] & 0x0f) * 4,
        _ => 40,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(a: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, a))
    }

    #[test]
    fn udp_round_trip_v4_and_v6() {
        let mut out = Vec::new();
        let src = SocketAddr::new(v4(1), 53);
        let dst = SocketAddr::new(v4(2), 40000);
        assert!(build_udp(&mut out, src, dst, b"hello"));
        let parsed = parse(&out).unwrap();
        assert_eq!(parsed.src_addr(), src);
        assert_eq!(parsed.dst_addr(), dst);
        assert_eq!(&out[parsed.payload.0..parsed.payload.1], b"hello");
        let ip6 = |n| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, n));
        assert!(build_udp(
            &mut out,
            SocketAddr::new(ip6(1), 9),
            SocketAddr::new(ip6(2), 10),
            b"x"
        ));
        let parsed = parse(&out).unwrap();
        assert_eq!(
            parsed.transport,
            Transport::Udp {
                src_port: 9,
                dst_port: 10
            }
        );
        assert!(!build_udp(&mut out, src, SocketAddr::new(ip6(2), 10), b"x"));
    }

    #[test]
    fn fragments_and_garbage_are_refused() {
        let mut out = Vec::new();
        assert!(build_udp(
            &mut out,
            SocketAddr::new(v4(1), 1),
            SocketAddr::new(v4(2), 2),
            b"abc"
        ));
        let mut frag = out.clone();
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut frag[..]);
            ip.set_more_frags(true);
            ip.fill_checksum();
        }
        assert_eq!(parse(&frag), Err(Drop::Fragment));
        for len in 0..out.len() {
            let _ = parse(&out[..len]);
        }
        assert_eq!(parse(&[0x45, 0, 0]), Err(Drop::Malformed));
        assert_eq!(parse(&[]), Err(Drop::Malformed));
        assert_eq!(parse(&[0x15; 40]), Err(Drop::Malformed));
        let mut sctp = out.clone();
        sctp[9] = 132;
        assert_eq!(parse(&sctp), Err(Drop::Unsupported));
    }

    #[test]
    fn echo_reply_and_unreachable_parse_back() {
        let mut out = Vec::new();
        let icmp = [8u8, 0, 0, 0, 0x12, 0x34, 0, 7, b'p', b'i', b'n', b'g'];
        assert!(build_echo_reply(&mut out, v4(1), v4(2), 0x4242, &icmp));
        let ip = Ipv4Packet::new_checked(&out[..]).unwrap();
        let reply = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(reply.msg_type(), Icmpv4Message::EchoReply);
        assert_eq!(reply.echo_ident(), 0x4242);
        assert_eq!(reply.echo_seq_no(), 7);
        assert!(reply.verify_checksum());

        let mut original = Vec::new();
        assert!(build_udp(
            &mut original,
            SocketAddr::new(v4(2), 5),
            SocketAddr::new(v4(3), 6),
            b"q"
        ));
        assert!(build_unreachable(&mut out, v4(3), &original, true));
        let ip = Ipv4Packet::new_checked(&out[..]).unwrap();
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(198, 18, 0, 2));
        let err = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(err.msg_type(), Icmpv4Message::DstUnreachable);
        assert!(err.verify_checksum());
    }

    #[test]
    fn random_bytes_never_panic_any_parser_or_builder() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut out = Vec::new();
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 120) as usize;
            let mut buf: Vec<u8> = (0..len)
                .map(|i| (state >> (i % 56)) as u8 ^ i as u8)
                .collect();
            if let Some(first) = buf.first_mut() {
                // Mostly plausible versions, to get past the first check.
                *first = (*first & 0x0f) | if state & 1 == 0 { 0x40 } else { 0x60 };
            }
            let _ = parse(&buf);
            let _ = build_rst(&mut out, &buf);
            let _ = build_unreachable(&mut out, v4(1), &buf, state & 2 == 0);
        }
    }
}
