//! The providers' refusals: chess.com 410 and 301, a 429 silencing its provider for every import, refusals told apart.

use super::*;
use crate::on_both_databases;

#[tokio::test]
async fn chess_com_410_fails_the_import_and_says_why() {
    let db = TestDb::sqlite();
    let users = [MockUser {
        faults: vec![410],
        ..chess_com("goneuser", 10, 1)
    }];
    let mocks = Upstreams::start(&users, SEED).await.expect("mocks");
    let imp = Importer::start(&db, &mocks, &[]).await;
    let job = imp.import("goneuser", "chess.com", 10).await;
    assert_eq!(job["status"], "failed");
    assert!(job["error"].as_str().unwrap_or_default().contains("410"), "{job}");
}

/// chess.com answers 301 for a moved resource: the importer follows it, for the
/// archive list and for every month, and imports as if it had asked the new place.
#[tokio::test]
async fn chess_com_301_is_followed() {
    let db = TestDb::sqlite();
    let mocks = Upstreams::start(&[chess_com("movedaway", 300, 3)], SEED)
        .await
        .expect("mocks");
    let moved = wiremock::MockServer::start().await;
    let target = mocks.chess_com_url();
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(move |req: &wiremock::Request| {
            wiremock::ResponseTemplate::new(301)
                .insert_header("location", format!("{target}{}", req.url.path()))
        })
        .mount(&moved)
        .await;
    let imp = Importer::start(&db, &mocks, &[("CHESSCOM_BASE_URL", &moved.uri())]).await;
    let job = imp.import("movedaway", "chess.com", 1000).await;
    assert_eq!(job["status"], "completed", "{job}\n{}", imp.log_text());
    assert_eq!(job["games_imported"], 300, "{job}");
    assert_eq!(db.distinct_games_of("movedaway").await, 300);
    let redirected = moved.received_requests().await.unwrap_or_default();
    assert!(
        redirected.len() >= 4,
        "the archive list and three months went through the 301: {}",
        redirected.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connection_lost_mid_batch_is_retried_without_loss() {
    let db = TestDb::postgres().await;
    let user = lichess("severed", 1500);
    let mocks = Upstreams::start(std::slice::from_ref(&user), SEED)
        .await
        .expect("mocks");
    let imp = Importer::start(&db, &mocks, &[("IMPORT_BATCH_SIZE", "5")]).await;
    let (status, body) = imp
        .post(json!({"user_id": "severed", "platform": "lichess", "limit": 2000}))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["import_id"].as_str().unwrap_or_default().to_string();
    wait_for_progress(&imp, &id).await;
    let mut killed = 0;
    for _ in 0..3 {
        killed += db.terminate_backends().await;
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    assert!(killed > 0, "the importer's connections were terminated");
    let job = imp.wait(&id).await;
    assert_eq!(job["status"], "completed", "{job}\n{}", imp.log_text());
    assert_eq!(job["games_imported"], 1500, "{job}");
    assert_eq!(db.games_of("severed").await, 1500);
    assert_eq!(db.distinct_games_of("severed").await, 1500);
}

/// A 429 makes the whole process wait: no request to lichess from any import until the wait
/// has passed. The mock serves a 429 to every lichess request inside its penalty window (as long
/// as the importer's wait), so a single 429 served in all proves that none came early.
async fn a_429_silences_the_provider_for_every_import(db: TestDb) {
    let users = [
        MockUser {
            faults: vec![429],
            ..lichess("cool_a", 50)
        },
        lichess("cool_b", 50),
    ];
    let mocks = Upstreams::start_with(&users, penalty_of(2.0))
        .await
        .expect("mocks");
    let imp = Importer::start(
        &db,
        &mocks,
        &[
            ("MAX_CONCURRENT_IMPORTS", "2"),
            ("LICHESS_MAX_STREAMS", "2"),
            ("UPSTREAM_RATE_LIMIT_WAIT_SECS", "2"),
        ],
    )
    .await;
    let a = submit(&imp, "cool_a").await;
    // B is posted once the importer has taken A's 429 (its counter, not the mock's: the
    // mock counts the 429 before the importer has read it, and a B sent in that gap meets
    // the provider's penalty as any request already in flight would): B's first request
    // falls inside the cool-down.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !imp
        .get_text("/metrics")
        .await
        .contains("importer_upstream_rate_limited_total{provider=\"lichess\"} 1")
    {
        assert!(std::time::Instant::now() < deadline, "no 429 taken");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let limited_at = std::time::Instant::now();
    let b = submit(&imp, "cool_b").await;
    for job in [&a, &b] {
        let done = imp.wait(job["import_id"].as_str().unwrap_or_default()).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["games_imported"], 50, "{done}");
    }
    assert!(
        limited_at.elapsed().as_secs_f64() >= 1.5,
        "both waited out the cool-down"
    );
    let served = mocks.served()["lichess"];
    assert_eq!(
        served.rate_limited, 1,
        "no lichess request inside the wait: {served:?}"
    );
    assert_eq!(served.requests, 3, "A's 429, then A and B: {served:?}");
    let log = imp.log_text();
    assert_eq!(
        log.matches("rate limited (429)").count(),
        1,
        "one line per cool-down:\n{log}"
    );
    let metrics = imp.get_text("/metrics").await;
    assert!(
        metrics.contains("importer_upstream_rate_limited_total{provider=\"lichess\"} 1"),
        "{metrics}"
    );
    let cooled: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("importer_upstream_cooldown_seconds_total{provider=\"lichess\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!((cooled - 2.0).abs() < 0.01, "{metrics}");
}
on_both_databases!(shared_cool_down, a_429_silences_the_provider_for_every_import);

/// Each kind of refusal gives the provider's own words, and none is retried.
async fn refusals_are_told_apart(db: TestDb) {
    let users = [
        MockUser {
            faults: vec![404],
            ..chess_com("exists_cc", 10, 1)
        },
        MockUser {
            faults: vec![500, 500, 500, 500, 500],
            ..chess_com("broken_cc", 10, 1)
        },
        lichess("someone", 10),
    ];
    let mocks = Upstreams::start(&users, SEED).await.expect("mocks");
    let imp = Importer::start(&db, &mocks, &[("UPSTREAM_USER_AGENT", "my-importer/1.0")]).await;
    let job = imp.import("someone", "lichess", 10).await;
    assert_eq!(
        job["error"], "lichess refused the request (404 page): set UPSTREAM_USER_AGENT with a contact",
        "{job}"
    );
    let job = imp.import("exists_cc", "chess.com", 10).await;
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("chess.com answered 403: Forbidden"), "{job}");
    assert!(error.contains("set UPSTREAM_USER_AGENT"), "{job}");
    assert!(
        imp.log_text().contains("UPSTREAM_USER_AGENT"),
        "a warning at start names the setting"
    );
    assert_eq!(mocks.served()["lichess"].requests, 1, "a 404 page is not retried");
    assert_eq!(mocks.served()["chess.com"].requests, 1, "a 403 is not retried");
    assert_eq!(imp.stop().await, Some(0));

    // With a contact: chess.com's JSON error for an account that exists, with its status;
    // five 5xx in a row are the provider's bad day: the import waits for it, and completes.
    let imp = Importer::start(&db, &mocks, &[]).await;
    let job = imp.import("exists_cc", "chess.com", 10).await;
    assert_eq!(
        job["error"],
        "chess.com answered 404: An internal error has occurred. Please contact Chess.com Developer's Forum \
         for further help https://www.chess.com/club/chess-com-developer-community .",
        "{job}"
    );
    let job = imp.import("broken_cc", "chess.com", 10).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["games_imported"], 10, "{job}");
    assert!(
        job["provider_wait_secs"].as_f64().unwrap_or(0.0) > 0.0,
        "it waited for chess.com: {job}"
    );
    let job = imp.import("someone", "lichess", 10).await;
    assert_eq!(job["status"], "completed", "{job}");
}
on_both_databases!(refusals, refusals_are_told_apart);
