//! The HTTP API: JSON errors naming the field, a full queue answered 429, hostile requests refused without effect, one import for one user asked twice at once.

use super::*;

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
