//! Which MAX_CONCURRENT_IMPORTS is safe in a budget (`harness recommend`).
//!
//! For each configuration of the scenario (its matrix without the
//! concurrency axis), the importer is measured at the concurrency levels
//! that add imports *running at once*: the providers' lanes
//! (LICHESS_MAX_STREAMS, CHESSCOM_MAX_REQUESTS) cap how many run, and a level
//! above that cap only queues, so it is not measured. The capacity model is
//! fitted against the imports that ran at once, as each run measured them.
//!
//! Three answers: a trusted line (R² ≥ 0.9) gives the largest concurrency
//! whose predicted peak (90 % upper bound) fits budget × (1 − headroom),
//! capped at what the lanes let run; a flat curve (the peaks vary by less
//! than [`FLAT_CV`] of their mean) says memory does not bind below the lanes'
//! cap, and bounds the peak there; peaks that scatter more than that with no
//! line through them are measured once more, and then refused. The
//! recommendation is validated under a real hard limit: the recommended
//! concurrency with twice as many imports requested at once. `cli::recommend`
//! runs what these functions plan and judge.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::analysis::capacity::{Fit, MAX_CONCURRENCY};
use crate::analysis::stats::{mean_var, t_quantile};
use crate::scenario::{Cell, Checked, Lanes};
use crate::session::results::{CellRun, RunResults, median, mib_f64};
use settings::{
    EXISTING_GAMES_PAGE_SIZE, HTTP_MAX_CONNECTIONS, IMPORT_BATCH_SIZE, IMPORT_QUEUE_CAPACITY,
    MAX_CONCURRENT_IMPORTS, Platform, Setting,
};

/// Peaks whose standard deviation is below this fraction of their mean make a flat curve:
/// memory does not grow with the imports running. Above it, with no line through them, they scatter.
pub const FLAT_CV: f64 = 0.10;

/// What limits a configuration's imports running at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binding {
    /// The budget: more running imports would not fit.
    Memory,
    /// The providers' lanes: memory would allow more than the lanes let run.
    Lanes,
    /// The levels measured: memory did not bind up to the most measured, the lanes allow more.
    Measured,
}

/// The model of one configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    /// The configuration (label without concurrency), e.g. `b50-p2000`.
    pub config: String,
    /// Its importer environment, without MAX_CONCURRENT_IMPORTS.
    pub env: BTreeMap<String, String>,
    /// (imports that ran at once, peak bytes) of every verified run.
    pub points: Vec<(u32, u64)>,
    /// The most imports the lanes let run at once with this workload (lichess streams for the
    /// lichess users + chess.com requests for the chess.com ones).
    #[serde(default)]
    pub lanes_cap: u32,
    /// LICHESS_MAX_STREAMS and CHESSCOM_MAX_REQUESTS of the configuration.
    #[serde(default)]
    pub lanes: Lanes,
    /// What binds at the recommendation, when there is one.
    #[serde(default)]
    pub binding: Option<Binding>,
    /// Peaks' standard deviation over their mean, when the fit is not trusted.
    #[serde(default)]
    pub peak_cv: Option<f64>,
    /// The fit over every level.
    pub fit: Option<Fit>,
    /// Largest safe concurrency, when the fit is trusted.
    pub recommended: Option<u32>,
    /// Predicted 90 % upper peak at the recommendation, bytes.
    pub predicted_peak: Option<f64>,
    /// Fit on n <= 3, its prediction at n = 4, the median measured at 4, and the error in percent.
    pub self_check: Option<SelfCheck>,
    /// The answer in words: what binds and why, or why nothing is recommended.
    pub note: Option<String>,
}

impl Model {
    /// The deploy's one line of slots and lanes, when there is a recommendation.
    pub fn slots_and_lanes(&self) -> Option<String> {
        self.recommended.map(|n| {
            format!(
                "MAX_CONCURRENT_IMPORTS={n} LICHESS_MAX_STREAMS={} CHESSCOM_MAX_REQUESTS={}",
                self.lanes.lichess, self.lanes.chess_com
            )
        })
    }
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
    /// The production window a captured scenario replays (`observed.window`), in words.
    #[serde(default)]
    pub window: Option<String>,
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
    env.remove(MAX_CONCURRENT_IMPORTS.name);
    (cell.config_label(), env)
}

/// Environment a concurrency level needs so that the imports really run at once.
fn level_env(base: &BTreeMap<String, String>, n: u32, imports: u32) -> BTreeMap<String, String> {
    let mut env = base.clone();
    let default = |s: &Setting| {
        s.default_integer()
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or(0)
    };
    env.insert(MAX_CONCURRENT_IMPORTS.name.into(), n.to_string());
    env.entry(HTTP_MAX_CONNECTIONS.name.into())
        .or_insert_with(|| n.max(default(&HTTP_MAX_CONNECTIONS)).to_string());
    env.insert(
        IMPORT_QUEUE_CAPACITY.name.into(),
        imports
            .saturating_sub(n)
            .max(default(&IMPORT_QUEUE_CAPACITY))
            .to_string(),
    );
    env
}

/// The cell measuring configuration `config` at concurrency `n` with `imports` requested at once.
pub fn level_cell(config: &str, env: &BTreeMap<String, String>, n: u32, imports: u32) -> Cell {
    Cell {
        label: format!("c{n}-{config}"),
        env: level_env(env, n, imports),
        max_concurrent_imports: n,
        batch_size: crate::scenario::value_of(env, &IMPORT_BATCH_SIZE),
        page_size: crate::scenario::value_of(env, &EXISTING_GAMES_PAGE_SIZE),
        imports,
    }
}

/// Of `n` imports requested at once (users taken in turn from the scenario's templates), how
/// many the `lanes` let run at once.
pub fn runnable(s: &Checked, lanes: Lanes, n: u32) -> u32 {
    let lichess = (0..n as usize)
        .filter(|&i| s.template(i).platform == Platform::Lichess)
        .count() as u32;
    lichess.min(lanes.lichess) + (n - lichess).min(lanes.chess_com)
}

/// The concurrency levels measured for a configuration with `lanes`: of 1..=4 (for the n = 4
/// self-check), 8 and 16 (so that the per-import slope stands out of the run-to-run noise), and
/// the scenario's own, those that add imports running at once (a level above the lanes' cap only
/// queues and is left out); then `extra`, as asked.
pub fn levels(s: &Checked, lanes: Lanes, extra: &[u32]) -> Vec<u32> {
    let mut v: Vec<u32> = [1, 2, 3, 4, 8, 16]
        .into_iter()
        .chain(s.cells.iter().map(|c| c.max_concurrent_imports))
        .collect();
    v.sort_unstable();
    v.dedup();
    let mut running = 0;
    v.retain(|&n| {
        let r = runnable(s, lanes, n);
        let adds = r > running;
        running = running.max(r);
        adds
    });
    v.extend_from_slice(extra);
    v.sort_unstable();
    v.dedup();
    v
}

/// (imports that ran at once, peak bytes) of a configuration's verified runs.
fn points_of(runs: &[&CellRun]) -> Vec<(u32, u64)> {
    runs.iter()
        .filter(|r| r.error.is_none() && r.verification.ok)
        // Older results have no count of running imports: their slots stand in.
        .map(|r| {
            let running = if r.max_running > 0 {
                r.max_running
            } else {
                r.cell.max_concurrent_imports
            };
            (running.min(r.cell.max_concurrent_imports), r.peak)
        })
        .collect()
}

/// The peaks' standard deviation over their mean, and a one-sided 95 % bound on a peak: the
/// largest measured plus Student's t × the standard deviation.
fn flat_bound(points: &[(u32, u64)]) -> Option<(f64, f64)> {
    if points.len() < 2 {
        return None;
    }
    let ys: Vec<f64> = points.iter().map(|p| p.1 as f64).collect();
    let (mean, var) = mean_var(&ys);
    let max = ys.iter().copied().fold(0.0, f64::max);
    let sd = var.sqrt();
    Some((
        sd / mean.max(1.0),
        max + t_quantile(0.95, (ys.len() - 1) as f64) * sd,
    ))
}

fn pct_of(bytes: f64, of: f64) -> f64 {
    bytes * 100.0 / of.max(1.0)
}

/// The verdict on one configuration from its runs; `limit` is the budget less the headroom.
fn model(s: &Checked, config: String, env: BTreeMap<String, String>, runs: &[&CellRun], limit: f64) -> Model {
    let points = points_of(runs);
    let lanes = crate::scenario::lanes(&env);
    let lanes_cap = runnable(s, lanes, MAX_CONCURRENCY).max(1);
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
    let mut m = Model {
        config,
        env,
        points,
        lanes_cap,
        lanes,
        binding: None,
        peak_cv: None,
        fit,
        recommended: None,
        predicted_peak: None,
        self_check,
        note: None,
    };
    match fit {
        Some(f) if f.trusted() && f.per_import > 0.0 => judge_line(&mut m, f, limit),
        _ => judge_flat(&mut m, limit),
    }
    m
}

fn lanes_words(m: &Model) -> String {
    format!(
        "{} lichess stream(s) and {} chess.com request(s) let at most {} of these imports run at once",
        m.lanes.lichess, m.lanes.chess_com, m.lanes_cap
    )
}

/// A trusted line: the most running imports that fit, capped at the lanes'.
fn judge_line(m: &mut Model, f: Fit, limit: f64) {
    let cap = m.lanes_cap;
    match f.largest_fitting(limit) {
        Some(n) if n >= cap => {
            let peak = f.upper(f64::from(cap));
            m.recommended = Some(cap);
            m.predicted_peak = Some(peak);
            m.binding = Some(Binding::Lanes);
            m.note = Some(format!(
                "the lanes bind, not memory: {}; at {cap} running the peak is ≤ {:.1} MiB ({:.0} % of the \
                 limit); memory alone would hold {n}{}",
                lanes_words(m),
                mib_f64(peak),
                pct_of(peak, limit),
                if n == MAX_CONCURRENCY {
                    ", the importer's own maximum"
                } else {
                    ""
                }
            ));
        }
        Some(n) => {
            m.recommended = Some(n);
            m.predicted_peak = Some(f.upper(f64::from(n)));
            m.binding = Some(Binding::Memory);
            m.note = Some(format!(
                "memory binds: {n} running imports fit the limit, fewer than the {cap} the lanes allow"
            ));
        }
        None => m.note = Some("not even one import fits the budget".into()),
    }
}

/// No trusted line: a flat curve is an answer (memory does not bind), a scatter is not.
fn judge_flat(m: &mut Model, limit: f64) {
    let Some((cv, bound)) = flat_bound(&m.points) else {
        m.note = Some("too few measured points to judge".into());
        return;
    };
    m.peak_cv = Some(cv);
    let ran = m.points.iter().map(|p| p.0).max().unwrap_or(0);
    let r2 = m.fit.map_or_else(
        || "no fitted line: fewer than 3 points or one level".to_string(),
        |f| format!("R² {:.2}", f.r2),
    );
    if cv > FLAT_CV {
        m.note = Some(format!(
            "the peaks scatter ({r2}; standard deviation {:.0} % of their mean, above {:.0} %): no \
             recommendation from them",
            cv * 100.0,
            FLAT_CV * 100.0
        ));
    } else if bound > limit {
        m.note = Some(format!(
            "memory does not grow with the imports running ({r2}), but the peak's bound, {:.1} MiB, exceeds the limit",
            mib_f64(bound)
        ));
    } else if ran < m.lanes_cap {
        // A flat curve says nothing beyond the levels measured.
        m.recommended = Some(ran);
        m.predicted_peak = Some(bound);
        m.binding = Some(Binding::Measured);
        m.note = Some(format!(
            "memory does not grow with the imports running up to the {ran} measured ({r2}): at most {:.1} MiB at \
             the 95 % bound, {:.0} % of the limit; the lanes would let {} run, which was not measured \
             (`--levels {}` measures it)",
            mib_f64(bound),
            pct_of(bound, limit),
            m.lanes_cap,
            m.lanes_cap
        ));
    } else {
        m.recommended = Some(m.lanes_cap);
        m.predicted_peak = Some(bound);
        m.binding = Some(Binding::Lanes);
        m.note = Some(format!(
            "memory does not bind below {ran} running: the lanes do ({}); the peak does not grow with the \
             imports running ({r2}, standard deviation {:.1} % of the mean): at most {:.1} MiB at the 95 % \
             bound, {:.0} % of the limit",
            lanes_words(m),
            cv * 100.0,
            mib_f64(bound),
            pct_of(bound, limit)
        ));
    }
}

/// Configurations (by index) without a recommendation whose peaks scatter, or that have fewer
/// than 3 points (one level, as when the lanes let one import run): worth one more repeat.
pub fn scattered(rec: &Recommendation) -> Vec<usize> {
    rec.models
        .iter()
        .enumerate()
        .filter(|(_, m)| {
            m.recommended.is_none() && (m.peak_cv.is_some_and(|cv| cv > FLAT_CV) || m.points.len() < 3)
        })
        .map(|(i, _)| i)
        .collect()
}

/// The sweep to measure: every configuration of the scenario at each of `levels`,
/// with the budget given; and the configurations, in the scenario's order.
pub fn sweep(s: &Checked, budget_bytes: u64, extra_levels: &[u32]) -> (Checked, Vec<Config>) {
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
        .flat_map(|(label, env)| {
            levels(s, crate::scenario::lanes(env), extra_levels)
                .into_iter()
                .map(move |n| level_cell(label, env, n, n))
        })
        .collect();
    (sweep, configs)
}

/// Fits each configuration's sweep runs and recommends the one allowing most imports in
/// `budget_bytes` less the scenario's headroom; `reports` names the sweep's folder.
pub fn conclude(
    s: &Checked,
    budget_bytes: u64,
    configs: Vec<Config>,
    sweep: &[CellRun],
    reports: String,
) -> Recommendation {
    let limit = budget_bytes as f64 * (1.0 - s.headroom);
    let models: Vec<Model> = configs
        .into_iter()
        .map(|(label, env)| {
            let mine: Vec<&CellRun> = sweep.iter().filter(|r| r.cell.config_label() == label).collect();
            model(s, label, env, &mine, limit)
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
        window: s.observed_window(),
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const MIB: u64 = 1 << 20;

    /// railway-hobby's shape: lichess and chess.com users in turn, 2 + 2 lanes.
    fn hobby() -> Checked {
        let text = "budget: 512MB\nenv:\n  LICHESS_MAX_STREAMS: \"2\"\n  CHESSCOM_MAX_REQUESTS: \"2\"\n\
                    matrix:\n  MAX_CONCURRENT_IMPORTS: [2, 3, 4]\nworkload:\n  users:\n    - platform: lichess\n      \
                    games: 100\n    - platform: chess.com\n      games: 100\n";
        Checked::parse(Path::new("hobby.yaml"), text).expect("scenario")
    }

    /// A verified run of `n` slots in which `running` ran at once and the peak was `peak_mib`.
    fn run(s: &Checked, n: u32, running: u32, peak_mib: f64) -> CellRun {
        let (label, env) = config_of(&s.cells[0]);
        let mut r = CellRun::failed(&level_cell(&label, &env, n, n), 0, String::new());
        r.error = None;
        r.verification.ok = true;
        r.verification.problems.clear();
        r.max_running = running;
        r.peak = (peak_mib * MIB as f64) as u64;
        r
    }

    fn conclude_on(s: &Checked, runs: &[CellRun]) -> Recommendation {
        let configs = vec![config_of(&s.cells[0])];
        conclude(s, 512 * MIB, configs, runs, String::new())
    }

    #[test]
    fn levels_stop_where_the_lanes_stop_adding_running_imports() {
        let s = hobby();
        let lanes = |lichess, chess_com| Lanes { lichess, chess_com };
        assert_eq!(runnable(&s, lanes(2, 2), 16), 4);
        assert_eq!(runnable(&s, lanes(2, 2), 3), 3);
        assert_eq!(runnable(&s, lanes(1, 1), 3), 2);
        assert_eq!(levels(&s, lanes(2, 2), &[]), vec![1, 2, 3, 4]);
        assert_eq!(levels(&s, lanes(1, 1), &[]), vec![1, 2]);
        // Asked for, a level is measured even if it only queues.
        assert_eq!(levels(&s, lanes(1, 1), &[8]), vec![1, 2, 8]);
        assert_eq!(levels(&s, lanes(64, 64), &[]), vec![1, 2, 3, 4, 8, 16]);
    }

    #[test]
    fn a_flat_curve_is_an_answer_bound_by_the_lanes() {
        let s = hobby();
        // The shape: peaks of 16-17 MiB whatever the imports running (R² well below 0.9).
        let runs: Vec<CellRun> = [(1, 16.6), (2, 16.2), (3, 16.9), (4, 16.4)]
            .into_iter()
            .map(|(n, p)| run(&s, n, n, p))
            .collect();
        let rec = conclude_on(&s, &runs);
        let m = &rec.models[0];
        assert!(m.fit.is_some_and(|f| !f.trusted()), "{:?}", m.fit);
        assert_eq!(rec.best, Some(0));
        assert_eq!(m.binding, Some(Binding::Lanes));
        assert_eq!(
            m.slots_and_lanes().as_deref(),
            Some("MAX_CONCURRENT_IMPORTS=4 LICHESS_MAX_STREAMS=2 CHESSCOM_MAX_REQUESTS=2")
        );
        let note = m.note.as_deref().unwrap_or_default();
        assert!(note.contains("memory does not bind below 4 running"), "{note}");
        assert!(note.contains("R² "), "{note}");
        assert_eq!(rec.exit_code(), 0);
    }

    #[test]
    fn a_line_that_fits_below_the_lanes_binds_on_memory() {
        let s = hobby();
        // 100 MiB per import on 50 MiB: 435 MiB (512 less 15 %) holds 3 at the bound, not 4.
        let runs: Vec<CellRun> = [(1, 150.0), (2, 250.0), (3, 350.0), (4, 450.0)]
            .into_iter()
            .map(|(n, p)| run(&s, n, n, p))
            .collect();
        let rec = conclude_on(&s, &runs);
        let m = &rec.models[0];
        assert_eq!(m.binding, Some(Binding::Memory));
        assert_eq!(m.recommended, Some(3));
        // The points are the imports that ran: a run of 4 slots in which 2 ran is a point at 2.
        let queued = run(&s, 4, 2, 250.0);
        assert_eq!(points_of(&[&queued]), vec![(2, 250 * MIB)]);
    }

    #[test]
    fn one_level_asks_for_another_repeat_and_a_flat_curve_claims_only_what_was_measured() {
        // One lane each and lichess users only: one import runs, one point, no answer yet.
        let text = "budget: 512MB\nmatrix:\n  MAX_CONCURRENT_IMPORTS: [2]\nworkload:\n  users:\n    - platform: lichess\n      games: 100\n";
        let s = Checked::parse(Path::new("one.yaml"), text).expect("scenario");
        let one_each = Lanes {
            lichess: 1,
            chess_com: 1,
        };
        assert_eq!(levels(&s, one_each, &[]), vec![1]);
        let rec = conclude_on(&s, &[run(&s, 1, 1, 16.0)]);
        assert_eq!(rec.best, None);
        assert_eq!(scattered(&rec), vec![0], "{:?}", rec.models[0].note);
        // Wide lanes: flat up to the 4 measured; 64 would be allowed but was not measured.
        let hobby = hobby();
        let (label, mut env) = config_of(&hobby.cells[0]);
        env.insert("LICHESS_MAX_STREAMS".into(), "32".into());
        env.insert("CHESSCOM_MAX_REQUESTS".into(), "32".into());
        let runs: Vec<CellRun> = [(1, 16.6), (2, 16.2), (3, 16.9), (4, 16.4)]
            .into_iter()
            .map(|(n, p)| {
                let mut r = run(&hobby, n, n, p);
                r.cell = level_cell(&label, &env, n, n);
                r
            })
            .collect();
        let rec = conclude(&hobby, 512 * MIB, vec![(label, env)], &runs, String::new());
        let m = &rec.models[0];
        assert_eq!(
            (m.recommended, m.binding),
            (Some(4), Some(Binding::Measured)),
            "{:?}",
            m.note
        );
    }

    #[test]
    fn scattered_peaks_are_refused_and_named_for_another_repeat() {
        let s = hobby();
        let runs: Vec<CellRun> = [(1, 16.0), (2, 30.0), (3, 12.0), (4, 25.0)]
            .into_iter()
            .map(|(n, p)| run(&s, n, n, p))
            .collect();
        let rec = conclude_on(&s, &runs);
        assert_eq!(rec.best, None);
        assert_eq!(scattered(&rec), vec![0]);
        let note = rec.models[0].note.as_deref().unwrap_or_default();
        assert!(note.contains("scatter"), "{note}");
        assert_eq!(rec.exit_code(), 1);
    }
}
