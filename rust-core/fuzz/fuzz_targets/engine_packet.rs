//! The engine's own packet entry (engine::fuzz_packet_entry): classification of a tun packet and
//! the replies built from the app's bytes. `wire` covers smoltcp's parsers; this covers ours.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../targets.rs"]
mod targets;

fuzz_target!(|data: &[u8]| targets::engine_packet(data));
