//! The records the engine produces and every other part consumes: flows, DNS queries, events.
//!
//! These types are the contract between the packet engine (live relay or pcap observer), the
//! SQLite store and the live view. Counters in a [`FlowRecord`] are absolute, so a store can
//! upsert the latest copy of a flow and never double-count.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Maps keyed by flow tuples, flow ids and addresses, on the packet path: foldhash with a seed
/// per process. std's SipHash was 12% of `analyze`'s instructions; the random seed still keeps
/// crafted traffic from choosing colliding keys in advance.
pub type FlowTable<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Milliseconds since the Unix epoch. All engine time is in this unit.
pub type Millis = i64;

/// Identifies a flow within one engine run (one session). Never reused within a session.
pub type FlowId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }

    pub fn parse(s: &str) -> Option<Proto> {
        match s {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "icmp" => Some(Proto::Icmp),
            _ => None,
        }
    }
}

/// Direction of bytes relative to the phone: `Up` is client to server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Up,
    Down,
}

/// The 5-tuple of a flow; `src` is always the client (the app on the phone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub proto: Proto,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// Why a flow ended. Stored as its `as_str` text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CloseReason {
    /// Both sides closed (FIN both ways).
    Fin,
    /// The app reset the connection.
    ResetByClient,
    /// The server reset the connection.
    ResetByServer,
    /// The outbound connect was refused (RST from the server).
    Refused,
    /// The outbound connect failed otherwise (unreachable, timeout).
    ConnectFailed,
    /// No traffic for the idle timeout.
    Idle,
    /// The engine stopped while the flow was open.
    EngineStop,
    /// The capture file ended while the flow was open (observe mode).
    EndOfCapture,
    /// A local I/O error on the relay.
    Error,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Fin => "fin",
            CloseReason::ResetByClient => "reset-by-client",
            CloseReason::ResetByServer => "reset-by-server",
            CloseReason::Refused => "refused",
            CloseReason::ConnectFailed => "connect-failed",
            CloseReason::Idle => "idle",
            CloseReason::EngineStop => "engine-stop",
            CloseReason::EndOfCapture => "end-of-capture",
            CloseReason::Error => "error",
        }
    }
}

/// Where a flow's hostname came from, in order of trust (a name seen in the flow wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NameSource {
    Sni,
    Quic,
    Http,
    /// From an earlier DNS answer that produced the destination address.
    Dns,
    /// A DNS flow's own question.
    DnsQuery,
    /// The server certificate's subject CN or first DNS SAN, on a TLS 1.2 or older flow whose
    /// hello had no SNI (STARTTLS, old clients).
    Cert,
}

impl NameSource {
    pub fn as_str(self) -> &'static str {
        match self {
            NameSource::Sni => "sni",
            NameSource::Quic => "quic",
            NameSource::Http => "http",
            NameSource::Dns => "dns",
            NameSource::DnsQuery => "dns-query",
            NameSource::Cert => "cert",
        }
    }

    /// Higher wins when two sources name the same flow.
    pub fn trust(self) -> u8 {
        match self {
            NameSource::Sni | NameSource::Quic | NameSource::Http => 3,
            NameSource::DnsQuery | NameSource::Cert => 2,
            NameSource::Dns => 1,
        }
    }
}

/// What the dissectors learned about a flow's application protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    /// e.g. "tls", "quic", "http", "dns", "mipush"; None while unknown.
    pub l7: Option<String>,
    pub alpn: Vec<String>,
    /// Highest TLS version offered, e.g. "TLSv1.3".
    pub tls_version: Option<String>,
    /// The ClientHello carried a real Encrypted Client Hello (its config_id names an ECHConfig
    /// a DNS answer gave this destination or outer name; GREASE ECH is not one); `hostname` is
    /// then the outer (public) name.
    pub ech: bool,
    /// HTTP request method for cleartext HTTP.
    pub http_method: Option<String>,
    /// The first requests of a cleartext HTTP flow, as evidence (at most
    /// [`MAX_HTTP_REQUESTS`], each at most [`MAX_HTTP_REQUEST_LEN`] bytes), with identifier
    /// values replaced by their kind. Never a body.
    pub http_requests: Vec<HttpRequest>,
}

/// Requests kept per cleartext HTTP flow.
pub const MAX_HTTP_REQUESTS: usize = 8;
/// Bytes kept of each request's host plus path and query.
pub const MAX_HTTP_REQUEST_LEN: usize = 1024;

/// One cleartext HTTP request as evidence: `GET globalapi.ad.xiaomi.com
/// /api/v1/MiAdBlacklistConfig?gaid=<advertising-id>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    pub host: Option<String>,
    /// Path and query (or the absolute URL of a proxy request), identifier values replaced by
    /// `<kind>`, cut to fit [`MAX_HTTP_REQUEST_LEN`] with the host.
    pub path: String,
}

/// Classification of the destination (filled by the catalog and the offline geo database).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub vendor: Option<String>,
    pub category: Option<String>,
    pub category_guessed: bool,
    pub purpose: Option<String>,
    pub country: Option<String>,
    pub asn: Option<u32>,
    pub as_name: Option<String>,
}

/// One flow as the engine knows it now. Sent whole on every event, so the latest copy wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub id: FlowId,
    pub key: FlowKey,
    pub uid: Option<u32>,
    pub first_seen: Millis,
    pub last_seen: Millis,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub packets_up: u64,
    pub packets_down: u64,
    pub close_reason: Option<CloseReason>,
    pub hostname: Option<String>,
    pub hostname_source: Option<NameSource>,
    pub app_info: AppInfo,
    pub destination: Destination,
    /// No TLS or QUIC seen on the flow: its payload crossed the network readable.
    pub cleartext: bool,
    /// Kinds of device identifiers found in cleartext payload (never the payload itself).
    pub leaks: Vec<String>,
}

impl FlowRecord {
    pub fn new(id: FlowId, key: FlowKey, now: Millis) -> FlowRecord {
        FlowRecord {
            id,
            key,
            uid: None,
            first_seen: now,
            last_seen: now,
            bytes_up: 0,
            bytes_down: 0,
            packets_up: 0,
            packets_down: 0,
            close_reason: None,
            hostname: None,
            hostname_source: None,
            app_info: AppInfo::default(),
            destination: Destination::default(),
            cleartext: false,
            leaks: Vec::new(),
        }
    }

    /// A plain DNS flow (to a resolver): it is counted as lookups, never as a contact with
    /// the names it asked about. The store's `flows.lookup` column is the same test in SQL.
    pub fn is_dns_lookup(&self) -> bool {
        self.app_info.l7.as_deref() == Some(crate::dissect::L7_DNS)
            || self.hostname_source == Some(NameSource::DnsQuery)
    }

    /// Set the hostname unless a more trusted source already named the flow.
    pub fn offer_name(&mut self, name: &str, source: NameSource) {
        let better = match self.hostname_source {
            None => true,
            Some(current) => source.trust() > current.trust(),
        };
        if better && !name.is_empty() {
            self.hostname = Some(name.to_ascii_lowercase());
            self.hostname_source = Some(source);
        }
    }
}

/// One DNS exchange handled (live) or seen (observe mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsRecord {
    pub time: Millis,
    pub uid: Option<u32>,
    /// The flow that carried the query, when there is one.
    pub flow_id: Option<FlowId>,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// "udp" or "tcp".
    pub transport: Proto,
    pub query: String,
    /// Numeric query type (1 = A, 28 = AAAA, 65 = HTTPS...).
    pub qtype: u16,
    /// DNS response code; None when no answer arrived (SERVFAIL is then sent to the client).
    pub rcode: Option<u8>,
    /// Answer data as text: addresses, CNAME targets, or "TYPE n" for others.
    pub answers: Vec<String>,
    /// Addresses found in the answer (A, AAAA, and HTTPS/SVCB hints), for the IP -> name cache.
    pub answer_ips: Vec<IpAddr>,
    /// Smallest TTL among the answers, seconds.
    pub ttl: Option<u32>,
    /// ECH configurations of HTTPS/SVCB answers: what tells a real Encrypted Client Hello to
    /// this name from Chrome's GREASE one.
    pub ech_configs: Vec<crate::dissect::dns::EchConfig>,
}

/// Everything the engine tells the store and the live view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new flow, or a change to one (counters, name, owner). Upsert by id.
    Flow(FlowRecord),
    /// The flow ended; this copy is final.
    FlowClosed(FlowRecord),
    Dns(DnsRecord),
    /// The owner of a uid, once known: the package(s) or user name.
    App {
        uid: u32,
        name: String,
    },
}
