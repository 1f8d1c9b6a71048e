//! `phonehome lookup` as a user runs it.

use std::process::Command;

fn lookup(args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_phonehome"))
        .arg("lookup")
        .args(args)
        .args(["--format", "jsonl"])
        .output()
        .expect("run phonehome");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn hosts_and_addresses_one_row_each() {
    let rows = lookup(&[
        "data.mistat.intl.xiaomi.com",
        "something.tracking.miui.com",
        "new.xmpush.example",
        "161.117.180.178",
    ]);
    assert_eq!(rows.len(), 4);
    for key in [
        "query",
        "vendor",
        "category",
        "category_guessed",
        "purpose",
        "country",
        "asn",
        "as_name",
    ] {
        assert!(rows.iter().all(|r| r.get(key).is_some()), "missing {key}");
    }
    assert_eq!(rows[0]["vendor"], "xiaomi");
    assert_eq!(rows[0]["category"], "analytics/telemetry");
    assert_eq!(rows[0]["category_guessed"], false);
    assert_eq!(rows[1]["category"], "analytics/telemetry");
    assert_eq!(rows[2]["vendor"], serde_json::Value::Null);
    assert_eq!(rows[3]["category"], "push");
    assert_eq!(rows[3]["query"], "161.117.180.178");
}
