//! lichess: `GET /api/games/user/{name}` as a PGN stream, newest first.
//!
//! A broken stream is reopened with `until` at the end of the second of the
//! oldest game already handed out: games of that same second come again and
//! are dropped as already stored, none is skipped.

use chrono::{DateTime, Utc};
use reqwest::Url;

use super::{BodyFramer, Client, MAX_RESUMES, UpstreamError, user_url};
use crate::job::Platform;
use crate::pgn::Framed;

const PGN: &str = "application/x-chess-pgn";

/// The export stream of one lichess user.
pub struct LichessSource {
    client: Client,
    url: Url,
    framer: BodyFramer,
    oldest: Option<DateTime<Utc>>,
    resumes: u32,
}

impl LichessSource {
    /// Requests the stream.
    pub async fn open(client: &Client, base: &str, user: &str) -> Result<Self, UpstreamError> {
        let mut url = user_url(base, &["api", "games", "user"], user, &[])?;
        url.query_pairs_mut()
            .append_pair("sort", "dateDesc")
            .append_pair("clocks", "true")
            .append_pair("evals", "true")
            .append_pair("opening", "true");
        let mut source = LichessSource {
            client: client.clone(),
            url,
            framer: BodyFramer::new(),
            oldest: None,
            resumes: 0,
        };
        let body = source.client.get(&source.url, PGN, Platform::Lichess).await?;
        source.framer.start(body);
        Ok(source)
    }

    /// The next game.
    pub async fn next(&mut self) -> Result<Option<Framed>, UpstreamError> {
        loop {
            match self.framer.next().await {
                Ok(game) => return Ok(game),
                Err(source) => {
                    self.resumes += 1;
                    if self.resumes > MAX_RESUMES {
                        return Err(UpstreamError::StreamBroken {
                            attempts: self.resumes,
                            source,
                        });
                    }
                    let wait = self.client.backoff(self.resumes - 1);
                    tracing::warn!(url = %self.url, error = %source, resume = self.resumes, "lichess stream broke, resuming");
                    tokio::time::sleep(wait).await;
                    let url = self.resume_url();
                    let body = self.client.get(&url, PGN, Platform::Lichess).await?;
                    self.framer.start(body);
                }
            }
        }
    }

    /// Records a handed-out game's time.
    pub fn note_played_at(&mut self, at: DateTime<Utc>) {
        if self.oldest.is_none_or(|old| at < old) {
            self.oldest = Some(at);
        }
    }

    fn resume_url(&self) -> Url {
        let mut url = self.url.clone();
        if let Some(oldest) = self.oldest {
            let until_ms = oldest.timestamp() * 1000 + 999;
            url.query_pairs_mut().append_pair("until", &until_ms.to_string());
        }
        url
    }
}
