//! `harness capture`: the importer's job history turned into a scenario that replays it.
//!
//! One import per job requested in the window, at its recorded offset; each import's user as its
//! job found them (the games stored before it began, what it imported, its `limit`); the deploy's
//! settings when given; and `observed:`, what production gave users, per provider, for the
//! replay to be set beside. No username and no game id leaves the database: users are keyed
//! hashes ([`Pseudonyms`]) and games are the mocks' own.

pub mod read;
pub mod window;

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_yaml::{Mapping, Value};

use read::JobRecord;
use window::secs;

use settings::Platform;

/// Longest a replay should take, real seconds: the time scale is chosen for it.
pub const REPLAY_SECS: f64 = 240.0;
/// lichess's export pace, games per second per stream (docs/providers.md: lichess's API).
pub const LICHESS_PACE: u32 = 20;
/// chess.com's answer time per monthly archive assumed, ms (as `scenarios/seed-real.yaml`).
pub const CHESSCOM_LATENCY_MS: u64 = 500;

/// Settings the scenario carries where the scenario's matrix holds them (the harness reads
/// a cell's slots and lanes there).
const MATRIX_KEYS: [&str; 5] = [
    settings::MAX_CONCURRENT_IMPORTS.name,
    settings::IMPORT_BATCH_SIZE.name,
    settings::EXISTING_GAMES_PAGE_SIZE.name,
    settings::LICHESS_MAX_STREAMS.name,
    settings::CHESSCOM_MAX_REQUESTS.name,
];

/// Whether a replay carries the setting `name`: the importer's tuning settings (how it runs
/// imports, never where it runs or as whom: the settings table's `tuning` rows) and glibc's
/// `MALLOC_ARENA_MAX`. Everything else a deploy's environment holds (URLs, tokens, passwords,
/// names, other programs' variables) is left out, and only its name is said.
pub fn replayed(name: &str) -> bool {
    settings::setting(name).is_some_and(|s| s.tuning) || name == "MALLOC_ARENA_MAX"
}

/// The deploy's settings for the replay: those [`replayed`] that `--env-file` and `--set`
/// gave; every other name is left out (and listed), its value never written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// The settings kept.
    pub env: BTreeMap<String, String>,
    /// Where they came from, in words; `None`: nothing was given, the importer's defaults hold.
    pub given_by: Option<String>,
    /// Names of the settings left out.
    pub left_out: Vec<String>,
}

impl Settings {
    /// Keeps the settings of `pairs` that a replay can use; `given_by` says where they came from.
    pub fn of(pairs: impl IntoIterator<Item = (String, String)>, given_by: Option<String>) -> Settings {
        let mut s = Settings {
            given_by,
            ..Settings::default()
        };
        for (k, v) in pairs {
            if replayed(&k) {
                s.env.insert(k, v);
            } else {
                s.left_out.push(k);
            }
        }
        s
    }
}

/// A line of a `.env` file that is not `KEY=VALUE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: expected KEY=VALUE")]
pub struct NotKeyValue {
    /// The line, 1-based.
    pub line: usize,
}

/// Reads `KEY=VALUE` lines (`#` comments, blank lines and an `export ` prefix allowed, values
/// optionally quoted), as a deploy's `.env` file holds them.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, NotKeyValue> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(NotKeyValue { line: n + 1 });
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        out.push((k.trim().to_string(), v.to_string()));
    }
    Ok(out)
}

/// Pseudonyms for usernames: SipHash (std's `RandomState`) under a key drawn at random for this
/// capture and never written, so that the same user gets the same pseudonym within a capture
/// and no one can recompute it from a username.
pub struct Pseudonyms(std::collections::hash_map::RandomState);

impl Pseudonyms {
    /// A fresh random key.
    pub fn new() -> Pseudonyms {
        Pseudonyms(std::collections::hash_map::RandomState::new())
    }

    /// The pseudonym of `user` on `platform`: `p` and 12 hex digits.
    pub fn of(&self, user: &str, platform: Platform) -> String {
        format!("p{:012x}", self.0.hash_one((user, platform.as_str())) >> 16)
    }
}

impl Default for Pseudonyms {
    fn default() -> Self {
        Pseudonyms::new()
    }
}

/// The window captured and where from.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
    /// How it was chosen, in words (`--busiest 1h`, `--from … --to …`).
    pub chosen_by: String,
    /// `sqlite` or `postgres`: the replay runs on the same kind.
    pub database: &'static str,
}

/// `t` as RFC 3339 UTC with milliseconds, as the captured file and the command line show it.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn val<T: serde::Serialize>(v: T) -> Value {
    serde_yaml::to_value(v).unwrap_or(Value::Null)
}

fn map(pairs: Vec<(&str, Value)>) -> Value {
    Value::Mapping(
        pairs
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect::<Mapping>(),
    )
}

/// One import's user as its job found them.
fn user_of(job: &JobRecord, pseudonym: String) -> Value {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let (stored, imported, broken) = (
        count(job.stored_before),
        count(job.imported),
        count(job.failed_parse),
    );
    let new = imported + broken;
    let mut pairs = vec![
        ("pseudonym", val(pseudonym)),
        ("platform", val(job.platform.as_str())),
        ("games", val(stored + new)),
        ("limit", val(count(job.limit).max(1))),
    ];
    if stored > 0 {
        pairs.push(("stored", val(stored)));
        pairs.push(("new_since_stored", val(new)));
    }
    if job.platform == Platform::ChessCom {
        pairs.push(("months", val(job.months)));
    }
    if broken > 0 {
        // Spread among the new games: the mocks break the games at these indices (0 = newest).
        let at: Vec<u64> = (0..broken).map(|k| k * new / broken).collect();
        pairs.push(("malformed", val(at)));
    }
    map(pairs)
}

/// The time scale that keeps a replay of `jobs` within [`REPLAY_SECS`], and its cell timeout.
fn pace_for(jobs: &[JobRecord], from: DateTime<Utc>) -> (f64, u64) {
    let last = jobs.iter().map(|j| secs(from, j.created_at)).fold(0.0, f64::max);
    let longest = jobs
        .iter()
        .filter_map(|j| Some(secs(j.created_at, j.finished_at?)))
        .fold(0.0, f64::max);
    // The scenario check's range; a window that needs more is refused before (at most a day).
    let scale = ((last + longest) / REPLAY_SECS).ceil().clamp(1.0, 1000.0);
    let timeout = (2.0 * (last + longest) / scale + 120.0).max(300.0).ceil() as u64;
    (scale, timeout)
}

/// The captured scenario, as YAML with a header saying what it holds and what it does not.
pub fn scenario(jobs: &[JobRecord], window: &Window, settings: &Settings) -> String {
    let pseudonyms = Pseudonyms::new();
    let users: Vec<Value> = jobs
        .iter()
        .map(|j| user_of(j, pseudonyms.of(&j.user, j.platform)))
        .collect();
    let at_secs: Vec<f64> = jobs
        .iter()
        .map(|j| (secs(window.from, j.created_at) * 1000.0).round() / 1000.0)
        .collect();
    let (time_scale, timeout) = pace_for(jobs, window.from);
    let mut matrix = Mapping::new();
    let mut env = Mapping::new();
    for (k, v) in &settings.env {
        match (MATRIX_KEYS.contains(&k.as_str()), v.parse::<u32>()) {
            (true, Ok(n)) => matrix.insert(Value::from(k.as_str()), val(vec![n])),
            _ => env.insert(Value::from(k.as_str()), Value::from(v.as_str())),
        };
    }
    let mut providers = Mapping::new();
    for p in [Platform::Lichess, Platform::ChessCom] {
        if let Some(o) = window::observed(jobs, p) {
            providers.insert(Value::from(p.as_str()), val(o));
        }
    }
    let doc = map(vec![
        (
            "description",
            val(format!(
                "Replays {} imports requested from {} to {} ({}), at the providers' real pace.",
                jobs.len(),
                rfc3339(window.from),
                rfc3339(window.to),
                window.chosen_by
            )),
        ),
        ("budget", val("512MB")),
        ("database", val(window.database)),
        ("env", Value::Mapping(env)),
        ("matrix", Value::Mapping(matrix)),
        (
            "workload",
            map(vec![
                ("imports", val(jobs.len())),
                ("arrivals", map(vec![("at_secs", val(at_secs))])),
                ("users", Value::Sequence(users)),
            ]),
        ),
        (
            "upstream",
            map(vec![
                ("pace_games_per_sec", val(LICHESS_PACE)),
                ("chesscom_latency_ms", val(CHESSCOM_LATENCY_MS)),
                ("time_scale", val(time_scale)),
            ]),
        ),
        ("cell_timeout_secs", val(timeout)),
        (
            "observed",
            map(vec![
                ("from", val(rfc3339(window.from))),
                ("to", val(rfc3339(window.to))),
                ("tolerance_pct", val(25.0)),
                ("providers", Value::Mapping(providers)),
            ]),
        ),
    ]);
    let body = serde_yaml::to_string(&doc).unwrap_or_default();
    format!("{}{body}", header(jobs.len(), window, settings, time_scale))
}

fn header(imports: usize, window: &Window, settings: &Settings, time_scale: f64) -> String {
    let settings_line = match &settings.given_by {
        Some(by) => format!("# Settings: as {by} gave them"),
        None => {
            "# Settings: none given, so the importer's defaults (the database does not record a deploy's \
                 settings; pass --env-file to replay yours)"
                .to_string()
        }
    };
    let left_out = if settings.left_out.is_empty() {
        String::new()
    } else {
        format!(
            "; left out (not how imports run: addresses, secrets, other programs' settings): {}",
            settings.left_out.join(", ")
        )
    };
    format!(
        "# Captured by `harness capture` ({}): {imports} imports requested in [{}, {}), {}.\n\
         # Users are pseudonyms: a keyed hash (SipHash) of each username under a random key made for this\n\
         # capture and never written. No username and no game id from the database is in this file; the\n\
         # games are the mocks' own.\n\
         {settings_line}{left_out}.\n\
         # Each import is a user of its own, as its job found them: `stored` = games stored before it began,\n\
         # `new_since_stored` (or `games` for a first import) = what it imported and could not parse; `months`\n\
         # = the months of the user's stored games. What a provider had beyond what the jobs fetched is unknown.\n\
         # Pace: lichess's real 20 games/s a stream and chess.com 500 ms a month, at time_scale {time_scale}\n\
         # (provider time runs that much faster); every time in `observed` is seconds as production saw them.\n",
        window.database,
        rfc3339(window.from),
        rfc3339(window.to),
        window.chosen_by,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_importers_own_tuning_settings_are_replayed() {
        let text = "# deploy\nexport MAX_CONCURRENT_IMPORTS=4\nLICHESS_MAX_STREAMS=\"2\"\nPGPASSWORD=hunter2\n\
                    DATABASE_URL=postgres://u:pw@db/x\ndatabase_url=postgres://u:pw@db/y\nSENTRY_DSN=https://k@s/1\n\
                    API_TOKEN=secretsecretsecret\n";
        let s = Settings::of(
            parse_env_file(text).expect("env file"),
            Some("--env-file x".into()),
        );
        assert_eq!(s.env.get("MAX_CONCURRENT_IMPORTS").map(String::as_str), Some("4"));
        assert_eq!(s.env.get("LICHESS_MAX_STREAMS").map(String::as_str), Some("2"));
        assert_eq!(s.env.len(), 2, "{:?}", s.env);
        for name in [
            "PGPASSWORD",
            "DATABASE_URL",
            "database_url",
            "SENTRY_DSN",
            "API_TOKEN",
        ] {
            assert!(
                s.left_out.iter().any(|l| l == name),
                "{name} left out: {:?}",
                s.left_out
            );
        }
        let err = parse_env_file("# deploy\nNOEQUALS\n").expect_err("no =");
        assert_eq!(err, NotKeyValue { line: 2 });
        assert_eq!(err.to_string(), "line 2: expected KEY=VALUE");
    }
}
