//! One capture as the app runs it: the engine on the tun fd, the SQLite writer, and the fan-out
//! between them ([`crate::recording`], shared with `phonehome capture`) that keeps the live
//! view. Free of JNI so it is tested in plain Rust; `bridge` wraps it for Kotlin.
//!
//! Threads: the engine's loop (packets), the engine's owner helper (JNI callbacks), the fan-out
//! (events -> live view + store), the store's writer (SQLite). The JNI caller only takes the
//! live view's lock for the time a snapshot or query takes.

use std::fmt;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::dissect::{DeviceContext, DeviceScan};
use crate::engine::{EngineConfig, EngineStats, Outbound, Tuning};
use crate::flow::{Event, Millis};
use crate::owner::OwnerLookup;
use crate::recording::{self, BuildFacts, EventSink, Recording, StartError};
use crate::store::report::{self, Scope};
use crate::store::{
    Reader, Retention, SessionInfo, StoreError, StoreWriter, WindowSpec, WriterOptions,
};

use super::live::{EngineCounters, Identities, LiveView};
use super::proto;

/// Why a call into the core failed. `code` is the stable word of `proto::Error`.
#[derive(Debug)]
pub struct CoreError {
    pub code: &'static str,
    pub message: String,
}

impl CoreError {
    pub fn new(code: &'static str, message: impl Into<String>) -> CoreError {
        CoreError {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> CoreError {
        CoreError::new("bad-request", message)
    }

    pub fn to_proto(&self) -> proto::Error {
        proto::Error {
            code: self.code.to_string(),
            message: self.message.clone(),
        }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for CoreError {}

impl From<StoreError> for CoreError {
    fn from(err: StoreError) -> CoreError {
        CoreError::new("store", err.to_string())
    }
}

impl From<prost::DecodeError> for CoreError {
    fn from(err: prost::DecodeError) -> CoreError {
        CoreError::bad_request(format!("undecodable message: {err}"))
    }
}

pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Checks the app's start settings and turns them into the engine's.
pub fn engine_config(config: &proto::StartConfig) -> Result<EngineConfig, CoreError> {
    let dns_v4: Ipv4Addr = config.dns_v4.parse().map_err(|_| {
        CoreError::bad_request(format!(
            "start config dns_v4 {:?} is not an IPv4 address",
            config.dns_v4
        ))
    })?;
    let dns_v6: Option<Ipv6Addr> = match config.dns_v6.as_str() {
        "" => None,
        text => Some(text.parse().map_err(|_| {
            CoreError::bad_request(format!(
                "start config dns_v6 {text:?} is not an IPv6 address"
            ))
        })?),
    };
    let dns_upstream = upstream(&config.dns_upstream)?;
    let mtu = match config.mtu {
        0 => 1500,
        m @ 1280..=65535 => m as usize,
        m => {
            return Err(CoreError::bad_request(format!(
                "start config mtu {m} is outside 1280..=65535"
            )));
        }
    };
    let outbound = Outbound {
        mark: (config.outbound_mark != 0).then_some(config.outbound_mark),
        bind_device: None,
    };
    Ok(EngineConfig {
        dns_v4,
        dns_v6,
        dns_upstream,
        mtu,
        outbound,
    })
}

/// What the cleartext identifier scan looks for: the VPN addresses, `Build.MODEL`, and the
/// MIUI/HyperOS version (see [`recording::device_context`]).
pub fn device_context(config: &proto::StartConfig) -> Result<DeviceContext, CoreError> {
    let own_ips = config
        .own_ips
        .iter()
        .map(|text| {
            text.parse::<IpAddr>().map_err(|_| {
                CoreError::bad_request(format!("start config own_ips {text:?} is not an address"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(recording::device_context(BuildFacts {
        own_ips,
        model: config.model.clone(),
        manufacturer: config.manufacturer.clone(),
        build_incremental: config.build_incremental.clone(),
    }))
}

fn upstream(text: &str) -> Result<SocketAddr, CoreError> {
    recording::parse_upstream(text).ok_or_else(|| {
        CoreError::bad_request(format!(
            "start config dns_upstream {text:?} is not an address"
        ))
    })
}

/// The live view as the fan-out's observer: every event reaches it before the store.
struct LiveSink(Arc<Mutex<LiveView>>);

impl EventSink for LiveSink {
    fn apply(&mut self, event: &Event) {
        lock(&self.0).apply(event);
    }
}

/// How a network change starts its entry in the session's timeline.
pub const NETWORK_CHANGE_LABEL: &str = "network change: ";

/// A running capture.
pub struct Session {
    recording: Option<Recording<LiveSink>>,
    store: Option<StoreWriter>,
    live: Arc<Mutex<LiveView>>,
    db_path: PathBuf,
    last_stats: EngineStats,
}

impl Session {
    /// Opens the database, starts the fan-out and the engine. The engine owns `tun` from here on
    /// (closed on stop, or right away if the start fails).
    pub fn start(
        tun: OwnedFd,
        db_path: &Path,
        config: &proto::StartConfig,
        owner: Box<dyn OwnerLookup>,
        identities: Identities,
    ) -> Result<Session, CoreError> {
        let engine_config = engine_config(config)?;
        let tuning = Tuning {
            device: Some(Arc::new(DeviceScan::new(device_context(config)?))),
            ..Tuning::default()
        };
        let info = SessionInfo {
            kind: "android".into(),
            device: non_empty(&config.device),
            os: non_empty(&config.os_version),
            app_version: non_empty(&config.app_version),
            note: non_empty(&config.note),
        };
        // The app's setting is the truth: 0 days keeps everything.
        let retention = Retention {
            max_age_days: (config.retention_days > 0).then_some(config.retention_days),
            max_mb: None,
        };
        let options = WriterOptions {
            retention: Some(retention),
            ..WriterOptions::default()
        };
        let store = StoreWriter::start_with(db_path, info, options)?;
        if let Err(err) = Reader::open(db_path).and_then(|r| r.set_retention(&retention)) {
            log::warn!("retention setting not saved: {err}");
        }
        let live = Arc::new(Mutex::new(LiveView::new(
            store.session_id(),
            now_ms(),
            identities,
        )));
        let recording = match Recording::start(
            tun,
            engine_config,
            tuning,
            owner,
            &store,
            LiveSink(live.clone()),
        ) {
            Ok(recording) => recording,
            Err(err) => {
                let _ = store.finish();
                let code = match err {
                    StartError::Fanout(_) => "io",
                    StartError::Engine(_) => "engine",
                };
                return Err(CoreError::new(code, err.to_string()));
            }
        };
        Ok(Session {
            recording: Some(recording),
            store: Some(store),
            live,
            db_path: db_path.to_path_buf(),
            last_stats: EngineStats::default(),
        })
    }

    pub fn snapshot(&mut self) -> proto::Snapshot {
        let (running, mut error) = match &self.recording {
            Some(recording) => engine_state(recording.engine().stats(), &mut self.last_stats),
            None => (false, String::new()),
        };
        if let Some(failed) = self.store.as_ref().and_then(StoreWriter::failed) {
            error = format!("recording stopped: {failed}");
        }
        lock(&self.live).snapshot(running, &counters(&self.last_stats), &error)
    }

    pub fn query(&self, request: &proto::QueryRequest) -> proto::QueryResponse {
        answer_or_history(&lock(&self.live), Some(&self.db_path), request)
    }

    /// The live view, which stays readable after the session stopped.
    pub fn live(&self) -> Arc<Mutex<LiveView>> {
        self.live.clone()
    }

    /// Records a moment of the experiment ("diagnostic data switched off") in the database and
    /// the live view, with the same id.
    pub fn mark(&mut self, label: &str) -> Result<proto::Marker, CoreError> {
        let label = label.trim();
        if label.is_empty() {
            return Err(CoreError::bad_request("a marker needs a label"));
        }
        let session = self
            .store
            .as_ref()
            .map(StoreWriter::session_id)
            .ok_or_else(|| CoreError::new("not-running", "the capture is stopping"))?;
        let marker = Reader::open(&self.db_path)?.add_marker_at(session, now_ms(), label)?;
        Ok(lock(&self.live).add_marker(marker.id, marker.time, &marker.label))
    }

    /// The phone moved to another network (Wi-Fi <-> mobile): DNS goes to `upstream` from now on,
    /// in place, so the session and its open flows carry on. The change is written into the
    /// session's timeline as a marker whose label starts with [`NETWORK_CHANGE_LABEL`]: stored
    /// with the session, shown among its moments, and told apart from the user's own markers
    /// by that prefix. `network` names the new network for that entry ("wifi", "cellular").
    pub fn change_network(
        &mut self,
        upstream: &str,
        network: &str,
    ) -> Result<proto::Marker, CoreError> {
        let upstream = self::upstream(upstream)?;
        self.recording
            .as_ref()
            .ok_or_else(|| CoreError::new("not-running", "the capture is stopping"))?
            .engine()
            .set_dns_upstream(upstream)
            .map_err(|e| CoreError::new("engine", format!("new DNS upstream: {e}")))?;
        let network = network.trim();
        let label = if network.is_empty() {
            format!("{NETWORK_CHANGE_LABEL}DNS upstream {upstream}")
        } else {
            format!("{NETWORK_CHANGE_LABEL}{network}, DNS upstream {upstream}")
        };
        self.mark(&label)
    }

    /// Writes a consistent copy of the database into `out` (a file the user picked) and closes it.
    pub fn export(&self, out: OwnedFd, request: &proto::ExportRequest) -> Result<u64, CoreError> {
        export_database(&self.db_path, out, request)
    }

    /// Stops the engine (closing the tun fd), lets the fan-out hand every last event to the
    /// store, and closes the session in the database. The final snapshot is there even when a
    /// step failed (its `totals.error` then says which).
    pub fn stop(mut self) -> (proto::Snapshot, Option<CoreError>) {
        let mut first_error = None;
        if let Some(recording) = self.recording.take() {
            let stopped = recording.stop();
            match stopped.engine {
                Ok(stats) => self.last_stats = stats,
                Err(err) => {
                    first_error = Some(CoreError::new("engine", format!("engine stop: {err}")))
                }
            }
            if let Err(err) = stopped.sink {
                first_error.get_or_insert(CoreError::new("panic", err.to_string()));
            }
        }
        if let Some(store) = self.store.take()
            && let Err(err) = store.finish()
        {
            first_error.get_or_insert(err.into());
        }
        let error = first_error
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let snapshot = lock(&self.live).snapshot(false, &counters(&self.last_stats), &error);
        (snapshot, first_error)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(recording) = self.recording.take() {
            let _ = recording.stop();
        }
        if let Some(store) = self.store.take() {
            let _ = store.finish();
        }
    }
}

/// Answers a query from a live view (of the running session or of the one that just ended).
pub fn answer(live: &LiveView, request: &proto::QueryRequest) -> proto::QueryResponse {
    use proto::query_request::Kind as Req;
    use proto::query_response::Kind as Resp;
    let kind = match &request.kind {
        Some(Req::AppDetail(r)) => Resp::AppDetail(live.app_detail(r)),
        Some(Req::DomainDetail(r)) => Resp::DomainDetail(live.domain_detail(r)),
        Some(Req::Compare(r)) => match live.compare(r) {
            Ok(c) => Resp::Comparison(c),
            Err(message) => Resp::Error(CoreError::bad_request(message).to_proto()),
        },
        None => Resp::Error(CoreError::bad_request("query request names no query").to_proto()),
    };
    proto::QueryResponse { kind: Some(kind) }
}

/// The live view's answer; when it has none (a marker of an earlier session, after the capture
/// restarted on a network change), the database's.
pub fn answer_or_history(
    live: &LiveView,
    db: Option<&Path>,
    request: &proto::QueryRequest,
) -> proto::QueryResponse {
    let response = answer(live, request);
    match (&response.kind, db) {
        (Some(proto::query_response::Kind::Error(_)), Some(db)) => {
            super::history::answer(db, request).unwrap_or(response)
        }
        _ => response,
    }
}

/// Whether the engine still runs, from its answer to a stats request: an engine that cannot
/// answer has ended (its thread died), and the snapshot must say so instead of "running".
pub(crate) fn engine_state(
    answer: io::Result<EngineStats>,
    last: &mut EngineStats,
) -> (bool, String) {
    match answer {
        Ok(stats) => {
            *last = stats;
            (true, String::new())
        }
        Err(err) => (
            false,
            format!("the engine stopped ({err}); traffic is no longer captured"),
        ),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.trim().to_string())
}

fn counters(stats: &EngineStats) -> EngineCounters {
    EngineCounters {
        flows_opened: stats.flows_opened,
        flows_open: stats.flows_open,
        bytes_up: stats.bytes_up,
        bytes_down: stats.bytes_down,
        packets_dropped: stats.packets_dropped,
    }
}

/// Writes what `request` asks for into `out` (a file the user picked), which is closed
/// afterwards: a consistent copy of the database (the store's `VACUUM INTO`, safe next to the
/// writer) or the self-contained HTML report. Returns the bytes written.
pub fn export_database(
    db_path: &Path,
    out: OwnedFd,
    request: &proto::ExportRequest,
) -> Result<u64, CoreError> {
    let format =
        proto::ExportFormat::try_from(request.format).unwrap_or(proto::ExportFormat::Unspecified);
    match format {
        proto::ExportFormat::Sqlite => export_sqlite(db_path, out),
        proto::ExportFormat::Html => {
            let reader = Reader::open_read_only(db_path)?;
            let scope = match (request.compare_marker_id, request.session_id) {
                (0, 0) => Scope::All,
                (0, session) => Scope::Session(session),
                (marker, _) => {
                    Scope::Compare(WindowSpec::Before { marker }, WindowSpec::After { marker })
                }
            };
            let html = report::render_html(&report::build(&reader, &scope)?);
            write_all(out, html.as_bytes())
        }
        proto::ExportFormat::Unspecified => {
            Err(CoreError::bad_request("export request names no format"))
        }
    }
}

fn io_err(what: &str, e: &dyn fmt::Display) -> CoreError {
    CoreError::new("io", format!("{what}: {e}"))
}

fn write_all(out: OwnedFd, bytes: &[u8]) -> Result<u64, CoreError> {
    let mut dst = File::from(out);
    io::Write::write_all(&mut dst, bytes).map_err(|e| io_err("write the export file", &e))?;
    sync(&dst)?;
    Ok(bytes.len() as u64)
}

/// Pipes and some document providers cannot fsync; the data is written either way.
fn sync(file: &File) -> Result<(), CoreError> {
    match file.sync_all() {
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => {
            Err(io_err("flush the export file", &e))
        }
        _ => Ok(()),
    }
}

fn export_sqlite(db_path: &Path, out: OwnedFd) -> Result<u64, CoreError> {
    let copy_path = db_path.with_extension(format!("export-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&copy_path);
    let result = (|| {
        Reader::open_read_only(db_path)?.export_copy(&copy_path)?;
        let mut src = File::open(&copy_path)
            .map_err(|e| io_err(&format!("open {}", copy_path.display()), &e))?;
        let mut dst = File::from(out);
        let n = io::copy(&mut src, &mut dst).map_err(|e| io_err("write the export file", &e))?;
        sync(&dst)?;
        Ok(n)
    })();
    let _ = std::fs::remove_file(&copy_path);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> proto::StartConfig {
        proto::StartConfig {
            dns_v4: "198.18.0.53".into(),
            dns_upstream: "198.18.1.1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn engine_config_from_the_app_settings() {
        let c = engine_config(&config()).unwrap();
        assert_eq!(c.dns_upstream, "198.18.1.1:53".parse().unwrap());
        assert_eq!(c.mtu, 1500);
        assert!(c.dns_v6.is_none());
        assert!(c.outbound.mark.is_none());

        let mut v6 = config();
        v6.dns_v6 = "fd00:ph::53".into();
        let err = engine_config(&v6).unwrap_err();
        assert!(err.message.contains("dns_v6"), "{err}");
        v6.dns_v6 = "fd00::53".into();
        v6.dns_upstream = "[2001:db8:0:0:0:0:0:53]:53".into(); // Java's InetAddress text
        assert_eq!(
            engine_config(&v6).unwrap().dns_upstream,
            "[2001:db8::53]:53".parse().unwrap()
        );
        v6.dns_upstream = "[fd00::1]:5353".into();
        v6.mtu = 9000;
        v6.outbound_mark = 0x50;
        let c = engine_config(&v6).unwrap();
        assert_eq!(c.dns_v6, Some("fd00::53".parse().unwrap()));
        assert_eq!(c.dns_upstream.port(), 5353);
        assert_eq!((c.mtu, c.outbound.mark), (9000, Some(0x50)));
    }

    #[test]
    fn device_context_from_the_build_facts() {
        let mut c = config();
        c.model = "23013RK75C".into();
        c.manufacturer = "Xiaomi".into();
        c.build_incremental = "OS1.0.5.0.UMCEUXM".into();
        c.own_ips = vec!["10.215.173.1".into(), "fd00:7068:6f6d:6500::1".into()];
        let d = device_context(&c).unwrap();
        assert_eq!(d.model.as_deref(), Some("23013RK75C"));
        assert_eq!(d.os_version.as_deref(), Some("OS1.0.5.0.UMCEUXM"));
        assert_eq!(
            d.own_ips,
            vec![
                "10.215.173.1".parse::<IpAddr>().unwrap(),
                "fd00:7068:6f6d:6500::1".parse().unwrap()
            ]
        );
        // The scan finds them in a cleartext request.
        let mut found = std::collections::BTreeSet::new();
        crate::dissect::leaks::scan(
            b"GET /c?ip=10.215.173.1&rom=OS1.0.5.0.UMCEUXM&m=23013RK75C HTTP/1.1\r\n",
            Some(&DeviceScan::new(d)),
            &mut found,
        );
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            vec!["miui_version", "model", "own_ip"]
        );

        // Another maker's build number is not a ROM version; a MIUI-shaped one is.
        c.manufacturer = "Google".into();
        c.build_incremental = "11583682".into();
        assert_eq!(device_context(&c).unwrap().os_version, None);
        c.build_incremental = "V14.0.3.0.TKHEUXM".into();
        assert_eq!(
            device_context(&c).unwrap().os_version.as_deref(),
            Some("V14.0.3.0.TKHEUXM")
        );
        // Nothing known, nothing looked for.
        assert_eq!(device_context(&config()).unwrap(), DeviceContext::default());
        c.own_ips = vec!["10.215.173.x".into()];
        let err = device_context(&c).unwrap_err();
        assert!(
            err.code == "bad-request" && err.message.contains("own_ips"),
            "{err}"
        );
    }

    #[test]
    fn bad_settings_name_the_field() {
        for (field, mutate) in [
            (
                "dns_v4",
                Box::new(|c: &mut proto::StartConfig| c.dns_v4 = "x".into()) as Box<dyn Fn(&mut _)>,
            ),
            (
                "dns_upstream",
                Box::new(|c: &mut proto::StartConfig| c.dns_upstream = String::new()),
            ),
            ("mtu", Box::new(|c: &mut proto::StartConfig| c.mtu = 100)),
        ] {
            let mut c = config();
            mutate(&mut c);
            let err = engine_config(&c).unwrap_err();
            assert_eq!(err.code, "bad-request");
            assert!(err.message.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn export_copies_a_database_into_a_file_descriptor() {
        let dir = std::env::temp_dir().join(format!("ph-export-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("live.db");
        let writer = crate::android::android_store(&db);
        let session = writer.session_id();
        Reader::open(&db)
            .unwrap()
            .add_marker_at(session, 5, "baseline")
            .unwrap();
        let out_path = dir.join("out.db");
        let out = File::create(&out_path).unwrap();
        let n = export_database(
            &db,
            out.into(),
            &proto::ExportRequest {
                format: proto::ExportFormat::Sqlite as i32,
                ..Default::default()
            },
        )
        .unwrap();
        writer.finish().unwrap();
        assert!(n > 0);
        let copy = Reader::open_read_only(&out_path).unwrap();
        assert_eq!(copy.markers(Some(session)).unwrap()[0].label, "baseline");
        let html_path = dir.join("report.html");
        let request = proto::ExportRequest {
            format: proto::ExportFormat::Html as i32,
            session_id: session,
            ..Default::default()
        };
        let n = export_database(&db, File::create(&html_path).unwrap().into(), &request).unwrap();
        let html = std::fs::read_to_string(&html_path).unwrap();
        assert_eq!(n as usize, html.len());
        assert!(
            html.starts_with("<!DOCTYPE html>") && html.contains("baseline"),
            "{html}"
        );
        let request = proto::ExportRequest {
            format: proto::ExportFormat::Html as i32,
            compare_marker_id: 999,
            ..Default::default()
        };
        assert_eq!(
            export_database(&db, File::create(dir.join("o3")).unwrap().into(), &request)
                .unwrap_err()
                .code,
            "store"
        );
        let err = export_database(
            &db,
            File::create(dir.join("o2")).unwrap().into(),
            &proto::ExportRequest::default(),
        )
        .unwrap_err();
        assert_eq!(err.code, "bad-request");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
