//! The words every module shares: platforms, import jobs, their status and counters.

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use settings::Platform;

/// Whether `name` follows `platform`'s username rules; only such names reach a URL.
pub fn is_valid_username(platform: Platform, name: &str) -> bool {
    let (min, max) = match platform {
        Platform::Lichess => (2, 30),
        Platform::ChessCom => (3, 25),
    };
    (min..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `platform`'s username rule, for error messages.
pub fn username_rule(platform: Platform) -> &'static str {
    match platform {
        Platform::Lichess => "2 to 30 characters among A-Z a-z 0-9 _ -",
        Platform::ChessCom => "3 to 25 characters among A-Z a-z 0-9 _ -",
    }
}

/// Where an import job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting for a free slot.
    Queued,
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
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
        }
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
}
