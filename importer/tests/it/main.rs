//! Integration tests: the real `importer` binary against the mock upstreams
//! of the harness library (which enforce lichess's and chess.com's rules), on
//! SQLite and on PostgreSQL.

mod support;

mod incremental;
mod retention;

use std::process::Command;

use harness::upstream::{MockUser, Platform, Policy, Rules, Upstreams};
use serde_json::json;
use support::{Importer, TestDb, importer_bin};

const SEED: u64 = 42;

fn lichess(name: &str, games: u64) -> MockUser {
    MockUser::new(name, Platform::Lichess, games)
}

fn chess_com(name: &str, games: u64, months: u32) -> MockUser {
    MockUser {
        months,
        ..MockUser::new(name, Platform::ChessCom, games)
    }
}

/// Mocks with the providers' rules, lichess streaming `games_per_sec` games a second per stream.
fn paced(games_per_sec: u32) -> harness::upstream::Options {
    harness::upstream::Options {
        seed: SEED,
        lichess_games_per_sec: f64::from(games_per_sec),
        ..Default::default()
    }
}

/// Mocks with the providers' rules and lichess's penalty after a 429 shortened to `secs`.
fn penalty_of(secs: f64) -> harness::upstream::Options {
    harness::upstream::Options {
        seed: SEED,
        policy: Policy::Enforced(Rules {
            penalty_secs: secs,
            ..Rules::default()
        }),
        ..Default::default()
    }
}

async fn full_import_then_repeat_stores_nothing_new(db: TestDb) {
    let mocks = Upstreams::start(&[lichess("Magnus_1500", 1500)], SEED)
        .await
        .expect("mocks");
    let imp = Importer::start(&db, &mocks, &[]).await;
    let job = imp.import("Magnus_1500", "lichess", 2000).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["games_imported"], 1500, "{job}");
    assert_eq!(job["games_fetched"], 1500, "{job}");
    assert_eq!(job["user_id"], "magnus_1500");
    assert_eq!(db.games_of("magnus_1500").await, 1500);
    assert_eq!(db.distinct_games_of("magnus_1500").await, 1500);

    let again = imp.import("Magnus_1500", "lichess", 2000).await;
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(again["games_imported"], 0, "{again}");
    // The whole history is recorded as held: only the newest game's second is read again.
    assert_eq!(again["games_fetched"], 1, "{again}");
    assert_eq!(again["games_skipped_existing"], 1, "{again}");
    assert_eq!(db.games_of("magnus_1500").await, 1500);
    assert_eq!(imp.stop().await, Some(0), "SIGTERM exits 0");
}
on_every_database!(
    full_import_then_repeat,
    full_import_then_repeat_stores_nothing_new
);

async fn chess_com_over_fifteen_months(db: TestDb) {
    let mocks = Upstreams::start(&[chess_com("Hikaru", 1500, 15)], SEED)
        .await
        .expect("mocks");
    let imp = Importer::start(&db, &mocks, &[]).await;
    let job = imp.import("Hikaru", "chess.com", 2000).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["games_imported"], 1500, "{job}");
    assert_eq!(db.games_of("hikaru").await, 1500);
    let months = db
        .count(
            "SELECT COUNT(DISTINCT substr(CAST(played_at AS TEXT), 1, 7)) FROM games WHERE user_id = $1",
            "hikaru",
        )
        .await;
    assert_eq!(months, 15, "games span 15 monthly archives");
    let again = imp.import("hikaru", "chess.com", 2000).await;
    assert_eq!(again["games_imported"], 0, "{again}");
    assert_eq!(db.games_of("hikaru").await, 1500);
}
on_every_database!(chess_com_months, chess_com_over_fifteen_months);

async fn limit_is_respected_on_both_platforms(db: TestDb) {
    let mocks = Upstreams::start(&[lichess("limited", 300), chess_com("limitedcc", 300, 4)], SEED)
        .await
        .expect("mocks");
    let imp = Importer::start(&db, &mocks, &[("IMPORT_BATCH_SIZE", "30")]).await;
    for (user, platform) in [("limited", "lichess"), ("limitedcc", "chess.com")] {
        let first = imp.import(user, platform, 100).await;
        assert_eq!(first["games_imported"], 100, "{first}");
        assert_eq!(db.games_of(user).await, 100);
        // The next import takes the 100 most recent games not stored yet, and reads again only
        // the edges of what is stored: lichess the second of the newest and of the oldest stored
        // game; chess.com the month the first import stopped inside (25 of its 75 stored), the
        // newest month answering 304.
        let second = imp.import(user, platform, 100).await;
        assert_eq!(second["games_imported"], 100, "{second}");
        let reread = if platform == "lichess" { 2 } else { 25 };
        assert_eq!(second["games_skipped_existing"], reread, "{second}");
        // chess.com's months come whole: the month the limit ends inside is read to its end.
        let fetched = if platform == "lichess" { 102 } else { 150 };
        assert_eq!(second["games_fetched"], fetched, "{second}");
        assert_eq!(db.games_of(user).await, 200);
        assert_eq!(db.distinct_games_of(user).await, 200);
    }
    // The newest 200 games are the ones stored.
    let newest: Vec<String> = lichess("limited", 300)
        .valid_ids()
        .take(200)
        .map(|(_, id)| id)
        .collect();
    assert_eq!(db.count_among("limited", &newest).await, 200);
}
on_both_databases!(limit, limit_is_respected_on_both_platforms);

async fn three_imports_with_two_slots(db: TestDb) {
    let users = [
        lichess("slot_a", 400),
        lichess("slot_b", 400),
        lichess("slot_c", 400),
    ];
    // Paced (about a second an import), so that none ends before the third is posted.
    let mocks = Upstreams::start_with(&users, paced(400)).await.expect("mocks");
    let imp = Importer::start(
        &db,
        &mocks,
        &[
            ("MAX_CONCURRENT_IMPORTS", "2"),
            ("LICHESS_MAX_STREAMS", "2"),
            ("IMPORT_BATCH_SIZE", "10"),
        ],
    )
    .await;
    let mut ids = Vec::new();
    let mut positions = Vec::new();
    for u in &users {
        let (status, body) = imp
            .post(json!({"user_id": u.name, "platform": "lichess", "limit": 1000}))
            .await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["import_id"].as_str().unwrap_or_default().to_string());
        positions.push((
            body["status"].as_str().unwrap_or_default().to_string(),
            body["queue_position"].clone(),
        ));
    }
    assert_eq!(positions[0], ("running".into(), json!(0)));
    assert_eq!(positions[1], ("running".into(), json!(0)));
    assert_eq!(
        positions[2],
        ("queued".into(), json!(1)),
        "the third waits first in line"
    );
    // The same user again while active gets the same import.
    let (status, body) = imp
        .post(json!({"user_id": "SLOT_C", "platform": "lichess", "limit": 10}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["import_id"], ids[2].as_str());
    for (id, u) in ids.iter().zip(&users) {
        let job = imp.wait(id).await;
        assert_eq!(job["status"], "completed", "{job}");
        assert_eq!(job["games_imported"], 400, "{job}");
        assert_eq!(db.games_of(&u.key()).await, 400);
    }
    let log = imp.log_text();
    assert!(log.contains("available slots: 0/2"), "slots logged:\n{log}");
    // /metrics read back by a Prometheus text parser, not by our own string matching.
    let metrics = imp.get_text("/metrics").await;
    let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string())))
        .expect("/metrics parses as Prometheus text");
    let value = |name: &str, label: (&str, &str)| {
        scrape.samples.iter().find_map(|s| {
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => return None,
            };
            (s.metric == name && s.labels.get(label.0) == Some(label.1)).then_some(v)
        })
    };
    assert_eq!(
        value("importer_games_imported_total", ("platform", "lichess")),
        Some(1200.0),
        "{metrics}"
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "process_resident_memory_bytes"),
        "{metrics}"
    );
    // Three POSTs answered 202 and one 200 (the same user again), each in the request histogram.
    let posts = |status: &str| {
        scrape.samples.iter().find_map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets)
                if s.metric == "importer_http_request_duration_seconds"
                    && s.labels.get("route") == Some("/api/v1/import-more-games")
                    && s.labels.get("status") == Some(status) =>
            {
                buckets
                    .iter()
                    .map(|b| b.count)
                    .fold(None, |m: Option<f64>, c| Some(m.map_or(c, |m| m.max(c))))
            }
            _ => None,
        })
    };
    assert_eq!(posts("202"), Some(3.0), "{metrics}");
    assert_eq!(posts("200"), Some(1.0), "{metrics}");
    // What the three users were given: three waits and runs, one of them queued behind the others.
    let histogram = |name: &str, provider: &str| {
        scrape.samples.iter().find_map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets)
                if s.metric == name && s.labels.get("provider") == Some(provider) =>
            {
                Some(buckets.iter().map(|b| (b.less_than, b.count)).collect::<Vec<_>>())
            }
            _ => None,
        })
    };
    for name in ["importer_import_wait_seconds", "importer_import_run_seconds"] {
        let buckets = histogram(name, "lichess").unwrap_or_else(|| panic!("{name} missing:\n{metrics}"));
        assert_eq!(buckets.last().map(|b| b.1), Some(3.0), "{name}: {buckets:?}");
        let empty = histogram(name, "chess.com").unwrap_or_else(|| panic!("{name} missing:\n{metrics}"));
        assert_eq!(empty.last().map(|b| b.1), Some(0.0), "{name}: {empty:?}");
    }
    let games = |outcome: &str| {
        scrape.samples.iter().find_map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v)
                if s.metric == "importer_import_games_total"
                    && s.labels.get("provider") == Some("lichess")
                    && s.labels.get("outcome") == Some(outcome) =>
            {
                Some(v)
            }
            _ => None,
        })
    };
    assert_eq!(games("imported"), Some(1200.0), "{metrics}");
    assert_eq!(games("skipped_existing"), Some(0.0), "{metrics}");
}
on_every_database!(queueing, three_imports_with_two_slots);

async fn unknown_user_fails_with_reason(db: TestDb) {
    let mocks = Upstreams::start(&[], SEED).await.expect("mocks");
    let imp = Importer::start(&db, &mocks, &[]).await;
    let job = imp.import("nobody_here", "lichess", 10).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(
        job["error"],
        "user nobody_here not found on lichess (unknown or closed account)"
    );
    // chess.com says it in a JSON error object: its words reach the job.
    let job = imp.import("nobody_here", "chess.com", 10).await;
    assert_eq!(
        job["error"],
        "chess.com answered 404: User \"nobody_here\" not found."
    );
}
on_both_databases!(unknown_user, unknown_user_fails_with_reason);

async fn malformed_games_are_skipped_and_counted(db: TestDb) {
    let users = [
        MockUser {
            malformed: vec![3, 50],
            ..lichess("broken", 120)
        },
        MockUser {
            malformed: vec![0, 7],
            ..chess_com("brokencc", 60, 2)
        },
    ];
    let mocks = Upstreams::start(&users, SEED).await.expect("mocks");
    let imp = Importer::start(&db, &mocks, &[]).await;
    let job = imp.import("broken", "lichess", 1000).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        (job["games_failed_parse"].as_i64(), job["games_imported"].as_i64()),
        (Some(2), Some(118)),
        "{job}"
    );
    assert_eq!(db.games_of("broken").await, 118);
    let job = imp.import("brokencc", "chess.com", 1000).await;
    assert_eq!(
        (job["games_failed_parse"].as_i64(), job["games_imported"].as_i64()),
        (Some(2), Some(58)),
        "{job}"
    );
    assert!(imp.log_text().contains("game skipped: does not parse"));
}
on_both_databases!(malformed, malformed_games_are_skipped_and_counted);

async fn rate_limits_and_server_errors_are_waited_out(db: TestDb) {
    let users = [
        MockUser {
            faults: vec![429, 503],
            ..lichess("flaky", 80)
        },
        MockUser {
            faults: vec![502],
            ..chess_com("flakycc", 40, 2)
        },
    ];
    let mocks = Upstreams::start_with(&users, penalty_of(1.0))
        .await
        .expect("mocks");
    let imp = Importer::start(&db, &mocks, &[("UPSTREAM_RATE_LIMIT_WAIT_SECS", "1")]).await;
    let job = imp.import("flaky", "lichess", 500).await;
    assert_eq!(
        (job["status"].as_str(), job["games_imported"].as_i64()),
        (Some("completed"), Some(80)),
        "{job}"
    );
    let job = imp.import("flakycc", "chess.com", 500).await;
    assert_eq!(
        (job["status"].as_str(), job["games_imported"].as_i64()),
        (Some("completed"), Some(40)),
        "{job}"
    );
    assert!(
        imp.log_text().contains("rate limited (429)"),
        "{}",
        imp.log_text()
    );
    assert_eq!(
        mocks.served()["lichess"].rate_limited,
        1,
        "the one injected 429, no other"
    );
}
on_both_databases!(upstream_faults, rate_limits_and_server_errors_are_waited_out);

#[tokio::test]
async fn bad_requests_get_json_errors_naming_the_field() {
    let db = TestDb::sqlite();
    let mocks = Upstreams::start(&[], SEED).await.expect("mocks");
    let imp = Importer::start(&db, &mocks, &[]).await;
    let cases = [
        (json!({"user_id": "ab/cd", "platform": "lichess"}), "user_id"),
        (json!({"user_id": "abc", "platform": "chess.org"}), "platform"),
        (
            json!({"user_id": "abc", "platform": "lichess", "limit": 0}),
            "limit",
        ),
        (
            json!({"user_id": "abc", "platform": "lichess", "extra": 1}),
            "extra",
        ),
    ];
    for (body, field) in cases {
        let (status, resp) = imp.post(body.clone()).await;
        assert_eq!(status, 400, "{body} -> {resp}");
        assert!(
            resp["error"].as_str().unwrap_or_default().starts_with(field),
            "{body} -> {resp}"
        );
    }
    let (status, resp) = imp.get("/api/v1/imports/does-not-exist").await;
    assert_eq!(status, 404);
    assert!(
        resp["error"]
            .as_str()
            .unwrap_or_default()
            .contains("does-not-exist")
    );
    let (status, _) = imp.get("/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn full_queue_answers_429_with_retry_after() {
    let db = TestDb::sqlite();
    let users = [
        lichess("q_one", 3000),
        lichess("q_two", 10),
        lichess("q_three", 10),
    ];
    let mocks = Upstreams::start(&users, SEED).await.expect("mocks");
    let env = [
        ("MAX_CONCURRENT_IMPORTS", "1"),
        ("IMPORT_QUEUE_CAPACITY", "1"),
        ("IMPORT_BATCH_SIZE", "1"),
    ];
    let imp = Importer::start(&db, &mocks, &env).await;
    let (s1, _) = imp
        .post(json!({"user_id": "q_one", "platform": "lichess", "limit": 3000}))
        .await;
    let (s2, b2) = imp.post(json!({"user_id": "q_two", "platform": "lichess"})).await;
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/import-more-games", imp.base))
        .json(&json!({"user_id": "q_three", "platform": "lichess"}))
        .send()
        .await
        .expect("POST");
    assert_eq!((s1, s2), (202, 202), "{b2}");
    assert_eq!(b2["queue_position"], 1);
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

fn run_with_env(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(importer_bin())
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run importer");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_bad_setting_stops_the_program_with_exit_code_2_naming_it() {
    let cases = [
        ("MAX_CONCURRENT_IMPORTS", "0"),
        ("MAX_CONCURRENT_IMPORTS", "257"),
        ("IMPORT_BATCH_SIZE", "0"),
        ("IMPORT_BATCH_SIZE", "many"),
        ("EXISTING_GAMES_PAGE_SIZE", "100001"),
        ("IMPORT_QUEUE_CAPACITY", "-1"),
        ("HTTP_MAX_CONNECTIONS", "0"),
        ("HTTP_POOL_MAX_IDLE_PER_HOST", "x"),
        ("DB_POOL_SIZE", "101"),
        ("DATABASE_URL", "mysql://localhost/db"),
        ("LICHESS_BASE_URL", "not a url"),
        ("CHESSCOM_BASE_URL", "ftp://api.chess.com"),
        ("BIND_ADDR", "nowhere"),
        ("PORT", "99999"),
        ("UPSTREAM_RATE_LIMIT_WAIT_SECS", "-5"),
        ("DEDUP_STRATEGY", "guess"),
        ("UPSTREAM_READ_TIMEOUT_SECS", "0"),
        ("WORKER_THREADS", "65"),
        ("SQLITE_CACHE_KIB", "10"),
        ("DB_QUEUE_POOL_SIZE", "0"),
        ("DATABASE_POOLER", "session"),
    ];
    for (var, value) in cases {
        let (code, stderr) = run_with_env(&[(var, value)]);
        assert_eq!(code, Some(2), "{var}={value}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.contains(var) && first.contains(value) && first.contains("expected"),
            "{var}={value}: {first}"
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn help_lists_every_setting() {
    let out = Command::new(importer_bin()).arg("--help").output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "MAX_CONCURRENT_IMPORTS",
        "IMPORT_BATCH_SIZE",
        "EXISTING_GAMES_PAGE_SIZE",
        "IMPORT_QUEUE_CAPACITY",
        "HTTP_MAX_CONNECTIONS",
        "HTTP_POOL_MAX_IDLE_PER_HOST",
        "DB_POOL_SIZE",
        "DATABASE_URL",
        "LICHESS_BASE_URL",
        "CHESSCOM_BASE_URL",
        "BIND_ADDR",
        "LICHESS_TOKEN",
        "UPSTREAM_RATE_LIMIT_WAIT_SECS",
        "DB_QUEUE_POOL_SIZE",
        "DATABASE_POOLER",
        "LISTEN_ADDR_FILE",
        "UPSTREAM_USER_AGENT",
    ] {
        assert!(help.contains(var), "--help names {var}");
    }
}

/// How many games pgn-reader itself finds reading the whole file at once: the oracle for the splitter.
fn pgn_reader_game_count(bytes: &[u8]) -> usize {
    use std::ops::ControlFlow;
    struct Count;
    impl pgn_reader::Visitor for Count {
        type Tags = ();
        type Movetext = ();
        type Output = ();
        fn begin_tags(&mut self) -> ControlFlow<(), ()> {
            ControlFlow::Continue(())
        }
        fn begin_movetext(&mut self, _: ()) -> ControlFlow<(), ()> {
            ControlFlow::Continue(())
        }
        fn end_game(&mut self, _: ()) {}
    }
    let mut reader = pgn_reader::Reader::new(bytes);
    let mut n = 0;
    while let Ok(Some(())) = reader.read_game(&mut Count) {
        n += 1;
    }
    n
}

#[test]
fn every_real_pgn_file_goes_through_the_parsing_path() {
    use importer::pgn::{Framed, Splitter, parse_game};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/real-pgn");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "pgn") {
            continue;
        }
        files += 1;
        let bytes = std::fs::read(&path).expect("read");
        let mut splitter = Splitter::new();
        // Small chunks, as a network would deliver them.
        for chunk in bytes.chunks(97) {
            splitter.push(chunk);
        }
        splitter.finish();
        let (mut rows, mut failed) = (0, 0);
        while let Some(framed) = splitter.next_game() {
            let Framed::Game(game) = framed else {
                failed += 1;
                continue;
            };
            // Every game is a row or a counted failure with a reason, under either platform's rules.
            match parse_game(importer::Platform::Lichess, &game) {
                Ok(row) => {
                    rows += 1;
                    assert!(!row.pgn.is_empty());
                }
                Err(reason) => {
                    failed += 1;
                    assert!(!reason.to_string().is_empty());
                }
            }
        }
        let reference = pgn_reader_game_count(&bytes);
        assert_eq!(
            rows + failed,
            reference,
            "{}: every game accounted for",
            path.display()
        );
    }
    assert!(files >= 10, "corpus present");
}

#[test]
fn lichess_variant_games_from_the_corpus_become_rows() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/real-pgn");
    for (file, variant) in [
        ("knightvuillaume-jannlee-zh-lichess.pgn", "Crazyhouse"),
        ("saturs-jannlee-zh-lichess.pgn", "Crazyhouse"),
    ] {
        let bytes = std::fs::read(dir.join(file)).expect("read");
        let row = importer::pgn::parse_game(importer::Platform::Lichess, &bytes).expect(file);
        assert_eq!(row.variant, variant);
        assert!(row.ply_count > 10, "{file}: {} plies", row.ply_count);
    }
}

/// Polls until the import has stored at least one batch.
async fn wait_for_progress(imp: &Importer, id: &str) {
    for _ in 0..400 {
        let (_, job) = imp.get(&format!("/api/v1/imports/{id}")).await;
        if job["games_imported"].as_i64().unwrap_or(0) > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("import {id} made no progress");
}

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

#[tokio::test]
async fn hostile_requests_get_4xx_naming_the_field_and_change_nothing() {
    let db = TestDb::sqlite();
    let mocks = Upstreams::start(&[lichess("abc", 5)], SEED).await.expect("mocks");
    let imp = Importer::start(&db, &mocks, &[]).await;
    let long = "x".repeat(200);
    let deep = format!(
        "{{\"user_id\": {}1{}, \"platform\": \"lichess\"}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let big = format!(
        "{{\"user_id\": \"abc\", \"platform\": \"lichess\", \"pad\": \"{}\"}}",
        "x".repeat(17 * 1024)
    );
    let ok = |u: &str| json!({"user_id": u, "platform": "lichess"}).to_string();
    let with_limit = |l: &str| format!(r#"{{"user_id": "abc", "platform": "lichess", "limit": {l}}}"#);
    let json_ct = "application/json";
    let cases: Vec<(String, &str, &str)> = vec![
        ("{".into(), json_ct, "body"),
        ("not json".into(), json_ct, "body"),
        ("".into(), json_ct, "body"),
        ("[]".into(), json_ct, "body"),
        ("\"lichess\"".into(), json_ct, "body"),
        ("null".into(), json_ct, "body"),
        (deep, json_ct, "body"),
        (
            r#"{"user_id": 5, "platform": "lichess"}"#.into(),
            json_ct,
            "user_id",
        ),
        (
            r#"{"user_id": null, "platform": "lichess"}"#.into(),
            json_ct,
            "user_id",
        ),
        (
            r#"{"user_id": ["abc"], "platform": "lichess"}"#.into(),
            json_ct,
            "user_id",
        ),
        (r#"{"platform": "lichess"}"#.into(), json_ct, "user_id"),
        (r#"{"user_id": "abc"}"#.into(), json_ct, "platform"),
        (r#"{"user_id": "abc", "platform": 5}"#.into(), json_ct, "platform"),
        (
            r#"{"user_id": "abc", "platform": "fics"}"#.into(),
            json_ct,
            "platform",
        ),
        (
            r#"{"user_id": "abc", "platform": "LICHESS"}"#.into(),
            json_ct,
            "platform",
        ),
        (
            r#"{"user_id": "abc", "platform": "lichess", "admin": true}"#.into(),
            json_ct,
            "admin",
        ),
        (
            r#"{"user_id": "abc", "platform": "lichess", "url": "http://evil/"}"#.into(),
            json_ct,
            "url",
        ),
        (ok(""), json_ct, "user_id"),
        (ok(&long), json_ct, "user_id"),
        (ok("a/b"), json_ct, "user_id"),
        (ok(".."), json_ct, "user_id"),
        (ok("../../api/admin"), json_ct, "user_id"),
        (ok("a%2Fb"), json_ct, "user_id"),
        (ok("a?b=1"), json_ct, "user_id"),
        (ok("a#b"), json_ct, "user_id"),
        (ok("a b"), json_ct, "user_id"),
        (ok("a\u{0}b"), json_ct, "user_id"),
        (ok("a\nb"), json_ct, "user_id"),
        (ok("a\u{7f}b"), json_ct, "user_id"),
        (ok("josé"), json_ct, "user_id"),
        (ok("игрок"), json_ct, "user_id"),
        (ok("x"), json_ct, "user_id"),
        (
            json!({"user_id": "ab", "platform": "chess.com"}).to_string(),
            json_ct,
            "user_id",
        ),
        (with_limit("0"), json_ct, "limit"),
        (with_limit("-1"), json_ct, "limit"),
        (with_limit("1.5"), json_ct, "limit"),
        (with_limit("\"10\""), json_ct, "limit"),
        (with_limit("10001"), json_ct, "limit"),
        (with_limit("1e10"), json_ct, "limit"),
        (with_limit("true"), json_ct, "limit"),
        (big, json_ct, "body"),
        (ok("abc"), "text/plain", "content-type"),
        (ok("abc"), "", "content-type"),
        (ok("abc"), "application/x-www-form-urlencoded", "content-type"),
    ];
    assert!(cases.len() >= 30);
    let http = reqwest::Client::new();
    for (body, ct, field) in &cases {
        let mut req = http
            .post(format!("{}/api/v1/import-more-games", imp.base))
            .body(body.clone());
        if !ct.is_empty() {
            req = req.header("content-type", *ct);
        }
        let resp = req.send().await.expect("POST");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let shown: String = body.chars().take(60).collect();
        assert!(
            (400..500).contains(&status),
            "{shown:?} answered {status}: {text}"
        );
        let err: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{shown:?}: not JSON: {text}"));
        let msg = err["error"].as_str().unwrap_or_default();
        assert!(
            msg.starts_with(field),
            "{shown:?}: error {msg:?} should name {field}"
        );
    }
    let (status, _) = imp.get("/healthz").await;
    assert_eq!(status, 200, "still healthy");
    assert_eq!(
        db.count("SELECT COUNT(*) FROM import_jobs WHERE user_id <> $1", "")
            .await,
        0,
        "no job was created"
    );
    let log = imp.log_text();
    assert!(!log.contains("panicked"), "no panic:\n{log}");
    // A good request still works afterwards.
    let job = imp.import("abc", "lichess", 10).await;
    assert_eq!(job["games_imported"], 5);
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_times_the_slots_at_once_queue_in_order_and_overflow_with_429() {
    ten_times_the_slots_at_once(TestDb::sqlite(), "process").await;
}

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
    let http = reqwest::Client::new();
    let posts = users.iter().map(|u| {
        let req = http
            .post(format!("{}/api/v1/import-more-games", imp.base))
            .json(&json!({"user_id": u.name, "platform": "lichess", "limit": 1000}));
        async move {
            let r = req.send().await.expect("POST");
            let retry_after = r.headers().get("retry-after").is_some();
            (
                r.status().as_u16(),
                retry_after,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    });
    let answers = futures_util::future::join_all(posts).await;
    let accepted: Vec<&serde_json::Value> = answers.iter().filter(|a| a.0 == 202).map(|a| &a.2).collect();
    let refused: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    assert_eq!(accepted.len(), 12, "2 running + 10 queued: {answers:?}");
    assert_eq!(refused.len(), 8, "beyond the queue: 429");
    assert!(refused.iter().all(|r| r.1), "every 429 carries Retry-After");
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
        loop {
            let metrics = imp.get_text("/metrics").await;
            let active: u64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix("importer_imports_active "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            max_active = max_active.max(active);
            let (_, job) = imp.get(&format!("/api/v1/imports/{id}")).await;
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

/// The same user asked for many times at once (requests that arrive together are admitted
/// together): one import is created, every other answer is 200 with its id, and its games are
/// stored once; on PostgreSQL as on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_user_requested_at_once_gets_one_import() {
    for db in [TestDb::sqlite(), TestDb::postgres().await] {
        let users = [lichess("twice", 300), lichess("other", 300)];
        let mocks = Upstreams::start(&users, SEED).await.expect("mocks");
        let imp = Importer::start(&db, &mocks, &[("MAX_CONCURRENT_IMPORTS", "1")]).await;
        let posts = (0..20).map(|i| {
            let user = if i % 2 == 0 { "TWICE" } else { "other" };
            imp.post(json!({"user_id": user, "platform": "lichess", "limit": 1000}))
        });
        let answers = futures_util::future::join_all(posts).await;
        for user in ["twice", "other"] {
            let mine: Vec<&(u16, serde_json::Value)> = answers
                .iter()
                .zip(0..)
                .filter(|(_, i)| (i % 2 == 0) == (user == "twice"))
                .map(|(a, _)| a)
                .collect();
            let created: Vec<_> = mine.iter().filter(|a| a.0 == 202).collect();
            assert_eq!(created.len(), 1, "one import for {user}: {answers:?}");
            let id = &created[0].1["import_id"];
            assert!(
                mine.iter()
                    .all(|a| (a.0 == 202 || a.0 == 200) && &a.1["import_id"] == id),
                "every answer names the same import: {mine:?}"
            );
            let done = imp.wait(id.as_str().unwrap_or_default()).await;
            assert_eq!(done["status"], "completed", "{done}");
        }
        for u in &users {
            assert_eq!(db.games_of(&u.key()).await, 300);
        }
    }
}

/// POSTs a lichess import and expects it accepted; returns the answer.
async fn submit(imp: &Importer, user: &str) -> serde_json::Value {
    let (status, body) = imp
        .post(json!({"user_id": user, "platform": "lichess", "limit": 2000}))
        .await;
    assert_eq!(status, 202, "{body}");
    body
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
    // a 5xx is retried (4 times) before its words reach the job.
    let imp = Importer::start(&db, &mocks, &[]).await;
    let job = imp.import("exists_cc", "chess.com", 10).await;
    assert_eq!(
        job["error"],
        "chess.com answered 404: An internal error has occurred. Please contact Chess.com Developer's Forum \
         for further help https://www.chess.com/club/chess-com-developer-community .",
        "{job}"
    );
    let job = imp.import("broken_cc", "chess.com", 10).await;
    assert!(
        job["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("chess.com answered 500: An internal error"),
        "{job}"
    );
    let job = imp.import("someone", "lichess", 10).await;
    assert_eq!(job["status"], "completed", "{job}");
}
on_both_databases!(refusals, refusals_are_told_apart);

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

/// A case file from `tests/data/cases`.
fn case(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/cases/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A chess.com that serves each user's one month (2025/06) as the given PGN bytes.
async fn chess_com_months(users: &[(&str, Vec<u8>)]) -> wiremock::MockServer {
    use wiremock::matchers::path;
    let server = wiremock::MockServer::start().await;
    for (user, pgn) in users {
        let archives = json!({"archives": [format!("{}/pub/player/{user}/games/2025/06", server.uri())]});
        wiremock::Mock::given(path(format!("/pub/player/{user}/games/archives")))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(archives))
            .mount(&server)
            .await;
        wiremock::Mock::given(path(format!("/pub/player/{user}/games/2025/06/pgn")))
            .respond_with(
                wiremock::ResponseTemplate::new(200).set_body_raw(pgn.clone(), "application/x-chess-pgn"),
            )
            .mount(&server)
            .await;
    }
    server
}

/// The keys stored for `user`, sorted.
async fn keys_of(db: &TestDb, user: &str) -> Vec<String> {
    let n = db.games_of(user).await;
    let mut keys = Vec::new();
    for k in ["live/%", "daily/%"] {
        let sql = format!("SELECT COUNT(*) FROM games WHERE user_id = $1 AND provider_game_id LIKE '{k}'");
        keys.push(format!("{k}: {}", db.count(&sql, user).await));
    }
    keys.push(format!("all: {n}"));
    keys
}

/// A live and a daily game with the same number are two games; a CRLF month is stored with LF,
/// byte for byte as the same month with LF.
async fn chess_com_keys_keep_the_kind_and_pgn_is_lf(db: TestDb) {
    let pair = case("chesscom-live-and-daily-same-number.pgn");
    let crlf = case("chesscom-crlf.pgn");
    let lf = String::from_utf8_lossy(&crlf).replace("\r\n", "\n").into_bytes();
    let server = chess_com_months(&[("player_a", pair), ("crlf_user", crlf), ("lf_user", lf)]).await;
    let mocks = Upstreams::start(&[], SEED).await.expect("mocks");
    let imp = Importer::start(&db, &mocks, &[("CHESSCOM_BASE_URL", server.uri().as_str())]).await;
    let job = imp.import("player_a", "chess.com", 100).await;
    assert_eq!(
        (
            job["games_imported"].as_i64(),
            job["games_skipped_existing"].as_i64()
        ),
        (Some(2), Some(0)),
        "{job}"
    );
    assert_eq!(
        keys_of(&db, "player_a").await,
        ["live/%: 1", "daily/%: 1", "all: 2"]
    );
    let plies = db
        .count(
            "SELECT SUM(ply_count) FROM games WHERE user_id = $1 AND provider_game_id IN ('daily/412345678', 'live/412345678')",
            "player_a",
        )
        .await;
    assert_eq!(plies, 22 + 24);
    for user in ["crlf_user", "lf_user"] {
        let job = imp.import(user, "chess.com", 100).await;
        assert_eq!(job["games_imported"], 2, "{job}");
    }
    let cr = db
        .count("SELECT COUNT(*) FROM games WHERE pgn LIKE '%' || $1 || '%'", "\r")
        .await;
    assert_eq!(cr, 0, "no stored PGN holds a carriage return");
    let same = db
        .count(
            "SELECT COUNT(*) FROM games a JOIN games b ON a.provider_game_id = b.provider_game_id \
             AND a.pgn = b.pgn WHERE a.user_id = $1 AND b.user_id = 'lf_user'",
            "crlf_user",
        )
        .await;
    assert_eq!(
        same, 2,
        "the CRLF month's games are byte-identical to the LF month's"
    );
}
on_both_databases!(chess_com_keys, chess_com_keys_keep_the_kind_and_pgn_is_lf);

/// `limit` takes the newest games of a month by end time, whichever order the month arrives in,
/// both when the month fits a batch (held) and when it is read again.
async fn the_limit_takes_the_newest_of_a_month_in_any_order(db: TestDb) {
    let newest = MockUser::new("order_new", Platform::ChessCom, 120);
    let oldest = MockUser {
        oldest_first: true,
        ..MockUser::new("order_old", Platform::ChessCom, 120)
    };
    let mocks = Upstreams::start(&[newest.clone(), oldest.clone()], SEED)
        .await
        .expect("mocks");
    for batch in ["500", "20"] {
        let imp = Importer::start(&db, &mocks, &[("IMPORT_BATCH_SIZE", batch)]).await;
        for u in [&newest, &oldest] {
            let job = imp.import(&u.name, "chess.com", 30).await;
            assert_eq!(job["games_imported"], 30, "batch {batch}: {job}");
        }
        assert_eq!(imp.stop().await, Some(0));
    }
    for u in [&newest, &oldest] {
        let want: Vec<String> = u.valid_ids().take(60).map(|(_, k)| format!("'{k}'")).collect();
        let sql = format!(
            "SELECT COUNT(*) FROM games WHERE user_id = $1 AND provider_game_id IN ({})",
            want.join(",")
        );
        assert_eq!(
            db.count(&sql, &u.key()).await,
            60,
            "{}: the 60 newest, twice 30",
            u.name
        );
        assert_eq!(db.games_of(&u.key()).await, 60);
    }
}
on_both_databases!(month_order, the_limit_takes_the_newest_of_a_month_in_any_order);

/// An export that repeats a game stores each game once, at any batch size.
async fn a_repeated_game_is_stored_once(db: TestDb) {
    use wiremock::matchers::path_regex;
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(path_regex("^/api/games/user/repeater_[0-9]+$"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_raw(case("lichess-repeated-game.pgn"), "application/x-chess-pgn"),
        )
        .mount(&server)
        .await;
    let mocks = Upstreams::start(&[], SEED).await.expect("mocks");
    for batch in ["1", "100"] {
        let imp = Importer::start(
            &db,
            &mocks,
            &[
                ("LICHESS_BASE_URL", server.uri().as_str()),
                ("IMPORT_BATCH_SIZE", batch),
            ],
        )
        .await;
        let user = format!("repeater_{batch}");
        let job = imp.import(&user, "lichess", 100).await;
        assert_eq!(
            (
                job["games_imported"].as_i64(),
                job["games_skipped_existing"].as_i64()
            ),
            (Some(4), Some(2)),
            "batch {batch}: {job}"
        );
        assert_eq!(db.games_of(&user).await, 4);
        assert_eq!(imp.stop().await, Some(0));
    }
}
on_both_databases!(repeated_game, a_repeated_game_is_stored_once);

/// A database written before chess.com keys kept the kind: today's schema (migrations 1 and 2)
/// and rows keyed by the bare number, one with CRLF. The importer re-keys them at start (in one
/// transaction, idempotent), and importing the same month again stores only the game that the
/// bare number had lost.
async fn stored_chess_com_keys_are_migrated(db: TestDb) {
    let dir = if db.is_postgres() { "postgres" } else { "sqlite" };
    let root = env!("CARGO_MANIFEST_DIR");
    for m in ["0001_init.sql", "0002_shared_queue.sql"] {
        let sql = std::fs::read_to_string(format!("{root}/migrations/{dir}/{m}")).expect("migration");
        db.execute(&sql).await;
    }
    db.execute(
        "CREATE TABLE IF NOT EXISTS importer_schema (version BIGINT PRIMARY KEY); \
         INSERT INTO importer_schema (version) VALUES (1), (2);",
    )
    .await;
    // What the importer stored before: the daily game of the pair under its bare number (the live
    // one was then lost as "already stored"), and a CRLF game.
    let pair = String::from_utf8(case("chesscom-live-and-daily-same-number.pgn")).expect("utf-8");
    let daily = pair
        .split("\n\n[Event")
        .next()
        .expect("first game")
        .trim()
        .to_string();
    let crlf = String::from_utf8(case("chesscom-crlf.pgn")).expect("utf-8");
    let crlf_game = crlf
        .split("\r\n\r\n[Event")
        .next()
        .expect("first game")
        .trim()
        .to_string();
    let insert = |key: &str, user: &str, pgn: &str| {
        format!(
            "INSERT INTO games (user_id, platform, provider_game_id, variant, ply_count, pgn, imported_at) \
             VALUES ('{user}', 'chess.com', '{key}', 'Standard', 1, '{}', '2025-07-01T00:00:00Z');",
            pgn.replace('\'', "''")
        )
    };
    db.execute(&format!(
        "{}{}{}",
        insert("412345678", "player_a", &daily),
        insert("398765432", "crlf_user", &crlf_game),
        insert("123", "no_link", "[Event \"x\"]\n\n1. e4 *")
    ))
    .await;

    let server = chess_com_months(&[("player_a", case("chesscom-live-and-daily-same-number.pgn"))]).await;
    let mocks = Upstreams::start(&[], SEED).await.expect("mocks");
    let imp = Importer::start(&db, &mocks, &[("CHESSCOM_BASE_URL", server.uri().as_str())]).await;
    let by_key = "SELECT COUNT(*) FROM games WHERE provider_game_id = $1";
    assert_eq!(db.count(by_key, "daily/412345678").await, 1, "{}", imp.log_text());
    assert_eq!(db.count(by_key, "412345678").await, 0);
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM games WHERE user_id = $1 AND provider_game_id LIKE 'live/%'",
            "crlf_user"
        )
        .await,
        1
    );
    assert_eq!(
        db.count(by_key, "123").await,
        1,
        "a row without a link keeps its key"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM games WHERE pgn LIKE '%' || $1 || '%'", "\r")
            .await,
        0,
        "stored CRLF became LF"
    );
    assert!(imp.log_text().contains("re-keyed"), "{}", imp.log_text());
    let job = imp.import("player_a", "chess.com", 100).await;
    assert_eq!(
        (
            job["games_imported"].as_i64(),
            job["games_skipped_existing"].as_i64()
        ),
        (Some(1), Some(1)),
        "the live game, lost before, is stored; the daily one is known: {job}"
    );
    assert_eq!(imp.stop().await, Some(0));
    // A second start changes nothing.
    let imp = Importer::start(&db, &mocks, &[("CHESSCOM_BASE_URL", server.uri().as_str())]).await;
    let job = imp.import("player_a", "chess.com", 100).await;
    assert_eq!(job["games_imported"], 0, "{job}");
    assert_eq!(db.games_of("player_a").await, 2);
}
on_every_database!(rekey_migration, stored_chess_com_keys_are_migrated);

const TOKEN: &str = "it-token-0123456789abcdef";

/// With `API_TOKEN` set, every endpoint but /healthz needs it: no token or a wrong one is a 401
/// naming the header, and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_token_guards_every_endpoint_but_healthz() {
    let db = TestDb::sqlite();
    let mocks = Upstreams::start(&[lichess("guarded", 20)], SEED)
        .await
        .expect("mocks");
    let imp = Importer::start(&db, &mocks, &[("API_TOKEN", TOKEN)]).await;
    let http = reqwest::Client::new();
    let body = json!({"user_id": "guarded", "platform": "lichess", "limit": 20});
    for auth in [
        None,
        Some("Bearer wrong-token-0123456789"),
        Some("Basic Zm9vOmJhcg=="),
    ] {
        let mut post = http
            .post(format!("{}/api/v1/import-more-games", imp.base))
            .json(&body);
        let mut show = http.get(format!(
            "{}/api/v1/imports/00000000-0000-0000-0000-000000000000",
            imp.base
        ));
        let mut metrics = http.get(format!("{}/metrics", imp.base));
        if let Some(a) = auth {
            post = post.header("authorization", a);
            show = show.header("authorization", a);
            metrics = metrics.header("authorization", a);
        }
        for req in [post, show, metrics] {
            let resp = req.send().await.expect("request");
            assert_eq!(resp.status(), 401, "{auth:?}");
            assert_eq!(
                resp.headers().get("www-authenticate").map(|v| v.as_bytes()),
                Some(&b"Bearer"[..])
            );
            let err: serde_json::Value = resp.json().await.expect("json");
            assert!(
                err["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("Authorization"),
                "{err}"
            );
        }
    }
    assert_eq!(
        db.count("SELECT COUNT(*) FROM import_jobs WHERE user_id = $1", "guarded")
            .await,
        0
    );
    let health = http
        .get(format!("{}/healthz", imp.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200, "/healthz stays open");

    let created: serde_json::Value = http
        .post(format!("{}/api/v1/import-more-games", imp.base))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("json");
    let id = created["import_id"].as_str().expect("an import id").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let job: serde_json::Value = http
            .get(format!("{}/api/v1/imports/{id}", imp.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("json");
        if job["status"] == "completed" {
            assert_eq!(job["games_imported"], 20, "{job}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let metrics = http
        .get(format!("{}/metrics", imp.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), 200);
    assert!(!imp.log_text().contains(TOKEN), "the token is never logged");
}

/// A public address without a token is refused at start, unless explicitly allowed.
#[tokio::test]
async fn a_public_address_without_a_token_is_refused_unless_allowed() {
    let db = TestDb::sqlite();
    let (code, stderr) = run_with_env(&[("DATABASE_URL", &db.url()), ("BIND_ADDR", "0.0.0.0:0")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("API_TOKEN") && stderr.contains("ALLOW_UNAUTHENTICATED=true"),
        "{stderr}"
    );
    // The opt-out: it serves on every address, loopback included.
    let mocks = Upstreams::start(&[], SEED).await.expect("mocks");
    let imp = Importer::start(
        &db,
        &mocks,
        &[("BIND_ADDR", "0.0.0.0:0"), ("ALLOW_UNAUTHENTICATED", "true")],
    )
    .await;
    assert!(imp.base.starts_with("http://127.0.0.1:"));
    let (status, _) = imp
        .post(json!({"user_id": "nobody_here", "platform": "lichess", "limit": 1}))
        .await;
    assert_eq!(status, 202);
    // Help shows no token value even when one is set.
    let out = Command::new(importer_bin())
        .env_clear()
        .env("API_TOKEN", TOKEN)
        .arg("--help")
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("API_TOKEN") && !help.contains(TOKEN), "{help}");
}

/// With the real providers' URLs (the defaults) and no contact in the User-Agent, every import
/// would be refused: the importer does not start. With a contact it starts; against loopback
/// mocks it starts without one (and warns).
#[tokio::test]
async fn the_real_providers_without_a_contact_are_refused_at_start() {
    let db = TestDb::sqlite();
    // A build whose default User-Agent names a contact (IMPORTER_HOME_URL) starts without one.
    let unset = option_env!("IMPORTER_HOME_URL").is_none().then_some(None);
    for anonymous in unset.into_iter().chain([Some("my-importer/1.0")]) {
        let mut env = vec![("DATABASE_URL", db.url())];
        env.extend(anonymous.map(|ua| ("UPSTREAM_USER_AGENT", ua.to_string())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, stderr) = run_with_env(&env);
        assert_eq!(code, Some(2), "{anonymous:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains("UPSTREAM_USER_AGENT") && stderr.contains("e-mail address"),
            "{stderr}"
        );
    }
    let mocks = Upstreams::start(&[], SEED).await.expect("mocks");
    let real = [
        ("LICHESS_BASE_URL", "https://lichess.org"),
        ("CHESSCOM_BASE_URL", "https://api.chess.com"),
        ("UPSTREAM_USER_AGENT", "importer-it/1.0 (ops@example.org)"),
    ];
    // Starting asks nothing of the providers: no request leaves this machine.
    let imp = Importer::start(&db, &mocks, &real).await;
    assert_eq!(imp.stop().await, Some(0));
    let imp = Importer::start(&db, &mocks, &[("UPSTREAM_USER_AGENT", "my-importer/1.0")]).await;
    assert!(
        imp.log_text().contains("names neither a URL nor an e-mail"),
        "{}",
        imp.log_text()
    );
    assert_eq!(imp.stop().await, Some(0));
}

/// `DATABASE_URL` with `sslmode`, through a PgBouncer that requires TLS (the shared server is not
/// touched): `verify-full` with the CA that signed the pooler's certificate imports exactly;
/// `require` starts (connects, migrates); a root certificate that did not sign it stops the
/// importer at start with the TLS error as rustls gave it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_database_is_required_and_verified() {
    use harness::target::pooler;
    let db = TestDb::postgres().await;
    let schema = db.schema();
    let dir = std::env::temp_dir().join(format!("importer-it-tls-{schema}"));
    let (ca, cert, key) = pooler::test_certificates(&dir.join("right")).expect("certificates");
    let (other_ca, _, _) = pooler::test_certificates(&dir.join("other")).expect("certificates");
    let bouncer = support::bouncer_for(schema, 4, Some(pooler::Tls { cert, key }));
    let mocks = Upstreams::start(&[lichess("tls_user", 120)], SEED)
        .await
        .expect("mocks");
    let verified = bouncer.url(
        "it",
        &format!("?sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    let imp = Importer::start(
        &db,
        &mocks,
        &[("DATABASE_URL", &verified), ("DATABASE_POOLER", "transaction")],
    )
    .await;
    let job = imp.import("tls_user", "lichess", 500).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["games_imported"], 120, "{job}");
    assert_eq!(db.distinct_games_of("tls_user").await, 120);
    assert_eq!(imp.stop().await, Some(0));
    let required = bouncer.url("it", "?sslmode=require");
    let imp = Importer::start(
        &db,
        &mocks,
        &[("DATABASE_URL", &required), ("DATABASE_POOLER", "transaction")],
    )
    .await;
    assert_eq!(imp.stop().await, Some(0));

    let wrong = bouncer.url(
        "it",
        &format!("?sslmode=verify-full&sslrootcert={}", other_ca.display()),
    );
    let started = std::time::Instant::now();
    let (code, stderr) = run_with_env(&[
        ("DATABASE_URL", &wrong),
        ("DATABASE_POOLER", "transaction"),
        ("LICHESS_BASE_URL", &mocks.lichess_url()),
        ("CHESSCOM_BASE_URL", &mocks.chess_com_url()),
        ("BIND_ADDR", "127.0.0.1:0"),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot connect to the database") && stderr.contains("certificate"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "refused at once"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Behind a transaction pooler without `DATABASE_POOLER=transaction`, the importer stops at start
/// with PostgreSQL's refusal and says which setting is missing. One server connection: the
/// queue's first statement meets the name the migration's left there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_pooler_without_the_setting_is_named_at_start() {
    let db = TestDb::postgres().await;
    let bouncer = support::bouncer_for(db.schema(), 1, None);
    let mocks = Upstreams::start(&[], SEED).await.expect("mocks");
    let (code, stderr) = run_with_env(&[
        ("DATABASE_URL", &bouncer.url("it", "")),
        ("LICHESS_BASE_URL", &mocks.lichess_url()),
        ("CHESSCOM_BASE_URL", &mocks.chess_com_url()),
        ("BIND_ADDR", "127.0.0.1:0"),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("prepared statement") && stderr.contains("set DATABASE_POOLER=transaction"),
        "{stderr}"
    );
}

/// A flood of idle and slow-header connections while imports run, bounded in count and time:
/// the imports complete exactly, /healthz keeps answering within 1 s, memory stays within twice
/// the peak of the same imports without the flood, the server cuts the silent connections after
/// its header read timeout, and the descriptors come back once the clients are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_clients_neither_block_nor_leak() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const IDLE: usize = 2000;
    const SLOW: usize = 200;
    let db = TestDb::sqlite();
    let users: Vec<MockUser> = (0..8).map(|i| lichess(&format!("flood{i}"), 600)).collect();
    let mocks = Upstreams::start_with(&users, paced(300)).await.expect("mocks");
    let imp = Importer::start(
        &db,
        &mocks,
        &[("MAX_CONCURRENT_IMPORTS", "4"), ("LICHESS_MAX_STREAMS", "2")],
    )
    .await;
    // The same work without the flood: the reference peak.
    let run4 = |names: &[MockUser]| {
        let names: Vec<String> = names.iter().map(|u| u.name.clone()).collect();
        let imp = &imp;
        async move {
            let jobs = futures_util::future::join_all(names.iter().map(|n| submit(imp, n))).await;
            for j in jobs {
                let done = imp.wait(j["import_id"].as_str().unwrap_or_default()).await;
                assert_eq!(done["status"], "completed", "{done}");
                assert_eq!(done["games_imported"], 600, "{done}");
            }
        }
    };
    run4(&users[..4]).await;
    let reference_peak = imp.peak_rss();
    // After the same work: the database pools are open as far as that work needs them.
    let idle_fds = imp.open_fds();

    let addr = imp.base.trim_start_matches("http://").to_string();
    let started = std::time::Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("idle connection"),
        );
    }
    let stop_slow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("slow connection");
        let stop = std::sync::Arc::clone(&stop_slow);
        slow.push(tokio::spawn(async move {
            let header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
            for b in header.iter().cycle() {
                if stop.load(std::sync::atomic::Ordering::Relaxed) || s.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }));
    }
    let flood_fds = imp.open_fds();
    assert!(
        flood_fds >= idle_fds + IDLE,
        "the flood is held open: {flood_fds} descriptors"
    );
    let work = run4(&users[4..]);
    tokio::pin!(work);
    let (mut worst_health, mut max_rss) = (std::time::Duration::ZERO, 0u64);
    let http = reqwest::Client::new();
    loop {
        tokio::select! {
            () = &mut work => break,
            () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                let t = std::time::Instant::now();
                let r = http.get(format!("{}/healthz", imp.base)).timeout(std::time::Duration::from_secs(5)).send().await;
                assert!(r.is_ok_and(|r| r.status() == 200), "healthz during the flood");
                worst_health = worst_health.max(t.elapsed());
                max_rss = max_rss.max(imp.rss());
            }
        }
    }
    // The silent connections are cut by the server once its header read timeout has passed.
    let wait = importer::http::serve::HEADER_READ_TIMEOUT + std::time::Duration::from_secs(2);
    tokio::time::sleep(wait.saturating_sub(started.elapsed())).await;
    let mut cut = 0;
    for s in idle.iter_mut().take(50) {
        let mut buf = [0u8; 1];
        if matches!(
            tokio::time::timeout(std::time::Duration::from_secs(1), s.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        ) {
            cut += 1;
        }
    }
    stop_slow.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(idle);
    for t in slow {
        let _ = t.await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut after = imp.open_fds();
    while after > idle_fds + 5 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = imp.open_fds();
    }
    eprintln!(
        "flood: {IDLE} idle + {SLOW} slow-header connections; descriptors idle {idle_fds}, flooded {flood_fds}, after {after}; \
         worst /healthz {:.0} ms; RSS max {:.1} MiB with the flood vs a peak of {:.1} MiB without; {cut}/50 idle connections cut",
        worst_health.as_secs_f64() * 1000.0,
        max_rss as f64 / 1048576.0,
        reference_peak as f64 / 1048576.0
    );
    assert!(
        worst_health < std::time::Duration::from_secs(1),
        "{worst_health:?}"
    );
    assert!(max_rss <= 2 * reference_peak, "{max_rss} vs {reference_peak}");
    assert_eq!(cut, 50, "silent connections are closed by the server");
    assert!(
        after <= idle_fds + 5,
        "descriptors back to idle: {after} vs {idle_fds}"
    );
    for u in &users {
        assert_eq!(db.distinct_games_of(&u.key()).await, 600);
        assert_eq!(db.games_of(&u.key()).await, 600);
    }
}
