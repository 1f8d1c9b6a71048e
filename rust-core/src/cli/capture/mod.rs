//! `phonehome capture`: run a command in a fresh network namespace whose only way out is a TUN
//! device served by the engine, record every flow in the database, and print where it went.
//!
//! Threads: the namespace thread (holds the namespace, spawns CMD), the engine loop (in the
//! parent namespace, so its outbound sockets use the real network), the fan-out (engine ->
//! store, keeping the summary), the store writer, and this thread waiting for CMD or a signal.
//!
//! The pieces: [`sandbox`] (the namespace CMD runs in), [`relay`] (the running capture and its
//! ordered finish), [`tally`] (what the fan-out counts), [`summary`] (what is printed),
//! [`signals`] (waiting for CMD).

mod relay;
mod sandbox;
mod signals;
mod summary;
mod tally;

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::CliError;
use crate::linux::{resolv, user};
use crate::recording;
use crate::store::{SessionInfo, StoreWriter};

use relay::Capture;
use signals::SignalSet;

/// Exit codes for failures of capture itself (as `env`, `timeout` and `docker run` do).
const EXIT_SETUP: i32 = 125;
const EXIT_CANNOT_EXECUTE: i32 = 126;
const EXIT_NOT_FOUND: i32 = 127;

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

    /// MTU of the TUN device (and of the engine's packets). The default is the Android app's, so
    /// the engine runs as on the phone. TCP moves in 64 KiB segments at any MTU (the TUN has
    /// segmentation offload) and is terminated by the engine, so the real network is reached
    /// with its own MTU.
    #[arg(long, value_name = "BYTES", default_value_t = 9000, value_parser = clap::value_parser!(u32).range(1280..=65535))]
    pub mtu: u32,

    /// Also write every packet of the TUN to this pcapng file, each with a comment naming its
    /// owner (`u-<uid> <app>`); Wireshark and `phonehome analyze` read it. Packets the writer
    /// cannot keep up with are dropped from the file (counted in the summary), never delayed.
    #[arg(long, value_name = "FILE")]
    pub pcapng: Option<PathBuf>,

    /// Text kept as the session's note (shown in reports). Without it the note is only the
    /// program's name: the command line is not stored, since its arguments can carry
    /// identifiers (a URL with an IMEI) into a report that gets published.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,

    /// Do not print the per-destination summary.
    #[arg(long, short)]
    pub quiet: bool,

    /// The command to run and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// The capture's threads (engine, recorder, owner lookups, pcapng) allocate little, but glibc
/// gives each thread its own malloc arena, whose freed memory stays mapped: one shared arena
/// keeps the resident set small, and no thread allocates on a hot path where it would contend.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before the other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
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
        Some(text) => upstream(text).map_err(|m| fail(EXIT_SETUP, m))?,
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
    one_malloc_arena();

    // Signals are taken synchronously by this thread (sigwaitinfo); block them before any other
    // thread starts so every thread inherits the mask. Children get a clean mask from std.
    let signals = SignalSet::block(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGCHLD])
        .map_err(|e| fail(EXIT_SETUP, format!("blocking signals: {e}")))?;

    let note = session_note(args.note.as_deref(), &program);
    let store = StoreWriter::start(&args.db, session_info(note))
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
            signals::wait_for_child(&mut child, &signals)
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
    Ok(signals::exit_code(status))
}

/// A capture failure with its exit code (struct literal: `CliError` is shared by every subcommand).
fn fail(code: i32, message: impl Into<String>) -> CliError {
    CliError {
        code,
        message: message.into(),
    }
}

fn upstream(text: &str) -> Result<SocketAddr, String> {
    recording::parse_upstream(text)
        .ok_or_else(|| format!("--dns-upstream {text:?}: expected ADDR:PORT, [IPV6]:PORT or ADDR"))
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

/// The session's note: the user's `--note`, else only the program's name. The command line
/// itself is not kept: its arguments can carry identifiers (a URL with an IMEI) into a report
/// that gets published.
fn session_note(note: Option<&str>, program: &str) -> String {
    match note {
        Some(note) => note.to_string(),
        None => Path::new(program)
            .file_name()
            .map_or_else(|| program.to_string(), |n| n.to_string_lossy().into_owned()),
    }
}

fn session_info(note: String) -> SessionInfo {
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
        note: Some(note),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_errors_name_the_flag() {
        let err = upstream("dns.example:53").unwrap_err();
        assert!(
            err.contains("--dns-upstream") && err.contains("dns.example:53"),
            "{err}"
        );
        assert_eq!(
            upstream("198.18.0.1").unwrap(),
            "198.18.0.1:53".parse().unwrap()
        );
    }

    #[test]
    fn the_note_is_the_program_name_unless_given() {
        assert_eq!(session_note(None, "/usr/bin/curl"), "curl");
        assert_eq!(session_note(None, "sh"), "sh");
        assert_eq!(
            session_note(Some("MIUI 14, diagnostics off"), "/usr/bin/curl"),
            "MIUI 14, diagnostics off"
        );
    }
}
