//! The DNS service on virtual time: answers held for the owner, SERVFAIL at the timeout, one
//! flow per exchange, and the query log of resolvers the app chose itself (UDP and TCP).

use super::*;

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
    let mut answer = crate::engine::dns::servfail(&query).unwrap();
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
    assert_eq!(crate::engine::dns::message_id(&answer), Some(0));
    assert_eq!(sim.dns_records()[0].query, "n0.example");
}

/// An empty NOERROR answer to `query` (same id and question).
fn noerror(query: &[u8]) -> Vec<u8> {
    let mut answer = crate::engine::dns::servfail(query).unwrap();
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
