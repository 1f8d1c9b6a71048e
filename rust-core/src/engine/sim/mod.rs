//! The flow engine on virtual time, as quinn-proto's `Pair` tests a connection: a [`Core`] with
//! a [`Host`] in memory, a smoltcp interface playing the app on the other side of the "tun", and
//! servers that are plain state the test drives (connect results, bytes, EOF, resets). No
//! thread, socket, sleep or wall clock: time moves only when the test says so, so timeouts are
//! tested exactly (one millisecond before, at the deadline) and every run is the same.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address};

use super::core::{Core, Flow, OWNER_HOLD, OwnerRequest};
use super::host::{DatagramSocket, Host, StreamSocket};
use super::packet::{self, Transport};
use super::report::{Now, Reporter};
use super::tests::{dns_answer, dns_query, pattern, udp_packet};
use super::{EngineConfig, Outbound, Tuning};
use crate::flow::{CloseReason, DnsRecord, Event, FlowId, FlowRecord, NameSource, Proto};

mod dns;
mod supervision;
mod tcp_flows;
mod udp_flows;

const APP_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const DNS_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 53);
const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), 443);
const UPSTREAM: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53)), 53);
/// Wall-clock milliseconds at virtual time zero (any fixed value).
const START_MS: i64 = 1_700_000_000_000;

/// A server's end of one relayed TCP flow, as the test sees and drives it.
#[derive(Debug, Default)]
struct ServerStream {
    /// None: the connect is in progress.
    connect: Option<Result<(), io::ErrorKind>>,
    /// Bytes the engine wrote to the server.
    received: Vec<u8>,
    /// Bytes the server sends, read by the engine.
    to_send: VecDeque<u8>,
    /// The server closed its side (read returns 0 once `to_send` is empty).
    eof: bool,
    /// The next read fails with this.
    read_error: Option<io::ErrorKind>,
    /// The app's FIN reached the server.
    write_shut: bool,
    /// The engine asked for a reset on close (SO_LINGER 0).
    reset: bool,
    closed: bool,
}

#[derive(Debug, Default)]
struct ServerDatagrams {
    /// Datagrams the engine sent.
    received: Vec<Vec<u8>>,
    /// Datagrams waiting to be read by the engine.
    to_send: VecDeque<Vec<u8>>,
    closed: bool,
}

#[derive(Default)]
struct Net {
    to_app: VecDeque<Vec<u8>>,
    streams: HashMap<FlowId, (SocketAddr, Rc<RefCell<ServerStream>>)>,
    datagrams: HashMap<FlowId, (SocketAddr, Rc<RefCell<ServerDatagrams>>)>,
}

#[derive(Clone, Default)]
struct SimHost(Rc<RefCell<Net>>);

struct SimStream(Rc<RefCell<ServerStream>>);
struct SimDatagram(Rc<RefCell<ServerDatagrams>>);

impl Host for SimHost {
    type Stream = SimStream;
    type Datagram = SimDatagram;

    fn transmit(&mut self, packet: &mut [u8]) -> io::Result<()> {
        self.0.borrow_mut().to_app.push_back(packet.to_vec());
        Ok(())
    }

    fn owner_now(&mut self, _: Proto, _: SocketAddr, _: SocketAddr) -> Option<u32> {
        None
    }

    fn tcp_connect(&mut self, flow: FlowId, dst: SocketAddr) -> io::Result<SimStream> {
        let server = Rc::new(RefCell::new(ServerStream::default()));
        self.0
            .borrow_mut()
            .streams
            .insert(flow, (dst, Rc::clone(&server)));
        Ok(SimStream(server))
    }

    fn udp_connect(&mut self, flow: FlowId, dst: SocketAddr) -> io::Result<SimDatagram> {
        let server = Rc::new(RefCell::new(ServerDatagrams::default()));
        self.0
            .borrow_mut()
            .datagrams
            .insert(flow, (dst, Rc::clone(&server)));
        Ok(SimDatagram(server))
    }

    fn ping_connect(&mut self, flow: FlowId, dst: SocketAddr) -> io::Result<SimDatagram> {
        self.udp_connect(flow, dst)
    }

    fn close_stream(&mut self, stream: SimStream) {
        stream.0.borrow_mut().closed = true;
    }

    fn close_datagram(&mut self, socket: SimDatagram) {
        socket.0.borrow_mut().closed = true;
    }
}

impl io::Read for SimStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut server = self.0.borrow_mut();
        if let Some(kind) = server.read_error.take() {
            return Err(kind.into());
        }
        if server.to_send.is_empty() {
            return if server.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(server.to_send.len());
        for (slot, byte) in buf.iter_mut().zip(server.to_send.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

impl io::Write for SimStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().received.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl StreamSocket for SimStream {
    fn connect_result(&mut self) -> Option<io::Result<()>> {
        self.0.borrow().connect.map(|r| r.map_err(io::Error::from))
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.0.borrow_mut().write_shut = true;
        Ok(())
    }

    fn reset_on_close(&mut self) {
        self.0.borrow_mut().reset = true;
    }
}

impl DatagramSocket for SimDatagram {
    fn send(&mut self, datagram: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().received.push(datagram.to_vec());
        Ok(datagram.len())
    }

    fn recv(&mut self, into: &mut [u8]) -> io::Result<usize> {
        let Some(datagram) = self.0.borrow_mut().to_send.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let n = datagram.len().min(into.len());
        into[..n].copy_from_slice(&datagram[..n]);
        Ok(n)
    }
}

/// The app's network interface: packets from the engine in, packets to it out.
#[derive(Default)]
struct AppDevice {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

struct AppRx(Vec<u8>);
struct AppTx<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for AppRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for AppTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl phy::Device for AppDevice {
    type RxToken<'a> = AppRx;
    type TxToken<'a> = AppTx<'a>;
    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(AppRx, AppTx<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((AppRx(packet), AppTx(&mut self.tx)))
    }
    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<AppTx<'_>> {
        Some(AppTx(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

/// The engine, the app and the servers, on one virtual clock.
struct Sim {
    core: Core<SimHost>,
    host: SimHost,
    events: Receiver<Event>,
    seen: Vec<Event>,
    owner_requests: Vec<OwnerRequest>,
    app: Interface,
    app_sockets: SocketSet<'static>,
    app_device: AppDevice,
    /// Packets the engine sent to the app that were not TCP (UDP, ICMP), for the test to read.
    datagrams_to_app: Vec<Vec<u8>>,
    /// The app vanished: its packets are neither delivered nor sent.
    app_gone: bool,
    epoch: Instant,
    elapsed: Duration,
}

fn tuning() -> Tuning {
    Tuning {
        shards: 4,
        ..Tuning::default()
    }
}

impl Sim {
    fn new(tuning: Tuning) -> Sim {
        let config = EngineConfig {
            dns_v4: DNS_IP,
            dns_v6: None,
            dns_upstream: UPSTREAM,
            mtu: 1500,
            outbound: Outbound::default(),
        };
        let (events_tx, events) = channel();
        let host = SimHost::default();
        let epoch = Instant::now();
        let now = Now {
            mono: epoch,
            ms: START_MS,
        };
        let core = Core::new(
            config,
            tuning,
            host.clone(),
            Reporter::new(events_tx),
            true,
            now,
        );
        let mut app_device = AppDevice::default();
        let mut app = Interface::new(
            Config::new(HardwareAddress::Ip),
            &mut app_device,
            smoltcp::time::Instant::from_millis(0),
        );
        app.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::Ipv4(APP_IP), 15)).unwrap();
        });
        app.routes_mut()
            .add_default_ipv4_route(Ipv4Address::new(198, 18, 0, 1))
            .unwrap();
        Sim {
            core,
            host,
            events,
            seen: Vec::new(),
            owner_requests: Vec::new(),
            app,
            app_sockets: SocketSet::new(Vec::new()),
            app_device,
            datagrams_to_app: Vec::new(),
            app_gone: false,
            epoch,
            elapsed: Duration::ZERO,
        }
    }

    fn now(&self) -> Now {
        Now {
            mono: self.epoch + self.elapsed,
            ms: START_MS + self.elapsed.as_millis() as i64,
        }
    }

    fn app_now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.elapsed.as_micros() as i64)
    }

    /// Run the app and the engine until neither has anything more to say at this instant, as
    /// the event loop would: packets in, readiness of every server socket, timers, packets out.
    fn settle(&mut self) {
        for _ in 0..64 {
            let now = self.now();
            let app_now = self.app_now();
            if self.app_gone {
                self.app_device.rx.clear();
            } else {
                self.app
                    .poll(app_now, &mut self.app_device, &mut self.app_sockets);
            }
            let from_app: Vec<Vec<u8>> = self.app_device.tx.drain(..).collect();
            let quiet = from_app.is_empty();
            for packet in from_app {
                self.core.on_packet(packet, now);
            }
            self.owner_requests.extend(self.core.take_owner_requests());
            self.ready_all(now);
            self.core.process(now);
            self.core.on_timers(now);
            self.core.process(now);
            self.core.flush_tun(now);
            let to_app: Vec<Vec<u8>> = self.host.0.borrow_mut().to_app.drain(..).collect();
            let quiet = quiet && to_app.is_empty();
            for packet in to_app {
                match packet::parse(&packet).map(|p| p.transport) {
                    Ok(Transport::Tcp { .. }) => self.app_device.rx.push_back(packet),
                    _ => self.datagrams_to_app.push(packet),
                }
            }
            self.seen.extend(self.events.try_iter());
            if quiet {
                return;
            }
        }
        panic!("the engine and the app did not settle");
    }

    /// Every server socket reports readiness, as an edge-triggered poll would after any change.
    fn ready_all(&mut self, now: Now) {
        let (streams, datagrams): (Vec<FlowId>, Vec<FlowId>) = {
            let net = self.host.0.borrow();
            (
                net.streams
                    .iter()
                    .filter(|(_, (_, s))| !s.borrow().closed)
                    .map(|(id, _)| *id)
                    .collect(),
                net.datagrams
                    .iter()
                    .filter(|(_, (_, d))| !d.borrow().closed && !d.borrow().to_send.is_empty())
                    .map(|(id, _)| *id)
                    .collect(),
            )
        };
        for id in streams {
            self.core.on_ready(id, true, true, now);
        }
        for id in datagrams {
            self.core.on_ready(id, true, false, now);
        }
    }

    fn advance(&mut self, by: Duration) {
        self.elapsed += by;
        self.settle();
    }

    fn answer_owner(&mut self, flow: FlowId, uid: Option<u32>) {
        self.core.on_owner(flow, uid);
        self.settle();
    }

    fn connect(&mut self, dst: SocketAddr, local_port: u16) -> SocketHandle {
        let rx = tcp::SocketBuffer::new(vec![0u8; 64 * 1024]);
        let tx = tcp::SocketBuffer::new(vec![0u8; 64 * 1024]);
        let mut socket = tcp::Socket::new(rx, tx);
        let IpAddr::V4(ip) = dst.ip() else {
            unreachable!("the simulation is IPv4")
        };
        socket
            .connect(
                self.app.context(),
                (IpAddress::Ipv4(ip), dst.port()),
                (IpAddress::Ipv4(APP_IP), local_port),
            )
            .unwrap();
        let handle = self.app_sockets.add(socket);
        self.settle();
        handle
    }

    fn app_socket(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.app_sockets.get_mut::<tcp::Socket>(handle)
    }

    fn app_state(&mut self, handle: SocketHandle) -> tcp::State {
        self.app_socket(handle).state()
    }

    fn app_received(&mut self, handle: SocketHandle) -> Vec<u8> {
        let socket = self.app_socket(handle);
        let mut got = Vec::new();
        while socket.can_recv() {
            socket
                .recv(|b| {
                    got.extend_from_slice(b);
                    (b.len(), ())
                })
                .unwrap();
        }
        got
    }

    /// The only server stream opened so far, with its flow.
    fn server(&self) -> (FlowId, Rc<RefCell<ServerStream>>) {
        let net = self.host.0.borrow();
        assert_eq!(net.streams.len(), 1, "one outbound connection");
        let (&id, (_, server)) = net.streams.iter().next().unwrap();
        (id, Rc::clone(server))
    }

    fn server_datagrams(&self) -> (FlowId, SocketAddr, Rc<RefCell<ServerDatagrams>>) {
        let net = self.host.0.borrow();
        assert_eq!(net.datagrams.len(), 1, "one outbound datagram socket");
        let (&id, (dst, server)) = net.datagrams.iter().next().unwrap();
        (id, *dst, Rc::clone(server))
    }

    /// Final records, upserted by id as the store does.
    fn closed_flows(&self) -> Vec<FlowRecord> {
        let mut flows: Vec<FlowRecord> = Vec::new();
        for event in &self.seen {
            if let Event::FlowClosed(record) = event {
                match flows.iter_mut().find(|f| f.id == record.id) {
                    Some(known) => *known = record.clone(),
                    None => flows.push(record.clone()),
                }
            }
        }
        flows
    }

    fn dns_records(&self) -> Vec<DnsRecord> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                Event::Dns(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }

    /// Open a TCP flow to SERVER and take it to established: connect succeeds, owner `uid`.
    fn established(
        &mut self,
        uid: Option<u32>,
    ) -> (SocketHandle, FlowId, Rc<RefCell<ServerStream>>) {
        let established = self.established_at(40000, uid);
        assert_eq!(
            self.host.0.borrow().streams.len(),
            1,
            "one outbound connection"
        );
        established
    }

    /// The same from the app's `local_port`, beside the flows already open.
    fn established_at(
        &mut self,
        local_port: u16,
        uid: Option<u32>,
    ) -> (SocketHandle, FlowId, Rc<RefCell<ServerStream>>) {
        let handle = self.connect(SERVER, local_port);
        let (id, server) = {
            let net = self.host.0.borrow();
            let newest = net.streams.iter().max_by_key(|(id, _)| **id);
            let (&id, (_, server)) = newest.expect("an outbound connection");
            (id, Rc::clone(server))
        };
        server.borrow_mut().connect = Some(Ok(()));
        self.answer_owner(id, uid);
        assert_eq!(self.app_state(handle), tcp::State::Established);
        (handle, id, server)
    }

    /// Bytes of TCP flow `id`'s rings resident in memory.
    fn ring_resident(&self, id: FlowId) -> usize {
        match self.core.flows.get(&id) {
            Some(Flow::Tcp(flow)) => flow.buffers.as_ref().map_or(0, |b| b.resident()),
            _ => panic!("flow {id} is not an open TCP flow"),
        }
    }
}

/// (src, dst, payload) of a UDP packet the engine sent to the app.
fn udp_of(packet: &[u8]) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
    let parsed = packet::parse(packet).ok()?;
    match parsed.transport {
        Transport::Udp { .. } => Some((
            parsed.src_addr(),
            parsed.dst_addr(),
            packet[parsed.payload.0..parsed.payload.1].to_vec(),
        )),
        _ => None,
    }
}
