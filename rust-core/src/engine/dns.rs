//! DNS as the engine and a replay both follow it: one [`Pairing`] per DNS flow matches answers
//! to queries by id and question, keeps a retransmission as the query it repeats, and says when
//! a query waited too long and when the flow's exchange is over; [`record`] turns each finished
//! exchange into a `DnsRecord`. The live relay (UDP and TCP, its DNS service's flows and apps'
//! own resolvers') and `pcap::Observer` all pair through it, so they log the same rows.
//! Here too: the DNS service's SERVFAIL answers when the upstream fails, and splitting
//! DNS-over-TCP streams into messages as they arrive. What an exchange says (names, addresses,
//! TTLs) is parsed by `dissect::dns`.

use std::time::{Duration, Instant};

use crate::dissect::dns::{self as dissect, DnsMessage};
use crate::flow::{DnsRecord, FlowKey, Millis};
use crate::flow_rules;

use super::report::Now;

/// Queries one flow may have waiting; beyond this the oldest is given up on at once.
pub const MAX_WAITING: usize = 64;

/// One DNS exchange, finished, for the query log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsExchange {
    /// When its query was first sent; an answer no query matched has its own time.
    pub time: Millis,
    /// Empty for an answer no waiting query matched (logged by itself).
    pub query: Vec<u8>,
    /// None: no answer came in time (or the flow ended first).
    pub answer: Option<Vec<u8>>,
    /// The messages as [`Pairing::message`] read them, so [`record`] does not parse them again.
    read_query: Option<DnsMessage>,
    read_answer: Option<DnsMessage>,
}

impl DnsExchange {
    /// `query`, sent at `time`, got no answer (or `answer`, which no upstream sent).
    pub fn unanswered(time: Millis, query: &[u8]) -> DnsExchange {
        DnsExchange {
            time,
            query: query.to_vec(),
            answer: None,
            read_query: None,
            read_answer: None,
        }
    }

    /// The exchange with `answer` as its reply (the DNS service's SERVFAIL).
    pub fn answered_by(mut self, answer: Option<Vec<u8>>) -> DnsExchange {
        self.answer = answer;
        self.read_answer = None;
        self
    }
}

struct Waiting {
    id: u16,
    query: Vec<u8>,
    read: Option<DnsMessage>,
    sent: Now,
}

impl Waiting {
    /// `message` (a query or an answer) has this query's id and question. Two queries may share
    /// an id (some resolvers send A and AAAA with one), so an answer is matched by both.
    fn same_exchange(&self, id: u16, message: &[u8]) -> bool {
        self.id == id && same_question(&self.query, message)
    }

    fn unanswered(self) -> DnsExchange {
        DnsExchange {
            time: self.sent.ms,
            query: self.query,
            answer: None,
            read_query: self.read,
            read_answer: None,
        }
    }
}

/// The queries of one DNS flow still waiting for their answers, and whether the flow's exchange
/// is over (`flow_rules::dns_exchange_over`).
#[derive(Default)]
pub struct Pairing {
    waiting: Vec<Waiting>,
    /// A reply reached the client: a response was read, or the DNS service failed a query.
    replied: bool,
}

impl Pairing {
    /// One message of the flow, a query or a response by its QR bit as a replay reads it
    /// (`dissect::dns::parse_lenient`); anything else is not DNS and is passed over. Returns
    /// the exchanges it finished: its answer's, or the oldest query it pushed out of the bound.
    pub fn message(&mut self, message: &[u8], now: Now) -> Option<DnsExchange> {
        let read = dissect::parse_lenient(message).ok()?;
        if read.is_response {
            self.answer_read(message, Some(read), now)
        } else {
            self.query_read(message, Some(read), now)
        }
    }

    /// `query` went out at `now`. A retransmission (same id and question) is the query it
    /// repeats: one answer does for both, and the exchange keeps the first copy's time. Returns
    /// the oldest query when more than [`MAX_WAITING`] wait, for the caller to give up on.
    pub fn query(&mut self, query: &[u8], now: Now) -> Option<DnsExchange> {
        self.query_read(query, None, now)
    }

    fn query_read(
        &mut self,
        query: &[u8],
        read: Option<DnsMessage>,
        now: Now,
    ) -> Option<DnsExchange> {
        let id = message_id(query)?;
        if self.waiting.iter().any(|q| q.same_exchange(id, query)) {
            return None;
        }
        self.waiting.push(Waiting {
            id,
            query: query.to_vec(),
            read,
            sent: now,
        });
        (self.waiting.len() > MAX_WAITING).then(|| self.waiting.remove(0).unanswered())
    }

    /// `answer` came back: the exchange of the query it answers (the one with its id and
    /// question, else, for an upstream that rewrote the question, the first with its id), or,
    /// when no query waits for it, the answer by itself if it reads as a DNS response.
    pub fn answer(&mut self, answer: &[u8], now: Now) -> Option<DnsExchange> {
        self.answer_read(answer, dissect::parse_lenient(answer).ok(), now)
    }

    /// [`Self::answer`] of an answer already read (None: it does not read as DNS).
    fn answer_read(
        &mut self,
        answer: &[u8],
        read: Option<DnsMessage>,
        now: Now,
    ) -> Option<DnsExchange> {
        let response = read.as_ref().is_some_and(|m| m.is_response);
        self.replied |= response;
        let id = message_id(answer)?;
        let at = self
            .waiting
            .iter()
            .position(|q| q.same_exchange(id, answer))
            .or_else(|| self.waiting.iter().position(|q| q.id == id));
        let (time, query, read_query) = match at {
            Some(at) => {
                let query = self.waiting.remove(at);
                (query.sent.ms, query.query, query.read)
            }
            None if response => (now.ms, Vec::new(), None),
            None => return None,
        };
        Some(DnsExchange {
            time,
            query,
            answer: Some(answer.to_vec()),
            read_query,
            read_answer: read,
        })
    }

    /// The client got a reply that no upstream sent (the DNS service's SERVFAIL).
    pub fn replied(&mut self) {
        self.replied = true;
    }

    /// The queries that waited `timeout` or longer by `now`, taken off the list, unanswered.
    /// A query given up on does not end the exchange: only a reply does.
    pub fn overdue(&mut self, now: Instant, timeout: Duration) -> Vec<DnsExchange> {
        if !self
            .waiting
            .iter()
            .any(|q| now.saturating_duration_since(q.sent.mono) >= timeout)
        {
            return Vec::new();
        }
        let (overdue, waiting): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|q| now.saturating_duration_since(q.sent.mono) >= timeout);
        self.waiting = waiting;
        overdue.into_iter().map(Waiting::unanswered).collect()
    }

    /// When the first waiting query will have waited `timeout`.
    pub fn deadline(&self, timeout: Duration) -> Option<Instant> {
        self.waiting.iter().map(|q| q.sent.mono + timeout).min()
    }

    /// The flow ends: every query still waiting, unanswered.
    pub fn drain(&mut self) -> Vec<DnsExchange> {
        self.waiting.drain(..).map(Waiting::unanswered).collect()
    }

    /// Every query the flow carried has had its reply, and one did come: the exchange is over.
    pub fn exchange_over(&self) -> bool {
        flow_rules::dns_exchange_over(self.replied, self.waiting.len())
    }
}

/// `message` read as a replay reads DNS (`dissect::dns::parse_lenient`): Some(is_response),
/// None when it is not DNS.
pub fn read_as_dns(message: &[u8]) -> Option<bool> {
    dissect::parse_lenient(message).ok().map(|m| m.is_response)
}

/// The query log's record of `exchange` on the flow `key` (client `key.src`); uid and flow id
/// are the caller's. None when neither message has a readable question.
pub fn record(exchange: &DnsExchange, key: &FlowKey) -> Option<DnsRecord> {
    let ex = dissect::Exchange {
        time: exchange.time,
        client: key.src,
        server: key.dst,
        transport: key.proto,
    };
    let answer = exchange.answer.as_deref();
    // Parsed here only when `Pairing` did not read the message already.
    let reread = |read: &Option<DnsMessage>, message: Option<&[u8]>| match read {
        Some(_) => None,
        None => message.and_then(|m| dissect::parse_lenient(m).ok()),
    };
    let query = reread(&exchange.read_query, Some(&exchange.query));
    let parsed_answer = reread(&exchange.read_answer, answer);
    let mut record = dissect::record_from(
        ex,
        exchange.read_query.as_ref().or(query.as_ref()),
        exchange.read_answer.as_ref().or(parsed_answer.as_ref()),
    )?;
    if record.rcode.is_none() {
        // An answer we could not parse still says how it ended.
        record.rcode = answer.and_then(|a| a.get(3)).map(|b| b & 0x0f);
    }
    Some(record)
}

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
