//! Waiting for CMD while capture's own signals are taken synchronously (sigwaitinfo), and CMD's
//! exit status as capture's.

use std::io;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use super::EXIT_SETUP;

/// How long CMD gets to exit after SIGINT/SIGTERM is forwarded before it is killed.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// `si_code` of a signal the kernel generated itself (tty driver), as opposed to kill(2).
const SI_KERNEL: libc::c_int = 0x80;

/// Signals blocked in every thread and taken synchronously with sigwaitinfo.
pub(super) struct SignalSet {
    set: libc::sigset_t,
}

impl SignalSet {
    /// Blocks `signals` in this thread, and so in every thread started after it (children get a
    /// clean mask from std).
    pub(super) fn block(signals: &[libc::c_int]) -> io::Result<SignalSet> {
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

/// Waits for CMD to exit.
///
/// A signal from the terminal (Ctrl-C, hangup) reached CMD too: CMD decides, as it would
/// without capture (an interactive shell survives Ctrl-C). A signal sent to capture with kill(2)
/// (SIGINT, SIGTERM, SIGHUP) is passed on to CMD, which gets `KILL_GRACE` to exit before it is
/// killed; a second such signal kills it at once.
pub(super) fn wait_for_child(child: &mut Child, signals: &SignalSet) -> io::Result<ExitStatus> {
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
            Some((signal, false)) => {
                log::warn!("signal {signal} again: killing the command");
                libc::SIGKILL
            }
            None => {
                log::warn!(
                    "the command did not exit within {} s of the signal: killing it",
                    KILL_GRACE.as_secs()
                );
                libc::SIGKILL
            }
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

/// CMD's status as capture's: its code, or 128+N when signal N killed it (as a shell reports).
pub(super) fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => EXIT_SETUP,
    }
}
