//! A wait recommendation rendered: `recommend-wait.json`, and its words at the
//! head of `summary.md` and `report.html`.

use std::fmt::Write as _;
use std::path::Path;

use super::table::Table;
use super::{Error, html, summary_markdown, write_file};
use crate::analysis::wait::WaitRecommendation;
use crate::session::results::{RunResults, mib};

/// Writes the recommendation's files into the run's report folder `dir`.
pub fn write(dir: &Path, rec: &WaitRecommendation, run: &RunResults) -> Result<(), Error> {
    write_file(&dir.join("recommend-wait.json"), &serde_json::to_vec_pretty(rec)?)?;
    write_file(
        &dir.join("summary.md"),
        format!("{}\n{}", markdown(rec), summary_markdown(run)).as_bytes(),
    )?;
    html::write_run(
        dir,
        &format!("harness recommend --max-wait: {}", rec.scenario),
        &[],
    )
}

/// The recommendation in words, for the terminal and `summary.md`.
pub fn markdown(r: &WaitRecommendation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Slots and lanes: {} within a p95 wait of {:.0} s in {:.0} MiB (less {:.0} % headroom)\n",
        r.scenario,
        r.max_wait_secs,
        mib(r.budget_bytes),
        r.headroom * 100.0
    );
    if let Some(w) = &r.window {
        let _ = writeln!(out, "For the traffic of the window {w}.\n");
    }
    if r.time_scale > 1.0 {
        let _ = writeln!(
            out,
            "Measured {:.0} times faster than real time; every time is provider seconds.\n",
            r.time_scale
        );
    }
    let mut table = Table::new([
        "configuration",
        "slots",
        "lichess streams",
        "chess.com requests",
        "peak MiB",
        "p95 wait s measured",
        "p95 wait s predicted",
        "last done s",
        "clean",
        "fits",
        "meets wait",
    ]);
    let mark = |b: bool| if b { "✓" } else { "✗" }.to_string();
    for row in &r.rows {
        table.row([
            row.label.clone(),
            row.slots.to_string(),
            row.lichess_lanes.to_string(),
            row.chess_com_lanes.to_string(),
            format!("{:.1}", mib(row.peak)),
            format!("{:.1}", row.measured_p95_secs),
            format!("{:.1}", row.predicted_p95_secs),
            format!("{:.1}", row.last_done_secs),
            mark(row.clean),
            mark(row.fits_memory),
            mark(row.measured_p95_secs <= r.max_wait_secs),
        ]);
    }
    out.push_str(&table.to_string());
    let off: Vec<f64> = r
        .rows
        .iter()
        .filter(|row| row.clean && row.measured_p95_secs > 0.0)
        .map(|row| (row.predicted_p95_secs - row.measured_p95_secs).abs())
        .collect();
    if let Some(worst) = off.iter().copied().reduce(f64::max) {
        let _ = writeln!(
            out,
            "\nThe model (provider pace, slots and lanes; the importer's own work left out) is off by at most {worst:.1} s \
             on these {} configurations.",
            off.len()
        );
    }
    match (r.env_line(), r.best.map(|i| &r.rows[i])) {
        (Some(line), Some(best)) => {
            let _ = writeln!(
                out,
                "\nRecommended (fewest slots, then fewest lanes, that meet both):\n"
            );
            let _ = writeln!(out, "```sh\n{line}\n```\n");
            let _ = writeln!(
                out,
                "p95 wait: predicted {:.1} s, measured {:.1} s (limit {:.0} s). What binds: {}.",
                best.predicted_p95_secs, best.measured_p95_secs, r.max_wait_secs, r.binding
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "\nNo configuration meets both the budget and a p95 wait of {:.0} s. What binds: {}.",
                r.max_wait_secs, r.binding
            );
            if !r.advice.is_empty() {
                let _ = writeln!(out, "\nWhat would, by the model:\n");
                for a in &r.advice {
                    let _ = writeln!(out, "- {a}");
                }
            }
        }
    }
    if let Some(v) = &r.validation {
        let _ = writeln!(
            out,
            "\nValidation under a hard memory limit: p95 wait {:.1} s, peak {:.1} MiB: {}{}",
            v.p95_wait_secs,
            mib(v.peak),
            if v.held { "held" } else { "did not hold" },
            if v.problems.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.problems.join("; "))
            }
        );
    }
    out
}
