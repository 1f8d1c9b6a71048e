//! UDP: a NAT table of connected outbound sockets, one per (app address, destination), expired
//! when idle. Replies are built with `smoltcp::wire` straight into a tun buffer; smoltcp's UDP
//! sockets are not used (every surveyed project bypasses them).
//!
//! Datagrams to the tunnel's DNS address go to the upstream resolver instead; each query is
//! remembered until its answer (logged as a `DnsRecord`) or a timeout (answered with SERVFAIL,
//! so the app's resolver does not wait for its own timeout).

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::Interest;

use crate::flow::{CloseReason, Direction, FlowId, FlowKey, Proto};

use super::core::{Core, Flow, OWNER_HOLD};
use super::dns;
use super::outbound;
use super::packet::{self, Parsed};
use super::report::{FlowCommon, Now};

pub struct UdpFlow {
    pub common: FlowCommon,
    pub socket: mio::net::UdpSocket,
    /// Set for flows to the DNS service: queries waiting for an answer.
    pub dns: Option<Vec<PendingQuery>>,
    /// Answers (tun packets) to the app held until its owner is known: the app's socket stays
    /// open while it waits for the answer, so the owner lookup still finds a process that
    /// exits right after its lookup. Released by the owner's answer or after `OWNER_HOLD`.
    pub held_answers: Vec<Vec<u8>>,
}

pub struct PendingQuery {
    pub id: u16,
    pub query: Vec<u8>,
    pub sent: Instant,
}

/// Queries kept per flow; beyond this the oldest is answered SERVFAIL at once.
const MAX_PENDING: usize = 64;

impl Core {
    pub(super) fn udp_packet(&mut self, parsed: Parsed, buf: &[u8], now: Now) {
        let src = parsed.src_addr();
        let dst = parsed.dst_addr();
        let payload = &buf[parsed.payload.0..parsed.payload.1];
        let id = match self.udp_index.get(&(src, dst)) {
            Some(&id) => id,
            None => match self.open_udp(src, dst, now) {
                Some(id) => id,
                None => {
                    self.dropped();
                    if self.is_dns_service(dst) {
                        self.answer_servfail(dst, src, payload);
                        self.record_unsent_dns(src, dst, payload, now);
                    } else {
                        self.udp_unreachable(parsed, buf);
                    }
                    return;
                }
            },
        };
        let Some(Flow::Udp(flow)) = self.flows.get_mut(&id) else {
            return;
        };
        self.reporter.packet(&mut flow.common, Direction::Up, now);
        if flow.common.inspect_datagram(Direction::Up, payload) {
            self.reporter.rename(&mut flow.common, now.ms);
        }
        match flow.socket.send(payload) {
            Ok(n) => {
                self.reporter.bytes(&mut flow.common, Direction::Up, n, now);
                if let (Some(pending), Some(query_id)) = (&mut flow.dns, dns::message_id(payload)) {
                    pending.retain(|q| q.id != query_id);
                    pending.push(PendingQuery {
                        id: query_id,
                        query: payload.to_vec(),
                        sent: now.mono,
                    });
                    if pending.len() > MAX_PENDING {
                        let oldest = pending.remove(0);
                        self.dns_failed(id, oldest, now);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.dropped(),
            Err(e) => {
                log::debug!("UDP send to {dst}: {e}");
                self.dropped();
                if self.is_dns_service(dst) {
                    self.answer_servfail(dst, src, payload);
                    self.record_dns(id, payload, None, now);
                }
            }
        }
    }

    fn open_udp(&mut self, src: SocketAddr, dst: SocketAddr, now: Now) -> Option<FlowId> {
        let is_dns = self.is_dns_service(dst);
        let target = if is_dns {
            self.config.dns_upstream
        } else {
            dst
        };
        let mut socket = match outbound::udp_connect(&self.config.outbound, target) {
            Ok(socket) => socket,
            Err(e) => {
                log::debug!("UDP socket to {target}: {e}");
                return None;
            }
        };
        let id = self.new_flow_id();
        if let Err(e) = self
            .registry
            .register(&mut socket, Core::token(id), Interest::READABLE)
        {
            log::warn!("cannot register UDP socket: {e}");
            return None;
        }
        let key = FlowKey {
            proto: Proto::Udp,
            src,
            dst,
        };
        let mut common = FlowCommon::new(id, key, now, self.tuning.device.as_ref());
        self.owner_now(&mut common);
        self.reporter.opened(&mut common, now.ms);
        self.flows.insert(
            id,
            Flow::Udp(Box::new(UdpFlow {
                common,
                socket,
                dns: is_dns.then(Vec::new),
                held_answers: Vec::new(),
            })),
        );
        self.udp_index.insert((src, dst), id);
        self.ask_owner(id, key);
        self.schedule_sweep(now);
        Some(id)
    }

    /// Datagrams from the server (or the upstream resolver): relay each to the app.
    pub(super) fn udp_readable(&mut self, id: FlowId, now: Now) {
        // Bounded so one flooding flow cannot starve the loop; edge-triggered readiness is
        // re-armed by WouldBlock, so a flow cut short here is marked for another round.
        for _ in 0..256 {
            let Some(Flow::Udp(flow)) = self.flows.get_mut(&id) else {
                return;
            };
            let n = match flow.socket.recv(&mut self.datagram) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors from the server surface here (ECONNREFUSED). The error is
                    // consumed by this recv; keep reading until WouldBlock (edge-triggered).
                    log::debug!("UDP recv for flow {id}: {e}");
                    let key = flow.common.record.key;
                    if let Some(pending) = flow.dns.as_mut().map(std::mem::take) {
                        for query in pending {
                            self.dns_failed(id, query, now);
                        }
                    } else if e.kind() == io::ErrorKind::ConnectionRefused {
                        self.relay_port_unreachable(key.src, key.dst);
                    }
                    continue;
                }
            };
            let key = flow.common.record.key;
            let payload = &self.datagram[..n];
            let mut out = self.to_tun.take_buffer();
            if packet::build_udp(&mut out, key.dst, key.src, payload) {
                let hold = flow.dns.is_some()
                    && !flow.common.owner_done
                    && flow.held_answers.len() < MAX_PENDING;
                if hold {
                    if flow.held_answers.is_empty() {
                        self.held.push((id, now.mono + OWNER_HOLD));
                    }
                    flow.held_answers.push(out);
                } else {
                    self.to_tun.push(out);
                }
                self.reporter.packet(&mut flow.common, Direction::Down, now);
                self.reporter
                    .bytes(&mut flow.common, Direction::Down, n, now);
            } else {
                self.to_tun.recycle(out);
                self.reporter.stats.packets_dropped += 1;
            }
            if flow.common.inspect_datagram(Direction::Down, payload) {
                self.reporter.rename(&mut flow.common, now.ms);
            }
            let answered = match (&mut flow.dns, dns::message_id(payload)) {
                (Some(pending), Some(answer_id)) => pending
                    .iter()
                    .position(|q| q.id == answer_id)
                    .map(|at| pending.swap_remove(at)),
                _ => None,
            };
            if let Some(query) = answered {
                let answer = self.datagram[..n].to_vec();
                self.record_dns(id, &query.query, Some(&answer), now);
            }
        }
    }

    /// Answer DNS queries that waited too long with SERVFAIL.
    pub(super) fn dns_timeouts(&mut self, now: Now) {
        let timeout = self.tuning.dns_timeout;
        let mut failed = Vec::new();
        for (&id, flow) in &mut self.flows {
            if let Flow::Udp(udp) = flow
                && let Some(pending) = &mut udp.dns
            {
                while let Some(at) = pending
                    .iter()
                    .position(|q| now.mono.saturating_duration_since(q.sent) >= timeout)
                {
                    failed.push((id, pending.swap_remove(at)));
                }
            }
        }
        for (id, query) in failed {
            self.dns_failed(id, query, now);
        }
    }

    /// The upstream did not answer `query`: SERVFAIL to the app, and a record with no rcode.
    fn dns_failed(&mut self, id: FlowId, query: PendingQuery, now: Now) {
        let Some(Flow::Udp(flow)) = self.flows.get_mut(&id) else {
            return;
        };
        let key = flow.common.record.key;
        self.answer_servfail(key.dst, key.src, &query.query);
        self.record_dns(id, &query.query, None, now);
    }

    fn answer_servfail(&mut self, service: SocketAddr, client: SocketAddr, query: &[u8]) {
        let Some(reply) = dns::servfail(query) else {
            return;
        };
        let mut out = self.to_tun.take_buffer();
        if packet::build_udp(&mut out, service, client, &reply) {
            self.to_tun.push(out);
        } else {
            self.to_tun.recycle(out);
        }
    }

    /// The server's port is closed: pass the ICMP error on, quoting a datagram of the flow, so
    /// the app's socket fails at once as it would without the tunnel.
    fn relay_port_unreachable(&mut self, app: SocketAddr, server: SocketAddr) {
        let mut quoted = self.to_tun.take_buffer();
        let mut out = self.to_tun.take_buffer();
        if packet::build_udp(&mut quoted, app, server, b"")
            && packet::build_unreachable(&mut out, server.ip(), &quoted, true)
        {
            self.to_tun.push(out);
        } else {
            self.to_tun.recycle(out);
        }
        self.to_tun.recycle(quoted);
    }

    /// No outbound socket for this datagram: tell the app the port is unreachable.
    fn udp_unreachable(&mut self, parsed: Parsed, buf: &[u8]) {
        let mut out = self.to_tun.take_buffer();
        if packet::build_unreachable(&mut out, parsed.dst, buf, true) {
            self.to_tun.push(out);
        } else {
            self.to_tun.recycle(out);
        }
    }

    /// Send the DNS answers held for the owner lookup.
    pub(super) fn release_answers(&mut self, id: FlowId) {
        if let Some(Flow::Udp(flow)) = self.flows.get_mut(&id) {
            for answer in flow.held_answers.drain(..) {
                self.to_tun.push(answer);
            }
        }
    }

    pub(super) fn close_udp(&mut self, id: FlowId, reason: CloseReason, now: Now) {
        self.release_answers(id);
        let pending = match self.flows.get_mut(&id) {
            Some(Flow::Udp(flow)) => flow.dns.take().unwrap_or_default(),
            _ => return,
        };
        for query in pending {
            self.dns_failed(id, query, now);
        }
        let Some(Flow::Udp(mut flow)) = self.flows.remove(&id) else {
            return;
        };
        let key = flow.common.record.key;
        self.udp_index.remove(&(key.src, key.dst));
        let _ = self.registry.deregister(&mut flow.socket);
        self.reporter.closed(&mut flow.common, reason, now.ms);
    }
}
