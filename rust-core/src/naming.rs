//! Naming and classification shared by the live engine and the pcap observer: the TTL-aware
//! IP -> names cache fed by DNS answers, the choice of a flow's hostname, and the Xiaomi catalog
//! and country/ASN classification. (Contract stub: being written.)

use crate::dissect::Inspection;
use crate::flow::{DnsRecord, FlowRecord, Millis};

#[derive(Debug, Default)]
pub struct Namer {}

impl Namer {
    pub fn new() -> Namer {
        Namer {}
    }

    /// Learn the names behind the addresses of a DNS answer.
    pub fn on_dns(&mut self, record: &DnsRecord) {
        let _ = record;
    }

    /// Apply what the dissectors found and, failing that, the DNS cache; then classify.
    /// Call when a flow opens and whenever its inspection changes.
    pub fn name_flow(&self, flow: &mut FlowRecord, inspection: &Inspection, now: Millis) {
        let _ = (flow, inspection, now);
    }
}
