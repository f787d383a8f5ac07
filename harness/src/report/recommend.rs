//! A recommendation rendered: `capacity.json`, the capacity plot, and its
//! words at the head of `summary.md` and `report.html`.

use std::fmt::Write as _;
use std::path::Path;

use super::table::Table;
use super::{Error, html, plot, summary_markdown, write_file};
use crate::analysis::capacity::MAX_CONCURRENCY;
use crate::analysis::recommend::{Binding, Recommendation};
use crate::session::results::{RunResults, mib, mib_f64};

/// Writes the recommendation's files into the sweep's report folder `dir`.
pub fn write(dir: &Path, rec: &Recommendation, sweep: &RunResults) -> Result<(), Error> {
    plot::capacity(&dir.join("capacity.png"), rec)?;
    plot::capacity(&dir.join("capacity.svg"), rec)?;
    write_file(&dir.join("capacity.json"), &serde_json::to_vec_pretty(rec)?)?;
    write_file(
        &dir.join("summary.md"),
        format!("{}\n{}", markdown(rec), summary_markdown(sweep)).as_bytes(),
    )?;
    html::write_run(dir, &format!("harness recommend: {}", rec.scenario), &[])
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
        mib_f64(limit)
    );
    let _ = writeln!(
        out,
        "Fitted on the total resident memory (VmHWM: anonymous + the binary's resident text), what a \
         container limit sees; the gate judges regressions on the anonymous part alone.\n"
    );
    if let Some(w) = &r.window {
        let _ = writeln!(out, "For the traffic of the window {w}.\n");
    }
    let _ = writeln!(
        out,
        "Fitted against the imports that ran at once (what the lanes let run), not the slots asked for; \
         levels above the lanes' cap only queue and are not measured.\n"
    );
    models_table(r, &mut out);
    verdict(r, &mut out);
    if let Some(v) = &r.validation {
        validation(v, &mut out);
    }
    let _ = writeln!(out, "\nReports: {}", r.reports);
    out
}

/// One row per configuration, then why each without a recommendation has none.
fn models_table(r: &Recommendation, out: &mut String) {
    let mut table = Table::new([
        "configuration",
        "ran at once",
        "idle MiB",
        "per import MiB [90 % CI]",
        "R²",
        "n=4 predicted from n≤3 (error)",
        "safe MAX_CONCURRENT_IMPORTS",
        "bound by",
    ]);
    for m in &r.models {
        let fit = m.fit.map_or("–".into(), |f| {
            format!(
                "{:.2} [{:.2}, {:.2}]",
                mib(f.per_import as u64),
                mib_f64(f.per_import_ci90.0),
                mib_f64(f.per_import_ci90.1)
            )
        });
        let check = m.self_check.map_or("–".into(), |c| {
            format!(
                "{:.1} vs {:.1} MiB ({:+.1} %)",
                mib_f64(c.predicted),
                mib(c.measured),
                c.error_pct
            )
        });
        let ran: Vec<u32> = {
            let mut v: Vec<u32> = m.points.iter().map(|p| p.0).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let bound_by = match m.binding {
            Some(Binding::Lanes) => "lanes",
            Some(Binding::Memory) => "memory",
            Some(Binding::Measured) => "levels measured",
            None => "–",
        };
        table.row([
            m.config.clone(),
            ran.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
            m.fit.map_or("–".into(), |f| format!("{:.1}", mib_f64(f.idle))),
            fit,
            m.fit.map_or("–".into(), |f| format!("{:.3}", f.r2)),
            check,
            m.recommended.map_or_else(|| "–".to_string(), |n| n.to_string()),
            bound_by.to_string(),
        ]);
    }
    out.push_str(&table.to_string());
    for m in r.models.iter().filter(|m| m.recommended.is_none()) {
        let _ = writeln!(
            out,
            "\n- {}: {}",
            m.config,
            m.note.as_deref().unwrap_or("no recommendation")
        );
    }
}

/// The recommendation and why, or that there is none.
fn verdict(r: &Recommendation, out: &mut String) {
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
                "\n**Recommended: {}: {}**\n\nWhy: {}.\n\nDeploy with:\n\n```sh\n{}\n```",
                m.config,
                m.slots_and_lanes().unwrap_or_default(),
                m.note.as_deref().unwrap_or(""),
                r.env_lines.join("\n")
            );
            if m.recommended == Some(MAX_CONCURRENCY) {
                let _ = writeln!(
                    out,
                    "\n({MAX_CONCURRENCY} is the importer's own maximum: the budget allows more than it accepts.)"
                );
            }
        }
    }
}

/// The validation under a hard limit, in words.
fn validation(v: &crate::analysis::recommend::Validation, out: &mut String) {
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
