//! `phonehome capture`: run a command in a fresh network namespace whose only way out is a TUN
//! device served by the engine, record every flow in the database, and print where it went.
//!
//! Threads: the namespace thread (holds the namespace, spawns CMD), the engine loop (in the
//! parent namespace, so its outbound sockets use the real network), an event forwarder (engine
//! -> store, keeping the summary), the store writer, and this thread waiting for CMD or a signal.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::CliError;
use crate::dissect::DeviceContext;
use crate::engine::{Engine, EngineConfig, Outbound, PacketTap, Tuning};
use crate::flow::{Event, FlowId, Proto};
use crate::linux::child::{self, SandboxFiles};
use crate::linux::netns::{Namespace, NamespaceError, NetConfig};
use crate::linux::{resolv, user};
use crate::owner::{KernelOwner, OwnerLookup, ProcNet, SockDiag};
use crate::pcap::recorder::{Recorder, RecorderNotes, RecorderStats};
use crate::store::{SessionInfo, StoreWriter};

/// The namespace's own addresses, and the engine's DNS service behind the TUN device. Traffic to
/// them never leaves the machine: the engine terminates it.
const TUN_V4: Ipv4Addr = Ipv4Addr::new(10, 215, 173, 1);
const DNS_V4: Ipv4Addr = Ipv4Addr::new(10, 215, 173, 2);
const TUN_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5048, 0, 0, 0, 0, 0, 1);
const DNS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5048, 0, 0, 0, 0, 0, 2);
const TUN_NAME: &str = "phonehome0";

/// Exit codes for failures of capture itself (as `env`, `timeout` and `docker run` do).
const EXIT_SETUP: i32 = 125;
const EXIT_CANNOT_EXECUTE: i32 = 126;
const EXIT_NOT_FOUND: i32 = 127;

/// How long CMD gets to exit after SIGINT/SIGTERM is forwarded before it is killed.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How long open TCP flows get to finish relaying after CMD exits.
const DRAIN_LIMIT: Duration = Duration::from_secs(3);
/// How long processes CMD left behind get after SIGTERM.
const LEFTOVER_GRACE: Duration = Duration::from_secs(1);
/// How long the owner lookups of the last flows get after CMD exits.
const OWNER_GRACE: Duration = Duration::from_millis(500);
/// Packet copies the engine may queue for the pcapng writer before it drops them.
const PCAPNG_QUEUE: usize = 16 * 1024;
/// How long the event forwarder gets to pass the engine's final events on.
const FORWARDER_LIMIT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
#[command(
    about = "Run a command with all its traffic going through the engine (needs root)",
    after_help = "Examples:\n  sudo phonehome capture -- curl -sI https://example.org\n  \
                  sudo phonehome capture --db miui.db --user alice -- firefox\n\n\
                  When CMD exits, processes it left running in the namespace are ended.\n\
                  Signals: Ctrl-C reaches CMD directly; SIGINT/SIGTERM/SIGHUP sent to capture are \
                  passed on to CMD, which is killed if it has not exited 5 s later.\n\n\
                  Exit status: CMD's status (128+N if killed by signal N); 125 if capture itself \
                  failed, 126 if CMD cannot be executed, 127 if it was not found."
)]
pub struct CaptureArgs {
    /// SQLite database to record the flows in (created if missing).
    #[arg(long, value_name = "FILE", default_value = "phonehome.db")]
    pub db: PathBuf,

    /// Where the engine forwards DNS queries [default: first nameserver in /etc/resolv.conf].
    #[arg(long, value_name = "ADDR:PORT")]
    pub dns_upstream: Option<String>,

    /// Run CMD as this user (name or numeric UID) instead of the caller.
    #[arg(long, value_name = "NAME|UID")]
    pub user: Option<String>,

    /// MTU of the TUN device (and of the engine's packets). A TUN has no segmentation offload, so
    /// each packet costs a trip through the engine; a large MTU cuts that cost several times. It
    /// is safe because the engine terminates TCP: the app's large segments never reach the real
    /// network, which the outbound sockets reach with its own MTU.
    #[arg(long, value_name = "BYTES", default_value_t = 65000, value_parser = clap::value_parser!(u32).range(1280..=65535))]
    pub mtu: u32,

    /// Also write every packet of the TUN to this pcapng file, each with a comment naming its
    /// owner (`u-<uid> <app>`); Wireshark and `phonehome analyze` read it. Packets the writer
    /// cannot keep up with are dropped from the file (counted in the summary), never delayed.
    #[arg(long, value_name = "FILE")]
    pub pcapng: Option<PathBuf>,

    /// Do not print the per-destination summary.
    #[arg(long, short)]
    pub quiet: bool,

    /// The command to run and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn run(args: CaptureArgs) -> Result<i32, CliError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(fail(
            EXIT_SETUP,
            "capture needs root: it creates a network namespace and a TUN device \
             (CAP_SYS_ADMIN, CAP_NET_ADMIN); run it with sudo",
        ));
    }
    let dns_upstream = match &args.dns_upstream {
        Some(text) => parse_upstream(text).map_err(|m| fail(EXIT_SETUP, m))?,
        None => default_upstream().map_err(|m| fail(EXIT_SETUP, m))?,
    };
    let credentials = match &args.user {
        Some(name) => {
            Some(user::resolve(name).map_err(|e| fail(EXIT_SETUP, format!("--user: {e}")))?)
        }
        None => None,
    };
    let program = args
        .command
        .first()
        .cloned()
        .ok_or_else(|| fail(EXIT_SETUP, "no command given"))?;

    // Signals are taken synchronously by this thread (sigwaitinfo); block them before any other
    // thread starts so every thread inherits the mask. Children get a clean mask from std.
    let signals = SignalSet::block(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGCHLD])
        .map_err(|e| fail(EXIT_SETUP, format!("blocking signals: {e}")))?;

    let store = StoreWriter::start(&args.db, session_info(&args.command))
        .map_err(|e| fail(EXIT_SETUP, e.to_string()))?;
    let capture = match Capture::start(&store, dns_upstream, args.mtu, args.pcapng.as_deref()) {
        Ok(capture) => capture,
        Err(message) => {
            // Close the session row cleanly; the setup error is the one to report.
            if let Err(err) = store.finish() {
                log::warn!("closing the database: {err}");
            }
            return Err(fail(EXIT_SETUP, message));
        }
    };

    let status = capture
        .spawn(&args.command, credentials.as_ref())
        .and_then(|mut child| {
            wait_for_child(&mut child, &signals)
                .map_err(|e| fail(EXIT_SETUP, format!("waiting for {program}: {e}")))
        });

    let summary = capture.finish();
    let session = store.session_id();
    let stored = store.finish();

    let summary = summary.map_err(|e| fail(EXIT_SETUP, e))?;
    if let Err(err) = stored {
        return Err(fail(EXIT_SETUP, format!("saving the capture: {err}")));
    }
    if !args.quiet {
        // A closed stderr must not turn CMD's status into a panic.
        let _ = io::stderr().write_all(summary.render(&args.db, session).as_bytes());
    }
    let status = status?;
    Ok(exit_code(status))
}

/// The running pieces: namespace, engine, forwarder.
struct Capture {
    namespace: Namespace,
    engine: Engine,
    forwarder: JoinHandle<()>,
    summary: Receiver<Summary>,
    progress: Arc<Progress>,
    files: SandboxFiles,
    recording: Option<Recording>,
}

/// `--pcapng`: the writer thread, and the engine's tap (for its drop count).
struct Recording {
    recorder: Recorder,
    tap: PacketTap,
    path: PathBuf,
}

impl Capture {
    fn start(
        store: &StoreWriter,
        dns_upstream: SocketAddr,
        mtu: u32,
        pcapng: Option<&Path>,
    ) -> Result<Capture, String> {
        let net = NetConfig {
            tun_name: TUN_NAME.into(),
            mtu,
            addr_v4: TUN_V4,
            addr_v6: Some(TUN_V6),
            offload: true,
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

        let config = EngineConfig {
            dns_v4: DNS_V4,
            dns_v6: namespace.has_ipv6().then_some(DNS_V6),
            dns_upstream,
            mtu: mtu as usize,
            // The engine's sockets live in the parent namespace: they never see the TUN routes.
            outbound: Outbound::default(),
        };
        let recording = match pcapng {
            Some(path) => {
                let (tap, packets) = PacketTap::bounded(PCAPNG_QUEUE);
                let recorder =
                    Recorder::start(path, packets).map_err(|e| format!("--pcapng: {e}"))?;
                Some(Recording {
                    recorder,
                    tap,
                    path: path.to_path_buf(),
                })
            }
            None => None,
        };
        let notes = recording.as_ref().map(|r| r.recorder.notes());
        let (events_tx, events_rx) = mpsc::channel();
        let progress = Arc::new(Progress::default());
        let (summary_tx, summary) = mpsc::channel();
        let forwarder = {
            let store = store.sender();
            let progress = progress.clone();
            std::thread::Builder::new()
                .name("phonehome-events".into())
                .spawn(move || {
                    let _ = summary_tx.send(forward_events(events_rx, store, notes, &progress));
                })
                .map_err(|e| format!("starting the event thread: {e}"))?
        };
        let owner = owner_lookup(&namespace);
        warn_if_ping_is_blocked();
        // The namespace plays the phone: its TUN addresses are the "own IPs" the cleartext scan
        // flags when an app sends them out.
        let own_ips = std::iter::once(IpAddr::V4(net.addr_v4))
            .chain(net.addr_v6.filter(|_| namespace.has_ipv6()).map(IpAddr::V6))
            .collect();
        let tuning = Tuning {
            device: Some(Arc::new(DeviceContext {
                own_ips,
                ..DeviceContext::default()
            })),
            packet_tap: recording.as_ref().map(|r| r.tap.clone()),
            tun_offload: net.offload,
            ..Tuning::default()
        };
        let engine = Engine::start_tuned(tun, config, tuning, owner, events_tx)
            .map_err(|e| format!("starting the engine: {e}"))?;
        Ok(Capture {
            namespace,
            engine,
            forwarder,
            summary,
            progress,
            files,
            recording,
        })
    }

    /// Starts CMD inside the namespace (own mount namespace, capture resolv.conf, `credentials`).
    fn spawn(
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
    fn end_leftovers(&self) {
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

    /// Lets open TCP flows finish relaying and owner lookups of the last flows come back (both
    /// bounded), stops the engine (final events flushed to the forwarder) and returns the
    /// summary. The namespace goes away with the last process in it.
    fn finish(self) -> Result<Summary, String> {
        self.end_leftovers();
        let start = Instant::now();
        loop {
            let waited = start.elapsed();
            let relaying =
                self.progress.open_tcp.load(Ordering::Relaxed) > 0 && waited < DRAIN_LIMIT;
            let unowned = self.progress.unowned.load(Ordering::Relaxed) > 0 && waited < OWNER_GRACE;
            if !relaying && !unowned {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let stopped = self.engine.stop();
        // The engine dropped its event sender when it stopped: the forwarder now drains and ends.
        // Bounded, so a sender kept alive somewhere cannot hang the exit.
        let summary = self
            .summary
            .recv_timeout(FORWARDER_LIMIT)
            .map_err(|_| "the event thread did not finish after the engine stopped".to_string())?;
        let _ = self.forwarder.join();
        drop(self.namespace);
        drop(self.files);
        // The engine and the forwarder are gone: the recorder writes what is left.
        let pcapng = match self.recording {
            Some(Recording {
                recorder,
                tap,
                path,
            }) => {
                let written = recorder
                    .finish()
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
                Some((path, written, tap.dropped()))
            }
            None => None,
        };
        let stats = stopped.map_err(|e| format!("stopping the engine: {e}"))?;
        Ok(Summary {
            packets_dropped: stats.packets_dropped,
            flows_failed: stats.flows_failed,
            pcapng,
            ..summary
        })
    }
}

/// The engine relays ping with unprivileged ICMP sockets, which the kernel allows only to the
/// groups in `net.ipv4.ping_group_range` (Debian and systemd set 0..2^31-1; the kernel default and
/// fresh namespaces allow none).
fn warn_if_ping_is_blocked() {
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

/// A capture failure with its exit code (struct literal: `CliError` is shared by every subcommand).
fn fail(code: i32, message: impl Into<String>) -> CliError {
    CliError {
        code,
        message: message.into(),
    }
}

/// Owner = the UID of the socket, asked of the kernel by sock_diag from inside the capture
/// namespace (the netlink socket is opened on its thread), or read from the namespace's own
/// /proc/net tables where netlink cannot answer.
fn owner_lookup(namespace: &Namespace) -> Box<dyn OwnerLookup> {
    let diag = match namespace.run(SockDiag::open) {
        Ok(Ok(diag)) => Some(diag),
        Ok(Err(err)) => {
            log::warn!("no sock_diag socket ({err}): owners are read from /proc/net");
            None
        }
        Err(err) => {
            log::warn!("no sock_diag socket ({err}): owners are read from /proc/net");
            None
        }
    };
    Box::new(KernelOwner::new(
        diag,
        ProcNet::new(namespace.proc_net_dir()),
    ))
}

/// What the event thread has seen that the end of the capture waits for.
#[derive(Default)]
struct Progress {
    /// TCP flows opened and not yet closed.
    open_tcp: AtomicUsize,
    /// TCP/UDP flows whose owner is not known yet (the lookup runs on a helper thread and may
    /// answer after the flow closed; the engine then resends the closed record with the UID).
    unowned: AtomicUsize,
}

/// Passes every engine event to the store and keeps what the summary needs.
fn forward_events(
    events: Receiver<Event>,
    store: Sender<Event>,
    recorder: Option<RecorderNotes>,
    progress: &Progress,
) -> Summary {
    let mut flows: HashMap<FlowId, FlowLine> = HashMap::new();
    for event in events {
        match &event {
            Event::Flow(record) | Event::FlowClosed(record) => {
                let closed = matches!(event, Event::FlowClosed(_));
                // A DNS flow went to the resolver, whatever name it asked about.
                let name = record.hostname.clone().filter(|_| !record.is_dns_lookup());
                let line = FlowLine {
                    destination: name.unwrap_or_else(|| record.key.dst.ip().to_string()),
                    proto: record.key.proto,
                    port: record.key.dst.port(),
                    bytes_up: record.bytes_up,
                    bytes_down: record.bytes_down,
                    closed,
                    owned: record.uid.is_some() || record.key.proto == Proto::Icmp,
                };
                let before = flows.get(&record.id).map(|old| (old.closed, old.owned));
                if record.key.proto == Proto::Tcp {
                    match (before.map(|(closed, _)| closed), closed) {
                        (None, false) => {
                            progress.open_tcp.fetch_add(1, Ordering::Relaxed);
                        }
                        (Some(false), true) => {
                            progress.open_tcp.fetch_sub(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                match (before.map(|(_, owned)| owned), line.owned) {
                    (None, false) | (Some(true), false) => {
                        progress.unowned.fetch_add(1, Ordering::Relaxed);
                    }
                    (Some(false), true) => {
                        progress.unowned.fetch_sub(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
                flows.insert(record.id, line);
            }
            Event::Dns(_) | Event::App { .. } => {}
        }
        if let Some(recorder) = &recorder {
            recorder.note(&event);
        }
        // A store that stopped early reports its error from finish(); keep draining.
        let _ = store.send(event);
    }
    let mut summary = Summary::default();
    for line in flows.into_values() {
        let row = summary
            .rows
            .entry((line.destination, line.proto, line.port))
            .or_default();
        row.flows += 1;
        row.bytes_up += line.bytes_up;
        row.bytes_down += line.bytes_down;
    }
    summary
}

struct FlowLine {
    destination: String,
    proto: Proto,
    port: u16,
    bytes_up: u64,
    bytes_down: u64,
    closed: bool,
    owned: bool,
}

#[derive(Default, Debug, Clone, Copy)]
struct Row {
    flows: u64,
    bytes_up: u64,
    bytes_down: u64,
}

#[derive(Default, Debug)]
struct Summary {
    rows: HashMap<(String, Proto, u16), Row>,
    packets_dropped: u64,
    /// Flows the engine dropped because handling them panicked (each logged).
    flows_failed: u64,
    /// `--pcapng`: the file, what was written, and copies dropped because the writer was behind.
    pcapng: Option<(PathBuf, RecorderStats, u64)>,
}

impl Summary {
    fn render(&self, db: &Path, session: i64) -> String {
        let mut rows: Vec<_> = self.rows.iter().collect();
        rows.sort_by(|a, b| {
            let total = |r: &Row| r.bytes_up + r.bytes_down;
            total(b.1)
                .cmp(&total(a.1))
                .then_with(|| (&a.0.0, a.0.1.as_str(), a.0.2).cmp(&(&b.0.0, b.0.1.as_str(), b.0.2)))
        });
        let width = rows
            .iter()
            .map(|(k, _)| k.0.len())
            .max()
            .unwrap_or(0)
            .clamp(11, 60);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n{:<width$}  {:<10}  {:>6}  {:>10}  {:>10}",
            "DESTINATION", "PROTO/PORT", "FLOWS", "UP", "DOWN"
        );
        let mut total = Row::default();
        for ((destination, proto, port), row) in &rows {
            let _ = writeln!(
                out,
                "{:<width$}  {:<10}  {:>6}  {:>10}  {:>10}",
                destination,
                format!("{}/{}", proto.as_str(), port),
                row.flows,
                human_bytes(row.bytes_up),
                human_bytes(row.bytes_down)
            );
            total.flows += row.flows;
            total.bytes_up += row.bytes_up;
            total.bytes_down += row.bytes_down;
        }
        let _ = writeln!(
            out,
            "{} flows to {} destinations, {} up, {} down; saved to {} (session {session})",
            total.flows,
            rows.len(),
            human_bytes(total.bytes_up),
            human_bytes(total.bytes_down),
            db.display()
        );
        if self.packets_dropped > 0 {
            let _ = writeln!(
                out,
                "{} packets dropped by the engine",
                self.packets_dropped
            );
        }
        if self.flows_failed > 0 {
            let _ = writeln!(
                out,
                "{} flows dropped after an internal error in the engine (see the log)",
                self.flows_failed
            );
        }
        if let Some((path, written, dropped)) = &self.pcapng {
            let _ = writeln!(
                out,
                "{} packets written to {} ({} with their owner){}",
                written.packets,
                path.display(),
                written.with_owner,
                if *dropped > 0 {
                    format!("; {dropped} left out because the writer fell behind")
                } else {
                    String::new()
                }
            );
        }
        out
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `ADDR:PORT`, `[V6]:PORT`, or a bare address (port 53).
fn parse_upstream(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = text
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!(
        "--dns-upstream {text:?}: expected ADDR:PORT, [IPV6]:PORT or ADDR"
    ))
}

fn default_upstream() -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("/etc/resolv.conf: {e}; give --dns-upstream ADDR:PORT"))?;
    resolv::first_nameserver(&text)
        .map(|ip| SocketAddr::new(ip, 53))
        .ok_or_else(|| {
            "/etc/resolv.conf has no nameserver; give --dns-upstream ADDR:PORT".to_string()
        })
}

fn session_info(command: &[String]) -> SessionInfo {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    SessionInfo {
        kind: "capture".into(),
        device: read("/proc/sys/kernel/hostname"),
        os: read("/proc/sys/kernel/osrelease").map(|r| format!("Linux {r}")),
        app_version: Some(env!("CARGO_PKG_VERSION").into()),
        note: Some(command.join(" ")),
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => EXIT_SETUP,
    }
}

/// Signals blocked in every thread and taken synchronously with sigwaitinfo.
struct SignalSet {
    set: libc::sigset_t,
}

impl SignalSet {
    fn block(signals: &[libc::c_int]) -> io::Result<SignalSet> {
        // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &signal in signals {
                libc::sigaddset(&mut set, signal);
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(SignalSet { set })
        }
    }

    /// The next pending signal and whether the kernel sent it (a terminal's Ctrl-C or hangup,
    /// which the whole foreground process group, CMD included, receives) rather than kill(2).
    /// None when `timeout` passed first.
    fn wait(&self, timeout: Option<Duration>) -> io::Result<Option<(libc::c_int, bool)>> {
        loop {
            // SAFETY: siginfo_t is plain data that sigwaitinfo/sigtimedwait fill in.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: `self.set` is initialised and `info` outlives the call.
            let rc = unsafe {
                match timeout {
                    None => libc::sigwaitinfo(&self.set, &mut info),
                    Some(t) => {
                        let ts = libc::timespec {
                            tv_sec: t.as_secs() as libc::time_t,
                            tv_nsec: t.subsec_nanos() as libc::c_long,
                        };
                        libc::sigtimedwait(&self.set, &mut info, &ts)
                    }
                }
            };
            if rc >= 0 {
                return Ok(Some((rc, info.si_code == SI_KERNEL)));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(None),
                _ => return Err(err),
            }
        }
    }
}

/// `si_code` of a signal the kernel generated itself (tty driver), as opposed to kill(2).
const SI_KERNEL: libc::c_int = 0x80;

/// Waits for CMD to exit.
///
/// A signal from the terminal (Ctrl-C, hangup) reached CMD too: CMD decides, as it would
/// without capture (an interactive shell survives Ctrl-C). A signal sent to capture with kill(2)
/// (SIGINT, SIGTERM, SIGHUP) is passed on to CMD, which gets `KILL_GRACE` to exit before it is
/// killed; a second such signal kills it at once.
fn wait_for_child(child: &mut Child, signals: &SignalSet) -> io::Result<ExitStatus> {
    let pid = child.id() as libc::pid_t;
    let mut kill_at: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        let timeout = kill_at.map(|at| at.saturating_duration_since(Instant::now()));
        let signal = match signals.wait(timeout)? {
            Some((libc::SIGCHLD, _)) | Some((_, true)) => continue,
            Some((signal, false)) if kill_at.is_none() => signal,
            // Second signal, or the grace period is over.
            Some(_) | None => libc::SIGKILL,
        };
        log::info!("passing signal {signal} to the command");
        // SAFETY: signalling our own child, which we have not reaped yet.
        unsafe { libc::kill(pid, signal) };
        kill_at = if signal == libc::SIGKILL {
            None
        } else {
            Some(Instant::now() + KILL_GRACE)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_forms() {
        assert_eq!(
            parse_upstream("198.18.0.1:5353").unwrap(),
            "198.18.0.1:5353".parse().unwrap()
        );
        assert_eq!(
            parse_upstream("198.18.0.1").unwrap(),
            "198.18.0.1:53".parse().unwrap()
        );
        assert_eq!(
            parse_upstream("[fd00::1]:53").unwrap(),
            "[fd00::1]:53".parse().unwrap()
        );
        assert_eq!(
            parse_upstream("fd00::1").unwrap(),
            "[fd00::1]:53".parse().unwrap()
        );
        let err = parse_upstream("dns.example:53").unwrap_err();
        assert!(err.contains("dns.example:53"), "{err}");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(100 * 1024 * 1024), "100.0 MiB");
    }
}
