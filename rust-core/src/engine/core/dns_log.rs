//! The query log: every DNS exchange the engine relays (UDP or TCP to port 53, its DNS
//! service's and apps' own resolvers' alike, as a replay logs them) becomes a `DnsRecord`
//! carrying its flow's owner, and feeds the IP -> names cache. Parsed by
//! `dissect::dns`, as the pcap observer does, so live and replayed captures give the same rows.
//! It lives on `Core` because a record needs its flow's owner and an answer may name any flow.

use std::net::IpAddr;

use crate::flow::{FlowId, FlowKey};

use super::Core;
use crate::engine::dns::{self, DnsExchange};
use crate::engine::host::Host;
use crate::engine::report::Now;

impl<H: Host> Core<H> {
    /// Log the exchanges a flow finished, in order, each with the flow's key and owner, and
    /// feed the IP -> names cache.
    pub(super) fn record_exchanges(&mut self, id: FlowId, exchanges: Vec<DnsExchange>, now: Now) {
        for exchange in exchanges {
            self.record_dns(id, &exchange, now);
        }
    }

    fn record_dns(&mut self, flow_id: FlowId, exchange: &DnsExchange, now: Now) {
        let Some(flow) = self.flows.get_mut(&flow_id) else {
            return;
        };
        let owner_pending = !flow.common().owner_done;
        let flow = &flow.common().record;
        let Some(mut record) = dns::record(exchange, &flow.key) else {
            log::debug!("DNS exchange of flow {flow_id} has no readable question");
            return;
        };
        record.uid = flow.uid;
        record.flow_id = Some(flow_id);
        let answered = record.answer_ips.clone();
        if record.uid.is_none() && owner_pending {
            self.reporter.dns_awaiting_owner(record, now.ms);
        } else {
            self.reporter.dns(record);
        }
        self.name_late_answer(&answered, now.ms);
    }

    /// An answer that arrives after a connection to one of its addresses opened (an address
    /// the app had cached, a resolver racing the connect) names that connection if nothing in
    /// the flow did; the update reaches the store, which upserts whole records.
    fn name_late_answer(&mut self, answered: &[IpAddr], now: crate::flow::Millis) {
        if answered.is_empty() {
            return;
        }
        for flow in self.flows.values_mut() {
            let common = flow.common();
            if common.record.hostname.is_none() && answered.contains(&common.record.key.dst.ip()) {
                self.reporter.rename(common, now);
                if common.record.hostname.is_some() {
                    self.reporter.changed(common);
                }
            }
        }
    }

    /// Log a query that never reached the upstream because no socket to it could be opened
    /// (`answer`: the SERVFAIL our DNS service gave it). There is no flow (so no owner), but
    /// the app's attempt is evidence too.
    pub(super) fn record_unsent_dns(
        &mut self,
        key: FlowKey,
        query: &[u8],
        answer: Option<Vec<u8>>,
        now: Now,
    ) {
        let exchange = DnsExchange::unanswered(now.ms, query).answered_by(answer);
        match dns::record(&exchange, &key) {
            Some(record) => self.reporter.dns(record),
            None => log::debug!("unsent DNS query from {} has no readable question", key.src),
        }
    }
}
