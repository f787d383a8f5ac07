//! The shared queue and the lanes: ten times the slots at once, two processes and a kill -9, a lane per lichess import, the oldest import whose lane is free, lanes counted across processes.

use super::*;
use crate::{on_both_databases, on_databases};

/// The same burst with lanes counted across processes: admitted jobs are claimed after the
/// group's insert, and the queue's capacity still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_times_the_slots_at_once_with_lanes_shared_on_postgres() {
    ten_times_the_slots_at_once(TestDb::postgres().await, "database").await;
}

async fn ten_times_the_slots_at_once(db: TestDb, lanes_scope: &str) {
    // One game per transaction: no import can finish before all twenty requests are answered.
    let users: Vec<MockUser> = (0..20).map(|i| lichess(&format!("burst{i:02}"), 600)).collect();
    let mocks = Upstreams::start(&users, SEED).await.expect("mocks");
    let env = [
        ("MAX_CONCURRENT_IMPORTS", "2"),
        ("LICHESS_MAX_STREAMS", "2"),
        ("IMPORT_QUEUE_CAPACITY", "10"),
        ("IMPORT_BATCH_SIZE", "1"),
        ("PROVIDER_LANES_SCOPE", lanes_scope),
    ];
    let imp = Importer::start(&db, &mocks, &env).await;
    let answers = imp.post_burst(&users).await;
    let accepted: Vec<&serde_json::Value> = answers
        .iter()
        .filter(|a| a.status == 202)
        .map(|a| &a.body)
        .collect();
    let refused: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(accepted.len(), 12, "2 running + 10 queued: {answers:?}");
    assert_eq!(refused.len(), 8, "beyond the queue: 429");
    assert!(
        refused.iter().all(|r| r.retry_after),
        "every 429 carries Retry-After"
    );
    let running = accepted.iter().filter(|a| a["status"] == "running").count();
    assert_eq!(running, 2, "at most MAX_CONCURRENT_IMPORTS run");
    let mut positions: Vec<u64> = accepted
        .iter()
        .filter(|a| a["status"] == "queued")
        .filter_map(|a| a["queue_position"].as_u64())
        .collect();
    positions.sort_unstable();
    assert_eq!(
        positions,
        (1..=10).collect::<Vec<_>>(),
        "queue positions 1..=10, each once"
    );
    let mut max_active = 0;
    for a in &accepted {
        let id = a["import_id"].as_str().unwrap_or_default();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let metrics = imp.get_text("/metrics").await;
            // A renamed gauge must fail here, not read as 0 and pass `max_active <= 2`.
            let active: u64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix("importer_imports_active "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("importer_imports_active missing from /metrics:\n{metrics}"));
            max_active = max_active.max(active);
            let (_, job) = imp.get(&format!("/api/v1/imports/{id}")).await;
            assert!(
                std::time::Instant::now() < deadline,
                "import {id} not done in 120 s: {job}"
            );
            if matches!(job["status"].as_str(), Some("completed" | "failed")) {
                assert_eq!(job["status"], "completed", "{job}");
                assert_eq!(job["games_imported"], 600, "{job}");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    assert!(
        max_active <= 2,
        "never more than 2 imports active, saw {max_active}"
    );
    // Twenty requests, twelve imports: memory follows the slots, not the requests. This debug
    // build peaks near 20 MiB; twelve imports each holding its whole stream (1.8 MB) would add
    // about 22 MiB and cross the bound.
    let peak_mib = imp.peak_rss() >> 20;
    eprintln!("peak resident memory of the debug importer: {peak_mib} MiB");
    assert!(
        peak_mib < 48,
        "resident memory stays bounded: peak {peak_mib} MiB"
    );
    let stored = db
        .count("SELECT COUNT(*) FROM games WHERE user_id LIKE $1", "burst%")
        .await;
    assert_eq!(
        stored,
        12 * 600,
        "every accepted import completed, nothing else stored"
    );
}

on_databases!(
    two_processes,
    two_processes_share_the_queue_and_survive_a_kill_9,
    postgres,
    pooled
);

/// Two importer processes share one PostgreSQL queue; one is killed (-9) mid-import.
/// The other takes over its running job when the lease expires and its queued one at once,
/// and every game of every user is stored exactly once.
async fn two_processes_share_the_queue_and_survive_a_kill_9(db: TestDb) {
    let users: Vec<MockUser> = (1..=4).map(|i| lichess(&format!("shared{i}"), 1200)).collect();
    let mocks = Upstreams::start(&users, SEED).await.expect("mocks");
    let env = |id| {
        [
            ("INSTANCE_ID", id),
            ("MAX_CONCURRENT_IMPORTS", "1"),
            ("IMPORT_BATCH_SIZE", "3"),
            ("JOB_LEASE_SECS", "2"),
            ("JOB_POLL_MILLIS", "100"),
        ]
    };
    let mut a = Importer::start(&db, &mocks, &env("proc-a")).await;
    let b = Importer::start(&db, &mocks, &env("proc-b")).await;
    let first = submit(&a, "shared1").await;
    let second = submit(&b, "shared2").await;
    let third = submit(&a, "shared3").await;
    let fourth = submit(&b, "shared4").await;
    assert_eq!(first["status"], "running", "{first}");
    assert_eq!(second["status"], "running", "each process runs one: {second}");
    assert_eq!(third["queue_position"], 1, "{third}");
    assert_eq!(
        fourth["queue_position"], 2,
        "positions count every process's queue: {fourth}"
    );
    let (_, dup) = b.post(json!({"user_id": "shared1", "platform": "lichess"})).await;
    assert_eq!(
        dup["import_id"], first["import_id"],
        "one active import per user across processes"
    );

    let id_of = |v: &serde_json::Value| v["import_id"].as_str().unwrap_or_default().to_string();
    wait_for_progress(&a, &id_of(&first)).await;
    a.signal("KILL");
    a.wait_exit(std::time::Duration::from_secs(5))
        .await
        .expect("killed");
    let stored_at_kill = db.games_of("shared1").await;
    assert!(stored_at_kill < 1200, "killed mid-import: {stored_at_kill}");

    for (job, user) in [
        (&first, "shared1"),
        (&second, "shared2"),
        (&third, "shared3"),
        (&fourth, "shared4"),
    ] {
        let done = b.wait(&id_of(job)).await;
        assert_eq!(done["status"], "completed", "{done}\n{}", b.log_text());
        assert_eq!(done["games_imported"], 1200, "{user}: {done}");
        assert_eq!(db.games_of(user).await, 1200, "{user}");
        assert_eq!(db.distinct_games_of(user).await, 1200, "{user}");
    }
    assert!(
        b.log_text().contains("resumed=true"),
        "the survivor resumed the killed process's import:\n{}",
        b.log_text()
    );
}

/// Three lichess imports with three slots and the default lane: one stream at a time, 0 429s.
async fn lichess_imports_take_one_lane(db: TestDb) {
    let users: Vec<MockUser> = (1..=3).map(|i| lichess(&format!("lane{i}"), 300)).collect();
    let mocks = Upstreams::start(&users, SEED).await.expect("mocks");
    let imp = Importer::start(&db, &mocks, &[("MAX_CONCURRENT_IMPORTS", "3")]).await;
    let answers: Vec<serde_json::Value> =
        futures_util::future::join_all(users.iter().map(|u| submit(&imp, &u.name))).await;
    let states: Vec<(&str, u64)> = answers
        .iter()
        .map(|a| {
            (
                a["status"].as_str().unwrap_or_default(),
                a["queue_position"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    let mut sorted = states.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        vec![("queued", 1), ("queued", 2), ("running", 0)],
        "one runs, two wait for the lane in order: {answers:?}"
    );
    for a in &answers {
        let done = imp.wait(a["import_id"].as_str().unwrap_or_default()).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["games_imported"], 300, "{done}");
    }
    let served = mocks.served()["lichess"];
    assert_eq!(served.rate_limited, 0, "{served:?}");
    assert_eq!(served.max_in_flight, 1, "LICHESS_MAX_STREAMS=1: {served:?}");
    let metrics = imp.get_text("/metrics").await;
    assert!(
        metrics.contains("importer_upstream_rate_limited_total{provider=\"lichess\"} 0"),
        "{metrics}"
    );
}
on_both_databases!(lichess_lane, lichess_imports_take_one_lane);

/// With 2 slots, lichess A and B and chess.com C posted in that order: C runs beside A, and B
/// starts only when A has ended: no slot is held by an import waiting for its lane.
async fn a_free_slot_takes_the_oldest_import_whose_lane_is_free(db: TestDb) {
    let users = [
        lichess("order_a", 400),
        lichess("order_b", 100),
        chess_com("order_c", 100, 2),
    ];
    // Paced: A streams for about a second, long enough for C to be posted and start beside it.
    let mocks = Upstreams::start_with(&users, paced(400)).await.expect("mocks");
    let imp = Importer::start(
        &db,
        &mocks,
        &[("MAX_CONCURRENT_IMPORTS", "2"), ("IMPORT_BATCH_SIZE", "5")],
    )
    .await;
    let mut answers = Vec::new();
    for (u, platform) in [
        ("order_a", "lichess"),
        ("order_b", "lichess"),
        ("order_c", "chess.com"),
    ] {
        let (status, body) = imp
            .post(json!({"user_id": u, "platform": platform, "limit": 1000}))
            .await;
        assert_eq!(status, 202, "{body}");
        answers.push(body);
    }
    assert_eq!(answers[0]["status"], "running", "{}", answers[0]);
    assert_eq!(
        (
            answers[1]["status"].as_str(),
            answers[1]["queue_position"].as_u64()
        ),
        (Some("queued"), Some(1)),
        "B waits first in line for the lichess lane: {}",
        answers[1]
    );
    assert_eq!(
        answers[2]["status"], "running",
        "C takes the second slot: {}",
        answers[2]
    );
    let mut done = Vec::new();
    for a in &answers {
        let job = imp.wait(a["import_id"].as_str().unwrap_or_default()).await;
        assert_eq!(job["status"], "completed", "{job}");
        done.push(job);
    }
    let at = |j: &serde_json::Value, k: &str| {
        j[k].as_str()
            .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
            .unwrap_or_else(|| panic!("{k} of {j}"))
    };
    assert!(
        at(&done[1], "started_at") >= at(&done[0], "finished_at"),
        "B started after A ended: {} / {}",
        done[0],
        done[1]
    );
    assert!(
        at(&done[2], "started_at") < at(&done[0], "finished_at"),
        "C ran beside A: {} / {}",
        done[0],
        done[2]
    );
    assert_eq!(mocks.served()["lichess"].rate_limited, 0);
}
on_both_databases!(
    claim_by_lane,
    a_free_slot_takes_the_oldest_import_whose_lane_is_free
);

on_databases!(
    database_scope,
    database_scope_counts_every_process,
    postgres,
    pooled
);

/// Two processes behind one address, `PROVIDER_LANES_SCOPE=database`: their lichess imports
/// together stay within the lane (2), where each process alone would allow 2.
async fn database_scope_counts_every_process(db: TestDb) {
    // 2.5 s a stream: none ends while the six are posted.
    let users: Vec<MockUser> = (1..=6).map(|i| lichess(&format!("scoped{i}"), 1000)).collect();
    let mocks = Upstreams::start_with(&users, paced(400)).await.expect("mocks");
    let env = |id| {
        [
            ("INSTANCE_ID", id),
            ("MAX_CONCURRENT_IMPORTS", "2"),
            ("LICHESS_MAX_STREAMS", "2"),
            ("PROVIDER_LANES_SCOPE", "database"),
            ("JOB_POLL_MILLIS", "50"),
        ]
    };
    let a = Importer::start(&db, &mocks, &env("scope-a")).await;
    let b = Importer::start(&db, &mocks, &env("scope-b")).await;
    let mut ids = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let imp = if i % 2 == 0 { &a } else { &b };
        ids.push((i % 2, submit(imp, &u.name).await));
    }
    // A POST's answer may say queued for an import the other process has just claimed: the
    // mock's count of streams in flight is what tells.
    let running = ids.iter().filter(|(_, v)| v["status"] == "running").count();
    assert!(running <= 2, "two lanes among both processes: {ids:?}");
    for (k, job) in &ids {
        let imp = if *k == 0 { &a } else { &b };
        let done = imp.wait(job["import_id"].as_str().unwrap_or_default()).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["games_imported"], 1000, "{done}");
    }
    let served = mocks.served()["lichess"];
    assert_eq!(served.rate_limited, 0, "{served:?}");
    assert_eq!(served.max_in_flight, 2, "two at once, never three: {served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_times_the_slots_at_once_queue_in_order_and_overflow_with_429() {
    ten_times_the_slots_at_once(TestDb::sqlite(), "process").await;
}
