//! `phonehome export` (being written).

use super::CliError;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {}

pub fn run(_args: ExportArgs) -> Result<i32, CliError> {
    Err(CliError::runtime("not built yet"))
}
