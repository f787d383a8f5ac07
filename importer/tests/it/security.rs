//! Security and start-up refusals: the API token, a public address without one, the real providers without a contact, TLS to the database, a transaction pooler without the setting, idle and slow clients.

use super::*;

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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        tokio::select! {
            () = &mut work => break,
            () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                assert!(std::time::Instant::now() < deadline, "the four imports not done in 300 s under the flood");
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
