//! Owner lookup through `NETLINK_SOCK_DIAG` (inet_diag): ask the kernel for exactly one socket
//! by its addresses, as `ss` does, instead of reading `/proc/net/tcp`, whose every read walks the
//! kernel's whole TCP hash table (262,144 buckets on a typical host: about 3 ms per read even
//! in an empty namespace). One exact query is answered from the hash bucket of that socket.
//!
//! The request is one fixed-size struct and the answer one fixed-size struct, so they are
//! encoded here with checked offsets rather than through a netlink library. The netlink socket
//! belongs to the namespace it was created in: `phonehome capture` opens it on the namespace's
//! thread.
//!
//! A protocol whose diag module the kernel lacks (no `udp_diag`, a netlink refusal other than
//! "no such socket") falls back to [`ProcNet`] for good.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::flow::Proto;

use super::{ImmediateOwner, OwnerLookup, ProcNet};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_HEADER: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, and a 48-byte socket id.
const REQUEST_BODY: usize = 56;
/// `struct inet_diag_msg` up to and including `idiag_inode`.
const REPLY_BODY: usize = 72;
/// How long one query may wait for the kernel (it answers in microseconds; this only bounds a
/// kernel that never answers).
const RECEIVE_TIMEOUT: Duration = Duration::from_millis(200);

/// Why a query found no owner.
#[derive(Debug, PartialEq, Eq)]
pub enum DiagError {
    /// The kernel has no such socket (or only a closed one, whose owner it no longer reports).
    NotFound,
    /// The kernel cannot answer for this protocol (its diag module is missing, or refused).
    Unsupported(i32),
    /// The socket failed, or the answer was malformed.
    Io(String),
}

/// A netlink `NETLINK_SOCK_DIAG` socket in the namespace it was opened in.
pub struct SockDiag {
    fd: OwnedFd,
    sequence: u32,
    buffer: Vec<u8>,
}

impl SockDiag {
    /// Opens the socket in the calling thread's network namespace.
    pub fn open() -> io::Result<SockDiag> {
        SockDiag::open_with(0)
    }

    /// A socket whose queries never wait: the kernel answers a query within the send, so an
    /// answer that is not there at once is treated as none (for the engine thread,
    /// [`ImmediateDiag`]).
    pub fn open_nonblocking() -> io::Result<SockDiag> {
        SockDiag::open_with(libc::SOCK_NONBLOCK)
    }

    fn open_with(flags: libc::c_int) -> io::Result<SockDiag> {
        // SAFETY: plain socket(2); the fd is owned by the OwnedFd from here on.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | flags,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: RECEIVE_TIMEOUT.as_micros() as libc::suseconds_t,
        };
        // SAFETY: timeval is plain data and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SockDiag {
            fd,
            sequence: 0,
            buffer: vec![0; 8192],
        })
    }

    /// The uid of the socket `local -> remote`. TCP sockets match exactly; UDP sockets are
    /// matched as the kernel delivers datagrams (a wildcard-bound, unconnected socket matches).
    pub fn owner_uid(
        &mut self,
        proto: Proto,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<u32, DiagError> {
        let (local, remote) = same_family(local, remote);
        // TCP looks the pair up from the socket's side. The kernel's UDP lookup takes the
        // request's source as the datagram's source, the peer (this kernel, 6.x); the other
        // order is tried too, for kernels that treat it as TCP does.
        let orders: &[(SocketAddr, SocketAddr)] = match proto {
            Proto::Udp => &[(remote, local), (local, remote)],
            _ => &[(local, remote)],
        };
        for &(source, destination) in orders {
            match self.query(proto, source, destination) {
                // The answer describes the socket from its own side, whichever way it was
                // asked: its source port is the app's port. Otherwise it is another socket
                // (a server's in the same namespace) or a closed one (no inode, no owner).
                Ok(reply) if reply.source_port == local.port() && reply.inode != 0 => {
                    return Ok(reply.uid);
                }
                Ok(_) | Err(DiagError::NotFound) => {}
                Err(err) => return Err(err),
            }
        }
        Err(DiagError::NotFound)
    }

    fn query(
        &mut self,
        proto: Proto,
        source: SocketAddr,
        destination: SocketAddr,
    ) -> Result<Reply, DiagError> {
        let protocol = match proto {
            Proto::Tcp => libc::IPPROTO_TCP,
            Proto::Udp => libc::IPPROTO_UDP,
            Proto::Icmp => return Err(DiagError::NotFound),
        };
        self.sequence = self.sequence.wrapping_add(1);
        let request = encode_request(self.sequence, protocol as u8, source, destination);
        // SAFETY: request is a valid buffer of its length; a netlink datagram goes to the
        // kernel (the socket is unbound and unconnected, so the default peer is the kernel).
        let sent = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(DiagError::Io(io::Error::last_os_error().to_string()));
        }
        loop {
            // SAFETY: buffer is writable for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buffer.as_mut_ptr().cast(),
                    self.buffer.len(),
                    0,
                )
            };
            if n < 0 {
                return Err(DiagError::Io(io::Error::last_os_error().to_string()));
            }
            let datagram = self.buffer.get(..n as usize).unwrap_or_default();
            match parse_reply(datagram, self.sequence) {
                // An answer to an earlier query that timed out: read on.
                Err(Stale) => continue,
                Ok(answer) => return answer,
            }
        }
    }
}

/// The fields of `struct inet_diag_msg` the lookup needs.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    source_port: u16,
    destination_port: u16,
    uid: u32,
    inode: u32,
}

/// A reply to some other query than the one in flight.
#[derive(Debug, PartialEq, Eq)]
struct Stale;

/// Both addresses in one family: an IPv4-mapped IPv6 address becomes IPv4 (the kernel keeps
/// such sockets in the IPv4 tables' view).
fn same_family(local: SocketAddr, remote: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    (canonical(local), canonical(remote))
}

fn encode_request(
    sequence: u32,
    protocol: u8,
    source: SocketAddr,
    destination: SocketAddr,
) -> [u8; NLMSG_HEADER + REQUEST_BODY] {
    let mut out = [0u8; NLMSG_HEADER + REQUEST_BODY];
    out[0..4].copy_from_slice(&((NLMSG_HEADER + REQUEST_BODY) as u32).to_ne_bytes());
    out[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    out[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    out[8..12].copy_from_slice(&sequence.to_ne_bytes());
    // nlmsg_pid 0: the kernel.
    let body = &mut out[NLMSG_HEADER..];
    body[0] = match source.ip() {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    };
    body[1] = protocol;
    // idiag_ext 0, pad 0; idiag_states: every state (an exact lookup ignores it on most
    // kernels; where it does not, no state is excluded).
    body[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    let id = &mut body[8..];
    id[0..2].copy_from_slice(&source.port().to_be_bytes());
    id[2..4].copy_from_slice(&destination.port().to_be_bytes());
    put_address(&mut id[4..20], source.ip());
    put_address(&mut id[20..36], destination.ip());
    // idiag_if 0 (any interface); idiag_cookie INET_DIAG_NOCOOKIE (both words all ones).
    id[40..48].fill(0xff);
    out
}

fn put_address(slot: &mut [u8], ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => slot[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => slot.copy_from_slice(&v6.octets()),
    }
}

/// One datagram from the kernel: the socket's description, an error, or a stale reply.
fn parse_reply(datagram: &[u8], sequence: u32) -> Result<Result<Reply, DiagError>, Stale> {
    let malformed = |what: &str| Ok(Err(DiagError::Io(format!("sock_diag reply: {what}"))));
    let Some(header) = datagram.get(..NLMSG_HEADER) else {
        return malformed("shorter than a netlink header");
    };
    let length = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let kind = u16::from_ne_bytes([header[4], header[5]]);
    let reply_sequence = u32::from_ne_bytes([header[8], header[9], header[10], header[11]]);
    if length < NLMSG_HEADER || length > datagram.len() {
        return malformed("length out of range");
    }
    if reply_sequence != sequence {
        return Err(Stale);
    }
    let body = &datagram[NLMSG_HEADER..length];
    if kind == libc::NLMSG_ERROR as u16 {
        let Some(code) = body.get(..4) else {
            return malformed("error without a code");
        };
        let errno = -i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
        return Ok(Err(match errno {
            libc::ENOENT => DiagError::NotFound,
            other => DiagError::Unsupported(other),
        }));
    }
    if kind != SOCK_DIAG_BY_FAMILY {
        return malformed("unexpected message type");
    }
    let Some(body) = body.get(..REPLY_BODY) else {
        return malformed("shorter than inet_diag_msg");
    };
    let word = |at: usize| u32::from_ne_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
    Ok(Ok(Reply {
        source_port: u16::from_be_bytes([body[4], body[5]]),
        destination_port: u16::from_be_bytes([body[6], body[7]]),
        uid: word(64),
        inode: word(68),
    }))
}

/// The engine thread's own sock_diag lookup ([`OwnerLookup::immediate`]): a non-blocking
/// socket, and per protocol whether the kernel refused (then the helper thread, which falls
/// back to procfs, answers alone).
pub struct ImmediateDiag {
    diag: SockDiag,
    tcp_refused: bool,
    udp_refused: bool,
}

impl ImmediateDiag {
    pub fn new(diag: SockDiag) -> ImmediateDiag {
        ImmediateDiag {
            diag,
            tcp_refused: false,
            udp_refused: false,
        }
    }
}

impl ImmediateOwner for ImmediateDiag {
    fn owner_uid_now(
        &mut self,
        proto: Proto,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<u32> {
        let refused = match proto {
            Proto::Tcp => &mut self.tcp_refused,
            Proto::Udp => &mut self.udp_refused,
            Proto::Icmp => return None,
        };
        if *refused {
            return None;
        }
        match self.diag.owner_uid(proto, local, remote) {
            Ok(uid) => Some(uid),
            Err(DiagError::Unsupported(_)) => {
                *refused = true;
                None
            }
            Err(DiagError::NotFound | DiagError::Io(_)) => None,
        }
    }
}

/// Linux owner lookup: sock_diag first, procfs where the kernel cannot answer by netlink.
pub struct KernelOwner {
    diag: Option<SockDiag>,
    /// Handed to the engine thread by [`OwnerLookup::immediate`].
    immediate: Option<SockDiag>,
    /// Protocols sock_diag refused; they go to procfs from then on.
    tcp_by_procfs: bool,
    udp_by_procfs: bool,
    procfs: ProcNet,
}

impl KernelOwner {
    /// `diag` None (the netlink socket could not be opened): procfs only.
    pub fn new(diag: Option<SockDiag>, procfs: ProcNet) -> KernelOwner {
        KernelOwner {
            diag,
            immediate: None,
            tcp_by_procfs: false,
            udp_by_procfs: false,
            procfs,
        }
    }

    /// Also a non-blocking socket for the engine thread (opened in the same namespace).
    pub fn with_immediate(mut self, diag: SockDiag) -> KernelOwner {
        self.immediate = Some(diag);
        self
    }

    fn by_procfs(&mut self, proto: Proto) -> &mut bool {
        if proto == Proto::Tcp {
            &mut self.tcp_by_procfs
        } else {
            &mut self.udp_by_procfs
        }
    }
}

impl OwnerLookup for KernelOwner {
    fn owner_uid(&mut self, proto: Proto, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
        if proto == Proto::Icmp {
            return None;
        }
        if !*self.by_procfs(proto)
            && let Some(diag) = &mut self.diag
        {
            match diag.owner_uid(proto, local, remote) {
                Ok(uid) => return Some(uid),
                Err(DiagError::NotFound) => return None,
                Err(err) => {
                    log::warn!("sock_diag cannot look up {proto:?} owners ({err:?}): using procfs");
                    *self.by_procfs(proto) = true;
                }
            }
        }
        self.procfs.owner_uid(proto, local, remote)
    }

    fn owner_uids(&mut self, requests: &[(Proto, SocketAddr, SocketAddr)]) -> Vec<Option<u32>> {
        let all_by_diag = self.diag.is_some()
            && requests
                .iter()
                .all(|(proto, _, _)| !*self.by_procfs(*proto));
        if all_by_diag {
            requests
                .iter()
                .map(|&(proto, local, remote)| self.owner_uid(proto, local, remote))
                .collect()
        } else {
            self.procfs.owner_uids(requests)
        }
    }

    fn app_name(&mut self, uid: u32) -> Option<String> {
        self.procfs.app_name(uid)
    }

    fn immediate(&mut self) -> Option<Box<dyn ImmediateOwner>> {
        self.immediate
            .take()
            .map(|diag| Box::new(ImmediateDiag::new(diag)) as Box<dyn ImmediateOwner>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream, UdpSocket};

    fn my_uid() -> u32 {
        // SAFETY: getuid never fails.
        unsafe { libc::getuid() }
    }

    #[test]
    fn finds_a_live_tcp_connection_and_misses_an_unknown_one() {
        let mut diag = SockDiag::open().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let local = client.local_addr().unwrap();
        let remote = client.peer_addr().unwrap();
        assert_eq!(diag.owner_uid(Proto::Tcp, local, remote), Ok(my_uid()));
        // IPv4-mapped form of the same pair.
        let mapped = |a: SocketAddr| match a.ip() {
            IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
            IpAddr::V6(_) => a,
        };
        assert_eq!(
            diag.owner_uid(Proto::Tcp, mapped(local), mapped(remote)),
            Ok(my_uid())
        );
        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            diag.owner_uid(Proto::Tcp, nobody, remote),
            Err(DiagError::NotFound)
        );
    }

    #[test]
    fn finds_connected_and_unconnected_udp_sockets() {
        let mut diag = SockDiag::open().unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let connected = UdpSocket::bind("127.0.0.1:0").unwrap();
        connected.connect(server.local_addr().unwrap()).unwrap();
        assert_eq!(
            diag.owner_uid(
                Proto::Udp,
                connected.local_addr().unwrap(),
                server.local_addr().unwrap()
            ),
            Ok(my_uid())
        );
        // Bound to the wildcard and never connected, as a resolver's query socket often is.
        let wildcard = UdpSocket::bind("0.0.0.0:0").unwrap();
        let port = wildcard.local_addr().unwrap().port();
        let seen_from: SocketAddr = SocketAddr::new("127.0.0.1".parse().unwrap(), port);
        assert_eq!(
            diag.owner_uid(Proto::Udp, seen_from, server.local_addr().unwrap()),
            Ok(my_uid())
        );
    }

    #[test]
    fn replies_are_parsed_with_checked_lengths() {
        assert!(matches!(parse_reply(&[], 1), Ok(Err(DiagError::Io(_)))));
        // A header claiming more bytes than arrived.
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&200u32.to_ne_bytes());
        header[8..12].copy_from_slice(&1u32.to_ne_bytes());
        assert!(matches!(parse_reply(&header, 1), Ok(Err(DiagError::Io(_)))));
        // A reply to an older query.
        header[0..4].copy_from_slice(&16u32.to_ne_bytes());
        assert_eq!(parse_reply(&header, 2), Err(Stale));
        // SOCK_DIAG_BY_FAMILY with a truncated body.
        let mut short = [0u8; 40];
        short[0..4].copy_from_slice(&40u32.to_ne_bytes());
        short[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        short[8..12].copy_from_slice(&1u32.to_ne_bytes());
        assert!(matches!(parse_reply(&short, 1), Ok(Err(DiagError::Io(_)))));
        // An error message: ENOENT is "no such socket", anything else "unsupported".
        let mut error = [0u8; 20];
        error[0..4].copy_from_slice(&20u32.to_ne_bytes());
        error[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        error[8..12].copy_from_slice(&1u32.to_ne_bytes());
        error[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert_eq!(parse_reply(&error, 1), Ok(Err(DiagError::NotFound)));
        error[16..20].copy_from_slice(&(-libc::EINVAL).to_ne_bytes());
        assert_eq!(
            parse_reply(&error, 1),
            Ok(Err(DiagError::Unsupported(libc::EINVAL)))
        );
    }
}
