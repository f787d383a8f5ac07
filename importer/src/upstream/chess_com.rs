//! chess.com: the archive list, then each month's PGN from the newest month.
//!
//! The month URLs in the archive list are not followed as given: only their
//! year and month are taken, and the URL is rebuilt on the configured base,
//! so upstream content can never send us to another host.

use reqwest::Url;
use serde::Deserialize;

use super::{BodyFramer, Client, Item, MAX_RESUMES, UpstreamError, user_url};
use crate::job::Platform;

#[derive(Deserialize)]
struct Archives {
    archives: Vec<String>,
}

fn year_month(url: &str) -> Option<(u16, u8)> {
    let mut segs = url.trim_end_matches('/').rsplit('/');
    let month: u8 = segs.next()?.parse().ok()?;
    let year: u16 = segs.next()?.parse().ok()?;
    ((1..=12).contains(&month) && (1990..=9999).contains(&year)).then_some((year, month))
}

/// The monthly archives of one chess.com user, newest month first.
pub struct ChessComSource {
    client: Client,
    base: String,
    user: String,
    /// Months not yet read, oldest first: the next is popped from the end.
    months: Vec<(u16, u8)>,
    /// The month being read, until its `MonthEnd`.
    current: Option<Url>,
    /// The month read last, for `reread_month`.
    last: Option<Url>,
    framer: BodyFramer,
    resumes: u32,
}

const PGN: &str = "application/x-chess-pgn";

impl ChessComSource {
    /// Reads the archive list.
    pub async fn open(client: &Client, base: &str, user: &str) -> Result<Self, UpstreamError> {
        let url = user_url(base, &["pub", "player"], user, &["games", "archives"])?;
        let resp = client.get(&url, "application/json", Platform::ChessCom).await?;
        let body = resp.response.bytes().await.map_err(UpstreamError::Transport)?;
        let archives: Archives = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::BadResponse(format!("archive list of {user}: {e}")))?;
        let mut months: Vec<(u16, u8)> = archives.archives.iter().filter_map(|u| year_month(u)).collect();
        if months.len() != archives.archives.len() {
            tracing::warn!(
                user,
                "archive list has entries that are not YYYY/MM months; skipped"
            );
        }
        months.sort_unstable();
        months.dedup();
        Ok(ChessComSource {
            client: client.clone(),
            base: base.to_string(),
            user: user.to_string(),
            months,
            current: None,
            last: None,
            framer: BodyFramer::new(),
            resumes: 0,
        })
    }

    /// The next game, or the end of a month (each month ends with one `MonthEnd`).
    pub async fn next(&mut self) -> Result<Option<Item>, UpstreamError> {
        loop {
            match self.framer.next().await {
                Ok(Some(game)) => return Ok(Some(Item::Game(game))),
                Ok(None) => {
                    if self.current.take().is_some() {
                        return Ok(Some(Item::MonthEnd));
                    }
                    let Some((year, month)) = self.months.pop() else {
                        return Ok(None);
                    };
                    let url = user_url(
                        &self.base,
                        &["pub", "player"],
                        &self.user,
                        &["games", &format!("{year:04}"), &format!("{month:02}"), "pgn"],
                    )?;
                    match self.client.get(&url, PGN, Platform::ChessCom).await {
                        Ok(body) => self.framer.start(body),
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
                    }
                    self.current = Some(url);
                    self.last = self.current.clone();
                }
                Err(source) => {
                    self.resumes += 1;
                    if self.resumes > MAX_RESUMES {
                        return Err(UpstreamError::StreamBroken {
                            attempts: self.resumes,
                            source,
                        });
                    }
                    let Some(url) = self.current.clone() else {
                        return Err(UpstreamError::Transport(source));
                    };
                    tracing::warn!(%url, error = %source, resume = self.resumes, "chess.com month broke, reading it again");
                    tokio::time::sleep(self.client.backoff(self.resumes - 1)).await;
                    let body = self.client.get(&url, PGN, Platform::ChessCom).await?;
                    self.framer.start(body);
                }
            }
        }
    }

    /// Reads the month that just ended again, from its first game; it ends with another `MonthEnd`.
    pub async fn reread_month(&mut self) -> Result<(), UpstreamError> {
        let Some(url) = self.last.clone() else {
            return Err(UpstreamError::BadResponse("no month to read again".into()));
        };
        let body = self.client.get(&url, PGN, Platform::ChessCom).await?;
        self.framer.start(body);
        self.current = Some(url);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::year_month;

    #[test]
    fn months_come_from_the_last_two_segments() {
        assert_eq!(
            year_month("https://api.chess.com/pub/player/x/games/2016/08"),
            Some((2016, 8))
        );
        assert_eq!(year_month("https://evil.example/2016/13"), None);
        assert_eq!(year_month("garbage"), None);
    }
}
