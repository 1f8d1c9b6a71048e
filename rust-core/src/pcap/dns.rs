//! The DNS log of a capture: pairs each query with its answer (by flow and message id) and turns
//! the pair into a [`DnsRecord`], as the live engine's DNS service logs what it forwards.
//! A capture may hold only one side: a lone answer is logged by itself, a query that gets no
//! answer within [`ANSWER_TIMEOUT_MS`] is logged without one.

use crate::dissect::dns::{self, DnsMessage, Exchange};
use crate::flow::{DnsRecord, FlowId, FlowKey, FlowTable, Millis, Proto};

/// A query still unanswered after this long is logged as unanswered.
pub const ANSWER_TIMEOUT_MS: Millis = crate::flow_rules::DNS_ANSWER_TIMEOUT.as_millis() as Millis;
/// Queries waiting for answers, at most; the oldest are logged unanswered beyond it.
const MAX_PENDING: usize = 4096;

struct Pending {
    time: Millis,
    key: FlowKey,
    query: DnsMessage,
}

#[derive(Default)]
pub struct DnsTracker {
    pending: FlowTable<(FlowId, u16), Pending>,
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
            if self.pending.len() >= MAX_PENDING {
                out.extend(self.expire(Millis::MAX));
            }
            // A retransmitted query keeps the first one's time.
            self.pending.entry((flow, msg.id)).or_insert(Pending {
                time: now,
                key,
                query: msg,
            });
            return out;
        }
        let record = match self.pending.remove(&(flow, msg.id)) {
            Some(p) => dns::record_from(exchange(p.time, p.key), Some(&p.query), Some(&msg)),
            None => dns::record_from(exchange(now, key), None, Some(&msg)),
        };
        out.extend(record);
        out
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
        let mut expired: Vec<Pending> = Vec::new();
        self.pending.retain(|_, p| {
            if now.saturating_sub(p.time) >= ANSWER_TIMEOUT_MS {
                expired.push(Pending {
                    time: p.time,
                    key: p.key,
                    query: p.query.clone(),
                });
                false
            } else {
                true
            }
        });
        expired.sort_by_key(|p| p.time);
        expired
            .iter()
            .filter_map(|p| dns::record_from(exchange(p.time, p.key), Some(&p.query), None))
            .collect()
    }

    /// Every query still waiting (the capture ended), logged without an answer.
    pub fn drain(&mut self) -> Vec<DnsRecord> {
        self.expire(Millis::MAX)
    }
}

/// True for flows the tracker should see: DNS on port 53 over UDP or TCP.
pub fn is_dns(key: &FlowKey) -> bool {
    matches!(key.proto, Proto::Udp | Proto::Tcp) && (key.dst.port() == 53 || key.src.port() == 53)
}

#[cfg(test)]
mod tests {
    use super::*;

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
