//! In-order reassembly of the first bytes of one TCP direction, for the dissectors.
//!
//! Only the start of a stream names a flow (ClientHello, HTTP request line), so reassembly stops
//! after [`STREAM_LIMIT`] bytes; memory per direction is bounded by the same figure.

use std::collections::BTreeMap;

/// Bytes per direction handed to the dissectors.
pub const STREAM_LIMIT: u64 = 16 * 1024;

#[derive(Debug, Default)]
pub struct Reassembler {
    /// Sequence number of stream byte 0 (ISN + 1), once known.
    base: Option<u32>,
    /// Stream bytes delivered so far.
    delivered: u64,
    /// Out-of-order segments by stream offset.
    pending: BTreeMap<u64, Vec<u8>>,
    pending_bytes: usize,
    /// Sequence number just past the highest byte seen, for counting new (not retransmitted)
    /// payload over the whole stream.
    high: Option<u32>,
}

impl Reassembler {
    /// A SYN fixes the stream's start even when data segments arrive out of order later.
    pub fn on_syn(&mut self, seq: u32) {
        if self.base.is_none() {
            self.base = Some(seq.wrapping_add(1));
        }
    }

    /// Payload bytes of this segment not seen before (retransmissions count once), as the live
    /// relay counts application bytes.
    pub fn new_bytes(&mut self, seq: u32, len: usize) -> usize {
        let end = seq.wrapping_add(len as u32);
        match self.high {
            None => {
                self.high = Some(end);
                len
            }
            Some(high) => {
                let ahead = end.wrapping_sub(high) as i32;
                if ahead > 0 {
                    self.high = Some(end);
                    (ahead as usize).min(len)
                } else {
                    0
                }
            }
        }
    }

    pub fn done(&self) -> bool {
        self.delivered >= STREAM_LIMIT
    }

    /// Feeds one segment; `deliver` receives each newly in-order run of bytes.
    pub fn on_segment(&mut self, seq: u32, data: &[u8], mut deliver: impl FnMut(&[u8])) {
        if data.is_empty() || self.done() {
            return;
        }
        // A stream whose start is not in the capture begins at the first data seen.
        let base = *self.base.get_or_insert(seq);
        let rel = i64::from(seq.wrapping_sub(base) as i32);
        let end = rel + data.len() as i64;
        let delivered = self.delivered as i64;
        if end <= delivered {
            return; // a retransmission of bytes already delivered
        }
        if rel > delivered {
            if rel < STREAM_LIMIT as i64 && self.pending_bytes < STREAM_LIMIT as usize {
                let keep = data.len().min(STREAM_LIMIT as usize - self.pending_bytes);
                let slot = self.pending.entry(rel as u64).or_default();
                if slot.len() < keep {
                    self.pending_bytes += keep - slot.len();
                    *slot = data[..keep].to_vec();
                }
            }
            return;
        }
        let skip = (delivered - rel) as usize;
        self.push_in_order(&data[skip..], &mut deliver);
        // Drain queued segments that the new bytes made contiguous.
        while let Some((&start, _)) = self.pending.first_key_value() {
            if start > self.delivered || self.done() {
                break;
            }
            let Some((start, seg)) = self.pending.pop_first() else {
                break;
            };
            self.pending_bytes -= seg.len();
            let seg_end = start + seg.len() as u64;
            if seg_end > self.delivered {
                let skip = (self.delivered - start) as usize;
                self.push_in_order(&seg[skip..], &mut deliver);
            }
        }
        if self.done() {
            self.pending.clear();
            self.pending_bytes = 0;
        }
    }

    fn push_in_order(&mut self, bytes: &[u8], deliver: &mut impl FnMut(&[u8])) {
        let room = (STREAM_LIMIT - self.delivered) as usize;
        let bytes = &bytes[..bytes.len().min(room)];
        if !bytes.is_empty() {
            self.delivered += bytes.len() as u64;
            deliver(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(r: &mut Reassembler, seq: u32, data: &[u8], out: &mut Vec<u8>) {
        r.on_segment(seq, data, |b| out.extend_from_slice(b));
    }

    #[test]
    fn out_of_order_overlap_and_wrap() {
        let isn = u32::MAX - 3; // the stream wraps the sequence space
        let mut r = Reassembler::default();
        r.on_syn(isn);
        let base = isn.wrapping_add(1);
        let mut out = Vec::new();
        collect(&mut r, base.wrapping_add(10), b"klmnop", &mut out);
        collect(&mut r, base.wrapping_add(5), b"fghij", &mut out);
        assert!(out.is_empty());
        collect(&mut r, base, b"abcdefg", &mut out); // overlaps the queued "fg"
        assert_eq!(out, b"abcdefghijklmnop");
        collect(&mut r, base.wrapping_add(2), b"cde", &mut out); // retransmission
        collect(&mut r, base.wrapping_add(16), b"q", &mut out);
        assert_eq!(out, b"abcdefghijklmnopq");
    }

    #[test]
    fn new_bytes_counts_retransmissions_once() {
        let mut r = Reassembler::default();
        assert_eq!(r.new_bytes(u32::MAX - 1, 10), 10);
        assert_eq!(r.new_bytes(u32::MAX - 1, 10), 0);
        assert_eq!(r.new_bytes(4, 10), 6);
        assert_eq!(r.new_bytes(0, 4), 0);
    }

    #[test]
    fn midstream_start_and_limit() {
        let mut r = Reassembler::default();
        let mut out = Vec::new();
        let big = vec![1u8; STREAM_LIMIT as usize + 100];
        collect(&mut r, 5000, &big, &mut out);
        assert_eq!(out.len() as u64, STREAM_LIMIT);
        assert!(r.done());
        collect(&mut r, 5000 + big.len() as u32, b"more", &mut out);
        assert_eq!(out.len() as u64, STREAM_LIMIT);
    }
}
