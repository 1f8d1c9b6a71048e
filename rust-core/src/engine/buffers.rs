//! Memory for the smoltcp socket buffers, mapped straight from the kernel.
//!
//! Each TCP flow needs an rx and a tx ring (128 KiB each by default, for throughput). Allocated
//! from the heap, `calloc` may touch every page and freed memory rarely returns to the system,
//! so 1,000 flows would pin 256 MB. Mapped anonymously instead, a ring only costs the pages the
//! flow actually used (smoltcp rewinds an empty tx ring to its start, so a flow that sends a few
//! KiB touches a few pages), and `MADV_DONTNEED` hands those pages back when the flow ends. Free
//! regions are kept (unmapped pages cost no memory) for reuse up to a limit.
//!
//! Most connections are short (a request, a response, a close) and touch a few pages of each
//! ring. Handing those back and faulting them in again for the next connection cost a system
//! call and a page fault or two per connection, so a few such regions stay warm: released as
//! they are, up to [`WARM_REGIONS`] of them, at most [`WARM_BYTES`] written into each ring.

use std::ptr::NonNull;

use smoltcp::socket::tcp::SocketBuffer;

/// One mapping holding a flow's rx ring followed by its tx ring.
#[derive(Debug)]
pub struct TcpBuffers {
    ptr: NonNull<u8>,
    rx_len: usize,
    tx_len: usize,
}

// SAFETY: the region is plain memory owned by whoever holds the `TcpBuffers`.
unsafe impl Send for TcpBuffers {}

impl TcpBuffers {
    /// The rings for a new smoltcp socket. The caller must give `self` back to
    /// [`BufferPool::release`] only after the socket has been dropped (see `Shard::remove`).
    pub fn rings(&self) -> (SocketBuffer<'static>, SocketBuffer<'static>) {
        // SAFETY: the region is mapped, rx_len + tx_len long, and the two slices do not
        // overlap. Nothing else accesses it until the socket holding the slices is dropped and
        // the region is released (single owner: the flow that holds this `TcpBuffers`).
        unsafe {
            let rx = std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.rx_len);
            let tx =
                std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(self.rx_len), self.tx_len);
            (SocketBuffer::new(rx), SocketBuffer::new(tx))
        }
    }

    fn len(&self) -> usize {
        self.rx_len + self.tx_len
    }

    /// Bytes of pages the rx ring may hold resident after `written` bytes went through it
    /// since it was last trimmed.
    pub fn rx_touched(&self, written: u64) -> usize {
        pages_spanned(written, self.rx_len)
    }

    /// Same for the tx ring.
    pub fn tx_touched(&self, written: u64) -> usize {
        pages_spanned(written, self.tx_len)
    }

    /// Give the rx ring's pages back to the system. Call only while the ring holds nothing
    /// smoltcp will read: no queued bytes and no out-of-order segments (see `TcpFlow::trim`).
    pub fn trim_rx(&self) {
        // SAFETY: the range lies in our mapping. The pages hold only free ring space, which
        // smoltcp writes before it reads; after MADV_DONTNEED they read as zeros, as if this
        // (single) thread had written zeros there.
        unsafe { libc::madvise(self.ptr.as_ptr().cast(), self.rx_len, libc::MADV_DONTNEED) };
    }

    /// Same for the tx ring: call only when it holds no unacknowledged data.
    pub fn trim_tx(&self) {
        // SAFETY: as in `trim_rx`; the tx ring follows the rx ring in the mapping.
        unsafe {
            libc::madvise(
                self.ptr.as_ptr().add(self.rx_len).cast(),
                self.tx_len,
                libc::MADV_DONTNEED,
            )
        };
    }
}

#[cfg(test)]
impl TcpBuffers {
    /// Bytes of the rings resident in memory (`mincore`): what trimming must give back.
    pub fn resident(&self) -> usize {
        let page = page_size();
        let mut pages = vec![0u8; self.len().div_ceil(page)];
        // SAFETY: the range is our mapping, and `pages` has one byte per page of it.
        let rc = unsafe { libc::mincore(self.ptr.as_ptr().cast(), self.len(), pages.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        pages.iter().filter(|&&p| p & 1 != 0).count() * page
    }
}

/// Released regions kept with their pages resident, for the next short connection.
pub const WARM_REGIONS: usize = 16;

/// A region stays warm only if its flow moved at most this many bytes each way, so the warm
/// regions hold at most `WARM_REGIONS * 2 * (WARM_BYTES + page)` (640 KiB) of resident pages.
pub const WARM_BYTES: u64 = 16 * 1024;

pub struct BufferPool {
    rx_len: usize,
    tx_len: usize,
    /// Regions whose pages went back to the system.
    free: Vec<TcpBuffers>,
    keep: usize,
    /// Regions of short flows, released without giving their few pages back.
    warm: Vec<TcpBuffers>,
}

impl BufferPool {
    pub fn new(rx_len: usize, tx_len: usize, keep: usize) -> BufferPool {
        let page = page_size();
        let round = |n: usize| n.max(page).div_ceil(page) * page;
        BufferPool {
            rx_len: round(rx_len),
            tx_len: round(tx_len),
            free: Vec::new(),
            keep,
            warm: Vec::with_capacity(WARM_REGIONS),
        }
    }

    pub fn acquire(&mut self) -> Option<TcpBuffers> {
        if let Some(buffers) = self.warm.pop().or_else(|| self.free.pop()) {
            return Some(buffers);
        }
        let len = self.rx_len + self.tx_len;
        // SAFETY: anonymous private mapping, no file; checked for MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        NonNull::new(ptr.cast()).map(|ptr| TcpBuffers {
            ptr,
            rx_len: self.rx_len,
            tx_len: self.tx_len,
        })
    }

    /// Return a region whose socket is gone, after its flow moved `moved` bytes at most in
    /// either direction (each ring's pages span no more than that plus a page: smoltcp rewinds
    /// an empty tx ring, and a new rx ring starts at its start). Its pages go back to the system
    /// unless it stays warm.
    pub fn release(&mut self, buffers: TcpBuffers, moved: u64) {
        if moved <= WARM_BYTES && self.warm.len() < WARM_REGIONS {
            self.warm.push(buffers);
        } else if self.free.len() < self.keep {
            // SAFETY: the region is mapped and no socket references it any more.
            unsafe {
                libc::madvise(
                    buffers.ptr.as_ptr().cast(),
                    buffers.len(),
                    libc::MADV_DONTNEED,
                )
            };
            self.free.push(buffers);
        } else {
            unmap(buffers);
        }
    }
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        for buffers in self.free.drain(..).chain(self.warm.drain(..)) {
            unmap(buffers);
        }
    }
}

fn unmap(buffers: TcpBuffers) {
    // SAFETY: the region was mapped by `acquire` with this length and is no longer referenced.
    unsafe { libc::munmap(buffers.ptr.as_ptr().cast(), buffers.len()) };
}

/// Bytes of the pages that `written` bytes can span in a ring of `ring_len` bytes, as an upper
/// bound: smoltcp writes the rx ring wherever its read position has got to (it never rewinds
/// it), so a run of bytes starts at any offset and covers one page more than its length.
/// Counting bytes instead undercounted by a page or two per ring: at 1,000 echo flows, 3 MB
/// of resident pages that the budget did not see.
fn pages_spanned(written: u64, ring_len: usize) -> usize {
    if written == 0 {
        return 0;
    }
    let page = page_size() as u64;
    let pages = written.saturating_add(2 * page - 2) / page;
    usize::try_from(pages.saturating_mul(page))
        .unwrap_or(usize::MAX)
        .min(ring_len)
}

pub(in crate::engine) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as usize } else { 4096 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_reused_and_zeroed_after_release() {
        let mut pool = BufferPool::new(1000, 5000, 4);
        let buffers = pool.acquire().unwrap();
        assert_eq!(buffers.resident(), 0, "a new region costs no memory");
        {
            let (mut rx, mut tx) = buffers.rings();
            assert_eq!(rx.capacity(), 4096);
            assert_eq!(tx.capacity(), 8192);
            assert_eq!(rx.enqueue_slice(b"abc"), 3);
            assert_eq!(tx.enqueue_slice(&[7u8; 8192]), 8192);
        }
        assert_eq!(buffers.resident(), 3 * 4096, "the pages written");
        let first = buffers.ptr;
        pool.release(buffers, WARM_BYTES + 1);
        let again = pool.acquire().unwrap();
        assert_eq!(again.ptr, first);
        let (mut rx, _tx) = again.rings();
        let mut out = [1u8; 3];
        // A fresh ring over released pages reads zeros: the old contents are gone.
        rx.enqueue_unallocated(3);
        assert_eq!(rx.dequeue_slice(&mut out), 3);
        assert_eq!(out, [0, 0, 0]);
        drop(rx);
        pool.release(again, WARM_BYTES + 1);
    }

    /// smoltcp receives into the rx ring at its read position, which moves on and never goes
    /// back to the start: a segment's bytes straddle a page more than their length.
    #[test]
    fn the_estimate_covers_the_pages_a_marching_rx_ring_touches() {
        let mut pool = BufferPool::new(64 * 1024, 4096, 4);
        let buffers = pool.acquire().unwrap();
        let (mut rx, _tx) = buffers.rings();
        let receive = |rx: &mut SocketBuffer<'static>, mut n: usize| {
            while n > 0 {
                let room = rx.get_unallocated(0, n);
                let len = room.len();
                room.fill(0x61);
                rx.enqueue_unallocated(len);
                n -= len;
            }
        };
        // One short request read and passed on, then the ring trimmed: it is empty, its
        // pages gone, and its read position 1,000 bytes in.
        receive(&mut rx, 1000);
        assert_eq!(rx.dequeue_many(1000).len(), 1000);
        buffers.trim_rx();
        assert_eq!(buffers.resident(), 0);
        receive(&mut rx, 16 * 1024);
        assert_eq!(
            buffers.resident(),
            5 * 4096,
            "16 KiB from offset 1,000 span 5 pages"
        );
        assert_eq!(buffers.rx_touched(16 * 1024), 5 * 4096);
        assert_eq!(buffers.rx_touched(1), 4096);
        assert_eq!(buffers.rx_touched(0), 0);
        assert_eq!(
            buffers.rx_touched(u64::MAX),
            64 * 1024,
            "never more than the ring"
        );
        drop(rx);
        pool.release(buffers, WARM_BYTES + 1);
    }

    #[test]
    fn short_flows_regions_stay_warm_up_to_the_limit() {
        let mut pool = BufferPool::new(4096, 4096, 64);
        let regions: Vec<_> = (0..WARM_REGIONS + 2)
            .map(|_| {
                let buffers = pool.acquire().unwrap();
                let (mut rx, _) = buffers.rings();
                assert_eq!(rx.enqueue_slice(b"GET / HTTP/1.1"), 14);
                drop(rx);
                buffers
            })
            .collect();
        for buffers in regions {
            pool.release(buffers, 14);
        }
        let again: Vec<_> = (0..WARM_REGIONS + 2)
            .map(|_| pool.acquire().unwrap())
            .collect();
        let resident: Vec<usize> = again.iter().map(TcpBuffers::resident).collect();
        // The last WARM_REGIONS released come back first, with their written page; the two
        // released beyond the limit gave their pages back.
        let warm = resident.iter().filter(|&&r| r == 4096).count();
        assert_eq!(warm, WARM_REGIONS, "{resident:?}");
        assert_eq!(
            resident.iter().filter(|&&r| r == 0).count(),
            2,
            "{resident:?}"
        );
        for buffers in again {
            pool.release(buffers, WARM_BYTES + 1);
        }
    }
}
