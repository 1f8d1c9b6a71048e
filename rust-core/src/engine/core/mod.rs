//! The flow engine's state and its reactions, without the loop: fed packets from the tun,
//! readiness of outbound sockets, owner answers and the time, it writes packets and opens
//! sockets through its [`Host`] and asks for owner lookups through a queue. It reads no clock
//! and never waits: `event_loop` drives it with mio and the wall clock, `engine::sim` on
//! virtual time.
//!
//! The flows do their own work (`TcpFlow`, `UdpFlow`, `EchoFlow` know nothing of `Core`); `Core`
//! owns the tables, finds the flow a packet or a readiness belongs to, calls it and acts on what
//! it returns. Its reactions are split by concern into the modules below.

mod close;
mod datagram;
mod dns_log;
mod owner;
mod supervision;
mod tcp_open;
mod tcp_service;
mod timers;
mod trim;

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::flow::{FlowId, FlowTable};
use crate::pcap::ip::{Defrag, parse_ip};

use super::buffers::BufferPool;
use super::device::{BufferRecycler, PacketQueue};
use super::host::Host;
use super::icmp::EchoFlow;
use super::packet::{self, Drop, Transport};
use super::report::{FlowCommon, Now, Reporter};
use super::shard::Shard;
use super::tcp::{Phase, TcpFlow};
use super::udp::UdpFlow;
use super::{EngineConfig, EngineStats, Tuning, offload};

pub use owner::{OWNER_HOLD, OwnerRequest};
#[cfg(test)]
pub use supervision::{
    PROVOKE_ENGINE_DEATH_PORT, PROVOKE_PANIC_PORT, PROVOKE_PANIC_PORT_HERE, panic_if_provoked,
};

pub enum Flow<H: Host> {
    Tcp(Box<TcpFlow<H::Stream>>),
    Udp(Box<UdpFlow<H::Datagram>>),
    Echo(Box<EchoFlow<H::Datagram>>),
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
    pub(super) flows: FlowTable<FlowId, Flow<H>>,
    pub(super) tcp_index: FlowTable<(SocketAddr, SocketAddr), FlowId>,
    pub(super) udp_index: FlowTable<(SocketAddr, SocketAddr), FlowId>,
    pub(super) echo_index: FlowTable<(IpAddr, IpAddr, u16), FlowId>,
    next_id: FlowId,
    pub(super) reporter: Reporter,
    /// Packets for the tun: shard output and the engine's own (UDP, ICMP, RST), written
    /// through the host by `flush_tun`.
    pub(super) to_tun: PacketQueue,
    /// Flows to service after the next shard poll.
    touched: Vec<FlowId>,
    /// Reusable receive buffer for UDP and ICMP.
    pub(super) datagram: Vec<u8>,
    /// Datagrams larger than the tun's MTU arrive in IP fragments: held here until whole.
    defrag: Defrag,
    /// Whether the driver answers owner lookups; without, every flow is done at once.
    owner_lookups: bool,
    owner_requests: Vec<OwnerRequest>,
    next_sweep: Option<Instant>,
    /// When the first waiting DNS query of any flow reaches the DNS timeout.
    dns_deadline: Option<Instant>,
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
        // A ring must hold many segments: with a large MTU or offload (fewer packets per
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
            flows: FlowTable::default(),
            tcp_index: FlowTable::default(),
            udp_index: FlowTable::default(),
            echo_index: FlowTable::default(),
            next_id: 1,
            reporter,
            to_tun: PacketQueue::new(recycler),
            touched: Vec::new(),
            datagram: vec![0; 65536],
            defrag: Defrag::default(),
            owner_lookups,
            owner_requests: Vec::new(),
            next_sweep: None,
            dns_deadline: None,
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

    fn new_flow_id(&mut self) -> FlowId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// One IP fragment: the whole packet, parsed, once its datagram is complete. Fragments
    /// given up (refused by the pool's bounds, expired incomplete, or whole but not a transport
    /// the engine relays) count as dropped.
    fn reassemble(&mut self, fragment: &[u8], now: Now) -> Option<(Vec<u8>, packet::Parsed)> {
        let Ok(ip) = parse_ip(fragment) else {
            self.dropped();
            return None;
        };
        let before = self.defrag.dropped();
        let ms = i64::try_from(now.mono.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(i64::MAX);
        let payload = self.defrag.push(&ip, ms);
        let given_up = self.defrag.dropped().saturating_sub(before);
        self.reporter.stats.fragments_dropped += given_up;
        self.reporter.stats.packets_dropped += given_up;
        let payload = payload?;
        let mut whole = self.to_tun.take_buffer();
        if packet::build_ip(&mut whole, ip.src, ip.dst, ip.proto, &payload) {
            match packet::parse(&whole) {
                Ok(parsed) => return Some((whole, parsed)),
                Err(reason) => log::trace!("reassembled packet dropped: {reason:?}"),
            }
        }
        self.to_tun.recycle(whole);
        self.reporter.stats.fragments_dropped += 1;
        self.dropped();
        None
    }

    fn dropped(&mut self) {
        self.reporter.stats.packets_dropped += 1;
    }

    fn is_dns_service(&self, dst: SocketAddr) -> bool {
        dst.port() == 53 && self.is_dns_address(dst.ip())
    }

    /// Where a new flow to `dst` connects: the upstream resolver for our DNS service, else
    /// `dst` itself; and whether it is the DNS service.
    fn connect_target(&self, dst: SocketAddr) -> (SocketAddr, bool) {
        if self.is_dns_service(dst) {
            (self.config.dns_upstream, true)
        } else {
            (dst, false)
        }
    }

    /// The tunnel's own DNS address (what the phone's resolver points at).
    fn is_dns_address(&self, ip: IpAddr) -> bool {
        match ip {
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

    /// One packet read from the tun. The buffer is recycled into a shard or the spare pool.
    pub fn on_packet(&mut self, mut buf: Vec<u8>, now: Now) {
        let parsed = match packet::parse(&buf) {
            Ok(parsed) => parsed,
            Err(Drop::Fragment) => {
                let whole = self.reassemble(&buf, now);
                self.to_tun.recycle(buf);
                let Some((whole, parsed)) = whole else {
                    return;
                };
                buf = whole;
                parsed
            }
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
        supervision::kill_if_provoked(parsed.dst_addr().port());
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

    /// Readiness of flow `id`'s outbound socket.
    pub fn on_ready(&mut self, id: FlowId, readable: bool, writable: bool, now: Now) {
        match self.flows.get_mut(&id) {
            Some(Flow::Tcp(flow)) => {
                flow.out_readable |= readable;
                flow.out_writable |= writable;
                if flow.phase != Phase::Connecting {
                    self.touched.push(id);
                } else if let Some(result) = flow.check_connect() {
                    let owner_pending = !flow.common.owner_done;
                    self.connect_finished(id, result, owner_pending, now);
                }
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
}

/// Minimum TCP ring size in segments of the tun MTU. With offload, 16 segments (1 MiB) rather
/// than 8 let a download move twice as much per read from the server's socket: 25-30% less
/// engine CPU per GB down at TUN MTU 1500 and 9000 (`scripts/bench-throughput.sh`). A ring
/// costs only the pages its flow touches (`buffers.rs`), so only bulk flows pay for the size.
const RING_SEGMENTS: usize = 16;
