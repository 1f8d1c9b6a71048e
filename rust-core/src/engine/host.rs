//! What the flow engine asks of whoever runs it: a place to write packets for the app, and
//! outbound sockets. [`Core`](super::core::Core) never touches a file descriptor, a clock or a
//! thread itself; the live relay implements [`Host`] over mio and the tun fd
//! ([`super::mio_host::MioHost`]), the engine tests over memory (`engine::sim`), so the same
//! state machine runs on virtual time in a test and on the wall clock in the relay.

use std::io;
use std::net::SocketAddr;

use crate::flow::{FlowId, Proto};

/// A relayed TCP flow's socket to the server. Non-blocking: reads and writes may return
/// `WouldBlock`, after which the host reports readiness again through `Core::on_ready`.
pub trait StreamSocket: io::Read + io::Write {
    /// Where the non-blocking connect stands: None while in progress, then its result.
    fn connect_result(&mut self) -> Option<io::Result<()>>;
    /// Pass the app's FIN on.
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// The next close resets the server's side instead of a FIN (the app reset its side).
    fn reset_on_close(&mut self);
}

/// A connected datagram socket (UDP, or an unprivileged ICMP echo socket).
pub trait DatagramSocket {
    fn send(&mut self, datagram: &[u8]) -> io::Result<usize>;
    fn recv(&mut self, into: &mut [u8]) -> io::Result<usize>;
}

/// The engine's side effects. Each socket is opened for one flow; readiness comes back to the
/// engine with that flow's id.
pub trait Host {
    type Stream: StreamSocket;
    type Datagram: DatagramSocket;

    /// Write one packet to the app (the tun); the host may rewrite it for the device (offload
    /// checksums). An error drops it (TCP retransmits, as on a real link); the engine counts it.
    fn transmit(&mut self, packet: &mut [u8]) -> io::Result<()>;
    /// The owner of the app's end of a flow if a lookup can tell it at once without waiting
    /// (non-blocking sock_diag); None: the engine asks through its owner requests.
    fn owner_now(&mut self, proto: Proto, local: SocketAddr, remote: SocketAddr) -> Option<u32>;
    /// Start a non-blocking connect to `dst` for `flow`.
    fn tcp_connect(&mut self, flow: FlowId, dst: SocketAddr) -> io::Result<Self::Stream>;
    fn udp_connect(&mut self, flow: FlowId, dst: SocketAddr) -> io::Result<Self::Datagram>;
    /// An ICMP echo socket to `dst` (port 0). Fails where the system forbids them.
    fn ping_connect(&mut self, flow: FlowId, dst: SocketAddr) -> io::Result<Self::Datagram>;
    /// The flow is gone: stop reporting readiness for it and close the socket.
    fn close_stream(&mut self, stream: Self::Stream);
    fn close_datagram(&mut self, socket: Self::Datagram);
}
