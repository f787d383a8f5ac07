//! `harness recommend`: measure each configuration at several concurrency
//! levels, let `analysis::recommend` fit and choose, and validate the choice
//! under a hard memory limit.

use std::process::ExitCode;

use super::{RunArgs, USAGE, load_scenario};
use crate::analysis::recommend::{self as plan, Recommendation};
use crate::report;
use crate::scenario::Checked;
use crate::session::{self, Enforce, Options, Session};

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
    let levels = plan::levels(s, extra_levels);
    let (sweep, configs) = plan::sweep(s, budget_bytes, &levels);
    let repeats = session::repeats(s, opts).max(2);
    let mut session = Session::start(&sweep, opts, sweep.cells.len() as u64 * u64::from(repeats)).await?;
    let mut runs = Vec::new();
    for cell in &sweep.cells {
        for r in 0..repeats {
            runs.push(session.measure(cell, r).await);
        }
    }
    let outcome = session.finish(runs);
    report::write_run(&outcome)?;
    let mut rec = plan::conclude(
        s,
        budget_bytes,
        configs,
        &outcome.results,
        outcome.dir.display().to_string(),
    );
    if let (Some(i), true) = (rec.best, validate) {
        let v = plan::validation_scenario(s, budget_bytes, &rec.models[i]);
        let vopts = Options {
            enforce: Enforce::On,
            repeats: Some(1),
            ..opts.clone()
        };
        let mut session = Session::start(&v, &vopts, 1).await?;
        let run = session.measure(&v.cells[0], 0).await;
        let checked = session.finish(vec![run]);
        report::write_run(&checked)?;
        rec.validation = plan::validation(&checked.results);
    }
    report::recommend::write(&outcome.dir, &rec, &outcome.results)?;
    Ok(rec)
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
