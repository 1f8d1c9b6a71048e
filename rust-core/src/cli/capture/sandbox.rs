//! The capture namespace: its TUN and addresses, the resolv.conf CMD sees, the owner lookup
//! that runs inside it, CMD started in it, and the processes CMD leaves behind ended.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, EXIT_SETUP, fail};
use crate::cli::CliError;
use crate::linux::child::{self, SandboxFiles};
use crate::linux::netns::{Namespace, NamespaceError, NetConfig};
use crate::linux::{resolv, user};
use crate::owner::{KernelOwner, OwnerLookup, ProcNet, SockDiag};

/// The namespace's own addresses, and the engine's DNS service behind the TUN device. Traffic to
/// them never leaves the machine: the engine terminates it.
const TUN_V4: Ipv4Addr = Ipv4Addr::new(10, 215, 173, 1);
pub(super) const DNS_V4: Ipv4Addr = Ipv4Addr::new(10, 215, 173, 2);
const TUN_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5048, 0, 0, 0, 0, 0, 1);
pub(super) const DNS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5048, 0, 0, 0, 0, 0, 2);
const TUN_NAME: &str = "phonehome0";

/// How long processes CMD left behind get after SIGTERM.
const LEFTOVER_GRACE: Duration = Duration::from_secs(1);

/// The namespace CMD runs in, and the files it sees in place of the host's.
/// The TUN is opened with segmentation offload (`linux::tun::open`); the engine is told so.
pub(super) const TUN_OFFLOAD: bool = true;

pub(super) struct Sandbox {
    namespace: Namespace,
    files: SandboxFiles,
}

impl Sandbox {
    /// Creates the namespace with its TUN (returned for the engine) and CMD's resolv.conf,
    /// which names the engine's DNS service.
    pub(super) fn create(mtu: u32) -> Result<(Sandbox, OwnedFd), String> {
        let net = NetConfig {
            tun_name: TUN_NAME.into(),
            mtu,
            addr_v4: TUN_V4,
            addr_v6: Some(TUN_V6),
            offload: TUN_OFFLOAD,
        };
        let (namespace, tun) = Namespace::create(&net).map_err(|e| match e {
            NamespaceError::NotPermitted(_) => e.to_string(),
            other => format!("setting up the capture namespace: {other}"),
        })?;
        let mut files = SandboxFiles::new().map_err(|e| format!("temporary files: {e}"))?;
        let mut servers = vec![IpAddr::V4(DNS_V4)];
        if namespace.has_ipv6() {
            servers.push(IpAddr::V6(DNS_V6));
        }
        files
            .overlay(Path::new("/etc/resolv.conf"), &resolv::render(&servers))
            .map_err(|e| format!("preparing resolv.conf: {e}"))?;
        if let Ok(host_nss) = std::fs::read_to_string("/etc/nsswitch.conf")
            && let Some(nss) = resolv::nsswitch_for_capture(&host_nss)
        {
            files
                .overlay(Path::new("/etc/nsswitch.conf"), &nss)
                .map_err(|e| format!("preparing nsswitch.conf: {e}"))?;
        }
        Ok((Sandbox { namespace, files }, tun))
    }

    pub(super) fn has_ipv6(&self) -> bool {
        self.namespace.has_ipv6()
    }

    /// The namespace plays the phone: its TUN addresses are the "own IPs" the cleartext scan
    /// flags when an app sends them out.
    pub(super) fn own_ips(&self) -> Vec<IpAddr> {
        std::iter::once(IpAddr::V4(TUN_V4))
            .chain(self.has_ipv6().then_some(IpAddr::V6(TUN_V6)))
            .collect()
    }

    /// Owner = the UID of the socket, asked of the kernel by sock_diag from inside the capture
    /// namespace (the netlink socket is opened on its thread), or read from the namespace's own
    /// /proc/net tables where netlink cannot answer.
    /// Two sockets of the namespace: a blocking one for the helper thread, a non-blocking one
    /// the engine thread asks first (`OwnerLookup::immediate`).
    pub(super) fn owner_lookup(&self) -> Box<dyn OwnerLookup> {
        let opened = self
            .namespace
            .run(|| (SockDiag::open(), SockDiag::open_nonblocking()));
        let (diag, immediate) = match opened {
            Ok((Ok(diag), immediate)) => (Some(diag), immediate.ok()),
            Ok((Err(err), _)) => {
                log::warn!("no sock_diag socket ({err}): owners are read from /proc/net");
                (None, None)
            }
            Err(err) => {
                log::warn!("no sock_diag socket ({err}): owners are read from /proc/net");
                (None, None)
            }
        };
        let owner = KernelOwner::new(diag, ProcNet::new(self.namespace.proc_net_dir()));
        Box::new(match immediate {
            Some(immediate) => owner.with_immediate(immediate),
            None => owner,
        })
    }

    /// Starts CMD inside the namespace (own mount namespace, capture resolv.conf, `credentials`).
    pub(super) fn spawn(
        &self,
        argv: &[String],
        credentials: Option<&user::Credentials>,
    ) -> Result<Child, CliError> {
        let (program, rest) = argv
            .split_first()
            .ok_or_else(|| fail(EXIT_SETUP, "no command given"))?;
        let mut command = Command::new(program);
        command.args(rest);
        child::prepare(&mut command, &self.files, credentials)
            .map_err(|e| fail(EXIT_SETUP, format!("{program}: {e}")))?;
        let spawned = self
            .namespace
            .run(move || command.spawn())
            .map_err(|e| fail(EXIT_SETUP, e.to_string()))?;
        spawned.map_err(|e| {
            let code = match e.kind() {
                io::ErrorKind::NotFound => EXIT_NOT_FOUND,
                io::ErrorKind::PermissionDenied => EXIT_CANNOT_EXECUTE,
                _ => EXIT_SETUP,
            };
            fail(code, format!("{program}: {e}"))
        })
    }

    /// Ends what CMD left running in the namespace (SIGTERM, then SIGKILL after a grace period):
    /// without the engine those processes would have no network, and they must not outlive the
    /// capture unseen.
    pub(super) fn end_leftovers(&self) {
        let deadline = Instant::now() + LEFTOVER_GRACE;
        let mut signal = libc::SIGTERM;
        loop {
            let left = self.namespace.processes();
            if left.is_empty() {
                return;
            }
            if signal == libc::SIGTERM {
                log::info!(
                    "ending {} process(es) CMD left in the namespace",
                    left.len()
                );
            }
            for pid in &left {
                // SAFETY: plain kill(2) of processes found in our namespace.
                unsafe { libc::kill(*pid, signal) };
            }
            if Instant::now() >= deadline {
                signal = libc::SIGKILL;
            }
            if signal == libc::SIGKILL && Instant::now() >= deadline + LEFTOVER_GRACE {
                log::warn!("processes still in the capture namespace: {left:?}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The engine relays ping with unprivileged ICMP sockets, which the kernel allows only to the
/// groups in `net.ipv4.ping_group_range` (Debian and systemd set 0..2^31-1; the kernel default and
/// fresh namespaces allow none).
pub(super) fn warn_if_ping_is_blocked() {
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range") else {
        return;
    };
    // SAFETY: getegid has no preconditions.
    let gid = unsafe { libc::getegid() };
    let mut bounds = text
        .split_whitespace()
        .filter_map(|n| n.parse::<u64>().ok());
    if let (Some(low), Some(high)) = (bounds.next(), bounds.next())
        && !(low..=high).contains(&u64::from(gid))
    {
        log::warn!(
            "ping from CMD will not be relayed: net.ipv4.ping_group_range ({}) excludes group {gid}; \
             `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"` allows it",
            text.trim()
        );
    }
}
