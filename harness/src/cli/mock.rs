//! `harness mock`: the lichess and chess.com mocks on fixed ports, for trying the importer by hand.

use std::process::ExitCode;

use super::USAGE;
use crate::upstream::{self, MockUser, Upstreams};

/// Why the mocks could not serve (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A port is taken or not ours to bind.
    #[error("binding 127.0.0.1:{port}: {source}")]
    Bind {
        /// The port.
        port: u16,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The mocks' servers could not start.
    #[error("starting the mocks: {0}")]
    Start(#[source] std::io::Error),
    /// Ctrl-C could not be listened for.
    #[error("waiting for Ctrl-C: {0}")]
    Signal(#[source] std::io::Error),
}

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
            eprintln!("error: {e}");
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
) -> Result<(), Error> {
    let bind = |port: u16| {
        std::net::TcpListener::bind(("127.0.0.1", port)).map_err(|source| Error::Bind { port, source })
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
    .map_err(Error::Start)?;
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
    tokio::signal::ctrl_c().await.map_err(Error::Signal)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port already taken fails before anything is served, naming the address.
    #[tokio::test]
    async fn a_taken_port_is_named() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let err = serve_mocks(port, 0, Vec::new(), 1, 0)
            .await
            .expect_err("the port is taken");
        assert!(matches!(err, Error::Bind { port: p, .. } if p == port), "{err:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("binding 127.0.0.1:{port}: ")),
            "{err}"
        );
    }
}
