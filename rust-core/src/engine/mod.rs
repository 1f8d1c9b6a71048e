//! The live engine: one mio thread owns the tun fd, the smoltcp shards and every outbound
//! socket, and relays each flow to its real destination. (Contract stub: being written.)

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::mpsc::Sender;

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
    pub mtu: usize,
    pub outbound: Outbound,
}

/// Live counters for the UI and the CLI's summary.
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    pub flows_opened: u64,
    pub flows_open: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub packets_dropped: u64,
}

/// A running engine. Dropping it stops the engine.
pub struct Engine {
    _private: (),
}

impl Engine {
    /// Takes ownership of `tun` (closed on stop). Events go to `events` (the store writer).
    pub fn start(
        tun: OwnedFd,
        config: EngineConfig,
        owner: Box<dyn OwnerLookup>,
        events: Sender<Event>,
    ) -> io::Result<Engine> {
        let _ = (tun, config, owner, events);
        Err(io::Error::other("engine not built yet"))
    }

    pub fn stats(&self) -> io::Result<EngineStats> {
        Err(io::Error::other("engine not built yet"))
    }

    /// Closes every open flow (reason engine-stop), sends their final events, closes the tun fd
    /// and joins the loop thread.
    pub fn stop(self) -> io::Result<EngineStats> {
        Err(io::Error::other("engine not built yet"))
    }
}
