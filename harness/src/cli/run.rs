//! `harness run`: every cell of a scenario, each repeat, then its reports.

use std::process::ExitCode;

use super::{FAILED, RunArgs, USAGE, load_scenario};
use crate::report;
use crate::scenario::Checked;
use crate::session::{self, Options, Outcome};

/// A run that could not start, or whose reports could not be written (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The run could not start.
    #[error(transparent)]
    Session(#[from] session::Error),
    /// Its reports could not be written.
    #[error(transparent)]
    Report(#[from] report::Error),
}

/// Runs the scenario and writes its reports.
pub async fn run(s: &Checked, opts: &Options) -> Result<Outcome, Error> {
    let outcome = session::run(s, opts).await?;
    report::write_run(&outcome)?;
    Ok(outcome)
}

/// `harness run`: exit 0 when every cell passed, 1 when one failed, 2 when the run could not be made.
pub async fn command(args: &RunArgs) -> ExitCode {
    let scenario = match load_scenario(&args.scenario) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let opts = args.options();
    eprintln!(
        "running {} ({} cells × {} repeats) with {}",
        scenario.name,
        scenario.cells.len(),
        session::repeats(&scenario, &opts),
        session::importer_path(&scenario, &opts).display()
    );
    match run(&scenario, &opts).await {
        Ok(outcome) => {
            print!("{}", report::summary::terminal(&outcome.results, &outcome.dir));
            if outcome.results.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(FAILED)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(USAGE)
        }
    }
}
