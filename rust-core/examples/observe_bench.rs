//! The observer alone (no database) over capture files: `cargo run --release --example
//! observe_bench -- FILE...`. Prints MB/s and flows/s; used by scripts/bench-analyze.sh to
//! separate engine time from SQLite time.

use std::sync::mpsc;
use std::time::Instant;

fn main() {
    let files: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    let (mut bytes, mut flows, mut packets) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    for f in &files {
        let (tx, rx) = mpsc::channel();
        // Drain events on another thread, as the store writer would.
        let drain = std::thread::spawn(move || rx.iter().count());
        match phonehome::pcap::observe_file(f, tx, |_| {}) {
            Ok(r) => {
                bytes += r.bytes;
                flows += r.stats.flows;
                packets += r.stats.frames;
            }
            Err(e) => eprintln!("{}: {e}", f.display()),
        }
        let _ = drain.join();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "observer only: {} files, {:.1} MB, {packets} packets, {flows} flows in {secs:.3} s: {:.1} MB/s, {:.0} flows/s",
        files.len(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs,
        flows as f64 / secs
    );
}
