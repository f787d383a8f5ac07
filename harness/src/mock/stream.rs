//! The smallest streaming lichess: the same answers as the wiremock
//! responder, but each game is written as its own chunk, paced like the real
//! export (about 20 games a second), and nothing is recorded or held.
//!
//! wiremock builds a whole response before sending it, so it can neither pace
//! a stream nor keep a minutes-long export out of memory; this server can.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::Users;
use super::lichess::{Answer, Breakage, answer};

/// Where a stream is.
enum Step {
    /// About to send game number n of the selection.
    Next(usize),
    /// Half a game was sent: break the connection.
    Cut,
    /// Finished.
    Done,
}

#[derive(Clone)]
struct Shared {
    users: Users,
    seed: u64,
    pace: Option<Duration>,
}

async fn handle(State(s): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let Ok(url) = reqwest::Url::parse(&format!("http://mock{uri}")) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    match answer(&s.users, method.as_str(), &url, accept) {
        Answer::Status(plain) => {
            let status = StatusCode::from_u16(plain.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            match plain.body {
                Some((body, mime)) => (status, [(header::CONTENT_TYPE, mime)], body).into_response(),
                None => status.into_response(),
            }
        }
        Answer::Games(sel) => {
            let mime = sel.mime();
            let (seed, pace) = (s.seed, s.pace);
            let start = tokio::time::Instant::now();
            let games = futures_util::stream::unfold((sel, Step::Next(0)), move |(sel, step)| async move {
                let n = match step {
                    Step::Done => return None,
                    Step::Cut => {
                        return Some((
                            Err(std::io::Error::other("connection cut by the mock")),
                            (sel, Step::Done),
                        ));
                    }
                    Step::Next(n) => n,
                };
                let &index = sel.indices.get(n)?;
                if let Some(pace) = pace {
                    // Game n is due at start + n × pace. A sleep per game would add the timer's
                    // granularity and the render time to every game, so a stream asked for 2,000
                    // games/s made about 600, and the streams of one cell drifted apart by chance.
                    tokio::time::sleep_until(start + pace.mul_f64(n as f64)).await;
                }
                let chunk = sel.render(seed, index);
                match sel.breakage {
                    Breakage::CutAfter(k) if n as u64 == k => {
                        // Half a game, then the connection drops: the client must never store it.
                        let half = Bytes::from(chunk[..chunk.len() / 2].to_string());
                        Some((Ok(half), (sel, Step::Cut)))
                    }
                    Breakage::StallAfter(k) if n as u64 == k => std::future::pending().await,
                    _ => Some((Ok(Bytes::from(chunk)), (sel, Step::Next(n + 1)))),
                }
            });
            ([(header::CONTENT_TYPE, mime)], Body::from_stream(games)).into_response()
        }
    }
}

/// Serves lichess on `listener` at `games_per_sec` per stream (0: unpaced); returns the base URL.
pub(super) async fn serve(
    listener: std::net::TcpListener,
    users: Users,
    seed: u64,
    games_per_sec: u32,
) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let base = format!("http://{}", listener.local_addr()?);
    let shared = Arc::new(Shared {
        users,
        seed,
        pace: (games_per_sec > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(games_per_sec))),
    });
    let app = Router::new().fallback(handle).with_state(shared);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "lichess stream mock stopped");
        }
    });
    Ok((base, task))
}
