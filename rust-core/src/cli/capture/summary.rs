//! The summary capture prints when CMD is done: contacts per destination, and DNS lookups
//! apart, since a lookup names a destination without contacting it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::flow::Proto;
use crate::pcap::recorder::RecorderStats;
use crate::store::report::counted;

/// Flows and their payload bytes.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Traffic {
    pub(super) flows: u64,
    pub(super) bytes_up: u64,
    pub(super) bytes_down: u64,
}

impl Traffic {
    fn add(&mut self, other: &Traffic) {
        self.flows += other.flows;
        self.bytes_up += other.bytes_up;
        self.bytes_down += other.bytes_down;
    }

    fn bytes(&self) -> u64 {
        self.bytes_up + self.bytes_down
    }
}

#[derive(Default, Debug)]
pub(super) struct Summary {
    /// Contacts (connections to an endpoint: every flow but DNS) per destination (its name,
    /// else its address), protocol and port.
    pub(super) contacts: HashMap<(String, Proto, u16), Traffic>,
    /// The DNS flows (to resolvers), which carried the lookups.
    pub(super) dns: Traffic,
    /// DNS queries seen, in those flows or in DNS over TCP.
    pub(super) lookups: u64,
    pub(super) packets_dropped: u64,
    /// Of those, IP fragments given up (their datagram never came whole).
    pub(super) fragments_dropped: u64,
    /// Flows the engine dropped because handling them panicked (each logged).
    pub(super) flows_failed: u64,
    /// `--pcapng`: the file, what was written, and copies dropped because the writer was behind.
    pub(super) pcapng: Option<(PathBuf, RecorderStats, u64)>,
}

impl Summary {
    pub(super) fn render(&self, db: &Path, session: i64) -> String {
        let mut rows: Vec<_> = self.contacts.iter().collect();
        rows.sort_by(|a, b| {
            b.1.bytes()
                .cmp(&a.1.bytes())
                .then_with(|| (&a.0.0, a.0.1.as_str(), a.0.2).cmp(&(&b.0.0, b.0.1.as_str(), b.0.2)))
        });
        let width = rows
            .iter()
            .map(|(k, _)| k.0.len())
            .max()
            .unwrap_or(0)
            .clamp(11, 60);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n{:<width$}  {:<10}  {:>8}  {:>10}  {:>10}",
            "DESTINATION", "PROTO/PORT", "CONTACTS", "UP", "DOWN"
        );
        let mut total = Traffic::default();
        for ((destination, proto, port), row) in &rows {
            let _ = writeln!(
                out,
                "{:<width$}  {:<10}  {:>8}  {:>10}  {:>10}",
                destination,
                format!("{}/{}", proto.as_str(), port),
                row.flows,
                human_bytes(row.bytes_up),
                human_bytes(row.bytes_down)
            );
            total.add(row);
        }
        let _ = writeln!(
            out,
            "{} with {}, {} up, {} down",
            counted(total.flows, "contact", "contacts"),
            counted(rows.len(), "destination", "destinations"),
            human_bytes(total.bytes_up),
            human_bytes(total.bytes_down),
        );
        let _ = writeln!(
            out,
            "{} in {}, {} up, {} down (not counted as contacts)",
            counted(self.lookups, "DNS lookup", "DNS lookups"),
            counted(self.dns.flows, "DNS flow", "DNS flows"),
            human_bytes(self.dns.bytes_up),
            human_bytes(self.dns.bytes_down),
        );
        let _ = writeln!(out, "saved to {} (session {session})", db.display());
        if self.packets_dropped > 0 {
            let fragments = match self.fragments_dropped {
                0 => String::new(),
                n => format!(" ({n} of them IP fragments whose datagram never came whole)"),
            };
            let _ = writeln!(
                out,
                "{} dropped by the engine{fragments}",
                counted(self.packets_dropped, "packet", "packets")
            );
        }
        if self.flows_failed > 0 {
            let _ = writeln!(
                out,
                "{} dropped after an internal error in the engine (see the log)",
                counted(self.flows_failed, "flow", "flows")
            );
        }
        if let Some((path, written, dropped)) = &self.pcapng {
            let _ = writeln!(
                out,
                "{} packets written to {} ({} with their owner){}",
                written.packets,
                path.display(),
                written.with_owner,
                if *dropped > 0 {
                    format!("; {dropped} left out because the writer fell behind")
                } else {
                    String::new()
                }
            );
        }
        out
    }
}

/// Sizes as the reports write them (powers of 1000), so a summary and its report agree.
fn human_bytes(bytes: u64) -> String {
    crate::store::report::human_bytes(i64::try_from(bytes).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use super::*;
    use crate::dissect::L7_DNS;
    use crate::flow::{DnsRecord, Event, FlowKey, FlowRecord, NameSource};
    use crate::recording::EventSink;

    use super::super::tally::{Progress, Tally};

    fn flow(
        id: u64,
        proto: Proto,
        dst: &str,
        name: Option<&str>,
        up: u64,
        down: u64,
    ) -> FlowRecord {
        let key = FlowKey {
            proto,
            src: format!("10.215.173.1:{}", 40_000 + id).parse().unwrap(),
            dst: dst.parse().unwrap(),
        };
        let mut record = FlowRecord::new(id, key, 1_000);
        if let Some(name) = name {
            record.offer_name(name, NameSource::Sni);
        }
        record.uid = Some(1000);
        record.bytes_up = up;
        record.bytes_down = down;
        record
    }

    fn lookup(flow_id: u64, query: &str, qtype: u16) -> DnsRecord {
        DnsRecord {
            time: 1_000,
            uid: Some(1000),
            flow_id: Some(flow_id),
            client: "10.215.173.1:5000".parse().unwrap(),
            server: "10.215.173.2:53".parse::<SocketAddr>().unwrap(),
            transport: Proto::Udp,
            query: query.into(),
            qtype,
            rcode: Some(0),
            answers: Vec::new(),
            answer_ips: Vec::new(),
            ttl: None,
            ech_configs: Vec::new(),
        }
    }

    /// Three connections to example.org (one still open, one reported twice as it grew), one to
    /// an unnamed address, and two DNS flows to the resolver carrying an A and an AAAA lookup
    /// each: 4 contacts with 2 destinations, 4 lookups in 2 DNS flows.
    fn known_traffic() -> Vec<Event> {
        let https = "93.184.215.14:443";
        let grown = flow(2, Proto::Tcp, https, Some("example.org"), 100, 1_000);
        let mut dns = Vec::new();
        for (id, port) in [(10, 5000), (11, 5001)] {
            let mut record = flow(id, Proto::Udp, "10.215.173.2:53", None, 40, 120);
            record.key.src.set_port(port);
            // The engine names a DNS flow after its first query; it is still no contact.
            record.offer_name("example.org", NameSource::DnsQuery);
            record.app_info.l7 = Some(L7_DNS.into());
            dns.push(record);
        }
        vec![
            Event::Flow(dns[0].clone()),
            Event::Dns(lookup(10, "example.org", 1)),
            Event::Dns(lookup(10, "example.org", 28)),
            Event::FlowClosed(dns[0].clone()),
            Event::Flow(dns[1].clone()),
            Event::Dns(lookup(11, "example.org", 1)),
            Event::Dns(lookup(11, "example.org", 28)),
            Event::FlowClosed(flow(1, Proto::Tcp, https, Some("example.org"), 100, 1_000)),
            Event::Flow(flow(2, Proto::Tcp, https, Some("example.org"), 10, 0)),
            Event::FlowClosed(grown),
            Event::Flow(flow(3, Proto::Tcp, https, Some("example.org"), 0, 0)),
            Event::FlowClosed(flow(4, Proto::Udp, "198.18.0.7:7", None, 5, 5)),
            Event::App {
                uid: 1000,
                name: "user".into(),
            },
        ]
    }

    #[test]
    fn contacts_and_lookups_are_counted_apart() {
        let progress = Arc::new(Progress::default());
        let mut tally = Tally::new(progress.clone(), None);
        for event in known_traffic() {
            tally.apply(&event);
        }
        // Flow 3 is the one TCP flow still open.
        assert_eq!(
            progress.open_tcp.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        let summary = tally.summary();
        let example = ("example.org".to_string(), Proto::Tcp, 443);
        assert_eq!(
            summary.contacts[&example],
            Traffic {
                flows: 3,
                bytes_up: 200,
                bytes_down: 2_000
            }
        );
        assert_eq!(summary.contacts.len(), 2, "{:?}", summary.contacts);
        assert_eq!((summary.dns.flows, summary.lookups), (2, 4));

        let text = summary.render(Path::new("p.db"), 3);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].contains("CONTACTS") && !text.contains("FLOWS"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("example.org") && lines[2].contains(" 3 "),
            "{text}"
        );
        assert!(
            text.contains("4 contacts with 2 destinations, 205 B up, 2.0 kB down\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "4 DNS lookups in 2 DNS flows, 80 B up, 240 B down (not counted as contacts)\n"
            ),
            "{text}"
        );
        assert!(text.contains("saved to p.db (session 3)"), "{text}");
        // The resolver is no destination of the table.
        assert!(!text.contains("10.215.173.2"), "{text}");
    }

    #[test]
    fn dropped_packets_say_how_many_were_fragments() {
        let summary = Summary {
            packets_dropped: 5,
            fragments_dropped: 3,
            ..Summary::default()
        };
        let text = summary.render(Path::new("p.db"), 1);
        assert!(
            text.contains(
                "5 packets dropped by the engine (3 of them IP fragments whose datagram never came whole)\n"
            ),
            "{text}"
        );
        let summary = Summary {
            packets_dropped: 1,
            ..Summary::default()
        };
        let text = summary.render(Path::new("p.db"), 1);
        assert!(text.contains("1 packet dropped by the engine\n"), "{text}");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1536), "1.5 kB");
        assert_eq!(human_bytes(100 * 1000 * 1000), "100.0 MB");
    }
}
