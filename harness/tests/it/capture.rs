//! `harness capture` on a database a harness run made, on SQLite and on PostgreSQL: a scenario
//! `harness check` accepts, one arrival per recorded job at its recorded offset, and nothing of
//! the source's users or games in it.

use chrono::{DateTime, Utc};
use sqlx::Connection;

use super::cli::harness_cmd;
use super::{importer_bin, temp_dir};

/// Every job's request time, id and user, and every stored game's id, read straight from the source.
struct Source {
    created: Vec<DateTime<Utc>>,
    secrets: Vec<String>,
}

/// A job as the source recorded it: when it was requested, its id, its user.
type JobRow = (DateTime<Utc>, String, String);

async fn read_source(url: &str) -> Source {
    let jobs = "SELECT created_at, id, user_id FROM import_jobs ORDER BY created_at";
    let games = "SELECT provider_game_id FROM games";
    let (jobs, games): (Vec<JobRow>, Vec<String>) = if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.expect("source");
        let j = sqlx::query_as(jobs).fetch_all(&mut c).await.expect("jobs");
        (
            j,
            sqlx::query_scalar(games).fetch_all(&mut c).await.expect("games"),
        )
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.expect("source");
        let j = sqlx::query_as(jobs).fetch_all(&mut c).await.expect("jobs");
        (
            j,
            sqlx::query_scalar(games).fetch_all(&mut c).await.expect("games"),
        )
    };
    let mut secrets: Vec<String> = games;
    for (_, id, user) in &jobs {
        secrets.push(id.clone());
        secrets.push(user.clone());
    }
    Source {
        created: jobs.into_iter().map(|j| j.0).collect(),
        secrets,
    }
}

async fn capture_of_a_harness_run(database: &str) {
    let dir = temp_dir(&format!("capture_{database}"));
    let source = dir.join("source.yaml");
    // Six imports at listed offsets, one slot (so that some wait), a returning lichess user among
    // them (the harness's earlier import stores its 30 games first: more jobs in the history).
    std::fs::write(
        &source,
        format!(
            "budget: 512MB\ndatabase: {database}\nmatrix:\n  MAX_CONCURRENT_IMPORTS: [1]\n\
             workload:\n  arrivals: {{at_secs: [0, 0.4, 0.8, 2.0, 2.5, 3.0]}}\n  users:\n    \
             - {{platform: lichess, games: 60, limit: 100}}\n    \
             - {{platform: chess.com, games: 40, months: 2, limit: 100}}\n    \
             - {{platform: lichess, games: 80, stored: 30, new_since_stored: 20, limit: 100}}\n\
             upstream:\n  pace_games_per_sec: 200\n  chesscom_latency_ms: 50\n"
        ),
    )
    .expect("scenario");
    let (source_s, importer, out) = (
        source.to_string_lossy().into_owned(),
        importer_bin().to_string_lossy().into_owned(),
        dir.join("reports").to_string_lossy().into_owned(),
    );
    let (code, text) = harness_cmd(&[
        "run",
        &source_s,
        "--importer",
        &importer,
        "--out",
        &out,
        "--no-progress",
        "--keep-databases",
    ]);
    assert_eq!(code, Some(0), "{text}");
    let cells = dir.join("reports/source/latest/cells");
    let cell = std::fs::read_dir(&cells)
        .expect("cells")
        .flatten()
        .next()
        .expect("one cell");
    let url = std::fs::read_to_string(cell.path().join("database.url")).expect("database.url");
    let url = url.trim();
    let src = read_source(url).await;
    assert!(
        src.created.len() >= 7,
        "six imports and the earlier one: {}",
        src.created.len()
    );

    let sqlite_file = url.strip_prefix("sqlite://").map(std::path::PathBuf::from);
    let before = sqlite_file
        .as_ref()
        .map(|f| std::fs::read(f).expect("source file"));
    let captured = dir.join("captured.yaml");
    let captured_s = captured.to_string_lossy().into_owned();
    let (code, text) = harness_cmd(&[
        "capture",
        "--database-url",
        url,
        "--busiest",
        "1h",
        "--out",
        &captured_s,
        "--set",
        "MAX_CONCURRENT_IMPORTS=1",
        "--set",
        "API_TOKEN=do-not-copy-this-token",
    ]);
    assert_eq!(code, Some(0), "{text}");
    if let (Some(f), Some(before)) = (&sqlite_file, before) {
        assert!(
            std::fs::read(f).expect("source file") == before,
            "the capture changed the source database"
        );
    }
    let (code, text) = harness_cmd(&["check", &captured_s]);
    assert_eq!(code, Some(0), "{text}");
    let yaml = std::fs::read_to_string(&captured).expect("captured");
    let s = harness::scenario::Checked::load(&captured).expect("captured scenario");
    let offsets = s.raw.workload.arrivals.offsets(src.created.len(), 0);
    assert_eq!(
        s.raw.workload.arrivals.count(),
        Some(src.created.len() as u32),
        "{yaml}"
    );
    let first = src.created[0];
    for (t, offset) in src.created.iter().zip(&offsets) {
        let recorded = (*t - first).num_milliseconds() as f64 / 1000.0;
        assert!(
            (recorded - offset).abs() <= 1.0,
            "offset {offset} against recorded {recorded}"
        );
    }
    assert_eq!(s.raw.workload.users.len(), src.created.len());
    assert!(
        s.raw.workload.users.iter().any(|u| u.stored > 0),
        "the returning user: {yaml}"
    );
    for secret in &src.secrets {
        assert!(
            !yaml.contains(secret.as_str()),
            "{secret:?} from the source is in the capture:\n{yaml}"
        );
    }
    assert!(
        !yaml.contains("do-not-copy-this-token") && yaml.contains("API_TOKEN"),
        "{yaml}"
    );
    let observed = s.raw.observed.as_ref().expect("observed");
    let lichess = &observed.providers["lichess"];
    assert_eq!(lichess.completed, lichess.imports, "{yaml}");
    assert!(observed.providers.contains_key("chess.com"), "{yaml}");
    if database == "postgres" {
        // The capture wrote nothing, and the kept schema is the test's to drop.
        let mut c = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/test")
            .await
            .expect("PostgreSQL must be reachable");
        let schema = url.rsplit("search_path%3D").next().expect("schema");
        sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&mut c)
            .await
            .expect("drop");
    }
}

#[tokio::test]
async fn capture_sqlite() {
    capture_of_a_harness_run("sqlite").await;
}

#[tokio::test]
async fn capture_postgres() {
    capture_of_a_harness_run("postgres").await;
}
