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

#[test]
fn the_syn_ack_waits_for_the_connect_and_then_the_owner() {
    let mut sim = Sim::new(tuning());
    let handle = sim.connect(SERVER, 40000);
    let (id, server) = sim.server();
    assert_eq!(
        sim.owner_requests.len(),
        1,
        "the owner lookup starts with the SYN"
    );
    assert_eq!(
        sim.owner_requests[0].local,
        SocketAddr::new(APP_IP.into(), 40000)
    );
    sim.advance(Duration::from_millis(50));
    assert_eq!(sim.app_state(handle), tcp::State::SynSent, "no connect yet");
    server.borrow_mut().connect = Some(Ok(()));
    sim.advance(Duration::from_millis(1));
    assert_eq!(
        sim.app_state(handle),
        tcp::State::SynSent,
        "owner not known yet"
    );
    sim.answer_owner(id, Some(10123));
    assert_eq!(sim.app_state(handle), tcp::State::Established);
    sim.core.shutdown(sim.now());
    sim.settle();
    // The first event after the open already carries the owner.
    let first_with_uid = sim.seen.iter().skip(1).find_map(|e| match e {
        Event::Flow(r) | Event::FlowClosed(r) => Some(r.uid),
        _ => None,
    });
    assert_eq!(first_with_uid, Some(Some(10123)));
    let flows = sim.closed_flows();
    assert_eq!(flows[0].uid, Some(10123));
    assert_eq!(flows[0].close_reason, Some(CloseReason::EngineStop));
}

#[test]
fn an_owner_that_answers_before_the_connect_releases_the_syn_ack_on_connect() {
    let mut sim = Sim::new(tuning());
    let handle = sim.connect(SERVER, 40000);
    let (id, server) = sim.server();
    sim.answer_owner(id, Some(10123));
    assert_eq!(sim.app_state(handle), tcp::State::SynSent);
    server.borrow_mut().connect = Some(Ok(()));
    sim.settle();
    assert_eq!(sim.app_state(handle), tcp::State::Established);
}

#[test]
fn an_owner_that_never_answers_holds_the_syn_ack_for_owner_hold_exactly() {
    let mut sim = Sim::new(tuning());
    let handle = sim.connect(SERVER, 40000);
    let (_, server) = sim.server();
    server.borrow_mut().connect = Some(Ok(()));
    sim.settle();
    sim.advance(OWNER_HOLD - Duration::from_millis(1));
    assert_eq!(sim.app_state(handle), tcp::State::SynSent);
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.app_state(handle), tcp::State::Established);
    // Unattributed, but relayed.
    sim.app_socket(handle).send_slice(b"hello").unwrap();
    sim.settle();
    assert_eq!(server.borrow().received, b"hello");
}

#[test]
fn an_owner_that_answers_after_the_close_resends_the_final_record_with_the_uid() {
    let mut sim = Sim::new(tuning());
    let handle = sim.connect(SERVER, 40000);
    let (id, server) = sim.server();
    server.borrow_mut().connect = Some(Ok(()));
    sim.settle();
    sim.advance(OWNER_HOLD);
    assert_eq!(sim.app_state(handle), tcp::State::Established);
    sim.app_socket(handle).abort();
    sim.settle();
    assert_eq!(sim.closed_flows()[0].uid, None);
    sim.answer_owner(id, Some(10077));
    let flows = sim.closed_flows();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].uid, Some(10077));
    assert_eq!(flows[0].close_reason, Some(CloseReason::ResetByClient));
}

#[test]
fn a_connect_that_never_completes_times_out_with_a_reset() {
    let mut t = tuning();
    t.connect_timeout = Duration::from_secs(20);
    let mut sim = Sim::new(t);
    let handle = sim.connect(SERVER, 40000);
    let (id, server) = sim.server();
    sim.answer_owner(id, None);
    // The app retransmits its SYN meanwhile; the sweep runs every second.
    for _ in 0..19 {
        sim.advance(Duration::from_secs(1));
    }
    assert_eq!(sim.app_state(handle), tcp::State::SynSent);
    sim.advance(Duration::from_secs(2));
    assert_eq!(
        sim.app_state(handle),
        tcp::State::Closed,
        "reset after the timeout"
    );
    assert!(server.borrow().closed);
    assert_eq!(
        sim.closed_flows()[0].close_reason,
        Some(CloseReason::ConnectFailed)
    );
}

#[test]
fn a_refused_connect_resets_the_app_at_once() {
    let mut sim = Sim::new(tuning());
    let handle = sim.connect(SERVER, 40000);
    let (_, server) = sim.server();
    server.borrow_mut().connect = Some(Err(io::ErrorKind::ConnectionRefused));
    sim.settle();
    assert_eq!(sim.app_state(handle), tcp::State::Closed);
    assert_eq!(
        sim.closed_flows()[0].close_reason,
        Some(CloseReason::Refused)
    );
}

#[test]
fn an_idle_flow_expires_after_the_tcp_idle_timeout_with_resets_both_ways() {
    let mut t = tuning();
    t.tcp_idle_timeout = Duration::from_secs(7200);
    let mut sim = Sim::new(t);
    let (handle, _, server) = sim.established(Some(10001));
    sim.advance(Duration::from_secs(7198));
    assert_eq!(sim.app_state(handle), tcp::State::Established);
    assert!(sim.closed_flows().is_empty());
    sim.advance(Duration::from_secs(3));
    assert_eq!(sim.app_state(handle), tcp::State::Closed);
    let server = server.borrow();
    assert!(
        server.closed && server.reset,
        "the server is reset, not left open"
    );
    assert_eq!(sim.closed_flows()[0].close_reason, Some(CloseReason::Idle));
}

#[test]
fn a_half_closed_app_still_gets_the_answer_and_the_flow_ends_with_fins() {
    let mut sim = Sim::new(tuning());
    let (handle, _, server) = sim.established(Some(10001));
    sim.app_socket(handle)
        .send_slice(b"GET / HTTP/1.0\r\n\r\n")
        .unwrap();
    sim.app_socket(handle).close();
    sim.settle();
    assert!(
        server.borrow().write_shut,
        "the app's FIN reached the server"
    );
    assert_eq!(server.borrow().received, b"GET / HTTP/1.0\r\n\r\n");
    server
        .borrow_mut()
        .to_send
        .extend(b"HTTP/1.0 200 OK\r\n\r\nbody".iter());
    server.borrow_mut().eof = true;
    sim.settle();
    assert_eq!(sim.app_received(handle), b"HTTP/1.0 200 OK\r\n\r\nbody");
    sim.advance(Duration::from_millis(10));
    let flows = sim.closed_flows();
    assert_eq!(flows[0].close_reason, Some(CloseReason::Fin));
    assert_eq!((flows[0].bytes_up, flows[0].bytes_down), (18, 23));
    assert!(!server.borrow().reset);
}

#[test]
fn a_half_closed_flow_expires_after_the_half_closed_timeout() {
    let mut t = tuning();
    t.tcp_half_closed_timeout = Duration::from_secs(120);
    let mut sim = Sim::new(t);
    let (handle, _, server) = sim.established(Some(10001));
    sim.app_socket(handle).close();
    sim.settle();
    assert!(server.borrow().write_shut);
    sim.advance(Duration::from_secs(119));
    assert!(sim.closed_flows().is_empty());
    sim.advance(Duration::from_secs(2));
    assert_eq!(sim.closed_flows()[0].close_reason, Some(CloseReason::Idle));
}

#[test]
fn an_app_reset_resets_the_server() {
    let mut sim = Sim::new(tuning());
    let (handle, _, server) = sim.established(Some(10001));
    sim.app_socket(handle).abort();
    sim.settle();
    let server = server.borrow();
    assert!(server.closed && server.reset);
    assert_eq!(
        sim.closed_flows()[0].close_reason,
        Some(CloseReason::ResetByClient)
    );
}

#[test]
fn a_server_reset_resets_the_app() {
    let mut sim = Sim::new(tuning());
    let (handle, _, server) = sim.established(Some(10001));
    server.borrow_mut().read_error = Some(io::ErrorKind::ConnectionReset);
    sim.settle();
    assert_eq!(sim.app_state(handle), tcp::State::Closed);
    assert!(server.borrow().closed);
    assert_eq!(
        sim.closed_flows()[0].close_reason,
        Some(CloseReason::ResetByServer)
    );
}

#[test]
fn an_unanswered_dns_query_gets_servfail_at_the_dns_timeout() {
    let mut t = tuning();
    t.dns_timeout = Duration::from_secs(5);
    let mut sim = Sim::new(t);
    let app = SocketAddr::new(APP_IP.into(), 5353);
    let service = SocketAddr::new(DNS_IP.into(), 53);
    let query = dns_query(0x1234, "tracker.example");
    sim.core
        .on_packet(udp_packet(app, service, &query), sim.now());
    sim.settle();
    let (id, upstream, server) = sim.server_datagrams();
    assert_eq!(upstream, UPSTREAM);
    assert_eq!(server.borrow().received, vec![query.clone()]);
    sim.answer_owner(id, Some(10050));
    let sent = sim.now().ms;
    sim.advance(Duration::from_millis(4999));
    assert!(sim.datagrams_to_app.is_empty());
    // At the timeout to the millisecond, not at the next idle sweep.
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.datagrams_to_app.len(), 1);
    let (src, dst, answer) = udp_of(&sim.datagrams_to_app[0]).unwrap();
    assert_eq!((src, dst), (service, app));
    assert_eq!(crate::dissect::dns::parse(&answer).unwrap().rcode, 2);
    // Logged with the SERVFAIL the app got, at the query's time, as a replay of the tun logs it.
    let records = sim.dns_records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].query, "tracker.example");
    assert_eq!(
        (records[0].time, records[0].rcode, records[0].uid),
        (sent, Some(2), Some(10050))
    );
}

#[test]
fn a_dns_answer_waits_for_the_owner_then_goes_out() {
    let mut sim = Sim::new(tuning());
    let app = SocketAddr::new(APP_IP.into(), 5353);
    let service = SocketAddr::new(DNS_IP.into(), 53);
    let query = dns_query(7, "a.example");
    sim.core
        .on_packet(udp_packet(app, service, &query), sim.now());
    sim.settle();
    let (id, _, server) = sim.server_datagrams();
    let mut answer = super::dns::servfail(&query).unwrap();
    answer[3] = 0x80; // NOERROR, no answers: enough for the hold
    server.borrow_mut().to_send.push_back(answer.clone());
    sim.settle();
    assert!(sim.datagrams_to_app.is_empty(), "held for the owner lookup");
    sim.answer_owner(id, Some(10050));
    assert_eq!(sim.datagrams_to_app.len(), 1);
    assert_eq!(udp_of(&sim.datagrams_to_app[0]).unwrap().2, answer);
}

#[test]
fn pending_dns_queries_are_bounded_and_the_oldest_is_failed_first() {
    let mut sim = Sim::new(tuning());
    let app = SocketAddr::new(APP_IP.into(), 5353);
    let service = SocketAddr::new(DNS_IP.into(), 53);
    for id in 0..65u16 {
        let query = dns_query(id, &format!("n{id}.example"));
        sim.core
            .on_packet(udp_packet(app, service, &query), sim.now());
    }
    sim.settle();
    let (flow, _, _) = sim.server_datagrams();
    sim.answer_owner(flow, None);
    // One over the bound: the first query is answered SERVFAIL at once, the rest still wait.
    assert_eq!(sim.datagrams_to_app.len(), 1);
    let (_, _, answer) = udp_of(&sim.datagrams_to_app[0]).unwrap();
    assert_eq!(super::dns::message_id(&answer), Some(0));
    assert_eq!(sim.dns_records()[0].query, "n0.example");
}

/// An empty NOERROR answer to `query` (same id and question).
fn noerror(query: &[u8]) -> Vec<u8> {
    let mut answer = super::dns::servfail(query).unwrap();
    answer[3] = 0x80;
    answer
}

/// `query` asking for AAAA instead of A.
fn aaaa(mut query: Vec<u8>) -> Vec<u8> {
    let qtype = query.len() - 4;
    query[qtype..qtype + 2].copy_from_slice(&28u16.to_be_bytes());
    query
}

impl Sim {
    /// The datagram socket opened last, with its flow.
    fn newest_datagrams(&self) -> (FlowId, Rc<RefCell<ServerDatagrams>>) {
        let net = self.host.0.borrow();
        let (&id, (_, server)) = net.datagrams.iter().max_by_key(|(id, _)| **id).unwrap();
        (id, Rc::clone(server))
    }

    /// DNS payloads the engine sent to the app so far.
    fn dns_to_app(&self) -> Vec<Vec<u8>> {
        self.datagrams_to_app
            .iter()
            .filter_map(|p| udp_of(p).map(|(_, _, payload)| payload))
            .collect()
    }
}

#[test]
fn two_dns_exchanges_from_one_5tuple_get_their_own_flows_and_owners() {
    let mut sim = Sim::new(tuning());
    let app = SocketAddr::new(APP_IP.into(), 40100);
    let service = SocketAddr::new(DNS_IP.into(), 53);
    let first = dns_query(1, "first.example");
    sim.core
        .on_packet(udp_packet(app, service, &first), sim.now());
    sim.settle();
    let (first_flow, first_server) = sim.newest_datagrams();
    sim.answer_owner(first_flow, Some(10001));
    first_server.borrow_mut().to_send.push_back(noerror(&first));
    sim.settle();
    assert_eq!(sim.dns_to_app(), vec![noerror(&first)]);
    assert!(first_server.borrow().closed, "the exchange is over");
    // 675 ms later another process has the port (the e2e failure this rule fixes).
    sim.advance(Duration::from_millis(675));
    let second = dns_query(2, "second.example");
    sim.core
        .on_packet(udp_packet(app, service, &second), sim.now());
    sim.settle();
    let (second_flow, second_server) = sim.newest_datagrams();
    assert_ne!(second_flow, first_flow);
    assert_eq!(second_server.borrow().received, vec![second.clone()]);
    assert!(sim.owner_requests.iter().any(|r| r.flow == second_flow));
    second_server
        .borrow_mut()
        .to_send
        .push_back(noerror(&second));
    sim.settle();
    assert!(sim.dns_to_app().len() == 1, "held for the second owner");
    sim.answer_owner(second_flow, Some(10002));
    assert_eq!(sim.dns_to_app().len(), 2);
    let flows = sim.closed_flows();
    let owners: Vec<_> = flows
        .iter()
        .map(|f| (f.id, f.key.src, f.uid, f.close_reason))
        .collect();
    assert_eq!(
        owners,
        vec![
            (first_flow, app, Some(10001), Some(CloseReason::Answered)),
            (second_flow, app, Some(10002), Some(CloseReason::Answered)),
        ]
    );
    let records: Vec<_> = sim
        .dns_records()
        .into_iter()
        .map(|r| (r.query, r.uid, r.flow_id))
        .collect();
    assert_eq!(
        records,
        vec![
            ("first.example".to_owned(), Some(10001), Some(first_flow)),
            ("second.example".to_owned(), Some(10002), Some(second_flow)),
        ]
    );
}

#[test]
fn a_and_aaaa_sent_from_one_socket_before_the_answers_are_one_flow() {
    let mut sim = Sim::new(tuning());
    let app = SocketAddr::new(APP_IP.into(), 40101);
    let service = SocketAddr::new(DNS_IP.into(), 53);
    // One id for both, as some resolvers send them: told apart by their question.
    let a = dns_query(7, "both.example");
    let quad_a = aaaa(a.clone());
    sim.core.on_packet(udp_packet(app, service, &a), sim.now());
    sim.core
        .on_packet(udp_packet(app, service, &quad_a), sim.now());
    sim.settle();
    let (flow, server) = sim.newest_datagrams();
    assert_eq!(server.borrow().received, vec![a.clone(), quad_a.clone()]);
    sim.answer_owner(flow, Some(10003));
    server.borrow_mut().to_send.push_back(noerror(&quad_a));
    sim.settle();
    assert!(!server.borrow().closed, "the A query still waits");
    assert!(sim.closed_flows().is_empty());
    server.borrow_mut().to_send.push_back(noerror(&a));
    sim.settle();
    assert!(server.borrow().closed);
    assert_eq!(sim.dns_to_app(), vec![noerror(&quad_a), noerror(&a)]);
    let flows = sim.closed_flows();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].close_reason, Some(CloseReason::Answered));
    let records: Vec<_> = sim
        .dns_records()
        .into_iter()
        .map(|r| (r.qtype, r.flow_id, r.rcode))
        .collect();
    assert_eq!(
        records,
        vec![(28, Some(flow), Some(0)), (1, Some(flow), Some(0))]
    );
}

#[test]
fn an_answer_held_for_the_owner_reaches_the_app_before_its_flow_closes() {
    let mut sim = Sim::new(tuning());
    let app = SocketAddr::new(APP_IP.into(), 40102);
    let service = SocketAddr::new(DNS_IP.into(), 53);
    let query = dns_query(9, "late.example");
    sim.core
        .on_packet(udp_packet(app, service, &query), sim.now());
    // The app retransmits before the answer: one query waiting, one answer for both copies.
    sim.advance(Duration::from_millis(100));
    sim.core
        .on_packet(udp_packet(app, service, &query), sim.now());
    sim.settle();
    let (flow, server) = sim.newest_datagrams();
    assert_eq!(server.borrow().received.len(), 2);
    server.borrow_mut().to_send.push_back(noerror(&query));
    sim.settle();
    // Answered, but the owner lookup has not: the answer and the flow wait for it.
    assert!(sim.dns_to_app().is_empty());
    assert!(!server.borrow().closed);
    sim.advance(OWNER_HOLD);
    assert_eq!(sim.dns_to_app(), vec![noerror(&query)]);
    assert!(server.borrow().closed, "closed once its answer went out");
    let flows = sim.closed_flows();
    assert_eq!(
        (flows.len(), flows[0].id, flows[0].close_reason),
        (1, flow, Some(CloseReason::Answered))
    );
    // The lookup answers after the close: the record and the query get the uid still.
    sim.answer_owner(flow, Some(10004));
    assert_eq!(sim.closed_flows()[0].uid, Some(10004));
    let records = sim.dns_records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].uid, Some(10004));
}

#[test]
fn a_dns_flow_whose_query_got_servfail_closes_as_answered() {
    let mut t = tuning();
    t.dns_timeout = Duration::from_secs(5);
    let mut sim = Sim::new(t);
    let app = SocketAddr::new(APP_IP.into(), 40103);
    let service = SocketAddr::new(DNS_IP.into(), 53);
    sim.core.on_packet(
        udp_packet(app, service, &dns_query(3, "slow.example")),
        sim.now(),
    );
    sim.settle();
    let (flow, server) = sim.newest_datagrams();
    sim.answer_owner(flow, Some(10005));
    sim.advance(Duration::from_secs(6));
    assert_eq!(sim.dns_to_app().len(), 1);
    assert!(server.borrow().closed);
    assert_eq!(
        sim.closed_flows()[0].close_reason,
        Some(CloseReason::Answered)
    );
}

/// A resolver of the app's own choosing, as some SDKs use (8.8.8.8 and the like).
const OWN_RESOLVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 53)), 53);

/// The last record of flow `id` the engine reported, open or closed.
fn last_record(sim: &Sim, id: FlowId) -> Option<FlowRecord> {
    sim.seen.iter().rev().find_map(|e| match e {
        Event::Flow(r) | Event::FlowClosed(r) if r.id == id => Some(r.clone()),
        _ => None,
    })
}

#[test]
fn a_query_to_the_apps_own_resolver_is_logged_and_names_later_flows_as_a_replay_does() {
    let mut sim = Sim::new(tuning());
    let app = SocketAddr::new(APP_IP.into(), 40104);
    let query = dns_query(4, "direct.example");
    sim.core
        .on_packet(udp_packet(app, OWN_RESOLVER, &query), sim.now());
    sim.settle();
    let (flow, server) = sim.newest_datagrams();
    // To the app's resolver itself, not the engine's upstream, byte for byte.
    assert_eq!(sim.host.0.borrow().datagrams[&flow].0, OWN_RESOLVER);
    assert_eq!(server.borrow().received, vec![query.clone()]);
    let IpAddr::V4(server_ip) = SERVER.ip() else {
        unreachable!("the simulation is IPv4")
    };
    let answer = dns_answer(&query, server_ip);
    server.borrow_mut().to_send.push_back(answer.clone());
    sim.settle();
    // The owner lookup has not answered, yet the answer is not held, and it is what the
    // resolver sent; its exchange over, the flow closes as a replay closes it.
    let to_app: Vec<_> = sim
        .datagrams_to_app
        .iter()
        .filter_map(|p| udp_of(p))
        .collect();
    assert_eq!(to_app, vec![(OWN_RESOLVER, app, answer)]);
    assert!(server.borrow().closed);
    let flows = sim.closed_flows();
    assert_eq!(
        (flows[0].id, flows[0].close_reason),
        (flow, Some(CloseReason::Answered))
    );
    // The lookup is logged once the owner is known, with it, as the service's lookups are.
    assert!(sim.dns_records().is_empty());
    sim.answer_owner(flow, Some(10006));
    let records = sim.dns_records();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(
        (
            record.query.as_str(),
            record.uid,
            record.flow_id,
            record.rcode
        ),
        ("direct.example", Some(10006), Some(flow), Some(0))
    );
    assert_eq!((record.client, record.server), (app, OWN_RESOLVER));
    assert_eq!(record.answer_ips, vec![SERVER.ip()]);
    // A later connection to the answered address carries the name.
    let (_, tcp_flow, _) = sim.established(Some(10006));
    let tcp = last_record(&sim, tcp_flow).expect("the TCP flow was reported");
    assert_eq!(
        (tcp.hostname.as_deref(), tcp.hostname_source),
        (Some("direct.example"), Some(NameSource::Dns))
    );
}

#[test]
fn an_unanswered_query_to_the_apps_own_resolver_is_logged_without_an_answer_or_servfail() {
    let mut t = tuning();
    t.dns_timeout = Duration::from_secs(5);
    let mut sim = Sim::new(t);
    let app = SocketAddr::new(APP_IP.into(), 40105);
    sim.core.on_packet(
        udp_packet(app, OWN_RESOLVER, &dns_query(5, "silent.example")),
        sim.now(),
    );
    sim.settle();
    let (flow, server) = sim.newest_datagrams();
    sim.answer_owner(flow, Some(10007));
    sim.advance(Duration::from_secs(6));
    // The app's resolver keeps its own timeout: nothing from us, and the flow stays open for
    // a late answer (a replay's expired query does not end the exchange either).
    assert!(sim.dns_to_app().is_empty());
    assert!(!server.borrow().closed);
    let records = sim.dns_records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (records[0].query.as_str(), records[0].uid, records[0].rcode),
        ("silent.example", Some(10007), None)
    );
}

#[test]
fn dns_over_tcp_to_the_apps_own_resolver_is_logged_as_a_replay_does() {
    let mut sim = Sim::new(tuning());
    let handle = sim.connect(OWN_RESOLVER, 40106);
    let (flow, server) = sim.server();
    server.borrow_mut().connect = Some(Ok(()));
    sim.answer_owner(flow, Some(10008));
    assert_eq!(sim.app_state(handle), tcp::State::Established);
    let query = dns_query(6, "stream.example");
    let framed = |m: &[u8]| [&(m.len() as u16).to_be_bytes()[..], m].concat();
    sim.app_socket(handle).send_slice(&framed(&query)).unwrap();
    sim.settle();
    assert_eq!(server.borrow().received, framed(&query));
    let IpAddr::V4(server_ip) = SERVER.ip() else {
        unreachable!("the simulation is IPv4")
    };
    let answer = framed(&dns_answer(&query, server_ip));
    server.borrow_mut().to_send.extend(answer.iter());
    sim.settle();
    assert_eq!(sim.app_received(handle), answer);
    let records = sim.dns_records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (
            records[0].query.as_str(),
            records[0].uid,
            records[0].transport
        ),
        ("stream.example", Some(10008), Proto::Tcp)
    );
    assert_eq!(records[0].answer_ips, vec![SERVER.ip()]);
    assert_eq!(records[0].server, OWN_RESOLVER);
    // A query the server never answers before it closes is logged unanswered, as a replay
    // logs it.
    let unanswered = dns_query(7, "never.example");
    sim.app_socket(handle)
        .send_slice(&framed(&unanswered))
        .unwrap();
    sim.settle();
    server.borrow_mut().eof = true;
    sim.settle();
    sim.app_socket(handle).close();
    sim.advance(Duration::from_millis(10));
    assert_eq!(sim.closed_flows()[0].close_reason, Some(CloseReason::Fin));
    let records = sim.dns_records();
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(
        (records[1].query.as_str(), records[1].uid, records[1].rcode),
        ("never.example", Some(10008), None)
    );
}

#[test]
fn a_dns_over_tcp_query_unanswered_at_the_timeout_is_logged_then_and_its_late_answer_alone() {
    let mut t = tuning();
    t.dns_timeout = Duration::from_secs(5);
    let mut sim = Sim::new(t);
    let handle = sim.connect(OWN_RESOLVER, 40107);
    let (flow, server) = sim.server();
    server.borrow_mut().connect = Some(Ok(()));
    sim.answer_owner(flow, Some(10009));
    let query = dns_query(8, "slow.example");
    let framed = |m: &[u8]| [&(m.len() as u16).to_be_bytes()[..], m].concat();
    sim.app_socket(handle).send_slice(&framed(&query)).unwrap();
    sim.settle();
    let sent = sim.now().ms;
    sim.advance(Duration::from_millis(4999));
    assert!(sim.dns_records().is_empty());
    sim.advance(Duration::from_millis(1));
    let records = sim.dns_records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (records[0].query.as_str(), records[0].time, records[0].rcode),
        ("slow.example", sent, None)
    );
    let IpAddr::V4(server_ip) = SERVER.ip() else {
        unreachable!("the simulation is IPv4")
    };
    let answer = framed(&dns_answer(&query, server_ip));
    server.borrow_mut().to_send.extend(answer.iter());
    sim.settle();
    assert_eq!(sim.app_received(handle), answer, "relayed untouched");
    let records = sim.dns_records();
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(
        (records[1].query.as_str(), records[1].rcode, records[1].uid),
        ("slow.example", Some(0), Some(10009))
    );
    assert!(records[1].time > sent);
}

#[test]
fn a_retransmitted_query_is_timed_from_its_first_copy() {
    let mut t = tuning();
    t.dns_timeout = Duration::from_secs(5);
    let mut sim = Sim::new(t);
    let app = SocketAddr::new(APP_IP.into(), 5354);
    let service = SocketAddr::new(DNS_IP.into(), 53);
    let query = dns_query(0x2222, "retry.example");
    sim.core
        .on_packet(udp_packet(app, service, &query), sim.now());
    sim.settle();
    let sent = sim.now().ms;
    let (id, _, server) = sim.server_datagrams();
    sim.answer_owner(id, Some(10051));
    sim.advance(Duration::from_secs(3));
    sim.core
        .on_packet(udp_packet(app, service, &query), sim.now());
    sim.settle();
    assert_eq!(
        server.borrow().received.len(),
        2,
        "the copy goes upstream too"
    );
    sim.advance(Duration::from_millis(1999));
    assert!(sim.datagrams_to_app.is_empty());
    sim.advance(Duration::from_millis(1));
    assert_eq!(
        sim.datagrams_to_app.len(),
        1,
        "one SERVFAIL for both copies"
    );
    let records = sim.dns_records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!((records[0].time, records[0].rcode), (sent, Some(2)));
}

#[test]
fn an_idle_udp_flow_expires_and_its_socket_closes() {
    let mut t = tuning();
    t.udp_idle_timeout = Duration::from_secs(120);
    let mut sim = Sim::new(t);
    let app = SocketAddr::new(APP_IP.into(), 6000);
    let dst = SocketAddr::new(Ipv4Addr::new(203, 0, 113, 9).into(), 3478);
    sim.core.on_packet(udp_packet(app, dst, b"stun"), sim.now());
    sim.settle();
    let (id, _, server) = sim.server_datagrams();
    sim.answer_owner(id, Some(10001));
    sim.advance(Duration::from_secs(119));
    assert!(!server.borrow().closed);
    sim.advance(Duration::from_secs(2));
    assert!(server.borrow().closed);
    let flows = sim.closed_flows();
    assert_eq!(flows[0].close_reason, Some(CloseReason::Idle));
    assert_eq!((flows[0].key.proto, flows[0].bytes_up), (Proto::Udp, 4));
}

#[test]
fn data_the_app_never_acknowledges_resets_the_flow_after_the_ack_timeout() {
    let mut sim = Sim::new(tuning());
    let (_, _, server) = sim.established(Some(10001));
    sim.app_gone = true;
    server.borrow_mut().to_send.extend([7u8; 1000]);
    sim.settle();
    assert!(
        server.borrow().to_send.is_empty(),
        "taken into the send ring"
    );
    sim.advance(Duration::from_secs(60));
    assert!(sim.closed_flows().is_empty(), "retransmitting");
    sim.advance(super::tcp::APP_ACK_TIMEOUT.into());
    let flows = sim.closed_flows();
    assert_eq!(flows.len(), 1);
    assert!(server.borrow().reset, "the server is reset");
}

/// The TCP rings' memory promise (`core::trim`, `buffers.rs`): flows holding data push the
/// estimate over `tcp_buffer_budget`; the next check gives back the pages of every ring that went
/// empty, and while over budget a flow that goes quiet again gives its own back at once.
#[test]
fn busy_flows_over_the_ring_budget_give_their_pages_back_when_quiet() {
    const FLOWS: u16 = 8;
    const EACH_WAY: usize = 32 * 1024;
    const BUDGET: usize = 256 * 1024;
    let mut t = tuning();
    t.tcp_buffer_budget = BUDGET;
    let mut sim = Sim::new(t);
    let flows: Vec<_> = (0..FLOWS)
        .map(|i| sim.established_at(40000 + i, Some(10001)))
        .collect();
    // Each flow relays EACH_WAY both ways; once the delayed ACKs (10 ms) went out every ring is
    // empty again, well before the first check (due 100 ms after the start).
    let exchange = |sim: &mut Sim, (handle, _, server): &(SocketHandle, FlowId, _), n| {
        let server: &Rc<RefCell<ServerStream>> = server;
        assert_eq!(sim.app_socket(*handle).send_slice(&vec![1u8; n]), Ok(n));
        server
            .borrow_mut()
            .to_send
            .extend(std::iter::repeat_n(2u8, n));
    };
    for flow in &flows {
        exchange(&mut sim, flow, EACH_WAY);
    }
    sim.settle();
    sim.advance(Duration::from_millis(20));
    for (handle, id, server) in &flows {
        assert_eq!(sim.app_received(*handle).len(), EACH_WAY);
        assert_eq!(server.borrow_mut().received.drain(..).len(), EACH_WAY);
        assert!(
            sim.ring_resident(*id) >= 2 * EACH_WAY,
            "both rings hold what they carried"
        );
    }
    let resident: usize = flows.iter().map(|(_, id, _)| sim.ring_resident(*id)).sum();
    let estimate = sim.core.ring_estimate();
    assert!(
        estimate >= resident,
        "{estimate} bounds the {resident} resident"
    );
    let page = super::buffers::page_size();
    assert_eq!(
        estimate,
        FLOWS as usize * 2 * (EACH_WAY + page),
        "a page more per ring than it carried: where a run starts is not known"
    );
    assert!(estimate > BUDGET);

    // The check on its own, in the engine's one pass at the instant it is due (the flows
    // serviced in that pass do not trim themselves: nothing said over budget before it).
    sim.elapsed = Duration::from_millis(100);
    sim.core.process(sim.now());
    assert_eq!(
        sim.core.ring_estimate(),
        0,
        "the check trimmed every empty ring"
    );
    sim.settle();
    for (_, id, _) in &flows {
        assert_eq!(sim.ring_resident(*id), 0, "flow {id}'s pages went back");
    }

    // Still over budget (the last estimate was over half of it): a flow that moves data again
    // returns its pages as soon as its rings are empty, long before the next check.
    let (handle, id, server) = &flows[0];
    exchange(&mut sim, &flows[0], EACH_WAY / 2);
    sim.settle();
    sim.advance(Duration::from_millis(20));
    assert_eq!(sim.app_received(*handle).len(), EACH_WAY / 2);
    assert_eq!(server.borrow().received.len(), EACH_WAY / 2);
    assert_eq!(sim.core.ring_estimate(), 0);
    assert_eq!(sim.ring_resident(*id), 0);
    assert!(sim.closed_flows().is_empty(), "trimming closes nothing");
}

/// Run `test` with flows to `port` panicking when handled (the supervision hook).
fn with_panics_at<R>(port: u16, test: impl FnOnce() -> R) -> R {
    super::core::PROVOKE_PANIC_PORT_HERE.with(|p| p.set(port));
    let result = test();
    super::core::PROVOKE_PANIC_PORT_HERE.with(|p| p.set(0));
    result
}

#[test]
fn a_udp_flow_that_panics_is_dropped_counted_and_the_others_go_on() {
    with_panics_at(4999, || {
        let mut sim = Sim::new(tuning());
        let app = SocketAddr::new(APP_IP.into(), 6000);
        let doomed = SocketAddr::new(Ipv4Addr::new(203, 0, 113, 9).into(), 4999);
        let fine = SocketAddr::new(Ipv4Addr::new(203, 0, 113, 9).into(), 5000);
        sim.core
            .on_packet(udp_packet(app, doomed, b"boom"), sim.now());
        sim.core
            .on_packet(udp_packet(app, fine, b"fine"), sim.now());
        sim.settle();
        assert_eq!(sim.core.stats().flows_failed, 1);
        let flows = sim.closed_flows();
        assert_eq!(flows.len(), 1);
        assert_eq!(
            (flows[0].key.dst, flows[0].close_reason),
            (doomed, Some(CloseReason::Error))
        );
        let net = sim.host.0.borrow();
        let relayed: Vec<(SocketAddr, bool, Vec<Vec<u8>>)> = {
            let mut all: Vec<_> = net
                .datagrams
                .values()
                .map(|(dst, d)| (*dst, d.borrow().closed, d.borrow().received.clone()))
                .collect();
            all.sort();
            all
        };
        assert_eq!(
            relayed,
            vec![
                (doomed, true, vec![]),
                (fine, false, vec![b"fine".to_vec()])
            ]
        );
    });
}

#[test]
fn a_udp_reply_that_panics_drops_its_flow() {
    with_panics_at(5101, || {
        let mut sim = Sim::new(tuning());
        let app = SocketAddr::new(APP_IP.into(), 6000);
        let dst = SocketAddr::new(Ipv4Addr::new(203, 0, 113, 9).into(), 5100);
        sim.core.on_packet(udp_packet(app, dst, b"ask"), sim.now());
        sim.settle();
        let (_, _, server) = sim.server_datagrams();
        server.borrow_mut().to_send.push_back(b"reply".to_vec());
        sim.settle();
        assert_eq!(sim.core.stats().flows_failed, 1);
        assert!(server.borrow().closed);
        assert_eq!(sim.closed_flows()[0].close_reason, Some(CloseReason::Error));
    });
}

#[test]
fn an_echo_flow_that_panics_is_dropped_and_counted() {
    with_panics_at(4998, || {
        let mut sim = Sim::new(tuning());
        let dst: IpAddr = Ipv4Addr::new(203, 0, 113, 9).into();
        let request = super::tests::echo_request(APP_IP.into(), dst, 4998, 1, b"ping");
        sim.core.on_packet(request, sim.now());
        sim.settle();
        assert_eq!(sim.core.stats().flows_failed, 1);
        let flows = sim.closed_flows();
        assert_eq!(
            (flows[0].key.proto, flows[0].close_reason),
            (Proto::Icmp, Some(CloseReason::Error))
        );
        // The engine goes on: the next echo flow is relayed.
        let request = super::tests::echo_request(APP_IP.into(), dst, 77, 1, b"ping");
        sim.core.on_packet(request, sim.now());
        sim.settle();
        assert_eq!(sim.core.stats().flows_opened, 2);
        assert_eq!(sim.core.stats().flows_failed, 1);
    });
}

#[test]
fn a_tcp_flow_that_panics_is_dropped_counted_and_the_others_go_on() {
    with_panics_at(4443, || {
        let mut sim = Sim::new(tuning());
        let doomed = SocketAddr::new(SERVER.ip(), 4443);
        sim.connect(doomed, 40001);
        let (id, server) = sim.server();
        server.borrow_mut().connect = Some(Ok(()));
        sim.answer_owner(id, None);
        assert_eq!(sim.core.stats().flows_failed, 1);
        assert_eq!(sim.closed_flows()[0].close_reason, Some(CloseReason::Error));
        assert!(server.borrow().closed);
        sim.host.0.borrow_mut().streams.clear();
        let (handle, _, server) = sim.established(None);
        sim.app_socket(handle).send_slice(b"still relayed").unwrap();
        sim.settle();
        assert_eq!(server.borrow().received, b"still relayed");
    });
}

#[test]
fn busy_flows_keep_trimming_their_rings_while_the_traffic_lasts() {
    // 16 flows echo 16 KiB each round: 512 KiB a round against a 64 KiB budget. Once over
    // it, a flow gives its ring pages back as soon as they hold nothing, round after round (the
    // trimming must not stop because the flows it trimmed look idle).
    let budget = 64 * 1024;
    let mut sim = Sim::new(Tuning {
        tcp_buffer_budget: budget,
        ..tuning()
    });
    let flows: Vec<_> = (0..16)
        .map(|i| sim.established_at(41000 + i, None))
        .collect();
    let apps: Vec<SocketHandle> = flows.iter().map(|(app, _, _)| *app).collect();
    let servers: Vec<(FlowId, Rc<RefCell<ServerStream>>)> = flows
        .iter()
        .map(|(_, id, server)| (*id, Rc::clone(server)))
        .collect();
    for &app in &apps {
        // Echoed data is acknowledged at once, so the engine's send rings empty in the round.
        sim.app_socket(app).set_ack_delay(None);
    }
    let message = pattern(16 * 1024);
    let mut resident = Vec::new();
    for _ in 0..6 {
        for &app in &apps {
            assert_eq!(sim.app_socket(app).send_slice(&message), Ok(message.len()));
        }
        // Each side's delayed ACKs pace the segments: let virtual time pass until all arrived.
        let all_received = |servers: &[(FlowId, Rc<RefCell<ServerStream>>)]| {
            servers
                .iter()
                .all(|(_, server)| server.borrow().received.len() == message.len())
        };
        for _ in 0..50 {
            if all_received(&servers) {
                break;
            }
            sim.advance(Duration::from_millis(5));
        }
        assert!(all_received(&servers), "the messages reached the servers");
        for (_, server) in &servers {
            let mut server = server.borrow_mut();
            let echo = std::mem::take(&mut server.received);
            assert!(echo == message, "relayed bytes differ");
            server.to_send.extend(echo);
        }
        let mut echoed = vec![Vec::new(); apps.len()];
        for _ in 0..50 {
            for (got, &app) in echoed.iter_mut().zip(&apps) {
                got.extend(sim.app_received(app));
            }
            if echoed.iter().all(|got| got.len() == message.len()) {
                break;
            }
            sim.advance(Duration::from_millis(5));
        }
        assert!(echoed.iter().all(|got| *got == message), "echoes differ");
        resident.push(
            servers
                .iter()
                .map(|(id, _)| sim.ring_resident(*id))
                .sum::<usize>(),
        );
        sim.advance(Duration::from_millis(110));
    }
    // The first round is under way before the first check; from the second on, every round's
    // rings are given back as they empty.
    assert!(
        resident[1..].iter().all(|&bytes| bytes < budget),
        "resident ring bytes per round: {resident:?}"
    );
}
