//! The `phonehome` command line. Each subcommand lives in its own module.

use std::fmt;

use clap::{Parser, Subcommand};

pub mod analyze;
pub mod lookup;

#[derive(Parser, Debug)]
#[command(name = "phonehome", version, about = "See which apps phone home, and where to")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Analyze(analyze::AnalyzeArgs),
    Lookup(lookup::LookupArgs),
}

/// A failed command: the message printed as `phonehome: <message>` and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    pub fn new(code: i32, message: impl Into<String>) -> CliError {
        CliError { code, message: message.into() }
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
        CliError::new(1, err.to_string())
    }
}

impl From<crate::store::StoreError> for CliError {
    fn from(err: crate::store::StoreError) -> CliError {
        CliError::new(1, err.to_string())
    }
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Analyze(args) => analyze::run(args),
        Command::Lookup(args) => lookup::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("phonehome: {}", err.message);
            err.code
        }
    }
}
