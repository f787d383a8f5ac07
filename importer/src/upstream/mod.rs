//! Game sources: lichess's export stream and chess.com's monthly archives,
//! both read as PGN streams and framed into games as the bytes arrive.
//!
//! Why PGN rather than lichess's NDJSON: the PGN is what we store, so reading
//! it directly avoids decoding a JSON string per game and holding the game
//! twice; chess.com's `/pgn` month endpoint is newest first, which lets an
//! import stop at its limit without ever holding a whole month.
//!
//! A stream that breaks mid-game is resumed, never trusted: the half game is
//! discarded by the splitter and the request reopened from where it was.

mod chess_com;
mod client;
mod lichess;

use chrono::{DateTime, Utc};
use reqwest::Url;

pub use client::{Client, ClientConfig, USER_AGENT};

use crate::job::Platform;
use crate::pgn::{Framed, Splitter};

/// Times a broken stream is reopened before the import fails.
const MAX_RESUMES: u32 = 5;

/// Why a source could not deliver.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// 404: unknown or closed account.
    #[error("user not found")]
    NotFound,
    /// 410: the provider asks never to request this again.
    #[error("the provider answered 410 Gone")]
    Gone,
    /// Too many 429 answers in a row.
    #[error("still rate limited by {url} after repeated waits")]
    RateLimited {
        /// The URL.
        url: String,
    },
    /// An unexpected status (after retries, for a 5xx).
    #[error("{url} answered {status}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The URL.
        url: String,
    },
    /// Connection, timeout or body error (after retries).
    #[error("upstream transport error: {0}")]
    Transport(#[source] reqwest::Error),
    /// The stream kept breaking.
    #[error("upstream stream broke {attempts} times, last: {source}")]
    StreamBroken {
        /// How many times.
        attempts: u32,
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

/// Reads one response body into framed games; keeps a broken body's error until
/// the games that were already whole have been handed out.
struct BodyFramer {
    body: Option<client::Streaming>,
    splitter: Splitter,
    broken: Option<reqwest::Error>,
}

impl BodyFramer {
    fn new() -> Self {
        BodyFramer {
            body: None,
            splitter: Splitter::new(),
            broken: None,
        }
    }

    fn start(&mut self, body: client::Streaming) {
        self.splitter = Splitter::new();
        self.body = Some(body);
    }

    /// The next whole game of the current body; `Ok(None)` when it ended cleanly.
    async fn next(&mut self) -> Result<Option<Framed>, reqwest::Error> {
        loop {
            if let Some(game) = self.splitter.next_game() {
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

/// Where the games of one import come from, newest first.
pub enum GameSource {
    /// lichess export stream.
    Lichess(lichess::LichessSource),
    /// chess.com monthly archives.
    ChessCom(chess_com::ChessComSource),
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

impl GameSource {
    /// Opens the source of `user`'s games on `platform`.
    pub async fn open(
        client: &Client,
        base_url: &str,
        platform: Platform,
        user: &str,
    ) -> Result<Self, UpstreamError> {
        Ok(match platform {
            Platform::Lichess => {
                GameSource::Lichess(lichess::LichessSource::open(client, base_url, user).await?)
            }
            Platform::ChessCom => {
                GameSource::ChessCom(chess_com::ChessComSource::open(client, base_url, user).await?)
            }
        })
    }

    /// The next game, newest first; `Ok(None)` when the user has no more.
    pub async fn next(&mut self) -> Result<Option<Framed>, UpstreamError> {
        match self {
            GameSource::Lichess(s) => s.next().await,
            GameSource::ChessCom(s) => s.next().await,
        }
    }

    /// Tells the source when a game it handed out was played, so that a broken stream resumes after it.
    pub fn note_played_at(&mut self, at: DateTime<Utc>) {
        if let GameSource::Lichess(s) = self {
            s.note_played_at(at);
        }
    }
}
