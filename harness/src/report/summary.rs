//! `summary.md`: a ✓/✗ table against the budget, and which setting moved memory.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::table::Table;
use crate::analysis::stats::spread_pct;
use crate::session::results::{CellRun, CellRuns, RunResults, by_cell, median, median_f64, mib};
use crate::upstream::Platform;

/// Peaks and per-import figures of the cells that share one value of a setting.
type PeaksAndPerImport = (Vec<u64>, Vec<u64>);

/// Whether the summary shows `axis`'s effect on memory when a run varies it: every setting
/// the matrix can vary but the build and the way to PostgreSQL, which other sections compare.
fn shows_effect(axis: &str) -> bool {
    axis != "ALLOCATOR" && axis != settings::DATABASE_POOLER.name
}

/// One value of a varied setting: the median peak and per-import memory of the cells with it, bytes.
struct Effect {
    value: String,
    peak: u64,
    per_import: u64,
}

/// Per varied setting (two values or more), its values in order with their medians over every
/// other setting.
fn effects_of(results: &RunResults) -> Vec<(&'static str, Vec<Effect>)> {
    let ok: Vec<&CellRun> = results.cells.iter().filter(|c| c.error.is_none()).collect();
    crate::scenario::axes()
        .into_iter()
        .map(|axis| axis.name)
        .filter(|axis| shows_effect(axis))
        .filter_map(|axis| {
            let mut by_value: BTreeMap<String, PeaksAndPerImport> = BTreeMap::new();
            for c in &ok {
                if let Some(v) = c.cell.env.get(axis) {
                    let e = by_value.entry(v.clone()).or_default();
                    e.0.push(c.peak);
                    e.1.push(c.per_import);
                }
            }
            let mut values: Vec<Effect> = by_value
                .into_iter()
                .map(|(value, (p, per))| Effect {
                    value,
                    peak: median(p.iter().copied()),
                    per_import: median(per.iter().copied()),
                })
                .collect();
            values.sort_by_key(|e| e.value.parse::<u64>().unwrap_or(u64::MAX));
            (values.len() >= 2).then_some((axis, values))
        })
        .collect()
}

fn effects(results: &RunResults, out: &mut String) {
    let all = effects_of(results);
    if all.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n## What moved memory\n");
    let _ = writeln!(
        out,
        "Median over every other setting, per value of one setting.\n"
    );
    let mut table = Table::new(["setting", "value", "median peak (MiB)", "median per import (MiB)"]);
    for (axis, values) in &all {
        for e in values {
            table.row([
                axis.to_string(),
                e.value.clone(),
                format!("{:.1}", mib(e.peak)),
                format!("{:.2}", mib(e.per_import)),
            ]);
        }
        let lo = values.iter().map(|e| mib(e.peak)).fold(f64::INFINITY, f64::min);
        let hi = values.iter().map(|e| mib(e.peak)).fold(0.0, f64::max);
        // No per-import figure for the range: the row stops short, its last cell left empty.
        table.row([
            axis.to_string(),
            "range".into(),
            format!("{:.1} ({:+.0} %)", hi - lo, (hi - lo) * 100.0 / lo.max(0.001)),
        ]);
    }
    out.push_str(&table.to_string());
}

/// What the terminal shows after a run: the verdict, the peak against the budget, one line per
/// setting the run varied, the failed cells, a captured scenario's replay, and where the full
/// tables are (`summary.md`, `report.html` in `dir`).
pub fn terminal(results: &RunResults, dir: &std::path::Path) -> String {
    let mut out = String::new();
    let verdict = if results.passed() {
        "✓ every cell verified and within budget"
    } else {
        "✗ some cells failed"
    };
    let _ = writeln!(out, "{} — {verdict}", results.scenario);
    let ok: Vec<&CellRun> = results.cells.iter().filter(|c| c.error.is_none()).collect();
    if let Some(top) = ok.iter().max_by_key(|c| c.peak) {
        let low = ok.iter().map(|c| c.peak).min().unwrap_or(0);
        let _ = writeln!(
            out,
            "peak {:.1}-{:.1} MiB over {} cell runs (highest {}: {:.0} % of the {:.0} MiB budget), on {}",
            mib(low),
            mib(top.peak),
            results.cells.len(),
            top.cell.label,
            top.peak as f64 * 100.0 / results.budget_bytes.max(1) as f64,
            mib(results.budget_bytes),
            results.database,
        );
    }
    for (axis, values) in effects_of(results) {
        let v: Vec<String> = values
            .iter()
            .map(|e| format!("{} → {:.1}", e.value, mib(e.peak)))
            .collect();
        let _ = writeln!(out, "  {axis}: median peak {} MiB", v.join(", "));
    }
    let failed: Vec<&CellRun> = results
        .cells
        .iter()
        .filter(|c| c.error.is_some() || !c.verification.ok || !c.fits_budget)
        .collect();
    for c in failed.iter().take(10) {
        let why = c
            .error
            .clone()
            .or_else(|| c.verification.problems.first().cloned())
            .unwrap_or_else(|| "over budget".into());
        let _ = writeln!(out, "  ✗ {} r{}: {why}", c.cell.label, c.repeat + 1);
    }
    if failed.len() > 10 {
        let _ = writeln!(out, "  … and {} more failed runs", failed.len() - 10);
    }
    if results.observed.is_some() {
        let mut replay = String::new();
        super::replay::section(results, &mut replay);
        let rows: Vec<&str> = replay
            .lines()
            .filter(|l| l.starts_with("- ") || l.starts_with("  Differs"))
            .collect();
        let _ = writeln!(out, "replay against production:\n{}", rows.join("\n"));
    }
    for line in super::faults::terminal_lines(results) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "tables: {}", dir.join("summary.md").display());
    let _ = writeln!(out, "report: {}", dir.join("report.html").display());
    out
}

/// The few figures that answer a run's question, for the top of `report.html`: the peak against
/// the budget, what moved memory most, the longest wait.
pub fn glance(results: &RunResults) -> Vec<String> {
    let mut out = Vec::new();
    let ok: Vec<&CellRun> = results.cells.iter().filter(|c| c.error.is_none()).collect();
    if let Some(top) = ok.iter().max_by_key(|c| c.peak) {
        out.push(format!(
            "peak {:.1} MiB in {} ({:.0} % of the {:.0} MiB budget); anonymous (the code's own) {:.1} MiB, resident text {:.1} MiB",
            mib(top.peak),
            top.cell.label,
            top.peak as f64 * 100.0 / results.budget_bytes.max(1) as f64,
            mib(results.budget_bytes),
            mib(top.peak_anon),
            mib(top.peak_file),
        ));
    }
    let moved = effects_of(results).into_iter().max_by_key(|(_, v)| {
        let low = v.iter().map(|e| e.peak).min().unwrap_or(0);
        v.iter().map(|e| e.peak).max().unwrap_or(0) - low
    });
    if let Some((axis, values)) = moved {
        let v: Vec<String> = values
            .iter()
            .map(|e| format!("{} → {:.1}", e.value, mib(e.peak)))
            .collect();
        out.push(format!(
            "what moved memory most: {axis} (median peak {} MiB)",
            v.join(", ")
        ));
    }
    let worst = ok
        .iter()
        .flat_map(|r| r.load.imports.iter().filter_map(|i| i.wait_secs))
        .fold(None::<f64>, |m, w| Some(m.map_or(w, |m| m.max(w))));
    if let Some(w) = worst {
        out.push(format!("longest wait in the queue: {w:.1} s"));
    }
    out
}

/// The summary of a run, in Markdown.
pub fn summary_markdown(results: &RunResults) -> String {
    let mut out = String::new();
    let verdict = if results.passed() {
        "✓ every cell verified and within budget"
    } else {
        "✗ some cells failed"
    };
    let _ = writeln!(out, "# {} — {}\n", results.scenario, verdict);
    if let Some(d) = &results.description {
        let _ = writeln!(out, "{}\n", d.trim());
    }
    let _ = writeln!(
        out,
        "Budget {:.0} MiB · database {} · {} cell runs in {:.0} s · machine: {} cores, {:.1} GiB, kernel {}, allocator {}\n",
        mib(results.budget_bytes),
        results.database,
        results.cells.len(),
        results.wall_secs,
        results.machine.cores,
        mib(results.machine.memory_bytes) / 1024.0,
        results.machine.kernel,
        results.machine.allocator,
    );
    super::replay::section(results, &mut out);
    let resident_text = median(
        results
            .cells
            .iter()
            .filter(|c| c.error.is_none())
            .map(|c| c.peak_file),
    );
    let _ = writeln!(
        out,
        "Importer binary: {} MiB on disk. Resident text at the peak: {:.1} MiB (median `RssFile`, file-backed memory: the binary's code and read-only data that ran, and the C libraries' pages; the same in every cell unless the binary changes; each run measures a copy of the binary made for it).\n",
        format_args!("{:.1}", mib(results.importer_bytes)),
        mib(resident_text),
    );
    let _ = writeln!(
        out,
        "Peak = the larger of the kernel's VmHWM of the importer and its highest RSS sampled every 5 ms (the kernel updates VmHWM lazily, a spike can fall between samples): what a container limit sees, anonymous + file-backed + shared memory; the verdict and per import read it. anon = the highest sampled anonymous memory (`RssAnon`: heap and stacks, the importer's own); file = the highest file-backed (`RssFile`: mostly the binary's resident text, which depends on how the page cache holds the file, not on the code). Per import = (peak − idle) / imports; medians over repeats.\n"
    );
    if let Some(n) = results.cells.iter().map(|c| c.instances).max().filter(|&n| n > 1) {
        let _ = writeln!(
            out,
            "{n} importer processes share the database; imports go to them in turn. Idle and peak are the highest of any one process; per import divides by the imports one process was given.\n"
        );
    }
    let cells = by_cell(results);
    cells_table(&cells, &mut out);
    concurrency(&cells, &mut out);
    super::time::section(results, &cells, &mut out);
    upstream(results, &cells, &mut out);
    super::faults::section(results, &mut out);
    api_latency(&cells, &mut out);
    effects(results, &mut out);
    crashes(results, &mut out);
    reference(&cells, &mut out);
    super::binary::section(results, &mut out);
    let problems: Vec<String> = results
        .cells
        .iter()
        .flat_map(|c| {
            c.verification
                .problems
                .iter()
                .map(move |p| format!("- {} r{}: {p}", c.cell.label, c.repeat + 1))
        })
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(out, "\n## Problems\n\n{}", problems.join("\n"));
    }
    let _ = writeln!(
        out,
        "\nFiles: `results.json`, `samples.csv`, `memory-timeline.png`/`.svg`, `peak-vs-config.png`/`.svg`, one folder per cell run with the importer's log."
    );
    out
}

/// Cells that asked for more imports at once than ran at once: their peak is not the figure their
/// label suggests, so the summary says it before anyone reads it as one.
fn concurrency(cells: &[CellRuns<'_>], out: &mut String) {
    let lines: Vec<String> = cells
        .iter()
        .filter_map(|CellRuns { label, runs }| {
            let first = runs.first()?;
            // What the cell's slots allow: imports beyond them queue by design.
            let slots = first.cell.max_concurrent_imports.saturating_mul(first.instances.max(1));
            let asked = first.cell.imports.min(slots);
            let ran = runs.iter().map(|r| r.max_running).min()?;
            // Mostly queued: at most half of what the slots allow ever ran together.
            (u64::from(ran) * 2 <= u64::from(asked)).then(|| {
                format!(
                    "- {label}: {asked} slots for {} imports, but at most {ran} ran at once: the others queued, \
                     so this cell is not a measurement of {asked} imports at once",
                    first.cell.imports
                )
            })
        })
        .collect();
    if !lines.is_empty() {
        let _ = writeln!(out, "\n## Imports that mostly queued\n\n{}", lines.join("\n"));
    }
}

/// What the mock providers served: requests, 429s, most requests in flight at once (medians for
/// requests, the worst run for the rest).
fn upstream(results: &RunResults, cells: &[CellRuns<'_>], out: &mut String) {
    if results.cells.iter().all(|c| c.upstream.is_empty()) {
        return;
    }
    const FIGURES: [&str; 6] = [
        "requests",
        "429s",
        "most in flight",
        "games sent",
        "MiB sent",
        "304s",
    ];
    let figures = Platform::ALL
        .iter()
        .flat_map(|p| FIGURES.map(|f| format!("{p} {f}")));
    let mut table = Table::new(std::iter::once("cell".to_string()).chain(figures));
    for CellRuns { label, runs } in cells {
        let mut row = vec![label.to_string()];
        for p in Platform::ALL {
            let served: Vec<crate::upstream::Served> = runs
                .iter()
                .filter_map(|r| r.upstream.get(p.as_str()).copied())
                .collect();
            if served.is_empty() {
                row.extend(FIGURES.map(|_| "–".to_string()));
                continue;
            }
            row.extend([
                median(served.iter().map(|s| s.requests)).to_string(),
                served
                    .iter()
                    .map(|s| s.rate_limited)
                    .max()
                    .unwrap_or(0)
                    .to_string(),
                served
                    .iter()
                    .map(|s| s.max_in_flight)
                    .max()
                    .unwrap_or(0)
                    .to_string(),
                median(served.iter().map(|s| s.games_served)).to_string(),
                format!("{:.1}", mib(median(served.iter().map(|s| s.bytes_served)))),
                median(served.iter().map(|s| s.not_modified)).to_string(),
            ]);
        }
        table.row(row);
    }
    let _ = writeln!(
        out,
        "\n## What the providers served\n\n\
         The mocks enforce lichess's and chess.com's rules unless the scenario says `upstream.policy: off`. \
         Requests, games and MiB sent, 304s: median; 429s and most in flight at once: the worst run. \
         Games sent beside games stored say what an import re-read: each user's \"received per stored\" \
         (Time section) is 1.00 when every game received was new.\n"
    );
    out.push_str(&table.to_string());
}

/// How fast the API answered while the cell ran (goose's per-request times; the worst repeat),
/// and the wait users saw from sending their POST to their import running (harness clock).
fn api_latency(cells: &[CellRuns<'_>], out: &mut String) {
    let mut table = Table::new([
        "cell",
        "POST p50",
        "POST p95",
        "POST p99",
        "POST max",
        "GET p50",
        "GET p95",
        "GET p99",
        "GET max",
        "wait from POST median s",
        "wait from POST max s",
    ]);
    for CellRuns { label, runs } in cells {
        let worst = |name: &str, f: fn(&crate::load::RequestSummary) -> f64| {
            runs.iter()
                .flat_map(|r| r.load.requests.iter().filter(|q| q.name == name).map(f))
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
                .map_or("–".to_string(), |v| format!("{v:.0}"))
        };
        let cols = |name: &str| {
            [
                worst(name, |q| q.p50_ms),
                worst(name, |q| q.p95_ms),
                worst(name, |q| q.p99_ms),
                worst(name, |q| q.max_ms),
            ]
        };
        let waits: Vec<f64> = runs
            .iter()
            .flat_map(|r| r.load.imports.iter().filter_map(|i| i.client_wait_secs))
            .collect();
        let wait = if waits.is_empty() {
            ["–".to_string(), "–".to_string()]
        } else {
            [
                format!("{:.1}", median_f64(waits.iter().copied())),
                format!("{:.1}", waits.iter().copied().fold(0.0, f64::max)),
            ]
        };
        table.row(
            std::iter::once(label.to_string())
                .chain(cols("POST /api/v1/import-more-games"))
                .chain(cols("GET /api/v1/imports/{id}"))
                .chain(wait),
        );
    }
    if table.is_empty() {
        return;
    }
    let mut server = Table::new(["cell", "request", "count", "within 100 ms %", "p99 ms"]);
    for CellRuns { label, runs } in cells {
        // p99 None: beyond the last finite bucket, the worst there is.
        let mut worst: BTreeMap<String, (f64, Option<f64>, u64)> = BTreeMap::new();
        for r in runs.iter().flat_map(|r| &r.server_latency) {
            let e = worst.entry(r.name.clone()).or_insert((100.0, Some(0.0), 0));
            let p99 = e.1.zip(r.p99_at_most_ms).map(|(a, b)| a.max(b));
            *e = (e.0.min(r.within_100ms_pct), p99, e.2.max(r.count));
        }
        for (name, (within, p99, n)) in worst {
            let p99 = p99.map_or("> 120000".to_string(), |p| format!("≤ {p:.0}"));
            server.row([
                label.to_string(),
                name,
                n.to_string(),
                format!("{within:.1}"),
                p99,
            ]);
        }
    }
    let _ = writeln!(
        out,
        "\n## API latency\n\n\
         Milliseconds, the worst repeat. Wait from POST: seconds from sending the POST until \
         the import started (the server's start time: the importer runs on the harness's machine, one clock), admission included.\n"
    );
    out.push_str(&table.to_string());
    if !server.is_empty() {
        let _ = writeln!(
            out,
            "\nThe importer's own timing (its `importer_http_request_duration_seconds`, arrival to \
             response head; the worst repeat; p99 to the histogram's bucket):\n"
        );
        out.push_str(&server.to_string());
    }
}

/// The kill -9 each cell run suffered, so that a green table is read as "survived it".
fn crashes(results: &RunResults, out: &mut String) {
    let lines: Vec<String> = results
        .cells
        .iter()
        .filter_map(|c| {
            let k = c.crash.as_ref()?;
            Some(format!(
                "- {} r{}: importer {} killed with SIGKILL at {:.1} s with {} games stored, {}",
                c.cell.label,
                c.repeat + 1,
                k.instance,
                k.at_secs,
                k.stored_at_kill,
                if k.restarted {
                    "restarted on the same port and INSTANCE_ID"
                } else {
                    "not restarted: the other processes took its imports over"
                }
            ))
        })
        .collect();
    if !lines.is_empty() {
        let _ = writeln!(out, "\n## Injected crashes\n\n{}", lines.join("\n"));
    }
}

/// Import throughput against pgn-reader's own parse rate over the same games.
fn reference(cells: &[CellRuns<'_>], out: &mut String) {
    let mut table = Table::new([
        "cell",
        "games",
        "MB",
        "pgn-reader games/s",
        "import games/s",
        "import / pgn-reader",
    ]);
    for CellRuns { label, runs } in cells {
        let rates: Vec<&crate::observe::parse_rate::ParseRate> =
            runs.iter().filter_map(|r| r.reference_parse.as_ref()).collect();
        let Some(first) = rates.first() else { continue };
        let parse = median_f64(rates.iter().map(|r| r.games_per_sec));
        let import = median_f64(runs.iter().map(|r| r.games_per_sec));
        table.row([
            label.to_string(),
            first.games.to_string(),
            format!("{:.1}", first.bytes as f64 / 1e6),
            format!("{parse:.0}"),
            format!("{import:.0}"),
            format!("{:.1} %", if parse > 0.0 { 100.0 * import / parse } else { 0.0 }),
        ]);
    }
    if !table.is_empty() {
        let _ = writeln!(
            out,
            "\n## Against pgn-reader alone\n\npgn-reader reading the same games (a visitor that only counts moves, best of 5, after the cell, same machine) against the import's games/s (median).\n"
        );
        out.push_str(&table.to_string());
    }
}

/// One row per cell: memory, rates, waits, verification and budget, medians over repeats.
fn cells_table(cells: &[CellRuns<'_>], out: &mut String) {
    let mut table = Table::new([
        "cell",
        "imports",
        "ran at once",
        "idle MiB",
        "peak MiB",
        "VmHWM MiB",
        "sampled peak MiB",
        "anon MiB",
        "file MiB",
        "per import MiB",
        "per import anon MiB",
        "spread %",
        "games/s",
        "wait median s",
        "first queued waited s",
        "wait max s",
        "verified",
        "budget",
    ]);
    for CellRuns { label, runs } in cells {
        let good: Vec<&CellRun> = runs.iter().copied().filter(|r| r.error.is_none()).collect();
        let med = |f: fn(&CellRun) -> u64| median(good.iter().map(|r| f(r)));
        let gps = median_f64(good.iter().map(|r| r.games_per_sec));
        let waits: Vec<f64> = runs
            .iter()
            .flat_map(|r| r.load.imports.iter().filter_map(|i| i.wait_secs))
            .collect();
        let wait = waits.iter().copied().fold(0.0, f64::max);
        let wait_median = median_f64(waits.iter().copied());
        // The import that waited first in line: what "the 4th user waits" means with 3 slots.
        let first_queued: Vec<f64> = runs
            .iter()
            .filter_map(|r| {
                r.load
                    .imports
                    .iter()
                    .find(|i| i.admitted_as == "queued" && i.queue_position == 1)
                    .and_then(|i| i.wait_secs)
            })
            .collect();
        let first_queued = if first_queued.is_empty() {
            "–".to_string()
        } else {
            format!("{:.1}", median_f64(first_queued))
        };
        let verified = runs.iter().all(|r| r.verification.ok);
        let fits = runs.iter().all(|r| r.fits_budget);
        let errors: Vec<&str> = runs.iter().filter_map(|r| r.error.as_deref()).collect();
        let ran = runs.iter().map(|r| r.max_running).min().unwrap_or(0);
        let mark = |ok: bool| if ok { "✓" } else { "✗" };
        let errors = if errors.is_empty() {
            String::new()
        } else {
            format!(" ({})", errors.join("; "))
        };
        table.row([
            label.to_string(),
            runs.first().map_or(0, |r| r.cell.imports).to_string(),
            ran.to_string(),
            format!("{:.1}", mib(med(|r| r.idle_rss))),
            format!("{:.1}", mib(med(|r| r.peak))),
            format!("{:.1}", mib(med(|r| r.peak_hwm))),
            format!("{:.1}", mib(med(|r| r.peak_sampled))),
            format!("{:.1}", mib(med(|r| r.peak_anon))),
            format!("{:.1}", mib(med(|r| r.peak_file))),
            format!("{:.2}", mib(med(|r| r.per_import))),
            format!("{:.2}", mib(med(|r| r.per_import_anon))),
            format!("{:.1}", spread_pct(runs)),
            format!("{gps:.0}"),
            format!("{wait_median:.1}"),
            first_queued,
            format!("{wait:.1}"),
            mark(verified).to_string(),
            format!("{}{errors}", mark(fits)),
        ]);
    }
    out.push_str(&table.to_string());
}
