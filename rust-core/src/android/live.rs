//! The live view of the running capture: the flows of this session as the engine last reported
//! them, folded into the snapshot the app polls and the answers to its queries.
//!
//! It is fed by the event tee (one thread) and read by JNI calls from the UI, so it sits behind
//! one mutex that the packet loop never touches. Aggregates are computed when asked for: a
//! snapshot walks at most `MAX_FLOWS` flows, which is cheaper than keeping per-app sums right
//! through uid changes and counter updates. Flows beyond the cap are folded into per-app
//! "retired" totals, so the app rows stay exact while the oldest per-flow detail is left to the
//! SQLite store.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::flow::{Event, FlowId, FlowRecord, Millis, Proto};

use super::proto;

/// Closed flows kept with full detail. Open flows are always kept.
pub const MAX_FLOWS: usize = 20_000;
/// Flows listed in a snapshot's `recent`.
pub const RECENT_FLOWS: usize = 100;

/// What the app told us about each UID (label, packages), shared with the owner callback that
/// asks for it on the engine's helper thread.
pub type Identities = Arc<Mutex<HashMap<u32, proto::AppIdentity>>>;

/// `None` is the bucket of flows whose owner could not be found.
type AppKey = Option<u32>;

#[derive(Default, Clone)]
struct AppTotals {
    /// Contacts: connections (non-DNS flows). A DNS flow is a lookup, counted in `lookups`.
    flows: u64,
    /// DNS queries the app made.
    lookups: u64,
    xiaomi_flows: u64,
    xiaomi_hosts: BTreeSet<String>,
    bytes_up: u64,
    bytes_down: u64,
    cleartext_flows: u64,
    leak_flows: u64,
    last_seen: Millis,
    /// Contacts per company of the endpoint.
    companies: BTreeMap<&'static str, u64>,
    /// Contacts per clock hour of their start, retired flows included.
    hours: BTreeMap<Millis, u64>,
}

impl AppTotals {
    fn add(&mut self, flow: &FlowRecord) {
        self.bytes_up += flow.bytes_up;
        self.bytes_down += flow.bytes_down;
        self.last_seen = self.last_seen.max(flow.last_seen);
        if flow.is_dns_lookup() {
            return;
        }
        self.flows += 1;
        let start = flow.first_seen;
        *self
            .hours
            .entry(start - start.rem_euclid(HOUR_MS))
            .or_default() += 1;
        if is_xiaomi(flow) {
            self.xiaomi_flows += 1;
            self.xiaomi_hosts.insert(host_of(flow));
        }
        self.cleartext_flows += u64::from(flow.cleartext);
        // Identifiers only: a model name or OS version alone does not identify the phone.
        self.leak_flows += u64::from(
            flow.leaks
                .iter()
                .any(|k| !crate::dissect::leaks::is_descriptor(k)),
        );
        if let Some(c) = attribution(flow).company {
            *self.companies.entry(c).or_default() += 1;
        }
    }
}

/// Who owns the flow's endpoint, and whose network served it.
fn attribution(flow: &FlowRecord) -> crate::company::Attribution {
    let d = &flow.destination;
    crate::company::attribute(flow.hostname.as_deref(), d.vendor.as_deref(), d.asn)
}

/// The live state of one capture session.
pub struct LiveView {
    session_id: i64,
    started_ms: Millis,
    flows: HashMap<FlowId, FlowRecord>,
    /// Closed flows, oldest first: the eviction order.
    closed: VecDeque<FlowId>,
    retired: HashMap<AppKey, AppTotals>,
    /// Names the engine reported (`Event::App`) for UIDs the app did not describe.
    names: HashMap<u32, String>,
    identities: Identities,
    markers: Vec<proto::Marker>,
    dns_queries: u64,
    /// DNS queries per app (the query's owner).
    lookups: HashMap<AppKey, u64>,
    /// Xiaomi totals include retired flows.
    retired_xiaomi_flows: u64,
    retired_xiaomi_bytes: u64,
}

const HOUR_MS: Millis = 3_600_000;

/// Contacts by hour start (multiples of an hour) as the chart's series: every hour from the
/// first to the last, empty ones included, so a chart of it has an honest time axis.
pub(super) fn every_hour(hours: &BTreeMap<Millis, u64>) -> Vec<proto::HourCount> {
    let (Some(&first), Some(&last)) = (hours.keys().next(), hours.keys().next_back()) else {
        return Vec::new();
    };
    // A clock jump could spread a few flows over years: keep the axis to the last week.
    let first = first.max(last.saturating_sub(7 * 24 * HOUR_MS));
    (0..)
        .map(|i| first + i * HOUR_MS)
        .take_while(|&hour| hour <= last)
        .map(|hour| proto::HourCount {
            hour_start_ms: hour,
            contacts: hours.get(&hour).copied().unwrap_or(0),
        })
        .collect()
}

/// Contacts per company, most first (then by name).
pub(super) fn company_contacts(
    counts: impl IntoIterator<Item = (String, u64)>,
) -> Vec<proto::CompanyContacts> {
    let mut out: Vec<proto::CompanyContacts> = counts
        .into_iter()
        .map(|(company, contacts)| proto::CompanyContacts { company, contacts })
        .collect();
    out.sort_by(|a, b| b.contacts.cmp(&a.contacts).then(a.company.cmp(&b.company)));
    out
}

/// A flow is a contact with Xiaomi when the catalog named Xiaomi as the vendor of its
/// destination and it is not a DNS lookup (a lookup reached the resolver).
pub fn is_xiaomi(flow: &FlowRecord) -> bool {
    !flow.is_dns_lookup()
        && flow
            .destination
            .vendor
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("xiaomi"))
}

/// The endpoint a flow counts for: its host name, or its address when unnamed. A DNS flow
/// counts for the resolver's address, never for the name it asked about.
pub fn host_of(flow: &FlowRecord) -> String {
    match &flow.hostname {
        Some(name) if !flow.is_dns_lookup() => name.clone(),
        _ => flow.key.dst.ip().to_string(),
    }
}

impl LiveView {
    pub fn new(session_id: i64, started_ms: Millis, identities: Identities) -> LiveView {
        LiveView {
            session_id,
            started_ms,
            flows: HashMap::new(),
            closed: VecDeque::new(),
            retired: HashMap::new(),
            names: HashMap::new(),
            identities,
            markers: Vec::new(),
            dns_queries: 0,
            lookups: HashMap::new(),
            retired_xiaomi_flows: 0,
            retired_xiaomi_bytes: 0,
        }
    }

    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Flow(flow) => {
                self.flows.insert(flow.id, flow.clone());
            }
            Event::FlowClosed(flow) => {
                if self
                    .flows
                    .insert(flow.id, flow.clone())
                    .is_none_or(|old| old.close_reason.is_none())
                {
                    self.closed.push_back(flow.id);
                }
                self.evict();
            }
            Event::Dns(record) => {
                self.dns_queries += 1;
                *self.lookups.entry(record.uid).or_default() += 1;
            }
            Event::App { uid, name } => {
                self.names.insert(*uid, name.clone());
            }
        }
    }

    fn evict(&mut self) {
        while self.closed.len() > MAX_FLOWS {
            let Some(id) = self.closed.pop_front() else {
                break;
            };
            if let Some(flow) = self.flows.remove(&id) {
                if is_xiaomi(&flow) {
                    self.retired_xiaomi_flows += 1;
                    self.retired_xiaomi_bytes += flow.bytes_up + flow.bytes_down;
                }
                self.retired.entry(flow.uid).or_default().add(&flow);
            }
        }
    }

    pub fn add_marker(&mut self, id: i64, time_ms: Millis, label: &str) -> proto::Marker {
        let marker = proto::Marker {
            id,
            time_ms,
            label: label.to_string(),
        };
        self.markers.push(marker.clone());
        marker
    }

    pub fn markers(&self) -> &[proto::Marker] {
        &self.markers
    }

    fn identity(&self, uid: u32) -> proto::AppIdentity {
        let known = match self.identities.lock() {
            Ok(map) => map.get(&uid).cloned(),
            Err(poisoned) => poisoned.into_inner().get(&uid).cloned(),
        };
        known.unwrap_or_else(|| proto::AppIdentity {
            uid,
            packages: self
                .names
                .get(&uid)
                .map(|n| vec![n.clone()])
                .unwrap_or_default(),
            label: self.names.get(&uid).cloned().unwrap_or_default(),
            system: false,
        })
    }

    fn app_totals(&self) -> HashMap<AppKey, AppTotals> {
        let mut totals = self.retired.clone();
        for flow in self.flows.values() {
            totals.entry(flow.uid).or_default().add(flow);
        }
        for (key, lookups) in &self.lookups {
            totals.entry(*key).or_default().lookups = *lookups;
        }
        totals
    }

    fn app_row(&self, key: AppKey, t: &AppTotals) -> proto::AppRow {
        proto::AppRow {
            app: key.map(|uid| self.identity(uid)),
            flows: t.flows,
            lookups: t.lookups,
            xiaomi_flows: t.xiaomi_flows,
            xiaomi_hosts: u32::try_from(t.xiaomi_hosts.len()).unwrap_or(u32::MAX),
            bytes_up: t.bytes_up,
            bytes_down: t.bytes_down,
            cleartext_flows: t.cleartext_flows,
            leak_flows: t.leak_flows,
            last_seen_ms: t.last_seen,
            unattributed: key.is_none(),
            companies: t.companies.keys().map(|c| c.to_string()).collect(),
        }
    }

    /// The snapshot the app polls. `engine` carries the engine's own counters.
    pub fn snapshot(&self, running: bool, engine: &EngineCounters, error: &str) -> proto::Snapshot {
        let totals_by_app = self.app_totals();
        let mut apps: Vec<proto::AppRow> = totals_by_app
            .iter()
            .map(|(key, t)| self.app_row(*key, t))
            .collect();
        apps.sort_by(|a, b| {
            b.xiaomi_flows
                .cmp(&a.xiaomi_flows)
                .then((b.bytes_up + b.bytes_down).cmp(&(a.bytes_up + a.bytes_down)))
                .then(
                    a.app
                        .as_ref()
                        .map(|i| i.uid)
                        .cmp(&b.app.as_ref().map(|i| i.uid)),
                )
        });

        let mut recent: Vec<&FlowRecord> = self.flows.values().collect();
        recent.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(b.id.cmp(&a.id)));
        recent.truncate(RECENT_FLOWS);

        let live_xiaomi = self.flows.values().filter(|f| is_xiaomi(f));
        let (xiaomi_flows, xiaomi_bytes) = live_xiaomi.fold(
            (self.retired_xiaomi_flows, self.retired_xiaomi_bytes),
            |(n, b), f| (n + 1, b + f.bytes_up + f.bytes_down),
        );

        proto::Snapshot {
            totals: Some(proto::Totals {
                running,
                session_id: self.session_id,
                started_ms: self.started_ms,
                flows_opened: engine.flows_opened,
                flows_open: engine.flows_open,
                bytes_up: engine.bytes_up,
                bytes_down: engine.bytes_down,
                packets_dropped: engine.packets_dropped,
                xiaomi_flows,
                xiaomi_bytes,
                dns_queries: self.dns_queries,
                contacts: totals_by_app.values().map(|t| t.flows).sum(),
                error: error.to_string(),
            }),
            apps,
            recent: recent.into_iter().map(flow_row).collect(),
            markers: self.markers.clone(),
        }
    }

    /// Every destination of one app (or of the unattributed bucket), Xiaomi first.
    pub fn app_detail(&self, request: &proto::AppDetailRequest) -> proto::AppDetail {
        let key: AppKey = if request.unattributed {
            None
        } else {
            Some(request.uid)
        };
        let totals = self.app_totals();
        let app = totals.get(&key).cloned().unwrap_or_default();
        let row = self.app_row(key, &app);
        let mut endpoints: BTreeMap<String, EndpointAcc> = BTreeMap::new();
        for flow in self.flows.values().filter(|f| f.uid == key) {
            endpoints.entry(host_of(flow)).or_default().add(flow);
        }
        let mut endpoints: Vec<proto::Endpoint> = endpoints
            .into_iter()
            .map(|(host, acc)| acc.into_endpoint(host))
            .collect();
        endpoints.sort_by(|a, b| {
            let xa = a
                .destination
                .as_ref()
                .is_some_and(|d| d.vendor.eq_ignore_ascii_case("xiaomi"));
            let xb = b
                .destination
                .as_ref()
                .is_some_and(|d| d.vendor.eq_ignore_ascii_case("xiaomi"));
            xb.cmp(&xa)
                .then(b.flows.cmp(&a.flows))
                .then(a.host.cmp(&b.host))
        });
        proto::AppDetail {
            row: Some(row),
            endpoints,
            contacts_per_hour: every_hour(&app.hours),
            companies: company_contacts(app.companies.iter().map(|(c, n)| (c.to_string(), *n))),
        }
    }

    /// One host across apps.
    pub fn domain_detail(&self, request: &proto::DomainDetailRequest) -> proto::DomainDetail {
        let host = request.host.to_ascii_lowercase();
        let mut endpoint = EndpointAcc::default();
        let mut apps: BTreeMap<AppKey, proto::DomainApp> = BTreeMap::new();
        for flow in self.flows.values().filter(|f| host_of(f) == host) {
            endpoint.add(flow);
            let app = apps.entry(flow.uid).or_insert_with(|| proto::DomainApp {
                app: flow.uid.map(|uid| self.identity(uid)),
                unattributed: flow.uid.is_none(),
                ..Default::default()
            });
            app.flows += 1;
            app.bytes_up += flow.bytes_up;
            app.bytes_down += flow.bytes_down;
        }
        let mut apps: Vec<proto::DomainApp> = apps.into_values().collect();
        apps.sort_by_key(|a| std::cmp::Reverse(a.flows));
        proto::DomainDetail {
            endpoint: Some(endpoint.into_endpoint(host)),
            apps,
        }
    }

    /// Flows per host that began before the marker (since `since_marker_id`, or the session
    /// start) against those that began at or after it.
    pub fn compare(&self, request: &proto::CompareRequest) -> Result<proto::Comparison, String> {
        let find = |id: i64| self.markers.iter().find(|m| m.id == id).cloned();
        let marker =
            find(request.marker_id).ok_or_else(|| format!("no marker {}", request.marker_id))?;
        let since = if request.since_marker_id != 0 {
            find(request.since_marker_id)
                .ok_or_else(|| format!("no marker {}", request.since_marker_id))?
                .time_ms
        } else {
            self.started_ms
        };
        let mut hosts: BTreeMap<String, (proto::ComparedHost, BTreeSet<String>)> = BTreeMap::new();
        for flow in self.flows.values() {
            // Contacts before and after, as the history's comparison counts them: a lookup
            // reached the resolver, not the host it asked about.
            if flow.first_seen < since
                || flow.is_dns_lookup()
                || (request.xiaomi_only && !is_xiaomi(flow))
            {
                continue;
            }
            let (entry, apps) = hosts.entry(host_of(flow)).or_insert_with(|| {
                (
                    proto::ComparedHost {
                        host: host_of(flow),
                        destination: Some(destination(flow)),
                        ..Default::default()
                    },
                    BTreeSet::new(),
                )
            });
            let bytes = flow.bytes_up + flow.bytes_down;
            if flow.first_seen < marker.time_ms {
                entry.flows_before += 1;
                entry.bytes_before += bytes;
            } else {
                entry.flows_after += 1;
                entry.bytes_after += bytes;
                match flow.uid {
                    Some(uid) => {
                        let identity = self.identity(uid);
                        match identity.packages.first() {
                            Some(p) => apps.insert(p.clone()),
                            None => apps.insert(format!("uid {uid}")),
                        };
                    }
                    None => {
                        apps.insert("unattributed".to_string());
                    }
                }
            }
        }
        let mut hosts: Vec<proto::ComparedHost> = hosts
            .into_values()
            .map(|(mut h, apps)| {
                h.apps_after = apps.into_iter().collect();
                h
            })
            .collect();
        hosts.sort_by(|a, b| {
            b.flows_after
                .cmp(&a.flows_after)
                .then(b.flows_before.cmp(&a.flows_before))
                .then(a.host.cmp(&b.host))
        });
        Ok(proto::Comparison {
            before_ms: marker.time_ms.saturating_sub(since),
            after_ms: self.latest_seen().saturating_sub(marker.time_ms).max(0),
            marker: Some(marker),
            hosts,
        })
    }

    fn latest_seen(&self) -> Millis {
        self.flows
            .values()
            .map(|f| f.last_seen)
            .max()
            .unwrap_or(self.started_ms)
    }
}

/// The engine's counters, copied into the snapshot's totals.
#[derive(Clone, Debug, Default)]
pub struct EngineCounters {
    pub flows_opened: u64,
    pub flows_open: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub packets_dropped: u64,
}

#[derive(Default)]
struct EndpointAcc {
    hostname_source: String,
    destination: Option<proto::Destination>,
    flows: u64,
    bytes_up: u64,
    bytes_down: u64,
    first_seen: Option<Millis>,
    last_seen: Millis,
    cleartext_flows: u64,
    leaks: BTreeSet<String>,
    descriptors: BTreeSet<String>,
    http_requests: Vec<String>,
    ports: BTreeSet<u32>,
    addresses: BTreeSet<String>,
}

impl EndpointAcc {
    fn add(&mut self, flow: &FlowRecord) {
        if self.hostname_source.is_empty() {
            self.hostname_source = flow
                .hostname_source
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
        }
        if self.destination.is_none() {
            self.destination = Some(destination(flow));
        }
        self.flows += u64::from(!flow.is_dns_lookup());
        self.bytes_up += flow.bytes_up;
        self.bytes_down += flow.bytes_down;
        self.first_seen = Some(
            self.first_seen
                .map_or(flow.first_seen, |t| t.min(flow.first_seen)),
        );
        self.last_seen = self.last_seen.max(flow.last_seen);
        self.cleartext_flows += u64::from(flow.cleartext);
        for kind in &flow.leaks {
            if crate::dissect::leaks::is_descriptor(kind) {
                self.descriptors.insert(kind.clone());
            } else {
                self.leaks.insert(kind.clone());
            }
        }
        for r in &flow.app_info.http_requests {
            if self.http_requests.len() >= crate::flow::MAX_HTTP_REQUESTS {
                break;
            }
            let host = r.host.as_deref().unwrap_or("-");
            self.http_requests
                .push(format!("{} {host} {}", r.method, r.path));
        }
        self.ports.insert(u32::from(flow.key.dst.port()));
        self.addresses.insert(flow.key.dst.ip().to_string());
    }

    fn into_endpoint(self, host: String) -> proto::Endpoint {
        proto::Endpoint {
            host,
            hostname_source: self.hostname_source,
            destination: self.destination,
            flows: self.flows,
            bytes_up: self.bytes_up,
            bytes_down: self.bytes_down,
            first_seen_ms: self.first_seen.unwrap_or_default(),
            last_seen_ms: self.last_seen,
            cleartext_flows: self.cleartext_flows,
            leaks: self.leaks.into_iter().collect(),
            ports: self.ports.into_iter().collect(),
            addresses: self.addresses.into_iter().collect(),
            descriptors: self.descriptors.into_iter().collect(),
            http_requests: self.http_requests,
        }
    }
}

pub fn destination(flow: &FlowRecord) -> proto::Destination {
    let d = &flow.destination;
    let who = attribution(flow);
    proto::Destination {
        vendor: d.vendor.clone().unwrap_or_default(),
        category: d.category.clone().unwrap_or_default(),
        category_guessed: d.category_guessed,
        purpose: d.purpose.clone().unwrap_or_default(),
        country: d.country.clone().unwrap_or_default(),
        asn: d.asn.unwrap_or_default(),
        as_name: d.as_name.clone().unwrap_or_default(),
        company: who.company.unwrap_or_default().to_string(),
        provider: who.provider.unwrap_or_default().to_string(),
    }
}

pub fn proto_kind(p: Proto) -> proto::Proto {
    match p {
        Proto::Tcp => proto::Proto::Tcp,
        Proto::Udp => proto::Proto::Udp,
        Proto::Icmp => proto::Proto::Icmp,
    }
}

pub fn flow_row(flow: &FlowRecord) -> proto::FlowRow {
    proto::FlowRow {
        id: flow.id,
        uid: flow.uid.unwrap_or_default(),
        has_uid: flow.uid.is_some(),
        proto: proto_kind(flow.key.proto) as i32,
        src: flow.key.src.to_string(),
        dst: flow.key.dst.to_string(),
        hostname: flow.hostname.clone().unwrap_or_default(),
        hostname_source: flow
            .hostname_source
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        destination: Some(destination(flow)),
        bytes_up: flow.bytes_up,
        bytes_down: flow.bytes_down,
        first_seen_ms: flow.first_seen,
        last_seen_ms: flow.last_seen,
        closed: flow.close_reason.is_some(),
        cleartext: flow.cleartext,
        // Identifiers only, as in the store; descriptors are in the endpoint detail.
        leaks: flow
            .leaks
            .iter()
            .filter(|k| !crate::dissect::leaks::is_descriptor(k))
            .cloned()
            .collect(),
        l7: flow.app_info.l7.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{CloseReason, FlowKey, NameSource};

    fn flow(id: u64, uid: Option<u32>, host: &str, xiaomi: bool, first_seen: Millis) -> FlowRecord {
        let key = FlowKey {
            proto: Proto::Tcp,
            src: "198.18.0.2:40000".parse().unwrap(),
            dst: format!("198.18.1.{}:443", id % 200 + 1).parse().unwrap(),
        };
        let mut f = FlowRecord::new(id, key, first_seen);
        f.uid = uid;
        f.offer_name(host, NameSource::Sni);
        f.bytes_up = 100;
        f.bytes_down = 1000;
        if xiaomi {
            f.destination.vendor = Some("Xiaomi".into());
            f.destination.category = Some("analytics/telemetry".into());
        }
        f
    }

    /// A lookup of `host` by `uid`: a DNS flow to the resolver 10.0.0.1.
    fn dns_lookup(id: u64, uid: u32, host: &str, first_seen: Millis) -> FlowRecord {
        let key = FlowKey {
            proto: Proto::Udp,
            src: format!("10.0.0.2:{}", 40_000 + id % 20_000)
                .parse()
                .unwrap(),
            dst: "10.0.0.1:53".parse().unwrap(),
        };
        let mut dns = FlowRecord::new(id, key, first_seen);
        dns.uid = Some(uid);
        dns.offer_name(host, NameSource::DnsQuery);
        dns.app_info.l7 = Some("dns".into());
        dns
    }

    fn view() -> LiveView {
        LiveView::new(7, 1_000, Arc::new(Mutex::new(HashMap::new())))
    }

    #[test]
    fn apps_sort_by_xiaomi_contacts_and_count_distinct_hosts() {
        let mut v = view();
        v.apply(&Event::Flow(flow(
            1,
            Some(10100),
            "example.org",
            false,
            1_000,
        )));
        v.apply(&Event::Flow(flow(
            2,
            Some(1000),
            "data.mistat.intl.xiaomi.com",
            true,
            1_100,
        )));
        v.apply(&Event::Flow(flow(
            3,
            Some(1000),
            "data.mistat.intl.xiaomi.com",
            true,
            1_200,
        )));
        v.apply(&Event::Flow(flow(
            4,
            Some(1000),
            "tracking.intl.miui.com",
            true,
            1_300,
        )));
        v.apply(&Event::Flow(flow(5, None, "unknown.example", false, 1_300)));
        let snap = v.snapshot(true, &EngineCounters::default(), "");
        assert_eq!(snap.apps.len(), 3);
        assert_eq!(snap.apps[0].app.as_ref().unwrap().uid, 1000);
        assert_eq!(snap.apps[0].xiaomi_flows, 3);
        assert_eq!(snap.apps[0].xiaomi_hosts, 2);
        assert_eq!(snap.totals.as_ref().unwrap().xiaomi_flows, 3);
        assert_eq!(snap.totals.as_ref().unwrap().xiaomi_bytes, 3 * 1100);
        assert!(snap.apps.iter().any(|a| a.unattributed && a.app.is_none()));
        assert_eq!(snap.recent.len(), 5);
    }

    /// Three beacons to a Xiaomi host, each after an A and an AAAA lookup of its name (DNS
    /// flows to the resolver): three contacts, six lookups, in the app row and its detail.
    #[test]
    fn dns_flows_are_lookups_not_contacts() {
        let mut v = view();
        let host = "sa.api.intl.miui.com";
        for i in 0..3u64 {
            let t = 1_000 + i as i64 * 100;
            v.apply(&Event::Flow(flow(i, Some(10123), host, true, t)));
            for k in 0..2u64 {
                let dns = dns_lookup(100 + i * 2 + k, 10123, host, t);
                let key = dns.key;
                v.apply(&Event::Flow(dns));
                v.apply(&Event::Dns(crate::flow::DnsRecord {
                    time: t,
                    uid: Some(10123),
                    flow_id: Some(100 + i * 2 + k),
                    client: key.src,
                    server: key.dst,
                    transport: Proto::Udp,
                    query: host.into(),
                    qtype: if k == 0 { 1 } else { 28 },
                    rcode: Some(0),
                    answers: Vec::new(),
                    answer_ips: Vec::new(),
                    ttl: None,
                    ech_configs: Vec::new(),
                }));
            }
        }
        let snap = v.snapshot(true, &EngineCounters::default(), "");
        let row = &snap.apps[0];
        assert_eq!((row.flows, row.lookups, row.xiaomi_flows), (3, 6, 3));
        assert_eq!(row.xiaomi_hosts, 1);
        let totals = snap.totals.as_ref().unwrap();
        assert_eq!(
            (totals.xiaomi_flows, totals.contacts, totals.dns_queries),
            (3, 3, 6)
        );
        let detail = v.app_detail(&proto::AppDetailRequest {
            uid: 10123,
            unattributed: false,
        });
        let beacon = detail.endpoints.iter().find(|e| e.host == host).unwrap();
        assert_eq!(beacon.flows, 3);
        let resolver = detail
            .endpoints
            .iter()
            .find(|e| e.host == "10.0.0.1")
            .unwrap();
        assert_eq!(
            resolver.flows, 0,
            "lookups are not contacts with the resolver either"
        );
    }

    #[test]
    fn updates_replace_counters_instead_of_adding() {
        let mut v = view();
        let mut f = flow(1, Some(10100), "example.org", false, 1_000);
        v.apply(&Event::Flow(f.clone()));
        f.bytes_down = 5000;
        v.apply(&Event::Flow(f.clone()));
        f.close_reason = Some(CloseReason::Fin);
        v.apply(&Event::FlowClosed(f.clone()));
        v.apply(&Event::FlowClosed(f));
        let snap = v.snapshot(false, &EngineCounters::default(), "");
        assert_eq!(snap.apps[0].flows, 1);
        assert_eq!(snap.apps[0].bytes_down, 5000);
        assert!(snap.recent[0].closed);
        assert_eq!(v.closed.len(), 1);
    }

    #[test]
    fn evicted_flows_stay_in_app_totals() {
        let mut v = view();
        for id in 0..(MAX_FLOWS as u64 + 50) {
            let mut f = flow(id, Some(1000), "data.mistat.intl.xiaomi.com", true, 1_000);
            f.close_reason = Some(CloseReason::Fin);
            v.apply(&Event::FlowClosed(f));
        }
        assert_eq!(v.flows.len(), MAX_FLOWS);
        let snap = v.snapshot(false, &EngineCounters::default(), "");
        assert_eq!(snap.apps[0].flows, MAX_FLOWS as u64 + 50);
        assert_eq!(snap.apps[0].xiaomi_hosts, 1);
        assert_eq!(snap.totals.unwrap().xiaomi_flows, MAX_FLOWS as u64 + 50);
        // The detail's hours and companies count the evicted contacts too, as the row does.
        let detail = v.app_detail(&proto::AppDetailRequest {
            uid: 1000,
            unattributed: false,
        });
        let per_hour: u64 = detail.contacts_per_hour.iter().map(|h| h.contacts).sum();
        assert_eq!(per_hour, MAX_FLOWS as u64 + 50);
        assert_eq!(detail.companies[0].contacts, MAX_FLOWS as u64 + 50);
    }

    #[test]
    fn contacts_per_hour_has_every_hour_and_only_this_apps_flows() {
        let mut v = view();
        let hour = 3_600_000;
        for (id, uid, start) in [
            (1, Some(1000), 10 * hour + 5),
            (2, Some(1000), 10 * hour + hour - 1),
            (3, Some(1000), 12 * hour),
            (4, Some(2000), 11 * hour),
        ] {
            v.apply(&Event::Flow(flow(id, uid, "example.org", false, start)));
        }
        let detail = v.app_detail(&proto::AppDetailRequest {
            uid: 1000,
            unattributed: false,
        });
        let hours: Vec<(i64, u64)> = detail
            .contacts_per_hour
            .iter()
            .map(|h| (h.hour_start_ms, h.contacts))
            .collect();
        assert_eq!(hours, vec![(10 * hour, 2), (11 * hour, 0), (12 * hour, 1)]);
        let total: u64 = hours.iter().map(|h| h.1).sum();
        assert_eq!(total, detail.row.unwrap().flows);
    }

    #[test]
    fn app_detail_groups_by_host_with_xiaomi_first() {
        let mut v = view();
        v.apply(&Event::Flow(flow(
            1,
            Some(1000),
            "example.org",
            false,
            1_000,
        )));
        v.apply(&Event::Flow(flow(
            2,
            Some(1000),
            "example.org",
            false,
            1_000,
        )));
        let mut cleartext = flow(3, Some(1000), "api.ad.intl.xiaomi.com", true, 2_000);
        cleartext.cleartext = true;
        cleartext.leaks = vec!["android-id".into()];
        v.apply(&Event::Flow(cleartext));
        let detail = v.app_detail(&proto::AppDetailRequest {
            uid: 1000,
            unattributed: false,
        });
        assert_eq!(detail.endpoints.len(), 2);
        let first = &detail.endpoints[0];
        assert_eq!(first.host, "api.ad.intl.xiaomi.com");
        assert_eq!(first.cleartext_flows, 1);
        assert_eq!(first.leaks, vec!["android-id".to_string()]);
        assert_eq!(first.hostname_source, "sni");
        assert_eq!(detail.endpoints[1].flows, 2);
        assert_eq!(detail.row.unwrap().flows, 3);
    }

    #[test]
    fn companies_requests_and_descriptors_reach_the_app() {
        let mut v = view();
        // www.mi.com served from Akamai's network (AS20940): company Xiaomi, provider Akamai.
        let mut mi = flow(1, Some(1000), "www.mi.com", true, 1_000);
        mi.destination.asn = Some(20940);
        mi.cleartext = true;
        mi.leaks = vec!["gaid".into(), "model".into()];
        mi.app_info.http_requests = vec![crate::flow::HttpRequest {
            method: "GET".into(),
            host: Some("www.mi.com".into()),
            path: "/c?gaid=<advertising-id>".into(),
        }];
        v.apply(&Event::Flow(mi));
        v.apply(&Event::Flow(flow(
            2,
            Some(1000),
            "graph.facebook.com",
            false,
            1_000,
        )));
        let mut only_model = flow(3, Some(1000), "example.org", false, 1_000);
        only_model.leaks = vec!["model".into()];
        v.apply(&Event::Flow(only_model));
        let snap = v.snapshot(true, &EngineCounters::default(), "");
        let row = snap.apps.iter().find(|a| !a.unattributed).unwrap();
        assert_eq!(
            row.companies,
            vec!["Meta".to_string(), "Xiaomi".to_string()]
        );
        // A second contact with Xiaomi, and a lookup of a Meta name: a lookup is no contact.
        v.apply(&Event::Flow(flow(4, Some(1000), "www.mi.com", true, 2_000)));
        let mut lookup = flow(5, Some(1000), "graph.facebook.com", false, 2_000);
        lookup.app_info.l7 = Some("dns".into());
        assert!(lookup.is_dns_lookup());
        v.apply(&Event::Flow(lookup));
        let companies: Vec<(String, u64)> = v
            .app_detail(&proto::AppDetailRequest {
                uid: 1000,
                unattributed: false,
            })
            .companies
            .into_iter()
            .map(|c| (c.company, c.contacts))
            .collect();
        assert_eq!(
            companies,
            vec![("Xiaomi".to_string(), 2), ("Meta".to_string(), 1)]
        );
        // The model alone is a descriptor: one leaking flow, not two.
        assert_eq!(row.leak_flows, 1);
        let recent = snap.recent.iter().find(|f| f.id == 1).unwrap();
        let d = recent.destination.as_ref().unwrap();
        assert_eq!(
            (d.company.as_str(), d.provider.as_str()),
            ("Xiaomi", "Akamai")
        );
        assert_eq!(recent.leaks, vec!["gaid".to_string()]);
        let detail = v.app_detail(&proto::AppDetailRequest {
            uid: 1000,
            unattributed: false,
        });
        let e = detail
            .endpoints
            .iter()
            .find(|e| e.host == "www.mi.com")
            .unwrap();
        assert_eq!(e.leaks, vec!["gaid".to_string()]);
        assert_eq!(e.descriptors, vec!["model".to_string()]);
        assert_eq!(
            e.http_requests,
            vec!["GET www.mi.com /c?gaid=<advertising-id>".to_string()]
        );
    }

    /// The experiment's before/after counts contacts, as its lines say and as the history's
    /// comparison does: lookups before and after the marker add no resolver host.
    #[test]
    fn compare_counts_contacts_not_lookups() {
        let mut v = view();
        v.apply(&Event::Flow(dns_lookup(1, 10100, "example.org", 2_000)));
        v.apply(&Event::Flow(flow(
            2,
            Some(10100),
            "example.org",
            false,
            2_100,
        )));
        let m = v.add_marker(1, 3_000, "ads off");
        v.apply(&Event::Flow(dns_lookup(3, 10100, "example.org", 4_000)));
        let cmp = v
            .compare(&proto::CompareRequest {
                marker_id: m.id,
                since_marker_id: 0,
                xiaomi_only: false,
            })
            .unwrap();
        let hosts: Vec<_> = cmp
            .hosts
            .iter()
            .map(|h| (h.host.as_str(), h.flows_before, h.flows_after))
            .collect();
        assert_eq!(hosts, vec![("example.org", 1, 0)]);
    }

    #[test]
    fn compare_splits_flows_at_the_marker() {
        let mut v = view();
        v.apply(&Event::Flow(flow(
            1,
            Some(1000),
            "data.mistat.intl.xiaomi.com",
            true,
            2_000,
        )));
        v.apply(&Event::Flow(flow(
            2,
            Some(1000),
            "api.ad.intl.xiaomi.com",
            true,
            2_500,
        )));
        let m = v.add_marker(1, 3_000, "UX program off");
        v.apply(&Event::Flow(flow(
            3,
            Some(1000),
            "data.mistat.intl.xiaomi.com",
            true,
            4_000,
        )));
        v.apply(&Event::Flow(flow(
            4,
            Some(10100),
            "example.org",
            false,
            4_000,
        )));
        let cmp = v
            .compare(&proto::CompareRequest {
                marker_id: m.id,
                since_marker_id: 0,
                xiaomi_only: true,
            })
            .unwrap();
        assert_eq!(cmp.hosts.len(), 2);
        assert_eq!(cmp.hosts[0].host, "data.mistat.intl.xiaomi.com");
        assert_eq!(
            (cmp.hosts[0].flows_before, cmp.hosts[0].flows_after),
            (1, 1)
        );
        assert_eq!(cmp.hosts[0].apps_after, vec!["uid 1000".to_string()]);
        assert_eq!(
            (cmp.hosts[1].flows_before, cmp.hosts[1].flows_after),
            (1, 0)
        );
        assert_eq!(cmp.before_ms, 2_000);
        assert!(
            v.compare(&proto::CompareRequest {
                marker_id: 99,
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn identities_from_the_app_name_rows() {
        let ids: Identities = Arc::new(Mutex::new(HashMap::new()));
        let mut v = LiveView::new(1, 0, ids.clone());
        ids.lock().unwrap().insert(
            1000,
            proto::AppIdentity {
                uid: 1000,
                packages: vec!["android".into(), "com.miui.analytics".into()],
                label: "Android System".into(),
                system: true,
            },
        );
        v.apply(&Event::App {
            uid: 10200,
            name: "com.example".into(),
        });
        v.apply(&Event::Flow(flow(1, Some(1000), "x.example", false, 0)));
        v.apply(&Event::Flow(flow(2, Some(10200), "y.example", false, 0)));
        let snap = v.snapshot(true, &EngineCounters::default(), "");
        let by_uid = |uid| {
            snap.apps
                .iter()
                .find(|a| a.app.as_ref().unwrap().uid == uid)
                .unwrap()
                .app
                .clone()
                .unwrap()
        };
        assert_eq!(by_uid(1000).packages.len(), 2);
        assert_eq!(by_uid(10200).label, "com.example");
    }
}
