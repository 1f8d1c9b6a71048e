//! Retention: keep N days and/or N MB of history.
//!
//! Pruning deletes in small batches ([`BATCH`] rows per table per step) so it never holds the
//! write lock long: the writer thread runs one step per write window while capturing, and
//! [`prune_all`] loops steps on a separate connection (CLI, app settings screen).

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::flow::Millis;

/// Rows deleted per table in one step.
pub const BATCH: i64 = 2_000;

const KEY_DAYS: &str = "retention.max_age_days";
const KEY_MB: &str = "retention.max_mb";

/// Retention settings, stored in the `settings` table so the app and the CLI share them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Delete flows and DNS queries older than this many days from sessions recorded more
    /// than this many days ago (then such sessions left empty).
    pub max_age_days: Option<u32>,
    /// Delete the oldest history while the database's live pages exceed this many MB.
    pub max_mb: Option<u64>,
}

impl Retention {
    pub fn is_set(&self) -> bool {
        self.max_age_days.is_some() || self.max_mb.is_some()
    }
}

/// What one pruning step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub deleted: u64,
    /// More rows are due: run another step.
    pub more: bool,
}

pub fn load(conn: &Connection) -> rusqlite::Result<Retention> {
    let get = |key: &str| -> rusqlite::Result<Option<u64>> {
        let value: Option<String> = conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(value.and_then(|v| v.parse().ok()))
    };
    Ok(Retention {
        max_age_days: get(KEY_DAYS)?.and_then(|d| u32::try_from(d).ok()),
        max_mb: get(KEY_MB)?,
    })
}

pub fn save(conn: &Connection, retention: &Retention) -> rusqlite::Result<()> {
    let set = |key: &str, value: Option<u64>| -> rusqlite::Result<()> {
        match value {
            Some(v) => conn.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, v.to_string()],
            ),
            None => conn.execute("DELETE FROM settings WHERE key = ?1", [key]),
        }
        .map(|_| ())
    };
    set(KEY_DAYS, retention.max_age_days.map(u64::from))?;
    set(KEY_MB, retention.max_mb)
}

/// Bytes held by live pages (the file may be larger: freed pages are reused, not returned).
pub fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(u64::try_from((pages - free) * size).unwrap_or(0))
}

/// One bounded pruning step. Call inside a transaction (the writer's) or alone.
pub fn prune_step(conn: &Connection, retention: &Retention, now: Millis) -> rusqlite::Result<Step> {
    let mut deleted = 0u64;
    let mut more = false;
    if let Some(days) = retention.max_age_days {
        let cutoff = now - i64::from(days) * 86_400_000;
        // Only sessions recorded before the cutoff lose rows: a pcap of 2021 analysed today
        // is kept N days like a live capture, while a capture running for weeks loses its
        // oldest flows. Per session, so the (session_id, time) indexes find them.
        let mut stmt =
            conn.prepare_cached("SELECT id FROM sessions WHERE started < ?1 ORDER BY id")?;
        let sessions = stmt
            .query_map([cutoff], |r| r.get::<_, i64>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut budget = BATCH;
        for session in sessions {
            if budget <= 0 {
                break;
            }
            let flows = conn.execute(
                "DELETE FROM flows WHERE id IN (SELECT id FROM flows
                    WHERE session_id = ?1 AND first_seen < ?2 LIMIT ?3)",
                params![session, cutoff, budget],
            )? as i64;
            let dns = conn.execute(
                "DELETE FROM dns WHERE id IN (SELECT id FROM dns
                    WHERE session_id = ?1 AND time < ?2 LIMIT ?3)",
                params![session, cutoff, budget],
            )? as i64;
            deleted += (flows + dns) as u64;
            budget -= flows.max(dns);
        }
        more |= budget <= 0;
        deleted += drop_empty_sessions(conn, Some(cutoff))?;
    }
    if let Some(mb) = retention.max_mb
        && used_bytes(conn)? > mb.saturating_mul(1_000_000)
    {
        // Oldest first: the oldest flow's time bounds both tables.
        let oldest: Option<Millis> = conn
            .query_row(
                "SELECT first_seen FROM flows ORDER BY first_seen LIMIT 1 OFFSET ?1",
                [BATCH - 1],
                |r| r.get(0),
            )
            .optional()?;
        let cutoff = oldest.unwrap_or(Millis::MAX);
        let flows = conn.execute(
            "DELETE FROM flows WHERE id IN (SELECT id FROM flows ORDER BY first_seen LIMIT ?1)",
            [BATCH],
        )? as u64;
        let dns = conn.execute(
            "DELETE FROM dns WHERE id IN (SELECT id FROM dns WHERE time <= ?1 ORDER BY time LIMIT ?2)",
            params![cutoff, BATCH],
        )? as u64;
        deleted += flows + dns;
        deleted += drop_empty_sessions(conn, None)?;
        // Freed pages only show up as free once committed; the next step re-measures.
        more |= flows + dns > 0;
    }
    Ok(Step { deleted, more })
}

/// Ended sessions left without flows or DNS rows go, with their markers and apps.
fn drop_empty_sessions(conn: &Connection, older_than: Option<Millis>) -> rusqlite::Result<u64> {
    let cutoff = older_than.unwrap_or(Millis::MAX);
    let condition = "ended IS NOT NULL AND started < ?1
        AND NOT EXISTS (SELECT 1 FROM flows WHERE flows.session_id = sessions.id)
        AND NOT EXISTS (SELECT 1 FROM dns WHERE dns.session_id = sessions.id)";
    conn.execute(
        &format!(
            "DELETE FROM markers WHERE session_id IN (SELECT id FROM sessions WHERE {condition})"
        ),
        [cutoff],
    )?;
    conn.execute(
        &format!(
            "DELETE FROM apps WHERE session_id IN (SELECT id FROM sessions WHERE {condition})"
        ),
        [cutoff],
    )?;
    Ok(conn.execute(&format!("DELETE FROM sessions WHERE {condition}"), [cutoff])? as u64)
}

/// Runs steps (each its own short transaction) until nothing is due. Safe while a capture
/// writes: each step waits for the write lock at most the busy timeout.
pub fn prune_all(conn: &Connection, retention: &Retention, now: Millis) -> rusqlite::Result<u64> {
    let mut total = 0;
    // Bounded: each step deletes rows or stops; the cap guards against a size target that
    // cannot be reached (a database of nothing but sessions).
    for _ in 0..100_000 {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let step = match prune_step(conn, retention, now) {
            Ok(step) => step,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        };
        conn.execute_batch("COMMIT")?;
        total += step.deleted;
        if !step.more || step.deleted == 0 {
            break;
        }
    }
    Ok(total)
}
