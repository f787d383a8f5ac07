//! lichess: `GET /api/games/user/{name}` as a PGN stream, newest first, one window of creation
//! time (`since` inclusive, `until` exclusive, in ms) per request.
//!
//! `ongoing=true` makes lichess include the games still being played (Result `*`): the pipeline
//! stores none of them but remembers them, so that a game created inside a range already read
//! and finished later is still fetched (see `crate::sync`). No `perfType`, `rated`, `color` or
//! `analysed` filter is ever sent: with them lila answers from another index, keyed on the last
//! move, where games are reported missing and repeated (lichess-org/api#366, lila#15866).
//!
//! A broken stream is reopened with `until` at the end of the second of the oldest game already
//! handed out: games of that same second come again and are dropped as already stored, none is
//! skipped.

use chrono::{DateTime, Utc};
use reqwest::Url;

use super::{BodyFramer, Client, Reopenings, UpstreamError, user_url};
use crate::job::Platform;
use crate::pgn::Framed;
use crate::sync::Window;

const PGN: &str = "application/x-chess-pgn";

/// The export stream of one lichess user over one window.
pub struct LichessSource {
    client: Client,
    base: Url,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    framer: BodyFramer,
    oldest: Option<DateTime<Utc>>,
    /// `oldest` when the current body was opened: a body that reaches older games made progress.
    oldest_at_open: Option<DateTime<Utc>>,
    reopenings: Reopenings,
}

impl LichessSource {
    /// Requests the games of `window`.
    pub async fn open(
        client: &Client,
        base: &str,
        user: &str,
        window: &Window,
    ) -> Result<Self, UpstreamError> {
        let mut source = LichessSource {
            client: client.clone(),
            base: user_url(base, &["api", "games", "user"], user, &[])?,
            since_ms: window.since_ms,
            until_ms: window.until_ms,
            framer: BodyFramer::new(),
            oldest: None,
            oldest_at_open: None,
            reopenings: Reopenings::default(),
        };
        let url = source.url(source.until_ms);
        let body = source.client.get(&url, PGN, Platform::Lichess).await?;
        source.framer.start(body);
        Ok(source)
    }

    fn url(&self, until_ms: Option<i64>) -> Url {
        let mut url = self.base.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("sort", "dateDesc")
                .append_pair("clocks", "true")
                .append_pair("evals", "true")
                .append_pair("opening", "true")
                .append_pair("ongoing", "true");
            if let Some(since) = self.since_ms {
                q.append_pair("since", &since.to_string());
            }
            if let Some(until) = until_ms {
                q.append_pair("until", &until.to_string());
            }
        }
        url
    }

    /// The next game; `None` once the window's stream has ended.
    pub async fn next(&mut self) -> Result<Option<Framed>, UpstreamError> {
        loop {
            match self.framer.next().await {
                Ok(game) => return Ok(game),
                Err(source) => {
                    // New games are older than any handed out before this body (newest first).
                    let progressed = match (self.oldest, self.oldest_at_open) {
                        (Some(now), Some(before)) => now < before,
                        (now, before) => now.is_some() && before.is_none(),
                    };
                    let wait = self
                        .reopenings
                        .broke(progressed, source, &self.client, Platform::Lichess)?;
                    tracing::warn!(url = %self.base, "lichess stream broke, resuming");
                    tokio::time::sleep(wait).await;
                    let url = self.url(self.resume_until());
                    let body = self.client.get(&url, PGN, Platform::Lichess).await?;
                    self.oldest_at_open = self.oldest;
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

    /// `until` of a resumed request: the end of the oldest handed-out game's second (`until` is
    /// exclusive), never above the window's own.
    fn resume_until(&self) -> Option<i64> {
        let after_oldest = self.oldest.map(|o| (o.timestamp() + 1) * 1000);
        match (after_oldest, self.until_ms) {
            (Some(a), Some(u)) => Some(a.min(u)),
            (a, u) => a.or(u),
        }
    }
}
