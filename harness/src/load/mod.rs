//! Load: goose drives the imports, one goose user per import.
//!
//! Each goose user POSTs one import and polls it until it is completed or
//! failed. Goose transactions are plain functions, so the plan of the attack
//! under way is kept in a process-wide slot; attacks run one after another,
//! never two at once (`run` holds a lock for the whole attack).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use goose::client::GooseClientBuilder;
use goose::config::GooseConfiguration;
use goose::goose::GooseResponse;
use goose::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub mod arrivals;

pub use arrivals::Arrivals;

use crate::upstream::games::Rng;

/// One import to request.
#[derive(Debug, Clone)]
pub struct ImportSpec {
    /// Username.
    pub user: String,
    /// The provider.
    pub platform: settings::Platform,
    /// The limit.
    pub limit: u64,
    /// Which importer process (index into the bases) it is posted to.
    pub instance: usize,
    /// When it is posted, from the start of the attack (real time: the arrival schedule divided
    /// by the time scale).
    pub delay: Duration,
}

/// What happened to one import.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportRecord {
    /// Username.
    pub user: String,
    /// Its provider.
    pub platform: settings::Platform,
    /// Its id, when the POST was accepted.
    pub import_id: Option<String>,
    /// Status code of the POST.
    pub post_status: u16,
    /// `queued` or `running` as the POST answered.
    pub admitted_as: String,
    /// Queue position the POST gave.
    pub queue_position: u64,
    /// Final status (`completed`, `failed`, or `timeout` when the harness gave up).
    pub status: String,
    /// Error the import reported.
    pub error: Option<String>,
    /// Counters from the final poll.
    pub games_fetched: i64,
    /// Games stored.
    pub games_imported: i64,
    /// Games already stored.
    pub games_skipped_existing: i64,
    /// Games that did not parse.
    pub games_failed_parse: i64,
    /// Seconds from POST (harness clock, from the cell's origin).
    pub posted_at: f64,
    /// Seconds at the final poll.
    pub ended_at: f64,
    /// Time in the queue (server clock: created -> started).
    pub wait_secs: Option<f64>,
    /// Time running (server clock: started -> finished).
    pub run_secs: Option<f64>,
    /// Seconds from sending the POST to the import's start: the wait a user experiences, admission
    /// included. The start is the server's `started_at`, read on the same clock as the POST's
    /// sending (the harness runs the importer on its own machine); without one (an import that
    /// never started), the first poll that saw it no longer queued, to `POLL_EVERY`.
    #[serde(default)]
    pub client_wait_secs: Option<f64>,
    /// When the import started running (server clock).
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished (server clock).
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// When the POST was sent (the harness's wall clock, the server's too: one machine).
    #[serde(default)]
    pub posted_wall: Option<DateTime<Utc>>,
    /// When its first game was stored (the games' `imported_at`, read after the cell).
    #[serde(default)]
    pub first_game_at: Option<DateTime<Utc>>,
    /// Games the mock provider sent to this import's requests (read after the cell).
    #[serde(default)]
    pub games_received: Option<u64>,
    /// Seconds the import spent waiting for its provider (an outage, a broken stream), apart from
    /// its time in the queue: the job's `provider_wait_secs`, 0 from an importer without it.
    #[serde(default)]
    pub provider_wait_secs: f64,
    /// Polls that found the import `waiting_for_provider`.
    #[serde(default)]
    pub provider_wait_polls: u32,
    /// What the provider last answered, as the job said while it waited (`waiting_for_provider.last_answer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_last_answer: Option<String>,
}

impl ImportRecord {
    /// `user`'s import on `platform` before it is posted: nothing happened yet.
    pub fn new(user: String, platform: settings::Platform) -> ImportRecord {
        ImportRecord {
            user,
            platform,
            import_id: None,
            post_status: 0,
            admitted_as: String::new(),
            queue_position: 0,
            status: String::new(),
            error: None,
            games_fetched: 0,
            games_imported: 0,
            games_skipped_existing: 0,
            games_failed_parse: 0,
            posted_at: 0.0,
            ended_at: 0.0,
            wait_secs: None,
            run_secs: None,
            client_wait_secs: None,
            started_at: None,
            finished_at: None,
            posted_wall: None,
            first_game_at: None,
            games_received: None,
            provider_wait_secs: 0.0,
            provider_wait_polls: 0,
            provider_last_answer: None,
        }
    }

    /// Games received per game stored (1.00 is the floor: every game received was new).
    pub fn received_per_stored(&self) -> Option<f64> {
        let received = self.games_received? as f64;
        (self.games_imported > 0).then(|| received / self.games_imported as f64)
    }
}

/// The most imports running at once among `records`, from the server's start and finish times:
/// what a cell really measured, however many it asked for. An import without both times is not counted.
pub fn max_running(records: &[ImportRecord]) -> u32 {
    // In whole milliseconds, as the importer stores a start (a finish has more digits, and the
    // next import's start, truncated, could seem to precede it). Ends sort before starts at the
    // same millisecond: an import that starts as another ends ran after it.
    let ms = |t: DateTime<Utc>| t.timestamp_millis();
    let mut events: Vec<(i64, i32)> = records
        .iter()
        .filter_map(|r| Some([(ms(r.started_at?), 1), (ms(r.finished_at?), -1)]))
        .flatten()
        .collect();
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in events {
        now += step;
        most = most.max(now);
    }
    u32::try_from(most).unwrap_or(0)
}

/// A summary of goose's request metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RequestSummary {
    /// Request name (path pattern).
    pub name: String,
    /// Successful requests.
    pub ok: usize,
    /// Failed requests.
    pub failed: usize,
    /// Slowest, ms.
    pub max_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Median, ms (goose's buckets: within 0.8 %).
    #[serde(default)]
    pub p50_ms: f64,
    /// 95th percentile, ms.
    #[serde(default)]
    pub p95_ms: f64,
    /// 99th percentile, ms.
    #[serde(default)]
    pub p99_ms: f64,
}

/// What an attack returns.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadResult {
    /// One record per import.
    pub imports: Vec<ImportRecord>,
    /// Goose's view of the requests.
    pub requests: Vec<RequestSummary>,
}

/// Polls of an import that found no importer answering, in a row, before it is given up.
const UNREACHABLE_POLLS: u32 = 50;

/// Why the load could not be run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The load's own runtime could not be built.
    #[error("goose: cannot start the load runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The load's own thread could not be started.
    #[error("goose: cannot start the load thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The load's thread ended without an answer (it panicked).
    #[error("goose: the load thread died")]
    ThreadDied,
    /// No importer's base URL was given.
    #[error("goose: no importer to drive")]
    NoImporter,
    /// An attack panicked while holding the plan.
    #[error("goose: plan lock poisoned")]
    Poisoned,
    /// goose refused its configuration or its client.
    #[error("goose: {0}")]
    Setup(#[source] goose::GooseError),
    /// goose's attack failed (its `Debug`: its `Display` leaves the details out).
    #[error("goose: {0:?}")]
    Attack(#[source] goose::GooseError),
}

struct Plan {
    specs: Vec<ImportSpec>,
    bases: Vec<String>,
    origin: Instant,
    /// The attack's start, from which each spec's `delay` counts.
    start: Instant,
    deadline: Instant,
    poll_every: Duration,
    records: Mutex<Vec<ImportRecord>>,
    /// `API_TOKEN` of the importers, sent as a bearer token when set.
    token: Option<String>,
    /// Met by every import due at the start, each holding a connection it has opened, so that
    /// their POSTs leave together (see [`open_connection`]).
    burst: tokio::sync::Barrier,
}

static PLAN: Mutex<Option<Arc<Plan>>> = Mutex::new(None);
static ATTACK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn current_plan() -> Option<Arc<Plan>> {
    PLAN.lock().ok().and_then(|p| p.clone())
}

/// Adds `Authorization: Bearer <token>` when the importers require one.
fn with_token(req: reqwest::RequestBuilder, token: &Option<String>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
}

fn time_of(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()?.parse().ok()
}

fn secs_between(a: &Value, b: &Value) -> Option<f64> {
    let (a, b) = (time_of(a)?, time_of(b)?);
    Some((b - a).num_milliseconds() as f64 / 1000.0)
}

/// Status and JSON body of a response; status 0 and the transport error when there was none.
async fn json_of(resp: GooseResponse) -> (u16, Value, Option<String>) {
    match resp.response {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null), None)
        }
        Err(e) => (0, Value::Null, Some(e.to_string())),
    }
}

/// One goose user's import: wait for its arrival, post it, poll it to its end, record it.
async fn import_one(user: &mut GooseUser) -> TransactionResult {
    let Some(plan) = current_plan() else {
        return Ok(());
    };
    let Some(spec) = plan
        .specs
        .get(user.weighted_users_index % plan.specs.len().max(1))
        .cloned()
    else {
        return Ok(());
    };
    let base = spec.instance % plan.bases.len().max(1);
    arrive(user, &plan, &spec, base).await;
    let mut rec = ImportRecord {
        posted_at: plan.origin.elapsed().as_secs_f64(),
        posted_wall: Some(Utc::now()),
        ..ImportRecord::new(spec.user.clone(), spec.platform)
    };
    if let Some(id) = post(user, &plan, &spec, base, &mut rec).await? {
        poll_to_the_end(user, &plan, &id, base, &mut rec).await?;
    }
    rec.ended_at = plan.origin.elapsed().as_secs_f64();
    if let Ok(mut r) = plan.records.lock() {
        r.push(rec);
    }
    Ok(())
}

/// Waits until `spec` is due. The imports due at the start first open their connection and
/// meet, so that they post together rather than one connection set-up apart.
async fn arrive(user: &GooseUser, plan: &Plan, spec: &ImportSpec, base: usize) {
    if spec.delay.is_zero() {
        let opened = open_connection(user, &plan.bases[base]).await;
        // Bounded: a user that never arrives (none should) delays the others, never stops them.
        let _ = tokio::time::timeout(BURST_MEETING, plan.burst.wait()).await;
        if let Some(response) = opened {
            // Read to its end, the connection goes back to the pool for this user's POST.
            let _ = response.bytes().await;
        }
    }
    tokio::time::sleep_until((plan.start + spec.delay).into()).await;
}

/// Posts the import; its id when admitted, else `None` with the refusal in `rec`.
async fn post(
    user: &mut GooseUser,
    plan: &Plan,
    spec: &ImportSpec,
    base: usize,
    rec: &mut ImportRecord,
) -> Result<Option<String>, Box<goose::goose::TransactionError>> {
    let body = json!({"user_id": spec.user, "platform": spec.platform.as_str(), "limit": spec.limit});
    let post_url = format!("{}/api/v1/import-more-games", plan.bases[base]);
    let post = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path(post_url.as_str())
        .name("/api/v1/import-more-games")
        .set_request_builder(with_token(
            user.get_request_builder(&GooseMethod::Post, &post_url)?
                .json(&body),
            &plan.token,
        ))
        .build();
    let (status, admitted, transport) = json_of(user.request(post).await?).await;
    rec.post_status = status;
    rec.admitted_as = admitted["status"].as_str().unwrap_or_default().to_string();
    if rec.admitted_as == "running" {
        rec.client_wait_secs = Some(plan.origin.elapsed().as_secs_f64() - rec.posted_at);
    }
    rec.queue_position = admitted["queue_position"].as_u64().unwrap_or(0);
    let Some(id) = admitted["import_id"].as_str().map(str::to_string) else {
        rec.status = if status == 0 {
            "post failed".into()
        } else {
            format!("rejected ({status})")
        };
        rec.error = admitted["error"].as_str().map(str::to_string).or(transport);
        return Ok(None);
    };
    rec.import_id = Some(id.clone());
    Ok(Some(id))
}

/// Polls import `id` until it ends, the importers stop answering, or the plan's deadline.
async fn poll_to_the_end(
    user: &mut GooseUser,
    plan: &Plan,
    id: &str,
    mut base: usize,
    rec: &mut ImportRecord,
) -> TransactionResult {
    let mut unreachable = 0;
    let mut rng = Rng::new(0x9011_0000 ^ user.weighted_users_index as u64);
    loop {
        tokio::time::sleep(jittered(plan.poll_every, &mut rng)).await;
        let url = format!("{}/api/v1/imports/{id}", plan.bases[base]);
        let req = GooseRequest::builder()
            .path(url.as_str())
            .name("/api/v1/imports/{id}")
            .set_request_builder(with_token(
                user.get_request_builder(&GooseMethod::Get, &url)?,
                &plan.token,
            ))
            .build();
        let (code, job, _) = json_of(user.request(req).await?).await;
        // Any process on the shared database knows the import: when one stops answering
        // (killed, restarting), ask the next; when none answers for long, give up.
        if code == 0 {
            unreachable += 1;
            base = (base + 1) % plan.bases.len().max(1);
        } else {
            unreachable = 0;
        }
        let state = job["status"].as_str().unwrap_or_default();
        // Waiting for its provider, the import is neither done nor failed: keep polling.
        if state == "waiting_for_provider" {
            rec.provider_wait_polls += 1;
            if let Some(said) = job["waiting_for_provider"]["last_answer"].as_str() {
                rec.provider_last_answer = Some(said.to_string());
            }
        }
        if rec.client_wait_secs.is_none() && matches!(state, "running" | "completed" | "failed") {
            rec.client_wait_secs = Some(plan.origin.elapsed().as_secs_f64() - rec.posted_at);
        }
        let gone = unreachable >= UNREACHABLE_POLLS;
        if matches!(state, "completed" | "failed") || gone || Instant::now() > plan.deadline {
            rec.status = match state {
                "completed" | "failed" => state.to_string(),
                _ if gone => "importer unreachable".into(),
                _ => "timeout".into(),
            };
            rec.record_end(&job);
            return Ok(());
        }
    }
}

impl ImportRecord {
    /// What the import's last answer (`GET /api/v1/imports/{id}`, JSON) says of its end:
    /// counters, error, times; the wait the client saw is from its POST to the start.
    fn record_end(&mut self, job: &Value) {
        self.error = job["error"].as_str().map(str::to_string);
        self.games_fetched = job["games_fetched"].as_i64().unwrap_or(0);
        self.games_imported = job["games_imported"].as_i64().unwrap_or(0);
        self.games_skipped_existing = job["games_skipped_existing"].as_i64().unwrap_or(0);
        self.games_failed_parse = job["games_failed_parse"].as_i64().unwrap_or(0);
        // Absent from an importer that predates it (the gate builds the parent): no wait.
        self.provider_wait_secs = job["provider_wait_secs"].as_f64().unwrap_or(0.0);
        self.wait_secs = secs_between(&job["created_at"], &job["started_at"]);
        self.run_secs = secs_between(&job["started_at"], &job["finished_at"]);
        self.started_at = time_of(&job["started_at"]);
        self.finished_at = time_of(&job["finished_at"]);
        if let (Some(started), Some(posted)) = (self.started_at, self.posted_wall) {
            let waited = (started - posted).num_microseconds().unwrap_or(0) as f64 / 1e6;
            self.client_wait_secs = Some(waited.max(0.0));
        }
    }
}

/// Longest the imports due at the start wait for each other before posting.
const BURST_MEETING: Duration = Duration::from_secs(30);

/// Opens a connection to `base` for `user` (a `GET /healthz`, not counted in goose's metrics) and
/// returns the response unread, which keeps the connection checked out of the pool until it is
/// read.
///
/// Why: the attack runs on one thread, and a burst of 512 users each connecting as they post
/// measured the client, not the importer: each connection's completion waited behind every other
/// user's `connect` (512 connects took 110 ms, so every POST "took" 100-170 ms while the importer
/// answered within 50 ms of receiving it). A user's browser connects on a machine of its own;
/// here the connections are opened first, one per user, and the POSTs leave together.
async fn open_connection(user: &GooseUser, base: &str) -> Option<reqwest::Response> {
    user.client.get(format!("{base}/healthz")).send().await.ok()
}

/// `every` ± a quarter, uniformly: users who posted in the same millisecond must not poll in the
/// same millisecond for ever (without it, capacity-512's 512 users sent their GETs in 512-request
/// waves, one every 0.5 s, and those waves alone set the GET p99).
fn jittered(every: Duration, rng: &mut Rng) -> Duration {
    let quarter = every / 4;
    let range = u64::try_from(quarter.as_micros() * 2).unwrap_or(u64::MAX).max(1);
    every - quarter + Duration::from_micros(rng.below(range))
}

/// How often each user polls its import, on average. Users' waits come from the server's start times, not
/// from the polls; at 0.1 s, 512 users sent 5,000 GETs a second, more than the importer's one
/// API thread serves on a machine whose cores the imports saturate.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// Runs `attack` on a runtime and thread of its own, so that the clock of every request is read
/// by a client that the mocks' streaming (hundreds of streams, in this process) cannot delay: on
/// the harness's runtime, capacity-512's POSTs measured seconds that the importer had answered
/// in milliseconds.
async fn on_own_thread<T: Send + 'static>(
    attack: impl std::future::Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T, Error> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("load".into())
        .spawn(move || {
            let outcome = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(attack),
                Err(e) => Err(Error::Runtime(e)),
            };
            let _ = done.send(outcome);
        })
        .map_err(Error::Thread)?;
    result.await.unwrap_or_else(|_| Err(Error::ThreadDied))
}

/// Runs one attack: each import requested after its spec's delay, to the importer its spec
/// names among `bases`, and polled to its end.
/// `token`: the importers' `API_TOKEN`, sent with every request when set.
pub async fn run(
    bases: &[String],
    specs: Vec<ImportSpec>,
    origin: Instant,
    timeout: Duration,
    token: Option<&str>,
) -> Result<LoadResult, Error> {
    let _one_at_a_time = ATTACK.lock().await;
    let users = specs.len();
    let specs_at_start = specs.iter().filter(|s| s.delay.is_zero()).count();
    let Some(first) = bases.first() else {
        return Err(Error::NoImporter);
    };
    let plan = Arc::new(Plan {
        specs,
        bases: bases.to_vec(),
        origin,
        start: Instant::now(),
        deadline: Instant::now() + timeout,
        poll_every: POLL_EVERY,
        records: Mutex::new(Vec::new()),
        token: token.map(str::to_string),
        burst: tokio::sync::Barrier::new(specs_at_start),
    });
    *PLAN.lock().map_err(|_| Error::Poisoned)? = Some(Arc::clone(&plan));
    // Goose keeps some fields private, so the configuration is filled in place.
    let mut config = GooseConfiguration::default();
    config.host = Some(first.clone());
    config.users = Some(users);
    // Every user at once: the imports must overlap for memory per import to mean anything.
    config.increase_rate = Some(format!("{}", users.max(1) * 100));
    config.iterations = Some(1);
    config.quiet = 1;
    config.no_print_metrics = true;
    config.no_error_summary = true;
    config.no_telnet = true;
    // Under hundreds of imports a POST can wait long for a database connection; the cell timeout bounds it.
    config.timeout = Some(timeout.as_secs().max(30).to_string());
    let quiet = QuietStdout::new();
    let metrics = on_own_thread(async move {
        GooseAttack::initialize_with_config(config)
            .map_err(Error::Setup)?
            // One client for every user: built once (a client reads the system's certificates, 3 ms
            // each, 1.5 s of CPU for 512 users), its pool holds each user's connection.
            .set_client_builder_without_cookies(GooseClientBuilder::new().without_cookies())
            .map_err(Error::Setup)?
            .register_scenario(scenario!("import").register_transaction(transaction!(import_one)))
            .execute()
            .await
            .map_err(Error::Attack)
    })
    .await;
    drop(quiet);
    *PLAN.lock().map_err(|_| Error::Poisoned)? = None;
    let metrics = metrics?;
    let mut requests: Vec<RequestSummary> = metrics
        .requests
        .iter()
        .map(|(name, agg)| RequestSummary {
            name: name.clone(),
            ok: agg.success_count,
            failed: agg.fail_count,
            max_ms: agg.raw_data.maximum_time_us as f64 / 1000.0,
            mean_ms: if agg.raw_data.counter > 0 {
                agg.raw_data.total_time_us as f64 / 1000.0 / agg.raw_data.counter as f64
            } else {
                0.0
            },
            p50_ms: agg.raw_data.percentile_us(0.50) as f64 / 1000.0,
            p95_ms: agg.raw_data.percentile_us(0.95) as f64 / 1000.0,
            p99_ms: agg.raw_data.percentile_us(0.99) as f64 / 1000.0,
        })
        .collect();
    requests.sort_by(|a, b| a.name.cmp(&b.name));
    let mut imports = plan.records.lock().map(|r| r.clone()).unwrap_or_default();
    imports.sort_by(|a, b| a.user.cmp(&b.user));
    Ok(LoadResult { imports, requests })
}

/// Set by the command line: goose's own prints leave stdout alone.
static QUIET_GOOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Keeps goose off this process's stdout from now on: goose 0.19 prints "N users launched." there
/// whatever its configuration (`quiet`, `no_print_metrics`: its metrics.rs), once per cell. For the
/// command line only: a test binary's stdout is the test runner's, and is left as it is.
pub fn quiet_goose() {
    QUIET_GOOSE.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// While alive (and [`quiet_goose`] was called), file descriptor 1 points at /dev/null; the
/// harness itself writes nothing to stdout during an attack (progress goes to stderr).
struct QuietStdout {
    saved: Option<std::os::fd::OwnedFd>,
}

impl QuietStdout {
    fn new() -> QuietStdout {
        use std::os::fd::{AsRawFd, FromRawFd};
        if !QUIET_GOOSE.load(std::sync::atomic::Ordering::Relaxed) {
            return QuietStdout { saved: None };
        }
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
            return QuietStdout { saved: None };
        };
        // SAFETY: dup and dup2 on descriptors this process owns; the saved copy is owned here.
        let saved = unsafe { libc::dup(1) };
        if saved < 0 || unsafe { libc::dup2(null.as_raw_fd(), 1) } < 0 {
            return QuietStdout { saved: None };
        }
        QuietStdout {
            saved: Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(saved) }),
        }
    }
}

impl Drop for QuietStdout {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        if let Some(saved) = &self.saved {
            let _ = std::io::Write::flush(&mut std::io::stdout());
            // SAFETY: puts back the descriptor saved in `new`.
            unsafe { libc::dup2(saved.as_raw_fd(), 1) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unposted() -> ImportRecord {
        ImportRecord::new("u".into(), settings::Platform::Lichess)
    }

    fn ran(from_ms: i64, to_ms: i64) -> ImportRecord {
        let at = |ms| DateTime::<Utc>::from_timestamp_millis(ms);
        ImportRecord {
            started_at: at(from_ms),
            finished_at: at(to_ms),
            ..unposted()
        }
    }

    #[test]
    fn polls_are_spread_around_their_period() {
        let every = Duration::from_millis(500);
        let mut rng = Rng::new(7);
        let gaps: Vec<Duration> = (0..2000).map(|_| jittered(every, &mut rng)).collect();
        assert!(
            gaps.iter().all(|g| (375..625).contains(&g.as_millis())),
            "within ± a quarter"
        );
        let mean = gaps.iter().sum::<Duration>() / 2000;
        assert!(mean.abs_diff(every) < Duration::from_millis(10), "mean {mean:?}");
        let early = gaps.iter().filter(|g| g.as_millis() < 437).count();
        assert!(
            (350..650).contains(&early),
            "the first quarter of the range holds {early} of 2000"
        );
    }

    #[test]
    fn the_provider_wait_is_read_and_missing_is_none() {
        let mut rec = unposted();
        rec.record_end(&json!({"status": "completed", "provider_wait_secs": 31.5}));
        assert_eq!(rec.provider_wait_secs, 31.5);
        rec.record_end(&json!({"status": "completed"}));
        assert_eq!(rec.provider_wait_secs, 0.0, "an older importer's job");
    }

    #[test]
    fn max_running_counts_overlaps_not_requests() {
        // One after another, touching: one at a time.
        assert_eq!(max_running(&[ran(0, 10), ran(10, 20), ran(20, 30)]), 1);
        // A finish with microseconds, the next start truncated to the same millisecond: after it.
        let finish = DateTime::<Utc>::from_timestamp_micros(10_400);
        let end = ImportRecord {
            finished_at: finish,
            ..ran(0, 0)
        };
        assert_eq!(max_running(&[end, ran(10, 20)]), 1);
        // Two overlap, the third after both.
        assert_eq!(max_running(&[ran(0, 10), ran(5, 15), ran(16, 20)]), 2);
        assert_eq!(max_running(&[ran(0, 30), ran(1, 29), ran(2, 28), ran(3, 4)]), 4);
        // Never started: not counted.
        assert_eq!(max_running(&[ran(0, 10), unposted()]), 1);
        assert_eq!(max_running(&[]), 0);
    }
}
