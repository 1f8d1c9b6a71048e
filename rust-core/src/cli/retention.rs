//! `phonehome retention`: show or set how much history the database keeps, and prune now.

use std::path::PathBuf;

use super::CliError;
use crate::store::report::human_bytes;
use crate::store::{Reader, Retention};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
The settings live in the database, so the app and the CLI share them. A running capture prunes
in small batches on its writer thread (every minute); --prune applies them now, in short
transactions that a running capture waits for at most briefly.

Examples:
  phonehome retention --db phonehome.db
  phonehome retention --db phonehome.db --keep-days 30 --keep-mb 500 --prune
  phonehome retention --db phonehome.db --keep-all")]
pub struct RetentionArgs {
    /// The PhoneHome database.
    #[arg(long, value_name = "FILE")]
    pub db: PathBuf,
    /// Keep this many days of flows and DNS queries (counted from when a session was
    /// recorded: an analysed old pcap is kept this long after the analysis).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_days: Option<u32>,
    /// Keep the database's live data under this many megabytes (oldest goes first).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_mb: Option<u64>,
    /// Keep everything (clears both limits).
    #[arg(long, conflicts_with_all = ["keep_days", "keep_mb"])]
    pub keep_all: bool,
    /// Delete what the settings no longer keep, now.
    #[arg(long)]
    pub prune: bool,
}

pub fn run(args: RetentionArgs) -> Result<i32, CliError> {
    let reader = Reader::open(&args.db)?;
    let mut retention = reader.retention()?;
    if args.keep_all {
        retention = Retention::default();
    }
    if args.keep_days.is_some() {
        retention.max_age_days = args.keep_days;
    }
    if args.keep_mb.is_some() {
        retention.max_mb = args.keep_mb;
    }
    if args.keep_all || args.keep_days.is_some() || args.keep_mb.is_some() {
        reader.set_retention(&retention)?;
    }
    if args.prune {
        let deleted = reader.prune(&retention)?;
        println!("pruned {deleted} rows");
    }
    let days = retention
        .max_age_days
        .map(|d| format!("{d} days"))
        .unwrap_or("no age limit".into());
    let mb = retention
        .max_mb
        .map(|m| format!("{m} MB"))
        .unwrap_or("no size limit".into());
    println!(
        "keep: {days}, {mb}; database holds {} of live data",
        human_bytes(reader.used_bytes()? as i64)
    );
    Ok(0)
}
