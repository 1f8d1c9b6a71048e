//! The smoltcp `Device` of one shard: an ingress queue the loop fills with packets read from the
//! tun, and an egress queue smoltcp fills and the loop writes to the tun after polling.
//!
//! Both queues recycle their buffers, so the steady state allocates nothing per packet
//! (smoltcp's own `TunTapInterface` allocates a `Vec` per packet and panics on I/O errors).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Packet buffers shared by every queue of the loop (the loop is single-threaded), so a buffer
/// read from the tun can carry a smoltcp segment back out.
///
/// Spares come in two sizes. Most packets are small (ACKs, DNS, handshakes): they live in
/// buffers of [`SMALL_PACKET`] bytes. Only the packets that need more (offload segments, jumbo
/// packets) take a large one: a 40-byte ACK in a 64 KiB buffer held 64 KiB for as long as it
/// was queued, and a batch of them megabytes.
#[derive(Clone, Debug, Default)]
pub struct BufferRecycler(Rc<RefCell<Spares>>);

/// The capacity of a small buffer: a packet of a 1500-byte link, or any control segment.
pub const SMALL_PACKET: usize = 2048;
/// Spare small buffers kept (at most 512 KiB).
const SMALL_SPARES: usize = 256;
/// Spare large buffers kept, and their total capacity: with a 64 KiB MTU, 64 spares would
/// already pin 4 MiB. Beyond either limit buffers are freed.
const LARGE_SPARES: usize = 64;
const LARGE_SPARE_BYTES: usize = 1 << 20;
/// The most IP and TCP header bytes a packet smoltcp emits can have (IPv6 40 + TCP 60).
const HEADER_ROOM: usize = 100;

impl BufferRecycler {
    /// A cleared small buffer, for a packet of unknown size (it grows if it must).
    pub fn take(&self) -> Vec<u8> {
        let mut buf = self.take_spare(SMALL_PACKET);
        buf.clear();
        buf
    }

    /// A cleared buffer with room for `capacity` bytes.
    pub fn take_capacity(&self, capacity: usize) -> Vec<u8> {
        let mut buf = self.take_spare(capacity);
        buf.clear();
        buf.reserve_exact(capacity);
        buf
    }

    /// A buffer of exactly `len` bytes for smoltcp to fill. A recycled buffer keeps the bytes
    /// of its last packet, so only what it lacks is zero-filled, plus the header room: smoltcp
    /// writes every header field and copies the payload over the rest, but its option padding
    /// is left as found. Zero-filling a whole 64 KiB offload segment per packet cost as many
    /// instructions as copying its payload.
    pub fn take_len(&self, len: usize) -> Vec<u8> {
        let mut buf = self.take_spare(len);
        let reused = buf.len().min(len).min(HEADER_ROOM);
        if buf.capacity() < len {
            buf.reserve_exact(len - buf.len());
        }
        buf.resize(len, 0);
        buf[..reused].fill(0);
        buf
    }

    /// A spare of the class that holds `len` bytes, or a new small one (a new large one is
    /// left to the caller, which knows its size). Contents as the last packet left them.
    fn take_spare(&self, len: usize) -> Vec<u8> {
        let mut spare = self.0.borrow_mut();
        if len <= SMALL_PACKET {
            return spare
                .small
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(SMALL_PACKET));
        }
        let buf = spare.large.pop().unwrap_or_default();
        spare.large_bytes -= buf.capacity().min(spare.large_bytes);
        buf
    }

    pub fn give(&self, buf: Vec<u8>) {
        let mut spare = self.0.borrow_mut();
        let capacity = buf.capacity();
        if capacity < SMALL_PACKET {
            // Shrunk or never grown (a packet built elsewhere): not worth keeping.
        } else if capacity == SMALL_PACKET {
            if spare.small.len() < SMALL_SPARES {
                spare.small.push(buf);
            }
        } else if spare.large.len() < LARGE_SPARES
            && spare.large_bytes + capacity <= LARGE_SPARE_BYTES
        {
            spare.large_bytes += capacity;
            spare.large.push(buf);
        }
    }
}

#[derive(Debug, Default)]
pub struct Spares {
    /// Buffers of exactly [`SMALL_PACKET`] bytes' capacity.
    small: Vec<Vec<u8>>,
    /// Larger buffers, and their total capacity.
    large: Vec<Vec<u8>>,
    large_bytes: usize,
}

/// Packets queued in one direction.
#[derive(Debug, Default)]
pub struct PacketQueue {
    queue: VecDeque<Vec<u8>>,
    recycler: BufferRecycler,
}

impl PacketQueue {
    pub fn new(recycler: BufferRecycler) -> PacketQueue {
        PacketQueue {
            queue: VecDeque::new(),
            recycler,
        }
    }

    /// A buffer to fill (cleared, small); give it back with [`push`](Self::push) or
    /// [`recycle`](Self::recycle).
    pub fn take_buffer(&mut self) -> Vec<u8> {
        self.recycler.take()
    }

    /// A cleared buffer with room for `capacity` bytes (see [`BufferRecycler::take_capacity`]).
    pub fn take_capacity(&mut self, capacity: usize) -> Vec<u8> {
        self.recycler.take_capacity(capacity)
    }

    /// A buffer of `len` bytes to overwrite (see [`BufferRecycler::take_len`]).
    pub fn take_len(&mut self, len: usize) -> Vec<u8> {
        self.recycler.take_len(len)
    }

    pub fn push(&mut self, packet: Vec<u8>) {
        self.queue.push_back(packet);
    }

    /// Queue the packet `build` writes into a fresh buffer, or recycle the buffer when `build`
    /// says it could not (the engine's own replies: RST, ICMP errors, UDP, SERVFAIL).
    pub fn push_built(&mut self, build: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
        let mut out = self.take_buffer();
        let built = build(&mut out);
        if built {
            self.push(out);
        } else {
            self.recycle(out);
        }
        built
    }

    pub fn pop(&mut self) -> Option<Vec<u8>> {
        self.queue.pop_front()
    }

    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.recycler.give(buf);
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// A shard's device. `rx` holds packets from the app, `tx` packets for the app.
#[derive(Debug)]
pub struct QueueDevice {
    pub rx: PacketQueue,
    pub tx: PacketQueue,
    mtu: usize,
    /// The tun completes TCP checksums (`offload::output_header` marks them partial).
    tcp_checksum_offload: bool,
}

impl QueueDevice {
    pub fn new(mtu: usize, tcp_checksum_offload: bool, recycler: BufferRecycler) -> QueueDevice {
        QueueDevice {
            rx: PacketQueue::new(recycler.clone()),
            tx: PacketQueue::new(recycler),
            mtu,
            tcp_checksum_offload,
        }
    }
}

pub struct RxToken<'a> {
    packet: Vec<u8>,
    spare: &'a mut PacketQueue,
}

pub struct TxToken<'a> {
    tx: &'a mut PacketQueue,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let result = f(&self.packet);
        self.spare.recycle(self.packet);
        result
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut buf = self.tx.take_len(len);
        let result = f(&mut buf);
        self.tx.push(buf);
        result
    }
}

impl phy::Device for QueueDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let packet = self.rx.pop()?;
        Some((
            RxToken {
                packet,
                spare: &mut self.rx,
            },
            TxToken { tx: &mut self.tx },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        Some(TxToken { tx: &mut self.tx })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps.max_burst_size = None;
        // Packets come from the local kernel, which computed their checksums: verifying them
        // again costs CPU for nothing (with offload they are partial anyway). Outgoing checksums
        // must be right, or left to the tun's offload.
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Tx;
        checksum.tcp = if self.tcp_checksum_offload {
            Checksum::None
        } else {
            Checksum::Tx
        };
        checksum.udp = Checksum::Tx;
        checksum.icmpv4 = Checksum::Tx;
        checksum.icmpv6 = Checksum::Tx;
        caps.checksum = checksum;
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_packets_take_small_buffers_whatever_the_spares() {
        let recycler = BufferRecycler::default();
        recycler.give(Vec::with_capacity(65535));
        let ack = recycler.take_len(52);
        assert_eq!((ack.len(), ack.capacity()), (52, SMALL_PACKET));
        assert_eq!(recycler.take().capacity(), SMALL_PACKET);
        // The large spare is still there for a large packet.
        let large = recycler.take_len(40_000);
        assert_eq!(large.capacity(), 65535);
        assert!(large.iter().all(|&b| b == 0));
    }

    #[test]
    fn recycled_buffers_are_reused_by_size() {
        let recycler = BufferRecycler::default();
        let small = recycler.take();
        let small_at = small.as_ptr();
        let large = recycler.take_capacity(20_000);
        let large_at = large.as_ptr();
        recycler.give(large);
        recycler.give(small);
        let again_small = recycler.take_len(100);
        let again_large = recycler.take_capacity(10_000);
        assert_eq!(again_small.as_ptr(), small_at);
        assert_eq!(again_large.as_ptr(), large_at);
    }

    #[test]
    fn spares_are_bounded() {
        let recycler = BufferRecycler::default();
        for _ in 0..SMALL_SPARES + 10 {
            recycler.give(Vec::with_capacity(SMALL_PACKET));
        }
        for _ in 0..LARGE_SPARES {
            recycler.give(Vec::with_capacity(65535));
        }
        // A buffer smaller than a small one (built elsewhere) is not kept.
        recycler.give(Vec::with_capacity(100));
        let spares = recycler.0.borrow();
        assert_eq!(spares.small.len(), SMALL_SPARES);
        assert_eq!(spares.large.len(), LARGE_SPARE_BYTES / 65535);
        assert_eq!(spares.large_bytes, spares.large.len() * 65535);
    }
}
