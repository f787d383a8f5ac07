//! One cell run: fresh mocks and database, the importer processes started
//! with the cell's environment, an idle window, goose's load while the
//! sampler watches RSS, an optional crash, then the peak, a clean stop and
//! the verification of every game.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::prime::{Earlier, prime};
use super::results::{CellRun, CrashRecord};
use super::{IDLE_WINDOW, Options, SAMPLE_EVERY};
use crate::load::{self, ImportSpec};
use crate::observe::{self, Sample, server_latency};
use crate::scenario::{Cell, Checked, Crash, Database};
use crate::target;
use crate::target::db::CellDb;
use crate::target::{cgroup, pooler};
use crate::upstream::{self, MockUser, Platform, Upstreams};
use crate::verify::{self, Expectation};

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
                ..MockUser::new(&format!("user{i}_{suffix}"), t.platform, t.games)
            };
            CellUser {
                earlier: Earlier::of(&user, t.stored, t.new_since_stored, &t.finishes_late),
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
) -> Result<(CellRun, Vec<Sample>), String> {
    let users = cell_users(s, cell);
    let mock_users: Vec<MockUser> = users.iter().map(|u| u.user.clone()).collect();
    let up = &s.raw.upstream;
    // Provider time runs `scale` times faster: rates × scale, durations ÷ scale.
    let scale = up.time_scale;
    let mut policy = up.policy.clone();
    if let upstream::Policy::Enforced(rules) = &mut policy {
        rules.penalty_secs /= scale;
    }
    let mocks = Upstreams::start_with(
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
    // Held until the cell ends: its importers' connections go through it.
    let _pooler = match (&db, env.get("DATABASE_POOLER").map(String::as_str)) {
        (CellDb::Postgres { server, schema }, Some("transaction")) => {
            let options = pooler::Options::in_front_of(server, schema, s.raw.pooler.default_pool_size)
                .map_err(|e| format!("pooler: {e}"))?;
            let bouncer = pooler::PgBouncer::start(&options).map_err(|e| e.to_string())?;
            env.insert("DATABASE_URL".into(), bouncer.url(pooler::CELL_DATABASE, ""));
            Some(bouncer)
        }
        _ => None,
    };
    // Not an importer setting: it chooses the binary.
    let allocator = env.remove("ALLOCATOR");
    let importer = &importer_for(importer, allocator.as_deref())?;
    // Returning users: their history as an earlier import of this same binary left it.
    let earlier: Vec<Earlier> = users.iter().map(|u| u.earlier.clone()).collect();
    prime(&earlier, importer, &env, up.seed, dir).await?;
    let primed_at = chrono::Utc::now();
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
    let seeded = db.stored_count().await.map_err(|e| e.to_string())?;
    let origin = Instant::now();
    for (k, m) in fleet.members.iter().enumerate() {
        fleet
            .samplers
            .push((k, observe::Sampler::start(m.server.pid(), origin, SAMPLE_EVERY)));
    }
    tokio::time::sleep(IDLE_WINDOW).await;
    let offsets = s.raw.workload.arrivals.offsets(users.len(), up.seed);
    let specs = users
        .iter()
        .zip(offsets)
        .enumerate()
        .map(|(i, (u, offset))| ImportSpec {
            user: u.user.name.clone(),
            platform: u.user.platform.as_str(),
            limit: u.limit,
            instance: i % instances,
            delay: Duration::from_secs_f64(offset / scale),
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
    // The server's side of the latency, while the first process still runs (it may have crashed).
    let server_latency = match fleet.members.first() {
        Some(m) => server_latency::scrape(&http, &m.server.base, env.get("API_TOKEN").map(String::as_str))
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
    let mut load = load.map_err(|e| e.to_string())?;
    // The timeline and the idle level are the first process's; the peak is the highest of any.
    let highest = |figure: fn(&Sample) -> u64| {
        timelines
            .iter()
            .flat_map(|(_, v)| v.iter().map(figure))
            .max()
            .unwrap_or(0)
    };
    let (peak_sampled, peak_anon, peak_file) = (highest(|x| x.rss), highest(|x| x.anon), highest(|x| x.file));
    let idle_of = |median: fn(&[Sample], f64, f64) -> Option<u64>| {
        timelines
            .iter()
            .filter_map(|(_, v)| median(v, 0.0, IDLE_WINDOW.as_secs_f64()))
            .max()
            .unwrap_or(0)
    };
    let (idle, idle_anon) = (idle_of(observe::median_rss), idle_of(observe::median_anon));
    let mut samples: Vec<Sample> = timelines
        .iter_mut()
        .filter(|(i, _)| *i == 0)
        .flat_map(|(_, v)| std::mem::take(v))
        .collect();
    samples.sort_by(|a, b| a.t.total_cmp(&b.t));

    let expectations: Vec<Expectation> = users
        .iter()
        .map(|u| Expectation {
            user: u.user.clone(),
            stored_before: u.earlier.stored_indices(),
            limit: u.limit,
        })
        .collect();
    let stored = db.stored_ids().await.map_err(|e| e.to_string())?;
    let jobs = db.jobs().await.map_err(|e| e.to_string())?;
    let first_stored = db.first_stored(primed_at).await.map_err(|e| e.to_string())?;
    for rec in &mut load.imports {
        if let Some(u) = users.iter().find(|u| u.user.name == rec.user) {
            let user = &u.user;
            rec.first_game_at = first_stored
                .get(&(user.key(), user.platform.as_str().to_string()))
                .copied();
            rec.games_received = Some(mocks.games_served_to(user.platform, &user.name));
        }
    }
    let verification = verify::check(&expectations, &stored, &jobs);
    if let Err(e) = std::fs::write(dir.join("database.url"), format!("{}\n", db.url())) {
        tracing::warn!(error = %e, "cannot name the cell's database in database.url");
    }
    if !opts.keep_databases {
        let _ = db.drop_schema().await;
    }

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
    let timing = observe::timing::of(&load.imports, scale);
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
        idle_anon,
        peak_anon,
        peak_file,
        per_import_anon: peak_anon.saturating_sub(idle_anon) / u64::from(per_process),
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
            let imported: Vec<(MockUser, u64)> = users.iter().map(|u| (u.user.clone(), u.limit)).collect();
            crate::observe::parse_rate::measure(&imported, s.raw.upstream.seed)
        }),
        max_running,
        upstream,
        server_latency,
        timing: Some(timing),
    };
    Ok((run, samples))
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
