//! pcapng files through the reader and the observer: any blocks after a valid section header
//! (little- or big-endian by the first input byte).
#![no_main]

use std::sync::mpsc;

use libfuzzer_sys::fuzz_target;
use phonehome::pcap::{CaptureReader, observe_reader};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, blocks)) = data.split_first() else { return };
    let big_endian = pick & 1 != 0;
    let w32 = |x: u32| if big_endian { x.to_be_bytes() } else { x.to_le_bytes() };
    let mut file = Vec::with_capacity(28 + blocks.len());
    file.extend(w32(0x0a0d_0d0a));
    file.extend(w32(28));
    file.extend(w32(0x1a2b_3c4d));
    file.extend(if big_endian { [0, 1, 0, 0] } else { [1, 0, 0, 0] });
    file.extend([0xff; 8]);
    file.extend(w32(28));
    file.extend_from_slice(blocks);

    let (tx, rx) = mpsc::channel();
    if let Ok(reader) = CaptureReader::new(&file[..]) {
        observe_reader(reader, tx, |_| {});
    }
    drop(rx);
});
