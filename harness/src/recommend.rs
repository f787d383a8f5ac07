//! `harness recommend`: which MAX_CONCURRENT_IMPORTS is safe in a budget.
//!
//! For each configuration of the scenario (its matrix without the
//! concurrency axis), the importer is measured at several concurrency levels,
//! the capacity model is fitted, and the largest concurrency whose predicted
//! peak (90 % upper bound) fits budget × (1 − headroom) is recommended. The
//! model is checked against itself (fit n = 1..3, predict 4, measure 4), and
//! the recommendation is validated under a real hard limit: the recommended
//! concurrency with twice as many imports requested at once.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::capacity::{Fit, MAX_CONCURRENCY};
use crate::report;
use crate::results::{CellRun, RunResults, median, mib};
use crate::run::{self, Enforce, Options, Session};
use crate::scenario::{Cell, Checked};

/// Why a recommendation could not be made (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The run could not start or report.
    #[error(transparent)]
    Run(#[from] run::Error),
    /// An output could not be written.
    #[error(transparent)]
    Report(#[from] report::Error),
    /// Encoding failed.
    #[error("cannot encode: {0}")]
    Json(#[from] serde_json::Error),
}

/// The model of one configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    /// The configuration (label without concurrency), e.g. `b50-p2000`.
    pub config: String,
    /// Its importer environment, without MAX_CONCURRENT_IMPORTS.
    pub env: BTreeMap<String, String>,
    /// (concurrency, peak bytes) of every run.
    pub points: Vec<(u32, u64)>,
    /// The fit over every level.
    pub fit: Option<Fit>,
    /// Largest safe concurrency, when the fit is trusted.
    pub recommended: Option<u32>,
    /// Predicted 90 % upper peak at the recommendation, bytes.
    pub predicted_peak: Option<f64>,
    /// Fit on n <= 3, its prediction at n = 4, the median measured at 4, and the error in percent.
    pub self_check: Option<SelfCheck>,
    /// Why nothing is recommended, if so.
    pub note: Option<String>,
}

/// The model checked against itself.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SelfCheck {
    /// Predicted peak at n = 4 from n = 1..3, bytes.
    pub predicted: f64,
    /// Measured median peak at n = 4, bytes.
    pub measured: u64,
    /// (predicted − measured) / measured, percent.
    pub error_pct: f64,
}

/// The validation of a recommendation under a hard limit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Validation {
    /// MAX_CONCURRENT_IMPORTS run.
    pub concurrency: u32,
    /// Imports requested at once.
    pub imports: u32,
    /// The limit, as described by the run.
    pub enforced: Option<String>,
    /// Peak RSS (VmHWM), bytes.
    pub peak: u64,
    /// The kernel killed it.
    pub oom_killed: bool,
    /// Every game delivered exactly once.
    pub delivered: bool,
    /// Every client saw its import accepted and completed.
    pub delivered_to_clients: bool,
    /// Longest queue wait, seconds.
    pub max_wait_secs: f64,
    /// Problems, if any.
    pub problems: Vec<String>,
}

/// What `recommend` concluded, as `capacity.json` holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recommendation {
    /// Scenario.
    pub scenario: String,
    /// Budget, bytes.
    pub budget_bytes: u64,
    /// Headroom fraction.
    pub headroom: f64,
    /// Per configuration.
    pub models: Vec<Model>,
    /// The configuration recommended (the one allowing most imports).
    pub best: Option<usize>,
    /// The environment to deploy with.
    pub env_lines: Vec<String>,
    /// The validation run, when one was made.
    pub validation: Option<Validation>,
    /// Reports folder of the sweep.
    pub reports: String,
}

impl Recommendation {
    /// 0 when a recommendation was made and, if validated, held; 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        let held = self
            .validation
            .as_ref()
            .is_none_or(|v| v.delivered && !v.oom_killed);
        u8::from(self.best.is_none() || !held)
    }
}

fn config_of(cell: &Cell) -> (String, BTreeMap<String, String>) {
    let mut env = cell.env.clone();
    env.remove("MAX_CONCURRENT_IMPORTS");
    (cell.config_label(), env)
}

/// Environment a concurrency level needs so that the imports really run at once.
fn level_env(base: &BTreeMap<String, String>, n: u32, imports: u32) -> BTreeMap<String, String> {
    let mut env = base.clone();
    env.insert("MAX_CONCURRENT_IMPORTS".into(), n.to_string());
    env.entry("HTTP_MAX_CONNECTIONS".into())
        .or_insert_with(|| n.max(15).to_string());
    env.insert(
        "IMPORT_QUEUE_CAPACITY".into(),
        imports.saturating_sub(n).max(100).to_string(),
    );
    env
}

fn level_cell(config: &str, env: &BTreeMap<String, String>, n: u32, imports: u32) -> Cell {
    let get = |k: &str, d: u32| env.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    Cell {
        label: format!("c{n}-{config}"),
        env: level_env(env, n, imports),
        max_concurrent_imports: n,
        batch_size: get("IMPORT_BATCH_SIZE", 50),
        page_size: get("EXISTING_GAMES_PAGE_SIZE", 2000),
        imports,
    }
}

/// The concurrency levels measured: 1..=4 (for the n = 4 self-check), 8 and 16 (so that the
/// per-import slope stands out of the run-to-run noise), and the scenario's own.
pub fn levels(s: &Checked, extra: &[u32]) -> Vec<u32> {
    let mut v: Vec<u32> = [1, 2, 3, 4, 8, 16]
        .into_iter()
        .chain(s.cells.iter().map(|c| c.max_concurrent_imports))
        .collect();
    v.extend_from_slice(extra);
    v.sort_unstable();
    v.dedup();
    v
}

fn model(config: String, env: BTreeMap<String, String>, runs: &[&CellRun], limit: f64) -> Model {
    let points: Vec<(u32, u64)> = runs
        .iter()
        .filter(|r| r.error.is_none() && r.verification.ok)
        .map(|r| (r.cell.max_concurrent_imports, r.peak))
        .collect();
    let xy = |max_n: u32| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter(|p| p.0 <= max_n)
            .map(|&(n, p)| (f64::from(n), p as f64))
            .collect()
    };
    let fit = Fit::new(&xy(u32::MAX));
    let self_check = Fit::new(&xy(3)).and_then(|f3| {
        let at4: Vec<u64> = points.iter().filter(|p| p.0 == 4).map(|p| p.1).collect();
        (!at4.is_empty()).then(|| {
            let measured = median(at4);
            let predicted = f3.predict(4.0);
            SelfCheck {
                predicted,
                measured,
                error_pct: (predicted - measured as f64) * 100.0 / measured.max(1) as f64,
            }
        })
    });
    let (recommended, note) = match &fit {
        None => (None, Some("too few measured points to fit".to_string())),
        Some(f) if !f.trusted() => (
            None,
            Some(format!(
                "poor fit (R² {:.2} < 0.90): memory does not grow linearly with imports here; no recommendation from it",
                f.r2
            )),
        ),
        Some(f) if f.per_import <= 0.0 => (
            None,
            Some("the fitted memory per import is not positive; measure more levels".to_string()),
        ),
        Some(f) => match f.largest_fitting(limit) {
            Some(n) => (Some(n), None),
            None => (None, Some("not even one import fits the budget".into())),
        },
    };
    Model {
        config,
        env,
        predicted_peak: recommended.zip(fit).map(|(n, f)| f.upper(f64::from(n))),
        points,
        fit,
        recommended,
        self_check,
        note,
    }
}

/// Runs the sweep, fits, recommends and (with `validate`) checks the recommendation under a hard limit.
pub async fn recommend(
    s: &Checked,
    opts: &Options,
    budget_bytes: u64,
    extra_levels: &[u32],
    validate: bool,
) -> Result<Recommendation, Error> {
    let limit = budget_bytes as f64 * (1.0 - s.headroom);
    let levels = levels(s, extra_levels);
    let mut configs: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for c in &s.cells {
        let cfg = config_of(c);
        if !configs.contains(&cfg) {
            configs.push(cfg);
        }
    }
    let repeats = run::repeats(s, opts).max(2);
    let mut sweep = s.clone();
    sweep.name = format!("{}-capacity", s.name);
    sweep.budget_bytes = budget_bytes;
    sweep.cells = configs
        .iter()
        .flat_map(|(label, env)| levels.iter().map(move |&n| level_cell(label, env, n, n)))
        .collect();
    let mut session = Session::start(&sweep, opts, sweep.cells.len() as u64 * u64::from(repeats)).await?;
    let mut runs = Vec::new();
    for cell in &sweep.cells {
        for r in 0..repeats {
            runs.push(session.measure(cell, r).await);
        }
    }
    let outcome = session.finish(runs)?;
    let models: Vec<Model> = configs
        .into_iter()
        .map(|(label, env)| {
            let mine: Vec<&CellRun> = outcome
                .results
                .cells
                .iter()
                .filter(|r| r.cell.config_label() == label)
                .collect();
            model(label, env, &mine, limit)
        })
        .collect();
    let best = models
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            m.recommended
                .map(|n| (i, n, m.predicted_peak.unwrap_or(f64::MAX)))
        })
        // Most imports first; among equals (often all at the importer's cap), the leanest.
        .max_by(|a, b| a.1.cmp(&b.1).then(b.2.total_cmp(&a.2)))
        .map(|(i, _, _)| i);
    let mut rec = Recommendation {
        scenario: s.name.clone(),
        budget_bytes,
        headroom: s.headroom,
        env_lines: Vec::new(),
        validation: None,
        reports: outcome.dir.display().to_string(),
        best,
        models,
    };
    if let Some(i) = rec.best {
        let m = &rec.models[i];
        let n = m.recommended.unwrap_or(1);
        let env = level_env(&m.env, n, 2 * n);
        rec.env_lines = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if validate {
            rec.validation = Some(validate_under_limit(s, opts, budget_bytes, &m.config, &m.env, n).await?);
        }
    }
    report::plot::capacity(&outcome.dir.join("capacity.png"), &rec)?;
    report::plot::capacity(&outcome.dir.join("capacity.svg"), &rec)?;
    report::write_file(
        &outcome.dir.join("capacity.json"),
        &serde_json::to_vec_pretty(&rec)?,
    )?;
    let run_summary = report::summary_markdown(&outcome.results);
    report::write_file(
        &outcome.dir.join("summary.md"),
        format!("{}\n{run_summary}", markdown(&rec)).as_bytes(),
    )?;
    report::html::write_run(&outcome.dir, &format!("harness recommend: {}", s.name))?;
    Ok(rec)
}

async fn validate_under_limit(
    s: &Checked,
    opts: &Options,
    budget_bytes: u64,
    config: &str,
    env: &BTreeMap<String, String>,
    n: u32,
) -> Result<Validation, Error> {
    let imports = (2 * n).min(2 * MAX_CONCURRENCY);
    let mut v = s.clone();
    v.name = format!("{}-validation", s.name);
    v.budget_bytes = budget_bytes;
    v.raw.cell_timeout_secs = v.raw.cell_timeout_secs.max(600);
    v.cells = vec![level_cell(config, env, n, imports)];
    let vopts = Options {
        enforce: Enforce::On,
        repeats: Some(1),
        ..opts.clone()
    };
    let mut session = Session::start(&v, &vopts, 1).await?;
    let run = session.measure(&v.cells[0], 0).await;
    let outcome = session.finish(vec![run])?;
    let r: &RunResults = &outcome.results;
    let cell = &r.cells[0];
    let mut problems = cell.verification.problems.clone();
    let unfinished = cell
        .load
        .imports
        .iter()
        .filter(|i| i.status != "completed")
        .count();
    if unfinished > 0 {
        let example = cell.load.imports.iter().find(|i| i.status != "completed");
        problems.push(format!(
            "{unfinished} of {imports} imports not seen completed by the client (e.g. {}: {})",
            example.map_or("", |i| i.status.as_str()),
            example.and_then(|i| i.error.as_deref()).unwrap_or("")
        ));
    }
    Ok(Validation {
        concurrency: n,
        imports,
        enforced: r.enforced.clone(),
        peak: cell.peak,
        oom_killed: cell.oom_killed,
        delivered: cell.verification.ok && cell.error.is_none(),
        max_wait_secs: cell
            .load
            .imports
            .iter()
            .filter_map(|i| i.wait_secs)
            .fold(0.0, f64::max),
        delivered_to_clients: unfinished == 0,
        problems,
    })
}

/// The recommendation in words, for the terminal and `summary.md`.
pub fn markdown(r: &Recommendation) -> String {
    let mut out = String::new();
    let limit = r.budget_bytes as f64 * (1.0 - r.headroom);
    let _ = writeln!(
        out,
        "# Capacity: {} in {:.0} MiB (less {:.0} % headroom = {:.0} MiB)\n",
        r.scenario,
        mib(r.budget_bytes),
        r.headroom * 100.0,
        limit / 1048576.0
    );
    let _ = writeln!(
        out,
        "| configuration | idle MiB | per import MiB [90 % CI] | R² | n=4 predicted from n≤3 (error) | safe MAX_CONCURRENT_IMPORTS |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for m in &r.models {
        let fit = m.fit.map_or("–".into(), |f| {
            format!(
                "{:.2} [{:.2}, {:.2}]",
                mib(f.per_import as u64),
                f.per_import_ci90.0 / 1048576.0,
                f.per_import_ci90.1 / 1048576.0
            )
        });
        let check = m.self_check.map_or("–".into(), |c| {
            format!(
                "{:.1} vs {:.1} MiB ({:+.1} %)",
                c.predicted / 1048576.0,
                mib(c.measured),
                c.error_pct
            )
        });
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            m.config,
            m.fit.map_or("–".into(), |f| format!("{:.1}", f.idle / 1048576.0)),
            fit,
            m.fit.map_or("–".into(), |f| format!("{:.3}", f.r2)),
            check,
            m.recommended
                .map_or_else(|| m.note.clone().unwrap_or_default(), |n| n.to_string()),
        );
    }
    match r.best {
        None => {
            let _ = writeln!(
                out,
                "\n**No recommendation**: no configuration gave a trusted fit that fits the budget."
            );
        }
        Some(i) => {
            let m = &r.models[i];
            let _ = writeln!(
                out,
                "\n**Recommended: {} with MAX_CONCURRENT_IMPORTS={}** (predicted peak ≤ {:.1} MiB at the 90 % bound). Deploy with:\n\n```sh\n{}\n```",
                m.config,
                m.recommended.unwrap_or(0),
                m.predicted_peak.unwrap_or(0.0) / 1048576.0,
                r.env_lines.join("\n")
            );
            if m.recommended == Some(MAX_CONCURRENCY) {
                let _ = writeln!(
                    out,
                    "\n(256 is the importer's own maximum: the budget allows more than it accepts.)"
                );
            }
        }
    }
    if let Some(v) = &r.validation {
        let verdict = if v.delivered && !v.oom_killed {
            "✓ held"
        } else {
            "✗ FAILED"
        };
        let _ = writeln!(
            out,
            "\nValidation under a hard limit ({}): MAX_CONCURRENT_IMPORTS={} with {} imports requested at once: peak {:.1} MiB, {}, {}, longest queue wait {:.1} s — {verdict}.",
            v.enforced.as_deref().unwrap_or("no limit"),
            v.concurrency,
            v.imports,
            mib(v.peak),
            if v.oom_killed { "OOM-killed" } else { "no OOM kill" },
            if v.delivered {
                "every game delivered exactly once"
            } else {
                "delivery FAILED"
            },
            v.max_wait_secs
        );
        for p in &v.problems {
            let _ = writeln!(out, "- {p}");
        }
    }
    let _ = writeln!(out, "\nReports: {}", r.reports);
    out
}
