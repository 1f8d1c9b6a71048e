//! Starting the captured command: its own mount namespace with the capture's resolv.conf (and
//! nsswitch.conf) bind-mounted over the host's, then the requested user.
//!
//! Everything that allocates happens before fork; the `pre_exec` hook only makes system calls.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::user::Credentials;

/// A private directory holding the files bind-mounted into the captured command's view.
/// Removed on drop.
pub struct SandboxFiles {
    dir: PathBuf,
    binds: Vec<(PathBuf, PathBuf)>,
}

impl SandboxFiles {
    pub fn new() -> io::Result<SandboxFiles> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "phonehome-capture-{}-{nanos:x}",
            std::process::id()
        ));
        fs::create_dir(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        // Readable by the user CMD may switch to.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        Ok(SandboxFiles {
            dir,
            binds: Vec::new(),
        })
    }

    /// Makes `target` (an existing file) show `contents` to the captured command.
    pub fn overlay(&mut self, target: &Path, contents: &str) -> io::Result<()> {
        // Checked here: a failed bind mount in the child would surface as a spawn error of CMD.
        if !target.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is missing or not a regular file; it is needed to redirect CMD's setting",
                    target.display()
                ),
            ));
        }
        let name = target
            .file_name()
            .map(|n| n.to_owned())
            .unwrap_or_else(|| "file".into());
        let source = self.dir.join(name);
        fs::write(&source, contents)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", source.display())))?;
        fs::set_permissions(&source, fs::Permissions::from_mode(0o644))?;
        self.binds.push((source, target.to_owned()));
        Ok(())
    }
}

impl Drop for SandboxFiles {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Arranges for `command`, when spawned, to enter a private mount namespace with the overlays of
/// `files` bind-mounted, then drop to `credentials` (if any). The child also gets SIGTERM if the
/// thread that spawned it dies, so a killed capture does not leave CMD running without a network.
pub fn prepare(
    command: &mut Command,
    files: &SandboxFiles,
    credentials: Option<&Credentials>,
) -> io::Result<()> {
    let to_c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("path with NUL: {}", p.display()),
            )
        })
    };
    let binds = files
        .binds
        .iter()
        .map(|(source, target)| Ok((to_c(source)?, to_c(target)?)))
        .collect::<io::Result<Vec<_>>>()?;
    let ids = credentials.map(|c| {
        (
            c.uid,
            c.gid,
            c.groups
                .iter()
                .map(|&g| g as libc::gid_t)
                .collect::<Vec<_>>(),
        )
    });
    if let Some(creds) = credentials {
        if let Some(home) = &creds.home {
            command.env("HOME", home);
        }
        if let Some(name) = &creds.name {
            command.env("USER", name).env("LOGNAME", name);
        }
    }
    let hook = move || -> io::Result<()> {
        // SAFETY (whole block): async-signal-safe system calls on data prepared before fork.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Keep our bind mounts out of the host's mount table (/ is often a shared mount).
            let flags = libc::MS_REC | libc::MS_PRIVATE;
            if libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            for (source, target) in &binds {
                if libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some((uid, gid, groups)) = &ids
                && (libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(*gid) != 0
                    || libc::setuid(*uid) != 0)
            {
                return Err(io::Error::last_os_error());
            }
            // capture blocks SIGINT/SIGTERM/SIGHUP/SIGCHLD in every thread to take them with
            // sigwaitinfo, and a blocked mask survives exec: CMD would ignore SIGTERM and a
            // shell's `wait` for background jobs would never see them end.
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Set last: credential changes clear the parent-death signal.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook only performs async-signal-safe system calls and allocates nothing.
    unsafe {
        command.pre_exec(hook);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_need_an_existing_target_and_are_removed_on_drop() {
        let mut files = SandboxFiles::new().unwrap();
        let err = files
            .overlay(Path::new("/nonexistent/resolv.conf"), "x")
            .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/resolv.conf"),
            "{err}"
        );
        let target =
            std::env::temp_dir().join(format!("phonehome-overlay-target-{}", std::process::id()));
        fs::write(&target, "host\n").unwrap();
        files.overlay(&target, "nameserver 10.0.0.2\n").unwrap();
        let (source, bound) = files.binds[0].clone();
        assert_eq!(bound, target);
        let _ = fs::remove_file(&target);
        assert_eq!(
            fs::read_to_string(&source).unwrap(),
            "nameserver 10.0.0.2\n"
        );
        let dir = files.dir.clone();
        drop(files);
        assert!(!dir.exists());
    }
}
