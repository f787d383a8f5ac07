//! Scenarios: what to measure, read from YAML and checked before anything starts.
//!
//! A scenario is a matrix of importer settings, a workload, a database, a
//! memory budget and repeats. Unknown keys are rejected (a typo must not
//! silently measure the default), and every error names the file, the line
//! and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::upstream::Platform;

/// A scenario that cannot be used; the message names file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// YAML syntax, an unknown key or a value of the wrong type.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line, 0 when unknown.
        line: usize,
        /// What serde_yaml said, naming the key.
        message: String,
    },
    /// A value of the right type but not acceptable.
    #[error("{file}:{line}: {key}: {message}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line of the key, 0 when not found.
        line: usize,
        /// The key at fault.
        key: String,
        /// Why.
        message: String,
    },
}

/// Which database each cell gets a fresh copy of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Database {
    /// A new SQLite file per cell.
    Sqlite,
    /// A new schema per cell in the PostgreSQL at `postgres_url`.
    Postgres,
}

/// The settings the matrix varies; each list is an axis, absent means the importer's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    /// Imports running at once.
    #[serde(
        rename = "MAX_CONCURRENT_IMPORTS",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_concurrent_imports: Option<Vec<u32>>,
    /// Games per batch.
    #[serde(
        rename = "IMPORT_BATCH_SIZE",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub import_batch_size: Option<Vec<u32>>,
    /// Stored ids per query.
    #[serde(
        rename = "EXISTING_GAMES_PAGE_SIZE",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub existing_games_page_size: Option<Vec<u32>>,
    /// `batch` or `preload`.
    #[serde(rename = "DEDUP_STRATEGY", default, skip_serializing_if = "Option::is_none")]
    pub dedup_strategy: Option<Vec<String>>,
    /// Database pool size.
    #[serde(rename = "DB_POOL_SIZE", default, skip_serializing_if = "Option::is_none")]
    pub db_pool_size: Option<Vec<u32>>,
    /// Upstream requests in flight.
    #[serde(
        rename = "HTTP_MAX_CONNECTIONS",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub http_max_connections: Option<Vec<u32>>,
    /// Idle upstream connections per host.
    #[serde(
        rename = "HTTP_POOL_MAX_IDLE_PER_HOST",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub http_pool_max_idle_per_host: Option<Vec<u32>>,
    /// Runtime threads.
    #[serde(rename = "WORKER_THREADS", default, skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<Vec<u32>>,
    /// SQLite page cache per connection, KiB.
    #[serde(rename = "SQLITE_CACHE_KIB", default, skip_serializing_if = "Option::is_none")]
    pub sqlite_cache_kib: Option<Vec<u32>>,
    /// glibc arenas (an allocator knob, set in the importer's environment).
    #[serde(rename = "MALLOC_ARENA_MAX", default, skip_serializing_if = "Option::is_none")]
    pub malloc_arena_max: Option<Vec<u32>>,
    /// The importer build: `glibc` (the importer binary), `jemalloc` or `mimalloc` (`importer-<name>` beside it).
    #[serde(rename = "ALLOCATOR", default, skip_serializing_if = "Option::is_none")]
    pub allocator: Option<Vec<String>>,
}

/// One kind of user in the workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserTemplate {
    /// `lichess` or `chess.com`.
    pub platform: Platform,
    /// Games the user has upstream.
    pub games: u64,
    /// Of those, the newest `stored` are already in the database before the import.
    #[serde(default)]
    pub stored: u64,
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
}

fn default_limit() -> u64 {
    500
}
fn one() -> u32 {
    1
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
}

/// How the mocks serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// lichess games per second per stream, like the real service (0 = as fast as possible).
    #[serde(default)]
    pub pace_games_per_sec: u32,
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
}

fn default_seed() -> u64 {
    42
}

impl Default for Upstream {
    fn default() -> Upstream {
        Upstream {
            pace_games_per_sec: 0,
            seed: default_seed(),
            prerender: false,
            chesscom_latency_ms: 0,
            policy: crate::upstream::Policy::default(),
            expect_rate_limits: false,
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

/// How the gate judges a scenario's cells against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// Allowed growth over the baseline, percent.
    #[serde(default = "default_tolerance_pct")]
    pub tolerance_pct: f64,
    /// Allowed growth in MiB, whatever the percentage says (the larger of the two wins).
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
    /// Server for `database: postgres`.
    #[serde(default = "default_postgres_url")]
    pub postgres_url: String,
    /// Memory budget, e.g. `512MB` (MB and MiB both mean 2^20 bytes).
    pub budget: String,
    /// Share of the budget kept free, e.g. `15%`.
    #[serde(default = "default_headroom")]
    pub headroom: String,
    /// Runs of each cell.
    #[serde(default = "one")]
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
    /// After each cell, time pgn-reader alone over the cell's games, to compare games/s with.
    #[serde(default)]
    pub reference_parse: bool,
    /// Tolerances of the regression gate.
    #[serde(default)]
    pub gate: Gate,
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

/// A scenario checked and ready to run.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Where it was read from.
    pub file: PathBuf,
    /// Its name.
    pub name: String,
    /// As written.
    pub raw: Scenario,
    /// Budget in bytes.
    pub budget_bytes: u64,
    /// Headroom as a fraction.
    pub headroom: f64,
    /// Every cell of the matrix, in order.
    pub cells: Vec<Cell>,
}

/// One combination of settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Short label, e.g. `c3-b50-p2000`.
    pub label: String,
    /// The importer environment this cell sets.
    pub env: BTreeMap<String, String>,
    /// MAX_CONCURRENT_IMPORTS of the cell (the importer's default 3 when not varied).
    pub max_concurrent_imports: u32,
    /// IMPORT_BATCH_SIZE (default 50).
    pub batch_size: u32,
    /// EXISTING_GAMES_PAGE_SIZE (default 2000).
    pub page_size: u32,
    /// Imports requested at once.
    pub imports: u32,
}

impl Cell {
    /// The label without its concurrency part (`b50-p2000`): one configuration measured at several levels.
    pub fn config_label(&self) -> String {
        self.label
            .split_once('-')
            .map_or_else(String::new, |(_, rest)| rest.to_string())
    }
}

/// Allocators the importer can be built with (`make allocators`).
pub const ALLOCATORS: [&str; 3] = ["glibc", "jemalloc", "mimalloc"];

/// 1-based line of the first line that sets `key`, 0 when not found.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with(key) && t[key.len()..].trim_start().starts_with(':')
        })
        .map_or(0, |i| i + 1)
}

/// Parses a size such as `512MB`, `1GB`, `700MiB` or a plain byte count.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = n * mult;
    (bytes >= 1.0 && bytes.is_finite()).then_some(bytes as u64)
}

fn parse_percent(s: &str) -> Option<f64> {
    let n: f64 = s.trim().trim_end_matches('%').trim().parse().ok()?;
    (0.0..100.0).contains(&n).then_some(n / 100.0)
}

fn axis<T: Clone + ToString>(values: &Option<Vec<T>>) -> Vec<Option<String>> {
    match values {
        Some(v) => v.iter().map(|x| Some(x.to_string())).collect(),
        None => vec![None],
    }
}

impl Checked {
    /// Reads and checks a scenario file.
    pub fn load(file: &Path) -> Result<Checked, Error> {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Self::parse(file, &text)
    }

    /// Checks scenario text as if read from `file`.
    pub fn parse(file: &Path, text: &str) -> Result<Checked, Error> {
        let raw: Scenario = serde_yaml::from_str(text).map_err(|e| Error::Syntax {
            file: file.to_path_buf(),
            line: e.location().map_or(0, |l| l.line()),
            message: e.to_string(),
        })?;
        let invalid = |key: &str, message: String| Error::Invalid {
            file: file.to_path_buf(),
            line: line_of(text, key),
            key: key.to_string(),
            message,
        };
        let budget_bytes = parse_bytes(&raw.budget).ok_or_else(|| {
            invalid(
                "budget",
                format!("{:?} is not a size such as 512MB or 1GB", raw.budget),
            )
        })?;
        let headroom = parse_percent(&raw.headroom).ok_or_else(|| {
            invalid(
                "headroom",
                format!("{:?} is not a percentage in 0..100", raw.headroom),
            )
        })?;
        if raw.repeats == 0 || raw.repeats > 50 {
            return Err(invalid("repeats", format!("{} is not in 1..=50", raw.repeats)));
        }
        if raw.workload.users.is_empty() {
            return Err(invalid("users", "at least one user is needed".into()));
        }
        for u in &raw.workload.users {
            if u.stored > u.games {
                return Err(invalid(
                    "stored",
                    format!("{} stored of {} games upstream", u.stored, u.games),
                ));
            }
            if !(1..=10_000).contains(&u.limit) {
                return Err(invalid(
                    "limit",
                    format!("{} is not in 1..=10000 (the API's range)", u.limit),
                ));
            }
            if u.platform != Platform::Lichess && (u.cut_after.is_some() || u.stall_after.is_some()) {
                let key = if u.cut_after.is_some() {
                    "cut_after"
                } else {
                    "stall_after"
                };
                return Err(invalid(key, "cut and stalled streams are lichess faults".into()));
            }
            if u.months == 0 || u.months > 600 {
                return Err(invalid("months", format!("{} is not in 1..=600", u.months)));
            }
        }
        if raw.workload.imports == Some(0) {
            return Err(invalid("imports", "0 imports measure nothing".into()));
        }
        let g = &raw.gate;
        if !(0.0..=1000.0).contains(&g.tolerance_pct) {
            return Err(invalid(
                "tolerance_pct",
                format!("{} is not in 0..=1000", g.tolerance_pct),
            ));
        }
        if !(0.0..=100_000.0).contains(&g.tolerance_floor_mb) {
            return Err(invalid(
                "tolerance_floor_mb",
                format!("{} is not in 0..=100000", g.tolerance_floor_mb),
            ));
        }
        if !(0.0..=1000.0).contains(&g.max_spread_pct) {
            return Err(invalid(
                "max_spread_pct",
                format!("{} is not in 0..=1000", g.max_spread_pct),
            ));
        }
        if let crate::upstream::Policy::Enforced(rules) = &raw.upstream.policy
            && let Some(problem) = rules.problem()
        {
            return Err(invalid("policy", problem));
        }
        if raw.upstream.chesscom_latency_ms > 60_000 {
            return Err(invalid(
                "chesscom_latency_ms",
                format!("{} is not in 0..=60000", raw.upstream.chesscom_latency_ms),
            ));
        }
        if raw.cell_timeout_secs == 0 {
            return Err(invalid("cell_timeout_secs", "must be at least 1".into()));
        }
        if !(1..=8).contains(&raw.instances) {
            return Err(invalid("instances", format!("{} is not in 1..=8", raw.instances)));
        }
        if raw.instances > 1 && raw.database != Database::Postgres {
            return Err(invalid(
                "instances",
                "several importer processes share a queue only on PostgreSQL; set `database: postgres`"
                    .into(),
            ));
        }
        if let Some(c) = &raw.crash {
            if c.after_games == 0 {
                return Err(invalid("after_games", "must be at least 1".into()));
            }
            if !(1..=raw.instances).contains(&c.instance) {
                return Err(invalid(
                    "instance",
                    format!(
                        "{} is not one of the {} importer processes",
                        c.instance, raw.instances
                    ),
                ));
            }
            if raw.instances == 1 && !c.restart {
                return Err(invalid(
                    "restart",
                    "with one importer process, a crash without `restart: true` leaves no one to finish"
                        .into(),
                ));
            }
        }
        let m = &raw.matrix;
        let axes: [(&str, Vec<Option<String>>); 11] = [
            ("MAX_CONCURRENT_IMPORTS", axis(&m.max_concurrent_imports)),
            ("IMPORT_BATCH_SIZE", axis(&m.import_batch_size)),
            ("EXISTING_GAMES_PAGE_SIZE", axis(&m.existing_games_page_size)),
            ("DEDUP_STRATEGY", axis(&m.dedup_strategy)),
            ("DB_POOL_SIZE", axis(&m.db_pool_size)),
            ("HTTP_MAX_CONNECTIONS", axis(&m.http_max_connections)),
            (
                "HTTP_POOL_MAX_IDLE_PER_HOST",
                axis(&m.http_pool_max_idle_per_host),
            ),
            ("WORKER_THREADS", axis(&m.worker_threads)),
            ("SQLITE_CACHE_KIB", axis(&m.sqlite_cache_kib)),
            ("MALLOC_ARENA_MAX", axis(&m.malloc_arena_max)),
            ("ALLOCATOR", axis(&m.allocator)),
        ];
        for (key, values) in &axes {
            if values.is_empty() {
                return Err(invalid(key, "an axis needs at least one value".into()));
            }
        }
        if let Some(bad) = m
            .dedup_strategy
            .iter()
            .flatten()
            .find(|s| !matches!(s.as_str(), "batch" | "preload"))
        {
            return Err(invalid(
                "DEDUP_STRATEGY",
                format!("{bad:?} is not `batch` or `preload`"),
            ));
        }
        if let Some(bad) = m
            .allocator
            .iter()
            .flatten()
            .find(|s| !ALLOCATORS.contains(&s.as_str()))
        {
            return Err(invalid(
                "ALLOCATOR",
                format!("{bad:?} is not one of {}", ALLOCATORS.join(", ")),
            ));
        }
        if let Some(bad) = m
            .max_concurrent_imports
            .iter()
            .flatten()
            .find(|&&n| !(1..=256).contains(&n))
        {
            return Err(invalid(
                "MAX_CONCURRENT_IMPORTS",
                format!("{bad} is not in 1..=256"),
            ));
        }
        let mut cells: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
        for (key, values) in &axes {
            cells = cells
                .into_iter()
                .flat_map(|env| {
                    values.iter().map(move |v| {
                        let mut env = env.clone();
                        if let Some(v) = v {
                            env.insert(key.to_string(), v.clone());
                        }
                        env
                    })
                })
                .collect();
        }
        if cells.len() > 500 {
            return Err(invalid("matrix", format!("{} cells; at most 500", cells.len())));
        }
        let cells = cells
            .into_iter()
            .map(|env| {
                let get = |k: &str, d: u32| env.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
                let (c, b, p) = (
                    get("MAX_CONCURRENT_IMPORTS", 3),
                    get("IMPORT_BATCH_SIZE", 50),
                    get("EXISTING_GAMES_PAGE_SIZE", 2000),
                );
                let mut label = format!("c{c}-b{b}-p{p}");
                for (k, short) in [
                    ("DEDUP_STRATEGY", "d"),
                    ("DB_POOL_SIZE", "db"),
                    ("HTTP_MAX_CONNECTIONS", "h"),
                    ("HTTP_POOL_MAX_IDLE_PER_HOST", "hi"),
                    ("WORKER_THREADS", "t"),
                    ("SQLITE_CACHE_KIB", "sc"),
                    ("MALLOC_ARENA_MAX", "a"),
                    ("ALLOCATOR", ""),
                ] {
                    if let Some(v) = env.get(k) {
                        label.push_str(&format!("-{short}{v}"));
                    }
                }
                Cell {
                    label,
                    imports: raw.workload.imports.unwrap_or(c),
                    max_concurrent_imports: c,
                    batch_size: b,
                    page_size: p,
                    env,
                }
            })
            .collect();
        let name = raw.name.clone().unwrap_or_else(|| {
            file.file_stem()
                .map_or("scenario".into(), |s| s.to_string_lossy().into_owned())
        });
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid("name", format!("{name:?}: use letters, digits, - and _")));
        }
        Ok(Checked {
            file: file.to_path_buf(),
            name,
            budget_bytes,
            headroom,
            cells,
            raw,
        })
    }

    /// The user kind of import number `i` (0-based): templates are taken in turn.
    pub fn template(&self, i: usize) -> &UserTemplate {
        let users = &self.raw.workload.users;
        &users[i % users.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "budget: 512MB\nmatrix:\n  MAX_CONCURRENT_IMPORTS: [2, 3]\n  IMPORT_BATCH_SIZE: [30, 50]\nworkload:\n  users:\n    - platform: lichess\n      games: 100\n";

    fn parse(text: &str) -> Result<Checked, Error> {
        Checked::parse(Path::new("s.yaml"), text)
    }

    #[test]
    fn matrix_expands_to_every_combination() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.cells.len(), 4);
        assert_eq!(s.cells[0].label, "c2-b30-p2000");
        assert_eq!(s.cells[0].config_label(), "b30-p2000");
        assert_eq!(s.cells[3].imports, 3, "imports default to MAX_CONCURRENT_IMPORTS");
        assert_eq!(s.budget_bytes, 512 * 1024 * 1024);
        assert!((s.headroom - 0.15).abs() < 1e-9);
        assert_eq!(s.name, "s");
    }

    #[test]
    fn unknown_keys_are_rejected_with_file_and_line() {
        let err = parse(&GOOD.replace("  IMPORT_BATCH_SIZE", "  IMPORT_BATCH_SIZ"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.yaml:4:"), "{err}");
        assert!(err.contains("IMPORT_BATCH_SIZ"), "{err}");
        let err = parse(&format!("{GOOD}colour: blue\n")).unwrap_err().to_string();
        assert!(err.contains("colour") && err.starts_with("s.yaml:9:"), "{err}");
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let err = parse(&GOOD.replace("512MB", "lots")).unwrap_err().to_string();
        assert_eq!(
            err,
            "s.yaml:1: budget: \"lots\" is not a size such as 512MB or 1GB"
        );
        let err = parse(&GOOD.replace("games: 100", "games: 100\n      stored: 200"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.yaml:9: stored:"), "{err}");
        let err = parse(&GOOD.replace("[2, 3]", "[]")).unwrap_err().to_string();
        assert!(err.starts_with("s.yaml:3: MAX_CONCURRENT_IMPORTS:"), "{err}");
        let err = parse(&GOOD.replace("platform: lichess", "platform: fics"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.yaml:7:") && err.contains("fics"), "{err}");
    }

    #[test]
    fn instances_and_crashes_are_checked() {
        let err = |extra: &str| parse(&format!("{GOOD}{extra}")).unwrap_err().to_string();
        assert!(
            err("instances: 2\n").starts_with("s.yaml:9: instances:")
                && err("instances: 2\n").contains("PostgreSQL"),
            "{}",
            err("instances: 2\n")
        );
        assert!(err("database: postgres\ninstances: 9\n").contains("instances: 9 is not in 1..=8"));
        assert!(
            err("crash:\n  after_games: 10\n").contains("restart:"),
            "one process needs a restart"
        );
        assert!(err("crash:\n  after_games: 0\n  restart: true\n").contains("after_games:"));
        let two = "database: postgres\ninstances: 2\ncrash:\n  after_games: 10\n  instance: 3\n";
        assert!(
            err(two).contains("instance: 3 is not one of the 2"),
            "{}",
            err(two)
        );
        assert!(err("crash:\n  after_games: 10\n  restart: yes please\n").starts_with("s.yaml:"));
        let alloc = GOOD.replace("  IMPORT_BATCH_SIZE: [30, 50]", "  ALLOCATOR: [glibc, tcmalloc]");
        let e = parse(&alloc).unwrap_err().to_string();
        assert!(
            e.starts_with("s.yaml:4: ALLOCATOR:") && e.contains("tcmalloc"),
            "{e}"
        );
        let ok = GOOD.replace("  IMPORT_BATCH_SIZE: [30, 50]", "  ALLOCATOR: [glibc, jemalloc]");
        assert!(
            parse(&ok)
                .unwrap()
                .cells
                .iter()
                .any(|c| c.label.ends_with("-jemalloc"))
        );
        let cut = GOOD.replace("platform: lichess", "platform: chess.com\n      cut_after: 5");
        assert!(parse(&cut).unwrap_err().to_string().contains("cut_after:"));
        let ok = parse(&format!(
            "{GOOD}database: postgres\ninstances: 2\ncrash:\n  after_games: 10\n  instance: 2\n"
        ))
        .unwrap();
        assert_eq!(ok.raw.instances, 2);
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("1GB"), Some(1 << 30));
        assert_eq!(parse_bytes("1.5 MiB"), Some(3 << 19));
        assert_eq!(parse_bytes("12 parsecs"), None);
        assert_eq!(parse_bytes("0"), None);
    }
}
