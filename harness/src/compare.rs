//! `harness compare BEFORE AFTER`: two runs, cell by cell, with a verdict
//! that takes the repeats into account.
//!
//! A difference is called only when Welch's t-test over the repeats gives
//! p < 0.05 and the change is larger than a practical threshold; anything
//! else is "no change", never a win or a loss. Compare informs; the gate
//! decides pass or fail, so compare exits 0 unless its inputs are unusable.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::report;
use crate::results::{CellRun, RunResults, median_f64, mib};
use crate::stats;

/// Significance level of the test.
pub const ALPHA: f64 = 0.05;

/// Inputs that cannot be compared (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not a results.json or a folder holding one.
    #[error("{path}: {message}")]
    Input {
        /// The path given.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No cell label in common.
    #[error("no cells in common between {0} and {1}")]
    NothingInCommon(String, String),
    /// An output could not be written.
    #[error(transparent)]
    Report(#[from] report::Error),
    /// Encoding failed.
    #[error("cannot encode: {0}")]
    Json(#[from] serde_json::Error),
}

/// A run read back from disk.
pub struct Loaded {
    /// Its folder.
    pub dir: PathBuf,
    /// What it measured.
    pub results: RunResults,
}

/// Reads `results.json` from a report folder or the file itself.
pub fn load(path: &Path) -> Result<Loaded, Error> {
    let file = if path.is_dir() {
        path.join("results.json")
    } else {
        path.to_path_buf()
    };
    let bytes = std::fs::read(&file).map_err(|e| Error::Input {
        path: path.to_path_buf(),
        message: format!("cannot read {}: {e}", file.display()),
    })?;
    let results: RunResults = serde_json::from_slice(&bytes).map_err(|e| Error::Input {
        path: path.to_path_buf(),
        message: format!("not a harness results.json: {e}"),
    })?;
    let dir = file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Ok(Loaded { dir, results })
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
    let test = stats::welch(&b, &a);
    let p_value = test.map(|t| t.2);
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

/// Compares two runs and writes `compare.md`, `compare.json`, the plots and `report.html` into `out`.
pub fn compare(before: &Loaded, after: &Loaded, out: &Path) -> Result<Comparison, Error> {
    let group = |r: &RunResults| {
        let mut m: BTreeMap<String, Vec<CellRun>> = BTreeMap::new();
        for c in r.cells.iter().filter(|c| c.error.is_none()) {
            m.entry(c.cell.label.clone()).or_default().push(c.clone());
        }
        m
    };
    let (gb, ga) = (group(&before.results), group(&after.results));
    let common: Vec<&String> = gb.keys().filter(|k| ga.contains_key(*k)).collect();
    if common.is_empty() {
        return Err(Error::NothingInCommon(
            before.dir.display().to_string(),
            after.dir.display().to_string(),
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
    std::fs::create_dir_all(out).map_err(|source| report::Error::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let cmp = Comparison {
        before: format!("{} ({})", before.results.scenario, before.dir.display()),
        after: format!("{} ({})", after.results.scenario, after.dir.display()),
        rows,
        unmatched,
        out: out.display().to_string(),
    };
    report::write_file(&out.join("compare.json"), &serde_json::to_vec_pretty(&cmp)?)?;
    report::write_file(&out.join("compare.md"), markdown(&cmp).as_bytes())?;
    let mut svgs = Vec::new();
    for ext in ["png", "svg"] {
        report::plot::compare_peak(&out.join(format!("compare-peak.{ext}")), &cmp)?;
    }
    svgs.push(out.join("compare-peak.svg"));
    for cell in common.iter().take(4) {
        let tb = report::read_samples(&before.dir.join("samples.csv"), cell);
        let ta = report::read_samples(&after.dir.join("samples.csv"), cell);
        if tb.is_empty() || ta.is_empty() {
            continue;
        }
        for ext in ["png", "svg"] {
            let path = out.join(format!("compare-timeline-{cell}.{ext}"));
            report::plot::compare_timeline(&path, cell, &tb, &ta)?;
        }
        svgs.push(out.join(format!("compare-timeline-{cell}.svg")));
    }
    report::html::write_compare(&out.join("report.html"), &cmp, &svgs)?;
    Ok(cmp)
}

/// The comparison as Markdown.
pub fn markdown(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Compare\n\nbefore: {}  \nafter: {}\n", c.before, c.after);
    let _ = writeln!(
        out,
        "Verdicts: Welch's t-test over the repeats, p < {ALPHA}, and a change above 5 % (and the metric's floor); anything else is \"no change\".\n"
    );
    let _ = writeln!(out, "| cell | metric | before | after | change | p | verdict |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for r in &c.rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} {u} | {:.2} {u} | {:+.2} {u} ({:+.1} %) | {} | {} |",
            r.cell,
            r.metric,
            r.before_median,
            r.after_median,
            r.change,
            r.change_pct,
            r.p_value.map_or("–".into(), |p| format!("{p:.4}")),
            r.verdict,
            u = r.unit
        );
    }
    if !c.unmatched.is_empty() {
        let _ = writeln!(
            out,
            "\nCells on one side only, not compared: {}",
            c.unmatched.join(", ")
        );
    }
    out
}
