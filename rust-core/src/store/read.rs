//! The read side: rows, sessions and markers. Aggregated views live in `views.rs`.

use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde::{Deserialize, Serialize};

use super::retention::{self, Retention};
use super::schema::{self, OpenMode, sqlite_err};
use super::{StoreError, now_ms};
use crate::flow::Millis;

/// A writer that committed within this long is "running" (its heartbeat is every few seconds).
const RUNNING_WITHIN_MS: i64 = 15_000;

/// One capture from start to stop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: i64,
    pub kind: String,
    pub started: Millis,
    /// None while the capture runs, or when it was killed.
    pub ended: Option<Millis>,
    pub device: Option<String>,
    pub os: Option<String>,
    pub app_version: Option<String>,
    pub note: Option<String>,
    /// Time span of the session's traffic: first flow start, last flow activity (pcap
    /// analyses carry the capture's own times).
    pub first_flow: Option<Millis>,
    pub last_flow: Option<Millis>,
    /// Every flow recorded, DNS flows included.
    pub flows: i64,
    /// Connections to an endpoint: the flows that are not DNS lookups.
    pub contacts: i64,
    /// DNS queries (rows of the dns table), never contacts.
    pub lookups: i64,
    /// The writer committed within the last few seconds and has not ended the session.
    pub running: bool,
}

/// A labelled moment in a session, e.g. "turned off Send diagnostic data automatically".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub id: i64,
    pub session: i64,
    pub time: Millis,
    pub label: String,
}

/// A span of history: one session or all, optionally cut to `[from, to)` by flow start time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub session: Option<i64>,
    pub from: Option<Millis>,
    pub to: Option<Millis>,
}

impl Window {
    pub fn all() -> Window {
        Window::default()
    }

    pub fn session(id: i64) -> Window {
        Window {
            session: Some(id),
            from: None,
            to: None,
        }
    }

    /// SQL condition (with `?` placeholders) on a table whose time column is `time_col`.
    pub(crate) fn condition(&self, time_col: &str, args: &mut Vec<Value>) -> String {
        let mut parts = vec!["1".to_string()];
        if let Some(s) = self.session {
            parts.push("session_id = ?".into());
            args.push(Value::Integer(s));
        }
        if let Some(from) = self.from {
            parts.push(format!("{time_col} >= ?"));
            args.push(Value::Integer(from));
        }
        if let Some(to) = self.to {
            parts.push(format!("{time_col} < ?"));
            args.push(Value::Integer(to));
        }
        parts.join(" AND ")
    }
}

/// Which flows [`Reader::flows`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowFilter {
    pub window: Window,
    pub uid: Option<u32>,
    pub app: Option<String>,
    /// The hostname equals this or ends with "." + this.
    pub domain: Option<String>,
    /// Newest first when set (a UI list); oldest first otherwise (exports).
    pub newest_first: bool,
    pub limit: Option<u64>,
}

/// Which DNS rows [`Reader::dns`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsFilter {
    pub window: Window,
    pub uid: Option<u32>,
    pub limit: Option<u64>,
}

/// One stored flow. Field names are the JSONL keys of `phonehome flows` (a stable contract).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRow {
    pub session: i64,
    pub flow_id: i64,
    pub uid: Option<u32>,
    pub app: Option<String>,
    pub proto: String,
    pub src_ip: String,
    pub src_port: u16,
    pub dst_ip: String,
    pub dst_port: u16,
    pub hostname: Option<String>,
    pub hostname_source: Option<String>,
    pub first_seen: Millis,
    pub last_seen: Millis,
    pub bytes_up: i64,
    pub bytes_down: i64,
    pub packets_up: i64,
    pub packets_down: i64,
    pub close_reason: Option<String>,
    pub vendor: Option<String>,
    pub category: Option<String>,
    pub category_guessed: bool,
    pub purpose: Option<String>,
    pub country: Option<String>,
    pub asn: Option<u32>,
    pub as_name: Option<String>,
    pub cleartext: bool,
    pub leaks: Vec<String>,
    pub l7: Option<String>,
    pub alpn: Vec<String>,
    pub tls_version: Option<String>,
    pub ech: bool,
    pub http_method: Option<String>,
    /// The company owning the name the app asked for (by AS holder when never named); see
    /// `crate::company`. Derived when read, so older recordings get it too.
    pub company: Option<String>,
    /// The company whose network served the flow (a CDN, a cloud), by AS holder.
    pub provider: Option<String>,
    /// Device descriptors seen in cleartext (`model`, `miui_version`): not identifiers, and not
    /// in `leaks`.
    pub descriptors: Vec<String>,
    /// The first cleartext HTTP requests, identifier values replaced by `<kind>`.
    pub http_requests: Vec<crate::flow::HttpRequest>,
}

/// One stored DNS exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRow {
    pub session: i64,
    pub time: Millis,
    pub uid: Option<u32>,
    pub app: Option<String>,
    pub flow_id: Option<i64>,
    pub client_ip: String,
    pub client_port: u16,
    pub server_ip: String,
    pub server_port: u16,
    pub transport: String,
    pub query: String,
    pub qtype: u16,
    pub rcode: Option<u8>,
    pub answers: Vec<String>,
    pub answer_ips: Vec<String>,
    pub ttl: Option<u32>,
}

const FLOW_SELECT: &str = "SELECT session_id, flow_id, uid, app, proto, src_ip, src_port, dst_ip,
    dst_port, hostname, hostname_source, first_seen, last_seen, bytes_up, bytes_down, packets_up,
    packets_down, close_reason, vendor, category, category_guessed, purpose, country, asn, as_name,
    cleartext, leaks, l7, alpn, tls_version, ech, http_method, http_requests, descriptors FROM flows";

fn split(text: Option<String>) -> Vec<String> {
    match text {
        Some(t) if !t.is_empty() => t.split(',').map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

fn flow_from_row(r: &Row<'_>) -> rusqlite::Result<FlowRow> {
    let hostname: Option<String> = r.get(9)?;
    let vendor: Option<String> = r.get(18)?;
    let asn: Option<u32> = r.get(23)?;
    let who = crate::company::attribute(hostname.as_deref(), vendor.as_deref(), asn);
    let http_requests: Option<String> = r.get(32)?;
    Ok(FlowRow {
        session: r.get(0)?,
        flow_id: r.get(1)?,
        uid: r.get(2)?,
        app: r.get(3)?,
        proto: r.get(4)?,
        src_ip: r.get(5)?,
        src_port: r.get(6)?,
        dst_ip: r.get(7)?,
        dst_port: r.get(8)?,
        hostname,
        hostname_source: r.get(10)?,
        first_seen: r.get(11)?,
        last_seen: r.get(12)?,
        bytes_up: r.get(13)?,
        bytes_down: r.get(14)?,
        packets_up: r.get(15)?,
        packets_down: r.get(16)?,
        close_reason: r.get(17)?,
        vendor,
        category: r.get(19)?,
        category_guessed: r.get(20)?,
        purpose: r.get(21)?,
        country: r.get(22)?,
        asn,
        as_name: r.get(24)?,
        cleartext: r.get(25)?,
        leaks: split(r.get(26)?),
        l7: r.get(27)?,
        alpn: split(r.get(28)?),
        tls_version: r.get(29)?,
        ech: r.get(30)?,
        http_method: r.get(31)?,
        company: who.company.map(str::to_owned),
        provider: who.provider.map(str::to_owned),
        descriptors: split(r.get(33)?),
        // Written by this code as JSON; a row that does not parse keeps no requests rather than
        // failing the whole read.
        http_requests: http_requests
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default(),
    })
}

fn dns_from_row(r: &Row<'_>) -> rusqlite::Result<DnsRow> {
    Ok(DnsRow {
        session: r.get(0)?,
        time: r.get(1)?,
        uid: r.get(2)?,
        app: r.get(3)?,
        flow_id: r.get(4)?,
        client_ip: r.get(5)?,
        client_port: r.get(6)?,
        server_ip: r.get(7)?,
        server_port: r.get(8)?,
        transport: r.get(9)?,
        query: r.get(10)?,
        qtype: r.get(11)?,
        rcode: r.get(12)?,
        answers: split(r.get(13)?),
        answer_ips: split(r.get(14)?),
        ttl: r.get(15)?,
    })
}

/// A connection for reading (and for the few small writes a UI needs: markers, settings).
/// Safe to use while a [`StoreWriter`](super::StoreWriter) records into the same file.
pub struct Reader {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
}

impl Reader {
    /// Opens an existing PhoneHome database (migrating an older schema). On read-only media
    /// it falls back to [`Reader::open_read_only`]; writes (markers, settings) then fail.
    pub fn open(path: &Path) -> Result<Reader, StoreError> {
        match schema::open(path, OpenMode::Existing) {
            Ok(conn) => Ok(Reader {
                conn,
                path: path.to_path_buf(),
            }),
            Err(e) => match Reader::open_read_only(path) {
                Ok(reader) => {
                    log::info!("{}: opened read-only ({e})", path.display());
                    Ok(reader)
                }
                Err(_) => Err(e),
            },
        }
    }

    /// Opens without ever writing (works on read-only media; refuses an old schema).
    pub fn open_read_only(path: &Path) -> Result<Reader, StoreError> {
        Ok(Reader {
            conn: schema::open(path, OpenMode::ReadOnly)?,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        sqlite_err(&self.path)
    }

    pub fn sessions(&self) -> Result<Vec<Session>, StoreError> {
        self.sessions_where("1", &[])
    }

    pub fn session(&self, id: i64) -> Result<Option<Session>, StoreError> {
        Ok(self
            .sessions_where("s.id = ?", &[Value::Integer(id)])?
            .pop())
    }

    fn sessions_where(&self, condition: &str, args: &[Value]) -> Result<Vec<Session>, StoreError> {
        let now = now_ms();
        let sql = format!(
            "SELECT s.id, s.kind, s.started, s.ended, s.device, s.os, s.app_version, s.note,
                    s.heartbeat,
                    r.first, r.last, coalesce(r.flows, 0), coalesce(r.contacts, 0),
                    (SELECT count(*) FROM dns d WHERE d.session_id = s.id)
             FROM sessions s LEFT JOIN (
                 SELECT session_id, min(first_contact) AS first, max(last_contact) AS last,
                        sum(flows) AS flows, sum(flows - dns_flows) AS contacts
                 FROM session_rollup GROUP BY session_id) r ON r.session_id = s.id
             WHERE {condition} ORDER BY s.id"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let rows = stmt
            .query_map(params_from_iter(args), |r| {
                let ended: Option<Millis> = r.get(3)?;
                let heartbeat: Option<Millis> = r.get(8)?;
                Ok(Session {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    started: r.get(2)?,
                    ended,
                    device: r.get(4)?,
                    os: r.get(5)?,
                    app_version: r.get(6)?,
                    note: r.get(7)?,
                    first_flow: r.get(9)?,
                    last_flow: r.get(10)?,
                    flows: r.get(11)?,
                    contacts: r.get(12)?,
                    lookups: r.get(13)?,
                    running: ended.is_none()
                        && heartbeat.is_some_and(|h| now - h < RUNNING_WITHIN_MS),
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// The session a marker goes to: the running one (latest if several), else the latest.
    pub fn current_session(&self) -> Result<Option<Session>, StoreError> {
        let sessions = self.sessions()?;
        let running = sessions.iter().rev().find(|s| s.running).cloned();
        Ok(running.or_else(|| sessions.last().cloned()))
    }

    pub fn markers(&self, session: Option<i64>) -> Result<Vec<Marker>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, session_id, time, label FROM markers
                 WHERE ?1 IS NULL OR session_id = ?1 ORDER BY time, id",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([session], |r| {
                Ok(Marker {
                    id: r.get(0)?,
                    session: r.get(1)?,
                    time: r.get(2)?,
                    label: r.get(3)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    pub fn marker(&self, id: i64) -> Result<Option<Marker>, StoreError> {
        self.conn
            .query_row(
                "SELECT id, session_id, time, label FROM markers WHERE id = ?1",
                [id],
                |r| {
                    Ok(Marker {
                        id: r.get(0)?,
                        session: r.get(1)?,
                        time: r.get(2)?,
                        label: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(self.err())
    }

    /// Adds a marker now to the running (or else the latest) session.
    pub fn add_marker(&self, label: &str) -> Result<Marker, StoreError> {
        let session = self
            .current_session()?
            .ok_or_else(|| schema::other(&self.path, "has no session yet to put a marker in"))?;
        self.add_marker_at(session.id, now_ms(), label)
    }

    /// Adds a marker at an explicit time (the app passes its own clock; tests too).
    pub fn add_marker_at(
        &self,
        session: i64,
        time: Millis,
        label: &str,
    ) -> Result<Marker, StoreError> {
        if label.trim().is_empty() {
            return Err(schema::other(
                &self.path,
                "a marker needs a non-empty label",
            ));
        }
        if self.session(session)?.is_none() {
            return Err(schema::other(
                &self.path,
                format!("has no session {session}"),
            ));
        }
        self.conn
            .execute(
                "INSERT INTO markers (session_id, time, label) VALUES (?1, ?2, ?3)",
                params![session, time, label],
            )
            .map_err(self.err())?;
        Ok(Marker {
            id: self.conn.last_insert_rowid(),
            session,
            time,
            label: label.to_string(),
        })
    }

    /// Calls `each` for every flow matching `filter`, streaming (exports of millions of rows).
    pub fn for_each_flow<E: From<StoreError>>(
        &self,
        filter: &FlowFilter,
        each: impl FnMut(FlowRow) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut args = Vec::new();
        let mut sql = format!(
            "{FLOW_SELECT} WHERE {}",
            filter.window.condition("first_seen", &mut args)
        );
        if let Some(uid) = filter.uid {
            sql.push_str(" AND uid = ?");
            args.push(Value::Integer(i64::from(uid)));
        }
        if let Some(app) = &filter.app {
            sql.push_str(" AND app = ?");
            args.push(Value::Text(app.clone()));
        }
        if let Some(domain) = &filter.domain {
            sql.push_str(" AND (hostname = ? OR hostname LIKE ? ESCAPE '\\')");
            let escaped = domain
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            args.push(Value::Text(domain.to_ascii_lowercase()));
            args.push(Value::Text(format!("%.{}", escaped.to_ascii_lowercase())));
        }
        sql.push_str(if filter.newest_first {
            " ORDER BY first_seen DESC, id DESC"
        } else {
            " ORDER BY id"
        });
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        self.stream_rows(&sql, args, flow_from_row, each)
    }

    pub fn flows(&self, filter: &FlowFilter) -> Result<Vec<FlowRow>, StoreError> {
        let mut out = Vec::new();
        self.for_each_flow::<StoreError>(filter, |f| {
            out.push(f);
            Ok(())
        })?;
        Ok(out)
    }

    pub fn for_each_dns<E: From<StoreError>>(
        &self,
        filter: &DnsFilter,
        each: impl FnMut(DnsRow) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut args = Vec::new();
        let mut inner = format!(
            "SELECT * FROM dns WHERE {}",
            filter.window.condition("time", &mut args)
        );
        if let Some(uid) = filter.uid {
            inner.push_str(" AND uid = ?");
            args.push(Value::Integer(i64::from(uid)));
        }
        inner.push_str(" ORDER BY id");
        if let Some(limit) = filter.limit {
            inner.push_str(&format!(" LIMIT {limit}"));
        }
        // Rows recorded before their app was named get the name from `apps` here.
        let sql = format!(
            "SELECT d.session_id, d.time, d.uid, coalesce(d.app, a.name), d.flow_id, d.client_ip,
                    d.client_port, d.server_ip, d.server_port, d.transport, d.query, d.qtype,
                    d.rcode, d.answers, d.answer_ips, d.ttl
             FROM ({inner}) d LEFT JOIN apps a ON a.session_id = d.session_id AND a.uid = d.uid
             ORDER BY d.id"
        );
        self.stream_rows(&sql, args, dns_from_row, each)
    }

    /// Runs `sql` and hands each row, decoded by `decode`, to `each` as it is read.
    fn stream_rows<T, E: From<StoreError>>(
        &self,
        sql: &str,
        args: Vec<Value>,
        decode: fn(&Row<'_>) -> rusqlite::Result<T>,
        mut each: impl FnMut(T) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| E::from(self.err()(e)))?;
        let mut rows = stmt
            .query(params_from_iter(args))
            .map_err(|e| E::from(self.err()(e)))?;
        while let Some(row) = rows.next().map_err(|e| E::from(self.err()(e)))? {
            each(decode(row).map_err(|e| E::from(self.err()(e)))?)?;
        }
        Ok(())
    }

    pub fn dns(&self, filter: &DnsFilter) -> Result<Vec<DnsRow>, StoreError> {
        let mut out = Vec::new();
        self.for_each_dns::<StoreError>(filter, |d| {
            out.push(d);
            Ok(())
        })?;
        Ok(out)
    }

    /// uid -> name of a session's apps.
    pub fn apps(&self, session: i64) -> Result<Vec<(u32, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT uid, name FROM apps WHERE session_id = ?1 ORDER BY uid")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([session], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Writes a consistent copy of the database to `out` (`VACUUM INTO`), even while a capture
    /// writes. `out` must not exist yet.
    pub fn export_copy(&self, out: &Path) -> Result<(), StoreError> {
        if out.exists() {
            return Err(schema::other(out, "already exists; choose a new file name"));
        }
        let target = out
            .to_str()
            .ok_or_else(|| schema::other(out, "path is not valid UTF-8"))?;
        self.conn
            .execute("VACUUM INTO ?1", [target])
            .map_err(|source| StoreError::Sqlite {
                path: out.display().to_string(),
                source,
            })?;
        Ok(())
    }

    pub fn retention(&self) -> Result<Retention, StoreError> {
        retention::load(&self.conn).map_err(self.err())
    }

    /// Stores the retention settings; a running writer picks them up on its next start.
    pub fn set_retention(&self, r: &Retention) -> Result<(), StoreError> {
        retention::save(&self.conn, r).map_err(self.err())
    }

    /// Applies `r` now, in small transactions (safe while a capture writes). Returns rows deleted.
    pub fn prune(&self, r: &Retention) -> Result<u64, StoreError> {
        retention::prune_all(&self.conn, r, now_ms()).map_err(self.err())
    }

    /// Live pages of the database in bytes.
    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        retention::used_bytes(&self.conn).map_err(self.err())
    }

    /// `PRAGMA integrity_check`: "ok" or the problems found.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.err())?;
        let lines = rows.collect::<Result<Vec<_>, _>>().map_err(self.err())?;
        Ok(lines.join("\n"))
    }
}
