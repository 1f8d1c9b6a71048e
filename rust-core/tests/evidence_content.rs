//! Issue 8 points 3-5 on a capture whose content is known: `phonehome analyze` of a pcapng made
//! here, then `phonehome flows` and the database file itself.
//!
//! The capture (uid 10123, com.android.browser):
//! - an HTTP flow to globalapi.ad.xiaomi.com (at 23.32.0.1, Akamai's network) with two requests:
//!   `GET /api/v1/MiAdBlacklistConfig?gaid=..&imei=..` (a User-Agent naming the model) and
//!   `POST /track?order_id=<15 digits passing Luhn>` with a body;
//! - an HTTP flow to graph.facebook.com whose only finding is the model in its User-Agent;
//! - an unnamed TCP flow to 8.8.4.4 (Google's network) carrying a few opaque bytes.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use phonehome::pcap::PcapngWriter;

#[path = "support/packets.rs"]
mod packets;
use packets::{ACK, FIN, PSH, SYN, dns_exchange, ipv4, tcp, udp};

const GAID: &str = "38400000-8cf0-11bd-b23e-10b96e40000d";
const IMEI: &str = "490154203237518";
const ORDER: &str = "123456789012347";
const UID: u32 = 10_123;
const APP: &str = "com.android.browser";

/// One end to the other: (source address, port) -> (destination address, port).
type Ends = ((Ipv4Addr, u16), (Ipv4Addr, u16));

fn packet(
    ((src, sport), (dst, dport)): Ends,
    seq: u32,
    ack: u32,
    flags: u8,
    data: &[u8],
) -> Vec<u8> {
    ipv4(src, dst, 6, &tcp(sport, dport, seq, ack, flags, data))
}

/// One TCP connection: handshake, the client's `requests` (one segment each), a reply, FIN.
fn connection(
    w: &mut PcapngWriter<std::fs::File>,
    t: &mut i64,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    requests: &[&[u8]],
) {
    let phone = Ipv4Addr::new(10, 0, 0, 2);
    let mut put = |w: &mut PcapngWriter<std::fs::File>, p: Vec<u8>| {
        *t += 10;
        w.write_packet(*t, &p, Some(UID), Some(APP)).unwrap();
    };
    let (mut c, mut s) = (1000u32, 5000u32);
    put(w, packet(((phone, sport), (dst, dport)), c, 0, SYN, b""));
    put(
        w,
        packet(((dst, dport), (phone, sport)), s, c + 1, SYN | ACK, b""),
    );
    c += 1;
    s += 1;
    put(w, packet(((phone, sport), (dst, dport)), c, s, ACK, b""));
    for r in requests {
        put(
            w,
            packet(((phone, sport), (dst, dport)), c, s, ACK | PSH, r),
        );
        c += r.len() as u32;
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        put(
            w,
            packet(((dst, dport), (phone, sport)), s, c, ACK | PSH, reply),
        );
        s += reply.len() as u32;
    }
    put(
        w,
        packet(((phone, sport), (dst, dport)), c, s, FIN | ACK, b""),
    );
    put(
        w,
        packet(((dst, dport), (phone, sport)), s, c + 1, FIN | ACK, b""),
    );
    put(
        w,
        packet(((phone, sport), (dst, dport)), c + 1, s + 1, ACK, b""),
    );
}

fn geo_file() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/phonehome-geo.bin");
    std::env::var_os("PHONEHOME_GEO")
        .map(PathBuf::from)
        .or(Some(p))
        .filter(|p| p.is_file())
}

fn phonehome(args: &[&str], db: &Path) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phonehome"));
    cmd.args(args).arg("--db").arg(db);
    if let Some(geo) = geo_file() {
        cmd.env("PHONEHOME_GEO", geo);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The capture described at the top; `meta_only`: just the graph.facebook.com connection.
fn capture(path: &Path) {
    capture_with(path, false)
}

fn capture_with(path: &Path, meta_only: bool) {
    let mut w = PcapngWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    let mut t = 1_700_000_000_000i64;
    let ua = "User-Agent: Dalvik/2.1.0 (Linux; U; Android 11; M2101K7BG Build/RKQ1.201022.002)";
    if meta_only {
        t += 7_200_000;
        let fb = format!("GET /ping HTTP/1.1\r\nHost: graph.facebook.com\r\n{ua}\r\n\r\n");
        connection(
            &mut w,
            &mut t,
            Ipv4Addr::new(31, 13, 64, 35),
            40_002,
            80,
            &[fb.as_bytes()],
        );
        w.into_inner().unwrap();
        return;
    }
    // Two lookups of the Xiaomi name (to the resolver 10.0.0.1): lookups, never contacts.
    let (phone, resolver) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1));
    for (i, sport) in [(1u16, 50_001u16), (2, 50_002)] {
        let (q, a) = dns_exchange(i, 1, "globalapi.ad.xiaomi.com", Ipv4Addr::new(23, 32, 0, 1));
        t += 5;
        w.write_packet(
            t,
            &ipv4(phone, resolver, 17, &udp(sport, 53, &q)),
            Some(UID),
            Some(APP),
        )
        .unwrap();
        t += 5;
        w.write_packet(
            t,
            &ipv4(resolver, phone, 17, &udp(53, sport, &a)),
            Some(UID),
            Some(APP),
        )
        .unwrap();
    }
    let first = format!(
        "GET /api/v1/MiAdBlacklistConfig?gaid={GAID}&imei={IMEI}&v=3 HTTP/1.1\r\nHost: globalapi.ad.xiaomi.com\r\n{ua}\r\n\r\n"
    );
    let second = format!(
        "POST /track?order_id={ORDER} HTTP/1.1\r\nHost: globalapi.ad.xiaomi.com\r\nContent-Length: 9\r\n\r\nbody-{IMEI}"
    );
    let second = &second[..second.len() - IMEI.len() + 4]; // a 9-byte body: "body-4901"
    connection(
        &mut w,
        &mut t,
        Ipv4Addr::new(23, 32, 0, 1),
        40_001,
        80,
        &[first.as_bytes(), second.as_bytes()],
    );
    let fb = format!("GET /ping HTTP/1.1\r\nHost: graph.facebook.com\r\n{ua}\r\n\r\n");
    connection(
        &mut w,
        &mut t,
        Ipv4Addr::new(31, 13, 64, 35),
        40_002,
        80,
        &[fb.as_bytes()],
    );
    connection(
        &mut w,
        &mut t,
        Ipv4Addr::new(8, 8, 4, 4),
        40_003,
        4000,
        &[b"\x01\x02\x03opaque"],
    );
    w.into_inner().unwrap();
}

#[test]
fn companies_requests_and_identifiers_from_a_known_capture() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("known.pcapng");
    let db = dir.path().join("e.db");
    capture(&pcap);
    phonehome(&["analyze", "-q", pcap.to_str().unwrap()], &db);

    let jsonl = phonehome(&["flows", "--format", "jsonl"], &db);
    let flows: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(flows.len(), 5, "3 connections and 2 DNS flows: {jsonl}");
    let by_port = |p: u64| flows.iter().find(|f| f["src_port"] == p).unwrap();

    // Point 4: both requests kept, identifier values replaced by their kind, no body.
    let xiaomi = by_port(40_001);
    assert_eq!(xiaomi["hostname"], "globalapi.ad.xiaomi.com");
    assert_eq!(
        xiaomi["http_requests"],
        serde_json::json!([
            {"method": "GET", "host": "globalapi.ad.xiaomi.com",
             "path": "/api/v1/MiAdBlacklistConfig?gaid=<advertising-id>&imei=<imei>&v=3"},
            {"method": "POST", "host": "globalapi.ad.xiaomi.com",
             "path": format!("/track?order_id={ORDER}")},
        ])
    );
    // Point 5: identifiers apart from descriptors; the order number is no IMEI (the IMEI came
    // from the first request's imei= key).
    assert_eq!(xiaomi["leaks"], serde_json::json!(["gaid", "imei"]));
    assert_eq!(xiaomi["descriptors"], serde_json::json!(["model"]));
    let facebook = by_port(40_002);
    assert_eq!(facebook["leaks"], serde_json::json!([]));
    assert_eq!(facebook["descriptors"], serde_json::json!(["model"]));

    // Point 3: the company of the name; the provider from the AS (only with the geo data).
    assert_eq!(xiaomi["company"], "Xiaomi");
    assert_eq!(facebook["company"], "Meta");
    let google = by_port(40_003);
    assert!(google["hostname"].is_null());
    if geo_file().is_some() {
        assert_eq!(xiaomi["provider"], "Akamai");
        assert_eq!(facebook["provider"], "Meta");
        assert_eq!(google["company"], "Google");
        assert_eq!(google["provider"], "Google");
    } else {
        println!("SKIPPED the AS part: no phonehome-geo.bin (scripts/fetch-geo.sh)");
        assert!(google["company"].is_null());
    }

    // The CSV has the same columns.
    let csv = phonehome(&["flows", "--format", "csv"], &db);
    let header = csv.lines().next().unwrap();
    assert!(
        header.ends_with(",company,provider,descriptors,http_requests"),
        "{header}"
    );

    // Every report format: Xiaomi 1 contact and 2 lookups (the DNS flows are not contacts),
    // identifiers per app and endpoint, the redacted requests.
    let json: serde_json::Value =
        serde_json::from_str(&phonehome(&["report", "--format", "json"], &db)).unwrap();
    let company = |name: &str| {
        json["companies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["company"] == name)
            .unwrap_or_else(|| panic!("no {name} in {}", json["companies"]))
            .clone()
    };
    let mi = company("Xiaomi");
    assert_eq!(
        (mi["contacts"].as_u64(), mi["lookups"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(mi["apps"], serde_json::json!([APP]));
    assert_eq!(mi["per_hour"].as_array().unwrap().len(), 1);
    assert_eq!(mi["per_hour"][0]["contacts"], 1);
    let meta = company("Meta");
    assert_eq!(
        (meta["contacts"].as_u64(), meta["lookups"].as_u64()),
        (Some(1), Some(0))
    );
    let ids = json["identifiers"].as_array().unwrap();
    assert_eq!(
        ids.len(),
        1,
        "only the Xiaomi flow carried identifiers: {ids:?}"
    );
    assert_eq!(ids[0]["endpoint"], "globalapi.ad.xiaomi.com");
    assert_eq!(ids[0]["identifiers"], serde_json::json!(["gaid", "imei"]));
    assert_eq!(ids[0]["descriptors"], serde_json::json!(["model"]));
    assert_eq!(ids[0]["flows"], 1);
    assert_eq!(
        json["totals"]["leak_flows"], 1,
        "the model alone is no identifier"
    );
    let reqs = json["cleartext_requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        reqs[0]["path"],
        "/api/v1/MiAdBlacklistConfig?gaid=<advertising-id>&imei=<imei>&v=3"
    );
    let text = phonehome(&["report"], &db);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("Xiaomi "))
        .unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cols[..3], ["Xiaomi", "1", "2"], "{line}");
    assert!(
        text.contains(&format!(
            "{APP} -> globalapi.ad.xiaomi.com (Xiaomi): gaid, imei; 1 flow"
        )),
        "{text}"
    );
    assert!(text.contains("\n    http://globalapi.ad.xiaomi.com/api/v1/MiAdBlacklistConfig?gaid=<advertising-id>&imei=<imei>&v=3\n"), "{text}");
    let widest = text.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(widest <= 120, "text report is {widest} columns wide");
    let html = phonehome(&["report", "--format", "html"], &db);
    assert!(html.contains("<h2>Companies</h2>") && html.contains("&lt;advertising-id&gt;"));
    assert!(!html.contains(GAID) && !text.contains(IMEI));

    // The database never holds the identifier values: not in any file SQLite wrote.
    drop(flows);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pcapng") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for secret in [GAID, IMEI] {
            assert!(
                memchr_find(&bytes, secret.as_bytes()).is_none(),
                "{} holds {secret}",
                path.display()
            );
        }
    }
}

/// The experiment comparison per company: session 1 (the full capture) vs session 2 (only the
/// Meta connection, two hours later).
#[test]
fn comparison_counts_contacts_and_lookups_per_company() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    for (name, meta_only) in [("before.pcapng", false), ("after.pcapng", true)] {
        let pcap = dir.path().join(name);
        capture_with(&pcap, meta_only);
        phonehome(&["analyze", "-q", pcap.to_str().unwrap()], &db);
    }
    let json: serde_json::Value = serde_json::from_str(&phonehome(
        &["report", "--compare", "1..2", "--format", "json"],
        &db,
    ))
    .unwrap();
    let rows = json["comparison_companies"].as_array().unwrap();
    let row = |name: &str| rows.iter().find(|c| c["company"] == name).unwrap().clone();
    let mi = row("Xiaomi");
    assert_eq!(
        [
            &mi["contacts_before"],
            &mi["contacts_after"],
            &mi["lookups_before"],
            &mi["lookups_after"]
        ],
        [1, 0, 2, 0]
    );
    let meta = row("Meta");
    assert_eq!([&meta["contacts_before"], &meta["contacts_after"]], [1, 1]);
    assert_eq!(meta["apps_after"], serde_json::json!([APP]));
    // Companies still contacted after come first.
    assert_eq!(rows[0]["company"], "Meta");
    let text = phonehome(&["report", "--compare", "1..2"], &db);
    assert!(text.contains("COMPANIES BEFORE VS AFTER"), "{text}");
    let line = text
        .lines()
        .skip_while(|l| !l.contains("COMPANIES BEFORE VS AFTER"))
        .find(|l| l.trim_start().starts_with("Xiaomi "))
        .unwrap();
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>()[..5],
        ["Xiaomi", "1", "0", "2", "0"]
    );
    assert!(json["comparison"].is_object());
    assert!(
        phonehome(&["report", "--compare", "1..2", "--format", "html"], &db)
            .contains("<h2>Companies before vs after</h2>")
    );
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
