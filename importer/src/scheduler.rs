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
use crate::metrics::ImportOutcome;
use crate::pipeline::{ImportContext, ImportError, run_import};
use crate::store::{ClaimLanes, Lanes, QueueTx, StoreError};

/// Most submissions admitted in one transaction.
const ADMISSION_GROUP: usize = 256;

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
        job: Job,
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
            ctx.config.max_concurrent_imports,
            ctx.config.import_queue_capacity,
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
        &self.ctx.config.instance_id
    }

    fn lease_until(&self) -> i64 {
        now_ms() + i64::try_from(self.ctx.config.job_lease.as_millis()).unwrap_or(i64::MAX / 2)
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
        if let Some(retention) = self.ctx.config.job_retention {
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
                () = tokio::time::sleep(self.ctx.config.job_poll) => {}
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
        let every = self.ctx.config.job_lease / 3;
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

    /// The lanes a claim may use now: free ones of this process, or the shared limits.
    fn claim_lanes(&self, state: &State) -> ClaimLanes {
        let lanes = |p| i64::try_from(self.ctx.config.lanes(p)).unwrap_or(i64::MAX);
        match self.ctx.config.lanes_scope {
            LanesScope::Database => ClaimLanes::Shared(Lanes {
                lichess: lanes(Platform::Lichess),
                chess_com: lanes(Platform::ChessCom),
            }),
            LanesScope::Process => {
                let free = |p| {
                    let running = state.running.values().filter(|r| **r == p).count();
                    lanes(p) - i64::try_from(running).unwrap_or(i64::MAX)
                };
                ClaimLanes::Free(Lanes {
                    lichess: free(Platform::Lichess),
                    chess_com: free(Platform::ChessCom),
                })
            }
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
            ClaimLanes::Free(free) => match platform {
                Platform::Lichess => free.lichess > 0,
                Platform::ChessCom => free.chess_com > 0,
            },
        }
    }

    /// Claims, in `tx`, at most `most` queued jobs while a slot is free, each only where its
    /// provider has a free lane: no slot is ever held by an import waiting for a lane. Claimed jobs
    /// are counted as running at once and pushed to `started`; the caller starts them once `tx`
    /// has committed.
    async fn claim_into(
        &self,
        tx: &mut QueueTx<'_>,
        state: &mut State,
        started: &mut Vec<Job>,
        most: usize,
    ) -> Result<(), StoreError> {
        let before = started.len();
        while !state.stopping && state.running.len() < self.max && started.len() - before < most {
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
        matches!(self.claim_lanes(state), ClaimLanes::Free(free) if free.lichess <= 0 && free.chess_com <= 0)
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
            self.claim_into(&mut tx, state, &mut started, usize::MAX).await?;
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

    /// Decides each request in turn as if it had come alone (the user's active import; the queue's
    /// capacity, which applies only when no slot is free; a start where a slot and the provider's
    /// lane are free), then records the group in one statement and positions what waits.
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
        self.claim_into(&mut tx, state, started, usize::MAX).await?;
        let users: Vec<(&str, Platform)> = group.iter().map(|r| (r.user.as_str(), r.platform)).collect();
        let mut active = tx.active_among(&users).await?;
        let mut queued = tx.queued_count().await?;
        // Shared lanes are counted by the claim statement, across processes.
        let shared = matches!(self.claim_lanes(state), ClaimLanes::Shared(..));
        let capacity = i64::try_from(self.capacity).unwrap_or(i64::MAX);
        // Slots a job of this group may still take: a job one of them takes is not "in the
        // queue", so the queue's capacity applies only once they are spoken for.
        let mut free_left = self.max.saturating_sub(state.running.len());
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
            if free_left == 0 && queued >= capacity {
                answers.push(Admission::QueueFull);
                continue;
            }
            let mut job = Job {
                import_id: uuid::Uuid::new_v4().to_string(),
                user_id: request.user.clone(),
                platform: request.platform,
                limit: request.limit,
                status: JobStatus::Queued,
                counters: Counters::default(),
                error: None,
                created_at: Utc::now(),
                started_at: None,
                finished_at: None,
            };
            active.insert(key, job.import_id.clone());
            // Anything older that could start has started, so this job is the one a slot takes.
            if !shared && self.may_start(state, job.platform) {
                job.status = JobStatus::Running;
                job.started_at = Some(now_to_ms());
                state.running.insert(job.import_id.clone(), job.platform);
                started.push(job.clone());
                free_left = free_left.saturating_sub(1);
            } else if shared && free_left > 0 {
                // Shared lanes: the claim after the insert may give it a slot.
                free_left -= 1;
            } else {
                queued += 1;
            }
            answers.push(Admission::Accepted {
                job: job.clone(),
                position: 0,
            });
            recorded.push(job);
        }
        // Recorded before any runs, so a crash right after leaves resumable jobs.
        tx.insert_jobs(&recorded, self.owner(), self.lease_until())
            .await?;
        if shared {
            self.claim_into(&mut tx, state, started, usize::MAX).await?;
        }
        let running: HashSet<&str> = started.iter().map(|j| j.import_id.as_str()).collect();
        let waiting: Vec<&str> = recorded
            .iter()
            .map(|j| j.import_id.as_str())
            .filter(|id| !running.contains(id))
            .collect();
        let positions = tx.queue_positions(&waiting).await?;
        tx.commit().await?;
        for answer in &mut answers {
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
    pub async fn is_stopping(&self) -> bool {
        *self.ctx.stopping.borrow()
    }

    /// (running here, queued across every process) now.
    pub async fn load(&self) -> Result<(usize, usize), StoreError> {
        let running = self.state.lock().await.running.len();
        let queued = self.ctx.store.queued_count().await?;
        Ok((running, usize::try_from(queued).unwrap_or(0)))
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
        let (status, counters, error) = match worker.await {
            Ok(Ok(c)) => (JobStatus::Completed, c, None),
            Ok(Err((ImportError::Interrupted, c))) => {
                tracing::info!(import_id = %job.import_id, imported = c.games_imported, "import interrupted by shutdown; resumable");
                if let Err(e) = self.ctx.store.requeue_job(&job.import_id, self.owner(), &c).await {
                    tracing::error!(import_id = %job.import_id, error = %e, "cannot leave the import resumable");
                }
                return;
            }
            Ok(Err((ImportError::Store(StoreError::LeaseLost(_)), _))) => {
                tracing::warn!(import_id = %job.import_id, "import taken over by another process; stopping it here");
                return;
            }
            Ok(Err((e, c))) => (JobStatus::Failed, c, Some(e.to_string())),
            Err(e) => {
                tracing::error!(import_id = %job.import_id, error = %e, "import task died");
                (
                    JobStatus::Failed,
                    Counters::default(),
                    Some("internal error".to_string()),
                )
            }
        };
        tracing::info!(
            import_id = %job.import_id, user = %job.user_id, platform = job.platform.as_str(),
            status = status.as_str(), fetched = counters.games_fetched, imported = counters.games_imported,
            skipped_existing = counters.games_skipped_existing, failed_parse = counters.games_failed_parse,
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
                &counters,
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
                    imported: count(counters.games_imported),
                    skipped_existing: count(counters.games_skipped_existing),
                    failed_parse: count(counters.games_failed_parse),
                });
            }
            Err(e) => {
                tracing::error!(import_id = %job.import_id, error = %e, "cannot record the end of an import");
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
