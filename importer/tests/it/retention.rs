//! `JOB_RETENTION_DAYS`: finished imports' records past the retention go, in batches; queued and
//! running ones never do, whatever their age, and no queue position moves. And a job ended without
//! counters (its task died) keeps those its batches wrote.

use chrono::{DateTime, Duration, Utc};
use importer::job::{Counters, Job, JobStatus, Platform};
use importer::retention::{BATCH, prune_once};
use importer::store::{Store, StoreOptions};

use crate::on_every_database;
use crate::support::TestDb;

const OWNER: &str = "retention-test";

fn job(id: &str, platform: Platform, status: JobStatus, created_at: DateTime<Utc>) -> Job {
    Job {
        import_id: id.to_string(),
        status,
        created_at,
        started_at: (status == JobStatus::Running).then_some(created_at),
        ..Job::queued(&format!("user-{id}"), platform, 100)
    }
}

/// Records `id` as requested at `created_at` and ended with `status` at `finished_at`.
async fn finished(
    store: &Store,
    id: &str,
    status: JobStatus,
    created_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
) {
    let lease = Utc::now().timestamp_millis() + 60_000;
    store
        .insert_job(
            &job(id, Platform::Lichess, JobStatus::Running, created_at),
            OWNER,
            lease,
        )
        .await
        .expect("insert");
    let error = (status == JobStatus::Failed).then_some("upstream said 404");
    store
        .finish_job(id, OWNER, status, Some(&Counters::default()), error, finished_at)
        .await
        .expect("finish");
}

async fn position(store: &Store, id: &str) -> Option<(JobStatus, i64)> {
    store
        .job_with_position(id)
        .await
        .expect("read")
        .map(|placed| (placed.job.status, placed.queue_position))
}

/// The test's database opened as the importer opens it.
async fn open(db: &TestDb) -> Store {
    let options = StoreOptions {
        url: db.url(),
        pool_size: 2,
        queue_pool_size: StoreOptions::default_queue_pool_size(),
        sqlite_cache_kib: 512,
        transaction_pooler: matches!(db, TestDb::Pooled(..)),
    };
    Store::connect(&options).await.expect("database")
}

async fn only_old_finished_jobs_are_pruned(db: TestDb) {
    let store = open(&db).await;
    let now = Utc::now();
    let (old, recent) = (now - Duration::days(40), now - Duration::days(1));
    let lease = now.timestamp_millis() + 60_000;
    // More old finished ones than one batch, so that the round takes several.
    let old_done: Vec<String> = (0..BATCH + 7).map(|i| format!("old-done-{i}")).collect();
    for id in &old_done {
        finished(&store, id, JobStatus::Completed, old - Duration::hours(1), old).await;
    }
    finished(&store, "old-failed", JobStatus::Failed, old, old).await;
    // Requested long ago, ended yesterday: its age is its end's.
    finished(&store, "recent-done", JobStatus::Completed, old, recent).await;
    for (id, platform, status) in [
        ("old-running", Platform::ChessCom, JobStatus::Running),
        ("old-queued-1", Platform::Lichess, JobStatus::Queued),
        ("old-queued-2", Platform::ChessCom, JobStatus::Queued),
    ] {
        store
            .insert_job(&job(id, platform, status, old), OWNER, lease)
            .await
            .expect("insert");
    }
    store
        .insert_job(
            &job("new-queued", Platform::Lichess, JobStatus::Queued, now),
            OWNER,
            lease,
        )
        .await
        .expect("insert");
    let kept = [
        "recent-done",
        "old-running",
        "old-queued-1",
        "old-queued-2",
        "new-queued",
    ];
    let mut before = Vec::new();
    for id in kept {
        before.push(position(&store, id).await);
    }
    assert_eq!(
        before,
        vec![
            Some((JobStatus::Completed, 0)),
            Some((JobStatus::Running, 0)),
            Some((JobStatus::Queued, 1)),
            Some((JobStatus::Queued, 1)),
            Some((JobStatus::Queued, 2)),
        ]
    );

    let deleted = prune_once(&store, std::time::Duration::from_secs(30 * 86_400))
        .await
        .expect("prune");
    assert_eq!(
        deleted,
        old_done.len() as u64 + 1,
        "every old finished job, and only those"
    );
    for id in old_done.iter().map(String::as_str).chain(["old-failed"]) {
        assert_eq!(position(&store, id).await, None, "{id} is past its retention");
    }
    let mut after = Vec::new();
    for id in kept {
        after.push(position(&store, id).await);
    }
    assert_eq!(after, before, "the queue and the recent history are untouched");
    assert_eq!(store.queue_load(0).await.expect("count").queued, 3);
    let again = prune_once(&store, std::time::Duration::from_secs(30 * 86_400)).await;
    assert_eq!(again.expect("prune"), 0);
}

on_every_database!(retention, only_old_finished_jobs_are_pruned);

/// A job whose task died (a panic) ends `failed` with the counters its committed batches wrote:
/// `finish_job` without counters keeps the stored ones (it used to write zeros over them).
async fn a_job_ended_without_counters_keeps_its_batches_counters(db: TestDb) {
    let store = open(&db).await;
    let lease = Utc::now().timestamp_millis() + 60_000;
    let running = job("panicked", Platform::Lichess, JobStatus::Running, Utc::now());
    store.insert_job(&running, OWNER, lease).await.expect("insert");
    let written = Counters {
        games_fetched: 120,
        games_imported: 100,
        games_skipped_existing: 15,
        games_failed_parse: 5,
    };
    store
        .write_progress(&running, OWNER, &written, &Default::default())
        .await
        .expect("a batch's counters");
    store
        .finish_job(
            "panicked",
            OWNER,
            JobStatus::Failed,
            None,
            Some("internal error"),
            Utc::now(),
        )
        .await
        .expect("finish");
    let ended = store
        .job_with_position("panicked")
        .await
        .expect("read")
        .expect("the job")
        .job;
    assert_eq!(ended.status, JobStatus::Failed);
    assert_eq!(ended.counters, written, "the batches' counters stand");
    assert_eq!(ended.error.as_deref(), Some("internal error"));
}
on_every_database!(
    panicked_job_counters,
    a_job_ended_without_counters_keeps_its_batches_counters
);
