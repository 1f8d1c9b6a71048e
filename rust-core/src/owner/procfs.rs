//! Owner lookup from `/proc/net/{tcp,udp}{,6}` (Linux, and Android 9 and older).
//!
//! `/proc/net` is per network namespace, so the base directory is a parameter: `phonehome
//! capture` runs the client in a child namespace and passes `/proc/<pid in child>/net`.
//! Addresses are hex words in host byte order; dual-stack sockets show IPv4 peers as
//! IPv4-mapped IPv6 addresses in the `6` files.

use std::ffi::CStr;
use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::flow::Proto;

use super::OwnerLookup;

/// A table read this recently is reused for further lookups.
const FRESH: Duration = Duration::from_millis(20);
/// After a miss, re-read a table older than this: always. A socket created after the last
/// read (a second connection a millisecond after the first) is not in it, and by the time of
/// the resolver's retry a short connection may be closed, when the kernel no longer reports its
/// owner (see `parse_line`).
const REREAD_ON_MISS: Duration = Duration::ZERO;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketEntry {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub uid: u32,
}

#[derive(Default)]
struct Table {
    read_at: Option<Instant>,
    entries: Vec<SocketEntry>,
}

pub struct ProcNet {
    base: PathBuf,
    tcp: Table,
    udp: Table,
    /// Reused for every read (tables of thousands of sockets are hundreds of kB).
    buffer: Vec<u8>,
}

/// Size of each read(2) of a table. Every read of `/proc/net/tcp` resumes the kernel's walk of
/// its whole hash table, so few large reads cost less than many small ones.
const READ_CHUNK: usize = 256 * 1024;

/// Reads the file into `buffer` (replacing its contents) in large reads.
fn read_whole(path: &Path, buffer: &mut Vec<u8>) -> std::io::Result<()> {
    let mut file = File::open(path)?;
    buffer.clear();
    loop {
        let start = buffer.len();
        buffer.resize(start + READ_CHUNK, 0);
        let n = file.read(&mut buffer[start..])?;
        buffer.truncate(start + n);
        if n == 0 {
            return Ok(());
        }
    }
}

impl ProcNet {
    /// `base` is a `net` directory: `/proc/net`, or `/proc/<pid>/net` for another namespace.
    pub fn new(base: PathBuf) -> ProcNet {
        ProcNet {
            base,
            tcp: Table::default(),
            udp: Table::default(),
            buffer: Vec::new(),
        }
    }

    fn read_table(&mut self, proto: Proto) -> Vec<SocketEntry> {
        let names: [&str; 2] = match proto {
            Proto::Tcp => ["tcp", "tcp6"],
            Proto::Udp => ["udp", "udp6"],
            Proto::Icmp => return Vec::new(),
        };
        let mut entries = Vec::new();
        for name in names {
            // A missing file (IPv6 disabled) is an empty table.
            if read_whole(&self.base.join(name), &mut self.buffer).is_ok() {
                let text = String::from_utf8_lossy(&self.buffer);
                entries.extend(text.lines().skip(1).filter_map(parse_line));
            }
        }
        entries
    }

    /// Re-read the table of `proto` now.
    fn refresh(&mut self, proto: Proto, now: Instant) {
        let entries = self.read_table(proto);
        let table = if proto == Proto::Tcp {
            &mut self.tcp
        } else {
            &mut self.udp
        };
        table.entries = entries;
        table.read_at = Some(now);
    }

    fn find(
        &mut self,
        proto: Proto,
        local: SocketAddr,
        remote: SocketAddr,
        refresh: Duration,
    ) -> Option<u32> {
        let now = Instant::now();
        let stale = |table: &Table| {
            table
                .read_at
                .is_none_or(|at| now.duration_since(at) >= refresh)
        };
        let table_is_stale = match proto {
            Proto::Tcp => stale(&self.tcp),
            Proto::Udp => stale(&self.udp),
            Proto::Icmp => return None,
        };
        if table_is_stale {
            self.refresh(proto, now);
        }
        let table = if proto == Proto::Tcp {
            &self.tcp
        } else {
            &self.udp
        };
        lookup(&table.entries, proto, local, remote)
    }
}

/// The owner of the socket `local -> remote` in `entries`. TCP needs the exact pair; UDP
/// sockets are often unconnected and bound to a wildcard, so the best match by local port wins.
pub fn lookup(
    entries: &[SocketEntry],
    proto: Proto,
    local: SocketAddr,
    remote: SocketAddr,
) -> Option<u32> {
    let local = canonical(local);
    let remote = canonical(remote);
    if let Some(e) = entries
        .iter()
        .find(|e| e.local == local && e.remote == remote)
    {
        return Some(e.uid);
    }
    if proto != Proto::Udp {
        return None;
    }
    entries
        .iter()
        .filter(|e| e.local.port() == local.port())
        .filter(|e| e.local.ip() == local.ip() || e.local.ip().is_unspecified())
        .filter(|e| e.remote.ip().is_unspecified() || e.remote == remote)
        .max_by_key(|e| (e.local.ip() == local.ip(), e.remote == remote))
        .map(|e| e.uid)
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// `st` of a TCP socket in TIME_WAIT.
const TCP_TIME_WAIT: u8 = 0x06;

/// One line of a `/proc/net/{tcp,udp}{,6}` table; None for headers, malformed lines, and
/// sockets whose owner the kernel no longer reports.
///
/// A socket the application has closed (TIME_WAIT, and FIN_WAIT2/FIN_WAIT1/CLOSING/LAST_ACK
/// once orphaned) has no inode any more and the kernel prints uid 0 for it: taking that line
/// would attribute a flow looked up late (after a retry, or a short flow) to root. Such lines
/// are skipped, so the lookup answers "unknown" rather than a wrong owner. A live socket always
/// has a non-zero inode, so root's own sockets are still found.
pub fn parse_line(line: &str) -> Option<SocketEntry> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?;
    let local = parse_endpoint(fields.next()?)?;
    let remote = parse_endpoint(fields.next()?)?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    // tx_queue:rx_queue, tr:tm->when, retrnsmt, uid, timeout, inode
    let uid = fields.nth(3)?.parse().ok()?;
    let inode: u64 = fields.nth(1)?.parse().ok()?;
    if state == TCP_TIME_WAIT || inode == 0 {
        return None;
    }
    Some(SocketEntry { local, remote, uid })
}

fn parse_endpoint(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip.to_canonical(), port))
}

/// A 32-bit word printed in host byte order, back to its memory bytes.
fn word(hex: &str) -> Option<[u8; 4]> {
    Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
}

impl OwnerLookup for ProcNet {
    fn owner_uid(&mut self, proto: Proto, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
        self.find(proto, local, remote, FRESH)
            .or_else(|| self.find(proto, local, remote, REREAD_ON_MISS))
    }

    /// Each table the batch needs is read once, fresh, for all of its lookups.
    fn owner_uids(&mut self, requests: &[(Proto, SocketAddr, SocketAddr)]) -> Vec<Option<u32>> {
        let now = Instant::now();
        for proto in [Proto::Tcp, Proto::Udp] {
            if requests.iter().any(|(p, _, _)| *p == proto) {
                self.refresh(proto, now);
            }
        }
        requests
            .iter()
            .map(|&(proto, local, remote)| {
                let table = match proto {
                    Proto::Tcp => &self.tcp,
                    Proto::Udp => &self.udp,
                    Proto::Icmp => return None,
                };
                lookup(&table.entries, proto, local, remote)
            })
            .collect()
    }

    fn app_name(&mut self, uid: u32) -> Option<String> {
        Some(user_name(uid).unwrap_or_else(|| format!("uid:{uid}")))
    }
}

/// The user name of `uid` from the password database (getpwuid_r).
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: passwd is plain data; getpwuid_r writes it and strings into buf (its length is
    // passed), and result points to pwd or is null.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        Some(CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0200A8C0:C350 010012C6:01BB 01 00000000:00000000 02:0000A1B2 00000000  1000        0 23456 2 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000200A8C0:C351 0000000000000000FFFF0000010012C6:0050 01 00000000:00000000 00:00000000 00000000  1001        0 3456 1 0000000000000000 20 4 0 10 -1
   1: 000000FD00000000000000000A000000:D431 000000FD000000000000000001000000:01BB 01 00000000:00000000 00:00000000 00000000  1002        0 4567 1 0000000000000000 20 4 0 10 -1
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000   110        0 777 2 0000000000000000 0
  101: 0200A8C0:9C40 010012C6:0035 01 00000000:00000000 00:00000000 00000000  2000        0 778 2 0000000000000000 0
";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn tables_parse_and_match_v4_mapped_and_v6() {
        let dir = std::env::temp_dir().join(format!("phonehome-procnet-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tcp"), TCP).unwrap();
        std::fs::write(dir.join("tcp6"), TCP6).unwrap();
        std::fs::write(dir.join("udp"), UDP).unwrap();
        let mut net = ProcNet::new(dir.clone());
        assert_eq!(
            net.owner_uid(
                Proto::Tcp,
                addr("192.168.0.2:50000"),
                addr("198.18.0.1:443")
            ),
            Some(1000)
        );
        // Listed in tcp6 as ::ffff:192.168.0.2.
        assert_eq!(
            net.owner_uid(Proto::Tcp, addr("192.168.0.2:50001"), addr("198.18.0.1:80")),
            Some(1001)
        );
        assert_eq!(
            net.owner_uid(Proto::Tcp, addr("[fd00::a]:54321"), addr("[fd00::1]:443")),
            Some(1002)
        );
        assert_eq!(
            net.owner_uid(
                Proto::Tcp,
                addr("192.168.0.2:50002"),
                addr("198.18.0.1:443")
            ),
            None
        );
        // UDP: connected socket by exact pair, wildcard-bound socket by port.
        assert_eq!(
            net.owner_uid(Proto::Udp, addr("192.168.0.2:40000"), addr("198.18.0.1:53")),
            Some(2000)
        );
        assert_eq!(
            net.owner_uid(
                Proto::Udp,
                addr("192.168.0.2:5353"),
                addr("198.18.0.9:5353")
            ),
            Some(110)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The same 4-tuple twice: an earlier connection in TIME_WAIT (uid 0, inode 0) listed before
    /// the live one; a TIME_WAIT socket; an orphaned FIN_WAIT2 socket reported as a timewait
    /// socket (state 05, uid 0, inode 0); a closed socket in LAST_ACK (orphaned: uid 0, inode 0);
    /// a live socket of root. The TIME_WAIT lines are as this kernel prints them.
    const TCP_CLOSED: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0200A8C0:C350 010012C6:01BB 06 00000000:00000000 03:00000D2F 00000000     0        0 0 3 00000000a6ddcbac
   1: 0200A8C0:C350 010012C6:01BB 01 00000000:00000000 02:0000A1B2 00000000  1000        0 23456 2 0000000000000000 20 4 30 10 -1
   2: 0200A8C0:C351 010012C6:01BB 06 00000000:00000000 03:00001770 00000000     0        0 0 3 000000000f972402
   3: 0200A8C0:C352 010012C6:01BB 05 00000000:00000000 03:00000F3C 00000000     0        0 0 3 00000000d5748df6
   4: 0200A8C0:C353 010012C6:01BB 09 00000000:00000000 01:00000014 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
   5: 0100007F:1F90 0100007F:D000 01 00000000:00000000 00:00000000 00000000     0        0 34567 1 0000000000000000 20 4 30 10 -1
";

    #[cfg(target_endian = "little")]
    #[test]
    fn closed_sockets_are_never_attributed_to_root() {
        let entries: Vec<SocketEntry> = TCP_CLOSED.lines().skip(1).filter_map(parse_line).collect();
        let find =
            |local: &str, remote: &str| lookup(&entries, Proto::Tcp, addr(local), addr(remote));
        // The live socket wins over the TIME_WAIT line of an earlier connection listed first.
        assert_eq!(find("192.168.0.2:50000", "198.18.0.1:443"), Some(1000));
        // TIME_WAIT, orphaned FIN_WAIT2 and LAST_ACK: unknown, not root.
        assert_eq!(find("192.168.0.2:50001", "198.18.0.1:443"), None);
        assert_eq!(find("192.168.0.2:50002", "198.18.0.1:443"), None);
        assert_eq!(find("192.168.0.2:50003", "198.18.0.1:443"), None);
        // A live socket of root is still root's.
        assert_eq!(find("127.0.0.1:8080", "127.0.0.1:53248"), Some(0));
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("0: zz:1 00000000:0000 0A 0 0 0 0"), None);
        assert_eq!(
            parse_line("0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000"),
            None
        );
    }

    #[test]
    fn root_has_a_name() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        let mut net = ProcNet::new(PathBuf::from("/nonexistent"));
        assert_eq!(
            net.app_name(4_000_000_000).as_deref(),
            Some("uid:4000000000")
        );
    }
}
