//! The capture reader alone (no observer, no database) over capture files: `cargo run --release
//! --example reader_bench -- FILE...`. Prints MB/s and records/s, to tell the container
//! parsing's share of `analyze` from the engine's.

use std::time::Instant;

fn main() {
    let files: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    let (mut bytes, mut records, mut payload) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    for f in &files {
        let mut reader = match phonehome::pcap::open(f) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                continue;
            }
        };
        loop {
            match reader.next_record() {
                Ok(Some(phonehome::pcap::Record::Packet(p))) => {
                    records += 1;
                    payload += p.data.len() as u64;
                }
                Ok(Some(_)) => records += 1,
                Ok(None) => break,
                Err(e) => {
                    eprintln!("{}: {e}", f.display());
                    break;
                }
            }
        }
        bytes += reader.offset();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "reader only: {} files, {:.1} MB, {records} records ({payload} packet bytes) in {secs:.3} s: {:.1} MB/s",
        files.len(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs
    );
}
