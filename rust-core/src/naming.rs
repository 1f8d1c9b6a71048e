//! Naming and classification shared by the live engine and the pcap observer: the TTL-aware
//! IP -> names cache fed by DNS answers, the choice of a flow's hostname, and the hook to the
//! Xiaomi catalog and country/ASN classification.
//!
//! Trust order (DESIGN.md 3): a name seen in the flow (SNI, QUIC SNI, HTTP Host) beats a DNS
//! flow's own question, which beats the DNS answer that produced the destination address.
//! [`FlowRecord::offer_name`] enforces it; this module only offers.
//!
//! The same answers tell real Encrypted Client Hello from GREASE: a client can only encrypt its
//! hello with an ECHConfig it was given (an HTTPS/SVCB record's `ech`), so an outer ECH extension
//! whose config_id no such answer gave the destination is GREASE, and its SNI is the real name.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::dissect::dns::EchConfig;
use crate::dissect::{Inspection, L7_MIPUSH};
use crate::flow::{DnsRecord, FlowRecord, FlowTable, Millis, NameSource};

/// Answers are believed at least this long, whatever their TTL (many CDNs answer with TTL 0-20
/// while the app connects a moment later).
const MIN_TTL_MS: Millis = 60_000;
/// TTL used when an answer carries none we could read.
const DEFAULT_TTL_MS: Millis = 300_000;
/// An expired answer still names a flow this long after expiry when nothing fresher does: apps
/// and the system resolver keep using addresses past their TTL.
const STALE_GRACE_MS: Millis = 600_000;
/// Names remembered per address (CDN addresses serve many names; the newest wins).
const MAX_NAMES_PER_IP: usize = 4;
/// Addresses remembered before expired entries are purged.
const MAX_IPS: usize = 65_536;
/// ECH configurations remembered per name (one, or two while a server rotates its keys).
const MAX_ECH_PER_NAME: usize = 4;
/// Names with ECH configurations remembered before expired ones are purged.
const MAX_ECH_NAMES: usize = 4_096;

#[derive(Clone, Debug, PartialEq, Eq)]
struct CachedName {
    name: String,
    learned: Millis,
    expires: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct CachedEch {
    config: EchConfig,
    learned: Millis,
    expires: Millis,
}

impl CachedEch {
    fn offers(&self, config_id: u8, now: Millis) -> bool {
        self.config.config_id == config_id
            && self.learned <= now
            && now <= self.expires.saturating_add(STALE_GRACE_MS)
    }
}

/// The IP -> names cache, the ECH configurations DNS gave, and the naming policy. One per
/// engine (or observer) run; owned by the thread that handles flows, so no locking.
#[derive(Debug, Default)]
pub struct Namer {
    by_ip: FlowTable<IpAddr, Vec<CachedName>>,
    /// ECH configurations by the name whose HTTPS/SVCB answer carried them.
    ech_by_name: HashMap<String, Vec<CachedEch>>,
    /// The same configurations by their public_name (the outer SNI of a real ECH hello).
    ech_by_public_name: HashMap<String, Vec<CachedEch>>,
}

impl Namer {
    pub fn new() -> Namer {
        Namer::default()
    }

    /// Learn the names behind the addresses of a DNS answer. The name remembered is the one the
    /// client asked for (the start of the CNAME chain), which is what the app wanted to reach.
    pub fn on_dns(&mut self, record: &DnsRecord) {
        if record.query.is_empty() || record.rcode.is_some_and(|rc| rc != 0) {
            return;
        }
        let ttl_ms = record
            .ttl
            .map_or(DEFAULT_TTL_MS, |t| Millis::from(t).saturating_mul(1000))
            .max(MIN_TTL_MS);
        self.learn_ech(record, ttl_ms);
        if record.answer_ips.is_empty() {
            return;
        }
        let entry = CachedName {
            name: record.query.to_ascii_lowercase(),
            learned: record.time,
            expires: record.time.saturating_add(ttl_ms),
        };
        if self.by_ip.len() >= MAX_IPS {
            self.purge(record.time);
        }
        for ip in &record.answer_ips {
            let names = self.by_ip.entry(*ip).or_default();
            names.retain(|n| n.name != entry.name);
            names.push(entry.clone());
            if names.len() > MAX_NAMES_PER_IP {
                names.remove(0);
            }
        }
    }

    /// Remember the ECH configurations of an HTTPS/SVCB answer under the name asked for and
    /// under their public names.
    fn learn_ech(&mut self, record: &DnsRecord, ttl_ms: Millis) {
        if record.ech_configs.is_empty() {
            return;
        }
        let now = record.time;
        for map in [&mut self.ech_by_name, &mut self.ech_by_public_name] {
            if map.len() >= MAX_ECH_NAMES {
                map.retain(|_, configs| {
                    configs.retain(|e| e.expires.saturating_add(STALE_GRACE_MS) >= now);
                    !configs.is_empty()
                });
                if map.len() >= MAX_ECH_NAMES {
                    map.clear(); // Only reachable under a flood of distinct names.
                }
            }
        }
        let query = record.query.to_ascii_lowercase();
        for config in &record.ech_configs {
            let entry = CachedEch {
                config: config.clone(),
                learned: now,
                expires: now.saturating_add(ttl_ms),
            };
            for (map, key) in [
                (&mut self.ech_by_name, &query),
                (&mut self.ech_by_public_name, &config.public_name),
            ] {
                let configs = map.entry(key.clone()).or_default();
                configs.retain(|e| e.config != entry.config);
                configs.push(entry.clone());
                if configs.len() > MAX_ECH_PER_NAME {
                    configs.remove(0);
                }
            }
        }
    }

    /// Whether an outer ECH extension naming `config_id` is a real Encrypted Client Hello: DNS
    /// gave that config to a name of the destination address, or the outer SNI is the config's
    /// public_name. Anything else is GREASE (a random id from a client without a config).
    pub fn ech_is_real(
        &self,
        dst: IpAddr,
        outer_name: Option<&str>,
        config_id: u8,
        now: Millis,
    ) -> bool {
        let offered = |configs: Option<&Vec<CachedEch>>| {
            configs.is_some_and(|c| c.iter().any(|e| e.offers(config_id, now)))
        };
        let by_public_name = outer_name.is_some_and(|n| offered(self.ech_by_public_name.get(n)));
        let for_destination = || {
            self.by_ip.get(&dst).is_some_and(|names| {
                names
                    .iter()
                    .filter(|n| n.learned <= now && now <= n.expires.saturating_add(STALE_GRACE_MS))
                    .any(|n| offered(self.ech_by_name.get(&n.name)))
            })
        };
        by_public_name || for_destination()
    }

    /// The name a DNS answer gave `ip`, as of `now`: the newest unexpired one, else the newest
    /// that expired less than the grace period ago.
    pub fn lookup(&self, ip: IpAddr, now: Millis) -> Option<&str> {
        let names = self.by_ip.get(&ip)?;
        let fresh = names
            .iter()
            .rev()
            .find(|n| n.learned <= now && now <= n.expires);
        let stale = || {
            names
                .iter()
                .rev()
                .find(|n| n.learned <= now && now <= n.expires.saturating_add(STALE_GRACE_MS))
        };
        fresh.or_else(stale).map(|n| n.name.as_str())
    }

    /// Addresses currently remembered (for statistics and tests).
    pub fn cached_ips(&self) -> usize {
        self.by_ip.len()
    }

    /// Apply what the dissectors found and, failing that, the DNS cache; then classify.
    /// Call when a flow opens and whenever its inspection changes.
    pub fn name_flow(&self, flow: &mut FlowRecord, inspection: &Inspection, now: Millis) {
        if let Some((name, source)) = &inspection.hostname {
            // An address in SNI or Host is a poor name: what DNS said about the destination is
            // better; without a DNS answer the address is still what the app asked for.
            let from_dns = if name.parse::<IpAddr>().is_ok() {
                self.lookup(flow.key.dst.ip(), now)
            } else {
                None
            };
            match from_dns {
                Some(dns_name) => flow.offer_name(dns_name, NameSource::Dns),
                None => flow.offer_name(name, *source),
            }
        }
        if inspection.app_info.l7.is_some() {
            flow.app_info = inspection.app_info.clone();
            if flow.app_info.ech {
                let outer = inspection.hostname.as_ref().map(|(name, _)| name.as_str());
                flow.app_info.ech = inspection
                    .ech_config_id
                    .is_some_and(|id| self.ech_is_real(flow.key.dst.ip(), outer, id, now));
            }
        }
        // Callers pass an empty Inspection once the Inspector is gone: never forget a finding.
        flow.cleartext |= inspection.cleartext;
        for kind in &inspection.leaks {
            if !flow.leaks.contains(kind) {
                flow.leaks.push(kind.clone());
            }
        }
        flow.leaks.sort();
        if flow.hostname.is_none()
            && let Some(name) = self.lookup(flow.key.dst.ip(), now)
        {
            flow.offer_name(name, NameSource::Dns);
        }
        classify(flow);
    }

    /// Drop entries past their grace period; if still too many, the older half.
    fn purge(&mut self, now: Millis) {
        self.by_ip.retain(|_, names| {
            names.retain(|n| n.expires.saturating_add(STALE_GRACE_MS) >= now);
            !names.is_empty()
        });
        // Leave room so that the next inserts do not purge again at once.
        if self.by_ip.len() >= MAX_IPS * 3 / 4 {
            let mut learned: Vec<Millis> = self
                .by_ip
                .values()
                .filter_map(|names| names.last().map(|n| n.learned))
                .collect();
            learned.sort_unstable();
            let cutoff = learned[learned.len() / 2];
            self.by_ip
                .retain(|_, names| names.last().is_some_and(|n| n.learned > cutoff));
        }
    }
}

/// The purpose of every DNS flow: its destination is a resolver.
pub const PURPOSE_DNS: &str = "DNS";

/// Fill `flow.destination` from the Xiaomi catalog (recomputed: the name may have improved since
/// the last call) and, once, from the offline country/ASN database.
fn classify(flow: &mut FlowRecord) {
    let dst = flow.key.dst;
    // A DNS flow reached the resolver, not the name it asked about: classify it by the
    // resolver's address, so a lookup of a Xiaomi name never counts as traffic to Xiaomi.
    let lookup = flow.is_dns_lookup();
    let host = if lookup {
        None
    } else {
        flow.hostname.as_deref()
    };
    let class = crate::catalog::classify(host, dst.ip(), dst.port());
    let d = &mut flow.destination;
    match class {
        Some(c) => {
            d.vendor = Some(c.vendor);
            d.category = Some(c.category);
            d.category_guessed = c.category_guessed;
            d.purpose = Some(c.purpose);
        }
        None => {
            d.vendor = None;
            d.category = None;
            d.category_guessed = false;
            d.purpose = None;
        }
    }
    if flow.app_info.l7.as_deref() == Some(L7_MIPUSH) {
        // Recognised from its wire format (facts.md 2.3): Xiaomi push even without a name, and
        // not a guess.
        d.vendor = Some(crate::catalog::VENDOR.into());
        d.category = Some("push".into());
        d.category_guessed = false;
        d.purpose = Some("Mi Push persistent connection (recognised from its wire format)".into());
    }
    if lookup {
        d.purpose = Some(PURPOSE_DNS.into());
    }
    if d.country.is_none()
        && d.asn.is_none()
        && let Some(geo) = crate::geo::lookup(dst.ip())
    {
        d.country = geo.country;
        d.asn = geo.asn;
        d.as_name = geo.as_name;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{AppInfo, FlowKey, Proto};

    fn answer(query: &str, ips: &[&str], ttl: u32, time: Millis) -> DnsRecord {
        DnsRecord {
            time,
            uid: None,
            flow_id: None,
            client: "10.0.0.2:40000".parse().unwrap(),
            server: "198.18.0.53:53".parse().unwrap(),
            transport: Proto::Udp,
            query: query.into(),
            qtype: 1,
            rcode: Some(0),
            answers: ips.iter().map(|s| s.to_string()).collect(),
            answer_ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            ttl: Some(ttl),
            ech_configs: Vec::new(),
        }
    }

    fn flow_to(dst: &str, now: Millis) -> FlowRecord {
        let key = FlowKey {
            proto: Proto::Tcp,
            src: "10.0.0.2:50000".parse().unwrap(),
            dst: dst.parse().unwrap(),
        };
        FlowRecord::new(1, key, now)
    }

    #[test]
    fn dns_answer_names_a_later_flow_until_ttl_and_grace_run_out() {
        let mut namer = Namer::new();
        namer.on_dns(&answer(
            "Api.Example.com",
            &["198.18.5.5", "2001:db8::5"],
            120,
            1_000,
        ));
        let ip: IpAddr = "198.18.5.5".parse().unwrap();
        assert_eq!(namer.lookup(ip, 2_000), Some("api.example.com"));
        assert_eq!(
            namer.lookup("2001:db8::5".parse().unwrap(), 2_000),
            Some("api.example.com")
        );
        // Past the TTL but within the grace period: still named.
        assert_eq!(
            namer.lookup(ip, 1_000 + 120_000 + 1),
            Some("api.example.com")
        );
        assert_eq!(namer.lookup(ip, 1_000 + 120_000 + STALE_GRACE_MS + 1), None);
        // Not before it was learned (a pcap replay never looks back in time).
        assert_eq!(namer.lookup(ip, 500), None);

        let mut flow = flow_to("198.18.5.5:443", 5_000);
        namer.name_flow(&mut flow, &Inspection::default(), 5_000);
        assert_eq!(flow.hostname.as_deref(), Some("api.example.com"));
        assert_eq!(flow.hostname_source, Some(NameSource::Dns));
    }

    #[test]
    fn newest_fresh_name_wins_and_fresh_beats_stale() {
        let mut namer = Namer::new();
        namer.on_dns(&answer("old.example", &["198.18.1.1"], 60, 0));
        namer.on_dns(&answer("new.example", &["198.18.1.1"], 60, 10_000));
        let ip = "198.18.1.1".parse().unwrap();
        assert_eq!(namer.lookup(ip, 11_000), Some("new.example"));
        // A long-TTL older answer stays fresh while the newer one has expired: fresh wins.
        let mut namer = Namer::new();
        namer.on_dns(&answer("long.example", &["198.18.1.1"], 3600, 0));
        namer.on_dns(&answer("short.example", &["198.18.1.1"], 1, 1_000));
        assert_eq!(namer.lookup(ip, 200_000), Some("long.example"));
    }

    #[test]
    fn failed_answers_are_ignored() {
        let mut namer = Namer::new();
        let mut rec = answer("nx.example", &["198.18.1.2"], 60, 0);
        rec.rcode = Some(3);
        namer.on_dns(&rec);
        assert_eq!(namer.cached_ips(), 0);
    }

    #[test]
    fn name_seen_in_flow_beats_dns() {
        let mut namer = Namer::new();
        namer.on_dns(&answer("cdn.example", &["198.18.2.2"], 300, 0));
        let mut flow = flow_to("198.18.2.2:443", 1_000);
        namer.name_flow(&mut flow, &Inspection::default(), 1_000);
        assert_eq!(flow.hostname_source, Some(NameSource::Dns));
        let inspection = Inspection {
            hostname: Some(("sdkconfig.ad.xiaomi.com".into(), NameSource::Sni)),
            app_info: AppInfo {
                l7: Some("tls".into()),
                ..AppInfo::default()
            },
            ..Inspection::default()
        };
        namer.name_flow(&mut flow, &inspection, 1_200);
        assert_eq!(flow.hostname.as_deref(), Some("sdkconfig.ad.xiaomi.com"));
        assert_eq!(flow.hostname_source, Some(NameSource::Sni));
        assert_eq!(flow.app_info.l7.as_deref(), Some("tls"));
        // A later call without a name from the flow does not downgrade it.
        namer.name_flow(&mut flow, &Inspection::default(), 1_300);
        assert_eq!(flow.hostname_source, Some(NameSource::Sni));
    }

    #[test]
    fn mipush_is_xiaomi_without_dns() {
        let namer = Namer::new();
        let mut flow = flow_to("47.241.7.88:5222", 0);
        let inspection = Inspection {
            app_info: AppInfo {
                l7: Some(L7_MIPUSH.into()),
                ..AppInfo::default()
            },
            cleartext: true,
            leaks: vec!["model".into()],
            ..Inspection::default()
        };
        namer.name_flow(&mut flow, &inspection, 0);
        assert_eq!(flow.hostname, None);
        assert_eq!(flow.destination.vendor.as_deref(), Some("xiaomi"));
        assert_eq!(flow.destination.category.as_deref(), Some("push"));
        assert!(!flow.destination.category_guessed);
        assert!(flow.cleartext);
        assert_eq!(flow.leaks, vec!["model"]);
        // The engine renames with an empty Inspection once the Inspector is dropped.
        namer.name_flow(&mut flow, &Inspection::default(), 10);
        assert!(flow.cleartext);
        assert_eq!(flow.leaks, vec!["model"]);
        assert_eq!(flow.app_info.l7.as_deref(), Some(L7_MIPUSH));
        assert_eq!(flow.destination.vendor.as_deref(), Some("xiaomi"));
    }

    /// A DNS HTTPS answer from its wire form, as the engine and the observer record it.
    fn https_record(qname: &str, hint: [u8; 4], configs: &[(u8, &str)], time: Millis) -> DnsRecord {
        use crate::dissect::dns;
        let ech = dns::build::ech_config_list(configs);
        let msg = dns::parse(&dns::build::https_answer(qname, hint, &ech)).unwrap();
        let ex = dns::Exchange {
            time,
            client: "10.0.0.2:40000".parse().unwrap(),
            server: "198.18.0.53:53".parse().unwrap(),
            transport: Proto::Udp,
        };
        dns::record_from(ex, None, Some(&msg)).unwrap()
    }

    /// What the inspector makes of a TLS ClientHello with these extensions.
    fn inspect_hello(exts: &[(u16, Vec<u8>)]) -> Inspection {
        use crate::dissect::Inspector;
        use crate::dissect::tls::build;
        use crate::flow::Direction;
        let mut ins = Inspector::new(Proto::Tcp, 443);
        ins.on_stream(
            Direction::Up,
            &build::records(&build::client_hello(exts), 16384),
        );
        ins.result().clone()
    }

    #[test]
    fn ech_is_real_only_with_a_config_dns_gave() {
        use crate::dissect::tls::build::{ech_outer, sni};
        let mut namer = Namer::new();
        namer.on_dns(&https_record(
            "crypto.cloudflare.com",
            [162, 159, 137, 85],
            &[(0x45, "cloudflare-ech.com")],
            0,
        ));
        // With the config, the client encrypts to its id under the public name.
        let real = inspect_hello(&[sni("cloudflare-ech.com"), ech_outer(0x45)]);
        assert!(real.app_info.ech);
        let mut flow = flow_to("162.159.137.85:443", 1_000);
        namer.name_flow(&mut flow, &real, 1_000);
        assert!(flow.app_info.ech);
        assert_eq!(flow.hostname.as_deref(), Some("cloudflare-ech.com"));
        assert_eq!(flow.hostname_source, Some(NameSource::Sni));
        // The same public name at an address no answer named: the outer SNI is the config's.
        let mut elsewhere = flow_to("104.18.10.10:443", 1_000);
        namer.name_flow(&mut elsewhere, &real, 1_000);
        assert!(elsewhere.app_info.ech);
        // GREASE to the same server: a random id, the real name in the SNI.
        let grease = inspect_hello(&[sni("crypto.cloudflare.com"), ech_outer(0x9c)]);
        let mut flow = flow_to("162.159.137.85:443", 1_000);
        namer.name_flow(&mut flow, &grease, 1_000);
        assert!(!flow.app_info.ech);
        assert_eq!(flow.hostname.as_deref(), Some("crypto.cloudflare.com"));
        // GREASE that happens to pick a known id, to a host DNS gave no config.
        let lucky = inspect_hello(&[sni("www.example.org"), ech_outer(0x45)]);
        let mut flow = flow_to("198.18.9.9:443", 1_000);
        namer.name_flow(&mut flow, &lucky, 1_000);
        assert!(!flow.app_info.ech);
        assert_eq!(flow.hostname.as_deref(), Some("www.example.org"));
        // Without any HTTPS answer, every ECH extension is GREASE.
        let mut flow = flow_to("162.159.137.85:443", 1_000);
        Namer::new().name_flow(&mut flow, &real, 1_000);
        assert!(!flow.app_info.ech);
    }

    #[test]
    fn ech_configs_are_forgotten_after_ttl_and_grace() {
        let mut namer = Namer::new();
        namer.on_dns(&https_record(
            "svc.example",
            [198, 18, 7, 7],
            &[(7, "public.example")],
            0,
        ));
        let dst: IpAddr = "198.18.7.7".parse().unwrap();
        assert!(namer.ech_is_real(dst, None, 7, 1_000));
        assert!(!namer.ech_is_real(dst, None, 8, 1_000));
        let gone = 300_000 + STALE_GRACE_MS + 1;
        assert!(!namer.ech_is_real(dst, Some("public.example"), 7, gone));
    }

    #[test]
    fn purge_keeps_the_cache_bounded() {
        let mut namer = Namer::new();
        for i in 0..(MAX_IPS as u32 + 10) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0xc612_0000u32 + i));
            let rec = DnsRecord {
                answer_ips: vec![ip],
                ..answer("x.example", &[], 60, Millis::from(i))
            };
            namer.on_dns(&rec);
        }
        assert!(namer.cached_ips() <= MAX_IPS);
    }

    #[test]
    fn address_in_host_yields_to_dns_name() {
        let http_ip = Inspection {
            hostname: Some(("198.18.3.3".into(), NameSource::Http)),
            ..Inspection::default()
        };
        let mut namer = Namer::new();
        let mut flow = flow_to("198.18.3.3:80", 1_000);
        namer.name_flow(&mut flow, &http_ip, 1_000);
        assert_eq!(
            (flow.hostname.as_deref(), flow.hostname_source),
            (Some("198.18.3.3"), Some(NameSource::Http))
        );
        namer.on_dns(&answer("f-droid.org", &["198.18.3.3"], 300, 0));
        let mut flow = flow_to("198.18.3.3:80", 1_000);
        namer.name_flow(&mut flow, &http_ip, 1_000);
        assert_eq!(
            (flow.hostname.as_deref(), flow.hostname_source),
            (Some("f-droid.org"), Some(NameSource::Dns))
        );
    }

    #[test]
    fn catalog_classifies_by_the_best_name() {
        let mut namer = Namer::new();
        namer.on_dns(&answer("example.net", &["198.18.4.4"], 300, 0));
        let mut flow = flow_to("198.18.4.4:443", 1_000);
        namer.name_flow(&mut flow, &Inspection::default(), 1_000);
        assert_eq!(flow.destination.vendor, None);
        // The SNI names a Xiaomi telemetry host: the classification follows the better name.
        let sni = Inspection {
            hostname: Some(("data.mistat.xiaomi.com".into(), NameSource::Sni)),
            ..Inspection::default()
        };
        namer.name_flow(&mut flow, &sni, 1_100);
        assert_eq!(flow.destination.vendor.as_deref(), Some("xiaomi"));
        assert!(flow.destination.category.is_some());
    }
}
