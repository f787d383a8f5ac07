//! A run's bad days: each provider outage (what it answered, how far apart the importer's
//! requests into it were, the most a client that waits sends), the database backends
//! terminated, and how long the imports waited for a provider apart from the queue. The summary
//! gets the tables, the terminal a few lines.

use std::fmt::Write;

use statrs::statistics::{Data, OrderStatistics};

use super::table::Table;
use crate::session::results::RunResults;
use crate::upstream::{OutageRecord, Platform};

/// Gaps shown per outage; `results.json` holds them all.
const GAPS_SHOWN: usize = 12;

fn gaps(o: &OutageRecord) -> String {
    let mut shown: Vec<String> = o
        .gaps_secs
        .iter()
        .take(GAPS_SHOWN)
        .map(|g| format!("{g:.1}"))
        .collect();
    if o.gaps_secs.len() > GAPS_SHOWN {
        shown.push("…".into());
    }
    if shown.is_empty() {
        "–".into()
    } else {
        shown.join(", ")
    }
}

fn body(o: &OutageRecord) -> String {
    serde_json::to_value(o.body)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Per provider, p50/p95/max of every import's time waiting for it, all cell runs together, in
/// provider seconds; only providers some import waited for.
fn provider_waits(results: &RunResults) -> Vec<(Platform, usize, f64, f64, f64)> {
    Platform::ALL
        .into_iter()
        .filter_map(|p| {
            let waits: Vec<f64> = results
                .cells
                .iter()
                .filter_map(|c| c.timing.as_ref())
                .flat_map(|t| t.imports.iter())
                .filter(|i| i.platform == p && i.wait_secs.is_some())
                .map(|i| i.provider_wait_secs)
                .collect();
            if waits.iter().all(|w| *w <= 0.0) {
                return None;
            }
            let max = waits.iter().copied().fold(0.0, f64::max);
            let n = waits.len();
            let mut data = Data::new(waits);
            Some((p, n, data.median(), data.quantile(0.95), max))
        })
        .collect()
}

fn had_faults(results: &RunResults) -> bool {
    results
        .cells
        .iter()
        .any(|c| !c.outages.is_empty() || c.database_faults.is_some())
}

/// Appends the "Bad days" section when the run had outages, database faults or provider waits.
pub fn section(results: &RunResults, out: &mut String) {
    let waits = provider_waits(results);
    if !had_faults(results) && waits.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n## Bad days\n");
    if results.cells.iter().any(|c| !c.outages.is_empty()) {
        let _ = writeln!(
            out,
            "Provider outages: for its duration every request got its status and body (provider seconds from the \
             first POST). A client that waits sends at most \"at most\" requests into one: per lane and process, \
             one per wait doubling from 1 s, + 2, on the outage's real duration; more fails the cell, as does an \
             outage that answered none. Gaps: between each request it answered and the next.\n"
        );
        let mut table = Table::new([
            "cell",
            "run",
            "provider",
            "status",
            "body",
            "from s",
            "for s",
            "requests",
            "at most",
            "first after s",
            "gaps s",
        ]);
        for c in &results.cells {
            for o in &c.outages {
                table.row([
                    c.cell.label.clone(),
                    format!("r{}", c.repeat + 1),
                    o.provider.to_string(),
                    o.status.to_string(),
                    body(o),
                    format!("{:.1}", o.start_secs),
                    format!("{:.1}", o.duration_secs),
                    o.requests.to_string(),
                    o.allowed_requests.map_or("–".into(), |a| a.to_string()),
                    o.first_request_secs.map_or("–".into(), |s| format!("{s:.1}")),
                    gaps(o),
                ]);
            }
        }
        out.push_str(&table.to_string());
    }
    if results.cells.iter().any(|c| c.database_faults.is_some()) {
        let _ = writeln!(
            out,
            "\nDatabase: the importer's PostgreSQL backends running a statement or idle in a transaction, \
             terminated (`pg_terminate_backend`) every few seconds (real time) while the imports ran.\n"
        );
        let mut table = Table::new([
            "cell",
            "run",
            "every s",
            "rounds",
            "rounds that struck",
            "backends terminated",
            "error",
        ]);
        for c in &results.cells {
            if let Some(d) = &c.database_faults {
                table.row([
                    c.cell.label.clone(),
                    format!("r{}", c.repeat + 1),
                    format!("{:.1}", d.every_secs),
                    d.rounds.to_string(),
                    d.rounds_that_struck.to_string(),
                    d.terminated.to_string(),
                    d.error.as_deref().unwrap_or("–").to_string(),
                ]);
            }
        }
        out.push_str(&table.to_string());
    }
    if !waits.is_empty() {
        let _ = writeln!(
            out,
            "\nWaiting for a provider, apart from the queue (the jobs' `provider_wait_secs`, provider seconds, \
             every import of every cell run):\n"
        );
        let mut table = Table::new(["provider", "imports", "p50 s", "p95 s", "max s"]);
        for (p, n, p50, p95, max) in &waits {
            table.row([
                p.to_string(),
                n.to_string(),
                format!("{p50:.1}"),
                format!("{p95:.1}"),
                format!("{max:.1}"),
            ]);
        }
        out.push_str(&table.to_string());
    }
}

/// The terminal's lines on the run's bad days: the provider waits, each outage (the cell run
/// whose importer sent the most into it), the database faults.
pub fn terminal_lines(results: &RunResults) -> Vec<String> {
    let mut lines = Vec::new();
    let waits = provider_waits(results);
    if !waits.is_empty() || results.cells.iter().any(|c| !c.outages.is_empty()) {
        let words: Vec<String> = waits
            .iter()
            .map(|(p, _, p50, p95, max)| format!("{p} p50 {p50:.1} s, p95 {p95:.1} s, max {max:.1} s"))
            .collect();
        lines.push(format!(
            "waited for a provider, apart from the queue: {}",
            if words.is_empty() {
                "no import did (or the importer does not report it)".to_string()
            } else {
                words.join("; ")
            }
        ));
    }
    let mut worst: Vec<(&OutageRecord, usize)> = Vec::new();
    for c in &results.cells {
        for (k, o) in c.outages.iter().enumerate() {
            match worst.get_mut(k) {
                Some((w, n)) => {
                    *n += 1;
                    if o.requests > w.requests {
                        *w = o;
                    }
                }
                None => worst.push((o, 1)),
            }
        }
    }
    for (o, runs) in worst {
        let of = if runs > 1 {
            format!(" (the most of {runs} cell runs)")
        } else {
            String::new()
        };
        lines.push(format!(
            "{} outage, {} for {:.0} s: {} requests into it{of} (a client that waits: at most {}), gaps {} s",
            o.provider,
            o.status,
            o.duration_secs,
            o.requests,
            o.allowed_requests.map_or("–".into(), |a| a.to_string()),
            gaps(o),
        ));
    }
    let db: Vec<_> = results
        .cells
        .iter()
        .filter_map(|c| c.database_faults.as_ref())
        .collect();
    if let Some(first) = db.first() {
        lines.push(format!(
            "database: {} importer backends terminated in {} rounds (every {:.1} s) over {} cell runs",
            db.iter().map(|d| d.terminated).sum::<u64>(),
            db.iter().map(|d| d.rounds).sum::<u64>(),
            first.every_secs,
            db.len()
        ));
    }
    lines
}
