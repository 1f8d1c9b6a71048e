//! The screens without a capture in this process (the app was restarted, the phone rebooted):
//! the same `Snapshot` and query answers, read from the SQLite history instead of the live view.
//! The latest session is shown; comparisons use the store's before/after of a marker.

use std::collections::BTreeMap;
use std::path::Path;

use crate::flow::Millis;
use crate::store::{AppSummary, DomainSummary, Reader, Window, WindowSpec};

use super::proto;
use super::session::CoreError;

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn is_xiaomi(vendor: Option<&str>) -> bool {
    vendor.is_some_and(|v| v.eq_ignore_ascii_case("xiaomi"))
}

/// The store names an app by its packages joined with ",", as the owner callback reported them.
fn identity(summary: &AppSummary) -> Option<proto::AppIdentity> {
    let uid = summary.uid?;
    let packages: Vec<String> = summary
        .app
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    Some(proto::AppIdentity {
        uid,
        label: packages.first().cloned().unwrap_or_default(),
        packages,
        system: false,
    })
}

fn app_row(summary: &AppSummary) -> proto::AppRow {
    proto::AppRow {
        app: identity(summary),
        flows: count(summary.contacts),
        xiaomi_flows: count(summary.xiaomi_contacts),
        xiaomi_hosts: u32::try_from(summary.xiaomi_endpoints).unwrap_or(0),
        bytes_up: count(summary.bytes_up),
        bytes_down: count(summary.bytes_down),
        cleartext_flows: count(summary.cleartext_flows),
        leak_flows: count(summary.leak_flows),
        last_seen_ms: summary.last_contact,
        unattributed: summary.uid.is_none(),
        lookups: count(summary.lookups),
        // Companies per app are in the live view; the history summary does not group by them.
        companies: Vec::new(),
    }
}

fn endpoint(d: &DomainSummary) -> proto::Endpoint {
    proto::Endpoint {
        host: d.domain.clone(),
        hostname_source: String::new(),
        destination: Some(proto::Destination {
            vendor: d.vendor.clone().unwrap_or_default(),
            category: d.category.clone().unwrap_or_default(),
            category_guessed: d.category_guessed,
            purpose: d.purpose.clone().unwrap_or_default(),
            country: d.countries.join(","),
            asn: 0,
            as_name: String::new(),
            company: crate::company::attribute(Some(&d.domain), d.vendor.as_deref(), None)
                .company
                .unwrap_or_default()
                .to_string(),
            provider: String::new(),
        }),
        flows: count(d.contacts),
        bytes_up: count(d.bytes_up),
        bytes_down: count(d.bytes_down),
        first_seen_ms: d.first_contact,
        last_seen_ms: d.last_contact,
        cleartext_flows: count(d.cleartext_flows),
        leaks: Vec::new(),
        ports: Vec::new(),
        addresses: Vec::new(),
        descriptors: Vec::new(),
        http_requests: Vec::new(),
    }
}

/// Contacts per company of the endpoints listed (as their company column names them), so the
/// screen's company lines add up with its endpoint list.
fn companies(endpoints: &[proto::Endpoint]) -> Vec<proto::CompanyContacts> {
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for e in endpoints {
        if let Some(d) = e.destination.as_ref().filter(|d| !d.company.is_empty()) {
            *by.entry(d.company.clone()).or_default() += e.flows;
        }
    }
    super::live::company_contacts(by)
}

fn marker(m: &crate::store::Marker) -> proto::Marker {
    proto::Marker {
        id: m.id,
        time_ms: m.time,
        label: m.label.clone(),
    }
}

/// The latest session's window, or None for an empty database.
fn latest(reader: &Reader) -> Result<Option<(i64, Millis)>, CoreError> {
    Ok(reader.sessions()?.last().map(|s| (s.id, s.started)))
}

/// The latest session as a (stopped) snapshot; an empty snapshot when there is no history.
pub fn snapshot(db: &Path) -> Result<proto::Snapshot, CoreError> {
    if !db.exists() {
        return Ok(proto::Snapshot::default());
    }
    let reader = Reader::open_read_only(db)?;
    let Some((session, started)) = latest(&reader)? else {
        return Ok(proto::Snapshot::default());
    };
    let window = Window::session(session);
    let totals = reader.totals(&window)?;
    let mut apps: Vec<proto::AppRow> = reader.per_app(&window)?.iter().map(app_row).collect();
    apps.sort_by(|a, b| {
        b.xiaomi_flows
            .cmp(&a.xiaomi_flows)
            .then((b.bytes_up + b.bytes_down).cmp(&(a.bytes_up + a.bytes_down)))
    });
    Ok(proto::Snapshot {
        totals: Some(proto::Totals {
            running: false,
            session_id: session,
            started_ms: started,
            flows_opened: count(totals.contacts + totals.dns_flows),
            flows_open: 0,
            bytes_up: count(totals.bytes_up),
            bytes_down: count(totals.bytes_down),
            packets_dropped: 0,
            xiaomi_flows: count(totals.xiaomi_contacts),
            xiaomi_bytes: 0,
            dns_queries: count(totals.lookups),
            error: String::new(),
            contacts: count(totals.contacts),
        }),
        apps,
        recent: Vec::new(),
        markers: reader.markers(Some(session))?.iter().map(marker).collect(),
    })
}

/// Answers a query from the latest session in the database.
pub fn answer(db: &Path, request: &proto::QueryRequest) -> Result<proto::QueryResponse, CoreError> {
    use proto::query_request::Kind as Req;
    use proto::query_response::Kind as Resp;
    if !db.exists() {
        return Err(CoreError::new(
            "not-running",
            "no capture has been recorded yet",
        ));
    }
    let reader = Reader::open_read_only(db)?;
    let Some((session, _)) = latest(&reader)? else {
        return Err(CoreError::new(
            "not-running",
            "no capture has been recorded yet",
        ));
    };
    let window = Window::session(session);
    let kind = match &request.kind {
        Some(Req::AppDetail(r)) => {
            let wanted = (!r.unattributed).then_some(r.uid);
            let summary = reader
                .per_app(&window)?
                .into_iter()
                .find(|a| a.uid == wanted)
                .unwrap_or_default();
            let mut endpoints: Vec<proto::Endpoint> = if summary.app.is_empty() {
                Vec::new()
            } else {
                reader
                    .app_domains(&window, &summary.app, None)?
                    .iter()
                    .map(endpoint)
                    .collect()
            };
            endpoints.sort_by_key(|e| {
                !e.destination
                    .as_ref()
                    .is_some_and(|d| is_xiaomi(Some(&d.vendor)))
            });
            let hours: BTreeMap<Millis, u64> = if summary.app.is_empty() {
                BTreeMap::new()
            } else {
                reader
                    .app_contacts_per_hour(&window, &summary.app)?
                    .into_iter()
                    .map(|(hour, contacts)| (hour, count(contacts)))
                    .collect()
            };
            let companies = companies(&endpoints);
            let mut row = app_row(&summary);
            row.unattributed = wanted.is_none();
            row.companies = companies.iter().map(|c| c.company.clone()).collect();
            Resp::AppDetail(proto::AppDetail {
                row: Some(row),
                endpoints,
                contacts_per_hour: super::live::every_hour(&hours),
                companies,
            })
        }
        Some(Req::DomainDetail(r)) => {
            let host = r.host.to_ascii_lowercase();
            let found = reader
                .per_domain(&window, None)?
                .into_iter()
                .find(|d| d.domain == host);
            Resp::DomainDetail(proto::DomainDetail {
                endpoint: found.as_ref().map(endpoint),
                apps: found
                    .map(|d| d.apps)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|name| proto::DomainApp {
                        app: Some(proto::AppIdentity {
                            label: name.clone(),
                            packages: vec![name],
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
            })
        }
        Some(Req::Compare(r)) => {
            let before = match r.since_marker_id {
                0 => WindowSpec::Before {
                    marker: r.marker_id,
                },
                since => WindowSpec::Span {
                    from_marker: since,
                    to_marker: r.marker_id,
                },
            };
            let c = reader.compare_specs(
                &before,
                &WindowSpec::After {
                    marker: r.marker_id,
                },
            )?;
            let m = reader
                .marker(r.marker_id)?
                .ok_or_else(|| CoreError::bad_request(format!("no marker {}", r.marker_id)))?;
            let hosts = c
                .endpoints
                .iter()
                .filter(|e| !r.xiaomi_only || is_xiaomi(e.vendor.as_deref()))
                .map(|e| proto::ComparedHost {
                    host: e.endpoint.clone(),
                    destination: Some(proto::Destination {
                        vendor: e.vendor.clone().unwrap_or_default(),
                        category: e.category.clone().unwrap_or_default(),
                        purpose: e.purpose.clone().unwrap_or_default(),
                        ..Default::default()
                    }),
                    flows_before: count(e.before.contacts),
                    flows_after: count(e.after.contacts),
                    bytes_before: count(e.before.bytes_up + e.before.bytes_down),
                    bytes_after: count(e.after.bytes_up + e.after.bytes_down),
                    apps_after: e.apps_after.clone(),
                })
                .collect();
            let span = |s: Option<Millis>, e: Option<Millis>| match (s, e) {
                (Some(s), Some(e)) => e.saturating_sub(s),
                _ => 0,
            };
            Resp::Comparison(proto::Comparison {
                marker: Some(marker(&m)),
                before_ms: span(c.before.start, c.before.end),
                after_ms: span(c.after.start, c.after.end),
                hosts,
            })
        }
        None => Resp::Error(CoreError::bad_request("query request names no query").to_proto()),
    };
    Ok(proto::QueryResponse { kind: Some(kind) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Event, FlowKey, FlowRecord, NameSource, Proto};

    fn flow(id: u64, uid: u32, host: &str, xiaomi: bool, at: Millis) -> FlowRecord {
        let key = FlowKey {
            proto: Proto::Tcp,
            src: "198.18.0.1:40000".parse().unwrap(),
            dst: "198.19.0.1:443".parse().unwrap(),
        };
        let mut f = FlowRecord::new(id, key, at);
        f.uid = Some(uid);
        f.offer_name(host, NameSource::Sni);
        f.bytes_down = 1000;
        if xiaomi {
            f.destination.vendor = Some("Xiaomi".into());
            f.destination.category = Some("analytics/telemetry".into());
        }
        f
    }

    #[test]
    fn app_detail_from_history_has_companies_and_contacts_per_hour() {
        let dir = std::env::temp_dir().join(format!("ph-history-hours-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("h.db");
        let _ = std::fs::remove_file(&db);
        let writer = crate::android::android_store(&db);
        let hour = 3_600_000;
        let now = crate::android::session::now_ms();
        let h = now - now.rem_euclid(hour) - 3 * hour;
        let tx = writer.sender();
        tx.send(Event::App {
            uid: 1000,
            name: "com.miui.weather2".into(),
        })
        .unwrap();
        let xiaomi = "data.mistat.intl.xiaomi.com";
        let mut lookup = flow(5, 1000, "graph.facebook.com", false, h + hour + 10);
        lookup.app_info.l7 = Some("dns".into());
        for f in [
            flow(1, 1000, xiaomi, true, h + 10),
            flow(2, 1000, xiaomi, true, h + hour - 1),
            flow(3, 1000, "graph.facebook.com", false, h + 20),
            flow(4, 1000, xiaomi, true, h + 2 * hour),
            // A lookup is no contact; another app's contact is not this app's.
            lookup,
            flow(6, 10100, "graph.facebook.com", false, h + hour + 20),
        ] {
            tx.send(Event::FlowClosed(f)).unwrap();
        }
        drop(tx);
        writer.finish().unwrap();

        let request = proto::QueryRequest {
            kind: Some(proto::query_request::Kind::AppDetail(
                proto::AppDetailRequest {
                    uid: 1000,
                    unattributed: false,
                },
            )),
        };
        let Some(proto::query_response::Kind::AppDetail(d)) = answer(&db, &request).unwrap().kind
        else {
            panic!()
        };
        let hours: Vec<(i64, u64)> = d
            .contacts_per_hour
            .iter()
            .map(|c| (c.hour_start_ms, c.contacts))
            .collect();
        assert_eq!(hours, vec![(h, 3), (h + hour, 0), (h + 2 * hour, 1)]);
        assert_eq!(
            hours.iter().map(|c| c.1).sum::<u64>(),
            d.row.as_ref().unwrap().flows,
            "the hours add up to the app's contacts"
        );
        let companies: Vec<(String, u64)> = d
            .companies
            .iter()
            .map(|c| (c.company.clone(), c.contacts))
            .collect();
        assert_eq!(
            companies,
            vec![("Xiaomi".to_string(), 3), ("Meta".to_string(), 1)]
        );
        assert_eq!(d.row.unwrap().companies, vec!["Xiaomi", "Meta"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_latest_session_reads_back_as_snapshot_detail_and_comparison() {
        let dir = std::env::temp_dir().join(format!("ph-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("h.db");
        assert_eq!(
            snapshot(&db).unwrap(),
            proto::Snapshot::default(),
            "no database yet: empty"
        );

        let writer = crate::android::android_store(&db);
        let session = writer.session_id();
        let now = crate::android::session::now_ms();
        let tx = writer.sender();
        tx.send(Event::App {
            uid: 1000,
            name: "android,com.miui.analytics".into(),
        })
        .unwrap();
        tx.send(Event::FlowClosed(flow(
            1,
            1000,
            "data.mistat.intl.xiaomi.com",
            true,
            now - 5000,
        )))
        .unwrap();
        tx.send(Event::FlowClosed(flow(
            2,
            10100,
            "example.org",
            false,
            now - 5000,
        )))
        .unwrap();
        let m = Reader::open(&db)
            .unwrap()
            .add_marker_at(session, now - 3000, "UX program off")
            .unwrap();
        tx.send(Event::FlowClosed(flow(
            3,
            1000,
            "data.mistat.intl.xiaomi.com",
            true,
            now - 1000,
        )))
        .unwrap();
        drop(tx);
        writer.finish().unwrap();

        let snap = snapshot(&db).unwrap();
        let totals = snap.totals.clone().unwrap();
        assert!(!totals.running);
        assert_eq!(
            (totals.session_id, totals.flows_opened, totals.xiaomi_flows),
            (session, 3, 2)
        );
        let first = &snap.apps[0];
        assert_eq!(
            first.app.as_ref().unwrap().packages,
            vec!["android".to_string(), "com.miui.analytics".to_string()]
        );
        assert_eq!((first.xiaomi_flows, first.xiaomi_hosts), (2, 1));
        assert_eq!(snap.markers[0].label, "UX program off");

        let detail = |uid| proto::QueryRequest {
            kind: Some(proto::query_request::Kind::AppDetail(
                proto::AppDetailRequest {
                    uid,
                    unattributed: false,
                },
            )),
        };
        let Some(proto::query_response::Kind::AppDetail(d)) =
            answer(&db, &detail(1000)).unwrap().kind
        else {
            panic!()
        };
        assert_eq!(d.endpoints.len(), 1);
        assert_eq!(d.endpoints[0].host, "data.mistat.intl.xiaomi.com");
        assert_eq!(d.endpoints[0].flows, 2);

        let compare = proto::QueryRequest {
            kind: Some(proto::query_request::Kind::Compare(proto::CompareRequest {
                marker_id: m.id,
                since_marker_id: 0,
                xiaomi_only: true,
            })),
        };
        let Some(proto::query_response::Kind::Comparison(c)) = answer(&db, &compare).unwrap().kind
        else {
            panic!()
        };
        assert_eq!(c.hosts.len(), 1);
        assert_eq!((c.hosts[0].flows_before, c.hosts[0].flows_after), (1, 1));
        assert_eq!(c.marker.unwrap().id, m.id);

        // A live view of a later session does not know the marker: the database answers.
        let live = crate::android::live::LiveView::new(session + 1, now, Default::default());
        let response = crate::android::session::answer_or_history(&live, Some(&db), &compare);
        let Some(proto::query_response::Kind::Comparison(c)) = response.kind else {
            panic!("{response:?}")
        };
        assert_eq!(c.hosts[0].host, "data.mistat.intl.xiaomi.com");
        let response = crate::android::session::answer_or_history(&live, None, &compare);
        assert!(matches!(
            response.kind,
            Some(proto::query_response::Kind::Error(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
