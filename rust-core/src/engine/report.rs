//! What every flow shares whatever its protocol (its record, its dissector, its activity
//! clock), and the reporter that turns flow changes into events: one `Event::Flow` when a flow
//! opens, updates at most once a second while it changes, and one `Event::FlowClosed`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Instant;

use crate::dissect::{DeviceScan, Inspector};
use crate::flow::{CloseReason, Direction, DnsRecord, Event, FlowId, FlowKey, FlowRecord, Millis};
use crate::naming::Namer;

use super::EngineStats;

/// The loop's clock, read once per iteration: monotonic for timers, wall clock for records.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub mono: Instant,
    pub ms: Millis,
}

impl Now {
    pub fn read() -> Now {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or(0);
        Now {
            mono: Instant::now(),
            ms,
        }
    }
}

/// Minimum time between two update events of one flow.
const UPDATE_INTERVAL_MS: Millis = 1000;

/// Closed flows still waiting for their owner, kept so a late answer lands (bounded).
const LATE_OWNER_FLOWS: usize = 1024;
/// How long a DNS record waits for its flow's owner before it is logged without one. The query
/// log is inserted, not upserted, so the record waits instead of being sent twice.
const DNS_OWNER_WAIT_MS: Millis = 1000;
/// DNS records waiting for their flow's owner, at most (the oldest is logged at once beyond).
const DNS_OWNER_WAITING: usize = 1024;

pub struct FlowCommon {
    pub record: FlowRecord,
    pub inspector: Option<Inspector>,
    /// Last packet or byte either way (monotonic), for idle expiry.
    pub last_activity: Instant,
    /// When the flow opened, for the connect timeout (the app's SYN retransmissions are
    /// activity, but do not extend the time a connect may take).
    pub opened: Instant,
    /// The dissector took bytes since the last naming pass.
    pub inspector_changed: bool,
    /// The owner lookup answered or gave up (or there is no lookup).
    pub owner_done: bool,
    last_emit: Millis,
    dirty: bool,
}

impl FlowCommon {
    pub fn new(id: FlowId, key: FlowKey, now: Now, device: Option<&Arc<DeviceScan>>) -> FlowCommon {
        let inspector = Inspector::new(key.proto, key.dst.port());
        let inspector = match device {
            Some(device) => inspector.with_context(Arc::clone(device)),
            None => inspector,
        };
        FlowCommon {
            record: FlowRecord::new(id, key, now.ms),
            inspector: Some(inspector),
            last_activity: now.mono,
            opened: now.mono,
            inspector_changed: false,
            owner_done: false,
            last_emit: now.ms,
            dirty: false,
        }
    }

    /// Feed relayed stream bytes to the dissector while it wants them. Returns true when it
    /// took them (the naming may have changed).
    pub fn inspect_stream(&mut self, dir: Direction, data: &[u8]) -> bool {
        match &mut self.inspector {
            Some(inspector) if inspector.wants_more() && !data.is_empty() => {
                inspector.on_stream(dir, data);
                true
            }
            _ => false,
        }
    }

    pub fn inspect_datagram(&mut self, dir: Direction, data: &[u8]) -> bool {
        match &mut self.inspector {
            Some(inspector) if inspector.wants_more() => {
                inspector.on_datagram(dir, data);
                true
            }
            _ => false,
        }
    }
}

pub struct Reporter {
    events: Sender<Event>,
    pub namer: Namer,
    pub stats: EngineStats,
    /// Flows changed since their last event.
    dirty: Vec<FlowId>,
    /// The event receiver is gone: keep relaying, stop sending.
    closed: bool,
    /// Final records of flows that closed before their owner lookup answered. On Android the
    /// lookup is a JNI + Binder call and a short HTTP exchange can be over first.
    unowned_closed: VecDeque<FlowRecord>,
    /// DNS records whose flow's owner lookup had not answered yet, with when they were made.
    unowned_dns: VecDeque<(Millis, DnsRecord)>,
}

impl Reporter {
    pub fn new(events: Sender<Event>) -> Reporter {
        Reporter {
            events,
            namer: Namer::new(),
            stats: EngineStats::default(),
            dirty: Vec::new(),
            closed: false,
            unowned_closed: VecDeque::new(),
            unowned_dns: VecDeque::new(),
        }
    }

    fn send(&mut self, event: Event) {
        if !self.closed && self.events.send(event).is_err() {
            self.closed = true;
            log::warn!("event receiver gone; flows are still relayed but no longer recorded");
        }
    }

    pub fn opened(&mut self, flow: &mut FlowCommon, now: Millis) {
        self.stats.flows_opened += 1;
        self.stats.flows_open += 1;
        self.rename(flow, now);
        flow.last_emit = now;
        self.send(Event::Flow(flow.record.clone()));
    }

    /// Re-run naming after the dissector learned something.
    pub fn rename(&mut self, flow: &mut FlowCommon, now: Millis) {
        if let Some(inspector) = &flow.inspector {
            self.namer
                .name_flow(&mut flow.record, inspector.result(), now);
            if !inspector.wants_more() {
                // Done: free its state; the record keeps what it found.
                flow.inspector = None;
            }
        } else {
            self.namer
                .name_flow(&mut flow.record, &Default::default(), now);
        }
    }

    /// The flow changed (bytes, owner, name): an update event will follow within a second.
    pub fn changed(&mut self, flow: &mut FlowCommon) {
        if !flow.dirty {
            flow.dirty = true;
            self.dirty.push(flow.record.id);
        }
    }

    /// The flow's owner became known: send its record now rather than with the next throttled
    /// update, so consumers (the live view, a pcapng recorder waiting to label packets) learn
    /// the uid while the flow's first packets are still fresh. Once per flow.
    pub fn owner_found(&mut self, flow: &mut FlowCommon) {
        flow.dirty = false;
        self.send(Event::Flow(flow.record.clone()));
    }

    /// Record relayed application bytes.
    pub fn bytes(&mut self, flow: &mut FlowCommon, dir: Direction, n: usize, now: Now) {
        match dir {
            Direction::Up => {
                flow.record.bytes_up += n as u64;
                self.stats.bytes_up += n as u64;
            }
            Direction::Down => {
                flow.record.bytes_down += n as u64;
                self.stats.bytes_down += n as u64;
            }
        }
        flow.last_activity = now.mono;
        flow.record.last_seen = now.ms;
        self.changed(flow);
    }

    pub fn packet(&mut self, flow: &mut FlowCommon, dir: Direction, now: Now) {
        match dir {
            Direction::Up => flow.record.packets_up += 1,
            Direction::Down => flow.record.packets_down += 1,
        }
        flow.last_activity = now.mono;
        flow.record.last_seen = now.ms;
        self.changed(flow);
    }

    /// The flow ended. Its `last_seen` stays the time of its last packet or byte, as in a
    /// replay of its capture: an idle or stopped flow was not seen at its close.
    pub fn closed(&mut self, flow: &mut FlowCommon, reason: CloseReason) {
        self.stats.flows_open = self.stats.flows_open.saturating_sub(1);
        flow.record.close_reason = Some(reason);
        flow.dirty = false;
        self.send(Event::FlowClosed(flow.record.clone()));
        if flow.record.uid.is_none() {
            if self.unowned_closed.len() == LATE_OWNER_FLOWS {
                self.unowned_closed.pop_front();
            }
            self.unowned_closed.push_back(flow.record.clone());
        }
    }

    /// An owner lookup answered after its flow closed: send the final record again with the
    /// UID (consumers upsert by flow id, so the later copy wins).
    pub fn late_owner(&mut self, id: FlowId, uid: u32) {
        if let Some(at) = self.unowned_closed.iter().position(|r| r.id == id)
            && let Some(mut record) = self.unowned_closed.remove(at)
        {
            record.uid = Some(uid);
            self.send(Event::FlowClosed(record));
        }
    }

    pub fn dns(&mut self, record: DnsRecord) {
        self.namer.on_dns(&record);
        self.send(Event::Dns(record));
    }

    /// A DNS record whose flow's owner lookup is still out (a local resolver answers in well
    /// under a millisecond): it names flows at once but is logged when the owner arrives
    /// ([`owner_known`](Self::owner_known)) or after [`DNS_OWNER_WAIT_MS`].
    pub fn dns_awaiting_owner(&mut self, record: DnsRecord, now: Millis) {
        self.namer.on_dns(&record);
        if self.unowned_dns.len() == DNS_OWNER_WAITING
            && let Some((_, oldest)) = self.unowned_dns.pop_front()
        {
            self.send(Event::Dns(oldest));
        }
        self.unowned_dns.push_back((now, record));
    }

    /// The owner lookup of flow `id` answered (`None`: it gave up): log the flow's waiting DNS
    /// records, with the uid when there is one.
    pub fn owner_known(&mut self, id: FlowId, uid: Option<u32>) {
        if !self.unowned_dns.iter().any(|(_, r)| r.flow_id == Some(id)) {
            return;
        }
        let waiting = std::mem::take(&mut self.unowned_dns);
        for (at, mut record) in waiting {
            if record.flow_id == Some(id) {
                record.uid = record.uid.or(uid);
                self.send(Event::Dns(record));
            } else {
                self.unowned_dns.push_back((at, record));
            }
        }
    }

    /// Log the DNS records that waited long enough for an owner (all of them with `Millis::MAX`).
    pub fn release_dns(&mut self, now: Millis) {
        while self
            .unowned_dns
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) >= DNS_OWNER_WAIT_MS)
        {
            if let Some((_, record)) = self.unowned_dns.pop_front() {
                self.send(Event::Dns(record));
            }
        }
    }

    /// The flows waiting for an update event; give back the ones not yet due with
    /// [`restore_dirty`](Self::restore_dirty).
    pub fn take_dirty(&mut self) -> Vec<FlowId> {
        std::mem::take(&mut self.dirty)
    }

    pub fn restore_dirty(&mut self, mut ids: Vec<FlowId>) {
        ids.append(&mut self.dirty);
        self.dirty = ids;
    }

    /// Send the flow's update if its interval has passed; otherwise return when it is due.
    pub fn emit_if_due(&mut self, flow: &mut FlowCommon, now: Millis) -> Option<Millis> {
        if !flow.dirty {
            return None;
        }
        let due = flow.last_emit + UPDATE_INTERVAL_MS;
        if due > now {
            return Some(due);
        }
        flow.dirty = false;
        flow.last_emit = now;
        self.send(Event::Flow(flow.record.clone()));
        None
    }

    pub fn has_pending(&self) -> bool {
        !self.dirty.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;

    use super::*;
    use crate::flow::{DnsRecord, Proto};

    fn record(flow: FlowId, query: &str) -> DnsRecord {
        DnsRecord {
            time: 0,
            uid: None,
            flow_id: Some(flow),
            client: "10.215.173.1:40000".parse().unwrap(),
            server: "10.215.173.2:53".parse().unwrap(),
            transport: Proto::Udp,
            query: query.into(),
            qtype: 1,
            rcode: Some(0),
            answers: vec!["198.18.0.1".into()],
            answer_ips: vec!["198.18.0.1".parse().unwrap()],
            ttl: Some(60),
            ech_configs: Vec::new(),
        }
    }

    fn logged(events: &std::sync::mpsc::Receiver<Event>) -> Vec<(String, Option<u32>)> {
        events
            .try_iter()
            .filter_map(|e| match e {
                Event::Dns(d) => Some((d.query, d.uid)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn dns_records_wait_for_their_flows_owner() {
        let (tx, events) = channel();
        let mut reporter = Reporter::new(tx);
        reporter.dns_awaiting_owner(record(1, "a.test"), 1_000);
        reporter.dns_awaiting_owner(record(2, "b.test"), 1_100);
        reporter.dns_awaiting_owner(record(3, "c.test"), 1_200);
        // Names the flows at once, logs nothing yet.
        assert_eq!(
            reporter.namer.lookup("198.18.0.1".parse().unwrap(), 1_300),
            Some("c.test")
        );
        assert!(logged(&events).is_empty());
        // Owner found: logged with it; a final miss: logged without.
        reporter.owner_known(2, Some(4242));
        reporter.owner_known(3, None);
        assert_eq!(
            logged(&events),
            vec![("b.test".into(), Some(4242)), ("c.test".into(), None)]
        );
        // No answer for flow 1: logged without an owner once it waited long enough.
        reporter.release_dns(1_999);
        assert!(logged(&events).is_empty());
        reporter.release_dns(2_000);
        assert_eq!(logged(&events), vec![("a.test".into(), None)]);
    }
}
