//! `harness recommend`: measure each configuration at several concurrency
//! levels, let `analysis::recommend` fit and choose, and validate the choice
//! under a hard memory limit; with `--max-wait`, run the scenario's slots and
//! lanes as they are and let `analysis::wait` choose by memory and wait.

use std::process::ExitCode;

use super::{RunArgs, USAGE, load_scenario};
use crate::analysis::recommend::{self as plan, Recommendation};
use crate::analysis::wait::{self as wait_plan, WaitRecommendation};
use crate::report;
use crate::scenario::Checked;
use crate::session::{self, Enforce, Options, Outcome, Session};

/// Why a recommendation could not be made (exit 2): a run could not start or report, as for `run`.
pub use super::run::Error;

/// Runs the sweep, fits, recommends and (with `validate`) checks the recommendation under a hard limit.
pub async fn recommend(
    s: &Checked,
    opts: &Options,
    budget_bytes: u64,
    extra_levels: &[u32],
    validate: bool,
) -> Result<Recommendation, Error> {
    let (sweep, configs) = plan::sweep(s, budget_bytes, extra_levels);
    // One repeat where the peaks allow an answer; a second only for configurations whose peaks
    // scatter or that have fewer than 3 points (see `plan::scattered`).
    let repeats = session::repeats(s, opts).max(1);
    let mut session = Session::start(&sweep, opts, sweep.cells.len() as u64 * u64::from(repeats)).await?;
    let mut runs = Vec::new();
    for cell in &sweep.cells {
        for r in 0..repeats {
            runs.push(session.measure(cell, r).await);
        }
    }
    let first = plan::conclude(s, budget_bytes, configs.clone(), &runs, String::new());
    let scattered = plan::scattered(&first);
    let again: Vec<&crate::scenario::Cell> = scattered
        .iter()
        .flat_map(|&i| {
            let label = first.models[i].config.clone();
            sweep.cells.iter().filter(move |c| c.config_label() == label)
        })
        .collect();
    if !again.is_empty() {
        session.say(format!(
            "{} configuration(s) with scattered peaks or fewer than 3 points: measuring each of their levels once more",
            scattered.len()
        ));
        session.add_to_total(again.len() as u64);
        for cell in again {
            runs.push(session.measure(cell, repeats).await);
        }
    }
    let outcome = session.finish(runs);
    report::write_run(&outcome)?;
    let mut rec = plan::conclude(
        s,
        budget_bytes,
        configs,
        &outcome.results.cells,
        outcome.dir.display().to_string(),
    );
    if let (Some(i), true) = (rec.best, validate) {
        let v = plan::validation_scenario(s, budget_bytes, &rec.models[i]);
        let checked = under_hard_limit(&v, &v.cells[0], opts).await?;
        rec.validation = plan::validation(&checked.results);
    }
    report::recommend::write(&outcome.dir, &rec, &outcome.results)?;
    Ok(rec)
}

/// One run of `cell` under the budget as a hard memory limit, its reports written: a
/// recommendation's validation.
async fn under_hard_limit(
    s: &Checked,
    cell: &crate::scenario::Cell,
    opts: &Options,
) -> Result<Outcome, Error> {
    let vopts = Options {
        enforce: Enforce::On,
        repeats: Some(1),
        ..opts.clone()
    };
    let mut session = Session::start(s, &vopts, 1).await?;
    let run = session.measure(cell, 0).await;
    let checked = session.finish(vec![run]);
    report::write_run(&checked)?;
    Ok(checked)
}

/// `harness recommend`: exit 0 when a recommendation was made and held, 1 when none or it failed, 2 on set-up.
pub async fn command(args: &RunArgs, budget: Option<u64>, levels: &[u32], validate: bool) -> ExitCode {
    let scenario = match load_scenario(&args.scenario) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let opts = args.options();
    let budget = budget.unwrap_or(scenario.budget_bytes);
    match recommend(&scenario, &opts, budget, levels, validate).await {
        Ok(rec) => {
            print!("{}", report::recommend::markdown(&rec));
            ExitCode::from(rec.exit_code())
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(USAGE)
        }
    }
}

/// Runs every cell of the scenario, judges slots and lanes against the budget and `max_wait_secs`
/// (provider seconds), and (with `validate`) runs the recommended cell again under a hard limit.
pub async fn wait(
    s: &Checked,
    opts: &Options,
    budget_bytes: u64,
    max_wait_secs: f64,
    validate: bool,
) -> Result<WaitRecommendation, Error> {
    // The runs and the validation's hard limit are made against the budget asked for.
    let s = &Checked {
        budget_bytes,
        ..s.clone()
    };
    let outcome = session::run(s, opts).await?;
    report::write_run(&outcome)?;
    let mut rec = wait_plan::conclude(
        s,
        budget_bytes,
        max_wait_secs,
        &outcome.results,
        outcome.dir.display().to_string(),
    );
    if let (Some(i), true) = (rec.best, validate) {
        let label = rec.rows[i].label.clone();
        if let Some(cell) = s.cells.iter().find(|c| c.label == label) {
            let checked = under_hard_limit(s, cell, opts).await?;
            rec.validation = checked
                .results
                .cells
                .first()
                .map(|run| wait_plan::validation(run, max_wait_secs));
        }
    }
    report::wait::write(&outcome.dir, &rec, &outcome.results)?;
    Ok(rec)
}

/// `harness recommend --max-wait`: exit 0 when a configuration meets both (and held), 1 when none
/// does, 2 on set-up.
pub async fn wait_command(
    args: &RunArgs,
    budget: Option<u64>,
    max_wait_secs: f64,
    validate: bool,
) -> ExitCode {
    let scenario = match load_scenario(&args.scenario) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if scenario.raw.workload.imports.is_none() && scenario.raw.workload.arrivals.count().is_none() {
        // Otherwise each cell gets as many users as it has slots: no one waits for a slot and
        // every configuration would be measured on a workload of its own.
        eprintln!(
            "error: {}: --max-wait compares configurations on one workload: set `workload.imports` \
             (or `arrivals: {{at_secs: [...]}}`)",
            scenario.file.display()
        );
        return ExitCode::from(USAGE);
    }
    let opts = args.options();
    let budget = budget.unwrap_or(scenario.budget_bytes);
    eprintln!(
        "measuring {} configurations of {} for a p95 wait within {max_wait_secs:.0} s",
        scenario.cells.len(),
        scenario.name
    );
    match wait(&scenario, &opts, budget, max_wait_secs, validate).await {
        Ok(rec) => {
            print!("{}", report::wait::markdown(&rec));
            println!("\nreports: {}", rec.reports);
            ExitCode::from(rec.exit_code())
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(USAGE)
        }
    }
}
