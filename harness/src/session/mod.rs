//! One run of a scenario: every cell, each repeat, one after another, wired
//! from the parts before it (upstream, target, load, observe, verify).
//!
//! Per cell: fresh mocks and database, the importer started with the cell's
//! environment, an idle second, goose drives the imports while the observer
//! samples the child's RSS, then the kernel's peak is read, the importer is
//! stopped with SIGTERM and delivery is verified. Cells never overlap, so
//! one cell's load cannot inflate another's memory.

pub mod results;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::load::{self, ImportSpec};
use crate::observe::{self, Sample, Timeline};
use crate::scenario::{Cell, Checked, Crash, Database};
use crate::session::results::{CellRun, CrashRecord, Machine, RunResults, mib};
use crate::target;
use crate::target::cgroup;
use crate::target::db::CellDb;
use crate::upstream::{self, MockUser, Platform, Upstreams};
use crate::verify::{self, Expectation, Verification};

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
}

/// A run that could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The set-up is wrong (missing binary, unreachable database).
    #[error("set-up: {0}")]
    Setup(String),
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
}

impl<'a> Session<'a> {
    /// Checks the set-up (binary, database, memory cgroup) and makes the report folder.
    pub async fn start(s: &'a Checked, opts: &'a Options, cell_runs: u64) -> Result<Session<'a>, Error> {
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
                .map_err(|e| {
                    Error::Setup(format!("PostgreSQL at {} unreachable: {e}", s.raw.postgres_url))
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
                Err(e) if opts.enforce == Enforce::On => return Err(Error::Setup(e.to_string())),
                Err(e) => {
                    eprintln!("warning: budget NOT enforced: {e}");
                    (Some(format!("NOT enforced ({e})")), false)
                }
            },
        };
        let started = chrono::Utc::now();
        let dir = opts
            .out_root
            .join(&s.name)
            .join(started.format("%Y%m%dT%H%M%SZ").to_string());
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
        })
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
        self.bar
            .set_message(format!("{} (repeat {})", cell.label, repeat + 1));
        let cell_dir = self
            .dir
            .join("cells")
            .join(format!("{}-r{}", cell.label, repeat + 1));
        let run = match std::fs::create_dir_all(&cell_dir) {
            Err(e) => (
                failed(cell, repeat, format!("cannot create {}: {e}", cell_dir.display())),
                Vec::new(),
            ),
            Ok(()) => match measure(
                self.s,
                self.opts,
                cell,
                repeat,
                &cell_dir,
                &self.importer,
                self.limit_available,
            )
            .await
            {
                Ok(done) => done,
                Err(e) => (failed(cell, repeat, e), Vec::new()),
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
        // The importer limits glibc to one arena unless MALLOC_ARENA_MAX is given.
        let mut allocator = match self.s.raw.env.get("MALLOC_ARENA_MAX") {
            Some(n) => format!("glibc, MALLOC_ARENA_MAX={n}"),
            None => "glibc, one arena (importer default)".into(),
        };
        if let Some(a) = self.opts.set.get("MALLOC_ARENA_MAX") {
            allocator = format!("glibc, MALLOC_ARENA_MAX={a}");
        }
        let results = RunResults {
            scenario: self.s.name.clone(),
            file: self.s.file.display().to_string(),
            description: self.s.raw.description.clone(),
            database: format!("{:?}", self.s.raw.database).to_lowercase(),
            importer: self.importer.display().to_string(),
            budget_bytes: self.s.budget_bytes,
            headroom: self.s.headroom,
            started_at: self.started.to_rfc3339(),
            wall_secs: self.wall.elapsed().as_secs_f64(),
            machine: Machine::current(allocator),
            overrides: self.opts.set.clone(),
            enforced: self.enforced.clone(),
            cells,
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
        oom_killed: false,
        enforced: None,
        error: Some(error),
        crash: None,
        instances: 1,
        reference_parse: None,
        max_running: 0,
        upstream: Default::default(),
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
                cut_after: t.cut_after,
                stall_after: t.stall_after,
                ..MockUser::new(&format!("user{i}_{suffix}"), t.platform, t.games)
            };
            (user, t.stored, t.limit)
        })
        .collect()
}

async fn measure(
    s: &Checked,
    opts: &Options,
    cell: &Cell,
    repeat: u32,
    dir: &Path,
    importer: &Path,
    enforce: bool,
) -> Result<(CellRun, Vec<Sample>), String> {
    let users = cell_users(s, cell);
    let mock_users: Vec<MockUser> = users.iter().map(|(u, _, _)| u.clone()).collect();
    let mocks = Upstreams::start_with(
        &mock_users,
        upstream::Options {
            seed: s.raw.upstream.seed,
            lichess_games_per_sec: s.raw.upstream.pace_games_per_sec,
            chess_com_latency: std::time::Duration::from_millis(s.raw.upstream.chesscom_latency_ms),
            prerender: s.raw.upstream.prerender,
            policy: s.raw.upstream.policy.clone(),
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
    // Both providers refuse clients that name no contact; a scenario may set its own.
    env.insert("UPSTREAM_USER_AGENT".into(), HARNESS_USER_AGENT.into());
    env.extend(s.raw.env.clone());
    env.extend(cell.env.clone());
    env.insert("DATABASE_URL".into(), db.url());
    env.insert("LICHESS_BASE_URL".into(), mocks.lichess_url());
    env.insert("CHESSCOM_BASE_URL".into(), mocks.chess_com_url());
    env.extend(opts.set.clone());
    // Not an importer setting: it chooses the binary.
    let allocator = env.remove("ALLOCATOR");
    let importer = &importer_for(importer, allocator.as_deref())?;
    let instances = s.raw.instances as usize;
    let http = reqwest::Client::new();
    let mut fleet = Fleet::default();
    for k in 0..instances {
        let mut env = env.clone();
        // Each process its own stable name: a restarted one takes its own imports back at once.
        env.insert("INSTANCE_ID".into(), format!("harness-{}", k + 1));
        let log = if instances == 1 {
            dir.join("importer.log")
        } else {
            dir.join(format!("importer-{}.log", k + 1))
        };
        let limit = if enforce {
            let name = format!("{}-r{}-i{}", cell.label, repeat + 1, k + 1);
            Some(cgroup::Limit::create(&name, s.budget_bytes).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let mut server =
            target::Server::spawn(importer, &env, &log, limit.as_ref(), None).map_err(|e| e.to_string())?;
        server
            .wait_healthy(&http, Duration::from_secs(30))
            .await
            .map_err(|e| e.to_string())?;
        fleet.members.push(Member {
            server,
            env,
            log,
            limit,
        });
    }
    let seeded: u64 = users.iter().map(|(_, stored, _)| stored).sum();
    for (user, stored, _) in &users {
        db.seed(user, *stored).await.map_err(|e| e.to_string())?;
    }
    let origin = Instant::now();
    for (k, m) in fleet.members.iter().enumerate() {
        fleet
            .samplers
            .push((k, observe::Sampler::start(m.server.pid(), origin, SAMPLE_EVERY)));
    }
    tokio::time::sleep(IDLE_WINDOW).await;
    let specs = users
        .iter()
        .enumerate()
        .map(|(i, (u, _, limit))| ImportSpec {
            user: u.name.clone(),
            platform: u.platform.as_str(),
            limit: *limit,
            instance: i % instances,
        })
        .collect();
    let bases: Vec<String> = fleet.members.iter().map(|m| m.server.base.clone()).collect();
    let timeout = Duration::from_secs(s.raw.cell_timeout_secs);
    let load_fut = load::run(
        &bases,
        specs,
        origin,
        timeout,
        env.get("API_TOKEN").map(String::as_str),
    );
    tokio::pin!(load_fut);
    let mut crash = None;
    let load = match &s.raw.crash {
        None => load_fut.await,
        Some(c) => {
            let strike = fleet.crash(c, &db, seeded, importer, origin, &http);
            tokio::pin!(strike);
            tokio::select! {
                load = &mut load_fut => load,
                struck = &mut strike => {
                    crash = Some(struck?);
                    load_fut.await
                }
            }
        }
    };
    // A moment after the last import, to see what memory is given back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let peak_hwm = fleet
        .members
        .iter()
        .filter_map(|m| observe::vm_hwm(m.server.pid()))
        .max()
        .unwrap_or(0);
    let mut timelines: Vec<(usize, Vec<Sample>)> =
        fleet.samplers.drain(..).map(|(i, o)| (i, o.stop())).collect();
    let killed = crash
        .as_ref()
        .filter(|c| !c.restarted)
        .map(|c| c.instance as usize - 1);
    let mut exits = Vec::new();
    let mut oom_killed = false;
    for (k, m) in fleet.members.into_iter().enumerate() {
        let exit = m.server.stop(Duration::from_secs(10));
        if Some(k) == killed {
            continue;
        }
        oom_killed |= m.limit.as_ref().is_some_and(|l| l.oom_kills() > 0)
            || exit.signal == Some(libc::SIGKILL) && !exit.forced;
        exits.push(exit);
    }
    let load = load.map_err(|e| e.to_string())?;
    // The timeline and the idle level are the first process's; the peak is the highest of any.
    let peak_sampled = timelines
        .iter()
        .flat_map(|(_, v)| v.iter().map(|x| x.rss))
        .max()
        .unwrap_or(0);
    let idle = timelines
        .iter()
        .filter_map(|(_, v)| observe::median_rss(v, 0.0, IDLE_WINDOW.as_secs_f64()))
        .max()
        .unwrap_or(0);
    let mut samples: Vec<Sample> = timelines
        .iter_mut()
        .filter(|(i, _)| *i == 0)
        .flat_map(|(_, v)| std::mem::take(v))
        .collect();
    samples.sort_by(|a, b| a.t.total_cmp(&b.t));

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
    let upstream = mocks.served();
    let max_running = load::max_running(&load.imports);
    let rate_limited: Vec<String> = upstream
        .iter()
        .filter(|(_, served)| served.rate_limited > 0)
        .map(|(provider, served)| format!("{provider} {}", served.rate_limited))
        .collect();
    let error = if oom_killed {
        Some("oom-killed".to_string())
    } else if !rate_limited.is_empty() && !s.raw.upstream.expect_rate_limits {
        // A 429 from a mock is one production would have served too: the settings break the rules.
        Some(format!(
            "the mocks served 429 Too Many Requests ({}): these settings break the providers' rules \
             (set upstream.expect_rate_limits: true only where 429s are the point)",
            rate_limited.join(", ")
        ))
    } else if let (Some(c), None) = (&s.raw.crash, &crash) {
        // A fault scenario whose fault never happened proves nothing: say so instead of passing.
        Some(format!(
            "the crash never struck: the imports ended before {} games were stored",
            c.after_games
        ))
    } else {
        exits.iter().find(|e| !e.clean()).map(|exit| {
            if exit.before_sigterm {
                format!("importer died during the run ({exit:?})")
            } else if exit.forced {
                "importer did not stop within 10 s of SIGTERM".into()
            } else {
                format!("importer exited with {exit:?} on SIGTERM")
            }
        })
    };
    // Imports spread over the processes in turn: the busiest runs this many.
    let per_process = cell.imports.div_ceil(s.raw.instances).max(1);
    let run = CellRun {
        cell: cell.clone(),
        repeat,
        idle_rss: idle,
        peak_sampled,
        peak_hwm,
        peak,
        per_import: peak.saturating_sub(idle) / u64::from(per_process),
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
        oom_killed,
        enforced: None,
        error,
        crash,
        instances: s.raw.instances,
        // Measured after the importer stopped, so the two never share the CPU.
        reference_parse: s.raw.reference_parse.then(|| {
            let imported: Vec<(MockUser, u64)> = users.iter().map(|(u, _, l)| (u.clone(), *l)).collect();
            crate::observe::parse_rate::measure(&imported, s.raw.upstream.seed)
        }),
        max_running,
        upstream,
    };
    Ok((run, samples))
}

/// The User-Agent the harness gives the importer: the mocks, like the providers, refuse one without a contact.
pub const HARNESS_USER_AGENT: &str = concat!(
    "chess-games-importer-harness/",
    env!("CARGO_PKG_VERSION"),
    " (+",
    env!("CARGO_PKG_REPOSITORY"),
    ")"
);

/// One importer process of a cell, with what it takes to start it again.
struct Member {
    server: target::Server,
    env: BTreeMap<String, String>,
    log: PathBuf,
    limit: Option<cgroup::Limit>,
}

/// The importer processes of a cell and their samplers (tagged with the process's index).
#[derive(Default)]
struct Fleet {
    members: Vec<Member>,
    samplers: Vec<(usize, observe::Sampler)>,
}

impl Fleet {
    /// Waits until the cell's imports stored `after_games`, kills the chosen process with SIGKILL,
    /// and starts it again when the scenario says so.
    async fn crash(
        &mut self,
        c: &Crash,
        db: &CellDb,
        seeded: u64,
        importer: &Path,
        origin: Instant,
        http: &reqwest::Client,
    ) -> Result<CrashRecord, String> {
        let stored_at_kill = loop {
            let n = db.stored_count().await.map_err(|e| e.to_string())?;
            if n >= seeded + c.after_games {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let k = c.instance as usize - 1;
        let m = &mut self.members[k];
        m.server.kill9();
        let at_secs = origin.elapsed().as_secs_f64();
        if c.restart {
            let port = m.server.port();
            let mut server = target::Server::spawn(importer, &m.env, &m.log, m.limit.as_ref(), Some(port))
                .map_err(|e| e.to_string())?;
            server
                .wait_healthy(http, Duration::from_secs(30))
                .await
                .map_err(|e| format!("restart after the crash: {e}"))?;
            self.samplers
                .push((k, observe::Sampler::start(server.pid(), origin, SAMPLE_EVERY)));
            m.server = server;
        }
        Ok(CrashRecord {
            instance: c.instance,
            at_secs,
            stored_at_kill,
            restarted: c.restart,
        })
    }
}

/// The binary of a cell: `importer-<allocator>` beside `importer` for another allocator than glibc,
/// checked by its `--version` so that a stale or wrong build is never measured under the wrong name.
pub fn importer_for(importer: &Path, allocator: Option<&str>) -> Result<PathBuf, String> {
    let name = allocator.unwrap_or("glibc");
    let bin = match name {
        "glibc" => importer.to_path_buf(),
        other => {
            let file = format!(
                "{}-{other}",
                importer
                    .file_name()
                    .map_or("importer".into(), |f| f.to_string_lossy())
            );
            importer.with_file_name(file)
        }
    };
    let out = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .map_err(|e| format!("{}: {e} (build it with `make allocators`)", bin.display()))?;
    let version = String::from_utf8_lossy(&out.stdout);
    if !version.contains(&format!("(allocator: {name})")) {
        return Err(format!(
            "{} says {:?}, not allocator {name}; rebuild with `make allocators`",
            bin.display(),
            version.trim()
        ));
    }
    Ok(bin)
}
