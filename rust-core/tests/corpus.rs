//! Naming agreement with other engines on real captures.
//!
//! The vendored corpus (`tests/corpus-data`, recorded between two network namespaces by
//! scripts/make-corpus.sh, its names read by tshark) runs in every checkout. For every flow that nDPI names (kinds tls, quic, http, dns in `ndpi/expected.tsv`) our engine
//! must name it the same; PCAPdroid's expected connections (`pcapdroid/expected.tsv`) must exist
//! with the same names. The corpus is `$PHONEHOME_CORPUS`, else `shared/corpus` beside the
//! repository; without it the tests are reported as skipped (and fail in CI).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use phonehome::flow::{Event, FlowRecord, Proto};
use phonehome::pcap::observe_file;

/// Agreement each kind must reach.
const THRESHOLD: f64 = 0.99;

/// A test that cannot run here: fails in CI (which puts the corpus beside the checkout), else
/// says so on the real stderr (the harness hides captured output), where scripts/test.sh counts
/// it as skipped rather than passed.
fn skip(message: &str) {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false") {
        panic!("{message}");
    }
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED {message}\n").as_bytes(),
    );
}

fn corpus_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PHONEHOME_CORPUS") {
        return Some(PathBuf::from(p));
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        manifest.join("../../shared/corpus"),
        manifest.join("../../../shared/corpus"),
    ]
    .into_iter()
    .find(|p| p.join("ndpi/expected.tsv").is_file())
}

#[derive(Debug)]
struct Expected {
    pcap: String,
    proto: Proto,
    src: SocketAddr,
    dst: SocketAddr,
    hostname: String,
    kind: String,
    tunnel: String,
}

fn read_expected(path: &Path) -> Vec<Expected> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (pcap, proto, sip, sport, dip, dport, host, kind) = (
        col("pcap").unwrap(),
        col("proto").unwrap(),
        col("src_ip").unwrap(),
        col("src_port").unwrap(),
        col("dst_ip").unwrap(),
        col("dst_port").unwrap(),
        col("hostname").unwrap(),
        col("kind").unwrap(),
    );
    let tunnel = col("tunnel");
    lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            let ip = |i: usize| c[i].parse::<IpAddr>().ok();
            let port = |i: usize| c[i].parse::<u16>().ok();
            Some(Expected {
                pcap: c[pcap].to_owned(),
                proto: Proto::parse(c[proto])?,
                src: SocketAddr::new(ip(sip)?, port(sport)?),
                dst: SocketAddr::new(ip(dip)?, port(dport)?),
                hostname: c[host].to_ascii_lowercase(),
                kind: c[kind].to_owned(),
                tunnel: tunnel.and_then(|t| c.get(t)).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// Every flow of one capture, final copies.
fn flows_of(path: &Path) -> Vec<FlowRecord> {
    let (tx, rx) = mpsc::channel();
    let report =
        observe_file(path, tx, |_| {}).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if let Some(e) = &report.error {
        eprintln!("note: {}: {e}", path.display());
    }
    rx.try_iter()
        .filter_map(|e| match e {
            Event::FlowClosed(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// Our flow for an expected one (either orientation, ICMP ports ignored) and whether the
/// client side agrees.
fn find<'a>(flows: &'a [FlowRecord], e: &Expected) -> Option<(&'a FlowRecord, bool)> {
    let port_free = e.proto == Proto::Icmp;
    let same =
        |a: SocketAddr, b: SocketAddr| a.ip() == b.ip() && (port_free || a.port() == b.port());
    // Prefer a named flow when a 5-tuple was reused.
    let mut best: Option<(&FlowRecord, bool)> = None;
    for f in flows.iter().filter(|f| f.key.proto == e.proto) {
        let hit = if same(f.key.src, e.src) && same(f.key.dst, e.dst) {
            Some((f, true))
        } else if same(f.key.src, e.dst) && same(f.key.dst, e.src) {
            Some((f, false))
        } else {
            None
        };
        if let Some(h) = hit {
            let named_match = h.0.hostname.as_deref() == Some(e.hostname.as_str());
            if best.is_none() || named_match {
                best = Some(h);
            }
            if named_match {
                break;
            }
        }
    }
    best
}

#[derive(Default)]
struct Tally {
    total: usize,
    agree: usize,
    client_agree: usize,
    /// Flows we gave any name.
    named: usize,
    /// Expected "names" that are addresses (left out of `total`).
    excluded: usize,
}

/// nDPI writes a '*' in a DNS name as '_'.
fn same_name(ours: &str, expected: &str) -> bool {
    ours == expected || (ours.len() == expected.len() && ours.replace('*', "_") == expected)
}

fn check(
    pcaps: &Path,
    set: &str,
    expected: &[Expected],
    names_only: bool,
) -> (BTreeMap<String, Tally>, Vec<String>) {
    let mut by_pcap: HashMap<&str, Vec<FlowRecord>> = HashMap::new();
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut disagreements = Vec::new();
    for e in expected {
        if names_only
            && (e.hostname.is_empty()
                || !matches!(e.kind.as_str(), "tls" | "quic" | "http" | "dns"))
        {
            continue;
        }
        let flows = by_pcap
            .entry(&e.pcap)
            .or_insert_with(|| flows_of(&pcaps.join(&e.pcap)));
        let tally = tallies.entry(e.kind.clone()).or_default();
        let row = format!(
            "{set}/{} {:?} {} -> {} [{}] expect {:?}",
            e.pcap, e.proto, e.src, e.dst, e.kind, e.hostname
        );
        let found = find(flows, e);
        let ours = found.and_then(|(f, _)| f.hostname.as_deref()).unwrap_or("");
        if !same_name(ours, &e.hostname) && e.hostname.parse::<IpAddr>().is_ok() {
            // nDPI copies an address found in SNI or Host; an address names nothing.
            tally.excluded += 1;
            disagreements.push(format!(
                "{row}: excluded, the expected name is an IP address (ours {ours:?})"
            ));
            continue;
        }
        tally.total += 1;
        match found {
            None => {
                let why = if e.tunnel.is_empty() {
                    "no such flow"
                } else {
                    "tunnelled flow (not decoded)"
                };
                disagreements.push(format!("{row}: {why}"));
            }
            Some((f, client_ok)) => {
                if client_ok {
                    tally.client_agree += 1;
                }
                if !ours.is_empty() {
                    tally.named += 1;
                }
                // An unnamed expectation cannot be contradicted (we may name it from DNS).
                if same_name(ours, &e.hostname) || e.hostname.is_empty() {
                    tally.agree += 1;
                    if ours != e.hostname && !e.hostname.is_empty() {
                        disagreements.push(format!(
                            "{row}: agrees up to nDPI writing '*' as '_' ({ours:?})"
                        ));
                    }
                } else if ours.is_empty() {
                    disagreements.push(format!("{row}: unnamed (l7 {:?})", f.app_info.l7));
                } else {
                    disagreements.push(format!(
                        "{row}: named {ours:?} from {:?}",
                        f.hostname_source.map(|s| s.as_str())
                    ));
                }
            }
        }
    }
    (tallies, disagreements)
}

fn print_table(title: &str, tallies: &BTreeMap<String, Tally>) {
    println!("{title}");
    println!(
        "  {:6} {:>6} {:>6} {:>8} {:>8} {:>9}",
        "kind", "flows", "agree", "agree%", "client%", "excluded"
    );
    for (kind, t) in tallies {
        println!(
            "  {:6} {:>6} {:>6} {:>7.1}% {:>7.1}% {:>9}",
            kind,
            t.total,
            t.agree,
            100.0 * t.agree as f64 / t.total.max(1) as f64,
            100.0 * t.client_agree as f64 / t.total.max(1) as f64,
            t.excluded
        );
    }
}

/// Our own small corpus: every flow tshark names exists, with its client side and the same
/// name, for each of DNS, HTTP, TLS (also after STARTTLS) and QUIC.
#[test]
fn vendored_corpus_names_agree_with_tshark() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus-data");
    let expected = read_expected(&dir.join("expected.tsv"));
    let (tally, diff) = check(&dir, "corpus-data", &expected, false);
    print_table(
        "tshark-named flows (tests/corpus-data/expected.tsv):",
        &tally,
    );
    for d in &diff {
        println!("  {d}");
    }
    let kinds: Vec<&str> = tally.keys().map(String::as_str).collect();
    assert_eq!(kinds, ["dns", "http", "quic", "tls"], "{expected:#?}");
    assert!(expected.len() >= 7, "{} expected flows", expected.len());
    for (kind, t) in &tally {
        assert!(
            t.total > 0 && t.agree == t.total && t.client_agree == t.total && t.excluded == 0,
            "{kind}: {} of {} agree, {} with the client side: {diff:#?}",
            t.agree,
            t.total,
            t.client_agree
        );
    }
}

#[test]
fn naming_agrees_with_ndpi_and_pcapdroid() {
    let Some(corpus) = corpus_dir() else {
        return skip(
            "corpus not found; set PHONEHOME_CORPUS or put shared/corpus beside the repository",
        );
    };
    let ndpi = read_expected(&corpus.join("ndpi/expected.tsv"));
    let pcapdroid = read_expected(&corpus.join("pcapdroid/expected.tsv"));
    assert!(
        ndpi.len() > 900 && pcapdroid.len() > 15,
        "expected files look incomplete"
    );

    let (ndpi_tally, ndpi_diff) = check(&corpus.join("ndpi/pcaps"), "ndpi", &ndpi, true);
    let (pd_tally, pd_diff) = check(&corpus.join("pcapdroid"), "pcapdroid", &pcapdroid, false);
    print_table("nDPI-named flows (ndpi/expected.tsv):", &ndpi_tally);
    print_table(
        "PCAPdroid expected connections (pcapdroid/expected.tsv):",
        &pd_tally,
    );
    for d in ndpi_diff.iter().chain(&pd_diff) {
        println!("  {d}");
    }

    // Client side over every nDPI flow, named or not (nDPI's src is the client).
    let mut by_pcap: HashMap<&str, Vec<FlowRecord>> = HashMap::new();
    let (mut found, mut client_ok, mut wrong) = (0usize, 0usize, Vec::new());
    for e in &ndpi {
        let flows = by_pcap
            .entry(&e.pcap)
            .or_insert_with(|| flows_of(&corpus.join("ndpi/pcaps").join(&e.pcap)));
        if let Some((_, ok)) = find(flows, e) {
            found += 1;
            if ok {
                client_ok += 1;
            } else {
                wrong.push(format!(
                    "{} {:?} {} -> {} [{}]",
                    e.pcap, e.proto, e.src, e.dst, e.kind
                ));
            }
        }
    }
    println!(
        "client side: {client_ok}/{found} of all {} nDPI flows agree; differing: {wrong:#?}",
        ndpi.len()
    );
    assert!(
        client_ok as f64 >= 0.95 * found as f64,
        "client side agrees on {client_ok}/{found} only"
    );

    // Every expected flow must exist, whatever the naming.
    let missing: Vec<&String> = ndpi_diff
        .iter()
        .chain(&pd_diff)
        .filter(|d| d.ends_with("no such flow"))
        .collect();
    assert!(missing.is_empty(), "flows not found: {missing:#?}");

    let named: usize = ndpi_tally
        .values()
        .chain(pd_tally.values())
        .map(|t| t.named)
        .sum();
    assert!(named > 0, "no flow was named at all");
    for (kind, t) in &ndpi_tally {
        let share = t.agree as f64 / t.total.max(1) as f64;
        assert!(
            share >= THRESHOLD,
            "nDPI {kind}: {:.1}% < {:.0}%",
            share * 100.0,
            THRESHOLD * 100.0
        );
    }
    for (kind, t) in &pd_tally {
        let share = t.agree as f64 / t.total.max(1) as f64;
        assert!(
            share >= THRESHOLD,
            "PCAPdroid {kind}: {:.1}% < {:.0}%",
            share * 100.0,
            THRESHOLD * 100.0
        );
    }
}

#[test]
fn damaged_capture_keeps_flows_read_before_the_damage() {
    let Some(corpus) = corpus_dir() else {
        return skip(
            "corpus not found; set PHONEHOME_CORPUS or put shared/corpus beside the repository",
        );
    };
    let original = std::fs::read(corpus.join("ndpi/pcaps/xiaomi.pcap")).expect("xiaomi.pcap");
    let dir = std::env::temp_dir().join(format!("phonehome-damaged-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let whole = flows_of(&corpus.join("ndpi/pcaps/xiaomi.pcap"));
    let cut_at = original.len() * 6 / 10;
    let truncated = dir.join("truncated.pcap");
    std::fs::write(&truncated, &original[..cut_at]).unwrap();
    let (tx, rx) = mpsc::channel();
    let report = observe_file(&truncated, tx, |_| {}).unwrap();
    let err = report.error.expect("a truncated file must report it");
    assert!(
        err.to_string().contains("truncated at byte offset"),
        "{err}"
    );
    assert!(
        err.offset() > 24 && err.offset() < cut_at as u64,
        "offset {}",
        err.offset()
    );
    let kept: Vec<FlowRecord> = rx
        .try_iter()
        .filter_map(|e| match e {
            Event::FlowClosed(r) => Some(r),
            _ => None,
        })
        .collect();
    assert!(
        !kept.is_empty() && kept.len() <= whole.len(),
        "{} of {}",
        kept.len(),
        whole.len()
    );
    assert!(kept.iter().all(|f| f.close_reason.is_some()));

    // A record claiming 1 GiB is corruption, named with its offset.
    let mut corrupt = original.clone();
    corrupt[24 + 8..24 + 12].copy_from_slice(&0x4000_0000u32.to_le_bytes());
    let path = dir.join("corrupt.pcap");
    std::fs::write(&path, &corrupt).unwrap();
    let (tx, _rx) = mpsc::channel();
    let report = observe_file(&path, tx, |_| {}).unwrap();
    let err = report.error.expect("corrupt");
    assert_eq!(err.offset(), 24, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn xiaomi_capture_is_classified() {
    let Some(corpus) = corpus_dir() else {
        return skip(
            "corpus not found; set PHONEHOME_CORPUS or put shared/corpus beside the repository",
        );
    };
    let flows = flows_of(&corpus.join("ndpi/pcaps/xiaomi.pcap"));
    let push: Vec<&FlowRecord> = flows.iter().filter(|f| f.key.dst.port() == 5222).collect();
    assert!(push.len() >= 5, "{} Mi Push flows", push.len());
    for f in push {
        assert_eq!(
            f.destination.vendor.as_deref(),
            Some("xiaomi"),
            "{:?}",
            f.key
        );
        assert_eq!(
            f.destination.category.as_deref(),
            Some("push"),
            "{:?}",
            f.key
        );
        assert!(f.key.src.ip().is_ipv4());
    }
}
