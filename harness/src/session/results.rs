//! What a run measured, as written to `results.json` and read back by later commands.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::load::LoadResult;
use crate::scenario::Cell;
use crate::verify::Verification;

/// The machine a run was measured on: figures from different machines are not comparable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Logical cores.
    pub cores: usize,
    /// Total memory, bytes.
    pub memory_bytes: u64,
    /// Kernel version.
    pub kernel: String,
    /// The importers' allocators as the cells ran them, `; `-separated: `jemalloc`, `mimalloc`,
    /// `glibc, one arena (importer default)` or `glibc, MALLOC_ARENA_MAX=N`.
    pub allocator: String,
}

impl Machine {
    /// This machine.
    pub fn current(allocator: String) -> Machine {
        let sys = sysinfo::System::new_with_specifics(
            sysinfo::RefreshKind::nothing().with_memory(sysinfo::MemoryRefreshKind::nothing().with_ram()),
        );
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes: sys.total_memory(),
            kernel: sysinfo::System::kernel_version().unwrap_or_else(|| "unknown".into()),
            allocator,
        }
    }
}

/// One run of one cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellRun {
    /// The cell.
    pub cell: Cell,
    /// 0-based repeat.
    pub repeat: u32,
    /// Median RSS over the idle second before the load, bytes.
    pub idle_rss: u64,
    /// Highest sampled RSS, bytes.
    pub peak_sampled: u64,
    /// The kernel's peak (`VmHWM`), bytes.
    pub peak_hwm: u64,
    /// The peak used for verdicts: the larger of the two.
    pub peak: u64,
    /// (peak - idle) / imports, bytes.
    pub per_import: u64,
    /// Median anonymous memory (`RssAnon`) over the idle second, bytes: the importer's own.
    #[serde(default)]
    pub idle_anon: u64,
    /// Highest sampled anonymous memory, bytes (no kernel high-water mark exists for it).
    #[serde(default)]
    pub peak_anon: u64,
    /// Highest sampled file-backed memory (`RssFile`), bytes: mostly the binary's resident text,
    /// which depends on how the page cache holds the file, not on the code.
    #[serde(default)]
    pub peak_file: u64,
    /// (peak_anon - idle_anon) / imports, bytes.
    #[serde(default)]
    pub per_import_anon: u64,
    /// Samples taken.
    pub samples: usize,
    /// Seconds from the first POST to the last import's end.
    pub load_secs: f64,
    /// Seconds during which every import requested was running at once (server clock).
    pub overlap_secs: f64,
    /// Games stored by all imports.
    pub games_imported: i64,
    /// games_imported / load_secs.
    pub games_per_sec: f64,
    /// peak <= budget.
    pub fits_budget: bool,
    /// Exact delivery.
    pub verification: Verification,
    /// The imports and goose's request metrics.
    pub load: LoadResult,
    /// The kernel killed the importer for lack of memory under the hard limit.
    #[serde(default)]
    pub oom_killed: bool,
    /// The hard limit it ran under, if any.
    #[serde(default)]
    pub enforced: Option<String>,
    /// Set when the cell could not be measured (importer died, oom-killed, timeout...).
    pub error: Option<String>,
    /// The kill -9 injected by the scenario's `crash`, when it happened.
    #[serde(default)]
    pub crash: Option<CrashRecord>,
    /// Importer processes on the database.
    #[serde(default = "one_instance")]
    pub instances: u32,
    /// pgn-reader's own rate over the same games, when the scenario asks for it.
    #[serde(default)]
    pub reference_parse: Option<crate::observe::parse_rate::ParseRate>,
    /// The most imports running at once (server times), whatever the cell asked for.
    #[serde(default)]
    pub max_running: u32,
    /// What each mock provider served: requests, 429s, most requests in flight at once.
    #[serde(default)]
    pub upstream: std::collections::BTreeMap<String, crate::upstream::Served>,
    /// The first importer's own request timings per route, from its /metrics after the load.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_latency: Vec<crate::observe::server_latency::RouteLatency>,
    /// Each user's wait, run and completion on provider time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<crate::observe::timing::Timing>,
    /// The provider outages of the cell and what each answered, in provider seconds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outages: Vec<crate::upstream::OutageRecord>,
    /// What terminating the importer's PostgreSQL backends did (`database_faults`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_faults: Option<super::faults::DatabaseFaultRecord>,
}

fn one_instance() -> u32 {
    1
}

/// When and where the injected crash struck.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrashRecord {
    /// Which importer (1-based).
    pub instance: u32,
    /// Seconds from the cell's origin.
    pub at_secs: f64,
    /// Games stored (seeded included) when it was killed.
    pub stored_at_kill: u64,
    /// Started again on the same port and INSTANCE_ID.
    pub restarted: bool,
}

impl CellRun {
    /// Verified, fits, no error.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.verification.ok && self.fits_budget
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResults {
    /// Scenario name.
    pub scenario: String,
    /// Scenario file.
    pub file: String,
    /// Its description.
    pub description: Option<String>,
    /// sqlite or postgres.
    pub database: String,
    /// The importer binary.
    pub importer: String,
    /// Its size on disk, bytes (0 in results written before it was recorded).
    #[serde(default)]
    pub importer_bytes: u64,
    /// Its machine code (`.text`) by crate; absent when the binary has no symbols, and in
    /// results written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub importer_text: Option<crate::observe::binary::TextByCrate>,
    /// Budget, bytes.
    pub budget_bytes: u64,
    /// Headroom fraction.
    pub headroom: f64,
    /// Start, RFC 3339.
    pub started_at: String,
    /// Wall time, seconds.
    pub wall_secs: f64,
    /// Where it ran.
    pub machine: Machine,
    /// Importer environment set on top of every cell (`--set`).
    #[serde(default)]
    pub overrides: std::collections::BTreeMap<String, String>,
    /// The hard memory limit, or why there was none although asked.
    #[serde(default)]
    pub enforced: Option<String>,
    /// Every cell run, in order.
    pub cells: Vec<CellRun>,
    /// What production saw in the window a captured scenario replays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<crate::scenario::Observed>,
    /// The lichess mock's pace, games a second a stream in provider time (0: unpaced).
    #[serde(default)]
    pub pace_games_per_sec: u32,
    /// The chess.com mock's time before each answer, ms in provider time (0: at once).
    #[serde(default)]
    pub chesscom_latency_ms: u64,
}

impl RunResults {
    /// Whether the mocks were paced at all: without a pace or a latency, a run's times are the
    /// importer's own speed against mocks that answer at once, not what a user waits at a provider.
    pub fn paced(&self) -> bool {
        self.pace_games_per_sec > 0 || self.chesscom_latency_ms > 0
    }
}

impl RunResults {
    /// Every cell verified and within budget.
    pub fn passed(&self) -> bool {
        self.cells.iter().all(CellRun::passed)
    }
}

/// Median of some values (the lower middle for an even count); 0 for none.
pub fn median(values: impl IntoIterator<Item = u64>) -> u64 {
    let mut v: Vec<u64> = values.into_iter().collect();
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[(v.len() - 1) / 2]
}

/// Median of floats (the lower middle for an even count); 0 for none.
pub fn median_f64(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

/// Bytes in a MiB.
pub const BYTES_PER_MIB: f64 = 1_048_576.0;

/// Bytes as MiB, for people.
pub fn mib(bytes: u64) -> f64 {
    mib_f64(bytes as f64)
}

/// Bytes as MiB, for a figure in bytes that is not a count: a fit's prediction, a bound.
pub fn mib_f64(bytes: f64) -> f64 {
    bytes / BYTES_PER_MIB
}

/// The runs of one cell.
#[derive(Debug, Clone)]
pub struct CellRuns<'a> {
    /// The cell's label.
    pub label: &'a str,
    /// Its runs, in the order they ran (at least one).
    pub runs: Vec<&'a CellRun>,
}

/// Runs of the same cell, in the order cells first appear.
pub fn by_cell(results: &RunResults) -> Vec<CellRuns<'_>> {
    let mut cells: Vec<CellRuns<'_>> = Vec::new();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &results.cells {
        let label = c.cell.label.as_str();
        match index.get(label) {
            Some(&i) => cells[i].runs.push(c),
            None => {
                index.insert(label, cells.len());
                cells.push(CellRuns { label, runs: vec![c] });
            }
        }
    }
    cells
}

impl CellRun {
    /// A run that failed before it measured anything: `error` says why.
    pub fn failed(cell: &Cell, repeat: u32, error: String) -> CellRun {
        CellRun {
            cell: cell.clone(),
            repeat,
            idle_rss: 0,
            peak_sampled: 0,
            peak_hwm: 0,
            peak: 0,
            per_import: 0,
            idle_anon: 0,
            peak_anon: 0,
            peak_file: 0,
            per_import_anon: 0,
            samples: 0,
            load_secs: 0.0,
            overlap_secs: 0.0,
            games_imported: 0,
            games_per_sec: 0.0,
            fits_budget: false,
            verification: Verification {
                ok: false,
                users: Vec::new(),
                problems: vec![error.clone()],
            },
            load: Default::default(),
            oom_killed: false,
            enforced: None,
            error: Some(error),
            crash: None,
            instances: 1,
            reference_parse: None,
            max_running: 0,
            upstream: Default::default(),
            server_latency: Vec::new(),
            timing: None,
            outages: Vec::new(),
            database_faults: None,
        }
    }
}
