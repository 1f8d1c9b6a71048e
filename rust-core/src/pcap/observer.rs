//! The engine in observe mode: turns captured packets into the same [`Event`]s the live engine
//! sends, through the same flow tracker: each flow is an engine `FlowCommon` (record,
//! dissector, activity clock) and every event goes out through an engine `Reporter` in
//! `Mode::Observe`, so counters, naming and event policy are the live engine's code; where a
//! replay must differ, `Mode` says so. What stays here is the transport of a capture: both
//! directions of a flow seen from outside, TCP reassembly, the client guessed from the ports
//! when a flow's start is not in the capture, and owners read from the capture.
//!
//! Sans-IO: fed frames and their capture time, it owns all flow state; the caller reads the file
//! and the store consumes the events.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use crate::dissect::DeviceScan;
use crate::engine::dns::{self as engine_dns, DnsExchange};
use crate::engine::report::{CaptureClock, FlowCommon, Mode, Now, Reporter};
use crate::flow::{
    CloseReason, Direction, DnsRecord, Event, FlowId, FlowKey, FlowTable, Millis, Proto,
};
use crate::flow_rules::{self, IdleClass, IdleTimeouts};

use super::dns::FlowDns;
use super::gtp;
use super::ip::{self, Defrag, IpPacket, TcpHeader};
use super::link;
use super::reader::{self, Record};
use super::stream::Reassembler;

/// How long a closed TCP flow keeps its slot, so its last ACKs do not open a new flow.
const CLOSED_LINGER: Duration = Duration::from_secs(60);
const SWEEP_EVERY_MS: Millis = 5_000;

/// What the capture says about a packet's owner (PCAPdroid trailer or pcapng comment).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    pub uid: Option<u32>,
    pub app: Option<String>,
}

/// Counts for the CLI's summary and the tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObserverStats {
    pub frames: u64,
    pub ip_packets: u64,
    /// Frames that carried no IP (ARP, LLDP...).
    pub not_ip: u64,
    /// Frames of link types we cannot decode, with the type.
    pub unsupported_link: HashMap<u32, u64>,
    /// IP packets whose headers were malformed or cut short.
    pub malformed: u64,
    pub fragments_reassembled: u64,
    /// GTP-U T-PDUs opened: their inner packets are observed, the tunnel itself is not a flow.
    pub gtp_tpdus: u64,
    pub flows: u64,
    pub dns_records: u64,
    /// ICMP messages other than echo (errors, neighbour discovery): not flows, as live.
    pub icmp_not_echo: u64,
}

/// Ports servers listen on (below 1024, and common higher ones), to tell the client of a flow
/// whose start is not in the capture.
fn service_port(port: u16) -> bool {
    port < 1024
        || matches!(
            port,
            1935 | 3478 | 5222 | 5223 | 5228 | 5349 | 8080 | 8443 | 8883 | 19302
        )
}

/// Is the sender of a packet from `src_port` to `dst_port` the client, when the flow's start was
/// not seen? The side on a service port is the server; otherwise the higher (ephemeral) port is
/// the client; `tie` decides when the ports say nothing.
fn sender_looks_like_client(src_port: u16, dst_port: u16, tie: bool) -> bool {
    match (service_port(src_port), service_port(dst_port)) {
        (true, false) => false,
        (false, true) => true,
        _ if src_port == dst_port => tie,
        _ => src_port > dst_port,
    }
}

/// A flow's 5-tuple with its ends in a fixed order, so both directions find it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Tuple {
    proto: Proto,
    lo: SocketAddr,
    hi: SocketAddr,
}

impl Tuple {
    fn new(proto: Proto, a: SocketAddr, b: SocketAddr) -> Tuple {
        if a <= b {
            Tuple {
                proto,
                lo: a,
                hi: b,
            }
        } else {
            Tuple {
                proto,
                lo: b,
                hi: a,
            }
        }
    }
}

/// One flow of the capture: the engine's flow state, and the transport the observer follows.
struct FlowState {
    common: FlowCommon,
    up: Reassembler,
    down: Reassembler,
    fin_up: bool,
    fin_down: bool,
    /// Both FINs were seen, the later one sent this way: the flow closes with the next packet
    /// the other way (the ACK of that FIN), as the live engine's socket does.
    last_fin: Option<Direction>,
    /// Opened by the client's SYN and not answered yet: a RST from the server now is a refusal.
    awaiting_synack: bool,
    closed: bool,
    /// Its open event went out. It goes out after the flow's first packet, named by it, so a
    /// datagram flow is not reported twice for one packet.
    announced: bool,
    /// Port 53 flows: their DNS exchanges, paired as the engine pairs them.
    dns: Option<FlowDns>,
}

pub struct Observer {
    reporter: Reporter,
    clock: CaptureClock,
    flows: FlowTable<Tuple, FlowState>,
    next_id: FlowId,
    defrag: Defrag,
    apps_announced: HashMap<u32, String>,
    last_sweep: Millis,
    stats: ObserverStats,
    /// The phone's own identifiers, for the cleartext scan (as the live engine's Tuning::device).
    device: Option<Arc<DeviceScan>>,
}

impl Observer {
    pub fn new(events: Sender<Event>) -> Observer {
        Observer {
            reporter: Reporter::with_mode(events, Mode::Observe),
            clock: CaptureClock::new(),
            flows: FlowTable::default(),
            next_id: 1,
            defrag: Defrag::default(),
            apps_announced: HashMap::new(),
            last_sweep: 0,
            stats: ObserverStats::default(),
            device: None,
        }
    }

    /// The observer with the phone's own IPs, model and OS build for the cleartext scan.
    pub fn with_device(mut self, device: Option<Arc<DeviceScan>>) -> Observer {
        self.device = device;
        self
    }

    /// The counts so far; flows are the reporter's count, as the live engine's are.
    pub fn stats(&self) -> ObserverStats {
        ObserverStats {
            flows: self.reporter.stats.flows_opened,
            ..self.stats.clone()
        }
    }

    fn announce_app(&mut self, uid: u32, name: &str) {
        if name.is_empty() || self.apps_announced.get(&uid).is_some_and(|n| n == name) {
            return;
        }
        self.apps_announced.insert(uid, name.to_owned());
        self.reporter.app(uid, name.to_owned());
    }

    /// Feeds one record from a [`reader::CaptureReader`].
    pub fn on_record(&mut self, record: &Record<'_>) {
        match record {
            Record::UidMap { uid, package, app } => {
                let name = if package.is_empty() { app } else { package };
                self.announce_app(*uid, name);
            }
            Record::Packet(p) => {
                let owner = match p.comment.and_then(reader::parse_uid_comment) {
                    Some((uid, app)) => Owner {
                        uid: Some(uid),
                        app: app.map(str::to_owned),
                    },
                    None => Owner::default(),
                };
                self.on_frame(p.ts_ns / 1_000_000, p.linktype, p.data, owner);
            }
        }
    }

    /// Feeds one captured frame of link type `linktype` seen at `now`.
    pub fn on_frame(&mut self, now: Millis, linktype: u32, frame: &[u8], mut owner: Owner) {
        self.stats.frames += 1;
        let decoded = match link::decode(linktype, frame) {
            Ok(f) => f,
            Err(link::LinkError::Unsupported(t)) => {
                *self.stats.unsupported_link.entry(t).or_default() += 1;
                return;
            }
            Err(link::LinkError::NotIp) => {
                self.stats.not_ip += 1;
                return;
            }
        };
        if let Some(trailer) = decoded.trailer {
            owner.uid = owner.uid.or(trailer.uid);
            owner.app = owner.app.or(trailer.app);
        }
        self.on_ip(now, decoded.ip, &owner);
    }

    /// Feeds one IP packet.
    pub fn on_ip(&mut self, now: Millis, packet: &[u8], owner: &Owner) {
        self.on_ip_in(now, packet, owner, false);
    }

    /// `tunneled`: the packet came out of a GTP-U tunnel, whose inner packets are not opened
    /// again (one level is what networks use; more would let a crafted packet recurse).
    fn on_ip_in(&mut self, now: Millis, packet: &[u8], owner: &Owner, tunneled: bool) {
        let now = self.clock.at(now);
        if self.clock.latest().ms.saturating_sub(self.last_sweep) >= SWEEP_EVERY_MS {
            self.sweep();
        }
        if let (Some(uid), Some(app)) = (owner.uid, owner.app.as_deref()) {
            self.announce_app(uid, app);
        }
        let ip = match ip::parse_ip(packet) {
            Ok(ip) => ip,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        self.stats.ip_packets += 1;
        if ip.fragment.is_some() {
            if let Some(whole) = self.defrag.push(&ip, now.ms) {
                self.stats.fragments_reassembled += 1;
                let full = IpPacket {
                    payload: &whole,
                    fragment: None,
                    wire_len: whole.len(),
                    ..ip
                };
                self.on_transport(now, &full, owner, tunneled);
            }
            return;
        }
        self.on_transport(now, &ip, owner, tunneled);
    }

    fn on_transport(&mut self, now: Now, ip: &IpPacket<'_>, owner: &Owner, tunneled: bool) {
        match ip.proto {
            ip::PROTO_TCP => match ip::parse_tcp(ip.payload) {
                Ok((tcp, payload)) => self.on_tcp(now, ip, &tcp, payload, owner),
                Err(_) => self.stats.malformed += 1,
            },
            ip::PROTO_UDP => match ip::parse_udp(ip.payload) {
                Ok((sp, dp, payload)) if !tunneled && (sp == gtp::PORT || dp == gtp::PORT) => {
                    match gtp::tpdu_payload(payload) {
                        Ok(inner) => {
                            self.stats.gtp_tpdus += 1;
                            self.on_ip_in(now.ms, inner, owner, true);
                        }
                        // Echo requests and other signalling stay a UDP flow of their own.
                        Err(_) => self.on_udp(now, ip, sp, dp, payload, owner),
                    }
                }
                Ok((sp, dp, payload)) => self.on_udp(now, ip, sp, dp, payload, owner),
                Err(_) => self.stats.malformed += 1,
            },
            ip::PROTO_ICMP | ip::PROTO_ICMPV6 => self.on_icmp(now, ip, owner),
            _ => {}
        }
    }

    /// Finds the open flow of this packet or opens one; returns its tuple and the packet's
    /// direction. `sender_is_client` decides the client of a new flow.
    fn flow_for(
        &mut self,
        now: Now,
        proto: Proto,
        src: SocketAddr,
        dst: SocketAddr,
        restart: bool,
        sender_is_client: impl FnOnce() -> bool,
    ) -> Option<(Tuple, Direction)> {
        let tuple = Tuple::new(proto, src, dst);
        let reopen = match self.flows.get(&tuple) {
            Some(state) if state.closed => restart,
            Some(_) => false,
            None => true,
        };
        if reopen {
            let (client, server) = if sender_is_client() {
                (src, dst)
            } else {
                (dst, src)
            };
            let key = FlowKey {
                proto,
                src: client,
                dst: server,
            };
            let id = self.next_id;
            self.next_id += 1;
            let mut common = FlowCommon::new(id, key, now, self.device.as_ref());
            // The capture is all there is to know of owners: no lookup to wait for.
            common.owner_done = true;
            let state = FlowState {
                common,
                up: Reassembler::default(),
                down: Reassembler::default(),
                fin_up: false,
                fin_down: false,
                last_fin: None,
                awaiting_synack: proto == Proto::Tcp && restart,
                closed: false,
                announced: false,
                dns: FlowDns::of(&key),
            };
            self.flows.insert(tuple, state);
        }
        let state = self.flows.get(&tuple)?;
        if state.closed {
            return None;
        }
        let dir = if state.common.record.key.src == src {
            Direction::Up
        } else {
            Direction::Down
        };
        Some((tuple, dir))
    }

    /// Counts the packet and its new application bytes as the live engine does (through the
    /// reporter), and takes the capture's owner when the flow had none: returns whether it did.
    fn account(
        reporter: &mut Reporter,
        state: &mut FlowState,
        now: Now,
        dir: Direction,
        bytes: usize,
        owner: &Owner,
    ) -> bool {
        reporter.packet(&mut state.common, dir, now);
        if bytes > 0 {
            reporter.bytes(&mut state.common, dir, bytes, now);
        }
        let record = &mut state.common.record;
        if record.uid.is_none() && owner.uid.is_some() {
            record.uid = owner.uid;
            return true;
        }
        false
    }

    fn on_tcp(
        &mut self,
        now: Now,
        ip: &IpPacket<'_>,
        tcp: &TcpHeader,
        payload: &[u8],
        owner: &Owner,
    ) {
        let src = SocketAddr::new(ip.src, tcp.src_port);
        let dst = SocketAddr::new(ip.dst, tcp.dst_port);
        let pure_syn = tcp.syn && !tcp.ack_flag;
        let Some((tuple, dir)) = self.flow_for(now, Proto::Tcp, src, dst, pure_syn, || {
            if tcp.syn {
                // SYN comes from the client, SYN-ACK from the server.
                !tcp.ack_flag
            } else {
                // The start is not in the capture: guess from the ports.
                sender_looks_like_client(tcp.src_port, tcp.dst_port, true)
            }
        }) else {
            return;
        };
        let Some(state) = self.flows.get_mut(&tuple) else {
            return;
        };
        let (stream, fin) = match dir {
            Direction::Up => (&mut state.up, &mut state.fin_up),
            Direction::Down => (&mut state.down, &mut state.fin_down),
        };
        if tcp.syn {
            stream.on_syn(tcp.seq);
            if tcp.ack_flag && dir == Direction::Down {
                state.awaiting_synack = false;
            }
        }
        let seq = if tcp.syn {
            tcp.seq.wrapping_add(1)
        } else {
            tcp.seq
        };
        let fresh = if payload.is_empty() {
            0
        } else {
            stream.new_bytes(seq, payload.len())
        };
        let common = &mut state.common;
        let dns = &mut state.dns;
        let mut exchanges = Vec::new();
        let inspecting = common.inspector.as_ref().is_some_and(|i| i.wants_more());
        if !payload.is_empty() && (inspecting || dns.is_some()) && !stream.done() {
            stream.on_segment(seq, payload, |bytes| {
                if common.inspect_stream(dir, bytes) {
                    common.inspector_changed = true;
                }
                if let Some(dns) = dns {
                    exchanges.extend(dns.on_stream(dir, bytes, now));
                }
            });
        }
        if tcp.fin {
            *fin = true;
        }
        let owner_found = Self::account(&mut self.reporter, state, now, dir, fresh, owner);
        self.log_dns(tuple, exchanges, now);
        let Some(state) = self.flows.get_mut(&tuple) else {
            return;
        };
        let close = if tcp.rst {
            Some(match dir {
                Direction::Up => CloseReason::ResetByClient,
                Direction::Down if state.awaiting_synack => CloseReason::Refused,
                Direction::Down => CloseReason::ResetByServer,
            })
        } else if state.last_fin.is_some_and(|last| last != dir) {
            Some(CloseReason::Fin)
        } else {
            if state.fin_up && state.fin_down && state.last_fin.is_none() {
                state.last_fin = Some(dir);
            }
            None
        };
        self.after_packet(tuple, now, owner_found, close);
    }

    fn on_udp(
        &mut self,
        now: Now,
        ip: &IpPacket<'_>,
        src_port: u16,
        dst_port: u16,
        payload: &[u8],
        owner: &Owner,
    ) {
        let src = SocketAddr::new(ip.src, src_port);
        let dst = SocketAddr::new(ip.dst, dst_port);
        // A DNS flow closed by its answer: the client's next datagram opens a new flow, as live
        // (where its socket is gone); a late answer from the server stays with the closed one.
        let restart = self
            .flows
            .get(&Tuple::new(Proto::Udp, src, dst))
            .is_some_and(|state| state.closed && state.common.record.key.src == src);
        // The first packet's sender is the client, unless it plainly comes from a service port
        // to an ephemeral one (a reply whose query is not in the capture).
        let Some((tuple, dir)) = self.flow_for(now, Proto::Udp, src, dst, restart, || {
            restart || !service_port(src_port) || service_port(dst_port)
        }) else {
            return;
        };
        let Some(state) = self.flows.get_mut(&tuple) else {
            return;
        };
        let owner_found = Self::account(&mut self.reporter, state, now, dir, payload.len(), owner);
        if state.common.inspect_datagram(dir, payload) {
            state.common.inspector_changed = true;
        }
        let Some(dns) = &mut state.dns else {
            return self.after_packet(tuple, now, owner_found, None);
        };
        let exchanges = dns.on_datagram(payload, now);
        // A plain DNS exchange ends with its last answer (the live engine's SERVFAILs are in
        // its captures as answers).
        let answered = flow_rules::is_dns_server(&state.common.record.key) && dns.exchange_over();
        self.log_dns(tuple, exchanges, now);
        self.after_packet(
            tuple,
            now,
            owner_found,
            answered.then_some(CloseReason::Answered),
        );
    }

    fn on_icmp(&mut self, now: Now, ip: &IpPacket<'_>, owner: &Owner) {
        let Some((request, ident)) = flow_rules::echo_of(ip.src.is_ipv6(), ip.payload) else {
            self.stats.icmp_not_echo += 1;
            return;
        };
        // Keyed as the live engine keys echo flows: the identifier on the requester's side.
        let (src, dst) = if request {
            (SocketAddr::new(ip.src, ident), SocketAddr::new(ip.dst, 0))
        } else {
            (SocketAddr::new(ip.src, 0), SocketAddr::new(ip.dst, ident))
        };
        let Some((tuple, dir)) = self.flow_for(now, Proto::Icmp, src, dst, false, || request)
        else {
            return;
        };
        let Some(state) = self.flows.get_mut(&tuple) else {
            return;
        };
        let bytes = flow_rules::echo_bytes(ip.payload.len());
        let owner_found = Self::account(&mut self.reporter, state, now, dir, bytes, owner);
        self.after_packet(tuple, now, owner_found, None);
    }

    /// The DNS exchanges flow `tuple` finished, logged with the flow's key and owner.
    fn log_dns(&mut self, tuple: Tuple, exchanges: Vec<DnsExchange>, now: Now) {
        if exchanges.is_empty() {
            return;
        }
        let Some(state) = self.flows.get(&tuple) else {
            return;
        };
        let record = &state.common.record;
        self.log_exchanges(record.id, record.key, record.uid, exchanges, now);
    }

    fn log_exchanges(
        &mut self,
        flow_id: FlowId,
        key: FlowKey,
        uid: Option<u32>,
        exchanges: Vec<DnsExchange>,
        now: Now,
    ) {
        for exchange in exchanges {
            if let Some(mut record) = engine_dns::record(&exchange, &key) {
                record.flow_id = Some(flow_id);
                record.uid = uid;
                self.emit_dns(record, now);
            }
        }
    }

    fn emit_dns(&mut self, record: DnsRecord, now: Now) {
        self.stats.dns_records += 1;
        let answered = record.answer_ips.clone();
        self.reporter.dns(record);
        self.name_late_answer(&answered, now);
    }

    /// An answer that arrives after a connection to one of its addresses opened names that
    /// connection if nothing in the flow did, as the live engine does. A flow not yet announced
    /// is named when it is.
    fn name_late_answer(&mut self, answered: &[std::net::IpAddr], now: Now) {
        if answered.is_empty() {
            return;
        }
        for state in self.flows.values_mut() {
            let common = &mut state.common;
            if state.announced
                && !state.closed
                && common.record.hostname.is_none()
                && answered.contains(&common.record.key.dst.ip())
            {
                self.reporter.rename(common, now.ms);
                if common.record.hostname.is_some() {
                    self.reporter.changed(common);
                }
            }
        }
    }

    /// Reports what the packet changed: the flow's open event after its first packet, an
    /// update when its owner or dissector changed it, its close when the packet ended it.
    fn after_packet(
        &mut self,
        tuple: Tuple,
        now: Now,
        owner_found: bool,
        close: Option<CloseReason>,
    ) {
        let Some(state) = self.flows.get_mut(&tuple) else {
            return;
        };
        let common = &mut state.common;
        // Naming allocates (catalog strings): only when something it depends on changed.
        let rename = std::mem::take(&mut common.inspector_changed) || owner_found;
        if !state.announced {
            state.announced = true;
            self.reporter.opened(common, now.ms);
        } else if rename {
            self.reporter.rename(common, now.ms);
            match (close, owner_found) {
                // A closing packet's news travels with the close.
                (Some(_), _) => {}
                (None, true) => self.reporter.owner_found(common),
                (None, false) => self.reporter.changed(common),
            }
        }
        if let Some(reason) = close {
            state.closed = true;
            self.reporter.closed(common, reason);
            let unanswered = state.dns.as_mut().map(FlowDns::drain).unwrap_or_default();
            self.log_dns(tuple, unanswered, now);
        }
    }

    /// Closes idle flows (the engine's idle rule on capture time) and forgets closed ones
    /// after their linger time.
    fn sweep(&mut self) {
        let now = self.clock.latest();
        self.last_sweep = now.ms;
        let limits = IdleTimeouts::default();
        let mut expired = Vec::new();
        let mut overdue = Vec::new();
        self.flows.retain(|tuple, state| {
            let common = &state.common;
            if let Some(dns) = &mut state.dns {
                let given_up = dns.overdue(now);
                if !given_up.is_empty() {
                    let record = &common.record;
                    overdue.push((record.id, record.key, record.uid, given_up));
                }
            }
            if state.closed {
                return now.mono.saturating_duration_since(common.last_activity) < CLOSED_LINGER;
            }
            let class = match tuple.proto {
                Proto::Tcp => IdleClass::Tcp {
                    half_closed: state.fin_up || state.fin_down,
                },
                Proto::Udp => IdleClass::Udp {
                    dns: flow_rules::is_dns_server(&common.record.key),
                },
                Proto::Icmp => IdleClass::Echo,
            };
            if common.idle_expired(&limits, class, now) {
                expired.push(*tuple);
            }
            true
        });
        let mut expired: Vec<FlowState> = expired
            .iter()
            .filter_map(|tuple| self.flows.remove(tuple))
            .collect();
        expired.sort_by_key(|s| s.common.record.id);
        overdue.sort_by_key(|(id, ..)| *id);
        for (id, key, uid, exchanges) in overdue {
            self.log_exchanges(id, key, uid, exchanges, now);
        }
        for mut state in expired {
            self.close_dns(&mut state, now);
            self.reporter
                .closed_dropped(state.common, CloseReason::Idle);
        }
    }

    /// A flow leaves the table: its waiting DNS queries are logged unanswered.
    fn close_dns(&mut self, state: &mut FlowState, now: Now) {
        let Some(dns) = &mut state.dns else {
            return;
        };
        let record = &state.common.record;
        let unanswered = dns.drain();
        self.log_exchanges(record.id, record.key, record.uid, unanswered, now);
    }

    /// Ends the capture: every open flow closes with the replay's end reason
    /// (`end-of-capture`), unanswered DNS queries are logged without an answer.
    pub fn finish(mut self) -> ObserverStats {
        let mut open: Vec<FlowState> = self
            .flows
            .drain()
            .map(|(_, s)| s)
            .filter(|s| !s.closed)
            .collect();
        open.sort_by_key(|s| s.common.record.id);
        let now = self.clock.latest();
        let reason = self.reporter.mode().end_reason();
        for mut state in open {
            self.close_dns(&mut state, now);
            self.reporter.closed_dropped(state.common, reason);
        }
        self.stats()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::mpsc;

    use super::*;
    use crate::flow::{FlowRecord, NameSource};
    use crate::pcap::testutil::*;

    const PHONE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);

    fn run(packets: &[(Millis, Vec<u8>)], owner: Owner) -> Vec<Event> {
        let (tx, rx) = mpsc::channel();
        let mut obs = Observer::new(tx);
        for (t, p) in packets {
            obs.on_ip(*t, p, &owner);
        }
        obs.finish();
        rx.try_iter().collect()
    }

    fn closed(events: &[Event]) -> Vec<&FlowRecord> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::FlowClosed(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn tcp_handshake_data_and_fin() {
        let c2s = |seq, ack, flags, data: &[u8]| {
            ipv4(PHONE, SERVER, 6, &tcp(40000, 443, seq, ack, flags, data))
        };
        let s2c = |seq, ack, flags, data: &[u8]| {
            ipv4(SERVER, PHONE, 6, &tcp(443, 40000, seq, ack, flags, data))
        };
        let packets = vec![
            (1000, s2c(0, 0, SYN | ACK, b"")), // a stray SYN-ACK must not decide the client wrongly
            (1001, c2s(100, 0, SYN, b"")),
        ];
        // The stray SYN-ACK opens the flow with the phone as client; the SYN agrees.
        let events = run(
            &packets,
            Owner {
                uid: Some(10_123),
                app: None,
            },
        );
        let flows = closed(&events);
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].key.src, SocketAddr::new(PHONE.into(), 40000));

        let packets = vec![
            (1000, c2s(100, 0, SYN, b"")),
            (1001, s2c(500, 101, SYN | ACK, b"")),
            (1002, c2s(101, 501, ACK | PSH, b"hello")),
            (1003, s2c(501, 106, ACK | PSH, b"world!")),
            (1004, c2s(106, 507, FIN | ACK, b"")),
            (1005, s2c(507, 107, FIN | ACK, b"")),
            (1006, c2s(107, 508, ACK, b"")), // the last ACK closes the flow
            (1007, c2s(107, 508, ACK, b"")), // a repeat must not open a new flow
        ];
        let events = run(
            &packets,
            Owner {
                uid: Some(10_123),
                app: None,
            },
        );
        let flows = closed(&events);
        assert_eq!(flows.len(), 1, "{events:?}");
        let f = flows[0];
        assert_eq!(f.key.proto, Proto::Tcp);
        assert_eq!(f.key.src, SocketAddr::new(PHONE.into(), 40000));
        assert_eq!(f.key.dst, SocketAddr::new(SERVER.into(), 443));
        assert_eq!(f.close_reason, Some(CloseReason::Fin));
        // As the live engine counts them: up to the ACK of the second FIN.
        assert_eq!((f.packets_up, f.packets_down), (4, 3));
        // Application bytes, as the live relay counts them.
        assert_eq!((f.bytes_up, f.bytes_down), (5, 6));
        assert_eq!((f.first_seen, f.last_seen), (1000, 1006));
        assert_eq!(f.uid, Some(10_123));
        assert!(matches!(events.first(), Some(Event::Flow(r)) if r.id == f.id));
    }

    #[test]
    fn events_follow_the_replay_policy_and_end_as_the_live_reporters() {
        let c2s = |seq, ack, flags, data: &[u8]| {
            ipv4(PHONE, SERVER, 6, &tcp(40000, 80, seq, ack, flags, data))
        };
        let s2c = |seq, ack, flags, data: &[u8]| {
            ipv4(SERVER, PHONE, 6, &tcp(80, 40000, seq, ack, flags, data))
        };
        let get: &[u8] = b"GET / HTTP/1.1\r\nHost: policy.example\r\n\r\n";
        let (page, more) = (vec![b'a'; 1000], vec![b'b'; 500]);
        let g = get.len() as u32;
        let packets = vec![
            (1000, c2s(100, 0, SYN, b"")),
            (1001, s2c(500, 101, SYN | ACK, b"")),
            (1002, c2s(101, 501, ACK | PSH, get)),
            (1003, s2c(501, 101 + g, ACK, &page)),
            (1004, s2c(1501, 101 + g, ACK, &more)),
            (1005, c2s(101 + g, 2001, FIN | ACK, b"")),
            (1006, s2c(2001, 102 + g, FIN | ACK, b"")),
            (1007, c2s(102 + g, 2002, ACK, b"")),
        ];
        let owner = Owner {
            uid: Some(10_123),
            app: None,
        };
        let events = run(&packets, owner);
        // Replay policy: the open event after the SYN, one update when the dissector named the
        // flow, no update for bytes alone, one close.
        let [
            Event::Flow(open),
            Event::Flow(named),
            Event::FlowClosed(end),
        ] = events.as_slice()
        else {
            panic!("{events:?}");
        };
        assert_eq!((open.hostname.as_deref(), open.packets_up), (None, 1));
        assert_eq!(named.hostname.as_deref(), Some("policy.example"));
        assert_eq!((named.bytes_down, named.uid), (0, Some(10_123)));

        // The same packets reported by a live reporter as the engine reports relayed ones:
        // the same final record.
        let (tx, rx) = mpsc::channel();
        let mut live = Reporter::new(tx);
        let mut clock = CaptureClock::new();
        let mut flow = FlowCommon::new(end.id, end.key, clock.at(1000), None);
        flow.record.uid = Some(10_123);
        live.opened(&mut flow, 1000);
        let steps: [(Millis, Direction, &[u8]); 8] = [
            (1000, Direction::Up, b""),
            (1001, Direction::Down, b""),
            (1002, Direction::Up, get),
            (1003, Direction::Down, &page),
            (1004, Direction::Down, &more),
            (1005, Direction::Up, b""),
            (1006, Direction::Down, b""),
            (1007, Direction::Up, b""),
        ];
        for (t, dir, data) in steps {
            let now = clock.at(t);
            live.packet(&mut flow, dir, now);
            if !data.is_empty() {
                live.bytes(&mut flow, dir, data.len(), now);
            }
            if flow.inspect_stream(dir, data) {
                live.rename(&mut flow, t);
            }
        }
        live.closed(&mut flow, CloseReason::Fin);
        let live_end = rx.try_iter().find_map(|e| match e {
            Event::FlowClosed(r) => Some(r),
            _ => None,
        });
        assert_eq!(live_end.as_ref(), Some(end));
    }

    #[test]
    fn midstream_flow_takes_higher_port_as_client_and_rst_closes() {
        let packets = vec![
            (
                5,
                ipv4(SERVER, PHONE, 6, &tcp(443, 51000, 9, 9, ACK, b"data")),
            ),
            (6, ipv4(PHONE, SERVER, 6, &tcp(51000, 443, 9, 13, RST, b""))),
        ];
        let events = run(&packets, Owner::default());
        let flows = closed(&events);
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].key.src.port(), 51000);
        assert_eq!(flows[0].close_reason, Some(CloseReason::ResetByClient));
        assert_eq!((flows[0].packets_up, flows[0].packets_down), (1, 1));
    }

    #[test]
    fn a_syn_answered_by_a_reset_is_refused() {
        let packets = vec![
            (
                1000,
                ipv4(PHONE, SERVER, 6, &tcp(40000, 443, 100, 0, SYN, b"")),
            ),
            (
                1001,
                ipv4(SERVER, PHONE, 6, &tcp(443, 40000, 0, 101, RST | ACK, b"")),
            ),
        ];
        let events = run(&packets, Owner::default());
        assert_eq!(closed(&events)[0].close_reason, Some(CloseReason::Refused));
    }

    #[test]
    fn echo_flows_are_keyed_and_counted_as_live_and_other_icmp_is_no_flow() {
        let echo = |kind: u8, ident: u16| {
            let mut m = vec![kind, 0, 0, 0];
            m.extend_from_slice(&ident.to_be_bytes());
            m.extend_from_slice(&[0, 1]);
            m.extend_from_slice(b"0123456789");
            m
        };
        let packets = vec![
            (1000, ipv4(PHONE, SERVER, 1, &echo(8, 0x4242))),
            (1001, ipv4(SERVER, PHONE, 1, &echo(0, 0x4242))),
            (1002, ipv4(PHONE, SERVER, 1, &echo(8, 0x4343))),
            (1003, ipv4(SERVER, PHONE, 1, &[3, 3, 0, 0, 0, 0, 0, 0])),
        ];
        let events = run(&packets, Owner::default());
        let flows = closed(&events);
        assert_eq!(flows.len(), 2, "{flows:?}");
        let first = flows.iter().find(|f| f.key.src.port() == 0x4242).unwrap();
        assert_eq!(
            first.key,
            flow_rules::echo_key(PHONE.into(), 0x4242, SERVER.into())
        );
        assert_eq!((first.packets_up, first.packets_down), (1, 1));
        assert_eq!((first.bytes_up, first.bytes_down), (10, 10));
    }

    #[test]
    fn client_guess_from_ports() {
        assert!(sender_looks_like_client(51000, 443, true));
        assert!(!sender_looks_like_client(443, 51000, true));
        assert!(!sender_looks_like_client(5222, 40000, true)); // Mi Push server speaking first
        assert!(sender_looks_like_client(3000, 8080, true));
        assert!(sender_looks_like_client(40000, 30000, false));
        assert!(sender_looks_like_client(7000, 7000, true));
    }

    #[test]
    fn udp_flows_idle_out_and_reply_first_is_not_client() {
        let packets = vec![
            (0, ipv4(SERVER, PHONE, 17, &udp(53, 33000, b"reply"))),
            (10, ipv4(PHONE, SERVER, 17, &udp(33001, 53, b"query"))),
            (
                10 + IdleTimeouts::default().udp.as_millis() as Millis + SWEEP_EVERY_MS,
                ipv4(PHONE, SERVER, 17, &udp(33001, 53, b"again")),
            ),
        ];
        let events = run(&packets, Owner::default());
        let flows = closed(&events);
        assert_eq!(flows.len(), 3, "{flows:?}");
        assert_eq!(flows[0].key.src.port(), 33000);
        assert_eq!(flows[0].close_reason, Some(CloseReason::Idle));
        assert_eq!(flows[1].close_reason, Some(CloseReason::Idle));
        assert_eq!(flows[2].close_reason, Some(CloseReason::EndOfCapture));
        assert!(flows.iter().all(|f| f.key.dst.port() == 53));
        let ids: std::collections::HashSet<_> = flows.iter().map(|f| f.id).collect();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn fragmented_datagram_is_reassembled_into_its_flow() {
        let payload: Vec<u8> = (0..64u8).collect();
        let whole = udp(41000, 9999, &payload);
        // Two fragments: 48 bytes (6 units of 8) with more-fragments, then the rest.
        let frag = |off: usize, more: bool, data: &[u8]| {
            let mut p = ipv4(PHONE, SERVER, 17, data);
            let field = ((off / 8) as u16) | if more { 0x2000 } else { 0 };
            p[4..6].copy_from_slice(&77u16.to_be_bytes());
            p[6..8].copy_from_slice(&field.to_be_bytes());
            p
        };
        let packets = vec![
            (1, frag(48, false, &whole[48..])),
            (2, frag(0, true, &whole[..48])),
        ];
        let (tx, rx) = mpsc::channel();
        let mut obs = Observer::new(tx);
        for (t, p) in &packets {
            obs.on_ip(*t, p, &Owner::default());
        }
        let stats = obs.finish();
        assert_eq!(stats.fragments_reassembled, 1);
        let events: Vec<Event> = rx.try_iter().collect();
        let flows = closed(&events);
        assert_eq!(flows.len(), 1);
        assert_eq!(
            (
                flows[0].key.dst.port(),
                flows[0].bytes_up,
                flows[0].packets_up
            ),
            (9999, 64, 1)
        );
    }

    #[test]
    fn gtp_tunnel_is_opened_and_the_inner_flow_named() {
        let (enb, upf) = (Ipv4Addr::new(10, 9, 0, 1), Ipv4Addr::new(10, 9, 0, 2));
        let tunnel =
            |inner: Vec<u8>| ipv4(enb, upf, 17, &udp(2152, 2152, &gtpu_with_extension(&inner)));
        let get = b"GET / HTTP/1.1\r\nHost: tunnelled.example\r\n\r\n";
        let packets = vec![
            (
                1,
                tunnel(ipv4(PHONE, SERVER, 6, &tcp(40000, 80, 100, 0, SYN, b""))),
            ),
            (
                2,
                tunnel(ipv4(
                    PHONE,
                    SERVER,
                    6,
                    &tcp(40000, 80, 101, 1, ACK | PSH, get),
                )),
            ),
            // A GTP echo request is signalling: it stays a flow of the tunnel endpoints.
            (
                3,
                ipv4(
                    enb,
                    upf,
                    17,
                    &udp(2152, 2152, &[0x32, 1, 0, 4, 0, 0, 0, 0, 0, 1, 0, 0]),
                ),
            ),
        ];
        let (tx, rx) = mpsc::channel();
        let mut obs = Observer::new(tx);
        for (t, p) in &packets {
            obs.on_ip(*t, p, &Owner::default());
        }
        assert_eq!(obs.finish().gtp_tpdus, 2);
        let events: Vec<Event> = rx.try_iter().collect();
        let flows = closed(&events);
        assert_eq!(flows.len(), 2, "{flows:?}");
        let inner = flows.iter().find(|f| f.key.proto == Proto::Tcp).unwrap();
        assert_eq!(inner.key.src, SocketAddr::new(PHONE.into(), 40000));
        assert_eq!(inner.hostname.as_deref(), Some("tunnelled.example"));
        assert_eq!(inner.bytes_up, get.len() as u64);
        let echo = flows.iter().find(|f| f.key.proto == Proto::Udp).unwrap();
        assert_eq!(echo.key.dst, SocketAddr::new(upf.into(), 2152));
    }

    #[test]
    fn late_dns_answer_names_an_open_flow() {
        let resolver = Ipv4Addr::new(198, 18, 0, 1);
        let mut query = 7u16.to_be_bytes().to_vec();
        query.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        query.extend(b"\x04late\x07example\x00\x00\x01\x00\x01");
        let mut answer = query.clone();
        answer[2..4].copy_from_slice(&[0x81, 0x80]);
        answer[7] = 1;
        answer.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        answer.extend(SERVER.octets());
        let packets = vec![
            // The app connects to an address it had cached; the lookup's answer comes after.
            (
                1000,
                ipv4(PHONE, SERVER, 6, &tcp(40000, 5000, 100, 0, SYN, b"")),
            ),
            (1001, ipv4(PHONE, resolver, 17, &udp(41000, 53, &query))),
            (1002, ipv4(resolver, PHONE, 17, &udp(53, 41000, &answer))),
            (
                1003,
                ipv4(PHONE, SERVER, 6, &tcp(40000, 5000, 101, 0, RST, b"")),
            ),
        ];
        let events = run(&packets, Owner::default());
        let named_before_close = events.iter().any(|e| match e {
            Event::Flow(r) => {
                r.key.proto == Proto::Tcp && r.hostname.as_deref() == Some("late.example")
            }
            _ => false,
        });
        assert!(named_before_close, "{events:?}");
        let tcp = closed(&events)
            .into_iter()
            .find(|f| f.key.proto == Proto::Tcp)
            .unwrap();
        assert_eq!(tcp.hostname.as_deref(), Some("late.example"));
        assert_eq!(tcp.hostname_source, Some(NameSource::Dns));
    }

    /// A DNS query for `name` (`qtype`), or with `answer` its empty NOERROR answer.
    fn dns_message(id: u16, name: &str, qtype: u16, answer: bool) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend(if answer { [0x81, 0x80] } else { [0x01, 0x00] });
        m.extend([0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend(label.as_bytes());
        }
        m.push(0);
        m.extend(qtype.to_be_bytes());
        m.extend([0, 1]);
        m
    }

    fn owned(uid: u32) -> Owner {
        Owner {
            uid: Some(uid),
            app: None,
        }
    }

    #[test]
    fn a_dns_exchange_over_udp_ends_with_its_last_answer_as_live() {
        let resolver = Ipv4Addr::new(198, 18, 0, 1);
        let up = |m: Vec<u8>| ipv4(PHONE, resolver, 17, &udp(41000, 53, &m));
        let down = |m: Vec<u8>| ipv4(resolver, PHONE, 17, &udp(53, 41000, &m));
        let packets = [
            // One process: A and AAAA with one id from one socket, both before the answers.
            (
                1000,
                up(dns_message(5, "one.example", 1, false)),
                owned(10001),
            ),
            (
                1001,
                up(dns_message(5, "one.example", 28, false)),
                owned(10001),
            ),
            (
                1010,
                down(dns_message(5, "one.example", 28, true)),
                owned(10001),
            ),
            (
                1011,
                down(dns_message(5, "one.example", 1, true)),
                owned(10001),
            ),
            // A late duplicate answer stays with the closed exchange: no flow, no record.
            (
                1200,
                down(dns_message(5, "one.example", 1, true)),
                Owner::default(),
            ),
            // 675 ms on, another process has the source port.
            (
                1686,
                up(dns_message(9, "two.example", 1, false)),
                owned(10002),
            ),
            (
                1700,
                down(dns_message(9, "two.example", 1, true)),
                owned(10002),
            ),
        ];
        let (tx, rx) = mpsc::channel();
        let mut obs = Observer::new(tx);
        for (t, p, owner) in &packets {
            obs.on_ip(*t, p, owner);
        }
        obs.finish();
        let events: Vec<Event> = rx.try_iter().collect();
        let flows: Vec<_> = closed(&events)
            .into_iter()
            .map(|f| (f.uid, f.packets_up, f.packets_down, f.close_reason))
            .collect();
        assert_eq!(
            flows,
            vec![
                (Some(10001), 2, 2, Some(CloseReason::Answered)),
                (Some(10002), 1, 1, Some(CloseReason::Answered)),
            ]
        );
        let lookups: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Dns(d) => Some((d.query.as_str(), d.qtype, d.uid)),
                _ => None,
            })
            .collect();
        assert_eq!(
            lookups,
            vec![
                ("one.example", 28, Some(10001)),
                ("one.example", 1, Some(10001)),
                ("two.example", 1, Some(10002)),
            ]
        );
    }

    #[test]
    fn garbage_never_panics_and_is_counted() {
        let (tx, _rx) = mpsc::channel();
        let mut obs = Observer::new(tx);
        for len in 0..80usize {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            for link in [0, 1, 101, 113, 276, 12345] {
                obs.on_frame(0, link, &junk, Owner::default());
            }
        }
        let s = obs.finish();
        assert_eq!(s.frames, 80 * 6);
        assert_eq!(s.unsupported_link.get(&12345), Some(&80));
    }
}
