//! Synthetic but realistic capture events (MIUI system apps talking to Xiaomi endpoints, plus
//! ordinary apps), for tests and benchmarks. Deterministic: a seed gives the same events.
//! Everything goes through [`Event`]s, exactly as the engine would send them.
//!
//! A test fixture, not part of the library: tests include it with
//! `#[path = "support/synth.rs"] mod synth;`, examples with `#[path = "../tests/support/synth.rs"]`.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use phonehome::flow::{
    AppInfo, CloseReason, Destination, DnsRecord, Event, FlowId, FlowKey, FlowRecord, Millis,
    NameSource, Proto,
};

/// (uid, package)
pub const APPS: &[(u32, &str)] = &[
    (10031, "com.xiaomi.xmsf"),
    (10042, "com.miui.analytics"),
    (10050, "com.miui.securitycenter"),
    (10061, "com.miui.weather2"),
    (10075, "com.mi.globalbrowser"),
    (10088, "com.miui.msa.global"),
    (10102, "com.android.chrome"),
    (10140, "org.telegram.messenger"),
    (1000, "android.uid.system"),
];

/// (hostname, vendor, category, purpose, country, asn, cleartext, ech, keeps going after "off")
pub struct Host {
    pub name: &'static str,
    pub xiaomi: bool,
    pub category: &'static str,
    pub purpose: &'static str,
    pub country: &'static str,
    pub asn: u32,
    pub cleartext: bool,
    pub ech: bool,
    pub survives_off: bool,
}

const fn h(
    name: &'static str,
    xiaomi: bool,
    category: &'static str,
    purpose: &'static str,
    country: &'static str,
    asn: u32,
    survives_off: bool,
) -> Host {
    Host {
        name,
        xiaomi,
        category,
        purpose,
        country,
        asn,
        cleartext: false,
        ech: false,
        survives_off,
    }
}

pub const HOSTS: &[Host] = &[
    h(
        "data.mistat.intl.xiaomi.com",
        true,
        "analytics/telemetry",
        "MIUI usage statistics upload",
        "SG",
        16509,
        true,
    ),
    h(
        "tracking.intl.miui.com",
        true,
        "analytics/telemetry",
        "Ad and event tracking",
        "DE",
        16509,
        false,
    ),
    h(
        "api.ad.intl.xiaomi.com",
        true,
        "ads",
        "MSA ad delivery",
        "SG",
        16509,
        false,
    ),
    h(
        "sdkconfig.ad.intl.xiaomi.com",
        true,
        "config",
        "Ad SDK configuration",
        "SG",
        16509,
        true,
    ),
    h(
        "resolver.msg.global.xiaomi.net",
        true,
        "push",
        "Mi Push server resolver",
        "SG",
        135377,
        true,
    ),
    h(
        "sg.api.io.mi.com",
        true,
        "cloud/sync",
        "Xiaomi cloud API",
        "SG",
        135377,
        true,
    ),
    h(
        "update.intl.miui.com",
        true,
        "update/OTA",
        "System update check",
        "NL",
        16509,
        false,
    ),
    h(
        "globalapi.ad.xiaomi.com",
        true,
        "ads",
        "Global ad API",
        "SG",
        16509,
        false,
    ),
    h(
        "flash.sec.intl.miui.com",
        true,
        "config",
        "Security app cloud config",
        "DE",
        16509,
        true,
    ),
    h(
        "weatherapi.market.xiaomi.com",
        true,
        "other",
        "Weather data",
        "US",
        16509,
        true,
    ),
    h("www.google.com", false, "", "", "US", 15169, true),
    h("graph.facebook.com", false, "", "", "IE", 32934, true),
    h("api.telegram.org", false, "", "", "NL", 62041, true),
    Host {
        ech: true,
        ..h("cloudflare-ech.com", false, "", "", "US", 13335, true)
    },
    Host {
        cleartext: true,
        ..h(
            "connect.rom.miui.com",
            true,
            "other",
            "Connectivity check",
            "CN",
            4808,
            true,
        )
    },
];

/// A tiny xorshift generator: enough for varied test data, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// Which app talks to which host: MIUI apps to Xiaomi hosts, others to the rest.
fn pick(rng: &mut Rng, off: bool) -> (usize, usize) {
    loop {
        let app = rng.below(APPS.len() as u64) as usize;
        let host = rng.below(HOSTS.len() as u64) as usize;
        let miui = APPS[app].1.contains("miui")
            || APPS[app].1.contains("xiaomi")
            || APPS[app].1.contains(".mi.");
        let fits = miui == HOSTS[host].xiaomi || APPS[app].0 == 1000;
        if fits && (!off || HOSTS[host].survives_off) {
            return (app, host);
        }
    }
}

/// Generates flows for one session.
pub struct Synth {
    pub rng: Rng,
    next_id: FlowId,
    /// After the "data sharing off" moment: only the hosts that keep phoning home.
    pub off: bool,
    /// When non-zero, one flow in ten goes to one of this many subdomains of its host, so the
    /// per-domain view has realistic cardinality (benchmarks).
    pub host_variety: u64,
}

impl Synth {
    pub fn new(seed: u64) -> Synth {
        Synth {
            rng: Rng::new(seed),
            next_id: 1,
            off: false,
            host_variety: 0,
        }
    }

    /// The app-name events, sent once at the start like the owner lookup would.
    pub fn app_events(&self) -> Vec<Event> {
        APPS.iter()
            .map(|(uid, name)| Event::App {
                uid: *uid,
                name: (*name).to_string(),
            })
            .collect()
    }

    /// A complete flow starting at `start` as the engine reports it: opened, one update,
    /// closed. The DNS query that named it comes first (every fourth flow has none).
    pub fn flow_events(&mut self, start: Millis) -> Vec<Event> {
        let (app, host) = pick(&mut self.rng, self.off);
        let (uid, _) = APPS[app];
        let host = &HOSTS[host];
        let id = self.next_id;
        self.next_id += 1;
        let dst_ip = IpAddr::V4(Ipv4Addr::new(
            198,
            18,
            (host.asn % 250) as u8,
            (host.name.len() * 7 % 250) as u8,
        ));
        let port = if host.cleartext { 80 } else { 443 };
        let udp = self.rng.below(10) == 0;
        let key = FlowKey {
            proto: if udp { Proto::Udp } else { Proto::Tcp },
            src: SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 7, 0, 2)),
                30000 + (id % 30000) as u16,
            ),
            dst: SocketAddr::new(dst_ip, port),
        };
        let name = if self.host_variety > 0 && self.rng.below(10) == 0 {
            format!("n{}.{}", self.rng.below(self.host_variety), host.name)
        } else {
            host.name.to_string()
        };
        let mut events = Vec::with_capacity(4);
        let named_by_dns = !id.is_multiple_of(4);
        if named_by_dns {
            events.push(Event::Dns(DnsRecord {
                time: start - 5,
                uid: Some(uid),
                flow_id: None,
                client: SocketAddr::new(key.src.ip(), 40000 + (id % 20000) as u16),
                server: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 7, 0, 1)), 53),
                transport: Proto::Udp,
                query: name.clone(),
                qtype: 1,
                rcode: Some(0),
                answers: vec![dst_ip.to_string()],
                answer_ips: vec![dst_ip],
                ttl: Some(300),
            }));
        }
        let mut flow = FlowRecord::new(id, key, start);
        flow.uid = Some(uid);
        if named_by_dns {
            flow.offer_name(&name, NameSource::Dns);
        }
        if !host.cleartext {
            flow.offer_name(
                &name,
                if udp {
                    NameSource::Quic
                } else {
                    NameSource::Sni
                },
            );
            flow.app_info = AppInfo {
                l7: Some(if udp { "quic" } else { "tls" }.into()),
                alpn: vec![if udp { "h3" } else { "h2" }.into()],
                tls_version: Some("TLSv1.3".into()),
                ech: host.ech,
                http_method: None,
                http_requests: Vec::new(),
            };
        }
        flow.destination = Destination {
            vendor: host.xiaomi.then(|| "xiaomi".to_string()),
            category: (!host.category.is_empty()).then(|| host.category.to_string()),
            category_guessed: host.xiaomi && id.is_multiple_of(5),
            purpose: (!host.purpose.is_empty()).then(|| host.purpose.to_string()),
            country: Some(host.country.to_string()),
            asn: Some(host.asn),
            as_name: None,
        };
        flow.cleartext = host.cleartext;
        events.push(Event::Flow(flow.clone()));
        let up = 300 + self.rng.below(4000);
        let down = 500 + self.rng.below(40_000);
        flow.bytes_up = up / 2;
        flow.bytes_down = down / 2;
        flow.packets_up = 2;
        flow.packets_down = 3;
        flow.last_seen = start + 200;
        events.push(Event::Flow(flow.clone()));
        flow.bytes_up = up;
        flow.bytes_down = down;
        flow.packets_up = 4 + up / 1400;
        flow.packets_down = 4 + down / 1400;
        flow.last_seen = start + 400 + self.rng.below(5000) as i64;
        flow.close_reason = Some(if self.rng.below(8) == 0 {
            CloseReason::ResetByServer
        } else {
            CloseReason::Fin
        });
        events.push(Event::FlowClosed(flow));
        events
    }
}
