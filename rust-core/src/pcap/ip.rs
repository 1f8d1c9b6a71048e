//! IPv4/IPv6 and TCP/UDP headers as the observer needs them, and fragment reassembly.
//!
//! Captures are often cut by the snap length, so payloads are bounded by both the header's length
//! and the bytes present; nothing here trusts a length field without checking it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::flow::{FlowTable, Millis};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fragment {
    pub id: u32,
    /// Byte offset of this fragment's payload in the original payload.
    pub offset: usize,
    pub more: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub struct IpPacket<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The transport protocol number (after IPv6 extension headers).
    pub proto: u8,
    pub payload: &'a [u8],
    pub fragment: Option<Fragment>,
    /// Length of the whole IP packet as sent (for byte counters), from its header.
    pub wire_len: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct IpError(pub &'static str);

pub fn parse_ip(b: &[u8]) -> Result<IpPacket<'_>, IpError> {
    match b.first().map(|v| v >> 4) {
        Some(4) => parse_v4(b),
        Some(6) => parse_v6(b),
        _ => Err(IpError("not an IP packet")),
    }
}

fn parse_v4(b: &[u8]) -> Result<IpPacket<'_>, IpError> {
    if b.len() < 20 {
        return Err(IpError("IPv4 header cut short"));
    }
    let ihl = usize::from(b[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
    if ihl < 20 || b.len() < ihl {
        return Err(IpError("bad IPv4 header length"));
    }
    // A zero total length is what TSO/GRO captures carry: the packet is what is there.
    let total = if total == 0 { b.len() } else { total };
    if total < ihl {
        return Err(IpError("IPv4 total length below header length"));
    }
    let end = total.min(b.len());
    let flags_frag = u16::from_be_bytes([b[6], b[7]]);
    let more = flags_frag & 0x2000 != 0;
    let offset = usize::from(flags_frag & 0x1fff) * 8;
    let fragment = (more || offset > 0).then_some(Fragment {
        id: u32::from(u16::from_be_bytes([b[4], b[5]])),
        offset,
        more,
    });
    Ok(IpPacket {
        src: IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15])),
        dst: IpAddr::V4(Ipv4Addr::new(b[16], b[17], b[18], b[19])),
        proto: b[9],
        payload: &b[ihl..end],
        fragment,
        wire_len: total,
    })
}

fn parse_v6(b: &[u8]) -> Result<IpPacket<'_>, IpError> {
    if b.len() < 40 {
        return Err(IpError("IPv6 header cut short"));
    }
    let payload_len = usize::from(u16::from_be_bytes([b[4], b[5]]));
    let total = if payload_len == 0 {
        b.len()
    } else {
        40 + payload_len
    };
    let end = total.min(b.len());
    let mut src = [0u8; 16];
    src.copy_from_slice(&b[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&b[24..40]);
    let mut next = b[6];
    let mut at = 40usize;
    let mut fragment = None;
    // Walk the extension headers, bounded so a crafted chain cannot loop long.
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                let h = b
                    .get(at..)
                    .and_then(|r| r.get(..2))
                    .ok_or(IpError("IPv6 extension header cut short"))?;
                next = h[0];
                // (len + 1) * 8 <= 2048: at stays far below usize::MAX.
                at = at.saturating_add(usize::from(h[1]).saturating_add(1).saturating_mul(8));
            }
            51 => {
                let h = b
                    .get(at..)
                    .and_then(|r| r.get(..2))
                    .ok_or(IpError("IPv6 AH cut short"))?;
                next = h[0];
                at = at.saturating_add(usize::from(h[1]).saturating_add(2).saturating_mul(4));
            }
            44 => {
                let h = b
                    .get(at..)
                    .and_then(|r| r.get(..8))
                    .ok_or(IpError("IPv6 fragment header cut short"))?;
                next = h[0];
                let off_flags = u16::from_be_bytes([h[2], h[3]]);
                let more = off_flags & 1 != 0;
                let offset = usize::from(off_flags >> 3).saturating_mul(8);
                if more || offset > 0 {
                    fragment = Some(Fragment {
                        id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                        offset,
                        more,
                    });
                }
                at = at.saturating_add(8);
            }
            _ => break,
        }
    }
    if at > end {
        return Err(IpError("IPv6 extension headers overrun the packet"));
    }
    Ok(IpPacket {
        src: IpAddr::V6(Ipv6Addr::from(src)),
        dst: IpAddr::V6(Ipv6Addr::from(dst)),
        proto: next,
        payload: &b[at..end],
        fragment,
        wire_len: total,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpHeader {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub ack_flag: bool,
    pub fin: bool,
    pub rst: bool,
}

pub fn parse_tcp(b: &[u8]) -> Result<(TcpHeader, &[u8]), IpError> {
    if b.len() < 20 {
        return Err(IpError("TCP header cut short"));
    }
    let data_offset = usize::from(b[12] >> 4) * 4;
    if data_offset < 20 || data_offset > b.len() {
        return Err(IpError("bad TCP data offset"));
    }
    let flags = b[13];
    Ok((
        TcpHeader {
            src_port: u16::from_be_bytes([b[0], b[1]]),
            dst_port: u16::from_be_bytes([b[2], b[3]]),
            seq: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ack: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            fin: flags & 0x01 != 0,
            syn: flags & 0x02 != 0,
            rst: flags & 0x04 != 0,
            ack_flag: flags & 0x10 != 0,
        },
        &b[data_offset..],
    ))
}

/// Ports and payload of a UDP datagram, bounded by its length field.
pub fn parse_udp(b: &[u8]) -> Result<(u16, u16, &[u8]), IpError> {
    if b.len() < 8 {
        return Err(IpError("UDP header cut short"));
    }
    let len = usize::from(u16::from_be_bytes([b[4], b[5]]));
    // Zero length happens for jumbograms and in some offloaded captures: take what is there.
    let end = if len >= 8 { len.min(b.len()) } else { b.len() };
    Ok((
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
        &b[8..end],
    ))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    id: u32,
}

#[derive(Debug)]
struct Pending {
    first_seen: Millis,
    /// (offset, bytes), kept sorted by offset.
    parts: Vec<(usize, Vec<u8>)>,
    /// Known once the last fragment (more = false) arrived.
    total: Option<usize>,
    held: usize,
}

/// Reassembles fragmented IP payloads. Bounded: incomplete datagrams expire after
/// [`Defrag::TIMEOUT_MS`] and the pool holds at most [`Defrag::MAX_BYTES`].
#[derive(Debug, Default)]
pub struct Defrag {
    pending: FlowTable<FragKey, Pending>,
    held: usize,
    /// Fragments given up: refused by the bounds, or expired with their datagram incomplete.
    dropped: u64,
}

impl Defrag {
    pub const TIMEOUT_MS: Millis = 30_000;
    pub const MAX_BYTES: usize = 8 * 1024 * 1024;
    const MAX_DATAGRAM: usize = 65_535;

    /// Adds one fragment; returns the whole transport payload once every piece is there.
    pub fn push(&mut self, packet: &IpPacket<'_>, now: Millis) -> Option<Vec<u8>> {
        let frag = packet.fragment?;
        self.expire(now);
        let key = FragKey {
            src: packet.src,
            dst: packet.dst,
            proto: packet.proto,
            id: frag.id,
        };
        let end = frag.offset.checked_add(packet.payload.len())?;
        if end > Self::MAX_DATAGRAM
            || self.held.saturating_add(packet.payload.len()) > Self::MAX_BYTES
        {
            self.dropped = self.dropped.saturating_add(1);
            return None;
        }
        let entry = self.pending.entry(key).or_insert_with(|| Pending {
            first_seen: now,
            parts: Vec::new(),
            total: None,
            held: 0,
        });
        if !frag.more {
            entry.total = Some(end);
        }
        let pos = entry.parts.partition_point(|(off, _)| *off < frag.offset);
        entry
            .parts
            .insert(pos, (frag.offset, packet.payload.to_vec()));
        // Bounded by MAX_BYTES (checked above).
        entry.held = entry.held.saturating_add(packet.payload.len());
        self.held = self.held.saturating_add(packet.payload.len());

        let total = entry.total?;
        // Complete when the sorted parts cover [0, total) without a gap.
        let mut covered = 0usize;
        for (off, data) in &entry.parts {
            if *off > covered {
                return None;
            }
            covered = covered.max(off.saturating_add(data.len()));
        }
        if covered < total {
            return None;
        }
        let done = self.pending.remove(&key)?;
        self.held = self.held.saturating_sub(done.held);
        let mut out = vec![0u8; total];
        for (off, data) in &done.parts {
            let stop = off.saturating_add(data.len()).min(total);
            if let (Some(to), Some(from)) = (
                out.get_mut(*off..stop),
                data.get(..stop.saturating_sub(*off)),
            ) {
                to.copy_from_slice(from);
            }
        }
        Some(out)
    }

    fn expire(&mut self, now: Millis) {
        if self.pending.is_empty() {
            return;
        }
        let mut freed = 0usize;
        let mut parts = 0u64;
        self.pending.retain(|_, p| {
            // Capture clocks can jump (and saturate at the ends of i64): never overflow here.
            let keep = now.saturating_sub(p.first_seen) < Self::TIMEOUT_MS;
            if !keep {
                freed = freed.saturating_add(p.held);
                parts = parts.saturating_add(p.parts.len() as u64);
            }
            keep
        });
        self.held = self.held.saturating_sub(freed);
        self.dropped = self.dropped.saturating_add(parts);
    }

    /// Fragments given up so far: refused (a datagram over 64 KiB, or the pool full) or
    /// expired before their datagram was whole.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn v4(proto: u8, id: u16, frag_field: u16, payload: &[u8]) -> Vec<u8> {
        let total = (20 + payload.len()) as u16;
        let mut p = vec![0x45, 0];
        p.extend(total.to_be_bytes());
        p.extend(id.to_be_bytes());
        p.extend(frag_field.to_be_bytes());
        p.extend([64, proto, 0, 0, 192, 0, 2, 1, 198, 18, 0, 1]);
        p.extend(payload);
        p
    }

    #[test]
    fn v4_fragments_out_of_order() {
        let payload: Vec<u8> = (0..100u8).collect();
        let a = v4(PROTO_UDP, 7, 0x2000, &payload[..48]);
        let b = v4(PROTO_UDP, 7, 0x2000 | 6, &payload[48..96]);
        let c = v4(PROTO_UDP, 7, 12, &payload[96..]);
        let mut d = Defrag::default();
        assert_eq!(d.push(&parse_ip(&c).unwrap(), 0), None);
        assert_eq!(d.push(&parse_ip(&a).unwrap(), 1), None);
        assert_eq!(d.push(&parse_ip(&b).unwrap(), 2), Some(payload));
        assert_eq!(d.held, 0);
    }

    #[test]
    fn stale_fragments_expire() {
        let a = v4(PROTO_UDP, 9, 0x2000, &[1; 8]);
        let b = v4(PROTO_UDP, 9, 1, &[2; 8]);
        let mut d = Defrag::default();
        assert_eq!(d.push(&parse_ip(&a).unwrap(), 0), None);
        assert_eq!(d.push(&parse_ip(&b).unwrap(), Defrag::TIMEOUT_MS + 1), None);
        assert_eq!(d.pending.len(), 1);
    }

    /// Capture times saturate at the ends of i64 on corrupt timestamps: `now - first_seen`
    /// overflowed (a panic with overflow checks on) when the clock jumped from one end to the other.
    #[test]
    fn a_clock_jump_across_i64_expires_without_overflow() {
        let a = v4(PROTO_UDP, 9, 0x2000, &[1; 8]);
        let b = v4(PROTO_UDP, 10, 0x2000, &[2; 8]);
        let mut d = Defrag::default();
        assert_eq!(d.push(&parse_ip(&a).unwrap(), Millis::MIN), None);
        assert_eq!(d.push(&parse_ip(&b).unwrap(), Millis::MAX), None);
        assert_eq!(d.pending.len(), 1, "the first datagram expired");
    }

    #[test]
    fn v6_with_extension_headers() {
        let mut p = vec![0x60, 0, 0, 0, 0, 24, 0 /* hop-by-hop */, 64];
        p.extend([0u8; 32]);
        p.extend([PROTO_UDP, 0, 0, 0, 0, 0, 0, 0]);
        p.extend([0x30, 0x39, 0, 53, 0, 16, 0, 0]);
        p.extend([7u8; 8]);
        let ip = parse_ip(&p).unwrap();
        assert_eq!(ip.proto, PROTO_UDP);
        let (sp, dp, data) = parse_udp(ip.payload).unwrap();
        assert_eq!((sp, dp, data), (12345, 53, &[7u8; 8][..]));
    }

    #[test]
    fn truncated_headers_are_errors() {
        assert!(parse_ip(&[0x45, 0, 0]).is_err());
        assert!(parse_ip(&[0x4f; 20]).is_err());
        assert!(parse_tcp(&[0; 19]).is_err());
        let mut bad = [0u8; 20];
        bad[12] = 0xf0;
        assert!(parse_tcp(&bad).is_err());
    }
}
