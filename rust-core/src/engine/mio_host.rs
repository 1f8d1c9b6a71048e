//! The live relay's [`Host`]: outbound sockets made by `outbound.rs` (SO_MARK /
//! SO_BINDTODEVICE) and registered with the loop's mio registry under their flow's token, and
//! packets written to the tun fd.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::RawFd;

use mio::{Interest, Registry, Token};

use crate::flow::{FlowId, Proto};
use crate::owner::resolver::OwnerClient;

use super::Outbound;
use super::host::{DatagramSocket, Host, StreamSocket};
use super::{offload, outbound};

/// mio tokens below this are the loop's own (tun, waker); flow tokens are `id + FIRST_FLOW_TOKEN`.
pub const FIRST_FLOW_TOKEN: usize = 2;

pub fn token(id: FlowId) -> Token {
    Token(id as usize + FIRST_FLOW_TOKEN)
}

/// The flow a socket token belongs to; None for the loop's own tokens.
pub fn flow_of(token: Token) -> Option<FlowId> {
    token.0.checked_sub(FIRST_FLOW_TOKEN).map(|id| id as FlowId)
}

pub struct MioHost {
    registry: Registry,
    outbound: Outbound,
    /// The tun; None leaves packets unwritten (counted as dropped).
    tun: Option<RawFd>,
    /// The tun's MTU when it has segmentation offload (a virtio-net header on every packet).
    offload_mtu: Option<usize>,
    /// The owner lookups: at once where they cannot block, else on the resolver thread.
    pub owners: OwnerClient,
}

impl MioHost {
    pub fn new(
        registry: Registry,
        outbound: Outbound,
        tun: Option<RawFd>,
        offload_mtu: Option<usize>,
        owners: OwnerClient,
    ) -> MioHost {
        MioHost {
            registry,
            outbound,
            tun,
            offload_mtu,
            owners,
        }
    }
}

impl Host for MioHost {
    type Stream = mio::net::TcpStream;
    type Datagram = mio::net::UdpSocket;

    fn transmit(&mut self, packet: &mut [u8]) -> io::Result<()> {
        let Some(fd) = self.tun else {
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        };
        let n = match self.offload_mtu {
            Some(mtu) => {
                let header = offload::output_header(packet, mtu);
                offload::write(fd, &header, packet)
            }
            // SAFETY: packet is valid for packet.len() bytes; fd is the engine's open tun.
            None => unsafe { libc::write(fd, packet.as_ptr().cast(), packet.len()) },
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock && e.raw_os_error() != Some(libc::ENOBUFS) {
                log::debug!("tun write: {e}");
            }
            return Err(e);
        }
        Ok(())
    }

    fn owner_now(&mut self, proto: Proto, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
        self.owners.owner_now(proto, local, remote)
    }

    fn tcp_connect(&mut self, flow: FlowId, dst: SocketAddr) -> io::Result<Self::Stream> {
        let mut stream = outbound::tcp_connect(&self.outbound, dst)?;
        self.registry.register(
            &mut stream,
            token(flow),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(stream)
    }

    fn udp_connect(&mut self, flow: FlowId, dst: SocketAddr) -> io::Result<Self::Datagram> {
        let mut socket = outbound::udp_connect(&self.outbound, dst)?;
        self.registry
            .register(&mut socket, token(flow), Interest::READABLE)?;
        Ok(socket)
    }

    fn ping_connect(&mut self, flow: FlowId, dst: SocketAddr) -> io::Result<Self::Datagram> {
        let mut socket = outbound::ping_connect(&self.outbound, dst)?;
        self.registry
            .register(&mut socket, token(flow), Interest::READABLE)?;
        Ok(socket)
    }

    fn close_stream(&mut self, mut stream: Self::Stream) {
        let _ = self.registry.deregister(&mut stream);
    }

    fn close_datagram(&mut self, mut socket: Self::Datagram) {
        let _ = self.registry.deregister(&mut socket);
    }
}

impl StreamSocket for mio::net::TcpStream {
    /// A peer address means connected: one system call for the usual case. Without one the
    /// connect failed (its error is pending) or is still in progress (no error).
    fn connect_result(&mut self) -> Option<io::Result<()>> {
        match self.peer_addr() {
            Ok(_) => return Some(Ok(())),
            Err(e)
                if e.kind() == io::ErrorKind::NotConnected
                    || e.raw_os_error() == Some(libc::ENOTCONN) => {}
            Err(e) => return Some(Err(e)),
        }
        match self.take_error() {
            Ok(Some(e)) | Err(e) => Some(Err(e)),
            Ok(None) => None,
        }
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn reset_on_close(&mut self) {
        outbound::set_linger_zero(self);
    }
}

impl DatagramSocket for mio::net::UdpSocket {
    fn send(&mut self, datagram: &[u8]) -> io::Result<usize> {
        mio::net::UdpSocket::send(self, datagram)
    }

    fn recv(&mut self, into: &mut [u8]) -> io::Result<usize> {
        mio::net::UdpSocket::recv(self, into)
    }
}
