//! `phonehome report` (being written).

use super::CliError;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {}

pub fn run(_args: ReportArgs) -> Result<i32, CliError> {
    Err(CliError::runtime("not built yet"))
}
