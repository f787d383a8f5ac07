//! What each user waited for: queue wait, run time, time waiting for a provider
//! (an outage, a broken stream: apart from the queue), time to the first stored
//! game and to the last, in provider seconds (measured seconds × the time
//! scale), per import and summed up per provider.
//!
//! Every time here starts at the moment the user's POST was sent (the
//! harness's clock, which is the importer's: one machine), so a slow admission
//! counts as waiting.

use serde::{Deserialize, Serialize};
use settings::Platform;
use statrs::statistics::{Data, OrderStatistics};

use crate::load::ImportRecord;

/// One import on provider time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportTiming {
    /// Username.
    pub user: String,
    /// Its provider.
    pub platform: Platform,
    /// When its POST was sent, seconds from the cell's first POST.
    pub arrived_secs: f64,
    /// From the POST to the import's start: the queue wait the user sees.
    pub wait_secs: Option<f64>,
    /// From the start to the end.
    pub run_secs: Option<f64>,
    /// From the POST to the first game stored.
    pub first_game_secs: Option<f64>,
    /// From the POST to the end: when the user has all their games.
    pub done_secs: Option<f64>,
    /// Games stored.
    pub games: i64,
    /// Games stored per second of run time.
    pub games_per_sec: Option<f64>,
    /// Games the provider sent per game stored (1.00: every game received was new).
    #[serde(default)]
    pub received_per_stored: Option<f64>,
    /// Time spent waiting for the provider (the job's `provider_wait_secs`), apart from the wait.
    #[serde(default)]
    pub provider_wait_secs: f64,
}

/// Whose imports a [`ProviderTiming`] sums up: one provider's (named as the provider), or every
/// import of the cell (`all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Provider {
    /// Every import, whatever its provider.
    #[serde(rename = "all")]
    All,
    /// One provider's imports.
    #[serde(untagged)]
    One(Platform),
}

impl Provider {
    /// Each provider, then all: the order of [`Timing::providers`].
    pub const EACH_THEN_ALL: [Provider; 3] = [
        Provider::One(Platform::Lichess),
        Provider::One(Platform::ChessCom),
        Provider::All,
    ];
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provider::All => f.write_str("all"),
            Provider::One(p) => p.fmt(f),
        }
    }
}

/// The waits of one provider's imports in one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderTiming {
    /// Whose imports.
    pub provider: Provider,
    /// Imports that started.
    pub imports: usize,
    /// Median queue wait, seconds.
    pub wait_p50_secs: f64,
    /// 95th percentile of the queue wait, seconds (statrs' quantile: interpolated, so of 4 users
    /// it lies between the 3rd and the 4th wait).
    pub wait_p95_secs: f64,
    /// Longest queue wait, seconds.
    pub wait_max_secs: f64,
    /// When the last of them ended, seconds from the cell's first POST.
    pub last_done_secs: f64,
    /// Median run (start to end) of those that ended, seconds.
    #[serde(default)]
    pub run_p50_secs: f64,
    /// 95th percentile of the run, seconds (interpolated as the wait's).
    #[serde(default)]
    pub run_p95_secs: f64,
    /// Median time waiting for the provider, apart from the queue, of the imports that started.
    #[serde(default)]
    pub provider_wait_p50_secs: f64,
    /// 95th percentile of it (interpolated as the wait's).
    #[serde(default)]
    pub provider_wait_p95_secs: f64,
    /// The longest.
    #[serde(default)]
    pub provider_wait_max_secs: f64,
}

/// A cell's times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// The scale the cell ran at: provider seconds per measured second.
    pub time_scale: f64,
    /// Per import, in POST order.
    pub imports: Vec<ImportTiming>,
    /// Per provider that had imports, then `all`.
    pub providers: Vec<ProviderTiming>,
}

impl Timing {
    /// The summary of `provider`'s imports.
    pub fn provider(&self, provider: Provider) -> Option<&ProviderTiming> {
        self.providers.iter().find(|p| p.provider == provider)
    }
}

fn secs(a: chrono::DateTime<chrono::Utc>, b: chrono::DateTime<chrono::Utc>) -> f64 {
    (b - a).num_microseconds().unwrap_or(0) as f64 / 1e6
}

/// The times of `imports`, measured at `time_scale` (provider seconds per measured second).
pub fn of(imports: &[ImportRecord], time_scale: f64) -> Timing {
    let first_post = imports.iter().filter_map(|r| r.posted_wall).min();
    let mut rows: Vec<ImportTiming> = imports
        .iter()
        .map(|r| {
            let since_post = |t: Option<chrono::DateTime<chrono::Utc>>| {
                Some(secs(r.posted_wall?, t?).max(0.0) * time_scale)
            };
            let run_secs = r.run_secs.map(|s| s * time_scale);
            ImportTiming {
                user: r.user.clone(),
                platform: r.platform,
                arrived_secs: match (first_post, r.posted_wall) {
                    (Some(a), Some(b)) => secs(a, b) * time_scale,
                    _ => 0.0,
                },
                wait_secs: r.client_wait_secs.map(|s| s * time_scale),
                run_secs,
                first_game_secs: since_post(r.first_game_at),
                done_secs: since_post(r.finished_at),
                games: r.games_imported,
                games_per_sec: run_secs.filter(|s| *s > 0.0).map(|s| r.games_imported as f64 / s),
                received_per_stored: r.received_per_stored(),
                provider_wait_secs: r.provider_wait_secs * time_scale,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        a.arrived_secs
            .total_cmp(&b.arrived_secs)
            .then(a.user.cmp(&b.user))
    });
    let mut providers: Vec<ProviderTiming> = Platform::ALL
        .into_iter()
        .filter_map(|p| summary(Provider::One(p), rows.iter().filter(|r| r.platform == p)))
        .collect();
    providers.extend(summary(Provider::All, rows.iter()));
    Timing {
        time_scale,
        imports: rows,
        providers,
    }
}

fn summary<'a>(provider: Provider, rows: impl Iterator<Item = &'a ImportTiming>) -> Option<ProviderTiming> {
    let rows: Vec<&ImportTiming> = rows.collect();
    let waits: Vec<f64> = rows.iter().filter_map(|r| r.wait_secs).collect();
    if waits.is_empty() {
        return None;
    }
    let mut data = Data::new(waits.clone());
    let provider_waits: Vec<f64> = rows
        .iter()
        .filter(|r| r.wait_secs.is_some())
        .map(|r| r.provider_wait_secs)
        .collect();
    let mut provider_data = Data::new(provider_waits.clone());
    let runs: Vec<f64> = rows.iter().filter_map(|r| r.run_secs).collect();
    let mut run_data = Data::new(runs.clone());
    let (run_p50_secs, run_p95_secs) = if runs.is_empty() {
        (0.0, 0.0)
    } else {
        (run_data.median(), run_data.quantile(0.95))
    };
    Some(ProviderTiming {
        run_p50_secs,
        run_p95_secs,
        provider_wait_p50_secs: provider_data.median(),
        provider_wait_p95_secs: provider_data.quantile(0.95),
        provider_wait_max_secs: provider_waits.iter().copied().fold(0.0, f64::max),
        provider,
        imports: waits.len(),
        wait_p50_secs: data.median(),
        wait_p95_secs: data.quantile(0.95),
        wait_max_secs: waits.iter().copied().fold(0.0, f64::max),
        last_done_secs: rows
            .iter()
            .filter_map(|r| Some(r.arrived_secs + r.done_secs?))
            .fold(0.0, f64::max),
    })
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;

    const LICHESS: Provider = Provider::One(Platform::Lichess);

    fn at(ms: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms)
    }

    fn import(user: &str, platform: Platform, post: i64, start: i64, first: i64, end: i64) -> ImportRecord {
        ImportRecord {
            posted_wall: at(post),
            started_at: at(start),
            first_game_at: at(first),
            finished_at: at(end),
            client_wait_secs: Some((start - post) as f64 / 1000.0),
            run_secs: Some((end - start) as f64 / 1000.0),
            games_imported: 500,
            ..ImportRecord::new(user.into(), platform)
        }
    }

    #[test]
    fn times_are_from_the_post_and_on_provider_time() {
        // Scale 10: 2.5 s measured is 25 s of provider time.
        let t = of(
            &[
                import("a", Platform::Lichess, 0, 0, 100, 2500),
                import("b", Platform::Lichess, 0, 2500, 2600, 5000),
                import("c", Platform::ChessCom, 1000, 1000, 1200, 2000),
            ],
            10.0,
        );
        let b = t.imports.iter().find(|r| r.user == "b").unwrap();
        assert_eq!(b.wait_secs, Some(25.0));
        assert_eq!(b.run_secs, Some(25.0));
        assert_eq!(b.first_game_secs, Some(26.0));
        assert_eq!(b.done_secs, Some(50.0));
        assert_eq!(b.games_per_sec, Some(20.0));
        let c = t.imports.iter().find(|r| r.user == "c").unwrap();
        assert_eq!(c.arrived_secs, 10.0);
        let lichess = t.provider(LICHESS).unwrap();
        assert_eq!((lichess.imports, lichess.wait_max_secs), (2, 25.0));
        assert_eq!(lichess.provider_wait_max_secs, 0.0, "no provider wait recorded");
        assert_eq!(lichess.last_done_secs, 50.0);
        assert_eq!(
            t.provider(Provider::One(Platform::ChessCom))
                .unwrap()
                .last_done_secs,
            20.0
        );
        assert_eq!(t.provider(Provider::All).unwrap().imports, 3);
    }

    #[test]
    fn the_provider_wait_is_apart_from_the_queue_and_on_provider_time() {
        let mut a = import("a", Platform::Lichess, 0, 0, 100, 4000);
        a.provider_wait_secs = 3.0;
        let b = import("b", Platform::Lichess, 0, 4000, 4100, 5000);
        let t = of(&[a, b], 10.0);
        let a = t.imports.iter().find(|r| r.user == "a").unwrap();
        assert_eq!((a.wait_secs, a.provider_wait_secs), (Some(0.0), 30.0));
        let lichess = t.provider(LICHESS).unwrap();
        assert_eq!(
            (lichess.provider_wait_p50_secs, lichess.provider_wait_max_secs),
            (15.0, 30.0)
        );
    }

    #[test]
    fn a_provider_is_written_as_its_name_and_all_as_all() {
        for (p, name) in Provider::EACH_THEN_ALL
            .into_iter()
            .zip(["lichess", "chess.com", "all"])
        {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(
                (json.as_str(), p.to_string()),
                (format!("\"{name}\"").as_str(), name.to_string())
            );
            assert_eq!(serde_json::from_str::<Provider>(&json).unwrap(), p);
        }
    }

    #[test]
    fn an_import_that_never_started_has_no_wait() {
        let mut never = import("z", Platform::Lichess, 0, 0, 0, 0);
        never.client_wait_secs = None;
        never.started_at = None;
        never.finished_at = None;
        never.first_game_at = None;
        let t = of(&[never], 1.0);
        assert_eq!(t.imports[0].done_secs, None);
        assert!(t.providers.is_empty());
    }
}
