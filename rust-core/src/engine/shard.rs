//! A shard: one smoltcp `Interface` + `SocketSet` + queue device holding a subset of the TCP
//! flows, chosen by a hash of the 4-tuple.
//!
//! smoltcp walks every socket of a set on every poll (smoltcp#934): with 2,000 idle sockets in one
//! set a poll costs ~60 µs. Splitting the flows across shards and polling only the shards that
//! received packets or have a due timer keeps the cost per packet flat as idle flows pile up.

use std::hash::{BuildHasher, Hash};
use std::net::SocketAddr;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{AnySocket, tcp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    HardwareAddress, IpAddress, IpCidr, IpListenEndpoint, Ipv4Address, Ipv6Address,
};

use super::buffers::{BufferPool, TcpBuffers};
use super::device::{BufferRecycler, QueueDevice};

pub struct Shard {
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    pub device: QueueDevice,
    /// When smoltcp next wants a poll (retransmit, delayed ACK, timeouts); None = only on
    /// ingress.
    pub deadline: Option<Instant>,
    /// Packets were queued or sockets changed since the last poll.
    pub dirty: bool,
}

impl Shard {
    /// `tun_offload`: `mtu` is the offload segment size and the tun completes TCP checksums.
    pub fn new(mtu: usize, tun_offload: bool, now: Instant, recycler: BufferRecycler) -> Shard {
        let mut device = QueueDevice::new(mtu, tun_offload, recycler);
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed();
        let mut iface = Interface::new(config, &mut device, now);
        // The shard answers for every address (any_ip): it impersonates each destination. The
        // /0 addresses make smoltcp accept any source; since 0.13 routes are not needed.
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(
                IpAddress::Ipv4(Ipv4Address::new(0, 0, 0, 1)),
                0,
            ));
            let _ = addrs.push(IpCidr::new(
                IpAddress::Ipv6(Ipv6Address::new(0, 0, 0, 0, 0, 0, 0, 1)),
                0,
            ));
        });
        iface.set_any_ip(true);
        Shard {
            iface,
            sockets: SocketSet::new(Vec::new()),
            device,
            deadline: None,
            dirty: false,
        }
    }

    /// Free the socket slots a burst of flows left behind: smoltcp's set never shrinks (a slot
    /// holds a whole TCP socket: 1,000 flows left 0.8 MB). Only an empty set is replaced, so no
    /// handle can outlive it.
    pub fn shrink_sockets(&mut self) {
        if self.sockets.iter().next().is_none() {
            self.sockets = SocketSet::new(Vec::new());
        }
    }

    /// Add a socket that waits for the app's SYN to `dst` and holds the SYN-ACK until the real
    /// connection succeeds (`pause_synack`).
    ///
    /// Packets already queued are processed first, and any socket left listening is closed: a
    /// socket whose connecting flow got a RST from the app falls back to LISTEN, and would
    /// otherwise take this new SYN. (Its flow sees it closed at its next service.)
    pub fn listen(
        &mut self,
        dst: SocketAddr,
        buffers: &TcpBuffers,
        now: Instant,
    ) -> Option<SocketHandle> {
        self.ingress(now);
        for (_, socket) in self.sockets.iter_mut() {
            if let Some(tcp) = tcp::Socket::downcast_mut(socket)
                && tcp.state() == tcp::State::Listen
            {
                tcp.abort();
            }
        }
        let (rx, tx) = buffers.rings();
        let mut socket = tcp::Socket::new(rx, tx);
        socket.pause_synack(true);
        socket.set_nagle_enabled(false);
        // The app leg is local: keep-alive would only add wake-ups. The flow arms a timeout
        // while data waits for the app's ACK (`TcpFlow::service`).
        socket.set_keep_alive(None);
        socket.set_timeout(None);
        socket.set_ack_delay(Some(Duration::from_millis(10)));
        let endpoint = IpListenEndpoint {
            addr: Some(to_ip_address(dst)),
            port: dst.port(),
        };
        socket.listen(endpoint).ok()?;
        Some(self.sockets.add(socket))
    }

    /// Feed the queued ingress packets to the sockets without running egress: used right after
    /// a listening socket is added so the SYN reaches it before another listener for the same
    /// destination can take it.
    pub fn ingress(&mut self, now: Instant) {
        while !self.device.rx.is_empty() {
            let _ = self
                .iface
                .poll_ingress_single(now, &mut self.device, &mut self.sockets);
        }
        self.dirty = true;
    }

    /// Process everything queued and emit what the sockets want to send.
    pub fn poll(&mut self, now: Instant) {
        let _ = self.iface.poll(now, &mut self.device, &mut self.sockets);
        self.deadline = self.iface.poll_at(now, &self.sockets);
        self.dirty = false;
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.dirty || self.deadline.is_some_and(|d| d <= now)
    }

    /// Take a socket out of the set and give its buffers back to the pool (`moved`: the most
    /// bytes the flow carried either way, see [`BufferPool::release`]).
    pub fn remove(
        &mut self,
        handle: SocketHandle,
        pool: &mut BufferPool,
        buffers: TcpBuffers,
        moved: u64,
    ) {
        drop(self.sockets.remove(handle));
        pool.release(buffers, moved);
        self.dirty = true;
    }

    pub fn socket(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(handle)
    }
}

pub fn to_ip_address(addr: SocketAddr) -> IpAddress {
    match addr {
        SocketAddr::V4(a) => IpAddress::Ipv4(*a.ip()),
        SocketAddr::V6(a) => IpAddress::Ipv6(*a.ip()),
    }
}

/// Which shard owns the flow `src -> dst`.
pub fn shard_of(src: SocketAddr, dst: SocketAddr, shards: usize) -> usize {
    let mut hasher =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    src.hash(&mut hasher);
    dst.hash(&mut hasher);
    (std::hash::Hasher::finish(&hasher) % shards.max(1) as u64) as usize
}

/// Initial sequence numbers must not be predictable. std's `RandomState` keys come from the OS
/// RNG on every target (libc `getrandom` only exists from Android 9, and minSdk is 24).
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x5eed);
    hasher.finish()
}
