//! The importer's job history read from its database, read-only: `import_jobs` for the jobs, and
//! `games` for what each user had stored when a job began and over how many months.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Row};

use settings::Platform;

/// Why the history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is neither `sqlite:` nor `postgres:`.
    #[error("{0:?}: a sqlite:// or postgres:// URL")]
    Url(String),
    /// The database refused or failed, as it said.
    #[error("{what}: {source}")]
    Database {
        /// What was being done.
        what: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// A job names a platform the harness does not know.
    #[error("import job {id}: platform {platform:?} is neither lichess nor chess.com")]
    Platform {
        /// The job.
        id: String,
        /// What it says.
        platform: String,
    },
}

fn db(what: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |source| Error::Database { what, source }
}

/// One import as `import_jobs` recorded it, with what its user had stored when it began.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// The job's id (never written to a capture).
    pub id: String,
    /// The username (never written to a capture).
    pub user: String,
    /// The provider.
    pub platform: Platform,
    /// The import's `limit`.
    pub limit: i64,
    /// `queued`, `running`, `completed` or `failed`.
    pub status: String,
    /// Games received from the provider.
    pub fetched: i64,
    /// Games newly stored.
    pub imported: i64,
    /// Games received that were already stored.
    pub skipped: i64,
    /// Games that did not parse.
    pub failed_parse: i64,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Games of the user stored before the job began (imported before its start, or its request
    /// when it never started).
    pub stored_before: i64,
    /// Distinct months of the user's stored games' dates (chess.com's archives), at least 1.
    pub months: u32,
}

/// A read-only connection to the importer's database.
pub enum Source {
    /// SQLite, opened read-only.
    Sqlite(SqliteConnection),
    /// PostgreSQL, every read in one `REPEATABLE READ READ ONLY` transaction.
    Postgres(PgConnection),
}

/// Runs `$body` with `$c` bound to the connection, whichever the database.
macro_rules! on {
    ($source:expr, $c:ident => $body:expr) => {
        match $source {
            Source::Sqlite($c) => $body,
            Source::Postgres($c) => $body,
        }
    };
}

const JOBS: &str = "SELECT id, user_id, platform, game_limit, status, games_fetched, games_imported, \
                    games_skipped_existing, games_failed_parse, created_at, started_at, finished_at \
                    FROM import_jobs WHERE created_at >= $1 AND created_at < $2 ORDER BY created_at, id";
const STORED_BEFORE: &str =
    "SELECT COUNT(*) FROM games WHERE user_id = $1 AND platform = $2 AND imported_at < $3";

impl Source {
    /// Opens `url` (`sqlite://…` or `postgres://…`) so that nothing can be written through it.
    pub async fn open(url: &str) -> Result<Source, Error> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(db("reading the SQLite URL"))?
                .read_only(true);
            let c = SqliteConnection::connect_with(&opts)
                .await
                .map_err(db("opening the SQLite database read-only"))?;
            Ok(Source::Sqlite(c))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let mut c = PgConnection::connect(url)
                .await
                .map_err(db("connecting to PostgreSQL"))?;
            // One snapshot for every read: the arrivals and the jobs agree.
            sqlx::raw_sql("BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut c)
                .await
                .map_err(db("opening a read-only transaction"))?;
            Ok(Source::Postgres(c))
        } else {
            Err(Error::Url(url.to_string()))
        }
    }

    /// When every recorded job was requested, oldest first.
    pub async fn arrivals(&mut self) -> Result<Vec<DateTime<Utc>>, Error> {
        let sql = "SELECT created_at FROM import_jobs ORDER BY created_at";
        on!(self, c => sqlx::query_scalar(sql).fetch_all(&mut *c).await)
            .map_err(db("reading when the imports were requested"))
    }

    /// The jobs requested in `[from, to)`, in request order, each with its user's stored games
    /// when it began and their months.
    pub async fn jobs(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<JobRecord>, Error> {
        let rows = on!(self, c => {
            let rows = sqlx::query(JOBS).bind(from).bind(to).fetch_all(&mut *c).await;
            rows.and_then(|rows| rows.iter().map(job_of).collect::<Result<Vec<_>, _>>())
        })
        .map_err(db("reading the import jobs"))?;
        let mut jobs = Vec::with_capacity(rows.len());
        for (row, platform) in rows {
            let platform = Platform::parse(&platform).ok_or_else(|| Error::Platform {
                id: row.id.clone(),
                platform: platform.clone(),
            })?;
            let mut job = JobRecord { platform, ..row };
            let began = job.started_at.unwrap_or(job.created_at);
            job.stored_before = self.stored_before(&job.user, platform, began).await?;
            job.months = self.months(&job.user, platform).await?;
            jobs.push(job);
        }
        Ok(jobs)
    }

    async fn stored_before(
        &mut self,
        user: &str,
        platform: Platform,
        at: DateTime<Utc>,
    ) -> Result<i64, Error> {
        on!(self, c => sqlx::query_scalar(STORED_BEFORE)
            .bind(user)
            .bind(platform.as_str())
            .bind(at)
            .fetch_one(&mut *c)
            .await)
        .map_err(db("counting a user's stored games"))
    }

    async fn months(&mut self, user: &str, platform: Platform) -> Result<u32, Error> {
        let month = match self {
            Source::Sqlite(_) => "substr(played_at, 1, 7)",
            Source::Postgres(_) => "to_char(played_at AT TIME ZONE 'UTC', 'YYYY-MM')",
        };
        let sql = format!(
            "SELECT COUNT(DISTINCT {month}) FROM games WHERE user_id = $1 AND platform = $2 AND played_at IS NOT NULL"
        );
        let n: i64 = on!(self, c => sqlx::query_scalar(&sql)
            .bind(user)
            .bind(platform.as_str())
            .fetch_one(&mut *c)
            .await)
        .map_err(db("counting a user's months"))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX).max(1))
    }
}

/// A job row, its platform still as text.
fn job_of<R>(row: &R) -> Result<(JobRecord, String), sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> DateTime<Utc>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<DateTime<Utc>>: sqlx::Decode<'a, R::Database>,
{
    let job = JobRecord {
        id: row.try_get("id")?,
        user: row.try_get("user_id")?,
        platform: Platform::Lichess,
        limit: row.try_get("game_limit")?,
        status: row.try_get("status")?,
        fetched: row.try_get("games_fetched")?,
        imported: row.try_get("games_imported")?,
        skipped: row.try_get("games_skipped_existing")?,
        failed_parse: row.try_get("games_failed_parse")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        stored_before: 0,
        months: 1,
    };
    Ok((job, row.try_get("platform")?))
}
