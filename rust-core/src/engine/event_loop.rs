//! The engine thread: a mio loop over the tun fd (edge-triggered: read in batches until
//! EAGAIN, then poll the shards once), the outbound sockets, and a waker for commands and owner
//! results. It sleeps until the nearest smoltcp or engine deadline, so an idle engine costs
//! nothing but its timers.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::flow::Event;
use crate::flow::FlowId;
use crate::owner::OwnerLookup;
use crate::owner::resolver::OwnerResolver;

use super::core::{Core, OWNER_HOLD, OwnerRequest};
use super::device::{PacketQueue, SMALL_PACKET};
use super::mio_host::{self, MioHost};
use super::offload;
use super::report::{Now, Reporter};
use super::{EngineConfig, EngineStats, Tuning};

const TUN: Token = Token(0);
/// The most buffer memory one batch of tun reads holds, counted by capacity: a 16 KiB packet
/// read at a 64 KiB MTU keeps its 64 KiB buffer until smoltcp has consumed it.
const MAX_BATCH_BYTES: usize = 512 * 1024;
const WAKER: Token = Token(1);

enum Command {
    Stats(Sender<EngineStats>),
    SetDnsUpstream(SocketAddr),
    Stop,
}

/// The handle `Engine` keeps on its thread.
pub struct Control {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<io::Result<EngineStats>>>,
}

impl Control {
    pub fn stats(&self) -> io::Result<EngineStats> {
        let (reply, answer) = mpsc::channel();
        self.commands
            .send(Command::Stats(reply))
            .map_err(|_| io::Error::other("engine thread ended"))?;
        self.waker.wake()?;
        answer
            .recv()
            .map_err(|_| io::Error::other("engine thread ended"))
    }

    pub fn set_dns_upstream(&self, upstream: SocketAddr) -> io::Result<()> {
        self.commands
            .send(Command::SetDnsUpstream(upstream))
            .map_err(|_| io::Error::other("engine thread ended"))?;
        self.waker.wake()
    }

    pub fn stop(mut self) -> io::Result<EngineStats> {
        let _ = self.commands.send(Command::Stop);
        let _ = self.waker.wake();
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("engine thread panicked")),
            None => Err(io::Error::other("engine already stopped")),
        }
    }
}

pub fn spawn(
    tun: OwnedFd,
    config: EngineConfig,
    tuning: Tuning,
    owner: Box<dyn OwnerLookup>,
    events: Sender<Event>,
) -> io::Result<Control> {
    set_nonblocking(tun.as_raw_fd())?;
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let registry = poll.registry().try_clone()?;
    let (commands, command_rx) = mpsc::channel();
    let resolver = OwnerResolver::spawn(
        owner,
        events.clone(),
        Arc::clone(&waker) as Arc<dyn crate::owner::resolver::Wake>,
    )?;
    let thread = std::thread::Builder::new()
        .name("phonehome-engine".into())
        .spawn(move || {
            let reporter = Reporter::new(events);
            let offload_mtu = tuning.tun_offload.then_some(config.mtu);
            let host = MioHost::new(
                registry,
                config.outbound.clone(),
                Some(tun.as_raw_fd()),
                offload_mtu,
                resolver,
            );
            let core = Core::new(config, tuning, host, reporter, true, Now::read());
            run(tun, poll, core, command_rx)
        })?;
    Ok(Control {
        commands,
        waker,
        thread: Some(thread),
    })
}

/// Hand the engine's new owner requests to the resolver thread.
fn ask_owners(core: &mut Core<MioHost>) {
    let requests: Vec<OwnerRequest> = core.take_owner_requests().collect();
    for request in requests {
        let owners = &core.host.owners;
        owners.request(request.flow, request.proto, request.local, request.remote);
    }
}

fn owner_answers(core: &mut Core<MioHost>) {
    let answers: Vec<(FlowId, Option<u32>)> = core.host.owners.results().collect();
    for (flow, uid) in answers {
        core.on_owner(flow, uid);
    }
}

/// Before the final events: let the owner lookups still running answer, for at most
/// `OWNER_HOLD`, so the last flows of a session are attributed too. The resolver's answers
/// wake the poll.
fn await_owners(poll: &mut Poll, core: &mut Core<MioHost>) {
    let deadline = std::time::Instant::now() + OWNER_HOLD;
    let mut events = Events::with_capacity(16);
    loop {
        owner_answers(core);
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if !core.owners_pending() || left.is_zero() {
            return;
        }
        if let Err(e) = poll.poll(&mut events, Some(left))
            && e.kind() != io::ErrorKind::Interrupted
        {
            return;
        }
    }
}

fn run(
    tun: OwnedFd,
    mut poll: Poll,
    mut core: Core<MioHost>,
    commands: Receiver<Command>,
) -> io::Result<EngineStats> {
    let fd = tun.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&fd), TUN, Interest::READABLE)?;
    let mut events = Events::with_capacity(256);
    let batch = core.tuning.batch.max(1);
    // With offload a read may be a 64 KiB TCP super-packet whatever the MTU.
    let mut reader = TunReader::new(
        fd,
        offload::shard_mtu(core.config.mtu, core.tuning.tun_offload),
    );
    // Try a read first: packets may have queued before registration.
    let mut tun_readable = true;
    let mut stopping = false;
    let mut tun_failed = false;
    loop {
        let now = Now::read();
        let timeout = if tun_readable {
            std::time::Duration::ZERO
        } else {
            core.timeout(now)
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout))
            && e.kind() != io::ErrorKind::Interrupted
        {
            return Err(e);
        }
        let now = Now::read();
        for event in events.iter() {
            match event.token() {
                TUN => tun_readable = true,
                WAKER => {
                    while let Ok(command) = commands.try_recv() {
                        match command {
                            Command::Stats(reply) => {
                                let _ = reply.send(core.stats());
                            }
                            Command::SetDnsUpstream(upstream) => core.set_dns_upstream(upstream),
                            Command::Stop => stopping = true,
                        }
                    }
                    owner_answers(&mut core);
                }
                token => {
                    if let Some(flow) = mio_host::flow_of(token) {
                        core.on_ready(
                            flow,
                            event.is_readable() || event.is_read_closed() || event.is_error(),
                            event.is_writable() || event.is_write_closed() || event.is_error(),
                            now,
                        )
                    }
                }
            }
        }
        if stopping {
            ask_owners(&mut core);
            await_owners(&mut poll, &mut core);
            let now = Now::read();
            core.shutdown(now);
            core.flush_tun(now);
            return Ok(core.stats());
        }
        if tun_readable && !tun_failed {
            // What the socket events decided goes out (and into the packet tap) before the tun
            // is read: a DNS answer that closed its flow must precede, in a pcapng too, the
            // next query on its 5-tuple, which opens another flow; tapped after it, a replay
            // would see one exchange where the engine had two.
            core.flush_tun(now);
            tun_readable = match reader.read_batch(&mut core, batch, now) {
                Ok(more) => more,
                Err(e) => {
                    // The device is gone (e.g. its namespace was torn down). Keep serving the
                    // outbound side and the commands so `stop` still closes and reports every
                    // flow.
                    log::error!("reading the tun failed, no more packets will be read: {e}");
                    tun_failed = true;
                    let _ = poll.registry().deregister(&mut SourceFd(&fd));
                    false
                }
            };
        }
        // Lookups start before the SYNs are served: the SYN-ACK waits for them.
        ask_owners(&mut core);
        core.process(now);
        core.on_timers(now);
        core.process(now);
        ask_owners(&mut core);
        core.flush_tun(now);
    }
}

/// Where tun reads land. With a large MTU (or offload) a read may bring 64 KiB, but most bring
/// an ACK: each read goes into one large buffer, and a packet that fits a small buffer is copied
/// into one so the large buffer serves the next read. A large packet keeps its buffer (no copy
/// on the bulk path) and a spare takes its place.
struct TunReader {
    fd: RawFd,
    mtu: usize,
    /// The read buffer when `mtu` exceeds a small buffer; reads go straight into a small one
    /// otherwise.
    large: Vec<u8>,
}

enum TunRead {
    Packet(Vec<u8>),
    /// No packet this time; `more`: the tun may still have some (no EAGAIN, no end of file).
    Stop {
        more: bool,
    },
}

impl TunReader {
    fn new(fd: RawFd, mtu: usize) -> TunReader {
        TunReader {
            fd,
            mtu,
            large: Vec::new(),
        }
    }

    /// Read up to `batch` packets. Returns whether the tun may still have more (no EAGAIN yet).
    fn read_batch(&mut self, core: &mut Core<MioHost>, batch: usize, now: Now) -> io::Result<bool> {
        // Also bounded in memory: 64 packets of a 64 KiB MTU would hold 4 MiB at once.
        let mut bytes = 0;
        for _ in 0..batch {
            if bytes >= MAX_BATCH_BYTES {
                return Ok(true);
            }
            let mut buf = match self.read_one(&mut core.to_tun, core.tuning.tun_offload)? {
                TunRead::Packet(buf) => buf,
                TunRead::Stop { more } => return Ok(more),
            };
            if let Some(tap) = &core.tuning.packet_tap {
                tap.offer(now.ms, &buf);
            }
            if core.tuning.tun_offload {
                // So smoltcp sends the app 64 KiB segments, which the kernel splits (offload.rs).
                offload::raise_syn_mss(&mut buf, offload::SYN_MSS);
            }
            bytes += buf.capacity();
            core.on_packet(buf, now);
        }
        Ok(true)
    }

    /// One packet, in a buffer from `spares` sized for it. `offload`: the tun puts a
    /// `virtio_net_hdr` before each packet.
    fn read_one(&mut self, spares: &mut PacketQueue, offload: bool) -> io::Result<TunRead> {
        let direct = self.mtu <= SMALL_PACKET;
        let mut buf = if direct {
            spares.take_buffer()
        } else {
            if self.large.capacity() < self.mtu {
                self.large = spares.take_capacity(self.mtu);
            }
            std::mem::take(&mut self.large)
        };
        buf.clear();
        // Read into spare capacity: zero-filling a large-MTU buffer per packet costs more than
        // the packet.
        buf.reserve_exact(self.mtu);
        let n = if offload {
            offload::read(self.fd, &mut buf)
        } else {
            // SAFETY: buf has capacity for buf.capacity() bytes (it is empty).
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.capacity()) };
            if n > 0 {
                // SAFETY: read initialized the first n bytes (n <= capacity).
                unsafe { buf.set_len(n as usize) };
            }
            n
        };
        if n <= 0 {
            let e = io::Error::last_os_error();
            if direct {
                spares.recycle(buf);
            } else {
                self.large = buf;
            }
            if n == 0 {
                // The other end of the tun is gone (socketpair) or the device went down: keep
                // serving the outbound side until stopped; nothing more will come.
                return Ok(TunRead::Stop { more: false });
            }
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(TunRead::Stop { more: false }),
                io::ErrorKind::Interrupted => Ok(TunRead::Stop { more: true }),
                _ => Err(e),
            };
        }
        if direct || buf.len() > SMALL_PACKET {
            return Ok(TunRead::Packet(buf));
        }
        let mut small = spares.take_buffer();
        small.extend_from_slice(&buf);
        self.large = buf;
        Ok(TunRead::Packet(small))
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a valid fd with integer arguments.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use super::*;
    use crate::engine::device::BufferRecycler;

    const MTU: usize = offload::SEGMENT_MTU;

    fn tun() -> (UnixDatagram, UnixDatagram) {
        let (engine_end, app) = UnixDatagram::pair().unwrap();
        engine_end.set_nonblocking(true).unwrap();
        (engine_end, app)
    }

    fn packet(reader: &mut TunReader, spares: &mut PacketQueue, offload: bool) -> Vec<u8> {
        match reader.read_one(spares, offload).unwrap() {
            TunRead::Packet(buf) => buf,
            TunRead::Stop { more } => panic!("no packet (more: {more})"),
        }
    }

    #[test]
    fn small_packets_are_copied_out_and_large_ones_keep_the_read_buffer() {
        let (engine_end, app) = tun();
        let mut spares = PacketQueue::new(BufferRecycler::default());
        let mut reader = TunReader::new(engine_end.as_raw_fd(), MTU);

        let ack = [0x45u8; 40];
        app.send(&ack).unwrap();
        let small = packet(&mut reader, &mut spares, false);
        assert_eq!(small, ack);
        assert_eq!(small.capacity(), SMALL_PACKET);
        assert!(
            reader.large.capacity() >= MTU,
            "the read buffer stays for the next read"
        );
        let read_buffer = reader.large.as_ptr();

        let segment: Vec<u8> = (0..30_000).map(|i| i as u8).collect();
        app.send(&segment).unwrap();
        let large = packet(&mut reader, &mut spares, false);
        assert_eq!(large, segment);
        assert_eq!(large.as_ptr(), read_buffer, "a large packet is not copied");

        // The next read gets a buffer of its own, here the recycled one.
        spares.recycle(large);
        app.send(&ack).unwrap();
        assert_eq!(packet(&mut reader, &mut spares, false), ack);
        assert_eq!(reader.large.as_ptr(), read_buffer);
    }

    #[test]
    fn the_offload_header_is_dropped_and_an_empty_tun_stops_the_batch() {
        let (engine_end, app) = tun();
        let mut spares = PacketQueue::new(BufferRecycler::default());
        let mut reader = TunReader::new(engine_end.as_raw_fd(), MTU);
        let mut framed = vec![0u8; offload::HEADER_LEN];
        framed.extend_from_slice(&[0x60; 60]);
        app.send(&framed).unwrap();
        assert_eq!(packet(&mut reader, &mut spares, true), [0x60; 60]);
        assert!(matches!(
            reader.read_one(&mut spares, true).unwrap(),
            TunRead::Stop { more: false }
        ));
    }

    #[test]
    fn a_small_mtu_reads_straight_into_small_buffers() {
        let (engine_end, app) = tun();
        let mut spares = PacketQueue::new(BufferRecycler::default());
        let mut reader = TunReader::new(engine_end.as_raw_fd(), 1500);
        app.send(&[0x45; 1500]).unwrap();
        let full = packet(&mut reader, &mut spares, false);
        assert_eq!(full, [0x45; 1500]);
        assert_eq!(full.capacity(), SMALL_PACKET);
        assert_eq!(reader.large.capacity(), 0);
    }
}
