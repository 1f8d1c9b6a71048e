//! Evidence views (issue 8 points 3-5): contacts per company, which identifier kinds went to
//! which endpoint from which app, and the cleartext HTTP requests kept per flow.
//!
//! A *contact* is a connection: DNS flows are lookups, counted apart (`lookups`: queries in the
//! `dns` table for the company's names). Company attribution is `crate::company::attribute`, done
//! here per (name, AS) group so that recordings made before the table existed get it too.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::types::Value;
use serde::Serialize;

use super::StoreError;
use super::read::{Reader, Window};
use crate::flow::{HttpRequest, Millis};

/// Not a DNS flow (a lookup to the resolver); the same test as the store's `flows.lookup`.
const CONTACT: &str = "NOT coalesce(l7 = 'dns' OR hostname_source = 'dns-query', 0)";
const APP: &str = "coalesce(app, 'uid ' || uid, 'unknown')";
/// Cleartext requests listed in a report.
pub const MAX_REPORTED_REQUESTS: usize = 200;

/// Contacts per time bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CountAt {
    pub start: Millis,
    pub contacts: u64,
}

/// One company's traffic in a window [`CompanySummary`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CompanySummary {
    /// From the compiled-in table; `"unattributed"` for endpoints of no known company.
    pub company: String,
    pub description: Option<String>,
    /// Connections to the company's endpoints (DNS flows excluded).
    pub contacts: u64,
    /// DNS queries for the company's names (any resolver).
    pub lookups: u64,
    pub bytes_up: i64,
    pub bytes_down: i64,
    pub apps: Vec<String>,
    /// Distinct endpoints (names, or addresses when unnamed) contacted.
    pub endpoints: u64,
    /// Contacts of which another company's network (a CDN, a cloud) served the flow.
    pub via_providers: Vec<String>,
    pub first_contact: Option<Millis>,
    pub last_contact: Option<Millis>,
    /// Contacts per hour (UTC hours; empty hours omitted).
    pub per_hour: Vec<CountAt>,
    /// Contacts per day (UTC days), given when the window's contacts span more than two days.
    pub per_day: Vec<CountAt>,
}

/// Which identifier kinds one app sent to one endpoint [`IdentifierUse`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IdentifierUse {
    pub app: String,
    pub endpoint: String,
    pub company: Option<String>,
    /// Identifier kinds (`imei`, `android_id`, `gaid`, `oaid`, `mac`, `own_ip`).
    pub identifiers: Vec<String>,
    /// Device descriptors on the same flows (`model`, `miui_version`): they fingerprint but do not
    /// identify, and are not counted in `flows`.
    pub descriptors: Vec<String>,
    /// Flows on which at least one identifier was seen.
    pub flows: u64,
    pub first_seen: Millis,
    pub last_seen: Millis,
}

/// One kept cleartext request with its flow's context [`CleartextRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CleartextRequest {
    pub time: Millis,
    pub app: String,
    pub endpoint: String,
    pub company: Option<String>,
    pub method: String,
    pub host: Option<String>,
    /// Path and query, identifier values replaced by `<kind>`.
    pub path: String,
}

impl CompanySummary {
    fn empty(name: &str) -> CompanySummary {
        CompanySummary {
            company: name.to_owned(),
            description: crate::company::by_name(name).map(|c| c.description.to_owned()),
            contacts: 0,
            lookups: 0,
            bytes_up: 0,
            bytes_down: 0,
            apps: Vec::new(),
            endpoints: 0,
            via_providers: Vec::new(),
            first_contact: None,
            last_contact: None,
            per_hour: Vec::new(),
            per_day: Vec::new(),
        }
    }
}

/// One company before and after in an experiment comparison [`CompanyChange`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CompanyChange {
    pub company: String,
    pub contacts_before: u64,
    pub contacts_after: u64,
    pub lookups_before: u64,
    pub lookups_after: u64,
    pub bytes_before: i64,
    pub bytes_after: i64,
    /// Apps that contacted the company in the "after" window.
    pub apps_after: Vec<String>,
}

/// Per company, before vs after; companies contacted after first (most contacts first).
pub fn company_changes(before: &[CompanySummary], after: &[CompanySummary]) -> Vec<CompanyChange> {
    let mut by: BTreeMap<&str, CompanyChange> = BTreeMap::new();
    for (side, list) in [(false, before), (true, after)] {
        for c in list {
            let e = by
                .entry(c.company.as_str())
                .or_insert_with(|| CompanyChange {
                    company: c.company.clone(),
                    contacts_before: 0,
                    contacts_after: 0,
                    lookups_before: 0,
                    lookups_after: 0,
                    bytes_before: 0,
                    bytes_after: 0,
                    apps_after: Vec::new(),
                });
            let bytes = c.bytes_up + c.bytes_down;
            if side {
                e.contacts_after = c.contacts;
                e.lookups_after = c.lookups;
                e.bytes_after = bytes;
                e.apps_after = c.apps.clone();
            } else {
                e.contacts_before = c.contacts;
                e.lookups_before = c.lookups;
                e.bytes_before = bytes;
            }
        }
    }
    let mut out: Vec<CompanyChange> = by.into_values().collect();
    out.sort_by(|a, b| {
        b.contacts_after
            .cmp(&a.contacts_after)
            .then(b.contacts_before.cmp(&a.contacts_before))
            .then(a.company.cmp(&b.company))
    });
    out
}

fn split(s: Option<String>) -> Vec<String> {
    s.filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

impl Reader {
    /// Contacts, lookups, bytes, apps and timelines per company, most contacts first.
    pub fn per_company(&self, window: &Window) -> Result<Vec<CompanySummary>, StoreError> {
        let mut args = Vec::new();
        let cond = window.condition("first_seen", &mut args);
        let sql = format!(
            "SELECT hostname, dst_ip, vendor, asn, {APP}, first_seen / 3600000, count(*),
                sum(bytes_up), sum(bytes_down), min(first_seen), max(last_seen)
             FROM flows WHERE {cond} AND {CONTACT}
             GROUP BY hostname, dst_ip, vendor, asn, 5, 6"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(self.err())?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args))
            .map_err(self.err())?;
        #[derive(Default)]
        struct Acc {
            s: Option<CompanySummary>,
            apps: BTreeSet<String>,
            endpoints: BTreeSet<String>,
            providers: BTreeSet<String>,
            hours: BTreeMap<i64, u64>,
        }
        let mut by: BTreeMap<String, Acc> = BTreeMap::new();
        let unattributed = "unattributed";
        while let Some(r) = rows.next().map_err(self.err())? {
            let get = |e| self.err()(e);
            let hostname: Option<String> = r.get(0).map_err(get)?;
            let dst_ip: String = r.get(1).map_err(get)?;
            let vendor: Option<String> = r.get(2).map_err(get)?;
            let asn: Option<u32> = r.get(3).map_err(get)?;
            let app: String = r.get(4).map_err(get)?;
            let hour: i64 = r.get(5).map_err(get)?;
            let n = u64::try_from(r.get::<_, i64>(6).map_err(get)?).unwrap_or(0);
            let (up, down): (i64, i64) = (r.get(7).map_err(get)?, r.get(8).map_err(get)?);
            let (first, last): (Millis, Millis) = (r.get(9).map_err(get)?, r.get(10).map_err(get)?);
            let who = crate::company::attribute(hostname.as_deref(), vendor.as_deref(), asn);
            let name = who.company.unwrap_or(unattributed);
            let acc = by.entry(name.to_owned()).or_default();
            let s = acc.s.get_or_insert_with(|| CompanySummary::empty(name));
            s.contacts += n;
            s.bytes_up += up;
            s.bytes_down += down;
            s.first_contact = Some(s.first_contact.map_or(first, |f| f.min(first)));
            s.last_contact = Some(s.last_contact.map_or(last, |l| l.max(last)));
            acc.apps.insert(app);
            acc.endpoints.insert(hostname.unwrap_or(dst_ip));
            if let Some(p) = who.provider.filter(|p| Some(*p) != who.company) {
                acc.providers.insert(p.to_owned());
            }
            *acc.hours.entry(hour).or_default() += n;
        }
        drop(rows);
        drop(stmt);

        // Lookups: DNS queries for each company's names.
        let mut args = Vec::new();
        let cond = window.condition("time", &mut args);
        let sql = format!("SELECT query, count(*) FROM dns WHERE {cond} GROUP BY query");
        let mut stmt = self.conn.prepare(&sql).map_err(self.err())?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args))
            .map_err(self.err())?;
        while let Some(r) = rows.next().map_err(self.err())? {
            let query: String = r.get(0).map_err(self.err())?;
            let n = u64::try_from(r.get::<_, i64>(1).map_err(self.err())?).unwrap_or(0);
            let vendor = crate::catalog::classify_host(&query).map(|c| c.vendor);
            let Some(name) =
                crate::company::attribute(Some(&query), vendor.as_deref(), None).company
            else {
                continue;
            };
            let acc = by.entry(name.to_owned()).or_default();
            let s = acc.s.get_or_insert_with(|| CompanySummary::empty(name));
            s.lookups += n;
        }

        let mut out: Vec<CompanySummary> = by
            .into_values()
            .filter_map(|acc| {
                let mut s = acc.s?;
                s.apps = acc.apps.into_iter().collect();
                s.endpoints = acc.endpoints.len() as u64;
                s.via_providers = acc.providers.into_iter().collect();
                s.per_hour = acc
                    .hours
                    .iter()
                    .map(|(h, n)| CountAt {
                        start: h * 3_600_000,
                        contacts: *n,
                    })
                    .collect();
                if let (Some(a), Some(b)) = (s.first_contact, s.last_contact)
                    && b - a > 2 * 86_400_000
                {
                    let mut days: BTreeMap<i64, u64> = BTreeMap::new();
                    for (h, n) in &acc.hours {
                        *days.entry(h.div_euclid(24)).or_default() += n;
                    }
                    s.per_day = days
                        .into_iter()
                        .map(|(d, n)| CountAt {
                            start: d * 86_400_000,
                            contacts: n,
                        })
                        .collect();
                }
                Some(s)
            })
            .collect();
        out.sort_by(|a, b| {
            b.contacts
                .cmp(&a.contacts)
                .then(b.lookups.cmp(&a.lookups))
                .then(a.company.cmp(&b.company))
        });
        Ok(out)
    }

    /// Per app and endpoint: the identifier kinds seen in cleartext, on how many flows, when.
    pub fn identifier_uses(&self, window: &Window) -> Result<Vec<IdentifierUse>, StoreError> {
        let mut args: Vec<Value> = Vec::new();
        let cond = window.condition("first_seen", &mut args);
        let sql = format!(
            "SELECT {APP}, coalesce(hostname, dst_ip), vendor, asn, leaks, descriptors, count(*),
                min(first_seen), max(last_seen)
             FROM flows WHERE {cond} AND leaks IS NOT NULL
             GROUP BY 1, 2, vendor, asn, leaks, descriptors"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(self.err())?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args))
            .map_err(self.err())?;
        let mut by: BTreeMap<(String, String), IdentifierUse> = BTreeMap::new();
        while let Some(r) = rows.next().map_err(self.err())? {
            let get = |e| self.err()(e);
            let app: String = r.get(0).map_err(get)?;
            let endpoint: String = r.get(1).map_err(get)?;
            let vendor: Option<String> = r.get(2).map_err(get)?;
            let asn: Option<u32> = r.get(3).map_err(get)?;
            let ids = split(r.get(4).map_err(get)?);
            let descriptors = split(r.get(5).map_err(get)?);
            let n = u64::try_from(r.get::<_, i64>(6).map_err(get)?).unwrap_or(0);
            let (first, last): (Millis, Millis) = (r.get(7).map_err(get)?, r.get(8).map_err(get)?);
            let company = crate::company::attribute(Some(&endpoint), vendor.as_deref(), asn)
                .company
                .map(str::to_owned);
            let u = by
                .entry((app.clone(), endpoint.clone()))
                .or_insert_with(|| IdentifierUse {
                    app,
                    endpoint,
                    company,
                    identifiers: Vec::new(),
                    descriptors: Vec::new(),
                    flows: 0,
                    first_seen: first,
                    last_seen: last,
                });
            for k in ids {
                if !u.identifiers.contains(&k) {
                    u.identifiers.push(k);
                }
            }
            for k in descriptors {
                if !u.descriptors.contains(&k) {
                    u.descriptors.push(k);
                }
            }
            u.identifiers.sort();
            u.descriptors.sort();
            u.flows += n;
            u.first_seen = u.first_seen.min(first);
            u.last_seen = u.last_seen.max(last);
        }
        let mut out: Vec<IdentifierUse> = by.into_values().collect();
        out.sort_by(|a, b| b.flows.cmp(&a.flows).then(a.app.cmp(&b.app)));
        Ok(out)
    }

    /// The kept cleartext HTTP requests, oldest flow first, at most `limit`.
    pub fn cleartext_requests(
        &self,
        window: &Window,
        limit: usize,
    ) -> Result<Vec<CleartextRequest>, StoreError> {
        let mut args: Vec<Value> = Vec::new();
        let cond = window.condition("first_seen", &mut args);
        let sql = format!(
            "SELECT first_seen, {APP}, coalesce(hostname, dst_ip), vendor, asn, http_requests
             FROM flows WHERE {cond} AND http_requests IS NOT NULL ORDER BY first_seen, id"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(self.err())?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args))
            .map_err(self.err())?;
        let mut out = Vec::new();
        while out.len() < limit
            && let Some(r) = rows.next().map_err(self.err())?
        {
            let get = |e| self.err()(e);
            let time: Millis = r.get(0).map_err(get)?;
            let app: String = r.get(1).map_err(get)?;
            let endpoint: String = r.get(2).map_err(get)?;
            let vendor: Option<String> = r.get(3).map_err(get)?;
            let asn: Option<u32> = r.get(4).map_err(get)?;
            let json: String = r.get(5).map_err(get)?;
            let requests: Vec<HttpRequest> = serde_json::from_str(&json).unwrap_or_default();
            let company = crate::company::attribute(Some(&endpoint), vendor.as_deref(), asn)
                .company
                .map(str::to_owned);
            for q in requests.into_iter().take(limit - out.len()) {
                out.push(CleartextRequest {
                    time,
                    app: app.clone(),
                    endpoint: endpoint.clone(),
                    company: company.clone(),
                    method: q.method,
                    host: q.host,
                    path: q.path,
                });
            }
        }
        Ok(out)
    }
}
