//! One set of rules for what a flow is, shared by the live relay (`engine`) and the capture
//! replay (`pcap::Observer`), so a live session and its pcapng give the same rows: how an ICMP
//! echo flow is keyed, what its bytes are, when an idle flow ends and when a DNS exchange does.
//!
//! Where observe mode must differ, `engine::report::Mode` says so, once (and docs/ARCHITECTURE.md
//! lists the same).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::flow::{FlowKey, Proto};

/// How long a flow may be idle (no packet either way) before it ends with reason `idle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdleTimeouts {
    pub tcp: Duration,
    /// A TCP flow with one direction closed (FIN seen).
    pub tcp_half_closed: Duration,
    pub udp: Duration,
    /// UDP to a DNS server: one query, one answer.
    pub dns: Duration,
    pub echo: Duration,
}

impl Default for IdleTimeouts {
    fn default() -> IdleTimeouts {
        IdleTimeouts {
            tcp: Duration::from_secs(2 * 3600),
            tcp_half_closed: Duration::from_secs(120),
            udp: Duration::from_secs(120),
            dns: Duration::from_secs(20),
            echo: Duration::from_secs(30),
        }
    }
}

/// What a flow's idle limit depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleClass {
    Tcp { half_closed: bool },
    Udp { dns: bool },
    Echo,
}

impl IdleTimeouts {
    pub fn limit(&self, class: IdleClass) -> Duration {
        match class {
            IdleClass::Tcp { half_closed: false } => self.tcp,
            IdleClass::Tcp { half_closed: true } => self.tcp_half_closed,
            IdleClass::Udp { dns: false } => self.udp,
            IdleClass::Udp { dns: true } => self.dns,
            IdleClass::Echo => self.echo,
        }
    }
}

/// A DNS query with no answer after this long is logged without one (and, live, answered
/// SERVFAIL).
pub const DNS_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Plain DNS, over UDP or TCP.
pub const DNS_PORT: u16 = 53;

/// A UDP flow to a DNS server (port 53), which idles out sooner: one query, one answer.
pub fn is_dns_server(key: &FlowKey) -> bool {
    key.proto == Proto::Udp && key.dst.port() == DNS_PORT
}

/// A flow to port 53 over UDP or TCP, whatever the server (the engine's DNS service or a
/// resolver the app chose): its messages are the DNS log, live and replayed alike.
pub fn carries_dns(key: &FlowKey) -> bool {
    matches!(key.proto, Proto::Udp | Proto::Tcp) && key.dst.port() == DNS_PORT
}

/// When a plain DNS exchange over UDP (a flow to a DNS server) is over: a query it carried has
/// ended (answered; live, also failed with the engine's SERVFAIL) and none still waits. The
/// flow then closes with `answered`, and the next query on its 5-tuple opens a new flow with
/// its own owner: another process may have the source port by then (ports are reused within a
/// second under load), and a flow kept open until its idle timeout would lend it the old
/// owner. A and AAAA sent from one socket before either answer are one exchange; a query seen
/// only by its answer (a capture that starts mid-exchange) ends with that answer.
pub fn dns_exchange_over(a_query_ended: bool, still_waiting: usize) -> bool {
    a_query_ended && still_waiting == 0
}

/// An ICMP echo flow: one per (app address, identifier, destination), as a ping socket is. The
/// identifier stands in the client's port, the server's port is 0.
pub fn echo_key(client: IpAddr, ident: u16, server: IpAddr) -> FlowKey {
    FlowKey {
        proto: Proto::Icmp,
        src: SocketAddr::new(client, ident),
        dst: SocketAddr::new(server, 0),
    }
}

/// Length of the ICMP echo header (type, code, checksum, identifier, sequence).
pub const ECHO_HEADER: usize = 8;

/// The bytes an echo message counts for: its data, as UDP counts its payload.
pub fn echo_bytes(icmp_message_len: usize) -> usize {
    icmp_message_len.saturating_sub(ECHO_HEADER)
}

/// An ICMP echo message's kind and identifier: Some((is_request, ident)) for echo request and
/// reply (ICMPv4 8/0, ICMPv6 128/129), None for every other ICMP message (errors, neighbour
/// discovery), which is not a flow.
pub fn echo_of(v6: bool, icmp_message: &[u8]) -> Option<(bool, u16)> {
    let kind = *icmp_message.first()?;
    let ident = u16::from_be_bytes([*icmp_message.get(4)?, *icmp_message.get(5)?]);
    let (request, reply) = if v6 { (128, 129) } else { (8, 0) };
    match kind {
        k if k == request => Some((true, ident)),
        k if k == reply => Some((false, ident)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_messages_are_told_from_other_icmp() {
        let request = [8, 0, 0, 0, 0x12, 0x34, 0, 1, b'x'];
        assert_eq!(echo_of(false, &request), Some((true, 0x1234)));
        assert_eq!(echo_of(false, &[0, 0, 0, 0, 0, 7, 0, 1]), Some((false, 7)));
        assert_eq!(echo_of(true, &[129, 0, 0, 0, 0, 7, 0, 1]), Some((false, 7)));
        // Destination unreachable, router solicitation, cut short.
        assert_eq!(echo_of(false, &[3, 3, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(echo_of(true, &[133, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(echo_of(false, &[8, 0, 0]), None);
        assert_eq!(echo_bytes(request.len()), 1);
        assert_eq!(echo_bytes(3), 0);
    }
}
