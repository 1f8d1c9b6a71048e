//! The real converted country/ASN file (scripts/fetch-geo.sh), when present.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use phonehome::geo::{self, GeoDb};

fn geo_file() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os(geo::ENV_VAR) {
        candidates.push(PathBuf::from(p));
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join(geo::FILE_NAME));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target")
            .join(geo::FILE_NAME),
    );
    candidates.into_iter().find(|p| p.is_file())
}

#[test]
fn real_database_knows_well_known_networks() {
    let Some(path) = geo_file() else {
        // Straight to stderr, so scripts/test.sh counts a skip, not a pass.
        let message = format!(
            "SKIPPED no {} (run scripts/fetch-geo.sh, or set {})\n",
            geo::FILE_NAME,
            geo::ENV_VAR
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), message.as_bytes());
        return;
    };
    let db = GeoDb::open(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(db.len() > 100_000, "{} ranges only", db.len());
    let at = |s: &str| db.lookup(s.parse::<IpAddr>().unwrap());

    let google = at("8.8.8.8").unwrap();
    assert_eq!(
        (google.country.as_deref(), google.asn),
        (Some("US"), Some(15169))
    );
    assert!(google.as_name.unwrap_or_default().contains("Google"));
    let cloudflare = at("1.1.1.1").unwrap();
    assert_eq!(cloudflare.asn, Some(13335));
    // The MiPush fallback address sits in Alibaba Cloud's Singapore space (facts.md 2.2).
    let push = at("161.117.97.14").unwrap();
    assert_eq!(
        (push.country.as_deref(), push.asn),
        (Some("SG"), Some(45102))
    );
    let v6 = at("2001:4860:4860::8888").unwrap();
    assert_eq!(v6.asn, Some(15169));
    assert_eq!(at("10.1.2.3"), None);
    assert_eq!(at("198.18.0.1"), None);
    assert_eq!(at("fd00::1"), None);
}

/// Every AS number in the company table is held by that company, as the AS data says.
#[test]
fn company_table_asns_match_the_as_holders() {
    let Some(path) = geo_file() else {
        println!("SKIPPED: no {}", geo::FILE_NAME);
        return;
    };
    let db = GeoDb::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut wrong = Vec::new();
    for (asn, company) in phonehome::company::asns() {
        let holder = db.as_name(asn).unwrap_or_default().to_ascii_lowercase();
        // How the AS data spells each holder.
        let expect = match company {
            "Meta" => "facebook",
            "X" => "twitter",
            "OVHcloud" => "ovh",
            other => other,
        }
        .to_ascii_lowercase();
        let first_word = expect.split(' ').next().unwrap_or(&expect).to_owned();
        let ok = holder.contains(&first_word)
            || (company == "Akamai" && holder.contains("linode"))
            || (company == "Yahoo" && holder.contains("oath"))
            || (company == "ByteDance" && holder.contains("tiktok"));
        if !ok {
            wrong.push(format!("AS{asn} {company}: AS data says {holder:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
