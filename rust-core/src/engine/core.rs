//! The flow engine's state and its reactions, without the loop: fed packets from the tun,
//! readiness of outbound sockets, owner answers and the time, it writes packets and opens
//! sockets through its [`Host`] and asks for owner lookups through a queue. It reads no clock
//! and never waits: `event_loop` drives it with mio and the wall clock, `engine::sim` on
//! virtual time.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::flow::{CloseReason, Direction, FlowId, FlowKey, Proto};
use crate::flow_rules::{self, IdleClass, IdleTimeouts};

use super::buffers::BufferPool;
use super::device::{BufferRecycler, PacketQueue};
use super::host::{Host, StreamSocket};
use super::icmp::EchoFlow;
use super::packet::{self, Drop, Parsed, Transport};
use super::report::{FlowCommon, Now, Reporter};
use super::shard::{Shard, shard_of};
use super::tcp::{Outcome, Phase, TcpDns, TcpFlow};
use super::udp::UdpFlow;
use super::{EngineConfig, EngineStats, Tuning, offload};

pub enum Flow<H: Host> {
    Tcp(Box<TcpFlow<H::Stream>>),
    Udp(Box<UdpFlow<H::Datagram>>),
    Echo(Box<EchoFlow<H::Datagram>>),
}

/// An owner lookup the engine wants: which process has the app's end of this flow. The driver
/// runs it off the packet path and answers with [`Core::on_owner`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerRequest {
    pub flow: FlowId,
    pub proto: Proto,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl<H: Host> Flow<H> {
    pub fn common(&mut self) -> &mut FlowCommon {
        match self {
            Flow::Tcp(f) => &mut f.common,
            Flow::Udp(f) => &mut f.common,
            Flow::Echo(f) => &mut f.common,
        }
    }

    fn owner_done(&self) -> bool {
        match self {
            Flow::Tcp(f) => f.common.owner_done,
            Flow::Udp(f) => f.common.owner_done,
            Flow::Echo(f) => f.common.owner_done,
        }
    }
}

pub struct Core<H: Host> {
    pub(super) config: EngineConfig,
    pub(super) tuning: Tuning,
    epoch: Instant,
    pub(super) host: H,
    pub(super) shards: Vec<Shard>,
    pub(super) pool: BufferPool,
    pub(super) flows: HashMap<FlowId, Flow<H>>,
    pub(super) tcp_index: HashMap<(SocketAddr, SocketAddr), FlowId>,
    pub(super) udp_index: HashMap<(SocketAddr, SocketAddr), FlowId>,
    pub(super) echo_index: HashMap<(IpAddr, IpAddr, u16), FlowId>,
    next_id: FlowId,
    pub(super) reporter: Reporter,
    /// Packets for the tun: shard output and the engine's own (UDP, ICMP, RST), written
    /// through the host by `flush_tun`.
    pub(super) to_tun: PacketQueue,
    /// Flows to service after the next shard poll.
    touched: Vec<FlowId>,
    /// Reusable receive buffer for UDP and ICMP.
    pub(super) datagram: Vec<u8>,
    /// Whether the driver answers owner lookups; without, every flow is done at once.
    owner_lookups: bool,
    owner_requests: Vec<OwnerRequest>,
    next_sweep: Option<Instant>,
    next_flush: Option<i64>,
    /// Flows whose SYN-ACK (TCP) or DNS answers (UDP) wait for the owner lookup, with the time
    /// they are released anyway.
    pub(super) held: Vec<(FlowId, Instant)>,
    /// Relayed byte total at the last ring-memory check, and when it ran.
    trim_mark: u64,
    last_trim: Instant,
    /// The last estimate exceeded the budget: flows also trim themselves when they go quiet.
    over_budget: bool,
    /// Ring bytes the flows trimmed themselves since the last check: what they would hold
    /// without it.
    self_trimmed: usize,
}

impl<H: Host> Core<H> {
    /// `owner_lookups`: the driver takes [`Core::take_owner_requests`] and answers each with
    /// [`Core::on_owner`]. `now` is the engine's epoch.
    pub fn new(
        config: EngineConfig,
        tuning: Tuning,
        host: H,
        reporter: Reporter,
        owner_lookups: bool,
        now: Now,
    ) -> Core<H> {
        let epoch = now.mono;
        let recycler = BufferRecycler::default();
        let segment_mtu = offload::shard_mtu(config.mtu, tuning.tun_offload);
        let shards = (0..tuning.shards.max(1))
            .map(|_| {
                Shard::new(
                    segment_mtu,
                    tuning.tun_offload,
                    smoltcp::time::Instant::from_micros(0),
                    recycler.clone(),
                )
            })
            .collect();
        // A ring must hold several segments: with a large MTU or offload (fewer packets per
        // byte, the cheapest way to go fast on a tun) 128 KiB would be two segments in flight.
        let ring = |size: usize| size.max(RING_SEGMENTS * segment_mtu);
        let pool = BufferPool::new(
            ring(tuning.tcp_rx_buffer),
            ring(tuning.tcp_tx_buffer),
            tuning.spare_buffers,
        );
        Core {
            config,
            tuning,
            epoch,
            host,
            shards,
            pool,
            flows: HashMap::new(),
            tcp_index: HashMap::new(),
            udp_index: HashMap::new(),
            echo_index: HashMap::new(),
            next_id: 1,
            reporter,
            to_tun: PacketQueue::new(recycler),
            touched: Vec::new(),
            datagram: vec![0; 65536],
            owner_lookups,
            owner_requests: Vec::new(),
            next_sweep: None,
            next_flush: None,
            held: Vec::new(),
            trim_mark: 0,
            last_trim: epoch,
            over_budget: false,
            self_trimmed: 0,
        }
    }

    pub fn stats(&self) -> EngineStats {
        self.reporter.stats.clone()
    }

    fn smol_now(&self, now: Now) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(
            now.mono.saturating_duration_since(self.epoch).as_micros() as i64,
        )
    }

    pub(super) fn new_flow_id(&mut self) -> FlowId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub(super) fn dropped(&mut self) {
        self.reporter.stats.packets_dropped += 1;
    }

    pub(super) fn is_dns_service(&self, dst: SocketAddr) -> bool {
        dst.port() == 53
            && match dst.ip() {
                IpAddr::V4(ip) => ip == self.config.dns_v4,
                IpAddr::V6(ip) => Some(ip) == self.config.dns_v6,
            }
    }

    /// DNS-over-TLS (port 853) to the tunnel's own DNS address: nothing there serves TLS.
    pub(super) fn is_private_dns_probe(&self, dst: SocketAddr) -> bool {
        dst.port() == DNS_OVER_TLS_PORT
            && match dst.ip() {
                IpAddr::V4(ip) => ip == self.config.dns_v4,
                IpAddr::V6(ip) => Some(ip) == self.config.dns_v6,
            }
    }

    /// A new resolver (the phone changed networks): queries from now on go there; flows, the
    /// session and the queries already sent to the old one carry on.
    pub(super) fn set_dns_upstream(&mut self, upstream: SocketAddr) {
        log::info!("DNS upstream {} -> {upstream}", self.config.dns_upstream);
        self.config.dns_upstream = upstream;
    }

    /// Attribute a new flow on the spot when the lookup can answer without waiting, before its
    /// first event: the SYN-ACK (or a DNS answer) then waits for no other thread.
    pub(super) fn owner_now(&mut self, common: &mut FlowCommon) {
        let key = common.record.key;
        if let Some(uid) = self.host.owner_now(key.proto, key.src, key.dst) {
            common.record.uid = Some(uid);
            common.owner_done = true;
        }
    }

    /// Start owner attribution for a new flow that `owner_now` could not attribute.
    pub(super) fn ask_owner(&mut self, id: FlowId, key: FlowKey) {
        let Some(flow) = self.flows.get_mut(&id) else {
            return;
        };
        let common = flow.common();
        if common.owner_done {
            return;
        }
        if self.owner_lookups {
            self.owner_requests.push(OwnerRequest {
                flow: id,
                proto: key.proto,
                local: key.src,
                remote: key.dst,
            });
        } else {
            common.owner_done = true;
        }
    }

    /// Owner lookups asked for since the last call, for the driver to run.
    pub fn take_owner_requests(&mut self) -> std::vec::Drain<'_, OwnerRequest> {
        self.owner_requests.drain(..)
    }

    /// Some open flow still waits for its owner lookup: before the final events of a session
    /// the driver lets those answer (bounded), so the last flows are attributed too.
    pub fn owners_pending(&self) -> bool {
        self.flows.values().any(|f| !f.owner_done())
    }

    /// An owner lookup finished: the uid, or None when it found no owner.
    pub fn on_owner(&mut self, id: FlowId, uid: Option<u32>) {
        match self.flows.get_mut(&id) {
            Some(flow) => {
                let common = flow.common();
                common.owner_done = true;
                if let Some(uid) = uid {
                    common.record.uid = Some(uid);
                    self.reporter.owner_found(common);
                }
                self.release_if_ready(id);
            }
            None => {
                if let Some(uid) = uid {
                    self.reporter.late_owner(id, uid);
                }
            }
        }
        self.reporter.owner_known(id, uid);
    }

    /// Answer the app's SYN (release the held SYN-ACK) once the outbound connect succeeded and
    /// the owner lookup answered. Holding it until then keeps the app's socket in SYN_SENT, so
    /// the lookup sees it even for flows that would be over in a millisecond.
    /// A DNS flow's answers held for the same reason go out once the owner is known.
    fn release_if_ready(&mut self, id: FlowId) {
        let flow = match self.flows.get_mut(&id) {
            Some(Flow::Tcp(flow)) => flow,
            Some(Flow::Udp(flow)) => {
                if flow.common.owner_done {
                    self.release_answers(id);
                }
                return;
            }
            _ => return,
        };
        if flow.phase == Phase::Connecting && flow.connected && flow.common.owner_done {
            flow.phase = Phase::Relaying;
            let shard = &mut self.shards[flow.shard];
            shard.socket(flow.handle).pause_synack(false);
            shard.dirty = true;
            self.touched.push(id);
        }
    }

    /// Release held SYN-ACKs and DNS answers whose owner lookup is taking too long.
    fn release_overdue(&mut self, now: Now) {
        let mut due = Vec::new();
        self.held.retain(|&(id, deadline)| {
            if deadline <= now.mono {
                due.push(id);
                false
            } else {
                true
            }
        });
        for id in due {
            match self.flows.get_mut(&id) {
                Some(Flow::Tcp(flow)) => flow.common.owner_done = true,
                Some(Flow::Udp(flow)) => flow.common.owner_done = true,
                _ => {}
            }
            self.release_if_ready(id);
        }
    }

    /// One packet read from the tun. The buffer is recycled into a shard or the spare pool.
    pub fn on_packet(&mut self, buf: Vec<u8>, now: Now) {
        let parsed = match packet::parse(&buf) {
            Ok(parsed) => parsed,
            Err(reason) => {
                if reason != Drop::Unsupported {
                    log::trace!("dropped packet from tun: {reason:?}");
                }
                self.dropped();
                self.to_tun.recycle(buf);
                return;
            }
        };
        #[cfg(test)]
        kill_if_provoked(parsed.dst_addr().port());
        match parsed.transport {
            Transport::Tcp { syn, ack, rst, .. } => {
                self.tcp_packet(parsed, buf, syn && !ack && !rst, rst, now)
            }
            Transport::Udp { .. } => {
                let key = (parsed.src_addr(), parsed.dst_addr());
                self.supervised(
                    |core| core.udp_index.get(&key).copied(),
                    |core| core.udp_packet(parsed, &buf, now),
                    now,
                );
                self.to_tun.recycle(buf);
            }
            Transport::Echo { ident, .. } => {
                let key = (parsed.src, parsed.dst, ident);
                self.supervised(
                    |core| core.echo_index.get(&key).copied(),
                    |core| core.echo_packet(parsed, ident, &buf, now),
                    now,
                );
                self.to_tun.recycle(buf);
            }
        }
    }

    fn tcp_packet(&mut self, parsed: Parsed, buf: Vec<u8>, is_syn: bool, is_rst: bool, now: Now) {
        let key = (parsed.src_addr(), parsed.dst_addr());
        if let Some(&id) = self.tcp_index.get(&key)
            && let Some(Flow::Tcp(flow)) = self.flows.get_mut(&id)
        {
            if let Transport::Tcp {
                seq, payload_len, ..
            } = parsed.transport
            {
                flow.saw_segment(seq, payload_len);
            }
            self.reporter.packet(&mut flow.common, Direction::Up, now);
            let shard = &mut self.shards[flow.shard];
            shard.device.rx.push(buf);
            shard.dirty = true;
            self.touched.push(id);
            return;
        }
        if is_syn {
            self.open_tcp(parsed, buf, now);
        } else {
            // A segment for no flow (late, or after we dropped the flow): answer like a closed
            // port would, so the app's socket does not hang.
            if !is_rst {
                let mut out = self.to_tun.take_buffer();
                if packet::build_rst(&mut out, &buf) {
                    self.to_tun.push(out);
                } else {
                    self.to_tun.recycle(out);
                }
            }
            self.dropped();
            self.to_tun.recycle(buf);
        }
    }

    fn open_tcp(&mut self, parsed: Parsed, syn: Vec<u8>, now: Now) {
        let src = parsed.src_addr();
        let dst = parsed.dst_addr();
        if self.is_private_dns_probe(dst) {
            // Android's Private DNS "Automatic" probes DNS-over-TLS on the resolver it was
            // given, which is ours. Relayed, the probe hangs ~20 s before Android falls back to
            // port 53; a RST now makes the fallback immediate (strict mode is warned about).
            self.refuse_syn(
                &syn,
                &std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            );
            self.to_tun.recycle(syn);
            return;
        }
        let is_dns = self.is_dns_service(dst);
        let target = if is_dns {
            self.config.dns_upstream
        } else {
            dst
        };
        let id = self.new_flow_id();
        let key = FlowKey {
            proto: Proto::Tcp,
            src,
            dst,
        };
        let mut common = FlowCommon::new(id, key, now, self.tuning.device.as_ref());
        common.record.packets_up = 1;

        let stream = match self.host.tcp_connect(id, target) {
            Ok(stream) => stream,
            Err(e) => {
                log::debug!("connect {target} failed at once: {e}");
                self.refuse_syn(&syn, &e);
                self.to_tun.recycle(syn);
                self.reporter.opened(&mut common, now.ms);
                self.reporter.closed(&mut common, connect_reason(&e));
                return;
            }
        };
        let Some(buffers) = self.pool.acquire() else {
            log::warn!("out of memory for socket buffers; refusing {src} -> {dst}");
            self.host.close_stream(stream);
            self.refuse_syn(&syn, &std::io::Error::from(std::io::ErrorKind::OutOfMemory));
            self.to_tun.recycle(syn);
            return;
        };
        let shard_index = shard_of(src, dst, self.shards.len());
        let smol_now = self.smol_now(now);
        let shard = &mut self.shards[shard_index];
        let Some(handle) = shard.listen(dst, &buffers, smol_now) else {
            self.pool.release(buffers);
            self.host.close_stream(stream);
            self.dropped();
            self.to_tun.recycle(syn);
            return;
        };
        shard.device.rx.push(syn);
        // Deliver the SYN now, before another listener for the same destination could take it.
        shard.ingress(smol_now);

        self.owner_now(&mut common);
        self.reporter.opened(&mut common, now.ms);
        let rx_start = match parsed.transport {
            Transport::Tcp { seq, .. } => seq.wrapping_add(1),
            _ => 0,
        };
        let flow = TcpFlow {
            common,
            shard: shard_index,
            handle,
            buffers: Some(buffers),
            stream,
            phase: Phase::Connecting,
            out_readable: false,
            out_writable: false,
            up_closed: false,
            down_closed: false,
            dns: is_dns.then(TcpDns::default),
            rx_start,
            rx_max_end: rx_start,
            trimmed_up: 0,
            trimmed_down: 0,
            connected: false,
        };
        self.flows.insert(id, Flow::Tcp(Box::new(flow)));
        self.tcp_index.insert((src, dst), id);
        self.ask_owner(id, key);
        self.schedule_sweep(now);
    }

    /// Tell the app its SYN failed: ICMP unreachable when the network said so, else RST.
    fn refuse_syn(&mut self, syn: &[u8], error: &std::io::Error) {
        let mut out = self.to_tun.take_buffer();
        let unreachable = matches!(
            error.raw_os_error(),
            Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) | Some(libc::EADDRNOTAVAIL)
        );
        let built = match (unreachable, packet::parse(syn)) {
            (true, Ok(parsed)) => packet::build_unreachable(&mut out, parsed.dst, syn, false),
            _ => packet::build_rst(&mut out, syn),
        };
        if built {
            self.to_tun.push(out);
        } else {
            self.to_tun.recycle(out);
        }
    }

    /// Readiness of flow `id`'s outbound socket.
    pub fn on_ready(&mut self, id: FlowId, readable: bool, writable: bool, now: Now) {
        match self.flows.get_mut(&id) {
            Some(Flow::Tcp(flow)) => {
                flow.out_readable |= readable;
                flow.out_writable |= writable;
                if flow.phase == Phase::Connecting {
                    match flow.check_connect() {
                        None => return,
                        Some(Ok(())) => {
                            log::trace!("flow {id}: connected to {}", flow.common.record.key.dst);
                            flow.connected = true;
                            if !flow.common.owner_done {
                                self.held.push((id, now.mono + OWNER_HOLD));
                            }
                            self.release_if_ready(id);
                            return;
                        }
                        Some(Err(e)) => {
                            log::debug!("connect {} failed: {e}", flow.common.record.key.dst);
                            self.fail_connect(id, connect_reason(&e));
                            return;
                        }
                    }
                }
                self.touched.push(id);
            }
            Some(Flow::Udp(_)) if readable => {
                self.supervised(|_| Some(id), |core| core.udp_readable(id, now), now)
            }
            Some(Flow::Echo(_)) if readable => {
                self.supervised(|_| Some(id), |core| core.echo_readable(id, now), now)
            }
            _ => {}
        }
    }

    /// The supervision boundary of datagram flows (TCP flows have theirs in `service_touched`):
    /// a bug that panics while one flow's datagram is handled costs that flow (closed with
    /// reason `error`, counted in `flows_failed`, logged), not the engine. `flow` finds the
    /// flow after the panic (it may have been opened by the handling that panicked).
    fn supervised(
        &mut self,
        flow: impl FnOnce(&Self) -> Option<FlowId>,
        handle: impl FnOnce(&mut Self),
        now: Now,
    ) {
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(self)));
        if handled.is_err() {
            self.reporter.stats.flows_failed += 1;
            let id = flow(self);
            log::error!("flow {id:?} panicked while its datagram was handled: dropped");
            if let Some(id) = id {
                self.close_flow(id, CloseReason::Error, now);
            }
        }
    }

    /// The outbound connect failed: reset the app's SYN and end the flow.
    /// smoltcp answers the paused SYN with a RST, so the app fails fast.
    fn fail_connect(&mut self, id: FlowId, reason: CloseReason) {
        let Some(Flow::Tcp(flow)) = self.flows.get_mut(&id) else {
            return;
        };
        flow.abort(&mut self.shards[flow.shard], reason);
        self.touched.push(id);
    }

    /// Poll the shards that need it, then service the flows they touched; repeat while work
    /// remains (bounded).
    pub fn process(&mut self, now: Now) {
        let smol_now = self.smol_now(now);
        for _ in 0..4 {
            self.poll_shards(smol_now, now);
            if self.touched.is_empty() {
                break;
            }
            self.service_touched(now);
        }
        self.trim_buffers(now);
    }

    /// Keep the TCP rings' resident memory under `tuning.tcp_buffer_budget`: once enough bytes
    /// moved to possibly exceed it, estimate what the flows touched and give the pages of empty
    /// rings back. A lone bulk flow stays under budget and is never trimmed (no page-fault
    /// churn); a thousand busy flows are trimmed every 100 ms.
    fn trim_buffers(&mut self, now: Now) {
        let moved = self.reporter.stats.bytes_up + self.reporter.stats.bytes_down;
        let budget = self.tuning.tcp_buffer_budget;
        if moved - self.trim_mark < (budget / 2) as u64
            || now.mono.saturating_duration_since(self.last_trim) < TRIM_INTERVAL
        {
            return;
        }
        self.trim_mark = moved;
        self.last_trim = now.mono;
        let estimate: usize = self
            .flows
            .values()
            .map(|flow| match flow {
                Flow::Tcp(tcp) => tcp.touched(),
                _ => 0,
            })
            .sum();
        // Busy flows keep trimming themselves down to half the budget (hysteresis): between two
        // passes a thousand fast flows can touch many megabytes. What they trimmed counts, or
        // the trimming would stop because it works.
        self.over_budget =
            estimate.saturating_add(std::mem::take(&mut self.self_trimmed)) > budget / 2;
        if estimate <= budget {
            return;
        }
        for flow in self.flows.values_mut() {
            if let Flow::Tcp(tcp) = flow {
                tcp.trim(&mut self.shards[tcp.shard]);
            }
        }
    }

    fn poll_shards(&mut self, smol_now: smoltcp::time::Instant, now: Now) {
        for index in 0..self.shards.len() {
            if !self.shards[index].is_due(smol_now) {
                continue;
            }
            self.shards[index].poll(smol_now);
            while let Some(out) = self.shards[index].device.tx.pop() {
                if let Ok(parsed) = packet::parse(&out) {
                    // Our packet to the app: its dst is the flow's src.
                    if let Some(&id) = self.tcp_index.get(&(parsed.dst_addr(), parsed.src_addr()))
                        && let Some(Flow::Tcp(flow)) = self.flows.get_mut(&id)
                    {
                        self.reporter.packet(&mut flow.common, Direction::Down, now);
                        self.touched.push(id);
                    }
                }
                self.to_tun.push(out);
            }
            // Write each shard's output at once: a poll of a shard with many busy flows emits
            // hundreds of segments, and holding every shard's until the end inflates memory.
            self.flush_tun(now);
        }
    }

    /// Write every queued packet to the tun. A full tun drops the packet (TCP retransmits, as
    /// on a real link).
    pub fn flush_tun(&mut self, now: Now) {
        while let Some(mut packet) = self.to_tun.pop() {
            if self.host.transmit(&mut packet).is_err() {
                self.reporter.stats.packets_dropped += 1;
            } else if let Some(tap) = &self.tuning.packet_tap {
                tap.offer(now.ms, &packet);
            }
            self.to_tun.recycle(packet);
        }
    }

    fn service_touched(&mut self, now: Now) {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for id in touched.drain(..) {
            let Some(Flow::Tcp(flow)) = self.flows.get_mut(&id) else {
                continue;
            };
            // The supervision boundary: a bug that panics while one flow is serviced costs that
            // flow (dropped, counted, logged), not the engine and every other flow with it.
            let serviced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                #[cfg(test)]
                panic_if_provoked(flow.common.record.key.dst.port());
                flow.service(&mut self.shards[flow.shard], &mut self.reporter, now)
            }));
            let Ok(outcome) = serviced else {
                self.reporter.stats.flows_failed += 1;
                log::error!("flow {id} panicked while being serviced: dropped (engine goes on)");
                self.close_tcp(id, CloseReason::Error);
                continue;
            };
            if self.over_budget && outcome == Outcome::Open && flow.touched() >= TRIM_MIN {
                let released = flow.trim(&mut self.shards[flow.shard]);
                self.self_trimmed = self.self_trimmed.saturating_add(released);
            }
            if flow.common.inspector_changed {
                flow.common.inspector_changed = false;
                self.reporter.rename(&mut flow.common, now.ms);
            }
            if let Some(dns) = &mut flow.dns
                && !dns.exchanges.is_empty()
            {
                let exchanges = std::mem::take(&mut dns.exchanges);
                for (query, answer) in exchanges {
                    self.record_dns(id, &query, Some(&answer), now);
                }
            }
            match outcome {
                Outcome::Open => {}
                Outcome::Again => self.touched.push(id),
                Outcome::Closed(reason) => self.close_tcp(id, reason),
            }
        }
        // Keep the allocation.
        if self.touched.is_empty() {
            self.touched = touched;
        }
    }

    /// Log one DNS exchange of flow `flow_id` (key, owner taken from the flow) and feed the
    /// IP -> names cache. Parsed by `dissect::dns`, as the pcap observer does, so live and
    /// replayed captures give the same rows.
    pub(super) fn record_dns(
        &mut self,
        flow_id: FlowId,
        query: &[u8],
        answer: Option<&[u8]>,
        now: Now,
    ) {
        use crate::dissect::dns;
        let Some(flow) = self.flows.get_mut(&flow_id) else {
            return;
        };
        let owner_pending = !flow.common().owner_done;
        let flow = &flow.common().record;
        let exchange = dns::Exchange {
            time: now.ms,
            client: flow.key.src,
            server: flow.key.dst,
            transport: flow.key.proto,
        };
        let parsed_query = dns::parse_lenient(query).ok();
        let parsed_answer = answer.and_then(|a| dns::parse_lenient(a).ok());
        let Some(mut record) =
            dns::record_from(exchange, parsed_query.as_ref(), parsed_answer.as_ref())
        else {
            log::debug!("DNS exchange of flow {flow_id} has no readable question");
            return;
        };
        record.uid = flow.uid;
        record.flow_id = Some(flow_id);
        if record.rcode.is_none() {
            // An answer we could not parse still says how it ended.
            record.rcode = answer.and_then(|a| a.get(3)).map(|b| b & 0x0f);
        }
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

    /// Log a query that never reached the upstream because no socket to it could be opened.
    /// There is no flow (so no owner) and no rcode, but the app's attempt is evidence too.
    pub(super) fn record_unsent_dns(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        query: &[u8],
        now: Now,
    ) {
        use crate::dissect::dns;
        let exchange = dns::Exchange {
            time: now.ms,
            client,
            server,
            transport: Proto::Udp,
        };
        let parsed_query = dns::parse_lenient(query).ok();
        match dns::record_from(exchange, parsed_query.as_ref(), None) {
            Some(record) => self.reporter.dns(record),
            None => log::debug!("unsent DNS query from {client} has no readable question"),
        }
    }

    pub(super) fn close_tcp(&mut self, id: FlowId, reason: CloseReason) {
        let Some(Flow::Tcp(flow)) = self.flows.remove(&id) else {
            return;
        };
        let TcpFlow {
            mut common,
            stream,
            buffers,
            shard,
            handle,
            ..
        } = *flow;
        let key = common.record.key;
        self.tcp_index.remove(&(key.src, key.dst));
        self.host.close_stream(stream);
        if let Some(buffers) = buffers {
            self.shards[shard].remove(handle, &mut self.pool, buffers);
        }
        self.reporter.closed(&mut common, reason);
    }

    /// Close a flow of any kind (idle expiry, engine stop).
    pub(super) fn close_flow(&mut self, id: FlowId, reason: CloseReason, now: Now) {
        let smol_now = self.smol_now(now);
        match self.flows.get_mut(&id) {
            Some(Flow::Tcp(flow)) => {
                let shard = &mut self.shards[flow.shard];
                // The app is told with a RST; the server with a RST too.
                shard.socket(flow.handle).abort();
                shard.poll(smol_now);
                while let Some(out) = shard.device.tx.pop() {
                    self.to_tun.push(out);
                }
                flow.stream.reset_on_close();
                self.close_tcp(id, reason);
            }
            Some(Flow::Udp(_)) => self.close_udp(id, reason, now),
            Some(Flow::Echo(_)) => self.close_echo(id, reason),
            None => {}
        }
    }

    pub(super) fn schedule_sweep(&mut self, now: Now) {
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now.mono + SWEEP_INTERVAL);
        }
    }

    /// The last flow is gone: drop the capacity a burst of flows grew the tables to. Tables sized
    /// for 1,000 flows hold megabytes, and memory still allocated cannot be trimmed.
    fn shrink_tables(&mut self) {
        self.flows.shrink_to_fit();
        self.tcp_index.shrink_to_fit();
        self.udp_index.shrink_to_fit();
        self.echo_index.shrink_to_fit();
        self.touched.shrink_to_fit();
        self.owner_requests.shrink_to_fit();
        self.held.shrink_to_fit();
        for shard in &mut self.shards {
            shard.shrink_sockets();
        }
    }

    /// Timers: idle expiry, DNS timeouts, throttled flow updates. Cheap when nothing is due.
    pub fn on_timers(&mut self, now: Now) {
        self.reporter.release_dns(now.ms);
        if !self.held.is_empty() {
            self.release_overdue(now);
        }
        if self.next_sweep.is_some_and(|t| t <= now.mono) {
            self.next_sweep = None;
            self.sweep(now);
            if self.flows.is_empty() {
                self.shrink_tables();
                release_free_heap();
            } else {
                self.schedule_sweep(now);
            }
        }
        if self.reporter.has_pending() {
            let mut next: Option<i64> = None;
            let mut keep = Vec::new();
            for id in self.reporter.take_dirty() {
                let Some(flow) = self.flows.get_mut(&id) else {
                    continue;
                };
                if let Some(due) = self.reporter.emit_if_due(flow.common(), now.ms) {
                    keep.push(id);
                    next = Some(next.map_or(due, |n| n.min(due)));
                }
            }
            self.reporter.restore_dirty(keep);
            self.next_flush = next;
        } else {
            self.next_flush = None;
        }
    }

    fn sweep(&mut self, now: Now) {
        let tuning = &self.tuning;
        let idle_limits = IdleTimeouts {
            tcp: tuning.tcp_idle_timeout,
            tcp_half_closed: tuning.tcp_half_closed_timeout,
            udp: tuning.udp_idle_timeout,
            dns: tuning.dns_flow_timeout,
            echo: tuning.echo_idle_timeout,
        };
        let connect_timeout = tuning.connect_timeout;
        let mut expired = Vec::new();
        for (&id, flow) in &mut self.flows {
            let since = match flow {
                Flow::Tcp(f) if f.phase == Phase::Connecting => f.common.opened,
                _ => flow.common().last_activity,
            };
            let idle = now.mono.saturating_duration_since(since);
            let limit = match flow {
                Flow::Tcp(f) if f.phase == Phase::Connecting => connect_timeout,
                Flow::Tcp(f) => idle_limits.limit(IdleClass::Tcp {
                    half_closed: f.up_closed || f.down_closed,
                }),
                Flow::Udp(f) => idle_limits.limit(IdleClass::Udp {
                    dns: flow_rules::is_dns_server(&f.common.record.key),
                }),
                Flow::Echo(_) => idle_limits.limit(IdleClass::Echo),
            };
            if idle >= limit {
                let reason = match flow {
                    Flow::Tcp(f) if f.phase == Phase::Connecting => CloseReason::ConnectFailed,
                    _ => CloseReason::Idle,
                };
                expired.push((id, reason));
            }
        }
        for (id, reason) in expired {
            if reason == CloseReason::ConnectFailed {
                self.fail_connect(id, reason);
            } else {
                self.close_flow(id, reason, now);
            }
        }
        self.dns_timeouts(now);
    }

    /// How long the loop may sleep: the nearest smoltcp deadline or timer, clamped to
    /// [1 ms, 5 s]; zero when work is pending.
    pub fn timeout(&mut self, now: Now) -> Duration {
        if !self.touched.is_empty() {
            return Duration::ZERO;
        }
        let smol_now = self.smol_now(now);
        let mut wait = MAX_WAIT;
        for shard in &self.shards {
            if shard.dirty {
                return Duration::ZERO;
            }
            if let Some(deadline) = shard.deadline {
                let micros = (deadline - smol_now.min(deadline)).total_micros();
                wait = wait.min(Duration::from_micros(micros));
            }
        }
        if let Some(sweep) = self.next_sweep {
            wait = wait.min(sweep.saturating_duration_since(now.mono));
        }
        if let Some(&(_, release)) = self.held.iter().min_by_key(|(_, at)| *at) {
            wait = wait.min(release.saturating_duration_since(now.mono));
        }
        if let Some(flush) = self.next_flush {
            wait = wait.min(Duration::from_millis((flush - now.ms).max(0) as u64));
        }
        wait.max(MIN_WAIT)
    }

    /// Close every flow (reason engine-stop) and flush their final events.
    pub fn shutdown(&mut self, now: Now) {
        let ids: Vec<FlowId> = self.flows.keys().copied().collect();
        for id in ids {
            self.close_flow(id, CloseReason::EngineStop, now);
        }
        self.reporter.release_dns(crate::flow::Millis::MAX);
    }
}

/// DNS-over-TLS, what Android's Private DNS probes.
const DNS_OVER_TLS_PORT: u16 = 853;
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
const TRIM_INTERVAL: Duration = Duration::from_millis(100);
/// Longest a connected flow's SYN-ACK, or a DNS answer, waits for its owner lookup.
pub(super) const OWNER_HOLD: Duration = Duration::from_millis(200);
/// Over budget, a flow returns its ring pages once it touched this much since its last trim.
const TRIM_MIN: usize = 8 * 1024;
/// Minimum TCP ring size in segments of the tun MTU.
const RING_SEGMENTS: usize = 8;
const MIN_WAIT: Duration = Duration::from_millis(1);
const MAX_WAIT: Duration = Duration::from_secs(5);

/// The last flow is gone: give the allocator's free pages back to the system. glibc keeps
/// freed chunks of each thread's arena (a burst of 1,000 flows left ~6 MB resident after they
/// closed); `malloc_trim` returns the whole pages among them.
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn connect_reason(e: &std::io::Error) -> CloseReason {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => CloseReason::Refused,
        _ => CloseReason::ConnectFailed,
    }
}

/// Test hook: TCP flows to this port panic when serviced (0: none), so the tests can show the
/// supervision boundary in `service_touched` holds.
#[cfg(test)]
pub(super) static PROVOKE_PANIC_PORT: std::sync::atomic::AtomicU16 =
    std::sync::atomic::AtomicU16::new(0);

#[cfg(test)]
thread_local! {
    /// The same for an engine driven on the test's own thread (`engine::sim`), so parallel
    /// tests do not see each other's port.
    pub(super) static PROVOKE_PANIC_PORT_HERE: std::cell::Cell<u16> =
        const { std::cell::Cell::new(0) };
}

#[cfg(test)]
pub(super) fn panic_if_provoked(port: u16) {
    let provoked = PROVOKE_PANIC_PORT.load(std::sync::atomic::Ordering::Relaxed) == port
        || PROVOKE_PANIC_PORT_HERE.with(|p| p.get()) == port;
    if port != 0 && provoked {
        panic!("provoked by the test for port {port}");
    }
}

/// Test hook: a packet to this port panics outside any flow (0: none), killing the engine
/// thread, so the tests can show that its death is reported rather than hidden.
#[cfg(test)]
pub(crate) static PROVOKE_ENGINE_DEATH_PORT: std::sync::atomic::AtomicU16 =
    std::sync::atomic::AtomicU16::new(0);

#[cfg(test)]
fn kill_if_provoked(port: u16) {
    if port != 0 && PROVOKE_ENGINE_DEATH_PORT.load(std::sync::atomic::Ordering::Relaxed) == port {
        panic!("engine death provoked by the test for port {port}");
    }
}
