//! Durability on real files and real failures: kill -9 of a recording process, a full disk
//! (a 2 MB tmpfs) and a read-only file system (a read-only bind mount). The mount tests need
//! root, as the rest of PhoneHome's Linux tests do.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use phonehome::store::{FlowFilter, Reader, SessionInfo, StoreWriter, Window};

#[path = "common/phonehome_bin.rs"]
mod phonehome_bin;
use phonehome_bin::phonehome_ok;

#[path = "support/synth.rs"]
mod synth;
use synth::Synth;

const HARNESS_DB: &str = "PHONEHOME_HARNESS_DB";

/// Not a test: the recording process that `kill_9_loses_at_most_one_write_window` kills. It
/// records flows steadily and reports, every 50 ms, the highest flow id it has sent.
#[test]
#[ignore = "harness run by kill_9_loses_at_most_one_write_window"]
fn harness_recording_process() {
    let Some(db) = std::env::var_os(HARNESS_DB) else {
        return;
    };
    let writer = StoreWriter::start(
        Path::new(&db),
        SessionInfo {
            kind: "harness".into(),
            ..SessionInfo::default()
        },
    )
    .unwrap();
    let tx = writer.sender();
    let mut synth = Synth::new(42);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut out = std::io::stdout().lock();
    // Bounded: the parent kills us within seconds; stop on our own after 60 s regardless.
    while start.elapsed() < Duration::from_secs(60) {
        for _ in 0..100 {
            for e in synth.flow_events(1_763_700_000_000 + sent as i64) {
                tx.send(e).unwrap();
            }
            sent += 1;
        }
        writeln!(out, "sent {sent}").unwrap();
        out.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    writer.finish().unwrap();
}

#[test]
fn kill_9_loses_at_most_one_write_window() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("killed.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "harness_recording_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HARNESS_DB, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(n) = line
                .strip_prefix("sent ")
                .and_then(|n| n.parse::<u64>().ok())
            {
                let _ = tx.send((Instant::now(), n));
            }
        }
    });
    let mut progress: Vec<(Instant, u64)> = Vec::new();
    let begin = Instant::now();
    while begin.elapsed() < Duration::from_secs(3) {
        if let Ok(p) = rx.recv_timeout(Duration::from_millis(100)) {
            progress.push(p);
        }
    }
    // SIGKILL: no destructor, no final commit.
    let killed_at = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let status = child.wait().unwrap();
    assert!(!status.success());
    while let Ok(p) = rx.try_recv() {
        progress.push(p);
    }
    let window = Duration::from_secs(1);
    let safe = progress
        .iter()
        .filter(|(t, _)| *t + window <= killed_at)
        .map(|(_, n)| *n)
        .max();
    let safe = safe.expect("the harness reported no progress");
    assert!(safe >= 1000, "harness too slow to judge: {safe}");

    let reader = Reader::open(&db).unwrap();
    assert_eq!(reader.integrity_check().unwrap(), "ok");
    let flows = reader.flows(&FlowFilter::default()).unwrap();
    let stored: std::collections::BTreeSet<i64> = flows.iter().map(|f| f.flow_id).collect();
    let missing = (1..=safe as i64).filter(|id| !stored.contains(id)).count();
    assert_eq!(
        missing,
        0,
        "flows sent more than 1 s before the kill were lost ({} stored, {safe} safe)",
        stored.len()
    );
    let sessions = reader.sessions().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        sessions[0].ended, None,
        "a killed session is left without an end"
    );
    drop(reader);

    // The next capture opens the same file and records normally.
    let writer = StoreWriter::start(&db, SessionInfo::default()).unwrap();
    let tx = writer.sender();
    let mut synth = Synth::new(1);
    for e in synth.flow_events(1_763_800_000_000) {
        tx.send(e).unwrap();
    }
    let next = writer.session_id();
    writer.finish().unwrap();
    let reader = Reader::open(&db).unwrap();
    assert_eq!(reader.totals(&Window::session(next)).unwrap().contacts, 1);
    assert_eq!(reader.integrity_check().unwrap(), "ok");
}

/// Mounting needs root. Without it: fails when `CI` is set (CI runs as root, so a skip would
/// hide a broken setup), otherwise skips loudly - the convention of the end-to-end rig
/// (`tests/rig/` at the repository root).
fn root_or_skip(test: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let message =
        format!("{test}: needs root to mount a tmpfs / read-only bind mount; run with sudo");
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false") {
        panic!("{message}");
    }
    // Straight to stderr, so scripts/test.sh sees it and counts a skip, not a pass.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED {message}\n").as_bytes(),
    );
    false
}

/// Mounts `fs` at a fresh directory; unmounts on drop.
struct Mount(std::path::PathBuf);

impl Mount {
    fn run(args: &[&str]) {
        let out = Command::new("mount").args(args).output().expect("mount(8)");
        assert!(
            out.status.success(),
            "mount {args:?} (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn feed_until_failure(writer: &StoreWriter, max_flows: i64) -> i64 {
    let tx = writer.sender();
    let mut synth = Synth::new(5);
    synth.host_variety = 1_000_000; // every flow a new name: the file grows fast
    let start = Instant::now();
    for i in 0..max_flows {
        for e in synth.flow_events(1_763_700_000_000 + i * 10) {
            if tx.send(e).is_err() {
                return i;
            }
        }
        if i % 500 == 0 {
            std::thread::sleep(Duration::from_millis(20));
            if writer.failed().is_some() || start.elapsed() > Duration::from_secs(60) {
                return i;
            }
        }
    }
    max_flows
}

#[test]
fn full_disk_stops_recording_with_a_clear_error_and_keeps_data() {
    if !root_or_skip("full_disk_stops_recording_with_a_clear_error_and_keeps_data") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    Mount::run(&[
        "-t",
        "tmpfs",
        "-o",
        "size=2M",
        "tmpfs",
        mnt.to_str().unwrap(),
    ]);
    let _mount = Mount(mnt.clone());
    let db = mnt.join("full.db");

    let writer = StoreWriter::start(&db, SessionInfo::default()).unwrap();
    // Something committed before the disk fills.
    let tx = writer.sender();
    let mut early = Synth::new(9);
    for i in 0..50 {
        for e in early.flow_events(1_763_600_000_000 + i) {
            tx.send(e).unwrap();
        }
    }
    drop(tx);
    std::thread::sleep(Duration::from_millis(800));
    let sent = feed_until_failure(&writer, 1_000_000);
    assert!(sent < 1_000_000, "2 MB never filled?");
    let failure = writer.failed();
    let err = writer.finish().unwrap_err().to_string();
    assert!(err.contains("full.db") && err.contains("full"), "{err}");
    assert_eq!(failure.as_deref(), Some(err.as_str()));
    // Sends fail once recording stopped, so the engine notices.
    let reader = Reader::open(&db).unwrap();
    assert_eq!(reader.integrity_check().unwrap(), "ok");
    let kept = reader.totals(&Window::all()).unwrap().contacts;
    assert!(kept >= 50, "committed flows were lost: {kept}");
}

#[test]
fn read_only_file_system_is_refused_clearly_and_still_readable() {
    if !root_or_skip("read_only_file_system_is_refused_clearly_and_still_readable") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let ro = dir.path().join("ro");
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&ro).unwrap();
    // A finished database in the directory before it becomes read-only.
    let db = src.join("kept.db");
    let writer = StoreWriter::start(&db, SessionInfo::default()).unwrap();
    let tx = writer.sender();
    let mut synth = Synth::new(2);
    for e in synth.app_events() {
        tx.send(e).unwrap();
    }
    for i in 0..100 {
        for e in synth.flow_events(1_763_600_000_000 + i * 1000) {
            tx.send(e).unwrap();
        }
    }
    writer.finish().unwrap();

    Mount::run(&["--bind", src.to_str().unwrap(), ro.to_str().unwrap()]);
    let _mount = Mount(ro.clone());
    Mount::run(&["-o", "remount,bind,ro", ro.to_str().unwrap()]);

    let new_db = ro.join("new.db");
    let err = StoreWriter::start(&new_db, SessionInfo::default())
        .err()
        .expect("writing to a read-only mount")
        .to_string();
    assert!(err.contains("new.db") && err.contains("read-only"), "{err}");
    let err = StoreWriter::start(&ro.join("kept.db"), SessionInfo::default())
        .err()
        .expect("read-only")
        .to_string();
    assert!(
        err.contains("kept.db") && (err.contains("read-only") || err.contains("readonly")),
        "{err}"
    );

    // Reports and exports still work from read-only media.
    let reader = Reader::open(&ro.join("kept.db")).unwrap();
    assert_eq!(reader.totals(&Window::all()).unwrap().contacts, 100);
    assert!(reader.add_marker("x").is_err());
    phonehome_ok(&[
        "report",
        "--db",
        ro.join("kept.db").to_str().unwrap(),
        "--format",
        "json",
    ]);
    let copy = dir.path().join("copy.db");
    reader.export_copy(&copy).unwrap();
    assert_eq!(
        Reader::open(&copy)
            .unwrap()
            .totals(&Window::all())
            .unwrap()
            .contacts,
        100
    );
}

#[test]
fn a_lock_held_past_the_busy_timeout_delays_recording_but_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("locked.db");
    let writer = StoreWriter::start(&db, SessionInfo::default()).unwrap();
    let tx = writer.sender();
    let mut synth = Synth::new(11);
    for e in synth.app_events() {
        tx.send(e).unwrap();
    }
    for i in 0..100 {
        for e in synth.flow_events(1_763_600_000_000 + i * 1000) {
            tx.send(e).unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(800));
    // Another program (sqlite3, a careless script) takes the write lock for 6.5 s, longer
    // than the writer's 5 s busy timeout.
    let other = rusqlite::Connection::open(&db).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    for i in 100..300 {
        for e in synth.flow_events(1_763_600_000_000 + i * 1000) {
            tx.send(e).unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(6_500));
    assert_eq!(
        writer.failed(),
        None,
        "a busy database must not stop recording"
    );
    other.execute_batch("COMMIT").unwrap();
    writer.finish().unwrap();
    let reader = Reader::open(&db).unwrap();
    assert_eq!(reader.totals(&Window::all()).unwrap().contacts, 300);
    assert_eq!(reader.integrity_check().unwrap(), "ok");
}
