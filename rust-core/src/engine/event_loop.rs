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
use crate::owner::OwnerLookup;
use crate::owner::resolver::OwnerResolver;

use super::core::Core;
use super::offload;
use super::report::{Now, Reporter};
use super::{EngineConfig, EngineStats, Tuning};

const TUN: Token = Token(0);
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
            let core = Core::new(config, tuning, registry, reporter, Some(resolver));
            run(tun, poll, core, command_rx)
        })?;
    Ok(Control {
        commands,
        waker,
        thread: Some(thread),
    })
}

fn run(
    tun: OwnedFd,
    mut poll: Poll,
    mut core: Core,
    commands: Receiver<Command>,
) -> io::Result<EngineStats> {
    let fd = tun.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&fd), TUN, Interest::READABLE)?;
    core.tun_fd = Some(fd);
    let mut events = Events::with_capacity(256);
    let batch = core.tuning.batch.max(1);
    // With offload a read may be a 64 KiB TCP super-packet whatever the MTU.
    let mtu = offload::shard_mtu(core.config.mtu, core.tuning.tun_offload);
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
                    core.owner_results();
                }
                token => core.on_ready(
                    token,
                    event.is_readable() || event.is_read_closed() || event.is_error(),
                    event.is_writable() || event.is_write_closed() || event.is_error(),
                    now,
                ),
            }
        }
        if stopping {
            core.shutdown(now);
            core.flush_tun();
            return Ok(core.stats());
        }
        if tun_readable && !tun_failed {
            tun_readable = match read_tun(fd, &mut core, batch, mtu, now) {
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
        core.process(now);
        core.on_timers(now);
        core.process(now);
        core.flush_tun();
    }
}

/// Read up to `batch` packets. Returns whether the tun may still have more (no EAGAIN yet).
fn read_tun(fd: RawFd, core: &mut Core, batch: usize, mtu: usize, now: Now) -> io::Result<bool> {
    // Also bounded in bytes: 64 packets of a 64 KiB MTU would hold 4 MiB at once.
    let mut bytes = 0;
    for _ in 0..batch {
        if bytes >= MAX_BATCH_BYTES {
            return Ok(true);
        }
        let mut buf = core.to_tun.take_buffer();
        // Read into spare capacity: zero-filling a large-MTU buffer per packet costs more than
        // the packet.
        buf.reserve(mtu);
        let n = if core.tuning.tun_offload {
            offload::read(fd, &mut buf)
        } else {
            // SAFETY: buf has capacity for buf.capacity() bytes (it is empty).
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.capacity()) };
            if n > 0 {
                // SAFETY: read initialized the first n bytes (n <= capacity).
                unsafe { buf.set_len(n as usize) };
            }
            n
        };
        if n < 0 {
            core.to_tun.recycle(buf);
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(false),
                io::ErrorKind::Interrupted => Ok(true),
                _ => Err(e),
            };
        }
        if n == 0 {
            core.to_tun.recycle(buf);
            // The other end of the tun is gone (socketpair) or the device went down: keep
            // serving the outbound side until stopped; nothing more will come.
            return Ok(false);
        }
        if let Some(tap) = &core.tuning.packet_tap {
            tap.offer(now.ms, &buf);
        }
        if core.tuning.tun_offload {
            // So smoltcp sends the app 64 KiB segments, which the kernel splits (offload.rs).
            offload::raise_syn_mss(&mut buf, offload::SYN_MSS);
        }
        bytes += n as usize;
        core.on_packet(buf, now);
    }
    Ok(true)
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
