//! Admission and slots: at most `MAX_CONCURRENT_IMPORTS` imports run in this
//! process; the rest wait, first come, first served, in a queue that lives in
//! the database and that every process on it shares.
//!
//! A slot takes the oldest queued job whose provider has a free lane
//! (`LICHESS_MAX_STREAMS`, `CHESSCOM_MAX_REQUESTS`), so a slot is never held by
//! an import that waits for its provider. A process claims when it has a free slot (at once on
//! a local submission or a finished import, otherwise every `JOB_POLL_MILLIS`),
//! and holds it by a lease it renews; a job whose owner stopped renewing is
//! claimed again by whoever looks next. Every write of a running import is
//! guarded by its owner, so a process that lost a job writes nothing more for it.
//! What this module keeps in memory is only the set of jobs it runs.
//!
//! The scheduler's own tasks (admission, claiming, renewal, each import's start and end) run on
//! the runtime that serves the API; only the imports themselves run on `imports`, so that neither
//! a request nor a claim waits in a run queue behind hundreds of imports parsing PGN.
//!
//! Submissions are admitted by one task, in groups: every request that arrived while the previous
//! group was being admitted is recorded, positioned and, where a slot and a lane are free, started,
//! in one queue transaction (`store::QueueTx`). A burst of 512 requests costs a few commits, not
//! 512 one after the other, and each request's answer is as exact as if it had come alone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::config::LanesScope;
use crate::job::{Counters, Job, JobStatus, Platform};
use crate::metrics::{ImportOutcome, Load};
use crate::pipeline::{ImportContext, ImportError, ImportFailure, run_import};
use crate::store::{ClaimLanes, Deferral, Lanes, QueueTx, StoreError};
use crate::upstream::UpstreamError;

/// Most submissions admitted in one transaction.
const ADMISSION_GROUP: usize = 256;

/// The shortest wait of an import put back for its provider, whatever its provider's cool-down.
const MIN_PROVIDER_WAIT: Duration = Duration::from_secs(1);

/// How an import's task ended, as the scheduler records it.
#[derive(Debug)]
enum Ending {
    /// Completed or failed. `counters` `None`: the task died (a panic), and the counters its
    /// committed batches wrote with them stand.
    End {
        status: JobStatus,
        counters: Option<Counters>,
        error: Option<String>,
    },
    /// Its provider's bad day: the import waits in the queue, or fails once it waited too long.
    Trouble {
        platform: Platform,
        source: UpstreamError,
        counters: Counters,
    },
    /// The process stops: back in the queue with its counters.
    Interrupted(Counters),
    /// Another process took it over: nothing more is written here.
    TakenOver,
}

/// What a joined import task came to.
fn ending_of(joined: Result<Result<Counters, ImportFailure>, tokio::task::JoinError>) -> Ending {
    match joined {
        Ok(Ok(c)) => Ending::End {
            status: JobStatus::Completed,
            counters: Some(c),
            error: None,
        },
        Ok(Err(ImportFailure {
            error: ImportError::ProviderTrouble { platform, source },
            counters,
        })) => Ending::Trouble {
            platform,
            source,
            counters,
        },
        Ok(Err(ImportFailure {
            error: ImportError::Interrupted,
            counters,
        })) => Ending::Interrupted(counters),
        Ok(Err(ImportFailure {
            error: ImportError::Store(StoreError::LeaseLost(_)),
            ..
        })) => Ending::TakenOver,
        Ok(Err(ImportFailure { error, counters })) => Ending::End {
            status: JobStatus::Failed,
            counters: Some(counters),
            error: Some(error.to_string()),
        },
        Err(_) => Ending::End {
            status: JobStatus::Failed,
            counters: None,
            error: Some("internal error".to_string()),
        },
    }
}

/// What became of an import that met its provider's bad day.
enum Deferred {
    /// Back in the queue until its provider's wait ends.
    Waiting,
    /// Its provider brought nothing new for too long: the job's error.
    TooLong(String),
}

/// A submission waiting for the admitting task.
struct Request {
    user: String,
    platform: Platform,
    limit: i64,
    reply: oneshot::Sender<Result<Admission, StoreError>>,
}

/// What a submission came to.
#[derive(Debug)]
pub enum Admission {
    /// A new job, running (position 0) or queued at `position` (1 = next).
    Accepted {
        /// The job.
        job: Box<Job>,
        /// Place in the queue; 0 when running.
        position: usize,
    },
    /// The user already has an import queued or running: that one.
    Existing {
        /// Its id.
        import_id: String,
    },
    /// No slot and no room in the queue.
    QueueFull,
    /// The process is stopping and takes no new import.
    ShuttingDown,
}

#[derive(Default)]
struct State {
    stopping: bool,
    /// The jobs this process runs, by id.
    running: HashMap<String, Platform>,
}

/// The slot keeper.
pub struct Scheduler {
    ctx: Arc<ImportContext>,
    /// The runtime the imports run on.
    imports: tokio::runtime::Handle,
    stop: tokio::sync::watch::Sender<bool>,
    state: Mutex<State>,
    max: usize,
    capacity: usize,
    requests: mpsc::Sender<Request>,
    /// The admitting task's end of `requests`, until `start` hands it over.
    inbox: std::sync::Mutex<Option<mpsc::Receiver<Request>>>,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Now, in whole milliseconds: the precision of a claim's `started_at`, so that an import that
/// starts when another finishes never seems to have started first.
fn now_to_ms() -> chrono::DateTime<Utc> {
    chrono::DateTime::from_timestamp_millis(now_ms()).unwrap_or_else(Utc::now)
}

impl Scheduler {
    /// A scheduler with the context's limits; `stop` is the sender of the context's `stopping`;
    /// imports run on `imports`, everything else on the runtime that calls [`Scheduler::start`].
    pub fn new(
        ctx: Arc<ImportContext>,
        stop: tokio::sync::watch::Sender<bool>,
        imports: tokio::runtime::Handle,
    ) -> Arc<Scheduler> {
        let (max, capacity) = (
            ctx.config.queue.max_concurrent_imports,
            ctx.config.queue.import_queue_capacity,
        );
        let (requests, inbox) = mpsc::channel(4 * ADMISSION_GROUP);
        Arc::new(Scheduler {
            ctx,
            imports,
            stop,
            state: Mutex::new(State::default()),
            max,
            capacity,
            requests,
            inbox: std::sync::Mutex::new(Some(inbox)),
        })
    }

    fn owner(&self) -> &str {
        &self.ctx.config.queue.instance_id
    }

    fn lease_until(&self) -> i64 {
        now_ms() + i64::try_from(self.ctx.config.queue.job_lease.as_millis()).unwrap_or(i64::MAX / 2)
    }

    /// Takes back what a previous run left, then claims queued jobs and keeps looking and renewing.
    ///
    /// On SQLite the process is the only one on its file, so every job left
    /// running is its own; on PostgreSQL only those of the same `INSTANCE_ID`
    /// are, and the others are taken over when their lease expires.
    pub async fn start(self: &Arc<Self>) -> Result<(), StoreError> {
        let only_process = self.ctx.store.is_sqlite();
        let back = self
            .ctx
            .store
            .requeue_running((!only_process).then_some(self.owner()))
            .await?;
        if back > 0 {
            tracing::info!(
                imports = back,
                "imports left running by a previous run are queued again"
            );
        }
        self.fill(&mut *self.state.lock().await).await;
        let inbox = self.inbox.lock().ok().and_then(|mut i| i.take());
        if let Some(inbox) = inbox {
            let this = Arc::clone(self);
            tokio::spawn(async move { this.keep_admitting(inbox).await });
        }
        let this = Arc::clone(self);
        tokio::spawn(async move { this.keep_claiming().await });
        let this = Arc::clone(self);
        tokio::spawn(async move { this.keep_renewing().await });
        if let Some(retention) = self.ctx.config.queue.job_retention {
            let (store, stopping) = (self.ctx.store.clone(), self.ctx.stopping.clone());
            tokio::spawn(crate::retention::keep_pruning(store, retention, stopping));
        }
        Ok(())
    }

    async fn keep_claiming(self: Arc<Self>) {
        let mut stopping = self.ctx.stopping.clone();
        loop {
            tokio::select! {
                _ = stopping.changed() => return,
                () = tokio::time::sleep(self.ctx.config.queue.job_poll) => {}
            }
            let mut state = self.state.lock().await;
            if state.stopping {
                return;
            }
            self.fill(&mut state).await;
        }
    }

    /// Renews this process's leases three times per lease, until the process stops.
    ///
    /// Never waits for the scheduler's lock: a claim round holding it while every import's writes
    /// are ahead of it for a database connection must not delay a renewal past the lease (with 256
    /// imports on SQLite that took imports away from their own process).
    async fn keep_renewing(self: Arc<Self>) {
        let every = self.ctx.config.queue.job_lease / 3;
        loop {
            tokio::time::sleep(every).await;
            match self
                .ctx
                .store
                .renew_leases(self.owner(), self.lease_until())
                .await
            {
                Ok(kept) => {
                    if kept.is_empty() && *self.ctx.stopping.borrow() {
                        return;
                    }
                }
                // Stopping: the pool closes once the last import has committed; nothing is left to renew.
                Err(_) if *self.ctx.stopping.borrow() => return,
                Err(e) => tracing::warn!(error = %e, "cannot renew import leases; retrying"),
            }
        }
    }

    /// The lanes a claim may use now: free ones of this process, or the shared limits; none of a
    /// provider that cools down (after a 429, or between tries during an outage), whose imports
    /// would only hold a slot while they wait.
    fn claim_lanes(&self, state: &State) -> ClaimLanes {
        let lanes = |p| {
            if self.ctx.client.cooling(p) {
                0
            } else {
                u32::try_from(self.ctx.config.upstream.lanes(p)).unwrap_or(u32::MAX)
            }
        };
        match self.ctx.config.queue.lanes_scope {
            LanesScope::Database => ClaimLanes::Shared(Lanes::from_fn(lanes)),
            LanesScope::Process => ClaimLanes::Free(Lanes::from_fn(|p| {
                let running = state.running.values().filter(|r| **r == p).count();
                lanes(p).saturating_sub(u32::try_from(running).unwrap_or(u32::MAX))
            })),
        }
    }

    /// Whether a job of `platform` just queued could start now: a slot is free, and its lane is
    /// (or lanes are shared, and only the claim statement can tell).
    fn may_start(&self, state: &State, platform: Platform) -> bool {
        if state.stopping || state.running.len() >= self.max {
            return false;
        }
        match self.claim_lanes(state) {
            ClaimLanes::Shared(..) => true,
            ClaimLanes::Free(free) => free.of(platform) > 0,
        }
    }

    /// Claims, in `tx`, queued jobs while a slot is free, each only where its provider has a free
    /// lane: no slot is ever held by an import waiting for a lane. Claimed jobs are counted as
    /// running at once and pushed to `started`; the caller starts them once `tx` has committed.
    async fn claim_into(
        &self,
        tx: &mut QueueTx<'_>,
        state: &mut State,
        started: &mut Vec<Job>,
    ) -> Result<(), StoreError> {
        while !state.stopping && state.running.len() < self.max {
            if self.no_free_lane(state) {
                break;
            }
            let lanes = self.claim_lanes(state);
            match tx
                .claim(self.owner(), now_ms(), self.lease_until(), lanes)
                .await?
            {
                Some(job) => {
                    state.running.insert(job.import_id.clone(), job.platform);
                    started.push(job);
                }
                None => break,
            }
        }
        Ok(())
    }

    /// Starts what `claim_into` claimed, once its transaction has committed.
    fn start_claimed(self: &Arc<Self>, state: &State, started: Vec<Job>) {
        let free = self.max - state.running.len();
        for job in started {
            self.spawn(job, free);
        }
    }

    /// Forgets the jobs of a transaction that did not commit: they are still queued.
    fn unclaim(state: &mut State, started: &[Job]) {
        for job in started {
            state.running.remove(&job.import_id);
        }
    }

    /// Whether this process's lanes are all taken (never with shared lanes: the claim statement
    /// counts those).
    fn no_free_lane(&self, state: &State) -> bool {
        matches!(self.claim_lanes(state), ClaimLanes::Free(free) if free == Lanes::default())
    }

    /// Claims queued jobs while a slot and a lane are free, and starts them; returns how many.
    async fn fill(self: &Arc<Self>, state: &mut State) -> usize {
        // Nothing to claim: no transaction to open.
        if state.stopping || state.running.len() >= self.max || self.no_free_lane(state) {
            return 0;
        }
        let mut started = Vec::new();
        let round = async {
            let mut tx = self.ctx.store.begin_queue().await?;
            self.claim_into(&mut tx, state, &mut started).await?;
            tx.commit().await
        };
        if let Err(e) = round.await {
            Self::unclaim(state, &started);
            tracing::warn!(error = %e, "cannot claim a queued import; retrying later");
            return 0;
        }
        let count = started.len();
        self.start_claimed(state, started);
        count
    }

    /// Records a new import for `user` and runs or queues it.
    ///
    /// Answered by the admitting task (see the module's docs) once the import is recorded.
    pub async fn submit(
        self: &Arc<Self>,
        user: String,
        platform: Platform,
        limit: i64,
    ) -> Result<Admission, StoreError> {
        if *self.ctx.stopping.borrow() {
            return Ok(Admission::ShuttingDown);
        }
        let (reply, answer) = oneshot::channel();
        let request = Request {
            user,
            platform,
            limit,
            reply,
        };
        if self.requests.send(request).await.is_err() {
            return Ok(Admission::ShuttingDown);
        }
        // The admitting task ends only with the process.
        answer.await.unwrap_or(Ok(Admission::ShuttingDown))
    }

    async fn keep_admitting(self: Arc<Self>, mut inbox: mpsc::Receiver<Request>) {
        while let Some(first) = inbox.recv().await {
            let mut group = vec![first];
            while group.len() < ADMISSION_GROUP {
                match inbox.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            self.admit(group).await;
        }
    }

    /// Admits a group of submissions in one transaction and answers each.
    async fn admit(self: &Arc<Self>, group: Vec<Request>) {
        let mut state = self.state.lock().await;
        if state.stopping {
            for request in group {
                let _ = request.reply.send(Ok(Admission::ShuttingDown));
            }
            return;
        }
        let mut started = Vec::new();
        let began = std::time::Instant::now();
        match self.admit_in_tx(&mut state, &group, &mut started).await {
            Ok(answers) => {
                tracing::debug!(
                    requests = group.len(),
                    started = started.len(),
                    ms = began.elapsed().as_secs_f64() * 1e3,
                    "admitted"
                );
                self.start_claimed(&state, started);
                for (request, answer) in group.into_iter().zip(answers) {
                    let _ = request.reply.send(Ok(answer));
                }
            }
            Err(e) => {
                Self::unclaim(&mut state, &started);
                tracing::warn!(error = %e, requests = group.len(), "cannot admit imports");
                let e = Arc::new(e);
                for request in group {
                    let _ = request.reply.send(Err(StoreError::Group(Arc::clone(&e))));
                }
            }
        }
    }

    /// Decides each request in turn as if it had come alone (the user's active import; a start
    /// where a slot and the provider's lane are free; else the queue's capacity, which counts every
    /// import waiting, for a slot, a lane or its provider), then records the group in one
    /// statement and positions what waits. With shared lanes only the claim statement knows what
    /// starts: the group is recorded, claimed, and its newest that overflow the queue removed.
    ///
    /// In one transaction of a handful of statements whatever the group's size: a burst of 512
    /// requests used to cost three statements each, one request after the other.
    async fn admit_in_tx(
        &self,
        state: &mut State,
        group: &[Request],
        started: &mut Vec<Job>,
    ) -> Result<Vec<Admission>, StoreError> {
        let mut tx = self.ctx.store.begin_queue().await?;
        tx.lock_submissions().await?;
        // Older jobs first: one queued through another process, or left by a failed claim, may
        // be startable here. Once they are claimed, and while this transaction holds the
        // submissions' lock, a new job that can start is the oldest that can.
        self.claim_into(&mut tx, state, started).await?;
        let users: Vec<(&str, Platform)> = group.iter().map(|r| (r.user.as_str(), r.platform)).collect();
        let mut active = tx.active_among(&users).await?;
        let mut queued = tx.queued_count().await?;
        // Shared lanes are counted by the claim statement, across processes: whether a new job
        // starts is known only after it, and the queue's bound is applied then.
        let shared = matches!(self.claim_lanes(state), ClaimLanes::Shared(..));
        let capacity = i64::try_from(self.capacity).unwrap_or(i64::MAX);
        let mut answers = Vec::with_capacity(group.len());
        let mut recorded = Vec::new();
        for request in group {
            let key = (request.user.clone(), request.platform);
            if let Some(import_id) = active.get(&key) {
                answers.push(Admission::Existing {
                    import_id: import_id.clone(),
                });
                continue;
            }
            // A job that cannot start now waits, for a slot, a lane or its provider: the queue's
            // bound counts it whatever keeps it waiting.
            let starts = !shared && self.may_start(state, request.platform);
            if !shared && !starts && queued >= capacity {
                answers.push(Admission::QueueFull);
                continue;
            }
            let mut job = Job::queued(&request.user, request.platform, request.limit);
            active.insert(key, job.import_id.clone());
            // Anything older that could start has started, so this job is the one a slot takes.
            if starts {
                job.status = JobStatus::Running;
                job.started_at = Some(now_to_ms());
                state.running.insert(job.import_id.clone(), job.platform);
                started.push(job.clone());
            } else if !shared {
                queued += 1;
            }
            answers.push(Admission::Accepted {
                job: Box::new(job.clone()),
                position: 0,
            });
            recorded.push(job);
        }
        // Recorded before any runs, so a crash right after leaves resumable jobs.
        tx.insert_jobs(&recorded, self.owner(), self.lease_until())
            .await?;
        if shared {
            self.claim_into(&mut tx, state, started).await?;
        }
        let running: HashSet<&str> = started.iter().map(|j| j.import_id.as_str()).collect();
        let mut waiting: Vec<&str> = recorded
            .iter()
            .map(|j| j.import_id.as_str())
            .filter(|id| !running.contains(id))
            .collect();
        let mut refused = HashSet::new();
        if shared {
            // The newest of this group that the queue has no room for are not recorded after all.
            let over = tx.queued_count().await?.saturating_sub(capacity);
            let over = usize::try_from(over).unwrap_or(0).min(waiting.len());
            let kept = waiting.len() - over;
            refused.extend(waiting.split_off(kept).into_iter().map(str::to_string));
            let ids: Vec<&str> = refused.iter().map(String::as_str).collect();
            tx.delete_queued(&ids).await?;
        }
        let positions = tx.queue_positions(&waiting).await?;
        tx.commit().await?;
        for answer in &mut answers {
            if let Admission::Accepted { job, .. } = answer
                && refused.contains(&job.import_id)
            {
                *answer = Admission::QueueFull;
            }
            if let Admission::Accepted { job, position } = answer {
                if running.contains(job.import_id.as_str()) {
                    job.status = JobStatus::Running;
                } else {
                    *position = positions
                        .get(&job.import_id)
                        .and_then(|p| usize::try_from(*p).ok())
                        .unwrap_or_default();
                }
            }
        }
        Ok(answers)
    }

    /// Stops taking imports and tells running ones to commit and stop.
    pub async fn begin_shutdown(&self) {
        let mut state = self.state.lock().await;
        state.stopping = true;
        let _ = self.stop.send(true);
        tracing::info!(
            running = state.running.len(),
            "shutting down: no new imports, running ones commit and stop"
        );
    }

    /// Waits until no import runs, at most `timeout`; says whether they all stopped.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.state.lock().await.running.is_empty() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process is stopping.
    pub fn is_stopping(&self) -> bool {
        *self.ctx.stopping.borrow()
    }

    /// The imports running here, and queued across every process, now.
    pub async fn load(&self) -> Result<Load, StoreError> {
        let running = self.state.lock().await.running.len();
        let count = |n: i64| usize::try_from(n).unwrap_or(0);
        let queue = self.ctx.store.queue_load(now_ms()).await?;
        Ok(Load {
            running,
            queued: count(queue.queued),
            waiting_for_lichess: count(queue.waiting_for_lichess),
            waiting_for_chess_com: count(queue.waiting_for_chess_com),
        })
    }

    fn spawn(self: &Arc<Self>, job: Job, free: usize) {
        tracing::info!(import_id = %job.import_id, user = %job.user_id, platform = job.platform.as_str(),
            resumed = job.counters.games_fetched > 0,
            "starting import (available slots: {free}/{})", self.max);
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let id = job.import_id.clone();
            this.run(job).await;
            this.release(&id).await;
        });
    }

    /// Runs one import on the imports' runtime and records how it ended.
    async fn run(&self, job: Job) {
        let started = std::time::Instant::now();
        let worker = {
            let (ctx, job) = (Arc::clone(&self.ctx), job.clone());
            // A task of its own, so that even a panic frees its slot.
            self.imports.spawn(async move { run_import(&ctx, &job).await })
        };
        let (status, counters, error) = match ending_of(worker.await) {
            Ending::End {
                status,
                counters,
                error,
            } => {
                if counters.is_none() {
                    tracing::error!(import_id = %job.import_id, "import task died (panicked); its committed batches stand");
                }
                (status, counters, error)
            }
            Ending::Trouble {
                platform,
                source,
                counters,
            } => match self.defer(&job, platform, &source, &counters).await {
                Deferred::Waiting => return,
                Deferred::TooLong(error) => (JobStatus::Failed, Some(counters), Some(error)),
            },
            Ending::Interrupted(c) => {
                tracing::info!(import_id = %job.import_id, imported = c.games_imported, "import interrupted by shutdown; resumable");
                if let Err(e) = self.ctx.store.requeue_job(&job.import_id, self.owner(), &c).await {
                    tracing::error!(import_id = %job.import_id, error = %e, "cannot leave the import resumable");
                }
                return;
            }
            Ending::TakenOver => {
                tracing::warn!(import_id = %job.import_id, "import taken over by another process; stopping it here");
                return;
            }
        };
        // A task that died has no counters of its own: those its committed batches wrote, read once
        // for the log and the metrics (the end keeps them in the store).
        let shown = match counters {
            Some(c) => c,
            None => self
                .ctx
                .store
                .job_with_position(&job.import_id)
                .await
                .ok()
                .flatten()
                .map_or_else(Counters::default, |placed| placed.job.counters),
        };
        tracing::info!(
            import_id = %job.import_id, user = %job.user_id, platform = job.platform.as_str(),
            status = status.as_str(), fetched = shown.games_fetched, imported = shown.games_imported,
            skipped_existing = shown.games_skipped_existing, failed_parse = shown.games_failed_parse,
            secs = started.elapsed().as_secs_f64(), error = error.as_deref().unwrap_or(""),
            "import finished"
        );
        let finished = now_to_ms();
        let secs = |from: chrono::DateTime<Utc>, to: chrono::DateTime<Utc>| {
            (to - from).num_milliseconds() as f64 / 1000.0
        };
        // Observed once the end is recorded: an end that is not is taken over and ends again.
        // Retried as a batch is: an end lost with its connection (a database restarting) left the
        // job `running` for good, since this process renews every running job it owns.
        let end = crate::pipeline::with_retry(&job.import_id, "recording the end", || {
            self.ctx.store.finish_job(
                &job.import_id,
                self.owner(),
                status,
                counters.as_ref(),
                error.as_deref(),
                finished,
            )
        });
        match end.await {
            Ok(()) => {
                let count = |n: i64| u64::try_from(n).unwrap_or(0);
                self.ctx.metrics.import_finished(&ImportOutcome {
                    platform: job.platform,
                    wait_secs: job.started_at.map_or(0.0, |s| secs(job.created_at, s)),
                    run_secs: job
                        .started_at
                        .map_or_else(|| started.elapsed().as_secs_f64(), |s| secs(s, finished)),
                    imported: count(shown.games_imported),
                    skipped_existing: count(shown.games_skipped_existing),
                    failed_parse: count(shown.games_failed_parse),
                });
            }
            Err(e) => {
                tracing::error!(import_id = %job.import_id, error = %e, "cannot record the end of an import");
            }
        }
    }

    /// Puts an import that met its provider's bad day back in the queue until the provider's
    /// cool-down ends, its slot and lane free meanwhile; or, once its provider has brought nothing
    /// new for `UPSTREAM_OUTAGE_MAX_SECS`, says why it fails.
    async fn defer(
        &self,
        job: &Job,
        platform: Platform,
        source: &UpstreamError,
        counters: &Counters,
    ) -> Deferred {
        let now = now_ms();
        // Games received in this run are progress: the provider's silence starts again now.
        let progressed = counters.games_fetched > job.counters.games_fetched;
        let since = match job.provider_wait_since {
            Some(since) if !progressed => since,
            _ => now,
        };
        let bound = i64::try_from(self.ctx.config.queue.outage_max.as_millis()).unwrap_or(i64::MAX / 2);
        let last_answer = source.to_string();
        if now - since >= bound {
            let at = chrono::DateTime::from_timestamp_millis(since).unwrap_or_else(Utc::now);
            return Deferred::TooLong(format!(
                "{} brought nothing new for {} s (since {}; UPSTREAM_OUTAGE_MAX_SECS={}); its last answer: {last_answer}",
                platform.as_str(),
                (now - since) / 1000,
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                self.ctx.config.queue.outage_max.as_secs()
            ));
        }
        let wait = self.ctx.client.cooling_for(platform).max(MIN_PROVIDER_WAIT);
        let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
        // The last try comes at the bound, not after it.
        let not_before = now.saturating_add(wait_ms).min(since + bound);
        let deferral = Deferral {
            now_ms: now,
            not_before_ms: not_before,
            since_ms: since,
            last_answer,
        };
        let deferred =
            crate::pipeline::with_retry(&job.import_id, "putting the import back in the queue", || {
                self.ctx
                    .store
                    .defer_job(&job.import_id, self.owner(), counters, &deferral)
            });
        match deferred.await {
            Ok(()) => {
                self.ctx.metrics.provider_wait(platform);
                tracing::warn!(import_id = %job.import_id, user = %job.user_id, platform = platform.as_str(),
                    wait_secs = (not_before - now) as f64 / 1000.0, waiting_secs = (now - since) / 1000,
                    imported = counters.games_imported, answer = %deferral.last_answer,
                    "import waits for its provider in the queue");
                Deferred::Waiting
            }
            Err(e) => {
                // Still running in the store: a restart, or another process once the lease expires, resumes it.
                tracing::error!(import_id = %job.import_id, error = %e, "cannot put the import back in the queue");
                Deferred::Waiting
            }
        }
    }

    async fn release(self: &Arc<Self>, import_id: &str) {
        let mut state = self.state.lock().await;
        state.running.remove(import_id);
        if state.stopping {
            return;
        }
        if self.fill(&mut state).await == 0 {
            tracing::info!(
                "import slot freed (available slots: {}/{})",
                self.max - state.running.len(),
                self.max
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicked_import_keeps_the_counters_its_batches_wrote() {
        let joined = tokio::spawn(async {
            let batches_written = 3;
            if batches_written > 0 {
                panic!("an import panics after its third batch");
            }
            Ok(Counters::default())
        })
        .await;
        assert!(joined.as_ref().is_err_and(|e| e.is_panic()));
        match ending_of(joined) {
            Ending::End {
                status,
                counters,
                error,
            } => {
                assert_eq!(status, JobStatus::Failed);
                assert_eq!(counters, None, "the store keeps what the batches wrote");
                assert_eq!(error.as_deref(), Some("internal error"));
            }
            other => panic!("a panic ends the job: {other:?}"),
        }
    }
}
