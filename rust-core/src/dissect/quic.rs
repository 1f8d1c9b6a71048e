//! QUIC client Initials: decrypt them (RFC 9001 5, RFC 9369 for v2, the draft salts for drafts
//! 22-34 and Facebook's mvfst, Google's Q050/T050/T051), reassemble the CRYPTO stream across
//! packets and out of order, and read the ClientHello (SNI, ALPN). Google QUIC versions whose
//! handshake is not encrypted (Q024-Q046) carry the server name in the CHLO's `SNI` tag.
//!
//! Everything here works on untrusted datagrams: every length is checked, decryption failures are
//! errors, nothing panics.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use aes_gcm::Aes128Gcm;
use aes_gcm::aead::{Aead, Payload};
use hkdf::Hkdf;
use sha2::Sha256;

use super::tls::{self, ClientHello, MAX_HELLO_LEN};

pub const VERSION_1: u32 = 0x0000_0001;
pub const VERSION_2: u32 = 0x6b33_43cf;
const MVFST_22: u32 = 0xface_b001;
const MVFST_27: u32 = 0xface_b002;
const MVFST_EXP: u32 = 0xface_b00e;
const Q050: u32 = u32::from_be_bytes(*b"Q050");
const T050: u32 = u32::from_be_bytes(*b"T050");
const T051: u32 = u32::from_be_bytes(*b"T051");

const SALT_DRAFT_22: [u8; 20] = hex20(b"7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a");
const SALT_DRAFT_23: [u8; 20] = hex20(b"c3eef712c72ebb5a11a7d2432bb46365bef9f502");
const SALT_DRAFT_29: [u8; 20] = hex20(b"afbfec289993d24c9e9786f19c6111e04390a899");
const SALT_V1: [u8; 20] = hex20(b"38762cf7f55934b34d179ae6a4c80cadccbb7f0a");
const SALT_V2: [u8; 20] = hex20(b"0dede3def700a6db819381be6e269dcbf9bd2ed9");
const SALT_Q050: [u8; 20] = hex20(b"504574efd066fe2f9d945cfcdbd3a7f0d3b56b45");
const SALT_T050: [u8; 20] = hex20(b"7ff579e5acd0729155803034c43a2367c6048831");
const SALT_T051: [u8; 20] = hex20(b"7a4edef4e7ccee5fa4506c19124fc8ccda6e033d");

/// Client datagrams examined before giving up on finding the hello.
const MAX_DATAGRAMS: u32 = 16;
/// A QUIC connection ID is at most 20 bytes (RFC 9000 17.2).
const MAX_CID_LEN: usize = 20;

// Evaluated at compile time on constants only: an overflow would fail the build.
#[allow(clippy::arithmetic_side_effects)]
const fn hex20(s: &[u8; 40]) -> [u8; 20] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => 0,
        }
    }
    let mut out = [0u8; 20];
    let mut i = 0;
    while i < 20 {
        out[i] = nibble(s[2 * i]) << 4 | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuicError {
    #[error("QUIC packet truncated while reading {0}")]
    Truncated(&'static str),
    #[error("not a QUIC long-header packet")]
    NotLongHeader,
    #[error("QUIC version 0x{0:08x} is not one we can decrypt")]
    UnknownVersion(u32),
    #[error("QUIC connection ID of {0} bytes (more than 20)")]
    BadCid(usize),
    #[error("QUIC Initial failed to decrypt (wrong keys or corrupted)")]
    Decrypt,
    #[error("QUIC CRYPTO data beyond the {MAX_HELLO_LEN}-byte limit")]
    CryptoTooLong,
    #[error("QUIC frame malformed: {0}")]
    BadFrame(&'static str),
    #[error("gQUIC CHLO malformed: {0}")]
    BadChlo(&'static str),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// The QUIC family a version belongs to, which decides how its Initial is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IETF QUIC (v1, v2, drafts, mvfst): encrypted Initials with a TLS ClientHello.
    Ietf,
    /// Google QUIC with encrypted Initials holding a TLS hello (T050, T051).
    GoogleTls,
    /// Google QUIC Q050: encrypted Initial holding a CHLO.
    GoogleEncryptedChlo,
    /// Google QUIC Q024..Q046: CHLO in clear.
    GoogleClear,
}

/// How a version's Initials are protected: the salt and the HKDF label prefix.
fn initial_salt(version: u32) -> Option<(&'static [u8; 20], bool)> {
    let v2 = version == VERSION_2;
    let salt = match version {
        VERSION_1 => &SALT_V1,
        VERSION_2 => &SALT_V2,
        MVFST_22 => &SALT_DRAFT_22,
        MVFST_27 | MVFST_EXP => &SALT_DRAFT_23,
        Q050 => &SALT_Q050,
        T050 => &SALT_T050,
        T051 => &SALT_T051,
        v if v >> 8 == 0x00ff_0000 => match v & 0xff {
            0..=22 => &SALT_DRAFT_22,
            23..=28 => &SALT_DRAFT_23,
            29..=32 => &SALT_DRAFT_29,
            _ => &SALT_V1,
        },
        _ => return None,
    };
    Some((salt, v2))
}

/// The number two ASCII digits spell ("46"); the caller has checked that they are digits.
fn two_digits(tens: u8, ones: u8) -> u32 {
    u32::from(tens.wrapping_sub(b'0'))
        .saturating_mul(10)
        .saturating_add(u32::from(ones.wrapping_sub(b'0')))
}

/// The family of a version, or None when unknown.
pub fn family(version: u32) -> Option<Family> {
    let b = version.to_be_bytes();
    match version {
        Q050 => Some(Family::GoogleEncryptedChlo),
        T050 | T051 => Some(Family::GoogleTls),
        _ if b[0] == b'Q' && b[1] == b'0' && b[2].is_ascii_digit() && b[3].is_ascii_digit() => {
            (two_digits(b[2], b[3]) <= 46).then_some(Family::GoogleClear)
        }
        _ if initial_salt(version).is_some() => Some(Family::Ietf),
        _ => None,
    }
}

/// A human name for a version: "V-1", "V-2", "Draft-29", "Q046", "MVFST-27"...
pub fn version_name(version: u32) -> String {
    match version {
        VERSION_1 => "V-1".into(),
        VERSION_2 => "V-2".into(),
        MVFST_22 => "MVFST-22".into(),
        MVFST_27 => "MVFST-27".into(),
        MVFST_EXP => "MVFST-EXP".into(),
        v if v >> 8 == 0x00ff_0000 => format!("Draft-{}", v & 0xff),
        v => {
            let b = v.to_be_bytes();
            if b.iter().all(u8::is_ascii_alphanumeric) {
                String::from_utf8_lossy(&b).into_owned()
            } else {
                format!("0x{v:08x}")
            }
        }
    }
}

/// The version of a datagram that starts like a client QUIC packet (IETF long header, or gQUIC
/// public header with the version flag), if it is one we know.
pub fn client_version(data: &[u8]) -> Option<u32> {
    let first = *data.first()?;
    if first & 0x80 != 0 {
        let v = u32::from_be_bytes(data.get(1..5)?.try_into().ok()?);
        return family(v).map(|_| v);
    }
    // gQUIC public header: version flag 0x01, 8-byte connection ID flag 0x08.
    if first & 0x01 != 0 && first & 0x08 != 0 {
        let v = u32::from_be_bytes(data.get(9..13)?.try_into().ok()?);
        return (family(v) == Some(Family::GoogleClear)).then_some(v);
    }
    None
}

/// Initial packet protection keys for one direction.
struct Keys {
    key: Aes128Gcm,
    iv: [u8; 12],
    hp: Aes128,
}

fn expand_label(secret: &Hkdf<Sha256>, label: &[u8], out: &mut [u8]) -> Result<(), QuicError> {
    let out_len = u16::try_from(out.len()).map_err(|_| QuicError::Decrypt)?;
    let label_len = u8::try_from(label.len().saturating_add(6)).map_err(|_| QuicError::Decrypt)?;
    let mut info = Vec::with_capacity(label.len().saturating_add(10));
    info.extend_from_slice(&out_len.to_be_bytes());
    info.push(label_len);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label);
    info.push(0);
    secret.expand(&info, out).map_err(|_| QuicError::Decrypt)
}

/// Client Initial keys for `version` and the client's first destination connection ID.
fn client_keys(version: u32, dcid: &[u8]) -> Result<Keys, QuicError> {
    let (salt, v2) = initial_salt(version).ok_or(QuicError::UnknownVersion(version))?;
    let (_, initial) = Hkdf::<Sha256>::extract(Some(salt), dcid);
    let mut client_secret = [0u8; 32];
    expand_label(&initial, b"client in", &mut client_secret)?;
    let client = Hkdf::<Sha256>::from_prk(&client_secret).map_err(|_| QuicError::Decrypt)?;
    let (key_label, iv_label, hp_label): (&[u8], &[u8], &[u8]) = if v2 {
        (b"quicv2 key", b"quicv2 iv", b"quicv2 hp")
    } else {
        (b"quic key", b"quic iv", b"quic hp")
    };
    let mut key = [0u8; 16];
    let mut iv = [0u8; 12];
    let mut hp = [0u8; 16];
    expand_label(&client, key_label, &mut key)?;
    expand_label(&client, iv_label, &mut iv)?;
    expand_label(&client, hp_label, &mut hp)?;
    Ok(Keys {
        key: Aes128Gcm::new(GenericArray::from_slice(&key)),
        iv,
        hp: Aes128::new(GenericArray::from_slice(&hp)),
    })
}

/// The parts of a long-header packet needed to decrypt it.
struct LongHeader<'a> {
    version: u32,
    packet_type: u8,
    dcid: &'a [u8],
    /// Offset of the (protected) packet number.
    pn_offset: usize,
    /// Offset just past this packet (coalesced packets may follow).
    end: usize,
}

fn varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let first = *data.get(*pos)?;
    let len = 1usize << (first >> 6);
    let end = pos.checked_add(len)?;
    let bytes = data.get(*pos..end)?;
    let mut v = u64::from(first & 0x3f);
    for b in &bytes[1..] {
        v = v << 8 | u64::from(*b);
    }
    *pos = end;
    Some(v)
}

fn parse_long_header(data: &[u8]) -> Result<LongHeader<'_>, QuicError> {
    let first = *data.first().ok_or(QuicError::Truncated("first byte"))?;
    if first & 0x80 == 0 {
        return Err(QuicError::NotLongHeader);
    }
    let version = u32::from_be_bytes(
        data.get(1..5)
            .ok_or(QuicError::Truncated("version"))?
            .try_into()
            .map_err(|_| QuicError::Truncated("version"))?,
    );
    let mut pos = 5;
    let dcid_len = *data.get(pos).ok_or(QuicError::Truncated("DCID length"))? as usize;
    if dcid_len > MAX_CID_LEN {
        return Err(QuicError::BadCid(dcid_len));
    }
    let dcid = data
        .get(pos.saturating_add(1)..pos.saturating_add(1).saturating_add(dcid_len))
        .ok_or(QuicError::Truncated("DCID"))?;
    pos = pos.saturating_add(1).saturating_add(dcid_len);
    let scid_len = *data.get(pos).ok_or(QuicError::Truncated("SCID length"))? as usize;
    if scid_len > MAX_CID_LEN {
        return Err(QuicError::BadCid(scid_len));
    }
    pos = pos.saturating_add(1).saturating_add(scid_len);
    let packet_type = (first >> 4) & 0x03;
    let is_initial = if version == VERSION_2 {
        packet_type == 1
    } else {
        packet_type == 0
    };
    if is_initial {
        let token_len = varint(data, &mut pos).ok_or(QuicError::Truncated("token length"))?;
        pos = usize::try_from(token_len)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .ok_or(QuicError::Truncated("token"))?;
    }
    let length = varint(data, &mut pos).ok_or(QuicError::Truncated("length"))?;
    let end = usize::try_from(length)
        .ok()
        .and_then(|l| pos.checked_add(l))
        .ok_or(QuicError::Truncated("payload"))?;
    if end > data.len() {
        return Err(QuicError::Truncated("payload"));
    }
    Ok(LongHeader {
        version,
        packet_type: if is_initial { 0 } else { packet_type },
        dcid,
        pn_offset: pos,
        end,
    })
}

/// Remove header protection and decrypt one Initial packet `packet[..hdr.end]`.
fn decrypt_initial(packet: &[u8], hdr: &LongHeader, keys: &Keys) -> Result<Vec<u8>, QuicError> {
    let sample = packet
        .get(hdr.pn_offset.saturating_add(4)..hdr.pn_offset.saturating_add(20))
        .ok_or(QuicError::Truncated("sample"))?;
    let mut mask = GenericArray::clone_from_slice(sample);
    keys.hp.encrypt_block(&mut mask);
    let first = packet[0] ^ (mask[0] & 0x0f);
    let pn_len = usize::from(first & 0x03).saturating_add(1);
    let payload_start = hdr.pn_offset.saturating_add(pn_len);
    if payload_start.saturating_add(16) > hdr.end {
        return Err(QuicError::Truncated("packet number and tag"));
    }
    let mut header = packet[..payload_start].to_vec();
    header[0] = first;
    let mut pn: u64 = 0;
    let pn_bytes = header.get_mut(hdr.pn_offset..).unwrap_or_default();
    for (byte, m) in pn_bytes.iter_mut().zip(mask.iter().skip(1)) {
        *byte ^= m;
        pn = pn << 8 | u64::from(*byte);
    }
    let mut nonce = keys.iv;
    for (n, b) in nonce.iter_mut().skip(4).zip(pn.to_be_bytes()) {
        *n ^= b;
    }
    keys.key
        .decrypt(
            GenericArray::from_slice(&nonce),
            Payload {
                msg: &packet[payload_start..hdr.end],
                aad: &header,
            },
        )
        .map_err(|_| QuicError::Decrypt)
}

/// The client's CRYPTO stream, reassembled from frames arriving in any order.
#[derive(Debug, Default)]
struct CryptoStream {
    data: Vec<u8>,
    /// Filled byte ranges, sorted and merged.
    filled: Vec<(usize, usize)>,
}

impl CryptoStream {
    fn insert(&mut self, offset: u64, bytes: &[u8]) -> Result<(), QuicError> {
        let start = usize::try_from(offset).map_err(|_| QuicError::CryptoTooLong)?;
        let end = start
            .checked_add(bytes.len())
            .ok_or(QuicError::CryptoTooLong)?;
        if end > MAX_HELLO_LEN {
            return Err(QuicError::CryptoTooLong);
        }
        if bytes.is_empty() {
            return Ok(());
        }
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[start..end].copy_from_slice(bytes);
        self.filled.push((start, end));
        self.filled.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.filled.len());
        for &(s, e) in &self.filled {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.filled = merged;
        Ok(())
    }

    /// The bytes available from offset 0 without a gap.
    fn contiguous(&self) -> &[u8] {
        match self.filled.first() {
            Some(&(0, end)) => &self.data[..end],
            _ => &[],
        }
    }
}

/// What a client QUIC flow has shown so far.
#[derive(Debug, Default)]
pub struct ClientInitials {
    version: Option<u32>,
    /// Keys from the first Initial's DCID (they stay valid for later Initials, RFC 9001 5.2).
    keys: Option<(u32, Vec<u8>)>,
    crypto: CryptoStream,
    hello: Option<ClientHello>,
    datagrams: u32,
    failed: bool,
}

impl ClientInitials {
    pub fn new() -> ClientInitials {
        ClientInitials::default()
    }

    pub fn version(&self) -> Option<u32> {
        self.version
    }

    pub fn hello(&self) -> Option<&ClientHello> {
        self.hello.as_ref()
    }

    /// True while another client datagram could still reveal the hello.
    pub fn wants_more(&self) -> bool {
        self.hello.is_none() && !self.failed && self.datagrams < MAX_DATAGRAMS
    }

    /// Feed one client-to-server UDP payload. Returns the hello once it is complete.
    pub fn on_datagram(&mut self, data: &[u8]) -> Result<Option<&ClientHello>, QuicError> {
        if !self.wants_more() {
            return Ok(self.hello.as_ref());
        }
        self.datagrams = self.datagrams.saturating_add(1);
        let result = self.process(data);
        if let Err(QuicError::CryptoTooLong | QuicError::Tls(_) | QuicError::BadChlo(_)) = &result {
            self.failed = true;
        }
        result?;
        Ok(self.hello.as_ref())
    }

    fn process(&mut self, data: &[u8]) -> Result<(), QuicError> {
        let first = *data.first().ok_or(QuicError::Truncated("first byte"))?;
        if first & 0x80 == 0 {
            // Short header (1-RTT) or a gQUIC public header.
            return match client_version(data) {
                Some(v) => {
                    self.version = Some(v);
                    self.clear_chlo(data, v)
                }
                None => Err(QuicError::NotLongHeader),
            };
        }
        // Q046 has the IETF long header's first bytes but packs both CID lengths into byte 5
        // and has no length field: the whole datagram is one packet.
        if let Some(v) = client_version(data)
            && family(v) == Some(Family::GoogleClear)
        {
            self.version = Some(v);
            return self.clear_chlo(data, v);
        }
        let mut rest = data;
        let mut last_err = None;
        while !rest.is_empty() && self.hello.is_none() {
            if rest[0] & 0x80 == 0 {
                break; // A short-header packet ends the datagram.
            }
            let hdr = match parse_long_header(rest) {
                Ok(h) => h,
                Err(e) => {
                    return if self.crypto.filled.is_empty() {
                        Err(e)
                    } else {
                        Ok(())
                    };
                }
            };
            let packet = &rest[..hdr.end];
            rest = &rest[hdr.end..];
            if self.version.is_none() {
                self.version = Some(hdr.version);
            }
            let Some(fam) = family(hdr.version) else {
                return Err(QuicError::UnknownVersion(hdr.version));
            };
            if hdr.packet_type != 0 {
                continue; // 0-RTT or Handshake: not for us.
            }
            match self.decrypt(packet, &hdr) {
                Ok(plain) => self.frames(&plain, fam)?,
                Err(e) => last_err = Some(e),
            }
        }
        match last_err {
            Some(e) if self.hello.is_none() => Err(e),
            _ => Ok(()),
        }
    }

    /// Feed the decrypted payload of an Initial of `version` (frames). The packet path calls
    /// this after decryption; tests and fuzzers call it directly because random bytes never
    /// pass the AEAD check.
    pub fn on_plaintext(
        &mut self,
        plain: &[u8],
        version: u32,
    ) -> Result<Option<&ClientHello>, QuicError> {
        let fam = family(version).ok_or(QuicError::UnknownVersion(version))?;
        if self.hello.is_none() && !self.failed {
            self.version.get_or_insert(version);
            if let Err(e) = self.frames(plain, fam) {
                if matches!(
                    e,
                    QuicError::CryptoTooLong | QuicError::Tls(_) | QuicError::BadChlo(_)
                ) {
                    self.failed = true;
                }
                return Err(e);
            }
        }
        Ok(self.hello.as_ref())
    }

    fn decrypt(&mut self, packet: &[u8], hdr: &LongHeader) -> Result<Vec<u8>, QuicError> {
        if let Some((version, dcid)) = &self.keys
            && *version == hdr.version
        {
            let keys = client_keys(*version, dcid)?;
            if let Ok(plain) = decrypt_initial(packet, hdr, &keys) {
                return Ok(plain);
            }
        }
        // First Initial, or a new DCID after a Retry: the packet's own DCID gives the keys.
        let keys = client_keys(hdr.version, hdr.dcid)?;
        let plain = decrypt_initial(packet, hdr, &keys)?;
        self.keys = Some((hdr.version, hdr.dcid.to_vec()));
        Ok(plain)
    }

    /// Walk the frames of a decrypted Initial, collecting CRYPTO data.
    fn frames(&mut self, plain: &[u8], fam: Family) -> Result<(), QuicError> {
        let mut pos = 0;
        while pos < plain.len() {
            let ty = varint(plain, &mut pos).ok_or(QuicError::BadFrame("type"))?;
            match ty {
                0x00 | 0x01 => {}
                0x02 | 0x03 => {
                    let bad = QuicError::BadFrame("ACK");
                    varint(plain, &mut pos).ok_or(bad.clone())?; // largest acknowledged
                    varint(plain, &mut pos).ok_or(bad.clone())?; // delay
                    let ranges = varint(plain, &mut pos).ok_or(bad.clone())?;
                    varint(plain, &mut pos).ok_or(bad.clone())?; // first range
                    for _ in 0..ranges.min(plain.len() as u64) {
                        varint(plain, &mut pos).ok_or(bad.clone())?;
                        varint(plain, &mut pos).ok_or(bad.clone())?;
                    }
                    if ty == 0x03 {
                        for _ in 0..3 {
                            varint(plain, &mut pos).ok_or(bad.clone())?;
                        }
                    }
                }
                // CRYPTO; Google's Q050/T05x number it 0x08 (their STREAM-like crypto frame).
                0x06 | 0x08 => {
                    if ty == 0x08 && fam == Family::Ietf {
                        return Err(QuicError::BadFrame("STREAM frame in an Initial"));
                    }
                    let bad = QuicError::BadFrame("CRYPTO");
                    let offset = varint(plain, &mut pos).ok_or(bad.clone())?;
                    let len = varint(plain, &mut pos).ok_or(bad.clone())?;
                    let len = usize::try_from(len).map_err(|_| bad.clone())?;
                    let bytes = plain
                        .get(pos..pos.checked_add(len).ok_or(bad.clone())?)
                        .ok_or(bad)?;
                    pos = pos.saturating_add(len); // `bytes` ended there
                    self.crypto.insert(offset, bytes)?;
                }
                0x1c | 0x1d => {
                    let bad = QuicError::BadFrame("CONNECTION_CLOSE");
                    varint(plain, &mut pos).ok_or(bad.clone())?;
                    if ty == 0x1c {
                        varint(plain, &mut pos).ok_or(bad.clone())?;
                    }
                    let len = varint(plain, &mut pos).ok_or(bad.clone())?;
                    pos = usize::try_from(len)
                        .ok()
                        .and_then(|l| pos.checked_add(l))
                        .ok_or(bad)?;
                }
                _ => break, // Not allowed in an Initial; keep what was collected.
            }
        }
        self.try_hello(fam)
    }

    /// A clear gQUIC packet: its crypto-stream bytes join the stream, as a CHLO padded past
    /// one packet (a large token, many tags) arrives in two or more.
    fn clear_chlo(&mut self, packet: &[u8], version: u32) -> Result<(), QuicError> {
        let (offset, bytes) = gquic_clear_payload(packet, version)?;
        self.crypto.insert(offset, bytes)?;
        self.try_hello(Family::GoogleClear)
    }

    fn try_hello(&mut self, fam: Family) -> Result<(), QuicError> {
        let stream = self.crypto.contiguous();
        if matches!(fam, Family::GoogleEncryptedChlo | Family::GoogleClear) {
            if let Some(total) = chlo_len(stream)?
                && stream.len() >= total
            {
                self.hello = Some(parse_chlo(&stream[..total])?);
            }
            return Ok(());
        }
        if let Some(total) = tls::handshake_len(stream)?
            && stream.len() >= total
        {
            self.hello = Some(tls::parse_handshake(&stream[..total])?);
        }
        Ok(())
    }
}

/// The crypto-stream offset and bytes of a gQUIC packet sent in clear (Q024..Q046).
fn gquic_clear_payload(data: &[u8], version: u32) -> Result<(u64, &[u8]), QuicError> {
    let [_, _, tens, ones] = version.to_be_bytes();
    let minor = two_digits(tens, ones);
    let first = *data.first().ok_or(QuicError::Truncated("flags"))?;
    let mut pos;
    if first & 0x80 != 0 {
        // Q046: long header, byte 5 packs the CID lengths (0x50: 8-byte DCID, no SCID).
        let cil = *data.get(5).ok_or(QuicError::Truncated("CID lengths"))?;
        let dcil = if cil >> 4 == 0 {
            0
        } else {
            usize::from(cil >> 4).saturating_add(3)
        };
        let scil = if cil & 0x0f == 0 {
            0
        } else {
            usize::from(cil & 0x0f).saturating_add(3)
        };
        pos = [dcil, scil, usize::from(first & 0x03), 1]
            .iter()
            .fold(6usize, |acc, n| acc.saturating_add(*n));
    } else {
        // Public header: flags, 8-byte CID, version, packet number. (Flag 0x04 is part of the
        // old CID-length field or the server-only diversification nonce: never a nonce here.)
        pos = 1 + 8 + 4;
        pos = pos.saturating_add(match first & 0x30 {
            0x00 => 1,
            0x10 => 2,
            0x20 => 4,
            _ => 6,
        });
    }
    pos = pos.saturating_add(12); // Message authentication hash of the null encryption.
    if minor < 34 {
        pos = pos.saturating_add(1); // Private flags.
    }
    // Skip padding, then expect a STREAM frame on stream 1 (the crypto stream).
    let frames = data.get(pos..).ok_or(QuicError::Truncated("frames"))?;
    let mut i = frames
        .iter()
        .position(|&b| b != 0)
        .ok_or(QuicError::BadChlo("only padding"))?;
    let ty = frames[i];
    if ty & 0x80 == 0 {
        return Err(QuicError::BadChlo("first frame is not STREAM"));
    }
    let sid_len = usize::from(ty & 0x03).saturating_add(1);
    let off_bits = usize::from((ty >> 2) & 0x07);
    let off_len = if off_bits == 0 {
        0
    } else {
        off_bits.saturating_add(1)
    };
    // Offsets within `frames` plus a few bytes: the saturating adds cannot saturate.
    i = i.saturating_add(1);
    let sid = frames
        .get(i..i.saturating_add(sid_len))
        .ok_or(QuicError::Truncated("stream id"))?;
    // Stream 1 in either byte order (little-endian before Q039).
    let nonzero = sid.iter().filter(|&&b| b != 0).count();
    if nonzero != 1 || (sid.first() != Some(&1) && sid.last() != Some(&1)) {
        return Err(QuicError::BadChlo("not the crypto stream"));
    }
    i = i.saturating_add(sid_len);
    let off_bytes = frames
        .get(i..i.saturating_add(off_len))
        .ok_or(QuicError::Truncated("stream offset"))?;
    // Big-endian from Q039 on, little-endian before (as the stream id and length).
    let offset = if minor >= 39 {
        off_bytes
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    } else {
        off_bytes
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    };
    i = i.saturating_add(off_len);
    let len = if ty & 0x20 != 0 {
        let b = frames
            .get(i..i.saturating_add(2))
            .ok_or(QuicError::Truncated("stream data length"))?;
        i = i.saturating_add(2);
        usize::from(if minor >= 39 {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        })
    } else {
        frames.len().saturating_sub(i)
    };
    let bytes = frames
        .get(i..i.saturating_add(len))
        .ok_or(QuicError::Truncated("stream data"))?;
    Ok((offset, bytes))
}

/// Length of the CHLO message at the start of `data`, once its tag table is there.
fn chlo_len(data: &[u8]) -> Result<Option<usize>, QuicError> {
    let Some(head) = data.get(..8) else {
        return Ok(None);
    };
    if &head[..4] != b"CHLO" {
        return Err(QuicError::BadChlo("message tag is not CHLO"));
    }
    let ntags = usize::from(u16::from_le_bytes([head[4], head[5]]));
    let table = tag_table_end(ntags);
    let Some(last) = data
        .get(table.saturating_sub(4)..table)
        .filter(|_| ntags > 0)
    else {
        return if ntags == 0 { Ok(Some(8)) } else { Ok(None) };
    };
    // The last end offset is attacker-chosen up to u32::MAX: on a 32-bit target adding it to
    // the table size wraps, so every step is checked.
    let end = usize::try_from(u32::from_le_bytes([last[0], last[1], last[2], last[3]]))
        .map_err(|_| QuicError::CryptoTooLong)?;
    let total = table
        .checked_add(end)
        .filter(|&t| t <= MAX_HELLO_LEN)
        .ok_or(QuicError::CryptoTooLong)?;
    Ok(Some(total))
}

/// Where a CHLO's tag table of `ntags` entries ends: 8-byte header, 8 bytes per tag. At most
/// 524,288 for a u16 count, so it fits a 32-bit usize.
fn tag_table_end(ntags: usize) -> usize {
    ntags.saturating_mul(8).saturating_add(8)
}

/// A gQUIC CHLO: tag/end-offset table then values. Reads `SNI` (and nothing else we need).
fn parse_chlo(data: &[u8]) -> Result<ClientHello, QuicError> {
    let total = chlo_len(data)?.ok_or(QuicError::Truncated("CHLO header"))?;
    let msg = data
        .get(..total)
        .ok_or(QuicError::Truncated("CHLO values"))?;
    let ntags = usize::from(u16::from_le_bytes([msg[4], msg[5]]));
    let values = tag_table_end(ntags);
    let mut prev_end = 0usize;
    let mut hello = ClientHello {
        version: 0,
        ..ClientHello::default()
    };
    let entries = msg.get(8..values).unwrap_or_default();
    for entry in entries.chunks_exact(8) {
        let out_of_range = QuicError::BadChlo("tag value out of range");
        let end = usize::try_from(u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]))
            .map_err(|_| out_of_range.clone())?;
        if end < prev_end {
            return Err(QuicError::BadChlo("tag offsets decrease"));
        }
        let value = values
            .checked_add(end)
            .and_then(|stop| msg.get(values.checked_add(prev_end)?..stop))
            .ok_or(out_of_range)?;
        if &entry[..4] == b"SNI\0" {
            hello.sni = tls::host_from_bytes(value);
        }
        prev_end = end;
    }
    Ok(hello)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn rfc9001_appendix_a1_keys() {
        // RFC 9001 A.1: client Initial keys for DCID 0x8394c8f03e515708.
        let dcid = unhex("8394c8f03e515708");
        let (_, initial) = Hkdf::<Sha256>::extract(Some(&SALT_V1), &dcid);
        let mut client = [0u8; 32];
        expand_label(&initial, b"client in", &mut client).unwrap();
        assert_eq!(
            client.to_vec(),
            unhex("c00cf151ca5be075ed0ebfb5c80323c4 2d6b7db67881289af4008f1f6c357aea")
        );
        let c = Hkdf::<Sha256>::from_prk(&client).unwrap();
        let mut key = [0u8; 16];
        let mut iv = [0u8; 12];
        let mut hp = [0u8; 16];
        expand_label(&c, b"quic key", &mut key).unwrap();
        expand_label(&c, b"quic iv", &mut iv).unwrap();
        expand_label(&c, b"quic hp", &mut hp).unwrap();
        assert_eq!(key.to_vec(), unhex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(iv.to_vec(), unhex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(hp.to_vec(), unhex("9f50449e04a0e810283a1e9933adedd2"));
    }

    #[test]
    fn salts_by_version() {
        assert_eq!(initial_salt(0xff00_0017).unwrap().0, &SALT_DRAFT_23);
        assert_eq!(initial_salt(0xff00_001c).unwrap().0, &SALT_DRAFT_23);
        assert_eq!(initial_salt(0xff00_001d).unwrap().0, &SALT_DRAFT_29);
        assert_eq!(initial_salt(0xff00_0020).unwrap().0, &SALT_DRAFT_29);
        assert_eq!(initial_salt(0xff00_0021).unwrap().0, &SALT_V1);
        assert_eq!(initial_salt(0xff00_0022).unwrap().0, &SALT_V1);
        assert!(initial_salt(VERSION_2).unwrap().1);
        assert_eq!(
            family(u32::from_be_bytes(*b"Q043")),
            Some(Family::GoogleClear)
        );
        assert_eq!(family(u32::from_be_bytes(*b"Q099")), None);
        assert_eq!(family(0x1a2a_3a4a), None);
        assert_eq!(version_name(0xff00_001d), "Draft-29");
        assert_eq!(version_name(u32::from_be_bytes(*b"Q050")), "Q050");
    }

    #[test]
    fn crypto_stream_reassembles_out_of_order() {
        let mut s = CryptoStream::default();
        s.insert(10, b"klmno").unwrap();
        assert!(s.contiguous().is_empty());
        s.insert(0, b"abcde").unwrap();
        assert_eq!(s.contiguous(), b"abcde");
        s.insert(3, b"defghij").unwrap();
        assert_eq!(s.contiguous(), b"abcdefghijklmno");
        assert_eq!(
            s.insert(MAX_HELLO_LEN as u64, b"x"),
            Err(QuicError::CryptoTooLong)
        );
        assert_eq!(s.insert(u64::MAX, b"x"), Err(QuicError::CryptoTooLong));
    }

    /// A CHLO with the given (tag, value) pairs.
    pub(super) fn chlo(tags: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let mut m = b"CHLO".to_vec();
        m.extend_from_slice(&(tags.len() as u16).to_le_bytes());
        m.extend_from_slice(&[0, 0]);
        let mut end = 0u32;
        for (tag, value) in tags {
            end += value.len() as u32;
            m.extend_from_slice(*tag);
            m.extend_from_slice(&end.to_le_bytes());
        }
        for (_, value) in tags {
            m.extend_from_slice(value);
        }
        m
    }

    #[test]
    fn chlo_sni_tag() {
        let m = chlo(&[
            (b"PAD\0", b"---"),
            (b"SNI\0", b"www.Google.com"),
            (b"VER\0", b"Q043"),
        ]);
        assert_eq!(chlo_len(&m).unwrap(), Some(m.len()));
        assert_eq!(chlo_len(&m[..20]).unwrap(), None);
        assert_eq!(
            parse_chlo(&m).unwrap().sni.as_deref(),
            Some("www.google.com")
        );
        for cut in 0..m.len() {
            assert!(parse_chlo(&m[..cut]).is_err());
        }
        let mut bad = m.clone();
        bad[8 + 8 + 4..8 + 8 + 8].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            parse_chlo(&bad),
            Err(QuicError::BadChlo("tag offsets decrease"))
        );
    }

    /// A CHLO whose last end offset is u32::MAX: `8 + 8 * ntags + end` wraps on 32-bit targets
    /// (run with `--target i686-unknown-linux-gnu`), where unchecked it panicked in debug builds
    /// and read a wrapped length in release.
    #[test]
    fn chlo_end_offset_near_u32_max_is_an_error_not_an_overflow() {
        let mut m = chlo(&[(b"SNI\0", b"a.example")]);
        m[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(chlo_len(&m), Err(QuicError::CryptoTooLong));
        assert!(parse_chlo(&m).is_err());
        let mut initials = ClientInitials::new();
        assert!(initials.on_datagram(&gquic_q043(0, &m)).is_err());
        assert!(!initials.wants_more());
    }

    /// A Q043 client packet (public header with version, 8-byte CID, 1-byte packet number,
    /// null-encryption hash) carrying `data` at `offset` of the crypto stream.
    fn gquic_q043(offset: u16, data: &[u8]) -> Vec<u8> {
        let mut p = vec![0x09];
        p.extend([0x11; 8]);
        p.extend(b"Q043");
        p.push(1);
        p.extend([0xaa; 12]);
        // STREAM: FIN off, data length present, 2-byte offset, 1-byte stream id.
        p.push(0x80 | 0x20 | (1 << 2));
        p.push(1);
        p.extend(offset.to_be_bytes());
        p.extend((data.len() as u16).to_be_bytes());
        p.extend(data);
        p
    }

    #[test]
    fn clear_chlo_split_over_two_packets_is_reassembled() {
        let m = chlo(&[
            (b"PAD\0", &[b'-'; 900]),
            (b"SNI\0", b"split.example"),
            (b"VER\0", b"Q043"),
        ]);
        let cut = 700;
        let mut initials = ClientInitials::new();
        assert_eq!(initials.on_datagram(&gquic_q043(0, &m[..cut])), Ok(None));
        assert!(initials.wants_more());
        let hello = initials
            .on_datagram(&gquic_q043(cut as u16, &m[cut..]))
            .unwrap()
            .unwrap();
        assert_eq!(hello.sni.as_deref(), Some("split.example"));
        assert_eq!(initials.version(), Some(u32::from_be_bytes(*b"Q043")));
    }

    #[test]
    fn q046_long_header_clear_chlo() {
        let m = chlo(&[(b"SNI\0", b"www.youtube.com"), (b"VER\0", b"Q046")]);
        // Long header, Initial, 4-byte packet number; byte 5 = 0x50: 8-byte DCID, no SCID.
        let mut p = vec![0xc3];
        p.extend(b"Q046");
        p.push(0x50);
        p.extend([0x22; 8]);
        p.extend(1u32.to_be_bytes());
        p.extend([0xbb; 12]);
        p.extend([0x80 | 0x20, 1]); // STREAM, no offset, 1-byte stream id
        p.extend((m.len() as u16).to_be_bytes());
        p.extend(&m);
        p.extend([0; 40]); // padding to the datagram's end
        let mut initials = ClientInitials::new();
        let hello = initials.on_datagram(&p).unwrap().unwrap();
        assert_eq!(hello.sni.as_deref(), Some("www.youtube.com"));
        assert_eq!(version_name(initials.version().unwrap()), "Q046");
        for cut in 0..p.len() {
            let _ = ClientInitials::new().on_datagram(&p[..cut]);
        }
    }

    fn rfc_packet(hex: &str) -> Vec<u8> {
        unhex(hex)
    }

    #[test]
    fn rfc9001_a2_client_initial_gives_sni_and_alpn() {
        let packet = rfc_packet(include_str!("testdata/rfc9001-a2-client-initial.hex"));
        assert_eq!(packet.len(), 1200);
        assert_eq!(client_version(&packet), Some(VERSION_1));
        let mut c = ClientInitials::new();
        let hello = c.on_datagram(&packet).unwrap().unwrap();
        assert_eq!(hello.sni.as_deref(), Some("example.com"));
        assert_eq!(hello.alpn, vec!["alpn"]);
        assert_eq!(hello.version, 0x0304);
        assert!(!c.wants_more());
    }

    #[test]
    fn rfc9369_a2_client_initial_v2() {
        let packet = rfc_packet(include_str!("testdata/rfc9369-a2-client-initial.hex"));
        let mut c = ClientInitials::new();
        let hello = c.on_datagram(&packet).unwrap().unwrap();
        assert_eq!(hello.sni.as_deref(), Some("example.com"));
        assert_eq!(c.version(), Some(VERSION_2));
    }

    #[test]
    fn corrupted_initial_fails_to_decrypt() {
        let mut packet = rfc_packet(include_str!("testdata/rfc9001-a2-client-initial.hex"));
        packet[600] ^= 1;
        let mut c = ClientInitials::new();
        assert_eq!(c.on_datagram(&packet).unwrap_err(), QuicError::Decrypt);
        // Every truncation is an error, never a panic.
        let packet = rfc_packet(include_str!("testdata/rfc9001-a2-client-initial.hex"));
        for cut in 0..packet.len() {
            let mut c = ClientInitials::new();
            assert!(c.on_datagram(&packet[..cut]).is_err(), "cut {cut}");
        }
    }

    fn crypto_frame(offset: u64, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x06];
        f.extend_from_slice(&(0x8000_0000u32 | offset as u32).to_be_bytes());
        f.extend_from_slice(&(0x4000u16 | data.len() as u16).to_be_bytes());
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn hello_split_over_packets_and_out_of_order() {
        use crate::dissect::tls::build;
        let hs = build::client_hello(&[
            build::sni("pq.example"),
            (0x11ec, vec![9; 1200]),
            build::alpn(&["h3"]),
        ]);
        let (a, rest) = hs.split_at(400);
        let (_middle, c) = rest.split_at(500);
        // Packet 1: PING, the last piece, PADDING, an ACK, the first piece.
        let mut p1 = vec![0x01];
        p1.extend(crypto_frame(900, c));
        p1.extend_from_slice(&[0, 0, 0]);
        p1.extend_from_slice(&[0x02, 0x05, 0x00, 0x01, 0x00, 0x01, 0x01]);
        p1.extend(crypto_frame(0, a));
        let mut ci = ClientInitials::new();
        assert_eq!(ci.on_plaintext(&p1, VERSION_1).unwrap(), None);
        // Packet 2: the middle piece, overlapping its neighbours.
        let mut p2 = crypto_frame(390, &hs[390..910]);
        p2.extend_from_slice(&[0; 20]);
        let hello = ci.on_plaintext(&p2, VERSION_1).unwrap().unwrap();
        assert_eq!(hello.sni.as_deref(), Some("pq.example"));
        assert_eq!(hello.alpn, vec!["h3"]);
        // Unknown frames end a packet's parse without losing what came before.
        let mut ci = ClientInitials::new();
        let mut p = crypto_frame(0, &hs);
        p.push(0x30);
        assert!(ci.on_plaintext(&p, VERSION_1).unwrap().is_some());
    }
}
