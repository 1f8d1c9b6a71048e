//! The engine end to end without root: an `AF_UNIX` `SOCK_SEQPACKET` socketpair stands in for the
//! tun (it keeps packet boundaries), a smoltcp interface on the other end plays the app, and
//! servers on 127.0.0.1 play the internet.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address};

use super::packet::{self, Transport};
use super::*;
use crate::flow::{CloseReason, DnsRecord, Event, FlowRecord, Proto};

const APP_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const DNS_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 53);
const APP_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

struct NoOwner;
impl crate::owner::OwnerLookup for NoOwner {
    fn owner_uid(&mut self, _: Proto, _: SocketAddr, _: SocketAddr) -> Option<u32> {
        Some(4242)
    }
    fn app_name(&mut self, uid: u32) -> Option<String> {
        Some(format!("tester{uid}"))
    }
}

fn socketpair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0);
    for fd in fds {
        let size: libc::c_int = 4 << 20;
        // Root may exceed wmem_max (SNDBUFFORCE); otherwise the default applies.
        // SAFETY: setsockopt with a valid int option.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                (&size as *const libc::c_int).cast(),
                4,
            );
        }
    }
    // SAFETY: socketpair returned two fresh descriptors we now own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

struct Harness {
    engine: Option<Engine>,
    events: Receiver<Event>,
    app: OwnedFd,
}

fn tuning() -> Tuning {
    Tuning {
        shards: 4,
        tcp_rx_buffer: 64 * 1024,
        tcp_tx_buffer: 64 * 1024,
        dns_timeout: Duration::from_millis(300),
        ..Tuning::default()
    }
}

fn start(upstream: SocketAddr, tuning: Tuning) -> Harness {
    start_with_mtu(upstream, tuning, 1500)
}

fn start_with_mtu(upstream: SocketAddr, tuning: Tuning, mtu: usize) -> Harness {
    #[cfg(feature = "cli")]
    let _ = env_logger::builder().is_test(true).try_init();
    let (engine_end, app) = socketpair();
    let (tx, events) = channel();
    let config = EngineConfig {
        dns_v4: DNS_IP,
        dns_v6: None,
        dns_upstream: upstream,
        mtu,
        outbound: Outbound::default(),
    };
    let engine = Engine::start_tuned(engine_end, config, tuning, Box::new(NoOwner), tx).unwrap();
    Harness {
        engine: Some(engine),
        events,
        app,
    }
}

impl Harness {
    fn send(&self, packet: &[u8]) {
        // SAFETY: valid buffer.
        let n = unsafe { libc::write(self.app.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        assert_eq!(n as usize, packet.len());
    }

    /// The next packet from the engine, within `wait`.
    fn recv(&self, wait: Duration) -> Option<Vec<u8>> {
        if !wait_readable(self.app.as_raw_fd(), wait) {
            return None;
        }
        let mut buf = vec![0u8; 65536];
        // SAFETY: valid buffer.
        let n = unsafe { libc::read(self.app.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        (n > 0).then(|| {
            buf.truncate(n as usize);
            buf
        })
    }

    fn stop(&mut self) -> (EngineStats, Vec<Event>) {
        let stats = self.engine.take().unwrap().stop().unwrap();
        (stats, self.events.try_iter().collect())
    }
}

fn wait_readable(fd: RawFd, wait: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as libc::c_int) > 0 }
}

/// The app: a smoltcp interface over the other end of the socketpair.
struct App {
    iface: Interface,
    sockets: SocketSet<'static>,
    device: FdDevice,
    epoch: Instant,
}

struct FdDevice {
    fd: RawFd,
    mtu: usize,
}

struct FdRx(Vec<u8>);
struct FdTx(RawFd);

impl phy::RxToken for FdRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for FdTx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        // SAFETY: valid buffer. A full socket drops the packet, like a link would.
        unsafe { libc::write(self.0, buf.as_ptr().cast(), len) };
        r
    }
}

impl phy::Device for FdDevice {
    type RxToken<'a> = FdRx;
    type TxToken<'a> = FdTx;
    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(FdRx, FdTx)> {
        let mut buf = vec![0u8; 65536];
        // SAFETY: valid buffer; the fd is non-blocking.
        let n = unsafe {
            libc::recv(
                self.fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            return None;
        }
        buf.truncate(n as usize);
        Some((FdRx(buf), FdTx(self.fd)))
    }
    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<FdTx> {
        Some(FdTx(self.fd))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

impl App {
    fn new(fd: RawFd) -> App {
        App::with_mtu(fd, 1500)
    }

    fn with_mtu(fd: RawFd, mtu: usize) -> App {
        let mut device = FdDevice { fd, mtu };
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ip),
            &mut device,
            smoltcp::time::Instant::from_millis(0),
        );
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::Ipv4(APP_IP), 15)).unwrap();
            a.push(IpCidr::new(IpAddress::Ipv6(APP_IP6), 64)).unwrap();
        });
        iface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Address::new(198, 18, 0, 1))
            .unwrap();
        iface
            .routes_mut()
            .add_default_ipv6_route(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1))
            .unwrap();
        App {
            iface,
            sockets: SocketSet::new(Vec::new()),
            device,
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    fn connect(&mut self, dst: SocketAddr, local_port: u16) -> SocketHandle {
        let rx = tcp::SocketBuffer::new(vec![0u8; 256 * 1024]);
        let tx = tcp::SocketBuffer::new(vec![0u8; 256 * 1024]);
        let mut socket = tcp::Socket::new(rx, tx);
        let remote = match dst.ip() {
            IpAddr::V4(ip) => IpAddress::Ipv4(ip),
            IpAddr::V6(ip) => IpAddress::Ipv6(ip),
        };
        // Name the source address: smoltcp would pick ::1 for a loopback destination.
        let local = match dst.ip() {
            IpAddr::V4(_) => IpAddress::Ipv4(APP_IP),
            IpAddr::V6(_) => IpAddress::Ipv6(APP_IP6),
        };
        socket
            .connect(
                self.iface.context(),
                (remote, dst.port()),
                (local, local_port),
            )
            .unwrap();
        self.sockets.add(socket)
    }

    /// Poll until `done` says so or `limit` passes. Returns whether `done` was reached.
    fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut SocketSet<'static>) -> bool,
    ) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            let now = self.now();
            self.iface.poll(now, &mut self.device, &mut self.sockets);
            if done(&mut self.sockets) {
                return true;
            }
            self.iface.poll(now, &mut self.device, &mut self.sockets);
            let delay = self
                .iface
                .poll_delay(self.now(), &self.sockets)
                .map(|d| Duration::from_micros(d.total_micros()))
                .unwrap_or(Duration::from_millis(50))
                .min(Duration::from_millis(50));
            wait_readable(self.device.fd, delay);
        }
        false
    }
}

fn echo_server_on(bind: &str) -> (SocketAddr, std::thread::JoinHandle<u64>) {
    let listener = TcpListener::bind(bind).unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 32 * 1024];
        let mut total = 0u64;
        loop {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
            stream.write_all(&buf[..n]).unwrap();
        }
        total
    });
    (addr, handle)
}

/// The final record of every closed flow, upserted by id as the store does (an owner answer
/// that arrives after the close resends the record with its uid).
fn final_flows(events: &[Event]) -> Vec<FlowRecord> {
    let mut flows: Vec<FlowRecord> = Vec::new();
    for event in events {
        if let Event::FlowClosed(record) = event {
            match flows.iter_mut().find(|f| f.id == record.id) {
                Some(known) => *known = record.clone(),
                None => flows.push(record.clone()),
            }
        }
    }
    flows
}

pub(super) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn tcp_relay_is_byte_exact_and_closes_cleanly() {
    echo_through_engine("127.0.0.1:0", 3 * 1024 * 1024 + 17, tuning());
}

#[test]
fn tcp_relay_is_byte_exact_while_rings_are_trimmed() {
    // A zero budget makes every pass return the pages of idle rings mid-transfer.
    echo_through_engine(
        "127.0.0.1:0",
        2 * 1024 * 1024,
        Tuning {
            tcp_buffer_budget: 0,
            ..tuning()
        },
    );
}

#[test]
fn tcp_relay_with_a_65000_byte_mtu() {
    // Large segments both ways (the fast setting for a Linux capture TUN); rings scale with it.
    echo_through_engine_mtu("127.0.0.1:0", 3 * 1024 * 1024 + 5, tuning(), 65000);
}

#[test]
fn tcp_relay_over_ipv6_with_one_shard() {
    echo_through_engine(
        "[::1]:0",
        500_000,
        Tuning {
            shards: 1,
            ..tuning()
        },
    );
}

fn echo_through_engine(bind: &str, len: usize, tuning: Tuning) {
    echo_through_engine_mtu(bind, len, tuning, 1500);
}

fn echo_through_engine_mtu(bind: &str, len: usize, tuning: Tuning, mtu: usize) {
    let (server, server_thread) = echo_server_on(bind);
    let mut h = start_with_mtu("127.0.0.1:9".parse().unwrap(), tuning, mtu);
    let mut app = App::with_mtu(h.app.as_raw_fd(), mtu);
    let handle = app.connect(server, 40001);
    let data = pattern(len);
    let mut sent = 0;
    let mut echoed = Vec::with_capacity(data.len());
    let mut closed = false;
    let ok = app.run_until(Duration::from_secs(60), |sockets| {
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        if socket.can_send() && sent < data.len() {
            sent += socket.send_slice(&data[sent..]).unwrap();
        }
        read_available(socket, &mut echoed);
        if sent == data.len() && !closed {
            socket.close();
            closed = true;
        }
        // Done when the server's FIN arrived after all the echo.
        echoed.len() == data.len() && !socket.may_recv()
    });
    assert!(ok, "relay stalled: sent {sent}, echoed {}", echoed.len());
    assert!(echoed == data, "echoed bytes differ");
    assert_eq!(server_thread.join().unwrap(), data.len() as u64);
    // Let the last ACKs through, then stop.
    app.run_until(Duration::from_millis(300), |_| false);
    let (stats, events) = h.stop();
    let flows = final_flows(&events);
    assert_eq!(flows.len(), 1, "{flows:?}");
    let flow = &flows[0];
    assert_eq!(flow.key.proto, Proto::Tcp);
    assert_eq!(flow.key.dst, server);
    assert_eq!(flow.bytes_up, data.len() as u64);
    assert_eq!(flow.bytes_down, data.len() as u64);
    assert_eq!(flow.close_reason, Some(CloseReason::Fin));
    assert_eq!(flow.uid, Some(4242));
    // At least one packet per MTU of payload each way (data up, echoed data down).
    assert!(flow.packets_up as usize >= len / mtu && flow.packets_down as usize >= len / mtu);
    assert_eq!(stats.bytes_up, data.len() as u64);
    assert_eq!(stats.flows_open, 0);
    assert!(events.contains(&Event::App {
        uid: 4242,
        name: "tester4242".into()
    }));
}

#[test]
fn refused_connect_resets_the_app() {
    // A port nothing listens on.
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut h = start("127.0.0.1:9".parse().unwrap(), tuning());
    let mut app = App::new(h.app.as_raw_fd());
    let handle = app.connect(closed_port, 40002);
    let reset = app.run_until(Duration::from_secs(5), |sockets| {
        sockets.get_mut::<tcp::Socket>(handle).state() == tcp::State::Closed
    });
    assert!(reset, "the app never saw the refusal");
    let (_, events) = h.stop();
    let flows = final_flows(&events);
    assert_eq!(flows.len(), 1, "{flows:#?}");
    assert_eq!(flows[0].close_reason, Some(CloseReason::Refused));
}

#[test]
fn server_reset_reaches_the_app() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let server_thread = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(stream); // RST
    });
    let mut h = start("127.0.0.1:9".parse().unwrap(), tuning());
    let mut app = App::new(h.app.as_raw_fd());
    let handle = app.connect(server, 40003);
    let mut was_open = false;
    let reset = app.run_until(Duration::from_secs(5), |sockets| {
        let state = sockets.get_mut::<tcp::Socket>(handle).state();
        was_open |= state == tcp::State::Established;
        was_open && state == tcp::State::Closed
    });
    server_thread.join().unwrap();
    assert!(reset);
    let (_, events) = h.stop();
    assert_eq!(
        final_flows(&events)[0].close_reason,
        Some(CloseReason::ResetByServer)
    );
}

#[test]
fn half_close_from_the_app_still_delivers_the_answer() {
    const REQUEST: &[u8] =
        b"GET /check HTTP/1.1\r\nHost: api.sec.miui.com\r\nUser-Agent: t\r\n\r\n";
    // The server reads to EOF, then answers and closes: needs the app's FIN passed on as a
    // shutdown(Write) while the other direction stays open.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let server_thread = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        stream.read_to_end(&mut request).unwrap();
        stream.write_all(&pattern(200_000)).unwrap();
        request.len()
    });
    let mut h = start("127.0.0.1:9".parse().unwrap(), tuning());
    let mut app = App::new(h.app.as_raw_fd());
    let handle = app.connect(server, 40004);
    let mut sent = false;
    let mut got = Vec::new();
    let done = app.run_until(Duration::from_secs(20), |sockets| {
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        if !sent && socket.can_send() {
            socket.send_slice(REQUEST).unwrap();
            socket.close();
            sent = true;
        }
        read_available(socket, &mut got);
        sent && !socket.may_recv() && got.len() == 200_000
    });
    assert!(done, "got {} bytes", got.len());
    assert_eq!(got, pattern(200_000));
    assert_eq!(server_thread.join().unwrap(), REQUEST.len());
    app.run_until(Duration::from_millis(200), |_| false);
    let (_, events) = h.stop();
    let flow = &final_flows(&events)[0];
    assert_eq!(
        (flow.bytes_up, flow.bytes_down),
        (REQUEST.len() as u64, 200_000)
    );
    // The relayed bytes reached the dissector and the namer.
    assert_eq!(flow.hostname.as_deref(), Some("api.sec.miui.com"));
    assert_eq!(flow.hostname_source, Some(crate::flow::NameSource::Http));
    assert!(flow.cleartext);
    assert_eq!(flow.close_reason, Some(CloseReason::Fin));
}

pub(super) fn udp_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    assert!(packet::build_udp(&mut out, src, dst, payload));
    out
}

/// The next UDP packet from the engine: (src, dst, payload).
fn next_udp(h: &Harness, wait: Duration) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
    let deadline = Instant::now() + wait;
    while let Some(p) = h.recv(deadline.saturating_duration_since(Instant::now())) {
        let parsed = packet::parse(&p).unwrap();
        if let Transport::Udp { .. } = parsed.transport {
            return Some((
                parsed.src_addr(),
                parsed.dst_addr(),
                p[parsed.payload.0..parsed.payload.1].to_vec(),
            ));
        }
    }
    None
}

#[test]
fn udp_nat_relays_both_ways() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server_addr = server.local_addr().unwrap();
    let mut h = start("127.0.0.1:9".parse().unwrap(), tuning());
    let app_addr = SocketAddr::new(IpAddr::V4(APP_IP), 5000);
    h.send(&udp_packet(app_addr, server_addr, b"ping one"));
    h.send(&udp_packet(app_addr, server_addr, b"ping two"));
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 100];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping one");
    let (n, from2) = server.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from2), (&b"ping two"[..], from));
    server.send_to(b"pong", from).unwrap();
    let (src, dst, payload) = next_udp(&h, Duration::from_secs(5)).unwrap();
    assert_eq!(
        (src, dst, payload.as_slice()),
        (server_addr, app_addr, &b"pong"[..])
    );
    let (_, events) = h.stop();
    let flow = &final_flows(&events)[0];
    assert_eq!(flow.key.proto, Proto::Udp);
    assert_eq!(
        (
            flow.bytes_up,
            flow.bytes_down,
            flow.packets_up,
            flow.packets_down
        ),
        (16, 4, 2, 1)
    );
    assert_eq!(flow.close_reason, Some(CloseReason::EngineStop));
}

/// Moves everything the test client's socket has received into `into`.
fn read_available(socket: &mut tcp::Socket, into: &mut Vec<u8>) {
    while socket.can_recv() {
        socket
            .recv(|b| {
                into.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
    }
}

/// The DNS log entries among the engine's events, in order.
fn dns_records(events: &[Event]) -> Vec<DnsRecord> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Dns(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn dns_query(id: u16, name: &str) -> Vec<u8> {
    use simple_dns::{CLASS, Name, Packet, QCLASS, QTYPE, Question, TYPE};
    let mut packet = Packet::new_query(id);
    packet.questions.push(Question::new(
        Name::new_unchecked(name),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    packet.build_bytes_vec().unwrap()
}

pub(super) fn dns_answer(query: &[u8], ip: Ipv4Addr) -> Vec<u8> {
    use simple_dns::rdata::{A, RData};
    use simple_dns::{CLASS, Packet, ResourceRecord};
    let q = Packet::parse(query).unwrap();
    let mut reply = Packet::new_reply(q.id());
    let name = q.questions[0].qname.clone();
    reply.questions.push(q.questions[0].clone());
    reply.answers.push(ResourceRecord::new(
        name,
        CLASS::IN,
        120,
        RData::A(A {
            address: u32::from(ip),
        }),
    ));
    reply.build_bytes_vec().unwrap()
}

#[test]
fn dns_is_forwarded_recorded_and_servfailed_on_silence() {
    let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let mut h = start(upstream_addr, tuning());
    let app_addr = SocketAddr::new(IpAddr::V4(APP_IP), 5353);
    let service = SocketAddr::new(IpAddr::V4(DNS_IP), 53);
    let query = dns_query(0x1234, "metrics.data.mistat.xiaomi.com");
    h.send(&udp_packet(app_addr, service, &query));
    upstream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 512];
    let (n, from) = upstream.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], &query[..]);
    upstream
        .send_to(&dns_answer(&query, Ipv4Addr::new(198, 18, 7, 7)), from)
        .unwrap();
    let (src, dst, answer) = next_udp(&h, Duration::from_secs(5)).unwrap();
    assert_eq!((src, dst), (service, app_addr));
    assert_eq!(dns::message_id(&answer), Some(0x1234));

    // A query the upstream ignores is answered SERVFAIL after the timeout.
    let lost = dns_query(0x5678, "unanswered.example");
    h.send(&udp_packet(app_addr, service, &lost));
    let (_, _, servfail) = next_udp(&h, Duration::from_secs(5)).unwrap();
    assert_eq!(dns::message_id(&servfail), Some(0x5678));
    assert_eq!(servfail[3] & 0x0f, 2);

    let (_, events) = h.stop();
    let records = dns_records(&events);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0].query, "metrics.data.mistat.xiaomi.com");
    assert_eq!(records[0].rcode, Some(0));
    assert_eq!(
        records[0].answer_ips,
        vec![IpAddr::V4(Ipv4Addr::new(198, 18, 7, 7))]
    );
    assert_eq!(records[0].ttl, Some(120));
    assert_eq!(records[0].server, service);
    assert_eq!(records[1].query, "unanswered.example");
    // The app got our SERVFAIL: the record says so, as a replay of the tun does.
    assert_eq!(records[1].rcode, Some(2));
}

#[test]
fn garbage_is_counted_and_dropped() {
    let mut h = start("127.0.0.1:9".parse().unwrap(), tuning());
    h.send(&[0x45, 0, 0, 10]);
    h.send(&[0x60; 30]);
    h.send(&[0u8; 1]);
    let mut sctp = udp_packet(
        SocketAddr::new(IpAddr::V4(APP_IP), 1),
        "127.0.0.1:2".parse().unwrap(),
        b"x",
    );
    sctp[9] = 132;
    h.send(&sctp);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut dropped = 0;
    while Instant::now() < deadline && dropped < 4 {
        dropped = h.engine.as_ref().unwrap().stats().unwrap().packets_dropped;
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(dropped, 4);
    let (stats, _) = h.stop();
    assert_eq!(stats.flows_opened, 0);
}

#[test]
fn a_query_to_an_unreachable_upstream_is_servfailed_and_still_recorded() {
    // connect() to the broadcast address fails at once (EACCES without SO_BROADCAST): the
    // upstream socket cannot even be opened, as on a phone with no network.
    let unreachable = SocketAddr::new(IpAddr::V4(Ipv4Addr::BROADCAST), 53);
    let mut h = start(unreachable, tuning());
    let app_addr = SocketAddr::new(IpAddr::V4(APP_IP), 5353);
    let service = SocketAddr::new(IpAddr::V4(DNS_IP), 53);
    let query = dns_query(0x4321, "tracking.intl.miui.com");
    h.send(&udp_packet(app_addr, service, &query));
    let (src, dst, servfail) = next_udp(&h, Duration::from_secs(5)).unwrap();
    assert_eq!((src, dst), (service, app_addr));
    assert_eq!(dns::message_id(&servfail), Some(0x4321));
    assert_eq!(servfail[3] & 0x0f, 2);

    let (_, events) = h.stop();
    let records = dns_records(&events);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].query, "tracking.intl.miui.com");
    assert_eq!((records[0].client, records[0].server), (app_addr, service));
    assert_eq!(records[0].rcode, Some(2));
}

#[test]
fn dns_over_tcp_is_forwarded_and_recorded() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let server_thread = std::thread::spawn(move || {
        let (mut stream, _) = upstream.accept().unwrap();
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).unwrap();
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut query).unwrap();
        let answer = dns_answer(&query, Ipv4Addr::new(198, 18, 9, 9));
        stream
            .write_all(&(answer.len() as u16).to_be_bytes())
            .unwrap();
        stream.write_all(&answer).unwrap();
    });
    let mut h = start(upstream_addr, tuning());
    let mut app = App::new(h.app.as_raw_fd());
    let handle = app.connect(SocketAddr::new(IpAddr::V4(DNS_IP), 53), 40005);
    let query = dns_query(0x4321, "api.ad.xiaomi.com");
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    let mut sent = false;
    let mut got = Vec::new();
    let done = app.run_until(Duration::from_secs(10), |sockets| {
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        if !sent && socket.can_send() {
            socket.send_slice(&framed).unwrap();
            sent = true;
        }
        read_available(socket, &mut got);
        sent && !socket.may_recv()
    });
    assert!(done);
    server_thread.join().unwrap();
    assert_eq!(dns::message_id(&got[2..]), Some(0x4321));
    let (_, events) = h.stop();
    let record = dns_records(&events)
        .into_iter()
        .next()
        .expect("a DNS record");
    assert_eq!(record.transport, Proto::Tcp);
    assert_eq!(record.query, "api.ad.xiaomi.com");
    assert_eq!(
        record.answer_ips,
        vec![IpAddr::V4(Ipv4Addr::new(198, 18, 9, 9))]
    );
}

pub(super) fn echo_request(src: IpAddr, dst: IpAddr, ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpProtocol, IpRepr};
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
        panic!("v4 only")
    };
    let icmp = Icmpv4Repr::EchoRequest {
        ident,
        seq_no: seq,
        data,
    };
    let ip = IpRepr::new(
        IpAddress::Ipv4(s),
        IpAddress::Ipv4(d),
        IpProtocol::Icmp,
        icmp.buffer_len(),
        64,
    );
    let mut out = vec![0u8; ip.buffer_len()];
    ip.emit(&mut out[..], &ChecksumCapabilities::default());
    let header = ip.header_len();
    icmp.emit(
        &mut Icmpv4Packet::new_unchecked(&mut out[header..]),
        &ChecksumCapabilities::default(),
    );
    out
}

#[test]
fn ping_is_answered_where_ping_sockets_are_allowed_else_dropped() {
    let allowed = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::ICMPV4),
    )
    .is_ok();
    let mut h = start("127.0.0.1:9".parse().unwrap(), tuning());
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    h.send(&echo_request(
        IpAddr::V4(APP_IP),
        localhost,
        0x77,
        1,
        b"are you there",
    ));
    let reply = h.recv(Duration::from_secs(if allowed { 5 } else { 1 }));
    let (stats, events) = h.stop();
    if allowed {
        let reply = reply.expect("an echo reply");
        let ip = smoltcp::wire::Ipv4Packet::new_checked(&reply[..]).unwrap();
        assert_eq!(
            (ip.src_addr(), ip.dst_addr()),
            (Ipv4Addr::LOCALHOST, APP_IP)
        );
        let icmp = smoltcp::wire::Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), smoltcp::wire::Icmpv4Message::EchoReply);
        assert_eq!((icmp.echo_ident(), icmp.echo_seq_no()), (0x77, 1));
        assert_eq!(icmp.data(), b"are you there");
        assert!(icmp.verify_checksum());
        assert_eq!(final_flows(&events)[0].key.proto, Proto::Icmp);
    } else {
        assert!(reply.is_none());
        assert_eq!(stats.packets_dropped, 1);
        assert_eq!(stats.flows_opened, 0);
    }
}

#[test]
fn stray_segments_get_a_reset() {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{IpProtocol, IpRepr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber};
    // An ACK for a connection the engine never saw: answered with a RST, counted as dropped.
    let h = start("127.0.0.1:9".parse().unwrap(), tuning());
    let (src, dst) = (
        IpAddress::Ipv4(APP_IP),
        IpAddress::Ipv4(Ipv4Addr::LOCALHOST),
    );
    let tcp = TcpRepr {
        src_port: 40007,
        dst_port: 80,
        control: TcpControl::None,
        seq_number: TcpSeqNumber(1000),
        ack_number: Some(TcpSeqNumber(5000)),
        window_len: 100,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload: b"late",
    };
    let ip = IpRepr::new(src, dst, IpProtocol::Tcp, tcp.buffer_len(), 64);
    let mut out = vec![0u8; ip.buffer_len()];
    ip.emit(&mut out[..], &ChecksumCapabilities::default());
    let header = ip.header_len();
    tcp.emit(
        &mut TcpPacket::new_unchecked(&mut out[header..]),
        &src,
        &dst,
        &ChecksumCapabilities::default(),
    );
    h.send(&out);
    let reply = h.recv(Duration::from_secs(5)).expect("a reset");
    let ip = smoltcp::wire::Ipv4Packet::new_checked(&reply[..]).unwrap();
    let rst = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(rst.rst());
    assert_eq!((rst.src_port(), rst.dst_port()), (80, 40007));
    assert_eq!(rst.seq_number(), TcpSeqNumber(5000));
    assert!(rst.verify_checksum(&dst, &src));
    let mut h = h;
    let (stats, _) = h.stop();
    assert_eq!(stats.packets_dropped, 1);
}

#[test]
fn udp_to_a_closed_port_gets_port_unreachable() {
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut h = start("127.0.0.1:9".parse().unwrap(), tuning());
    let app_addr = SocketAddr::new(IpAddr::V4(APP_IP), 7000);
    h.send(&udp_packet(app_addr, closed, b"anyone?"));
    let reply = h.recv(Duration::from_secs(5)).expect("an ICMP error");
    let ip = smoltcp::wire::Ipv4Packet::new_checked(&reply[..]).unwrap();
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (Ipv4Addr::LOCALHOST, APP_IP)
    );
    let icmp = smoltcp::wire::Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(
        (icmp.msg_type(), icmp.msg_code()),
        (smoltcp::wire::Icmpv4Message::DstUnreachable, 3)
    );
    assert!(icmp.verify_checksum());
    // The quoted datagram names the app's socket and the closed port.
    let quoted = packet::parse(icmp.data()).unwrap();
    assert_eq!((quoted.src_addr(), quoted.dst_addr()), (app_addr, closed));
    h.stop();
}

/// xorshift: reproducible noise without a dependency.
fn noise(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn mutated_packets_never_stop_the_engine() {
    // Valid packets of every kind the engine handles, then thousands of corrupted copies
    // (flipped bytes, truncations, random lengths): each is dropped or handled, the engine
    // keeps answering.
    let mut h = start("127.0.0.1:9".parse().unwrap(), tuning());
    let app = SocketAddr::new(IpAddr::V4(APP_IP), 9000);
    let app6: SocketAddr = "[fd00::2]:9000".parse().unwrap();
    let mut seeds = vec![
        udp_packet(app, "127.0.0.1:9".parse().unwrap(), b"payload"),
        udp_packet(app6, "[::1]:9".parse().unwrap(), b"payload"),
        udp_packet(
            app,
            SocketAddr::new(IpAddr::V4(DNS_IP), 53),
            &dns_query(1, "example.org"),
        ),
        echo_request(
            IpAddr::V4(APP_IP),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            1,
            1,
            b"x",
        ),
    ];
    let mut rst = Vec::new();
    let mut syn_like = seeds[0].clone();
    syn_like[9] = 6; // claim TCP
    seeds.push(syn_like);
    assert!(!packet::build_rst(&mut rst, &seeds[0]));
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..4000 {
        let seed = &seeds[round % seeds.len()];
        let mut p = seed.clone();
        for _ in 0..(noise(&mut state) % 4) {
            let at = (noise(&mut state) as usize) % p.len();
            p[at] = noise(&mut state) as u8;
        }
        if noise(&mut state).is_multiple_of(3) {
            p.truncate((noise(&mut state) as usize) % (p.len() + 1));
        }
        if !p.is_empty() {
            h.send(&p);
        }
        if round.is_multiple_of(500) {
            // Drain what the engine answered so the socketpair never fills.
            while h.recv(Duration::from_millis(1)).is_some() {}
        }
    }
    while h.recv(Duration::from_millis(50)).is_some() {}
    let stats = h
        .engine
        .as_ref()
        .unwrap()
        .stats()
        .expect("the engine still answers");
    assert!(stats.packets_dropped > 100, "{stats:?}");
    h.stop();
}

#[test]
fn an_app_that_aborts_a_pending_connect_and_retries_gets_through() {
    // A listener whose accept queue is full keeps the engine's connects pending.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let server: SocketAddr = listener.local_addr().unwrap().as_socket().unwrap();
    let filler = std::net::TcpStream::connect(server).unwrap();
    let mut h = start("127.0.0.1:9".parse().unwrap(), tuning());
    let mut app = App::new(h.app.as_raw_fd());
    let first = app.connect(server, 41001);
    app.run_until(Duration::from_millis(100), |_| false);
    // The app gives up on the first attempt and retries from another port at once: the RST and
    // the new SYN reach the engine together.
    app.sockets.get_mut::<tcp::Socket>(first).abort();
    let second = app.connect(server, 41002);
    app.run_until(Duration::from_millis(200), |_| false);
    // Let the server accept: the pending connect completes and only then is the SYN answered.
    let listener = std::net::TcpListener::from(listener);
    let accepter = std::thread::spawn(move || {
        let _filler = listener.accept().unwrap();
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).unwrap();
        stream.write_all(&buf).unwrap();
        buf
    });
    let mut sent = false;
    let mut got = Vec::new();
    let done = app.run_until(Duration::from_secs(10), |sockets| {
        let socket = sockets.get_mut::<tcp::Socket>(second);
        if !sent && socket.can_send() {
            socket.send_slice(b"hello").unwrap();
            sent = true;
        }
        read_available(socket, &mut got);
        got.len() == 5
    });
    assert!(done, "the retried connection never carried data");
    assert_eq!(&accepter.join().unwrap(), b"hello");
    drop(filler);
    let (_, events) = h.stop();
    let mut reasons: Vec<_> = final_flows(&events)
        .iter()
        .map(|f| (f.key.src.port(), f.close_reason))
        .collect();
    reasons.sort_by_key(|r| r.0);
    assert_eq!(
        reasons,
        vec![
            (41001, Some(CloseReason::ResetByClient)),
            (41002, Some(CloseReason::EngineStop))
        ]
    );
}

#[test]
fn late_dns_answer_names_an_open_flow() {
    let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut h = start(upstream.local_addr().unwrap(), tuning());
    let app = SocketAddr::new(IpAddr::V4(APP_IP), 6001);
    // The app sends to an address it had cached, then looks the name up again.
    h.send(&udp_packet(app, server.local_addr().unwrap(), b"cached"));
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 512];
    server.recv_from(&mut buf).unwrap();
    let query = dns_query(0x4242, "late.example");
    let resolver_side = SocketAddr::new(IpAddr::V4(APP_IP), 5354);
    h.send(&udp_packet(
        resolver_side,
        SocketAddr::new(IpAddr::V4(DNS_IP), 53),
        &query,
    ));
    upstream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (n, from) = upstream.recv_from(&mut buf).unwrap();
    upstream
        .send_to(&dns_answer(&buf[..n], Ipv4Addr::LOCALHOST), from)
        .unwrap();
    next_udp(&h, Duration::from_secs(5)).unwrap();
    let (_, events) = h.stop();
    let flow = events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::FlowClosed(r) if r.key.src == app => Some(r),
            _ => None,
        })
        .expect("the app's flow was recorded");
    assert_eq!(flow.hostname.as_deref(), Some("late.example"), "{flow:?}");
    assert_eq!(flow.hostname_source, Some(crate::flow::NameSource::Dns));
}

#[test]
fn a_flow_that_panics_is_dropped_counted_and_the_engine_goes_on() {
    let (doomed, _doomed_server) = echo_server_on("127.0.0.1:0");
    let (server, server_thread) = echo_server_on("127.0.0.1:0");
    super::core::PROVOKE_PANIC_PORT.store(doomed.port(), std::sync::atomic::Ordering::Relaxed);
    let mut h = start("127.0.0.1:9".parse().unwrap(), tuning());
    let mut app = App::new(h.app.as_raw_fd());
    app.connect(doomed, 40101);
    // The doomed flow's first service panics; give the engine its SYN first.
    app.run_until(Duration::from_millis(300), |_| false);
    let handle = app.connect(server, 40102);
    let data = pattern(100_000);
    let (mut sent, mut echoed, mut closed) = (0, Vec::new(), false);
    let ok = app.run_until(Duration::from_secs(30), |sockets| {
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        if socket.can_send() && sent < data.len() {
            sent += socket.send_slice(&data[sent..]).unwrap();
        }
        read_available(socket, &mut echoed);
        if sent == data.len() && !closed {
            socket.close();
            closed = true;
        }
        echoed.len() == data.len() && !socket.may_recv()
    });
    assert!(ok, "the engine stopped relaying after a flow panicked");
    assert!(echoed == data, "echoed bytes differ");
    assert_eq!(server_thread.join().unwrap(), data.len() as u64);
    app.run_until(Duration::from_millis(300), |_| false);
    let (stats, events) = h.stop();
    assert_eq!(stats.flows_failed, 1);
    let flows = final_flows(&events);
    let reason_to = |dst: SocketAddr| {
        flows
            .iter()
            .find(|f| f.key.dst == dst)
            .and_then(|f| f.close_reason)
    };
    assert_eq!(reason_to(doomed), Some(CloseReason::Error), "{flows:?}");
    assert_eq!(reason_to(server), Some(CloseReason::Fin), "{flows:?}");
}

#[test]
fn a_dead_engine_thread_is_reported_not_hidden() {
    let mut h = start("127.0.0.1:9".parse().unwrap(), tuning());
    super::PROVOKE_ENGINE_DEATH_PORT.store(65001, std::sync::atomic::Ordering::Relaxed);
    let app = SocketAddr::new(IpAddr::V4(APP_IP), 5000);
    h.send(&udp_packet(app, "127.0.0.1:65001".parse().unwrap(), b"x"));
    let engine = h.engine.take().unwrap();
    // Polled, not timed: the thread dies when it reads the packet.
    let mut answer = engine.stats();
    for _ in 0..500 {
        if answer.is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        answer = engine.stats();
    }
    assert!(
        answer.is_err(),
        "the engine still answers after its thread panicked"
    );
    #[cfg(feature = "jni")]
    {
        let (running, error) =
            crate::android::session::engine_state(answer, &mut EngineStats::default());
        assert!(!running, "the Android snapshot would still say running");
        assert!(error.contains("engine stopped"), "{error}");
    }
    let err = engine.stop().unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
}

/// A bare TCP SYN from the test app at `src_port` to `dst`.
fn syn_packet(src_port: u16, dst: SocketAddrV4) -> Vec<u8> {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{IpProtocol, IpRepr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber};
    let (src, dst_ip) = (IpAddress::Ipv4(APP_IP), IpAddress::Ipv4(*dst.ip()));
    let tcp = TcpRepr {
        src_port,
        dst_port: dst.port(),
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(7000),
        ack_number: None,
        window_len: 1000,
        window_scale: None,
        max_seg_size: Some(1400),
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload: b"",
    };
    let ip = IpRepr::new(src, dst_ip, IpProtocol::Tcp, tcp.buffer_len(), 64);
    let mut out = vec![0u8; ip.buffer_len()];
    ip.emit(&mut out[..], &ChecksumCapabilities::default());
    let header = ip.header_len();
    tcp.emit(
        &mut TcpPacket::new_unchecked(&mut out[header..]),
        &src,
        &dst_ip,
        &ChecksumCapabilities::default(),
    );
    out
}

#[test]
fn private_dns_probe_to_the_tunnel_resolver_is_reset_at_once_and_not_relayed() {
    use smoltcp::wire::{TcpPacket, TcpSeqNumber};
    // A listener where the probe would be relayed if the engine treated 853 like port 53
    // (upstream) or like any address: it must see no connection.
    let relay_target = TcpListener::bind("127.0.0.1:0").unwrap();
    relay_target.set_nonblocking(true).unwrap();
    let mut h = start(relay_target.local_addr().unwrap(), tuning());
    h.send(&syn_packet(40853, SocketAddrV4::new(DNS_IP, 853)));
    let reply = h
        .recv(Duration::from_secs(5))
        .expect("a reset for the probe");
    let ip = smoltcp::wire::Ipv4Packet::new_checked(&reply[..]).unwrap();
    assert_eq!(ip.src_addr(), DNS_IP);
    let rst = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(rst.rst(), "{rst:?}");
    assert_eq!((rst.src_port(), rst.dst_port()), (853, 40853));
    assert_eq!(rst.ack_number(), TcpSeqNumber(7001));
    assert!(
        relay_target.accept().is_err(),
        "the probe reached a relay target"
    );
    let (_, events) = h.stop();
    assert!(
        !events.iter().any(|e| matches!(e, Event::Flow(_))),
        "a refused probe is no flow: {events:?}"
    );
}

#[test]
fn a_new_dns_upstream_takes_the_next_query_in_the_same_engine() {
    let first = UdpSocket::bind("127.0.0.1:0").unwrap();
    let second = UdpSocket::bind("127.0.0.1:0").unwrap();
    for upstream in [&first, &second] {
        upstream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
    }
    let mut h = start(first.local_addr().unwrap(), tuning());
    let service = SocketAddr::new(IpAddr::V4(DNS_IP), 53);
    let mut buf = [0u8; 512];

    let before = dns_query(0x0101, "before.example");
    h.send(&udp_packet(
        SocketAddr::new(IpAddr::V4(APP_IP), 5001),
        service,
        &before,
    ));
    let (n, _) = first.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], &before[..]);

    h.engine
        .as_ref()
        .unwrap()
        .set_dns_upstream(second.local_addr().unwrap())
        .unwrap();
    // Commands are handled in order: once a later one is answered, the swap has happened (a
    // packet already in the tun when the command arrives may still go to the old upstream).
    h.engine.as_ref().unwrap().stats().unwrap();
    let after = dns_query(0x0202, "after.example");
    h.send(&udp_packet(
        SocketAddr::new(IpAddr::V4(APP_IP), 5002),
        service,
        &after,
    ));
    let (n, from) = second.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], &after[..]);
    second
        .send_to(&dns_answer(&after, Ipv4Addr::new(198, 18, 2, 2)), from)
        .unwrap();
    let (_, _, answer) =
        next_udp(&h, Duration::from_secs(5)).expect("answer from the new upstream");
    assert_eq!(dns::message_id(&answer), Some(0x0202));
    first.set_nonblocking(true).unwrap();
    assert!(
        first.recv_from(&mut buf).is_err(),
        "the old upstream got the new query"
    );
    let (_, events) = h.stop();
    let names: Vec<_> = dns_records(&events).into_iter().map(|r| r.query).collect();
    assert!(names.contains(&"after.example".to_string()), "{names:?}");
}
