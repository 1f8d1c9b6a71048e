//! The companies behind endpoints: who owns the name an app asked for (`company`) and whose
//! network served it (`provider`).
//!
//! The table is compiled in from `data/companies.tsv` (registered domains and AS numbers, public
//! facts; the descriptions are ours). A host is attributed by its registered domain, as the
//! Public Suffix List defines it (the `psl` crate): `a.b.doubleclick.net` -> `doubleclick.net`.
//! Under a private suffix such as `s3.amazonaws.com` the customer's bucket is its own registered
//! domain; the suffix's own registered domain (`amazonaws.com`) then names the operator.
//! Xiaomi endpoints the catalog knows (including its fallback addresses and Mi Push) are
//! Xiaomi's. A flow never named is attributed by the AS holder of its server address.
//!
//! A CNAME to a CDN does not change the company: flows keep the name the app asked for, so
//! `www.mi.com` served from Akamai's edge is company Xiaomi, provider Akamai.

use std::collections::HashMap;
use std::sync::OnceLock;

const TABLE: &str = include_str!("../../data/companies.tsv");

/// One company of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Company {
    pub name: &'static str,
    /// What the company's endpoints on a phone are for (our text).
    pub description: &'static str,
}

/// Who an endpoint belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attribution {
    /// The company owning the name the app asked for; by AS holder when the flow had no name.
    pub company: Option<&'static str>,
    /// The company whose network (AS) served the flow, e.g. a CDN; None when the AS is unknown
    /// or not in the table.
    pub provider: Option<&'static str>,
}

struct Table {
    companies: HashMap<&'static str, Company>,
    domains: HashMap<&'static str, &'static str>,
    asns: HashMap<u32, &'static str>,
}

/// Lines of the table that do not parse; a test keeps this empty.
fn parse(text: &'static str) -> (Table, Vec<&'static str>) {
    let mut table = Table {
        companies: HashMap::new(),
        domains: HashMap::new(),
        asns: HashMap::new(),
    };
    let mut bad = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut cols = line.split('\t');
        let (Some(kind), Some(key), Some(value), None) =
            (cols.next(), cols.next(), cols.next(), cols.next())
        else {
            bad.push(line);
            continue;
        };
        match kind {
            "company" => {
                table.companies.insert(
                    key,
                    Company {
                        name: key,
                        description: value,
                    },
                );
            }
            "domain" => {
                table.domains.insert(key, value);
            }
            "asn" => match key.parse::<u32>() {
                Ok(asn) => {
                    table.asns.insert(asn, value);
                }
                Err(_) => bad.push(line),
            },
            _ => bad.push(line),
        }
    }
    (table, bad)
}

fn table() -> &'static Table {
    static TABLE_ONCE: OnceLock<Table> = OnceLock::new();
    TABLE_ONCE.get_or_init(|| parse(TABLE).0)
}

/// The registered domain of `host` (lower case, no trailing dot), per the Public Suffix List.
pub fn registered_domain(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    psl::domain_str(&host).map(str::to_owned)
}

/// The company owning `host`'s registered domain.
pub fn of_host(host: &str) -> Option<&'static Company> {
    let t = table();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let lookup = |name: &str| t.domains.get(name).and_then(|c| t.companies.get(c));
    let suffix = psl::suffix(host.as_bytes())?;
    if let Some(domain) = psl::domain(host.as_bytes())
        && let Some(c) = std::str::from_utf8(domain.as_bytes()).ok().and_then(lookup)
    {
        return Some(c);
    }
    if suffix.typ() != Some(psl::Type::Private) {
        return None;
    }
    // "bucket.s3.amazonaws.com", "a1.akamaized.net": a private suffix belongs to its operator,
    // whose domain is the suffix or one of its parents.
    let suffix = std::str::from_utf8(suffix.as_bytes()).ok()?;
    let mut rest = suffix;
    loop {
        if let Some(c) = lookup(rest) {
            return Some(c);
        }
        match rest.split_once('.') {
            Some((_, parent)) if parent.contains('.') => rest = parent,
            _ => return None,
        }
    }
}

/// The company holding AS number `asn`.
pub fn of_asn(asn: u32) -> Option<&'static Company> {
    let t = table();
    t.asns.get(&asn).and_then(|name| t.companies.get(name))
}

/// The company table's name for the vendor the Xiaomi catalog calls `catalog::VENDOR`.
const XIAOMI: &str = "Xiaomi";

/// A company by its name in the table.
pub fn by_name(name: &str) -> Option<&'static Company> {
    table().companies.get(name)
}

/// Attribute one endpoint: `hostname` the name the app asked for (None when never named, or an
/// address), `vendor` the Xiaomi catalog's verdict, `asn` the AS of the server address.
pub fn attribute(hostname: Option<&str>, vendor: Option<&str>, asn: Option<u32>) -> Attribution {
    let provider = asn.and_then(of_asn).map(|c| c.name);
    let name = hostname.filter(|h| h.parse::<std::net::IpAddr>().is_err());
    let xiaomi = vendor
        .is_some_and(|v| v.eq_ignore_ascii_case(crate::catalog::VENDOR))
        .then(|| by_name(XIAOMI).map(|c| c.name))
        .flatten();
    let company = match name {
        Some(host) => of_host(host).map(|c| c.name).or(xiaomi),
        None => xiaomi.or(provider),
    };
    Attribution { company, provider }
}

/// Every AS number of the table with its company, by number.
pub fn asns() -> Vec<(u32, &'static str)> {
    let mut v: Vec<_> = table().asns.iter().map(|(a, n)| (*a, *n)).collect();
    v.sort_unstable();
    v
}

/// Every company of the table, by name.
pub fn all() -> Vec<&'static Company> {
    let mut v: Vec<_> = table().companies.values().collect();
    v.sort_by_key(|c| c.name);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// True when `name` is a registered domain or a private public suffix (both are table keys).
    fn is_table_key(name: &str) -> bool {
        registered_domain(name).as_deref() == Some(name)
            || psl::suffix(name.as_bytes()).is_some_and(|s| {
                s.typ() == Some(psl::Type::Private) && s.as_bytes() == name.as_bytes()
            })
    }

    #[test]
    fn table_parses_and_every_reference_names_a_company() {
        let (t, bad) = parse(TABLE);
        assert!(bad.is_empty(), "unparsable lines: {bad:?}");
        assert!(t.companies.len() >= 40, "{} companies", t.companies.len());
        for (domain, name) in &t.domains {
            assert!(t.companies.contains_key(name), "{domain} -> unknown {name}");
            // Every key is a registered domain (or a private suffix), so a lookup reaches it.
            assert!(is_table_key(domain), "{domain} is not a registered domain");
        }
        for (asn, name) in &t.asns {
            assert!(t.companies.contains_key(name), "AS{asn} -> unknown {name}");
        }
        for must in [
            "Google",
            "Meta",
            "Xiaomi",
            "Amazon",
            "Microsoft",
            "Apple",
            "Alibaba",
            "Tencent",
            "ByteDance",
            "Huawei",
            "Yandex",
            "Baidu",
            "Samsung",
            "Cloudflare",
            "Akamai",
            "AppsFlyer",
            "Adjust",
            "Unity",
            "AppLovin",
            "ironSource",
            "Branch",
        ] {
            assert!(t.companies.contains_key(must), "{must} missing");
        }
    }

    #[test]
    fn hosts_by_registered_domain() {
        let name = |h: &str| of_host(h).map(|c| c.name);
        assert_eq!(name("googleads.g.doubleclick.net"), Some("Google"));
        assert_eq!(name("graph.facebook.com."), Some("Meta"));
        assert_eq!(name("t.appsflyer.com"), Some("AppsFlyer"));
        assert_eq!(name("www.amazon.co.uk"), Some("Amazon"));
        // A customer's bucket under Amazon's private suffix: the operator of the suffix.
        assert_eq!(name("my-bucket.s3.amazonaws.com"), Some("Amazon"));
        assert_eq!(name("a1.akamaized.net"), Some("Akamai"));
        // Not fooled by a look-alike or by a longer registered domain.
        assert_eq!(name("google.com.evil.example"), None);
        assert_eq!(name("notgoogle.com"), None);
        assert_eq!(name("co.uk"), None);
    }

    #[test]
    fn cname_to_cdn_keeps_the_company_and_names_the_provider() {
        // www.mi.com resolved through a CNAME to Akamai's edge (AS20940).
        let a = attribute(Some("www.mi.com"), None, Some(20940));
        assert_eq!(a.company, Some("Xiaomi"));
        assert_eq!(a.provider, Some("Akamai"));
        // A Xiaomi endpoint the catalog knows by address only.
        let a = attribute(None, Some("Xiaomi"), Some(16509));
        assert_eq!((a.company, a.provider), (Some("Xiaomi"), Some("Amazon")));
        // No name: the AS holder.
        let a = attribute(None, None, Some(15169));
        assert_eq!((a.company, a.provider), (Some("Google"), Some("Google")));
        // A name outside the table is nobody's we know, even on Google's network.
        let a = attribute(Some("shop.example.org"), None, Some(396982));
        assert_eq!((a.company, a.provider), (None, Some("Google")));
        // An address used as a name counts as no name.
        let a = attribute(Some("8.8.8.8"), None, Some(15169));
        assert_eq!(a.company, Some("Google"));
    }
}
