//! `phonehome capture --pcapng FILE` end to end (root): the live database and `phonehome
//! analyze FILE` into a fresh database hold the same flows (whole rows), and
//! tshark reads the file and its per-packet owner comments.

mod rig;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rig::{Rig, db_flows, root_or_skip};

const T: Duration = Duration::from_secs(180);

type FlowFacts = (String, SocketAddr, SocketAddr, Option<String>, Option<u32>);

fn facts(db: &Path) -> BTreeSet<FlowFacts> {
    db_flows(db)
        .into_iter()
        .map(|f| (f.proto, f.src, f.dst, f.hostname, f.uid))
        .collect()
}

/// Every column of every flow row but the database's own ids (row id, session, flow id: the
/// engine and the observer number flows in their own order), as text. The one documented
/// observe-mode difference (docs/ARCHITECTURE.md) is folded: a flow still open when the session
/// ends closes as `engine-stop` live and `end-of-capture` in a replay.
fn whole_rows(db: &Path) -> BTreeSet<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('flows')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .filter(|c: &String| !matches!(c.as_str(), "id" | "session_id" | "flow_id"))
        .collect();
    let select = columns
        .iter()
        .map(|c| match c.as_str() {
            "close_reason" => "'close_reason=' || CASE WHEN close_reason IN ('engine-stop', \
                 'end-of-capture') THEN 'session-end' ELSE IFNULL(close_reason, 'NULL') END"
                .to_owned(),
            c => format!("'{c}=' || IFNULL({c}, 'NULL')"),
        })
        .collect::<Vec<_>>()
        .join(" || ' ' || ");
    let mut stmt = conn
        .prepare(&format!("SELECT {select} FROM flows"))
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The DNS log as text rows (client, server, query, type, rcode, answers, answer IPs, TTL, uid,
/// time: the query's, live and replayed).
fn dns_rows(db: &Path) -> BTreeSet<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT client_ip || ':' || client_port || ' ' || server_ip || ':' || server_port || ' ' ||
                    transport || ' ' || query || '|' || qtype || '|' || IFNULL(rcode, '-') || '|' ||
                    IFNULL(answers, '') || '|' || IFNULL(answer_ips, '') || '|' || IFNULL(ttl, '-') || '|' ||
                    IFNULL(uid, '-') || ' @' || time
             FROM dns",
        )
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn live_pcapng_round_trips_through_analyze_and_tshark() {
    if !root_or_skip("live_pcapng_round_trips_through_analyze_and_tshark") {
        return;
    }
    let rig = Rig::new("pcapng");
    let pcapng = rig.tmp.0.join("live.pcapng");
    let py = Rig::clients_py();
    // DNS (getent, as root), HTTP by name (curl resolves through the engine), HTTP and UDP as
    // other users so the owners differ; then an app that asks its own resolver (the server's,
    // not the engine's), over UDP and TCP, and connects to the address it got.
    let out = rig.capture_args(
        &["--pcapng", pcapng.to_str().unwrap()],
        &format!(
            "set -e
             getent hosts web.phonehome.test >/dev/null
             curl -sS --max-time 20 http://web.phonehome.test/blob/3000 -o /dev/null
             setpriv --reuid=65534 --regid=65534 --clear-groups curl -sS --max-time 20 http://198.18.0.1/blob/2222 -o /dev/null
             setpriv --reuid=4242 --regid=4242 --clear-groups /usr/bin/python3 {py} udp-echo 198.18.0.1 7 20 500
             setpriv --reuid=4343 --regid=4343 --clear-groups dig +short +tries=1 +time=5 @198.18.0.1 direct.phonehome.test
             setpriv --reuid=4343 --regid=4343 --clear-groups dig +tcp +short +tries=1 +time=5 @198.18.0.1 stream.phonehome.test
             setpriv --reuid=4343 --regid=4343 --clear-groups curl -sS --max-time 20 http://198.18.0.1/blob/1111 -o /dev/null"
        ),
        T,
    );
    out.assert_success("capture with --pcapng");
    assert!(
        out.stderr.contains("packets written to") && out.stderr.contains("live.pcapng"),
        "{}",
        out.stderr
    );

    let live = facts(&rig.db_path());
    let replay_db = rig.tmp.0.join("replay.db");
    let analyze = Command::new(env!("CARGO_BIN_EXE_phonehome"))
        .args(["analyze", "--db"])
        .arg(&replay_db)
        .arg(&pcapng)
        .output()
        .unwrap();
    assert!(
        analyze.status.success(),
        "analyze: {}",
        String::from_utf8_lossy(&analyze.stderr)
    );
    // The file holds every packet that crossed the TUN; ICMP other than echo would be no flow
    // live or replayed (`flow_rules::echo_of`).
    let replayed: BTreeSet<FlowFacts> = facts(&replay_db);

    // Every flow the apps made is there, named and owned, in both.
    // Both HTTP flows go to the same address, so both carry the name the root curl looked up;
    // which one sorts first depends on the ephemeral ports: compare them as a set.
    let http: Vec<_> = live
        .iter()
        .filter(|f| f.0 == "tcp" && f.2.port() == 80 && f.4 != Some(4343))
        .collect();
    let http_uids: BTreeSet<_> = http.iter().map(|f| f.4).collect();
    assert_eq!(
        http_uids,
        BTreeSet::from([Some(0), Some(65534)]),
        "{http:#?}"
    );
    assert!(
        http.iter()
            .all(|f| f.3.as_deref() == Some("web.phonehome.test")),
        "{http:#?}"
    );
    assert!(
        live.iter().any(|f| f.0 == "tcp" && f.4 == Some(65534)),
        "{live:#?}"
    );
    assert!(
        live.iter()
            .any(|f| f.0 == "udp" && f.2.port() == 7 && f.4 == Some(4242)),
        "{live:#?}"
    );
    assert!(
        live.iter().any(|f| f.0 == "udp" && f.2.port() == 53),
        "{live:#?}"
    );
    // The own resolver's last answer names the connection that followed it.
    assert!(
        live.iter().any(|f| f.0 == "tcp"
            && f.2.port() == 80
            && f.3.as_deref() == Some("stream.phonehome.test")
            && f.4 == Some(4343)),
        "{live:#?}"
    );
    assert_eq!(live, replayed, "live db vs analyze of the pcapng");
    // Not only who and where: every counter, time, name and verdict of every flow.
    let (live_rows, replayed_rows) = (whole_rows(&rig.db_path()), whole_rows(&replay_db));
    let only_live: Vec<_> = live_rows.difference(&replayed_rows).collect();
    let only_replayed: Vec<_> = replayed_rows.difference(&live_rows).collect();
    assert!(
        only_live.is_empty() && only_replayed.is_empty(),
        "flow rows differ\nlive only: {only_live:#?}\nreplay only: {only_replayed:#?}"
    );
    // The DNS log too: the engine and the observer build their records with the same parser.
    let live_dns = dns_rows(&rig.db_path());
    assert!(
        live_dns
            .iter()
            .any(|d| d.contains("web.phonehome.test|1|0|198.18.0.1|198.18.0.1|60|0 @")),
        "{live_dns:#?}"
    );
    for expected in [
        "198.18.0.1:53 udp direct.phonehome.test|1|0|198.18.0.1|198.18.0.1|60|4343 @",
        "198.18.0.1:53 tcp stream.phonehome.test|1|0|198.18.0.1|198.18.0.1|60|4343 @",
    ] {
        assert!(
            live_dns.iter().any(|d| d.contains(expected)),
            "{expected} not logged live: {live_dns:#?}"
        );
    }
    assert_eq!(live_dns, dns_rows(&replay_db), "dns table: live vs analyze");
    // Flows to any resolver are lookups, not contacts, in the store and the capture summary.
    for db in [rig.db_path(), replay_db.clone()] {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let (dns_flows, contacts): (i64, i64) = conn
            .query_row(
                "SELECT sum(lookup), sum(NOT lookup) FROM flows WHERE dst_port = 53",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert!(
            dns_flows >= 3 && contacts == 0,
            "{db:?}: {dns_flows} lookups, {contacts} contacts to port 53"
        );
    }
    assert!(
        !out.stderr.contains("udp/53") && !out.stderr.contains("tcp/53"),
        "a DNS flow counted as a contact:\n{}",
        out.stderr
    );

    // tshark reads the file without error and sees the owner comments.
    let tshark = Command::new("tshark")
        .args(["-r"])
        .arg(&pcapng)
        .args(["-T", "fields", "-e", "frame.comment"])
        .output()
        .unwrap_or_else(|e| panic!("tshark (apt-get install -y tshark): {e}"));
    assert!(
        tshark.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&tshark.stderr)
    );
    let comments = String::from_utf8_lossy(&tshark.stdout);
    for expected in ["u-0 root", "u-65534 nobody", "u-4242"] {
        assert!(
            comments.lines().any(|l| l.starts_with(expected)),
            "{expected} not among tshark's comments:\n{comments}"
        );
    }
}
