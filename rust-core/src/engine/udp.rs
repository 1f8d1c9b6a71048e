//! UDP: a NAT table of connected outbound sockets, one per (app address, destination), expired
//! when idle. Replies are built with `smoltcp::wire` straight into a tun buffer; smoltcp's UDP
//! sockets are not used (every surveyed project bypasses them).
//!
//! Datagrams to the tunnel's DNS address go to the upstream resolver instead; each query is
//! remembered until its answer (logged as a `DnsRecord`) or a timeout (answered with SERVFAIL,
//! so the app's resolver does not wait for its own timeout). A flow to a resolver of the app's
//! own choosing (port 53 elsewhere) is logged alike, as a replay logs every port-53 exchange,
//! but relayed untouched: its answers are neither held nor failed. Such a flow is one DNS exchange
//! (`flow_rules::dns_exchange_over`): once every query it carried has had its reply delivered to
//! the app, the engine closes it (`answered`), socket and all, and the next query from the same
//! 5-tuple, often another process's reusing the source port, opens a flow with its own owner.
//!
//! The socket closes with the record rather than lingering for late datagrams: by then each
//! query the flow carried has had exactly one reply reach the app (its answer, released from the
//! owner hold first, or a SERVFAIL), so anything the resolver still sends on that socket
//! answers a query the app no longer waits for (a duplicate for a retransmission, a real answer
//! after our SERVFAIL), which its resolver discards. Relaying those would need a second socket
//! per 5-tuple beside the next exchange's, whose late answers a replay could not tell from the
//! next exchange's own.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::flow::Direction;

use super::device::PacketQueue;
use super::dns::{self, DnsExchange, Pairing, read_as_dns};
use super::host::DatagramSocket;
use super::packet;
use super::report::{FlowCommon, Now, Reporter};

pub struct UdpFlow<D> {
    pub common: FlowCommon,
    pub socket: D,
    /// Set for flows to a DNS server: its queries and answers, paired as a replay pairs them.
    dns: Option<Pairing>,
    /// The flow goes to the engine's DNS service (`DnsRole::Service`).
    service: bool,
    /// Answers (tun packets) to the app held until its owner is known: the app's socket stays
    /// open while it waits for the answer, so the owner lookup still finds a process that
    /// exits right after its lookup. Released by the owner's answer or after `OWNER_HOLD`.
    held_answers: Vec<Vec<u8>>,
}

/// What handling a flow's datagrams leaves for the engine to do.
#[derive(Default)]
#[must_use]
pub struct UdpOutcome {
    pub exchanges: Vec<DnsExchange>,
    /// The flow started holding answers for its owner lookup: the engine releases them after
    /// `OWNER_HOLD` if the lookup has not answered by then.
    pub holding: bool,
}

/// What a UDP flow is to DNS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsRole {
    NotDns,
    /// To a DNS server of the app's own choosing (port 53, not the engine's address): relayed
    /// as is (nothing held, rewritten or failed: the app's resolver gets what the server sent),
    /// and logged as a replay logs every flow to port 53: each exchange a `DnsRecord`, each
    /// answer naming later flows, a query with no answer within the DNS timeout logged without.
    Direct,
    /// To the engine's DNS service: forwarded upstream, logged, answers held for the owner,
    /// SERVFAIL when the upstream fails.
    Service,
}

/// Answers held per flow for the owner lookup; beyond this they go to the app at once.
const MAX_HELD: usize = 64;

/// A DNS flow's own bookkeeping, which knows nothing of the engine: which query an answer
/// belongs to, which queries waited too long.
impl<D> UdpFlow<D> {
    pub fn new(common: FlowCommon, socket: D, role: DnsRole) -> UdpFlow<D> {
        UdpFlow {
            common,
            socket,
            dns: (role != DnsRole::NotDns).then(Pairing::default),
            service: role == DnsRole::Service,
            held_answers: Vec::new(),
        }
    }

    /// This DNS flow's exchange is over: each query it carried has had its reply delivered to
    /// the app, so the flow closes (`answered`) and the next query on its 5-tuple opens another.
    /// Live, the reply must also have left the owner hold.
    pub fn exchange_over(&self) -> bool {
        self.held_answers.is_empty() && self.dns.as_ref().is_some_and(Pairing::exchange_over)
    }

    /// When the first waiting query of this DNS flow will have waited `timeout`.
    pub fn dns_deadline(&self, timeout: Duration) -> Option<Instant> {
        self.dns.as_ref()?.deadline(timeout)
    }

    /// `query` went upstream. Returns the query it pushed out of the bound, if any, for the
    /// caller to give up on. The service follows everything sent to it (it answers each with
    /// the upstream's answer or a SERVFAIL); a direct flow may carry anything on port 53, so
    /// its messages count as a replay reads them (`Pairing::message`).
    fn query_sent(&mut self, query: &[u8], now: Now) -> Option<DnsExchange> {
        let pairing = self.dns.as_mut()?;
        if self.service {
            pairing.query(query, now)
        } else {
            pairing.message(query, now)
        }
    }
}

/// The flow's traffic: datagrams from the app out through its socket, the server's replies back
/// as tun packets, and the DNS service's answers, SERVFAILs and held answers. Everything the
/// engine must do beyond this flow comes back in a [`UdpOutcome`].
impl<D: DatagramSocket> UdpFlow<D> {
    /// One datagram from the app: relay `payload` to the server (or the upstream resolver).
    pub fn send_up(
        &mut self,
        payload: &[u8],
        to_tun: &mut PacketQueue,
        reporter: &mut Reporter,
        now: Now,
    ) -> UdpOutcome {
        let mut outcome = UdpOutcome::default();
        let key = self.common.record.key;
        #[cfg(test)]
        super::core::panic_if_provoked(key.dst.port());
        reporter.packet(&mut self.common, Direction::Up, now);
        if self.common.inspect_datagram(Direction::Up, payload) {
            reporter.rename(&mut self.common, now.ms);
        }
        match self.socket.send(payload) {
            Ok(n) => {
                reporter.bytes(&mut self.common, Direction::Up, n, now);
                if let Some(oldest) = self.query_sent(payload, now) {
                    outcome.exchanges.push(self.give_up(oldest, to_tun));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => reporter.stats.packets_dropped += 1,
            Err(e) => {
                log::debug!("UDP send to {}: {e}", key.dst);
                reporter.stats.packets_dropped += 1;
                // A direct flow's query is on the tun all the same: a replay logs it unanswered.
                if self.dns.is_some() && (self.service || read_as_dns(payload) == Some(false)) {
                    let unsent = DnsExchange::unanswered(now.ms, payload);
                    outcome.exchanges.push(self.give_up(unsent, to_tun));
                }
            }
        }
        outcome
    }

    /// Datagrams from the server (or the upstream resolver): relay each to the app. `scratch`
    /// receives them (one datagram's room, shared by every flow).
    pub fn on_readable(
        &mut self,
        scratch: &mut [u8],
        to_tun: &mut PacketQueue,
        reporter: &mut Reporter,
        now: Now,
    ) -> UdpOutcome {
        let mut outcome = UdpOutcome::default();
        let key = self.common.record.key;
        // Bounded so one flooding flow cannot starve the loop; edge-triggered readiness is
        // re-armed by WouldBlock, so a flow cut short here is marked for another round.
        for _ in 0..256 {
            let n = match self.socket.recv(scratch) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors from the server surface here (ECONNREFUSED). The error is
                    // consumed by this recv; keep reading until WouldBlock (edge-triggered).
                    log::debug!("UDP recv for flow {}: {e}", self.common.record.id);
                    if self.service {
                        let waiting = self.dns.as_mut().map(Pairing::drain).unwrap_or_default();
                        outcome.exchanges.extend(self.fail_all(waiting, to_tun));
                    } else if e.kind() == io::ErrorKind::ConnectionRefused {
                        relay_port_unreachable(to_tun, key.src, key.dst);
                    }
                    continue;
                }
            };
            // Test hook: replies from port P panic when the tests provoke port P + 1.
            #[cfg(test)]
            super::core::panic_if_provoked(key.dst.port().wrapping_add(1));
            let payload = &scratch[..n];
            let mut out = to_tun.take_buffer();
            if packet::build_udp(&mut out, key.dst, key.src, payload) {
                let hold =
                    self.service && !self.common.owner_done && self.held_answers.len() < MAX_HELD;
                if hold {
                    outcome.holding |= self.held_answers.is_empty();
                    self.held_answers.push(out);
                } else {
                    to_tun.push(out);
                }
                reporter.packet(&mut self.common, Direction::Down, now);
                reporter.bytes(&mut self.common, Direction::Down, n, now);
            } else {
                to_tun.recycle(out);
                reporter.stats.packets_dropped += 1;
            }
            if self.common.inspect_datagram(Direction::Down, payload) {
                reporter.rename(&mut self.common, now.ms);
            }
            // Any response counts, as a replay counts every response it reads, and is logged,
            // with its query or (none waiting: it came after the timeout) alone, as a replay
            // logs it. The service pairs whatever its upstream sends with the query it answers.
            let exchange = match &mut self.dns {
                Some(pairing) if self.service => pairing.answer(payload, now),
                Some(pairing) => pairing.message(payload, now),
                None => None,
            };
            outcome.exchanges.extend(exchange);
        }
        outcome
    }

    /// Give up on the DNS queries that waited `timeout` or longer: SERVFAIL for the service's;
    /// a direct flow's are logged unanswered and, not answered by us, do not end its exchange
    /// (a replay's expired queries do not either).
    pub fn fail_overdue(
        &mut self,
        timeout: Duration,
        to_tun: &mut PacketQueue,
        now: Now,
    ) -> Vec<DnsExchange> {
        let overdue = self
            .dns
            .as_mut()
            .map(|pairing| pairing.overdue(now.mono, timeout))
            .unwrap_or_default();
        self.fail_all(overdue, to_tun)
    }

    /// Send the DNS answers held for the owner lookup.
    pub fn release_answers(&mut self, to_tun: &mut PacketQueue) {
        for answer in self.held_answers.drain(..) {
            to_tun.push(answer);
        }
    }

    /// The flow ends: its held answers go out, and queries still waiting are given up on.
    pub fn finish(&mut self, to_tun: &mut PacketQueue) -> Vec<DnsExchange> {
        self.release_answers(to_tun);
        let waiting = self.dns.as_mut().map(Pairing::drain).unwrap_or_default();
        self.fail_all(waiting, to_tun)
    }

    /// [`give_up`](Self::give_up) on each of `exchanges`.
    fn fail_all(
        &mut self,
        exchanges: Vec<DnsExchange>,
        to_tun: &mut PacketQueue,
    ) -> Vec<DnsExchange> {
        exchanges
            .into_iter()
            .map(|exchange| self.give_up(exchange, to_tun))
            .collect()
    }

    /// No answer will come for `exchange`'s query: our DNS service answers SERVFAIL, and logs
    /// the exchange with it (the app's answer, as a replay of the tun reads it); an app's own
    /// resolver answers for itself, so a direct flow only logs the query unanswered.
    fn give_up(&mut self, exchange: DnsExchange, to_tun: &mut PacketQueue) -> DnsExchange {
        if self.service {
            if let Some(pairing) = &mut self.dns {
                pairing.replied();
            }
            let key = self.common.record.key;
            let servfail = answer_servfail(to_tun, key.dst, key.src, &exchange.query);
            return exchange.answered_by(servfail);
        }
        exchange
    }
}

/// A SERVFAIL from the DNS service at `service` to `client`'s `query`; returns the answer
/// sent, None when the query was too short to answer.
pub fn answer_servfail(
    to_tun: &mut PacketQueue,
    service: SocketAddr,
    client: SocketAddr,
    query: &[u8],
) -> Option<Vec<u8>> {
    let reply = dns::servfail(query)?;
    to_tun.push_built(|out| packet::build_udp(out, service, client, &reply));
    Some(reply)
}

/// The server's port is closed: pass the ICMP error on, quoting a datagram of the flow, so the
/// app's socket fails at once as it would without the tunnel.
fn relay_port_unreachable(to_tun: &mut PacketQueue, app: SocketAddr, server: SocketAddr) {
    let mut quoted = to_tun.take_buffer();
    if packet::build_udp(&mut quoted, app, server, b"") {
        to_tun.push_built(|out| packet::build_unreachable(out, server.ip(), &quoted, true));
    }
    to_tun.recycle(quoted);
}
