//! How flows end, for every kind in one place: the flow leaves the tables, its socket goes back
//! to the host, its rings to the pool, and its final record is reported, so no close path can
//! forget one of them. Idle expiry, a supervised panic and the engine's stop go through
//! [`Core::close_flow`]; a TCP flow's own outcome through `close_tcp`, a DNS exchange's end
//! through `close_if_answered`.

use crate::flow::{CloseReason, FlowId};

use super::{Core, Flow};
use crate::engine::host::{Host, StreamSocket};
use crate::engine::icmp::EchoFlow;
use crate::engine::report::Now;
use crate::engine::tcp::TcpFlow;
use crate::engine::udp::UdpFlow;

impl<H: Host> Core<H> {
    pub(super) fn close_tcp(&mut self, id: FlowId, reason: CloseReason, now: Now) {
        self.log_unanswered_tcp_queries(id, now);
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
            let moved = common.record.bytes_up.max(common.record.bytes_down);
            self.shards[shard].remove(handle, &mut self.pool, buffers, moved);
        }
        self.reporter.closed(&mut common, reason);
    }

    /// DNS over TCP: queries no answer came for before the close are logged unanswered, as a
    /// replay logs them (with the owner, so while the flow is still in the table).
    fn log_unanswered_tcp_queries(&mut self, id: FlowId, now: Now) {
        let Some(Flow::Tcp(flow)) = self.flows.get_mut(&id) else {
            return;
        };
        let Some(dns) = &mut flow.dns else {
            return;
        };
        let mut exchanges = std::mem::take(&mut dns.finished);
        exchanges.extend(dns.pairing.drain());
        self.record_exchanges(id, exchanges, now);
    }

    /// A UDP flow ends: held answers go out and its waiting DNS queries are given up on first
    /// (SERVFAIL from our service; a direct resolver's logged unanswered).
    fn close_udp(&mut self, id: FlowId, reason: CloseReason, now: Now) {
        let Some(Flow::Udp(flow)) = self.flows.get_mut(&id) else {
            return;
        };
        let exchanges = flow.finish(&mut self.to_tun);
        self.record_exchanges(id, exchanges, now);
        self.remove_udp(id, reason);
    }

    /// A DNS flow whose exchange is over (`UdpFlow::exchange_over`: every query it carried has
    /// had its reply delivered) closes as `answered`, so the next query on its 5-tuple opens a
    /// new flow with its own owner lookup. Checked after the flow's datagrams, its SERVFAILs
    /// at the DNS timeout and the release of its held answers. Nothing waits or is held then,
    /// so nothing is left to send or log.
    pub(super) fn close_if_answered(&mut self, id: FlowId) {
        if let Some(Flow::Udp(flow)) = self.flows.get(&id)
            && flow.exchange_over()
        {
            self.remove_udp(id, CloseReason::Answered);
        }
    }

    fn remove_udp(&mut self, id: FlowId, reason: CloseReason) {
        let Some(Flow::Udp(flow)) = self.flows.remove(&id) else {
            return;
        };
        let UdpFlow {
            mut common, socket, ..
        } = *flow;
        let key = common.record.key;
        self.udp_index.remove(&(key.src, key.dst));
        self.host.close_datagram(socket);
        self.reporter.closed(&mut common, reason);
    }

    fn close_echo(&mut self, id: FlowId, reason: CloseReason) {
        let Some(Flow::Echo(flow)) = self.flows.remove(&id) else {
            return;
        };
        let EchoFlow {
            mut common,
            socket,
            ident,
        } = *flow;
        let key = common.record.key;
        self.echo_index.remove(&(key.src.ip(), key.dst.ip(), ident));
        self.host.close_datagram(socket);
        self.reporter.closed(&mut common, reason);
    }

    /// Close a flow of any kind (idle expiry, a panic while handling it, engine stop).
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
                self.close_tcp(id, reason, now);
            }
            Some(Flow::Udp(_)) => self.close_udp(id, reason, now),
            Some(Flow::Echo(_)) => self.close_echo(id, reason),
            None => {}
        }
    }

    /// Close every flow (the mode's end reason: engine-stop) and flush their final events.
    pub fn shutdown(&mut self, now: Now) {
        let reason = self.reporter.mode().end_reason();
        let ids: Vec<FlowId> = self.flows.keys().copied().collect();
        for id in ids {
            self.close_flow(id, reason, now);
        }
        self.reporter.release_dns(crate::flow::Millis::MAX);
    }
}
