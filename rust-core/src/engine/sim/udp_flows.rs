//! UDP flows on virtual time.

use super::*;

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
