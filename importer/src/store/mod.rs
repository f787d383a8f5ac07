//! Storage of games and import jobs, on SQLite or PostgreSQL.
//!
//! One `Store` type serves both backends. The SQL text is shared where both
//! accept it (`$N` placeholders, `ON CONFLICT DO NOTHING`); each statement
//! is still compiled against each backend's own types through `on_pool!` or
//! `on_conn!`, so
//! no `Any` driver or dynamic typing is involved. Invariants kept here: a
//! batch of games and its job's counters are written in one transaction, and
//! the unique key (user_id, platform, provider_game_id) is the last guard
//! against a game stored twice.

mod gate;
mod schema;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, QueryBuilder, SqlitePool};

use gate::WriteGate;

use crate::job::{Counters, Job, Platform};
use crate::pgn::GameRow;
use crate::sync::{MonthRecord, Pending, Range, SyncProgress};

/// A database failure, with the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or opened.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// PostgreSQL did not complete a connection in time.
    #[error("cannot connect to the database: no connection within {0} s")]
    ConnectTimeout(u64),
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
    /// A failure shared by every request of a group (see `QueueTx`): each is told the same cause.
    #[error(transparent)]
    Group(Arc<StoreError>),
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
    /// Whether PostgreSQL refused a named prepared statement of this connection: SQLSTATE 42P05
    /// (`duplicate_prepared_statement`) or 26000 (`invalid_sql_statement_name`). A pooler in
    /// transaction mode causes both, by giving a client's next transaction another server
    /// connection (see [`Store`] and `DATABASE_POOLER`).
    pub fn is_prepared_statement_refused(&self) -> bool {
        let source = match self {
            StoreError::Group(e) => return e.is_prepared_statement_refused(),
            StoreError::Connect(s)
            | StoreError::Migrate { source: s, .. }
            | StoreError::Query { source: s, .. } => s,
            StoreError::LeaseLost(_) | StoreError::Corrupt { .. } | StoreError::ConnectTimeout(_) => {
                return false;
            }
        };
        matches!(source, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("42P05" | "26000")))
    }

    /// Whether trying the same step again can help.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Group(e) => e.is_transient(),
            StoreError::LeaseLost(_) | StoreError::Corrupt { .. } => false,
            _ => true,
        }
    }
}

fn query_err(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { op, source }
}

/// Advisory lock key (an arbitrary constant, the same in every process).
const MIGRATION_LOCK: i64 = 0x1e55_0001;
/// Rows per INSERT statement within a batch's transaction. Each statement's arguments are copied
/// (by sqlx for its worker, then by SQLite when bound), so a statement per whole batch held
/// about two extra copies of the batch's PGN while writing; 25 rows keep that copy small and
/// write as fast as 500 (store bench: SQLite 24,000 rows/s either way).
const ROWS_PER_INSERT: usize = 25;

/// A pool on one of the two supported databases.
#[derive(Clone, Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The name the importer's PostgreSQL connections carry (`application_name`) unless
/// `DATABASE_URL` or `PGAPPNAME` names one: an operator, a test or the harness finds its
/// backends in `pg_stat_activity` by it (to see them, or to end them as a restarting host does).
pub const APPLICATION_NAME: &str = "chess-games-importer";

/// PostgreSQL connection options from `url`.
fn pg_options(url: &str) -> Result<PgConnectOptions> {
    let opts = PgConnectOptions::from_str(url)
        .map_err(StoreError::Connect)?
        // A startup parameter PgBouncer refuses unless told to ignore it; the importer
        // reads no floating-point column as text.
        .extra_float_digits(None);
    // libpq's `fallback_application_name`: a name the operator gave wins (several deployments
    // on one server, or a test telling its importer from the others running beside it).
    // PgBouncer passes it on: it sets the client's `application_name` on the server connection
    // it lends, so the backends behind a pooler carry it too.
    Ok(match opts.get_application_name() {
        Some(_) => opts,
        None => opts.application_name(APPLICATION_NAME),
    })
}

/// The database and how [`Store::connect`] opens it: the configuration's `store` section.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// `sqlite://FILE` or `postgres://…` (`DATABASE_URL`).
    pub url: String,
    /// Connections the imports use (games pool).
    pub pool_size: u32,
    /// Connections the queue uses (queue pool); the process opens at most both sizes together.
    pub queue_pool_size: u32,
    /// SQLite page cache per connection, KiB.
    pub sqlite_cache_kib: u32,
    /// PostgreSQL: the URL leads to a pooler in transaction mode (see [`Store`]).
    pub transaction_pooler: bool,
}

impl StoreOptions {
    /// `DB_QUEUE_POOL_SIZE` when it is not set: the settings table's default (a settings test
    /// checks that every default is accepted by its own row).
    pub fn default_queue_pool_size() -> u32 {
        settings::DB_QUEUE_POOL_SIZE
            .default_integer()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1)
    }
}

/// The database: games and import jobs, on SQLite or PostgreSQL.
///
/// Two pools: the imports read and write games on `games`, the queue's statements run on `queue`,
/// so that admitting an import never waits for a connection behind the imports' batches.
///
/// Behind a pooler in transaction mode (PgBouncer, Supavisor), consecutive transactions of one
/// connection may run on different server connections, so nothing may outlive its transaction
/// (PgBouncer's FAQ, "How to use prepared statements with transaction pooling"). In that mode
/// ([`StoreOptions::transaction_pooler`]) every statement is unnamed (sqlx's `persistent(false)`:
/// no `sqlx_s_N` left on a server connection another client then meets) and runs inside an
/// explicit transaction, because sqlx parses and executes an unnamed statement in two round trips
/// the pooler could send to two servers. Locks are always transaction-scoped, in either mode.
#[derive(Clone, Debug)]
pub struct Store {
    games: Pool,
    queue: Pool,
    /// SQLite: this process's writes, one at a time, the queue's first. `None` on PostgreSQL.
    gate: Option<Arc<WriteGate>>,
    /// PostgreSQL through a transaction-mode pooler.
    pooled: bool,
}

/// Runs `$body` with `$pool` bound to the concrete pool, once per backend.
macro_rules! on_pool {
    ($pool_expr:expr, $pool:ident => $body:expr) => {
        match $pool_expr {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// Begins a transaction on `$conn` (a pooled connection) that first takes the advisory lock
/// `$lock` when there is one (PostgreSQL); sqlx errors become `$fail`'s.
macro_rules! begin_locked {
    ($conn:ident, $lock:expr, $keep:expr, $fail:expr) => {{
        let mut tx = sqlx::Connection::begin(&mut *$conn).await.map_err($fail)?;
        if let Some(key) = $lock {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .persistent($keep)
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err($fail)?;
        }
        tx
    }};
}

/// Whether migration `$version` is recorded as applied, read in `$tx`.
macro_rules! applied {
    ($tx:ident, $keep:expr, $version:expr, $fail:expr) => {{
        let done: Option<i64> = sqlx::query_scalar("SELECT version FROM importer_schema WHERE version = $1")
            .persistent($keep)
            .bind($version)
            .fetch_optional(&mut *$tx)
            .await
            .map_err($fail)?;
        done.is_some()
    }};
}

/// Records migration `$version` as applied, in `$tx`: with the migration's own work, or not at all.
macro_rules! record_applied {
    ($tx:ident, $keep:expr, $version:expr, $fail:expr) => {
        sqlx::query("INSERT INTO importer_schema (version) VALUES ($1)")
            .persistent($keep)
            .bind($version)
            .execute(&mut *$tx)
            .await
            .map_err($fail)?
    };
}

/// The `live/N` or `daily/N` key of a stored chess.com game, from its `Link` (or `Site`) tag.
fn chess_com_key_in(pgn: &str) -> Option<String> {
    ["Link", "Site"]
        .iter()
        .filter_map(|tag| crate::game_key::tag_value(pgn, tag))
        .find_map(|url| crate::game_key::chess_com_key(&url))
}

/// Runs `$body` (a `sqlx::Result`, one or more statements) with `$conn` a connection of
/// `$store`'s pool `$which`; behind a transaction pooler, inside a transaction of its own (see
/// [`Store`]). Yields a `sqlx::Result`. Every statement in it must carry `.persistent(keep)`:
/// sqlx names a statement whenever `persistent` is true, whatever the cache size.
/// The second form takes one body per backend.
macro_rules! on_conn {
    ($store:expr, $which:ident, $conn:ident => $body:expr) => {
        on_conn!($store, $which, $conn => sqlite: $body, postgres: $body)
    };
    ($store:expr, $which:ident, $conn:ident => sqlite: $sqlite:expr, postgres: $postgres:expr) => {{
        let pooled = $store.pooled;
        match &$store.$which {
            Pool::Sqlite(pool) => {
                async {
                    let mut held = pool.acquire().await?;
                    let $conn = &mut *held;
                    let out: sqlx::Result<_> = $sqlite;
                    out
                }
                .await
            }
            Pool::Postgres(pool) if pooled => {
                async {
                    let mut tx = pool.begin().await?;
                    let out: sqlx::Result<_> = {
                        let $conn = &mut *tx;
                        $postgres
                    };
                    let out = out?;
                    tx.commit().await?;
                    Ok(out)
                }
                .await
            }
            Pool::Postgres(pool) => {
                async {
                    let mut held = pool.acquire().await?;
                    let $conn = &mut *held;
                    let out: sqlx::Result<_> = $postgres;
                    out
                }
                .await
            }
        }
    }};
}

/// The four counter columns of `import_jobs`, set from `$2` to `$5` (a NULL keeps the column as
/// it is): the one place a statement names them, bound by [`bind_counters`].
macro_rules! set_counters {
    () => {
        "games_fetched = COALESCE($2, games_fetched), games_imported = COALESCE($3, games_imported), \
         games_skipped_existing = COALESCE($4, games_skipped_existing), \
         games_failed_parse = COALESCE($5, games_failed_parse)"
    };
}

/// Binds `counters` as `$2` to `$5` of a statement written with `set_counters!()`, whose `$1` is
/// bound; `None` binds NULLs, which keep the stored counters.
fn bind_counters<'q, DB: sqlx::Database>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    counters: Option<&Counters>,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(counters.map(|c| c.games_fetched))
        .bind(counters.map(|c| c.games_imported))
        .bind(counters.map(|c| c.games_skipped_existing))
        .bind(counters.map(|c| c.games_failed_parse))
}

mod queue;

pub use queue::{ClaimLanes, Deferral, Lanes, PlacedJob, QueueLoad, QueueTx};

/// Writes what a batch completes of the user's history (`SyncProgress`) in the open transaction
/// `$tx`, so that a range is never recorded without the games it claims.
macro_rules! write_sync {
    ($tx:expr, $keep:expr, $user:expr, $platform:expr, $sync:expr, $op:expr) => {{
        let (user, platform, sync): (&str, &str, &SyncProgress) = ($user, $platform, $sync);
        let keep: bool = $keep;
        if let Some(new) = sync.range {
            // The recorded ranges it overlaps or touches become one with it.
            let touching: Vec<(i64, i64)> = sqlx::query_as(
                "DELETE FROM sync_ranges WHERE user_id = $1 AND platform = $2 AND lo_ms <= $4 AND hi_ms >= $3 \
                 RETURNING lo_ms, hi_ms",
            )
            .persistent(keep)
            .bind(user)
            .bind(platform)
            .bind(new.lo_ms)
            .bind(new.hi_ms)
            .fetch_all(&mut *$tx)
            .await
            .map_err(query_err($op))?;
            let existing: Vec<Range> = touching
                .into_iter()
                .map(|(lo_ms, hi_ms)| Range { lo_ms, hi_ms })
                .collect();
            let merged = crate::sync::merge(&existing, new);
            for r in &merged {
                sqlx::query("INSERT INTO sync_ranges (user_id, platform, lo_ms, hi_ms) VALUES ($1, $2, $3, $4)")
                    .persistent(keep)
                    .bind(user)
                    .bind(platform)
                    .bind(r.lo_ms)
                    .bind(r.hi_ms)
                    .execute(&mut *$tx)
                    .await
                    .map_err(query_err($op))?;
            }
        }
        for p in &sync.pending_found {
            sqlx::query(
                "INSERT INTO sync_pending (user_id, platform, provider_game_id, created_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, platform, provider_game_id) DO NOTHING",
            )
            .persistent(keep)
            .bind(user)
            .bind(platform)
            .bind(&p.game_id)
            .bind(p.created_ms)
            .execute(&mut *$tx)
            .await
            .map_err(query_err($op))?;
        }
        for id in &sync.pending_done {
            sqlx::query("DELETE FROM sync_pending WHERE user_id = $1 AND platform = $2 AND provider_game_id = $3")
                .persistent(keep)
                .bind(user)
                .bind(platform)
                .bind(id)
                .execute(&mut *$tx)
                .await
                .map_err(query_err($op))?;
        }
        if let Some(m) = &sync.month {
            sqlx::query(
                "INSERT INTO sync_months (user_id, platform, month, complete, etag, last_modified, checked_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id, platform, month) DO UPDATE \
                 SET complete = excluded.complete, etag = excluded.etag, last_modified = excluded.last_modified, \
                 checked_ms = excluded.checked_ms",
            )
            .persistent(keep)
            .bind(user)
            .bind(platform)
            .bind(m.month.to_string())
            .bind(m.complete)
            .bind(m.validators.etag.as_deref())
            .bind(m.validators.last_modified.as_deref())
            .bind(Utc::now().timestamp_millis())
            .execute(&mut *$tx)
            .await
            .map_err(query_err($op))?;
        }
    }};
}

/// A row of `sync_months`: month, complete, ETag, Last-Modified, when last checked (Unix ms).
type MonthRow = (String, bool, Option<String>, Option<String>, Option<i64>);

/// What the database holds completely of one user's history (see `crate::sync`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncState {
    /// lichess ranges, oldest first.
    pub ranges: Vec<Range>,
    /// lichess games that were ongoing when read, oldest first.
    pub pending: Vec<Pending>,
    /// chess.com months.
    pub months: Vec<MonthRecord>,
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
    /// Opens the pools for `options.url` (creating a SQLite file if missing) and brings the
    /// schema up to date.
    ///
    /// At most `pool_size + queue_pool_size` connections, opened as needed.
    pub async fn connect(options: &StoreOptions) -> Result<Store> {
        let url = options.url.as_str();
        let store = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(StoreError::Connect)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                // Negative: a size in KiB. Each connection has its own cache.
                .pragma("cache_size", format!("-{}", options.sqlite_cache_kib));
            let pool = |size| {
                SqlitePoolOptions::new()
                    .max_connections(size)
                    .min_connections(0)
                    .connect_with(opts.clone())
            };
            Store {
                games: Pool::Sqlite(pool(options.pool_size).await.map_err(StoreError::Connect)?),
                queue: Pool::Sqlite(pool(options.queue_pool_size).await.map_err(StoreError::Connect)?),
                gate: Some(Arc::new(WriteGate::default())),
                pooled: false,
            }
        } else {
            let opts = pg_options(url)?;
            let acquire = Duration::from_secs(if options.transaction_pooler { 60 } else { 10 });
            // A pool that cannot connect says only that it timed out, after the whole timeout:
            // one connection first, so that a refused connection, an unknown host or a refused
            // password is said at once, in the client's words. It is the check the pools would
            // make, so they open theirs when first used (the migration, next).
            let first = tokio::time::timeout(
                acquire,
                <sqlx::PgConnection as sqlx::Connection>::connect_with(&opts),
            )
            .await
            .map_err(|_| StoreError::ConnectTimeout(acquire.as_secs()))?
            .map_err(StoreError::Connect)?;
            let _ = sqlx::Connection::close(first).await;
            let pool = |size| {
                PgPoolOptions::new()
                    .max_connections(size)
                    .min_connections(0)
                    // Behind a pooler, waiting for a connection is normal under a small allowance:
                    // the pooler queues clients, and an import whose batch waits longer than this
                    // fails its step and is retried (`is_transient`).
                    .acquire_timeout(acquire)
                    .connect_lazy_with(opts.clone())
            };
            Store {
                games: Pool::Postgres(pool(options.pool_size)),
                queue: Pool::Postgres(pool(options.queue_pool_size)),
                gate: None,
                pooled: options.transaction_pooler,
            }
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Whether the database is an SQLite file (which only this process uses).
    pub fn is_sqlite(&self) -> bool {
        matches!(self.games, Pool::Sqlite(_))
    }

    /// Whether statements may be kept prepared on their connection (not behind a transaction pooler).
    fn keep(&self) -> bool {
        !self.pooled
    }

    /// Brings the schema up to date: the SQL migrations, then the one written as code.
    async fn migrate(&self) -> Result<()> {
        self.apply_sql_migrations().await?;
        self.rekey_chess_com_games().await
    }

    /// The schema table, then each SQL migration not yet recorded, each with its record in one
    /// transaction: a crash never leaves one half applied.
    async fn apply_sql_migrations(&self) -> Result<()> {
        let fail = |version| move |source| StoreError::Migrate { version, source };
        let keep = self.keep();
        let lock = self.migration_lock();
        on_pool!(&self.games, pool => {
            let mut conn = pool.acquire().await.map_err(fail(0))?;
            let mut tx = begin_locked!(conn, lock, keep, fail(0));
            sqlx::raw_sql(schema::SCHEMA_TABLE).execute(&mut *tx).await.map_err(fail(0))?;
            tx.commit().await.map_err(fail(0))?;
            for &(version, sql) in self.migrations() {
                let mut tx = begin_locked!(conn, lock, keep, fail(version));
                if applied!(tx, keep, version, fail(version)) {
                    continue;
                }
                sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(fail(version))?;
                record_applied!(tx, keep, version, fail(version));
                tx.commit().await.map_err(fail(version))?;
            }
            Ok(())
        })
    }

    /// Processes starting at once on one PostgreSQL apply migrations one after the other: each
    /// step's transaction takes a transaction-scoped lock first (a session lock would outlive
    /// its transaction behind a transaction pooler, held by whichever client meets it next).
    fn migration_lock(&self) -> Option<i64> {
        (!self.is_sqlite()).then_some(MIGRATION_LOCK)
    }

    /// Migration 3, code rather than SQL: chess.com games stored under a bare number get the
    /// key `live/N` or `daily/N` read from their stored PGN, page by page so that no more than
    /// a page of PGN is held; stored PGN gets LF line ends, as every new game is stored.
    async fn rekey_chess_com_games(&self) -> Result<()> {
        let fail = |version| move |source| StoreError::Migrate { version, source };
        let keep = self.keep();
        let lock = self.migration_lock();
        let version = schema::REKEY_VERSION;
        on_pool!(&self.games, pool => {
            let mut conn = pool.acquire().await.map_err(fail(version))?;
            let mut tx = begin_locked!(conn, lock, keep, fail(version));
            if applied!(tx, keep, version, fail(version)) {
                return tx.commit().await.map_err(fail(version));
            }
            let (mut after, mut rekeyed, mut kept) = (0i64, 0u64, 0u64);
            loop {
                let page: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT id, pgn FROM games WHERE platform = 'chess.com' \
                     AND provider_game_id NOT LIKE '%/%' AND id > $1 ORDER BY id LIMIT 500",
                )
                .persistent(keep)
                .bind(after)
                .fetch_all(&mut *tx)
                .await
                .map_err(fail(version))?;
                let Some(&(last, _)) = page.last() else { break };
                after = last;
                for (id, pgn) in page {
                    let Some(key) = chess_com_key_in(&pgn) else {
                        kept += 1;
                        continue;
                    };
                    sqlx::query("UPDATE games SET provider_game_id = $1 WHERE id = $2")
                        .persistent(keep)
                        .bind(key)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(fail(version))?;
                    rekeyed += 1;
                }
            }
            sqlx::query("UPDATE games SET pgn = REPLACE(REPLACE(pgn, $1, $2), $3, $2) WHERE pgn LIKE $4")
                .persistent(keep)
                .bind("\r\n")
                .bind("\n")
                .bind("\r")
                .bind("%\r%")
                .execute(&mut *tx)
                .await
                .map_err(fail(version))?;
            record_applied!(tx, keep, version, fail(version));
            tx.commit().await.map_err(fail(version))?;
            if rekeyed > 0 || kept > 0 {
                tracing::info!(rekeyed, kept_without_link = kept,
                    "chess.com games re-keyed as live/N or daily/N (migration {version})");
            }
            Ok(())
        })
    }

    fn migrations(&self) -> &'static [(i64, &'static str)] {
        if self.is_sqlite() {
            schema::SQLITE
        } else {
            schema::POSTGRES
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        // A simple query (no parameters): one round trip, no statement, pooler-safe as it is.
        on_pool!(&self.queue, pool => sqlx::raw_sql("SELECT 1").execute(pool).await.map(|_| ()))
            .map_err(query_err("checking the database"))
    }

    /// Which of `ids` are already stored for this user and platform.
    pub async fn stored_among(&self, user: &str, platform: Platform, ids: &[&str]) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let op = query_err("checking which games are stored");
        let keep = self.keep();
        on_conn!(self, games, conn =>
            sqlite: {
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
                qb.build_query_scalar().persistent(keep).fetch_all(&mut *conn).await
            },
            postgres: sqlx::query_scalar(
                "SELECT provider_game_id FROM games \
                 WHERE user_id = $1 AND platform = $2 AND provider_game_id = ANY($3)",
            )
            .persistent(keep)
            .bind(user)
            .bind(platform.as_str())
            .bind(ids)
            .fetch_all(&mut *conn)
            .await
        )
        .map_err(op)
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
        let keep = self.keep();
        on_conn!(self, games, conn => sqlx::query_scalar(sql)
            .persistent(keep)
            .bind(user)
            .bind(platform.as_str())
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(&mut *conn)
            .await)
        .map_err(query_err("reading a page of stored ids"))
    }

    /// Inserts `rows` (insert-or-ignore) and writes the job's counters, in one transaction:
    /// `counters` are the job's before this batch, written with the batch added
    /// ([`Counters::after_batch`]).
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
        self.write_batch(job, owner, rows, counters, imported_at, &SyncProgress::default())
            .await
    }

    /// [`Store::insert_batch`], and in the same transaction what the batch completes of the
    /// user's history (`sync`): a range is never recorded without the games it claims.
    pub async fn write_batch(
        &self,
        job: &Job,
        owner: &str,
        rows: &[GameRow],
        counters: &Counters,
        imported_at: DateTime<Utc>,
        sync: &SyncProgress,
    ) -> Result<u64> {
        let op = "writing a batch of games";
        let (job_id, user, platform) = (job.import_id.as_str(), job.user_id.as_str(), job.platform);
        let _turn = self.games_turn().await;
        let keep = self.keep();
        on_pool!(&self.games, pool => {
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
                inserted += qb.build().persistent(keep).execute(&mut *tx).await.map_err(query_err(op))?.rows_affected();
            }
            let written = counters.after_batch(rows.len(), inserted);
            // Owner-guarded: a process whose job was taken over writes nothing (the rollback drops its games).
            let sql = concat!("UPDATE import_jobs SET ", set_counters!(), " WHERE id = $1 AND owner = $6");
            let update = sqlx::query(sql).persistent(keep).bind(job_id);
            let updated = bind_counters(update, Some(&written))
                .bind(owner)
                .execute(&mut *tx)
                .await
                .map_err(query_err(op))?
                .rows_affected();
            owned(updated, job_id)?;
            write_sync!(tx, keep, user, platform.as_str(), sync, op);
            tx.commit().await.map_err(query_err(op))?;
            Ok(inserted)
        })
    }

    /// Puts an interrupted job back in the queue with its counters, to resume at the next start.
    pub async fn requeue_job(&self, id: &str, owner: &str, counters: &Counters) -> Result<()> {
        self.put_back(id, owner, counters, None).await
    }

    /// Writes a job's counters and what its reading completed of the user's history, in one
    /// transaction (a window or month that held no new game).
    pub async fn write_progress(
        &self,
        job: &Job,
        owner: &str,
        counters: &Counters,
        sync: &SyncProgress,
    ) -> Result<()> {
        self.write_batch(job, owner, &[], counters, Utc::now(), sync)
            .await
            .map(|_| ())
    }

    /// What the database holds completely of `user`'s history on `platform`.
    pub async fn sync_state(&self, user: &str, platform: Platform) -> Result<SyncState> {
        let op = query_err("reading what is stored of the user's history");
        let p = platform.as_str();
        let keep = self.keep();
        // A connection per statement, not one held for all three: every import starting at once
        // waits for one of the few (DB_POOL_SIZE), and holding it longer put capacity-512's
        // POST p99 at 54-80 ms instead of 34-43.
        let ranges: Vec<(i64, i64)> = on_conn!(self, games, conn => sqlx::query_as(
            "SELECT lo_ms, hi_ms FROM sync_ranges WHERE user_id = $1 AND platform = $2 ORDER BY lo_ms",
        )
        .persistent(keep)
        .bind(user)
        .bind(p)
        .fetch_all(&mut *conn)
        .await)
        .map_err(op)?;
        let pending: Vec<(String, i64)> = on_conn!(self, games, conn => sqlx::query_as(
            "SELECT provider_game_id, created_ms FROM sync_pending WHERE user_id = $1 AND platform = $2 \
             ORDER BY created_ms",
        )
        .persistent(keep)
        .bind(user)
        .bind(p)
        .fetch_all(&mut *conn)
        .await)
        .map_err(query_err("reading pending games"))?;
        let months: Vec<MonthRow> = on_conn!(self, games, conn => sqlx::query_as(
            "SELECT month, complete, etag, last_modified, checked_ms FROM sync_months \
             WHERE user_id = $1 AND platform = $2 ORDER BY month",
        )
        .persistent(keep)
        .bind(user)
        .bind(p)
        .fetch_all(&mut *conn)
        .await)
        .map_err(query_err("reading recorded months"))?;
        let months = months
            .into_iter()
            .map(|(month, complete, etag, last_modified, checked_ms)| {
                let parsed = crate::sync::Month::parse(&month).ok_or_else(|| StoreError::Corrupt {
                    table: "sync_months",
                    detail: format!("month {month:?} is not YYYY/MM"),
                })?;
                Ok(MonthRecord {
                    month: parsed,
                    complete,
                    validators: crate::sync::Validators { etag, last_modified },
                    checked_ms,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SyncState {
            ranges: ranges
                .into_iter()
                .map(|(lo_ms, hi_ms)| Range { lo_ms, hi_ms })
                .collect(),
            pending: pending
                .into_iter()
                .map(|(game_id, created_ms)| Pending { game_id, created_ms })
                .collect(),
            months,
        })
    }

    /// Closes the pools.
    pub async fn close(&self) {
        on_pool!(&self.queue, pool => pool.close().await);
        on_pool!(&self.games, pool => pool.close().await);
    }

    async fn games_turn(&self) -> Option<gate::Turn<'_>> {
        match &self.gate {
            Some(gate) => Some(gate.games().await),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_connections_carry_the_importers_name_unless_the_url_names_one() {
        // sqlx reads PGAPPNAME as libpq does: a name from the environment wins too.
        let from_env = std::env::var("PGAPPNAME").ok();
        let opts = pg_options("postgres://u@db.example/games").expect("options");
        assert_eq!(
            opts.get_application_name(),
            Some(from_env.as_deref().unwrap_or(APPLICATION_NAME))
        );
        let opts = pg_options("postgres://u@db.example/games?application_name=eu-importer").expect("options");
        assert_eq!(opts.get_application_name(), Some("eu-importer"));
    }
}
