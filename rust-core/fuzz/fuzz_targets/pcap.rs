//! pcap files through the reader and the observer: any bytes after a valid file header.
//! The first input byte picks the header's byte order, resolution and link type, so the fuzzer
//! spends its time on records, link layers, IP, TCP reassembly and the dissectors.
#![no_main]

use std::sync::mpsc;

use libfuzzer_sys::fuzz_target;
use phonehome::pcap::{CaptureReader, observe_reader};

const LINKS: [u32; 8] = [0, 1, 9, 101, 108, 113, 228, 276];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, records)) = data.split_first() else { return };
    let big_endian = pick & 0x80 != 0;
    let magic: u32 = if pick & 0x40 != 0 { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
    let link = LINKS[usize::from(pick) % LINKS.len()];
    let mut file = Vec::with_capacity(24 + records.len());
    for (i, word) in [magic, 0x0002_0004, 0, 0, 65_535, link].into_iter().enumerate() {
        if i == 1 {
            // version 2.4 as two u16
            let (major, minor) = (2u16, 4u16);
            if big_endian {
                file.extend(major.to_be_bytes());
                file.extend(minor.to_be_bytes());
            } else {
                file.extend(major.to_le_bytes());
                file.extend(minor.to_le_bytes());
            }
            continue;
        }
        file.extend(if big_endian { word.to_be_bytes() } else { word.to_le_bytes() });
    }
    file.extend_from_slice(records);

    let (tx, rx) = mpsc::channel();
    if let Ok(reader) = CaptureReader::new(&file[..]) {
        observe_reader(reader, tx, |_| {});
    }
    drop(rx);
});
