//! A pcapng written by `PcapngWriter` is read back by Wireshark's tshark (when installed) and by
//! `phonehome analyze`'s reader, with every packet's owner.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::mpsc;

use phonehome::flow::Event;
use phonehome::pcap::{observe_file, PcapngWriter};

fn packet(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let src = Ipv4Addr::new(198, 18, 0, 2).octets();
    let dst = Ipv4Addr::new(198, 18, 1, 1).octets();
    let mut udp = Vec::new();
    udp.extend(sport.to_be_bytes());
    udp.extend(dport.to_be_bytes());
    udp.extend(((8 + payload.len()) as u16).to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(payload);
    let mut ip = vec![0x45, 0];
    ip.extend(((20 + udp.len()) as u16).to_be_bytes());
    ip.extend([0, 1, 0x40, 0, 64, 17]);
    // A correct header checksum keeps tshark's expert info quiet.
    let mut hdr = ip.clone();
    hdr.extend([0, 0]);
    hdr.extend(src);
    hdr.extend(dst);
    let mut sum: u32 = hdr.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip.extend((!(sum as u16)).to_be_bytes());
    ip.extend(src);
    ip.extend(dst);
    ip.extend(udp);
    ip
}

#[test]
fn written_pcapng_reads_back_in_tshark_and_analyze() {
    let dir = std::env::temp_dir().join(format!("phonehome-pcapng-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("session.pcapng");
    let mut w = PcapngWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
    w.write_packet(1_700_000_000_000, &packet(40000, 4000, b"one"), Some(10_100), Some("com.xiaomi.xmsf")).unwrap();
    w.write_packet(1_700_000_000_010, &packet(40001, 4000, b"two"), Some(1000), None).unwrap();
    w.write_packet(1_700_000_000_020, &packet(40002, 4000, b"three"), None, None).unwrap();
    w.into_inner().unwrap();

    let (tx, rx) = mpsc::channel();
    let report = observe_file(&path, tx, |_| {}).unwrap();
    assert!(report.error.is_none());
    assert_eq!((report.stats.frames, report.stats.flows), (3, 3));
    let events: Vec<Event> = rx.try_iter().collect();
    let uids: Vec<Option<u32>> = events
        .iter()
        .filter_map(|e| match e {
            Event::FlowClosed(r) => Some(r.uid),
            _ => None,
        })
        .collect();
    assert_eq!(uids, vec![Some(10_100), Some(1000), None]);
    assert!(events.contains(&Event::App { uid: 10_100, name: "com.xiaomi.xmsf".into() }));

    match Command::new("tshark")
        .args(["-r"])
        .arg(&path)
        .args(["-T", "fields", "-e", "frame.comment", "-e", "udp.srcport"])
        .output()
    {
        Err(_) => println!("SKIPPED tshark check: tshark not installed (apt-get install tshark)"),
        Ok(out) => {
            assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines, vec!["u-10100 com.xiaomi.xmsf\t40000", "u-1000\t40001", "\t40002"]);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
