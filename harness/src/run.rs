//! `harness run`: every cell of a scenario, each repeat, one after another.
//!
//! Per cell: fresh mocks and database, the importer started with the cell's
//! environment, an idle second, goose drives the imports while the observer
//! samples the child's RSS, then the kernel's peak is read, the importer is
//! stopped with SIGTERM and delivery is verified. Cells never overlap, so
//! one cell's load cannot inflate another's memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::db::CellDb;
use crate::load::{self, ImportSpec};
use crate::mock::{self, MockUser, Platform, Upstreams};
use crate::observer::{self, Sample};
use crate::report;
use crate::results::{CellRun, Machine, RunResults};
use crate::scenario::{Cell, Checked, Database};
use crate::target;
use crate::verify::{self, Expectation, Verification};

/// How often the observer samples RSS.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(5);
/// The idle window before the load.
pub const IDLE_WINDOW: Duration = Duration::from_secs(1);

/// What `harness run` needs besides the scenario.
#[derive(Debug, Clone)]
pub struct Options {
    /// The importer binary (overrides the scenario's).
    pub importer: Option<PathBuf>,
    /// Where reports go (`reports/`).
    pub out_root: PathBuf,
    /// Show a progress bar.
    pub progress: bool,
}

/// A run that could not start, or whose reports could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The set-up is wrong (missing binary, unreachable database).
    #[error("set-up: {0}")]
    Setup(String),
    /// Writing the reports failed.
    #[error(transparent)]
    Report(#[from] report::Error),
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

/// A finished run.
pub struct Outcome {
    /// The report folder.
    pub dir: PathBuf,
    /// What was measured.
    pub results: RunResults,
}

/// The importer binary a scenario runs.
pub fn importer_path(s: &Checked, opts: &Options) -> PathBuf {
    opts.importer
        .clone()
        .or_else(|| s.raw.importer.clone())
        .unwrap_or_else(|| PathBuf::from("target/release/importer"))
}

/// Runs the scenario and writes its reports.
pub async fn run(s: &Checked, opts: &Options) -> Result<Outcome, Error> {
    let importer = importer_path(s, opts);
    if !importer.is_file() {
        return Err(Error::Setup(format!(
            "importer binary {} not found; build it with `cargo build --release -p importer` or pass --importer",
            importer.display()
        )));
    }
    if s.raw.database == Database::Postgres {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&s.raw.postgres_url)
            .await
            .map_err(|e| Error::Setup(format!("PostgreSQL at {} unreachable: {e}", s.raw.postgres_url)))?;
    }
    let started = chrono::Utc::now();
    let dir = opts
        .out_root
        .join(&s.name)
        .join(started.format("%Y%m%dT%H%M%SZ").to_string());
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let total = s.cells.len() as u64 * u64::from(s.raw.repeats);
    let bar = if opts.progress {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} cells  {elapsed_precise} elapsed, ~{eta} left  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let wall = Instant::now();
    let mut cells = Vec::new();
    let mut timelines = Vec::new();
    for cell in &s.cells {
        for repeat in 0..s.raw.repeats {
            bar.set_message(format!("{} (repeat {})", cell.label, repeat + 1));
            let cell_dir = dir.join("cells").join(format!("{}-r{}", cell.label, repeat + 1));
            std::fs::create_dir_all(&cell_dir).map_err(|source| Error::Io {
                path: cell_dir.clone(),
                source,
            })?;
            let (run, samples) = match measure(s, cell, repeat, &cell_dir, &importer).await {
                Ok(done) => done,
                Err(e) => (failed(cell, repeat, e), Vec::new()),
            };
            let verdict = if run.passed() { "ok" } else { "FAILED" };
            let line = format!(
                "{:<28} r{}  idle {:>6.1} MiB  peak {:>6.1} MiB  per import {:>5.2} MiB  {:>7.0} games/s  {verdict}{}",
                cell.label,
                repeat + 1,
                crate::results::mib(run.idle_rss),
                crate::results::mib(run.peak),
                crate::results::mib(run.per_import),
                run.games_per_sec,
                run.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default(),
            );
            // A hidden bar prints nothing: the per-cell line must still reach the log.
            if opts.progress {
                bar.println(line);
            } else {
                eprintln!("{line}");
            }
            timelines.push(report::Timeline {
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
            cells.push(run);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let allocator = match s.raw.env.get("MALLOC_ARENA_MAX") {
        Some(n) => format!("system, MALLOC_ARENA_MAX={n}"),
        None => "system".into(),
    };
    let results = RunResults {
        scenario: s.name.clone(),
        file: s.file.display().to_string(),
        description: s.raw.description.clone(),
        database: format!("{:?}", s.raw.database).to_lowercase(),
        importer: importer.display().to_string(),
        budget_bytes: s.budget_bytes,
        headroom: s.headroom,
        started_at: started.to_rfc3339(),
        wall_secs: wall.elapsed().as_secs_f64(),
        machine: Machine::current(allocator),
        cells,
    };
    report::write_all(&dir, &results, &timelines)?;
    let latest = opts.out_root.join(&s.name).join("latest");
    let _ = std::fs::remove_file(&latest);
    if let Some(name) = dir.file_name() {
        let _ = std::os::unix::fs::symlink(name, &latest);
    }
    Ok(Outcome { dir, results })
}

fn failed(cell: &Cell, repeat: u32, error: String) -> CellRun {
    CellRun {
        cell: cell.clone(),
        repeat,
        idle_rss: 0,
        peak_sampled: 0,
        peak_hwm: 0,
        peak: 0,
        per_import: 0,
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
        error: Some(error),
    }
}

/// The users of a cell: import `i` gets a user of its own, from the i-th template in turn.
pub fn cell_users(s: &Checked, cell: &Cell) -> Vec<(MockUser, u64, u64)> {
    (0..cell.imports as usize)
        .map(|i| {
            let t = s.template(i);
            let suffix = match t.platform {
                Platform::Lichess => "li",
                Platform::ChessCom => "cc",
            };
            let user = MockUser {
                months: t.months,
                malformed: t.malformed.clone(),
                faults: t.faults.clone(),
                ..MockUser::new(&format!("user{i}_{suffix}"), t.platform, t.games)
            };
            (user, t.stored, t.limit)
        })
        .collect()
}

async fn measure(
    s: &Checked,
    cell: &Cell,
    repeat: u32,
    dir: &Path,
    importer: &Path,
) -> Result<(CellRun, Vec<Sample>), String> {
    let users = cell_users(s, cell);
    let mock_users: Vec<MockUser> = users.iter().map(|(u, _, _)| u.clone()).collect();
    let mocks = Upstreams::start_with(
        &mock_users,
        mock::Options {
            seed: s.raw.upstream.seed,
            lichess_games_per_sec: s.raw.upstream.pace_games_per_sec,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| format!("mocks: {e}"))?;
    let db = match s.raw.database {
        Database::Sqlite => CellDb::sqlite(dir),
        Database::Postgres => CellDb::postgres(
            &s.raw.postgres_url,
            &format!("{}_{}_{}", s.name, cell.label, repeat),
        )
        .await
        .map_err(|e| e.to_string())?,
    };
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("RUST_LOG".into(), "info,sqlx=warn".into());
    env.extend(s.raw.env.clone());
    env.extend(cell.env.clone());
    env.insert("DATABASE_URL".into(), db.url());
    env.insert("LICHESS_BASE_URL".into(), mocks.lichess_url());
    env.insert("CHESSCOM_BASE_URL".into(), mocks.chess_com_url());
    let http = reqwest::Client::new();
    let mut server =
        target::Server::spawn(importer, &env, &dir.join("importer.log")).map_err(|e| e.to_string())?;
    server
        .wait_healthy(&http, Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?;
    for (user, stored, _) in &users {
        db.seed(user, *stored).await.map_err(|e| e.to_string())?;
    }
    let pid = server.pid();
    let origin = Instant::now();
    let sampler = observer::Server::start(pid, origin, SAMPLE_EVERY);
    tokio::time::sleep(IDLE_WINDOW).await;
    let specs = users
        .iter()
        .map(|(u, _, limit)| ImportSpec {
            user: u.name.clone(),
            platform: u.platform.as_str(),
            limit: *limit,
        })
        .collect();
    let timeout = Duration::from_secs(s.raw.cell_timeout_secs);
    let load = load::run(&server.base, specs, origin, timeout).await;
    // A moment after the last import, to see what memory is given back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let samples = sampler.stop();
    let peak_hwm = observer::vm_hwm(pid).unwrap_or(0);
    let exit = server.stop(Duration::from_secs(10));
    let load = load.map_err(|e| e.to_string())?;

    let expectations: Vec<Expectation> = users
        .iter()
        .map(|(user, seeded, limit)| Expectation {
            user: user.clone(),
            seeded: *seeded,
            limit: *limit,
        })
        .collect();
    let stored = db.stored_ids().await.map_err(|e| e.to_string())?;
    let jobs = db.jobs().await.map_err(|e| e.to_string())?;
    let verification = verify::check(&expectations, &stored, &jobs);
    let _ = db.drop_schema().await;

    let idle = observer::median_rss(&samples, 0.0, IDLE_WINDOW.as_secs_f64()).unwrap_or(0);
    let peak_sampled = samples.iter().map(|x| x.rss).max().unwrap_or(0);
    let peak = peak_hwm.max(peak_sampled);
    let first_post = load
        .imports
        .iter()
        .map(|i| i.posted_at)
        .fold(f64::INFINITY, f64::min);
    let last_post = load.imports.iter().map(|i| i.posted_at).fold(0.0, f64::max);
    let first_end = load
        .imports
        .iter()
        .map(|i| i.ended_at)
        .fold(f64::INFINITY, f64::min);
    let last_end = load.imports.iter().map(|i| i.ended_at).fold(0.0, f64::max);
    let load_secs = (last_end - first_post).max(0.0);
    let games_imported: i64 = load.imports.iter().map(|i| i.games_imported).sum();
    let error = match exit {
        Some(0) => None,
        Some(code) => Some(format!("importer exited with {code} on SIGTERM")),
        None => Some("importer did not stop within 10 s of SIGTERM".into()),
    };
    let run = CellRun {
        cell: cell.clone(),
        repeat,
        idle_rss: idle,
        peak_sampled,
        peak_hwm,
        peak,
        per_import: peak.saturating_sub(idle) / u64::from(cell.imports.max(1)),
        samples: samples.len(),
        load_secs,
        overlap_secs: (first_end - last_post).max(0.0),
        games_imported,
        games_per_sec: if load_secs > 0.0 {
            games_imported as f64 / load_secs
        } else {
            0.0
        },
        fits_budget: peak <= s.budget_bytes,
        verification,
        load,
        error,
    };
    Ok((run, samples))
}
