//! Which MAX_CONCURRENT_IMPORTS is safe in a budget (`harness recommend`).
//!
//! For each configuration of the scenario (its matrix without the
//! concurrency axis), the importer is measured at several concurrency levels,
//! the capacity model is fitted, and the largest concurrency whose predicted
//! peak (90 % upper bound) fits budget × (1 − headroom) is recommended. The
//! model is checked against itself (fit n = 1..3, predict 4, measure 4), and
//! the recommendation is validated under a real hard limit: the recommended
//! concurrency with twice as many imports requested at once. `cli::recommend`
//! runs what these functions plan and judge.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::analysis::capacity::{Fit, MAX_CONCURRENCY};
use crate::scenario::{Cell, Checked};
use crate::session::results::{CellRun, RunResults, median};

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

/// A configuration: its label without the concurrency, and its environment without it.
pub type Config = (String, BTreeMap<String, String>);

/// A cell's configuration: its label without the concurrency, and its environment without it.
pub fn config_of(cell: &Cell) -> Config {
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

/// The cell measuring configuration `config` at concurrency `n` with `imports` requested at once.
pub fn level_cell(config: &str, env: &BTreeMap<String, String>, n: u32, imports: u32) -> Cell {
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

/// The sweep to measure: every configuration of the scenario at each of `levels`,
/// with the budget given; and the configurations, in the scenario's order.
pub fn sweep(s: &Checked, budget_bytes: u64, levels: &[u32]) -> (Checked, Vec<Config>) {
    let mut configs: Vec<Config> = Vec::new();
    for c in &s.cells {
        let cfg = config_of(c);
        if !configs.contains(&cfg) {
            configs.push(cfg);
        }
    }
    let mut sweep = s.clone();
    sweep.name = format!("{}-capacity", s.name);
    sweep.budget_bytes = budget_bytes;
    sweep.cells = configs
        .iter()
        .flat_map(|(label, env)| levels.iter().map(move |&n| level_cell(label, env, n, n)))
        .collect();
    (sweep, configs)
}

/// Fits each configuration's sweep runs and recommends the one allowing most imports in
/// `budget_bytes` less the scenario's headroom; `reports` names the sweep's folder.
pub fn conclude(
    s: &Checked,
    budget_bytes: u64,
    configs: Vec<Config>,
    sweep: &RunResults,
    reports: String,
) -> Recommendation {
    let limit = budget_bytes as f64 * (1.0 - s.headroom);
    let models: Vec<Model> = configs
        .into_iter()
        .map(|(label, env)| {
            let mine: Vec<&CellRun> = sweep
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
    let env_lines = best.map_or_else(Vec::new, |i| {
        let m = &models[i];
        let n = m.recommended.unwrap_or(1);
        level_env(&m.env, n, 2 * n)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    });
    Recommendation {
        scenario: s.name.clone(),
        budget_bytes,
        headroom: s.headroom,
        env_lines,
        validation: None,
        reports,
        best,
        models,
    }
}

/// The validation run of model `m`'s recommendation: twice its concurrency requested at once,
/// one cell, a long enough timeout for the queue to drain.
pub fn validation_scenario(s: &Checked, budget_bytes: u64, m: &Model) -> Checked {
    let n = m.recommended.unwrap_or(1);
    let imports = (2 * n).min(2 * MAX_CONCURRENCY);
    let mut v = s.clone();
    v.name = format!("{}-validation", s.name);
    v.budget_bytes = budget_bytes;
    v.raw.cell_timeout_secs = v.raw.cell_timeout_secs.max(600);
    v.cells = vec![level_cell(&m.config, &m.env, n, imports)];
    v
}

/// What the validation run showed: OOM kill, exact delivery, every client served.
pub fn validation(r: &RunResults) -> Option<Validation> {
    let cell = r.cells.first()?;
    let imports = cell.cell.imports;
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
    Some(Validation {
        concurrency: cell.cell.max_concurrent_imports,
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
