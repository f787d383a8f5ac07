//! The summary's "Replay against production" section, for a captured scenario's run.

use std::fmt::Write;

use super::table::Table;
use crate::analysis::replay::{self, in_words};
use crate::session::results::RunResults;

/// Appends the section when the run replayed a captured window.
pub fn section(results: &RunResults, out: &mut String) {
    let Some(observed) = &results.observed else {
        return;
    };
    let cells = replay::compare(results, f64::from(results.pace_games_per_sec));
    let _ = writeln!(
        out,
        "## Replay against production\n\nThe window {} to {} as production recorded it, beside its replay \
         (provider seconds). Reproduced: each p95 within {:.0} % (`observed.tolerance_pct`) or {:.0} s.\n",
        observed.from,
        observed.to,
        observed.tolerance_pct,
        replay::EQUAL_WITHIN_SECS
    );
    for c in &cells {
        let _ = writeln!(out, "Cell {} ({}):\n", c.cell, c.settings);
        let mut table = Table::new([
            "provider",
            "imports (production / replay)",
            "failed",
            "p50 wait s",
            "p95 wait s",
            "p50 run s",
            "p95 run s",
            "reproduced",
        ]);
        for p in &c.providers {
            let fig = |i: usize| {
                p.figures
                    .get(i)
                    .map_or("–".into(), |f| format!("{:.1} / {:.1}", f.observed, f.replay))
            };
            table.row([
                p.provider.to_string(),
                format!("{} / {}", p.imports.0, p.imports.1),
                format!("{} / {}", p.failed.0, p.failed.1),
                fig(0),
                fig(1),
                fig(2),
                fig(3),
                if p.reproduced { "✓" } else { "✗" }.to_string(),
            ]);
        }
        out.push_str(&table.to_string());
        let _ = writeln!(out);
        for p in &c.providers {
            let words: Vec<String> = p
                .figures
                .iter()
                .filter(|f| f.name.starts_with("p95"))
                .map(in_words)
                .collect();
            let _ = writeln!(out, "- {}: {}.", p.provider, words.join("; "));
            if !p.reproduced {
                if p.causes.is_empty() {
                    let _ = writeln!(
                        out,
                        "  The data show no difference in history sizes, pace or failures that would explain it."
                    );
                }
                for cause in &p.causes {
                    let _ = writeln!(out, "  Differs: {cause}.");
                }
            }
        }
        let _ = writeln!(out);
    }
    if cells.is_empty() {
        let _ = writeln!(out, "No cell measured times to set beside production's.\n");
    }
}
