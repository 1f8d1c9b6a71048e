//! Contacts over time per app and per company (issue 8.6): arrays of contacts per hour, and per
//! day for histories longer than two days, one series per app or company. Buckets without any contact are left
//! out (a history of captures months apart would otherwise be mostly zeros); every array is
//! aligned with `starts`.
//!
//! A contact is a connection (a non-DNS flow, `flows.lookup = 0`), counted in the bucket of its
//! start. Per-app series are grouped in SQL. There is no company column: a company is attributed
//! at read time by [`crate::company::attribute`] (so recordings made before the company table
//! existed get one too), so per-company series read (bucket, hostname, vendor, asn) groups and
//! fold them by company in Rust.

use rusqlite::params_from_iter;
use rusqlite::types::Value;
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::read::{Reader, Window};
use crate::flow::Millis;

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Series beyond this many (the apps or companies with the fewest contacts) are summed into "other".
pub const MAX_SERIES: usize = 10;

/// Name of the series that sums the smaller ones.
pub const OTHER: &str = "(other)";

/// What a series groups by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeriesKey {
    /// The app's name, as the per-app view spells it.
    App,
    /// The endpoint's company, as the per-company table names it ([`UNATTRIBUTED`] for none).
    Company,
}

/// Series name of the contacts with endpoints of no known company (as in the per-company table).
pub const UNATTRIBUTED: &str = "unattributed";

/// The SQL expression of an app's name over `flows f` joined with `apps a`.
const APP_NAME: &str =
    "coalesce(a.name, CASE WHEN f.uid >= 0 THEN 'uid ' || f.uid ELSE 'unknown' END)";

/// One app's or company's contacts per bucket, aligned with [`Buckets::starts`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    /// Contacts (connections, DNS not counted) per bucket.
    pub contacts: Vec<i64>,
    pub total: i64,
}

/// The buckets that hold at least one contact, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buckets {
    /// Bucket width, ms.
    pub bucket_ms: i64,
    /// Bucket starts, ms since the Unix epoch (UTC).
    pub starts: Vec<Millis>,
    /// All contacts per bucket (of every app or company).
    pub total: Vec<i64>,
    /// Most contacts first; at most [`MAX_SERIES`], then [`OTHER`].
    pub series: Vec<Series>,
}

/// Per hour always; per day too when the contacts span more than two days.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactTimelines {
    pub hourly: Buckets,
    pub daily: Option<Buckets>,
}

impl Reader {
    /// Contacts per hour (and per day past two days) per `key` in `window`.
    pub fn contact_timelines(
        &self,
        window: &Window,
        key: SeriesKey,
    ) -> Result<ContactTimelines, StoreError> {
        let hourly = self.buckets(window, key, HOUR_MS)?;
        let span = match (hourly.starts.first(), hourly.starts.last()) {
            (Some(a), Some(b)) => b + HOUR_MS - a,
            _ => 0,
        };
        let daily = if span > 2 * DAY_MS {
            Some(self.buckets(window, key, DAY_MS)?)
        } else {
            None
        };
        Ok(ContactTimelines { hourly, daily })
    }

    fn buckets(
        &self,
        window: &Window,
        key: SeriesKey,
        bucket_ms: i64,
    ) -> Result<Buckets, StoreError> {
        let mut args = vec![Value::Integer(bucket_ms)];
        let cond = window
            .condition("f.first_seen", &mut args)
            .replace("session_id", "f.session_id");
        let rows = match key {
            SeriesKey::App => {
                let sql = format!(
                    "SELECT f.first_seen - f.first_seen % ? AS b, {APP_NAME} AS k, count(*)
                     FROM flows f LEFT JOIN apps a ON a.session_id = f.session_id AND a.uid = f.uid
                     WHERE {cond} AND NOT f.lookup GROUP BY b, k ORDER BY b"
                );
                let mut stmt = self.conn.prepare_cached(&sql).map_err(self.err())?;
                stmt.query_map(params_from_iter(args), |r| {
                    Ok((r.get(0)?, r.get::<_, String>(1)?, r.get(2)?))
                })
                .map_err(self.err())?
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.err())?
            }
            SeriesKey::Company => {
                let sql = format!(
                    "SELECT f.first_seen - f.first_seen % ? AS b, f.hostname, f.vendor, f.asn,
                        count(*)
                     FROM flows f WHERE {cond} AND NOT f.lookup
                     GROUP BY b, f.hostname, f.vendor, f.asn ORDER BY b"
                );
                let mut stmt = self.conn.prepare_cached(&sql).map_err(self.err())?;
                stmt.query_map(params_from_iter(args), |r| {
                    let hostname: Option<String> = r.get(1)?;
                    let vendor: Option<String> = r.get(2)?;
                    let asn: Option<u32> = r.get(3)?;
                    let company =
                        crate::company::attribute(hostname.as_deref(), vendor.as_deref(), asn)
                            .company
                            .unwrap_or(UNATTRIBUTED);
                    Ok((r.get(0)?, company.to_owned(), r.get(4)?))
                })
                .map_err(self.err())?
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.err())?
            }
        };
        Ok(aligned(bucket_ms, &rows))
    }
}

/// Turns (bucket, name, contacts) rows into arrays aligned on the non-empty buckets; rows of the
/// same bucket and name (a company's several hosts) add up.
fn aligned(bucket_ms: i64, rows: &[(Millis, String, i64)]) -> Buckets {
    let mut starts: Vec<Millis> = rows.iter().map(|r| r.0).collect();
    starts.sort_unstable();
    starts.dedup();
    let n = starts.len();
    let mut by_name: std::collections::BTreeMap<&str, Vec<i64>> = Default::default();
    let mut total = vec![0i64; n];
    for (b, name, contacts) in rows {
        let Ok(i) = starts.binary_search(b) else {
            continue;
        };
        by_name.entry(name).or_insert_with(|| vec![0; n])[i] += contacts;
        total[i] += contacts;
    }
    let mut series: Vec<Series> = by_name
        .into_iter()
        .map(|(name, contacts)| Series {
            name: name.to_string(),
            total: contacts.iter().sum(),
            contacts,
        })
        .collect();
    series.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.name.cmp(&b.name)));
    if series.len() > MAX_SERIES {
        let rest = series.split_off(MAX_SERIES);
        let mut other = Series {
            name: OTHER.into(),
            contacts: vec![0; n],
            total: 0,
        };
        for s in rest {
            for (o, c) in other.contacts.iter_mut().zip(&s.contacts) {
                *o += c;
            }
            other.total += s.total;
        }
        series.push(other);
    }
    Buckets {
        bucket_ms,
        starts,
        total,
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_skips_empty_buckets_and_folds_small_series() {
        let mut rows = vec![
            (0, "a".to_string(), 2),
            (2 * HOUR_MS, "a".to_string(), 1),
            (2 * HOUR_MS, "b".to_string(), 5),
        ];
        let b = aligned(HOUR_MS, &rows);
        assert_eq!(b.starts, vec![0, 2 * HOUR_MS]);
        assert_eq!(b.total, vec![2, 6]);
        assert_eq!(b.series[0].name, "b");
        assert_eq!(b.series[0].contacts, vec![0, 5]);
        assert_eq!(b.series[1].contacts, vec![2, 1]);
        for i in 0..12 {
            rows.push((0, format!("z{i:02}"), 1));
        }
        let b = aligned(HOUR_MS, &rows);
        assert_eq!(b.series.len(), MAX_SERIES + 1);
        let other = b.series.last().unwrap();
        assert_eq!((other.name.as_str(), other.total), (OTHER, 4));
        assert_eq!(b.series.iter().map(|s| s.total).sum::<i64>(), 20);
    }
}
