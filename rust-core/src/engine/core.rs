//! The engine's state and its reactions, without the loop: fed packets from the tun, readiness
//! of outbound sockets and the time; it queues packets for the tun. `event_loop` drives it with
//! mio; tests drive it directly.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};

use crate::flow::{CloseReason, Direction, FlowId, FlowKey, Proto};
use crate::owner::resolver::OwnerClient;

use super::buffers::BufferPool;
use super::device::{BufferRecycler, PacketQueue};
use super::icmp::EchoFlow;
use super::packet::{self, Drop, Parsed, Transport};
use super::report::{FlowCommon, Now, Reporter};
use super::shard::{Shard, shard_of};
use super::tcp::{Outcome, Phase, TcpDns, TcpFlow};
use super::udp::UdpFlow;
use super::{EngineConfig, EngineStats, Tuning, offload, outbound};

/// mio tokens below this are the loop's own (tun, waker); flow tokens are `id + FIRST_FLOW_TOKEN`.
pub const FIRST_FLOW_TOKEN: usize = 2;

pub enum Flow {
    Tcp(Box<TcpFlow>),
    Udp(Box<UdpFlow>),
    Echo(Box<EchoFlow>),
}

impl Flow {
    pub fn common(&mut self) -> &mut FlowCommon {
        match self {
            Flow::Tcp(f) => &mut f.common,
            Flow::Udp(f) => &mut f.common,
            Flow::Echo(f) => &mut f.common,
        }
    }
}

pub struct Core {
    pub(super) config: EngineConfig,
    pub(super) tuning: Tuning,
    epoch: Instant,
    pub(super) registry: Registry,
    pub(super) shards: Vec<Shard>,
    pub(super) pool: BufferPool,
    pub(super) flows: HashMap<FlowId, Flow>,
    pub(super) tcp_index: HashMap<(SocketAddr, SocketAddr), FlowId>,
    pub(super) udp_index: HashMap<(SocketAddr, SocketAddr), FlowId>,
    pub(super) echo_index: HashMap<(IpAddr, IpAddr, u16), FlowId>,
    next_id: FlowId,
    pub(super) reporter: Reporter,
    /// Packets for the tun: shard output and the engine's own (UDP, ICMP, RST).
    pub(super) to_tun: PacketQueue,
    /// Where `flush_tun` writes them; None leaves them queued (for a caller without a tun).
    pub(super) tun_fd: Option<std::os::fd::RawFd>,
    /// Flows to service after the next shard poll.
    touched: Vec<FlowId>,
    /// Reusable receive buffer for UDP and ICMP.
    pub(super) datagram: Vec<u8>,
    pub(super) owner: Option<OwnerClient>,
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
}

impl Core {
    pub fn new(
        config: EngineConfig,
        tuning: Tuning,
        registry: Registry,
        reporter: Reporter,
        owner: Option<OwnerClient>,
    ) -> Core {
        let epoch = Instant::now();
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
            registry,
            shards,
            pool,
            flows: HashMap::new(),
            tcp_index: HashMap::new(),
            udp_index: HashMap::new(),
            echo_index: HashMap::new(),
            next_id: 1,
            reporter,
            to_tun: PacketQueue::new(recycler),
            tun_fd: None,
            touched: Vec::new(),
            datagram: vec![0; 65536],
            owner,
            next_sweep: None,
            next_flush: None,
            held: Vec::new(),
            trim_mark: 0,
            last_trim: epoch,
            over_budget: false,
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

    pub(super) fn token(id: FlowId) -> Token {
        Token(id as usize + FIRST_FLOW_TOKEN)
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
        if let Some(owner) = &mut self.owner
            && let Some(uid) = owner.owner_now(key.proto, key.src, key.dst)
        {
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
        match &self.owner {
            Some(owner) => owner.request(id, key.proto, key.src, key.dst),
            None => common.owner_done = true,
        }
    }

    /// Before the final events: let owner lookups still running answer (bounded), so the last
    /// flows of a session are attributed too.
    fn await_owners(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.flows.values_mut().any(|f| !f.common().owner_done) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            self.owner_results();
        }
    }

    /// Apply owner lookups that finished.
    pub fn owner_results(&mut self) {
        let Some(owner) = &self.owner else { return };
        let results: Vec<(FlowId, Option<u32>)> = owner.results().collect();
        for (id, uid) in results {
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
                self.udp_packet(parsed, &buf, now);
                self.to_tun.recycle(buf);
            }
            Transport::Echo { ident, .. } => {
                self.echo_packet(parsed, ident, &buf, now);
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

        let stream = match outbound::tcp_connect(&self.config.outbound, target) {
            Ok(stream) => stream,
            Err(e) => {
                log::debug!("connect {target} failed at once: {e}");
                self.refuse_syn(&syn, &e);
                self.to_tun.recycle(syn);
                self.reporter.opened(&mut common, now.ms);
                self.reporter
                    .closed(&mut common, connect_reason(&e), now.ms);
                return;
            }
        };
        let Some(buffers) = self.pool.acquire() else {
            log::warn!("out of memory for socket buffers; refusing {src} -> {dst}");
            self.refuse_syn(&syn, &std::io::Error::from(std::io::ErrorKind::OutOfMemory));
            self.to_tun.recycle(syn);
            return;
        };
        let shard_index = shard_of(src, dst, self.shards.len());
        let smol_now = self.smol_now(now);
        let shard = &mut self.shards[shard_index];
        let Some(handle) = shard.listen(dst, &buffers, smol_now) else {
            self.pool.release(buffers);
            self.dropped();
            self.to_tun.recycle(syn);
            return;
        };
        let mut stream = stream;
        if let Err(e) = self.registry.register(
            &mut stream,
            Self::token(id),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("cannot register outbound socket: {e}");
            self.shards[shard_index].remove(handle, &mut self.pool, buffers);
            self.dropped();
            self.to_tun.recycle(syn);
            return;
        }
        let shard = &mut self.shards[shard_index];
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

    /// Readiness of a flow's outbound socket.
    pub fn on_ready(&mut self, token: Token, readable: bool, writable: bool, now: Now) {
        let Some(id) = token.0.checked_sub(FIRST_FLOW_TOKEN).map(|id| id as FlowId) else {
            return;
        };
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
            Some(Flow::Udp(_)) if readable => self.udp_readable(id, now),
            Some(Flow::Echo(_)) if readable => self.echo_readable(id, now),
            _ => {}
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
        // passes a thousand fast flows can touch many megabytes.
        self.over_budget = estimate > budget / 2;
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
            self.flush_tun();
        }
    }

    /// Write every queued packet to the tun. A full tun drops the packet (TCP retransmits, as
    /// on a real link).
    pub fn flush_tun(&mut self) {
        let Some(fd) = self.tun_fd else { return };
        while let Some(mut packet) = self.to_tun.pop() {
            let n = if self.tuning.tun_offload {
                let header = offload::output_header(&mut packet, self.config.mtu);
                offload::write(fd, &header, &packet)
            } else {
                // SAFETY: packet is valid for packet.len() bytes; fd is the engine's open tun.
                unsafe { libc::write(fd, packet.as_ptr().cast(), packet.len()) }
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::WouldBlock
                    && e.raw_os_error() != Some(libc::ENOBUFS)
                {
                    log::debug!("tun write: {e}");
                }
                self.reporter.stats.packets_dropped += 1;
            } else if let Some(tap) = &self.tuning.packet_tap {
                tap.offer(super::report::Now::read().ms, &packet);
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
                self.close_tcp(id, CloseReason::Error, now);
                continue;
            };
            if self.over_budget && outcome == Outcome::Open && flow.touched() >= TRIM_MIN {
                flow.trim(&mut self.shards[flow.shard]);
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
                Outcome::Closed(reason) => self.close_tcp(id, reason, now),
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

    pub(super) fn close_tcp(&mut self, id: FlowId, reason: CloseReason, now: Now) {
        let Some(Flow::Tcp(mut flow)) = self.flows.remove(&id) else {
            return;
        };
        let key = flow.common.record.key;
        self.tcp_index.remove(&(key.src, key.dst));
        let _ = self.registry.deregister(&mut flow.stream);
        if let Some(buffers) = flow.buffers.take() {
            self.shards[flow.shard].remove(flow.handle, &mut self.pool, buffers);
        }
        self.reporter.closed(&mut flow.common, reason, now.ms);
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
                outbound::set_linger_zero(&flow.stream);
                self.close_tcp(id, reason, now);
            }
            Some(Flow::Udp(_)) => self.close_udp(id, reason, now),
            Some(Flow::Echo(_)) => self.close_echo(id, reason, now),
            None => {}
        }
    }

    pub(super) fn schedule_sweep(&mut self, now: Now) {
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now.mono + SWEEP_INTERVAL);
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
        let tuning = self.tuning.clone();
        let mut expired = Vec::new();
        for (&id, flow) in &mut self.flows {
            let idle = now
                .mono
                .saturating_duration_since(flow.common().last_activity);
            let limit = match flow {
                Flow::Tcp(f) if f.phase == Phase::Connecting => tuning.connect_timeout,
                Flow::Tcp(f) if f.up_closed || f.down_closed => tuning.tcp_half_closed_timeout,
                Flow::Tcp(_) => tuning.tcp_idle_timeout,
                Flow::Udp(f) if f.dns.is_some() => tuning.dns_flow_timeout,
                Flow::Udp(_) => tuning.udp_idle_timeout,
                Flow::Echo(_) => tuning.echo_idle_timeout,
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
        self.await_owners(OWNER_HOLD);
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
fn panic_if_provoked(port: u16) {
    if port != 0 && PROVOKE_PANIC_PORT.load(std::sync::atomic::Ordering::Relaxed) == port {
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
