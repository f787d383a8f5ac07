//! The words every module shares: platforms and their username rules, import jobs, their status
//! and counters.

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use settings::Platform;

/// The characters a username may hold on either platform, as inclusive byte ranges: the one
/// place they are written (the check, the error message and the OpenAPI pattern read them).
const USERNAME_CHARS: [(u8, u8); 5] = [
    (b'A', b'Z'),
    (b'a', b'z'),
    (b'0', b'9'),
    (b'_', b'_'),
    (b'-', b'-'),
];

/// A platform's username rule: `min_len..=max_len` characters among [`USERNAME_CHARS`]. Only a
/// name it accepts reaches a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsernameRule {
    /// Fewest characters.
    pub min_len: usize,
    /// Most characters.
    pub max_len: usize,
}

impl UsernameRule {
    /// `platform`'s rule.
    pub fn of(platform: Platform) -> UsernameRule {
        match platform {
            Platform::Lichess => UsernameRule {
                min_len: 2,
                max_len: 30,
            },
            Platform::ChessCom => UsernameRule {
                min_len: 3,
                max_len: 25,
            },
        }
    }

    /// Whether `name` follows the rule.
    pub fn accepts(self, name: &str) -> bool {
        (self.min_len..=self.max_len).contains(&name.len())
            && name
                .bytes()
                .all(|b| USERNAME_CHARS.iter().any(|&(lo, hi)| (lo..=hi).contains(&b)))
    }

    /// The characters as a JSON Schema (ECMA-262) pattern: `^[A-Za-z0-9_-]+$`.
    pub fn pattern() -> String {
        format!("^[{}]+$", char_classes().concat())
    }
}

/// The allowed characters, a range or a character each: `A-Z`, `a-z`, `0-9`, `_`, `-`.
fn char_classes() -> Vec<String> {
    USERNAME_CHARS
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                char::from(lo).to_string()
            } else {
                format!("{}-{}", char::from(lo), char::from(hi))
            }
        })
        .collect()
}

/// The rule in words, for error messages: `2 to 30 characters among A-Z a-z 0-9 _ -`.
impl std::fmt::Display for UsernameRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} to {} characters among {}",
            self.min_len,
            self.max_len,
            char_classes().join(" ")
        )
    }
}

/// Where an import job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for a free slot, or for a free lane of its provider.
    Queued,
    /// Queued, and not tried again before `waiting_for_provider.next_try`: its provider answered
    /// with trouble (a 5xx, an HTML error page, a broken or stalled stream). Stored as `queued`.
    WaitingForProvider,
    /// Importing.
    Running,
    /// Done: every game it could import is stored.
    Completed,
    /// Stopped on an error, given in `error`.
    Failed,
}

impl JobStatus {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued | JobStatus::WaitingForProvider => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
        }
    }

    /// Whether the job waits in the queue (for a slot, a lane or its provider).
    pub fn is_queued(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::WaitingForProvider)
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<JobStatus> {
        match s {
            "queued" => Some(JobStatus::Queued),
            "running" => Some(JobStatus::Running),
            "completed" => Some(JobStatus::Completed),
            "failed" => Some(JobStatus::Failed),
            _ => None,
        }
    }
}

/// Progress of one import; written with each batch, in the batch's transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Counters {
    /// Games received from the upstream.
    pub games_fetched: i64,
    /// Games newly stored by this import.
    pub games_imported: i64,
    /// Games received that were already stored.
    pub games_skipped_existing: i64,
    /// Games that could not be parsed, skipped.
    pub games_failed_parse: i64,
}

impl Counters {
    /// The counters once a batch of `rows` new games is written, `inserted` of them by this
    /// import: the others were stored meanwhile by another import (the unique key kept them
    /// once) and count as skipped.
    pub fn after_batch(self, rows: usize, inserted: u64) -> Counters {
        let inserted = i64::try_from(inserted).unwrap_or(i64::MAX);
        let raced = i64::try_from(rows)
            .unwrap_or(i64::MAX)
            .saturating_sub(inserted)
            .max(0);
        Counters {
            games_imported: self.games_imported.saturating_add(inserted),
            games_skipped_existing: self.games_skipped_existing.saturating_add(raced),
            ..self
        }
    }
}

/// An import job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Job {
    /// Its id.
    pub import_id: String,
    /// The platform username, lowercased.
    pub user_id: String,
    /// The platform.
    pub platform: Platform,
    /// Most new games to store.
    pub limit: i64,
    /// Where it stands.
    pub status: JobStatus,
    /// Progress.
    #[serde(flatten)]
    pub counters: Counters,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
    /// When it started running.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// What its provider's trouble is, while it waits for it (status `waiting_for_provider`).
    pub waiting_for_provider: Option<ProviderWait>,
    /// Seconds it has waited for its provider in all (apart from its time in the queue).
    pub provider_wait_secs: f64,
    /// Since when (Unix ms) its provider has brought nothing new; kept while it runs again, so
    /// that the outage's bound (`UPSTREAM_OUTAGE_MAX_SECS`) counts from the first failure.
    #[serde(skip)]
    pub provider_wait_since: Option<i64>,
}

impl Job {
    /// A new job for `user` on `platform`, queued now, with a new id and nothing done.
    pub fn queued(user: &str, platform: Platform, limit: i64) -> Job {
        Job {
            import_id: uuid::Uuid::new_v4().to_string(),
            user_id: user.to_string(),
            platform,
            limit,
            status: JobStatus::Queued,
            counters: Counters::default(),
            error: None,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            waiting_for_provider: None,
            provider_wait_secs: 0.0,
            provider_wait_since: None,
        }
    }
}

/// An import waiting for its provider: since when the provider has brought nothing new, when the
/// import tries again, and what the provider answered last (its status and words).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProviderWait {
    /// Since when the provider has brought nothing new to this import.
    pub since: DateTime<Utc>,
    /// The import is not tried again before this.
    pub next_try: DateTime<Utc>,
    /// What the provider answered last, as it said it.
    pub last_answer: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_username_rule_says_what_it_checks() {
        let lichess = UsernameRule::of(Platform::Lichess);
        assert_eq!(lichess.to_string(), "2 to 30 characters among A-Z a-z 0-9 _ -");
        assert_eq!(UsernameRule::pattern(), "^[A-Za-z0-9_-]+$");
        let allowed: Vec<u8> = (0..=u8::MAX)
            .filter(|&b| lichess.accepts(&format!("ab{}", char::from(b))))
            .collect();
        let expected: Vec<u8> = (b'-'..=b'-')
            .chain(b'0'..=b'9')
            .chain(b'A'..=b'Z')
            .chain(b'_'..=b'_')
            .chain(b'a'..=b'z')
            .collect();
        assert_eq!(allowed, expected);
        let chess_com = UsernameRule::of(Platform::ChessCom);
        assert!(!chess_com.accepts("ab") && chess_com.accepts("abc") && chess_com.accepts(&"a".repeat(25)));
        assert!(!chess_com.accepts(&"a".repeat(26)));
    }

    #[test]
    fn a_batch_adds_what_it_inserted_and_counts_the_rest_as_skipped() {
        let before = Counters {
            games_fetched: 40,
            games_imported: 10,
            games_skipped_existing: 3,
            games_failed_parse: 1,
        };
        let after = before.after_batch(25, 22);
        assert_eq!(
            after,
            Counters {
                games_imported: 32,
                games_skipped_existing: 6,
                ..before
            }
        );
        assert_eq!(before.after_batch(0, 0), before);
    }
}
