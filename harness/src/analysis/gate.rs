//! The memory regression gate's decision (`cli::gate` runs the repeats).
//!
//! Every cell is checked against the budget (less the headroom) and the
//! scenario's latency limits, then against what it is compared with:
//! - another build measured in the same run (A/B): a regression is a growth
//!   of the mean above the tolerance that Welch's test finds significant;
//! - a committed baseline: the medians of at least three repeats within a
//!   tolerance (for the peak, the larger of a percentage and a floor in MiB).
//!   A cell whose repeats spread too much is rerun once; if it is still noisy
//!   it is reported `erratic`: a warning when within tolerance, a failure when
//!   not, never a silent pass.
//!
//! Each memory check also states the smallest growth the run could have
//! detected with [`POWER`], so a pass says what it could not have seen.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analysis::stats::{mean_var, spread_pct, t_quantile, welch, welch_terms};
use crate::scenario::{Checked, Gate};
use crate::session::results::{BYTES_PER_MIB, CellRun, Machine, RunResults, median, mib};

/// Fewest repeats the gate takes a median over.
pub const MIN_REPEATS: u32 = 3;
/// Fewest repeats per side of an A/B gate: the standard error of the difference shrinks with
/// √n and Welch's t quantiles with the degrees of freedom, so 5 + 5 sees about half of what
/// 3 + 3 sees at the same spread.
pub const MIN_AB_REPEATS: u32 = 5;
/// Significance level of the gate's tests.
pub const ALPHA: f64 = 0.05;
/// The power at which the gate states the smallest change it could have detected.
pub const POWER: f64 = 0.8;

/// t_{1−α/2, df} and t_{power, df}: the observed change must clear the first (in standard errors)
/// to be significant; a true change that far plus the second clears it with [`POWER`]
/// (Cohen, *Statistical Power Analysis*, 1988).
fn t_quantiles(df: f64) -> Option<(f64, f64)> {
    (df > 0.0).then(|| (t_quantile(1.0 - ALPHA / 2.0, df), t_quantile(POWER, df)))
}

/// Baseline mode: the smallest true growth, percent of `reference`, that would put the median of
/// `values`' repeats above the tolerance `tol_pct` with [`POWER`]: tol + t_{power, n−1} × SE.
/// None with fewer than 2 values.
pub fn one_sample_detectable_pct(values: &[f64], reference: f64, tol_pct: f64) -> Option<f64> {
    if values.len() < 2 || reference <= 0.0 {
        return None;
    }
    let (_, var) = mean_var(values);
    let se = (var / values.len() as f64).sqrt() * 100.0 / reference;
    let (_, t_power) = t_quantiles(values.len() as f64 - 1.0)?;
    Some(tol_pct + t_power * se)
}

/// A/B: the smallest true growth, percent of `a`'s mean, that the gate calls a regression with
/// [`POWER`]. It calls one when the observed growth clears both `tol_pct` and significance
/// (t_{1−α/2} standard errors), so: max(tol, t_{1−α/2} × SE) + t_{power} × SE, with Welch's
/// standard error and degrees of freedom. None with fewer than 2 repeats on a side.
pub fn detectable_pct(a: &[f64], b: &[f64], tol_pct: f64) -> Option<f64> {
    let w = welch_terms(a, b)?;
    if w.se2 <= 0.0 || w.mean_a <= 0.0 {
        return Some(tol_pct);
    }
    let (t_crit, t_power) = t_quantiles(w.df)?;
    let se = w.se2.sqrt() * 100.0 / w.mean_a;
    Some(tol_pct.max(t_crit * se) + t_power * se)
}

/// One metric of one cell, the candidate build's repeats `b` against the baseline build's `a`
/// measured in the same run: a regression is a growth of the mean above `tol_pct` that Welch's
/// test also finds significant (p < [`ALPHA`]).
pub fn ab_check(cell: &str, metric: Metric, a: &[f64], b: &[f64], tol_pct: f64) -> Check {
    let (ma, _) = mean_var(a);
    let (mb, _) = mean_var(b);
    let change = if ma > 0.0 { (mb - ma) * 100.0 / ma } else { 0.0 };
    let p = welch(a, b).map(|w| w.p);
    let detectable = detectable_pct(a, b, tol_pct);
    let significant = p.is_some_and(|p| p < ALPHA);
    let verdict = match p {
        None => Verdict::Failed,
        Some(_) if significant && change > tol_pct => Verdict::Regression,
        Some(_) if significant && change < -tol_pct => Verdict::Better,
        Some(_) => Verdict::Pass,
    };
    let word = match verdict {
        Verdict::Failed => "too few finished repeats on a side to judge".to_string(),
        Verdict::Regression => "REGRESSION".into(),
        Verdict::Better => "better".into(),
        _ if change > tol_pct => "larger than the tolerance but not significant: no change called".into(),
        _ => "within tolerance".into(),
    };
    let message = format!(
        "{cell} {metric}: against {:.2} MiB, this build {:.2} MiB ({change:+.1} %, p {}), tolerance {tol_pct:.0} %, detectable ≥ {}: {word}",
        mib(ma as u64),
        mib(mb as u64),
        p.map_or("–".into(), |p| format!("{p:.3}")),
        detectable.map_or("–".into(), |d| format!("{d:.0} %")),
    );
    let tolerance = (ma * tol_pct / 100.0) as u64;
    Check {
        baseline: Some(ma as u64),
        change_pct: Some(change),
        p_value: p,
        detectable_pct: detectable,
        ..Check::new(cell, metric, mb as u64, tolerance, verdict, message)
    }
}

/// A baseline that cannot be read (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No baseline to compare with.
    #[error("no baseline at {0}; create one with --update-baseline")]
    NoBaseline(PathBuf),
    /// The baseline file cannot be read.
    #[error("baseline {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The baseline file is not a baseline.
    #[error("baseline {path}: {source}")]
    BadBaseline {
        /// The file.
        path: PathBuf,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

/// One cell's reference figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineCell {
    /// Median peak RSS, bytes.
    pub peak: u64,
    /// Median memory per import, bytes.
    pub per_import: u64,
    /// Median peak anonymous memory, bytes; 0 in a baseline written before it was measured.
    #[serde(default)]
    pub peak_anon: u64,
    /// Median anonymous memory per import, bytes; 0 as `peak_anon`.
    #[serde(default)]
    pub per_import_anon: u64,
    /// Median peak file-backed memory (the binary's resident text), bytes; 0 as `peak_anon`.
    #[serde(default)]
    pub peak_file: u64,
    /// Median idle RSS, bytes.
    pub idle: u64,
    /// Runs the medians were taken over.
    pub repeats: usize,
    /// Spread of the peaks, percent of the median.
    pub spread_pct: f64,
}

/// The committed reference a gate compares with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Scenario name.
    pub scenario: String,
    /// When it was measured.
    pub created_at: String,
    /// The machine it was measured on.
    pub machine: Machine,
    /// Per cell label.
    pub cells: BTreeMap<String, BaselineCell>,
}

impl Baseline {
    /// Reads a baseline file.
    pub fn load(path: &Path) -> Result<Baseline, Error> {
        let bytes = std::fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => Error::NoBaseline(path.to_path_buf()),
            _ => Error::Unreadable {
                path: path.to_path_buf(),
                source,
            },
        })?;
        serde_json::from_slice(&bytes).map_err(|source| Error::BadBaseline {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Within tolerance.
    Pass,
    /// Lower than the baseline by more than the tolerance.
    Better,
    /// Higher than the baseline by more than the tolerance.
    Regression,
    /// Peak above budget × (1 − headroom).
    OverBudget,
    /// Repeats too noisy to trust; within tolerance (a warning).
    Erratic,
    /// The baseline has no such cell (a warning).
    NoBaseline,
    /// API latency above the scenario's limit.
    TooSlow,
    /// Not verified, OOM-killed or not measured.
    Failed,
}

impl Verdict {
    /// Whether this verdict fails the gate.
    pub fn fails(self) -> bool {
        matches!(
            self,
            Verdict::Regression | Verdict::OverBudget | Verdict::TooSlow | Verdict::Failed
        )
    }

    /// ✓, ⚠ or ✗.
    pub fn mark(self) -> &'static str {
        match self {
            Verdict::Pass | Verdict::Better => "✓",
            Verdict::Erratic | Verdict::NoBaseline => "⚠",
            _ => "✗",
        }
    }
}

/// What a [`Check`] judges: its name (in `decision.json`, the tables and `junit.xml`) and unit.
///
/// Every metric is judged the same way round: higher is worse. A check fails when the figure
/// grows past its tolerance or exceeds its limit; a fall past the tolerance is [`Verdict::Better`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Metric {
    /// Exact delivery: every game once, the counters true; no figure (the peak stands in).
    Delivery,
    /// The total peak (VmHWM) against the budget less the headroom.
    Budget,
    /// The worst repeat's p99 of the POSTs against the scenario's limit.
    PostP99,
    /// The worst repeat's p99 of the GETs against the scenario's limit.
    GetP99,
    /// The peak anonymous memory (`RssAnon`): the code's own.
    PeakAnon,
    /// Anonymous memory per import.
    PerImportAnon,
    /// The peak file-backed memory (`RssFile`): the binary's resident text.
    ResidentText,
    /// A cell the baseline does not have: nothing compared (the peak stands in).
    Baseline,
    /// The total peak (VmHWM), against a baseline written before the anonymous split.
    PeakRss,
    /// The total memory per import, likewise.
    MemoryPerImport,
}

/// The unit of a [`Metric`]'s figures (measured, baseline, tolerance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes.
    Bytes,
    /// Microseconds.
    Micros,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 10] = [
        Metric::Delivery,
        Metric::Budget,
        Metric::PostP99,
        Metric::GetP99,
        Metric::PeakAnon,
        Metric::PerImportAnon,
        Metric::ResidentText,
        Metric::Baseline,
        Metric::PeakRss,
        Metric::MemoryPerImport,
    ];

    /// Its name, e.g. `peak_anon`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Delivery => "delivery",
            Metric::Budget => "budget",
            Metric::PostP99 => "post_p99",
            Metric::GetP99 => "get_p99",
            Metric::PeakAnon => "peak_anon",
            Metric::PerImportAnon => "per_import_anon",
            Metric::ResidentText => "resident_text",
            Metric::Baseline => "baseline",
            Metric::PeakRss => "peak_rss",
            Metric::MemoryPerImport => "memory_per_import",
        }
    }

    /// The unit of its figures.
    pub fn unit(self) -> Unit {
        match self {
            Metric::PostP99 | Metric::GetP99 => Unit::Micros,
            _ => Unit::Bytes,
        }
    }

    /// Whether it judges anonymous memory: the importer's own, what the code changes.
    pub fn is_anonymous(self) -> bool {
        matches!(self, Metric::PeakAnon | Metric::PerImportAnon)
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Metric> for &'static str {
    fn from(m: Metric) -> &'static str {
        m.name()
    }
}

/// A metric name no [`Metric`] has (in a `decision.json` read back).
#[derive(Debug, thiserror::Error)]
#[error("unknown metric {0:?}")]
pub struct UnknownMetric(String);

impl TryFrom<String> for Metric {
    type Error = UnknownMetric;

    fn try_from(name: String) -> Result<Metric, UnknownMetric> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or(UnknownMetric(name))
    }
}

/// One line of the gate's table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    /// Cell label.
    pub cell: String,
    /// What it judges.
    pub metric: Metric,
    /// Baseline value, in the metric's [`Unit`]; A/B: the other build's mean.
    pub baseline: Option<u64>,
    /// Measured median, in the metric's [`Unit`] (a latency check: the worst repeat's p99); A/B:
    /// this build's mean.
    pub measured: u64,
    /// Change against the baseline, percent.
    pub change_pct: Option<f64>,
    /// Allowed growth (for `budget` and a latency, the limit), in the metric's [`Unit`].
    pub tolerance: u64,
    /// The verdict.
    pub verdict: Verdict,
    /// In words.
    pub message: String,
    /// A/B: Welch's two-sided p-value of the difference between the two builds' repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// The smallest true growth, percent, this run calls a regression with [`POWER`]: see
    /// [`detectable_pct`] (A/B) and [`one_sample_detectable_pct`] (baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detectable_pct: Option<f64>,
}

impl Check {
    /// `metric` of `cell` measured at `measured`, judged `verdict` against `tolerance` and nothing
    /// else: no baseline, no change, no test. A comparison sets its own on top.
    pub fn new(
        cell: &str,
        metric: Metric,
        measured: u64,
        tolerance: u64,
        verdict: Verdict,
        message: String,
    ) -> Check {
        Check {
            cell: cell.to_string(),
            metric,
            baseline: None,
            measured,
            change_pct: None,
            tolerance,
            verdict,
            message,
            p_value: None,
            detectable_pct: None,
        }
    }
}

/// What the gate decided, as `decision.json` holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    /// Scenario.
    pub scenario: String,
    /// Exit code: 0 pass, 1 regression, over budget, too slow or failed.
    pub exit_code: u8,
    /// Every check.
    pub checks: Vec<Check>,
    /// Warnings (erratic cells, cross-machine comparison, missing cells).
    pub warnings: Vec<String>,
    /// Where the reports are.
    pub reports: String,
    /// Wall time of the gate, seconds.
    pub wall_secs: f64,
    /// Where the heap grew, from profiled runs of a failing (or `--where`) cell: diagnostic,
    /// never part of the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub where_grew: Option<super::heap::Where>,
}

/// Medians of one cell's runs.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Worst repeat's p99 of the POSTs, µs.
    pub post_p99_us: u64,
    /// Worst repeat's p99 of the GETs, µs.
    pub get_p99_us: u64,
    /// Median peak, bytes.
    pub peak: u64,
    /// Median memory per import, bytes.
    pub per_import: u64,
    /// Median peak anonymous memory, bytes.
    pub peak_anon: u64,
    /// Median anonymous memory per import, bytes.
    pub per_import_anon: u64,
    /// Median peak file-backed memory, bytes.
    pub peak_file: u64,
    /// Median idle RSS, bytes.
    pub idle: u64,
    /// Spread of the peaks, percent of their median.
    pub spread: f64,
    /// Still too noisy after a rerun.
    pub erratic: bool,
    /// Why runs failed, deduplicated.
    pub problems: Vec<String>,
    /// Peak of each run that finished, bytes.
    pub peaks: Vec<f64>,
    /// Memory per import of each run that finished, bytes.
    pub per_imports: Vec<f64>,
    /// Peak anonymous memory of each run that finished, bytes.
    pub peaks_anon: Vec<f64>,
    /// Anonymous memory per import of each run that finished, bytes.
    pub per_imports_anon: Vec<f64>,
    /// Peak file-backed memory of each run that finished, bytes.
    pub peaks_file: Vec<f64>,
}

/// The medians a cell is judged on; `erratic` when its repeats spread too much even after a rerun.
pub fn stats(runs: &[CellRun], erratic: bool) -> Stats {
    let ok: Vec<&CellRun> = runs.iter().filter(|r| r.error.is_none()).collect();
    let mut problems: Vec<String> = runs.iter().filter_map(|r| r.error.clone()).collect();
    problems.extend(runs.iter().flat_map(|r| r.verification.problems.clone()));
    problems.sort();
    problems.dedup();
    let p99 = |name: &str| {
        runs.iter()
            .flat_map(|r| {
                r.load
                    .requests
                    .iter()
                    .filter(|q| q.name == name)
                    .map(|q| (q.p99_ms * 1000.0) as u64)
            })
            .max()
            .unwrap_or(0)
    };
    Stats {
        post_p99_us: p99("POST /api/v1/import-more-games"),
        get_p99_us: p99("GET /api/v1/imports/{id}"),
        peak: median(ok.iter().map(|r| r.peak)),
        per_import: median(ok.iter().map(|r| r.per_import)),
        peak_anon: median(ok.iter().map(|r| r.peak_anon)),
        per_import_anon: median(ok.iter().map(|r| r.per_import_anon)),
        peak_file: median(ok.iter().map(|r| r.peak_file)),
        idle: median(ok.iter().map(|r| r.idle_rss)),
        spread: spread_pct(&runs.iter().collect::<Vec<_>>()),
        erratic,
        problems,
        peaks: ok.iter().map(|r| r.peak as f64).collect(),
        per_imports: ok.iter().map(|r| r.per_import as f64).collect(),
        peaks_anon: ok.iter().map(|r| r.peak_anon as f64).collect(),
        per_imports_anon: ok.iter().map(|r| r.per_import_anon as f64).collect(),
        peaks_file: ok.iter().map(|r| r.peak_file as f64).collect(),
    }
}

/// An A/B tolerance in percent: the larger of `pct` and `floor_mib` over the mean of `against`
/// (the side compared with), as [`tolerance`] takes it against a baseline.
pub fn floored_pct(against: &[f64], pct: f64, floor_mib: f64) -> f64 {
    let mean = against.iter().sum::<f64>() / against.len().max(1) as f64;
    if mean > 0.0 {
        tolerance(mean as u64, pct, floor_mib) as f64 * 100.0 / mean
    } else {
        pct
    }
}

/// Allowed growth over `base`: the larger of the percentage and the floor.
pub fn tolerance(base: u64, pct: f64, floor_mib: f64) -> u64 {
    let by_pct = base as f64 * pct / 100.0;
    let floor = floor_mib * BYTES_PER_MIB;
    by_pct.max(floor) as u64
}

/// One figure of one cell against its baseline: bytes, and the growth allowed.
#[derive(Debug, Clone, Copy)]
pub struct Compared<'a> {
    /// The cell's label.
    pub cell: &'a str,
    /// The figure.
    pub metric: Metric,
    /// The baseline's median.
    pub base: u64,
    /// This run's median.
    pub measured: u64,
    /// Growth allowed over `base`.
    pub tol: u64,
}

/// A measured median against its baseline with tolerance `tol`; erratic repeats never pass
/// silently. `noise_pct`: the growth the run could detect (see [`one_sample_detectable_pct`]).
pub fn relative(c: Compared<'_>, erratic: bool, noise_pct: Option<f64>) -> Check {
    let Compared {
        cell,
        metric,
        base,
        measured,
        tol,
    } = c;
    let change = if base > 0 {
        (measured as f64 - base as f64) * 100.0 / base as f64
    } else {
        0.0
    };
    let tol_pct = tol as f64 * 100.0 / base.max(1) as f64;
    let detectable_pct = noise_pct.unwrap_or(tol_pct);
    let verdict = if measured > base + tol {
        Verdict::Regression
    } else if erratic {
        Verdict::Erratic
    } else if measured + tol < base {
        Verdict::Better
    } else {
        Verdict::Pass
    };
    let word = match verdict {
        Verdict::Regression if erratic => "REGRESSION (erratic repeats)",
        Verdict::Regression => "REGRESSION",
        Verdict::Erratic => "erratic: repeats too noisy to trust, within tolerance",
        Verdict::Better => "better",
        _ => "within tolerance",
    };
    let message = format!(
        "{cell} {metric}: baseline {:.2} MiB, measured {:.2} MiB ({change:+.1} %), tolerance {:.2} MiB, detectable ≥ {detectable_pct:.0} %: {word}",
        mib(base),
        mib(measured),
        mib(tol)
    );
    Check {
        baseline: Some(base),
        change_pct: Some(change),
        detectable_pct: Some(detectable_pct),
        ..Check::new(cell, metric, measured, tol, verdict, message)
    }
}

fn machine_warnings(base: &Machine, now: &Machine) -> Vec<String> {
    let mut w = Vec::new();
    if base.cores != now.cores {
        w.push(format!(
            "baseline measured on {} cores, this machine has {}",
            base.cores, now.cores
        ));
    }
    let ratio = now.memory_bytes as f64 / base.memory_bytes.max(1) as f64;
    if !(0.95..=1.05).contains(&ratio) {
        w.push(format!(
            "baseline machine had {:.1} GiB, this one {:.1} GiB",
            mib(base.memory_bytes) / 1024.0,
            mib(now.memory_bytes) / 1024.0
        ));
    }
    if base.kernel != now.kernel {
        w.push(format!(
            "baseline kernel {}, this kernel {}",
            base.kernel, now.kernel
        ));
    }
    if base.allocator != now.allocator {
        w.push(format!(
            "baseline allocator {}, this run {}",
            base.allocator, now.allocator
        ));
    }
    if !w.is_empty() {
        w.insert(
            0,
            "comparing across machines: figures may differ for reasons other than the code".into(),
        );
    }
    w
}

/// What the candidate's memory is compared with.
#[derive(Debug, Clone, Copy)]
pub enum Against<'a> {
    /// Only the budget and the latency limits (writing a baseline).
    Nothing,
    /// A committed baseline's medians.
    Baseline(&'a Baseline),
    /// Another build's repeats measured in the same run, per cell label (A/B).
    Build(&'a [(String, Stats)]),
}

/// The checks that need nothing to compare with: delivery, the budget, the latency limits.
fn absolute_checks(s: &Checked, label: &str, st: &Stats, limit: u64) -> Vec<Check> {
    let g = &s.raw.gate;
    let mut checks = Vec::new();
    if !st.problems.is_empty() {
        let message = format!("{label}: {}", st.problems.join("; "));
        checks.push(Check::new(
            label,
            Metric::Delivery,
            st.peak,
            0,
            Verdict::Failed,
            message,
        ));
    }
    let over = st.peak > limit;
    let message = format!(
        "{label} peak_rss {:.1} MiB {} budget {:.0} MiB less {:.0} % headroom = {:.1} MiB",
        mib(st.peak),
        if over { ">" } else { "<=" },
        mib(s.budget_bytes),
        s.headroom * 100.0,
        mib(limit)
    );
    let verdict = if over { Verdict::OverBudget } else { Verdict::Pass };
    checks.push(Check::new(
        label,
        Metric::Budget,
        st.peak,
        limit,
        verdict,
        message,
    ));
    for (metric, limit_ms, measured_us) in [
        (Metric::PostP99, g.max_post_p99_ms, st.post_p99_us),
        (Metric::GetP99, g.max_get_p99_ms, st.get_p99_us),
    ] {
        let Some(limit_ms) = limit_ms else { continue };
        let limit_us = (limit_ms * 1000.0) as u64;
        let slow = measured_us > limit_us;
        let message = format!(
            "{label} {metric} {:.1} ms {} the scenario's limit {limit_ms:.1} ms",
            measured_us as f64 / 1000.0,
            if slow { ">" } else { "<=" },
        );
        let verdict = if slow { Verdict::TooSlow } else { Verdict::Pass };
        checks.push(Check::new(label, metric, measured_us, limit_us, verdict, message));
    }
    checks
}

/// A/B: the anonymous peak, memory per import and resident text against the other build's repeats.
fn ab_checks(g: &Gate, label: &str, a: &Stats, st: &Stats, warnings: &mut Vec<String>) -> Vec<Check> {
    let mut checks = Vec::new();
    if !a.problems.is_empty() {
        warnings.push(format!(
            "{label}: the build compared against failed some repeats: {}",
            a.problems.join("; ")
        ));
    }
    // The code's behaviour is judged on anonymous memory: the binary's resident text
    // depends on how the page cache holds each file, and is judged on its own.
    checks.push(ab_check(
        label,
        Metric::PeakAnon,
        &a.peaks_anon,
        &st.peaks_anon,
        floored_pct(&a.peaks_anon, g.peak_tolerance_pct, g.peak_floor_mib),
    ));
    checks.push(ab_check(
        label,
        Metric::PerImportAnon,
        &a.per_imports_anon,
        &st.per_imports_anon,
        g.per_import_tolerance_pct,
    ));
    checks.push(ab_check(
        label,
        Metric::ResidentText,
        &a.peaks_file,
        &st.peaks_file,
        g.resident_text_tolerance_pct,
    ));
    checks
}

/// Against a committed baseline's medians: anonymous figures when it has them, else totals.
fn baseline_checks(
    g: &Gate,
    label: &str,
    b: &Baseline,
    st: &Stats,
    warnings: &mut Vec<String>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    match b.cells.get(label) {
        None => {
            warnings.push(format!("{label}: not in the baseline, not compared"));
            let message = format!("{label}: no baseline");
            checks.push(Check::new(
                label,
                Metric::Baseline,
                st.peak,
                0,
                Verdict::NoBaseline,
                message,
            ));
        }
        Some(bc) => {
            // A baseline written before the split holds totals only: judged on those, said so.
            let split = bc.peak_anon > 0;
            if !split {
                warnings.push(format!(
                    "{label}: the baseline predates anonymous memory: judged on the totals (VmHWM), \
                     which the binary's page-cache layout moves; write a new baseline"
                ));
            }
            let figures = if split {
                [
                    (Metric::PeakAnon, bc.peak_anon, st.peak_anon, &st.peaks_anon),
                    (
                        Metric::PerImportAnon,
                        bc.per_import_anon,
                        st.per_import_anon,
                        &st.per_imports_anon,
                    ),
                    (Metric::ResidentText, bc.peak_file, st.peak_file, &st.peaks_file),
                ]
                .to_vec()
            } else {
                [
                    (Metric::PeakRss, bc.peak, st.peak, &st.peaks),
                    (
                        Metric::MemoryPerImport,
                        bc.per_import,
                        st.per_import,
                        &st.per_imports,
                    ),
                ]
                .to_vec()
            };
            for (metric, base, measured, values) in figures {
                // A floor larger than the quantity it guards could never fail: the memory
                // per import (about 1 MiB) gets its own percentage and no floor.
                let tol = match metric {
                    Metric::PeakRss | Metric::PeakAnon => {
                        tolerance(base, g.tolerance_pct, g.tolerance_floor_mb)
                    }
                    Metric::ResidentText => tolerance(base, g.resident_text_tolerance_pct, 0.0),
                    _ => tolerance(base, g.per_import_tolerance_pct, 0.0),
                };
                let tol_pct = tol as f64 * 100.0 / base.max(1) as f64;
                let noise = one_sample_detectable_pct(values, base as f64, tol_pct);
                checks.push(relative(
                    Compared {
                        cell: label,
                        metric,
                        base,
                        measured,
                        tol,
                    },
                    st.erratic,
                    noise,
                ));
            }
        }
    }
    checks
}

/// Judges each cell's stats against the budget, the scenario's latency limits and, when given,
/// what it is compared `against`. `per_cell` is in the scenario's cell order; `reports` and `wall_secs` are recorded.
pub fn decide(
    s: &Checked,
    against: Against<'_>,
    per_cell: &[(String, Stats)],
    machine: &Machine,
    reports: String,
    wall_secs: f64,
) -> Decision {
    let g = &s.raw.gate;
    let limit = (s.budget_bytes as f64 * (1.0 - s.headroom)) as u64;
    let mut checks = Vec::new();
    let mut warnings = Vec::new();
    if let Against::Baseline(b) = against {
        warnings.extend(machine_warnings(&b.machine, machine));
    }
    for (label, st) in per_cell {
        checks.extend(absolute_checks(s, label, st, limit));
        if st.erratic {
            warnings.push(format!(
                "{label}: repeats spread {:.1} % even after a rerun: erratic",
                st.spread
            ));
        }
        match against {
            Against::Nothing => {}
            Against::Build(before) => {
                if let Some((_, a)) = before.iter().find(|(l, _)| l == label) {
                    checks.extend(ab_checks(g, label, a, st, &mut warnings));
                }
            }
            Against::Baseline(b) => checks.extend(baseline_checks(g, label, b, st, &mut warnings)),
        }
    }
    let failed = checks.iter().any(|c| c.verdict.fails());
    Decision {
        scenario: s.name.clone(),
        exit_code: u8::from(failed),
        checks,
        warnings,
        reports,
        wall_secs,
        where_grew: None,
    }
}

/// The baseline this run would write: each cell's medians and how many runs they are over.
pub fn baseline_of(s: &Checked, per_cell: &[(String, Stats)], results: &RunResults) -> Baseline {
    Baseline {
        scenario: s.name.clone(),
        created_at: chrono::Utc::now().to_rfc3339(),
        machine: results.machine.clone(),
        cells: per_cell
            .iter()
            .map(|(label, st)| {
                let runs = results.cells.iter().filter(|c| &c.cell.label == label).count();
                (
                    label.clone(),
                    BaselineCell {
                        peak: st.peak,
                        per_import: st.per_import,
                        peak_anon: st.peak_anon,
                        per_import_anon: st.per_import_anon,
                        peak_file: st.peak_file,
                        idle: st.idle,
                        repeats: runs,
                        spread_pct: st.spread,
                    },
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ab_floor_widens_a_small_figure_only() {
        let mib = |v: f64| v * 1024.0 * 1024.0;
        // 4.6 MiB of anonymous peak: 0.5 MiB is 10.9 %, more than 5 %.
        let small = [mib(4.6), mib(4.6)];
        assert!((floored_pct(&small, 5.0, 0.5) - 10.87).abs() < 0.01);
        // 20 MiB: 5 % is 1 MiB, more than the floor.
        assert!((floored_pct(&[mib(20.0)], 5.0, 0.5) - 5.0).abs() < 0.01);
        // The debug build's A/A that called +6.0 % (p 0.047) of 5.6 MiB a regression passes.
        let a = [mib(5.55), mib(5.60), mib(5.65), mib(5.62), mib(5.63)];
        let b = [mib(5.90), mib(5.95), mib(6.00), mib(5.93), mib(5.97)];
        assert_eq!(
            ab_check("c3", Metric::PeakAnon, &a, &b, 5.0).verdict,
            Verdict::Regression
        );
        assert_eq!(
            ab_check("c3", Metric::PeakAnon, &a, &b, floored_pct(&a, 5.0, 0.5)).verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn a_metric_is_written_and_read_by_its_name() {
        for m in Metric::ALL {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.name()));
            assert_eq!(serde_json::from_str::<Metric>(&json).unwrap(), m);
        }
        assert_eq!(Metric::PostP99.unit(), Unit::Micros);
        assert_eq!(Metric::ResidentText.unit(), Unit::Bytes);
        assert!(serde_json::from_str::<Metric>("\"peak\"").is_err());
    }

    #[test]
    fn tolerance_is_the_larger_of_percentage_and_floor() {
        assert_eq!(tolerance(100 << 20, 10.0, 3.0), 10 << 20);
        assert_eq!(tolerance(10 << 20, 10.0, 3.0), 3 << 20);
    }

    #[test]
    fn verdicts_name_metric_baseline_measured_and_tolerance() {
        let c = relative(
            Compared {
                cell: "c3",
                metric: Metric::MemoryPerImport,
                base: 3 << 20,
                measured: 9 << 20,
                tol: 3 << 20,
            },
            false,
            None,
        );
        assert_eq!(c.verdict, Verdict::Regression);
        assert!(c.message.contains("memory_per_import") && c.message.contains("baseline 3.00 MiB"));
        assert!(c.message.contains("measured 9.00 MiB") && c.message.contains("tolerance 3.00 MiB"));
        assert_eq!(
            relative(
                Compared {
                    cell: "c3",
                    metric: Metric::PeakRss,
                    base: 20 << 20,
                    measured: 22 << 20,
                    tol: 3 << 20
                },
                false,
                None
            )
            .verdict,
            Verdict::Pass
        );
        assert_eq!(
            relative(
                Compared {
                    cell: "c3",
                    metric: Metric::PeakRss,
                    base: 20 << 20,
                    measured: 10 << 20,
                    tol: 3 << 20
                },
                false,
                None
            )
            .verdict,
            Verdict::Better
        );
        assert_eq!(
            relative(
                Compared {
                    cell: "c3",
                    metric: Metric::PeakRss,
                    base: 20 << 20,
                    measured: 22 << 20,
                    tol: 3 << 20
                },
                true,
                None
            )
            .verdict,
            Verdict::Erratic
        );
        assert_eq!(
            relative(
                Compared {
                    cell: "c3",
                    metric: Metric::PeakRss,
                    base: 20 << 20,
                    measured: 40 << 20,
                    tol: 3 << 20
                },
                true,
                None
            )
            .verdict,
            Verdict::Regression
        );
    }

    #[test]
    fn an_ab_regression_must_be_both_large_and_significant() {
        let a = [100.0, 102.0, 98.0, 101.0, 99.0];
        let grown = [130.0, 132.0, 128.0, 131.0, 129.0];
        let c = ab_check("c3", Metric::MemoryPerImport, &a, &grown, 15.0);
        assert_eq!(c.verdict, Verdict::Regression, "{}", c.message);
        assert!(
            c.p_value.is_some_and(|p| p < 0.001) && c.message.contains("+30.0 %"),
            "{}",
            c.message
        );
        // Large but within the spread: not significant, so not called.
        let noisy = [100.0, 160.0, 90.0, 150.0, 95.0];
        let c = ab_check("c3", Metric::MemoryPerImport, &a, &noisy, 15.0);
        assert_eq!(c.verdict, Verdict::Pass, "{}", c.message);
        assert!(
            c.detectable_pct.is_some_and(|d| d > 30.0),
            "{:?}",
            c.detectable_pct
        );
        // Significant but smaller than the tolerance: not called either.
        let slightly = [106.0, 108.0, 104.0, 107.0, 105.0];
        assert_eq!(
            ab_check("c3", Metric::PeakRss, &a, &slightly, 15.0).verdict,
            Verdict::Pass
        );
        assert_eq!(
            ab_check("c3", Metric::PeakRss, &a, &slightly, 5.0).verdict,
            Verdict::Regression
        );
        assert_eq!(
            ab_check("c3", Metric::PeakRss, &a[..1], &slightly, 5.0).verdict,
            Verdict::Failed
        );
    }

    #[test]
    fn the_detectable_change_shrinks_with_repeats_and_grows_with_spread() {
        // Two sides of variance 2.5 around 100, 5 each: SE 1 %, df 8, t_0.975 2.306, t_0.8 0.889.
        let five = [98.0, 100.0, 102.0, 99.0, 101.0];
        let d5 = detectable_pct(&five, &five, 0.0).unwrap_or_default();
        assert!((d5 - 3.195).abs() < 0.01, "{d5}");
        // A tolerance above the significance threshold is cleared by t_0.8 SE more.
        let d5t = detectable_pct(&five, &five, 5.0).unwrap_or_default();
        assert!((d5t - 5.889).abs() < 0.01, "{d5t}");
        let three = [98.0, 100.0, 102.0];
        let d3 = detectable_pct(&three, &three, 0.0).unwrap_or_default();
        assert!(d3 > d5 * 1.3, "{d3} vs {d5}");
        assert_eq!(detectable_pct(&[100.0], &[100.0, 101.0], 5.0), None);
        // One side of variance 4, 3 repeats: SE 1.155 %, df 2, t_0.8 1.061.
        let one = one_sample_detectable_pct(&three, 100.0, 10.0).unwrap_or_default();
        assert!((one - 11.225).abs() < 0.01, "{one}");
    }
}
