//! The DNS upstream as a user or the app writes it.

use std::net::{IpAddr, SocketAddr};

/// DNS's port, for an upstream given without one.
const DNS_PORT: u16 = 53;

/// `1.1.1.1:53`, `[2001:db8::1]:53`, or a bare address (`1.1.1.1`, `2001:db8::1`,
/// `[2001:db8::1]`) on port 53. Callers word the error: they know which setting it was.
pub fn parse_upstream(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_forms() {
        let addr = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert_eq!(parse_upstream("198.18.0.1:5353"), addr("198.18.0.1:5353"));
        assert_eq!(parse_upstream("198.18.0.1"), addr("198.18.0.1:53"));
        assert_eq!(parse_upstream("[fd00::1]:53"), addr("[fd00::1]:53"));
        assert_eq!(parse_upstream("fd00::1"), addr("[fd00::1]:53"));
        assert_eq!(parse_upstream("[fd00::1]"), addr("[fd00::1]:53"));
        // Java's InetAddress text of an IPv6 address.
        assert_eq!(
            parse_upstream("[2001:db8:0:0:0:0:0:53]:53"),
            addr("[2001:db8::53]:53")
        );
        for bad in [
            "",
            "dns.example:53",
            "198.18.0.1]",
            "[198.18.0.1",
            "fd00::1]:53",
        ] {
            assert_eq!(parse_upstream(bad), None, "{bad:?}");
        }
    }
}
