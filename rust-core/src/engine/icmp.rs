//! ICMP echo: answered through an unprivileged ping socket (`SOCK_DGRAM`, `IPPROTO_ICMP`) per
//! (app, destination, identifier). The kernel picks its own identifier; replies get the app's
//! back. Where the kernel refuses ping sockets (`net.ipv4.ping_group_range`), echo requests are
//! counted and dropped.

use std::io;
use std::net::IpAddr;

use crate::flow::Direction;
use crate::flow_rules;

use super::device::PacketQueue;
use super::host::DatagramSocket;
use super::packet;
use super::report::{FlowCommon, Now, Reporter};

pub struct EchoFlow<D> {
    pub common: FlowCommon,
    pub socket: D,
    /// The identifier the app used.
    pub ident: u16,
}

/// An echo flow leaves the engine nothing to act on: no query log, no hold, no close of its own
/// (it ends when idle), so its handlers return nothing.
impl<D: DatagramSocket> EchoFlow<D> {
    /// One echo request from the app: `message` is the ICMP message from its header on (the
    /// kernel rewrites the identifier and checksum).
    pub fn send_up(&mut self, message: &[u8], reporter: &mut Reporter, now: Now) {
        #[cfg(test)]
        super::core::panic_if_provoked(self.ident);
        reporter.packet(&mut self.common, Direction::Up, now);
        match self.socket.send(message) {
            Ok(_) => {
                let bytes = flow_rules::echo_bytes(message.len());
                reporter.bytes(&mut self.common, Direction::Up, bytes, now);
            }
            Err(e) => {
                log::debug!("ping {}: {e}", self.common.record.key.dst.ip());
                reporter.stats.packets_dropped += 1;
            }
        }
    }

    /// Echo replies from the destination: relay each to the app with its own identifier.
    /// `scratch` receives them (one datagram's room, shared by every flow).
    pub fn on_readable(
        &mut self,
        scratch: &mut [u8],
        to_tun: &mut PacketQueue,
        reporter: &mut Reporter,
        now: Now,
    ) {
        let key = self.common.record.key;
        let (src, dst): (IpAddr, IpAddr) = (key.dst.ip(), key.src.ip());
        for _ in 0..64 {
            let n = match self.socket.recv(scratch) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("ping recv for flow {}: {e}", self.common.record.id);
                    return;
                }
            };
            let reply = &scratch[..n];
            if to_tun.push_built(|out| packet::build_echo_reply(out, src, dst, self.ident, reply)) {
                reporter.packet(&mut self.common, Direction::Down, now);
                let bytes = flow_rules::echo_bytes(n);
                reporter.bytes(&mut self.common, Direction::Down, bytes, now);
            }
        }
    }
}
