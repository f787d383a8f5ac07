//! A comparison rendered: `compare.md`, `compare.json`, its plots and `report.html`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::table::Table;
use super::{Error, Loaded, html, plot, read_samples, write_file};
use crate::analysis::compare::{ALPHA, Comparison, common_cells};

/// Writes `compare.md`, `compare.json`, the peak plot, up to four cells' timelines and
/// `report.html` into `out`.
pub fn write(out: &Path, cmp: &Comparison, before: &Loaded, after: &Loaded) -> Result<(), Error> {
    std::fs::create_dir_all(out).map_err(|source| Error::Write {
        path: out.to_path_buf(),
        source,
    })?;
    write_file(&out.join("compare.json"), &serde_json::to_vec_pretty(cmp)?)?;
    write_file(&out.join("compare.md"), markdown(cmp).as_bytes())?;
    let mut svgs: Vec<PathBuf> = Vec::new();
    for ext in ["png", "svg"] {
        plot::compare_peak(&out.join(format!("compare-peak.{ext}")), cmp)?;
    }
    svgs.push(out.join("compare-peak.svg"));
    for cell in common_cells(cmp).into_iter().take(4) {
        let tb = read_samples(&before.dir.join("samples.csv"), cell);
        let ta = read_samples(&after.dir.join("samples.csv"), cell);
        if tb.is_empty() || ta.is_empty() {
            continue;
        }
        for ext in ["png", "svg"] {
            let path = out.join(format!("compare-timeline-{cell}.{ext}"));
            plot::compare_timeline(&path, cell, &tb, &ta)?;
        }
        svgs.push(out.join(format!("compare-timeline-{cell}.svg")));
    }
    write_file(
        &out.join("report.html"),
        html::page("harness compare", &markdown(cmp), &[], &svgs).as_bytes(),
    )
}

/// The comparison as Markdown.
pub fn markdown(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Compare\n\nbefore: {}  \nafter: {}\n", c.before, c.after);
    let _ = writeln!(
        out,
        "Verdicts: Welch's t-test over the repeats, p < {ALPHA}, and a change above 5 % (and the metric's floor); anything else is \"no change\".\n"
    );
    let mut table = Table::new(["cell", "metric", "before", "after", "change", "p", "verdict"]);
    for r in &c.rows {
        let u = &r.unit;
        table.row([
            r.cell.clone(),
            r.metric.clone(),
            format!("{:.2} {u}", r.before_median),
            format!("{:.2} {u}", r.after_median),
            format!("{:+.2} {u} ({:+.1} %)", r.change, r.change_pct),
            r.p_value.map_or("–".into(), |p| format!("{p:.4}")),
            r.verdict.clone(),
        ]);
    }
    out.push_str(&table.to_string());
    if !c.unmatched.is_empty() {
        let _ = writeln!(
            out,
            "\nCells on one side only, not compared: {}",
            c.unmatched.join(", ")
        );
    }
    out
}
