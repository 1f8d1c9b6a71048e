//! Link layers: from a captured frame to its IP packet, plus PCAPdroid's per-packet trailer.

use super::reader::linktype;

/// PCAPdroid appends this after the IP packet of each frame (in a fake Ethernet frame):
/// magic, uid (both big-endian), app name (20 bytes, NUL-padded), FCS.
const PCAPDROID_TRAILER_MAGIC: u32 = 0x0107_2021;
const PCAPDROID_TRAILER_LEN: usize = 32;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_VLAN_OLD_QINQ: u16 = 0x9100;
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

/// The IP packet inside a frame and what the frame said about its owner.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Starts at the IP header; may carry trailing bytes beyond the IP total length.
    pub ip: &'a [u8],
    pub trailer: Option<Trailer>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trailer {
    pub uid: Option<u32>,
    pub app: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum LinkError {
    /// A link type the observer cannot decode.
    Unsupported(u32),
    /// A frame of a supported type that is not IP (ARP, LLDP...), or cut short.
    NotIp,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let pair = b.get(at..)?.get(..2)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}

/// Unwraps 802.1Q / 802.1ad tags; returns the inner ethertype and the payload offset.
fn skip_vlan(frame: &[u8], mut ethertype: u16, mut at: usize) -> Option<(u16, usize)> {
    // At most four stacked tags; a fifth is treated as garbage.
    for _ in 0..=4 {
        if !matches!(
            ethertype,
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_VLAN_OLD_QINQ
        ) {
            return Some((ethertype, at));
        }
        ethertype = be16(frame, at.checked_add(2)?)?;
        at = at.checked_add(4)?;
    }
    None
}

fn ip_by_ethertype(ethertype: u16, payload: &[u8]) -> Result<&[u8], LinkError> {
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 if !payload.is_empty() => Ok(payload),
        // PPPoE session: version/type, code, session id, length, then a PPP frame.
        ETHERTYPE_PPPOE_SESSION => ppp(payload.get(6..).ok_or(LinkError::NotIp)?),
        _ => Err(LinkError::NotIp),
    }
}

/// A PPP frame: optional address/control bytes (FF 03), then a 1- or 2-byte protocol.
fn ppp(frame: &[u8]) -> Result<&[u8], LinkError> {
    let frame = frame.strip_prefix(&[0xff, 0x03]).unwrap_or(frame);
    let first = *frame.first().ok_or(LinkError::NotIp)?;
    // An odd first byte is a compressed (1-byte) protocol field.
    let (protocol, at) = if first & 1 == 1 {
        (u16::from(first), 1)
    } else {
        (be16(frame, 0).ok_or(LinkError::NotIp)?, 2)
    };
    match protocol {
        PPP_IPV4 | PPP_IPV6 => frame
            .get(at..)
            .filter(|p| !p.is_empty())
            .ok_or(LinkError::NotIp),
        _ => Err(LinkError::NotIp),
    }
}

fn pcapdroid_trailer(frame: &[u8]) -> Option<Trailer> {
    if frame.len() < 14 + 20 + PCAPDROID_TRAILER_LEN {
        return None;
    }
    let t = &frame[frame.len().checked_sub(PCAPDROID_TRAILER_LEN)?..];
    if u32::from_be_bytes([t[0], t[1], t[2], t[3]]) != PCAPDROID_TRAILER_MAGIC {
        return None;
    }
    let uid = i32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let name = &t[8..28];
    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
    let app = std::str::from_utf8(name)
        .ok()
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    Some(Trailer {
        uid: u32::try_from(uid).ok(),
        app,
    })
}

/// Finds the IP packet in `frame` of link type `link`.
pub fn decode(link: u32, frame: &[u8]) -> Result<Frame<'_>, LinkError> {
    let ip = match link {
        linktype::ETHERNET => {
            let ethertype = be16(frame, 12).ok_or(LinkError::NotIp)?;
            let (ethertype, at) = skip_vlan(frame, ethertype, 14).ok_or(LinkError::NotIp)?;
            let ip = ip_by_ethertype(ethertype, frame.get(at..).ok_or(LinkError::NotIp)?)?;
            // PCAPdroid's trailer rides in a fake Ethernet frame with both MACs zero.
            let trailer = if frame[..12].iter().all(|&b| b == 0) {
                pcapdroid_trailer(frame)
            } else {
                None
            };
            return Ok(Frame { ip, trailer });
        }
        linktype::RAW | linktype::IPV4 | linktype::IPV6 => frame,
        linktype::PPP | linktype::PPP_HDLC => ppp(frame)?,
        linktype::NULL | linktype::LOOP => {
            // A 4-byte address family in the writer's byte order (NULL) or big-endian (LOOP).
            let head: [u8; 4] = frame
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(LinkError::NotIp)?;
            let family = if link == linktype::LOOP {
                u32::from_be_bytes(head)
            } else {
                let le = u32::from_le_bytes(head);
                if le < 0x1_0000 {
                    le
                } else {
                    u32::from_be_bytes(head)
                }
            };
            // AF_INET is 2 everywhere; AF_INET6 is 10 (Linux), 24 (NetBSD/OpenBSD), 28
            // (FreeBSD), 30 (macOS).
            match family {
                2 | 10 | 24 | 28 | 30 => &frame[4..],
                _ => return Err(LinkError::NotIp),
            }
        }
        linktype::LINUX_SLL => {
            let protocol = be16(frame, 14).ok_or(LinkError::NotIp)?;
            let (protocol, at) = skip_vlan(frame, protocol, 16).ok_or(LinkError::NotIp)?;
            ip_by_ethertype(protocol, frame.get(at..).ok_or(LinkError::NotIp)?)?
        }
        linktype::LINUX_SLL2 => {
            let protocol = be16(frame, 0).ok_or(LinkError::NotIp)?;
            let (protocol, at) = skip_vlan(frame, protocol, 20).ok_or(LinkError::NotIp)?;
            ip_by_ethertype(protocol, frame.get(at..).ok_or(LinkError::NotIp)?)?
        }
        other => return Err(LinkError::Unsupported(other)),
    };
    match ip.first().map(|b| b >> 4) {
        Some(4) | Some(6) => Ok(Frame { ip, trailer: None }),
        _ => Err(LinkError::NotIp),
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    const IP: [u8; 20] = [
        0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];

    #[test]
    fn ethernet_with_vlan() {
        let mut f = vec![1u8; 12];
        f.extend([0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);
        f.extend(IP);
        assert_eq!(decode(linktype::ETHERNET, &f).unwrap().ip, &IP);
    }

    #[test]
    fn sll_sll2_null_raw() {
        let mut sll = vec![0u8; 14];
        sll.extend([0x08, 0x00]);
        sll.extend(IP);
        assert_eq!(decode(linktype::LINUX_SLL, &sll).unwrap().ip, &IP);
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend([0u8; 18]);
        sll2.extend(IP);
        assert_eq!(decode(linktype::LINUX_SLL2, &sll2).unwrap().ip, &IP);
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend(IP);
        assert_eq!(decode(linktype::NULL, &null).unwrap().ip, &IP);
        let mut null_be = 2u32.to_be_bytes().to_vec();
        null_be.extend(IP);
        assert_eq!(decode(linktype::NULL, &null_be).unwrap().ip, &IP);
        assert_eq!(decode(linktype::RAW, &IP).unwrap().ip, &IP);
        let mut ppp = vec![0xff, 0x03, 0x00, 0x21];
        ppp.extend(IP);
        assert_eq!(decode(linktype::PPP, &ppp).unwrap().ip, &IP);
        assert_eq!(decode(linktype::PPP, &ppp[2..]).unwrap().ip, &IP);
        let mut pppoe = vec![1u8; 12];
        pppoe.extend([0x88, 0x64, 0x11, 0, 0, 1, 0, 22, 0x00, 0x21]);
        pppoe.extend(IP);
        assert_eq!(decode(linktype::ETHERNET, &pppoe).unwrap().ip, &IP);
        assert_eq!(decode(147, &IP), Err(LinkError::Unsupported(147)));
        assert_eq!(
            decode(linktype::ETHERNET, &[0u8; 13]),
            Err(LinkError::NotIp)
        );
    }

    #[test]
    fn pcapdroid_trailer_in_fake_ethernet() {
        let mut f = vec![0u8; 12];
        f.extend([0x08, 0x00]);
        f.extend(IP);
        f.extend(PCAPDROID_TRAILER_MAGIC.to_be_bytes());
        f.extend(10_123i32.to_be_bytes());
        let mut name = [0u8; 20];
        name[..6].copy_from_slice(b"Chrome");
        f.extend(name);
        f.extend([0u8; 4]);
        let frame = decode(linktype::ETHERNET, &f).unwrap();
        assert_eq!(
            frame.trailer,
            Some(Trailer {
                uid: Some(10_123),
                app: Some("Chrome".into())
            })
        );
    }
}
