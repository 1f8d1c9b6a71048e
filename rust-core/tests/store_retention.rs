//! Retention by age and by size: on the writer thread while recording, and from a separate
//! connection; the rollups stay consistent with the flows that remain.

use std::path::Path;
use std::time::Duration;

use phonehome::store::{
    FlowFilter, Reader, Retention, SessionInfo, StoreWriter, Window, WriterOptions, now_ms,
};

#[path = "common/phonehome_bin.rs"]
mod phonehome_bin;
use phonehome_bin::{phonehome, phonehome_ok};

#[path = "support/synth.rs"]
mod synth;
use synth::Synth;

fn record(
    db: &Path,
    start: i64,
    flows: i64,
    spacing: i64,
    options: WriterOptions,
    pace: Option<Duration>,
) -> (i64, u64) {
    let writer = StoreWriter::start_with(db, SessionInfo::default(), options).unwrap();
    let tx = writer.sender();
    let mut synth = Synth::new(start as u64);
    synth.host_variety = 50;
    for e in synth.app_events() {
        tx.send(e).unwrap();
    }
    for i in 0..flows {
        for e in synth.flow_events(start + i * spacing) {
            tx.send(e).unwrap();
        }
        if let Some(p) = pace
            && i % 100 == 0
        {
            std::thread::sleep(p);
        }
    }
    let id = writer.session_id();
    let pruned = writer.stats().pruned;
    writer.finish().unwrap();
    (id, pruned)
}

fn consistent(reader: &Reader) {
    let flows = reader.flows(&FlowFilter::default()).unwrap();
    let totals = reader.totals(&Window::all()).unwrap();
    assert_eq!(totals.contacts, flows.len() as i64);
    assert_eq!(
        totals.bytes_down,
        flows.iter().map(|f| f.bytes_down).sum::<i64>()
    );
    let hourly: i64 = reader
        .timeline(&Window::all(), 3_600_000)
        .unwrap()
        .iter()
        .map(|b| b.contacts)
        .sum();
    assert_eq!(hourly, flows.len() as i64);
    assert_eq!(reader.integrity_check().unwrap(), "ok");
}

#[test]
fn writer_prunes_old_history_in_small_batches_while_recording() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("age.db");
    let old_start = now_ms() - 10 * 86_400_000;
    let (old, _) = record(&db, old_start, 5_000, 1_000, WriterOptions::default(), None);
    // An import of old traffic recorded today stays; the session "recorded" 10 days ago goes.
    let (imported, _) = record(&db, old_start, 500, 1_000, WriterOptions::default(), None);
    // Stand-in for a session recorded ten days ago (the writer always stamps "now").
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE sessions SET started = ?1 WHERE id = ?2",
            (old_start, old),
        )
        .unwrap();
    Reader::open(&db)
        .unwrap()
        .set_retention(&Retention {
            max_age_days: Some(3),
            max_mb: None,
        })
        .unwrap();

    let options = WriterOptions {
        retention_every: Duration::from_millis(50),
        window: Duration::from_millis(100),
        ..WriterOptions::default()
    };
    let (new, _) = record(
        &db,
        now_ms() - 60_000,
        2_000,
        10,
        options,
        Some(Duration::from_millis(30)),
    );
    let reader = Reader::open(&db).unwrap();
    assert_eq!(
        reader.totals(&Window::session(old)).unwrap().contacts,
        0,
        "old flows pruned"
    );
    assert_eq!(
        reader.totals(&Window::session(new)).unwrap().contacts,
        2_000,
        "new flows kept"
    );
    assert!(
        reader
            .dns(&phonehome::store::DnsFilter {
                window: Window::session(old),
                ..Default::default()
            })
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        reader.totals(&Window::session(imported)).unwrap().contacts,
        500,
        "recent import kept"
    );
    assert!(
        reader.session(old).unwrap().is_none(),
        "the emptied old session is gone"
    );
    consistent(&reader);
}

#[test]
fn size_limit_drops_the_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("size.db");
    let t0 = now_ms() - 3_600_000;
    record(&db, t0, 20_000, 100, WriterOptions::default(), None);
    let reader = Reader::open(&db).unwrap();
    let before = reader.used_bytes().unwrap();
    assert!(before > 5_000_000, "{before}");
    let deleted = reader
        .prune(&Retention {
            max_age_days: None,
            max_mb: Some(3),
        })
        .unwrap();
    assert!(deleted > 0);
    let after = reader.used_bytes().unwrap();
    assert!(after <= 3_000_000, "{after} bytes still used");
    let left = reader.flows(&FlowFilter::default()).unwrap();
    assert!(!left.is_empty() && left.len() < 20_000);
    // The newest survive: the kept flows are exactly the latest ones.
    let oldest_kept = left.iter().map(|f| f.first_seen).min().unwrap();
    assert_eq!(left.len() as i64, (t0 + 20_000 * 100 - oldest_kept) / 100);
    consistent(&reader);

    // The CLI shows and sets the same settings.
    let out = phonehome_ok(&[
        "retention",
        "--db",
        db.to_str().unwrap(),
        "--keep-days",
        "30",
        "--keep-mb",
        "2",
        "--prune",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("keep: 30 days, 2 MB"), "{text}");
    assert_eq!(
        reader.retention().unwrap(),
        Retention {
            max_age_days: Some(30),
            max_mb: Some(2)
        }
    );
    assert!(reader.used_bytes().unwrap() <= 2_000_000);
    let out = phonehome(&[
        "retention",
        "--db",
        db.to_str().unwrap(),
        "--keep-days",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2));
}
