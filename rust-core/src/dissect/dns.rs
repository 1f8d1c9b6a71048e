//! DNS messages (RFC 1035) as the naming code needs them: the question, and the answers that turn
//! a name into addresses (A, AAAA, CNAME chains, and the address hints of HTTPS/SVCB records,
//! RFC 9460).
//!
//! Hand-written rather than a general DNS library because we need exact control over malformed
//! input: every read is bounds-checked, compression pointers must point strictly backwards and
//! are counted (no loops), and errors say what was being read and where.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::flow::{DnsRecord, Millis, Proto};

/// Longest name in presentation form we accept (RFC 1035: 255 octets on the wire).
const MAX_NAME_WIRE_LEN: usize = 255;
/// Compression jumps allowed in one name. Backward-only pointers already guarantee termination;
/// this bounds the work per name.
const MAX_POINTER_JUMPS: usize = 64;
/// Records kept per section; a message claiming more is still parsed up to this many.
const MAX_RECORDS: usize = 512;

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_MX: u16 = 15;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SVCB: u16 = 64;
pub const TYPE_HTTPS: u16 = 65;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("DNS message truncated while reading {what} at offset {offset}")]
    Truncated { what: &'static str, offset: usize },
    #[error("DNS name at offset {offset}: invalid label type 0x{byte:02x}")]
    BadLabel { offset: usize, byte: u8 },
    #[error(
        "DNS name at offset {offset}: compression pointer to {target} does not point backwards"
    )]
    BadPointer { offset: usize, target: usize },
    #[error("DNS name at offset {offset}: more than {MAX_POINTER_JUMPS} compression jumps")]
    TooManyPointers { offset: usize },
    #[error("DNS name at offset {offset} is longer than 255 octets")]
    NameTooLong { offset: usize },
    #[error("DNS record of type {rtype} at offset {offset}: malformed data")]
    BadRdata { rtype: u16, offset: usize },
    #[error("DNS over TCP: length prefix {declared} but {available} bytes available")]
    TcpLength { declared: usize, available: usize },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// Lower-case presentation form without the trailing dot ("" for the root).
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// CNAME target (also used for the names of NS and PTR records).
    Name(String),
    /// HTTPS or SVCB (RFC 9460): the target, the address hints and the ECH configurations.
    Svcb {
        priority: u16,
        target: String,
        alpn: Vec<String>,
        ipv4hint: Vec<Ipv4Addr>,
        ipv6hint: Vec<Ipv6Addr>,
        ech: Vec<EchConfig>,
    },
    /// Anything else, kept as its length only.
    Other {
        len: usize,
    },
}

/// What a ClientHello's outer ECH extension is matched against: one ECHConfig of an `ech`
/// SvcParam (draft-ietf-tls-esni 4, RFC 9460 14.3.2). A client that offers ECH names its
/// `config_id` in the outer hello and sends `public_name` as its outer SNI; GREASE ECH (sent
/// when the client has no config) carries a random id and the real name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EchConfig {
    pub config_id: u8,
    /// Lower case, as in a host name.
    pub public_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRecord {
    pub name: String,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub data: RData,
}

impl ResourceRecord {
    /// The record's data as text: an address, a target name, or "TYPE n".
    pub fn data_text(&self) -> String {
        match &self.data {
            RData::A(a) => a.to_string(),
            RData::Aaaa(a) => a.to_string(),
            RData::Name(n) => n.clone(),
            RData::Svcb {
                priority, target, ..
            } => {
                let target = if target.is_empty() {
                    "."
                } else {
                    target.as_str()
                };
                format!("{} {priority} {target}", type_name(self.rtype))
            }
            RData::Other { .. } => type_name(self.rtype),
        }
    }
}

/// "A", "AAAA", ..., or "TYPE n" for types without a common name.
pub fn type_name(rtype: u16) -> String {
    match rtype {
        TYPE_A => "A".into(),
        TYPE_NS => "NS".into(),
        TYPE_CNAME => "CNAME".into(),
        TYPE_PTR => "PTR".into(),
        TYPE_MX => "MX".into(),
        TYPE_AAAA => "AAAA".into(),
        TYPE_SVCB => "SVCB".into(),
        TYPE_HTTPS => "HTTPS".into(),
        16 => "TXT".into(),
        6 => "SOA".into(),
        33 => "SRV".into(),
        41 => "OPT".into(),
        n => format!("TYPE {n}"),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsMessage {
    pub id: u16,
    pub is_response: bool,
    pub opcode: u8,
    pub truncated: bool,
    pub rcode: u8,
    pub questions: Vec<Question>,
    pub answers: Vec<ResourceRecord>,
    /// Records of the authority section (kept for completeness; naming ignores them).
    pub authorities: Vec<ResourceRecord>,
    pub additionals: Vec<ResourceRecord>,
}

impl DnsMessage {
    /// The first question's name, the name the client asked for.
    pub fn query_name(&self) -> Option<&str> {
        self.questions.first().map(|q| q.name.as_str())
    }

    /// Addresses that answer the first question: A/AAAA records and HTTPS/SVCB hints whose owner
    /// is the question name or reachable from it through the CNAME chain. Unrelated records
    /// (which a resolver may add) are ignored. Returns the addresses and the smallest TTL on the
    /// chain that produced them.
    pub fn answer_addresses(&self) -> (Vec<IpAddr>, Option<u32>) {
        let chain = self.question_chain();
        if chain.is_empty() {
            return (Vec::new(), None);
        }
        let mut ips = Vec::new();
        let mut ttl: Option<u32> = None;
        for rr in &self.answers {
            if !chain.contains(rr.name.as_str()) {
                continue;
            }
            let before = ips.len();
            match &rr.data {
                RData::A(a) => ips.push(IpAddr::V4(*a)),
                RData::Aaaa(a) => ips.push(IpAddr::V6(*a)),
                RData::Svcb {
                    ipv4hint, ipv6hint, ..
                } => {
                    ips.extend(ipv4hint.iter().map(|a| IpAddr::V4(*a)));
                    ips.extend(ipv6hint.iter().map(|a| IpAddr::V6(*a)));
                }
                RData::Name(_) => {
                    ttl = Some(ttl.map_or(rr.ttl, |t| t.min(rr.ttl)));
                }
                RData::Other { .. } => {}
            }
            if ips.len() > before {
                ttl = Some(ttl.map_or(rr.ttl, |t| t.min(rr.ttl)));
            }
        }
        let mut seen = HashSet::new();
        ips.retain(|ip| seen.insert(*ip));
        (ips, ttl)
    }

    /// The ECH configurations of the HTTPS/SVCB answers to the first question (owner on its
    /// CNAME chain), each once.
    pub fn ech_configs(&self) -> Vec<EchConfig> {
        let chain = self.question_chain();
        let mut out: Vec<EchConfig> = Vec::new();
        for rr in self
            .answers
            .iter()
            .filter(|rr| chain.contains(rr.name.as_str()))
        {
            if let RData::Svcb { ech, .. } = &rr.data {
                for config in ech {
                    if !out.contains(config) {
                        out.push(config.clone());
                    }
                }
            }
        }
        out
    }

    /// The question name and the CNAME targets reachable from it; empty without a question.
    fn question_chain(&self) -> HashSet<&str> {
        let mut chain: HashSet<&str> = HashSet::new();
        let Some(qname) = self.query_name() else {
            return chain;
        };
        chain.insert(qname);
        // The chain may be listed in any order: grow it to a fixed point (bounded by the count).
        for _ in 0..self.answers.len() {
            let mut grew = false;
            for rr in &self.answers {
                if let RData::Name(target) = &rr.data
                    && rr.rtype == TYPE_CNAME
                    && chain.contains(rr.name.as_str())
                    && chain.insert(target.as_str())
                {
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        chain
    }
}

/// Parse one DNS message (a UDP payload, or a TCP message without its length prefix).
pub fn parse(msg: &[u8]) -> Result<DnsMessage, DnsError> {
    let mut r = Reader { msg, pos: 0 };
    let id = r.u16("header")?;
    let flags = r.u16("header")?;
    let qdcount = r.u16("header")? as usize;
    let ancount = r.u16("header")? as usize;
    let nscount = r.u16("header")? as usize;
    let arcount = r.u16("header")? as usize;
    let mut questions = Vec::with_capacity(qdcount.min(4));
    for _ in 0..qdcount.min(MAX_RECORDS) {
        let name = r.name()?;
        let qtype = r.u16("question type")?;
        let qclass = r.u16("question class")?;
        questions.push(Question {
            name,
            qtype,
            qclass,
        });
    }
    let answers = r.records(ancount)?;
    let authorities = r.records(nscount)?;
    let additionals = r.records(arcount)?;
    Ok(DnsMessage {
        id,
        is_response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0x0f) as u8,
        truncated: flags & 0x0200 != 0,
        rcode: (flags & 0x000f) as u8,
        questions,
        answers,
        authorities,
        additionals,
    })
}

/// Parse a DNS message that may be cut short (a truncated capture): the header and the
/// question(s) must be whole; answer sections are parsed as far as they are whole.
pub fn parse_lenient(msg: &[u8]) -> Result<DnsMessage, DnsError> {
    match parse(msg) {
        Ok(m) => Ok(m),
        Err(err) => {
            let mut r = Reader { msg, pos: 0 };
            let id = r.u16("header")?;
            let flags = r.u16("header")?;
            let qdcount = r.u16("header")? as usize;
            let ancount = r.u16("header")? as usize;
            r.pos = 12;
            if qdcount == 0 {
                return Err(err);
            }
            let mut questions = Vec::new();
            for _ in 0..qdcount.min(MAX_RECORDS) {
                let name = r.name()?;
                let qtype = r.u16("question type")?;
                let qclass = r.u16("question class")?;
                questions.push(Question {
                    name,
                    qtype,
                    qclass,
                });
            }
            let mut answers = Vec::new();
            for _ in 0..ancount.min(MAX_RECORDS) {
                match r.record() {
                    Ok(rr) => answers.push(rr),
                    Err(_) => break,
                }
            }
            Ok(DnsMessage {
                id,
                is_response: flags & 0x8000 != 0,
                opcode: ((flags >> 11) & 0x0f) as u8,
                truncated: true,
                rcode: (flags & 0x000f) as u8,
                questions,
                answers,
                authorities: Vec::new(),
                additionals: Vec::new(),
            })
        }
    }
}

/// Split DNS-over-TCP bytes (each message behind a 2-byte length) into whole messages. Returns
/// the messages and how many bytes they used; a partial message at the end is left for later.
pub fn split_tcp(stream: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Some(len_bytes) = stream.get(pos..pos.saturating_add(2)) {
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        let start = pos.saturating_add(2);
        let end = start.saturating_add(len);
        match stream.get(start..end) {
            Some(m) => {
                out.push(m);
                pos = end;
            }
            None => break,
        }
    }
    (out, pos)
}

/// Parse one DNS-over-TCP message including its 2-byte length prefix.
pub fn parse_tcp(framed: &[u8]) -> Result<DnsMessage, DnsError> {
    let Some(len_bytes) = framed.get(..2) else {
        return Err(DnsError::Truncated {
            what: "TCP length prefix",
            offset: 0,
        });
    };
    let declared = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
    match framed.get(2..declared.saturating_add(2)) {
        Some(m) => parse(m),
        None => Err(DnsError::TcpLength {
            declared,
            available: framed.len().saturating_sub(2),
        }),
    }
}

/// What the engine or the pcap observer knows about one DNS exchange besides the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub time: Millis,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub transport: Proto,
}

/// Build the [`DnsRecord`] of one exchange from the query and/or the answer (either may be
/// missing: a capture may hold only one side; a live query may get no answer). The question is
/// taken from the query, else from the answer. `uid` and `flow_id` are left for the caller.
/// Returns None when neither message has a question.
pub fn record_from(
    ex: Exchange,
    query: Option<&DnsMessage>,
    answer: Option<&DnsMessage>,
) -> Option<DnsRecord> {
    let question = query
        .and_then(|q| q.questions.first())
        .or_else(|| answer.and_then(|a| a.questions.first()))?;
    let mut record = DnsRecord {
        time: ex.time,
        uid: None,
        flow_id: None,
        client: ex.client,
        server: ex.server,
        transport: ex.transport,
        query: question.name.clone(),
        qtype: question.qtype,
        rcode: None,
        answers: Vec::new(),
        answer_ips: Vec::new(),
        ttl: None,
        ech_configs: Vec::new(),
    };
    if let Some(a) = answer {
        record.rcode = Some(a.rcode);
        record.answers = a.answers.iter().map(ResourceRecord::data_text).collect();
        // The answer's own question is authoritative for the chain; it matches the query's.
        let (ips, ttl) = a.answer_addresses();
        record.answer_ips = ips;
        record.ttl = ttl;
        record.ech_configs = a.ech_configs();
    }
    Some(record)
}

struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DnsError> {
        let truncated = DnsError::Truncated {
            what,
            offset: self.pos,
        };
        let end = self.pos.checked_add(n).ok_or(truncated.clone())?;
        let out = self.msg.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DnsError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DnsError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Read a (possibly compressed) name at the current position and move past it.
    fn name(&mut self) -> Result<String, DnsError> {
        let (name, end) = read_name(self.msg, self.pos)?;
        self.pos = end;
        Ok(name)
    }

    fn records(&mut self, count: usize) -> Result<Vec<ResourceRecord>, DnsError> {
        let mut out = Vec::with_capacity(count.min(16));
        for _ in 0..count.min(MAX_RECORDS) {
            out.push(self.record()?);
        }
        Ok(out)
    }

    fn record(&mut self) -> Result<ResourceRecord, DnsError> {
        let name = self.name()?;
        let rtype = self.u16("record type")?;
        let class = self.u16("record class")?;
        let ttl = self.u32("record TTL")?;
        let rdlen = self.u16("record length")? as usize;
        let start = self.pos;
        let rdata = self.bytes(rdlen, "record data")?;
        let bad = DnsError::BadRdata {
            rtype,
            offset: start,
        };
        let data = match rtype {
            // An address record of the wrong size is no address (inverse queries carry empty
            // ones); its length still delimits it, so the rest of the message stays readable.
            TYPE_A => match <[u8; 4]>::try_from(rdata) {
                Ok(b) => RData::A(Ipv4Addr::from(b)),
                Err(_) => RData::Other { len: rdlen },
            },
            TYPE_AAAA => match <[u8; 16]>::try_from(rdata) {
                Ok(b) => RData::Aaaa(Ipv6Addr::from(b)),
                Err(_) => RData::Other { len: rdlen },
            },
            TYPE_CNAME | TYPE_NS | TYPE_PTR => {
                let (target, end) = read_name(self.msg, start)?;
                if Some(end) != start.checked_add(rdlen) {
                    return Err(bad);
                }
                RData::Name(target)
            }
            TYPE_SVCB | TYPE_HTTPS => parse_svcb(self.msg, start, rdlen).ok_or(bad)?,
            _ => RData::Other { len: rdlen },
        };
        // Classes other than IN (and the OPT pseudo-record's payload size) keep their data as is.
        Ok(ResourceRecord {
            name,
            rtype,
            class,
            ttl,
            data,
        })
    }
}

/// Read a name starting at `start`; returns it and the offset just past its wire form.
fn read_name(msg: &[u8], start: usize) -> Result<(String, usize), DnsError> {
    let mut out = String::new();
    let mut pos = start;
    let mut end_after: Option<usize> = None;
    let mut jumps = 0usize;
    let mut wire_len = 0usize;
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Truncated {
            what: "name",
            offset: pos,
        })?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    let end = end_after.unwrap_or(pos.saturating_add(1));
                    return Ok((out, end));
                }
                // Offsets within `msg`: the saturating adds cannot saturate.
                let label_start = pos.saturating_add(1);
                let label_end = label_start.saturating_add(usize::from(len));
                let label = msg.get(label_start..label_end).ok_or(DnsError::Truncated {
                    what: "name label",
                    offset: pos,
                })?;
                wire_len = wire_len.saturating_add(1).saturating_add(label.len());
                if wire_len.saturating_add(1) > MAX_NAME_WIRE_LEN {
                    return Err(DnsError::NameTooLong { offset: start });
                }
                if !out.is_empty() {
                    out.push('.');
                }
                push_label(&mut out, label);
                pos = label_end;
            }
            0xc0 => {
                let lo = *msg.get(pos.saturating_add(1)).ok_or(DnsError::Truncated {
                    what: "name pointer",
                    offset: pos,
                })?;
                let target = (((len & 0x3f) as usize) << 8) | lo as usize;
                if target >= pos {
                    return Err(DnsError::BadPointer {
                        offset: pos,
                        target,
                    });
                }
                jumps = jumps.saturating_add(1);
                if jumps > MAX_POINTER_JUMPS {
                    return Err(DnsError::TooManyPointers { offset: start });
                }
                if end_after.is_none() {
                    end_after = Some(pos.saturating_add(2));
                }
                pos = target;
            }
            _ => {
                return Err(DnsError::BadLabel {
                    offset: pos,
                    byte: len,
                });
            }
        }
    }
}

/// Append a label in presentation form: lower-case ASCII, other bytes and dots escaped as \DDD.
fn push_label(out: &mut String, label: &[u8]) {
    for &b in label {
        match b {
            b'.' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x21..=0x7e => out.push(b.to_ascii_lowercase() as char),
            _ => {
                out.push('\\');
                out.push_str(&format!("{b:03}"));
            }
        }
    }
}

/// SVCB/HTTPS RDATA: priority, target name (never compressed, RFC 9460 2.2), then SvcParams.
fn parse_svcb(msg: &[u8], start: usize, rdlen: usize) -> Option<RData> {
    let rdata = msg.get(start..start.checked_add(rdlen)?)?;
    let priority = u16::from_be_bytes([*rdata.first()?, *rdata.get(1)?]);
    // Decode the target from the RDATA alone so a pointer cannot escape the record.
    let (target, used) = read_name(rdata, 2).ok()?;
    let mut alpn = Vec::new();
    let mut ipv4hint = Vec::new();
    let mut ipv6hint = Vec::new();
    let mut ech = Vec::new();
    let mut params = Cursor::new(rdata.get(used..)?);
    while !params.is_empty() {
        let key = params.u16()?;
        let value = params.vector16()?;
        match key {
            1 => {
                let mut ids = Cursor::new(value);
                while !ids.is_empty() {
                    alpn.push(String::from_utf8_lossy(ids.vector8()?).into_owned());
                }
            }
            4 => {
                if value.len() % 4 != 0 {
                    return None;
                }
                for c in value.chunks_exact(4) {
                    ipv4hint.push(Ipv4Addr::new(c[0], c[1], c[2], c[3]));
                }
            }
            6 => {
                if value.len() % 16 != 0 {
                    return None;
                }
                for c in value.chunks_exact(16) {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(c);
                    ipv6hint.push(Ipv6Addr::from(b));
                }
            }
            SVC_PARAM_ECH => ech = ech_config_list(value)?,
            _ => {}
        }
    }
    Some(RData::Svcb {
        priority,
        target,
        alpn,
        ipv4hint,
        ipv6hint,
        ech,
    })
}

/// SvcParamKey of `ech` (RFC 9460 14.3.2): its value is an ECHConfigList.
const SVC_PARAM_ECH: u16 = 5;
/// ECHConfig version of draft-ietf-tls-esni-13 onwards (the one deployed).
const ECH_VERSION: u16 = 0xfe0d;

/// An ECHConfigList (draft-ietf-tls-esni 4): `ECHConfig configs<4..2^16-1>`, each
/// `version<2> length<2> contents`. Configs of other versions are skipped, as clients do.
fn ech_config_list(value: &[u8]) -> Option<Vec<EchConfig>> {
    let mut list = Cursor::new(value);
    let mut configs = Cursor::new(list.vector16()?);
    let mut out = Vec::new();
    while !configs.is_empty() {
        let version = configs.u16()?;
        let contents = configs.vector16()?;
        if version == ECH_VERSION {
            out.push(ech_config_contents(contents)?);
        }
    }
    Some(out)
}

/// ECHConfigContents: HpkeKeyConfig (config_id, kem_id, public_key<2>, cipher_suites<2>),
/// maximum_name_length, public_name<1>, extensions<2>.
fn ech_config_contents(contents: &[u8]) -> Option<EchConfig> {
    let mut c = Cursor::new(contents);
    let config_id = c.u8()?;
    c.u16()?; // kem_id
    c.vector16()?; // public_key
    c.vector16()?; // cipher_suites
    c.u8()?; // maximum_name_length
    let public_name = c.vector8()?;
    c.vector16()?; // extensions
    let public_name = crate::dissect::tls::host_from_bytes(public_name)?;
    Some(EchConfig {
        config_id,
        public_name,
    })
}

/// Bounds-checked reads from a slice, for the nested vectors of SvcParam values.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Cursor<'a> {
        Cursor { rest: data }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }

    fn vector8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    fn vector16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// Builders of DNS messages for tests here and in the naming code.
#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
pub(crate) mod build {
    /// An ECHConfigList (draft-ietf-tls-esni 4) with one version-0xfe0d ECHConfig per
    /// (config_id, public_name): X25519 (KEM 0x0020) with a 32-byte key, HKDF-SHA256 with
    /// AES-128-GCM, maximum_name_length 0, no extensions, as Cloudflare publishes.
    pub fn ech_config_list(configs: &[(u8, &str)]) -> Vec<u8> {
        let mut list = Vec::new();
        for (id, public_name) in configs {
            let mut c = vec![*id, 0x00, 0x20, 0, 32];
            c.extend([0x7f; 32]);
            c.extend([0, 4, 0, 1, 0, 1]); // cipher_suites: HKDF-SHA256, AES-128-GCM
            c.push(0); // maximum_name_length
            c.push(public_name.len() as u8);
            c.extend(public_name.as_bytes());
            c.extend([0, 0]); // extensions
            list.extend([0xfe, 0x0d]);
            list.extend((c.len() as u16).to_be_bytes());
            list.extend(c);
        }
        let mut out = (list.len() as u16).to_be_bytes().to_vec();
        out.extend(list);
        out
    }

    /// An answer to "`qname` HTTPS": one record `1 . alpn=h3,h2 ipv4hint=<hint> ech=<ech>`.
    pub fn https_answer(qname: &str, hint: [u8; 4], ech: &[u8]) -> Vec<u8> {
        let mut m = vec![0x4e, 0x11, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        for label in qname.split('.') {
            m.push(label.len() as u8);
            m.extend(label.as_bytes());
        }
        m.push(0);
        m.extend([0, 65, 0, 1]);
        let mut rdata = vec![0, 1, 0]; // priority 1, target "."
        rdata.extend([0, 1, 0, 6, 2, b'h', b'3', 2, b'h', b'2']);
        rdata.extend([0, 4, 0, 4]);
        rdata.extend(hint);
        rdata.extend([0, 5]);
        rdata.extend((ech.len() as u16).to_be_bytes());
        rdata.extend(ech);
        m.extend([0xc0, 12, 0, 65, 0, 1, 0, 0, 0x01, 0x2c]);
        m.extend((rdata.len() as u16).to_be_bytes());
        m.extend(rdata);
        m
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    /// Build a name in wire form (no compression).
    fn wire_name(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in name.split('.').filter(|l| !l.is_empty()) {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    fn header(id: u16, flags: u16, qd: u16, an: u16) -> Vec<u8> {
        let mut h = Vec::new();
        for v in [id, flags, qd, an, 0, 0] {
            h.extend_from_slice(&v.to_be_bytes());
        }
        h
    }

    fn rr(name: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
        let mut out = name.to_vec();
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(rdata);
        out
    }

    /// A response to "www.Example.com A": CNAME to edge.cdn.net (compressed owner), then
    /// two A records for the CNAME target, plus an unrelated A record that must be ignored.
    fn cname_response() -> Vec<u8> {
        let mut m = header(0x1234, 0x8180, 1, 4);
        m.extend(wire_name("www.Example.com"));
        m.extend_from_slice(&[0, 1, 0, 1]);
        let target = wire_name("edge.cdn.net");
        m.extend(rr(&[0xc0, 12], TYPE_CNAME, 300, &target));
        // Owner "edge.cdn.net" via pointer to the CNAME's rdata (offset: 12 + 17 + 4 + 12).
        let target_off = 12 + 17 + 4 + 12;
        m.extend(rr(&[0xc0, target_off as u8], TYPE_A, 60, &[198, 18, 0, 1]));
        m.extend(rr(&[0xc0, target_off as u8], TYPE_A, 120, &[198, 18, 0, 2]));
        m.extend(rr(&wire_name("other.org"), TYPE_A, 5, &[198, 19, 0, 9]));
        m
    }

    #[test]
    fn cname_chain_maps_addresses_to_the_asked_name() {
        let msg = parse(&cname_response()).unwrap();
        assert!(msg.is_response);
        assert_eq!(msg.id, 0x1234);
        assert_eq!(msg.query_name(), Some("www.example.com"));
        assert_eq!(msg.answers[0].data, RData::Name("edge.cdn.net".into()));
        assert_eq!(msg.answers[1].name, "edge.cdn.net");
        let (ips, ttl) = msg.answer_addresses();
        assert_eq!(
            ips,
            vec![IpAddr::from([198, 18, 0, 1]), IpAddr::from([198, 18, 0, 2])]
        );
        assert_eq!(ttl, Some(60));
    }

    #[test]
    fn record_from_uses_query_and_answer() {
        let answer = parse(&cname_response()).unwrap();
        let ex = Exchange {
            time: 1000,
            client: "10.0.0.2:5353".parse().unwrap(),
            server: "198.18.0.53:53".parse().unwrap(),
            transport: Proto::Udp,
        };
        let rec = record_from(ex, None, Some(&answer)).unwrap();
        assert_eq!(rec.query, "www.example.com");
        assert_eq!(rec.qtype, TYPE_A);
        assert_eq!(rec.rcode, Some(0));
        assert_eq!(
            rec.answers,
            vec!["edge.cdn.net", "198.18.0.1", "198.18.0.2", "198.19.0.9"]
        );
        assert_eq!(rec.answer_ips.len(), 2);
        assert_eq!(rec.ttl, Some(60));
    }

    #[test]
    fn https_record_hints_become_addresses() {
        let mut m = header(7, 0x8180, 1, 1);
        m.extend(wire_name("svc.example"));
        m.extend_from_slice(&TYPE_HTTPS.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        let mut rdata = vec![0, 1, 0]; // priority 1, target "."
        rdata.extend_from_slice(&[0, 1, 0, 3, 2, b'h', b'2']); // alpn=h2
        rdata.extend_from_slice(&[0, 4, 0, 8, 198, 18, 1, 1, 198, 18, 1, 2]); // ipv4hint
        rdata.extend_from_slice(&[
            0, 6, 0, 16, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
        ]);
        m.extend(rr(&[0xc0, 12], TYPE_HTTPS, 30, &rdata));
        let msg = parse(&m).unwrap();
        match &msg.answers[0].data {
            RData::Svcb {
                priority,
                target,
                alpn,
                ..
            } => {
                assert_eq!((*priority, target.as_str()), (1, ""));
                assert_eq!(alpn, &vec!["h2".to_string()]);
            }
            other => panic!("unexpected {other:?}"),
        }
        let (ips, ttl) = msg.answer_addresses();
        assert_eq!(ips.len(), 3);
        assert_eq!(ips[2], "fd00::1".parse::<IpAddr>().unwrap());
        assert_eq!(ttl, Some(30));
        assert_eq!(msg.answers[0].data_text(), "HTTPS 1 .");
    }

    #[test]
    fn https_record_ech_configs_are_read() {
        // Two configs (a key rotation) and one of an unknown version, which is skipped.
        let mut ech =
            build::ech_config_list(&[(0x45, "Cloudflare-ECH.com"), (0x46, "cloudflare-ech.com")]);
        let unknown = [0xfe, 0x0a, 0, 3, 1, 2, 3];
        ech.extend(unknown);
        let total = u16::from_be_bytes([ech[0], ech[1]]) + unknown.len() as u16;
        ech[..2].copy_from_slice(&total.to_be_bytes());
        let msg = parse(&build::https_answer(
            "crypto.cloudflare.com",
            [162, 159, 137, 85],
            &ech,
        ))
        .unwrap();
        let configs = msg.ech_configs();
        assert_eq!(
            configs,
            vec![
                EchConfig {
                    config_id: 0x45,
                    public_name: "cloudflare-ech.com".into()
                },
                EchConfig {
                    config_id: 0x46,
                    public_name: "cloudflare-ech.com".into()
                },
            ]
        );
        let ex = Exchange {
            time: 5,
            client: "10.0.0.2:40000".parse().unwrap(),
            server: "198.18.0.53:53".parse().unwrap(),
            transport: Proto::Udp,
        };
        let rec = record_from(ex, None, Some(&msg)).unwrap();
        assert_eq!(rec.ech_configs, configs);
        assert_eq!(
            rec.answer_ips,
            vec!["162.159.137.85".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn malformed_ech_configs_are_errors_not_panics() {
        let good = build::ech_config_list(&[(7, "public.example")]);
        for cut in 0..good.len() {
            let mut ech = good[..cut].to_vec();
            if cut >= 2 {
                // Keep the outer length consistent with what is left, so the inner ones lie.
                let inner = (cut - 2) as u16;
                ech[..2].copy_from_slice(&inner.to_be_bytes());
            }
            let m = build::https_answer("svc.example", [198, 18, 7, 7], &ech);
            match cut {
                // An empty list (below the spec's minimum) just offers nothing.
                2 => assert_eq!(parse(&m).map(|m| m.ech_configs()), Ok(Vec::new())),
                _ => assert!(parse(&m).is_err(), "cut {cut}"),
            }
        }
        // An empty public_name is not a name.
        let empty_name = build::ech_config_list(&[(7, "")]);
        let m = build::https_answer("svc.example", [198, 18, 7, 7], &empty_name);
        assert!(parse(&m).is_err());
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_errors() {
        let mut m = header(1, 0x0100, 1, 0);
        m.extend_from_slice(&[0xc0, 12]); // points at itself
        m.extend_from_slice(&[0, 1, 0, 1]);
        assert_eq!(
            parse(&m),
            Err(DnsError::BadPointer {
                offset: 12,
                target: 12
            })
        );
        // A label followed by a pointer back to that label: a loop growing the name.
        let mut m = header(1, 0x0100, 1, 0);
        m.extend_from_slice(&[1, b'a', 0xc0, 12]);
        m.extend_from_slice(&[0, 1, 0, 1]);
        assert_eq!(parse(&m), Err(DnsError::TooManyPointers { offset: 12 }));
    }

    #[test]
    fn truncated_and_bad_input_are_errors_not_panics() {
        let full = cname_response();
        for cut in 0..full.len() {
            assert!(parse(&full[..cut]).is_err(), "cut at {cut} parsed");
        }
        let mut m = header(1, 0x0100, 1, 0);
        m.extend_from_slice(&[0x80, 0]);
        assert_eq!(
            parse(&m),
            Err(DnsError::BadLabel {
                offset: 12,
                byte: 0x80
            })
        );
        // An A record with 3 bytes of data is kept as no address.
        let mut m = header(1, 0x8180, 1, 1);
        m.extend(wire_name("a.b"));
        m.extend_from_slice(&[0, 1, 0, 1]);
        m.extend(rr(&[0xc0, 12], TYPE_A, 1, &[1, 2, 3]));
        let msg = parse(&m).unwrap();
        assert_eq!(msg.answers[0].data, RData::Other { len: 3 });
        assert!(msg.answer_addresses().0.is_empty());
        // A CNAME whose name runs past its length is an error.
        let mut m = header(1, 0x8180, 1, 1);
        m.extend(wire_name("a.b"));
        m.extend_from_slice(&[0, 1, 0, 1]);
        m.extend(rr(&[0xc0, 12], TYPE_CNAME, 1, &[3, b'x', b'y']));
        assert!(parse(&m).is_err());
    }

    #[test]
    fn lenient_parse_keeps_question_of_truncated_answer() {
        let full = cname_response();
        let cut = &full[..full.len() - 20];
        let msg = parse_lenient(cut).unwrap();
        assert_eq!(msg.query_name(), Some("www.example.com"));
        assert!(msg.truncated);
        assert_eq!(msg.answers.len(), 3);
    }

    #[test]
    fn tcp_framing_splits_messages_and_keeps_partial_tail() {
        let one = cname_response();
        let mut stream = Vec::new();
        stream.extend_from_slice(&(one.len() as u16).to_be_bytes());
        stream.extend_from_slice(&one);
        stream.extend_from_slice(&(one.len() as u16).to_be_bytes());
        stream.extend_from_slice(&one[..10]);
        let (msgs, used) = split_tcp(&stream);
        assert_eq!(msgs.len(), 1);
        assert_eq!(used, one.len() + 2);
        assert_eq!(
            parse(msgs[0]).unwrap().query_name(),
            Some("www.example.com")
        );
        assert!(parse_tcp(&stream[..used]).is_ok());
        assert!(matches!(
            parse_tcp(&stream[used..]),
            Err(DnsError::TcpLength { .. })
        ));
    }

    #[test]
    fn odd_label_bytes_are_escaped() {
        let mut m = header(1, 0x0100, 1, 0);
        m.extend_from_slice(&[3, b'a', b'.', 0x07, 2, b'C', b'D', 0]);
        m.extend_from_slice(&[0, 1, 0, 1]);
        assert_eq!(parse(&m).unwrap().query_name(), Some("a\\.\\007.cd"));
    }
}
