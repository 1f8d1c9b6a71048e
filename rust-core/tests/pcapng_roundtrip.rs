//! A pcapng written by `PcapngWriter` is read back by Wireshark's tshark (when installed) and by
//! `phonehome analyze`'s reader, with every packet's owner.

use std::process::Command;
use std::sync::mpsc;

use phonehome::flow::Event;
use phonehome::pcap::{PcapngWriter, observe_file};

#[path = "common/udp_packet.rs"]
mod udp_packet;
use udp_packet::udp_packet;

#[test]
fn written_pcapng_reads_back_in_tshark_and_analyze() {
    let dir = std::env::temp_dir().join(format!("phonehome-pcapng-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("session.pcapng");
    let mut w = PcapngWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
    w.write_packet(
        1_700_000_000_000,
        &udp_packet(40000, 4000, b"one"),
        Some(10_100),
        Some("com.xiaomi.xmsf"),
    )
    .unwrap();
    w.write_packet(
        1_700_000_000_010,
        &udp_packet(40001, 4000, b"two"),
        Some(1000),
        None,
    )
    .unwrap();
    w.write_packet(
        1_700_000_000_020,
        &udp_packet(40002, 4000, b"three"),
        None,
        None,
    )
    .unwrap();
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
    assert!(events.contains(&Event::App {
        uid: 10_100,
        name: "com.xiaomi.xmsf".into()
    }));

    match Command::new("tshark")
        .args(["-r"])
        .arg(&path)
        .args(["-T", "fields", "-e", "frame.comment", "-e", "udp.srcport"])
        .output()
    {
        Err(_) => println!("SKIPPED tshark check: tshark not installed (apt-get install tshark)"),
        Ok(out) => {
            assert!(
                out.status.success(),
                "tshark: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(
                lines,
                vec!["u-10100 com.xiaomi.xmsf\t40000", "u-1000\t40001", "\t40002"]
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
