//! Storage of games and import jobs, on SQLite or PostgreSQL.
//!
//! One `Store` type serves both backends. The SQL text is shared where both
//! accept it (`$N` placeholders, `ON CONFLICT DO NOTHING`); each statement
//! is still compiled against each backend's own types through `on_pool!`, so
//! no `Any` driver or dynamic typing is involved. Invariants kept here: a
//! batch of games and its job's counters are written in one transaction, and
//! the unique key (user_id, platform, provider_game_id) is the last guard
//! against a game stored twice.

mod schema;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, QueryBuilder, Row, SqlitePool};

use crate::job::{Counters, Job, JobStatus, Platform};
use crate::pgn::GameRow;

/// A database failure, with the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or opened.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// The schema could not be created.
    #[error("database migration {version} failed: {source}")]
    Migrate {
        /// The migration at fault.
        version: i64,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// A query failed.
    #[error("database error while {op}: {source}")]
    Query {
        /// What we were doing.
        op: &'static str,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// Another process took the job over (its lease had expired): this one must stop.
    #[error("import {0} was taken over by another importer process")]
    LeaseLost(String),
    /// A stored row holds a value this version does not know.
    #[error("corrupt row in {table}: {detail}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// Result of storage operations.
pub type Result<T> = std::result::Result<T, StoreError>;

impl StoreError {
    /// Whether trying the same step again can help.
    pub fn is_transient(&self) -> bool {
        !matches!(self, StoreError::LeaseLost(_) | StoreError::Corrupt { .. })
    }
}

fn query_err(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { op, source }
}

/// Advisory lock keys (arbitrary constants, the same in every process).
const MIGRATION_LOCK: i64 = 0x1e55_0001;
const SUBMIT_LOCK: i64 = 0x1e55_0002;
const CLAIM_LOCK: i64 = 0x1e55_0003;

/// Which providers a claim may take an import of: the provider lanes as the claim statement sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimLanes {
    /// Lanes free in the claiming process: (lichess, chess.com). A provider with 0 is skipped.
    Free(i64, i64),
    /// Lanes shared by every process on the database: (lichess, chess.com) limits, compared in the
    /// statement with the running imports of that provider whose lease holds.
    Shared(i64, i64),
}

/// What recording a new job came to.
#[derive(Debug, PartialEq)]
pub enum Submitted {
    /// Recorded, queued.
    Queued,
    /// The user already has a queued or running import: its id.
    Existing(String),
    /// As many jobs are queued as the queue holds.
    QueueFull,
}

/// Rows per INSERT statement within a batch's transaction. Each statement's arguments are copied
/// (by sqlx for its worker, then by SQLite when bound), so a statement per whole batch held
/// about two extra copies of the batch's PGN while writing; 25 rows keep that copy small and
/// write as fast as 500 (store bench: SQLite 24,000 rows/s either way).
const ROWS_PER_INSERT: usize = 25;

/// A pool on one of the two supported databases.
#[derive(Clone, Debug)]
pub enum Store {
    /// Embedded SQLite file.
    Sqlite(SqlitePool),
    /// PostgreSQL server.
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool, once per backend.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}

const JOB_COLUMNS: &str = "id, user_id, platform, game_limit, status, games_fetched, games_imported, \
     games_skipped_existing, games_failed_parse, error, created_at, started_at, finished_at";

fn job_from_row<R>(row: &R) -> Result<Job>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> DateTime<Utc>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<DateTime<Utc>>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let get_err = |e| StoreError::Query {
        op: "reading an import job",
        source: e,
    };
    let platform: String = row.try_get("platform").map_err(get_err)?;
    let status: String = row.try_get("status").map_err(get_err)?;
    Ok(Job {
        import_id: row.try_get("id").map_err(get_err)?,
        user_id: row.try_get("user_id").map_err(get_err)?,
        platform: Platform::parse(&platform).ok_or_else(|| StoreError::Corrupt {
            table: "import_jobs",
            detail: format!("unknown platform {platform:?}"),
        })?,
        limit: row.try_get("game_limit").map_err(get_err)?,
        status: JobStatus::parse(&status).ok_or_else(|| StoreError::Corrupt {
            table: "import_jobs",
            detail: format!("unknown status {status:?}"),
        })?,
        counters: Counters {
            games_fetched: row.try_get("games_fetched").map_err(get_err)?,
            games_imported: row.try_get("games_imported").map_err(get_err)?,
            games_skipped_existing: row.try_get("games_skipped_existing").map_err(get_err)?,
            games_failed_parse: row.try_get("games_failed_parse").map_err(get_err)?,
        },
        error: row.try_get("error").map_err(get_err)?,
        created_at: row.try_get("created_at").map_err(get_err)?,
        started_at: row.try_get("started_at").map_err(get_err)?,
        finished_at: row.try_get("finished_at").map_err(get_err)?,
    })
}

/// `Ok` when an owner-guarded update touched the job, `LeaseLost` when another process owns it now.
fn owned(rows: u64, id: &str) -> Result<()> {
    if rows == 0 {
        Err(StoreError::LeaseLost(id.to_string()))
    } else {
        Ok(())
    }
}

impl Store {
    /// Opens the pool for `url` (creating a SQLite file if missing) and brings the schema up to date.
    pub async fn connect(url: &str, pool_size: u32, sqlite_cache_kib: u32) -> Result<Store> {
        let store = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(StoreError::Connect)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                // Negative: a size in KiB. Each connection has its own cache.
                .pragma("cache_size", format!("-{sqlite_cache_kib}"));
            let pool = SqlitePoolOptions::new()
                .max_connections(pool_size)
                .min_connections(0)
                .connect_with(opts)
                .await
                .map_err(StoreError::Connect)?;
            Store::Sqlite(pool)
        } else {
            let opts = PgConnectOptions::from_str(url).map_err(StoreError::Connect)?;
            let pool = PgPoolOptions::new()
                .max_connections(pool_size)
                .min_connections(0)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .map_err(StoreError::Connect)?;
            Store::Postgres(pool)
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let fail = |version| move |source| StoreError::Migrate { version, source };
        // Processes starting at once on one PostgreSQL apply migrations one after the other.
        let lock = match self {
            Store::Sqlite(_) => None,
            Store::Postgres(_) => Some(MIGRATION_LOCK),
        };
        on_pool!(self, pool => {
            let mut conn = pool.acquire().await.map_err(fail(0))?;
            if let Some(key) = lock {
                sqlx::query("SELECT pg_advisory_lock($1)").bind(key).execute(&mut *conn).await.map_err(fail(0))?;
            }
            sqlx::raw_sql(schema::SCHEMA_TABLE).execute(&mut *conn).await.map_err(fail(0))?;
            for &(version, sql) in self.migrations() {
                // Each migration and its record commit together: a crash never leaves one half applied.
                let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(fail(version))?;
                let done: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM importer_schema WHERE version = $1")
                        .bind(version)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(fail(version))?;
                if done.is_some() {
                    continue;
                }
                sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(fail(version))?;
                sqlx::query("INSERT INTO importer_schema (version) VALUES ($1)")
                    .bind(version)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail(version))?;
                tx.commit().await.map_err(fail(version))?;
            }
            // Version 3 is code, not SQL: a key is read from each row's stored PGN.
            let version = schema::REKEY_VERSION;
            let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(fail(version))?;
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM importer_schema WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(fail(version))?;
            if done.is_none() {
                let mut after = 0i64;
                let (mut rekeyed, mut kept) = (0u64, 0u64);
                loop {
                    // Paged, so that no more than a page of PGN is held however many rows there are.
                    let page: Vec<(i64, String)> = sqlx::query_as(
                        "SELECT id, pgn FROM games WHERE platform = 'chess.com' \
                         AND provider_game_id NOT LIKE '%/%' AND id > $1 ORDER BY id LIMIT 500",
                    )
                    .bind(after)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(fail(version))?;
                    let Some(&(last, _)) = page.last() else { break };
                    after = last;
                    for (id, pgn) in page {
                        let key = ["Link", "Site"]
                            .iter()
                            .filter_map(|tag| crate::game_key::tag_value(&pgn, tag))
                            .find_map(|url| crate::game_key::chess_com_key(&url));
                        let Some(key) = key else {
                            kept += 1;
                            continue;
                        };
                        sqlx::query("UPDATE games SET provider_game_id = $1 WHERE id = $2")
                            .bind(key)
                            .bind(id)
                            .execute(&mut *tx)
                            .await
                            .map_err(fail(version))?;
                        rekeyed += 1;
                    }
                }
                // Stored PGN with LF only, as every new game is stored.
                sqlx::query("UPDATE games SET pgn = REPLACE(REPLACE(pgn, $1, $2), $3, $2) WHERE pgn LIKE $4")
                    .bind("\r\n")
                    .bind("\n")
                    .bind("\r")
                    .bind("%\r%")
                    .execute(&mut *tx)
                    .await
                    .map_err(fail(version))?;
                sqlx::query("INSERT INTO importer_schema (version) VALUES ($1)")
                    .bind(version)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail(version))?;
                tx.commit().await.map_err(fail(version))?;
                if rekeyed > 0 || kept > 0 {
                    tracing::info!(rekeyed, kept_without_link = kept,
                        "chess.com games re-keyed as live/N or daily/N (migration {version})");
                }
            } else {
                tx.commit().await.map_err(fail(version))?;
            }
            if let Some(key) = lock {
                sqlx::query("SELECT pg_advisory_unlock($1)").bind(key).execute(&mut *conn).await.map_err(fail(0))?;
            }
            Ok(())
        })
    }

    fn migrations(&self) -> &'static [(i64, &'static str)] {
        match self {
            Store::Sqlite(_) => schema::SQLITE,
            Store::Postgres(_) => schema::POSTGRES,
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
            .map_err(query_err("checking the database"))
    }

    /// Records a new queued job unless the user already has one active or `max_queued` jobs are queued.
    pub async fn submit_job(&self, job: &Job, max_queued: i64) -> Result<Submitted> {
        let op = "recording an import job";
        let insert = "INSERT INTO import_jobs (id, user_id, platform, game_limit, status, created_at) \
                      SELECT $1, $2, $3, $4, 'queued', $5 \
                      WHERE (SELECT COUNT(*) FROM import_jobs WHERE status = 'queued') < $6 \
                      ON CONFLICT (user_id, platform) WHERE status IN ('queued', 'running') DO NOTHING";
        let active = "SELECT id FROM import_jobs WHERE user_id = $1 AND platform = $2 \
                      AND status IN ('queued', 'running')";
        let lock = matches!(self, Store::Postgres(_)).then_some(SUBMIT_LOCK);
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(query_err(op))?;
            // The count and the insert must see the same queue, across processes too.
            if let Some(key) = lock {
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(key).execute(&mut *tx).await.map_err(query_err(op))?;
            }
            let inserted = sqlx::query(insert)
                .bind(&job.import_id)
                .bind(&job.user_id)
                .bind(job.platform.as_str())
                .bind(job.limit)
                .bind(job.created_at)
                .bind(max_queued)
                .execute(&mut *tx)
                .await
                .map_err(query_err(op))?
                .rows_affected();
            let outcome = if inserted == 1 {
                Submitted::Queued
            } else {
                let existing: Option<String> = sqlx::query_scalar(active)
                    .bind(&job.user_id)
                    .bind(job.platform.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(query_err(op))?;
                existing.map_or(Submitted::QueueFull, Submitted::Existing)
            };
            tx.commit().await.map_err(query_err(op))?;
            Ok(outcome)
        })
    }

    /// Takes the oldest queued job whose provider has a free lane (or a running one whose lease expired)
    /// for `owner` until `lease_until` (Unix ms).
    ///
    /// The lane test is part of the statement: with [`ClaimLanes::Shared`] it counts every process's
    /// running imports of the provider, under an advisory lock on PostgreSQL so that two processes
    /// claiming at once cannot both take the last lane.
    pub async fn claim_job(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until: i64,
        lanes: ClaimLanes,
    ) -> Result<Option<Job>> {
        let (order, skip_locked) = match self {
            Store::Sqlite(_) => ("rowid", ""),
            // SKIP LOCKED: processes claiming at once each take a different job, none waits.
            Store::Postgres(_) => ("seq", "FOR UPDATE SKIP LOCKED"),
        };
        let (lichess, chess_com, shared) = match lanes {
            ClaimLanes::Free(l, c) => (l, c, false),
            ClaimLanes::Shared(l, c) => (l, c, true),
        };
        // Lanes in use: none to subtract when the caller counted its own free lanes.
        let in_use = |platform: &str| {
            if shared {
                format!(
                    "(SELECT COUNT(*) FROM import_jobs r WHERE r.status = 'running' \
                     AND r.platform = '{platform}' AND COALESCE(r.lease_until, 0) >= $4)"
                )
            } else {
                "0".to_string()
            }
        };
        let sql = format!(
            "UPDATE import_jobs SET status = 'running', owner = $1, lease_until = $2, \
             started_at = COALESCE(started_at, $3) \
             WHERE id = (SELECT id FROM import_jobs WHERE (status = 'queued' \
               OR (status = 'running' AND COALESCE(lease_until, 0) < $4)) \
               AND ((platform = 'lichess' AND $5 > {}) OR (platform = 'chess.com' AND $6 > {})) \
               ORDER BY {order} LIMIT 1 {skip_locked}) \
             RETURNING {JOB_COLUMNS}",
            in_use("lichess"),
            in_use("chess.com"),
        );
        let lock = (matches!(lanes, ClaimLanes::Shared(..)) && matches!(self, Store::Postgres(_)))
            .then_some(CLAIM_LOCK);
        let started = DateTime::<Utc>::from_timestamp_millis(now_ms).unwrap_or_else(Utc::now);
        let op = "claiming a queued import";
        on_pool!(self, pool => {
            let query = sqlx::query(&sql)
                .bind(owner)
                .bind(lease_until)
                .bind(started)
                .bind(now_ms)
                .bind(lichess)
                .bind(chess_com);
            // One statement unless lanes are shared: a transaction costs two more round trips, and
            // a claim waits behind every import's writes for a connection.
            let row = match lock {
                None => query.fetch_optional(pool).await.map_err(query_err(op))?,
                Some(key) => {
                    let mut tx = pool.begin().await.map_err(query_err(op))?;
                    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(key).execute(&mut *tx).await.map_err(query_err(op))?;
                    let row = query.fetch_optional(&mut *tx).await.map_err(query_err(op))?;
                    tx.commit().await.map_err(query_err(op))?;
                    row
                }
            };
            row.as_ref().map(job_from_row).transpose()
        })
    }

    /// Extends the leases of the jobs `owner` runs; returns the ids it still owns.
    pub async fn renew_leases(&self, owner: &str, lease_until: i64) -> Result<Vec<String>> {
        let sql =
            "UPDATE import_jobs SET lease_until = $2 WHERE owner = $1 AND status = 'running' RETURNING id";
        on_pool!(self, pool => sqlx::query_scalar(sql).bind(owner).bind(lease_until).fetch_all(pool).await)
            .map_err(query_err("renewing import leases"))
    }

    /// Puts back in the queue the running jobs of `owner`, or every running job when `owner` is `None`.
    ///
    /// At start: a process that crashed cannot renew, and the same process
    /// (same owner, or the only one on a SQLite file) need not wait for its leases to expire.
    pub async fn requeue_running(&self, owner: Option<&str>) -> Result<u64> {
        let sql = "UPDATE import_jobs SET status = 'queued', owner = NULL, lease_until = NULL \
                   WHERE status = 'running' AND ($1 IS NULL OR owner = $1)";
        on_pool!(self, pool => sqlx::query(sql).bind(owner).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query_err("requeueing imports left running"))
    }

    /// Place of a queued job among the queued imports of its provider (1 = next), across every
    /// process; 0 when it is not queued. Imports of the other provider do not wait for the same lane,
    /// so they are not counted.
    pub async fn queue_position(&self, id: &str) -> Result<i64> {
        let order = match self {
            Store::Sqlite(_) => "rowid",
            Store::Postgres(_) => "seq",
        };
        let sql = format!(
            "SELECT COUNT(*) FROM import_jobs q JOIN import_jobs me ON q.{order} <= me.{order} \
             WHERE me.id = $1 AND me.status = 'queued' AND q.status = 'queued' AND q.platform = me.platform"
        );
        on_pool!(self, pool => sqlx::query_scalar(&sql).bind(id).fetch_one(pool).await)
            .map_err(query_err("finding a queue position"))
    }

    /// How many jobs are queued, across every process.
    pub async fn queued_count(&self) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM import_jobs WHERE status = 'queued'";
        on_pool!(self, pool => sqlx::query_scalar(sql).fetch_one(pool).await)
            .map_err(query_err("counting queued imports"))
    }

    /// One job by id.
    pub async fn job(&self, id: &str) -> Result<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM import_jobs WHERE id = $1");
        on_pool!(self, pool => {
            let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await
                .map_err(query_err("reading an import job"))?;
            row.as_ref().map(job_from_row).transpose()
        })
    }

    /// Ends a job with its final counters and, when it failed, the reason.
    pub async fn finish_job(
        &self,
        id: &str,
        owner: &str,
        status: JobStatus,
        counters: &Counters,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "UPDATE import_jobs SET status = $2, games_fetched = $3, games_imported = $4, \
                   games_skipped_existing = $5, games_failed_parse = $6, error = $7, finished_at = $8, \
                   owner = NULL, lease_until = NULL WHERE id = $1 AND owner = $9";
        let updated = on_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .bind(status.as_str())
            .bind(counters.games_fetched)
            .bind(counters.games_imported)
            .bind(counters.games_skipped_existing)
            .bind(counters.games_failed_parse)
            .bind(error)
            .bind(at)
            .bind(owner)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(query_err("finishing an import job"))?;
        owned(updated, id)
    }

    /// Which of `ids` are already stored for this user and platform.
    pub async fn stored_among(&self, user: &str, platform: Platform, ids: &[&str]) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let op = query_err("checking which games are stored");
        match self {
            Store::Sqlite(pool) => {
                let mut qb = QueryBuilder::new("SELECT provider_game_id FROM games WHERE user_id = ");
                qb.push_bind(user)
                    .push(" AND platform = ")
                    .push_bind(platform.as_str());
                qb.push(" AND provider_game_id IN (");
                let mut sep = qb.separated(", ");
                for id in ids {
                    sep.push_bind(*id);
                }
                sep.push_unseparated(")");
                qb.build_query_scalar().fetch_all(pool).await.map_err(op)
            }
            Store::Postgres(pool) => sqlx::query_scalar(
                "SELECT provider_game_id FROM games \
                 WHERE user_id = $1 AND platform = $2 AND provider_game_id = ANY($3)",
            )
            .bind(user)
            .bind(platform.as_str())
            .bind(ids)
            .fetch_all(pool)
            .await
            .map_err(op),
        }
    }

    /// One page of stored ids in id order, strictly after `after` (keyset pagination, never OFFSET).
    pub async fn stored_ids_page(
        &self,
        user: &str,
        platform: Platform,
        after: Option<&str>,
        page_size: usize,
    ) -> Result<Vec<String>> {
        let sql = "SELECT provider_game_id FROM games WHERE user_id = $1 AND platform = $2 \
                   AND provider_game_id > $3 ORDER BY provider_game_id LIMIT $4";
        let limit = i64::try_from(page_size).unwrap_or(i64::MAX);
        on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(user)
            .bind(platform.as_str())
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(pool)
            .await)
        .map_err(query_err("reading a page of stored ids"))
    }

    /// Inserts `rows` (insert-or-ignore) and writes the job's counters, in one transaction.
    ///
    /// Returns how many rows were really inserted; a row another import stored
    /// meanwhile is ignored, not doubled.
    pub async fn insert_batch(
        &self,
        job: &Job,
        owner: &str,
        rows: &[GameRow],
        counters: &Counters,
        imported_at: DateTime<Utc>,
    ) -> Result<u64> {
        let op = "writing a batch of games";
        let (job_id, user, platform) = (job.import_id.as_str(), job.user_id.as_str(), job.platform);
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(query_err(op))?;
            let mut inserted = 0;
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO games (user_id, platform, provider_game_id, played_at, white, black, \
                     white_elo, black_elo, result, time_control, eco, opening, termination, variant, \
                     ply_count, pgn, imported_at) ",
                );
                qb.push_values(chunk, |mut b, row| {
                    b.push_bind(user)
                        .push_bind(platform.as_str())
                        .push_bind(&row.provider_game_id)
                        .push_bind(row.played_at)
                        .push_bind(&row.white)
                        .push_bind(&row.black)
                        .push_bind(row.white_elo)
                        .push_bind(row.black_elo)
                        .push_bind(&row.result)
                        .push_bind(&row.time_control)
                        .push_bind(&row.eco)
                        .push_bind(&row.opening)
                        .push_bind(&row.termination)
                        .push_bind(&row.variant)
                        .push_bind(row.ply_count)
                        .push_bind(&row.pgn)
                        .push_bind(imported_at);
                });
                qb.push(" ON CONFLICT (user_id, platform, provider_game_id) DO NOTHING");
                inserted += qb.build().execute(&mut *tx).await.map_err(query_err(op))?.rows_affected();
            }
            let imported = counters.games_imported + i64::try_from(inserted).unwrap_or(i64::MAX);
            let skipped = counters.games_skipped_existing
                + i64::try_from(rows.len() as u64 - inserted).unwrap_or(0);
            // Owner-guarded: a process whose job was taken over writes nothing (the rollback drops its games).
            let updated = sqlx::query(
                "UPDATE import_jobs SET games_fetched = $2, games_imported = $3, \
                 games_skipped_existing = $4, games_failed_parse = $5 WHERE id = $1 AND owner = $6",
            )
            .bind(job_id)
            .bind(counters.games_fetched)
            .bind(imported)
            .bind(skipped)
            .bind(counters.games_failed_parse)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(query_err(op))?
            .rows_affected();
            owned(updated, job_id)?;
            tx.commit().await.map_err(query_err(op))?;
            Ok(inserted)
        })
    }

    /// Puts an interrupted job back in the queue with its counters, to resume at the next start.
    pub async fn requeue_job(&self, id: &str, owner: &str, counters: &Counters) -> Result<()> {
        self.write_counters(
            id,
            owner,
            counters,
            Some(JobStatus::Queued),
            "requeueing an interrupted import",
        )
        .await
    }

    /// Writes a job's counters alone (progress while no game is new).
    pub async fn update_counters(&self, job_id: &str, owner: &str, counters: &Counters) -> Result<()> {
        self.write_counters(job_id, owner, counters, None, "writing import progress")
            .await
    }

    async fn write_counters(
        &self,
        id: &str,
        owner: &str,
        counters: &Counters,
        status: Option<JobStatus>,
        op: &'static str,
    ) -> Result<()> {
        let sql = "UPDATE import_jobs SET games_fetched = $2, games_imported = $3, \
                   games_skipped_existing = $4, games_failed_parse = $5, status = COALESCE($6, status), \
                   owner = CASE WHEN $6 IS NULL THEN owner END, \
                   lease_until = CASE WHEN $6 IS NULL THEN lease_until END \
                   WHERE id = $1 AND owner = $7";
        let updated = on_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .bind(counters.games_fetched)
            .bind(counters.games_imported)
            .bind(counters.games_skipped_existing)
            .bind(counters.games_failed_parse)
            .bind(status.map(JobStatus::as_str))
            .bind(owner)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(query_err(op))?;
        owned(updated, id)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}
