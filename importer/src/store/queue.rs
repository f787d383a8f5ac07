//! The import queue's statements: admit, claim, renew, finish, read.
//!
//! They run on the store's queue pool, never on the connections the imports write their batches
//! on, and on SQLite take the writer ahead of the imports (see `gate`): a submission, a claim or a
//! lease renewal waits milliseconds however many imports are writing. A group of submissions and
//! the claims they allow are one transaction ([`QueueTx`]), so a burst of requests costs one commit
//! per group rather than several per request.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

use super::gate::Turn;
use super::{Pool, Result, Store, StoreError, bind_counters, owned, query_err};
use crate::job::{Counters, Job, JobStatus, Platform, ProviderWait};

/// Advisory lock keys (arbitrary constants, the same in every process).
const SUBMIT_LOCK: i64 = 0x1e55_0002;
const CLAIM_LOCK: i64 = 0x1e55_0003;

pub use settings::Lanes;

/// Which providers a claim may take an import of: the provider lanes as the claim statement sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimLanes {
    /// Lanes free in the claiming process. A provider with 0 is skipped.
    Free(Lanes),
    /// Lanes shared by every process on the database: limits, compared in the statement with the
    /// running imports of that provider whose lease holds.
    Shared(Lanes),
}

/// The queue as [`Store::queue_load`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLoad {
    /// Jobs queued, across every process (waiting for a slot, a lane or their provider).
    pub queued: i64,
    /// Of those, the lichess imports waiting for lichess (`not_before` ahead).
    pub waiting_for_lichess: i64,
    /// Of those, the chess.com imports waiting for chess.com.
    pub waiting_for_chess_com: i64,
}

/// A job with its place among the queued imports of its provider (1 = next; 0 when not queued).
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedJob {
    /// The job.
    pub job: Job,
    /// Its place in the queue.
    pub queue_position: i64,
}

/// A running import put back in the queue to wait for its provider (see [`Store::defer_job`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferral {
    /// Now, Unix ms.
    pub now_ms: i64,
    /// Not claimed before this, Unix ms.
    pub not_before_ms: i64,
    /// Since when its provider has brought nothing new, Unix ms.
    pub since_ms: i64,
    /// What the provider answered last, as it said it.
    pub last_answer: String,
}

/// Jobs queued, across every process.
const QUEUED_COUNT: &str = "SELECT COUNT(*) FROM import_jobs WHERE status = 'queued'";

const JOB_COLUMNS: &str = "id, user_id, platform, game_limit, status, games_fetched, games_imported, \
     games_skipped_existing, games_failed_parse, error, created_at, started_at, finished_at, \
     not_before, provider_wait_since, provider_last_answer, provider_wait_ms";

/// The `position` column of `job_with_position`'s row.
fn position<R>(row: &R) -> Result<i64>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    row.try_get("position")
        .map_err(query_err("reading an import job"))
}

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
    let mut status = JobStatus::parse(&status).ok_or_else(|| StoreError::Corrupt {
        table: "import_jobs",
        detail: format!("unknown status {status:?}"),
    })?;
    let not_before: Option<i64> = row.try_get("not_before").map_err(get_err)?;
    let since: Option<i64> = row.try_get("provider_wait_since").map_err(get_err)?;
    let last_answer: Option<String> = row.try_get("provider_last_answer").map_err(get_err)?;
    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let waiting_for_provider = match (status, not_before, since, last_answer) {
        (JobStatus::Queued, Some(next), Some(since), Some(last_answer))
            if next > Utc::now().timestamp_millis() =>
        {
            status = JobStatus::WaitingForProvider;
            Some(ProviderWait {
                since: at(since),
                next_try: at(next),
                last_answer,
            })
        }
        _ => None,
    };
    let waited_ms: i64 = row.try_get("provider_wait_ms").map_err(get_err)?;
    Ok(Job {
        import_id: row.try_get("id").map_err(get_err)?,
        user_id: row.try_get("user_id").map_err(get_err)?,
        platform: Platform::parse(&platform).ok_or_else(|| StoreError::Corrupt {
            table: "import_jobs",
            detail: format!("unknown platform {platform:?}"),
        })?,
        limit: row.try_get("game_limit").map_err(get_err)?,
        status,
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
        waiting_for_provider,
        provider_wait_secs: waited_ms as f64 / 1000.0,
        provider_wait_since: since,
    })
}

enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs `$body` with `$tx` bound to the concrete transaction, once per backend.
macro_rules! on_tx {
    ($tx:expr, $t:ident => $body:expr) => {
        match $tx {
            Tx::Sqlite($t) => $body,
            Tx::Postgres($t) => $body,
        }
    };
}

/// One transaction of queue statements: submissions, claims, positions. Nothing it did is seen by
/// anyone, nor kept, until [`QueueTx::commit`]; dropped, it rolls back.
pub struct QueueTx<'s> {
    tx: Tx,
    /// Advisory locks taken so far (PostgreSQL), held until the end of the transaction.
    submit_locked: bool,
    claim_locked: bool,
    /// Whether statements may stay prepared on the connection (not behind a transaction pooler).
    keep: bool,
    /// SQLite: this process's writer, held until the end of the transaction.
    _turn: Option<Turn<'s>>,
}

impl QueueTx<'_> {
    fn order(&self) -> &'static str {
        match self.tx {
            Tx::Sqlite(_) => "rowid",
            Tx::Postgres(_) => "seq",
        }
    }

    async fn advisory_lock(&mut self, key: i64) -> Result<()> {
        if let Tx::Postgres(tx) = &mut self.tx {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .persistent(self.keep)
                .bind(key)
                .execute(&mut **tx)
                .await
                .map_err(query_err("waiting for the queue's lock"))?;
        }
        Ok(())
    }

    /// Takes the queue's lock for submissions (PostgreSQL: every process's submissions wait for
    /// one another's transaction, so that what [`QueueTx::active_among`] and
    /// [`QueueTx::queued_count`] read still holds when [`QueueTx::insert_jobs`] writes). SQLite:
    /// the writer this transaction holds already is that lock.
    pub async fn lock_submissions(&mut self) -> Result<()> {
        if !self.submit_locked {
            self.advisory_lock(SUBMIT_LOCK).await?;
            self.submit_locked = true;
        }
        Ok(())
    }

    /// The queued or running import of each of `users` that has one: (user, platform) → id.
    pub async fn active_among(
        &mut self,
        users: &[(&str, Platform)],
    ) -> Result<HashMap<(String, Platform), String>> {
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        let keep = self.keep;
        on_tx!(&mut self.tx, tx => {
            let mut qb = QueryBuilder::new(
                "SELECT user_id, platform, id FROM import_jobs WHERE status IN ('queued', 'running')                  AND user_id IN (",
            );
            let mut sep = qb.separated(", ");
            for (user, _) in users {
                sep.push_bind(*user);
            }
            sep.push_unseparated(")");
            let rows: Vec<(String, String, String)> = qb
                .build_query_as()
                .persistent(keep)
                .fetch_all(&mut **tx)
                .await
                .map_err(query_err("finding users' active imports"))?;
            Ok(rows
                .into_iter()
                .filter_map(|(user, platform, id)| Some(((user, Platform::parse(&platform)?), id)))
                .collect())
        })
    }

    /// How many jobs are queued, across every process.
    pub async fn queued_count(&mut self) -> Result<i64> {
        let keep = self.keep;
        on_tx!(&mut self.tx, tx => sqlx::query_scalar(QUEUED_COUNT).persistent(keep).fetch_one(&mut **tx).await)
            .map_err(query_err("counting queued imports"))
    }

    /// Records new jobs, in the order given (the queue's order), in one statement: queued, or
    /// running for `owner` until `lease_until` (Unix ms) where the job's status says running.
    ///
    /// No conflict is ignored: a user with an active import here is a caller's error, and fails
    /// the whole transaction rather than losing a job it was told was recorded.
    pub async fn insert_jobs(&mut self, jobs: &[Job], owner: &str, lease_until: i64) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let keep = self.keep;
        on_tx!(&mut self.tx, tx => {
            let mut qb = QueryBuilder::new(
                "INSERT INTO import_jobs (id, user_id, platform, game_limit, status, created_at, \
                 started_at, owner, lease_until) ",
            );
            qb.push_values(jobs, |mut b, job| {
                let running = job.status == JobStatus::Running;
                b.push_bind(&job.import_id)
                    .push_bind(&job.user_id)
                    .push_bind(job.platform.as_str())
                    .push_bind(job.limit)
                    .push_bind(job.status.as_str())
                    .push_bind(job.created_at)
                    .push_bind(job.started_at)
                    .push_bind(running.then_some(owner))
                    .push_bind(running.then_some(lease_until));
            });
            qb.build()
                .persistent(keep)
                .execute(&mut **tx)
                .await
                .map_err(query_err("recording import jobs"))?;
            Ok(())
        })
    }

    /// Removes queued jobs this transaction recorded (admissions the queue had no room for once
    /// the claims had run).
    pub async fn delete_queued(&mut self, ids: &[&str]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let keep = self.keep;
        on_tx!(&mut self.tx, tx => {
            let mut qb = QueryBuilder::new("DELETE FROM import_jobs WHERE status = 'queued' AND id IN (");
            let mut sep = qb.separated(", ");
            for id in ids {
                sep.push_bind(*id);
            }
            sep.push_unseparated(")");
            qb.build()
                .persistent(keep)
                .execute(&mut **tx)
                .await
                .map_err(query_err("refusing imports the queue has no room for"))?;
            Ok(())
        })
    }

    /// Takes the oldest queued job whose provider has a free lane and whose `not_before` has passed
    /// (or a running one whose lease expired) for `owner` until `lease_until` (Unix ms).
    ///
    /// The lane test is part of the statement: with [`ClaimLanes::Shared`] it counts every process's
    /// running imports of the provider, under an advisory lock on PostgreSQL so that two processes
    /// claiming at once cannot both take the last lane.
    pub async fn claim(
        &mut self,
        owner: &str,
        now_ms: i64,
        lease_until: i64,
        lanes: ClaimLanes,
    ) -> Result<Option<Job>> {
        let order = self.order();
        // SKIP LOCKED: processes claiming at once each take a different job, none waits.
        let skip_locked = match self.tx {
            Tx::Sqlite(_) => "",
            Tx::Postgres(_) => "FOR UPDATE SKIP LOCKED",
        };
        let (lichess, chess_com, shared) = match lanes {
            ClaimLanes::Free(l) => (i64::from(l.lichess), i64::from(l.chess_com), false),
            ClaimLanes::Shared(l) => (i64::from(l.lichess), i64::from(l.chess_com), true),
        };
        if shared && !self.claim_locked {
            self.advisory_lock(CLAIM_LOCK).await?;
            self.claim_locked = true;
        }
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
             WHERE id = (SELECT id FROM import_jobs WHERE ((status = 'queued' AND COALESCE(not_before, 0) <= $4) \
               OR (status = 'running' AND COALESCE(lease_until, 0) < $4)) \
               AND ((platform = 'lichess' AND $5 > {}) OR (platform = 'chess.com' AND $6 > {})) \
               ORDER BY {order} LIMIT 1 {skip_locked}) \
             RETURNING {JOB_COLUMNS}",
            in_use("lichess"),
            in_use("chess.com"),
        );
        let started = DateTime::<Utc>::from_timestamp_millis(now_ms).unwrap_or_else(Utc::now);
        let keep = self.keep;
        on_tx!(&mut self.tx, tx => {
            let row = sqlx::query(&sql)
                .persistent(keep)
                .bind(owner)
                .bind(lease_until)
                .bind(started)
                .bind(now_ms)
                .bind(lichess)
                .bind(chess_com)
                .fetch_optional(&mut **tx)
                .await
                .map_err(query_err("claiming a queued import"))?;
            row.as_ref().map(job_from_row).transpose()
        })
    }

    /// Places in the queue of `ids` among the queued imports of their provider (1 = next), across
    /// every process; an id that is not queued is absent from the answer.
    pub async fn queue_positions(&mut self, ids: &[&str]) -> Result<HashMap<String, i64>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let order = self.order();
        let head = format!(
            "SELECT id, pos FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY platform ORDER BY {order}) AS pos \
             FROM import_jobs WHERE status = 'queued') q WHERE id IN ("
        );
        let keep = self.keep;
        on_tx!(&mut self.tx, tx => {
            let mut qb = QueryBuilder::new(head);
            let mut sep = qb.separated(", ");
            for id in ids {
                sep.push_bind(*id);
            }
            sep.push_unseparated(")");
            let rows: Vec<(String, i64)> = qb
                .build_query_as()
                .persistent(keep)
                .fetch_all(&mut **tx)
                .await
                .map_err(query_err("finding queue positions"))?;
            Ok(rows.into_iter().collect())
        })
    }

    /// Makes what this transaction did visible and lasting.
    pub async fn commit(self) -> Result<()> {
        on_tx!(self.tx, tx => tx.commit().await).map_err(query_err("committing queue changes"))
    }
}

impl Store {
    /// Opens a transaction on the queue pool (on SQLite, with this process's writer).
    pub async fn begin_queue(&self) -> Result<QueueTx<'_>> {
        let turn = match &self.gate {
            Some(gate) => Some(gate.queue().await),
            None => None,
        };
        let begin = query_err("opening a queue transaction");
        let tx = match &self.queue {
            // Deferred, not IMMEDIATE: under the gate no other writer of this process holds the
            // lock, and IMMEDIATE measured POST p99 118-131 ms against 99 (capacity-512). Left:
            // a failed import batch rolls back after its turn ends; an admission meeting that
            // rollback fails at once (SQLITE_BUSY), and its group is answered 500.
            Pool::Sqlite(pool) => Tx::Sqlite(pool.begin().await.map_err(begin)?),
            Pool::Postgres(pool) => Tx::Postgres(pool.begin().await.map_err(begin)?),
        };
        Ok(QueueTx {
            tx,
            submit_locked: false,
            claim_locked: false,
            keep: self.keep(),
            _turn: turn,
        })
    }

    /// Records one new job as it is, in a transaction of its own (see [`QueueTx::insert_jobs`]).
    pub async fn insert_job(&self, job: &Job, owner: &str, lease_until: i64) -> Result<()> {
        let mut tx = self.begin_queue().await?;
        tx.insert_jobs(std::slice::from_ref(job), owner, lease_until)
            .await?;
        tx.commit().await
    }

    /// Claims one job, in a transaction of its own (see [`QueueTx::claim`]).
    pub async fn claim_job(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until: i64,
        lanes: ClaimLanes,
    ) -> Result<Option<Job>> {
        let mut tx = self.begin_queue().await?;
        let job = tx.claim(owner, now_ms, lease_until, lanes).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// Extends the leases of the jobs `owner` runs; returns the ids it still owns.
    pub async fn renew_leases(&self, owner: &str, lease_until: i64) -> Result<Vec<String>> {
        let sql =
            "UPDATE import_jobs SET lease_until = $2 WHERE owner = $1 AND status = 'running' RETURNING id";
        let _turn = self.queue_turn().await;
        let keep = self.keep();
        on_conn!(self, queue, conn => sqlx::query_scalar(sql)
            .persistent(keep)
            .bind(owner)
            .bind(lease_until)
            .fetch_all(&mut *conn)
            .await)
        .map_err(query_err("renewing import leases"))
    }

    /// Puts back in the queue the running jobs of `owner`, or every running job when `owner` is `None`.
    ///
    /// At start: a process that crashed cannot renew, and the same process
    /// (same owner, or the only one on a SQLite file) need not wait for its leases to expire.
    pub async fn requeue_running(&self, owner: Option<&str>) -> Result<u64> {
        let sql = "UPDATE import_jobs SET status = 'queued', owner = NULL, lease_until = NULL \
                   WHERE status = 'running' AND ($1 IS NULL OR owner = $1)";
        let _turn = self.queue_turn().await;
        let keep = self.keep();
        on_conn!(self, queue, conn => sqlx::query(sql)
            .persistent(keep)
            .bind(owner)
            .execute(&mut *conn)
            .await
            .map(|r| r.rows_affected()))
        .map_err(query_err("requeueing imports left running"))
    }

    /// The queue now, across every process, in one statement: the jobs queued, and of those per
    /// provider the ones not to be tried before a time after `now_ms` (waiting for their provider).
    pub async fn queue_load(&self, now_ms: i64) -> Result<QueueLoad> {
        let sql = "SELECT platform, COUNT(*), COALESCE(SUM(CASE WHEN not_before > $1 THEN 1 ELSE 0 END), 0) \
                   FROM import_jobs WHERE status = 'queued' GROUP BY platform";
        let keep = self.keep();
        let rows: Vec<(String, i64, i64)> = on_conn!(self, queue, conn => sqlx::query_as(sql)
            .persistent(keep)
            .bind(now_ms)
            .fetch_all(&mut *conn)
            .await)
        .map_err(query_err("counting queued imports"))?;
        let waiting = |p: Platform| {
            rows.iter()
                .find(|(name, ..)| name == p.as_str())
                .map_or(0, |(_, _, n)| *n)
        };
        Ok(QueueLoad {
            queued: rows.iter().map(|(_, n, _)| n).sum(),
            waiting_for_lichess: waiting(Platform::Lichess),
            waiting_for_chess_com: waiting(Platform::ChessCom),
        })
    }

    /// One job by id, with its place in its provider's queue (1 = next; 0 when it is not queued),
    /// in one statement: a client polling its import costs one query.
    pub async fn job_with_position(&self, id: &str) -> Result<Option<PlacedJob>> {
        let order = match self.queue {
            Pool::Sqlite(_) => "rowid",
            Pool::Postgres(_) => "seq",
        };
        let columns = JOB_COLUMNS
            .split(", ")
            .map(|c| format!("me.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns}, CASE WHEN me.status = 'queued' THEN \
               (SELECT COUNT(*) FROM import_jobs q WHERE q.status = 'queued' \
                AND q.platform = me.platform AND q.{order} <= me.{order}) ELSE 0 END AS position \
             FROM import_jobs me WHERE me.id = $1"
        );
        let keep = self.keep();
        // Rows are decoded inside: a row cannot leave the connection it was read on.
        let read = on_conn!(self, queue, conn => sqlx::query(&sql)
            .persistent(keep)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map(|row| row.map(|row| Ok(PlacedJob { job: job_from_row(&row)?, queue_position: position(&row)? }))))
        .map_err(query_err("reading an import job"))?;
        read.transpose()
    }

    /// Ends a job with its final counters and, when it failed, the reason. `counters` `None` keeps
    /// those its committed batches wrote (an import whose task died has no others).
    pub async fn finish_job(
        &self,
        id: &str,
        owner: &str,
        status: JobStatus,
        counters: Option<&Counters>,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let sql = concat!(
            "UPDATE import_jobs SET ",
            set_counters!(),
            ", status = $6, error = $7, finished_at = $8, \
             not_before = NULL, owner = NULL, lease_until = NULL WHERE id = $1 AND owner = $9"
        );
        let _turn = self.queue_turn().await;
        let keep = self.keep();
        let updated = on_conn!(self, queue, conn => {
            let query = sqlx::query(sql).persistent(keep).bind(id);
            bind_counters(query, counters)
                .bind(status.as_str())
                .bind(error)
                .bind(at)
                .bind(owner)
                .execute(&mut *conn)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(query_err("finishing an import job"))?;
        owned(updated, id)
    }

    /// Puts a running job of `owner` back in the queue, with its counters, until `not_before` (Unix
    /// ms): its provider is having a bad day. `since` (Unix ms) is when the provider last brought
    /// something new, `last_answer` what it said, `waited_ms` added to the job's provider wait.
    /// The job keeps its place in the queue: it is older than what was queued since.
    pub async fn defer_job(&self, id: &str, owner: &str, counters: &Counters, wait: &Deferral) -> Result<()> {
        self.put_back(id, owner, counters, Some(wait)).await
    }

    /// Puts a running job of `owner` back in the queue with its counters: to wait for its provider
    /// (`wait`), or to resume at once (an interrupted import; any earlier wait is over).
    pub(super) async fn put_back(
        &self,
        id: &str,
        owner: &str,
        counters: &Counters,
        wait: Option<&Deferral>,
    ) -> Result<()> {
        let sql = concat!(
            "UPDATE import_jobs SET status = 'queued', owner = NULL, lease_until = NULL, ",
            set_counters!(),
            ", not_before = $6, provider_wait_since = COALESCE($7, provider_wait_since), \
             provider_last_answer = COALESCE($8, provider_last_answer), \
             provider_wait_ms = provider_wait_ms + $9 WHERE id = $1 AND owner = $10"
        );
        let _turn = self.queue_turn().await;
        let keep = self.keep();
        let waited_ms = wait.map_or(0, |w| w.not_before_ms.saturating_sub(w.now_ms).max(0));
        let updated = on_conn!(self, queue, conn => {
            let query = sqlx::query(sql).persistent(keep).bind(id);
            bind_counters(query, Some(counters))
                .bind(wait.map(|w| w.not_before_ms))
                .bind(wait.map(|w| w.since_ms))
                .bind(wait.map(|w| w.last_answer.as_str()))
                .bind(waited_ms)
                .bind(owner)
                .execute(&mut *conn)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(query_err("putting an import back in the queue"))?;
        owned(updated, id)
    }

    /// Deletes at most `batch` finished (completed or failed) jobs that finished before `before`;
    /// returns how many went. Queued and running jobs are never touched, so neither the queue's
    /// order nor any position changes.
    pub async fn prune_finished_jobs(&self, before: DateTime<Utc>, batch: i64) -> Result<u64> {
        let sql = "DELETE FROM import_jobs WHERE id IN (SELECT id FROM import_jobs \
                   WHERE status IN ('completed', 'failed') AND finished_at < $1 LIMIT $2)";
        let _turn = self.queue_turn().await;
        let keep = self.keep();
        on_conn!(self, queue, conn => sqlx::query(sql)
            .persistent(keep)
            .bind(before)
            .bind(batch)
            .execute(&mut *conn)
            .await
            .map(|r| r.rows_affected()))
        .map_err(query_err("deleting finished import jobs past their retention"))
    }

    async fn queue_turn(&self) -> Option<Turn<'_>> {
        match &self.gate {
            Some(gate) => Some(gate.queue().await),
            None => None,
        }
    }
}
