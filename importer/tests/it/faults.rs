//! Faults: SIGTERM and kill -9 in the middle of an import, broken streams, a lost PostgreSQL connection; every game once.

use super::*;
use crate::{on_both_databases, on_every_database};

/// Interrupts an import (SIGTERM or SIGKILL), restarts the importer on the same database,
/// and checks that the resumed import ends with exactly the games an uninterrupted one stores.
async fn interrupted_import_resumes_exactly(db: TestDb, sig: &str) {
    let user = lichess("resumer", 3000);
    let mocks = Upstreams::start(std::slice::from_ref(&user), SEED)
        .await
        .expect("mocks");
    // One game per transaction: slow enough to be interrupted half way.
    let env = [("IMPORT_BATCH_SIZE", "1")];
    let mut imp = Importer::start(&db, &mocks, &env).await;
    let (status, body) = imp
        .post(json!({"user_id": "resumer", "platform": "lichess", "limit": 2500}))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["import_id"].as_str().unwrap_or_default().to_string();
    wait_for_progress(&imp, &id).await;
    imp.signal(sig);
    if sig == "TERM" {
        // While it drains, new imports are refused with 503 (or the socket is already closed).
        let refused = reqwest::Client::new()
            .post(format!("{}/api/v1/import-more-games", imp.base))
            .json(&json!({"user_id": "someone", "platform": "lichess"}))
            .send()
            .await
            .map(|r| r.status().as_u16());
        assert!(matches!(refused, Ok(503) | Err(_)), "{refused:?}");
    }
    let (code, took) = imp
        .wait_exit(std::time::Duration::from_secs(12))
        .await
        .expect("exits");
    if sig == "TERM" {
        assert_eq!(code, Some(0), "SIGTERM exits 0:\n{}", imp.log_text());
        assert!(took.as_secs() < 10, "within 10 s, took {took:?}");
    }
    let stored_before = db.games_of("resumer").await;
    assert!(
        stored_before > 0 && stored_before < 2500,
        "interrupted half way: {stored_before}"
    );

    let imp = Importer::start(&db, &mocks, &[]).await;
    let job = imp.wait(&id).await;
    assert_eq!(job["status"], "completed", "{job}\n{}", imp.log_text());
    if sig == "KILL" {
        assert!(
            imp.log_text()
                .contains("left running by a previous run are queued again"),
            "the same instance takes its job back at once:\n{}",
            imp.log_text()
        );
    }
    assert_eq!(job["games_imported"], 2500, "{job}");
    assert_eq!(db.games_of("resumer").await, 2500);
    assert_eq!(db.distinct_games_of("resumer").await, 2500);
    let newest: Vec<String> = user.valid_ids().take(2500).map(|(_, id)| id).collect();
    assert_eq!(
        db.count_among("resumer", &newest).await,
        2500,
        "the same games as an uninterrupted import"
    );
}

async fn sigterm_mid_import(db: TestDb) {
    interrupted_import_resumes_exactly(db, "TERM").await;
}
on_both_databases!(sigterm_resume, sigterm_mid_import);

async fn kill_9_mid_import(db: TestDb) {
    interrupted_import_resumes_exactly(db, "KILL").await;
}
on_every_database!(kill_resume, kill_9_mid_import);

async fn broken_streams_resume_without_half_games(db: TestDb) {
    let users = [
        MockUser {
            cut_after: Some(120),
            ..lichess("cutter", 400)
        },
        MockUser {
            stall_after: Some(77),
            ..lichess("staller", 300)
        },
    ];
    let mocks = Upstreams::start(&users, SEED).await.expect("mocks");
    let imp = Importer::start(&db, &mocks, &[("UPSTREAM_READ_TIMEOUT_SECS", "1")]).await;
    for u in &users {
        let job = imp.import(&u.name, "lichess", 1000).await;
        assert_eq!(job["status"], "completed", "{job}\n{}", imp.log_text());
        assert_eq!(job["games_imported"].as_u64(), Some(u.games), "{job}");
        assert_eq!(
            job["games_failed_parse"], 0,
            "the half game is discarded, not parsed: {job}"
        );
        assert_eq!(db.games_of(&u.key()).await, u.games as i64);
        assert_eq!(db.distinct_games_of(&u.key()).await, u.games as i64);
    }
    // Every stored game is whole: its PGN ends with the result.
    let whole = db
        .count(
            "SELECT COUNT(*) FROM games WHERE user_id = $1 AND (pgn LIKE '%1-0' OR pgn LIKE '%0-1' OR pgn LIKE '%1/2-1/2')",
            "cutter",
        )
        .await;
    assert_eq!(whole, 400);
    let log = imp.log_text();
    assert!(log.contains("lichess stream broke, resuming"), "{log}");
}
on_both_databases!(broken_streams, broken_streams_resume_without_half_games);
