//! The DNS service's message handling: what a query/answer pair says (for the query log and the
//! IP -> names cache), SERVFAIL answers when the upstream fails, and splitting DNS-over-TCP
//! streams into messages. Parsing is `simple-dns`; malformed messages give an error, never a
//! panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::{RData, SVCParam};

/// What one DNS exchange said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub query: String,
    pub qtype: u16,
    /// None when there was no (parsable) answer.
    pub rcode: Option<u8>,
    pub answers: Vec<String>,
    pub answer_ips: Vec<IpAddr>,
    pub ttl: Option<u32>,
}

/// The message id, if `message` is long enough to have one.
pub fn message_id(message: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*message.first()?, *message.get(1)?]))
}

/// Summarize a query and, when one arrived, its answer. Errors name what was malformed.
pub fn summarize(query: &[u8], answer: Option<&[u8]>) -> Result<Summary, String> {
    let question = simple_dns::Packet::parse(query).map_err(|e| format!("malformed DNS query: {e}"))?;
    let mut summary = Summary::default();
    if let Some(q) = question.questions.first() {
        summary.query = q.qname.to_string();
        summary.qtype = u16::from(q.qtype);
    }
    let Some(answer) = answer else {
        return Ok(summary);
    };
    // The rcode's low 4 bits are in the header; parse them from the bytes so a reply that
    // simple-dns rejects still records its rcode.
    summary.rcode = answer.get(3).map(|b| b & 0x0f);
    let Ok(reply) = simple_dns::Packet::parse(answer) else {
        return Ok(summary);
    };
    if summary.query.is_empty()
        && let Some(q) = reply.questions.first()
    {
        summary.query = q.qname.to_string();
        summary.qtype = u16::from(q.qtype);
    }
    for record in &reply.answers {
        summary.ttl = Some(summary.ttl.map_or(record.ttl, |t| t.min(record.ttl)));
        match &record.rdata {
            RData::A(a) => {
                let ip = IpAddr::V4(Ipv4Addr::from(a.address));
                summary.answers.push(ip.to_string());
                summary.answer_ips.push(ip);
            }
            RData::AAAA(a) => {
                let ip = IpAddr::V6(Ipv6Addr::from(a.address));
                summary.answers.push(ip.to_string());
                summary.answer_ips.push(ip);
            }
            RData::CNAME(name) => summary.answers.push(name.0.to_string()),
            RData::HTTPS(https) => add_service(&mut summary, &https.0),
            RData::SVCB(svcb) => add_service(&mut summary, svcb),
            other => summary.answers.push(format!("TYPE {}", u16::from(other.type_code()))),
        }
    }
    Ok(summary)
}

/// An HTTPS/SVCB record: its target, and its address hints for the IP -> names cache.
fn add_service(summary: &mut Summary, svcb: &simple_dns::rdata::SVCB) {
    summary.answers.push(format!("{} {}", svcb.priority, svcb.target));
    for param in svcb.iter_params() {
        match param {
            SVCParam::Ipv4Hint(ips) => {
                summary.answer_ips.extend(ips.iter().map(|ip| IpAddr::V4(Ipv4Addr::from(*ip))))
            }
            SVCParam::Ipv6Hint(ips) => {
                summary.answer_ips.extend(ips.iter().map(|ip| IpAddr::V6(Ipv6Addr::from(*ip))))
            }
            _ => {}
        }
    }
}

/// A SERVFAIL answer to `query`: same id and question, QR and RA set, rcode 2. None if the query
/// is too short to answer.
pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let questions = u16::from_be_bytes([query[4], query[5]]);
    // Echo the question section when there is exactly one (the normal case); otherwise answer
    // with the header only.
    let question_end = if questions == 1 { question_end(query) } else { None };
    let mut reply = query[..question_end.unwrap_or(12)].to_vec();
    reply[2] = 0x80 | (query[2] & 0x79); // QR, keep opcode and RD
    reply[3] = 0x80 | 2; // RA, SERVFAIL
    let qdcount: u16 = if question_end.is_some() { 1 } else { 0 };
    reply[4..6].copy_from_slice(&qdcount.to_be_bytes());
    reply[6..12].fill(0);
    Some(reply)
}

/// Where the first question ends (after QTYPE and QCLASS).
fn question_end(message: &[u8]) -> Option<usize> {
    let mut at = 12;
    loop {
        let len = usize::from(*message.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len & 0xc0 != 0 {
            at += 2;
            break;
        }
        at += 1 + len;
    }
    let end = at + 4;
    (end <= message.len()).then_some(end)
}

/// Collects the messages of one direction of a DNS-over-TCP stream (2-byte length prefix).
#[derive(Debug, Default)]
pub struct StreamSplitter {
    pending: Vec<u8>,
    /// The stream went out of sync or grew past the limit: stop looking.
    failed: bool,
}

const MAX_PENDING: usize = 64 * 1024 + 2;

impl StreamSplitter {
    /// Append stream bytes; complete messages are handed to `on_message`.
    pub fn push(&mut self, data: &[u8], mut on_message: impl FnMut(&[u8])) {
        if self.failed {
            return;
        }
        if self.pending.len() + data.len() > MAX_PENDING * 4 {
            self.failed = true;
            self.pending = Vec::new();
            return;
        }
        self.pending.extend_from_slice(data);
        let mut at = 0;
        while self.pending.len() - at >= 2 {
            let len = usize::from(u16::from_be_bytes([self.pending[at], self.pending[at + 1]]));
            if self.pending.len() - at - 2 < len {
                break;
            }
            on_message(&self.pending[at + 2..at + 2 + len]);
            at += 2 + len;
        }
        self.pending.drain(..at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::rdata::{A, CNAME};
    use simple_dns::{CLASS, Name, Packet, Question, QCLASS, QTYPE, ResourceRecord, TYPE};

    fn query(id: u16, name: &str, ty: TYPE) -> Vec<u8> {
        let mut packet = Packet::new_query(id);
        packet.questions.push(Question::new(
            Name::new_unchecked(name),
            QTYPE::TYPE(ty),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        packet.build_bytes_vec().unwrap()
    }

    fn answer(id: u16, name: &str) -> Vec<u8> {
        let mut packet = Packet::new_reply(id);
        packet.questions.push(Question::new(
            Name::new_unchecked(name),
            QTYPE::TYPE(TYPE::A),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        packet.answers.push(ResourceRecord::new(
            Name::new_unchecked(name),
            CLASS::IN,
            300,
            RData::CNAME(CNAME(Name::new_unchecked("edge.example.net"))),
        ));
        packet.answers.push(ResourceRecord::new(
            Name::new_unchecked("edge.example.net"),
            CLASS::IN,
            60,
            RData::A(A { address: u32::from(Ipv4Addr::new(198, 18, 0, 9)) }),
        ));
        packet.build_bytes_vec().unwrap()
    }

    #[test]
    fn summary_has_name_type_answers_and_min_ttl() {
        let q = query(7, "tracking.miui.com", TYPE::A);
        let a = answer(7, "tracking.miui.com");
        let s = summarize(&q, Some(&a)).unwrap();
        assert_eq!(s.query, "tracking.miui.com");
        assert_eq!(s.qtype, 1);
        assert_eq!(s.rcode, Some(0));
        assert_eq!(s.answers, vec!["edge.example.net".to_string(), "198.18.0.9".to_string()]);
        assert_eq!(s.answer_ips, vec![IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9))]);
        assert_eq!(s.ttl, Some(60));
        let unanswered = summarize(&q, None).unwrap();
        assert_eq!(unanswered.rcode, None);
        assert!(summarize(&[1, 2, 3], None).is_err());
    }

    #[test]
    fn servfail_echoes_id_and_question() {
        let q = query(0xbeef, "example.org", TYPE::AAAA);
        let reply = servfail(&q).unwrap();
        let parsed = Packet::parse(&reply).unwrap();
        assert_eq!(parsed.id(), 0xbeef);
        assert_eq!(parsed.questions[0].qname.to_string(), "example.org");
        assert_eq!(reply[3] & 0x0f, 2);
        assert!(reply[2] & 0x80 != 0);
        assert_eq!(summarize(&q, Some(&reply)).unwrap().rcode, Some(2));
        assert!(servfail(&q[..5]).is_none());
        // A truncated question still yields a header-only SERVFAIL.
        let header_only = servfail(&q[..14]).unwrap();
        assert_eq!(header_only.len(), 12);
    }

    #[test]
    fn splitter_reassembles_length_prefixed_messages() {
        let mut splitter = StreamSplitter::default();
        let mut seen = Vec::new();
        let stream = [&[0u8, 3][..], b"abc", &[0, 1], b"z"].concat();
        for chunk in stream.chunks(2) {
            splitter.push(chunk, |m| seen.push(m.to_vec()));
        }
        assert_eq!(seen, vec![b"abc".to_vec(), b"z".to_vec()]);
    }
}
