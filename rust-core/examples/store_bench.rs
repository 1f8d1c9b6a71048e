//! Store benchmarks (run by scripts/bench-store.sh; not a pass/fail test).
//!
//! store_bench ingest N          N synthetic flows (open, update, close + a DNS query for 3 in 4)
//!                               through StoreWriter into a fresh database; prints events/s.
//! store_bench ingest-spread N  the same with each flow's events in different write batches
//!                               (no coalescing: one SQLite upsert per event).
//! store_bench build FILE N      builds FILE with N flows in 10 sessions spread over 30 days,
//!                               with markers; prints the size per 100,000 flows.
//! store_bench query FILE        times every read-API view on FILE (median of 5 runs).

use std::path::Path;
use std::time::{Duration, Instant};

use phonehome::store::timeline::SeriesKey;
use phonehome::store::{
    FlowFilter, Reader, SessionInfo, StoreError, StoreWriter, Window, WindowSpec,
};

#[path = "../tests/support/synth.rs"]
mod synth;
use synth::Synth;

fn feed(
    db: &Path,
    flows: u64,
    sessions: u64,
    start: i64,
    span_ms: i64,
    spread: bool,
) -> Result<(u64, Duration), StoreError> {
    let per_session = flows / sessions;
    let mut events = 0u64;
    let mut busy = Duration::ZERO;
    for s in 0..sessions {
        let mut synth = Synth::new(s + 1);
        synth.host_variety = 100;
        // Pre-build the events so the timing measures the writer, not the generator.
        let mut batch = synth.app_events();
        let session_start = start + (s as i64) * span_ms / sessions as i64;
        let step = (span_ms / sessions as i64) / per_session.max(1) as i64;
        for i in 0..per_session {
            if i == per_session / 2 {
                synth.off = true;
            }
            batch.extend(synth.flow_events(session_start + i as i64 * step.max(1)));
        }
        if spread {
            // Every event of a flow lands in a different batch: no coalescing, one upsert each
            // (the worst case: long flows updated across many write windows).
            let mut phases: [Vec<phonehome::flow::Event>; 3] = [Vec::new(), Vec::new(), Vec::new()];
            let mut seen = std::collections::HashMap::new();
            for e in batch.drain(..) {
                let id = match &e {
                    phonehome::flow::Event::Flow(f) | phonehome::flow::Event::FlowClosed(f) => {
                        Some(f.id)
                    }
                    _ => None,
                };
                let phase = match id {
                    Some(id) => {
                        let n = seen.entry(id).or_insert(0usize);
                        *n += 1;
                        *n - 1
                    }
                    None => 0,
                };
                phases[phase.min(2)].push(e);
            }
            for chunk in 0..phases[0].len().div_ceil(30_000) {
                for p in &phases {
                    let lo = (chunk * 30_000 * p.len()) / phases[0].len().max(1);
                    let hi =
                        (((chunk + 1) * 30_000 * p.len()) / phases[0].len().max(1)).min(p.len());
                    batch.extend(p[lo.min(hi)..hi].iter().cloned());
                }
            }
        }
        events += batch.len() as u64;
        let t = Instant::now();
        let writer = StoreWriter::start(
            db,
            SessionInfo {
                kind: "bench".into(),
                device: Some("Redmi Note 9 Pro".into()),
                ..SessionInfo::default()
            },
        )?;
        let tx = writer.sender();
        let id = writer.session_id();
        for e in batch {
            if tx.send(e).is_err() {
                break;
            }
        }
        drop(tx);
        writer.finish()?;
        busy += t.elapsed();
        let reader = Reader::open(db)?;
        reader.add_marker_at(
            id,
            session_start + (per_session / 2) as i64 * step.max(1),
            "data sharing off",
        )?;
    }
    Ok((events, busy))
}

/// CPU time (user + system) of this thread: on a machine shared with other work, the cost of a
/// query itself, where wall-clock time also counts the waits for a core.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage fills the zeroed struct we own.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec * 1000) as u32);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn time<T>(label: &str, mut f: impl FnMut() -> Result<T, StoreError>) -> Result<(), StoreError> {
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let c = thread_cpu();
        f()?;
        wall.push(t.elapsed());
        cpu.push(thread_cpu().saturating_sub(c));
    }
    wall.sort();
    cpu.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label:<38} wall median {:>7.1} ms (min {:>6.1}, max {:>6.1})   cpu median {:>7.1} ms",
        ms(wall[2]),
        ms(wall[0]),
        ms(wall[4]),
        ms(cpu[2])
    );
    Ok(())
}

/// The count given as argument `index`, or `default` when there is none.
fn count_arg(args: &[String], index: usize, default: u64) -> Result<u64, std::num::ParseIntError> {
    args.get(index).map_or(Ok(default), |s| s.parse())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some(mode @ ("ingest" | "ingest-spread")) => {
            let n = count_arg(&args, 2, 200_000)?;
            let one_upsert_per_event = mode == "ingest-spread";
            let dir = tempfile::tempdir()?;
            let db = dir.path().join("ingest.db");
            let (events, took) = feed(
                &db,
                n,
                1,
                1_700_000_000_000,
                3_600_000,
                one_upsert_per_event,
            )?;
            let secs = took.as_secs_f64();
            let events_per_s = events as f64 / secs;
            if one_upsert_per_event {
                println!(
                    "ingest (no coalescing, one upsert per event): {n} flows, {events} events in {secs:.2} s = {events_per_s:.0} events/s"
                );
            } else {
                println!(
                    "ingest: {n} flows, {events} events in {secs:.2} s = {events_per_s:.0} events/s ({:.0} flows/s)",
                    n as f64 / secs
                );
            }
        }
        Some("build") => {
            let path = Path::new(args.get(2).ok_or("build FILE N")?);
            let n = count_arg(&args, 3, 1_000_000)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64;
            let (events, took) = feed(path, n, 10, now - 30 * 86_400_000, 30 * 86_400_000, false)?;
            let size = std::fs::metadata(path)?.len();
            println!(
                "build: {n} flows, {events} events in {:.1} s = {:.0} events/s",
                took.as_secs_f64(),
                events as f64 / took.as_secs_f64()
            );
            println!(
                "database size: {:.1} MB total, {:.1} MB per 100,000 flows (flows + DNS + indexes)",
                size as f64 / 1e6,
                size as f64 / 1e6 / (n as f64 / 100_000.0)
            );
        }
        Some("query") => {
            let path = Path::new(args.get(2).ok_or("query FILE")?);
            let reader = Reader::open(path)?;
            let sessions = reader.sessions()?;
            let total: i64 = sessions.iter().map(|s| s.flows).sum();
            println!("{} flows in {} sessions", total, sessions.len());
            let all = Window::all();
            let last = sessions
                .last()
                .map(|s| Window::session(s.id))
                .unwrap_or_default();
            time("sessions()", || reader.sessions())?;
            time("totals(all)", || reader.totals(&all))?;
            time("per_app(all)", || reader.per_app(&all))?;
            time("per_domain(all, top 50)", || {
                reader.per_domain(&all, Some(50))
            })?;
            time("per_country(all)", || reader.per_country(&all))?;
            time("per_category(all)", || reader.per_category(&all))?;
            time("timeline(all, 1 h)", || reader.timeline(&all, 3_600_000))?;
            time("visibility(all)", || reader.visibility(&all))?;
            time("contact_timelines(all, app)", || {
                reader.contact_timelines(&all, SeriesKey::App)
            })?;
            time("contact_timelines(all, company)", || {
                reader.contact_timelines(&all, SeriesKey::Company)
            })?;
            time("per_company(all)", || reader.per_company(&all))?;
            time("per_app(last session)", || reader.per_app(&last))?;
            time("per_domain(last session, top 50)", || {
                reader.per_domain(&last, Some(50))
            })?;
            time("timeline(last session, 1 h)", || {
                reader.timeline(&last, 3_600_000)
            })?;
            if let Some(s) = sessions.last().and_then(|s| s.first_flow) {
                let hour = Window {
                    session: sessions.last().map(|s| s.id),
                    from: Some(s),
                    to: Some(s + 3_600_000),
                };
                time("timeline(1 h of last session, 1 min)", || {
                    reader.timeline(&hour, 60_000)
                })?;
            }
            time("flows(newest 100)", || {
                reader.flows(&FlowFilter {
                    newest_first: true,
                    limit: Some(100),
                    ..FlowFilter::default()
                })
            })?;
            if let Some(m) = reader.markers(sessions.last().map(|s| s.id))?.first() {
                let spec = WindowSpec::parse_pair(&format!("marker:{}", m.id))
                    .map_err(|e| e.to_string())?;
                time("compare(before:M..after:M)", || {
                    reader.compare_specs(&spec.0, &spec.1)
                })?;
            }
            if sessions.len() >= 2 {
                let a = sessions[0].id;
                let b = sessions[1].id;
                time("compare(session..session)", || {
                    reader.compare(&Window::session(a), &Window::session(b))
                })?;
            }
        }
        _ => return Err("usage: store_bench ingest N | build FILE N | query FILE".into()),
    }
    Ok(())
}
