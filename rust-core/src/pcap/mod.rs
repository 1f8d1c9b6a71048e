//! Capture files: reading pcap/pcapng into the engine in observe mode, and writing a live
//! session as pcapng with the owner of every packet.
//!
//! - [`reader`]: pcap and pcapng records, with byte offsets for errors.
//! - [`link`]: from a link-layer frame to its IP packet (and PCAPdroid's trailer).
//! - [`ip`]: IP/TCP/UDP headers and fragment reassembly.
//! - [`gtp`]: GTP-U tunnels, whose T-PDUs are observed as the flows inside.
//! - [`stream`]: in-order TCP bytes for the dissectors.
//! - [`dns`]: the DNS log (query/answer pairs) of a capture.
//! - [`observer`]: flows, naming and events, as the live engine makes them.
//! - [`writer`]: a live session as pcapng with each packet's owner.
//! - [`recorder`]: the thread that writes a live session's tapped packets with [`writer`].

pub mod dns;
#[warn(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
pub mod gtp;
#[warn(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
pub mod ip;
#[warn(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
pub mod link;
pub mod observer;
#[warn(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
pub mod reader;
pub mod recorder;
pub mod stream;
pub mod writer;

pub use observer::{Observer, ObserverStats, Owner};
pub use reader::{CaptureReader, Packet, ReadError, Record, Section};
pub use writer::PcapngWriter;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::Sender;

use crate::dissect::{DeviceContext, DeviceScan};
use crate::flow::Event;

/// How a capture file went through the observer.
#[derive(Debug)]
pub struct FileReport {
    pub stats: ObserverStats,
    /// Bytes of the file read.
    pub bytes: u64,
    /// The error that stopped reading early; everything before it was observed and sent.
    pub error: Option<ReadError>,
}

/// Opens a capture file and reads its header. Err when it cannot be opened or is not a
/// capture at all.
/// The file is read unbuffered: the reader keeps a 1 MiB buffer of its own.
pub fn open(path: &Path) -> Result<CaptureReader<File>, ReadError> {
    let file = File::open(path).map_err(|source| ReadError::Io { offset: 0, source })?;
    CaptureReader::new(file)
}

/// What the cleartext scan knows of the phone: what the caller gives (`analyze`'s flags), with
/// the model and OS build the capture's first section header names (PCAPdroid writes them as
/// `shb_hardware` and `shb_os`) where the caller gave none. None when nothing is known.
pub fn device_context(given: DeviceContext, section: &Section) -> Option<Arc<DeviceScan>> {
    let device = DeviceContext {
        own_ips: given.own_ips,
        model: given.model.or_else(|| section.hardware.clone()),
        os_version: given.os_version.or_else(|| section.os.clone()),
    };
    (device != DeviceContext::default()).then(|| Arc::new(DeviceScan::new(device)))
}

/// [`observe_reader_with`] with only what the capture itself says of the phone.
pub fn observe_reader<R: std::io::Read>(
    reader: CaptureReader<R>,
    events: Sender<Event>,
    progress: impl FnMut(u64),
) -> FileReport {
    observe_reader_with(reader, DeviceContext::default(), events, progress)
}

/// Feeds every record of `reader` through a new [`Observer`] sending to `events`, calling
/// `progress` with the bytes read so far now and then; `device` (merged by [`device_context`])
/// lets the cleartext scan flag the phone's own IPs, model and OS build. A damaged tail is
/// reported in [`FileReport::error`] after every flow read before it was closed and sent.
pub fn observe_reader_with<R: std::io::Read>(
    mut reader: CaptureReader<R>,
    device: DeviceContext,
    events: Sender<Event>,
    mut progress: impl FnMut(u64),
) -> FileReport {
    let device = device_context(device, reader.section());
    let mut observer = Observer::new(events).with_device(device);
    let mut error = None;
    let mut count = 0u64;
    loop {
        match reader.next_record() {
            Ok(Some(record)) => observer.on_record(&record),
            Ok(None) => break,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
        count += 1;
        if count.is_multiple_of(4096) {
            progress(reader.offset());
        }
    }
    let bytes = reader.offset();
    progress(bytes);
    FileReport {
        stats: observer.finish(),
        bytes,
        error,
    }
}

/// [`open`] then [`observe_reader`].
pub fn observe_file(
    path: &Path,
    events: Sender<Event>,
    progress: impl FnMut(u64),
) -> Result<FileReport, ReadError> {
    Ok(observe_reader(open(path)?, events, progress))
}

/// The packet builders the integration tests use too: one copy.
#[cfg(test)]
#[path = "../../tests/support/packets.rs"]
pub(crate) mod testutil;
