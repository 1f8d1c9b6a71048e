//! The `phonehome` command line. Each subcommand lives in its own module.

use clap::{Parser, Subcommand};

pub mod export;
pub mod flows;
pub mod mark;
pub mod report;

#[derive(Parser, Debug)]
#[command(
    name = "phonehome",
    version,
    about = "See which apps phone home, and where to"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print stored flows (or DNS queries with --dns) as JSONL or CSV, one record per line.
    Flows(flows::FlowsArgs),
    /// Summarise a session, all history, or a before/after comparison (text, JSON or HTML).
    Report(report::ReportArgs),
    /// Copy the database consistently (even while a capture writes), or export rows as CSV/JSONL.
    Export(export::ExportArgs),
    /// Put a labelled marker into the running (or latest) session, or list markers.
    Mark(mark::MarkArgs),
}

/// A failed subcommand: the exit code (1 runtime failure, 2 usage error) and the message for
/// stderr, which names the file or flag and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    /// A runtime failure (exit code 1).
    pub fn runtime(message: impl Into<String>) -> CliError {
        CliError {
            code: 1,
            message: message.into(),
        }
    }

    /// A usage error: a bad flag or argument value (exit code 2).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: 2,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<crate::store::StoreError> for CliError {
    fn from(e: crate::store::StoreError) -> CliError {
        CliError::runtime(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        CliError::runtime(e.to_string())
    }
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let result = match cli.command {
        Command::Flows(args) => flows::run(args),
        Command::Report(args) => report::run(args),
        Command::Export(args) => export::run(args),
        Command::Mark(args) => mark::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("phonehome: {e}");
            e.code
        }
    }
}
