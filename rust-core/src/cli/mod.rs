//! The `phonehome` command line. Each subcommand lives in its own module.

use std::fmt;

use clap::{Parser, Subcommand};

pub mod analyze;
#[cfg(target_os = "linux")]
pub mod capture;
pub mod export;
pub mod flows;
pub mod lookup;
pub mod mark;
pub mod report;
pub mod retention;

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
    /// Run a command in a fresh network namespace and record every flow it makes (root).
    #[cfg(target_os = "linux")]
    Capture(capture::CaptureArgs),
    /// Feed pcap/pcapng captures through the engine in observe mode into the database.
    Analyze(analyze::AnalyzeArgs),
    /// Classify hosts or IP addresses: Xiaomi catalog, country and ASN (offline).
    Lookup(lookup::LookupArgs),
    /// Print stored flows (or DNS queries with --dns) as JSONL or CSV, one record per line.
    Flows(flows::FlowsArgs),
    /// Summarise a session, all history, or a before/after comparison (text, JSON or HTML).
    Report(report::ReportArgs),
    /// Copy the database consistently (even while a capture writes), or export rows as CSV/JSONL.
    Export(export::ExportArgs),
    /// Put a labelled marker into the running (or latest) session, or list markers.
    Mark(mark::MarkArgs),
    /// Show or set how much history to keep (days, MB), and prune now.
    Retention(retention::RetentionArgs),
}

/// A failed subcommand: the exit code (1 runtime failure, 2 usage error) and the message for
/// stderr, which names the file or flag and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    pub fn new(code: i32, message: impl Into<String>) -> CliError {
        CliError {
            code,
            message: message.into(),
        }
    }

    /// A runtime failure (exit code 1).
    pub fn runtime(message: impl Into<String>) -> CliError {
        CliError::new(1, message)
    }

    /// A usage error: a bad flag or argument value (exit code 2).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::new(2, message)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<std::io::Error> for CliError {
    fn from(err: std::io::Error) -> CliError {
        CliError::runtime(err.to_string())
    }
}

impl From<crate::store::StoreError> for CliError {
    fn from(err: crate::store::StoreError) -> CliError {
        CliError::runtime(err.to_string())
    }
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return err.exit_code();
        }
    };
    let result = match cli.command {
        #[cfg(target_os = "linux")]
        Command::Capture(args) => capture::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::Lookup(args) => lookup::run(args),
        Command::Flows(args) => flows::run(args),
        Command::Report(args) => report::run(args),
        Command::Export(args) => export::run(args),
        Command::Mark(args) => mark::run(args),
        Command::Retention(args) => retention::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("phonehome: {err}");
            err.code
        }
    }
}
