//! Reading the host's resolver configuration and writing the captured command's.

use std::net::IpAddr;

/// The first usable `nameserver` of a resolv.conf text (IPv6 zone suffixes dropped).
pub fn first_nameserver(resolv_conf: &str) -> Option<IpAddr> {
    resolv_conf.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            return None;
        }
        let addr = words.next()?;
        let addr = addr.split('%').next().unwrap_or(addr);
        addr.parse().ok()
    })
}

/// A resolv.conf that sends every lookup to `servers` (the engine's DNS service).
pub fn render(servers: &[IpAddr]) -> String {
    let mut text =
        String::from("# written by phonehome capture: DNS goes through the capture engine\n");
    for server in servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    text
}

/// The nsswitch.conf the captured command should see: `hosts: files dns`, so name lookups read
/// resolv.conf instead of reaching a resolver daemon in the parent namespace over a Unix socket
/// (systemd-resolved's `resolve`, `mdns`, ...), which would bypass the capture. None when the
/// host file already says so.
pub fn nsswitch_for_capture(nsswitch_conf: &str) -> Option<String> {
    let mut changed = false;
    let mut saw_hosts = false;
    let mut out = String::with_capacity(nsswitch_conf.len() + 32);
    for line in nsswitch_conf.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("hosts:") {
            saw_hosts = true;
            let sources: Vec<&str> = rest.split_whitespace().collect();
            if sources != ["files", "dns"] {
                changed = true;
                out.push_str("hosts: files dns\n");
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    if !saw_hosts {
        out.push_str("hosts: files dns\n");
        changed = true;
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_nameserver_skipping_comments_and_zones() {
        let text =
            "# generated\nsearch example.org\nnameserver fe80::1%eth0\nnameserver 10.0.0.1\n";
        assert_eq!(first_nameserver(text), "fe80::1".parse().ok());
        assert_eq!(
            first_nameserver("nameserver  192.0.2.53 \n"),
            "192.0.2.53".parse().ok()
        );
        assert_eq!(
            first_nameserver("; nameserver 1.1.1.1\nnameserver bogus\n"),
            None
        );
        assert_eq!(first_nameserver(""), None);
    }

    #[test]
    fn renders_one_line_per_server() {
        let text = render(&["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()]);
        assert!(
            text.contains("nameserver 10.0.0.2\nnameserver fd00::2\n"),
            "{text}"
        );
    }

    #[test]
    fn rewrites_only_the_hosts_line() {
        let host = "passwd: files systemd\nhosts:  files mymachines resolve [!UNAVAIL=return] dns myhostname\nnetworks: files\n";
        let rewritten = nsswitch_for_capture(host);
        assert_eq!(
            rewritten.as_deref(),
            Some("passwd: files systemd\nhosts: files dns\nnetworks: files\n")
        );
        assert_eq!(nsswitch_for_capture("hosts: files dns\n"), None);
        assert_eq!(
            nsswitch_for_capture("passwd: files\n").as_deref(),
            Some("passwd: files\nhosts: files dns\n")
        );
    }
}
