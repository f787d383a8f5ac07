//! `harness compare BEFORE AFTER`: two runs read back, compared by
//! `analysis::compare`, written by `report::compare`. Informs, never fails.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::USAGE;
use crate::analysis::compare;
use crate::report;

/// Why two runs could not be compared (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runs have no cell in common.
    #[error(transparent)]
    Compare(#[from] compare::Error),
    /// A run could not be read, or the comparison written.
    #[error(transparent)]
    Report(#[from] report::Error),
}

/// Exit 0 with the comparison written, 2 when the inputs are unusable.
pub fn command(before: &Path, after: &Path, out: Option<PathBuf>) -> ExitCode {
    let (b, a) = match (report::read_results(before), report::read_results(after)) {
        (Ok(b), Ok(a)) => (b, a),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(USAGE);
        }
    };
    let out = out.unwrap_or_else(|| {
        PathBuf::from("reports/compare").join(chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string())
    });
    let (bn, an) = (b.dir.display().to_string(), a.dir.display().to_string());
    let written = compare::compare((&bn, &b.results), (&an, &a.results), &out.display().to_string())
        .map_err(Error::from)
        .and_then(|cmp| {
            report::compare::write(&out, &cmp, &b, &a)
                .map(|()| cmp)
                .map_err(Error::from)
        });
    match written {
        Ok(cmp) => {
            print!("{}", report::compare::markdown(&cmp));
            println!("\nreports: {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(USAGE)
        }
    }
}
