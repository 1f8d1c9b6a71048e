//! The aggregated views (rollup + window edges) agree with a brute-force sum over the flows,
//! for whole sessions, marker-bounded windows that cut hours, renamed flows and pruning.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use phonehome::flow::{DnsRecord, Event, FlowKey, FlowRecord, NameSource, Proto};
use phonehome::store::timeline::{MAX_SERIES, OTHER, SeriesKey, UNATTRIBUTED};
use phonehome::store::{FlowFilter, FlowRow, Reader, Retention, SessionInfo, StoreWriter, Window};

#[path = "support/synth.rs"]
mod synth;
use synth::Synth;

const HOUR: i64 = 3_600_000;
const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR + 17 * 60_000; // hh:17

fn build(db: &std::path::Path, sessions: u64, flows: i64, spacing: i64) -> Vec<i64> {
    let mut ids = Vec::new();
    for s in 0..sessions {
        let writer = StoreWriter::start(
            db,
            SessionInfo {
                kind: "test".into(),
                ..SessionInfo::default()
            },
        )
        .unwrap();
        let tx = writer.sender();
        let mut synth = Synth::new(100 + s);
        synth.host_variety = 30;
        for e in synth.app_events() {
            tx.send(e).unwrap();
        }
        let start = T0 + s as i64 * 10 * HOUR;
        for i in 0..flows {
            if i == flows / 2 {
                synth.off = true;
            }
            for e in synth.flow_events(start + i * spacing) {
                tx.send(e).unwrap();
            }
        }
        ids.push(writer.session_id());
        writer.finish().unwrap();
    }
    ids
}

fn in_window(f: &FlowRow, w: &Window) -> bool {
    w.session.is_none_or(|s| f.session == s)
        && w.from.is_none_or(|t| f.first_seen >= t)
        && w.to.is_none_or(|t| f.first_seen < t)
}

fn app_name(f: &FlowRow) -> String {
    f.app.clone().unwrap_or_else(|| {
        f.uid
            .map(|u| format!("uid {u}"))
            .unwrap_or("unknown".into())
    })
}

/// Checks per_app, per_domain, per_country, per_category, totals and hourly timeline.
fn check(reader: &Reader, w: &Window) {
    let flows: Vec<FlowRow> = reader
        .flows(&FlowFilter::default())
        .unwrap()
        .into_iter()
        .filter(|f| in_window(f, w))
        .collect();

    let totals = reader.totals(w).unwrap();
    assert_eq!(totals.contacts, flows.len() as i64, "{w:?}");
    assert_eq!(
        totals.bytes_up,
        flows.iter().map(|f| f.bytes_up).sum::<i64>()
    );
    assert_eq!(
        totals.bytes_down,
        flows.iter().map(|f| f.bytes_down).sum::<i64>()
    );
    assert_eq!(
        totals.cleartext_flows,
        flows.iter().filter(|f| f.cleartext).count() as i64
    );
    let xiaomi: BTreeSet<_> = flows
        .iter()
        .filter(|f| f.vendor.as_deref() == Some("xiaomi"))
        .map(|f| f.hostname.clone().unwrap_or(f.dst_ip.clone()))
        .collect();
    assert_eq!(totals.xiaomi_endpoints, xiaomi.len() as i64);

    let mut by_app: BTreeMap<String, (i64, i64, BTreeSet<String>)> = BTreeMap::new();
    for f in &flows {
        let e = by_app.entry(app_name(f)).or_default();
        e.0 += 1;
        e.1 += f.bytes_up + f.bytes_down;
        if f.vendor.as_deref() == Some("xiaomi") {
            e.2.insert(f.hostname.clone().unwrap_or(f.dst_ip.clone()));
        }
    }
    let apps = reader.per_app(w).unwrap();
    assert_eq!(apps.len(), by_app.len(), "{w:?}");
    for a in &apps {
        let (n, bytes, x) = &by_app[&a.app];
        assert_eq!(
            (a.contacts, a.bytes_up + a.bytes_down, a.xiaomi_endpoints),
            (*n, *bytes, x.len() as i64),
            "{}",
            a.app
        );
    }

    for a in apps.iter().take(3) {
        let mut mine: BTreeMap<String, i64> = BTreeMap::new();
        for f in flows.iter().filter(|f| app_name(f) == a.app) {
            *mine
                .entry(f.hostname.clone().unwrap_or(f.dst_ip.clone()))
                .or_default() += 1;
        }
        let got: BTreeMap<String, i64> = reader
            .app_domains(w, &a.app, None)
            .unwrap()
            .into_iter()
            .map(|d| (d.domain, d.contacts))
            .collect();
        assert_eq!(got, mine, "domains of {}", a.app);
    }

    let mut by_domain: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for f in &flows {
        let e = by_domain
            .entry(f.hostname.clone().unwrap_or(f.dst_ip.clone()))
            .or_default();
        e.0 += 1;
        e.1 += f.bytes_down;
    }
    let domains = reader.per_domain(w, None).unwrap();
    assert_eq!(domains.len(), by_domain.len());
    for d in &domains {
        assert_eq!(
            (d.contacts, d.bytes_down),
            by_domain[&d.domain],
            "{}",
            d.domain
        );
    }
    let top = reader.per_domain(w, Some(3)).unwrap();
    assert!(top.len() <= 3);
    if let Some(first) = top.first() {
        assert_eq!(
            first.contacts,
            by_domain.values().map(|v| v.0).max().unwrap()
        );
    }

    let mut by_country: BTreeMap<String, i64> = BTreeMap::new();
    for f in &flows {
        *by_country
            .entry(f.country.clone().unwrap_or("??".into()))
            .or_default() += 1;
    }
    let countries: BTreeMap<String, i64> = reader
        .per_country(w)
        .unwrap()
        .into_iter()
        .map(|c| (c.country, c.contacts))
        .collect();
    assert_eq!(countries, by_country);

    let mut by_cat: BTreeMap<String, i64> = BTreeMap::new();
    for f in flows
        .iter()
        .filter(|f| f.vendor.as_deref() == Some("xiaomi"))
    {
        *by_cat
            .entry(f.category.clone().unwrap_or("uncategorised".into()))
            .or_default() += 1;
    }
    let cats: BTreeMap<String, i64> = reader
        .per_category(w)
        .unwrap()
        .into_iter()
        .map(|c| (c.category, c.contacts))
        .collect();
    assert_eq!(cats, by_cat);

    for bucket in [HOUR, 2 * HOUR, 600_000] {
        let mut by_bucket: BTreeMap<i64, i64> = BTreeMap::new();
        for f in &flows {
            *by_bucket
                .entry(f.first_seen - f.first_seen % bucket)
                .or_default() += 1;
        }
        let tl: BTreeMap<i64, i64> = reader
            .timeline(w, bucket)
            .unwrap()
            .into_iter()
            .map(|b| (b.start, b.contacts))
            .collect();
        assert_eq!(tl, by_bucket, "bucket {bucket}");
    }

    // Contacts per hour per company: the flows' own company (the `flows` view attributes each
    // flow), per hour, and the per-company table's totals.
    let mut by_company: BTreeMap<String, BTreeMap<i64, i64>> = BTreeMap::new();
    for f in &flows {
        let name = f.company.clone().unwrap_or(UNATTRIBUTED.into());
        *by_company
            .entry(name)
            .or_default()
            .entry(f.first_seen - f.first_seen % HOUR)
            .or_default() += 1;
    }
    let hourly = reader
        .contact_timelines(w, SeriesKey::Company)
        .unwrap()
        .hourly;
    let starts: BTreeSet<i64> = by_company
        .values()
        .flat_map(|h| h.keys().copied())
        .collect();
    assert_eq!(
        hourly.starts,
        starts.into_iter().collect::<Vec<_>>(),
        "{w:?}"
    );
    assert_eq!(
        hourly.series.iter().map(|s| s.total).sum::<i64>(),
        flows.len() as i64
    );
    assert_eq!(hourly.total.iter().sum::<i64>(), flows.len() as i64);
    let table: BTreeMap<String, u64> = reader
        .per_company(w)
        .unwrap()
        .into_iter()
        .map(|c| (c.company, c.contacts))
        .collect();
    let named: Vec<_> = hourly.series.iter().filter(|s| s.name != OTHER).collect();
    assert_eq!(named.len(), by_company.len().min(MAX_SERIES), "{w:?}");
    for series in named {
        let want: Vec<i64> = hourly
            .starts
            .iter()
            .map(|b| by_company[&series.name].get(b).copied().unwrap_or(0))
            .collect();
        assert_eq!(series.contacts, want, "{} in {w:?}", series.name);
        assert_eq!(table[&series.name], series.total as u64, "{}", series.name);
    }
}

#[test]
fn views_match_brute_force_for_sessions_and_marker_windows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    // 2 sessions x 600 flows, one every 20 s: 3h20 each, starting at hh:17.
    let ids = build(&db, 2, 600, 20_000);
    let reader = Reader::open(&db).unwrap();
    let marker = reader
        .add_marker_at(ids[1], T0 + 10 * HOUR + 6_000_000 + 1234, "off")
        .unwrap();
    let windows = [
        Window::all(),
        Window::session(ids[0]),
        Window::session(ids[1]),
        Window {
            session: Some(ids[1]),
            from: None,
            to: Some(marker.time),
        },
        Window {
            session: Some(ids[1]),
            from: Some(marker.time),
            to: None,
        },
        Window {
            session: None,
            from: Some(T0 + 5 * 60_000),
            to: Some(T0 + 2 * HOUR + 60_000),
        },
        Window {
            session: Some(ids[0]),
            from: Some(T0 + 60_000),
            to: Some(T0 + 20 * 60_000),
        },
        Window {
            session: Some(ids[0]),
            from: Some(T0 + HOUR - 17 * 60_000),
            to: Some(T0 + 2 * HOUR - 17 * 60_000),
        },
    ];
    for w in &windows {
        check(&reader, w);
    }
}

#[test]
fn rollup_follows_renames_late_owners_and_pruning() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let writer = StoreWriter::start(&db, SessionInfo::default()).unwrap();
    let tx = writer.sender();
    let key = FlowKey {
        proto: Proto::Tcp,
        src: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 7, 0, 2)), 40001),
        dst: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)), 443),
    };
    let mut f = FlowRecord::new(1, key, T0);
    f.uid = Some(10042);
    f.bytes_up = 10;
    tx.send(Event::Flow(f.clone())).unwrap();
    tx.send(Event::Dns(DnsRecord {
        time: T0 - 10,
        uid: Some(10042),
        flow_id: None,
        client: key.src,
        server: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 7, 0, 1)), 53),
        transport: Proto::Udp,
        query: "tracking.intl.miui.com".into(),
        qtype: 1,
        rcode: Some(0),
        answers: vec!["198.18.1.1".into()],
        answer_ips: vec![key.dst.ip()],
        ttl: Some(60),
    }))
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700)); // let a batch commit unnamed
    f.offer_name("cdn.example.net", NameSource::Dns);
    f.offer_name("tracking.intl.miui.com", NameSource::Sni);
    f.destination.vendor = Some("Xiaomi".into());
    f.destination.country = Some("DE".into());
    f.bytes_up = 500;
    tx.send(Event::Flow(f.clone())).unwrap();
    tx.send(Event::App {
        uid: 10042,
        name: "com.miui.analytics".into(),
    })
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    f.bytes_down = 900;
    tx.send(Event::FlowClosed(f.clone())).unwrap();
    writer.finish().unwrap();

    let reader = Reader::open(&db).unwrap();
    let domains = reader.per_domain(&Window::all(), None).unwrap();
    assert_eq!(domains.len(), 1, "{domains:?}");
    assert_eq!(domains[0].domain, "tracking.intl.miui.com");
    assert_eq!(
        (
            domains[0].contacts,
            domains[0].bytes_up,
            domains[0].bytes_down
        ),
        (1, 500, 900)
    );
    assert_eq!(domains[0].vendor.as_deref(), Some("xiaomi"));
    let apps = reader.per_app(&Window::all()).unwrap();
    assert_eq!(apps[0].app, "com.miui.analytics");
    // The DNS row was committed before the owner was known; it reads with the name.
    let dns = reader.dns(&Default::default()).unwrap();
    assert_eq!(dns[0].app.as_deref(), Some("com.miui.analytics"));
    assert_eq!(
        reader.flows(&FlowFilter::default()).unwrap()[0]
            .app
            .as_deref(),
        Some("com.miui.analytics")
    );
    assert_eq!(apps[0].xiaomi_endpoints, 1);
    check(&reader, &Window::all());

    // Age-based pruning removes flows and their rollup rows.
    let ids = build(&db, 1, 100, 1000);
    let keep = Retention {
        max_age_days: Some(1),
        max_mb: None,
    };
    // Sessions recorded today keep their (2023) flows: like a pcap analysed today.
    assert_eq!(reader.prune(&keep).unwrap(), 0);
    // Stand-in for sessions recorded ten days ago (the writer always stamps "now").
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE sessions SET started = started - 10 * 86400000", [])
        .unwrap();
    let r = reader.prune(&keep).unwrap();
    assert_eq!(
        r,
        101 + 76 + 2,
        "every flow and DNS row, then both empty sessions"
    );
    assert_eq!(reader.totals(&Window::all()).unwrap().contacts, 0);
    assert!(reader.per_app(&Window::all()).unwrap().is_empty());
    assert!(reader.per_domain(&Window::all(), None).unwrap().is_empty());
    assert!(reader.session(ids[0]).unwrap().is_none());
    assert!(reader.sessions().unwrap().is_empty());
    assert_eq!(reader.integrity_check().unwrap(), "ok");
}
