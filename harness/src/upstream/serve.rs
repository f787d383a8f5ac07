//! The HTTP side of both mocks: one small axum server per provider. It applies
//! the provider's rules (`policy.rs`), asks `lichess::answer` or
//! `chess_com::answer` what to say, and sends it: lichess's games one chunk
//! each, paced like the real export (about 20 games a second), chess.com's
//! answers whole after the configured latency. Nothing is recorded or held.
//!
//! Why not wiremock here: wiremock builds each response whole and cannot tell
//! when a body has been sent, so it can neither pace a stream, nor keep a
//! minutes-long export out of memory, nor count the streams in flight that
//! lichess's and chess.com's limits are about.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::lichess::{Breakage, Selection};
use super::outage::Outages;
use super::policy::{self, Enforcer, InFlight, Refusal};
use super::{Answer, Plain, Platform, Users, chess_com, lichess};

/// Where a stream is.
enum Step {
    /// About to send game number n of the selection.
    Next(usize),
    /// Half a game was sent: break the connection.
    Cut,
    /// Finished.
    Done,
}

/// What one provider's server needs.
pub(super) struct Shared {
    pub platform: Platform,
    pub users: Users,
    pub seed: u64,
    /// lichess: time between games of one stream.
    pub pace: Option<Duration>,
    /// lichess: the same for a request with a token (lichess streams faster to one: docs/providers.md).
    pub authenticated_pace: Option<Duration>,
    /// chess.com: time before each answer.
    pub latency: Option<Duration>,
    /// This server's own URL (chess.com's archive list is absolute).
    pub base: String,
    pub enforcer: Arc<Enforcer>,
    /// The provider's outage windows: while one is on, it answers every request.
    pub outages: Arc<Outages>,
}

fn plain(status: u16, mime: &'static str, body: impl Into<Body>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, mime)], body.into()).into_response()
}

/// A bare status, or a status with its small body.
fn plain_of(p: Plain) -> Response {
    match p.body {
        Some((body, mime)) => plain(p.status, mime, body),
        None => StatusCode::from_u16(p.status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
    }
}

/// The provider's own answer to a request it refuses.
fn refusal(platform: Platform, why: Refusal) -> Response {
    match (platform, why) {
        (Platform::Lichess, Refusal::Anonymous) => {
            plain(404, "text/html; charset=utf-8", policy::LICHESS_404_PAGE)
        }
        (Platform::ChessCom, Refusal::Anonymous) => {
            plain(403, "application/json", policy::CHESS_COM_403_BODY)
        }
        (Platform::Lichess, Refusal::RateLimited) => plain(429, "application/json", policy::LICHESS_429_BODY),
        (Platform::ChessCom, Refusal::RateLimited) => plain(
            429,
            "application/json",
            r#"{"code":0,"message":"Too many requests: serial access is unlimited, parallel requests are not."}"#,
        ),
    }
}

/// `body`, holding `guard` until the body has been sent or dropped.
fn held<S>(body: S, guard: InFlight) -> Body
where
    S: futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    Body::from_stream(body.map(move |chunk| {
        let _in_flight = &guard;
        chunk
    }))
}

fn games_stream(
    sel: Selection,
    seed: u64,
    pace: Option<Duration>,
    enforcer: Arc<Enforcer>,
    outages: Arc<Outages>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let start = tokio::time::Instant::now();
    futures_util::stream::unfold((sel, Step::Next(0)), move |(sel, step)| {
        let enforcer = Arc::clone(&enforcer);
        let outages = Arc::clone(&outages);
        async move {
            let n = match step {
                Step::Done => return None,
                Step::Cut => {
                    // hyper drops what it has buffered but not written when a body fails, and on a
                    // loaded machine the games before the cut and the cut can come in one poll: the
                    // client would get fewer games than the mock counted as served. Pending once
                    // lets hyper flush them first, as a real server's bytes before a drop arrive.
                    tokio::task::yield_now().await;
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
            // A restart drops the connections it was streaming on: cut inside this game.
            let cut_here = outages.down(std::time::Instant::now());
            match sel.breakage {
                _ if cut_here => {
                    let half = Bytes::from(chunk[..chunk.len() / 2].to_string());
                    Some((Ok(half), (sel, Step::Cut)))
                }
                Breakage::CutAfter(k) if n as u64 == k => {
                    // Half a game, then the connection drops: the client must never store it.
                    let half = Bytes::from(chunk[..chunk.len() / 2].to_string());
                    Some((Ok(half), (sel, Step::Cut)))
                }
                Breakage::StallAfter(k) if n as u64 == k => std::future::pending().await,
                _ => {
                    enforcer.sent(1, chunk.len() as u64);
                    sel.served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Some((Ok(Bytes::from(chunk)), (sel, Step::Next(n + 1))))
                }
            }
        }
    })
}

async fn handle(State(s): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let Ok(url) = reqwest::Url::parse(&format!("http://mock{uri}")) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    // An outage answers first: the provider's edge answers, its application (and its rules) is down.
    if let Some(down) = s.outages.answer(std::time::Instant::now()) {
        s.enforcer.answered_in_outage();
        return plain_of(down);
    }
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    let guard = match s.enforcer.admit(user_agent) {
        Ok(guard) => guard,
        Err(why) => return refusal(s.platform, why),
    };
    if let Some(latency) = s.latency {
        tokio::time::sleep(latency).await;
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let answer = match s.platform {
        Platform::Lichess => lichess::answer(&s.users, method.as_str(), &url, accept),
        Platform::ChessCom => {
            let header = |name| {
                headers
                    .get(name)
                    .and_then(|v: &header::HeaderValue| v.to_str().ok())
            };
            let cond = chess_com::Conditional {
                if_none_match: header(header::IF_NONE_MATCH),
                if_modified_since: header(header::IF_MODIFIED_SINCE),
            };
            chess_com::answer(&s.users, s.seed, &s.base, method.as_str(), &url, cond)
        }
    };
    match answer {
        Answer::Status(p) => {
            if p.status == 429 {
                s.enforcer.served_429();
            }
            plain_of(p)
        }
        Answer::Whole {
            status,
            mime,
            body,
            games,
            validators,
            short,
        } => {
            if games > 0 {
                s.enforcer.sent(games, body.len() as u64);
            }
            if short {
                s.enforcer.sent_short();
            }
            let once = futures_util::stream::iter([Ok(Bytes::from(body))]);
            let mut resp = plain(status, mime, held(once, guard));
            if let Some(v) = validators {
                add_validators(&mut resp, v);
            }
            resp
        }
        Answer::NotModified { validators } => {
            s.enforcer.sent_not_modified();
            let mut resp = StatusCode::NOT_MODIFIED.into_response();
            add_validators(&mut resp, validators);
            resp
        }
        Answer::Games(sel) => {
            let mime = sel.mime();
            let pace = if headers.contains_key(header::AUTHORIZATION) {
                s.authenticated_pace
            } else {
                s.pace
            };
            let games = games_stream(sel, s.seed, pace, Arc::clone(&s.enforcer), Arc::clone(&s.outages));
            ([(header::CONTENT_TYPE, mime)], held(games, guard)).into_response()
        }
    }
}

fn add_validators(resp: &mut Response, (etag, last_modified): (String, String)) {
    for (name, value) in [(header::ETAG, etag), (header::LAST_MODIFIED, last_modified)] {
        if let Ok(v) = header::HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
}

/// Serves one provider on `listener`; returns the task (abort it to stop).
pub(super) fn serve(listener: tokio::net::TcpListener, shared: Shared) -> tokio::task::JoinHandle<()> {
    let platform = shared.platform;
    let app = Router::new().fallback(handle).with_state(Arc::new(shared));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, provider = platform.as_str(), "mock stopped");
        }
    })
}
