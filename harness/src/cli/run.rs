//! `harness run`: every cell of a scenario, each repeat, then its reports.

use std::process::ExitCode;

use super::{FAILED, RunArgs, USAGE, load_scenario, profile};
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
pub async fn command(args: &RunArgs, heap_profile: bool) -> ExitCode {
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
            if heap_profile {
                match profile_peak(&scenario, &opts, &outcome).await {
                    Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
                    Err(e) => eprintln!("warning: the heap was not profiled: {e}"),
                }
            }
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

/// Why `--heap-profile` gave nothing (the run's own verdict stands).
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The profiled run.
    #[error(transparent)]
    Profile(#[from] profile::Error),
    /// Its reports.
    #[error(transparent)]
    Report(#[from] report::Error),
    /// No cell finished to choose from.
    #[error("no cell run finished")]
    NoCell,
}

/// `--heap-profile`: one more run, under heaptrack, of the cell whose anonymous peak was the
/// highest; its sites and flame graph added to the reports. Returns the terminal lines.
async fn profile_peak(s: &Checked, opts: &Options, outcome: &Outcome) -> Result<Vec<String>, ProfileError> {
    let top = outcome
        .results
        .cells
        .iter()
        .filter(|c| c.error.is_none())
        .max_by_key(|c| c.peak_anon)
        .ok_or(ProfileError::NoCell)?;
    let cell = s
        .cells
        .iter()
        .find(|c| c.label == top.cell.label)
        .ok_or(ProfileError::NoCell)?;
    let side = profile::Side {
        name: "peak",
        importer: session::importer_path(s, opts),
        opts: opts.clone(),
    };
    let profiles = profile::profiles(s, cell, std::slice::from_ref(&side), &outcome.dir).await?;
    let p = profiles.first().ok_or(ProfileError::NoCell)?;
    let title = format!("harness run: {}", outcome.results.scenario);
    let glance = report::summary::glance(&outcome.results);
    Ok(report::heap::write_run_section(
        &outcome.dir,
        &cell.label,
        p,
        &title,
        &glance,
    )?)
}
