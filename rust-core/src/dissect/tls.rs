//! TLS ClientHello (RFC 8446 4.1.2): server name, ALPN, the highest version offered, and whether
//! Encrypted Client Hello is present.
//!
//! Two entry points: [`client_hello_from_records`] for a TCP stream (TLS records, the hello may
//! span several records and TCP segments, as it does with post-quantum key shares), and
//! [`parse_handshake`] for a bare handshake message (the CRYPTO stream of QUIC).

/// Largest ClientHello we are willing to buffer (real ones are < 2 KiB; 16 KiB with huge key
/// shares or padding; the TLS record limit makes more than 64 KiB implausible).
pub const MAX_HELLO_LEN: usize = 64 * 1024;

const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const CONTENT_HANDSHAKE: u8 = 22;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
/// encrypted_client_hello (draft-ietf-tls-esni, the codepoint in use).
const EXT_ECH: u16 = 0xfe0d;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("not a TLS handshake record (first bytes {0:02x?})")]
    NotTls(Vec<u8>),
    #[error("TLS handshake message type {0} is not a ClientHello")]
    NotClientHello(u8),
    #[error("TLS record of content type {0} before the ClientHello was complete")]
    UnexpectedRecord(u8),
    #[error("TLS ClientHello of {0} bytes exceeds the {MAX_HELLO_LEN}-byte limit")]
    TooLong(usize),
    #[error("TLS ClientHello truncated while reading {what} at offset {offset}")]
    Truncated { what: &'static str, offset: usize },
    #[error("TLS ClientHello malformed: {0}")]
    Malformed(&'static str),
}

/// What a ClientHello tells about the connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The host_name of the server_name extension, lower case, without a trailing dot. With ECH
    /// this is the outer (public) name.
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// The highest version offered: from supported_versions (GREASE ignored), else the legacy
    /// version field.
    pub version: u16,
    /// The encrypted_client_hello extension is present: a real ECH or GREASE, indistinguishable
    /// in the hello alone by design.
    pub ech: bool,
    /// The config_id of an outer ECH extension. Real only if it names an ECHConfig the client
    /// was given (a DNS HTTPS record's `ech`); GREASE ECH carries a random one.
    pub ech_config_id: Option<u8>,
}

/// "TLSv1.3", "TLSv1.2", "TLSv1.1", "TLSv1", "SSLv3", or None for unknown versions.
pub fn version_name(version: u16) -> Option<&'static str> {
    match version {
        0x0304 => Some("TLSv1.3"),
        0x0303 => Some("TLSv1.2"),
        0x0302 => Some("TLSv1.1"),
        0x0301 => Some("TLSv1"),
        0x0300 => Some("SSLv3"),
        _ => None,
    }
}

/// True when `data` starts like a TLS record (any content type of TLS 1.x/SSLv3), meaning the
/// stream is TLS even if we joined after the hello. Needs 3 bytes.
pub fn looks_like_record(data: &[u8]) -> bool {
    matches!(data, [20..=23, 3, 0..=4, ..])
}

/// Find the ClientHello in the first bytes of a TCP stream (client to server). Ok(None) means
/// "not complete yet, call again with more bytes".
pub fn client_hello_from_records(stream: &[u8]) -> Result<Option<ClientHello>, TlsError> {
    let mut handshake: Vec<u8> = Vec::new();
    for fragment in HandshakeRecords::new(stream) {
        let fragment = fragment?;
        if fragment.whole && fragment.body.is_empty() {
            return Err(TlsError::Malformed("empty handshake record"));
        }
        handshake.extend_from_slice(fragment.body);
        if let Some(total) = handshake_len(&handshake)?
            && let Some(hello) = handshake.get(..total)
        {
            return parse_handshake(hello).map(Some);
        }
        if !fragment.whole {
            return Ok(None);
        }
    }
    Ok(None)
}

/// The name on the server's certificate, from the first bytes of a server-to-client TCP
/// stream (TLS 1.2 and older send the Certificate message in clear; TLS 1.3 encrypts it, which
/// shows as a ChangeCipherSpec or application record right after the ServerHello). Ok(None)
/// means "call again with more bytes"; Err means no name will come from this stream.
pub fn server_certificate_name(stream: &[u8]) -> Result<Option<String>, TlsError> {
    let mut handshake: Vec<u8> = Vec::new();
    for fragment in HandshakeRecords::new(stream) {
        let fragment = fragment?;
        handshake.extend_from_slice(fragment.body);
        if let Some(name) = certificate_name_in(&handshake)? {
            return Ok(Some(name));
        }
        if !fragment.whole {
            return Ok(None);
        }
    }
    Ok(None)
}

/// Walk the server's handshake messages gathered so far: ServerHello, then Certificate, whose
/// first entry is the server's own. Ok(None): not all there yet.
fn certificate_name_in(handshake: &[u8]) -> Result<Option<String>, TlsError> {
    const SERVER_HELLO: u8 = 2;
    const CERTIFICATE: u8 = 11;
    let mut at = 0usize;
    while let Some((kind, body_len, body)) = handshake_message(handshake, at) {
        match kind {
            SERVER_HELLO => match body.checked_add(body_len) {
                Some(next) if next <= handshake.len() => at = next,
                _ => return Ok(None),
            },
            CERTIFICATE => {
                // certificate_list<3>, then the first ASN.1Cert<3>.
                let Some(first) = handshake.get(body.saturating_add(3)..body.saturating_add(6))
                else {
                    return Ok(None);
                };
                let cert_len = u24(first);
                if cert_len > body_len {
                    return Err(TlsError::Malformed("certificate longer than its message"));
                }
                let start = body.saturating_add(6);
                let Some(cert) = handshake.get(start..start.saturating_add(cert_len)) else {
                    return Ok(None);
                };
                return super::x509::server_name(cert)
                    .map(Some)
                    .ok_or(TlsError::Malformed("certificate without a host name"));
            }
            _ => return Err(TlsError::Malformed("no certificate after the ServerHello")),
        }
    }
    Ok(None)
}

/// The handshake message header at `at`: its type, body length and body offset.
fn handshake_message(handshake: &[u8], at: usize) -> Option<(u8, usize, usize)> {
    let body = at.checked_add(4)?;
    let header = handshake.get(at..body)?;
    Some((*header.first()?, u24(header.get(1..)?), body))
}

/// A big-endian 24-bit length (the first three bytes; 0 if fewer).
fn u24(b: &[u8]) -> usize {
    match b {
        [a, b, c, ..] => usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c),
        _ => 0,
    }
}

/// One TLS record's body, or the part of the last record that has arrived.
struct Fragment<'a> {
    body: &'a [u8],
    whole: bool,
}

/// The handshake records at the start of a TCP stream, in order, for the client's hello and
/// the server's first flight alike. Ends after the first record not yet complete, or with an
/// error at the first record that is not a handshake record.
struct HandshakeRecords<'a> {
    stream: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> HandshakeRecords<'a> {
    fn new(stream: &'a [u8]) -> HandshakeRecords<'a> {
        HandshakeRecords {
            stream,
            pos: 0,
            done: false,
        }
    }
}

impl<'a> Iterator for HandshakeRecords<'a> {
    type Item = Result<Fragment<'a>, TlsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.stream.get(self.pos..)?;
        let (header, after) = (rest.get(..5)?, rest.get(5..)?);
        if !looks_like_record(header) {
            self.done = true;
            return Some(Err(TlsError::NotTls(header.to_vec())));
        }
        if header[0] != CONTENT_HANDSHAKE {
            self.done = true;
            return Some(Err(TlsError::UnexpectedRecord(header[0])));
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        Some(Ok(match after.get(..len) {
            Some(body) => {
                // 5 + a u16 length, within the stream: cannot wrap.
                self.pos = self.pos.saturating_add(5).saturating_add(len);
                Fragment { body, whole: true }
            }
            None => {
                self.done = true;
                Fragment {
                    body: after,
                    whole: false,
                }
            }
        }))
    }
}

/// Total length (header included) of the ClientHello at the start of `hs`, once its header is
/// there. Errors if it is not a ClientHello or is implausibly long.
pub fn handshake_len(hs: &[u8]) -> Result<Option<usize>, TlsError> {
    let Some(h) = hs.get(..4) else {
        return Ok(None);
    };
    if h[0] != HANDSHAKE_CLIENT_HELLO {
        return Err(TlsError::NotClientHello(h[0]));
    }
    let total = u24(&h[1..]).saturating_add(4);
    if total > MAX_HELLO_LEN {
        return Err(TlsError::TooLong(total));
    }
    Ok(Some(total))
}

/// Parse a whole ClientHello handshake message (4-byte header included).
pub fn parse_handshake(hs: &[u8]) -> Result<ClientHello, TlsError> {
    let total = handshake_len(hs)?.ok_or(TlsError::Truncated {
        what: "handshake header",
        offset: 0,
    })?;
    let body = hs.get(4..total).ok_or(TlsError::Truncated {
        what: "handshake body",
        offset: hs.len(),
    })?;
    let mut r = Reader {
        data: body,
        pos: 0,
        base: 4,
    };
    let legacy_version = r.u16("legacy version")?;
    r.skip(32, "random")?;
    let sid_len = r.u8("session id length")? as usize;
    if sid_len > 32 {
        return Err(TlsError::Malformed("session id longer than 32 bytes"));
    }
    r.skip(sid_len, "session id")?;
    let cs_len = r.u16("cipher suites length")? as usize;
    r.skip(cs_len, "cipher suites")?;
    let comp_len = r.u8("compression methods length")? as usize;
    r.skip(comp_len, "compression methods")?;
    let mut hello = ClientHello {
        version: legacy_version,
        ..ClientHello::default()
    };
    if r.remaining() == 0 {
        return Ok(hello); // No extensions (SSLv3-era hello).
    }
    let ext_total = r.u16("extensions length")? as usize;
    let mut exts = r.sub(ext_total, "extensions")?;
    while exts.remaining() > 0 {
        let ext_type = exts.u16("extension type")?;
        let ext_len = exts.u16("extension length")? as usize;
        let mut ext = exts.sub(ext_len, "extension data")?;
        match ext_type {
            EXT_SERVER_NAME => hello.sni = server_name(&mut ext)?,
            EXT_ALPN => hello.alpn = alpn(&mut ext)?,
            EXT_SUPPORTED_VERSIONS => {
                let n = ext.u8("supported versions length")? as usize;
                let mut list = ext.sub(n, "supported versions")?;
                let mut best: Option<u16> = None;
                while list.remaining() >= 2 {
                    let v = list.u16("supported version")?;
                    if is_grease(v) {
                        continue;
                    }
                    best = Some(best.map_or(v, |b| b.max(v)));
                }
                if let Some(best) = best {
                    hello.version = best;
                }
            }
            EXT_ECH => {
                hello.ech = true;
                hello.ech_config_id = ech_outer_config_id(&mut ext);
            }
            _ => {}
        }
    }
    Ok(hello)
}

/// The config_id of an ECHClientHello of type outer (draft-ietf-tls-esni 5): type<1> = 0,
/// cipher_suite (kdf_id<2>, aead_id<2>), config_id<1>, enc<2>, payload<2>. None for the
/// inner type or a malformed extension (the hello itself stays readable).
fn ech_outer_config_id(ext: &mut Reader) -> Option<u8> {
    const OUTER: u8 = 0;
    if ext.u8("ECH type").ok()? != OUTER {
        return None;
    }
    ext.skip(4, "ECH cipher suite").ok()?;
    ext.u8("ECH config id").ok()
}

/// GREASE values (RFC 8701) are 0x?a?a with both bytes equal.
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

fn server_name(ext: &mut Reader) -> Result<Option<String>, TlsError> {
    if ext.remaining() == 0 {
        return Ok(None); // Allowed in a ServerHello echo; tolerate it here too.
    }
    let list_len = ext.u16("server name list length")? as usize;
    let mut list = ext.sub(list_len, "server name list")?;
    while list.remaining() > 0 {
        let name_type = list.u8("server name type")?;
        let len = list.u16("server name length")? as usize;
        let name = list.bytes(len, "server name")?;
        if name_type == 0 {
            return Ok(host_from_bytes(name));
        }
    }
    Ok(None)
}

/// A host name from the wire: lower case, trailing dot removed; None when empty or not text.
pub fn host_from_bytes(name: &[u8]) -> Option<String> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || !name.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return None;
    }
    Some(String::from_utf8_lossy(name).to_ascii_lowercase())
}

fn alpn(ext: &mut Reader) -> Result<Vec<String>, TlsError> {
    let list_len = ext.u16("ALPN list length")? as usize;
    let mut list = ext.sub(list_len, "ALPN list")?;
    let mut out = Vec::new();
    while list.remaining() > 0 {
        let len = list.u8("ALPN protocol length")? as usize;
        let proto = list.bytes(len, "ALPN protocol")?;
        out.push(String::from_utf8_lossy(proto).into_owned());
    }
    Ok(out)
}

/// Bounds-checked reader; `base` is the offset of `data` in the handshake message, for errors.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TlsError> {
        let out =
            self.data
                .get(self.pos..self.pos.saturating_add(n))
                .ok_or(TlsError::Truncated {
                    what,
                    offset: self.base.saturating_add(self.pos),
                })?;
        self.pos = self.pos.saturating_add(n); // within `data`: cannot saturate
        Ok(out)
    }

    fn skip(&mut self, n: usize, what: &'static str) -> Result<(), TlsError> {
        self.bytes(n, what).map(|_| ())
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, TlsError> {
        Ok(self.bytes(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, TlsError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, TlsError> {
        let base = self.base.saturating_add(self.pos);
        let data = self.bytes(n, what)?;
        Ok(Reader { data, pos: 0, base })
    }
}

/// Builders of ClientHellos for tests here and in the other dissectors.
#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
pub(crate) mod build {
    /// A ClientHello handshake message with the given extensions (type, data).
    pub fn client_hello(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0x11; 32]);
        body.push(32);
        body.extend_from_slice(&[0x22; 32]);
        body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]);
        body.extend_from_slice(&[1, 0]);
        let mut ext_bytes = Vec::new();
        for (t, d) in exts {
            ext_bytes.extend_from_slice(&t.to_be_bytes());
            ext_bytes.extend_from_slice(&(d.len() as u16).to_be_bytes());
            ext_bytes.extend_from_slice(d);
        }
        body.extend_from_slice(&(ext_bytes.len() as u16).to_be_bytes());
        body.extend(ext_bytes);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        hs
    }

    pub fn sni(name: &str) -> (u16, Vec<u8>) {
        let n = name.as_bytes();
        let mut d = ((n.len() + 3) as u16).to_be_bytes().to_vec();
        d.push(0);
        d.extend_from_slice(&(n.len() as u16).to_be_bytes());
        d.extend_from_slice(n);
        (0, d)
    }

    pub fn alpn(protos: &[&str]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for p in protos {
            list.push(p.len() as u8);
            list.extend_from_slice(p.as_bytes());
        }
        let mut d = (list.len() as u16).to_be_bytes().to_vec();
        d.extend(list);
        (16, d)
    }

    pub fn versions(vs: &[u16]) -> (u16, Vec<u8>) {
        let mut d = vec![(vs.len() * 2) as u8];
        for v in vs {
            d.extend_from_slice(&v.to_be_bytes());
        }
        (43, d)
    }

    /// An outer encrypted_client_hello extension (HKDF-SHA256, AES-128-GCM) naming
    /// `config_id`, with a 32-byte enc and a 144-byte payload, as Chrome sends (real or GREASE).
    pub fn ech_outer(config_id: u8) -> (u16, Vec<u8>) {
        let mut d = vec![0, 0, 1, 0, 1, config_id, 0, 32];
        d.extend([0x3c; 32]);
        d.extend([0, 144]);
        d.extend([0x5e; 144]);
        (super::EXT_ECH, d)
    }

    /// Wrap a handshake message in TLS records of at most `max` bytes each.
    pub fn records(hs: &[u8], max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in hs.chunks(max) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    /// A TLS 1.2 server's first flight: ServerHello, Certificate (`cert`, then a CA), in
    /// records of at most `max` bytes.
    pub fn server_flight(cert: &[u8], max: usize) -> Vec<u8> {
        let u24 = |n: usize| [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let mut hello = vec![3, 3];
        hello.extend([0x5a; 32]);
        hello.extend([0, 0xc0, 0x2f, 0]); // no session id, cipher, null compression
        let mut hs = vec![2];
        hs.extend(u24(hello.len()));
        hs.extend(hello);
        let ca = [0x30, 0x03, 0x02, 0x01, 0x00];
        let list_len = 3 + cert.len() + 3 + ca.len();
        hs.push(11);
        hs.extend(u24(3 + list_len));
        hs.extend(u24(list_len));
        hs.extend(u24(cert.len()));
        hs.extend(cert);
        hs.extend(u24(ca.len()));
        hs.extend(ca);
        records(&hs, max)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::build::{alpn, client_hello, ech_outer, records, sni, versions};
    use super::{
        EXT_ECH, TlsError, client_hello_from_records, is_grease, parse_handshake, version_name,
    };

    fn modern_hello() -> Vec<u8> {
        client_hello(&[
            (0x0a0a, vec![]),
            sni("WWW.Example.org."),
            alpn(&["h2", "http/1.1"]),
            versions(&[0x2a2a, 0x0304, 0x0303]),
            // A post-quantum-sized key share makes the hello span several segments.
            (51, vec![0x44; 1300]),
        ])
    }

    #[test]
    fn parses_sni_alpn_and_highest_version() {
        let ch = parse_handshake(&modern_hello()).unwrap();
        assert_eq!(ch.sni.as_deref(), Some("www.example.org"));
        assert_eq!(ch.alpn, vec!["h2", "http/1.1"]);
        assert_eq!(ch.version, 0x0304);
        assert_eq!(version_name(ch.version), Some("TLSv1.3"));
        assert!(!ch.ech);
    }

    #[test]
    fn legacy_version_without_supported_versions() {
        let ch = parse_handshake(&client_hello(&[sni("a.b")])).unwrap();
        assert_eq!(version_name(ch.version), Some("TLSv1.2"));
    }

    #[test]
    fn ech_outer_extension_gives_its_config_id() {
        let ch = parse_handshake(&client_hello(&[sni("public.example"), ech_outer(0x2a)])).unwrap();
        assert!(ch.ech);
        assert_eq!(ch.ech_config_id, Some(0x2a));
        assert_eq!(ch.sni.as_deref(), Some("public.example"));
        // The inner type (inside the encrypted hello) and a cut extension have no outer id.
        let inner = parse_handshake(&client_hello(&[(EXT_ECH, vec![1])])).unwrap();
        assert_eq!((inner.ech, inner.ech_config_id), (true, None));
        let cut = parse_handshake(&client_hello(&[(EXT_ECH, vec![0, 0, 1])])).unwrap();
        assert_eq!((cut.ech, cut.ech_config_id), (true, None));
    }

    #[test]
    fn hello_over_several_records_and_segments() {
        let hs = modern_hello();
        let stream = records(&hs, 500);
        // Every prefix is either incomplete or, once whole, the same hello.
        for cut in 0..stream.len() {
            assert_eq!(
                client_hello_from_records(&stream[..cut]),
                Ok(None),
                "cut {cut}"
            );
        }
        let ch = client_hello_from_records(&stream).unwrap().unwrap();
        assert_eq!(ch.sni.as_deref(), Some("www.example.org"));
        // One record split over segments.
        let single = records(&hs, 16384);
        assert_eq!(client_hello_from_records(&single[..1000]), Ok(None));
        assert!(client_hello_from_records(&single).unwrap().is_some());
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert!(matches!(
            client_hello_from_records(b"GET / HTTP/1.1\r\n"),
            Err(TlsError::NotTls(_))
        ));
        assert!(matches!(
            client_hello_from_records(&[23, 3, 3, 0, 5, 1, 2, 3, 4, 5]),
            Err(TlsError::UnexpectedRecord(23))
        ));
        let hs = modern_hello();
        for cut in 4..hs.len() {
            // Claim the cut length in the header so the parser must notice the inner lengths.
            let mut m = hs[..cut].to_vec();
            let body = (cut - 4) as u32;
            m[1..4].copy_from_slice(&body.to_be_bytes()[1..]);
            let _ = parse_handshake(&m); // must not panic
        }
        let mut server_hello = hs.clone();
        server_hello[0] = 2;
        assert_eq!(
            parse_handshake(&server_hello),
            Err(TlsError::NotClientHello(2))
        );
    }

    #[test]
    fn grease_detection() {
        assert!(is_grease(0x1a1a));
        assert!(!is_grease(0x1a2a));
        assert!(!is_grease(0x0304));
    }

    #[test]
    fn server_certificate_names_a_tls12_flight() {
        use super::build::server_flight;
        use super::server_certificate_name;
        let cert = crate::dissect::x509::build::certificate(Some("mx.google.com"), &[]);
        let flight = server_flight(&cert, 300);
        let want = Some("mx.google.com".to_string());
        let mut first_named = None;
        for cut in 0..flight.len() {
            // A prefix waits for more until the server's own certificate is complete.
            match server_certificate_name(&flight[..cut]) {
                Ok(None) => assert!(first_named.is_none(), "cut {cut}"),
                Ok(name) if name == want => {
                    first_named.get_or_insert(cut);
                }
                other => panic!("cut {cut}: {other:?}"),
            }
        }
        assert!(first_named.is_some_and(|c| c > cert.len()));
        assert_eq!(
            server_certificate_name(&flight).unwrap().as_deref(),
            Some("mx.google.com")
        );
        // TLS 1.3: ServerHello then ChangeCipherSpec, the certificate is encrypted.
        let mut tls13 = records(&flight[5..5 + 42], 16384);
        tls13.extend([20, 3, 3, 0, 1, 1]);
        assert!(server_certificate_name(&tls13).is_err());
        for len in 0..120usize {
            let junk: Vec<u8> = [22, 3, 3, 0, 0x40]
                .into_iter()
                .chain((0..len).map(|i| (i * 71 + 11) as u8))
                .collect();
            let _ = server_certificate_name(&junk);
        }
    }
}
