//! Segmentation offload on a Linux TUN opened with `IFF_VNET_HDR` and `TUNSETOFFLOAD`
//! (`TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`), as wireguard-go and tailscale use it: every read
//! and write carries a 10-byte `virtio_net_hdr` before the IP packet.
//!
//! A TUN costs per packet, not per byte. With offload the app's kernel hands the engine TCP
//! super-packets of up to 64 KiB (GSO) even at MTU 1500, and takes 64 KiB segments back, which
//! its stack receives like a GRO-merged packet. So at MTU 1500 smoltcp moves about as few
//! packets per byte as at MTU 65000:
//! - uplink: nothing to do but skip the header. The app's TCP checksums arrive partial
//!   (`NEEDS_CSUM`); smoltcp does not verify received checksums here (see the device's
//!   capabilities), and the engine relays the payload, not the segment;
//! - downlink: the app's SYN gets a large MSS ([`raise_syn_mss`]) so smoltcp sends segments as
//!   large as its 64 KiB MTU, and [`output_header`] tells the kernel the real segment size
//!   (`gso_size`) and that the TCP checksum is left to it (smoltcp computes none for TCP).
//!
//! Android's VpnService fd has no such header: this is used only when `Tuning::tun_offload`
//! says the fd was opened this way (the Linux capture TUN).

use std::os::fd::RawFd;

/// `sizeof(struct virtio_net_hdr)`, the TUN default (`TUNSETVNETHDRSZ` not called).
pub const HEADER_LEN: usize = 10;
/// The largest IP packet the shards handle with offload: a GSO super-packet.
pub const SEGMENT_MTU: usize = 65535;
/// The MSS written into the app's SYN: smoltcp sends the smaller of this and what its MTU
/// allows, so segments fill [`SEGMENT_MTU`].
pub const SYN_MSS: u16 = (SEGMENT_MTU - 40) as u16;

const F_NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
/// Offset of the checksum field in a TCP header.
const TCP_CHECKSUM_AT: usize = 16;
const PROTO_TCP: u8 = 6;

/// Where a packet's TCP header is, for the packets the engine handles (no IPv4 fragments, no
/// IPv6 extension headers). None for anything else.
struct TcpAt {
    ip_header: usize,
    tcp_header: usize,
    v6: bool,
}

fn tcp_at(packet: &[u8]) -> Option<TcpAt> {
    let (ip_header, v6) = match packet.first()? >> 4 {
        4 => {
            let ihl = usize::from(packet.first()? & 0x0f) * 4;
            let fragment = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]) & 0x3fff;
            if ihl < 20 || *packet.get(9)? != PROTO_TCP || fragment != 0 {
                return None;
            }
            (ihl, false)
        }
        6 if *packet.get(6)? == PROTO_TCP => (40, true),
        _ => return None,
    };
    let data_offset = *packet.get(ip_header.checked_add(12)?)?;
    let tcp_header = usize::from(data_offset >> 4) * 4;
    if tcp_header < 20 || ip_header.checked_add(tcp_header)? > packet.len() {
        return None;
    }
    Some(TcpAt {
        ip_header,
        tcp_header,
        v6,
    })
}

/// The `virtio_net_hdr` to write before `packet` (a packet for the app, at most
/// [`SEGMENT_MTU`]) on a TUN of MTU `tun_mtu`. A TCP segment gets its checksum field set to the
/// pseudo-header sum (`NEEDS_CSUM`, the kernel's partial checksum) and, if its payload is larger
/// than one segment at `tun_mtu`, the segment size for the kernel to split it by. Anything else
/// goes as it is (all-zero header).
pub fn output_header(packet: &mut [u8], tun_mtu: usize) -> [u8; HEADER_LEN] {
    let Some(at) = tcp_at(packet) else {
        return [0; HEADER_LEN];
    };
    let headers = at.ip_header + at.tcp_header;
    let Ok(tcp_len) = u32::try_from(packet.len() - at.ip_header) else {
        return [0; HEADER_LEN];
    };
    let addresses = if at.v6 { 8..40 } else { 12..20 };
    let mut sum = u32::from(PROTO_TCP) + (tcp_len >> 16) + (tcp_len & 0xffff);
    for pair in packet[addresses].chunks_exact(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    let partial = fold(sum);
    let checksum_at = at.ip_header + TCP_CHECKSUM_AT;
    packet[checksum_at..checksum_at + 2].copy_from_slice(&partial.to_be_bytes());

    let payload = packet.len() - headers;
    let segment = tun_mtu.saturating_sub(headers);
    let (gso_type, gso_size) = if segment > 0 && payload > segment {
        (if at.v6 { GSO_TCPV6 } else { GSO_TCPV4 }, segment)
    } else {
        (GSO_NONE, 0)
    };
    // Lengths are below 64 KiB (packet <= SEGMENT_MTU); the header is in host byte order
    // (legacy virtio, which TUN speaks unless TUNSETVNETLE is set).
    let field = |n: usize| u16::try_from(n).unwrap_or(u16::MAX).to_ne_bytes();
    let mut header = [0; HEADER_LEN];
    header[0] = F_NEEDS_CSUM;
    header[1] = gso_type;
    header[2..4].copy_from_slice(&field(headers));
    header[4..6].copy_from_slice(&field(gso_size));
    header[6..8].copy_from_slice(&field(at.ip_header));
    header[8..10].copy_from_slice(&field(TCP_CHECKSUM_AT));
    header
}

/// Raise the MSS option of an app's SYN (no ACK) to `mss` if it is lower. Returns whether the
/// packet was changed. The TCP checksum is left stale: smoltcp does not verify it.
pub fn raise_syn_mss(packet: &mut [u8], mss: u16) -> bool {
    let Some(at) = tcp_at(packet) else {
        return false;
    };
    let flags = packet[at.ip_header + 13];
    if flags & 0x12 != 0x02 {
        return false;
    }
    let end = at.ip_header + at.tcp_header;
    let mut i = at.ip_header + 20;
    while i < end {
        match packet[i] {
            0 => return false,
            1 => i += 1,
            kind => {
                let Some(&len) = packet.get(i + 1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || i + len > end {
                    return false;
                }
                if kind == 2 && len == 4 {
                    let current = u16::from_be_bytes([packet[i + 2], packet[i + 3]]);
                    if current >= mss {
                        return false;
                    }
                    packet[i + 2..i + 4].copy_from_slice(&mss.to_be_bytes());
                    return true;
                }
                i += len;
            }
        }
    }
    false
}

/// The largest packet the shards send and take: the tun's MTU, or a 64 KiB offload segment.
pub fn shard_mtu(tun_mtu: usize, tun_offload: bool) -> usize {
    if tun_offload { SEGMENT_MTU } else { tun_mtu }
}

/// One `readv` of a packet and the header before it (discarded: see the module doc). Returns
/// what `readv` does: the bytes read with the header, 0 at end of file, or -1 (errno set).
pub fn read(fd: RawFd, packet: &mut Vec<u8>) -> isize {
    let mut header = [0u8; HEADER_LEN];
    let parts = [
        libc::iovec {
            iov_base: header.as_mut_ptr().cast(),
            iov_len: HEADER_LEN,
        },
        libc::iovec {
            iov_base: packet.as_mut_ptr().cast(),
            iov_len: packet.capacity(),
        },
    ];
    // SAFETY: both iovecs point to writable memory of the given lengths (the packet's spare
    // capacity; it is empty), which outlives the call.
    let n = unsafe { libc::readv(fd, parts.as_ptr(), 2) };
    if n <= 0 {
        return n;
    }
    // A read shorter than the header carries no packet (left empty: dropped as malformed).
    let len = (n as usize).saturating_sub(HEADER_LEN);
    // SAFETY: readv initialized `len` bytes of the packet's capacity.
    unsafe { packet.set_len(len) };
    n
}

/// One `writev` of an offload header and the packet after it; returns what `writev` does.
pub fn write(fd: RawFd, header: &[u8; HEADER_LEN], packet: &[u8]) -> isize {
    let parts = [
        libc::iovec {
            iov_base: header.as_ptr() as *mut libc::c_void,
            iov_len: HEADER_LEN,
        },
        libc::iovec {
            iov_base: packet.as_ptr() as *mut libc::c_void,
            iov_len: packet.len(),
        },
    ];
    // SAFETY: both iovecs point to live buffers of the given lengths, which writev only reads.
    unsafe { libc::writev(fd, parts.as_ptr(), 2) }
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, Ipv6Address, Ipv6Packet,
        Ipv6Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
    };

    fn tcp_repr(payload: &[u8], control: TcpControl, mss: Option<u16>) -> TcpRepr<'_> {
        TcpRepr {
            src_port: 443,
            dst_port: 40000,
            control,
            seq_number: TcpSeqNumber(1000),
            ack_number: (control != TcpControl::Syn).then_some(TcpSeqNumber(7)),
            window_len: 1000,
            window_scale: None,
            max_seg_size: mss,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        }
    }

    /// A TCP/IPv4 packet with a correct full checksum, as smoltcp builds it.
    fn v4_packet(payload: &[u8], control: TcpControl, mss: Option<u16>) -> Vec<u8> {
        let tcp = tcp_repr(payload, control, mss);
        let (src, dst) = (Ipv4Address::new(1, 2, 3, 4), Ipv4Address::new(10, 0, 0, 2));
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0; ip.buffer_len() + tcp.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
        ip.emit(&mut packet, &caps);
        tcp.emit(
            &mut TcpPacket::new_unchecked(packet.payload_mut()),
            &IpAddress::Ipv4(src),
            &IpAddress::Ipv4(dst),
            &caps,
        );
        buf
    }

    fn v6_packet(payload: &[u8]) -> Vec<u8> {
        let tcp = tcp_repr(payload, TcpControl::None, None);
        let src = Ipv6Address::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        let dst = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
        let ip = Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0; ip.buffer_len() + tcp.buffer_len()];
        let mut packet = Ipv6Packet::new_unchecked(&mut buf[..]);
        ip.emit(&mut packet);
        tcp.emit(
            &mut TcpPacket::new_unchecked(packet.payload_mut()),
            &IpAddress::Ipv6(src),
            &IpAddress::Ipv6(dst),
            &ChecksumCapabilities::default(),
        );
        buf
    }

    /// What the kernel does with a NEEDS_CSUM packet: the one's-complement sum from
    /// `csum_start` on (partial value in the field), complemented, stored at the offset.
    fn complete_like_the_kernel(packet: &mut [u8], header: &[u8; HEADER_LEN]) {
        assert_eq!(header[0], F_NEEDS_CSUM);
        let start = usize::from(u16::from_ne_bytes([header[6], header[7]]));
        let offset = usize::from(u16::from_ne_bytes([header[8], header[9]]));
        let mut sum = 0u32;
        for chunk in packet[start..].chunks(2) {
            let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
        let checksum = !fold(sum);
        packet[start + offset..start + offset + 2].copy_from_slice(&checksum.to_be_bytes());
    }

    #[test]
    fn partial_checksum_completes_to_the_full_one() {
        for (packet, odd) in [
            (v4_packet(&[0xab; 3001], TcpControl::Psh, None), "v4"),
            (v4_packet(&[], TcpControl::Rst, None), "v4 rst"),
            (v6_packet(&[0x5a; 9000]), "v6"),
        ] {
            let full = packet.clone();
            let mut out = packet;
            let header = output_header(&mut out, 1500);
            assert_ne!(out, full, "{odd}: checksum field must hold the partial sum");
            complete_like_the_kernel(&mut out, &header);
            assert_eq!(out, full, "{odd}");
        }
    }

    #[test]
    fn large_segments_carry_the_segment_size_of_the_tun_mtu() {
        let mut big = v4_packet(&[1; 60000], TcpControl::None, None);
        let header = output_header(&mut big, 1500);
        assert_eq!(header[1], GSO_TCPV4);
        assert_eq!(u16::from_ne_bytes([header[2], header[3]]), 40); // hdr_len
        assert_eq!(u16::from_ne_bytes([header[4], header[5]]), 1460); // gso_size
        assert_eq!(u16::from_ne_bytes([header[6], header[7]]), 20); // csum_start

        let mut big6 = v6_packet(&[1; 20000]);
        let header = output_header(&mut big6, 1500);
        assert_eq!(header[1], GSO_TCPV6);
        assert_eq!(u16::from_ne_bytes([header[4], header[5]]), 1440);

        // One segment's worth or less: no GSO.
        let mut small = v4_packet(&[1; 1460], TcpControl::None, None);
        assert_eq!(output_header(&mut small, 1500)[1], GSO_NONE);
    }

    #[test]
    fn non_tcp_and_malformed_packets_get_an_empty_header() {
        let mut udp = v4_packet(&[1; 100], TcpControl::None, None);
        udp[9] = 17;
        let before = udp.clone();
        assert_eq!(output_header(&mut udp, 1500), [0; HEADER_LEN]);
        assert_eq!(udp, before);
        let mut truncated = v4_packet(&[], TcpControl::None, None)[..30].to_vec();
        assert_eq!(output_header(&mut truncated, 1500), [0; HEADER_LEN]);
        for junk in [&[][..], &[0x45][..], &[0x60, 0, 0, 0, 0, 0, 6][..]] {
            assert_eq!(output_header(&mut junk.to_vec(), 1500), [0; HEADER_LEN]);
            assert!(!raise_syn_mss(&mut junk.to_vec(), SYN_MSS));
        }
    }

    #[test]
    fn syn_mss_is_raised_and_other_segments_are_left_alone() {
        let mut syn = v4_packet(&[], TcpControl::Syn, Some(1460));
        assert!(raise_syn_mss(&mut syn, SYN_MSS));
        let ip = Ipv4Packet::new_checked(&syn[..]).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        let repr = TcpRepr::parse(
            &tcp,
            &IpAddress::Ipv4(ip.src_addr()),
            &IpAddress::Ipv4(ip.dst_addr()),
            &ChecksumCapabilities::ignored(),
        )
        .unwrap();
        assert_eq!(repr.max_seg_size, Some(SYN_MSS));
        // Already large enough, or no MSS option, or not a SYN: unchanged.
        assert!(!raise_syn_mss(&mut syn, SYN_MSS));
        assert!(!raise_syn_mss(
            &mut v4_packet(&[], TcpControl::Syn, None),
            SYN_MSS
        ));
        let mut data = v4_packet(&[1; 10], TcpControl::None, None);
        let before = data.clone();
        assert!(!raise_syn_mss(&mut data, SYN_MSS));
        assert_eq!(data, before);
    }
}
