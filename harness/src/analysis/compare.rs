//! Two runs compared cell by cell (`harness compare BEFORE AFTER`), with a verdict
//! that takes the repeats into account.
//!
//! A difference is called only when Welch's t-test over the repeats gives
//! p < 0.05 and the change is larger than a practical threshold; anything
//! else is "no change", never a win or a loss. Compare informs; the gate
//! decides pass or fail, so compare exits 0 unless its inputs are unusable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::analysis::stats;
use crate::session::results::{CellRun, RunResults, median_f64, mib};

/// Significance level of the test.
pub const ALPHA: f64 = 0.05;

/// Runs that cannot be compared (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No cell label in common.
    #[error("no cells in common between {0} and {1}")]
    NothingInCommon(String, String),
}

/// Which direction is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Better {
    /// Memory, durations.
    Lower,
    /// Throughput.
    Higher,
}

/// One metric of one cell, before and after.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// Cell label.
    pub cell: String,
    /// Metric name.
    pub metric: String,
    /// Unit shown.
    pub unit: String,
    /// Values before, one per repeat.
    pub before: Vec<f64>,
    /// Values after.
    pub after: Vec<f64>,
    /// Median before.
    pub before_median: f64,
    /// Median after.
    pub after_median: f64,
    /// after − before, in the unit.
    pub change: f64,
    /// Percent change.
    pub change_pct: f64,
    /// Welch's p-value, when both sides have two repeats or more.
    pub p_value: Option<f64>,
    /// `higher`, `lower`, or `no change` (with why).
    pub verdict: String,
    /// Whether the change, if significant, is for the better.
    pub better: Option<bool>,
}

/// The comparison, as `compare.json` holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// Before: scenario and folder.
    pub before: String,
    /// After: scenario and folder.
    pub after: String,
    /// Every metric of every common cell.
    pub rows: Vec<Row>,
    /// Cells only on one side.
    pub unmatched: Vec<String>,
    /// Where the outputs are.
    pub out: String,
}

type Metric = (
    &'static str,
    &'static str,
    Better,
    fn(&CellRun) -> Option<f64>,
    f64,
);

/// (name, unit, better, value of a run, smallest change that matters in the unit).
const METRICS: [Metric; 6] = [
    ("peak RSS", "MiB", Better::Lower, |r| Some(mib(r.peak)), 1.0),
    (
        "memory per import",
        "MiB",
        Better::Lower,
        |r| Some(mib(r.per_import)),
        0.5,
    ),
    ("idle RSS", "MiB", Better::Lower, |r| Some(mib(r.idle_rss)), 1.0),
    (
        "games/s",
        "games/s",
        Better::Higher,
        |r| Some(r.games_per_sec),
        0.0,
    ),
    (
        "import duration",
        "s",
        Better::Lower,
        |r| median_of(r, |i| i.run_secs),
        0.05,
    ),
    (
        "queue wait",
        "s",
        Better::Lower,
        |r| median_of(r, |i| i.wait_secs),
        0.05,
    ),
];

fn median_of(r: &CellRun, f: fn(&crate::load::ImportRecord) -> Option<f64>) -> Option<f64> {
    let v: Vec<f64> = r.load.imports.iter().filter_map(f).collect();
    (!v.is_empty()).then(|| median_f64(v))
}

fn row(cell: &str, m: &Metric, before: &[&CellRun], after: &[&CellRun]) -> Option<Row> {
    let (name, unit, better, value, floor) = *m;
    let b: Vec<f64> = before.iter().filter_map(|r| value(r)).collect();
    let a: Vec<f64> = after.iter().filter_map(|r| value(r)).collect();
    if b.is_empty() || a.is_empty() {
        return None;
    }
    let (bm, am) = (median_f64(b.iter().copied()), median_f64(a.iter().copied()));
    let change = am - bm;
    let change_pct = if bm.abs() > f64::EPSILON {
        change * 100.0 / bm
    } else {
        0.0
    };
    // Practical threshold: 5 % of the value, and at least the metric's floor.
    let threshold = (bm.abs() * 0.05).max(floor);
    let p_value = stats::welch(&b, &a).map(|w| w.p);
    let (verdict, better_now) = match p_value {
        None => (
            "no change (fewer than 2 repeats a side: not testable)".to_string(),
            None,
        ),
        Some(p) if p < ALPHA && change.abs() > threshold => {
            let up = change > 0.0;
            let good = (better == Better::Higher) == up;
            (
                format!(
                    "{} ({})",
                    if up { "higher" } else { "lower" },
                    if good { "better" } else { "worse" }
                ),
                Some(good),
            )
        }
        Some(p) if p < ALPHA => (
            format!("no change (significant but below {threshold:.2} {unit})"),
            None,
        ),
        Some(_) => ("no change (within noise)".to_string(), None),
    };
    Some(Row {
        cell: cell.to_string(),
        metric: name.to_string(),
        unit: unit.to_string(),
        before: b,
        after: a,
        before_median: bm,
        after_median: am,
        change,
        change_pct,
        p_value,
        verdict,
        better: better_now,
    })
}

/// Compares two runs' cells that both have, metric by metric. `before` and `after` name the
/// runs (scenario and folder, as the report shows them); `out` is where the caller writes it.
pub fn compare(
    (before_name, before): (&str, &RunResults),
    (after_name, after): (&str, &RunResults),
    out: &str,
) -> Result<Comparison, Error> {
    let group = |r: &RunResults| {
        let mut m: BTreeMap<String, Vec<CellRun>> = BTreeMap::new();
        for c in r.cells.iter().filter(|c| c.error.is_none()) {
            m.entry(c.cell.label.clone()).or_default().push(c.clone());
        }
        m
    };
    let (gb, ga) = (group(before), group(after));
    let common: Vec<&String> = gb.keys().filter(|k| ga.contains_key(*k)).collect();
    if common.is_empty() {
        return Err(Error::NothingInCommon(
            before_name.to_string(),
            after_name.to_string(),
        ));
    }
    let unmatched: Vec<String> = gb
        .keys()
        .filter(|k| !ga.contains_key(*k))
        .chain(ga.keys().filter(|k| !gb.contains_key(*k)))
        .cloned()
        .collect();
    let mut rows = Vec::new();
    for cell in &common {
        let (b, a): (Vec<&CellRun>, Vec<&CellRun>) = (gb[*cell].iter().collect(), ga[*cell].iter().collect());
        rows.extend(METRICS.iter().filter_map(|m| row(cell, m, &b, &a)));
    }
    Ok(Comparison {
        before: format!("{} ({before_name})", before.scenario),
        after: format!("{} ({after_name})", after.scenario),
        rows,
        unmatched,
        out: out.to_string(),
    })
}

/// The cells both runs have, in the order of the comparison's rows.
pub fn common_cells(c: &Comparison) -> Vec<&str> {
    let mut cells: Vec<&str> = c.rows.iter().map(|r| r.cell.as_str()).collect();
    cells.dedup();
    cells
}
