//! Whole imports on both providers: a full import and its repeat, chess.com months, the limit, slots and the queue, unknown users, malformed games, 429s and 5xx waited out.

use super::*;
use crate::{on_both_databases, on_every_database};

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
