//! One run of a scenario: every cell, each repeat, one after another, wired
//! from the parts before it (upstream, target, load, observe, verify).
//!
//! Per cell (`cell`): fresh mocks and database, the importer started with the cell's
//! environment, an idle second, goose drives the imports while the observer
//! samples the child's RSS, then the kernel's peak is read, the importer is
//! stopped with SIGTERM and delivery is verified. Cells never overlap, so
//! one cell's load cannot inflate another's memory. A session writes
//! nothing but the importers' logs; `report` writes what it measured.

mod cell;
pub mod faults;
pub mod prime;
pub mod results;

pub use cell::{CellUser, Error as CellError, HARNESS_USER_AGENT, cell_users, importer_for};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::observe::Timeline;
use crate::scenario::{Cell, Checked, Database};
use crate::session::results::{CellRun, Machine, RunResults, mib};
use crate::target::cgroup;

/// How often the observer samples RSS.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(5);
/// The idle window before the load.
pub const IDLE_WINDOW: Duration = Duration::from_secs(1);

/// Whether the importer runs under a hard memory limit equal to the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Enforce {
    /// No limit.
    #[default]
    Off,
    /// A cgroup limit; stop with an error where none can be set.
    On,
    /// A cgroup limit where the machine offers one, else go on unenforced and say so.
    Auto,
}

/// What `harness run` needs besides the scenario.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The importer binary (overrides the scenario's).
    pub importer: Option<PathBuf>,
    /// Where reports go (`reports/`).
    pub out_root: PathBuf,
    /// Show a progress bar.
    pub progress: bool,
    /// Runs of each cell, overriding the scenario's.
    pub repeats: Option<u32>,
    /// Importer environment set in every cell, after the matrix (e.g. IMPORT_BATCH_SIZE=5000).
    pub set: BTreeMap<String, String>,
    /// Hard memory limit.
    pub enforce: Enforce,
    /// Keep each cell's PostgreSQL schema (dropped after the cell otherwise), so that its job
    /// history can be read afterwards (`harness capture`); every cell's folder names its database
    /// in `database.url` either way.
    pub keep_databases: bool,
    /// Record every importer's heap with heaptrack (`gate --where`, `run --heap-profile`): each
    /// cell run's folder gets `heaptrack-N.data` and `heaptrack-N.peaks.txt`. Diagnostic: it
    /// slows the importer and adds heaptrack's own memory, so such a run's figures judge nothing.
    pub heap_profile: Option<crate::target::heaptrack::Heaptrack>,
}

/// A run that could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The importer binary is missing.
    #[error("set-up: {0}")]
    Importer(#[source] crate::target::Error),
    /// The scenario's PostgreSQL does not answer.
    #[error("set-up: PostgreSQL at {url} unreachable: {source}")]
    Postgres {
        /// The scenario's `postgres_url`.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// `--enforce-budget=on` and no memory cgroup can be made.
    #[error("set-up: {0}")]
    Enforce(#[source] cgroup::Error),
    /// A folder could not be made.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A finished run: what `report` renders into its folder.
pub struct Outcome {
    /// The report folder (holding, so far, each cell run's importer log).
    pub dir: PathBuf,
    /// What was measured.
    pub results: RunResults,
    /// RSS over time of each cell run, for `samples.csv` and the timeline plot.
    pub timelines: Vec<Timeline>,
}

/// The importer binary a scenario runs.
pub fn importer_path(s: &Checked, opts: &Options) -> PathBuf {
    opts.importer
        .clone()
        .or_else(|| s.raw.importer.clone())
        .unwrap_or_else(|| PathBuf::from("target/release/importer"))
}

/// A run in progress: the report folder, the progress bar and what was measured so far.
pub struct Session<'a> {
    s: &'a Checked,
    opts: &'a Options,
    importer: PathBuf,
    /// The report folder.
    pub dir: PathBuf,
    bar: ProgressBar,
    started: chrono::DateTime<chrono::Utc>,
    wall: Instant,
    timelines: Vec<Timeline>,
    enforced: Option<String>,
    limit_available: bool,
    /// Each binary measured, by its path as given, and the copy in `dir/bin` that runs instead.
    staged: Vec<(PathBuf, PathBuf)>,
}

/// The allocator an importer with `env` runs with, as `results.json` records it: `jemalloc` or
/// `mimalloc` (the `ALLOCATOR` axis picks the build), or glibc's malloc and its arenas (the importer
/// limits glibc to one arena unless `MALLOC_ARENA_MAX` is given).
fn allocator_of(env: &BTreeMap<String, String>) -> String {
    match env.get("ALLOCATOR").map(|a| a.trim()) {
        Some(a) if !a.is_empty() && a != "glibc" => a.to_string(),
        _ => match env.get("MALLOC_ARENA_MAX") {
            Some(n) => format!("glibc, MALLOC_ARENA_MAX={}", n.trim()),
            None => "glibc, one arena (importer default)".into(),
        },
    }
}

/// Allocator variants built beside an importer (`make allocators`), staged with it.
const VARIANTS: [&str; 2] = ["jemalloc", "mimalloc"];

impl<'a> Session<'a> {
    /// Checks the set-up (binary, database, memory cgroup) and makes the report folder.
    pub async fn start(s: &'a Checked, opts: &'a Options, cell_runs: u64) -> Result<Session<'a>, Error> {
        Self::start_in(s, opts, cell_runs, None).await
    }

    /// As [`Session::start`], writing into `dir` when given (the profiled runs of a gate, in its
    /// own report folder) instead of a new `OUT/<scenario>/<UTC time>/`.
    pub async fn start_in(
        s: &'a Checked,
        opts: &'a Options,
        cell_runs: u64,
        dir: Option<PathBuf>,
    ) -> Result<Session<'a>, Error> {
        let importer = importer_path(s, opts);
        if !importer.is_file() {
            return Err(Error::Importer(crate::target::Error::Missing(importer)));
        }
        if s.raw.database == Database::Postgres {
            use sqlx::Connection;
            sqlx::PgConnection::connect(&s.raw.postgres_url)
                .await
                .map_err(|source| Error::Postgres {
                    url: s.raw.postgres_url.clone(),
                    source,
                })?;
        }
        let (enforced, limit_available) = match opts.enforce {
            Enforce::Off => (None, false),
            Enforce::On | Enforce::Auto => match cgroup::Limit::create("probe", s.budget_bytes) {
                Ok(l) => (
                    Some(format!(
                        "hard limit {:.0} MiB (cgroup {:?}, swap off)",
                        mib(l.bytes),
                        l.version()
                    )),
                    true,
                ),
                Err(e) if opts.enforce == Enforce::On => return Err(Error::Enforce(e)),
                Err(e) => {
                    eprintln!("warning: budget NOT enforced: {e}");
                    (Some(format!("NOT enforced ({e})")), false)
                }
            },
        };
        let started = chrono::Utc::now();
        let dir = dir.unwrap_or_else(|| {
            opts.out_root
                .join(&s.name)
                .join(started.format("%Y%m%dT%H%M%SZ").to_string())
        });
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let bar = if opts.progress {
            ProgressBar::new(cell_runs)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} cells  {elapsed_precise} elapsed, ~{eta} left  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Ok(Session {
            s,
            opts,
            importer,
            dir,
            bar,
            started,
            wall: Instant::now(),
            timelines: Vec::new(),
            enforced,
            limit_available,
            staged: Vec::new(),
        })
    }

    /// The copy of `importer` this run measures: every binary, each side of an A/B alike, is
    /// first copied into the run folder (`bin/N/`, with its allocator variants), because how
    /// a file was written decides how the page cache holds it, and so its resident text: the
    /// same bytes as the linker wrote them and as a copy differed by 1 MiB of RSS (issue #27).
    /// The copies are removed when the run ends.
    fn staged(&mut self, importer: &Path) -> Result<PathBuf, CellError> {
        if let Some((_, copy)) = self.staged.iter().find(|(from, _)| from == importer) {
            return Ok(copy.clone());
        }
        let dir = self.dir.join("bin").join(self.staged.len().to_string());
        std::fs::create_dir_all(&dir).map_err(|source| CellError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let name = importer
            .file_name()
            .map_or("importer".into(), |f| f.to_os_string());
        let copy = dir.join(&name);
        std::fs::copy(importer, &copy).map_err(|source| CellError::Stage {
            from: importer.to_path_buf(),
            to: copy.clone(),
            source,
        })?;
        for v in VARIANTS {
            let mut variant = name.clone();
            variant.push(format!("-{v}"));
            let from = importer.with_file_name(&variant);
            if from.is_file() {
                std::fs::copy(&from, dir.join(&variant))
                    .map_err(|source| CellError::StageVariant { from, source })?;
            }
        }
        self.staged.push((importer.to_path_buf(), copy.clone()));
        Ok(copy)
    }

    /// Says something without breaking the progress bar.
    pub fn say(&self, line: String) {
        // A hidden bar prints nothing: the line must still reach the log.
        if self.opts.progress {
            self.bar.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    /// Measures one run of one cell (a failure is recorded in the result, never lost).
    pub async fn measure(&mut self, cell: &Cell, repeat: u32) -> CellRun {
        let (importer, opts) = (self.importer.clone(), self.opts);
        self.measure_with(cell, repeat, &importer, opts).await
    }

    /// Measures one run of one cell with another importer binary and options than the session's
    /// (the baseline side of an A/B gate); the cell's label names its run folder.
    pub async fn measure_with(
        &mut self,
        cell: &Cell,
        repeat: u32,
        importer: &Path,
        opts: &Options,
    ) -> CellRun {
        self.bar
            .set_message(format!("{} (repeat {})", cell.label, repeat + 1));
        let cell_dir = self
            .dir
            .join("cells")
            .join(format!("{}-r{}", cell.label, repeat + 1));
        let staged = self.staged(importer);
        let created = std::fs::create_dir_all(&cell_dir).map_err(|source| CellError::CreateDir {
            path: cell_dir.clone(),
            source,
        });
        // A failure is recorded in the cell's result, in words.
        let run = match (created, staged) {
            (Err(e), _) | (_, Err(e)) => (CellRun::failed(cell, repeat, e.to_string()), Vec::new()),
            (Ok(()), Ok(importer)) => match cell::measure(
                self.s,
                opts,
                cell,
                repeat,
                &cell_dir,
                &importer,
                self.limit_available,
            )
            .await
            {
                Ok(done) => done,
                Err(e) => (CellRun::failed(cell, repeat, e.to_string()), Vec::new()),
            },
        };
        let (mut run, samples) = run;
        run.enforced.clone_from(&self.enforced);
        let verdict = if run.passed() { "ok" } else { "FAILED" };
        self.say(format!(
            "{:<28} r{}  idle {:>6.1} MiB  peak {:>6.1} MiB  per import {:>5.2} MiB  {:>7.0} games/s  {verdict}{}",
            cell.label,
            repeat + 1,
            mib(run.idle_rss),
            mib(run.peak),
            mib(run.per_import),
            run.games_per_sec,
            run.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default(),
        ));
        self.timelines.push(Timeline {
            label: cell.label.clone(),
            repeat,
            samples,
            marks: run
                .load
                .imports
                .iter()
                .flat_map(|i| [i.posted_at, i.ended_at])
                .collect(),
        });
        self.bar.inc(1);
        run
    }

    /// Adds cell runs to the bar's total (a rerun of a noisy cell).
    pub fn add_to_total(&self, n: u64) {
        self.bar.inc_length(n);
    }

    /// Ends the run: what it measured, for `report` to write.
    pub fn finish(self, cells: Vec<CellRun>) -> Outcome {
        self.bar.finish_and_clear();
        // The staged copies are the binaries as given, byte for byte: nothing to keep.
        let _ = std::fs::remove_dir_all(self.dir.join("bin"));
        // As each cell ran it: the scenario's env, then the cell's axes, then `--set`.
        let mut allocators: Vec<String> = Vec::new();
        for run in &cells {
            let mut env = self.s.raw.env.clone();
            env.extend(run.cell.env.clone());
            env.extend(self.opts.set.clone());
            let allocator = allocator_of(&env);
            if !allocators.contains(&allocator) {
                allocators.push(allocator);
            }
        }
        let allocator = allocators.join("; ");
        let results = RunResults {
            scenario: self.s.name.clone(),
            file: self.s.file.display().to_string(),
            description: self.s.raw.description.clone(),
            database: self.s.raw.database.as_str().to_string(),
            importer: self.importer.display().to_string(),
            importer_bytes: std::fs::metadata(&self.importer).map_or(0, |m| m.len()),
            importer_text: crate::observe::binary::TextByCrate::of(&self.importer)
                .inspect_err(|e| tracing::warn!(error = %e, "the importer's text by crate is not shown"))
                .ok(),
            budget_bytes: self.s.budget_bytes,
            headroom: self.s.headroom,
            started_at: self.started.to_rfc3339(),
            wall_secs: self.wall.elapsed().as_secs_f64(),
            machine: Machine::current(allocator),
            overrides: self.opts.set.clone(),
            enforced: self.enforced.clone(),
            cells,
            observed: self.s.raw.observed.clone(),
            pace_games_per_sec: self.s.raw.upstream.pace_games_per_sec,
            chesscom_latency_ms: self.s.raw.upstream.chesscom_latency_ms,
        };
        Outcome {
            dir: self.dir,
            results,
            timelines: self.timelines,
        }
    }
}

/// Runs of each cell: the options' override, else the scenario's.
pub fn repeats(s: &Checked, opts: &Options) -> u32 {
    opts.repeats.unwrap_or(s.raw.repeats)
}

/// Runs every cell of the scenario, each repeat; writes nothing but the importers' logs.
pub async fn run(s: &Checked, opts: &Options) -> Result<Outcome, Error> {
    let repeats = repeats(s, opts);
    let mut session = Session::start(s, opts, s.cells.len() as u64 * u64::from(repeats)).await?;
    let mut cells = Vec::new();
    for cell in &s.cells {
        for repeat in 0..repeats {
            cells.push(session.measure(cell, repeat).await);
        }
    }
    Ok(session.finish(cells))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_allocator_is_recorded_as_the_cell_ran_it() {
        assert_eq!(allocator_of(&env(&[])), "glibc, one arena (importer default)");
        assert_eq!(
            allocator_of(&env(&[("MALLOC_ARENA_MAX", "2")])),
            "glibc, MALLOC_ARENA_MAX=2"
        );
        assert_eq!(
            allocator_of(&env(&[("ALLOCATOR", "glibc"), ("MALLOC_ARENA_MAX", "4")])),
            "glibc, MALLOC_ARENA_MAX=4"
        );
        // A jemalloc or mimalloc build ignores glibc's variable: it used to be recorded as glibc.
        assert_eq!(
            allocator_of(&env(&[("ALLOCATOR", "jemalloc"), ("MALLOC_ARENA_MAX", "2")])),
            "jemalloc"
        );
        assert_eq!(allocator_of(&env(&[("ALLOCATOR", "mimalloc")])), "mimalloc");
    }
}
