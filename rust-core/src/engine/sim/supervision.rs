//! A flow whose handling panics is dropped and counted; the other flows go on.

use super::*;

/// Run `test` with flows to `port` panicking when handled (the supervision hook).
fn with_panics_at<R>(port: u16, test: impl FnOnce() -> R) -> R {
    crate::engine::core::PROVOKE_PANIC_PORT_HERE.with(|p| p.set(port));
    let result = test();
    crate::engine::core::PROVOKE_PANIC_PORT_HERE.with(|p| p.set(0));
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
        let request = crate::engine::tests::echo_request(APP_IP.into(), dst, 4998, 1, b"ping");
        sim.core.on_packet(request, sim.now());
        sim.settle();
        assert_eq!(sim.core.stats().flows_failed, 1);
        let flows = sim.closed_flows();
        assert_eq!(
            (flows[0].key.proto, flows[0].close_reason),
            (Proto::Icmp, Some(CloseReason::Error))
        );
        // The engine goes on: the next echo flow is relayed.
        let request = crate::engine::tests::echo_request(APP_IP.into(), dst, 77, 1, b"ping");
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
