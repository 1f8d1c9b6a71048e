//! TCP segments from the app, and how a TCP flow opens or is refused. Connect-first: a SYN gets
//! a listening smoltcp socket that holds its SYN-ACK while the outbound connect runs; the app
//! learns of a failed connect at once (RST, or ICMP unreachable when the network said so), so
//! happy-eyeballs moves on instead of waiting for its own timeout.

use crate::flow::{CloseReason, Direction, FlowId, FlowKey, Proto};
use crate::flow_rules;

use super::{Core, Flow};
use crate::engine::host::Host;
use crate::engine::packet::{self, Parsed, Transport};
use crate::engine::report::{FlowCommon, Now};
use crate::engine::shard::shard_of;
use crate::engine::tcp::{Phase, TcpDns, TcpFlow};

/// DNS-over-TLS, what Android's Private DNS probes.
const DNS_OVER_TLS_PORT: u16 = 853;

impl<H: Host> Core<H> {
    /// A segment from the app: into its flow's shard, a new flow for a SYN, else a RST.
    pub(super) fn tcp_packet(
        &mut self,
        parsed: Parsed,
        buf: Vec<u8>,
        is_syn: bool,
        is_rst: bool,
        now: Now,
    ) {
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
                self.to_tun.push_built(|out| packet::build_rst(out, &buf));
            }
            self.dropped();
            self.to_tun.recycle(buf);
        }
    }

    fn open_tcp(&mut self, parsed: Parsed, syn: Vec<u8>, now: Now) {
        let src = parsed.src_addr();
        let dst = parsed.dst_addr();
        if dst.port() == DNS_OVER_TLS_PORT && self.is_dns_address(dst.ip()) {
            // Android's Private DNS "Automatic" probes DNS-over-TLS on the resolver it was
            // given, which is ours: nothing there serves TLS. Relayed, the probe hangs ~20 s
            // before Android falls back to port 53; a RST now makes the fallback immediate
            // (strict mode is warned about).
            self.refuse_syn(
                &syn,
                &std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            );
            self.to_tun.recycle(syn);
            return;
        }
        let (target, is_dns) = self.connect_target(dst);
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
            self.pool.release(buffers, 0);
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
            // The service's and an app's own resolver's alike, as a replay reads both.
            dns: (is_dns || flow_rules::carries_dns(&key)).then(TcpDns::default),
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
        let unreachable = matches!(
            error.raw_os_error(),
            Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) | Some(libc::EADDRNOTAVAIL)
        );
        self.to_tun
            .push_built(|out| match (unreachable, packet::parse(syn)) {
                (true, Ok(parsed)) => packet::build_unreachable(out, parsed.dst, syn, false),
                _ => packet::build_rst(out, syn),
            });
    }

    /// A connecting flow's outbound connect finished. Success releases the SYN-ACK once the
    /// owner is known too (see `owner`); failure resets the app.
    pub(super) fn connect_finished(
        &mut self,
        id: FlowId,
        result: std::io::Result<()>,
        owner_pending: bool,
        now: Now,
    ) {
        match result {
            Ok(()) => {
                if owner_pending {
                    self.hold_for_owner(id, now);
                }
                self.release_if_ready(id);
            }
            Err(e) => self.fail_connect(id, connect_reason(&e)),
        }
    }

    /// The outbound connect failed: reset the app's SYN and end the flow.
    /// smoltcp answers the paused SYN with a RST, so the app fails fast.
    pub(super) fn fail_connect(&mut self, id: FlowId, reason: CloseReason) {
        let Some(Flow::Tcp(flow)) = self.flows.get_mut(&id) else {
            return;
        };
        flow.abort(&mut self.shards[flow.shard], reason);
        self.touched.push(id);
    }
}

fn connect_reason(e: &std::io::Error) -> CloseReason {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => CloseReason::Refused,
        _ => CloseReason::ConnectFailed,
    }
}
