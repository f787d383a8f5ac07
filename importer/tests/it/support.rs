//! Helpers: a fresh database per test, the real importer binary as a child
//! process, and an HTTP client to drive it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use harness::target::pooler::{self, PgBouncer};
use harness::upstream::Upstreams;
use serde_json::Value;
use sqlx::Connection;
use tokio::process::{Child, Command};

/// One answer of [`Importer::post_burst`].
#[derive(Debug)]
pub(crate) struct Posted {
    /// Its status.
    pub status: u16,
    /// Whether it carries `Retry-After`.
    pub retry_after: bool,
    /// Its JSON body.
    pub body: Value,
}

/// The PostgreSQL every machine of this project has; tests fail, never skip, when it is down.
pub(crate) const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database of its own for one test.
pub(crate) enum TestDb {
    /// A SQLite file in a temporary folder.
    Sqlite(PathBuf),
    /// A PostgreSQL schema of its own.
    Postgres(String),
    /// A PostgreSQL schema of its own, reached by the importer through a PgBouncer of its own in
    /// transaction mode with a small allowance (`POOLED_SERVER_CONNECTIONS`), as managed hosts
    /// hand it out.
    Pooled(String, PgBouncer),
}

/// Server connections the test's PgBouncer allows (its `default_pool_size`): fewer than one
/// importer's own pools (DB_POOL_SIZE 5 + DB_QUEUE_POOL_SIZE 4), so that clients wait for one.
pub(crate) const POOLED_SERVER_CONNECTIONS: u32 = 4;

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

impl TestDb {
    /// A fresh SQLite file.
    pub(crate) fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(unique("importer_it"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TestDb::Sqlite(dir.join("games.db"))
    }

    /// A fresh PostgreSQL schema.
    pub(crate) async fn postgres() -> TestDb {
        let schema = unique("it");
        let mut conn = sqlx::PgConnection::connect(PG_ADMIN_URL)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL must be reachable at {PG_ADMIN_URL}: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .expect("create schema");
        TestDb::Postgres(schema)
    }

    /// A fresh PostgreSQL schema behind a PgBouncer of its own in transaction mode; panics (the
    /// test fails, never skips) when PgBouncer cannot start.
    pub(crate) async fn pooled() -> TestDb {
        let TestDb::Postgres(schema) = TestDb::postgres().await else {
            unreachable!("postgres() makes a schema")
        };
        let bouncer = bouncer_for(&schema, POOLED_SERVER_CONNECTIONS, None);
        TestDb::Pooled(schema, bouncer)
    }

    /// A fresh database of `kind`: `sqlite`, `postgres` or `pooled`.
    pub(crate) async fn open(kind: &str) -> TestDb {
        match kind {
            "sqlite" => TestDb::sqlite(),
            "postgres" => TestDb::postgres().await,
            "pooled" => TestDb::pooled().await,
            other => panic!("no database kind {other:?}"),
        }
    }

    /// The PostgreSQL schema, for a test that starts its own PgBouncer in front of it.
    pub(crate) fn schema(&self) -> &str {
        match self {
            TestDb::Postgres(schema) | TestDb::Pooled(schema, _) => schema,
            TestDb::Sqlite(_) => panic!("an SQLite database has no schema"),
        }
    }

    /// The importer's DATABASE_URL.
    pub(crate) fn url(&self) -> String {
        match self {
            // Named after the schema, as the direct URL is: PgBouncer sets a client's
            // `application_name` on the server connection it lends, so the test finds its
            // importer's backends behind the pooler too (`terminate_backends`).
            TestDb::Pooled(schema, bouncer) => bouncer.url("it", &format!("?application_name={schema}")),
            _ => self.direct_url(),
        }
    }

    /// The importer's settings for this database beyond DATABASE_URL.
    pub(crate) fn env(&self) -> Vec<(&'static str, &'static str)> {
        match self {
            TestDb::Pooled(..) => vec![("DATABASE_POOLER", "transaction")],
            _ => Vec::new(),
        }
    }

    /// A URL straight to the database, for the test's own reads and writes.
    pub(crate) fn direct_url(&self) -> String {
        match self {
            TestDb::Sqlite(path) => format!("sqlite://{}", path.display()),
            TestDb::Postgres(schema) | TestDb::Pooled(schema, _) => {
                format!("{PG_ADMIN_URL}?options=-c%20search_path%3D{schema}&application_name={schema}")
            }
        }
    }

    /// Runs `sql` (several statements allowed) against this database, creating a SQLite file if needed.
    pub(crate) async fn execute(&self, sql: &str) {
        match self {
            TestDb::Sqlite(_) => {
                let opts: sqlx::sqlite::SqliteConnectOptions = self.direct_url().parse().expect("sqlite url");
                let mut c = sqlx::SqliteConnection::connect_with(&opts.create_if_missing(true))
                    .await
                    .expect("sqlite");
                sqlx::raw_sql(sql).execute(&mut c).await.expect("execute");
            }
            TestDb::Postgres(_) | TestDb::Pooled(..) => {
                let mut c = sqlx::PgConnection::connect(&self.direct_url())
                    .await
                    .expect("postgres");
                sqlx::raw_sql(sql).execute(&mut c).await.expect("execute");
            }
        }
    }

    /// Which database this is.
    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, TestDb::Postgres(_) | TestDb::Pooled(..))
    }

    /// Runs a scalar count query against this database.
    pub(crate) async fn count(&self, sql: &str, user: &str) -> i64 {
        match self {
            TestDb::Sqlite(_) => {
                let mut c = sqlx::SqliteConnection::connect(&self.direct_url())
                    .await
                    .expect("sqlite");
                sqlx::query_scalar(sql)
                    .bind(user)
                    .fetch_one(&mut c)
                    .await
                    .expect("count")
            }
            TestDb::Postgres(_) | TestDb::Pooled(..) => {
                let mut c = sqlx::PgConnection::connect(&self.direct_url())
                    .await
                    .expect("postgres");
                sqlx::query_scalar(sql)
                    .bind(user)
                    .fetch_one(&mut c)
                    .await
                    .expect("count")
            }
        }
    }

    /// Terminates the importer's PostgreSQL connections (those named after this schema, straight
    /// or through the pooler); returns how many.
    pub(crate) async fn terminate_backends(&self) -> i64 {
        let (TestDb::Postgres(schema) | TestDb::Pooled(schema, _)) = self else {
            return 0;
        };
        let mut c = sqlx::PgConnection::connect(PG_ADMIN_URL).await.expect("postgres");
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()) t",
        )
        .bind(schema)
        .fetch_one(&mut c)
        .await
        .expect("terminate")
    }

    /// How many of `ids` are stored for `user`.
    pub(crate) async fn count_among(&self, user: &str, ids: &[String]) -> i64 {
        let list = ids
            .iter()
            .map(|id| format!("'{id}'"))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!("SELECT COUNT(*) FROM games WHERE user_id = $1 AND provider_game_id IN ({list})");
        self.count(&sql, user).await
    }

    /// Games stored for `user`.
    pub(crate) async fn games_of(&self, user: &str) -> i64 {
        self.count("SELECT COUNT(*) FROM games WHERE user_id = $1", user)
            .await
    }

    /// Distinct provider ids stored for `user` (equal to `games_of` when nothing is doubled).
    pub(crate) async fn distinct_games_of(&self, user: &str) -> i64 {
        self.count(
            "SELECT COUNT(DISTINCT provider_game_id) FROM games WHERE user_id = $1",
            user,
        )
        .await
    }
}

/// A PgBouncer of the test's own in transaction mode in front of the shared PostgreSQL, offering
/// `schema` as database `it` with `server_connections` server connections, TLS when given; panics
/// (the test fails, never skips) when it cannot start.
pub(crate) fn bouncer_for(schema: &str, server_connections: u32, tls: Option<pooler::Tls>) -> PgBouncer {
    PgBouncer::start(&pooler::Options {
        server: "127.0.0.1:5432".into(),
        databases: vec![pooler::Database {
            alias: "it".into(),
            dbname: "test".into(),
            search_path: Some(schema.into()),
            server_login: None,
        }],
        pool_mode: "transaction".into(),
        default_pool_size: server_connections,
        tls,
    })
    .unwrap_or_else(|e| panic!("PgBouncer must start: {e}"))
}

/// The importer binary, running.
pub(crate) struct Importer {
    child: Child,
    /// Its base URL.
    pub base: String,
    http: reqwest::Client,
    /// Where its output goes.
    pub log: PathBuf,
}

/// The built importer binary.
pub(crate) fn importer_bin() -> &'static str {
    env!("CARGO_BIN_EXE_importer")
}

impl Importer {
    /// Starts the importer on `db` against `mocks` with extra environment, and waits for /healthz.
    pub(crate) async fn start(db: &TestDb, mocks: &Upstreams, env: &[(&str, &str)]) -> Importer {
        let log = std::env::temp_dir().join(format!("{}.log", unique("importer")));
        let addr_file = log.with_extension("addr");
        let out = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(importer_bin());
        cmd.env_clear()
            .env("RUST_LOG", "info")
            .env("DATABASE_URL", db.url())
            // Port 0: the importer binds a free port itself and tells which (a test may set its own).
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("LISTEN_ADDR_FILE", &addr_file)
            .env("LICHESS_BASE_URL", mocks.lichess_url())
            .env("CHESSCOM_BASE_URL", mocks.chess_com_url())
            // Stable across restarts, so a restarted importer takes its own jobs back at once.
            .env("INSTANCE_ID", "it-main")
            // The mocks, like the providers, refuse a client that names no contact; a test may set its own.
            .env("UPSTREAM_USER_AGENT", harness::session::HARNESS_USER_AGENT)
            .envs(db.env())
            .envs(env.iter().copied())
            .stdout(Stdio::from(out.try_clone().expect("log")))
            .stderr(Stdio::from(out))
            .kill_on_drop(true);
        let child = cmd.spawn().expect("spawn importer");
        let mut imp = Importer {
            child,
            base: String::new(),
            http: reqwest::Client::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let pid = imp.child.id().expect("importer running");
        let addr = loop {
            if let Some(addr) = harness::target::reported_addr(&addr_file, pid)
                .unwrap_or_else(|why| panic!("{why}; log:\n{}", imp.log_text()))
            {
                break addr;
            }
            if let Ok(Some(status)) = imp.child.try_wait() {
                panic!(
                    "importer exited ({status}) before listening; log:\n{}",
                    imp.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "importer not listening in 30 s; log:\n{}",
                imp.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        imp.base = format!("http://{addr}");
        loop {
            if let Ok(r) = imp.http.get(format!("{}/healthz", imp.base)).send().await
                && r.status().is_success()
            {
                return imp;
            }
            assert!(
                Instant::now() < deadline,
                "importer not healthy in 30 s; log:\n{}",
                imp.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("importer running")
    }

    /// The kernel's peak resident set (`VmHWM`) of the running importer, in bytes.
    pub(crate) fn peak_rss(&self) -> u64 {
        let pid = self.child.id().expect("importer running");
        harness::observe::vm_hwm(pid).expect("VmHWM in /proc/PID/status")
    }

    /// Its resident set now (`VmRSS`), in bytes.
    pub(crate) fn rss(&self) -> u64 {
        let pid = self.child.id().expect("importer running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    /// Its open file descriptors now.
    pub(crate) fn open_fds(&self) -> usize {
        let pid = self.child.id().expect("importer running");
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("fd dir")
            .count()
    }

    /// Everything it printed.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// POSTs an import request; returns status and JSON body.
    pub(crate) async fn post(&self, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/api/v1/import-more-games", self.base))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POSTs an import of each of `users` (lichess, limit 1000) at once, on connections of their
    /// own: a burst. Each answer's status, whether it carries `Retry-After`, and its JSON body.
    pub(crate) async fn post_burst(&self, users: &[harness::upstream::MockUser]) -> Vec<Posted> {
        let http = reqwest::Client::new();
        let posts = users.iter().map(|u| {
            let req = http
                .post(format!("{}/api/v1/import-more-games", self.base))
                .json(&serde_json::json!({"user_id": u.name, "platform": "lichess", "limit": 1000}));
            async move {
                let r = req.send().await.expect("POST");
                let retry_after = r.headers().get("retry-after").is_some();
                let status = r.status().as_u16();
                Posted {
                    status,
                    retry_after,
                    body: r.json::<Value>().await.unwrap_or_default(),
                }
            }
        });
        futures_util::future::join_all(posts).await
    }

    /// GETs a path; returns status and JSON body.
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// GETs a path as text.
    pub(crate) async fn get_text(&self, path: &str) -> String {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        r.text().await.expect("text")
    }

    /// Polls an import until it is completed or failed; returns its last view.
    pub(crate) async fn wait(&self, import_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, job) = self.get(&format!("/api/v1/imports/{import_id}")).await;
            assert_eq!(status, 200, "{job}");
            if matches!(job["status"].as_str(), Some("completed" | "failed")) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "import {import_id} not done in 120 s: {job}\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts an import and waits for its end.
    pub(crate) async fn import(&self, user: &str, platform: &str, limit: u64) -> Value {
        let (status, body) = self
            .post(serde_json::json!({"user_id": user, "platform": platform, "limit": limit}))
            .await;
        assert!(status == 202 || status == 200, "POST answered {status}: {body}");
        let id = body["import_id"].as_str().expect("import_id").to_string();
        self.wait(&id).await
    }

    /// Sends a signal (`TERM`, `KILL`...) to the importer.
    pub(crate) fn signal(&self, sig: &str) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args([&format!("-{sig}"), &pid.to_string()])
                .status();
        }
    }

    /// Waits for the process to end; returns its exit code (None when killed by a signal) and how long it took.
    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> Option<(Option<i32>, Duration)> {
        let started = Instant::now();
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()?
            .ok()?;
        Some((status.code(), started.elapsed()))
    }

    /// Stops it with SIGTERM and waits for its exit code.
    pub(crate) async fn stop(mut self) -> Option<i32> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
        status.ok().and_then(|s| s.ok()).and_then(|s| s.code())
    }
}

/// Defines a test once per database kind named (`sqlite`, `postgres`, `pooled`: see
/// [`TestDb::open`]), each a module `$name::$kind`.
#[macro_export]
macro_rules! on_databases {
    ($name:ident, $body:ident, $($kind:ident),+) => {
        mod $name {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $kind() {
                    super::$body($crate::support::TestDb::open(stringify!($kind)).await).await;
                }
            )+
        }
    };
}

/// Defines a test twice: on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident, $body:ident) => {
        $crate::on_databases!($name, $body, sqlite, postgres);
    };
}

/// Like `on_both_databases!`, and a third test through PgBouncer in transaction mode
/// (`TestDb::pooled`): for the paths a pooler can break (statements, locks, the queue).
#[macro_export]
macro_rules! on_every_database {
    ($name:ident, $body:ident) => {
        $crate::on_databases!($name, $body, sqlite, postgres, pooled);
    };
}
