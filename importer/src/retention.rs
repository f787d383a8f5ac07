//! Bounded job history: finished imports' records older than `JOB_RETENTION_DAYS` are deleted,
//! at start and hourly, in batches small enough that no batch holds the queue's writers for long.

use std::time::Duration;

use chrono::Utc;

use crate::store::Store;

/// Records deleted per statement.
pub const BATCH: i64 = 500;
/// Time between two pruning rounds.
const EVERY: Duration = Duration::from_secs(3600);
/// Pause between two batches of one round, so that imports' writes come in between.
const BETWEEN_BATCHES: Duration = Duration::from_millis(50);

/// Deletes, batch after batch, every finished job that finished more than `retention` ago;
/// returns how many went. A store error ends the round (the next one retries).
pub async fn prune_once(store: &Store, retention: Duration) -> Result<u64, crate::store::StoreError> {
    let before = Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let mut total = 0;
    loop {
        let n = store.prune_finished_jobs(before, BATCH).await?;
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
        tokio::time::sleep(BETWEEN_BATCHES).await;
    }
}

/// Prunes at start and every hour until `stopping` turns true.
pub async fn keep_pruning(
    store: Store,
    retention: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match prune_once(&store, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deleted = n,
                retention_days = retention.as_secs() / 86_400,
                "finished import records past their retention deleted"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot delete finished import records past their retention; retrying in an hour")
            }
        }
        tokio::select! {
            _ = stopping.changed() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
        if *stopping.borrow() {
            return;
        }
    }
}
