//! `phonehome lookup HOST_OR_IP...`: what the catalog and the offline geo database say.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

use super::CliError;
use crate::catalog;
use crate::geo;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LookupFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON object per line.
    Jsonl,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    phonehome lookup tracking.intl.miui.com data.mistat.xiaomi.com\n  \
    phonehome lookup 161.117.97.14 --format jsonl\n\n\
    Host names are classified by the compiled-in Xiaomi catalog; addresses by Xiaomi's known\n\
    fallback addresses and by the offline country/ASN database (no network lookups, ever;\n\
    a host name is not resolved). Country and AS data: ip-location-db (CC0; AS data CC BY 4.0\n\
    RouteViews, DB-IP, NRO).")]
pub struct LookupArgs {
    /// Host names or IP addresses.
    #[arg(required = true, value_name = "HOST_OR_IP")]
    pub queries: Vec<String>,
    #[arg(long, value_enum, default_value_t = LookupFormat::Table)]
    pub format: LookupFormat,
    /// Country/ASN database (default: $PHONEHOME_GEO, then phonehome-geo.bin next to the binary).
    #[arg(long, value_name = "FILE")]
    pub geo: Option<PathBuf>,
}

#[derive(Serialize, Debug, Default, PartialEq, Eq)]
pub struct LookupRow {
    pub query: String,
    pub vendor: Option<String>,
    pub category: Option<String>,
    pub category_guessed: bool,
    pub purpose: Option<String>,
    pub functional: bool,
    pub country: Option<String>,
    pub asn: Option<u32>,
    pub as_name: Option<String>,
    /// Who owns the name (by registered domain), or the AS holder for an address.
    pub company: Option<String>,
    /// Whose network serves the address (AS holder); only for addresses.
    pub provider: Option<String>,
}

/// The row for one query; `db` is the geo database when one was found.
pub fn lookup_one(query: &str, db: Option<&geo::GeoDb>) -> LookupRow {
    let mut row = LookupRow {
        query: query.to_owned(),
        ..LookupRow::default()
    };
    let ip: Option<IpAddr> = query.trim_matches(['[', ']']).parse().ok();
    let class = match ip {
        Some(ip) => catalog::classify(None, ip, 0),
        None => catalog::classify_host(query),
    };
    if let Some(c) = class {
        row.vendor = Some(c.vendor);
        row.category = Some(c.category);
        row.category_guessed = c.category_guessed;
        row.purpose = Some(c.purpose);
        row.functional = c.functional;
    }
    if let (Some(ip), Some(db)) = (ip, db)
        && let Some(g) = db.lookup(ip)
    {
        row.country = g.country;
        row.asn = g.asn;
        row.as_name = g.as_name;
    }
    let who = crate::company::attribute(
        ip.is_none().then_some(query),
        row.vendor.as_deref(),
        row.asn,
    );
    row.company = who.company.map(str::to_owned);
    row.provider = who.provider.map(str::to_owned);
    row
}

fn cell(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

pub fn run(args: LookupArgs) -> Result<i32, CliError> {
    let db = geo::init(args.geo.as_deref()).map_err(|e| CliError::new(1, e.to_string()))?;
    let any_ip = args
        .queries
        .iter()
        .any(|q| q.trim_matches(['[', ']']).parse::<IpAddr>().is_ok());
    if db.is_none() && any_ip {
        eprintln!(
            "phonehome: no country/ASN database found (looked in: {}); run scripts/fetch-geo.sh",
            geo::search_paths()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let rows: Vec<LookupRow> = args.queries.iter().map(|q| lookup_one(q, db)).collect();
    match args.format {
        LookupFormat::Jsonl => {
            for row in &rows {
                let line =
                    serde_json::to_string(row).map_err(|e| CliError::new(1, e.to_string()))?;
                println!("{line}");
            }
        }
        LookupFormat::Table => {
            let width = rows.iter().map(|r| r.query.len()).max().unwrap_or(5).max(5);
            println!(
                "{:width$}  {:7} {:20} {:5} {:3} {:8} {:24} {:14} {:14} PURPOSE",
                "QUERY",
                "VENDOR",
                "CATEGORY",
                "GUESS",
                "CC",
                "ASN",
                "AS NAME",
                "COMPANY",
                "PROVIDER"
            );
            for r in &rows {
                let asn = r
                    .asn
                    .map(|a| format!("AS{a}"))
                    .unwrap_or_else(|| "-".into());
                let as_name: String = cell(&r.as_name).chars().take(24).collect();
                println!(
                    "{:width$}  {:7} {:20} {:5} {:3} {:8} {:24} {:14} {:14} {}",
                    r.query,
                    cell(&r.vendor),
                    cell(&r.category),
                    if r.category_guessed { "yes" } else { "no" },
                    cell(&r.country),
                    asn,
                    as_name,
                    cell(&r.company),
                    cell(&r.provider),
                    cell(&r.purpose),
                );
            }
        }
    }
    Ok(0)
}
