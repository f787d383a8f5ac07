//! The providers' bad days (docs/providers.md): an outage longer than the old in-place retries
//! delays an import and the other provider's imports keep running; one longer than
//! `UPSTREAM_OUTAGE_MAX_SECS` fails it with the provider's words; a stream broken every K games
//! is read to its end; a chess.com month served short is completed by a later import.

use std::time::{Duration, Instant};

use harness::upstream::ShortMonths;
use harness::upstream::outage::{Outage, allowance};

use super::*;
use crate::on_every_database;

/// Exactly `user`'s finished games are stored, each once.
async fn assert_all_stored_once(db: &TestDb, user: &MockUser) {
    let expected: Vec<String> = user.valid_ids().map(|(_, id)| id).collect();
    let n = expected.len() as i64;
    assert_eq!(db.games_of(&user.key()).await, n, "rows of {}", user.name);
    assert_eq!(
        db.distinct_games_of(&user.key()).await,
        n,
        "distinct games of {}",
        user.name
    );
    assert_eq!(
        db.count_among(&user.key(), &expected).await,
        n,
        "the games of {}",
        user.name
    );
}

async fn post(imp: &Importer, user: &MockUser) -> String {
    let (status, body) = imp
        .post(json!({"user_id": user.name, "platform": user.platform.as_str(), "limit": 5000}))
        .await;
    assert_eq!(status, 202, "{body}");
    body["import_id"].as_str().expect("import_id").to_string()
}

/// lichess restarts for 12 s (502 with its HTML page), longer than the ~1.5 s of in-place
/// retries the importer used to fail after: the lichess import waits in the queue, says so, and
/// completes; the chess.com import beside it runs meanwhile; lichess gets one request per
/// growing wait, never a 429.
async fn an_outage_delays_an_import_and_never_fails_it(db: TestDb) {
    let restarting = lichess("restarting", 300);
    let steady = chess_com("steady", 200, 2);
    let mocks = Upstreams::start_with(&[restarting.clone(), steady.clone()], paced(200))
        .await
        .expect("mocks");
    let imp = Importer::start(&db, &mocks, &[("UPSTREAM_OUTAGE_MAX_SECS", "120")]).await;
    let outage = Duration::from_secs(12);
    let began = Instant::now();
    mocks.begin_outage(Platform::Lichess, Outage::lichess_restart(outage));
    let waiting_id = post(&imp, &restarting).await;
    let steady_id = post(&imp, &steady).await;

    // Seen waiting, with what lichess said.
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let (_, job) = imp.get(&format!("/api/v1/imports/{waiting_id}")).await;
        if job["status"] == "waiting_for_provider" {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "never seen waiting for lichess: {job}\n{}",
            imp.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let wait = &seen["waiting_for_provider"];
    let said = wait["last_answer"].as_str().unwrap_or_default();
    assert!(
        said.starts_with("lichess answered 502 with an HTML page titled \"lichess.org\""),
        "{seen}"
    );
    assert!(
        wait["since"].is_string() && wait["next_try"].is_string(),
        "{seen}"
    );
    let metrics = imp.get_text("/metrics").await;
    assert!(
        metrics.contains("importer_provider_waits_total{provider=\"lichess\"} ")
            && !metrics.contains("importer_provider_waits_total{provider=\"lichess\"} 0"),
        "{metrics}"
    );

    // chess.com's import runs while lichess is down.
    let other = imp.wait(&steady_id).await;
    assert_eq!(other["status"], "completed", "{other}");
    assert!(
        began.elapsed() < outage,
        "the chess.com import ended {:?} after the outage began: it waited for lichess's lane or slot",
        began.elapsed()
    );

    let job = imp.wait(&waiting_id).await;
    assert_eq!(job["status"], "completed", "{job}\n{}", imp.log_text());
    assert_eq!(job["games_imported"], 300, "{job}");
    assert!(job["provider_wait_secs"].as_f64().unwrap_or(0.0) >= 5.0, "{job}");
    assert_all_stored_once(&db, &restarting).await;
    assert_all_stored_once(&db, &steady).await;

    let lichess = mocks.served()["lichess"];
    assert_eq!(lichess.rate_limited, 0, "{lichess:?}");
    let records = mocks.outages(began);
    let asked = records.iter().map(|r| r.requests).sum::<u64>();
    let allowed = allowance(outage, 1);
    assert!(
        (1..=allowed).contains(&asked),
        "{asked} requests during a 12 s outage, one client allowed {allowed}: {records:?}"
    );
}
on_every_database!(outage_delays, an_outage_delays_an_import_and_never_fails_it);

/// An outage longer than `UPSTREAM_OUTAGE_MAX_SECS`: the import fails, with the provider's words.
async fn an_outage_longer_than_the_bound_fails_with_the_providers_words(db: TestDb) {
    let user = lichess("gone_for_long", 50);
    let mocks = Upstreams::start(std::slice::from_ref(&user), SEED)
        .await
        .expect("mocks");
    let imp = Importer::start(&db, &mocks, &[("UPSTREAM_OUTAGE_MAX_SECS", "4")]).await;
    mocks.begin_outage(
        Platform::Lichess,
        Outage::lichess_restart(Duration::from_secs(60)),
    );
    let job = imp.import(&user.name, "lichess", 100).await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("lichess brought nothing new for "), "{job}");
    assert!(error.contains("UPSTREAM_OUTAGE_MAX_SECS=4"), "{job}");
    assert!(
        error.contains("its last answer: lichess answered 502 with an HTML page titled \"lichess.org\""),
        "{job}"
    );
    assert_eq!(db.games_of(&user.key()).await, 0);
}
on_every_database!(
    outage_bound,
    an_outage_longer_than_the_bound_fails_with_the_providers_words
);

/// lichess's export of November 2022 (lila#11926): every stream breaks after K games. Each
/// reopening brings K new games: progress, so the import reads to the end (it used to fail on
/// the sixth break), whole and exact.
async fn a_stream_broken_every_k_games_completes_exactly(db: TestDb) {
    let user = MockUser {
        cut_every: Some(25),
        ..lichess("breaks_often", 400)
    };
    let mocks = Upstreams::start(std::slice::from_ref(&user), SEED)
        .await
        .expect("mocks");
    let imp = Importer::start(&db, &mocks, &[]).await;
    let job = imp.import(&user.name, "lichess", 1000).await;
    assert_eq!(job["status"], "completed", "{job}\n{}", imp.log_text());
    assert_eq!(job["games_imported"], 400, "{job}");
    assert_eq!(job["games_failed_parse"], 0, "a half game is never parsed: {job}");
    assert_all_stored_once(&db, &user).await;
    let requests = mocks.served()["lichess"].requests;
    assert!(requests >= 16, "400 games, 25 a stream: {requests} requests");
}
on_every_database!(broken_every_k, a_stream_broken_every_k_games_completes_exactly);

/// chess.com serves its oldest month short to the first import (a cache served stale, as
/// NotJoeMartinez/chess-insights#60 met): the month is recorded whole, short. A later import asks
/// it again conditionally, gets the whole month under a new ETag, and stores the missing games,
/// each once.
async fn a_month_served_short_is_completed_by_a_later_import(db: TestDb) {
    let user = MockUser {
        short_months: Some(ShortMonths {
            requests: 1,
            missing: 10,
            months: vec![3],
        }),
        ..chess_com("short_month", 200, 4)
    };
    let mocks = Upstreams::start(std::slice::from_ref(&user), SEED)
        .await
        .expect("mocks");
    let imp = Importer::start(&db, &mocks, &[]).await;
    let first = imp.import(&user.name, "chess.com", 5000).await;
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["games_imported"], 190, "the month came short: {first}");
    let second = imp.import(&user.name, "chess.com", 5000).await;
    assert_eq!(second["status"], "completed", "{second}");
    assert_eq!(second["games_imported"], 10, "the month healed: {second}");
    assert_all_stored_once(&db, &user).await;
    let served: Vec<_> = mocks.months_served_to(&user.name).into_values().collect();
    assert_eq!(served.iter().map(|m| m.short).sum::<u64>(), 1, "{served:?}");
    let third = imp.import(&user.name, "chess.com", 5000).await;
    assert_eq!(third["games_imported"], 0, "nothing doubled: {third}");
    assert_all_stored_once(&db, &user).await;
}
on_every_database!(short_month, a_month_served_short_is_completed_by_a_later_import);
