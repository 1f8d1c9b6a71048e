//! Mi Push, Xiaomi's persistent push connection (TCP 5222), recognised from its first bytes so
//! that a flow is attributed to Xiaomi even when no DNS answer named its address.
//!
//! Wire facts (shared/xiaomi/facts.md 2.3, from nDPI's xiaomi.c and its test capture): the first
//! client payload starts with `C2 FE 00 05`, bytes 4..8 hold the length of what follows the
//! 12-byte header, bytes 8..12 are `00 02 00 16`. Client messages carry TLVs in clear: 0x12 the
//! device model (as user agent) and 0x3a a host such as `xiaomi.com`.

/// The port Mi Push uses; the signature is checked on any port.
pub const PORT: u16 = 5222;

const MAGIC: [u8; 4] = [0xc2, 0xfe, 0x00, 0x05];
const MARKER: [u8; 4] = [0x00, 0x02, 0x00, 0x16];

/// What the first bytes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    MiPush,
    NotMiPush,
    NeedMore,
}

/// Check the first bytes of a stream (either direction) for the Mi Push header.
pub fn recognise(data: &[u8]) -> Verdict {
    let n = data.len().min(4);
    if data[..n] != MAGIC[..n] {
        return Verdict::NotMiPush;
    }
    match data.get(8..12) {
        None => {
            let have = data.len().saturating_sub(8);
            if data.len() > 8 && data[8..] != MARKER[..have] {
                Verdict::NotMiPush
            } else {
                Verdict::NeedMore
            }
        }
        Some(marker) if marker == MARKER => Verdict::MiPush,
        Some(_) => Verdict::NotMiPush,
    }
}

/// In a client's first message (protobuf fields after the 16-byte header), the device model sits
/// next to the MIUI version: `{1: 106, 2: "Redmi Note 9S", 3: "V12.5.2.0.RJWMIXM", ...}`, at the
/// top level in the captures seen so far, possibly nested. Returns true when such a model string
/// is present. Parsing stops quietly at the first malformed field.
pub fn carries_model(data: &[u8]) -> bool {
    data.get(16..).is_some_and(|body| nested_model(body, 0))
}

fn nested_model(msg: &[u8], depth: usize) -> bool {
    if depth > 3 {
        return false;
    }
    let mut fields: Vec<(u64, &[u8])> = Vec::new();
    let mut pos = 0;
    while pos < msg.len() {
        let Some((key, used)) = varint(&msg[pos..]) else {
            break;
        };
        pos = pos.saturating_add(used);
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let Some((_, used)) = varint(&msg[pos..]) else {
                    break;
                };
                pos = pos.saturating_add(used);
            }
            1 => pos = pos.saturating_add(8),
            5 => pos = pos.saturating_add(4),
            2 => {
                let Some((len, used)) = varint(&msg[pos..]) else {
                    break;
                };
                pos = pos.saturating_add(used);
                let Some(value) = usize::try_from(len)
                    .ok()
                    .and_then(|l| msg.get(pos..pos.checked_add(l)?))
                else {
                    break;
                };
                fields.push((field, value));
                pos = pos.saturating_add(value.len());
            }
            _ => break,
        }
    }
    let text =
        |v: &[u8]| !v.is_empty() && v.len() <= 64 && v.iter().all(|b| (0x20..0x7f).contains(b));
    let model = fields.iter().any(|(f, v)| *f == 2 && text(v));
    let version = fields
        .iter()
        .any(|(f, v)| *f == 3 && text(v) && (v.starts_with(b"V") || v.starts_with(b"OS")));
    if model && version {
        return true;
    }
    fields
        .iter()
        .any(|(_, v)| nested_model(v, depth.saturating_add(1)))
}

fn varint(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    let mut shift = 0u32;
    for (i, &b) in data.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some((value, i.saturating_add(1)));
        }
        shift = shift.saturating_add(7);
    }
    None
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn header_is_recognised_incrementally() {
        let hdr = [
            0xc2, 0xfe, 0x00, 0x05, 0x00, 0x00, 0x01, 0x2c, 0x00, 0x02, 0x00, 0x16, 0x12,
        ];
        for cut in 0..12 {
            assert_eq!(recognise(&hdr[..cut]), Verdict::NeedMore, "cut {cut}");
        }
        assert_eq!(recognise(&hdr), Verdict::MiPush);
        let mut other = hdr;
        other[9] = 3;
        assert_eq!(recognise(&other), Verdict::NotMiPush);
        assert_eq!(recognise(b"GET / HTTP/1.1"), Verdict::NotMiPush);
        assert_eq!(
            recognise(&[0xc2, 0xfe, 0x00, 0x05, 0, 0, 0, 9, 0, 2, 1]),
            Verdict::NotMiPush
        );
    }

    /// A client hello shaped like those in nDPI's xiaomi.pcap (self-made values).
    fn client_hello(model: &str) -> Vec<u8> {
        let mut inner = vec![0x08, 0x6a, 0x12, model.len() as u8];
        inner.extend_from_slice(model.as_bytes());
        inner.extend_from_slice(&[0x1a, 17]);
        inner.extend_from_slice(b"V12.5.2.0.RJWMIXM");
        let mut body = vec![0x08, 0x00, 0x1a, 10];
        body.extend_from_slice(b"xiaomi.com");
        body.extend_from_slice(&[0x2a, 4]);
        body.extend_from_slice(b"CONN");
        body.extend_from_slice(&[0x48, 0x00, 0x08]);
        body.truncate(body.len() - 1);
        body.push(0x52);
        body.push(inner.len() as u8);
        body.extend(inner);
        let mut msg = MAGIC.to_vec();
        msg.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        msg.extend_from_slice(&MARKER);
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes());
        msg.extend(body);
        msg
    }

    #[test]
    fn model_in_client_message() {
        let msg = client_hello("Redmi Note 9S");
        assert_eq!(recognise(&msg), Verdict::MiPush);
        assert!(carries_model(&msg));
        let mut no_version = msg.clone();
        let at = no_version.windows(3).position(|w| w == b"V12").unwrap();
        no_version[at] = b'X';
        assert!(!carries_model(&no_version));
        assert!(!carries_model(&msg[..20]));
    }
}
