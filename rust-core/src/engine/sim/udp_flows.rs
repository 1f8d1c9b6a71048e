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

/// `packet` (an IPv4 packet with a 20-byte header) cut into fragments of at most `piece`
/// payload bytes (a multiple of 8), as the app's kernel cuts a datagram larger than the MTU.
fn ipv4_fragments(packet: &[u8], piece: usize) -> Vec<Vec<u8>> {
    use smoltcp::wire::Ipv4Packet;
    let (header, payload) = packet.split_at(20);
    payload
        .chunks(piece)
        .enumerate()
        .map(|(i, chunk)| {
            let mut fragment = [header, chunk].concat();
            let mut ip = Ipv4Packet::new_unchecked(&mut fragment[..]);
            ip.set_total_len((20 + chunk.len()) as u16);
            ip.set_ident(0x4242);
            ip.set_dont_frag(false);
            ip.set_more_frags((i + 1) * piece < payload.len());
            ip.set_frag_offset((i * piece) as u16);
            ip.fill_checksum();
            fragment
        })
        .collect()
}

#[test]
fn a_datagram_in_fragments_reaches_the_server_whole() {
    let mut sim = Sim::new(tuning());
    let app = SocketAddr::new(APP_IP.into(), 6001);
    let dst = SocketAddr::new(Ipv4Addr::new(203, 0, 113, 9).into(), 7);
    let payload = pattern(3_000);
    let mut fragments = ipv4_fragments(&udp_packet(app, dst, &payload), 1_480);
    assert_eq!(fragments.len(), 3);
    // Out of order, as nothing promises otherwise.
    fragments.swap(0, 2);
    for fragment in fragments {
        sim.core.on_packet(fragment, sim.now());
    }
    sim.settle();
    let (_, to, server) = sim.server_datagrams();
    assert_eq!(to, dst);
    assert_eq!(server.borrow().received, [payload]);
    let stats = sim.core.stats();
    assert_eq!((stats.packets_dropped, stats.fragments_dropped), (0, 0));
}

#[test]
fn a_fragment_beyond_64_kib_is_given_up_and_counted() {
    use smoltcp::wire::Ipv4Packet;
    let mut sim = Sim::new(tuning());
    let app = SocketAddr::new(APP_IP.into(), 6002);
    let dst = SocketAddr::new(Ipv4Addr::new(203, 0, 113, 9).into(), 7);
    let mut fragment = udp_packet(app, dst, &pattern(100));
    let mut ip = Ipv4Packet::new_unchecked(&mut fragment[..]);
    // The largest offset the field holds (8,191 x 8): its 108 bytes would end past 65,535.
    ip.set_frag_offset(65_528);
    ip.set_more_frags(false);
    ip.fill_checksum();
    sim.core.on_packet(fragment, sim.now());
    sim.settle();
    assert!(sim.host.0.borrow().datagrams.is_empty(), "nothing relayed");
    let stats = sim.core.stats();
    assert_eq!((stats.packets_dropped, stats.fragments_dropped), (1, 1));
}
