//! The DNS service's own message handling: matching answers to queries by id, SERVFAIL answers
//! when the upstream fails, and splitting DNS-over-TCP streams into messages as they arrive.
//! What an exchange says (the query log, the IP -> names cache) is parsed by `dissect::dns`.

/// The message id, if `message` is long enough to have one.
pub fn message_id(message: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*message.first()?, *message.get(1)?]))
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
    let question_end = if questions == 1 {
        question_end(query)
    } else {
        None
    };
    let mut reply = query[..question_end.unwrap_or(12)].to_vec();
    reply[2] = 0x80 | (query[2] & 0x79); // QR, keep opcode and RD
    reply[3] = 0x80 | 2; // RA, SERVFAIL
    let qdcount: u16 = if question_end.is_some() { 1 } else { 0 };
    reply[4..6].copy_from_slice(&qdcount.to_be_bytes());
    reply[6..12].fill(0);
    Some(reply)
}

/// `a` and `b` (a query and its answer, or two queries) ask the same first question: the name
/// compared without regard to ASCII case (resolvers may randomise it, 0x20 encoding), type and
/// class exactly. False when either has no readable question.
pub fn same_question(a: &[u8], b: &[u8]) -> bool {
    match (question_end(a), question_end(b)) {
        (Some(end_a), Some(end_b)) if end_a == end_b => {
            let name_end = end_a - 4;
            a[12..name_end].eq_ignore_ascii_case(&b[12..name_end])
                && a[name_end..end_a] == b[name_end..end_b]
        }
        _ => false,
    }
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
        // The framing the pcap observer uses too.
        let (messages, used) = crate::dissect::dns::split_tcp(&self.pending);
        for message in messages {
            on_message(message);
        }
        self.pending.drain(..used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::{CLASS, Name, Packet, QCLASS, QTYPE, Question, TYPE};

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

    #[test]
    fn servfail_echoes_id_and_question() {
        let q = query(0xbeef, "example.org", TYPE::AAAA);
        let reply = servfail(&q).unwrap();
        let parsed = Packet::parse(&reply).unwrap();
        assert_eq!(parsed.id(), 0xbeef);
        assert_eq!(parsed.questions[0].qname.to_string(), "example.org");
        assert_eq!(reply[3] & 0x0f, 2);
        assert!(reply[2] & 0x80 != 0);
        assert_eq!(crate::dissect::dns::parse(&reply).unwrap().rcode, 2);
        assert!(servfail(&q[..5]).is_none());
        // A truncated question still yields a header-only SERVFAIL.
        let header_only = servfail(&q[..14]).unwrap();
        assert_eq!(header_only.len(), 12);
    }

    #[test]
    fn questions_match_by_name_in_any_case_and_exact_type() {
        let a = query(1, "Example.ORG", TYPE::A);
        assert!(same_question(&a, &query(2, "example.org", TYPE::A)));
        assert!(!same_question(&a, &query(1, "example.org", TYPE::AAAA)));
        assert!(!same_question(&a, &query(1, "example.net", TYPE::A)));
        assert!(!same_question(&a, &a[..a.len() - 1]));
        assert!(!same_question(&a[..11], &a[..11]));
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
