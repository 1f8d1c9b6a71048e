//! The end-to-end rig: two network namespaces made for one test and removed when it ends.
//!
//! ```text
//!  uplink netns                                  server netns
//!  phonehome capture (engine sockets here)       HTTP :80, echo tcp/udp :7, DNS :53
//!    └─ CMD in its own netns, routes -> TUN      198.18.0.1, fd00:198:18::1
//!  198.18.0.2, fd00:198:18::2 ── veth ───────────┘
//! ```
//!
//! The uplink namespace has no other route, so nothing a test does can reach another network.

#![allow(dead_code, unused_imports)]

pub mod servers;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use servers::{SERVER_V4, SERVER_V6, Servers};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether this process can build namespaces. Without root: fails when `CI` is set (CI runs as
/// root, so a skip there would hide a broken setup), otherwise skips loudly.
pub fn root_or_skip(test: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let message = format!(
        "{test}: end-to-end tests need root (they create network namespaces, veth pairs and TUN devices); \
         run them with sudo"
    );
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false") {
        panic!("{message}");
    }
    // Straight to stderr: the test harness hides eprintln! output of passing tests.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED {message}\n").as_bytes(),
    );
    false
}

/// A named network namespace (`ip netns add`), deleted on drop after killing what runs in it.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: String) -> Netns {
        // Leftover from a crashed run with the same pid and counter.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// `ip -n NAME ARGS...`, panicking with ip's message on failure.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        sh(&full);
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("`{}`: {e} (is iproute2 installed?)", args.join(" ")),
    }
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ph-e2e-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // CMD may run as nobody.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The two namespaces, the veth between them, the servers, a scratch directory.
pub struct Rig {
    pub servers: Servers,
    pub tmp: TempDir,
    // Dropped after the servers (field order), so server threads see their peers vanish last.
    pub uplink: Netns,
    pub server: Netns,
}

pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.status.success(),
            "{what}: {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

impl Rig {
    pub fn new(test: &str) -> Rig {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}-{n}", std::process::id());
        let uplink = Netns::new(format!("phu-{tag}"));
        let server = Netns::new(format!("phs-{tag}"));
        uplink.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &server.name,
        ]);
        uplink.ip(&["addr", "add", "198.18.0.2/24", "dev", "eth0"]);
        server.ip(&["addr", "add", "198.18.0.1/24", "dev", "eth0"]);
        uplink.ip(&[
            "-6",
            "addr",
            "add",
            "fd00:198:18::2/64",
            "dev",
            "eth0",
            "nodad",
        ]);
        server.ip(&[
            "-6",
            "addr",
            "add",
            "fd00:198:18::1/64",
            "dev",
            "eth0",
            "nodad",
        ]);
        uplink.ip(&["link", "set", "eth0", "up"]);
        server.ip(&["link", "set", "eth0", "up"]);
        let tmp = TempDir::new(&format!("{test}-{n}"));
        let servers = Servers::start(server.path(), tmp.0.clone())
            .unwrap_or_else(|e| panic!("starting servers: {e}"));
        Rig {
            servers,
            tmp,
            uplink,
            server,
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.tmp.0.join("capture.db")
    }

    /// Runs `sh -c SCRIPT` under `phonehome capture` in the uplink namespace.
    pub fn capture(&self, script: &str, timeout: Duration) -> RunOutput {
        self.capture_args(&[], script, timeout)
    }

    pub fn capture_args(&self, extra: &[&str], script: &str, timeout: Duration) -> RunOutput {
        let mut cmd = self.uplink.command(env!("CARGO_BIN_EXE_phonehome"));
        let db = self.db_path();
        cmd.args(["capture", "--db"])
            .arg(&db)
            .args(["--dns-upstream", "198.18.0.1:53"])
            .args(extra);
        cmd.args(["--", "sh", "-c", script])
            .current_dir(&self.tmp.0);
        run(cmd, timeout)
    }

    /// Runs `sh -c SCRIPT` directly in the uplink namespace (no engine): the harness's baseline.
    pub fn direct(&self, script: &str, timeout: Duration) -> RunOutput {
        let mut cmd = self.uplink.command("sh");
        cmd.args(["-c", script]).current_dir(&self.tmp.0);
        run(cmd, timeout)
    }

    /// A file of `len` random bytes in the scratch directory (served as `/files/NAME`), and its
    /// sha256.
    pub fn random_file(&self, name: &str, len: u64) -> (PathBuf, String) {
        let path = self.tmp.0.join(name);
        let status = Command::new("head")
            .args(["-c", &len.to_string(), "/dev/urandom"])
            .stdout(std::fs::File::create(&path).unwrap())
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        (path.clone(), sha256_file(&path))
    }

    pub fn clients_py() -> &'static str {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/rig/clients.py")
    }
}

pub fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Runs a command to completion, killing it (and failing the test) after `timeout`.
pub fn run(mut cmd: Command, timeout: Duration) -> RunOutput {
    let described = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{described}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_reader.join().unwrap_or_default();
            panic!("timed out after {timeout:?}: {described}\nstderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    RunOutput {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// A flow row as the tests check it.
#[derive(Clone, Debug)]
pub struct DbFlow {
    pub proto: String,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub uid: Option<u32>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub close_reason: Option<String>,
    pub hostname: Option<String>,
}

/// Every flow in the capture database (rusqlite directly, so the test does not depend on the
/// store's read API).
pub fn db_flows(db: &Path) -> Vec<DbFlow> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("{}: {e}", db.display()));
    let mut stmt = conn
        .prepare(
            "SELECT proto, src_ip, src_port, dst_ip, dst_port, uid, bytes_up, bytes_down, close_reason, hostname
             FROM flows ORDER BY first_seen, flow_id",
        )
        .unwrap();
    let addr = |ip: String, port: i64| -> SocketAddr {
        SocketAddr::new(
            ip.parse()
                .unwrap_or_else(|e| panic!("bad ip {ip:?} in db: {e}")),
            port as u16,
        )
    };
    stmt.query_map([], |row| {
        Ok(DbFlow {
            proto: row.get(0)?,
            src: addr(row.get(1)?, row.get(2)?),
            dst: addr(row.get(3)?, row.get(4)?),
            uid: row.get::<_, Option<i64>>(5)?.map(|u| u as u32),
            bytes_up: row.get::<_, i64>(6)? as u64,
            bytes_down: row.get::<_, i64>(7)? as u64,
            close_reason: row.get(8)?,
            hostname: row.get(9)?,
        })
    })
    .unwrap()
    .collect::<Result<Vec<_>, _>>()
    .unwrap()
}

/// The names asked in the database's DNS log.
pub fn db_dns_queries(db: &Path) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn.prepare("SELECT query FROM dns ORDER BY time").unwrap();
    stmt.query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<Vec<String>, _>>()
        .unwrap()
}

/// The only session of the database: (kind, ended, note).
pub fn db_session(db: &Path) -> (String, Option<i64>, Option<String>) {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row("SELECT kind, ended, note FROM sessions", [], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    })
    .unwrap()
}
