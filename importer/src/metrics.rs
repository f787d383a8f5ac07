//! Process-wide counters, served as Prometheus text on `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::job::Platform;

/// Counters that only grow; gauges are read from their owners when scraped.
#[derive(Debug, Default)]
pub struct Metrics {
    imported_lichess: AtomicU64,
    imported_chess_com: AtomicU64,
    failed_parse: AtomicU64,
    rate_limited_lichess: AtomicU64,
    rate_limited_chess_com: AtomicU64,
    /// Cool-down in milliseconds, so that an atomic integer can hold fractions of a second.
    cool_down_ms_lichess: AtomicU64,
    cool_down_ms_chess_com: AtomicU64,
}

/// Resident memory of this process in bytes, from `/proc/self/statm` (0 where there is none).
pub fn resident_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

impl Metrics {
    /// Counts games newly stored.
    pub fn games_imported(&self, platform: Platform, n: u64) {
        match platform {
            Platform::Lichess => &self.imported_lichess,
            Platform::ChessCom => &self.imported_chess_com,
        }
        .fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a 429 answer from `platform`.
    pub fn rate_limited(&self, platform: Platform) {
        match platform {
            Platform::Lichess => &self.rate_limited_lichess,
            Platform::ChessCom => &self.rate_limited_chess_com,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `secs` of cool-down (no request to `platform`) to its total.
    pub fn cooled_down(&self, platform: Platform, secs: f64) {
        match platform {
            Platform::Lichess => &self.cool_down_ms_lichess,
            Platform::ChessCom => &self.cool_down_ms_chess_com,
        }
        .fetch_add((secs * 1000.0).round() as u64, Ordering::Relaxed);
    }

    /// 429 answers received from `platform` so far.
    pub fn rate_limited_total(&self, platform: Platform) -> u64 {
        match platform {
            Platform::Lichess => &self.rate_limited_lichess,
            Platform::ChessCom => &self.rate_limited_chess_com,
        }
        .load(Ordering::Relaxed)
    }

    /// Counts a game skipped because it does not parse.
    pub fn game_failed_parse(&self) {
        self.failed_parse.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders the Prometheus text exposition.
    pub fn render(&self, active: usize, queued: usize) -> String {
        let mut out = String::with_capacity(1024);
        let _ = writeln!(out, "# HELP importer_imports_active Imports running now.");
        let _ = writeln!(out, "# TYPE importer_imports_active gauge");
        let _ = writeln!(out, "importer_imports_active {active}");
        let _ = writeln!(out, "# HELP importer_imports_queued Imports waiting for a slot.");
        let _ = writeln!(out, "# TYPE importer_imports_queued gauge");
        let _ = writeln!(out, "importer_imports_queued {queued}");
        let _ = writeln!(out, "# HELP importer_games_imported_total Games newly stored.");
        let _ = writeln!(out, "# TYPE importer_games_imported_total counter");
        for (platform, n) in [
            ("lichess", &self.imported_lichess),
            ("chess.com", &self.imported_chess_com),
        ] {
            let _ = writeln!(
                out,
                "importer_games_imported_total{{platform=\"{platform}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP importer_games_failed_parse_total Games skipped because they do not parse."
        );
        let _ = writeln!(out, "# TYPE importer_games_failed_parse_total counter");
        let _ = writeln!(
            out,
            "importer_games_failed_parse_total {}",
            self.failed_parse.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP importer_upstream_rate_limited_total 429 Too Many Requests answers received, per provider."
        );
        let _ = writeln!(out, "# TYPE importer_upstream_rate_limited_total counter");
        for (platform, n) in [
            ("lichess", &self.rate_limited_lichess),
            ("chess.com", &self.rate_limited_chess_com),
        ] {
            let _ = writeln!(
                out,
                "importer_upstream_rate_limited_total{{provider=\"{platform}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP importer_upstream_cooldown_seconds_total Seconds in which no request went to a provider after its 429s."
        );
        let _ = writeln!(out, "# TYPE importer_upstream_cooldown_seconds_total counter");
        for (platform, ms) in [
            ("lichess", &self.cool_down_ms_lichess),
            ("chess.com", &self.cool_down_ms_chess_com),
        ] {
            let _ = writeln!(
                out,
                "importer_upstream_cooldown_seconds_total{{provider=\"{platform}\"}} {:.3}",
                ms.load(Ordering::Relaxed) as f64 / 1000.0
            );
        }
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory of the importer."
        );
        let _ = writeln!(out, "# TYPE process_resident_memory_bytes gauge");
        let _ = writeln!(out, "process_resident_memory_bytes {}", resident_bytes());
        out
    }
}
