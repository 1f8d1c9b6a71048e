//! The capture's observer of the engine's events: what the summary counts, what the end of the
//! capture waits for, and the owner notes of the pcapng copy.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::flow::{Event, FlowId, FlowRecord, Proto};
use crate::pcap::recorder::RecorderNotes;
use crate::recording::EventSink;

use super::summary::Summary;

/// What the fan-out has seen that the end of the capture waits for.
#[derive(Default)]
pub(super) struct Progress {
    /// TCP flows opened and not yet closed.
    pub(super) open_tcp: AtomicUsize,
    /// TCP/UDP flows whose owner is not known yet (the lookup runs on a helper thread and may
    /// answer after the flow closed; the engine then resends the closed record with the UID).
    pub(super) unowned: AtomicUsize,
}

/// The latest state of one flow, as far as the summary and the waits need it.
struct FlowLine {
    /// A contact's destination: its name, else its address. None for a DNS flow (a lookup,
    /// which names what it asked about, not where it went).
    contact: Option<(Destination, Proto, u16)>,
    bytes_up: u64,
    bytes_down: u64,
    closed: bool,
    owned: bool,
}

/// Where a contact went. The address stays an address until the summary is written: formatting
/// it for each of a flow's events cost more than the rest of the tally.
enum Destination {
    Name(String),
    Address(IpAddr),
}

impl From<Destination> for String {
    fn from(destination: Destination) -> String {
        match destination {
            Destination::Name(name) => name,
            Destination::Address(ip) => ip.to_string(),
        }
    }
}

pub(super) struct Tally {
    flows: HashMap<FlowId, FlowLine>,
    lookups: u64,
    progress: Arc<Progress>,
    recorder: Option<RecorderNotes>,
}

impl Tally {
    pub(super) fn new(progress: Arc<Progress>, recorder: Option<RecorderNotes>) -> Tally {
        Tally {
            flows: HashMap::new(),
            lookups: 0,
            progress,
            recorder,
        }
    }

    /// Contacts per destination, DNS flows and lookups apart.
    pub(super) fn summary(self) -> Summary {
        let mut summary = Summary {
            lookups: self.lookups,
            ..Summary::default()
        };
        for line in self.flows.into_values() {
            let traffic = match line.contact {
                Some((destination, proto, port)) => summary
                    .contacts
                    .entry((destination.into(), proto, port))
                    .or_default(),
                None => &mut summary.dns,
            };
            traffic.flows += 1;
            traffic.bytes_up += line.bytes_up;
            traffic.bytes_down += line.bytes_down;
        }
        summary
    }

    fn flow(&mut self, record: &FlowRecord, closed: bool) {
        let line = FlowLine {
            contact: (!record.is_dns_lookup()).then(|| {
                let destination = match &record.hostname {
                    Some(name) => Destination::Name(name.clone()),
                    None => Destination::Address(record.key.dst.ip()),
                };
                (destination, record.key.proto, record.key.dst.port())
            }),
            bytes_up: record.bytes_up,
            bytes_down: record.bytes_down,
            closed,
            owned: record.uid.is_some() || record.key.proto == Proto::Icmp,
        };
        let before = self
            .flows
            .get(&record.id)
            .map(|old| (old.closed, old.owned));
        let progress = &self.progress;
        if record.key.proto == Proto::Tcp {
            match (before.map(|(closed, _)| closed), closed) {
                (None, false) => {
                    progress.open_tcp.fetch_add(1, Ordering::Relaxed);
                }
                (Some(false), true) => {
                    progress.open_tcp.fetch_sub(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        match (before.map(|(_, owned)| owned), line.owned) {
            (None, false) | (Some(true), false) => {
                progress.unowned.fetch_add(1, Ordering::Relaxed);
            }
            (Some(false), true) => {
                progress.unowned.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        self.flows.insert(record.id, line);
    }
}

impl EventSink for Tally {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::Flow(record) => self.flow(record, false),
            Event::FlowClosed(record) => self.flow(record, true),
            Event::Dns(_) => self.lookups += 1,
            Event::App { .. } => {}
        }
        if let Some(recorder) = &self.recorder {
            recorder.note(event);
        }
    }
}
