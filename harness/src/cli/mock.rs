//! `harness mock`: the lichess and chess.com mocks on fixed ports, for trying the importer by hand.

use std::process::ExitCode;

use anyhow::Context;

use super::USAGE;
use crate::upstream::{self, MockUser, Upstreams};

/// Serves until Ctrl-C; exit 2 when a port cannot be bound.
pub async fn command(
    lichess_port: u16,
    chesscom_port: u16,
    users: Vec<MockUser>,
    seed: u64,
    pace: u32,
) -> ExitCode {
    match serve_mocks(lichess_port, chesscom_port, users, seed, pace).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(USAGE)
        }
    }
}

async fn serve_mocks(
    lichess_port: u16,
    chesscom_port: u16,
    users: Vec<MockUser>,
    seed: u64,
    pace: u32,
) -> anyhow::Result<()> {
    let bind = |port: u16| {
        std::net::TcpListener::bind(("127.0.0.1", port)).with_context(|| format!("binding 127.0.0.1:{port}"))
    };
    let mocks = Upstreams::start_with(
        &users,
        upstream::Options {
            seed,
            lichess_games_per_sec: f64::from(pace),
            lichess_listener: Some(bind(lichess_port)?),
            chess_com_listener: Some(bind(chesscom_port)?),
            ..Default::default()
        },
    )
    .await
    .context("starting the mocks")?;
    println!("lichess mock:   {}", mocks.lichess_url());
    println!("chess.com mock: {}", mocks.chess_com_url());
    for u in &users {
        println!(
            "  user {} on {}: {} games over {} month(s)",
            u.name,
            u.platform.as_str(),
            u.games,
            u.months
        );
    }
    println!(
        "\ntry:\n  LICHESS_BASE_URL={} CHESSCOM_BASE_URL={} cargo run --release -p importer",
        mocks.lichess_url(),
        mocks.chess_com_url()
    );
    if let Some(u) = users.first() {
        println!(
            "  curl -s -X POST localhost:8080/api/v1/import-more-games -H 'content-type: application/json' -d '{{\"user_id\":\"{}\",\"platform\":\"{}\",\"limit\":500}}'",
            u.name,
            u.platform.as_str()
        );
    }
    println!("\nCtrl-C stops.");
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    Ok(())
}
