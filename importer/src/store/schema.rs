//! Schema migrations, embedded in the binary so a deploy needs no files beside it.
//!
//! Each migration is idempotent (`IF NOT EXISTS`) and recorded in
//! `importer_schema`, so starting twice, or two processes starting at once,
//! leaves the schema as one start would. `Store::migrate` applies them.

/// Creates the table that records applied migrations.
pub const SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS importer_schema (version BIGINT PRIMARY KEY)";

/// SQLite migrations, in order.
pub const SQLITE: &[(i64, &str)] = &[(1, include_str!("../../migrations/sqlite/0001_init.sql"))];
/// PostgreSQL migrations, in order.
pub const POSTGRES: &[(i64, &str)] = &[(1, include_str!("../../migrations/postgres/0001_init.sql"))];
