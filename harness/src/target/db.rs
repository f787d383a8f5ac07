//! A fresh database per cell: a SQLite file or a PostgreSQL schema of its own.
//!
//! The importer creates its tables at start (the games a workload says are
//! already stored are put there by earlier imports, `session::prime`); after
//! the run the harness reads back what was stored. It speaks only SQL to the `games` and `import_jobs` tables: the
//! schema is the contract, the importer's code is never linked.

use std::collections::HashMap;
use std::path::Path;

use sqlx::{Connection, PgConnection, SqliteConnection};

/// A database failure, with what we were doing.
#[derive(Debug, thiserror::Error)]
#[error("database: {op}: {source}")]
pub struct Error {
    op: &'static str,
    #[source]
    source: sqlx::Error,
}

fn err(op: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |source| Error { op, source }
}

/// An import job row, as the verifier needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    /// Username (lowercased).
    pub user_id: String,
    /// Platform name.
    pub platform: String,
    /// queued, running, completed, failed.
    pub status: String,
    /// Games it says it stored.
    pub games_imported: i64,
    /// Games it says were already stored.
    pub games_skipped_existing: i64,
    /// Games it could not parse.
    pub games_failed_parse: i64,
    /// Its error, if failed.
    pub error: Option<String>,
}

/// One cell's database.
pub enum CellDb {
    /// A SQLite file.
    Sqlite {
        /// `sqlite://...`
        url: String,
    },
    /// A schema in a PostgreSQL database.
    Postgres {
        /// The server, without schema.
        server: String,
        /// The schema.
        schema: String,
    },
}

macro_rules! with_conn {
    ($db:expr, $conn:ident => $body:expr) => {
        match $db {
            CellDb::Sqlite { url } => {
                let mut $conn = SqliteConnection::connect(url).await.map_err(err("connecting"))?;
                $body
            }
            CellDb::Postgres { .. } => {
                let mut $conn = PgConnection::connect(&$db.url())
                    .await
                    .map_err(err("connecting"))?;
                $body
            }
        }
    };
}

impl CellDb {
    /// A new SQLite file under `dir`.
    pub fn sqlite(dir: &Path) -> CellDb {
        CellDb::Sqlite {
            url: format!("sqlite://{}", dir.join("games.db").display()),
        }
    }

    /// A new schema on `server`.
    pub async fn postgres(server: &str, name: &str) -> Result<CellDb, Error> {
        let schema: String = format!("h_{}_{}", name, std::process::id())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(50)
            .collect();
        let mut conn = PgConnection::connect(server)
            .await
            .map_err(err("connecting to PostgreSQL"))?;
        sqlx::raw_sql(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .execute(&mut conn)
        .await
        .map_err(err("creating the cell's schema"))?;
        Ok(CellDb::Postgres {
            server: server.to_string(),
            schema,
        })
    }

    /// The importer's DATABASE_URL.
    pub fn url(&self) -> String {
        match self {
            CellDb::Sqlite { url } => url.clone(),
            CellDb::Postgres { server, schema } => {
                let sep = if server.contains('?') { '&' } else { '?' };
                format!("{server}{sep}options=-c%20search_path%3D{schema}")
            }
        }
    }

    /// Every stored provider id per (user, platform), duplicates included.
    pub async fn stored_ids(&self) -> Result<HashMap<(String, String), Vec<String>>, Error> {
        let rows: Vec<(String, String, String)> = with_conn!(self, conn => {
            sqlx::query_as("SELECT user_id, platform, provider_game_id FROM games")
                .fetch_all(&mut conn)
                .await
                .map_err(err("reading stored games"))?
        });
        let mut out: HashMap<(String, String), Vec<String>> = HashMap::new();
        for (user, platform, id) in rows {
            out.entry((user, platform)).or_default().push(id);
        }
        Ok(out)
    }

    /// When each (user, platform)'s first game was stored by an import after `after` (the
    /// earlier imports' games left out): the smallest `imported_at` the importer wrote.
    pub async fn first_stored(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Result<HashMap<(String, String), chrono::DateTime<chrono::Utc>>, Error> {
        let sql = "SELECT user_id, platform, MIN(imported_at) FROM games WHERE imported_at > $1 \
                   GROUP BY user_id, platform";
        let rows: Vec<(String, String, Option<chrono::DateTime<chrono::Utc>>)> = with_conn!(self, conn => {
            sqlx::query_as(sql).bind(after).fetch_all(&mut conn).await.map_err(err("reading first stored games"))?
        });
        Ok(rows
            .into_iter()
            .filter_map(|(user, platform, at)| Some(((user, platform), at?)))
            .collect())
    }

    /// How many games are stored, seeded ones included.
    pub async fn stored_count(&self) -> Result<u64, Error> {
        let n: i64 = with_conn!(self, conn => {
            sqlx::query_scalar("SELECT COUNT(*) FROM games")
                .fetch_one(&mut conn)
                .await
                .map_err(err("counting stored games"))?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Every import job.
    pub async fn jobs(&self) -> Result<Vec<JobRow>, Error> {
        type Raw = (String, String, String, i64, i64, i64, Option<String>);
        let sql = "SELECT user_id, platform, status, games_imported, games_skipped_existing, games_failed_parse, error \
                   FROM import_jobs ORDER BY created_at";
        let rows: Vec<Raw> = with_conn!(self, conn => {
            sqlx::query_as(sql).fetch_all(&mut conn).await.map_err(err("reading import jobs"))?
        });
        Ok(rows
            .into_iter()
            .map(
                |(user_id, platform, status, imported, skipped, failed, error)| JobRow {
                    user_id,
                    platform,
                    status,
                    games_imported: imported,
                    games_skipped_existing: skipped,
                    games_failed_parse: failed,
                    error,
                },
            )
            .collect())
    }

    /// Removes a PostgreSQL schema (a SQLite file goes with its folder).
    pub async fn drop_schema(&self) -> Result<(), Error> {
        if let CellDb::Postgres { server, schema } = self {
            let mut conn = PgConnection::connect(server)
                .await
                .map_err(err("connecting to PostgreSQL"))?;
            sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&mut conn)
                .await
                .map_err(err("dropping the cell's schema"))?;
        }
        Ok(())
    }
}
