//! `phonehome mark`: label a moment of the running (or latest) session, e.g. the moment a
//! setting was switched off. Works while a capture writes to the same database.

use std::path::PathBuf;

use super::CliError;
use super::flows::check_session;
use crate::store::report::utc;
use crate::store::{GUIDED_STEPS, Reader};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Markers bound the windows of `phonehome report --compare` (before:M, after:M, span:M1:M2).

Examples:
  phonehome mark --db phonehome.db \"turned off Send diagnostic data automatically\"
  phonehome mark --db phonehome.db --step 2      (label from guided step 2)
  phonehome mark --db phonehome.db --list
  phonehome mark --db phonehome.db --steps       (the guided experiment)")]
pub struct MarkArgs {
    /// The PhoneHome database.
    #[arg(long, value_name = "FILE", required_unless_present = "steps")]
    pub db: Option<PathBuf>,
    /// What just changed.
    #[arg(value_name = "LABEL", required_unless_present_any = ["list", "steps", "step"])]
    pub label: Option<String>,
    /// Use the title of guided step N as the label.
    #[arg(long, value_name = "N", conflicts_with = "label")]
    pub step: Option<u8>,
    /// Put the marker into session N instead of the running or latest one.
    #[arg(long, value_name = "N")]
    pub session: Option<i64>,
    /// List the markers instead.
    #[arg(long, conflicts_with_all = ["label", "step"])]
    pub list: bool,
    /// Print the guided "data sharing off" steps.
    #[arg(long, conflicts_with_all = ["label", "step", "list"])]
    pub steps: bool,
}

pub fn run(args: MarkArgs) -> Result<i32, CliError> {
    if args.steps {
        println!("{}\n", crate::store::EXPERIMENT_INTRO);
        for s in GUIDED_STEPS {
            println!(
                "{:>2}. {}\n    search: \"{}\"\n    where:  {}",
                s.number,
                s.title,
                s.search.join("\", \""),
                s.path
            );
            if !s.note.is_empty() {
                println!("    note:   {}", s.note);
            }
        }
        return Ok(0);
    }
    let db = args
        .db
        .ok_or_else(|| CliError::usage("--db FILE is required"))?;
    let reader = Reader::open(&db)?;
    if let Some(id) = args.session {
        check_session(&reader, "--session", id)?;
    }
    if args.list {
        for m in reader.markers(args.session)? {
            println!(
                "m{}\tsession {}\t{}\t{}",
                m.id,
                m.session,
                utc(m.time),
                m.label
            );
        }
        return Ok(0);
    }
    let label = match (args.label, args.step) {
        (Some(l), _) => l,
        (None, Some(n)) => GUIDED_STEPS
            .iter()
            .find(|s| s.number == n)
            .map(|s| format!("step {n}: {}", s.title))
            .ok_or_else(|| {
                CliError::usage(format!("--step {n}: steps are 1 to {}", GUIDED_STEPS.len()))
            })?,
        (None, None) => return Err(CliError::usage("a LABEL is required")),
    };
    if label.trim().is_empty() {
        return Err(CliError::usage("LABEL: empty; say what changed"));
    }
    let marker = match args.session {
        Some(id) => reader.add_marker_at(id, crate::store::now_ms(), &label)?,
        None => reader.add_marker(&label)?,
    };
    println!(
        "m{}\tsession {}\t{}\t{}",
        marker.id,
        marker.session,
        utc(marker.time),
        marker.label
    );
    Ok(0)
}
