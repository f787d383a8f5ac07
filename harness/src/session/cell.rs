//! One cell run: fresh mocks and database, the importer processes started
//! with the cell's environment, an idle window, goose's load while the
//! sampler watches RSS, an optional crash, then the peak, a clean stop and
//! the verification of every game.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::faults::{self, DatabaseFaultRecord, Terminator};
use super::prime::{Earlier, prime};
use super::results::{CellRun, CrashRecord};
use super::{IDLE_WINDOW, Options, SAMPLE_EVERY};
use crate::load::{self, ImportSpec};
use crate::observe::{self, Sample, server_latency};
use crate::scenario::{Cell, Checked, Crash, Database};
use crate::target;
use crate::target::db::{self, CellDb};
use crate::target::{cgroup, pooler};
use crate::upstream::{self, MockUser, OutageRecord, Platform, Upstreams};
use crate::verify::{self, Expectation, Verification};

/// Why a cell run could not be measured; its result records this, in words.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A folder of the run could not be made.
    #[error("cannot create {path}: {source}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The importer could not be copied into the run's folder.
    #[error("cannot copy {from} to {to}: {source}")]
    Stage {
        /// The binary as given.
        from: PathBuf,
        /// Its copy.
        to: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An allocator variant beside the importer could not be copied with it.
    #[error("cannot copy {from}: {source}")]
    StageVariant {
        /// The variant's binary.
        from: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The binary of the cell's allocator cannot be run.
    #[error("{bin}: {source} (build it with `make allocators`)")]
    NoAllocatorBuild {
        /// The binary, `importer-<allocator>`.
        bin: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The binary of the cell's allocator says it was built with another.
    #[error("{bin} says {version:?}, not allocator {allocator}; rebuild with `make allocators`")]
    WrongAllocator {
        /// The binary.
        bin: PathBuf,
        /// What its `--version` printed.
        version: String,
        /// The allocator the cell asks for.
        allocator: String,
    },
    /// The mocks could not start.
    #[error("mocks: {0}")]
    Mocks(#[source] std::io::Error),
    /// The cell's database could not be made, read or verified.
    #[error(transparent)]
    Database(#[from] db::Error),
    /// The cell's PgBouncer could not be configured from the scenario's PostgreSQL URL.
    #[error("pooler: {0}")]
    PoolerUrl(#[source] pooler::Error),
    /// The cell's PgBouncer could not start.
    #[error(transparent)]
    Pooler(#[from] pooler::Error),
    /// An importer's memory cgroup could not be made.
    #[error(transparent)]
    Limit(#[from] cgroup::Error),
    /// An importer did not start or never became healthy.
    #[error(transparent)]
    Importer(#[from] target::Error),
    /// The importer killed by the crash did not come back.
    #[error("restart after the crash: {0}")]
    Restart(#[source] target::Error),
    /// The earlier imports of returning users failed.
    #[error(transparent)]
    Earlier(#[from] super::prime::Error),
    /// goose could not run the load.
    #[error(transparent)]
    Load(#[from] load::Error),
}

/// One import of a cell: its user now, as the earlier imports saw them, and the import's limit.
#[derive(Debug, Clone)]
pub struct CellUser {
    /// The user as the measured import finds them.
    pub user: MockUser,
    /// The user as the earlier imports (`stored`) found them.
    pub earlier: Earlier,
    /// The measured import's `limit`.
    pub limit: u64,
}

/// The users of a cell: import `i` gets a user of its own, from the i-th template in turn.
pub fn cell_users(s: &Checked, cell: &Cell) -> Vec<CellUser> {
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
                cut_every: t.cut_every,
                ..MockUser::new(&format!("user{i}_{suffix}"), t.platform, t.games)
            };
            let mut earlier = Earlier::of(&user, t.stored, t.new_since_stored, &t.finishes_late);
            if let Some(short) = &t.short_months {
                // Short to the earlier import; whole, under new validators, to the measured one.
                earlier = earlier.served_short(short.missing, short.months.clone());
            }
            CellUser {
                earlier,
                user,
                limit: t.limit,
            }
        })
        .collect()
}

pub(super) async fn measure(
    s: &Checked,
    opts: &Options,
    cell: &Cell,
    repeat: u32,
    dir: &Path,
    importer: &Path,
    enforce: bool,
) -> Result<(CellRun, Vec<Sample>), Error> {
    let users = cell_users(s, cell);
    let mocks = start_mocks(s, &users).await?;
    let db = open_database(s, cell, repeat, dir).await?;
    let mut env = importer_env(s, opts, cell, &db, &mocks);
    // Held until the cell ends: its importers' connections go through it.
    let _pooler = start_pooler(s, &db, &mut env)?;
    // Not an importer setting: it chooses the binary.
    let allocator = env.remove("ALLOCATOR");
    let importer = &importer_for(importer, allocator.as_deref())?;
    // Returning users: their history as an earlier import of this same binary left it.
    let earlier: Vec<Earlier> = users.iter().map(|u| u.earlier.clone()).collect();
    prime(&earlier, importer, &env, s.raw.upstream.seed, dir).await?;
    let primed_at = chrono::Utc::now();
    let http = reqwest::Client::new();
    let spawn = Spawn {
        s,
        cell,
        repeat,
        dir,
        importer,
        enforce,
        heap: opts.heap_profile.as_ref(),
    };
    let mut fleet = start_fleet(&spawn, &env, &http).await?;
    let seeded = db.stored_count().await?;
    let origin = Instant::now();
    for (k, m) in fleet.members.iter().enumerate() {
        fleet
            .samplers
            .push((k, observe::Sampler::start(m.server.pid(), origin, SAMPLE_EVERY)));
    }
    tokio::time::sleep(IDLE_WINDOW).await;
    let attack = Attack {
        s,
        users: &users,
        env: &env,
        db: &db,
        mocks: &mocks,
        seeded,
        importer,
        origin,
        http: &http,
    };
    let struck = attack.run(&mut fleet).await?;
    let (load, crash) = (struck.load, struck.crash);
    let outages = faults::judged_outages(s, cell, &mocks, struck.started);
    // A moment after the last import, to see what memory is given back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = env.get("API_TOKEN").map(String::as_str);
    let processes = fleet.members.len();
    let stopped = stop_and_observe(fleet, crash.as_ref(), &http, token).await;
    if let Some(heap) = &opts.heap_profile {
        for k in 0..processes {
            if let Err(e) = heap.finish(dir, k) {
                tracing::warn!(error = %e, process = k + 1, "no heap profile for this process");
            }
        }
    }
    let mut load = load?;
    let verification = verify_cell(&users, &db, primed_at, &mut load, &mocks).await?;
    // Named only where it lasts: a SQLite file, or a schema kept on purpose.
    if (opts.keep_databases || matches!(db, CellDb::Sqlite { .. }))
        && let Err(e) = std::fs::write(dir.join("database.url"), format!("{}\n", db.url()))
    {
        tracing::warn!(error = %e, "cannot name the cell's database in database.url");
    }
    if !opts.keep_databases {
        let _ = db.drop_schema().await;
    }
    let upstream = mocks.served();
    let error = cell_error(s, &stopped, &upstream, crash.as_ref())
        .or_else(|| faults::fault_error(&outages, struck.database_faults.as_ref()));
    let run = assemble(
        s,
        cell,
        repeat,
        &users,
        stopped.memory.clone(),
        Outcome {
            load,
            verification,
            upstream,
            crash,
            error,
            oom_killed: stopped.oom_killed,
            server_latency: stopped.server_latency,
            outages,
            database_faults: struck.database_faults,
        },
    );
    Ok((run, stopped.samples))
}

/// The mocks of a cell, serving `users` at the scenario's pace in provider time: rates × the time
/// scale, durations ÷ it.
async fn start_mocks(s: &Checked, users: &[CellUser]) -> Result<Upstreams, Error> {
    let up = &s.raw.upstream;
    let scale = up.time_scale;
    let mut policy = up.policy.clone();
    if let upstream::Policy::Enforced(rules) = &mut policy {
        rules.penalty_secs /= scale;
    }
    let mock_users: Vec<MockUser> = users.iter().map(|u| u.user.clone()).collect();
    Upstreams::start_with(
        &mock_users,
        upstream::Options {
            seed: up.seed,
            lichess_games_per_sec: f64::from(up.pace_games_per_sec) * scale,
            lichess_authenticated_games_per_sec: up
                .authenticated_pace_games_per_sec
                .map_or(0.0, |p| f64::from(p) * scale),
            chess_com_latency: Duration::from_secs_f64(up.chesscom_latency_ms as f64 / 1000.0 / scale),
            prerender: up.prerender,
            policy,
            ..Default::default()
        },
    )
    .await
    .map_err(Error::Mocks)
}

/// A fresh database for one run of a cell: a SQLite file in `dir`, or a schema of its own.
async fn open_database(s: &Checked, cell: &Cell, repeat: u32, dir: &Path) -> Result<CellDb, Error> {
    match s.raw.database {
        Database::Sqlite => Ok(CellDb::sqlite(dir)),
        Database::Postgres => Ok(CellDb::postgres(
            &s.raw.postgres_url,
            &format!("{}_{}_{}", s.name, cell.label, repeat),
        )
        .await?),
    }
}

/// The importer's environment: the harness's defaults, the scenario's, the cell's, the database
/// and the mocks, then the command line's `--set`, each over the one before.
fn importer_env(
    s: &Checked,
    opts: &Options,
    cell: &Cell,
    db: &CellDb,
    mocks: &Upstreams,
) -> BTreeMap<String, String> {
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
    env
}

/// A PgBouncer of the cell's own in front of its schema when the cell asks for a transaction
/// pooler; `env`'s DATABASE_URL then leads to it.
fn start_pooler(
    s: &Checked,
    db: &CellDb,
    env: &mut BTreeMap<String, String>,
) -> Result<Option<pooler::PgBouncer>, Error> {
    match (db, env.get(settings::DATABASE_POOLER.name).map(|v| v.trim())) {
        (CellDb::Postgres { server, schema }, Some("transaction")) => {
            let options = pooler::Options::in_front_of(server, schema, s.raw.pooler.default_pool_size)
                .map_err(Error::PoolerUrl)?;
            let bouncer = pooler::PgBouncer::start(&options)?;
            env.insert("DATABASE_URL".into(), bouncer.url(pooler::CELL_DATABASE, ""));
            Ok(Some(bouncer))
        }
        _ => Ok(None),
    }
}

/// What starting a cell's importer processes needs.
struct Spawn<'a> {
    s: &'a Checked,
    cell: &'a Cell,
    repeat: u32,
    dir: &'a Path,
    importer: &'a Path,
    enforce: bool,
    /// Each process records its heap with heaptrack.
    heap: Option<&'a target::heaptrack::Heaptrack>,
}

/// The scenario's `instances` importer processes, each healthy, each in a memory cgroup of the
/// budget when the run enforces it.
async fn start_fleet(
    sp: &Spawn<'_>,
    env: &BTreeMap<String, String>,
    http: &reqwest::Client,
) -> Result<Fleet, Error> {
    let instances = sp.s.raw.instances as usize;
    let mut fleet = Fleet::default();
    for k in 0..instances {
        let mut env = env.clone();
        // Each process its own stable name: a restarted one takes its own imports back at once.
        env.insert("INSTANCE_ID".into(), format!("harness-{}", k + 1));
        if let Some(heap) = sp.heap {
            env.extend(heap.env(&target::heaptrack::raw_file(sp.dir, k)));
        }
        let log = if instances == 1 {
            sp.dir.join("importer.log")
        } else {
            sp.dir.join(format!("importer-{}.log", k + 1))
        };
        let limit = if sp.enforce {
            let name = format!("{}-r{}-i{}", sp.cell.label, sp.repeat + 1, k + 1);
            Some(cgroup::Limit::create(&name, sp.s.budget_bytes)?)
        } else {
            None
        };
        let mut server = target::Server::spawn(sp.importer, &env, &log, limit.as_ref(), None)?;
        server.wait_healthy(http, Duration::from_secs(30)).await?;
        fleet.members.push(Member {
            server,
            env,
            log,
            limit,
        });
    }
    Ok(fleet)
}

/// goose's load on a started fleet, and the scenario's crash and faults while it runs.
struct Attack<'a> {
    s: &'a Checked,
    users: &'a [CellUser],
    env: &'a BTreeMap<String, String>,
    db: &'a CellDb,
    mocks: &'a Upstreams,
    seeded: u64,
    importer: &'a Path,
    origin: Instant,
    http: &'a reqwest::Client,
}

/// What an attack ended with.
struct Struck {
    /// The imports, or why goose could not run them.
    load: Result<load::LoadResult, load::Error>,
    /// The crash, when it struck.
    crash: Option<CrashRecord>,
    /// When the first imports were posted: the outages' times count from here.
    started: Instant,
    /// What terminating the importer's backends did, when the scenario asks for it.
    database_faults: Option<DatabaseFaultRecord>,
}

impl Attack<'_> {
    /// Posts every import at its offset and follows it to its end; the crash and the database
    /// faults strike meanwhile, the outages at their times.
    async fn run(&self, fleet: &mut Fleet) -> Result<Struck, Error> {
        let started = Instant::now();
        faults::schedule_outages(self.s, self.mocks);
        let terminator = Terminator::start(self.s, self.db);
        let outcome = self.load_and_crash(fleet).await;
        let database_faults = match terminator {
            Some(t) => Some(t.stop().await),
            None => None,
        };
        let (load, crash) = outcome?;
        Ok(Struck {
            load,
            crash,
            started,
            database_faults,
        })
    }

    /// The load, and the crash while it runs.
    async fn load_and_crash(
        &self,
        fleet: &mut Fleet,
    ) -> Result<(Result<load::LoadResult, load::Error>, Option<CrashRecord>), Error> {
        let s = self.s;
        let instances = fleet.members.len().max(1);
        let offsets = s
            .raw
            .workload
            .arrivals
            .offsets(self.users.len(), s.raw.upstream.seed);
        let specs = self
            .users
            .iter()
            .zip(offsets)
            .enumerate()
            .map(|(i, (u, offset))| ImportSpec {
                user: u.user.name.clone(),
                platform: u.user.platform,
                limit: u.limit,
                instance: i % instances,
                delay: Duration::from_secs_f64(offset / s.raw.upstream.time_scale),
            })
            .collect();
        let bases: Vec<String> = fleet.members.iter().map(|m| m.server.base.clone()).collect();
        let timeout = Duration::from_secs(s.raw.cell_timeout_secs);
        let token = self.env.get("API_TOKEN").map(String::as_str);
        let load_fut = load::run(&bases, specs, self.origin, timeout, token);
        tokio::pin!(load_fut);
        let Some(c) = &s.raw.crash else {
            return Ok((load_fut.await, None));
        };
        let strike = fleet.crash(c, self.db, self.seeded, self.importer, self.origin, self.http);
        tokio::pin!(strike);
        tokio::select! {
            load = &mut load_fut => Ok((load, None)),
            struck = &mut strike => {
                let record = struck?;
                Ok((load_fut.await, Some(record)))
            }
        }
    }
}

/// A cell's memory: the timeline and the idle level are the first process's, the peaks the
/// highest of any; bytes.
#[derive(Debug, Clone, Default)]
struct Memory {
    idle: u64,
    idle_anon: u64,
    peak_hwm: u64,
    peak_sampled: u64,
    peak_anon: u64,
    peak_file: u64,
    samples: usize,
}

/// What stopping the fleet showed.
struct Stopped {
    memory: Memory,
    samples: Vec<Sample>,
    exits: Vec<target::Stopped>,
    oom_killed: bool,
    server_latency: Vec<server_latency::RouteLatency>,
}

/// Reads the server's latency and the peaks while the processes run, then stops them (SIGTERM)
/// and their samplers; the process the crash killed for good is not judged by its exit.
async fn stop_and_observe(
    mut fleet: Fleet,
    crash: Option<&CrashRecord>,
    http: &reqwest::Client,
    token: Option<&str>,
) -> Stopped {
    // The server's side of the latency, while the first process still runs (it may have crashed).
    let server_latency = match fleet.members.first() {
        Some(m) => server_latency::scrape(http, &m.server.base, token)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "no server-side latency for this cell");
                Vec::new()
            }),
        None => Vec::new(),
    };
    let peak_hwm = fleet
        .members
        .iter()
        .filter_map(|m| observe::vm_hwm(m.server.pid()))
        .max()
        .unwrap_or(0);
    let mut timelines: Vec<(usize, Vec<Sample>)> =
        fleet.samplers.drain(..).map(|(i, o)| (i, o.stop())).collect();
    let killed = crash.filter(|c| !c.restarted).map(|c| c.instance as usize - 1);
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
    let mut memory = memory_of(&timelines);
    memory.peak_hwm = peak_hwm;
    let mut samples: Vec<Sample> = timelines
        .iter_mut()
        .filter(|(i, _)| *i == 0)
        .flat_map(|(_, v)| std::mem::take(v))
        .collect();
    samples.sort_by(|a, b| a.t.total_cmp(&b.t));
    memory.samples = samples.len();
    Stopped {
        memory,
        samples,
        exits,
        oom_killed,
        server_latency,
    }
}

/// The peaks and idle medians of every process's timeline.
fn memory_of(timelines: &[(usize, Vec<Sample>)]) -> Memory {
    let highest = |figure: fn(&Sample) -> u64| {
        timelines
            .iter()
            .flat_map(|(_, v)| v.iter().map(figure))
            .max()
            .unwrap_or(0)
    };
    let idle_of = |median: fn(&[Sample], f64, f64) -> Option<u64>| {
        timelines
            .iter()
            .filter_map(|(_, v)| median(v, 0.0, IDLE_WINDOW.as_secs_f64()))
            .max()
            .unwrap_or(0)
    };
    Memory {
        idle: idle_of(observe::median_rss),
        idle_anon: idle_of(observe::median_anon),
        peak_hwm: 0,
        peak_sampled: highest(|x| x.rss),
        peak_anon: highest(|x| x.anon),
        peak_file: highest(|x| x.file),
        samples: 0,
    }
}

/// Exact delivery: every expected game stored once and nothing else; each import's record gets
/// when its first game was stored and how many games its mock sent.
async fn verify_cell(
    users: &[CellUser],
    db: &CellDb,
    primed_at: chrono::DateTime<chrono::Utc>,
    load: &mut load::LoadResult,
    mocks: &Upstreams,
) -> Result<Verification, Error> {
    let expectations: Vec<Expectation> = users
        .iter()
        .map(|u| Expectation {
            user: u.user.clone(),
            stored_before: u.earlier.stored_indices(),
            limit: u.limit,
        })
        .collect();
    let stored = db.stored_ids().await?;
    let jobs = db.jobs().await?;
    let first_stored = db.first_stored(primed_at).await?;
    for rec in &mut load.imports {
        if let Some(u) = users.iter().find(|u| u.user.name == rec.user) {
            let user = &u.user;
            rec.first_game_at = first_stored
                .get(&(user.key(), user.platform.as_str().to_string()))
                .copied();
            rec.games_received = Some(mocks.games_served_to(user.platform, &user.name));
        }
    }
    Ok(verify::check(&expectations, &stored, &jobs))
}

/// Why the cell failed apart from delivery, in words, if it did: an OOM kill, a 429 the scenario
/// did not expect, a crash that never struck, an importer that did not stop cleanly.
fn cell_error(
    s: &Checked,
    stopped: &Stopped,
    upstream: &BTreeMap<String, upstream::Served>,
    crash: Option<&CrashRecord>,
) -> Option<String> {
    let rate_limited: Vec<String> = upstream
        .iter()
        .filter(|(_, served)| served.rate_limited > 0)
        .map(|(provider, served)| format!("{provider} {}", served.rate_limited))
        .collect();
    if stopped.oom_killed {
        return Some("oom-killed".to_string());
    }
    if !rate_limited.is_empty() && !s.raw.upstream.expect_rate_limits {
        // A 429 from a mock is one production would have served too: the settings break the rules.
        return Some(format!(
            "the mocks served 429 Too Many Requests ({}): these settings break the providers' rules \
             (set upstream.expect_rate_limits: true only where 429s are the point)",
            rate_limited.join(", ")
        ));
    }
    if let (Some(c), None) = (&s.raw.crash, crash) {
        // A fault scenario whose fault never happened proves nothing: say so instead of passing.
        return Some(format!(
            "the crash never struck: the imports ended before {} games were stored",
            c.after_games
        ));
    }
    stopped.exits.iter().find(|e| !e.clean()).map(|exit| {
        if exit.before_sigterm {
            format!("importer died during the run ({exit:?})")
        } else if exit.forced {
            "importer did not stop within 10 s of SIGTERM".into()
        } else {
            format!("importer exited with {exit:?} on SIGTERM")
        }
    })
}

/// What a cell run ended with besides its memory.
struct Outcome {
    load: load::LoadResult,
    verification: Verification,
    upstream: BTreeMap<String, upstream::Served>,
    crash: Option<CrashRecord>,
    error: Option<String>,
    oom_killed: bool,
    server_latency: Vec<server_latency::RouteLatency>,
    outages: Vec<OutageRecord>,
    database_faults: Option<DatabaseFaultRecord>,
}

/// The cell run as `results.json` holds it: memory per import, rates and times from the load.
fn assemble(s: &Checked, cell: &Cell, repeat: u32, users: &[CellUser], m: Memory, o: Outcome) -> CellRun {
    let imports = &o.load.imports;
    let first_post = imports.iter().map(|i| i.posted_at).fold(f64::INFINITY, f64::min);
    let last_post = imports.iter().map(|i| i.posted_at).fold(0.0, f64::max);
    let first_end = imports.iter().map(|i| i.ended_at).fold(f64::INFINITY, f64::min);
    let last_end = imports.iter().map(|i| i.ended_at).fold(0.0, f64::max);
    let load_secs = (last_end - first_post).max(0.0);
    let games_imported: i64 = imports.iter().map(|i| i.games_imported).sum();
    let peak = m.peak_hwm.max(m.peak_sampled);
    // Imports spread over the processes in turn: the busiest runs this many.
    let per_process = u64::from(cell.imports.div_ceil(s.raw.instances).max(1));
    CellRun {
        cell: cell.clone(),
        repeat,
        idle_rss: m.idle,
        peak_sampled: m.peak_sampled,
        peak_hwm: m.peak_hwm,
        peak,
        per_import: peak.saturating_sub(m.idle) / per_process,
        idle_anon: m.idle_anon,
        peak_anon: m.peak_anon,
        peak_file: m.peak_file,
        per_import_anon: m.peak_anon.saturating_sub(m.idle_anon) / per_process,
        samples: m.samples,
        load_secs,
        overlap_secs: (first_end - last_post).max(0.0),
        games_imported,
        games_per_sec: if load_secs > 0.0 {
            games_imported as f64 / load_secs
        } else {
            0.0
        },
        fits_budget: peak <= s.budget_bytes,
        max_running: load::max_running(imports),
        timing: Some(observe::timing::of(imports, s.raw.upstream.time_scale)),
        verification: o.verification,
        load: o.load,
        oom_killed: o.oom_killed,
        enforced: None,
        error: o.error,
        crash: o.crash,
        instances: s.raw.instances,
        // Measured after the importer stopped, so the two never share the CPU.
        reference_parse: s.raw.reference_parse.then(|| {
            let imported: Vec<(MockUser, u64)> = users.iter().map(|u| (u.user.clone(), u.limit)).collect();
            crate::observe::parse_rate::measure(&imported, s.raw.upstream.seed)
        }),
        upstream: o.upstream,
        server_latency: o.server_latency,
        outages: o.outages,
        database_faults: o.database_faults,
    }
}

/// The User-Agent the harness gives the importer: the mocks, like the providers, refuse one without
/// a contact. Its URL is loopback because the harness's requests never leave this machine.
pub const HARNESS_USER_AGENT: &str = concat!(
    "chess-games-importer-harness/",
    env!("CARGO_PKG_VERSION"),
    " (+http://127.0.0.1/; load test against local mocks)"
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
    ) -> Result<CrashRecord, Error> {
        let stored_at_kill = loop {
            let n = db.stored_count().await?;
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
            let mut server = target::Server::spawn(importer, &m.env, &m.log, m.limit.as_ref(), Some(port))?;
            server
                .wait_healthy(http, Duration::from_secs(30))
                .await
                .map_err(Error::Restart)?;
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
pub fn importer_for(importer: &Path, allocator: Option<&str>) -> Result<PathBuf, Error> {
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
    let out = match std::process::Command::new(&bin).arg("--version").output() {
        Ok(out) => out,
        Err(source) => return Err(Error::NoAllocatorBuild { bin, source }),
    };
    let version = String::from_utf8_lossy(&out.stdout);
    if !version.contains(&format!("(allocator: {name})")) {
        return Err(Error::WrongAllocator {
            version: version.trim().to_string(),
            bin,
            allocator: name.to_string(),
        });
    }
    Ok(bin)
}
