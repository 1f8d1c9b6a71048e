//! Every committed fuzz seed (rust-core/fuzz/seeds/<target>/) through the same function its
//! cargo-fuzz target calls (rust-core/fuzz/targets.rs), on stable and on any target: CI runs this
//! on i686-unknown-linux-gnu, where lengths read as `u32 as usize` plus an offset can wrap.

#[allow(
    clippy::all,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]
#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::Path;

/// A seed directory's name and the function its fuzz target calls.
type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 9] = [
    ("dns", targets::dns),
    ("http", targets::http),
    ("inspector", targets::inspector),
    ("pcap", targets::pcap),
    ("pcapng", targets::pcapng),
    ("quic", targets::quic),
    ("tls", targets::tls),
    ("wire", targets::wire),
    ("engine_packet", targets::engine_packet),
];

#[test]
fn every_seed_runs_through_its_fuzz_target() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut listed: Vec<String> = std::fs::read_dir(&seeds)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    let mut known: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    known.sort();
    assert_eq!(
        listed, known,
        "a seed directory without a target here, or the reverse"
    );
    for (name, run) in TARGETS {
        let mut count = 0;
        for entry in std::fs::read_dir(seeds.join(name)).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            run(&data);
            // Every prefix too: truncation is the commonest damage, and cheap to cover.
            for cut in 0..data.len().min(256) {
                run(&data[..cut]);
            }
            count += 1;
        }
        assert!(count > 0, "no seeds for {name}");
    }
}
