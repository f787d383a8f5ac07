//! Admission and slots: at most `MAX_CONCURRENT_IMPORTS` imports run, the
//! rest wait first come, first served, up to `IMPORT_QUEUE_CAPACITY`.
//!
//! The database holds each job's status and counters; the scheduler holds only
//! what is about the running process: the queue order and the running set.
//! One user and platform never has two imports queued or running at once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::Mutex;

use crate::job::{Counters, Job, JobStatus, Platform};
use crate::pipeline::{ImportContext, ImportError, run_import};
use crate::store::StoreError;

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
    queue: VecDeque<Job>,
    running: usize,
    /// (platform, user) -> job id, for every queued or running job.
    active: HashMap<(Platform, String), String>,
}

/// The slot keeper.
pub struct Scheduler {
    ctx: Arc<ImportContext>,
    stop: tokio::sync::watch::Sender<bool>,
    state: Mutex<State>,
    max: usize,
    capacity: usize,
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
        if let Some(id) = state.active.get(&(platform, user.clone())) {
            return Ok(Admission::Existing {
                import_id: id.clone(),
            });
        }
        let runs_now = state.running < self.max;
        if !runs_now && state.queue.len() >= self.capacity {
            return Ok(Admission::QueueFull);
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
        // Recorded before it runs, so a crash right after leaves a resumable job.
        self.ctx.store.insert_job(&job).await?;
        let position = self.admit(&mut state, job.clone());
        if position == 0 {
            job.status = JobStatus::Running;
        }
        Ok(Admission::Accepted { job, position })
    }

    /// Takes back jobs a previous run left queued or running, in their order, whatever the queue capacity.
    pub async fn resume(self: &Arc<Self>, jobs: Vec<Job>) {
        let mut state = self.state.lock().await;
        for job in jobs {
            tracing::info!(import_id = %job.import_id, user = %job.user_id, platform = job.platform.as_str(), "resuming unfinished import");
            self.admit(&mut state, job);
        }
    }

    fn admit(self: &Arc<Self>, state: &mut State, job: Job) -> usize {
        state
            .active
            .insert((job.platform, job.user_id.clone()), job.import_id.clone());
        if state.running < self.max {
            state.running += 1;
            self.spawn(job, self.max - state.running);
            0
        } else {
            state.queue.push_back(job);
            state.queue.len()
        }
    }

    /// Stops taking imports and tells running ones to commit and stop.
    pub async fn begin_shutdown(&self) {
        let mut state = self.state.lock().await;
        state.stopping = true;
        // Queued jobs stay queued in the database: the next start takes them.
        state.queue.clear();
        let _ = self.stop.send(true);
        tracing::info!(
            running = state.running,
            "shutting down: no new imports, running ones commit and stop"
        );
    }

    /// Waits until no import runs, at most `timeout`; says whether they all stopped.
    pub async fn wait_idle(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.state.lock().await.running == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Whether the process is stopping.
    pub async fn is_stopping(&self) -> bool {
        self.state.lock().await.stopping
    }

    /// Place of a queued job (1 = next), or `None` when it is not waiting.
    pub async fn queue_position(&self, import_id: &str) -> Option<usize> {
        let state = self.state.lock().await;
        state
            .queue
            .iter()
            .position(|j| j.import_id == import_id)
            .map(|p| p + 1)
    }

    /// (running, queued) now.
    pub async fn load(&self) -> (usize, usize) {
        let state = self.state.lock().await;
        (state.running, state.queue.len())
    }

    fn spawn(self: &Arc<Self>, job: Job, free: usize) {
        tracing::info!(import_id = %job.import_id, user = %job.user_id, platform = job.platform.as_str(),
            "starting import (available slots: {free}/{})", self.max);
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let key = (job.platform, job.user_id.clone());
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
                        JobStatus::Failed,
                        &Counters::default(),
                        Some("internal error"),
                        Utc::now(),
                    )
                    .await;
            }
            this.release(key).await;
        });
    }

    async fn run(&self, job: Job) {
        let started = std::time::Instant::now();
        if let Err(e) = self.ctx.store.start_job(&job.import_id, Utc::now()).await {
            tracing::error!(import_id = %job.import_id, error = %e, "cannot mark import running");
        }
        let (status, counters, error) = match run_import(&self.ctx, &job).await {
            Ok(c) => (JobStatus::Completed, c, None),
            Err((ImportError::Interrupted, c)) => {
                tracing::info!(import_id = %job.import_id, imported = c.games_imported, "import interrupted by shutdown; resumable");
                if let Err(e) = self.ctx.store.requeue_job(&job.import_id, &c).await {
                    tracing::error!(import_id = %job.import_id, error = %e, "cannot leave the import resumable");
                }
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
            .finish_job(&job.import_id, status, &counters, error.as_deref(), Utc::now())
            .await
        {
            tracing::error!(import_id = %job.import_id, error = %e, "cannot record the end of an import");
        }
    }

    async fn release(self: &Arc<Self>, key: (Platform, String)) {
        let mut state = self.state.lock().await;
        state.active.remove(&key);
        state.running -= 1;
        if state.stopping {
            return;
        }
        if let Some(next) = state.queue.pop_front() {
            state.running += 1;
            self.spawn(next, self.max - state.running);
        } else {
            tracing::info!(
                "import slot freed (available slots: {}/{})",
                self.max - state.running,
                self.max
            );
        }
    }
}
