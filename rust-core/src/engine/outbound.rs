//! Outbound sockets: created with socket2 so the bypass options (`SO_MARK`,
//! `SO_BINDTODEVICE`) are set before the connect, then handed to mio.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use super::Outbound;

fn socket(outbound: &Outbound, dst: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(dst),
        ty.nonblocking().cloexec(),
        Some(proto),
    )?;
    if let Some(mark) = outbound.mark {
        socket.set_mark(mark)?;
    }
    if let Some(device) = &outbound.bind_device {
        socket.bind_device(Some(device.as_bytes()))?;
    }
    Ok(socket)
}

/// A non-blocking TCP connect in progress (the loop learns the result from writability).
pub fn tcp_connect(outbound: &Outbound, dst: SocketAddr) -> io::Result<mio::net::TcpStream> {
    let socket = socket(outbound, dst, Type::STREAM, Protocol::TCP)?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&dst.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(socket.into()))
}

/// A UDP socket connected to `dst`, so the kernel filters replies from anyone else.
pub fn udp_connect(outbound: &Outbound, dst: SocketAddr) -> io::Result<mio::net::UdpSocket> {
    let socket = socket(outbound, dst, Type::DGRAM, Protocol::UDP)?;
    socket.connect(&dst.into())?;
    Ok(mio::net::UdpSocket::from_std(socket.into()))
}

/// An unprivileged ICMP echo ("ping") socket connected to `dst`. Fails with EACCES where
/// `net.ipv4.ping_group_range` does not include our group.
pub fn ping_connect(outbound: &Outbound, dst: SocketAddr) -> io::Result<mio::net::UdpSocket> {
    let proto = if dst.is_ipv4() {
        Protocol::ICMPV4
    } else {
        Protocol::ICMPV6
    };
    let socket = socket(outbound, dst, Type::DGRAM, proto)?;
    socket.connect(&dst.into())?;
    Ok(mio::net::UdpSocket::from_std(socket.into()))
}

/// Make the next close send an RST instead of a FIN (the app reset its side).
pub fn set_linger_zero(stream: &mio::net::TcpStream) {
    let socket = socket2::SockRef::from(stream);
    let _ = socket.set_linger(Some(std::time::Duration::ZERO));
}
