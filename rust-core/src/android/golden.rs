//! Golden bytes: the messages below, encoded by prost, must equal the committed files in
//! `proto/golden/`, which the Kotlin `GoldenBytesTest` compares against its protobuf-javalite
//! encoding of the same messages. Drift between the two generated codes fails one side.
//! Regenerate after an intended change with `PHONEHOME_UPDATE_GOLDEN=1 cargo test --features proto golden`.
//! (Kotlin builds the same values in `android-app/src/test/.../GoldenMessages.kt`: keep in step.)

use std::path::PathBuf;

use prost::Message;

use super::proto::*;

pub fn start_config() -> StartConfig {
    StartConfig {
        dns_v4: "198.18.0.53".into(),
        dns_v6: "fd00::53".into(),
        dns_upstream: "198.18.1.1:53".into(),
        mtu: 9000,
        device: "Xiaomi Redmi Note 13 Pro (garnet)".into(),
        os_version: "Android 14 / HyperOS 1.0.7".into(),
        app_version: "0.1.0".into(),
        note: "Grüße, groetjes — 小米".into(),
        retention_days: 30,
        outbound_mark: 0,
        model: "23013RK75C".into(),
        manufacturer: "Xiaomi".into(),
        build_incremental: "OS1.0.7.0.UMCEUXM".into(),
        own_ips: vec!["10.215.173.1".into(), "fd00:7068:6f6d:6500::1".into()],
    }
}

pub fn app_identity() -> AppIdentity {
    AppIdentity {
        uid: 1000,
        packages: vec![
            "android".into(),
            "com.miui.analytics".into(),
            "com.xiaomi.xmsf".into(),
        ],
        label: "Android System".into(),
        system: true,
    }
}

pub fn snapshot() -> Snapshot {
    let destination = Destination {
        vendor: "Xiaomi".into(),
        category: "analytics/telemetry".into(),
        category_guessed: false,
        purpose: "MIUI usage statistics upload".into(),
        country: "SG".into(),
        asn: 45102,
        as_name: "Alibaba (US) Technology Co., Ltd.".into(),
        // Fields added later stay empty here, so the golden bytes do not change.
        ..Destination::default()
    };
    Snapshot {
        totals: Some(Totals {
            running: true,
            session_id: 42,
            started_ms: 1_763_700_000_000,
            flows_opened: 300,
            flows_open: 12,
            bytes_up: 1 << 33,
            bytes_down: 123_456_789,
            packets_dropped: 0,
            xiaomi_flows: 77,
            xiaomi_bytes: 4_096,
            dns_queries: 150,
            error: String::new(),
            contacts: 0,
        }),
        apps: vec![
            AppRow {
                app: Some(app_identity()),
                flows: 80,
                xiaomi_flows: 77,
                xiaomi_hosts: 9,
                bytes_up: 10_000,
                bytes_down: 20_000,
                cleartext_flows: 2,
                leak_flows: 1,
                last_seen_ms: 1_763_700_060_000,
                unattributed: false,
                lookups: 0,
                companies: Vec::new(),
            },
            AppRow {
                app: None,
                flows: 3,
                unattributed: true,
                last_seen_ms: -1,
                ..Default::default()
            },
        ],
        recent: vec![FlowRow {
            id: 7,
            uid: 1000,
            has_uid: true,
            proto: super::proto::Proto::Tcp as i32,
            src: "198.18.0.2:40000".into(),
            dst: "[fd00::1]:443".into(),
            hostname: "data.mistat.intl.xiaomi.com".into(),
            hostname_source: "sni".into(),
            destination: Some(destination),
            bytes_up: 512,
            bytes_down: 2048,
            first_seen_ms: 1_763_700_001_000,
            last_seen_ms: 1_763_700_002_000,
            closed: true,
            cleartext: false,
            leaks: vec!["android-id".into(), "imei".into()],
            l7: "tls".into(),
        }],
        markers: vec![Marker {
            id: 1,
            time_ms: 1_763_700_030_000,
            label: "User Experience Program off".into(),
        }],
    }
}

pub fn compare_request() -> QueryRequest {
    QueryRequest {
        kind: Some(query_request::Kind::Compare(CompareRequest {
            marker_id: 2,
            since_marker_id: 1,
            xiaomi_only: true,
        })),
    }
}

pub fn endpoint_response() -> QueryResponse {
    QueryResponse {
        kind: Some(query_response::Kind::AppDetail(AppDetail {
            row: None,
            endpoints: vec![Endpoint {
                host: "tracking.intl.miui.com".into(),
                ports: vec![80, 443, 65535],
                addresses: vec!["198.18.1.9".into()],
                flows: 1,
                ..Default::default()
            }],
            contacts_per_hour: Vec::new(),
            companies: Vec::new(),
        })),
    }
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../proto/golden")
        .join(format!("{name}.bin"))
}

fn check(name: &str, encoded: Vec<u8>) {
    let path = golden_path(name);
    if std::env::var_os("PHONEHOME_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &encoded).unwrap();
    }
    let golden = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        encoded,
        golden,
        "{name}: prost encoding differs from {}",
        path.display()
    );
}

#[test]
fn golden_bytes_match_the_committed_files() {
    check("start_config", start_config().encode_to_vec());
    check("app_identity", app_identity().encode_to_vec());
    check("snapshot", snapshot().encode_to_vec());
    check("compare_request", compare_request().encode_to_vec());
    check("endpoint_response", endpoint_response().encode_to_vec());
}

#[test]
fn golden_files_decode_to_the_same_values() {
    let read = |name| std::fs::read(golden_path(name)).unwrap();
    assert_eq!(
        StartConfig::decode(read("start_config").as_slice()).unwrap(),
        start_config()
    );
    assert_eq!(
        Snapshot::decode(read("snapshot").as_slice()).unwrap(),
        snapshot()
    );
    assert_eq!(
        QueryRequest::decode(read("compare_request").as_slice()).unwrap(),
        compare_request()
    );
}
