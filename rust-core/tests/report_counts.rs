//! A capture whose true counts are known: one app (uid 10123) sends N HTTPS beacons to
//! sa.api.intl.miui.com, each after an A and an AAAA lookup of the name. Every report format
//! must say N contacts and 2N lookups, never 3N contacts (issue 8.1). The capture is a pcapng
//! file made here and fed through `phonehome analyze`, the path a user's own capture takes.

use std::net::Ipv4Addr;
use std::path::Path;

use phonehome::pcap::PcapngWriter;
use phonehome::store::report::human_bytes;

#[path = "common/phonehome_bin.rs"]
mod phonehome_bin;
use phonehome_bin::{phonehome, phonehome_ok};

#[path = "support/packets.rs"]
mod packets;
use packets::{dns_exchange, ipv4, tcp, udp};

const BEACONS: u16 = 7;
const HOST: &str = "sa.api.intl.miui.com";
const UID: u32 = 10_123;
const APP: &str = "com.android.browser";
const PHONE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const RESOLVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(161, 117, 0, 10);
const T0: i64 = 1_700_000_000_000;

fn client_hello(host: &str) -> Vec<u8> {
    let name = host.as_bytes();
    let mut sni = Vec::new();
    sni.extend(u16::try_from(name.len() + 3).unwrap().to_be_bytes());
    sni.push(0);
    sni.extend(u16::try_from(name.len()).unwrap().to_be_bytes());
    sni.extend(name);
    let mut exts = vec![0, 0];
    exts.extend(u16::try_from(sni.len()).unwrap().to_be_bytes());
    exts.extend(sni);
    let mut body = vec![0x03, 0x03];
    body.extend([7u8; 32]);
    body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend(u16::try_from(exts.len()).unwrap().to_be_bytes());
    body.extend(exts);
    let mut hs = vec![1, 0];
    hs.extend(u16::try_from(body.len()).unwrap().to_be_bytes());
    hs.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(u16::try_from(hs.len()).unwrap().to_be_bytes());
    record.extend(hs);
    record
}

/// Beacons to one host: `count` of them, the i-th at `T0 + i * every_ms`.
struct Beacons {
    host: &'static str,
    server: Ipv4Addr,
    count: u16,
    every_ms: i64,
}

/// Writes the capture: N beacons to [`HOST`], one a minute.
fn write_capture(path: &Path) {
    write_beacons(
        path,
        &[Beacons {
            host: HOST,
            server: SERVER,
            count: BEACONS,
            every_ms: 60_000,
        }],
    );
}

/// Writes the capture: per beacon an A and an AAAA lookup (each its own UDP flow to the
/// resolver, as Android's resolver does), then one TLS connection.
fn write_beacons(path: &Path, hosts: &[Beacons]) {
    let mut w = PcapngWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    let mut packets = Vec::new();
    let mut put = |t: i64, packet: Vec<u8>| packets.push((t, packet));
    for (h, b) in (0u16..).zip(hosts) {
        write_host(&mut put, h * 1000, b);
    }
    // One capture in time order, as a real one is.
    packets.sort_by_key(|p| p.0);
    for (t, packet) in packets {
        w.write_packet(t, &packet, Some(UID), Some(APP)).unwrap();
    }
    w.into_inner().unwrap();
}

/// The packets of one host's beacons; `ports` keeps the hosts' ports apart.
fn write_host(put: &mut impl FnMut(i64, Vec<u8>), ports: u16, b: &Beacons) {
    let (host, server) = (b.host, b.server);
    let hello = client_hello(host);
    for i in 0..b.count {
        let t = T0 + i64::from(i) * b.every_ms;
        for (k, qtype) in [(0u16, 1u16), (1, 28)] {
            let port = 40_000 + ports + i * 2 + k;
            let (query, answer) = dns_exchange(port, qtype, host, server);
            put(
                t + i64::from(k),
                ipv4(PHONE, RESOLVER, 17, &udp(port, 53, &query)),
            );
            put(
                t + 5 + i64::from(k),
                ipv4(RESOLVER, PHONE, 17, &udp(53, port, &answer)),
            );
        }
        let port = 50_000 + ports + i;
        let up = |seq, ack, flags, data: &[u8]| {
            ipv4(PHONE, server, 6, &tcp(port, 443, seq, ack, flags, data))
        };
        let down = |seq, ack, flags| ipv4(server, PHONE, 6, &tcp(443, port, seq, ack, flags, &[]));
        put(t + 10, up(1000, 0, 0x02, &[]));
        put(t + 20, down(5000, 1001, 0x12));
        put(t + 21, up(1001, 5001, 0x10, &[]));
        put(t + 22, up(1001, 5001, 0x18, &hello));
        let after = 1001 + u32::try_from(hello.len()).unwrap();
        put(t + 40, down(5001, after, 0x10));
        put(t + 50, up(after, 5001, 0x11, &[]));
        put(t + 60, down(5001, after + 1, 0x11));
        put(t + 61, up(after + 1, 5002, 0x10, &[]));
    }
}

#[test]
fn n_beacons_plus_their_lookups_are_n_contacts_in_every_report() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("beacons.pcapng");
    write_capture(&pcap);
    let db = dir.path().join("b.db");
    let dbs = db.to_str().unwrap();
    phonehome_ok(&["analyze", "-q", "--db", dbs, pcap.to_str().unwrap()]);
    let n = i64::from(BEACONS);

    // The flows themselves: N TLS flows plus 2N DNS flows, the DNS ones attributed to the
    // resolver ("DNS"), not to Xiaomi.
    let out = phonehome_ok(&["flows", "--db", dbs]);
    let flows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dns: Vec<_> = flows.iter().filter(|f| f["dst_port"] == 53).collect();
    assert_eq!(flows.len() as i64, 3 * n, "{flows:?}");
    assert_eq!(dns.len() as i64, 2 * n);
    for f in &dns {
        assert_eq!(f["purpose"], "DNS", "{f}");
        assert!(f["vendor"].is_null(), "{f}");
    }

    // Bytes: the totals and the app's row are all flows, its DNS flows included; the company's
    // row is its contacts only. Each report says which.
    let bytes = |pick: &dyn Fn(&&serde_json::Value) -> bool, key: &str| -> i64 {
        flows
            .iter()
            .filter(pick)
            .map(|f| f[key].as_i64().unwrap())
            .sum()
    };
    let (all_up, all_down) = (bytes(&|_| true, "bytes_up"), bytes(&|_| true, "bytes_down"));
    let contact_up = bytes(&|f| f["dst_port"] != 53, "bytes_up");
    assert!(
        contact_up > 0 && all_up > contact_up,
        "{all_up} {contact_up}"
    );

    let out = phonehome_ok(&["report", "--db", dbs, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &json["totals"];
    assert_eq!(
        (&t["bytes_up"], &t["bytes_down"]),
        (&all_up.into(), &all_down.into())
    );
    assert_eq!(json["apps"][0]["bytes_up"], all_up);
    let companies = json["companies"].as_array().unwrap();
    assert_eq!(companies.len(), 1, "{companies:?}");
    assert_eq!(companies[0]["bytes_up"], contact_up, "{companies:?}");
    assert_eq!(t["contacts"], n, "{t}");
    assert_eq!(t["lookups"], 2 * n, "{t}");
    assert_eq!(t["dns_flows"], 2 * n, "{t}");
    assert_eq!(t["xiaomi_contacts"], n, "{t}");
    let apps = json["apps"].as_array().unwrap();
    assert_eq!(apps.len(), 1, "{apps:?}");
    assert_eq!(apps[0]["app"], APP);
    assert_eq!(apps[0]["contacts"], n);
    assert_eq!(apps[0]["lookups"], 2 * n);
    assert_eq!(apps[0]["xiaomi_contacts"], n);
    let domains = json["domains"].as_array().unwrap();
    assert_eq!(
        domains.len(),
        1,
        "only the beacon host was contacted: {domains:?}"
    );
    assert_eq!(domains[0]["domain"], HOST);
    assert_eq!(domains[0]["contacts"], n);
    assert_eq!(domains[0]["lookups"], 2 * n);
    assert_eq!(
        domains[0]["bytes_up"], contact_up,
        "its lookups' bytes are not its own"
    );
    let categories: i64 = json["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["contacts"].as_i64().unwrap())
        .sum();
    assert_eq!(categories, n);
    let countries: i64 = json["countries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["contacts"].as_i64().unwrap())
        .sum();
    assert_eq!(countries, n);
    let buckets: Vec<i64> = json["timeline"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["contacts"].as_i64().unwrap())
        .collect();
    assert_eq!(buckets.iter().sum::<i64>(), n);
    // The session counts the same way: N contacts, 2N lookups (3N flows in all).
    let session = &json["sessions"][0];
    assert_eq!(
        (&session["contacts"], &session["lookups"], &session["flows"]),
        (&n.into(), &(2 * n).into(), &(3 * n).into()),
        "{session}"
    );

    // Contacts per hour per app: all N in the one hour of the capture; no daily series for
    // six minutes of traffic.
    let hourly = &json["app_timelines"]["hourly"];
    assert_eq!(hourly["bucket_ms"], 3_600_000);
    assert_eq!(hourly["starts"], serde_json::json!([T0 - T0 % 3_600_000]));
    assert_eq!(hourly["total"], serde_json::json!([n]));
    assert_eq!(hourly["series"][0]["name"], APP);
    assert_eq!(hourly["series"][0]["contacts"], serde_json::json!([n]));
    assert!(json["app_timelines"]["daily"].is_null());

    let out = phonehome_ok(&["report", "--db", dbs]);
    let text = String::from_utf8(out.stdout).unwrap();
    let table = text
        .split("CONTACTS PER HOUR PER APP (UTC; DNS lookups not counted)")
        .nth(1)
        .unwrap();
    let row = table.lines().nth(2).unwrap();
    assert!(row.trim_start().starts_with("2023-11-14 22:00"), "{table}");
    assert_eq!(
        row.split_whitespace().skip(2).collect::<Vec<_>>(),
        [n.to_string(), n.to_string()],
        "{table}"
    );
    assert!(
        text.contains(&format!(
            "{n} contacts (connections, DNS not counted), {} DNS lookups",
            2 * n
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("Xiaomi: {n} contacts with 1 endpoint.")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{} up / {} down in all flows (DNS included)",
            human_bytes(all_up),
            human_bytes(all_down)
        )),
        "{text}"
    );
    assert!(text.contains("APPS (by bytes; an app's bytes include its DNS flows)"));
    assert!(text.contains("; bytes of the contacts)\n"), "{text}");
    assert!(
        text.contains("\nTOP DOMAINS (bytes of the contacts)\n"),
        "{text}"
    );
    let session_row = text
        .split("\nSESSIONS\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap();
    let words: Vec<&str> = session_row.split_whitespace().collect();
    assert_eq!(
        words[5..9],
        [
            &*n.to_string(),
            "contacts",
            &*(2 * n).to_string(),
            "lookups"
        ],
        "{session_row}"
    );
    assert!(!session_row.contains("flows"), "{session_row}");
    let domain_line = text
        .lines()
        .find(|l| l.trim_start().starts_with(HOST))
        .unwrap();
    let cells: Vec<&str> = domain_line.split_whitespace().collect();
    assert_eq!(
        (cells[1], cells[2]),
        (&*n.to_string(), &*(2 * n).to_string()),
        "{domain_line}"
    );
    let app_line = text
        .lines()
        .find(|l| l.trim_start().starts_with(APP))
        .unwrap();
    let cells: Vec<&str> = app_line.split_whitespace().collect();
    assert_eq!(
        (cells[1], cells[2]),
        (&*n.to_string(), &*(2 * n).to_string()),
        "{app_line}"
    );

    let html = dir.path().join("r.html");
    phonehome_ok(&[
        "report",
        "--db",
        dbs,
        "--format",
        "html",
        "--out",
        html.to_str().unwrap(),
    ]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains(&format!("<b>{n}</b><span>contacts (connections)</span>")),
        "summary card"
    );
    assert!(page.contains(&format!("<b>{}</b><span>DNS lookups</span>", 2 * n)));
    assert!(page.contains(&format!(
        "<b>{}</b><span>sent (up), DNS flows included</span>",
        human_bytes(all_up)
    )));
    assert!(page.contains(&format!("<b>{n}</b><span>contacts with Xiaomi</span>")));
    assert!(
        !page.contains(&format!("<b>{}</b>", 3 * n)),
        "3N appears in the HTML"
    );
    assert!(page.contains("<h2>Contacts per hour, per app</h2>"));
    let sessions = page.split("<h2>Sessions and markers</h2>").nth(1).unwrap();
    assert!(
        sessions.contains("<th class=\"n\">Contacts</th><th class=\"n\">Lookups</th>")
            && sessions.contains(&format!(
                "<td class=\"n\">{n}</td><td class=\"n\">{}</td></tr>",
                2 * n
            )),
        "{sessions}"
    );
    // The timeline's y axis: whole, distinct counts from 0 up to at least the busiest bucket
    // (a maximum of 1 or 2 once gave 0, 0, 1, 1, 1 or 0, 1, 1, 2, 2).
    let max = *buckets.iter().max().unwrap();
    assert!(max <= 2, "the beacons come one a minute: {buckets:?}");
    let ticks = y_axis_labels(&page, "<h2>Timeline</h2>");
    assert_eq!(ticks, (0..=max).collect::<Vec<_>>(), "{buckets:?}");
    let ticks = y_axis_labels(&page, "<h2>Contacts per hour, per app</h2>");
    assert_eq!(ticks, [0, 2, 4, 6, 8], "the hour's {n} contacts");
    assert!(page.contains(&format!("<title>{APP}: {n} contacts</title></polyline>")));

    // The experiment: a marker after the fourth beacon splits 4 + 3 contacts, but 3.5 and 2.5
    // minutes of traffic are too short for per-hour rates.
    let reader = phonehome::store::Reader::open(&db).unwrap();
    let marker = reader
        .add_marker_at(1, T0 + 3 * 60_000 + 30_000, "off")
        .unwrap();
    drop(reader);
    let cmp = format!("marker:{}", marker.id);
    let out = phonehome_ok(&["report", "--db", dbs, "--compare", &cmp, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &json["comparison"];
    assert_eq!(c["before"]["totals"]["contacts"], 4, "{c}");
    assert_eq!(c["after"]["totals"]["contacts"], n - 4);
    assert_eq!(c["before"]["totals"]["lookups"], 8);
    assert_eq!(c["before"]["meaningful"], false);
    assert!(
        c["note"].as_str().unwrap().contains("not meaningful yet"),
        "{c}"
    );
    assert!(c["apps"][0]["before"]["contacts_per_hour"].is_null(), "{c}");
    assert_eq!(c["still_phoning_home"][0]["contacts_after"], n - 4);
    let out = phonehome_ok(&["report", "--db", dbs, "--compare", &cmp]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("NOTE: The comparison is not meaningful yet"),
        "{text}"
    );
    assert!(
        text.contains(": 4 contacts (4 Xiaomi), 8 lookups"),
        "{text}"
    );
}

/// The y-axis labels of the first chart after `heading`, lowest first: the numbers the chart
/// writes right-aligned left of its plot.
fn y_axis_labels(page: &str, heading: &str) -> Vec<i64> {
    let chart = page.split(heading).nth(1).unwrap();
    let svg = &chart[..chart.find("</svg>").unwrap()];
    let mut labels: Vec<i64> = svg
        .split("text-anchor=\"end\">")
        .skip(1)
        .filter_map(|rest| rest[..rest.find('<').unwrap()].parse().ok())
        .collect();
    labels.sort_unstable();
    labels
}

const META_HOST: &str = "graph.facebook.com";
const META_SERVER: Ipv4Addr = Ipv4Addr::new(31, 13, 64, 35);
const META_BEACONS: u16 = 3;

/// N beacons to a Xiaomi host (one a minute) and M to a Meta host (one per `meta_every_ms`),
/// each after its two lookups; returns the JSON, text and HTML reports.
fn company_reports(meta_every_ms: i64) -> (serde_json::Value, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("two-companies.pcapng");
    write_beacons(
        &pcap,
        &[
            Beacons {
                host: HOST,
                server: SERVER,
                count: BEACONS,
                every_ms: 60_000,
            },
            Beacons {
                host: META_HOST,
                server: META_SERVER,
                count: META_BEACONS,
                every_ms: meta_every_ms,
            },
        ],
    );
    let db = dir.path().join("c.db");
    let dbs = db.to_str().unwrap();
    phonehome_ok(&["analyze", "-q", "--db", dbs, pcap.to_str().unwrap()]);
    let out = phonehome_ok(&["report", "--db", dbs, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = String::from_utf8(phonehome_ok(&["report", "--db", dbs]).stdout).unwrap();
    let html = String::from_utf8(phonehome_ok(&["report", "--db", dbs, "--format", "html"]).stdout)
        .unwrap();
    if let Ok(keep) = std::env::var("PHONEHOME_KEEP_REPORT") {
        std::fs::write(format!("{keep}-{meta_every_ms}.html"), &html).unwrap();
    }
    (json, text, html)
}

/// The series of a ContactTimelines bucket set as (name, contacts, total).
fn series(buckets: &serde_json::Value) -> Vec<(String, Vec<i64>, i64)> {
    buckets["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let contacts = s["contacts"].as_array().unwrap();
            (
                s["name"].as_str().unwrap().to_owned(),
                contacts.iter().map(|c| c.as_i64().unwrap()).collect(),
                s["total"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Contacts per hour per company (issue 8.6): 7 Xiaomi beacons in the hour of 22:00 and 3 Meta
/// beacons 30 minutes apart (22:13, 22:43, 23:13) are two series with totals 7 and 3 in every
/// format; the 20 DNS lookups (flows to the resolver) are in none of them.
#[test]
fn contacts_per_hour_per_company_count_connections_not_lookups() {
    let (json, text, html) = company_reports(30 * 60_000);
    let (n, m) = (i64::from(BEACONS), i64::from(META_BEACONS));
    assert_eq!(json["totals"]["lookups"], 2 * (n + m), "{}", json["totals"]);
    let hourly = &json["company_timelines"]["hourly"];
    let hour = T0 - T0 % 3_600_000;
    assert_eq!(hourly["bucket_ms"], 3_600_000);
    assert_eq!(
        hourly["starts"],
        serde_json::json!([hour, hour + 3_600_000])
    );
    assert_eq!(hourly["total"], serde_json::json!([n + 2, 1]));
    assert_eq!(
        series(hourly),
        [
            ("Xiaomi".to_owned(), vec![n, 0], n),
            ("Meta".to_owned(), vec![2, 1], m),
        ],
        "{hourly}"
    );
    assert!(json["company_timelines"]["daily"].is_null());

    let table = text
        .split("CONTACTS PER HOUR PER COMPANY (UTC; DNS lookups not counted)")
        .nth(1)
        .unwrap_or_else(|| panic!("no per-company table: {text}"));
    let lines: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .take(3)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["hour", "Xiaomi", "Meta", "total"], "{table}");
    let (a, b) = (n.to_string(), (n + 2).to_string());
    assert_eq!(lines[1], ["2023-11-14", "22:00", &a, "2", &b], "{table}");
    assert_eq!(lines[2], ["2023-11-14", "23:00", "0", "1", "1"], "{table}");

    let chart = html
        .split("<h2>Contacts per hour, per company</h2>")
        .nth(1)
        .unwrap_or_else(|| panic!("no per-company chart"));
    let chart = chart.split("</section>").next().unwrap();
    assert!(chart.contains("<code>company_timelines</code>"));
    assert!(chart.contains(&format!("<title>Xiaomi: {n} contacts</title></polyline>")));
    assert!(chart.contains(&format!("<title>Meta: {m} contacts</title></polyline>")));
    assert_eq!(chart.matches("<polyline").count(), 2, "{chart}");
    assert!(chart.contains(
        "<th class=\"n\">Xiaomi</th><th class=\"n\">Meta</th><th class=\"n\">Total</th>"
    ));
    assert!(chart.contains(&format!(
        "<td class=\"n\">{n}</td><td class=\"n\">2</td><td class=\"n\">{}</td></tr>",
        n + 2
    )));
}

/// Past two days of contacts the per-company series come per day too: Meta's 3 beacons 30
/// hours apart fall on three days (14, 16 and 17 November), Xiaomi's 7 on the first.
#[test]
fn contacts_per_day_per_company_past_two_days() {
    let (json, text, html) = company_reports(30 * 3_600_000);
    let (n, m) = (i64::from(BEACONS), i64::from(META_BEACONS));
    let day = T0 - T0 % 86_400_000;
    let daily = &json["company_timelines"]["daily"];
    assert_eq!(daily["bucket_ms"], 86_400_000);
    assert_eq!(
        daily["starts"],
        serde_json::json!([day, day + 2 * 86_400_000, day + 3 * 86_400_000])
    );
    assert_eq!(
        series(daily),
        [
            ("Xiaomi".to_owned(), vec![n, 0, 0], n),
            ("Meta".to_owned(), vec![1, 1, 1], m),
        ],
        "{daily}"
    );
    assert_eq!(
        json["company_timelines"]["hourly"]["total"],
        serde_json::json!([n + 1, 1, 1])
    );
    let table = text
        .split("CONTACTS PER DAY PER COMPANY (UTC; DNS lookups not counted)")
        .nth(1)
        .unwrap_or_else(|| panic!("no per-company table: {text}"));
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(2)
        .take(3)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let (a, b) = (n.to_string(), (n + 1).to_string());
    assert_eq!(
        rows,
        [
            vec!["2023-11-14", &a, "1", &b],
            vec!["2023-11-16", "0", "1", "1"],
            vec!["2023-11-17", "0", "1", "1"],
        ],
        "{table}"
    );
    assert!(html.contains("<h2>Contacts per day, per company</h2>"));
    assert!(html.contains(&format!("<title>Meta: {m} contacts</title></polyline>")));
}

/// report, flows, export, mark and retention never write into a file that is not a PhoneHome
/// database, and never create one (issue 8.7).
#[test]
fn commands_refuse_files_that_are_not_phonehome_databases() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let foreign = dir.path().join("other.sqlite");
    {
        let c = rusqlite::Connection::open(&foreign).unwrap();
        c.execute_batch("CREATE TABLE notes(x); INSERT INTO notes VALUES ('keep me');")
            .unwrap();
    }
    let random = dir.path().join("random.db");
    let mut bytes = Vec::new();
    let mut x: u32 = 12_345;
    for _ in 0..8192 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        bytes.push((x >> 16) as u8);
    }
    std::fs::write(&random, &bytes).unwrap();
    let missing = dir.path().join("missing.db");
    let out_csv = dir.path().join("out.csv");
    let copy = dir.path().join("copy.db");

    for (file, says) in [
        (&empty, "not a PhoneHome database"),
        (&foreign, "not a PhoneHome database"),
        (&random, "not a PhoneHome database"),
        (&missing, "does not exist"),
    ] {
        let before = std::fs::read(file).ok();
        let f = file.to_str().unwrap();
        let commands: [Vec<&str>; 6] = [
            vec!["report", "--db", f],
            vec!["flows", "--db", f],
            vec![
                "export",
                "--db",
                f,
                "--format",
                "csv",
                "--out",
                out_csv.to_str().unwrap(),
            ],
            vec!["export", "--db", f, "--out", copy.to_str().unwrap()],
            vec!["mark", "--db", f, "a label"],
            vec!["retention", "--db", f, "--keep-days", "3", "--prune"],
        ];
        for args in commands {
            let out = phonehome(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert!(err.contains(&format!("{f}: {says}")), "{args:?}: {err}");
            assert_eq!(std::fs::read(file).ok(), before, "{args:?} changed {f}");
            for suffix in ["-wal", "-shm", "-journal"] {
                let side = format!("{f}{suffix}");
                assert!(!Path::new(&side).exists(), "{args:?} created {side}");
            }
        }
    }
}

/// One beacon and its lookups: the rows that align counts and the chart titles still say
/// "1 contact", not "1 contacts" (and "1 endpoint", "1 app"); two lookups stay plural.
#[test]
fn a_single_contact_is_singular_in_the_aligned_rows() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("one.pcapng");
    write_beacons(
        &pcap,
        &[Beacons {
            host: HOST,
            server: SERVER,
            count: 1,
            every_ms: 60_000,
        }],
    );
    let db = dir.path().join("one.db");
    let dbs = db.to_str().unwrap();
    phonehome_ok(&["analyze", "-q", "--db", dbs, pcap.to_str().unwrap()]);
    let text = String::from_utf8(phonehome_ok(&["report", "--db", dbs]).stdout).unwrap();
    let first_row = |heading: &str| -> Vec<String> {
        let row = text
            .split(&format!("\n{heading}\n"))
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .unwrap_or_else(|| panic!("no {heading} row in {text}"));
        row.split_whitespace().map(str::to_string).collect()
    };
    let session = first_row("SESSIONS");
    assert_eq!(session[5..9], ["1", "contact", "2", "lookups"], "{text}");
    let category = first_row("XIAOMI CATEGORIES");
    let words = category.join(" ");
    assert!(words.contains(" 1 contact "), "{words}");
    assert!(words.contains(" 1 endpoint 1 app"), "{words}");

    let html = dir.path().join("one.html");
    let html_path = html.to_str().unwrap();
    phonehome_ok(&[
        "report", "--db", dbs, "--format", "html", "--out", html_path,
    ]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains(&format!("<title>{APP}: 1 contact</title></polyline>")),
        "the app's timeline title"
    );
    assert!(
        page.contains(": 1 contact, 1 with Xiaomi</title>"),
        "the bar's title"
    );
}
