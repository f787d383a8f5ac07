//! Schema migrations, embedded in the binary so a deploy needs no files beside it.
//!
//! Each migration is recorded in `importer_schema` and applied once;
//! on PostgreSQL under an advisory lock, so that processes starting at once
//! apply it one after the other. `Store::migrate` applies them.

/// Creates the table that records applied migrations.
pub(super) const SCHEMA_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS importer_schema (version BIGINT PRIMARY KEY)";

/// The migration that re-keys chess.com rows stored before the key kept the kind (`live/N`,
/// `daily/N`, see `game_key`) and turns stored CRLF into LF. It is code, not SQL (a key is read
/// from each row's PGN), and runs after the SQL migrations in one transaction of its own.
pub(super) const REKEY_VERSION: i64 = 3;

/// SQLite migrations, in order.
pub(super) const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_shared_queue.sql")),
    (4, include_str!("../../migrations/sqlite/0004_sync_ranges.sql")),
    (5, include_str!("../../migrations/sqlite/0005_provider_waits.sql")),
];
/// PostgreSQL migrations, in order.
pub(super) const POSTGRES: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (2, include_str!("../../migrations/postgres/0002_shared_queue.sql")),
    (4, include_str!("../../migrations/postgres/0004_sync_ranges.sql")),
    (
        5,
        include_str!("../../migrations/postgres/0005_provider_waits.sql"),
    ),
];
