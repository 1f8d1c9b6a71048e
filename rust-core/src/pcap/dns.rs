//! The DNS log of a capture: pairs each query with its answer (by flow and message id) and turns
//! the pair into a [`DnsRecord`], as the live engine's DNS service logs what it forwards.
//! A capture may hold only one side: a lone answer is logged by itself, a query that gets no
//! answer within [`ANSWER_TIMEOUT_MS`] is logged without one.

use crate::dissect::dns::{self, DnsMessage, Exchange};
use crate::flow::{DnsRecord, FlowId, FlowKey, FlowTable, Millis};

/// A query still unanswered after this long is logged as unanswered.
pub const ANSWER_TIMEOUT_MS: Millis = crate::flow_rules::DNS_ANSWER_TIMEOUT.as_millis() as Millis;
/// Queries waiting for answers, at most; the oldest are logged unanswered beyond it.
const MAX_PENDING: usize = 4096;

struct Pending {
    time: Millis,
    key: FlowKey,
    query: DnsMessage,
}

impl Pending {
    /// `message` asks this query's first question. Two queries may share an id (some resolvers
    /// send A and AAAA with one), so answers are matched by id and question, as live.
    fn same_question(&self, message: &DnsMessage) -> bool {
        match (self.query.questions.first(), message.questions.first()) {
            (Some(a), Some(b)) => a.name == b.name && a.qtype == b.qtype && a.qclass == b.qclass,
            (a, b) => a.is_none() && b.is_none(),
        }
    }
}

/// Where one flow's exchange stands, for `flow_rules::dns_exchange_over`.
#[derive(Default)]
struct FlowExchange {
    waiting: usize,
    /// A response was seen on the flow.
    answered: bool,
}

#[derive(Default)]
pub struct DnsTracker {
    /// Queries by flow and id; more than one when queries share an id.
    pending: FlowTable<(FlowId, u16), Vec<Pending>>,
    waiting: usize,
    flows: FlowTable<FlowId, FlowExchange>,
}

fn exchange(time: Millis, key: FlowKey) -> Exchange {
    Exchange {
        time,
        client: key.src,
        server: key.dst,
        transport: key.proto,
    }
}

impl DnsTracker {
    /// One DNS message of flow `flow` (whose client is `key.src`) seen at `now`; returns the
    /// records completed by it.
    pub fn on_message(
        &mut self,
        now: Millis,
        flow: FlowId,
        key: FlowKey,
        message: &[u8],
    ) -> Vec<DnsRecord> {
        let Ok(msg) = dns::parse_lenient(message) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if !msg.is_response {
            if self.waiting >= MAX_PENDING {
                out.extend(self.expire(Millis::MAX));
            }
            let queries = self.pending.entry((flow, msg.id)).or_default();
            // A retransmitted query keeps the first one's time.
            if !queries.iter().any(|p| p.same_question(&msg)) {
                queries.push(Pending {
                    time: now,
                    key,
                    query: msg,
                });
                self.waiting += 1;
                self.flows.entry(flow).or_default().waiting += 1;
            }
            return out;
        }
        self.flows.entry(flow).or_default().answered = true;
        let record = match self.take(flow, &msg) {
            Some(p) => dns::record_from(exchange(p.time, p.key), Some(&p.query), Some(&msg)),
            None => dns::record_from(exchange(now, key), None, Some(&msg)),
        };
        out.extend(record);
        out
    }

    /// The query `answer` answers, off the pending list: the one with its id and question,
    /// else (an upstream that rewrote the question) the first with its id.
    fn take(&mut self, flow: FlowId, answer: &DnsMessage) -> Option<Pending> {
        let queries = self.pending.get_mut(&(flow, answer.id))?;
        let at = queries
            .iter()
            .position(|p| p.same_question(answer))
            .unwrap_or(0);
        let taken = (at < queries.len()).then(|| queries.remove(at));
        if queries.is_empty() {
            self.pending.remove(&(flow, answer.id));
        }
        if taken.is_some() {
            self.unwait(flow);
        }
        taken
    }

    fn unwait(&mut self, flow: FlowId) {
        self.waiting = self.waiting.saturating_sub(1);
        if let Some(exchange) = self.flows.get_mut(&flow) {
            exchange.waiting = exchange.waiting.saturating_sub(1);
        }
    }

    /// UDP flow `flow`'s DNS exchange is over (`flow_rules::dns_exchange_over`): it saw an
    /// answer and no query of it still waits.
    pub fn exchange_over(&self, flow: FlowId) -> bool {
        self.flows
            .get(&flow)
            .is_some_and(|f| crate::flow_rules::dns_exchange_over(f.answered, f.waiting))
    }

    /// Flow `flow` ended: its exchange state goes (its waiting queries are still logged when
    /// they expire).
    pub fn forget(&mut self, flow: FlowId) {
        self.flows.remove(&flow);
    }

    /// Queries of TCP flows arrive in a stream: whole length-prefixed messages are taken from
    /// the front of `buf` and handed to [`Self::on_message`].
    pub fn on_tcp_bytes(
        &mut self,
        now: Millis,
        flow: FlowId,
        key: FlowKey,
        buf: &mut Vec<u8>,
    ) -> Vec<DnsRecord> {
        let (messages, used) = dns::split_tcp(buf);
        let mut out = Vec::new();
        for m in messages {
            out.extend(self.on_message(now, flow, key, m));
        }
        buf.drain(..used);
        out
    }

    /// Queries unanswered for [`ANSWER_TIMEOUT_MS`] by `now`, logged without an answer.
    pub fn expire(&mut self, now: Millis) -> Vec<DnsRecord> {
        let mut expired: Vec<(FlowId, Pending)> = Vec::new();
        self.pending.retain(|&(flow, _), queries| {
            let (gone, kept) = std::mem::take(queries)
                .into_iter()
                .partition(|p| now.saturating_sub(p.time) >= ANSWER_TIMEOUT_MS);
            *queries = kept;
            expired.extend(gone.into_iter().map(|p: Pending| (flow, p)));
            !queries.is_empty()
        });
        for (flow, _) in &expired {
            self.unwait(*flow);
        }
        expired.sort_by_key(|(_, p)| p.time);
        expired
            .iter()
            .filter_map(|(_, p)| dns::record_from(exchange(p.time, p.key), Some(&p.query), None))
            .collect()
    }

    /// Every query still waiting (the capture ended), logged without an answer.
    pub fn drain(&mut self) -> Vec<DnsRecord> {
        self.expire(Millis::MAX)
    }
}

/// True for flows the tracker should see: DNS on port 53 over UDP or TCP, as live
/// (`flow_rules::carries_dns`), or from port 53 (a flow whose client was guessed wrong: its
/// start is not in the capture).
pub fn is_dns(key: &FlowKey) -> bool {
    let reversed = FlowKey {
        src: key.dst,
        dst: key.src,
        ..*key
    };
    crate::flow_rules::carries_dns(key) || crate::flow_rules::carries_dns(&reversed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Proto;

    fn query(id: u16, name: &str) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend(label.as_bytes());
        }
        m.extend([0, 0, 1, 0, 1]);
        m
    }

    fn answer(id: u16, name: &str, ip: [u8; 4]) -> Vec<u8> {
        let mut m = query(id, name);
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 1; // one answer
        m.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        m.extend(ip);
        m
    }

    fn key() -> FlowKey {
        FlowKey {
            proto: Proto::Udp,
            src: "198.18.0.2:40000".parse().unwrap(),
            dst: "198.18.0.1:53".parse().unwrap(),
        }
    }

    #[test]
    fn pairs_queries_and_answers() {
        let mut t = DnsTracker::default();
        assert!(
            t.on_message(100, 1, key(), &query(7, "tracking.intl.miui.com"))
                .is_empty()
        );
        let recs = t.on_message(
            130,
            1,
            key(),
            &answer(7, "tracking.intl.miui.com", [161, 117, 97, 14]),
        );
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(
            (r.time, r.query.as_str(), r.qtype, r.rcode),
            (100, "tracking.intl.miui.com", 1, Some(0))
        );
        assert_eq!(
            r.answer_ips,
            vec!["161.117.97.14".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(r.ttl, Some(60));
        assert!(t.drain().is_empty());
    }

    #[test]
    fn unanswered_and_lone_answers() {
        let mut t = DnsTracker::default();
        t.on_message(0, 1, key(), &query(1, "a.example"));
        assert!(t.expire(ANSWER_TIMEOUT_MS - 1).is_empty());
        let lost = t.expire(ANSWER_TIMEOUT_MS);
        assert_eq!((lost.len(), lost[0].rcode), (1, None));
        let lone = t.on_message(9, 2, key(), &answer(3, "b.example", [198, 18, 0, 9]));
        assert_eq!((lone.len(), lone[0].time), (1, 9));
        assert!(t.on_message(9, 2, key(), b"\x00garbage").is_empty());
    }

    #[test]
    fn tcp_stream_framing() {
        let mut t = DnsTracker::default();
        let k = FlowKey {
            proto: Proto::Tcp,
            ..key()
        };
        let q = query(5, "f-droid.org");
        let mut buf = (q.len() as u16).to_be_bytes().to_vec();
        buf.extend(&q[..4]);
        assert!(t.on_tcp_bytes(0, 3, k, &mut buf).is_empty());
        buf.extend(&q[4..]);
        assert!(t.on_tcp_bytes(0, 3, k, &mut buf).is_empty());
        assert!(buf.is_empty());
        let a = answer(5, "f-droid.org", [198, 18, 0, 7]);
        let mut down = (a.len() as u16).to_be_bytes().to_vec();
        down.extend(&a);
        let recs = t.on_tcp_bytes(1, 3, k, &mut down);
        assert_eq!((recs.len(), recs[0].transport), (1, Proto::Tcp));
    }
}
