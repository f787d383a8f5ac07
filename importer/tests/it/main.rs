//! Integration tests: the real `importer` binary against the mock upstreams
//! of the harness library (which enforce lichess's and chess.com's rules), on
//! SQLite and on PostgreSQL.

mod support;

mod api;
mod config;
mod db_restarts;
mod faults;
#[cfg(feature = "heap-profile")]
mod heap_profile;
mod identity;
mod imports;
mod incremental;
mod months;
mod outages;
mod parsing;
mod queue;
mod queue_bound;
mod refusals;
mod retention;
mod security;

use std::process::Command;

use harness::upstream::{MockUser, Platform, Policy, Rules, Upstreams};
use serde_json::json;
use support::{Importer, TestDb, importer_bin};

const SEED: u64 = 42;

fn lichess(name: &str, games: u64) -> MockUser {
    MockUser::new(name, Platform::Lichess, games)
}

fn chess_com(name: &str, games: u64, months: u32) -> MockUser {
    MockUser {
        months,
        ..MockUser::new(name, Platform::ChessCom, games)
    }
}

/// Mocks with the providers' rules, lichess streaming `games_per_sec` games a second per stream.
fn paced(games_per_sec: u32) -> harness::upstream::Options {
    harness::upstream::Options {
        seed: SEED,
        lichess_games_per_sec: f64::from(games_per_sec),
        ..Default::default()
    }
}

/// Mocks with the providers' rules and lichess's penalty after a 429 shortened to `secs`.
fn penalty_of(secs: f64) -> harness::upstream::Options {
    harness::upstream::Options {
        seed: SEED,
        policy: Policy::Enforced(Rules {
            penalty_secs: secs,
            ..Rules::default()
        }),
        ..Default::default()
    }
}

/// Polls until the import has stored at least one batch.
async fn wait_for_progress(imp: &Importer, id: &str) {
    for _ in 0..400 {
        let (_, job) = imp.get(&format!("/api/v1/imports/{id}")).await;
        if job["games_imported"].as_i64().unwrap_or(0) > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("import {id} made no progress");
}

/// POSTs a lichess import and expects it accepted; returns the answer.
async fn submit(imp: &Importer, user: &str) -> serde_json::Value {
    let (status, body) = imp
        .post(json!({"user_id": user, "platform": "lichess", "limit": 2000}))
        .await;
    assert_eq!(status, 202, "{body}");
    body
}

fn run_with_env(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(importer_bin())
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run importer");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
