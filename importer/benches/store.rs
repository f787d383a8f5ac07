//! Store throughput: rows per second written by `insert_batch` (one
//! transaction per batch, as an import writes them) into SQLite and PostgreSQL.
//!
//! Every iteration writes rows with new ids, so no insert is skipped as a
//! duplicate. `store_postgres_pooler_safe` writes to the same server with
//! `DATABASE_POOLER=transaction` (unnamed statements, see `Store`): side by side
//! with `store_postgres`, the cost of that mode on a direct connection. PostgreSQL is the local server (127.0.0.1:5432, database `test`),
//! in a schema of its own; the bench stops with a message when it is unreachable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use harness::upstream::{MockUser, Platform as MockPlatform, games};
use importer::pgn::{GameRow, parse_game};
use importer::store::{Store, StoreOptions};
use importer::{Counters, Job, Platform};

mod support;

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";
const OWNER: &str = "bench";

fn rows(n: u64) -> Vec<GameRow> {
    let user = MockUser::new("bench_user", MockPlatform::Lichess, n);
    (0..n)
        .map(|i| {
            let pgn = games::generate(&user, 42, i).pgn;
            parse_game(Platform::Lichess, pgn.as_bytes()).expect("synthetic games parse")
        })
        .collect()
}

/// A store with one claimed job, ready for `insert_batch`.
async fn store_with_job(url: &str, transaction_pooler: bool, user: &str) -> (Store, Job) {
    let options = StoreOptions {
        url: url.to_string(),
        pool_size: 5,
        queue_pool_size: StoreOptions::default_queue_pool_size(),
        sqlite_cache_kib: 2000,
        transaction_pooler,
    };
    let store = Store::connect(&options).await.expect("database reachable");
    let job = support::claimed_job(&store, OWNER, user).await;
    (store, job)
}

fn schema_name() -> String {
    format!("bench_{}", std::process::id())
}

async fn drop_schema() {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(PG).await {
        let _ = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", schema_name()))
            .execute(&mut conn)
            .await;
    }
}

async fn pg_schema() -> String {
    use sqlx::Connection;
    let schema = schema_name();
    let mut conn = sqlx::PgConnection::connect(PG)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must be reachable at {PG}: {e}"));
    sqlx::raw_sql(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))
    .execute(&mut conn)
    .await
    .expect("create schema");
    format!("{PG}?options=-c%20search_path%3D{schema}")
}

fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let template = rows(500);
    let dir = std::env::temp_dir().join(format!("importer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sqlite = format!("sqlite://{}", dir.join("bench.db").display());
    let pg = rt.block_on(pg_schema());
    let next_id = AtomicU64::new(0);
    for (db, url, pooled) in [
        ("sqlite", sqlite, false),
        ("postgres", pg.clone(), false),
        ("postgres_pooler_safe", pg, true),
    ] {
        let (store, job) = rt.block_on(store_with_job(&url, pooled, &format!("bench_user_{db}")));
        for batch in [50usize, 500] {
            let mut group = c.benchmark_group(format!("store_{db}"));
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(format!("insert_batch_{batch}"), |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let mut batch_rows = template[..batch].to_vec();
                        for row in &mut batch_rows {
                            row.provider_game_id = format!("{:08}", next_id.fetch_add(1, Ordering::Relaxed));
                        }
                        let started = Instant::now();
                        let inserted = rt
                            .block_on(store.insert_batch(
                                &job,
                                OWNER,
                                &batch_rows,
                                &Counters::default(),
                                chrono::Utc::now(),
                            ))
                            .expect("insert");
                        spent += started.elapsed();
                        assert_eq!(inserted, batch as u64, "every row is new");
                    }
                    spent
                })
            });
            group.finish();
        }
        rt.block_on(store.close());
    }
    let _ = std::fs::remove_dir_all(&dir);
    rt.block_on(drop_schema());
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = store
}
criterion_main!(benches);
