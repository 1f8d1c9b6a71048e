//! `phonehome report`: a session, all history, or a before/after comparison as text, JSON or
//! one self-contained HTML file.

use std::path::PathBuf;

use super::CliError;
use super::flows::check_session;
use crate::store::report::{self, Scope};
use crate::store::{Reader, WINDOW_SYNTAX, WindowSpec};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    Html,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Windows for --compare A..B (A is \"before\", B is \"after\"):
  N             session N                       e.g. --compare 3..4
  before:M      marker M's session up to M      e.g. --compare before:2..after:2
  after:M       from marker M to session end
  span:M1:M2    from marker M1 to marker M2     e.g. --compare before:2..span:2:5
  all           all history
  marker:M      shorthand for before:M..after:M e.g. --compare marker:2
Markers may be written 2 or m2.
Marker numbers are listed by `phonehome mark --db FILE --list` (and in every report).
Flows count in a window by their start time.

Examples:
  phonehome report --db phonehome.db
  phonehome report --db phonehome.db --session 3 --format html --out session3.html
  phonehome report --db phonehome.db --compare marker:2 --format html --out experiment.html
  phonehome report --db phonehome.db --compare 3..4 --format json | jq .comparison.still_phoning_home

JSON layout: docs/report-schema.md (\"schema\": \"phonehome-report/2\").")]
pub struct ReportArgs {
    /// The PhoneHome database.
    #[arg(long, value_name = "FILE")]
    pub db: PathBuf,
    /// Report one session (default: all history).
    #[arg(long, value_name = "N", conflicts_with = "compare")]
    pub session: Option<i64>,
    /// Compare two windows, A..B (see below).
    #[arg(long, value_name = "A..B")]
    pub compare: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// Write to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> Result<i32, CliError> {
    let scope = match (&args.session, &args.compare) {
        (Some(id), _) => Scope::Session(*id),
        (None, Some(spec)) => {
            let (a, b) = WindowSpec::parse_pair(spec)
                .map_err(|e| CliError::usage(format!("--compare {spec}: {e}")))?;
            Scope::Compare(a, b)
        }
        (None, None) => Scope::All,
    };
    let reader = Reader::open(&args.db)?;
    if let Some(id) = args.session {
        check_session(&reader, "--session", id)?;
    }
    let report = report::build(&reader, &scope).map_err(|e| match (&scope, &e) {
        // A marker or session named in --compare that is not there is a usage error.
        (Scope::Compare(..), crate::store::StoreError::Other { message, .. }) => {
            CliError::usage(format!(
                "--compare {}: {message} (windows: {WINDOW_SYNTAX})",
                args.compare.as_deref().unwrap_or("")
            ))
        }
        _ => CliError::from(e),
    })?;
    let text = match args.format {
        ReportFormat::Text => report::render_text(&report),
        ReportFormat::Json => report::render_json(&report) + "\n",
        ReportFormat::Html => report::render_html(&report),
    };
    match &args.out {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| CliError::runtime(format!("--out {}: {e}", path.display())))?,
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush())
                && e.kind() != std::io::ErrorKind::BrokenPipe
            {
                return Err(CliError::runtime(format!("writing the report: {e}")));
            }
        }
    }
    Ok(0)
}
