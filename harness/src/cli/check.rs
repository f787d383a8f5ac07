//! `harness check`: scenario files checked without running anything.

use std::path::PathBuf;
use std::process::ExitCode;

use super::USAGE;
use crate::scenario::Checked;
use crate::session::results::mib;

/// Checks each file; exit 2 when any is wrong, every error named.
pub fn command(files: &[PathBuf]) -> ExitCode {
    let mut bad = false;
    for f in files {
        match Checked::load(f) {
            Ok(s) => println!(
                "ok  {}: {} cells × {} repeats, budget {:.0} MiB",
                f.display(),
                s.cells.len(),
                s.raw.repeats,
                mib(s.budget_bytes)
            ),
            Err(e) => {
                eprintln!("error: {e}");
                bad = true;
            }
        }
    }
    if bad {
        ExitCode::from(USAGE)
    } else {
        ExitCode::SUCCESS
    }
}
