//! The running capture: the namespace, the recording (engine and fan-out, shared with the
//! Android session), and the optional pcapng copy; started together, and finished in the order
//! that keeps every last flow.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::sandbox::{self, DNS_V4, DNS_V6, Sandbox};
use super::summary::Summary;
use super::tally::{Progress, Tally};
use crate::dissect::DeviceScan;
use crate::engine::{EngineConfig, Outbound, PacketTap, Tuning};
use crate::linux::user;
use crate::pcap::recorder::Recorder;
use crate::recording::{self, BuildFacts, Recording};
use crate::store::StoreWriter;

/// How long open TCP flows get to finish relaying after CMD exits.
const DRAIN_LIMIT: Duration = Duration::from_secs(3);
/// How long the owner lookups of the last flows get after CMD exits.
const OWNER_GRACE: Duration = Duration::from_millis(500);
/// Packet copies the engine may queue for the pcapng writer before it drops them.
const PCAPNG_QUEUE: usize = 16 * 1024;

pub(super) struct Capture {
    sandbox: Sandbox,
    recording: Recording<Tally>,
    progress: Arc<Progress>,
    pcapng: Option<PcapngCopy>,
}

/// `--pcapng`: the writer thread, and the engine's tap (for its drop count).
struct PcapngCopy {
    recorder: Recorder,
    tap: PacketTap,
    path: PathBuf,
}

impl Capture {
    pub(super) fn start(
        store: &StoreWriter,
        dns_upstream: std::net::SocketAddr,
        mtu: u32,
        pcapng: Option<&Path>,
    ) -> Result<Capture, String> {
        let (sandbox, tun) = Sandbox::create(mtu)?;
        let config = EngineConfig {
            dns_v4: DNS_V4,
            dns_v6: sandbox.has_ipv6().then_some(DNS_V6),
            dns_upstream,
            mtu: mtu as usize,
            // The engine's sockets live in the parent namespace: they never see the TUN routes.
            outbound: Outbound::default(),
        };
        let pcapng = match pcapng {
            Some(path) => {
                let (tap, packets) = PacketTap::bounded(PCAPNG_QUEUE);
                let recorder =
                    Recorder::start(path, packets).map_err(|e| format!("--pcapng: {e}"))?;
                Some(PcapngCopy {
                    recorder,
                    tap,
                    path: path.to_path_buf(),
                })
            }
            None => None,
        };
        let progress = Arc::new(Progress::default());
        let tally = Tally::new(
            progress.clone(),
            pcapng.as_ref().map(|p| p.recorder.notes()),
        );
        let owner = sandbox.owner_lookup();
        sandbox::warn_if_ping_is_blocked();
        let tuning = Tuning {
            device: Some(Arc::new(DeviceScan::new(recording::device_context(
                BuildFacts {
                    own_ips: sandbox.own_ips(),
                    ..BuildFacts::default()
                },
            )))),
            packet_tap: pcapng.as_ref().map(|p| p.tap.clone()),
            tun_offload: sandbox::TUN_OFFLOAD,
            ..Tuning::default()
        };
        let recording = Recording::start(tun, config, tuning, owner, store, tally)
            .map_err(|e| e.to_string())?;
        Ok(Capture {
            sandbox,
            recording,
            progress,
            pcapng,
        })
    }

    pub(super) fn spawn(
        &self,
        argv: &[String],
        credentials: Option<&user::Credentials>,
    ) -> Result<std::process::Child, crate::cli::CliError> {
        self.sandbox.spawn(argv, credentials)
    }

    /// Lets open TCP flows finish relaying and owner lookups of the last flows come back (both
    /// bounded), stops the recording (final events passed on) and returns the summary. The
    /// namespace goes away with the last process in it.
    pub(super) fn finish(self) -> Result<Summary, String> {
        self.sandbox.end_leftovers();
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
        let stopped = self.recording.stop();
        drop(self.sandbox);
        // The tally goes first: its notes sender must be gone before the recorder can end.
        let summary = stopped.sink.map(Tally::summary);
        // The engine and the fan-out are gone: the recorder writes what is left.
        let pcapng = match self.pcapng {
            Some(PcapngCopy {
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
        let summary = summary.map_err(|e| e.to_string())?;
        let stats = stopped
            .engine
            .map_err(|e| format!("stopping the engine: {e}"))?;
        Ok(Summary {
            packets_dropped: stats.packets_dropped,
            fragments_dropped: stats.fragments_dropped,
            flows_failed: stats.flows_failed,
            pcapng,
            ..summary
        })
    }
}
