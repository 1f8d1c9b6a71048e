//! The live engine: one mio thread owns the tun fd, the smoltcp shards and every outbound
//! socket, and relays each flow to its real destination. See docs/ARCHITECTURE-engine.md.
//!
//! Usage (a driver such as `phonehome capture` or the Android service):
//!
//! ```no_run
//! # use std::sync::mpsc::channel;
//! # fn demo(tun: std::os::fd::OwnedFd, owner: Box<dyn phonehome::owner::OwnerLookup>) -> std::io::Result<()> {
//! use phonehome::engine::{Engine, EngineConfig, Outbound};
//! let (events, _rx) = channel();
//! let config = EngineConfig {
//!     dns_v4: "10.111.222.3".parse().unwrap(),
//!     dns_v6: None,
//!     dns_upstream: "198.18.0.1:53".parse().unwrap(),
//!     mtu: 1500,
//!     outbound: Outbound { mark: Some(0x50484f4d), bind_device: None },
//! };
//! let engine = Engine::start(tun, config, owner, events)?;
//! let stats = engine.stop()?; // closes every flow (reason engine-stop), joins the thread
//! # Ok(()) }
//! ```
//!
//! The tun fd may be blocking or not (it is switched to non-blocking). It must deliver one IP
//! packet per read with no packet-information header (Linux `IFF_TUN | IFF_NO_PI`, Android's
//! VpnService fd); a `SOCK_SEQPACKET`/`SOCK_DGRAM` socket works too (tests use one).

mod buffers;
mod core;
mod device;
pub(crate) mod dns;
mod event_loop;
mod host;
mod icmp;
mod mio_host;
mod offload;
mod outbound;
mod packet;
pub(crate) mod report;
mod shard;
mod tap;
mod tcp;
mod udp;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) use self::core::PROVOKE_ENGINE_DEATH_PORT;

/// The engine's own handling of one packet read from the tun, short of flows and sockets:
/// classification, and the replies the engine builds from the app's bytes (RST, ICMP errors,
/// UDP and echo replies, the whole packet rebuilt from a reassembled payload). For the
/// `engine_packet` fuzz target and the seed test on 32-bit: Ok(whether the packet was
/// classified), Err when a classification points outside the packet or a rebuilt packet does
/// not read back as what it was built from.
#[doc(hidden)]
pub fn fuzz_packet_entry(buf: &[u8]) -> Result<bool, &'static str> {
    let mut out = Vec::new();
    // What reassembly does with a complete payload: one packet, which must read back the same.
    if let Ok(ip) = crate::pcap::ip::parse_ip(buf)
        && packet::build_ip(&mut out, ip.src, ip.dst, ip.proto, ip.payload)
    {
        let back = crate::pcap::ip::parse_ip(&out).map_err(|_| "rebuilt packet unreadable")?;
        if (back.src, back.dst, back.proto, back.payload, back.fragment)
            != (ip.src, ip.dst, ip.proto, ip.payload, None)
        {
            return Err("rebuilt packet differs");
        }
    }
    let router = std::net::IpAddr::V4(Ipv4Addr::new(10, 111, 222, 1));
    let _ = packet::build_rst(&mut out, buf);
    let _ = packet::build_unreachable(&mut out, router, buf, true);
    let _ = packet::build_unreachable(&mut out, router, buf, false);
    let Ok(parsed) = packet::parse(buf) else {
        return Ok(false);
    };
    if parsed.ip_len > buf.len() {
        return Err("IP length beyond the packet");
    }
    let payload = buf
        .get(parsed.payload.0..parsed.payload.1)
        .ok_or("payload range outside the packet")?;
    match parsed.transport {
        packet::Transport::Udp { .. } => {
            let _ = packet::build_udp(&mut out, parsed.dst_addr(), parsed.src_addr(), payload);
        }
        packet::Transport::Echo { ident, .. } => {
            let _ = packet::build_echo_reply(&mut out, parsed.dst, parsed.src, ident, payload);
        }
        packet::Transport::Tcp { .. } => {}
    }
    Ok(true)
}

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

pub use tap::{PacketTap, TappedPacket};

use crate::dissect::DeviceScan;
use crate::flow::Event;
use crate::owner::OwnerLookup;

/// How outbound sockets escape the tunnel.
#[derive(Clone, Debug, Default)]
pub struct Outbound {
    /// SO_MARK on every outbound socket (Linux, with an `ip rule`).
    pub mark: Option<u32>,
    /// SO_BINDTODEVICE on every outbound socket.
    pub bind_device: Option<String>,
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The address the tunnel's DNS service answers on (the phone's resolver points here).
    pub dns_v4: Ipv4Addr,
    pub dns_v6: Option<Ipv6Addr>,
    /// Where DNS queries are forwarded.
    pub dns_upstream: SocketAddr,
    /// The tun's MTU (1280..=65535). Per-packet costs dominate on a tun without offload
    /// (Android's), so a large MTU (the app's 9000) multiplies TCP throughput there; TCP is
    /// terminated here, so the app's large segments never reach the network as such.
    pub mtu: usize,
    pub outbound: Outbound,
}

/// Knobs with sensible defaults; tests and benchmarks change them through
/// [`Engine::start_tuned`].
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Independent smoltcp interfaces the TCP flows are spread over.
    pub shards: usize,
    /// smoltcp receive ring per TCP flow (app -> server); its size sets the window offered to
    /// the app. Both rings are at least 16 MTU-sized segments.
    pub tcp_rx_buffer: usize,
    /// smoltcp send ring per TCP flow (server -> app).
    pub tcp_tx_buffer: usize,
    /// Released buffer regions kept for reuse (their pages are returned to the system).
    pub spare_buffers: usize,
    /// Resident memory the TCP rings may use before the pages of empty rings are returned to
    /// the system.
    pub tcp_buffer_budget: usize,
    /// tun packets read before the shards are polled.
    pub batch: usize,
    pub connect_timeout: Duration,
    pub tcp_idle_timeout: Duration,
    /// A TCP flow with one direction closed and no traffic for this long is reset.
    pub tcp_half_closed_timeout: Duration,
    pub udp_idle_timeout: Duration,
    /// NAT entries to the DNS service expire sooner: one query, one answer.
    pub dns_flow_timeout: Duration,
    /// An unanswered DNS query gets SERVFAIL after this long.
    pub dns_timeout: Duration,
    pub echo_idle_timeout: Duration,
    /// What is known about the phone (own addresses, model, OS version), so the dissectors can
    /// flag it in cleartext payloads (its searchers built once, shared by every flow).
    pub device: Option<Arc<DeviceScan>>,
    /// Copies of every packet read from and written to the tun, for a recorder thread (e.g.
    /// `phonehome capture --pcapng`). None (the default) copies nothing.
    pub packet_tap: Option<PacketTap>,
    /// The tun was opened with `IFF_VNET_HDR` and TCP segmentation offload (the Linux capture
    /// TUN): every read and write carries a `virtio_net_hdr`, and TCP moves in segments of up
    /// to 64 KiB whatever the MTU. Never on Android (its VpnService fd has no such header).
    pub tun_offload: bool,
}

impl Default for Tuning {
    fn default() -> Tuning {
        // Shared with the capture replay, so both end idle flows alike.
        let idle = crate::flow_rules::IdleTimeouts::default();
        Tuning {
            shards: 64,
            tcp_rx_buffer: 128 * 1024,
            tcp_tx_buffer: 128 * 1024,
            spare_buffers: 256,
            tcp_buffer_budget: 4 << 20,
            batch: 64,
            connect_timeout: Duration::from_secs(20),
            tcp_idle_timeout: idle.tcp,
            tcp_half_closed_timeout: idle.tcp_half_closed,
            udp_idle_timeout: idle.udp,
            dns_flow_timeout: idle.dns,
            dns_timeout: crate::flow_rules::DNS_ANSWER_TIMEOUT,
            echo_idle_timeout: idle.echo,
            device: None,
            packet_tap: None,
            tun_offload: false,
        }
    }
}

/// Live counters for the UI and the CLI's summary.
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    pub flows_opened: u64,
    pub flows_open: u64,
    /// Application payload bytes relayed app -> server (TCP stream bytes, UDP payloads).
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Packets from the tun that were malformed, of an unsupported protocol, or could not be
    /// relayed, and IP fragments given up.
    pub packets_dropped: u64,
    /// Of `packets_dropped`, the IP fragments given up: a datagram larger than the tun's MTU
    /// arrives in fragments, reassembled unless it would exceed 64 KiB, the pool of pending
    /// fragments is full (8 MiB), or a piece is still missing after 30 s.
    pub fragments_dropped: u64,
    /// Flows dropped because handling them panicked (a bug; each is logged). The engine goes on.
    pub flows_failed: u64,
}

/// A running engine. Dropping it stops the engine.
pub struct Engine {
    control: Option<event_loop::Control>,
}

impl Engine {
    /// Takes ownership of `tun` (closed on stop). Events go to `events` (the store writer).
    pub fn start(
        tun: OwnedFd,
        config: EngineConfig,
        owner: Box<dyn OwnerLookup>,
        events: Sender<Event>,
    ) -> io::Result<Engine> {
        Engine::start_tuned(tun, config, Tuning::default(), owner, events)
    }

    pub fn start_tuned(
        tun: OwnedFd,
        config: EngineConfig,
        tuning: Tuning,
        owner: Box<dyn OwnerLookup>,
        events: Sender<Event>,
    ) -> io::Result<Engine> {
        if config.mtu < 1280 || config.mtu > 65535 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("engine MTU {} out of range 1280..=65535", config.mtu),
            ));
        }
        let control = event_loop::spawn(tun, config, tuning, owner, events)?;
        Ok(Engine {
            control: Some(control),
        })
    }

    pub fn stats(&self) -> io::Result<EngineStats> {
        match &self.control {
            Some(control) => control.stats(),
            None => Err(io::Error::other("engine stopped")),
        }
    }

    /// Closes every open flow (reason engine-stop), sends their final events, closes the tun fd
    /// and joins the loop thread.
    /// Sends DNS to `upstream` from now on, in place: no flow, session or record is reset.
    pub fn set_dns_upstream(&self, upstream: SocketAddr) -> io::Result<()> {
        match &self.control {
            Some(control) => control.set_dns_upstream(upstream),
            None => Err(io::Error::other("engine stopped")),
        }
    }

    pub fn stop(mut self) -> io::Result<EngineStats> {
        match self.control.take() {
            Some(control) => control.stop(),
            None => Err(io::Error::other("engine stopped")),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(control) = self.control.take() {
            let _ = control.stop();
        }
    }
}
