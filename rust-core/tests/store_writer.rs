//! The writer and the flows/DNS read-back, on real database files.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use phonehome::flow::{CloseReason, Event, FlowKey, FlowRecord, NameSource, Proto};
use phonehome::store::{
    DnsFilter, FLOW_COLUMNS, FlowFilter, Reader, SessionInfo, StoreWriter, Window,
};

#[path = "common/phonehome_bin.rs"]
mod phonehome_bin;
use phonehome_bin::{phonehome, phonehome_ok};

#[path = "support/synth.rs"]
mod synth;
use synth::Synth;

fn key(port: u16) -> FlowKey {
    FlowKey {
        proto: Proto::Tcp,
        src: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 7, 0, 2)), port),
        dst: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9)), 443),
    }
}

fn info() -> SessionInfo {
    SessionInfo {
        kind: "test".into(),
        device: Some("Redmi Note 9 Pro".into()),
        ..SessionInfo::default()
    }
}

#[test]
fn upserts_coalesce_and_final_copy_wins() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let writer = StoreWriter::start(&db, info()).unwrap();
    let tx = writer.sender();
    let mut f = FlowRecord::new(7, key(40000), 1_000);
    f.uid = Some(10042);
    tx.send(Event::Flow(f.clone())).unwrap();
    f.offer_name("Data.Mistat.Intl.Xiaomi.com", NameSource::Sni);
    f.bytes_up = 100;
    f.bytes_down = 2000;
    f.packets_up = 2;
    f.packets_down = 3;
    f.leaks = vec!["android_id".into(), "model".into()];
    f.destination.vendor = Some("xiaomi".into());
    f.destination.country = Some("SG".into());
    tx.send(Event::Flow(f.clone())).unwrap();
    // The owner lookup answers after the flow started: the name is filled in afterwards.
    tx.send(Event::App {
        uid: 10042,
        name: "com.miui.analytics".into(),
    })
    .unwrap();
    f.last_seen = 3_000;
    f.close_reason = Some(CloseReason::Fin);
    tx.send(Event::FlowClosed(f.clone())).unwrap();
    // A stale update after the close must not overwrite the final copy.
    let mut stale = f.clone();
    stale.close_reason = None;
    stale.bytes_up = 50;
    tx.send(Event::Flow(stale)).unwrap();
    let session = writer.session_id();
    writer.finish().unwrap();

    let reader = Reader::open(&db).unwrap();
    let flows = reader.flows(&FlowFilter::default()).unwrap();
    assert_eq!(flows.len(), 1);
    let row = &flows[0];
    assert_eq!(row.session, session);
    assert_eq!(row.app.as_deref(), Some("com.miui.analytics"));
    assert_eq!(row.hostname.as_deref(), Some("data.mistat.intl.xiaomi.com"));
    assert_eq!(row.hostname_source.as_deref(), Some("sni"));
    assert_eq!(
        (
            row.bytes_up,
            row.bytes_down,
            row.packets_up,
            row.packets_down
        ),
        (100, 2000, 2, 3)
    );
    assert_eq!(row.close_reason.as_deref(), Some("fin"));
    assert_eq!((row.first_seen, row.last_seen), (1_000, 3_000));
    // The model is a device descriptor, kept apart from the identifiers.
    assert_eq!(row.leaks, vec!["android_id"]);
    assert_eq!(row.descriptors, vec!["model"]);
    assert_eq!(row.src_port, 40000);
    assert_eq!(row.dst_ip, "198.18.0.9");
    let sessions = reader.sessions().unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].ended.is_some());
    assert!(!sessions[0].running);
    assert_eq!(sessions[0].device.as_deref(), Some("Redmi Note 9 Pro"));
    assert_eq!(reader.integrity_check().unwrap(), "ok");
}

#[test]
fn synthetic_sessions_round_trip_flows_dns_and_apps() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let mut ids = Vec::new();
    for seed in 1..=2u64 {
        let writer = StoreWriter::start(&db, info()).unwrap();
        let tx = writer.sender();
        let mut synth = Synth::new(seed);
        for e in synth.app_events() {
            tx.send(e).unwrap();
        }
        for i in 0..500 {
            for e in synth.flow_events(1_700_000_000_000 + i * 1000) {
                tx.send(e).unwrap();
            }
        }
        ids.push(writer.session_id());
        writer.finish().unwrap();
    }
    let reader = Reader::open(&db).unwrap();
    let all = reader.flows(&FlowFilter::default()).unwrap();
    assert_eq!(all.len(), 1000);
    let second = reader
        .flows(&FlowFilter {
            window: Window::session(ids[1]),
            ..FlowFilter::default()
        })
        .unwrap();
    assert_eq!(second.len(), 500);
    assert!(
        second
            .iter()
            .all(|f| f.session == ids[1] && f.close_reason.is_some() && f.app.is_some())
    );
    let dns = reader
        .dns(&DnsFilter {
            window: Window::session(ids[0]),
            ..DnsFilter::default()
        })
        .unwrap();
    assert_eq!(dns.len(), 375, "three flows in four are named by DNS");
    assert!(
        dns.iter()
            .all(|d| d.app.is_some() && d.answer_ips.len() == 1)
    );
    let apps = reader.apps(ids[0]).unwrap();
    assert!(apps.contains(&(10042, "com.miui.analytics".to_string())));
    let xiaomi = reader
        .flows(&FlowFilter {
            domain: Some("xiaomi.com".into()),
            ..FlowFilter::default()
        })
        .unwrap();
    assert!(!xiaomi.is_empty());
    assert!(xiaomi.iter().all(|f| {
        f.hostname
            .as_deref()
            .is_some_and(|h| h.ends_with(".xiaomi.com"))
    }));
}

#[test]
fn cli_flows_jsonl_csv_dns_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let writer = StoreWriter::start(&db, info()).unwrap();
    let tx = writer.sender();
    let mut synth = Synth::new(9);
    for e in synth.app_events() {
        tx.send(e).unwrap();
    }
    for i in 0..40 {
        for e in synth.flow_events(1_700_000_000_000 + i * 1000) {
            tx.send(e).unwrap();
        }
    }
    writer.finish().unwrap();
    let dbs = db.to_str().unwrap();

    let out = phonehome_ok(&["flows", "--db", dbs]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 40);
    for key in FLOW_COLUMNS {
        assert!(
            lines[0].get(key).is_some(),
            "JSONL lacks {key}: {}",
            lines[0]
        );
    }
    assert!(lines[0]["bytes_up"].as_i64().unwrap() > 0);

    let out = phonehome(&["flows", "--db", dbs, "--format", "csv", "--session", "1"]);
    assert!(out.status.success());
    let mut csv = csv::Reader::from_reader(&out.stdout[..]);
    let headers = csv.headers().unwrap().clone();
    assert_eq!(&headers[0], "session");
    assert_eq!(csv.records().count(), 40);

    let out = phonehome(&["flows", "--db", dbs, "--dns"]);
    assert!(out.status.success());
    let dns = String::from_utf8(out.stdout).unwrap();
    assert_eq!(dns.lines().count(), 30);
    let first: serde_json::Value = serde_json::from_str(dns.lines().next().unwrap()).unwrap();
    assert!(first["query"].as_str().unwrap().contains('.'));

    let missing = dir.path().join("nope.db");
    let out = phonehome(&["flows", "--db", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope.db") && err.contains("does not exist"),
        "{err}"
    );

    let foreign = dir.path().join("foreign.db");
    std::fs::write(&foreign, vec![b'x'; 4096]).unwrap();
    let out = phonehome(&["flows", "--db", foreign.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a PhoneHome database"));

    let newer = dir.path().join("newer.db");
    std::fs::copy(&db, &newer).unwrap();
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 7")
        .unwrap();
    let out = phonehome(&["flows", "--db", newer.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("newer.db") && err.contains("schema version 7 is newer"),
        "{err}"
    );

    let out = phonehome(&["flows", "--db", dbs, "--session", "99"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--session 99"));

    let out = phonehome(&["flows", "--db", dbs, "--format", "xml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_backlog_is_committed_every_window_not_only_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("steady.db");
    let options = phonehome::store::WriterOptions {
        window: std::time::Duration::from_millis(100),
        max_batch: usize::MAX,
        ..Default::default()
    };
    let writer = StoreWriter::start_with(&db, info(), options).unwrap();
    let tx = writer.sender();
    let mut synth = Synth::new(4);
    // A backlog the writer needs well over a window to drain: the channel is never empty.
    let mut sent = 0u64;
    for i in 0..100_000 {
        for e in synth.flow_events(1_700_000_000_000 + i) {
            tx.send(e).unwrap();
            sent += 1;
        }
    }
    // The second commit must come while the backlog is still being drained, however fast or
    // loaded the machine is: wait for it (or for the drain to finish, which fails the test).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let during = loop {
        let stats = writer.stats();
        if stats.commits >= 2 || stats.events >= sent {
            break stats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "writer stalled: {stats:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(
        during.commits >= 2,
        "only committed at the end of the backlog: {during:?}"
    );
    assert!(during.events < sent, "{during:?}");
    writer.finish().unwrap();
    assert_eq!(
        Reader::open(&db)
            .unwrap()
            .totals(&Window::all())
            .unwrap()
            .contacts,
        100_000
    );
}
