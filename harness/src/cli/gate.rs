//! `harness gate`: the memory regression gate CI runs. Each cell at least
//! [`judge::MIN_REPEATS`] times, a noisy cell once more; `analysis::gate` decides.

use std::path::Path;
use std::process::ExitCode;

use super::{RunArgs, USAGE, load_scenario};
use crate::analysis::gate::{self as judge, Baseline, Decision};
use crate::analysis::stats::spread_pct;
use crate::report;
use crate::scenario::Checked;
use crate::session::results::CellRun;
use crate::session::{self, Options, Session};

/// Why the gate could not decide (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The baseline cannot be read.
    #[error(transparent)]
    Baseline(#[from] judge::Error),
    /// The run could not start.
    #[error(transparent)]
    Session(#[from] session::Error),
    /// An output could not be written.
    #[error(transparent)]
    Report(#[from] report::Error),
}

/// Runs the gate; with `update`, writes the baseline from this run instead of comparing.
pub async fn gate(
    s: &Checked,
    opts: &Options,
    baseline_path: &Path,
    update: bool,
) -> Result<Decision, Error> {
    let baseline = if update {
        None
    } else {
        Some(Baseline::load(baseline_path)?)
    };
    let repeats = session::repeats(s, opts).max(judge::MIN_REPEATS);
    let max_spread = s.raw.gate.max_spread_pct;
    let wall = std::time::Instant::now();
    let mut session = Session::start(s, opts, s.cells.len() as u64 * u64::from(repeats)).await?;
    let mut all_runs = Vec::new();
    let mut per_cell = Vec::new();
    for cell in &s.cells {
        let mut measured = Vec::new();
        for r in 0..repeats {
            measured.push(session.measure(cell, r).await);
        }
        let spread = |runs: &[CellRun]| spread_pct(&runs.iter().collect::<Vec<_>>());
        let (mut used_from, mut erratic) = (0, false);
        let first_spread = spread(&measured);
        if first_spread > max_spread {
            session.say(format!(
                "{}: peaks spread {first_spread:.1} % > {max_spread:.1} %, running it again",
                cell.label
            ));
            session.add_to_total(u64::from(repeats));
            for r in repeats..2 * repeats {
                measured.push(session.measure(cell, r).await);
            }
            if spread(&measured[repeats as usize..]) <= max_spread {
                used_from = repeats as usize;
            } else {
                // Still noisy: judge on every run, and say so.
                erratic = true;
            }
        }
        per_cell.push((cell.label.clone(), judge::stats(&measured[used_from..], erratic)));
        all_runs.extend(measured);
    }
    let outcome = session.finish(all_runs);
    report::write_run(&outcome)?;
    let mut decision = judge::decide(
        s,
        baseline.as_ref(),
        &per_cell,
        &outcome.results.machine,
        outcome.dir.display().to_string(),
        wall.elapsed().as_secs_f64(),
    );
    if update {
        if decision.exit_code != 0 {
            decision
                .warnings
                .push("baseline NOT written: the run itself failed".into());
        } else {
            report::gate::write_baseline(baseline_path, &judge::baseline_of(s, &per_cell, &outcome.results))?;
        }
    }
    report::gate::write(&outcome.dir, &decision, &outcome.results)?;
    Ok(decision)
}

/// `harness gate`: exit 0 pass, 1 a check failed, 2 the gate could not decide.
pub async fn command(args: &RunArgs, baseline: &Path, update: bool) -> ExitCode {
    let scenario = match load_scenario(&args.scenario) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let opts = args.options();
    if !opts.set.is_empty() {
        eprintln!("overrides on every cell: {:?}", opts.set);
    }
    match gate(&scenario, &opts, baseline, update).await {
        Ok(decision) => {
            print!("{}", report::gate::table(&decision));
            if update && decision.exit_code == 0 {
                println!("baseline written: {}", baseline.display());
            }
            ExitCode::from(decision.exit_code)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(USAGE)
        }
    }
}
