//! The writer thread: drains the event channel into batched transactions.
//!
//! Events for the same flow inside one write window are coalesced (counters are absolute, so
//! the latest copy is the only one worth writing). A batch is committed every
//! [`WriterOptions::window`] or when [`WriterOptions::max_batch`] events are pending,
//! whichever comes first, so a killed process loses at most one window.
//! A write error (full disk, read-only medium) stops the thread: committed batches stay, the
//! error is kept for [`StoreWriter::failed`] / [`StoreWriter::finish`], and later sends fail
//! so the producer learns that recording stopped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

use super::retention::{self, Retention};
use super::schema::{self, OpenMode, sqlite_err};
use super::{SessionInfo, StoreError, now_ms};
use crate::flow::{DnsRecord, Event, FlowId, FlowRecord};

/// Tuning of the writer; the defaults suit a phone and a Linux capture alike.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Longest time an event waits before it is committed.
    pub window: Duration,
    /// Commit early once this many events are pending.
    pub max_batch: usize,
    /// Retention applied while recording; `None` reads it from the database's settings.
    pub retention: Option<Retention>,
    /// How often retention runs (it deletes in small batches, one per write window).
    pub retention_every: Duration,
}

impl Default for WriterOptions {
    fn default() -> WriterOptions {
        WriterOptions {
            window: Duration::from_millis(500),
            max_batch: 20_000,
            retention: None,
            retention_every: Duration::from_secs(60),
        }
    }
}

/// Counters the writer publishes while it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub events: u64,
    pub commits: u64,
    pub flows_written: u64,
    pub dns_written: u64,
    pub pruned: u64,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    events: AtomicU64,
    commits: AtomicU64,
    flows_written: AtomicU64,
    dns_written: AtomicU64,
    pruned: AtomicU64,
    error: Mutex<Option<String>>,
}

/// The running writer thread.
pub struct StoreWriter {
    session_id: i64,
    path: PathBuf,
    sender: Sender<Event>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<(), StoreError>>>,
}

impl StoreWriter {
    /// Opens (creating or migrating) the database and starts a new session.
    pub fn start(path: &Path, session: SessionInfo) -> Result<StoreWriter, StoreError> {
        StoreWriter::start_with(path, session, WriterOptions::default())
    }

    /// [`StoreWriter::start`] with explicit tuning.
    pub fn start_with(
        path: &Path,
        session: SessionInfo,
        options: WriterOptions,
    ) -> Result<StoreWriter, StoreError> {
        let conn = schema::open(path, OpenMode::Create)?;
        // The writer appends and updates recent rows, a few hot pages: 512 KiB of page cache
        // suffice, where the readers' 32 MB (or SQLite's default 2 MB) stay resident all along.
        conn.execute_batch("PRAGMA cache_size=-512;")
            .map_err(sqlite_err(path))?;
        let now = now_ms();
        conn.execute(
            "INSERT INTO sessions (kind, started, heartbeat, device, os, app_version, note)
             VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6)",
            params![
                session.kind,
                now,
                session.device,
                session.os,
                session.app_version,
                session.note
            ],
        )
        .map_err(sqlite_err(path))?;
        let session_id = conn.last_insert_rowid();
        let retention = match options.retention {
            Some(r) => r,
            None => retention::load(&conn).map_err(sqlite_err(path))?,
        };
        let (sender, receiver) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let mut worker = Worker {
            conn,
            path: path.to_path_buf(),
            session_id,
            options,
            retention,
            shared: Arc::clone(&shared),
            apps: HashMap::new(),
            pending_flows: HashMap::new(),
            pending_dns: Vec::new(),
            pending_apps: Vec::new(),
            pending_events: 0,
            last_retention: Instant::now(),
            retention_active: false,
        };
        let thread = std::thread::Builder::new()
            .name("phonehome-store".into())
            .spawn(move || worker.run(receiver))
            .map_err(|e| schema::other(path, format!("cannot start the writer thread: {e}")))?;
        Ok(StoreWriter {
            session_id,
            path: path.to_path_buf(),
            sender,
            shared,
            thread: Some(thread),
        })
    }

    pub fn session_id(&self) -> i64 {
        self.session_id
    }

    /// A sender for the engine, the pcap observer or the owner lookup. Sends fail once the
    /// writer stopped on an error.
    pub fn sender(&self) -> Sender<Event> {
        self.sender.clone()
    }

    /// The error that stopped recording, if any (full disk, read-only medium...).
    pub fn failed(&self) -> Option<String> {
        self.shared.error.lock().ok().and_then(|e| e.clone())
    }

    pub fn stats(&self) -> WriterStats {
        let s = &self.shared;
        WriterStats {
            events: s.events.load(Ordering::Relaxed),
            commits: s.commits.load(Ordering::Relaxed),
            flows_written: s.flows_written.load(Ordering::Relaxed),
            dns_written: s.dns_written.load(Ordering::Relaxed),
            pruned: s.pruned.load(Ordering::Relaxed),
        }
    }

    /// Drains every event sent so far, commits, marks the session ended, joins the thread.
    pub fn finish(mut self) -> Result<(), StoreError> {
        self.shared.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(thread) => match thread.join() {
                Ok(result) => result,
                Err(_) => Err(schema::other(&self.path, "the writer thread panicked")),
            },
            None => Ok(()),
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shared.stop.store(true, Ordering::SeqCst);
            if let Ok(Err(e)) = thread.join() {
                log::error!("store writer: {e}");
            }
        }
    }
}

struct Worker {
    conn: Connection,
    path: PathBuf,
    session_id: i64,
    options: WriterOptions,
    retention: Retention,
    shared: Arc<Shared>,
    /// uid -> name for this session, so flows carry the app name without a join.
    apps: HashMap<u32, String>,
    /// Boxed: a thousand flows opening in one window grew a table of 2,048 inline records
    /// (0.9 MB); boxed, the table is 32 KB beside the records themselves.
    pending_flows: HashMap<FlowId, Box<FlowRecord>>,
    pending_dns: Vec<DnsRecord>,
    pending_apps: Vec<(u32, String)>,
    pending_events: usize,
    last_retention: Instant,
    /// A prune is in progress: keep deleting one small batch per window until done.
    retention_active: bool,
}

/// Pending records whose room a batch keeps after its commit; a burst's larger tables are freed.
const PENDING_KEEP: usize = 64;
/// How long the thread sleeps when idle before it looks at the stop flag.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Inside an open batch, how long the thread sleeps between takes of the queued events.
const BATCH_SLICE: Duration = Duration::from_millis(50);
/// An idle writer still refreshes the session heartbeat this often (`mark` uses it).
const HEARTBEAT: Duration = Duration::from_secs(5);

impl Worker {
    fn run(&mut self, receiver: Receiver<Event>) -> Result<(), StoreError> {
        let result = self.record(&receiver);
        match &result {
            Ok(()) => {}
            Err(e) => {
                log::error!("recording stopped: {e}");
                if let Ok(mut slot) = self.shared.error.lock() {
                    *slot = Some(e.to_string());
                }
            }
        }
        // Dropping the receiver here makes further sends fail: the producer sees it.
        drop(receiver);
        result
    }

    fn record(&mut self, receiver: &Receiver<Event>) -> Result<(), StoreError> {
        let mut batch_started: Option<Instant> = None;
        let mut last_commit = Instant::now();
        loop {
            let stopping = self.shared.stop.load(Ordering::SeqCst);
            let timeout = if stopping {
                Duration::ZERO
            } else {
                match batch_started {
                    Some(t) => self.options.window.saturating_sub(t.elapsed()),
                    None => IDLE_POLL,
                }
            };
            // Inside an open batch nothing is due before its window ends: take what is queued
            // without blocking, and sleep between takes (below) instead of waking for every
            // event, a futex wake and a context switch each (most of the writer's CPU per new
            // connection).
            let received = if timeout.is_zero() || batch_started.is_some() {
                receiver.try_recv().map_err(|e| match e {
                    mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                    mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                receiver.recv_timeout(timeout)
            };
            match received {
                Ok(event) => {
                    let started = *batch_started.get_or_insert_with(Instant::now);
                    self.take(event);
                    // A steady stream never times out: the window is checked here too.
                    if (self.pending_events >= self.options.max_batch
                        || started.elapsed() >= self.options.window)
                        && self.commit()?
                    {
                        batch_started = None;
                        last_commit = Instant::now();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Timeout) if !stopping => {
                    let due = batch_started.is_some_and(|t| t.elapsed() >= self.options.window);
                    let retention_due = self.retention_active
                        || (self.retention.is_set()
                            && self.last_retention.elapsed() >= self.options.retention_every);
                    if (due || retention_due || last_commit.elapsed() >= HEARTBEAT)
                        && self.commit()?
                    {
                        batch_started = None;
                        last_commit = Instant::now();
                    }
                    if let Some(started) = batch_started {
                        let rest = self.options.window.saturating_sub(started.elapsed());
                        std::thread::sleep(rest.min(BATCH_SLICE));
                    }
                }
                // Stop requested and the channel is empty, or every sender is gone.
                Err(_) => {
                    // Bounded: each attempt waits up to the busy timeout for the lock.
                    let mut attempts = 0;
                    while !self.commit()? {
                        attempts += 1;
                        if attempts >= 6 {
                            return Err(schema::other(
                                &self.path,
                                "stayed locked by another program; the last events were not saved",
                            ));
                        }
                    }
                    let err = sqlite_err(&self.path);
                    self.conn
                        .execute(
                            "UPDATE sessions SET ended = ?2, heartbeat = ?2 WHERE id = ?1",
                            params![self.session_id, now_ms()],
                        )
                        .map_err(&err)?;
                    // Fold the WAL back so the file alone is a complete database.
                    if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
                        log::warn!("{}: checkpoint: {e}", self.path.display());
                    }
                    return Ok(());
                }
            }
        }
    }

    fn take(&mut self, event: Event) {
        self.pending_events += 1;
        self.shared.events.fetch_add(1, Ordering::Relaxed);
        match event {
            Event::Flow(flow) => {
                // A late update must not overwrite the final copy of a flow closed in this batch
                // (the upsert has the same guard across batches).
                match self.pending_flows.get_mut(&flow.id) {
                    Some(existing)
                        if existing.close_reason.is_some() && flow.close_reason.is_none() =>
                    {
                        existing.last_seen = existing.last_seen.max(flow.last_seen);
                    }
                    _ => self.keep(flow),
                }
            }
            Event::FlowClosed(flow) => self.keep(flow),
            Event::Dns(dns) => self.pending_dns.push(dns),
            Event::App { uid, name } => self.pending_apps.push((uid, name)),
        }
    }

    /// The flow's newest copy, in the box of the copy it replaces if there is one.
    fn keep(&mut self, flow: FlowRecord) {
        match self.pending_flows.get_mut(&flow.id) {
            Some(pending) => **pending = flow,
            None => {
                self.pending_flows.insert(flow.id, Box::new(flow));
            }
        }
    }

    /// Writes everything pending in one transaction. `Ok(false)`: another program held the
    /// database locked past the busy timeout; the events stay pending for the next attempt.
    fn commit(&mut self) -> Result<bool, StoreError> {
        match self.write_batch() {
            Ok(()) => Ok(true),
            Err(StoreError::Sqlite { source, .. })
                if matches!(
                    source.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) =>
            {
                log::warn!(
                    "{}: locked by another program; keeping {} events for the next window",
                    self.path.display(),
                    self.pending_events
                );
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// One transaction with everything pending plus one small retention step. Pending events
    /// are only dropped once the transaction committed.
    fn write_batch(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = sqlite_err(&path);
        let tx = self.conn.transaction().map_err(&err)?;
        // App names of this batch: visible to its flows, kept only if the batch commits.
        let mut new_apps: HashMap<u32, String> = HashMap::new();
        let mut retention_step = None;
        let now = now_ms();
        {
            let mut app_stmt = tx
                .prepare_cached(
                    "INSERT INTO apps (session_id, uid, name) VALUES (?1, ?2, ?3)
                     ON CONFLICT (session_id, uid) DO UPDATE SET name = excluded.name",
                )
                .map_err(&err)?;
            // DNS rows get a late name at read time (a join), not by rewriting them here.
            let mut backfill_flows = tx
                .prepare_cached(
                    "UPDATE flows SET app = ?3 WHERE session_id = ?1 AND uid = ?2 AND app IS NOT ?3",
                )
                .map_err(&err)?;
            for (uid, name) in &self.pending_apps {
                let known = new_apps.get(uid).or_else(|| self.apps.get(uid));
                if known == Some(name) {
                    continue;
                }
                app_stmt
                    .execute(params![self.session_id, uid, name])
                    .map_err(&err)?;
                backfill_flows
                    .execute(params![self.session_id, uid, name])
                    .map_err(&err)?;
                new_apps.insert(*uid, name.clone());
            }

            let mut flow_stmt = tx.prepare_cached(UPSERT_FLOW).map_err(&err)?;
            for f in self.pending_flows.values() {
                let app = f
                    .uid
                    .and_then(|uid| new_apps.get(&uid).or_else(|| self.apps.get(&uid)));
                let alpn = join(&f.app_info.alpn);
                // Identifiers and device descriptors go to separate columns: `leaks` and every
                // count of leaking flows mean identifiers only.
                let (descriptors, identifiers): (Vec<String>, Vec<String>) = f
                    .leaks
                    .iter()
                    .cloned()
                    .partition(|k| crate::dissect::leaks::is_descriptor(k));
                let leaks = join(&identifiers);
                let descriptors = join(&descriptors);
                let http_requests = if f.app_info.http_requests.is_empty() {
                    None
                } else {
                    serde_json::to_string(&f.app_info.http_requests).ok()
                };
                // Views match vendor "xiaomi" exactly; the catalog's spelling may vary.
                let vendor = f.destination.vendor.as_deref().map(str::to_ascii_lowercase);
                flow_stmt
                    .execute(params![
                        self.session_id,
                        f.id as i64,
                        f.uid,
                        app,
                        f.key.proto.as_str(),
                        f.key.src.ip().to_string(),
                        f.key.src.port(),
                        f.key.dst.ip().to_string(),
                        f.key.dst.port(),
                        f.hostname,
                        f.hostname_source.map(|s| s.as_str()),
                        f.app_info.l7,
                        alpn,
                        f.app_info.tls_version,
                        f.app_info.ech,
                        f.app_info.http_method,
                        vendor,
                        f.destination.category,
                        f.destination.category_guessed,
                        f.destination.purpose,
                        f.destination.country,
                        f.destination.asn,
                        f.destination.as_name,
                        f.first_seen,
                        f.last_seen,
                        clamp(f.bytes_up),
                        clamp(f.bytes_down),
                        clamp(f.packets_up),
                        clamp(f.packets_down),
                        f.close_reason.map(|r| r.as_str()),
                        f.cleartext,
                        leaks,
                        http_requests,
                        descriptors,
                    ])
                    .map_err(&err)?;
            }

            let mut dns_stmt = tx
                .prepare_cached(
                    "INSERT INTO dns (session_id, time, uid, app, flow_id, client_ip, client_port,
                        server_ip, server_port, transport, query, qtype, rcode, answers, answer_ips, ttl)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                )
                .map_err(&err)?;
            for d in &self.pending_dns {
                let app = d
                    .uid
                    .and_then(|uid| new_apps.get(&uid).or_else(|| self.apps.get(&uid)));
                let ips: Vec<String> = d.answer_ips.iter().map(|ip| ip.to_string()).collect();
                dns_stmt
                    .execute(params![
                        self.session_id,
                        d.time,
                        d.uid,
                        app,
                        d.flow_id.map(|id| id as i64),
                        d.client.ip().to_string(),
                        d.client.port(),
                        d.server.ip().to_string(),
                        d.server.port(),
                        d.transport.as_str(),
                        d.query,
                        d.qtype,
                        d.rcode,
                        join(&d.answers),
                        join(&ips),
                        d.ttl,
                    ])
                    .map_err(&err)?;
            }

            tx.execute(
                "UPDATE sessions SET heartbeat = ?2 WHERE id = ?1",
                params![self.session_id, now],
            )
            .map_err(&err)?;

            if self.retention.is_set()
                && (self.retention_active
                    || self.last_retention.elapsed() >= self.options.retention_every)
            {
                retention_step =
                    Some(retention::prune_step(&tx, &self.retention, now).map_err(&err)?);
            }
        }
        tx.commit().map_err(&err)?;
        let shared = &self.shared;
        shared
            .flows_written
            .fetch_add(self.pending_flows.len() as u64, Ordering::Relaxed);
        shared
            .dns_written
            .fetch_add(self.pending_dns.len() as u64, Ordering::Relaxed);
        self.apps.extend(new_apps);
        self.pending_apps.clear();
        self.pending_flows.clear();
        self.pending_dns.clear();
        // A burst's batch (a record is about half a kilobyte) would otherwise stay allocated
        // for the rest of the capture.
        self.pending_flows.shrink_to(PENDING_KEEP);
        self.pending_dns.shrink_to(PENDING_KEEP);
        if let Some(step) = retention_step {
            self.last_retention = Instant::now();
            self.retention_active = step.more;
            self.shared
                .pruned
                .fetch_add(step.deleted, Ordering::Relaxed);
        }
        self.pending_events = 0;
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

const UPSERT_FLOW: &str =
    "INSERT INTO flows (session_id, flow_id, uid, app, proto, src_ip, src_port,
    dst_ip, dst_port, hostname, hostname_source, l7, alpn, tls_version, ech, http_method, vendor,
    category, category_guessed, purpose, country, asn, as_name, first_seen, last_seen, bytes_up,
    bytes_down, packets_up, packets_down, close_reason, cleartext, leaks, http_requests, descriptors)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,
    ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34)
ON CONFLICT (session_id, flow_id) DO UPDATE SET
    uid = coalesce(excluded.uid, uid), app = coalesce(excluded.app, app),
    hostname = excluded.hostname, hostname_source = excluded.hostname_source,
    l7 = excluded.l7, alpn = excluded.alpn, tls_version = excluded.tls_version,
    ech = excluded.ech, http_method = excluded.http_method, vendor = excluded.vendor,
    category = excluded.category, category_guessed = excluded.category_guessed,
    purpose = excluded.purpose, country = excluded.country, asn = excluded.asn,
    as_name = excluded.as_name, last_seen = max(last_seen, excluded.last_seen),
    bytes_up = excluded.bytes_up, bytes_down = excluded.bytes_down,
    packets_up = excluded.packets_up, packets_down = excluded.packets_down,
    close_reason = coalesce(close_reason, excluded.close_reason),
    cleartext = excluded.cleartext, leaks = excluded.leaks,
    http_requests = coalesce(excluded.http_requests, http_requests),
    descriptors = excluded.descriptors
WHERE close_reason IS NULL OR excluded.close_reason IS NOT NULL";

fn join(items: &[String]) -> Option<String> {
    if items.is_empty() {
        None
    } else {
        Some(items.join(","))
    }
}

/// SQLite integers are signed 64-bit; counters beyond that cannot happen in practice.
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
