//! `phonehome mark` (being written).

use super::CliError;

#[derive(clap::Args, Debug)]
pub struct MarkArgs {}

pub fn run(_args: MarkArgs) -> Result<i32, CliError> {
    Err(CliError::runtime("not built yet"))
}
