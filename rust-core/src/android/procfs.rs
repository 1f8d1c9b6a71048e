//! Socket owner from `/proc/net/{tcp,udp}[6]`: the fallback below Android 10, where
//! `ConnectivityManager.getConnectionOwnerUid` does not exist (and apps may still read procfs),
//! and on Linux hosts.
//!
//! Addresses there are hex words in host byte order; IPv4 sockets of dual-stack listeners show
//! up in the `6` files as `::ffff:a.b.c.d`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::flow::Proto;

/// The UID owning the socket `local` -> `remote`, read from the procfs tables for `proto`.
/// UDP sockets are often unconnected, so for UDP a socket bound to `local` (or to the wildcard
/// address on its port) with no remote also matches.
pub fn owner_uid(proto: Proto, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    let files: &[&str] = match proto {
        Proto::Tcp => &["/proc/net/tcp", "/proc/net/tcp6"],
        Proto::Udp => &["/proc/net/udp", "/proc/net/udp6"],
        Proto::Icmp => return None,
    };
    let mut fallback = None;
    for path in files {
        let Ok(table) = std::fs::read_to_string(path) else { continue };
        match find_in_table(&table, proto, local, remote) {
            Some(Match::Exact(uid)) => return Some(uid),
            Some(Match::Unconnected(uid)) => fallback = fallback.or(Some(uid)),
            None => {}
        }
    }
    fallback
}

#[derive(Debug, PartialEq, Eq)]
pub enum Match {
    Exact(u32),
    /// A UDP socket bound to the local port with no connected peer.
    Unconnected(u32),
}

/// Finds the socket in the text of one procfs table.
pub fn find_in_table(table: &str, proto: Proto, local: SocketAddr, remote: SocketAddr) -> Option<Match> {
    let mut unconnected = None;
    for line in table.lines().skip(1) {
        let mut cols = line.split_whitespace();
        let (Some(_slot), Some(l), Some(r)) = (cols.next(), cols.next(), cols.next()) else { continue };
        // st, tx_queue:rx_queue, tr:tm->when, retrnsmt, then uid.
        let Some(uid) = cols.nth(4).and_then(|u| u.parse::<u32>().ok()) else { continue };
        let (Some(l), Some(r)) = (parse_addr(l), parse_addr(r)) else { continue };
        if same(l, local) && same(r, remote) {
            return Some(Match::Exact(uid));
        }
        let wildcard_remote = r.ip().is_unspecified() && r.port() == 0;
        let local_matches = l.port() == local.port() && (l.ip().is_unspecified() || same_ip(l.ip(), local.ip()));
        if proto == Proto::Udp && wildcard_remote && local_matches && unconnected.is_none() {
            unconnected = Some(Match::Unconnected(uid));
        }
    }
    unconnected
}

fn same(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && same_ip(a.ip(), b.ip())
}

fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    canonical(a) == canonical(b)
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// `0100007F:1F90` or the 32-hex-digit IPv6 form.
pub fn parse_addr(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(u32::from_str_radix(addr, 16).ok()?.to_ne_bytes())),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                let word = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a little-endian host (x86_64 and arm64 Android are both little-endian).
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21431 1 0000000000000000 100 0 0 10 0
   1: 020012C6:9C40 020112C6:01BB 01 00000000:00000000 00:00000000 00000000 10123        0 51234 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF0000020012C6:9C41 0000000000000000FFFF0000020112C6:0050 01 00000000:00000000 00:00000000 00000000 10077        0 1 1 0 20 4 30 10 -1
   1: 000000FD000000000000000002000000:A000 000000FD000000000000000001000000:01BB 01 00000000:00000000 00:00000000 00000000 10500        0 1 1 0 20 4 30 10 -1
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:1F40 00000000:0000 07 00000000:00000000 00:00000000 00000000  1051        0 1 2 0 0
";

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_host_order_words() {
        assert_eq!(parse_addr("0100007F:0277"), Some(sa("127.0.0.1:631")));
        assert_eq!(parse_addr("000000FD000000000000000002000000:A000"), Some(sa("[fd00::2]:40960")));
        assert_eq!(parse_addr("zz:1"), None);
        assert_eq!(parse_addr("0100007F"), None);
    }

    #[test]
    fn finds_tcp_by_both_ends() {
        let m = find_in_table(TCP, Proto::Tcp, sa("198.18.0.2:40000"), sa("198.18.1.2:443"));
        assert_eq!(m, Some(Match::Exact(10123)));
        assert_eq!(find_in_table(TCP, Proto::Tcp, sa("198.18.0.2:40000"), sa("198.18.1.2:80")), None);
    }

    #[test]
    fn matches_ipv4_mapped_and_ipv6() {
        let m = find_in_table(TCP6, Proto::Tcp, sa("198.18.0.2:40001"), sa("198.18.1.2:80"));
        assert_eq!(m, Some(Match::Exact(10077)));
        let m = find_in_table(TCP6, Proto::Tcp, sa("[fd00::2]:40960"), sa("[fd00::1]:443"));
        assert_eq!(m, Some(Match::Exact(10500)));
    }

    #[test]
    fn unconnected_udp_matches_by_local_port() {
        let m = find_in_table(UDP, Proto::Udp, sa("198.18.0.2:8000"), sa("198.18.0.1:53"));
        assert_eq!(m, Some(Match::Unconnected(1051)));
        assert_eq!(find_in_table(UDP, Proto::Tcp, sa("198.18.0.2:8000"), sa("198.18.0.1:53")), None);
    }
}
