//! chess.com: the archive list, then each month's PGN from the newest month, as the recorded
//! months allow (`crate::sync::plan_months`): months stored whole and old are not asked, the
//! newest ones are asked with `If-None-Match` / `If-Modified-Since` and a `304` reads no body.
//!
//! The month URLs in the archive list are not followed as given: only their
//! year and month are taken, and the URL is rebuilt on the configured base,
//! so upstream content can never send us to another host.

use reqwest::Url;
use serde::Deserialize;

use reqwest::header::{ETAG, LAST_MODIFIED};

use super::client::Fetched;
use super::{BodyFramer, Client, Item, MonthRead, Reopenings, UpstreamError, user_url};
use crate::job::Platform;
use crate::sync::{Month, MonthRecord, MonthRequest, Validators, plan_months};

#[derive(Deserialize)]
struct Archives {
    archives: Vec<String>,
}

fn year_month(url: &str) -> Option<Month> {
    let mut segs = url.trim_end_matches('/').rsplit('/');
    let month: u8 = segs.next()?.parse().ok()?;
    let year: u16 = segs.next()?.parse().ok()?;
    ((1..=12).contains(&month) && (1990..=9999).contains(&year)).then_some(Month { year, month })
}

fn validators_of(resp: &reqwest::Response) -> Validators {
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    Validators {
        etag: header(ETAG),
        last_modified: header(LAST_MODIFIED),
    }
}

/// The monthly archives of one chess.com user, newest month first.
pub struct ChessComSource {
    client: Client,
    base: String,
    user: String,
    /// Months still to ask, oldest first: the next is popped from the end.
    months: Vec<MonthRequest>,
    /// The month being read, until its `MonthEnd`.
    current: Option<(Url, MonthRead)>,
    framer: BodyFramer,
    reopenings: Reopenings,
    /// Most games any reading of the current month handed out: a reading (from the month's first
    /// game) that goes further made progress.
    furthest: usize,
}

const PGN: &str = "application/x-chess-pgn";

impl ChessComSource {
    /// Reads the archive list and plans the months from what is recorded of them.
    pub async fn open(
        client: &Client,
        base: &str,
        user: &str,
        recorded: &[MonthRecord],
    ) -> Result<Self, UpstreamError> {
        let url = user_url(base, &["pub", "player"], user, &["games", "archives"])?;
        let resp = client.get(&url, "application/json", Platform::ChessCom).await?;
        let body = resp.response.bytes().await.map_err(UpstreamError::Transport)?;
        let archives: Archives = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::BadResponse(format!("archive list of {user}: {e}")))?;
        let listed: Vec<Month> = archives.archives.iter().filter_map(|u| year_month(u)).collect();
        if listed.len() != archives.archives.len() {
            tracing::warn!(
                user,
                "archive list has entries that are not YYYY/MM months; skipped"
            );
        }
        let mut months = plan_months(&listed, recorded);
        tracing::debug!(
            user,
            listed = listed.len(),
            asked = months.len(),
            "chess.com months planned"
        );
        months.reverse();
        Ok(ChessComSource {
            client: client.clone(),
            base: base.to_string(),
            user: user.to_string(),
            months,
            current: None,
            framer: BodyFramer::new(),
            reopenings: Reopenings::default(),
            furthest: 0,
        })
    }

    /// The next game, or the end of a month (each month ends with one `MonthEnd`).
    pub async fn next(&mut self) -> Result<Option<Item>, UpstreamError> {
        loop {
            match self.framer.next().await {
                Ok(Some(game)) => return Ok(Some(Item::Game(game))),
                Ok(None) => {
                    if let Some((_, read)) = self.current.take() {
                        return Ok(Some(Item::MonthEnd(read)));
                    }
                    let Some(request) = self.months.pop() else {
                        return Ok(None);
                    };
                    let Month { year, month } = request.month;
                    let url = user_url(
                        &self.base,
                        &["pub", "player"],
                        &self.user,
                        &["games", &format!("{year:04}"), &format!("{month:02}"), "pgn"],
                    )?;
                    let fetched = self
                        .client
                        .fetch(&url, PGN, Platform::ChessCom, request.validators.as_ref())
                        .await;
                    let validators = match fetched {
                        Ok(Fetched::NotModified) => {
                            return Ok(Some(Item::MonthUnchanged(MonthRead {
                                month: request.month,
                                validators: request.validators.unwrap_or_default(),
                            })));
                        }
                        Ok(Fetched::Body(body)) => {
                            let v = validators_of(&body.response);
                            self.framer.start(body);
                            v
                        }
                        // A month listed but gone is not worth failing the import for.
                        Err(UpstreamError::NotFound) => {
                            tracing::warn!(%url, "listed month not found, skipped");
                            continue;
                        }
                        Err(UpstreamError::Refused {
                            status: 404, said, ..
                        }) => {
                            tracing::warn!(%url, said = %said, "listed month answered 404, skipped");
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let read = MonthRead {
                        month: request.month,
                        validators,
                    };
                    self.furthest = 0;
                    self.current = Some((url, read));
                }
                Err(source) => {
                    let Some((url, _)) = self.current.clone() else {
                        return Err(UpstreamError::Transport(source));
                    };
                    let progressed = self.framer.handed > self.furthest;
                    self.furthest = self.furthest.max(self.framer.handed);
                    let wait = self
                        .reopenings
                        .broke(progressed, source, &self.client, Platform::ChessCom)?;
                    tracing::warn!(%url, "chess.com month broke, reading it again");
                    tokio::time::sleep(wait).await;
                    let body = self.client.get(&url, PGN, Platform::ChessCom).await?;
                    self.framer.start(body);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Month, year_month};

    #[test]
    fn months_come_from_the_last_two_segments() {
        assert_eq!(
            year_month("https://api.chess.com/pub/player/x/games/2016/08"),
            Some(Month { year: 2016, month: 8 })
        );
        assert_eq!(year_month("https://evil.example/2016/13"), None);
        assert_eq!(year_month("garbage"), None);
    }
}
