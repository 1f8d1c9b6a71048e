//! What every flow shares whatever its protocol (its record, its dissector, its activity
//! clock), and the reporter that turns flow changes into events: one `Event::Flow` when a flow
//! opens, updates while it changes, and one `Event::FlowClosed`.
//!
//! One flow tracker for live capture and replay alike: the live engine and the pcap observer
//! (`pcap::Observer`, the observe-mode driver) both keep their flows in [`FlowCommon`] and send
//! every flow event through a [`Reporter`], so counters, naming and event policy cannot
//! disagree. Where they must differ, [`Mode`] says so, once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::dissect::{DeviceScan, Inspector};
use crate::flow::{
    AppInfo, CloseReason, Destination, Direction, DnsRecord, Event, FlowId, FlowKey, FlowRecord,
    Millis, NameSource,
};
use crate::flow_rules::{IdleClass, IdleTimeouts};
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

/// Where the live relay and a capture replay must differ, and nowhere else (docs/ARCHITECTURE.md
/// lists the same). Everything else (records, counters, naming, the open and close events, DNS
/// records, idle limits) is one code for both.
///
/// - Clock: live reads the wall and monotonic clocks ([`Now::read`]); a replay reads the
///   capture's timestamps ([`CaptureClock`]): no wall clock, no waiting.
/// - Updates: live reports every change (bytes, packets, names) in an update at most once a
///   second, so the live view's counters move; a replay reports only identity changes (owner,
///   name, app protocol, destination, cleartext, leaks) and at once: its rows are read after the
///   end, counters travel with the close, and byte-only updates would cost analyze time for
///   nothing.
/// - End: a flow still open when the run ends closes as `engine-stop` live, `end-of-capture` in
///   a replay ([`Mode::end_reason`]).
/// - Owners: live asks lookups, so DNS records may wait for a flow's owner and a flow closed
///   before its owner answered is re-sent when it does; a replay takes owners from the capture
///   (PCAPdroid trailers, pcapng comments): nothing waits and nothing is kept for a late owner.
/// - DNS give-up: live gives up on a query at the DNS timeout (its service's SERVFAIL goes out
///   then); a replay half a second later ([`Mode::dns_give_up`]), so that SERVFAIL, captured a
///   moment after the timeout, still answers the query. Both pair through `dns::Pairing`.
///
/// The transport differs too, in the drivers rather than here: the observer reassembles both
/// directions it sees, guesses the client of a flow whose start is not in the capture from the
/// ports, and, with no connect of its own, has no connect timeout (a SYN answered by RST is
/// `refused`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The relay (`engine::Engine`): flows are the app's own connections.
    Live,
    /// A capture replay (`pcap::Observer`): flows are what the capture shows.
    Observe,
}

impl Mode {
    /// The close reason of a flow still open when the run ends.
    pub fn end_reason(self) -> CloseReason {
        match self {
            Mode::Live => CloseReason::EngineStop,
            Mode::Observe => CloseReason::EndOfCapture,
        }
    }

    /// How long after it was sent a query is given up on, for a DNS timeout of `timeout`.
    /// Live gives up at the timeout itself (the timers run to the millisecond); a replay allows
    /// [`REPLY_GRACE`] more, so the engine's SERVFAIL at the timeout still answers its query.
    pub const fn dns_give_up(self, timeout: Duration) -> Duration {
        match self {
            Mode::Live => timeout,
            Mode::Observe => timeout.saturating_add(REPLY_GRACE),
        }
    }
}

/// How long after the DNS timeout the engine's SERVFAIL may reach a capture: written to the tun
/// at the end of the loop's turn, it is captured well within this.
const REPLY_GRACE: Duration = Duration::from_millis(500);

/// A replay's clock: the capture's timestamps as a [`Now`], mapped onto one `Instant` taken when
/// the replay began, so a flow's activity clock and idle expiry run on capture time exactly as
/// they run on the loop's clock live. The monotonic part never runs backwards: a reordered
/// packet reads the latest time seen (its record time stays its own).
#[derive(Clone, Copy, Debug)]
pub struct CaptureClock {
    base: Instant,
    /// The capture time `base` stands for: the first timestamp read.
    base_ms: Millis,
    /// The latest timestamp read, and `mono` for it.
    latest_ms: Option<Millis>,
    mono: Instant,
}

impl CaptureClock {
    pub fn new() -> CaptureClock {
        let base = Instant::now();
        CaptureClock {
            base,
            base_ms: 0,
            latest_ms: None,
            mono: base,
        }
    }

    /// The clock at capture time `ms` (Unix milliseconds).
    pub fn at(&mut self, ms: Millis) -> Now {
        match self.latest_ms {
            None => {
                self.base_ms = ms;
                self.latest_ms = Some(ms);
            }
            Some(latest) if ms > latest => {
                self.latest_ms = Some(ms);
                let since = ms
                    .checked_sub(self.base_ms)
                    .and_then(|d| u64::try_from(d).ok())
                    .map(Duration::from_millis);
                // A timestamp too far out for an Instant (a damaged file) stops the clock.
                if let Some(mono) = since.and_then(|d| self.base.checked_add(d)) {
                    self.mono = mono;
                }
            }
            Some(_) => {}
        }
        Now {
            mono: self.mono,
            ms,
        }
    }

    /// The latest time read (the capture's start before any).
    pub fn latest(&self) -> Now {
        Now {
            mono: self.mono,
            ms: self.latest_ms.unwrap_or(self.base_ms),
        }
    }
}

impl Default for CaptureClock {
    fn default() -> CaptureClock {
        CaptureClock::new()
    }
}

/// What a replay's update reports ([`Mode::Observe`]): a flow's record but for its counters and
/// times. A new `Event::Flow` goes out when it changes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Identity {
    uid: Option<u32>,
    hostname: Option<String>,
    hostname_source: Option<NameSource>,
    app_info: AppInfo,
    destination: Destination,
    cleartext: bool,
    leaks: Vec<String>,
}

impl Identity {
    fn of(r: &FlowRecord) -> Identity {
        Identity {
            uid: r.uid,
            hostname: r.hostname.clone(),
            hostname_source: r.hostname_source,
            app_info: r.app_info.clone(),
            destination: r.destination.clone(),
            cleartext: r.cleartext,
            leaks: r.leaks.clone(),
        }
    }

    fn is_of(&self, r: &FlowRecord) -> bool {
        self.uid == r.uid
            && self.hostname == r.hostname
            && self.hostname_source == r.hostname_source
            && self.app_info == r.app_info
            && self.destination == r.destination
            && self.cleartext == r.cleartext
            && self.leaks == r.leaks
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
    /// Boxed and dropped once it has read all it will: a long-lived flow (a push channel, a
    /// TLS stream past its handshake) then pays a word for it, not 384 bytes.
    pub inspector: Option<Box<Inspector>>,
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
    /// What the last event reported ([`Mode::Observe`] only; boxed so a live flow pays a word).
    reported: Option<Box<Identity>>,
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
            inspector: Some(Box::new(inspector)),
            last_activity: now.mono,
            opened: now.mono,
            inspector_changed: false,
            owner_done: false,
            last_emit: now.ms,
            dirty: false,
            reported: None,
        }
    }

    /// Has the flow been idle (no packet either way) for its limit? The one expiry rule: the
    /// observer asks on capture time, the engine's sweep (core/timers.rs) on the loop's.
    pub fn idle_expired(&self, limits: &IdleTimeouts, class: IdleClass, now: Now) -> bool {
        now.mono.saturating_duration_since(self.last_activity) >= limits.limit(class)
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
    mode: Mode,
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
    /// The live engine's reporter.
    pub fn new(events: Sender<Event>) -> Reporter {
        Reporter::with_mode(events, Mode::Live)
    }

    pub fn with_mode(events: Sender<Event>, mode: Mode) -> Reporter {
        Reporter {
            events,
            mode,
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

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Send the flow's record now (and, in a replay, remember what it reported).
    fn send_flow(&mut self, flow: &mut FlowCommon) {
        if self.mode == Mode::Observe {
            flow.reported = Some(Box::new(Identity::of(&flow.record)));
        }
        self.send(Event::Flow(flow.record.clone()));
    }

    pub fn opened(&mut self, flow: &mut FlowCommon, now: Millis) {
        self.stats.flows_opened += 1;
        self.stats.flows_open += 1;
        self.rename(flow, now);
        flow.last_emit = now;
        self.send_flow(flow);
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

    /// The flow changed (bytes, owner, name). Live: an update event follows within a second.
    /// Replay: an update goes out now if the flow's identity changed since its last event.
    pub fn changed(&mut self, flow: &mut FlowCommon) {
        match self.mode {
            Mode::Live => {
                if !flow.dirty {
                    flow.dirty = true;
                    self.dirty.push(flow.record.id);
                }
            }
            Mode::Observe => {
                if !flow
                    .reported
                    .as_ref()
                    .is_some_and(|r| r.is_of(&flow.record))
                {
                    self.send_flow(flow);
                }
            }
        }
    }

    /// A counter moved: live, that is an update to send; in a replay it travels with the next
    /// identity change or the close.
    fn counted(&mut self, flow: &mut FlowCommon) {
        if self.mode == Mode::Live {
            self.changed(flow);
        }
    }

    /// The flow's owner became known: send its record now rather than with the next throttled
    /// update, so consumers (the live view, a pcapng recorder waiting to label packets) learn
    /// the uid while the flow's first packets are still fresh. Once per flow.
    pub fn owner_found(&mut self, flow: &mut FlowCommon) {
        flow.dirty = false;
        self.send_flow(flow);
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
        // Never back: a capture's packets can be out of order, a wall clock can step back.
        flow.record.last_seen = flow.record.last_seen.max(now.ms);
        self.counted(flow);
    }

    pub fn packet(&mut self, flow: &mut FlowCommon, dir: Direction, now: Now) {
        match dir {
            Direction::Up => flow.record.packets_up += 1,
            Direction::Down => flow.record.packets_down += 1,
        }
        flow.last_activity = now.mono;
        flow.record.last_seen = flow.record.last_seen.max(now.ms);
        self.counted(flow);
    }

    /// The flow ended. Its `last_seen` stays the time of its last packet or byte, as in a
    /// replay of its capture: an idle or stopped flow was not seen at its close.
    pub fn closed(&mut self, flow: &mut FlowCommon, reason: CloseReason) {
        self.closing(flow, reason);
        self.send(Event::FlowClosed(flow.record.clone()));
    }

    /// [`closed`](Self::closed) for a flow its driver drops now: the record goes out uncopied.
    pub fn closed_dropped(&mut self, mut flow: FlowCommon, reason: CloseReason) {
        self.closing(&mut flow, reason);
        self.send(Event::FlowClosed(flow.record));
    }

    fn closing(&mut self, flow: &mut FlowCommon, reason: CloseReason) {
        self.stats.flows_open = self.stats.flows_open.saturating_sub(1);
        flow.record.close_reason = Some(reason);
        flow.dirty = false;
        if self.mode == Mode::Live && flow.record.uid.is_none() {
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

    /// The capture named the app of `uid` (replay only: live, the owner resolver does).
    pub fn app(&mut self, uid: u32, name: String) {
        self.send(Event::App { uid, name });
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
        self.send_flow(flow);
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

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: policy.example\r\n\r\n";

    fn key() -> FlowKey {
        FlowKey {
            proto: Proto::Tcp,
            src: "198.18.0.2:40000".parse().unwrap(),
            dst: "198.18.1.1:80".parse().unwrap(),
        }
    }

    /// Drives one HTTP flow through a reporter in `mode` as a driver does (open, counters, the
    /// dissector naming it, more bytes, a second later, close), on capture time; returns the
    /// events of each step, and the reporter.
    fn drive(mode: Mode) -> (Vec<Vec<Event>>, Reporter) {
        let (tx, rx) = channel();
        let mut reporter = Reporter::with_mode(tx, mode);
        let mut clock = CaptureClock::new();
        let now = clock.at(10_000);
        let mut flow = FlowCommon::new(7, key(), now, None);
        let mut steps = Vec::new();
        reporter.opened(&mut flow, now.ms);
        steps.push(rx.try_iter().collect());
        let now = clock.at(10_010);
        reporter.packet(&mut flow, Direction::Up, now);
        reporter.bytes(&mut flow, Direction::Up, GET.len(), now);
        if flow.inspect_stream(Direction::Up, GET) {
            reporter.rename(&mut flow, now.ms);
            reporter.changed(&mut flow);
        }
        steps.push(rx.try_iter().collect());
        let now = clock.at(10_020);
        reporter.packet(&mut flow, Direction::Down, now);
        reporter.bytes(&mut flow, Direction::Down, 1000, now);
        steps.push(rx.try_iter().collect());
        // A second on: a throttled update is due, if the mode sends them.
        let now = clock.at(11_500);
        for id in reporter.take_dirty() {
            assert_eq!(id, 7);
            assert_eq!(reporter.emit_if_due(&mut flow, now.ms), None);
        }
        steps.push(rx.try_iter().collect());
        reporter.closed(&mut flow, reporter.mode().end_reason());
        steps.push(rx.try_iter().collect());
        (steps, reporter)
    }

    fn flows(events: &[Event]) -> Vec<&FlowRecord> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Flow(r) | Event::FlowClosed(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn live_and_replay_report_one_flow_alike_but_for_what_mode_declares() {
        let (live, mut live_reporter) = drive(Mode::Live);
        let (replay, mut replay_reporter) = drive(Mode::Observe);
        // Both open with one event, close with one, and count the same.
        for steps in [&live, &replay] {
            assert!(matches!(steps[0].as_slice(), [Event::Flow(r)] if r.bytes_up == 0));
            assert_eq!(flows(&steps[4]).len(), 1);
        }
        let (Event::FlowClosed(live_end), Event::FlowClosed(replay_end)) =
            (&live[4][0], &replay[4][0])
        else {
            panic!("no close: {live:?} {replay:?}");
        };
        assert_eq!(live_end.hostname.as_deref(), Some("policy.example"));
        assert_eq!(
            FlowRecord {
                close_reason: None,
                ..live_end.clone()
            },
            FlowRecord {
                close_reason: None,
                ..replay_end.clone()
            }
        );
        assert_eq!(
            (live_end.bytes_up, live_end.bytes_down),
            (GET.len() as u64, 1000)
        );
        assert_eq!((live_end.first_seen, live_end.last_seen), (10_000, 10_020));
        assert_eq!(
            live_reporter.stats.bytes_down,
            replay_reporter.stats.bytes_down
        );
        assert_eq!(live_reporter.stats.flows_open, 0);
        assert_eq!(replay_reporter.stats.flows_open, 0);
        // Updates: live sends every change once its second has passed (the name and the bytes
        // in one update); a replay sends the name at once and never a byte-only update.
        assert!(live[1].is_empty() && live[2].is_empty());
        assert!(matches!(live[3].as_slice(), [Event::Flow(r)] if r.bytes_down == 1000));
        assert!(matches!(replay[1].as_slice(),
            [Event::Flow(r)] if r.hostname.as_deref() == Some("policy.example")));
        assert!(replay[2].is_empty() && replay[3].is_empty());
        // End: engine-stop live, end-of-capture in a replay.
        assert_eq!(live_end.close_reason, Some(CloseReason::EngineStop));
        assert_eq!(replay_end.close_reason, Some(CloseReason::EndOfCapture));
        // Owners: only live keeps a closed flow for a late owner lookup.
        let (tx, rx) = channel();
        live_reporter.events = tx;
        live_reporter.late_owner(7, 10_001);
        assert!(
            matches!(rx.try_iter().next(), Some(Event::FlowClosed(r)) if r.uid == Some(10_001))
        );
        let (tx, rx) = channel();
        replay_reporter.events = tx;
        replay_reporter.late_owner(7, 10_001);
        assert!(rx.try_iter().next().is_none());
    }

    #[test]
    fn idle_expiry_runs_on_capture_time() {
        let limits = IdleTimeouts::default();
        let class = IdleClass::Udp { dns: true };
        let mut clock = CaptureClock::new();
        let opened = clock.at(1_000_000);
        let flow = FlowCommon::new(1, key(), opened, None);
        let limit = Millis::try_from(limits.dns.as_millis()).unwrap();
        assert!(!flow.idle_expired(&limits, class, clock.at(1_000_000 + limit - 1)));
        // A reordered, earlier packet does not turn the clock back.
        assert_eq!(clock.at(999_000).ms, 999_000);
        assert!(!flow.idle_expired(&limits, class, clock.latest()));
        assert!(flow.idle_expired(&limits, class, clock.at(1_000_000 + limit)));
        // Timestamps far out (a damaged file) do not panic.
        let stopped = clock.at(Millis::MAX);
        assert_eq!(stopped.ms, Millis::MAX);
        assert!(flow.idle_expired(&limits, class, stopped));
        assert_eq!(clock.at(Millis::MIN).ms, Millis::MIN);
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
