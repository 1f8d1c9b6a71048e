//! The database layout and its forward migrations, keyed by `PRAGMA user_version`.
//!
//! A PhoneHome database carries `PRAGMA application_id = 0x50484F4D` ("PHOM") so that a
//! random SQLite file is refused with a clear message instead of being written into.
//! Migrations only ever move forward; a database written by a newer PhoneHome is refused
//! rather than misread.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// "PHOM" as a big-endian 32-bit integer.
pub const APPLICATION_ID: i32 = 0x5048_4F4D;

/// How long a connection waits for another writer (a `mark` while a capture commits).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Each entry moves the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: sessions, markers, apps, flows, dns, settings, and views for sqlite3/pandas users.
    r#"
CREATE TABLE sessions (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    started     INTEGER NOT NULL,   -- ms since the Unix epoch (wall clock)
    ended       INTEGER,            -- NULL while running or after a crash
    heartbeat   INTEGER,            -- last commit of the writer, ms
    device      TEXT,
    os          TEXT,
    app_version TEXT,
    note        TEXT
);
CREATE TABLE markers (
    id          INTEGER PRIMARY KEY,
    session_id  INTEGER NOT NULL REFERENCES sessions(id),
    time        INTEGER NOT NULL,
    label       TEXT NOT NULL
);
CREATE INDEX markers_session ON markers(session_id, time);
CREATE TABLE apps (
    session_id  INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    PRIMARY KEY (session_id, uid)
) WITHOUT ROWID;
CREATE TABLE flows (
    id               INTEGER PRIMARY KEY,
    session_id       INTEGER NOT NULL,
    flow_id          INTEGER NOT NULL,
    uid              INTEGER,
    app              TEXT,              -- copy of apps.name, so per-app views need no join
    proto            TEXT NOT NULL,
    src_ip           TEXT NOT NULL,
    src_port         INTEGER NOT NULL,
    dst_ip           TEXT NOT NULL,
    dst_port         INTEGER NOT NULL,
    hostname         TEXT,
    hostname_source  TEXT,
    l7               TEXT,
    alpn             TEXT,              -- comma-separated
    tls_version      TEXT,
    ech              INTEGER NOT NULL DEFAULT 0,
    http_method      TEXT,
    vendor           TEXT,
    category         TEXT,
    category_guessed INTEGER NOT NULL DEFAULT 0,
    purpose          TEXT,
    country          TEXT,
    asn              INTEGER,
    as_name          TEXT,
    first_seen       INTEGER NOT NULL,  -- ms
    last_seen        INTEGER NOT NULL,  -- ms
    bytes_up         INTEGER NOT NULL DEFAULT 0,
    bytes_down       INTEGER NOT NULL DEFAULT 0,
    packets_up       INTEGER NOT NULL DEFAULT 0,
    packets_down     INTEGER NOT NULL DEFAULT 0,
    close_reason     TEXT,              -- NULL while open
    cleartext        INTEGER NOT NULL DEFAULT 0,
    leaks            TEXT,              -- comma-separated identifier kinds, NULL when none
    UNIQUE (session_id, flow_id)
);
CREATE INDEX flows_first_seen ON flows(first_seen);
CREATE INDEX flows_session_time ON flows(session_id, first_seen);
CREATE INDEX flows_session_uid ON flows(session_id, uid);
CREATE TABLE dns (
    id          INTEGER PRIMARY KEY,
    session_id  INTEGER NOT NULL,
    time        INTEGER NOT NULL,
    uid         INTEGER,
    app         TEXT,
    flow_id     INTEGER,
    client_ip   TEXT NOT NULL,
    client_port INTEGER NOT NULL,
    server_ip   TEXT NOT NULL,
    server_port INTEGER NOT NULL,
    transport   TEXT NOT NULL,
    query       TEXT NOT NULL,
    qtype       INTEGER NOT NULL,
    rcode       INTEGER,
    answers     TEXT,                  -- comma-separated
    answer_ips  TEXT,                  -- comma-separated
    ttl         INTEGER
);
CREATE INDEX dns_session_time ON dns(session_id, time);
CREATE INDEX dns_time ON dns(time);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE VIEW app_summary AS
SELECT session_id, coalesce(app, 'uid ' || uid, 'unknown') AS app,
       count(*) AS flows, sum(bytes_up) AS bytes_up, sum(bytes_down) AS bytes_down,
       count(DISTINCT CASE WHEN lower(vendor) = 'xiaomi' THEN hostname END) AS xiaomi_endpoints,
       group_concat(DISTINCT category) AS categories,
       group_concat(DISTINCT country) AS countries,
       min(first_seen) AS first_contact, max(last_seen) AS last_contact,
       sum(cleartext) AS cleartext_flows
FROM flows GROUP BY session_id, 2;
CREATE VIEW domain_summary AS
SELECT session_id, coalesce(hostname, dst_ip) AS domain, vendor, category,
       count(*) AS flows, sum(bytes_up) AS bytes_up, sum(bytes_down) AS bytes_down,
       count(DISTINCT coalesce(app, uid)) AS apps,
       min(first_seen) AS first_contact, max(last_seen) AS last_contact
FROM flows GROUP BY session_id, 2;
CREATE VIEW country_summary AS
SELECT session_id, coalesce(country, '??') AS country,
       count(*) AS flows, sum(bytes_up) AS bytes_up, sum(bytes_down) AS bytes_down,
       count(DISTINCT coalesce(app, uid)) AS apps
FROM flows GROUP BY session_id, 2;
"#,
];

/// The schema version this build writes.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}

pub(crate) fn sqlite_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

pub(crate) fn other(path: &Path, message: impl Into<String>) -> StoreError {
    StoreError::Other {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// How [`open`] treats the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the file if missing (a capture).
    Create,
    /// The file must exist; open it for reading and small writes (markers, settings).
    Existing,
    /// The file must exist and is only read (a read-only medium works).
    ReadOnly,
}

/// Opens a PhoneHome database, checks that it is one, and migrates it to the current schema
/// (except in `ReadOnly` mode, where an older schema is read as it is if it is current).
pub fn open(path: &Path, mode: OpenMode) -> Result<Connection, StoreError> {
    if mode != OpenMode::Create {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                return Err(other(path, "is a directory, not a database file"));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(other(
                    path,
                    "no such file (run `phonehome capture` or `analyze` first)",
                ));
            }
            Err(e) => return Err(other(path, e.to_string())),
        }
    }
    let flags = match mode {
        OpenMode::Create => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        OpenMode::Existing => OpenFlags::SQLITE_OPEN_READ_WRITE,
        OpenMode::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|e| describe_open_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_err(path))?;
    check_identity(&conn, path)?;
    if mode != OpenMode::ReadOnly {
        // WAL lets a reader (report, export, mark) work while the capture writes; NORMAL
        // sync keeps every committed batch across a process kill (only power loss can cost
        // the last commits).
        let journal: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| describe_open_error(path, e))?;
        if !journal.eq_ignore_ascii_case("wal") {
            log::warn!("{}: journal mode is {journal}, not WAL", path.display());
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY;")
            .map_err(sqlite_err(path))?;
        migrate(&conn, path)?;
    } else {
        let version = user_version(&conn, path)?;
        if version < current_version() {
            return Err(other(
                path,
                format!(
                    "schema version {version} is older than this phonehome's ({}); open it once \
                     without read-only access to upgrade it",
                    current_version()
                ),
            ));
        }
    }
    conn.execute_batch("PRAGMA cache_size=-32000;")
        .map_err(sqlite_err(path))?;
    Ok(conn)
}

fn describe_open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(code, _) = &e {
        match code.code {
            rusqlite::ErrorCode::NotADatabase => {
                return other(path, "not a PhoneHome database (not an SQLite file)");
            }
            rusqlite::ErrorCode::CannotOpen => {
                return other(path, "cannot open (missing directory or no permission)");
            }
            rusqlite::ErrorCode::ReadOnly => {
                return other(path, "read-only file or directory");
            }
            _ => {}
        }
    }
    StoreError::Sqlite {
        path: path.display().to_string(),
        source: e,
    }
}

fn user_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| describe_open_error(path, e))
}

/// Refuses files that are SQLite but not ours, and databases from a newer PhoneHome.
fn check_identity(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let app_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| describe_open_error(path, e))?;
    let version = user_version(conn, path)?;
    if app_id == 0 && version == 0 {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| describe_open_error(path, e))?;
        if tables == 0 {
            return Ok(()); // empty: a new database
        }
    }
    if app_id != APPLICATION_ID {
        return Err(other(
            path,
            "not a PhoneHome database (SQLite file with other tables)",
        ));
    }
    if version > current_version() {
        return Err(other(
            path,
            format!(
                "schema version {version} is newer than this phonehome supports ({}); upgrade phonehome",
                current_version()
            ),
        ));
    }
    Ok(())
}

fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let err = sqlite_err(path);
    loop {
        // Re-read inside the write lock: another process may have migrated meanwhile.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(&err)?;
        let version = user_version(conn, path)?;
        if version >= current_version() {
            conn.execute_batch("COMMIT").map_err(&err)?;
            return Ok(());
        }
        let step = usize::try_from(version).unwrap_or(0);
        let result = conn.execute_batch(MIGRATIONS[step]).and_then(|_| {
            conn.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {};",
                version + 1
            ))
        });
        match result {
            Ok(()) => conn.execute_batch("COMMIT").map_err(&err)?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(describe_open_error(path, e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_and_reopens_at_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        drop(open(&path, OpenMode::Create).unwrap());
        let conn = open(&path, OpenMode::Existing).unwrap();
        assert_eq!(user_version(&conn, &path).unwrap(), current_version());
        let id: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(id, APPLICATION_ID);
    }

    #[test]
    fn refuses_foreign_newer_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.db");
        let e = open(&missing, OpenMode::Existing).unwrap_err().to_string();
        assert!(
            e.contains("missing.db") && e.contains("no such file"),
            "{e}"
        );

        let foreign = dir.path().join("foreign.db");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE t(x)")
            .unwrap();
        let e = open(&foreign, OpenMode::Existing).unwrap_err().to_string();
        assert!(e.contains("not a PhoneHome database"), "{e}");

        let text = dir.path().join("text.db");
        std::fs::write(
            &text,
            b"this is not sqlite at all, just some text to fill a page....",
        )
        .unwrap();
        let e = open(&text, OpenMode::Existing).unwrap_err().to_string();
        assert!(
            e.contains("text.db") && e.contains("not a PhoneHome database"),
            "{e}"
        );

        let newer = dir.path().join("newer.db");
        drop(open(&newer, OpenMode::Create).unwrap());
        Connection::open(&newer)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        let e = open(&newer, OpenMode::Existing).unwrap_err().to_string();
        assert!(e.contains("schema version 99 is newer"), "{e}");
    }
}
