//! `phonehome analyze` as a user runs it: a capture into the database, and a damaged capture
//! that keeps what it held. The captures are made here with PcapngWriter.

use std::path::Path;
use std::process::Command;

use phonehome::pcap::PcapngWriter;
use phonehome::store::{FlowFilter, Reader};

#[path = "common/phonehome_bin.rs"]
mod phonehome_bin;
use phonehome_bin::phonehome_ok;
#[path = "common/udp_packet.rs"]
mod udp_packet;
use udp_packet::udp_packet;

fn capture(path: &Path, flows: u16) {
    let mut w = PcapngWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for i in 0..flows {
        let p = udp_packet(40_000 + i, 5000, b"payload");
        w.write_packet(
            1_700_000_000_000 + i64::from(i),
            &p,
            Some(10_000 + u32::from(i)),
            Some("com.example"),
        )
        .unwrap();
    }
    w.into_inner().unwrap();
}

fn analyze(db: &Path, file: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_phonehome"))
        .args(["analyze", "--db"])
        .arg(db)
        .arg(file)
        .output()
        .expect("run phonehome");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn analyze_stores_flows_and_survives_damage() {
    let dir = std::env::temp_dir().join(format!("phonehome-analyze-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("a.db");

    let good = dir.join("good.pcapng");
    capture(&good, 10);
    let (code, stderr) = analyze(&db, &good);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("10 flows"), "{stderr}");
    // The session note names the file, not the folders it sits in (they can name the user).
    let note: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT note FROM sessions ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(note, "analyze good.pcapng");

    // Cut the last packet in half: the nine before it are stored, the error names the offset.
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.join("cut.pcapng");
    std::fs::write(&cut, &bytes[..bytes.len() - 30]).unwrap();
    let (code, stderr) = analyze(&db, &cut);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cut.pcapng: file truncated at byte offset"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the 9 flows read before it were stored"),
        "{stderr}"
    );

    // One flow is "1 flow", also when a cut file kept only one (a database of their own).
    let singular_db = dir.join("singular.db");
    let one = dir.join("one.pcapng");
    capture(&one, 1);
    let (code, stderr) = analyze(&singular_db, &one);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("one.pcapng: 1 packet, 1 flow, 0 DNS records,"),
        "{stderr}"
    );
    let two = dir.join("two.pcapng");
    capture(&two, 2);
    let two_bytes = std::fs::read(&two).unwrap();
    let cut_two = dir.join("cut-two.pcapng");
    std::fs::write(&cut_two, &two_bytes[..two_bytes.len() - 30]).unwrap();
    let (code, stderr) = analyze(&singular_db, &cut_two);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("the 1 flow read before it was stored"),
        "{stderr}"
    );

    // A missing file and a non-capture are named, get no session, and do not stop the others.
    let text = dir.join("notes.txt");
    std::fs::write(&text, "not a capture").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_phonehome"))
        .args(["analyze", "-q", "--db"])
        .arg(&db)
        .args([dir.join("missing.pcap"), text.clone(), good.clone()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("missing.pcap: No such file"), "{stderr}");
    assert!(
        stderr.contains("notes.txt: not a pcap or pcapng file"),
        "{stderr}"
    );

    let reader = Reader::open_read_only(&db).unwrap();
    let sessions = reader.sessions().unwrap();
    assert_eq!(sessions.len(), 3, "one session per analyzed capture");
    let flows = reader.flows(&FlowFilter::default()).unwrap();
    assert_eq!(flows.len(), 29);
    assert!(
        flows
            .iter()
            .all(|f| f.uid.is_some() && f.dst_port == 5000 && f.bytes_up == 7)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pcap as PCAPdroid writes it with its trailer on: a fake Ethernet header (zero MACs), the IP
/// packet, padding, then magic, uid and app name (big-endian) and an FCS.
#[test]
fn pcapdroid_trailer_gives_flows_their_app() {
    let dir = std::env::temp_dir().join(format!("phonehome-trailer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut file = Vec::new();
    for word in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65_535, 1] {
        file.extend(word.to_le_bytes());
    }
    for (i, (uid, app)) in [(10_145i32, "com.miui.weather2"), (1000, "android")]
        .iter()
        .enumerate()
    {
        let ip = udp_packet(45_000 + i as u16, 443, b"quic-ish payload");
        let mut frame = vec![0u8; 12];
        frame.extend([0x08, 0x00]);
        frame.extend(&ip);
        frame.resize(frame.len().next_multiple_of(4), 0);
        frame.extend(0x0107_2021u32.to_be_bytes());
        frame.extend(uid.to_be_bytes());
        let mut name = [0u8; 20];
        name[..app.len()].copy_from_slice(app.as_bytes());
        frame.extend(name);
        frame.extend([0u8; 4]);
        for word in [
            1_700_000_000u32 + i as u32,
            0,
            frame.len() as u32,
            frame.len() as u32,
        ] {
            file.extend(word.to_le_bytes());
        }
        file.extend(frame);
    }
    let path = dir.join("PCAPdroid_trailer.pcap");
    std::fs::write(&path, &file).unwrap();
    let db = dir.join("t.db");
    let (code, stderr) = analyze(&db, &path);
    assert_eq!(code, 0, "{stderr}");

    let reader = Reader::open_read_only(&db).unwrap();
    let mut flows = reader.flows(&FlowFilter::default()).unwrap();
    flows.sort_by_key(|f| f.src_port);
    let owners: Vec<(Option<u32>, Option<String>)> =
        flows.iter().map(|f| (f.uid, f.app.clone())).collect();
    assert_eq!(
        owners,
        vec![
            (Some(10_145), Some("com.miui.weather2".into())),
            (Some(1000), Some("android".into()))
        ]
    );
    // The trailer is not payload.
    assert!(flows.iter().all(|f| f.bytes_up == 16));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pcapng section header with `shb_hardware` and `shb_os`, as PCAPdroid writes it.
fn section_header(hardware: &str, os: &str) -> Vec<u8> {
    let mut body = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    body.extend([1, 0, 0, 0]);
    body.extend(u64::MAX.to_le_bytes());
    for (code, value) in [(2u16, hardware), (3, os), (4, "PCAPdroid v1.8.0")] {
        body.extend(code.to_le_bytes());
        body.extend((value.len() as u16).to_le_bytes());
        body.extend(value.as_bytes());
        body.resize(body.len().next_multiple_of(4), 0);
    }
    body.extend([0u8; 4]);
    let total = (12 + body.len() as u32).to_le_bytes();
    let mut block = 0x0a0d_0d0au32.to_le_bytes().to_vec();
    block.extend(total);
    block.extend(body);
    block.extend(total);
    block
}

/// The phone's own address and model in a cleartext datagram are flagged only when `analyze`
/// knows them: from the flags, or from the section header PCAPdroid writes.
#[test]
fn device_context_from_flags_or_section_header_flags_own_ip_and_model() {
    let dir = std::env::temp_dir().join(format!("phonehome-device-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("plain.pcapng");
    let mut w = PcapngWriter::new(std::fs::File::create(&plain).unwrap()).unwrap();
    let payload = b"hello from a Redmi Note 9S at 198.18.0.2, please log me";
    w.write_packet(
        1_700_000_000_000,
        &udp_packet(40_000, 5000, payload),
        Some(10_001),
        None,
    )
    .unwrap();
    w.into_inner().unwrap();

    // The same capture with PCAPdroid's section header in place of the writer's.
    let bytes = std::fs::read(&plain).unwrap();
    let shb_len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let mut described = section_header("Redmi Note 9S", "Android 12");
    described.extend(&bytes[shb_len..]);
    let pcapdroid = dir.join("PCAPdroid_device.pcapng");
    std::fs::write(&pcapdroid, described).unwrap();

    let flagged = |db: &Path, args: &[&str], file: &Path| {
        let mut all = vec!["analyze", "-q", "--db", db.to_str().unwrap()];
        all.extend_from_slice(args);
        all.push(file.to_str().unwrap());
        phonehome_ok(&all);
        let flows = Reader::open_read_only(db)
            .unwrap()
            .flows(&FlowFilter::default())
            .unwrap();
        assert_eq!(flows.len(), 1);
        let f = &flows[0];
        assert!(f.cleartext);
        (f.leaks.clone(), f.descriptors.clone())
    };
    let none: (Vec<String>, Vec<String>) = (vec![], vec![]);
    assert_eq!(flagged(&dir.join("a.db"), &[], &plain), none);
    assert_eq!(
        flagged(
            &dir.join("b.db"),
            &[
                "--device-ip",
                "198.18.0.2",
                "--device-model",
                "Redmi Note 9S"
            ],
            &plain
        ),
        (vec!["own_ip".to_owned()], vec!["model".to_owned()])
    );
    // The section header names the model; the address still needs the flag.
    assert_eq!(
        flagged(&dir.join("c.db"), &[], &pcapdroid),
        (vec![], vec!["model".to_owned()])
    );
    // A flag wins over the section header.
    assert_eq!(
        flagged(
            &dir.join("d.db"),
            &["--device-model", "M2101K7BG"],
            &pcapdroid
        ),
        none
    );
    let _ = std::fs::remove_dir_all(&dir);
}
