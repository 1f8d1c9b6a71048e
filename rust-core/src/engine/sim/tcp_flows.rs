//! TCP flows on virtual time: the SYN-ACK held for the connect and the owner, closes, resets,
//! timeouts, and the rings' memory budget.

use super::*;

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
    sim.advance(crate::engine::tcp::APP_ACK_TIMEOUT.into());
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
    let page = crate::engine::buffers::page_size();
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
