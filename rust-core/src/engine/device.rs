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
#[derive(Clone, Debug, Default)]
pub struct BufferRecycler(Rc<RefCell<Spares>>);

/// Spare buffers kept, and their total capacity: with a 64 KiB MTU, 64 spares would already pin
/// 4 MiB. Beyond either limit buffers are freed.
const SPARE_LIMIT: usize = 64;
const SPARE_BYTES: usize = 1 << 20;
/// The most IP and TCP header bytes a packet smoltcp emits can have (IPv6 40 + TCP 60).
const HEADER_ROOM: usize = 100;

impl BufferRecycler {
    pub fn take(&self) -> Vec<u8> {
        let mut spare = self.0.borrow_mut();
        let mut buf = spare.buffers.pop().unwrap_or_default();
        spare.bytes -= buf.capacity().min(spare.bytes);
        buf.clear();
        buf
    }

    /// A buffer of exactly `len` bytes for smoltcp to fill. A recycled buffer keeps the bytes
    /// of its last packet, so only what it lacks is zero-filled, plus the header room: smoltcp
    /// writes every header field and copies the payload over the rest, but its option padding
    /// is left as found. Zero-filling a whole 64 KiB offload segment per packet cost as many
    /// instructions as copying its payload.
    pub fn take_len(&self, len: usize) -> Vec<u8> {
        let mut spare = self.0.borrow_mut();
        let mut buf = spare.buffers.pop().unwrap_or_default();
        spare.bytes -= buf.capacity().min(spare.bytes);
        drop(spare);
        let reused = buf.len().min(len).min(HEADER_ROOM);
        buf.resize(len, 0);
        buf[..reused].fill(0);
        buf
    }

    pub fn give(&self, buf: Vec<u8>) {
        let mut spare = self.0.borrow_mut();
        if spare.buffers.len() < SPARE_LIMIT && spare.bytes + buf.capacity() <= SPARE_BYTES {
            spare.bytes += buf.capacity();
            spare.buffers.push(buf);
        }
    }
}

#[derive(Debug, Default)]
pub struct Spares {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
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

    /// A buffer to fill (cleared); give it back with [`push`](Self::push) or
    /// [`recycle`](Self::recycle).
    pub fn take_buffer(&mut self) -> Vec<u8> {
        self.recycler.take()
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
