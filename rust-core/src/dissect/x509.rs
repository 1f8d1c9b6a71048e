//! The server name a certificate carries: its subject common name, else its first DNS
//! subjectAltName. A DER walk over the few fields needed, not a certificate parser: nothing is
//! verified, and x509-parser (with der-parser, asn1-rs, nom, oid-registry, time) would add a
//! dozen crates to the phone's library to read two strings. Every length is checked; malformed
//! input gives None.

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const BOOLEAN: u8 = 0x01;
/// `[3]` EXPLICIT: the extensions of a v3 TBSCertificate.
const EXTENSIONS: u8 = 0xa3;
/// `[2]` IMPLICIT IA5String: a dNSName in GeneralNames.
const DNS_NAME: u8 = 0x82;
/// id-at-commonName, 2.5.4.3.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
/// id-ce-subjectAltName, 2.5.29.17.
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// One DER element: tag, contents, and the bytes after it.
fn element(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None; // Indefinite lengths are not DER; more than 4 bytes is not a cert.
        }
        let bytes = rest.get(..n)?;
        let len = bytes.iter().try_fold(0usize, |acc, &b| {
            acc.checked_mul(256)?.checked_add(usize::from(b))
        })?;
        (len, rest.get(n..)?)
    };
    let contents = rest.get(..len)?;
    Some((tag, contents, rest.get(len..)?))
}

/// The elements of a constructed value's contents.
fn children(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, contents, rest) = element(data)?;
        data = rest;
        Some((tag, contents))
    })
}

/// The name a server certificate (DER) is issued to: subject CN if it looks like a host name,
/// else the first dNSName of its subjectAltName. Lower case.
pub fn server_name(cert: &[u8]) -> Option<String> {
    let (SEQUENCE, cert, _) = element(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let mut fields = children(tbs).peekable();
    if fields.peek().is_some_and(|(tag, _)| *tag == 0xa0) {
        fields.next(); // version
    }
    // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, then optional
    // issuerUniqueID [1], subjectUniqueID [2], extensions [3].
    let mut fields = fields.skip(4);
    let (_, subject) = fields.next()?;
    let cn = common_name(subject);
    if cn.is_some() {
        return cn;
    }
    fields
        .find(|(tag, _)| *tag == EXTENSIONS)
        .and_then(|(_, ext)| first_dns_san(ext))
}

fn common_name(subject: &[u8]) -> Option<String> {
    children(subject)
        .filter(|(tag, _)| *tag == SET)
        .flat_map(|(_, rdn)| children(rdn))
        .filter(|(tag, _)| *tag == SEQUENCE)
        .find_map(|(_, atv)| {
            let mut parts = children(atv);
            match (parts.next(), parts.next()) {
                (Some((OID, OID_CN)), Some((_, value))) => host(value),
                _ => None,
            }
        })
}

fn first_dns_san(explicit: &[u8]) -> Option<String> {
    let (SEQUENCE, extensions, _) = element(explicit)? else {
        return None;
    };
    children(extensions)
        .filter(|(tag, _)| *tag == SEQUENCE)
        .find_map(|(_, ext)| {
            let mut parts = children(ext).peekable();
            let (OID, OID_SAN) = parts.next()? else {
                return None;
            };
            if parts.peek().is_some_and(|(tag, _)| *tag == BOOLEAN) {
                parts.next(); // critical
            }
            let (OCTET_STRING, value) = parts.next()? else {
                return None;
            };
            let (SEQUENCE, names, _) = element(value)? else {
                return None;
            };
            children(names)
                .filter(|(tag, _)| *tag == DNS_NAME)
                .find_map(|(_, name)| host(name))
        })
}

/// A host name (wildcards allowed), or None for a CN that names a person or company.
fn host(value: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(value).ok()?.trim_end_matches('.');
    let ok = s.contains('.')
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'*'));
    ok.then(|| s.to_ascii_lowercase())
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
pub(crate) mod build {
    /// DER element with a definite length.
    pub fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        let n = contents.len();
        if n < 0x80 {
            v.push(n as u8);
        } else if n < 0x100 {
            v.extend([0x81, n as u8]);
        } else {
            v.extend([0x82, (n >> 8) as u8, n as u8]);
        }
        v.extend(contents);
        v
    }

    /// A v3 certificate issued to subject `cn` (an O-only subject when None) with `sans`.
    pub fn certificate(cn: Option<&str>, sans: &[&str]) -> Vec<u8> {
        let rdn = |oid: &[u8], value: &str| {
            let atv = [der(0x06, oid), der(0x0c, value.as_bytes())].concat();
            der(0x31, &der(0x30, &atv))
        };
        let mut subject = rdn(&[0x55, 0x04, 0x0a], "Example Org");
        if let Some(cn) = cn {
            subject.extend(rdn(&[0x55, 0x04, 0x03], cn));
        }
        let names: Vec<u8> = sans.iter().flat_map(|s| der(0x82, s.as_bytes())).collect();
        let san = [
            der(0x06, &[0x55, 0x1d, 0x11]),
            der(0x04, &der(0x30, &names)),
        ]
        .concat();
        let basic = [
            der(0x06, &[0x55, 0x1d, 0x13]),
            der(0x01, &[0xff]),
            der(0x04, &der(0x30, &[])),
        ]
        .concat();
        let exts = der(
            0xa3,
            &der(0x30, &[der(0x30, &basic), der(0x30, &san)].concat()),
        );
        let alg = der(
            0x30,
            &der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
        );
        let tbs = [
            der(0xa0, &der(0x02, &[2])),
            der(0x02, &[0x01, 0x23]),
            alg.clone(),
            der(0x30, &rdn(&[0x55, 0x04, 0x03], "Example CA")),
            der(
                0x30,
                &[der(0x17, b"260101000000Z"), der(0x17, b"270101000000Z")].concat(),
            ),
            der(0x30, &subject),
            der(0x30, &[alg.clone(), der(0x03, &[0, 4, 1, 2])].concat()),
            exts,
        ]
        .concat();
        der(
            0x30,
            &[der(0x30, &tbs), alg, der(0x03, &[0, 1, 2, 3])].concat(),
        )
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::build::certificate;
    use super::server_name;

    #[test]
    fn common_name_then_san() {
        let c = certificate(Some("MX.Google.com"), &["smtp.google.com"]);
        assert_eq!(server_name(&c).as_deref(), Some("mx.google.com"));
        let c = certificate(None, &["*.mi.com", "mi.com"]);
        assert_eq!(server_name(&c).as_deref(), Some("*.mi.com"));
        // A CN that is not a host name (an organisation) falls back to the SAN.
        let c = certificate(Some("Xiaomi Inc"), &["api.io.mi.com"]);
        assert_eq!(server_name(&c).as_deref(), Some("api.io.mi.com"));
        assert_eq!(server_name(&certificate(None, &[])), None);
    }

    #[test]
    fn truncated_and_garbage_give_none() {
        let c = certificate(Some("a.example"), &["b.example"]);
        for cut in 0..c.len() {
            assert_eq!(server_name(&c[..cut]), None, "cut at {cut}");
        }
        for len in 0..200usize {
            let junk: Vec<u8> = (0..len).map(|i| (i * 29 + 0x30) as u8).collect();
            let _ = server_name(&junk);
        }
        assert_eq!(server_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
