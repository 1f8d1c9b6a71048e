//! Dispatch of UDP and ICMP echo traffic: find (or open) the flow a datagram or a readiness
//! belongs to, hand it to the flow (`UdpFlow`, `EchoFlow` do the relaying), and act on what it
//! returns: DNS exchanges for the query log, answers to release after the owner hold. A
//! datagram that cannot get an outbound socket is answered here, as no flow exists for it.

use std::net::SocketAddr;
use std::time::Instant;

use crate::flow::{FlowId, FlowKey, Proto};
use crate::flow_rules;

use super::{Core, Flow};
use crate::engine::dns;
use crate::engine::host::Host;
use crate::engine::icmp::EchoFlow;
use crate::engine::packet::{self, Parsed};
use crate::engine::report::{FlowCommon, Now};
use crate::engine::udp::{self, DnsRole, UdpFlow, UdpOutcome};

impl<H: Host> Core<H> {
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
                    let key = FlowKey {
                        proto: Proto::Udp,
                        src,
                        dst,
                    };
                    if self.is_dns_service(dst) {
                        let answer = udp::answer_servfail(&mut self.to_tun, dst, src, payload);
                        self.record_unsent_dns(key, payload, answer, now);
                    } else {
                        // A query to the app's own resolver is in the capture all the same.
                        if dst.port() == flow_rules::DNS_PORT
                            && dns::read_as_dns(payload) == Some(false)
                        {
                            self.record_unsent_dns(key, payload, None, now);
                        }
                        // No outbound socket: tell the app the port is unreachable.
                        self.to_tun.push_built(|out| {
                            packet::build_unreachable(out, parsed.dst, buf, true)
                        });
                    }
                    return;
                }
            },
        };
        let Some(Flow::Udp(flow)) = self.flows.get_mut(&id) else {
            return;
        };
        let outcome = flow.send_up(payload, &mut self.to_tun, &mut self.reporter, now);
        self.after_udp(id, outcome, now);
    }

    fn open_udp(&mut self, src: SocketAddr, dst: SocketAddr, now: Now) -> Option<FlowId> {
        let (target, is_dns) = self.connect_target(dst);
        let id = self.new_flow_id();
        let socket = match self.host.udp_connect(id, target) {
            Ok(socket) => socket,
            Err(e) => {
                log::debug!("UDP socket to {target}: {e}");
                return None;
            }
        };
        let key = FlowKey {
            proto: Proto::Udp,
            src,
            dst,
        };
        let mut common = FlowCommon::new(id, key, now, self.tuning.device.as_ref());
        self.owner_now(&mut common);
        self.reporter.opened(&mut common, now.ms);
        let role = if is_dns {
            DnsRole::Service
        } else if flow_rules::is_dns_server(&key) {
            DnsRole::Direct
        } else {
            DnsRole::NotDns
        };
        let flow = UdpFlow::new(common, socket, role);
        self.flows.insert(id, Flow::Udp(Box::new(flow)));
        self.udp_index.insert((src, dst), id);
        self.ask_owner(id, key);
        self.schedule_sweep(now);
        Some(id)
    }

    /// Datagrams from the server (or the upstream resolver) for flow `id`.
    pub(super) fn udp_readable(&mut self, id: FlowId, now: Now) {
        let Some(Flow::Udp(flow)) = self.flows.get_mut(&id) else {
            return;
        };
        let outcome = flow.on_readable(
            &mut self.datagram,
            &mut self.to_tun,
            &mut self.reporter,
            now,
        );
        self.after_udp(id, outcome, now);
    }

    fn after_udp(&mut self, id: FlowId, outcome: UdpOutcome, now: Now) {
        if outcome.holding {
            self.hold_for_owner(id, now);
        }
        if let Some(Flow::Udp(flow)) = self.flows.get(&id) {
            self.dns_deadline_at(flow.dns_deadline(self.tuning.dns_timeout));
        }
        self.record_exchanges(id, outcome.exchanges, now);
        self.close_if_answered(id);
    }

    /// A DNS flow's first waiting query reaches its timeout at `deadline`: the timers give up
    /// on it then, to the millisecond (so a replay of the capture, which sees our SERVFAIL at
    /// that moment, pairs it with its query).
    pub(super) fn dns_deadline_at(&mut self, deadline: Option<Instant>) {
        if let Some(at) = deadline {
            self.dns_deadline = Some(self.dns_deadline.map_or(at, |d| d.min(at)));
        }
    }

    /// Give up on the DNS queries that waited the DNS timeout: SERVFAIL from the service; a
    /// direct resolver's, and DNS over TCP, logged unanswered (a late answer is then logged by
    /// itself, as a replay logs it).
    pub(super) fn dns_timeouts(&mut self, now: Now) {
        let timeout = self.tuning.dns_timeout;
        let mut given_up = Vec::new();
        let mut next: Option<Instant> = None;
        for (&id, flow) in &mut self.flows {
            let (exchanges, deadline) = match flow {
                Flow::Udp(udp) => {
                    let exchanges = udp.fail_overdue(timeout, &mut self.to_tun, now);
                    (exchanges, udp.dns_deadline(timeout))
                }
                Flow::Tcp(tcp) => match &mut tcp.dns {
                    Some(dns) => (
                        dns.pairing.overdue(now.mono, timeout),
                        dns.pairing.deadline(timeout),
                    ),
                    None => continue,
                },
                Flow::Echo(_) => continue,
            };
            if let Some(at) = deadline {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            if !exchanges.is_empty() {
                given_up.push((id, exchanges));
            }
        }
        self.dns_deadline = next;
        for (id, exchanges) in given_up {
            self.record_exchanges(id, exchanges, now);
            self.close_if_answered(id);
        }
    }

    pub(super) fn echo_packet(&mut self, parsed: Parsed, ident: u16, buf: &[u8], now: Now) {
        let key = (parsed.src, parsed.dst, ident);
        let id = match self.echo_index.get(&key) {
            Some(&id) => id,
            None => match self.open_echo(parsed, ident, now) {
                Some(id) => id,
                None => {
                    self.dropped();
                    return;
                }
            },
        };
        let Some(Flow::Echo(flow)) = self.flows.get_mut(&id) else {
            return;
        };
        // The ICMP message from its header on (8 bytes before the echo data).
        let Some(message) = parsed
            .payload
            .0
            .checked_sub(8)
            .and_then(|start| buf.get(start..parsed.payload.1))
        else {
            self.dropped();
            return;
        };
        flow.send_up(message, &mut self.reporter, now);
    }

    fn open_echo(&mut self, parsed: Parsed, ident: u16, now: Now) -> Option<FlowId> {
        let dst = SocketAddr::new(parsed.dst, 0);
        let id = self.new_flow_id();
        let socket = match self.host.ping_connect(id, dst) {
            Ok(socket) => socket,
            Err(e) => {
                log::debug!("no ping socket for {}: {e}", parsed.dst);
                return None;
            }
        };
        let key = flow_rules::echo_key(parsed.src, ident, parsed.dst);
        let mut common = FlowCommon::new(id, key, now, self.tuning.device.as_ref());
        self.reporter.opened(&mut common, now.ms);
        let flow = EchoFlow {
            common,
            socket,
            ident,
        };
        self.flows.insert(id, Flow::Echo(Box::new(flow)));
        self.echo_index.insert((parsed.src, parsed.dst, ident), id);
        self.ask_owner(id, key);
        self.schedule_sweep(now);
        Some(id)
    }

    /// Echo replies for flow `id`.
    pub(super) fn echo_readable(&mut self, id: FlowId, now: Now) {
        let Some(Flow::Echo(flow)) = self.flows.get_mut(&id) else {
            return;
        };
        flow.on_readable(
            &mut self.datagram,
            &mut self.to_tun,
            &mut self.reporter,
            now,
        );
    }
}
