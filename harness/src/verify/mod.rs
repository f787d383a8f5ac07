//! Exact delivery: every game the workload should have stored is stored once,
//! nothing else is, and the jobs' counters agree with the database.
//!
//! A cell that fails here fails the run, whatever its memory.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::target::db::JobRow;
use crate::upstream::{MockUser, Platform};

/// What one import should leave in the database.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// The mock user (its key is the stored user_id).
    pub user: MockUser,
    /// Indices of the games stored before the import (by earlier imports).
    pub stored_before: Vec<u64>,
    /// The import's limit.
    pub limit: u64,
}

impl Expectation {
    /// Ids stored before the import.
    pub fn seeded_ids(&self) -> impl Iterator<Item = String> + '_ {
        self.stored_before
            .iter()
            .map(|&i| crate::upstream::games::stored_key(&self.user, i))
    }

    /// Ids the import must add: the `limit` newest finished, well-formed games not stored before
    /// (the API's promise: the most recent games not yet stored).
    pub fn new_ids(&self) -> Vec<String> {
        let before: HashSet<u64> = self.stored_before.iter().copied().collect();
        self.user
            .valid_ids()
            .filter(|(i, _)| !before.contains(i))
            .take(self.limit as usize)
            .map(|(_, id)| id)
            .collect()
    }
}

/// The check of one user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserCheck {
    /// user_id.
    pub user: String,
    /// Its provider.
    pub platform: Platform,
    /// Games that should be stored (seeded + new).
    pub expected: usize,
    /// Rows stored.
    pub stored_rows: usize,
    /// Expected games not stored.
    pub missing: usize,
    /// Stored games not expected.
    pub unexpected: usize,
    /// Rows beyond the first for the same game.
    pub doubled: usize,
    /// What the job says it imported.
    pub job_imported: Option<i64>,
    /// The job's status.
    pub job_status: Option<String>,
}

/// The verdict on one cell.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verification {
    /// Nothing lost, nothing doubled, counters right.
    pub ok: bool,
    /// Per user.
    pub users: Vec<UserCheck>,
    /// Each problem, in words.
    pub problems: Vec<String>,
}

/// Compares what is stored with what should be.
pub fn check(
    expectations: &[Expectation],
    stored: &HashMap<(String, String), Vec<String>>,
    jobs: &[JobRow],
) -> Verification {
    let mut problems = Vec::new();
    let mut users = Vec::new();
    let empty = Vec::new();
    let mut known_keys = HashSet::new();
    for e in expectations {
        let key = (e.user.key(), e.user.platform.as_str().to_string());
        known_keys.insert(key.clone());
        let rows = stored.get(&key).unwrap_or(&empty);
        let distinct: HashSet<&str> = rows.iter().map(String::as_str).collect();
        let new_ids = e.new_ids();
        let expected: HashSet<String> = e.seeded_ids().chain(new_ids.iter().cloned()).collect();
        let missing = expected
            .iter()
            .filter(|id| !distinct.contains(id.as_str()))
            .count();
        let unexpected = distinct.iter().filter(|id| !expected.contains(**id)).count();
        let doubled = rows.len() - distinct.len();
        // The last job of the user: the earlier imports' come first.
        let job = jobs
            .iter()
            .rev()
            .find(|j| j.user_id == key.0 && j.platform == key.1);
        let who = format!("{} on {}", key.0, key.1);
        if missing > 0 {
            problems.push(format!("{who}: {missing} expected games not stored (lost)"));
        }
        if unexpected > 0 {
            problems.push(format!("{who}: {unexpected} stored games that should not be"));
        }
        if doubled > 0 {
            problems.push(format!("{who}: {doubled} games stored more than once"));
        }
        match job {
            None => problems.push(format!("{who}: no import job recorded")),
            Some(j) => {
                if j.status != "completed" {
                    problems.push(format!(
                        "{who}: import {} ({})",
                        j.status,
                        j.error.as_deref().unwrap_or("")
                    ));
                }
                let added = rows.len() as i64 - e.stored_before.len() as i64;
                if j.games_imported != added {
                    problems.push(format!(
                        "{who}: job says {} imported, database has {added} new rows",
                        j.games_imported
                    ));
                }
            }
        }
        users.push(UserCheck {
            user: key.0.clone(),
            platform: e.user.platform,
            expected: expected.len(),
            stored_rows: rows.len(),
            missing,
            unexpected,
            doubled,
            job_imported: job.map(|j| j.games_imported),
            job_status: job.map(|j| j.status.clone()),
        });
    }
    for (key, rows) in stored {
        if !known_keys.contains(key) {
            problems.push(format!(
                "{} on {}: {} games stored for a user no import asked for",
                key.0,
                key.1,
                rows.len()
            ));
        }
    }
    Verification {
        ok: problems.is_empty(),
        users,
        problems,
    }
}
