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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Mutex;

use crate::config::LanesScope;
use crate::job::{Counters, Job, JobStatus, Platform};
use crate::pipeline::{ImportContext, ImportError, run_import};
use crate::store::{ClaimLanes, StoreError, Submitted};

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
    stop: tokio::sync::watch::Sender<bool>,
    state: Mutex<State>,
    max: usize,
    capacity: usize,
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
    /// A scheduler with the context's limits; `stop` is the sender of the context's `stopping`.
    pub fn new(ctx: Arc<ImportContext>, stop: tokio::sync::watch::Sender<bool>) -> Arc<Scheduler> {
        let (max, capacity) = (
            ctx.config.max_concurrent_imports,
            ctx.config.import_queue_capacity,
        );
        Arc::new(Scheduler {
            ctx,
            stop,
            state: Mutex::new(State::default()),
            max,
            capacity,
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
        let only_process = matches!(self.ctx.store, crate::store::Store::Sqlite(_));
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
        let this = Arc::clone(self);
        tokio::spawn(async move { this.keep_claiming().await });
        let this = Arc::clone(self);
        tokio::spawn(async move { this.keep_renewing().await });
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
            LanesScope::Database => ClaimLanes::Shared(lanes(Platform::Lichess), lanes(Platform::ChessCom)),
            LanesScope::Process => {
                let free = |p| {
                    let running = state.running.values().filter(|r| **r == p).count();
                    lanes(p) - i64::try_from(running).unwrap_or(i64::MAX)
                };
                ClaimLanes::Free(free(Platform::Lichess), free(Platform::ChessCom))
            }
        }
    }

    /// Claims queued jobs while a slot is free, each only where its provider has a free lane: no
    /// slot is ever held by an import waiting for a lane.
    async fn fill(self: &Arc<Self>, state: &mut State) -> Vec<String> {
        let mut started = Vec::new();
        while !state.stopping && state.running.len() < self.max {
            let lanes = self.claim_lanes(state);
            if matches!(lanes, ClaimLanes::Free(l, c) if l <= 0 && c <= 0) {
                break;
            }
            match self
                .ctx
                .store
                .claim_job(self.owner(), now_ms(), self.lease_until(), lanes)
                .await
            {
                Ok(Some(job)) => {
                    state.running.insert(job.import_id.clone(), job.platform);
                    started.push(job.import_id.clone());
                    self.spawn(job, self.max - state.running.len());
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim a queued import; retrying later");
                    break;
                }
            }
        }
        started
    }

    /// Records a new import for `user` and runs or queues it.
    pub async fn submit(
        self: &Arc<Self>,
        user: String,
        platform: Platform,
        limit: i64,
    ) -> Result<Admission, StoreError> {
        let mut state = self.state.lock().await;
        if state.stopping {
            return Ok(Admission::ShuttingDown);
        }
        let mut job = Job {
            import_id: uuid::Uuid::new_v4().to_string(),
            user_id: user,
            platform,
            limit,
            status: JobStatus::Queued,
            counters: Counters::default(),
            error: None,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
        };
        // With a free slot here the job does not wait, so the queue's capacity does not apply.
        let max_queued = if state.running.len() < self.max {
            i64::MAX
        } else {
            i64::try_from(self.capacity).unwrap_or(i64::MAX)
        };
        // Recorded before it runs, so a crash right after leaves a resumable job.
        match self.ctx.store.submit_job(&job, max_queued).await? {
            Submitted::Queued => {}
            Submitted::Existing(import_id) => return Ok(Admission::Existing { import_id }),
            Submitted::QueueFull => return Ok(Admission::QueueFull),
        }
        let started = self.fill(&mut state).await;
        let position = if started.contains(&job.import_id) {
            job.status = JobStatus::Running;
            0
        } else {
            self.queue_position(&job.import_id).await?
        };
        Ok(Admission::Accepted { job, position })
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
        self.state.lock().await.stopping
    }

    /// Place of a queued job among every process's (1 = next); 0 when it is not waiting.
    pub async fn queue_position(&self, import_id: &str) -> Result<usize, StoreError> {
        let position = self.ctx.store.queue_position(import_id).await?;
        Ok(usize::try_from(position).unwrap_or(0))
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
            // The import runs in a task of its own so that even a panic frees its slot.
            let worker = {
                let this = Arc::clone(&this);
                tokio::spawn(async move { this.run(job).await })
            };
            if let Err(e) = worker.await {
                tracing::error!(import_id = %id, error = %e, "import task died");
                let _ = this
                    .ctx
                    .store
                    .finish_job(
                        &id,
                        this.owner(),
                        JobStatus::Failed,
                        &Counters::default(),
                        Some("internal error"),
                        now_to_ms(),
                    )
                    .await;
            }
            this.release(&id).await;
        });
    }

    async fn run(&self, job: Job) {
        let started = std::time::Instant::now();
        let (status, counters, error) = match run_import(&self.ctx, &job).await {
            Ok(c) => (JobStatus::Completed, c, None),
            Err((ImportError::Interrupted, c)) => {
                tracing::info!(import_id = %job.import_id, imported = c.games_imported, "import interrupted by shutdown; resumable");
                if let Err(e) = self.ctx.store.requeue_job(&job.import_id, self.owner(), &c).await {
                    tracing::error!(import_id = %job.import_id, error = %e, "cannot leave the import resumable");
                }
                return;
            }
            Err((ImportError::Store(StoreError::LeaseLost(_)), _)) => {
                tracing::warn!(import_id = %job.import_id, "import taken over by another process; stopping it here");
                return;
            }
            Err((e, c)) => (JobStatus::Failed, c, Some(e.to_string())),
        };
        tracing::info!(
            import_id = %job.import_id, user = %job.user_id, platform = job.platform.as_str(),
            status = status.as_str(), fetched = counters.games_fetched, imported = counters.games_imported,
            skipped_existing = counters.games_skipped_existing, failed_parse = counters.games_failed_parse,
            secs = started.elapsed().as_secs_f64(), error = error.as_deref().unwrap_or(""),
            "import finished"
        );
        if let Err(e) = self
            .ctx
            .store
            .finish_job(
                &job.import_id,
                self.owner(),
                status,
                &counters,
                error.as_deref(),
                now_to_ms(),
            )
            .await
        {
            tracing::error!(import_id = %job.import_id, error = %e, "cannot record the end of an import");
        }
    }

    async fn release(self: &Arc<Self>, import_id: &str) {
        let mut state = self.state.lock().await;
        state.running.remove(import_id);
        if state.stopping {
            return;
        }
        if self.fill(&mut state).await.is_empty() {
            tracing::info!(
                "import slot freed (available slots: {}/{})",
                self.max - state.running.len(),
                self.max
            );
        }
    }
}
