//! The gate's decision rendered: a ✓/✗ table for the terminal, Markdown for
//! `summary.md` and a CI job summary, `junit.xml` for CI test reports.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::table::Table;
use super::{Error, html, summary_markdown, write_file};
use crate::analysis::gate::{Baseline, Decision, Metric, Unit, Verdict};
use crate::session::results::{RunResults, mib};

/// Writes the decision into the run's report folder `dir`: at the head of `summary.md` and
/// `report.html`, as `junit.xml` and as `decision.json`.
pub fn write(dir: &Path, decision: &Decision, results: &RunResults) -> Result<(), Error> {
    write_file(
        &dir.join("summary.md"),
        format!("{}\n{}", markdown(decision), summary_markdown(results)).as_bytes(),
    )?;
    let mut glance = glance(decision);
    glance.extend(super::summary::glance(results));
    html::write_run(dir, &format!("harness gate: {}", decision.scenario), &glance)?;
    write_file(&dir.join("junit.xml"), junit(decision)?.as_bytes())?;
    write_file(&dir.join("decision.json"), &serde_json::to_vec_pretty(decision)?)
}

/// The figures that answer the gate's question, for the top of `report.html`: each check of the
/// code's own memory (and any failure), and where the heap grew most.
fn glance(d: &Decision) -> Vec<String> {
    let mut out: Vec<String> = d
        .checks
        .iter()
        .filter(|c| c.verdict.fails() || c.metric.is_anonymous() || c.metric == Metric::ResidentText)
        .map(|c| format!("{} {}", c.verdict.mark(), c.message))
        .collect();
    if let Some(w) = &d.where_grew {
        let lines = super::heap::terminal_lines(w);
        out.extend(lines.into_iter().take(2));
    }
    out
}

/// Writes `b` to `path` as pretty JSON (`--update-baseline`), creating its folder.
///
/// # Errors
/// [`Error`] when it cannot be serialised or written.
pub fn write_baseline(path: &Path, b: &Baseline) -> Result<(), Error> {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    write_file(path, &serde_json::to_vec_pretty(b)?)
}

fn fmt_mib(v: Option<u64>) -> String {
    v.map_or("–".into(), |b| format!("{:.2} MiB", mib(b)))
}

/// A check's value in its unit: MiB, or ms for a latency check.
fn fmt_value(metric: Metric, v: Option<u64>) -> String {
    match metric.unit() {
        Unit::Micros => v.map_or("–".into(), |us| format!("{:.1} ms", us as f64 / 1000.0)),
        Unit::Bytes => fmt_mib(v),
    }
}

/// The columns of the ✓/✗ table, one row per check, for either rendering.
fn rows(d: &Decision) -> Vec<[String; 10]> {
    d.checks
        .iter()
        .map(|c| {
            [
                c.verdict.mark().to_string(),
                c.cell.clone(),
                c.metric.to_string(),
                fmt_value(c.metric, c.baseline),
                fmt_value(c.metric, Some(c.measured)),
                c.change_pct.map_or("–".into(), |p| format!("{p:+.1} %")),
                fmt_value(c.metric, Some(c.tolerance)),
                c.p_value.map_or("–".into(), |p| format!("{p:.3}")),
                c.detectable_pct.map_or("–".into(), |p| format!("≥ {p:.0} %")),
                format!("{:?}", c.verdict),
            ]
        })
        .collect()
}

const HEADER: [&str; 10] = [
    "",
    "cell",
    "metric",
    "baseline",
    "measured",
    "change",
    "tolerance",
    "p",
    "detectable",
    "verdict",
];

/// The power statement: a pass is only as good as the smallest change the run could have seen.
/// Which figure each metric judges.
const FIGURES: &str = "Figures: peak_anon and per_import_anon judge the importer's anonymous memory (RssAnon: \
     the code's behaviour); resident_text the binary's file-backed memory (RssFile), on its own \
     tolerance; budget the total (VmHWM), what a container limit sees. peak_rss and \
     memory_per_import (totals) appear only against a baseline written before the split.";

fn power(d: &Decision) -> Vec<String> {
    d.checks
        .iter()
        .filter_map(|c| {
            let p = c.detectable_pct?;
            Some(format!(
                "{} {}: a true growth of {p:.0} % or more would fail this run 4 times in 5 (the larger of the tolerance and the significance threshold at α 0.05, plus the repeats' noise)",
                c.cell, c.metric
            ))
        })
        .collect()
}

/// The ✓/✗ table, as plain text for a terminal.
pub fn table(d: &Decision) -> String {
    let mut out = String::new();
    let header = HEADER.map(String::from);
    for r in std::iter::once(&header).chain(&rows(d)) {
        let _ = writeln!(
            out,
            "{:<2} {:<22} {:<18} {:>12} {:>12} {:>9} {:>12} {:>6} {:>10}  {}",
            r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]
        );
    }
    let _ = writeln!(out, "{FIGURES}");
    for c in d.checks.iter().filter(|c| c.verdict.fails()) {
        let _ = writeln!(out, "✗ {}", c.message);
    }
    for p in power(d) {
        let _ = writeln!(out, "· {p}");
    }
    for w in &d.warnings {
        let _ = writeln!(out, "⚠ {w}");
    }
    if let Some(w) = &d.where_grew {
        for line in super::heap::terminal_lines(w) {
            let _ = writeln!(out, "{line}");
        }
    }
    let verdict = if d.exit_code == 0 {
        "gate: PASS"
    } else {
        "gate: FAIL"
    };
    let _ = writeln!(out, "{verdict} ({:.0} s; reports in {})", d.wall_secs, d.reports);
    out
}

/// The gate's part of `summary.md`, for a CI job summary.
pub fn markdown(d: &Decision) -> String {
    let mut out = String::new();
    let verdict = if d.exit_code == 0 { "✓ pass" } else { "✗ FAIL" };
    let _ = writeln!(out, "# Memory gate: {} — {verdict}\n", d.scenario);
    let mut table = Table::new(HEADER);
    for r in rows(d) {
        table.row(r);
    }
    out.push_str(&table.to_string());
    let _ = writeln!(out, "\n{FIGURES}");
    for c in d.checks.iter().filter(|c| c.verdict.fails()) {
        let _ = writeln!(out, "\n- ✗ {}", c.message);
    }
    for w in &d.warnings {
        let _ = writeln!(out, "- ⚠ {w}");
    }
    for p in power(d) {
        let _ = writeln!(out, "- {p}");
    }
    if let Some(w) = &d.where_grew {
        let _ = writeln!(out, "\n{}", super::heap::markdown(w));
    }
    out
}

/// `junit.xml`: one test case per check (class: the cell, name: the metric), by quick-junit.
pub fn junit(d: &Decision) -> Result<String, quick_junit::SerializeError> {
    let mut suite = TestSuite::new(format!("memory-gate.{}", d.scenario));
    suite.set_time(Duration::try_from_secs_f64(d.wall_secs).unwrap_or_default());
    for c in &d.checks {
        let status = if c.verdict.fails() {
            let mut failed = TestCaseStatus::non_success(NonSuccessKind::Failure);
            failed.set_message(c.message.as_str());
            failed
        } else {
            TestCaseStatus::success()
        };
        let mut case = TestCase::new(c.metric.name(), status);
        case.set_classname(c.cell.as_str());
        if matches!(c.verdict, Verdict::Erratic | Verdict::NoBaseline) {
            case.set_system_out(c.message.as_str());
        }
        suite.add_test_case(case);
    }
    let mut report = Report::new("memory-gate");
    report.add_test_suite(suite);
    report.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::gate::{Compared, relative};

    #[test]
    fn terminal_and_markdown_tables_show_the_same_rows() {
        let d = Decision {
            scenario: "s".into(),
            exit_code: 1,
            checks: vec![relative(
                Compared {
                    cell: "c3",
                    metric: Metric::PeakRss,
                    base: 20 << 20,
                    measured: 40 << 20,
                    tol: 3 << 20,
                },
                false,
                None,
            )],
            warnings: vec!["w".into()],
            reports: "r".into(),
            wall_secs: 1.0,
            where_grew: None,
        };
        let (t, m) = (table(&d), markdown(&d));
        for s in [
            "c3",
            "peak_rss",
            "20.00 MiB",
            "40.00 MiB",
            "+100.0 %",
            "3.00 MiB",
            "Regression",
        ] {
            assert!(t.contains(s) && m.contains(s), "{s}");
        }
        assert!(t.contains("gate: FAIL") && m.contains("| ✗ | c3 | peak_rss |"));
        assert!(m.lines().nth(3).is_some_and(|l| l.starts_with("|---|")));
    }

    #[test]
    fn junit_marks_failures() {
        let d = Decision {
            scenario: "s".into(),
            exit_code: 1,
            checks: vec![relative(
                Compared {
                    cell: "c<1>",
                    metric: Metric::PeakRss,
                    base: 1 << 20,
                    measured: 90 << 20,
                    tol: 3 << 20,
                },
                false,
                None,
            )],
            warnings: vec![],
            reports: "r".into(),
            wall_secs: 1.0,
            where_grew: None,
        };
        let x = junit(&d).unwrap();
        assert!(x.contains("failures=\"1\"") && x.contains("<failure message=") && x.contains("c&lt;1&gt;"));
    }
}
