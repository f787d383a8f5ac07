//! PostgreSQL restarting under the importer, straight and through PgBouncer: managed hosts (Neon,
//! Supabase, RDS) restart computes and poolers, and every backend ends with `FATAL 57P01
//! terminating connection due to administrator command`. Here `pg_terminate_backend` ends the
//! importer's backends while batches, claims and ends of imports are written: every game is stored
//! once, the counters are true, and no import fails or stays running.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use super::*;
use crate::on_databases;
use crate::support::PG_ADMIN_URL;

/// How long the test keeps ending backends: several seconds of batches.
const KILL_FOR: Duration = Duration::from_secs(5);
/// The pause after a round that ended a backend, so that the retried step can get through: a
/// host that restarts does so now and then, not at every statement.
const KILL_GAP: Duration = Duration::from_millis(150);
/// How often pg_stat_activity is read while looking for a backend at work: a batch of 10 games
/// is written in a few milliseconds.
const LOOK_EVERY: Duration = Duration::from_millis(3);
/// The bound on an import's end once the kills have stopped.
const DONE_WITHIN: Duration = Duration::from_secs(90);

/// What the killer did.
#[derive(Debug, Default)]
struct Kills {
    /// Backends ended.
    total: u32,
    /// Of which inside a batch's transaction (its games, its job's counters or what it completes).
    mid_batch: u32,
}

/// Whether `query`, the last statement of a backend that is active or idle in a transaction, is
/// a step of `write_batch`.
fn is_batch_write(query: &str) -> bool {
    let q = query.trim_start();
    q.starts_with("INSERT INTO games")
        || q.starts_with("UPDATE import_jobs SET games_fetched")
        || q.contains("sync_ranges")
        || q.contains("sync_months")
        || q.contains("sync_pending")
}

/// A connection of the test's own, named apart from the importer's backends.
async fn admin() -> PgConnection {
    PgConnection::connect(PG_ADMIN_URL)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must be reachable at {PG_ADMIN_URL}: {e}"))
}

/// The importer's backends (named after the test's schema; through PgBouncer, the server
/// connections it lends the importer) that are at work now: pid, state, last statement.
async fn busy_backends(conn: &mut PgConnection, schema: &str) -> Vec<(i32, String, String)> {
    sqlx::query_as(
        "SELECT pid, state, query FROM pg_stat_activity WHERE application_name = $1 \
         AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await
    .expect("pg_stat_activity")
}

async fn terminate(conn: &mut PgConnection, pid: i32) -> bool {
    sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut *conn)
        .await
        .expect("pg_terminate_backend")
}

/// Ends the importer's busy backends for [`KILL_FOR`], a round every [`KILL_GAP`] at most, and
/// waits (at most [`DONE_WITHIN`]) until none of `ids` is queued or running; reads the jobs in
/// the database, as the API's own reads may meet a killed connection.
async fn kill_until_done(db: &TestDb, ids: &[String]) -> Kills {
    let schema = db.schema();
    let mut conn = admin().await;
    let started = Instant::now();
    let mut kills = Kills::default();
    loop {
        let open: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {schema}.import_jobs WHERE id = ANY($1) AND status IN ('queued', 'running')"
        ))
        .bind(ids)
        .fetch_one(&mut conn)
        .await
        .expect("read the jobs");
        if open == 0 {
            return kills;
        }
        assert!(
            started.elapsed() < KILL_FOR + DONE_WITHIN,
            "{open} import(s) still queued or running {:?} after the first kill ({kills:?})",
            started.elapsed()
        );
        if started.elapsed() >= KILL_FOR {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let mut ended = false;
        for (pid, _state, query) in busy_backends(&mut conn, schema).await {
            if terminate(&mut conn, pid).await {
                ended = true;
                kills.total += 1;
                kills.mid_batch += u32::from(is_batch_write(&query));
            }
        }
        tokio::time::sleep(if ended { KILL_GAP } else { LOOK_EVERY }).await;
    }
}

/// A lichess user streamed at a pace and a chess.com user, both in batches of 10, while the
/// importer's backends are ended again and again: both imports complete, each game once.
async fn backends_killed_mid_batch(db: TestDb) {
    let users = [lichess("pg_restart", 400), chess_com("pg_restart_c", 300, 3)];
    let mocks = Upstreams::start_with(&users, paced(100)).await.expect("mocks");
    let imp = Importer::start(&db, &mocks, &[("IMPORT_BATCH_SIZE", "10")]).await;
    let mut ids = Vec::new();
    for (u, platform) in users.iter().zip(["lichess", "chess.com"]) {
        let (status, body) = imp
            .post(json!({"user_id": u.name, "platform": platform, "limit": 1000}))
            .await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["import_id"].as_str().expect("import_id").to_string());
    }
    let started = Instant::now();
    let kills = kill_until_done(&db, &ids).await;
    eprintln!(
        "{kills:?}; imports done {:.1} s after the first POST",
        started.elapsed().as_secs_f64()
    );
    assert!(
        kills.mid_batch > 0,
        "no backend was ended inside a batch's transaction ({kills:?}): the test proved nothing"
    );
    for (u, id) in users.iter().zip(&ids) {
        let expected = u.valid_ids().count() as i64;
        let job = imp.wait(id).await;
        assert_eq!(job["status"], "completed", "{job}\n{}", imp.log_text());
        assert_eq!(job["games_imported"].as_i64(), Some(expected), "{job}");
        assert_eq!(
            job["games_skipped_existing"], 0,
            "a retried batch counts its games once: {job}"
        );
        assert_eq!(job["games_failed_parse"], 0, "{job}");
        assert_eq!(db.games_of(&u.key()).await, expected, "{}", u.name);
        assert_eq!(db.distinct_games_of(&u.key()).await, expected, "{}", u.name);
    }
    let log = imp.log_text();
    assert!(
        log.contains("database step failed, retrying"),
        "a killed step was retried:\n{log}"
    );
}
on_databases!(killed_mid_batch, backends_killed_mid_batch, postgres, pooled);

/// The statement that records an import's end is ended by the server: the end is written again
/// on a new connection, and the import does not stay `running` (its lease renewed for ever).
async fn end_of_import_killed(db: TestDb) {
    let user = lichess("pg_last_word", 120);
    let mocks = Upstreams::start_with(std::slice::from_ref(&user), paced(200))
        .await
        .expect("mocks");
    let imp = Importer::start(&db, &mocks, &[("IMPORT_BATCH_SIZE", "10")]).await;
    // The end of an import (its status becoming completed or failed) takes half a second in the
    // server, so that the test sees its statement at work and ends its backend.
    let schema = db.schema();
    db.execute(&format!(
        "CREATE FUNCTION {schema}.slow_end() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.status IN ('completed', 'failed') AND NEW.status <> OLD.status THEN \
             PERFORM pg_sleep(0.5); \
           END IF; RETURN NEW; END $$; \
         CREATE TRIGGER slow_end BEFORE UPDATE ON {schema}.import_jobs \
           FOR EACH ROW EXECUTE FUNCTION {schema}.slow_end();"
    ))
    .await;
    let (status, body) = imp
        .post(json!({"user_id": user.name, "platform": "lichess", "limit": 1000}))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["import_id"].as_str().expect("import_id").to_string();

    let mut conn = admin().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ending = busy_backends(&mut conn, schema)
            .await
            .into_iter()
            .find(|(_, _, query)| query.trim_start().starts_with("UPDATE import_jobs SET status"));
        if let Some((pid, _, _)) = ending {
            assert!(terminate(&mut conn, pid).await, "the end's backend ended");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the import's end was not seen in 30 s:\n{}",
            imp.log_text()
        );
        tokio::time::sleep(LOOK_EVERY).await;
    }
    // Read in the database: the API would answer `running` for as long as the lease is renewed.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status: String =
            sqlx::query_scalar(&format!("SELECT status FROM {schema}.import_jobs WHERE id = $1"))
                .bind(&id)
                .fetch_one(&mut conn)
                .await
                .expect("read the job");
        if status != "running" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the import stays running 20 s after its end was cut:\n{}",
            imp.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job = imp.wait(&id).await;
    assert_eq!(job["status"], "completed", "{job}\n{}", imp.log_text());
    let expected = user.valid_ids().count() as i64;
    assert_eq!(job["games_imported"].as_i64(), Some(expected), "{job}");
    assert_eq!(db.games_of(&user.key()).await, expected);
    assert_eq!(db.distinct_games_of(&user.key()).await, expected);
}
on_databases!(end_killed, end_of_import_killed, postgres, pooled);

/// Local ports of the TCP sockets process `pid` holds, from /proc.
fn local_ports_of(pid: u32) -> HashSet<i32> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = HashSet::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(inode)) = (fields.get(1), fields.get(9)) else {
                continue;
            };
            if inodes.contains(*inode)
                && let Some(port) = local
                    .rsplit(':')
                    .next()
                    .and_then(|p| i32::from_str_radix(p, 16).ok())
            {
                ports.insert(port);
            }
        }
    }
    ports
}

/// Unless its DATABASE_URL names one, the importer's connections carry `chess-games-importer`:
/// what an operator (or the harness) looks for in pg_stat_activity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_are_named_after_the_importer() {
    let db = TestDb::postgres().await;
    let mocks = Upstreams::start(&[], SEED).await.expect("mocks");
    let url = format!("{PG_ADMIN_URL}?options=-c%20search_path%3D{}", db.schema());
    let imp = Importer::start(&db, &mocks, &[("DATABASE_URL", &url)]).await;
    let mut conn = admin().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let names: Vec<(Option<i32>, String)> = sqlx::query_as(
            "SELECT client_port, application_name FROM pg_stat_activity WHERE backend_type = 'client backend'",
        )
        .fetch_all(&mut conn)
        .await
        .expect("pg_stat_activity");
        let ours = local_ports_of(imp.pid());
        let mine: Vec<&String> = names
            .iter()
            .filter(|(port, _)| port.is_some_and(|p| ours.contains(&p)))
            .map(|(_, name)| name)
            .collect();
        if !mine.is_empty() {
            assert!(
                mine.iter().all(|n| n.as_str() == "chess-games-importer"),
                "{mine:?}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no backend of the importer found in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
