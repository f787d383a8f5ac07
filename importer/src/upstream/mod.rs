//! Game sources: lichess's export stream and chess.com's monthly archives,
//! both read as PGN streams and framed into games as the bytes arrive.
//!
//! Why PGN rather than lichess's NDJSON: the PGN is what we store, so reading
//! it directly avoids decoding a JSON string per game and holding the game
//! twice; chess.com's `/pgn` month is one document in no documented order,
//! framed as it arrives and chosen from by the pipeline (`crate::spool`).
//!
//! A stream that breaks mid-game is resumed, never trusted: the half game is
//! discarded by the splitter and the request reopened (lichess from the second
//! of the oldest game handed out, chess.com the month from its start).

mod chess_com;
mod client;
mod lichess;
mod said;

pub use chess_com::ChessComSource;
pub use lichess::LichessSource;

use reqwest::Url;

pub use client::{Client, ClientConfig, Fetched, USER_AGENT};
pub use said::Said;

use crate::pgn::{Framed, Splitter};
use crate::sync::{Month, Validators};

use std::time::Duration;

use crate::job::Platform;

/// Reopenings of a broken stream in a row that brought nothing new before the import gives up and
/// waits in the queue. lichess's export broke again and again in November 2022, each time about
/// the same number of games in (lila#11926), and each reopened stream brought new games: progress
/// resets the count, so such a stream is read to its end. Five reopenings that brought nothing,
/// 0.5 → 8 s apart (about 15 s), tell a stream that breaks from one that is dead.
const MAX_IDLE_REOPENINGS: u32 = 5;

/// The one rule for reopening a broken stream, both providers: a reopening that brought something
/// new resets the count; [`MAX_IDLE_REOPENINGS`] in a row that brought nothing end the reading.
#[derive(Debug, Default)]
struct Reopenings {
    /// Reopenings in a row that brought nothing new.
    idle: u32,
    /// Reopenings in all.
    total: u32,
}

impl Reopenings {
    /// The stream broke with `source`; `progressed` says whether it brought something new since
    /// it was (re)opened. The wait before reopening it, or the error to give up with (the
    /// provider then cools down as after a failed request).
    fn broke(
        &mut self,
        progressed: bool,
        source: reqwest::Error,
        client: &Client,
        platform: Platform,
    ) -> Result<Duration, UpstreamError> {
        self.total += 1;
        self.idle = if progressed { 0 } else { self.idle + 1 };
        if self.idle >= MAX_IDLE_REOPENINGS {
            let error = UpstreamError::StreamBroken {
                attempts: self.total,
                idle: self.idle,
                source,
            };
            client.gave_up(platform, &error);
            return Err(error);
        }
        tracing::warn!(provider = platform.as_str(), error = %source, reopenings = self.total,
            idle = self.idle, progressed, "stream broke, reopening");
        Ok(client.backoff(self.idle))
    }
}

/// Why a source could not deliver.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// 404 with an empty body: the provider's answer for an unknown or closed account.
    #[error("user not found (unknown or closed account)")]
    NotFound,
    /// Any other answer that is not games, after retries for a 5xx; says what the provider said.
    #[error("{}", refusal(provider, *status, said))]
    Refused {
        /// `lichess` or `chess.com`.
        provider: &'static str,
        /// HTTP status.
        status: u16,
        /// What the body said.
        said: Said,
    },
    /// 429 answers kept coming after each cool-down.
    #[error(
        "{provider} kept answering 429 Too Many Requests ({times} times, each followed by a cool-down); the last said {said}"
    )]
    RateLimited {
        /// `lichess` or `chess.com`.
        provider: &'static str,
        /// 429s received by this request.
        times: u32,
        /// What the last 429 said.
        said: Said,
    },
    /// A 5xx, or an HTML page where PGN or JSON was asked for: the provider is having a bad day
    /// (lichess answers 502 or 503 with an HTML page while it restarts).
    #[error("{}", refusal(provider, *status, said))]
    Unavailable {
        /// `lichess` or `chess.com`.
        provider: &'static str,
        /// HTTP status.
        status: u16,
        /// Its `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
        /// What the body said.
        said: Said,
    },
    /// The provider is cooling down after failures this process saw: no request was sent.
    #[error("{last}")]
    Waiting {
        /// `lichess` or `chess.com`.
        provider: &'static str,
        /// What it answered last, as it said it.
        last: String,
    },
    /// Connection, timeout or body error (after retries).
    #[error("upstream transport error: {0}")]
    Transport(#[source] reqwest::Error),
    /// The stream kept breaking without bringing anything new.
    #[error(
        "the stream broke {attempts} times, the last {idle} in a row bringing no new game; the last break: {source}"
    )]
    StreamBroken {
        /// Reopenings in all.
        attempts: u32,
        /// Of those, in a row with nothing new.
        idle: u32,
        /// The last cause.
        #[source]
        source: reqwest::Error,
    },
    /// A response that is not what the API documents.
    #[error("unexpected upstream response: {0}")]
    BadResponse(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The process is stopping.
    #[error("shutting down")]
    ShuttingDown,
}

impl UpstreamError {
    /// Whether it is the provider's bad day, which an import waits out in the queue: a 5xx, an
    /// error page, a cool-down, a transport error, a stream that broke without progress, or 429s
    /// that kept coming. A refusal (an unknown user, a 403, a 410) is not: it fails at once.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            UpstreamError::Unavailable { .. }
                | UpstreamError::Waiting { .. }
                | UpstreamError::Transport(_)
                | UpstreamError::StreamBroken { .. }
                | UpstreamError::RateLimited { .. }
        )
    }
}

/// The job's error for a refusal: the provider's status and words, and what the provider documents
/// the status to mean where it documents it (`docs/providers.md`).
fn refusal(provider: &str, status: u16, said: &Said) -> String {
    let answered = match said {
        Said::Json(words) | Said::Text(words) => format!("{provider} answered {status}: {words}"),
        other => format!("{provider} answered {status} with {other}"),
    };
    match (provider, status) {
        ("lichess", 404) if said.is_html() => {
            "lichess refused the request (404 page): set UPSTREAM_USER_AGENT with a contact".to_string()
        }
        (_, 403) => format!(
            "{answered} ({provider} refuses a User-Agent that names no contact: set UPSTREAM_USER_AGENT with a URL or an e-mail address)"
        ),
        _ => answered,
    }
}

/// Reads one response body into framed games; keeps a broken body's error until
/// the games that were already whole have been handed out.
struct BodyFramer {
    body: Option<client::Streaming>,
    splitter: Splitter,
    broken: Option<reqwest::Error>,
    /// Games handed out of the current body.
    handed: usize,
}

impl BodyFramer {
    fn new() -> Self {
        BodyFramer {
            body: None,
            splitter: Splitter::new(),
            broken: None,
            handed: 0,
        }
    }

    fn start(&mut self, body: client::Streaming) {
        self.splitter = Splitter::new();
        self.body = Some(body);
        self.handed = 0;
    }

    /// The next whole game of the current body; `Ok(None)` when it ended cleanly.
    async fn next(&mut self) -> Result<Option<Framed>, reqwest::Error> {
        loop {
            if let Some(game) = self.splitter.next_game() {
                self.handed += 1;
                return Ok(Some(game));
            }
            if let Some(err) = self.broken.take() {
                return Err(err);
            }
            let Some(body) = self.body.as_mut() else {
                return Ok(None);
            };
            match body.response.chunk().await {
                Ok(Some(bytes)) => self.splitter.push(&bytes),
                Ok(None) => {
                    self.splitter.finish();
                    self.body = None;
                }
                Err(e) => {
                    self.splitter.discard_partial();
                    self.body = None;
                    self.broken = Some(e);
                }
            }
        }
    }
}

/// What the chess.com source hands out next.
#[derive(Debug)]
pub enum Item {
    /// One framed game.
    Game(Framed),
    /// The month being read has ended (its games are not in a documented order, so the pipeline
    /// chooses among them once it has seen them all).
    MonthEnd(MonthRead),
    /// A month asked conditionally answered `304 Not Modified`: nothing new in it, no body; its
    /// validators are those it was asked with.
    MonthUnchanged(MonthRead),
}

/// A month read, with what its answer carried to ask it again conditionally.
#[derive(Debug, Clone)]
pub struct MonthRead {
    /// The month.
    pub month: Month,
    /// Its `ETag` and `Last-Modified`.
    pub validators: Validators,
}

fn user_url(base: &str, prefix: &[&str], user: &str, suffix: &[&str]) -> Result<Url, UpstreamError> {
    let mut url =
        Url::parse(base).map_err(|e| UpstreamError::BadResponse(format!("bad base URL {base}: {e}")))?;
    {
        let mut segs = url
            .path_segments_mut()
            .map_err(|_| UpstreamError::BadResponse(format!("base URL {base} cannot take a path")))?;
        segs.pop_if_empty();
        // push() percent-encodes: a username can only ever be one path segment.
        segs.extend(prefix).push(user).extend(suffix);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(provider: &'static str, status: u16, body: &[u8], html: bool) -> String {
        UpstreamError::Refused {
            provider,
            status,
            said: Said::of(body, html),
        }
        .to_string()
    }

    #[test]
    fn each_refusal_says_what_the_provider_said() {
        let page = b"<!DOCTYPE html><html><head><title>Page not found</title></head></html>";
        assert_eq!(
            refused("lichess", 404, page, true),
            "lichess refused the request (404 page): set UPSTREAM_USER_AGENT with a contact"
        );
        let forbidden = refused(
            "chess.com",
            403,
            b"<html><title>Just a moment...</title></html>",
            true,
        );
        assert!(
            forbidden.starts_with("chess.com answered 403 with an HTML page titled \"Just a moment...\""),
            "{forbidden}"
        );
        assert!(forbidden.contains("UPSTREAM_USER_AGENT"), "{forbidden}");
        let case = include_bytes!("../../tests/data/chesscom-404-internal-error.json");
        assert_eq!(
            refused("chess.com", 404, case, false),
            "chess.com answered 404: An internal error has occurred. Please contact Chess.com Developer's Forum \
             for further help https://www.chess.com/club/chess-com-developer-community ."
        );
        // The same body with a 5xx says the same words with its own status.
        assert!(
            refused("chess.com", 500, case, false).starts_with("chess.com answered 500: An internal error")
        );
        assert_eq!(
            refused("lichess", 410, b"", false),
            "lichess answered 410 with an empty body"
        );
        assert_eq!(
            UpstreamError::RateLimited {
                provider: "lichess",
                times: 11,
                // lichess's body for a stream beyond its limit (importer/tests/data/cases/lichess-429-concurrency.txt).
                said: Said::of(
                    include_bytes!("../../tests/data/lichess-429-concurrency.json"),
                    false
                ),
            }
            .to_string(),
            "lichess kept answering 429 Too Many Requests (11 times, each followed by a cool-down); \
             the last said Please only run 1 request(s) at a time"
        );
    }
}
