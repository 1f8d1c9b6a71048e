//! Running the `phonehome` binary as a user does, for the store tests. Included with
//! `#[path = "common/phonehome_bin.rs"] mod phonehome_bin;` (without the namespace rig of `mod.rs`).

#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs `phonehome` with `args` and returns what it did.
pub fn phonehome(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phonehome"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `phonehome` with `args`; fails the test with its stderr unless it succeeded.
pub fn phonehome_ok(args: &[&str]) -> Output {
    let out = phonehome(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
