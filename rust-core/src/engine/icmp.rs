//! ICMP echo: answered through an unprivileged ping socket (`SOCK_DGRAM`, `IPPROTO_ICMP`) per
//! (app, destination, identifier). The kernel picks its own identifier; replies get the app's
//! back. Where the kernel refuses ping sockets (`net.ipv4.ping_group_range`), echo requests are
//! counted and dropped.

use std::io;
use std::net::{IpAddr, SocketAddr};

use crate::flow::{CloseReason, Direction, FlowId};
use crate::flow_rules;

use super::core::{Core, Flow};
use super::host::{DatagramSocket, Host};
use super::packet::{self, Parsed};
use super::report::{FlowCommon, Now};

pub struct EchoFlow<D> {
    pub common: FlowCommon,
    pub socket: D,
    /// The identifier the app used.
    pub ident: u16,
}

impl<H: Host> Core<H> {
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
        #[cfg(test)]
        super::core::panic_if_provoked(ident);
        // The ICMP message from its header on: the kernel rewrites the identifier and checksum.
        let l4_start = parsed.payload.0 - 8;
        let message = &buf[l4_start..parsed.payload.1];
        self.reporter.packet(&mut flow.common, Direction::Up, now);
        match flow.socket.send(message) {
            Ok(_) => {
                self.reporter.bytes(
                    &mut flow.common,
                    Direction::Up,
                    flow_rules::echo_bytes(message.len()),
                    now,
                );
            }
            Err(e) => {
                log::debug!("ping {}: {e}", parsed.dst);
                self.dropped();
            }
        }
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
        self.flows.insert(
            id,
            Flow::Echo(Box::new(EchoFlow {
                common,
                socket,
                ident,
            })),
        );
        self.echo_index.insert((parsed.src, parsed.dst, ident), id);
        self.ask_owner(id, key);
        self.schedule_sweep(now);
        Some(id)
    }

    pub(super) fn echo_readable(&mut self, id: FlowId, now: Now) {
        for _ in 0..64 {
            let Some(Flow::Echo(flow)) = self.flows.get_mut(&id) else {
                return;
            };
            let n = match flow.socket.recv(&mut self.datagram) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("ping recv for flow {id}: {e}");
                    return;
                }
            };
            let key = flow.common.record.key;
            let (src, dst): (IpAddr, IpAddr) = (key.dst.ip(), key.src.ip());
            let mut out = self.to_tun.take_buffer();
            if packet::build_echo_reply(&mut out, src, dst, flow.ident, &self.datagram[..n]) {
                self.to_tun.push(out);
                self.reporter.packet(&mut flow.common, Direction::Down, now);
                self.reporter.bytes(
                    &mut flow.common,
                    Direction::Down,
                    flow_rules::echo_bytes(n),
                    now,
                );
            } else {
                self.to_tun.recycle(out);
            }
        }
    }

    pub(super) fn close_echo(&mut self, id: FlowId, reason: CloseReason) {
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
}
