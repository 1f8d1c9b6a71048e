//! The DNS of a capture's flows, followed by the engine's own rules: each DNS flow pairs its
//! queries and answers in an engine [`Pairing`], as the live relay's flows do, so a replay logs
//! the rows the capture's live run logged. A replay gives up on a query [`GIVE_UP_AFTER`] it was
//! sent (`Mode::dns_give_up`: the DNS timeout and a grace, so the engine's own SERVFAIL at the
//! timeout, captured a moment later, still answers it), checked when the flow's next DNS
//! message arrives and at the observer's sweeps; it reads both directions of a TCP flow from
//! the capture.

use std::time::Duration;

use crate::engine::dns::{DnsExchange, Pairing, StreamSplitter};
use crate::engine::report::{Mode, Now};
use crate::flow::{Direction, FlowKey};
use crate::flow_rules;

/// How long after it was sent a replay gives up on a query (`Mode::dns_give_up`).
pub const GIVE_UP_AFTER: Duration = Mode::Observe.dns_give_up(flow_rules::DNS_ANSWER_TIMEOUT);

/// One DNS flow of the capture.
#[derive(Default)]
pub struct FlowDns {
    pairing: Pairing,
    /// DNS over TCP: each direction split into messages (the live relay's splitter).
    streams: Option<[StreamSplitter; 2]>,
}

impl FlowDns {
    /// The DNS state of a new flow with `key`; None when it carries no DNS.
    pub fn of(key: &FlowKey) -> Option<FlowDns> {
        is_dns(key).then(|| FlowDns {
            pairing: Pairing::default(),
            streams: (key.proto == crate::flow::Proto::Tcp).then(Default::default),
        })
    }

    /// One datagram of the flow: the exchanges it (or the time it came at) finished.
    pub fn on_datagram(&mut self, payload: &[u8], now: Now) -> Vec<DnsExchange> {
        let mut finished = self.overdue(now);
        finished.extend(self.pairing.message(payload, now));
        finished
    }

    /// New in-order bytes of a TCP flow going `dir`: the exchanges they finished.
    pub fn on_stream(&mut self, dir: Direction, bytes: &[u8], now: Now) -> Vec<DnsExchange> {
        let mut finished = self.overdue(now);
        let Some(streams) = &mut self.streams else {
            return finished;
        };
        let pairing = &mut self.pairing;
        streams[dir as usize].push(bytes, |m| finished.extend(pairing.message(m, now)));
        finished
    }

    /// The queries a replay gives up on by `now`, unanswered.
    pub fn overdue(&mut self, now: Now) -> Vec<DnsExchange> {
        self.pairing.overdue(now.mono, GIVE_UP_AFTER)
    }

    /// The flow ended (or the capture did): its waiting queries, unanswered.
    pub fn drain(&mut self) -> Vec<DnsExchange> {
        self.pairing.drain()
    }

    /// The flow's exchange is over (`flow_rules::dns_exchange_over`).
    pub fn exchange_over(&self) -> bool {
        self.pairing.exchange_over()
    }
}

/// True for flows that carry DNS: port 53 over UDP or TCP, as live
/// (`flow_rules::carries_dns`), or from port 53 (a flow whose client was guessed wrong: its
/// start is not in the capture).
pub fn is_dns(key: &FlowKey) -> bool {
    let reversed = FlowKey {
        src: key.dst,
        dst: key.src,
        ..*key
    };
    flow_rules::carries_dns(key) || flow_rules::carries_dns(&reversed)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::flow::{DnsRecord, Millis, Proto};

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

    fn key(proto: Proto) -> FlowKey {
        FlowKey {
            proto,
            src: "198.18.0.2:40000".parse().unwrap(),
            dst: "198.18.0.1:53".parse().unwrap(),
        }
    }

    /// Capture time `ms` on a clock that starts at 0.
    struct Clock(Instant);

    impl Clock {
        fn at(&self, ms: Millis) -> Now {
            Now {
                mono: self.0 + Duration::from_millis(ms as u64),
                ms,
            }
        }
    }

    fn records(exchanges: Vec<DnsExchange>, proto: Proto) -> Vec<DnsRecord> {
        exchanges
            .iter()
            .filter_map(|e| crate::engine::dns::record(e, &key(proto)))
            .collect()
    }

    #[test]
    fn pairs_queries_and_answers_and_a_retransmission_is_its_first_copy() {
        let clock = Clock(Instant::now());
        let mut flow = FlowDns::of(&key(Proto::Udp)).unwrap();
        let q = query(7, "tracking.intl.miui.com");
        assert!(flow.on_datagram(&q, clock.at(100)).is_empty());
        assert!(flow.on_datagram(&q, clock.at(1_100)).is_empty());
        assert!(!flow.exchange_over());
        let a = answer(7, "tracking.intl.miui.com", [161, 117, 97, 14]);
        let recs = records(flow.on_datagram(&a, clock.at(1_130)), Proto::Udp);
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(
            (r.time, r.query.as_str(), r.qtype, r.rcode, r.ttl),
            (100, "tracking.intl.miui.com", 1, Some(0), Some(60))
        );
        assert_eq!(
            r.answer_ips,
            vec!["161.117.97.14".parse::<std::net::IpAddr>().unwrap()]
        );
        assert!(flow.exchange_over());
        assert!(flow.drain().is_empty());
    }

    #[test]
    fn a_reply_at_the_timeout_still_answers_its_query_and_a_later_one_is_alone() {
        let clock = Clock(Instant::now());
        let timeout = flow_rules::DNS_ANSWER_TIMEOUT.as_millis() as Millis;
        let mut flow = FlowDns::of(&key(Proto::Udp)).unwrap();
        flow.on_datagram(&query(1, "a.example"), clock.at(0));
        // The engine's SERVFAIL at the timeout, captured a few milliseconds later.
        let mut servfail = query(1, "a.example");
        servfail[2] = 0x81;
        servfail[3] = 0x82;
        let recs = records(
            flow.on_datagram(&servfail, clock.at(timeout + 3)),
            Proto::Udp,
        );
        assert_eq!((recs.len(), recs[0].time, recs[0].rcode), (1, 0, Some(2)));

        flow.on_datagram(&query(2, "b.example"), clock.at(10_000));
        let late = GIVE_UP_AFTER.as_millis() as Millis + 10_000;
        assert!(flow.overdue(clock.at(late - 1)).is_empty());
        let answer_b = answer(2, "b.example", [198, 18, 0, 9]);
        let recs = records(flow.on_datagram(&answer_b, clock.at(late)), Proto::Udp);
        assert_eq!(
            recs.len(),
            2,
            "the query given up on, then the answer alone"
        );
        assert_eq!((recs[0].time, recs[0].rcode), (10_000, None));
        assert_eq!((recs[1].time, recs[1].rcode), (late, Some(0)));
        assert!(flow.on_datagram(b"\x00garbage", clock.at(late)).is_empty());
    }

    #[test]
    fn tcp_stream_framing_in_both_directions() {
        let clock = Clock(Instant::now());
        let mut flow = FlowDns::of(&key(Proto::Tcp)).unwrap();
        let q = query(5, "f-droid.org");
        let mut up = (q.len() as u16).to_be_bytes().to_vec();
        up.extend(&q);
        assert!(
            flow.on_stream(Direction::Up, &up[..6], clock.at(0))
                .is_empty()
        );
        assert!(
            flow.on_stream(Direction::Up, &up[6..], clock.at(0))
                .is_empty()
        );
        let a = answer(5, "f-droid.org", [198, 18, 0, 7]);
        let mut down = (a.len() as u16).to_be_bytes().to_vec();
        down.extend(&a);
        let recs = records(
            flow.on_stream(Direction::Down, &down, clock.at(1)),
            Proto::Tcp,
        );
        assert_eq!((recs.len(), recs[0].transport), (1, Proto::Tcp));
        assert!(
            FlowDns::of(&FlowKey {
                dst: "198.18.0.1:853".parse().unwrap(),
                ..key(Proto::Tcp)
            })
            .is_none()
        );
    }
}
