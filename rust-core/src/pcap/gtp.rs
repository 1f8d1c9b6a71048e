//! GTP-U (3GPP TS 29.281): the tunnel a mobile network carries a phone's IP packets in,
//! UDP port 2152. Captures taken inside an operator's core (or by a test network) show only
//! the tunnel; the phone's flows are the T-PDUs inside it.

/// The UDP port of GTP-U.
pub const PORT: u16 = 2152;

/// GTPv1 message type of a T-PDU (a user's IP packet).
const T_PDU: u8 = 0xff;

/// Why a UDP payload on the GTP-U port is not a T-PDU we can open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GtpError {
    Truncated(&'static str),
    /// Version other than 1, or GTP' (protocol type 0).
    NotGtpV1U,
    /// Echo, error indication, end marker...: signalling, no user packet inside.
    NotTpdu(u8),
    BadExtension,
}

/// The IP packet inside a GTPv1-U T-PDU, after the optional sequence number, N-PDU number and
/// extension headers (e.g. the PDU session container 0x85 of 5G).
pub fn tpdu_payload(b: &[u8]) -> Result<&[u8], GtpError> {
    let head = b.get(..8).ok_or(GtpError::Truncated("GTP header"))?;
    let flags = head[0];
    if flags >> 5 != 1 || flags & 0x10 == 0 {
        return Err(GtpError::NotGtpV1U);
    }
    if head[1] != T_PDU {
        return Err(GtpError::NotTpdu(head[1]));
    }
    // The length counts the bytes after the mandatory 8; a capture may add padding beyond it.
    let length = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let message = b
        .get(8..)
        .and_then(|rest| rest.get(..length))
        .ok_or(GtpError::Truncated("GTP payload"))?;
    if flags & 0x07 == 0 {
        return Ok(message);
    }
    // Any of E, S, PN: sequence number (2), N-PDU number (1), next extension type (1).
    let optional = message
        .get(..4)
        .ok_or(GtpError::Truncated("GTP optional fields"))?;
    let mut next = if flags & 0x04 != 0 { optional[3] } else { 0 };
    let mut pos = 4usize;
    while next != 0 {
        // Each extension: length in 4-byte units (covering itself), content, next type.
        let units = *message
            .get(pos)
            .ok_or(GtpError::Truncated("GTP extension"))?;
        if units == 0 {
            return Err(GtpError::BadExtension);
        }
        let end = pos
            .checked_add(usize::from(units) * 4)
            .ok_or(GtpError::BadExtension)?;
        next = *message
            .get(end.checked_sub(1).ok_or(GtpError::BadExtension)?)
            .ok_or(GtpError::Truncated("GTP extension"))?;
        pos = end;
    }
    message.get(pos..).ok_or(GtpError::Truncated("GTP payload"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::testutil::gtpu_with_extension as tpdu_with_extension;

    #[test]
    fn plain_and_extended_tpdus() {
        let inner = [0x45, 0, 0, 20];
        let mut plain = vec![0x30, T_PDU, 0, 4, 0, 0, 0, 1];
        plain.extend(inner);
        plain.extend([0, 0]); // link padding past the GTP length
        assert_eq!(tpdu_payload(&plain), Ok(&inner[..]));
        assert_eq!(tpdu_payload(&tpdu_with_extension(&inner)), Ok(&inner[..]));
    }

    #[test]
    fn signalling_and_garbage_are_errors() {
        let echo = [0x32, 0x01, 0, 4, 0, 0, 0, 0, 0, 1, 0, 0];
        assert_eq!(tpdu_payload(&echo), Err(GtpError::NotTpdu(1)));
        assert_eq!(
            tpdu_payload(&[0x10, T_PDU, 0, 0, 0, 0, 0, 0]),
            Err(GtpError::NotGtpV1U)
        );
        // Zero-length extension, and an extension running past the end.
        let zero = [0x34, T_PDU, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0x85, 0];
        assert_eq!(tpdu_payload(&zero), Err(GtpError::BadExtension));
        let long = [0x34, T_PDU, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0x85, 0xff];
        assert!(tpdu_payload(&long).is_err());
        for len in 0..64u8 {
            let junk: Vec<u8> = (0..len)
                .map(|i| i.wrapping_mul(53).wrapping_add(0x34))
                .collect();
            let _ = tpdu_payload(&junk);
        }
    }
}
