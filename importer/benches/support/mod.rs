//! What the store-writing benches share: a job claimed by `owner`, so that `insert_batch` may write.

use importer::store::{ClaimLanes, Lanes, Store};
use importer::{Job, Platform};

/// Records a lichess job for `user` and claims it for `owner` for an hour.
pub(crate) async fn claimed_job(store: &Store, owner: &str, user: &str) -> Job {
    let job = Job::queued(user, Platform::Lichess, 10_000);
    store.insert_job(&job, owner, 0).await.expect("job recorded");
    let now = chrono::Utc::now().timestamp_millis();
    store
        .claim_job(
            owner,
            now,
            now + 3_600_000,
            ClaimLanes::Free(Lanes {
                lichess: 1,
                chess_com: 1,
            }),
        )
        .await
        .expect("claim")
        .expect("the job just queued");
    job
}
