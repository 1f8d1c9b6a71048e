//! Copies of the tun's packets for a recorder (e.g. a pcapng writer) on another thread.
//!
//! The engine thread never does file I/O: each packet read from or written to the tun is copied
//! into a bounded channel, and when the recorder falls behind the copy is dropped and counted
//! instead of slowing the relay. Without a tap (the default) nothing is copied.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

use crate::flow::Millis;

/// One packet as it crossed the tun.
#[derive(Debug)]
pub struct TappedPacket {
    /// When the engine read or wrote it (ms since the epoch).
    pub ts: Millis,
    /// The raw IP packet.
    pub data: Vec<u8>,
}

/// The engine's end of the tap. Cheap to clone; clones share the channel and the drop counter.
#[derive(Clone, Debug)]
pub struct PacketTap {
    tx: SyncSender<TappedPacket>,
    dropped: Arc<AtomicU64>,
}

impl PacketTap {
    /// A tap holding at most `capacity` packets not yet taken by the recorder.
    pub fn bounded(capacity: usize) -> (PacketTap, Receiver<TappedPacket>) {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let tap = PacketTap {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (tap, rx)
    }

    /// Offer a copy of `data`; never blocks. A full channel (or a recorder that is gone) drops
    /// the copy and counts it.
    pub fn offer(&self, ts: Millis, data: &[u8]) {
        let packet = TappedPacket {
            ts,
            data: data.to_vec(),
        };
        match self.tx.try_send(packet) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Copies dropped so far because the recorder was behind or gone.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_tap_drops_and_counts_without_blocking() {
        let (tap, rx) = PacketTap::bounded(2);
        for i in 0..5u8 {
            tap.offer(i64::from(i), &[i; 3]);
        }
        assert_eq!(tap.dropped(), 3);
        let got: Vec<_> = rx.try_iter().map(|p| (p.ts, p.data)).collect();
        assert_eq!(got, vec![(0, vec![0; 3]), (1, vec![1; 3])]);
        drop(rx);
        tap.clone().offer(9, b"x");
        assert_eq!(tap.dropped(), 4);
    }
}
