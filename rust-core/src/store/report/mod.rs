//! The report: one [`Report`] value built from the read API, rendered as text (a terminal),
//! JSON (schema in docs/report-schema.md) or one self-contained HTML file.

mod evidence;
mod html;
mod text;

use serde::Serialize;

use super::evidence::{
    CleartextRequest, CompanyChange, CompanySummary, IdentifierUse, MAX_REPORTED_REQUESTS,
    company_changes,
};
use super::experiment::{Comparison, EXPERIMENT_INTRO, GUIDED_STEPS, GuidedStep, WindowSpec};
use super::read::{Marker, Reader, Session, Window};
use super::timeline::{ContactTimelines, SeriesKey};
use super::views::{
    AppSummary, CategorySummary, CountrySummary, DomainSummary, TimelineBucket, Totals, Visibility,
};
use super::{StoreError, now_ms, schema};
use crate::flow::Millis;

pub use html::render as render_html;
pub use text::render as render_text;

/// Identifies the JSON layout; bumped on incompatible changes.
pub const SCHEMA: &str = "phonehome-report/2";

/// How many domains the report lists.
pub const TOP_DOMAINS: u32 = 100;

/// What the report covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Session(i64),
    Compare(WindowSpec, WindowSpec),
}

#[derive(Clone, Debug, Serialize)]
pub struct ScopeInfo {
    /// "all", "session" or "compare".
    pub kind: &'static str,
    pub label: String,
    /// The window every section except `comparison` describes.
    pub window: Window,
}

#[derive(Clone, Debug, Serialize)]
pub struct Timeline {
    pub bucket_ms: i64,
    pub buckets: Vec<TimelineBucket>,
}

/// The guided steps, included with a comparison so a report explains itself.
#[derive(Clone, Debug, Serialize)]
pub struct ExperimentGuide {
    pub intro: &'static str,
    pub steps: &'static [GuidedStep],
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub generated_at: Millis,
    pub database: String,
    pub scope: ScopeInfo,
    pub sessions: Vec<Session>,
    pub markers: Vec<Marker>,
    pub totals: Totals,
    pub apps: Vec<AppSummary>,
    pub domains: Vec<DomainSummary>,
    pub countries: Vec<CountrySummary>,
    pub categories: Vec<CategorySummary>,
    pub timeline: Timeline,
    /// Contacts per hour (and per day past two days) per app, as aligned arrays.
    pub app_timelines: ContactTimelines,
    /// Contacts per hour (and per day past two days) per company, as aligned arrays.
    pub company_timelines: ContactTimelines,
    pub visibility: Visibility,
    /// Contacts, lookups, bytes and timelines per company.
    pub companies: Vec<CompanySummary>,
    /// Per app and endpoint: the identifier kinds seen in cleartext.
    pub identifiers: Vec<IdentifierUse>,
    /// The first cleartext HTTP requests of each flow (at most 200), identifier values redacted.
    pub cleartext_requests: Vec<CleartextRequest>,
    pub comparison: Option<Comparison>,
    /// With `--compare`: contacts and lookups per company before and after.
    pub comparison_companies: Option<Vec<CompanyChange>>,
    pub experiment: Option<ExperimentGuide>,
}

/// A bucket width giving at most ~120 bars over `span_ms`.
pub fn bucket_for(span_ms: i64) -> i64 {
    const STEPS: &[i64] = &[
        60_000,
        300_000,
        900_000,
        3_600_000,
        6 * 3_600_000,
        86_400_000,
        7 * 86_400_000,
    ];
    for &step in STEPS {
        if span_ms / step <= 120 {
            return step;
        }
    }
    30 * 86_400_000
}

/// Builds the report for `scope`.
pub fn build(reader: &Reader, scope: &Scope) -> Result<Report, StoreError> {
    let (info, comparison) = match scope {
        Scope::All => (
            ScopeInfo {
                kind: "all",
                label: "all history".into(),
                window: Window::all(),
            },
            None,
        ),
        Scope::Session(id) => {
            if reader.session(*id)?.is_none() {
                return Err(schema::other(reader.path(), format!("has no session {id}")));
            }
            (
                ScopeInfo {
                    kind: "session",
                    label: format!("session {id}"),
                    window: Window::session(*id),
                },
                None,
            )
        }
        Scope::Compare(before, after) => {
            let c = reader.compare_specs(before, after)?;
            // The sections around the comparison cover the session(s) involved.
            let window = match (c.before.window.session, c.after.window.session) {
                (Some(a), Some(b)) if a == b => Window::session(a),
                _ => Window::all(),
            };
            let label = format!("{} vs {}", c.before.label, c.after.label);
            (
                ScopeInfo {
                    kind: "compare",
                    label,
                    window,
                },
                Some(c),
            )
        }
    };
    let window = &info.window;
    let sessions: Vec<Session> = match window.session {
        Some(id) => reader.session(id)?.into_iter().collect(),
        None => reader.sessions()?,
    };
    let markers = reader.markers(window.session)?;
    let totals = reader.totals(window)?;
    let span = match (totals.first_contact, totals.last_contact) {
        (Some(a), Some(b)) => b - a,
        _ => 0,
    };
    let bucket_ms = bucket_for(span);
    let comparison_companies = match &comparison {
        Some(c) => Some(company_changes(
            &reader.per_company(&c.before.window)?,
            &reader.per_company(&c.after.window)?,
        )),
        None => None,
    };
    let experiment = comparison.as_ref().map(|_| ExperimentGuide {
        intro: EXPERIMENT_INTRO,
        steps: GUIDED_STEPS,
    });
    Ok(Report {
        schema: SCHEMA,
        generated_at: now_ms(),
        database: reader.path().display().to_string(),
        sessions,
        markers,
        apps: reader.per_app(window)?,
        domains: reader.per_domain(window, Some(TOP_DOMAINS))?,
        countries: reader.per_country(window)?,
        categories: reader.per_category(window)?,
        timeline: Timeline {
            bucket_ms,
            buckets: reader.timeline(window, bucket_ms)?,
        },
        app_timelines: reader.contact_timelines(window, SeriesKey::App)?,
        company_timelines: reader.contact_timelines(window, SeriesKey::Company)?,
        visibility: reader.visibility(window)?,
        companies: reader.per_company(window)?,
        identifiers: reader.identifier_uses(window)?,
        cleartext_requests: reader.cleartext_requests(window, MAX_REPORTED_REQUESTS)?,
        comparison_companies,
        totals,
        comparison,
        experiment,
        scope: info,
    })
}

/// The report as pretty-printed JSON.
pub fn render_json(report: &Report) -> String {
    // Serializing plain structs of strings and numbers cannot fail.
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// "1 contact", "2 contacts": a count with its noun, for sentences (tables keep plural headings).
pub fn counted<N: std::fmt::Display + PartialEq + From<u8>>(n: N, one: &str, many: &str) -> String {
    format!("{n} {}", noun(&n, one, many))
}

/// The noun a count takes: `one` for exactly 1, `many` otherwise (for rows that align counts).
pub fn noun<'a, N: PartialEq + From<u8>>(n: &N, one: &'a str, many: &'a str) -> &'a str {
    if *n == N::from(1) { one } else { many }
}

/// "12.3 MB" style sizes (powers of 1000, like most file managers).
pub fn human_bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    const UNITS: &[&str] = &["B", "kB", "MB", "GB", "TB"];
    let mut value = n;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{} B", n as i64)
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// "2026-11-21 05:47 UTC" from epoch milliseconds (no time-zone database: UTC everywhere).
pub fn utc(ms: Millis) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A short duration: "45 s", "12 min", "3.5 h", "2.1 d".
pub fn human_duration(ms: i64) -> String {
    let s = ms.max(0) as f64 / 1000.0;
    if s < 60.0 {
        format!("{s:.0} s")
    } else if s < 3600.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 86_400.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86_400.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_and_sizes() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_234_567), "1.2 MB");
        assert_eq!(bucket_for(3_600_000), 60_000);
        assert_eq!(bucket_for(30 * 86_400_000), 6 * 3_600_000);
    }

    #[test]
    fn one_is_singular_every_other_count_plural() {
        assert_eq!(counted(1i64, "contact", "contacts"), "1 contact");
        assert_eq!(counted(0u64, "contact", "contacts"), "0 contacts");
        assert_eq!(counted(2usize, "DNS flow", "DNS flows"), "2 DNS flows");
        assert_eq!(counted(-1i64, "app", "apps"), "-1 apps");
    }
}
