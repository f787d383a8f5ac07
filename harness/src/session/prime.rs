//! Returning users: the database as an earlier import of the importer under test left it.
//!
//! A scenario's `stored: N` means "the newest N games were imported before". The only honest way
//! to leave that state is the production path: before the measured importer starts, an importer
//! process of the same binary imports each returning user from mocks that serve the user as they
//! were then (without the `new_since_stored` newest games, with the `finishes_late` games still
//! being played), in imports of at most the API's 10,000 games, and stops. Whatever that import
//! records besides the games (sync ranges, pending games, months and their validators) is then
//! exactly what production would hold. Nothing of it is measured: the mocks are unpaced, their
//! rules off, and the measured importer is a fresh process.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::target;
use crate::upstream::{self, MockUser, Upstreams};

/// The API's largest `limit`.
const MAX_LIMIT: u64 = 10_000;
/// Earlier imports running at once (the importer queues the rest).
const AT_ONCE: usize = 16;
/// Longest an earlier import may take.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(900);

/// Why the earlier imports could not leave the database as the scenario says.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Their mocks could not start.
    #[error("earlier imports: mocks: {0}")]
    Mocks(#[source] std::io::Error),
    /// Their importer did not start or never became healthy.
    #[error("earlier imports: {0}")]
    Importer(#[from] target::Error),
    /// Their importer did not exit 0 on SIGTERM.
    #[error("earlier imports: the importer did not stop cleanly ({0:?})")]
    NotStopped(target::Stopped),
    /// A request to the importer got no answer.
    #[error("earlier import of {who}: {source}")]
    Request {
        /// The user and platform.
        who: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// An answer's body is not JSON.
    #[error("earlier import of {who}: {status}: {source}")]
    Body {
        /// The user and platform.
        who: String,
        /// The answer's status.
        status: reqwest::StatusCode,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The importer refused a request.
    #[error("earlier import of {who}: {status}: {body}")]
    Refused {
        /// The user and platform.
        who: String,
        /// The answer's status.
        status: reqwest::StatusCode,
        /// The answer.
        body: serde_json::Value,
    },
    /// The answer to the POST names no import.
    #[error("earlier import of {who}: no import_id in {answer}")]
    NoImportId {
        /// The user and platform.
        who: String,
        /// The answer.
        answer: serde_json::Value,
    },
    /// The import failed.
    #[error("earlier import of {who} failed: {error}")]
    Failed {
        /// The user and platform.
        who: String,
        /// The job's `error`.
        error: serde_json::Value,
    },
    /// The import did not end within [`IMPORT_TIMEOUT`].
    #[error("earlier import of {who} still {status} after {:?}", IMPORT_TIMEOUT)]
    Timeout {
        /// The user and platform.
        who: String,
        /// The job's `status` then.
        status: serde_json::Value,
    },
    /// The import ended having stored nothing.
    #[error("earlier import of {who} stored nothing with {left} games to go: {job}")]
    StoredNothing {
        /// The user and platform.
        who: String,
        /// Games still to store.
        left: u64,
        /// The job as the importer answered it.
        job: serde_json::Value,
    },
}

/// One returning user: as they were at the earlier import, and how many games it stored.
#[derive(Debug, Clone)]
pub struct Earlier {
    /// The user then: the newest games not played yet, some still being played.
    pub user: MockUser,
    /// Games the earlier imports store.
    pub stored: u64,
}

impl Earlier {
    /// `now` as it was before its `new_since_stored` newest games, with `finishes_late` ongoing.
    pub fn of(now: &MockUser, stored: u64, new_since_stored: u64, finishes_late: &[u64]) -> Earlier {
        Earlier {
            user: MockUser {
                unplayed: new_since_stored,
                ongoing: finishes_late.to_vec(),
                // The faults belong to the measured import.
                faults: Vec::new(),
                cut_after: None,
                stall_after: None,
                cut_every: None,
                short_months: None,
                ..now.clone()
            },
            stored,
        }
    }

    /// The same, its months served short (every request the earlier imports make for them, as a
    /// cache that lagged that day): what they store lacks the games left out.
    pub fn served_short(mut self, missing: u64, months: Vec<u32>) -> Earlier {
        self.user.short_months = Some(upstream::ShortMonths {
            requests: u32::MAX,
            missing,
            months,
        });
        self
    }

    /// Indices of the games the earlier imports store: the newest `stored` finished,
    /// well-formed ones the user had then, among those their answers held.
    pub fn stored_indices(&self) -> Vec<u64> {
        self.user.newest_importable(self.stored)
    }

    /// Games the earlier imports would have stored but for the months served short: those the
    /// measured import must heal.
    pub fn left_out(&self) -> Vec<u64> {
        self.user.left_out_of(self.stored)
    }
}

/// Runs the earlier imports of `users` with `importer` on the database of `env`
/// (`DATABASE_URL`); returns when every one has stored its games, or says which did not.
pub async fn prime(
    users: &[Earlier],
    importer: &Path,
    env: &BTreeMap<String, String>,
    seed: u64,
    dir: &Path,
) -> Result<(), Error> {
    let returning: Vec<&Earlier> = users.iter().filter(|e| e.stored > 0).collect();
    if returning.is_empty() {
        return Ok(());
    }
    let mock_users: Vec<MockUser> = returning.iter().map(|e| e.user.clone()).collect();
    let mocks = Upstreams::start_with(
        &mock_users,
        upstream::Options {
            seed,
            policy: upstream::Policy::Off,
            ..Default::default()
        },
    )
    .await
    .map_err(Error::Mocks)?;
    let mut env = env.clone();
    env.insert("LICHESS_BASE_URL".into(), mocks.lichess_url());
    env.insert("CHESSCOM_BASE_URL".into(), mocks.chess_com_url());
    env.insert("INSTANCE_ID".into(), "harness-earlier".into());
    let token = env.get("API_TOKEN").cloned();
    let mut server = target::Server::spawn(importer, &env, &dir.join("earlier-imports.log"), None, None)?;
    let http = reqwest::Client::new();
    server.wait_healthy(&http, Duration::from_secs(30)).await?;
    let started = Instant::now();
    let outcome: Vec<Result<(), Error>> = futures_util::stream::iter(returning.iter())
        .map(|e| import_all(&http, &server.base, token.as_deref(), e))
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let exit = server.stop(Duration::from_secs(10));
    outcome.into_iter().collect::<Result<Vec<()>, Error>>()?;
    if !exit.clean() {
        return Err(Error::NotStopped(exit));
    }
    let games: u64 = returning.iter().map(|e| e.stored).sum();
    tracing::info!(
        users = returning.len(),
        games,
        secs = started.elapsed().as_secs_f64(),
        "earlier imports done"
    );
    Ok(())
}

/// Imports `e.stored` games of one user, in imports of at most [`MAX_LIMIT`].
async fn import_all(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    e: &Earlier,
) -> Result<(), Error> {
    let who = format!("{} on {}", e.user.name, e.user.platform.as_str());
    let mut left = e.stored_indices().len() as u64;
    while left > 0 {
        let limit = left.min(MAX_LIMIT);
        let body = serde_json::json!({
            "user_id": e.user.name, "platform": e.user.platform.as_str(), "limit": limit,
        });
        let mut post = http.post(format!("{base}/api/v1/import-more-games")).json(&body);
        if let Some(t) = token {
            post = post.bearer_auth(t);
        }
        let answer: serde_json::Value = send(post, &who).await?;
        let Some(id) = answer["import_id"].as_str().map(str::to_string) else {
            return Err(Error::NoImportId { who, answer });
        };
        let deadline = Instant::now() + IMPORT_TIMEOUT;
        let job = loop {
            let mut get = http.get(format!("{base}/api/v1/imports/{id}"));
            if let Some(t) = token {
                get = get.bearer_auth(t);
            }
            let job = send(get, &who).await?;
            match job["status"].as_str() {
                Some("completed") => break job,
                Some("failed") => {
                    return Err(Error::Failed {
                        who,
                        error: job["error"].clone(),
                    });
                }
                _ if Instant::now() > deadline => {
                    return Err(Error::Timeout {
                        who,
                        status: job["status"].clone(),
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let imported = job["games_imported"].as_u64().unwrap_or(0);
        if imported == 0 {
            return Err(Error::StoredNothing { who, left, job });
        }
        left = left.saturating_sub(imported);
    }
    Ok(())
}

async fn send(req: reqwest::RequestBuilder, who: &str) -> Result<serde_json::Value, Error> {
    let resp = req.send().await.map_err(|source| Error::Request {
        who: who.to_string(),
        source,
    })?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.map_err(|source| Error::Body {
        who: who.to_string(),
        status,
        source,
    })?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(Error::Refused {
            who: who.to_string(),
            status,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use settings::Platform;

    /// Each failure names the user and platform and what the importer said.
    #[test]
    fn a_failed_earlier_import_names_its_user() {
        let who = || "ret on lichess".to_string();
        let failed = Error::Failed {
            who: who(),
            error: serde_json::json!("lichess: 404"),
        };
        assert_eq!(
            failed.to_string(),
            "earlier import of ret on lichess failed: \"lichess: 404\""
        );
        let late = Error::Timeout {
            who: who(),
            status: serde_json::json!("running"),
        };
        assert_eq!(
            late.to_string(),
            "earlier import of ret on lichess still \"running\" after 900s"
        );
        let none = Error::StoredNothing {
            who: who(),
            left: 5,
            job: serde_json::json!({"status": "completed"}),
        };
        assert_eq!(
            none.to_string(),
            "earlier import of ret on lichess stored nothing with 5 games to go: {\"status\":\"completed\"}"
        );
    }

    #[test]
    fn the_earlier_import_stores_the_newest_finished_games_it_could_see() {
        let now = MockUser {
            malformed: vec![4],
            faults: vec![429],
            ..MockUser::new("ret", Platform::Lichess, 20)
        };
        let e = Earlier::of(&now, 5, 2, &[3]);
        assert!(e.user.faults.is_empty(), "faults are for the measured import");
        // 0 and 1 were not played yet, 3 was ongoing, 4 does not parse.
        assert_eq!(e.stored_indices(), vec![2, 5, 6, 7, 8]);
    }

    #[test]
    fn an_earlier_import_served_short_stores_older_games_instead() {
        // 30 games over 3 months: month 1 holds 10..20; its newest 3 were missing that day.
        let now = MockUser {
            months: 3,
            ..MockUser::new("ret", Platform::ChessCom, 30)
        };
        let e = Earlier::of(&now, 15, 2, &[]).served_short(3, vec![1]);
        let stored = e.stored_indices();
        assert_eq!(stored.len(), 15);
        assert!(!stored.iter().any(|i| (10..13).contains(i)), "{stored:?}");
        assert_eq!(stored.last(), Some(&19));
        assert_eq!(e.left_out(), vec![10, 11, 12]);
        assert_eq!(Earlier::of(&now, 15, 2, &[]).left_out(), Vec::<u64>::new());
    }
}
