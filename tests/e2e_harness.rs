//! The rig itself, without the engine: servers answer over the direct veth path, and the
//! capture namespace (TUN, addresses, routes) is built as the engine expects. If these fail,
//! the end-to-end tests in e2e_capture.rs cannot mean anything.

mod rig;

use std::time::Duration;

use rig::{Rig, root_or_skip};

const T: Duration = Duration::from_secs(60);

#[test]
fn direct_path_serves_http_echo_udp_dns_and_refuses() {
    if !root_or_skip("direct_path_serves_http_echo_udp_dns_and_refuses") {
        return;
    }
    let rig = Rig::new("direct");
    let (_, sha) = rig.random_file("blob.bin", 3_000_000);
    let py = Rig::clients_py();
    let out = rig.direct(
        &format!(
            "set -e
             curl -sS --max-time 20 http://198.18.0.1/files/blob.bin | sha256sum
             curl -sS --max-time 20 -g 'http://[fd00:198:18::1]/blob/1000' | wc -c
             curl -sS --max-time 20 --data-binary @blob.bin http://198.18.0.1/upload
             python3 {py} tcp-many 198.18.0.1 7 50 100
             python3 {py} udp-echo fd00:198:18::1 7 20 500
             python3 {py} refused 198.18.0.1 9
             dig +short +time=2 +tries=1 @198.18.0.1 a.phonehome.test A
             dig +short +time=2 +tries=1 @198.18.0.1 a.phonehome.test AAAA"
        ),
        T,
    );
    out.assert_success("direct path");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().next(),
        Some(sha.as_str()),
        "{}",
        out.stdout
    );
    assert_eq!(lines[1].trim(), "1000");
    assert_eq!(lines[2], format!("{sha} 3000000"));
    assert_eq!(lines[3], "ok 50");
    assert_eq!(lines[4], "ok 20");
    assert_eq!(lines[5], "refused");
    assert_eq!(lines[6], "198.18.0.1");
    assert_eq!(lines[7], "fd00:198:18::1");

    // Server-side accounting: the HTTP download wrote headers + exactly the file.
    let logs = rig.servers.wait_tcp_logs(53, Duration::from_secs(10));
    let download = logs
        .iter()
        .find(|l| l.request.as_deref() == Some("GET /files/blob.bin HTTP/1.1"))
        .unwrap();
    assert!(
        download.bytes_out > 3_000_000 && download.bytes_out < 3_000_200,
        "{download:?}"
    );
    let echoes: Vec<_> = logs.iter().filter(|l| l.server_port == 7).collect();
    assert_eq!(echoes.len(), 50);
    assert!(
        echoes
            .iter()
            .all(|l| l.bytes_in == 100 && l.bytes_out == 100 && l.end == "eof"),
        "{echoes:?}"
    );
}

#[test]
fn capture_namespace_has_tun_addresses_and_default_routes() {
    if !root_or_skip("capture_namespace_has_tun_addresses_and_default_routes") {
        return;
    }
    use phonehome::linux::netns::{Namespace, NetConfig};
    let config = NetConfig {
        tun_name: "phtest0".into(),
        mtu: 1400,
        addr_v4: "10.215.173.1".parse().unwrap(),
        addr_v6: Some("fd00:5048::1".parse().unwrap()),
        offload: false,
    };
    let (ns, tun) = Namespace::create(&config).unwrap();
    assert_eq!(ns.tun_name(), "phtest0");
    assert!(ns.has_ipv6());
    let show = |args: &'static [&'static str]| {
        ns.run(move || {
            std::process::Command::new("ip")
                .args(args)
                .output()
                .unwrap()
        })
        .unwrap()
    };
    let link = String::from_utf8_lossy(&show(&["link", "show", "phtest0"]).stdout).to_string();
    assert!(link.contains("mtu 1400") && link.contains("UP"), "{link}");
    let v4 = String::from_utf8_lossy(&show(&["-4", "route"]).stdout).to_string();
    assert!(v4.contains("default dev phtest0"), "{v4}");
    let v6 = String::from_utf8_lossy(&show(&["-6", "route"]).stdout).to_string();
    assert!(v6.contains("default dev phtest0"), "{v6}");
    // The TUN device is not in this (the test's) namespace, but the namespace's /proc view has it.
    let here = std::fs::read_to_string("/proc/self/net/dev").unwrap();
    assert!(!here.contains("phtest0"));
    let there = std::fs::read_to_string(ns.proc_net_dir().join("dev")).unwrap();
    assert!(there.contains("phtest0"), "{there}");

    // A packet sent inside the namespace arrives on the TUN fd as a bare IPv4 packet.
    ns.run(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(b"hello", "198.18.9.9:4242").unwrap();
    })
    .unwrap();
    let mut buf = [0u8; 2048];
    let mut got = None;
    for _ in 0..100 {
        let n = unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&tun),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n > 0 && buf[0] >> 4 == 4 {
            got = Some(n as usize);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let n = got.expect("no IPv4 packet on the TUN fd");
    assert_eq!(&buf[12..16], &[10, 215, 173, 1]);
    assert_eq!(&buf[16..20], &[198, 18, 9, 9]);
    assert_eq!(&buf[n - 5..n], b"hello");
}
