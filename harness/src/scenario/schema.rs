//! The scenario file as written: the YAML's keys, their types and defaults.
//! Unknown keys are rejected here, but for the matrix's, which `super::matrix` checks against
//! the settings table; `super` checks values and expands the matrix.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use settings::Platform;

/// Which database each cell gets a fresh copy of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Database {
    /// A new SQLite file per cell.
    Sqlite,
    /// A new schema per cell in the PostgreSQL at `postgres_url`.
    Postgres,
}

impl Database {
    /// Its name as a scenario writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Database::Sqlite => "sqlite",
            Database::Postgres => "postgres",
        }
    }
}

/// The settings the matrix varies: each key a setting's name, each list an axis; a setting
/// absent keeps the importer's default. Which names may be varied and which values they take
/// are `super::matrix`'s to check (from the settings table), so that a typo names its line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Matrix(pub BTreeMap<String, Vec<serde_yaml::Value>>);

/// One kind of user in the workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserTemplate {
    /// Who this user is in a captured scenario: a keyed hash of the username, the same for each
    /// import of one user (read only by people; each import still gets a mock user of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudonym: Option<String>,
    /// `lichess` or `chess.com`.
    pub platform: Platform,
    /// Games the user has upstream.
    pub games: u64,
    /// Of those, the newest `stored` (after the `new_since_stored` newest) are in the database
    /// before the import, as an earlier import of the importer under test left them: the harness
    /// runs that import first (unmeasured, against the user as it was then).
    #[serde(default)]
    pub stored: u64,
    /// Games played after the stored ones: the newest `new_since_stored`, which the earlier
    /// import did not see and the measured one must take first.
    #[serde(default)]
    pub new_since_stored: u64,
    /// lichess: indices (0 = newest) of games created inside the stored range that were still
    /// being played when the earlier import ran, and have finished since.
    #[serde(default)]
    pub finishes_late: Vec<u64>,
    /// The import's `limit` (default 500, as the API's).
    #[serde(default = "default_limit")]
    pub limit: u64,
    /// Monthly archives the games spread over (chess.com).
    #[serde(default = "one")]
    pub months: u32,
    /// Indices (0 = newest) of games served broken.
    #[serde(default)]
    pub malformed: Vec<u64>,
    /// Statuses answered to the user's first requests (e.g. [429, 503]).
    #[serde(default)]
    pub faults: Vec<u16>,
    /// lichess: the first stream breaks in the middle of the game after this many.
    #[serde(default)]
    pub cut_after: Option<u64>,
    /// lichess: the first stream goes silent, without closing, after this many games.
    #[serde(default)]
    pub stall_after: Option<u64>,
    /// lichess: every stream breaks in the middle of a game after this many games (lila#11926).
    #[serde(default)]
    pub cut_every: Option<u64>,
    /// chess.com, a returning user (`stored`): months the earlier import was served short.
    #[serde(default)]
    pub short_months: Option<ShortMonths>,
}

/// chess.com months served short to a returning user's earlier import (every request it made
/// for them), and whole, under new validators, to the measured import, which must heal them.
/// Why not "the first N requests": how many requests the earlier import makes for a month is the
/// importer's business (a month larger than a batch is read twice), and a month half short, half
/// whole to one import would test the mock, not the importer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShortMonths {
    /// Games left out of each short answer: the month's newest finished ones.
    pub missing: u64,
    /// Which months (months back, 0 = the newest) were short; empty: every month.
    #[serde(default)]
    pub months: Vec<u32>,
}

/// A provider outage in every cell: from `after_secs` after the first POST, for `duration_secs`,
/// every request to `provider` gets `status` and `body` (provider seconds, ÷ the time scale).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageSpec {
    /// `lichess` or `chess.com`.
    pub provider: Platform,
    /// When it begins, provider seconds after the attack's start.
    #[serde(default)]
    pub after_secs: f64,
    /// How long it lasts, provider seconds.
    pub duration_secs: f64,
    /// The status every request gets; default: lichess 502, chess.com 503.
    #[serde(default)]
    pub status: Option<u16>,
    /// `html`, `json` or `empty`; default: lichess `html`, chess.com `json`.
    #[serde(default)]
    pub body: Option<crate::upstream::OutageBody>,
}

impl OutageSpec {
    /// The outage as the mocks run it: real seconds at `time_scale`.
    pub fn outage(&self, time_scale: f64) -> crate::upstream::Outage {
        let real = std::time::Duration::from_secs_f64(self.duration_secs / time_scale);
        let default = match self.provider {
            Platform::Lichess => crate::upstream::Outage::lichess_restart(real),
            Platform::ChessCom => crate::upstream::Outage::chess_com_down(real),
        };
        crate::upstream::Outage {
            status: self.status.unwrap_or(default.status),
            body: self.body.unwrap_or(default.body),
            duration: real,
        }
    }
}

/// Faults on the database side while the imports run (PostgreSQL only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseFaults {
    /// Every this many seconds (real time: the database is not a provider), terminate the
    /// importer's backends that are running a statement or idle in a transaction, as a managed
    /// PostgreSQL's restart does (`FATAL 57P01`).
    pub terminate_backends_every_secs: f64,
}

fn default_limit() -> u64 {
    500
}
fn one() -> u32 {
    1
}

/// The runs of a cell a scenario or `--repeats` may ask for.
pub const REPEATS: std::ops::RangeInclusive<u32> = 1..=50;

/// `repeats`, read as any integer so that a negative one is refused with the range, not with
/// the type it does not fit.
fn repeats<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = i64::deserialize(d)?;
    u32::try_from(n)
        .ok()
        .filter(|n| REPEATS.contains(n))
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "repeats: {n} is not in {}..={}",
                REPEATS.start(),
                REPEATS.end()
            ))
        })
}

/// What each cell runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Imports requested at once; default: the cell's MAX_CONCURRENT_IMPORTS.
    #[serde(default)]
    pub imports: Option<u32>,
    /// User kinds, taken in turn for import 1, 2, 3...
    pub users: Vec<UserTemplate>,
    /// When each import is requested (provider seconds); default: all at once.
    #[serde(default, with = "serde_yaml::with::singleton_map")]
    pub arrivals: crate::load::Arrivals,
}

/// How the mocks serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// lichess games per second per stream, like the real service (about 20 anonymous: docs/providers.md;
    /// 0 = as fast as possible).
    #[serde(default)]
    pub pace_games_per_sec: u32,
    /// lichess games per second per stream when the importer sends a token (`LICHESS_TOKEN`;
    /// about 30 for real); default: `pace_games_per_sec`.
    #[serde(default)]
    pub authenticated_pace_games_per_sec: Option<u32>,
    /// Provider time runs this many times faster than the wall clock: paces × N, chess.com's
    /// latency, the penalty after a 429 and the arrival gaps ÷ N. Reports give provider seconds
    /// (measured × N). The importer's own work is not scaled, so it weighs N times more.
    #[serde(default = "one_f64")]
    pub time_scale: f64,
    /// Seed of the synthetic games.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Generate every lichess game before the cell starts, so games/s measures the importer, not the generator.
    #[serde(default)]
    pub prerender: bool,
    /// chess.com: milliseconds before each answer, a model of its response time (0: none).
    #[serde(default)]
    pub chesscom_latency_ms: u64,
    /// The providers' rules the mocks enforce (default: lichess's and chess.com's own), or `off`.
    #[serde(default)]
    pub policy: crate::upstream::Policy,
    /// A cell in which the mocks served a 429 fails unless this is true (fault scenarios).
    #[serde(default)]
    pub expect_rate_limits: bool,
    /// Provider outages in every cell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outages: Vec<OutageSpec>,
}

fn default_seed() -> u64 {
    42
}
fn one_f64() -> f64 {
    1.0
}

impl Default for Upstream {
    fn default() -> Upstream {
        Upstream {
            pace_games_per_sec: 0,
            authenticated_pace_games_per_sec: None,
            time_scale: 1.0,
            seed: default_seed(),
            prerender: false,
            chesscom_latency_ms: 0,
            policy: crate::upstream::Policy::default(),
            expect_rate_limits: false,
            outages: Vec::new(),
        }
    }
}

/// A crash injected in every cell: one importer is killed with SIGKILL mid-import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crash {
    /// Kill once the database holds this many games stored by the cell's imports.
    pub after_games: u64,
    /// Which importer process (1-based) to kill.
    #[serde(default = "one")]
    pub instance: u32,
    /// Start it again (same INSTANCE_ID, same port) once it is dead.
    #[serde(default)]
    pub restart: bool,
}

/// How the gate judges a scenario's cells: against another build measured in the same run
/// (A/B, `--against`), or against a committed baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// A/B: growth of the peak that matters, percent of the baseline side's mean; a regression
    /// is a growth above it that is also significant over the repeats (Welch's t-test, p < 0.05).
    #[serde(default = "default_peak_tolerance_pct")]
    pub peak_tolerance_pct: f64,
    /// A/B: growth of the anonymous peak that matters in MiB, whatever `peak_tolerance_pct` says
    /// (the larger wins): the anonymous peak is a few MiB, where 5 % is a few hundred KiB of noise.
    #[serde(default = "default_peak_floor_mib")]
    pub peak_floor_mib: f64,
    /// A/B: growth of the memory per import that matters, percent (as `peak_tolerance_pct`).
    #[serde(default = "default_per_import_tolerance_pct")]
    pub per_import_tolerance_pct: f64,
    /// Growth of the binary's resident text (peak file-backed memory) that matters, percent: a
    /// new heavy dependency, not the code's behaviour. A/B and against a baseline.
    #[serde(default = "default_resident_text_tolerance_pct")]
    pub resident_text_tolerance_pct: f64,
    /// Against a committed baseline: allowed growth, percent.
    #[serde(default = "default_tolerance_pct")]
    pub tolerance_pct: f64,
    /// Against a committed baseline: allowed growth of the peak in MiB, whatever the percentage
    /// says (the larger wins). The memory per import gets no floor: it is smaller than any floor.
    #[serde(default = "default_tolerance_floor_mb")]
    pub tolerance_floor_mb: f64,
    /// Repeats of a cell whose peaks spread more than this (percent of the median) are rerun once, then `erratic`.
    #[serde(default = "default_max_spread_pct")]
    pub max_spread_pct: f64,
    /// Slowest 99th percentile of `POST /api/v1/import-more-games` a cell may show, ms (worst repeat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_post_p99_ms: Option<f64>,
    /// Slowest 99th percentile of `GET /api/v1/imports/{id}` a cell may show, ms (worst repeat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_get_p99_ms: Option<f64>,
}

fn default_peak_tolerance_pct() -> f64 {
    5.0
}
fn default_per_import_tolerance_pct() -> f64 {
    15.0
}
fn default_peak_floor_mib() -> f64 {
    0.5
}
fn default_resident_text_tolerance_pct() -> f64 {
    10.0
}
fn default_tolerance_pct() -> f64 {
    10.0
}
fn default_tolerance_floor_mb() -> f64 {
    3.0
}
fn default_max_spread_pct() -> f64 {
    10.0
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            peak_tolerance_pct: default_peak_tolerance_pct(),
            per_import_tolerance_pct: default_per_import_tolerance_pct(),
            peak_floor_mib: default_peak_floor_mib(),
            resident_text_tolerance_pct: default_resident_text_tolerance_pct(),
            tolerance_pct: default_tolerance_pct(),
            tolerance_floor_mb: default_tolerance_floor_mb(),
            max_spread_pct: default_max_spread_pct(),
            max_post_p99_ms: None,
            max_get_p99_ms: None,
        }
    }
}

/// A scenario as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name; default: the file's stem.
    #[serde(default)]
    pub name: Option<String>,
    /// What it is for, shown in the summary.
    #[serde(default)]
    pub description: Option<String>,
    /// The importer binary; default: `target/release/importer`.
    #[serde(default)]
    pub importer: Option<PathBuf>,
    /// Extra environment for the importer.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// sqlite or postgres.
    #[serde(default = "default_database")]
    pub database: Database,
    /// Server for `database: postgres`: PostgreSQL itself (each cell gets a schema of its own),
    /// not a pooler; a cell with `DATABASE_POOLER: transaction` reaches it through a PgBouncer
    /// the harness starts in front of it.
    #[serde(default = "default_postgres_url")]
    pub postgres_url: String,
    /// The PgBouncer of cells with `DATABASE_POOLER: transaction`.
    #[serde(default)]
    pub pooler: Pooler,
    /// Memory budget, e.g. `512MB` (MB and MiB both mean 2^20 bytes).
    pub budget: String,
    /// Share of the budget kept free, e.g. `15%`.
    #[serde(default = "default_headroom")]
    pub headroom: String,
    /// Runs of each cell, in [`REPEATS`].
    #[serde(default = "one", deserialize_with = "repeats")]
    pub repeats: u32,
    /// The settings to vary.
    #[serde(default)]
    pub matrix: Matrix,
    /// The imports each cell runs.
    pub workload: Workload,
    /// Mock behaviour.
    #[serde(default)]
    pub upstream: Upstream,
    /// Longest a cell may run, in seconds, before it fails.
    #[serde(default = "default_cell_timeout")]
    pub cell_timeout_secs: u64,
    /// Importer processes sharing the one database (more than 1 needs PostgreSQL); imports go to them in turn.
    #[serde(default = "one")]
    pub instances: u32,
    /// A kill -9 of one importer in the middle of every cell.
    #[serde(default)]
    pub crash: Option<Crash>,
    /// The importer's PostgreSQL backends terminated while the imports run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_faults: Option<DatabaseFaults>,
    /// After each cell, time pgn-reader alone over the cell's games, to compare games/s with.
    #[serde(default)]
    pub reference_parse: bool,
    /// Tolerances of the regression gate.
    #[serde(default)]
    pub gate: Gate,
    /// What production saw in the window a captured scenario replays (`harness capture` writes
    /// it): a run sets its own waits and runs beside these.
    #[serde(default)]
    pub observed: Option<Observed>,
}

/// What production saw, per provider, in a captured window; times in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observed {
    /// The window's start, RFC 3339.
    pub from: String,
    /// The window's end, RFC 3339 (exclusive).
    pub to: String,
    /// Largest difference, percent, between the replay's p95 wait or run and production's that
    /// still counts as reproduced.
    #[serde(default = "default_observed_tolerance_pct")]
    pub tolerance_pct: f64,
    /// Per provider (`lichess`, `chess.com`) that had imports in the window.
    pub providers: BTreeMap<String, ObservedProvider>,
}

/// One provider's imports in a captured window, as `import_jobs` recorded them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedProvider {
    /// Imports requested in the window.
    pub imports: u32,
    /// Of those, completed.
    pub completed: u32,
    /// Of those, failed.
    pub failed: u32,
    /// Wait (requested → started) of the imports that started: median, 95th percentile, longest.
    pub wait_p50_secs: f64,
    /// See `wait_p50_secs`.
    pub wait_p95_secs: f64,
    /// See `wait_p50_secs`.
    pub wait_max_secs: f64,
    /// Run (started → finished) of the imports that finished: median, 95th percentile, longest.
    pub run_p50_secs: f64,
    /// See `run_p50_secs`.
    pub run_p95_secs: f64,
    /// See `run_p50_secs`.
    pub run_max_secs: f64,
    /// Sum of the runs, seconds: with `games_fetched`, the games a second of run received.
    #[serde(default)]
    pub run_total_secs: f64,
    /// Games the window's imports fetched, imported and skipped as already stored.
    pub games_fetched: u64,
    /// See `games_fetched`.
    pub games_imported: u64,
    /// See `games_fetched`.
    pub games_skipped: u64,
}

fn default_observed_tolerance_pct() -> f64 {
    25.0
}

/// The PgBouncer a pooled cell gets (transaction mode, as managed hosts sell it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pooler {
    /// Server connections it opens to PostgreSQL, all the cell's importers together
    /// (`default_pool_size`): the small allowance of a hosted plan.
    #[serde(default = "default_pool_size")]
    pub default_pool_size: u32,
}

impl Default for Pooler {
    fn default() -> Self {
        Pooler {
            default_pool_size: default_pool_size(),
        }
    }
}

fn default_pool_size() -> u32 {
    4
}

fn default_database() -> Database {
    Database::Sqlite
}
fn default_postgres_url() -> String {
    "postgres://postgres@127.0.0.1:5432/test".into()
}
fn default_headroom() -> String {
    "15%".into()
}
fn default_cell_timeout() -> u64 {
    300
}
