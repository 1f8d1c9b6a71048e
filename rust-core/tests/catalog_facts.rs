//! The compiled-in catalog against the research facts it was generated from
//! (shared/xiaomi/domains.tsv beside the repository, or $PHONEHOME_FACTS): every host is there
//! with its category, and no purpose text is copied from the facts.

use std::path::{Path, PathBuf};

use phonehome::catalog;

fn facts_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PHONEHOME_FACTS") {
        return Some(PathBuf::from(p));
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        manifest.join("../../shared/xiaomi"),
        manifest.join("../../../shared/xiaomi"),
    ]
    .into_iter()
    .find(|p| p.join("domains.tsv").is_file())
}

#[test]
fn every_fact_row_is_classified_in_our_words() {
    let Some(dir) = facts_dir() else {
        // Straight to stderr, so scripts/test.sh counts a skip, not a pass.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED shared/xiaomi/domains.tsv not found (set PHONEHOME_FACTS)\n",
        );
        return;
    };
    let text = std::fs::read_to_string(dir.join("domains.tsv")).unwrap();
    let mut rows = 0;
    for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
        let c: Vec<&str> = line.split('\t').collect();
        let (domain, kind, category, purpose) = (c[0], c[1], c[2], c[3]);
        rows += 1;
        // A suffix rule also covers its subdomains.
        let probe = if kind == "suffix" {
            format!("zz9.{domain}")
        } else {
            domain.to_owned()
        };
        for host in [domain.to_owned(), probe] {
            let class =
                catalog::classify_host(&host).unwrap_or_else(|| panic!("{host} not classified"));
            assert_eq!(class.vendor, "xiaomi");
            if host == domain {
                let expected = if domain.starts_with("connect.") && domain.ends_with("rom.miui.com")
                {
                    "connectivity" // our refinement of the facts' "other"
                } else {
                    category
                };
                assert_eq!(class.category, expected, "{host}");
                assert!(!class.category_guessed, "{host}");
                assert_ne!(
                    class.purpose, purpose,
                    "{host}: purpose copied from the facts"
                );
            }
        }
    }
    assert!(rows > 600, "{rows} rows");
    // The hosts facts.md names as needed for features are functional, telemetry is not.
    for host in [
        "account.xiaomi.com",
        "update.miui.com",
        "connect.rom.miui.com",
        "api.io.mi.com",
    ] {
        assert!(catalog::classify_host(host).unwrap().functional, "{host}");
    }
    for host in [
        "tracking.intl.miui.com",
        "data.mistat.xiaomi.com",
        "api.ad.intl.xiaomi.com",
    ] {
        assert!(!catalog::classify_host(host).unwrap().functional, "{host}");
    }
}
