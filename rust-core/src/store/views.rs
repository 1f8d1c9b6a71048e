//! Aggregated views over a [`Window`]: per app, per domain, per country, Xiaomi categories,
//! timelines, totals, and what the capture could not see.
//!
//! Flows count in a window by their start time. A *contact* is a connection: a flow that is not
//! a plain DNS flow (`flows.lookup`). DNS flows reached a resolver, not the names they asked
//! about; their queries count as *lookups* (rows of the dns table), in their own column.
//! "Xiaomi endpoint" means a contact whose vendor (from the catalog) is `xiaomi`.

use rusqlite::params_from_iter;
use rusqlite::types::Value;
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::read::{Reader, Window};
use crate::flow::Millis;

/// Well-known DNS-over-HTTPS endpoints: a flow to one of them hides the app's lookups.
pub const DOH_HOSTS: &[&str] = &[
    "dns.google",
    "dns.google.com",
    "cloudflare-dns.com",
    "mozilla.cloudflare-dns.com",
    "one.one.one.one",
    "dns.quad9.net",
    "doh.opendns.com",
    "dns.adguard.com",
    "dns.adguard-dns.com",
    "dns.nextdns.io",
    "doh.dns.sb",
    "doh.pub",
    "dns.alidns.com",
    "doh.360.cn",
];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSummary {
    /// Package or user name; "uid N" when the owner is unknown, "unknown" without a uid.
    pub app: String,
    pub uid: Option<u32>,
    /// Connections (non-DNS flows) the app opened.
    pub contacts: i64,
    /// DNS queries the app made (rows of the dns table with its uid).
    pub lookups: i64,
    pub bytes_up: i64,
    pub bytes_down: i64,
    /// Distinct hostnames of Xiaomi endpoints contacted.
    pub xiaomi_endpoints: i64,
    /// Contacts whose endpoint is Xiaomi's.
    pub xiaomi_contacts: i64,
    pub domains: i64,
    pub categories: Vec<String>,
    pub countries: Vec<String>,
    pub first_contact: Millis,
    pub last_contact: Millis,
    pub cleartext_flows: i64,
    pub leak_flows: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainSummary {
    /// The hostname, or the destination address for flows never named.
    pub domain: String,
    pub named: bool,
    pub vendor: Option<String>,
    pub category: Option<String>,
    pub category_guessed: bool,
    pub purpose: Option<String>,
    pub countries: Vec<String>,
    /// Connections (non-DNS flows) to this endpoint.
    pub contacts: i64,
    /// DNS queries for this exact name ("looked up 12 times"); 0 for an address.
    pub lookups: i64,
    pub bytes_up: i64,
    pub bytes_down: i64,
    pub apps: Vec<String>,
    pub first_contact: Millis,
    pub last_contact: Millis,
    pub cleartext_flows: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountrySummary {
    /// ISO country code, "??" when unknown.
    pub country: String,
    /// Connections (non-DNS flows) to endpoints in this country.
    pub contacts: i64,
    pub bytes_up: i64,
    pub bytes_down: i64,
    pub apps: i64,
    pub domains: i64,
    pub xiaomi_contacts: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategorySummary {
    /// Xiaomi catalog category ("analytics/telemetry", "ads", "push"...), "uncategorised" if none.
    pub category: String,
    /// Connections (non-DNS flows) to Xiaomi endpoints of this category.
    pub contacts: i64,
    pub bytes_up: i64,
    pub bytes_down: i64,
    pub endpoints: i64,
    pub apps: i64,
    /// Flows whose category was guessed from the host name rather than listed.
    pub guessed_flows: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineBucket {
    /// Bucket start, ms.
    pub start: Millis,
    /// Connections (non-DNS flows) that started in the bucket.
    pub contacts: i64,
    pub bytes_up: i64,
    pub bytes_down: i64,
    pub xiaomi_contacts: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Connections (non-DNS flows).
    pub contacts: i64,
    /// DNS flows (to resolvers): counted here, never as contacts.
    pub dns_flows: i64,
    pub bytes_up: i64,
    pub bytes_down: i64,
    pub apps: i64,
    pub domains: i64,
    pub xiaomi_contacts: i64,
    pub xiaomi_endpoints: i64,
    pub cleartext_flows: i64,
    pub leak_flows: i64,
    /// DNS queries (rows of the dns table).
    pub lookups: i64,
    pub first_contact: Option<Millis>,
    pub last_contact: Option<Millis>,
}

/// What the capture could not see, with the evidence that it happened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visibility {
    /// Flows to port 853 (DNS over TLS: strict Private DNS, or an app's own resolver). The
    /// names looked up through them are invisible; flows then carry only SNI names.
    pub dot_flows: i64,
    /// Flows to well-known DNS-over-HTTPS servers.
    pub doh_flows: i64,
    /// TLS with Encrypted Client Hello: the real server name is hidden, only the outer one shows.
    pub ech_flows: i64,
    /// Flows with neither a name in the traffic nor a DNS answer for their address.
    pub unnamed_flows: i64,
    pub unnamed_bytes: i64,
    /// Plain-language notes for the report, derived from the counts above plus fixed limits.
    pub notes: Vec<String>,
}

fn list(text: Option<String>) -> Vec<String> {
    let mut items: Vec<String> = match text {
        Some(t) if !t.is_empty() => t.split(',').map(str::to_string).collect(),
        _ => Vec::new(),
    };
    items.sort();
    items.dedup();
    items
}

/// Width of a rollup bucket (the `rollup` table's `bucket` column), ms.
pub const ROLLUP_BUCKET_MS: i64 = 3_600_000;

/// Columns every view reads, from the rollup (whole buckets) or from flows (window edges).
const SOURCE_COLUMNS: &str = "session_id, uid, endpoint, named, vendor, category, purpose, country,
    flows, dns_flows, flows - dns_flows AS contacts, bytes_up, bytes_down,
    max(cleartext_flows - dns_flows, 0) AS cleartext_flows, leak_flows, guessed_flows, ech_flows, dot_flows,
    first_contact, last_contact, bucket";

const FLOW_AS_SOURCE: &str = "session_id, coalesce(uid, -1) AS uid,
    endpoint, hostname IS NOT NULL AND NOT lookup AS named, vendor, category,
    purpose, coalesce(country, '') AS country, 1 AS flows, lookup AS dns_flows,
    1 - lookup AS contacts, bytes_up, bytes_down,
    cleartext AND NOT lookup AS cleartext_flows, leaks IS NOT NULL AS leak_flows,
    category_guessed AS guessed_flows, ech AS ech_flows, dst_port = 853 AS dot_flows,
    first_seen AS first_contact, last_seen AS last_contact,
    first_seen - first_seen % 3600000 AS bucket";

/// The app name of a DNS row `d` joined with `apps a`, spelled as [`APP_NAME`] spells it.
const DNS_APP_NAME: &str =
    "coalesce(a.name, CASE WHEN d.uid >= 0 THEN 'uid ' || d.uid ELSE 'unknown' END)";

/// The app name of a source row `s` joined with `apps a`.
const APP_NAME: &str =
    "coalesce(a.name, CASE WHEN s.uid >= 0 THEN 'uid ' || s.uid ELSE 'unknown' END)";

fn floor_bucket(t: Millis) -> Millis {
    t - t.rem_euclid(ROLLUP_BUCKET_MS)
}

fn ceil_bucket(t: Millis) -> Millis {
    let f = floor_bucket(t);
    if f == t { t } else { f + ROLLUP_BUCKET_MS }
}

/// A subquery yielding [`SOURCE_COLUMNS`] for the flows of `window`: whole rollup buckets
/// inside it, plus the individual flows in the partial buckets at its edges. Exact, and reads
/// flows only at the edges (markers rarely fall on the hour).
fn source(window: &Window, args: &mut Vec<Value>, hourly: bool) -> String {
    if !hourly && window.from.is_none() && window.to.is_none() {
        // Whole sessions: the per-session rollup is smaller still.
        let columns = SOURCE_COLUMNS.replace("bucket", "0 AS bucket");
        return match window.session {
            Some(s) => {
                args.push(Value::Integer(s));
                format!("SELECT {columns} FROM session_rollup WHERE session_id = ?")
            }
            None => format!("SELECT {columns} FROM session_rollup"),
        };
    }
    let flow_range = |args: &mut Vec<Value>, from: Option<Millis>, to: Option<Millis>| -> String {
        let flows = Window {
            session: window.session,
            from,
            to,
        };
        format!(
            "SELECT {FLOW_AS_SOURCE} FROM flows WHERE {}",
            flows.condition("first_seen", args)
        )
    };
    let lo = window.from.map(ceil_bucket);
    let hi = window.to.map(floor_bucket);
    if let (Some(lo), Some(hi)) = (lo, hi)
        && lo >= hi
    {
        // The window lies within one or two buckets: read its flows directly.
        return flow_range(args, window.from, window.to);
    }
    let whole_buckets = Window {
        session: window.session,
        from: lo,
        to: hi,
    };
    let mut sql = format!(
        "SELECT {SOURCE_COLUMNS} FROM rollup WHERE {}",
        whole_buckets.condition("bucket", args)
    );
    if let (Some(from), Some(lo)) = (window.from, lo)
        && from < lo
    {
        sql.push_str(" UNION ALL ");
        sql.push_str(&flow_range(args, Some(from), Some(lo)));
    }
    if let (Some(to), Some(hi)) = (window.to, hi)
        && hi < to
    {
        sql.push_str(" UNION ALL ");
        sql.push_str(&flow_range(args, Some(hi), Some(to)));
    }
    sql
}

impl Reader {
    fn query_source<T>(
        &self,
        window: &Window,
        hourly: bool,
        sql_with_source: impl FnOnce(&str) -> String,
        leading: Vec<Value>,
        map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut args = Vec::new();
        let src = source(window, &mut args, hourly);
        let mut all = leading;
        all.extend(args);
        let sql = sql_with_source(&src);
        let mut stmt = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let rows = stmt
            .query_map(params_from_iter(all), map)
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// One row per app, most bytes first.
    pub fn per_app(&self, window: &Window) -> Result<Vec<AppSummary>, StoreError> {
        let mut lookups = self.lookups_by(window, DNS_APP_NAME)?;
        let mut apps = self.query_source(
            window,
            false,
            |src| {
                format!(
                    "SELECT {APP_NAME} AS app_name, max(s.uid), sum(contacts), sum(bytes_up),
                        sum(bytes_down),
                        count(DISTINCT CASE WHEN vendor = 'xiaomi' AND contacts > 0 THEN endpoint END),
                        sum(CASE WHEN vendor = 'xiaomi' THEN contacts ELSE 0 END),
                        count(DISTINCT CASE WHEN named THEN endpoint END),
                        group_concat(DISTINCT category), group_concat(DISTINCT nullif(country, '')),
                        min(first_contact), max(last_contact), sum(cleartext_flows), sum(leak_flows)
                     FROM ({src}) s LEFT JOIN apps a ON a.session_id = s.session_id AND a.uid = s.uid
                     GROUP BY app_name
                     ORDER BY sum(bytes_up) + sum(bytes_down) DESC, app_name"
                )
            },
            Vec::new(),
            |r| {
                Ok(AppSummary {
                    app: r.get(0)?,
                    uid: r.get::<_, i64>(1).map(|u| u32::try_from(u).ok())?,
                    contacts: r.get(2)?,
                    lookups: 0,
                    bytes_up: r.get(3)?,
                    bytes_down: r.get(4)?,
                    xiaomi_endpoints: r.get(5)?,
                    xiaomi_contacts: r.get(6)?,
                    domains: r.get(7)?,
                    categories: list(r.get(8)?),
                    countries: list(r.get(9)?),
                    first_contact: r.get(10)?,
                    last_contact: r.get(11)?,
                    cleartext_flows: r.get(12)?,
                    leak_flows: r.get(13)?,
                })
            },
        )?;
        for app in &mut apps {
            app.lookups = lookups.remove(&app.app).unwrap_or(0);
        }
        // Apps that only looked names up, and never connected anywhere but a resolver.
        let mut only_lookups: Vec<AppSummary> = lookups
            .into_iter()
            .map(|(app, lookups)| AppSummary {
                app,
                lookups,
                ..AppSummary::default()
            })
            .collect();
        only_lookups.sort_by(|a, b| a.app.cmp(&b.app));
        apps.extend(only_lookups);
        Ok(apps)
    }

    /// DNS queries in `window` counted per `key`, an SQL expression over `dns d` joined with
    /// `apps a` (the app's name, or the query name).
    fn lookups_by(
        &self,
        window: &Window,
        key: &str,
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let mut args = Vec::new();
        let cond = window.condition("d.time", &mut args);
        let cond = cond.replace("session_id", "d.session_id");
        let sql = format!(
            "SELECT {key} AS k, count(*) FROM dns d
             LEFT JOIN apps a ON a.session_id = d.session_id AND a.uid = d.uid
             WHERE {cond} GROUP BY k"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let rows = stmt
            .query_map(params_from_iter(args), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// One row per hostname (or address when unnamed), most contacts first; `limit` caps the list.
    pub fn per_domain(
        &self,
        window: &Window,
        limit: Option<u32>,
    ) -> Result<Vec<DomainSummary>, StoreError> {
        self.domains(window, limit, None)
    }

    /// The endpoints one app contacted (an app's detail screen), most flows first. `app` is
    /// the name [`Reader::per_app`] returns.
    pub fn app_domains(
        &self,
        window: &Window,
        app: &str,
        limit: Option<u32>,
    ) -> Result<Vec<DomainSummary>, StoreError> {
        self.domains(window, limit, Some(app))
    }

    fn domains(
        &self,
        window: &Window,
        limit: Option<u32>,
        app: Option<&str>,
    ) -> Result<Vec<DomainSummary>, StoreError> {
        let limit = limit.map(|l| format!(" LIMIT {l}")).unwrap_or_default();
        // The app filter's parameter must precede the source's: bind it in a leading CTE.
        let (with, filter, leading) = match app {
            Some(name) => (
                "WITH wanted(name) AS (SELECT ?) ",
                format!(" WHERE {APP_NAME} = (SELECT name FROM wanted)"),
                vec![Value::Text(name.to_string())],
            ),
            None => ("", String::new(), Vec::new()),
        };
        let lookups = self.lookups_by(window, "lower(rtrim(d.query, '.'))")?;
        let mut domains = self.query_source(
            window,
            false,
            |src| {
                format!(
                    "{with}SELECT endpoint, max(named), max(vendor), max(category), max(guessed_flows) > 0,
                        max(purpose), group_concat(DISTINCT nullif(country, '')), sum(contacts),
                        sum(bytes_up), sum(bytes_down), min(first_contact), max(last_contact),
                        sum(cleartext_flows), group_concat(DISTINCT {APP_NAME})
                     FROM ({src}) s LEFT JOIN apps a ON a.session_id = s.session_id AND a.uid = s.uid
                     {filter} GROUP BY endpoint HAVING sum(contacts) > 0
                     ORDER BY sum(contacts) DESC, endpoint{limit}"
                )
            },
            leading,
            |r| {
                Ok(DomainSummary {
                    domain: r.get(0)?,
                    named: r.get(1)?,
                    vendor: r.get(2)?,
                    category: r.get(3)?,
                    category_guessed: r.get(4)?,
                    purpose: r.get(5)?,
                    countries: list(r.get(6)?),
                    contacts: r.get(7)?,
                    lookups: 0,
                    bytes_up: r.get(8)?,
                    bytes_down: r.get(9)?,
                    first_contact: r.get(10)?,
                    last_contact: r.get(11)?,
                    cleartext_flows: r.get(12)?,
                    apps: list(r.get(13)?),
                })
            },
        )?;
        for d in &mut domains {
            d.lookups = lookups.get(&d.domain).copied().unwrap_or(0);
        }
        Ok(domains)
    }

    pub fn per_country(&self, window: &Window) -> Result<Vec<CountrySummary>, StoreError> {
        self.query_source(
            window,
            false,
            |src| {
                format!(
                    "SELECT CASE WHEN country = '' THEN '??' ELSE country END AS c, sum(contacts),
                        sum(bytes_up), sum(bytes_down), count(DISTINCT {APP_NAME}),
                        count(DISTINCT CASE WHEN named THEN endpoint END),
                        sum(CASE WHEN vendor = 'xiaomi' THEN contacts ELSE 0 END)
                     FROM ({src}) s LEFT JOIN apps a ON a.session_id = s.session_id AND a.uid = s.uid
                     WHERE contacts > 0 GROUP BY c ORDER BY sum(contacts) DESC, c"
                )
            },
            Vec::new(),
            |r| {
                Ok(CountrySummary {
                    country: r.get(0)?,
                    contacts: r.get(1)?,
                    bytes_up: r.get(2)?,
                    bytes_down: r.get(3)?,
                    apps: r.get(4)?,
                    domains: r.get(5)?,
                    xiaomi_contacts: r.get(6)?,
                })
            },
        )
    }

    /// Xiaomi endpoints grouped by catalog category.
    pub fn per_category(&self, window: &Window) -> Result<Vec<CategorySummary>, StoreError> {
        self.query_source(
            window,
            false,
            |src| {
                format!(
                    "SELECT coalesce(category, 'uncategorised') AS c, sum(contacts), sum(bytes_up),
                        sum(bytes_down), count(DISTINCT endpoint), count(DISTINCT {APP_NAME}),
                        sum(guessed_flows)
                     FROM ({src}) s LEFT JOIN apps a ON a.session_id = s.session_id AND a.uid = s.uid
                     WHERE vendor = 'xiaomi' AND contacts > 0 GROUP BY c ORDER BY sum(contacts) DESC, c"
                )
            },
            Vec::new(),
            |r| {
                Ok(CategorySummary {
                    category: r.get(0)?,
                    contacts: r.get(1)?,
                    bytes_up: r.get(2)?,
                    bytes_down: r.get(3)?,
                    endpoints: r.get(4)?,
                    apps: r.get(5)?,
                    guessed_flows: r.get(6)?,
                })
            },
        )
    }

    /// One app's contacts per hour as (hour start, contacts), oldest first, empty hours
    /// omitted; `app` is the name [`Reader::per_app`] returns. Read from the same rows as
    /// `per_app`, so the hours add up to its `contacts`.
    pub fn app_contacts_per_hour(
        &self,
        window: &Window,
        app: &str,
    ) -> Result<Vec<(Millis, i64)>, StoreError> {
        self.query_source(
            window,
            true,
            |src| {
                format!(
                    "WITH wanted(name) AS (SELECT ?)
                     SELECT bucket, sum(contacts)
                     FROM ({src}) s LEFT JOIN apps a ON a.session_id = s.session_id AND a.uid = s.uid
                     WHERE {APP_NAME} = (SELECT name FROM wanted)
                     GROUP BY bucket HAVING sum(contacts) > 0 ORDER BY bucket"
                )
            },
            vec![Value::Text(app.to_string())],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// Flows and bytes per time bucket of `bucket_ms` (by flow start), empty buckets omitted.
    /// Whole hours read the rollup; finer buckets read the window's flows.
    pub fn timeline(
        &self,
        window: &Window,
        bucket_ms: i64,
    ) -> Result<Vec<TimelineBucket>, StoreError> {
        let bucket = bucket_ms.max(1);
        let map = |r: &rusqlite::Row<'_>| {
            Ok(TimelineBucket {
                start: r.get(0)?,
                contacts: r.get(1)?,
                bytes_up: r.get(2)?,
                bytes_down: r.get(3)?,
                xiaomi_contacts: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
            })
        };
        if bucket % ROLLUP_BUCKET_MS == 0 {
            return self.query_source(
                window,
                true,
                |src| {
                    format!(
                        "SELECT bucket - bucket % ? AS b, sum(contacts), sum(bytes_up), sum(bytes_down),
                            sum(CASE WHEN vendor = 'xiaomi' THEN contacts ELSE 0 END)
                         FROM ({src}) GROUP BY b ORDER BY b"
                    )
                },
                vec![Value::Integer(bucket)],
                map,
            );
        }
        let mut args = vec![Value::Integer(bucket)];
        let cond = window.condition("first_seen", &mut args);
        let sql = format!(
            "SELECT first_seen - first_seen % ? AS b, sum(NOT lookup), sum(bytes_up), sum(bytes_down),
                sum(vendor = 'xiaomi' AND NOT lookup)
             FROM flows WHERE {cond} GROUP BY b ORDER BY b"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let rows = stmt
            .query_map(params_from_iter(args), map)
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    pub fn totals(&self, window: &Window) -> Result<Totals, StoreError> {
        let mut totals = self
            .query_source(
                window,
                false,
                |src| {
                    format!(
                        "SELECT coalesce(sum(contacts), 0), coalesce(sum(bytes_up), 0),
                            coalesce(sum(bytes_down), 0), count(DISTINCT {APP_NAME}),
                            count(DISTINCT CASE WHEN named THEN endpoint END),
                            coalesce(sum(CASE WHEN vendor = 'xiaomi' THEN contacts END), 0),
                            count(DISTINCT CASE WHEN vendor = 'xiaomi' AND contacts > 0 THEN endpoint END),
                            coalesce(sum(cleartext_flows), 0), coalesce(sum(leak_flows), 0),
                            min(first_contact), max(last_contact), coalesce(sum(dns_flows), 0)
                         FROM ({src}) s LEFT JOIN apps a ON a.session_id = s.session_id AND a.uid = s.uid"
                    )
                },
                Vec::new(),
                |r| {
                    Ok(Totals {
                        contacts: r.get(0)?,
                        dns_flows: r.get(11)?,
                        bytes_up: r.get(1)?,
                        bytes_down: r.get(2)?,
                        apps: r.get(3)?,
                        domains: r.get(4)?,
                        xiaomi_contacts: r.get(5)?,
                        xiaomi_endpoints: r.get(6)?,
                        cleartext_flows: r.get(7)?,
                        leak_flows: r.get(8)?,
                        lookups: 0,
                        first_contact: r.get(9)?,
                        last_contact: r.get(10)?,
                    })
                },
            )?
            .pop()
            .unwrap_or_default();
        let mut args = Vec::new();
        let cond = window.condition("time", &mut args);
        totals.lookups = self
            .conn
            .prepare_cached(&format!("SELECT count(*) FROM dns WHERE {cond}"))
            .and_then(|mut stmt| stmt.query_row(params_from_iter(args), |r| r.get(0)))
            .map_err(self.err())?;
        Ok(totals)
    }

    pub fn visibility(&self, window: &Window) -> Result<Visibility, StoreError> {
        let doh: Vec<Value> = DOH_HOSTS
            .iter()
            .map(|h| Value::Text((*h).to_string()))
            .collect();
        let marks = vec!["?"; doh.len()].join(",");
        let mut v = self
            .query_source(
                window,
                false,
                |src| {
                    format!(
                        "SELECT coalesce(sum(dot_flows), 0),
                            coalesce(sum(CASE WHEN endpoint IN ({marks}) THEN contacts END), 0),
                            coalesce(sum(ech_flows), 0),
                            coalesce(sum(CASE WHEN NOT named THEN contacts END), 0),
                            coalesce(sum(CASE WHEN NOT named AND dns_flows = 0 THEN bytes_up + bytes_down END), 0)
                         FROM ({src})"
                    )
                },
                doh,
                |r| {
                    Ok(Visibility {
                        dot_flows: r.get(0)?,
                        doh_flows: r.get(1)?,
                        ech_flows: r.get(2)?,
                        unnamed_flows: r.get(3)?,
                        unnamed_bytes: r.get(4)?,
                        notes: Vec::new(),
                    })
                },
            )?
            .pop()
            .unwrap_or_default();
        v.notes = visibility_notes(&v);
        Ok(v)
    }
}

fn visibility_notes(v: &Visibility) -> Vec<String> {
    let mut notes = Vec::new();
    if v.dot_flows > 0 {
        notes.push(format!(
            "{} flow(s) to port 853 (DNS over TLS). With strict Private DNS the phone's lookups are \
             encrypted: host names then come only from TLS/QUIC SNI, and lookups themselves are \
             not logged. Set Private DNS to Off or Automatic for a complete DNS log.",
            v.dot_flows
        ));
    }
    if v.doh_flows > 0 {
        notes.push(format!(
            "{} flow(s) to DNS-over-HTTPS servers: the names those apps looked up are hidden.",
            v.doh_flows
        ));
    }
    if v.ech_flows > 0 {
        notes.push(format!(
            "{} TLS flow(s) used Encrypted Client Hello: only the outer (public) server name is \
             known, not the real one.",
            v.ech_flows
        ));
    }
    if v.unnamed_flows > 0 {
        notes.push(format!(
            "{} flow(s) ({} bytes) have no host name: no SNI, Host header or DNS answer named \
             their address (hard-coded IPs, or DNS resolved before the capture started).",
            v.unnamed_flows, v.unnamed_bytes
        ));
    }
    notes.push(
        "Payloads of encrypted flows are not inspected: only who talked to whom, when, and how much."
            .into(),
    );
    notes.push(
        "Apps in a work profile or Second space use their own VPN and are not in this capture."
            .into(),
    );
    notes
}
