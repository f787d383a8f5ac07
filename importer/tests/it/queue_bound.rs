//! The queue's bound (`IMPORT_QUEUE_CAPACITY`) counts every import that waits, whatever keeps it
//! waiting: a slot, its provider's lane or its provider's outage. Slots fewer than, equal to and
//! more than the lanes, lanes per process and shared; and the defaults.

use super::*;
use crate::on_both_databases;

/// Posts `users` lichess imports at once and checks that exactly the imports that can run, plus
/// `capacity` waiting ones, are accepted, and the rest answered `429` with `Retry-After`.
async fn the_bound_holds(db: TestDb, env: &[(&str, &str)], users: usize, running: usize, capacity: usize) {
    // One game per transaction, paced: no import ends before every request is answered.
    let mock_users: Vec<MockUser> = (0..users)
        .map(|i| lichess(&format!("bound{i:02}"), 300))
        .collect();
    let mocks = Upstreams::start_with(&mock_users, paced(100))
        .await
        .expect("mocks");
    let cap = capacity.to_string();
    let mut all_env: Vec<(&str, &str)> = vec![("IMPORT_QUEUE_CAPACITY", &cap), ("IMPORT_BATCH_SIZE", "1")];
    all_env.extend_from_slice(env);
    let imp = Importer::start(&db, &mocks, &all_env).await;
    let answers = imp.post_burst(&mock_users).await;
    let accepted: Vec<&serde_json::Value> = answers
        .iter()
        .filter(|a| a.status == 202)
        .map(|a| &a.body)
        .collect();
    let refused: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    let ran = accepted.iter().filter(|a| a["status"] == "running").count();
    assert_eq!(ran, running, "{env:?}: imports running at once: {answers:?}");
    assert_eq!(
        accepted.len(),
        running + capacity,
        "{env:?}: {running} running + {capacity} waiting accepted: {answers:?}"
    );
    assert_eq!(
        refused.len(),
        users - running - capacity,
        "{env:?}: the rest refused"
    );
    assert!(
        refused.iter().all(|r| r.retry_after),
        "every 429 carries Retry-After"
    );
    let metrics = imp.get_text("/metrics").await;
    let queued: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("importer_imports_queued "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("importer_imports_queued missing from /metrics:\n{metrics}"));
    assert!(
        queued <= capacity,
        "{env:?}: {queued} queued, beyond the bound {capacity}"
    );
}

/// The defaults (2 slots, one lane per provider): a burst of lichess imports runs one, queues
/// the capacity, refuses the rest (the bound used to apply only once every slot ran, which the
/// lanes never allowed: 40 posted, 40 accepted with a capacity of 5).
async fn the_bound_holds_with_the_defaults(db: TestDb) {
    the_bound_holds(db, &[], 20, 1, 5).await;
}
on_both_databases!(queue_bound_defaults, the_bound_holds_with_the_defaults);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_slots_than_lanes_per_process() {
    let env = [("MAX_CONCURRENT_IMPORTS", "1"), ("LICHESS_MAX_STREAMS", "2")];
    the_bound_holds(TestDb::sqlite(), &env, 10, 1, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_many_slots_as_lanes_per_process() {
    let env = [("MAX_CONCURRENT_IMPORTS", "2"), ("LICHESS_MAX_STREAMS", "2")];
    the_bound_holds(TestDb::sqlite(), &env, 10, 2, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_slots_than_lanes_per_process() {
    let env = [("MAX_CONCURRENT_IMPORTS", "3"), ("LICHESS_MAX_STREAMS", "1")];
    the_bound_holds(TestDb::sqlite(), &env, 10, 1, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_slots_than_lanes_shared() {
    let env = [
        ("MAX_CONCURRENT_IMPORTS", "1"),
        ("LICHESS_MAX_STREAMS", "2"),
        ("PROVIDER_LANES_SCOPE", "database"),
    ];
    the_bound_holds(TestDb::postgres().await, &env, 10, 1, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_many_slots_as_lanes_shared() {
    let env = [
        ("MAX_CONCURRENT_IMPORTS", "2"),
        ("LICHESS_MAX_STREAMS", "2"),
        ("PROVIDER_LANES_SCOPE", "database"),
    ];
    the_bound_holds(TestDb::postgres().await, &env, 10, 2, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_slots_than_lanes_shared() {
    let env = [
        ("MAX_CONCURRENT_IMPORTS", "3"),
        ("LICHESS_MAX_STREAMS", "1"),
        ("PROVIDER_LANES_SCOPE", "database"),
    ];
    the_bound_holds(TestDb::postgres().await, &env, 10, 1, 3).await;
}
