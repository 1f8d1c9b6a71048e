//! `phonehome export`: a consistent copy of the database, or flows/DNS rows as CSV or JSONL.

use std::io::Write;
use std::path::PathBuf;

use super::CliError;
use super::flows::check_session;
use crate::store::{self, DnsFilter, FlowFilter, Reader, Window};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// A complete SQLite copy (VACUUM INTO), openable by sqlite3, DB Browser, pandas.
    Sqlite,
    Csv,
    Jsonl,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "\
The SQLite copy is consistent even while a capture writes to the database, and holds every
table plus the views app_summary, domain_summary and country_summary.
CSV and JSONL carry the columns of `phonehome flows` (see `phonehome flows --help`).

Examples:
  phonehome export --db phonehome.db --out evidence.db
  phonehome export --db phonehome.db --format csv --out flows.csv --session 3
  phonehome export --db phonehome.db --format jsonl --dns --out dns.jsonl")]
pub struct ExportArgs {
    /// The PhoneHome database.
    #[arg(long, value_name = "FILE")]
    pub db: PathBuf,
    /// The file to write; must not exist yet.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "sqlite")]
    pub format: ExportFormat,
    /// Export the DNS query log instead of flows (CSV/JSONL).
    #[arg(long)]
    pub dns: bool,
    /// Only this session (CSV/JSONL).
    #[arg(long, value_name = "N")]
    pub session: Option<i64>,
}

pub fn run(args: ExportArgs) -> Result<i32, CliError> {
    let reader = Reader::open(&args.db)?;
    if args.format == ExportFormat::Sqlite && (args.dns || args.session.is_some()) {
        return Err(CliError::usage(
            "--dns and --session apply to --format csv|jsonl; the SQLite copy is whole",
        ));
    }
    if args.out.exists() {
        return Err(CliError::runtime(format!(
            "--out {}: already exists; choose a new file name",
            args.out.display()
        )));
    }
    if let Some(id) = args.session {
        check_session(&reader, "--session", id)?;
    }
    let format = match args.format {
        ExportFormat::Sqlite => {
            reader.export_copy(&args.out)?;
            eprintln!("phonehome: wrote {}", args.out.display());
            return Ok(0);
        }
        ExportFormat::Csv => store::Format::Csv,
        ExportFormat::Jsonl => store::Format::Jsonl,
    };
    let file = std::fs::File::create_new(&args.out)
        .map_err(|e| CliError::runtime(format!("--out {}: {e}", args.out.display())))?;
    let mut out = std::io::BufWriter::new(file);
    let window = Window {
        session: args.session,
        ..Window::default()
    };
    let written = if args.dns {
        store::write_dns(
            &reader,
            &DnsFilter {
                window,
                ..DnsFilter::default()
            },
            format,
            &mut out,
        )
    } else {
        store::write_flows(
            &reader,
            &FlowFilter {
                window,
                ..FlowFilter::default()
            },
            format,
            &mut out,
        )
    }
    .map_err(|e| CliError::runtime(format!("--out {}: {e}", args.out.display())))?;
    out.flush()
        .map_err(|e| CliError::runtime(format!("--out {}: {e}", args.out.display())))?;
    eprintln!(
        "phonehome: wrote {written} {} to {}",
        if args.dns { "DNS queries" } else { "flows" },
        args.out.display()
    );
    Ok(0)
}
