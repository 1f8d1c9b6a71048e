//! Dissectors: name a flow from its first bytes (TLS ClientHello SNI, QUIC Initial SNI, HTTP
//! Host, DNS) and flag cleartext device identifiers. Every parser returns an error on malformed
//! input and never panics.

pub mod dns;
pub mod http;
pub mod leaks;
pub mod mipush;
pub mod quic;
pub mod tls;

use crate::flow::{AppInfo, Direction, NameSource, Proto};

/// What an [`Inspector`] has learned so far about one flow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inspection {
    pub hostname: Option<(String, NameSource)>,
    pub app_info: AppInfo,
    /// Set once the flow is known to carry no TLS/QUIC (cleartext).
    pub cleartext: bool,
    pub leaks: Vec<String>,
}

/// Per-flow dissection state. Fed in-order stream bytes (TCP) or whole datagrams (UDP) for the
/// first bytes of each direction, until `wants_more` says it is done.
#[derive(Debug)]
pub struct Inspector {
    proto: Proto,
    dst_port: u16,
    result: Inspection,
}

impl Inspector {
    pub fn new(proto: Proto, dst_port: u16) -> Inspector {
        Inspector { proto, dst_port, result: Inspection::default() }
    }

    /// In-order TCP payload bytes in direction `dir`.
    pub fn on_stream(&mut self, dir: Direction, data: &[u8]) {
        let _ = (dir, data, self.proto, self.dst_port);
    }

    /// One UDP payload in direction `dir`.
    pub fn on_datagram(&mut self, dir: Direction, data: &[u8]) {
        let _ = (dir, data);
    }

    /// False once nothing more can be learned; the caller stops feeding bytes.
    pub fn wants_more(&self) -> bool {
        false
    }

    pub fn result(&self) -> &Inspection {
        &self.result
    }
}
