//! The `phonehome` command line. Each subcommand lives in its own module.

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "phonehome", version, about = "See which apps phone home, and where to")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let _cli = Cli::parse();
    0
}
