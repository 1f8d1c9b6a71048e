//! A fresh network namespace holding the capture's TUN device, owned by one dedicated thread.
//!
//! Network namespaces belong to threads, not processes: the thread here calls
//! `unshare(CLONE_NEWNET)`, creates and addresses the TUN device, points the default routes
//! (IPv4 and IPv6) at it, and then stays alive running jobs sent to it (spawning the captured
//! command, which inherits the namespace). Every other thread, the engine's included, stays in
//! the parent namespace, so the engine's outbound sockets use the real uplink. The thread also
//! keeps the namespace alive and gives the owner lookup its view of the sockets in it through
//! `/proc/<pid>/task/<tid>/net`.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;

use super::tun;

/// How the namespace's side of the tunnel is addressed.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// TUN interface name inside the namespace.
    pub tun_name: String,
    pub mtu: u32,
    /// The namespace's own address (a /32 on the TUN device).
    pub addr_v4: Ipv4Addr,
    /// The namespace's IPv6 address (a /128); None for an IPv4-only namespace.
    pub addr_v6: Option<Ipv6Addr>,
    /// Open the TUN with segmentation offload ([`tun::open`]): every read and write on its fd
    /// then carries a `virtio_net_hdr` (the engine's `Tuning::tun_offload`).
    pub offload: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error(
        "creating a network namespace was refused ({0}): capture needs root \
         (CAP_SYS_ADMIN and CAP_NET_ADMIN); run it with sudo"
    )]
    NotPermitted(io::Error),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("the namespace thread is gone")]
    ThreadGone,
}

type Job = Box<dyn FnOnce() + Send>;

/// The namespace and its thread. Dropping it ends the thread; the namespace itself goes away once
/// nothing (thread, TUN fd, process started in it) refers to it any more.
pub struct Namespace {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    tid: libc::pid_t,
    tun_name: String,
    ipv6: bool,
}

impl Namespace {
    /// Creates the namespace and its configured TUN device; returns the TUN fd (non-blocking,
    /// one IP packet per read/write) for the engine.
    pub fn create(config: &NetConfig) -> Result<(Namespace, OwnedFd), NamespaceError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let config = config.clone();
        let thread = std::thread::Builder::new()
            .name("phonehome-netns".into())
            .spawn(move || {
                let setup = setup_in_this_thread(&config);
                let failed = setup.is_err();
                if ready_tx.send(setup).is_err() || failed {
                    return;
                }
                // Jobs run here, inside the namespace, until the owner drops the sender.
                for job in jobs_rx {
                    job();
                }
            })
            .map_err(|source| NamespaceError::Io {
                what: "starting the namespace thread".into(),
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(ready)) => Ok((
                Namespace {
                    jobs: Some(jobs_tx),
                    thread: Some(thread),
                    tid: ready.tid,
                    tun_name: ready.tun_name,
                    ipv6: ready.ipv6,
                },
                ready.tun,
            )),
            Ok(Err(err)) => {
                let _ = thread.join();
                Err(err)
            }
            Err(_) => {
                let _ = thread.join();
                Err(NamespaceError::ThreadGone)
            }
        }
    }

    /// Runs `job` on the namespace thread (so processes it spawns start inside the namespace)
    /// and returns its result.
    pub fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, NamespaceError> {
        let (tx, rx) = mpsc::channel();
        let jobs = self.jobs.as_ref().ok_or(NamespaceError::ThreadGone)?;
        jobs.send(Box::new(move || {
            let _ = tx.send(job());
        }))
        .map_err(|_| NamespaceError::ThreadGone)?;
        rx.recv().map_err(|_| NamespaceError::ThreadGone)
    }

    /// `/proc/<pid>/task/<tid>/net`: the namespace's view of /proc/net (tcp, udp, tcp6, udp6),
    /// valid for as long as this value lives.
    pub fn proc_net_dir(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/task/{}/net",
            std::process::id(),
            self.tid
        ))
    }

    /// Processes (other than this one) whose network namespace is this one: what CMD left
    /// running. Read from /proc, so it is a snapshot.
    pub fn processes(&self) -> Vec<libc::pid_t> {
        let ours = std::process::id() as libc::pid_t;
        let Ok(me) = std::fs::read_link(format!("/proc/{ours}/task/{}/ns/net", self.tid)) else {
            return Vec::new();
        };
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|entry| {
            entry
                .ok()?
                .file_name()
                .to_str()?
                .parse::<libc::pid_t>()
                .ok()
        })
        .filter(|&pid| pid != ours)
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|ns| ns == me))
        .collect()
    }

    pub fn tun_name(&self) -> &str {
        &self.tun_name
    }

    /// Whether the namespace got its IPv6 address and default route (false when the kernel has
    /// IPv6 disabled).
    pub fn has_ipv6(&self) -> bool {
        self.ipv6
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Ready {
    tun: OwnedFd,
    tun_name: String,
    tid: libc::pid_t,
    ipv6: bool,
}

fn setup_in_this_thread(config: &NetConfig) -> Result<Ready, NamespaceError> {
    // SAFETY: unshare only changes this thread's namespace membership.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let err = io::Error::last_os_error();
        return Err(if err.raw_os_error() == Some(libc::EPERM) {
            NamespaceError::NotPermitted(err)
        } else {
            NamespaceError::Io {
                what: "unshare(CLONE_NEWNET)".into(),
                source: err,
            }
        });
    }
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    let (tun, tun_name) =
        tun::open(&config.tun_name, config.offload).map_err(|source| NamespaceError::Io {
            what: "creating the TUN device".into(),
            source,
        })?;
    let name = tun_name.as_str();
    let mtu = config.mtu.to_string();
    ip(&["link", "set", "lo", "up"])?;
    stop_router_solicitations(name);
    ip(&["link", "set", name, "mtu", &mtu, "up"])?;
    ip(&[
        "-4",
        "addr",
        "add",
        &format!("{}/32", config.addr_v4),
        "dev",
        name,
    ])?;
    ip(&["-4", "route", "add", "default", "dev", name])?;
    let ipv6 = match config.addr_v6 {
        None => false,
        Some(addr) => {
            // `nodad`: nobody else is on this link, and a tentative address would make early
            // connections of CMD fail.
            let v6 = ip(&[
                "-6",
                "addr",
                "add",
                &format!("{addr}/128"),
                "dev",
                name,
                "nodad",
            ])
            .and_then(|()| ip(&["-6", "route", "add", "default", "dev", name]));
            match v6 {
                Ok(()) => true,
                Err(err) => {
                    log::warn!(
                        "IPv6 unavailable in the capture namespace, continuing with IPv4 only: {err}"
                    );
                    false
                }
            }
        }
    };
    Ok(Ready {
        tun,
        tun_name,
        tid,
        ipv6,
    })
}

/// No router answers on the TUN's link, yet the kernel solicits one once the link is up, and
/// again with backoff for as long as the capture runs (RFC 7559). Each solicitation reached the
/// engine as a packet it drops, and the summary of every capture said "1 packet dropped". The
/// sysctl is per namespace (this thread's); without IPv6 the file is missing and nothing is sent.
fn stop_router_solicitations(tun_name: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{tun_name}/router_solicitations");
    if let Err(e) = std::fs::write(&path, "0") {
        log::debug!("{path}: {e}");
    }
}

/// Runs `ip ARGS...` (iproute2) in the calling thread's namespace.
fn ip(args: &[&str]) -> Result<(), NamespaceError> {
    let command = format!("ip {}", args.join(" "));
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| NamespaceError::Io {
            what: format!("running `{command}` (is iproute2 installed?)"),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NamespaceError::Command {
            command,
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}
