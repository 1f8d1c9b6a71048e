//! Issue 8 points 4-5 on live traffic: curl in the capture namespace sends two cleartext requests
//! (the test server closes each connection, so two flows; several requests on one connection are
//! tested on a capture file in evidence_content.rs); the database keeps the request lines with
//! identifier values replaced by their kind, and never the values.

mod rig;

use std::time::Duration;

use phonehome::store::{FlowFilter, Reader};
use rig::{Rig, root_or_skip};

const GAID: &str = "38400000-8cf0-11bd-b23e-10b96e40000d";
const IMEI: &str = "490154203237518";

#[test]
fn cleartext_requests_are_kept_redacted() {
    if !root_or_skip("cleartext_requests_are_kept_redacted") {
        return;
    }
    let rig = Rig::new("httpev");
    // 10.215.173.1 is the capture namespace's own address. Both URLs go over one connection.
    // The script is a file, so the identifiers this test looks for are only in the requests
    // (the session's note is the program's name, never its arguments).
    let script = rig.db_path().with_file_name("requests.sh");
    std::fs::write(
        &script,
        format!(
            "curl -sS --max-time 20 -o /dev/null -o /dev/null \
             -A 'Dalvik/2.1.0 (Linux; U; Android 11; M2101K7BG Build/RKQ1.201022.002)' \
             'http://198.18.0.1/blob/16?gaid={GAID}&imei={IMEI}&ip=10.215.173.1' \
             'http://198.18.0.1/blob/32?order_id=123456789012347'\n"
        ),
    )
    .unwrap();
    let out = rig.capture(
        &format!("sh {}", script.display()),
        Duration::from_secs(120),
    );
    out.assert_success("two cleartext requests");
    let reader = Reader::open_read_only(&rig.db_path()).unwrap();
    let mut flows: Vec<_> = reader
        .flows(&FlowFilter::default())
        .unwrap()
        .into_iter()
        .filter(|f| f.proto == "tcp" && f.dst_port == 80)
        .collect();
    assert_eq!(flows.len(), 2, "{flows:?}");
    flows.sort_by_key(|f| (f.first_seen, f.flow_id));
    let lines: Vec<String> = flows
        .iter()
        .flat_map(|f| &f.http_requests)
        .map(|r| {
            format!(
                "{} {} {}",
                r.method,
                r.host.as_deref().unwrap_or("-"),
                r.path
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            "GET 198.18.0.1 /blob/16?gaid=<advertising-id>&imei=<imei>&ip=<own-ip>".to_string(),
            "GET 198.18.0.1 /blob/32?order_id=123456789012347".to_string(),
        ]
    );
    assert_eq!(flows[0].leaks, vec!["gaid", "imei", "own_ip"]);
    // The 15-digit order number passes Luhn but is no IMEI; the model is a descriptor only.
    assert!(flows[1].leaks.is_empty(), "{:?}", flows[1].leaks);
    assert_eq!(flows[0].descriptors, vec!["model"]);
    assert_eq!(flows[1].descriptors, vec!["model"]);
    drop(reader);
    for entry in std::fs::read_dir(rig.db_path().parent().unwrap()).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().contains(".db") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for secret in [GAID, IMEI] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds {secret}",
                path.display()
            );
        }
    }
}
