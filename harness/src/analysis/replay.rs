//! A captured scenario's replay set beside what production observed (`observed:`): per provider,
//! the p50/p95 wait and run of both, the difference in words, and, where a p95 differs by more
//! than the tolerance, the assumptions the data show to differ. A cause is named only when its
//! figures are there to read; otherwise the report says none is.

use serde::{Deserialize, Serialize};

use crate::observe::timing::Provider;
use crate::scenario::{Observed, ObservedProvider};
use crate::session::results::{CellRun, RunResults};
use settings::Platform;

/// Differences of at most this many seconds count as none: the timestamps' and the client's own
/// resolution, and a queue that production never had.
pub const EQUAL_WITHIN_SECS: f64 = 1.0;

/// One figure of one provider, production beside the replay (seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// `p50 wait`, `p95 wait`, `p50 run` or `p95 run`.
    pub name: String,
    /// What production saw.
    pub observed: f64,
    /// What the replay measured, provider seconds.
    pub replay: f64,
    /// (replay − observed) / observed, percent; `None` when production's is 0.
    pub diff_pct: Option<f64>,
    /// Within the tolerance, or within [`EQUAL_WITHIN_SECS`].
    pub within: bool,
}

/// One provider of one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderReplay {
    /// The provider.
    pub provider: Platform,
    /// Imports production and the replay had.
    pub imports: (u32, u32),
    /// Failed imports in production and in the replay.
    pub failed: (u32, u32),
    /// The four figures.
    pub figures: Vec<Figure>,
    /// Both p95s within the tolerance.
    pub reproduced: bool,
    /// Assumptions the data show to differ, in words (empty when reproduced).
    pub causes: Vec<String>,
}

/// The replay of one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellReplay {
    /// The cell.
    pub cell: String,
    /// Its slots and lanes, as the importer ran them.
    pub settings: String,
    /// Per provider production had.
    pub providers: Vec<ProviderReplay>,
}

/// What the replay's imports of `platform` did: received games, summed run (provider seconds),
/// imports, failed ones, and 429s its mock answered.
struct Replayed {
    fetched: f64,
    run_total: f64,
    imports: u32,
    failed: u32,
    rate_limited: u64,
}

fn replayed(run: &CellRun, platform: Platform) -> Replayed {
    let mine = || run.load.imports.iter().filter(|i| i.platform == platform);
    let scale = run.timing.as_ref().map_or(1.0, |t| t.time_scale);
    Replayed {
        fetched: mine().map(|i| i.games_fetched.max(0) as f64).sum(),
        run_total: mine().filter_map(|i| i.run_secs).sum::<f64>() * scale,
        imports: mine().count() as u32,
        // As production counts them: imports that ended `failed` (not ones the client gave up on).
        failed: mine().filter(|i| i.status == "failed").count() as u32,
        rate_limited: run.upstream.get(platform.as_str()).map_or(0, |s| s.rate_limited),
    }
}

fn figure(name: &str, observed: f64, replay: f64, tolerance_pct: f64) -> Figure {
    let diff_pct = (observed > 0.0).then(|| (replay - observed) * 100.0 / observed);
    let within =
        (replay - observed).abs() <= EQUAL_WITHIN_SECS || diff_pct.is_some_and(|d| d.abs() <= tolerance_pct);
    Figure {
        name: name.into(),
        observed,
        replay,
        diff_pct,
        within,
    }
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
}

/// The assumptions whose figures differ between production `o` and the replay `r`.
fn causes(platform: Platform, o: &ObservedProvider, r: &Replayed, pace: f64) -> Vec<String> {
    let mut out = Vec::new();
    let per = |games: f64, n: u32| games / f64::from(n.max(1));
    let (o_each, r_each) = (per(o.games_fetched as f64, o.imports), per(r.fetched, r.imports));
    if rel(r_each, o_each) > 0.10 {
        out.push(format!(
            "history sizes: the replay's imports received {r_each:.0} games each, production's {o_each:.0}"
        ));
    }
    let (o_rate, r_rate) = (o.games_fetched as f64 / o.run_total_secs, r.fetched / r.run_total);
    if o_rate.is_finite() && r_rate.is_finite() && o_rate > 0.0 && r_rate > 0.0 && rel(r_rate, o_rate) > 0.25
    {
        let assumed = match platform {
            Platform::Lichess => format!("pace: the mock streams lichess's {pace:.0} games a second"),
            Platform::ChessCom => {
                "chess.com latency: the mock answers each monthly archive after a fixed time".into()
            }
        };
        out.push(format!(
            "{assumed}; production's imports received {o_rate:.1} games a second of run, the replay's {r_rate:.1}"
        ));
    }
    if platform == Platform::Lichess && pace > 0.0 {
        let unexplained = o.run_total_secs - o.games_fetched as f64 / pace;
        if unexplained > 60.0 && r.rate_limited == 0 {
            out.push(format!(
                "production's lichess imports ran {unexplained:.0} s longer in all than their games take at {pace:.0} a second, \
                 time without games that the replay did not have (its mock answered no 429; a 429 cool-down is 60 s)"
            ));
        }
    }
    if o.failed != r.failed {
        out.push(format!(
            "failures: production had {} failed imports, the replay {}",
            o.failed, r.failed
        ));
    }
    out
}

/// The replay of each cell's first verified run beside `observed`; empty for a scenario that was
/// not captured.
pub fn compare(results: &RunResults, pace_games_per_sec: f64) -> Vec<CellReplay> {
    let Some(observed) = &results.observed else {
        return Vec::new();
    };
    let mut seen = std::collections::BTreeSet::new();
    results
        .cells
        .iter()
        .filter(|r| r.timing.is_some() && seen.insert(r.cell.label.clone()))
        .map(|run| cell(run, observed, pace_games_per_sec))
        .collect()
}

fn cell(run: &CellRun, observed: &Observed, pace: f64) -> CellReplay {
    let lanes = crate::scenario::lanes(&run.cell.env);
    let settings = format!(
        "MAX_CONCURRENT_IMPORTS={} LICHESS_MAX_STREAMS={} CHESSCOM_MAX_REQUESTS={}",
        run.cell.max_concurrent_imports, lanes.lichess, lanes.chess_com
    );
    let providers = observed
        .providers
        .iter()
        .filter_map(|(name, o)| {
            let platform = Platform::parse(name)?;
            let t = run.timing.as_ref()?.provider(Provider::One(platform));
            let r = replayed(run, platform);
            let tol = observed.tolerance_pct;
            let (wp50, wp95, rp50, rp95) = t.map_or((0.0, 0.0, 0.0, 0.0), |t| {
                (t.wait_p50_secs, t.wait_p95_secs, t.run_p50_secs, t.run_p95_secs)
            });
            let figures = vec![
                figure("p50 wait", o.wait_p50_secs, wp50, tol),
                figure("p95 wait", o.wait_p95_secs, wp95, tol),
                figure("p50 run", o.run_p50_secs, rp50, tol),
                figure("p95 run", o.run_p95_secs, rp95, tol),
            ];
            let reproduced = figures[1].within && figures[3].within;
            Some(ProviderReplay {
                provider: platform,
                imports: (o.imports, r.imports),
                failed: (o.failed, r.failed),
                causes: if reproduced {
                    Vec::new()
                } else {
                    causes(platform, o, &r, pace)
                },
                figures,
                reproduced,
            })
        })
        .collect();
    CellReplay {
        cell: run.cell.label.clone(),
        settings,
        providers,
    }
}

/// A figure's difference in words: "the replay's p95 wait is 12 % above what production saw".
pub fn in_words(f: &Figure) -> String {
    let d = f.replay - f.observed;
    if d.abs() <= EQUAL_WITHIN_SECS && f.diff_pct.is_none_or(|p| p.abs() < 0.5) {
        return format!("the replay's {} matches what production saw", f.name);
    }
    match f.diff_pct {
        Some(p) => format!(
            "the replay's {} is {:.0} % {} what production saw",
            f.name,
            p.abs(),
            if p > 0.0 { "above" } else { "below" }
        ),
        None => format!("the replay's {} is {d:.1} s where production's was 0", f.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(fetched: u64, run_total: f64, failed: u32) -> ObservedProvider {
        ObservedProvider {
            imports: 4,
            completed: 4 - failed,
            failed,
            wait_p50_secs: 10.0,
            wait_p95_secs: 40.0,
            wait_max_secs: 45.0,
            run_p50_secs: 50.0,
            run_p95_secs: 100.0,
            run_max_secs: 100.0,
            run_total_secs: run_total,
            games_fetched: fetched,
            games_imported: fetched,
            games_skipped: 0,
        }
    }

    #[test]
    fn differences_are_said_in_words_and_judged_against_the_tolerance() {
        let f = figure("p95 wait", 50.0, 56.0, 25.0);
        assert!(f.within);
        assert_eq!(
            in_words(&f),
            "the replay's p95 wait is 12 % above what production saw"
        );
        let f = figure("p95 run", 100.0, 60.0, 25.0);
        assert!(!f.within);
        assert_eq!(
            in_words(&f),
            "the replay's p95 run is 40 % below what production saw"
        );
        // Below a second is no difference, whatever the percentage of a tiny wait.
        assert!(figure("p95 wait", 0.2, 0.9, 25.0).within);
        assert_eq!(
            in_words(&figure("p95 wait", 0.0, 3.0, 25.0)),
            "the replay's p95 wait is 3.0 s where production's was 0"
        );
    }

    #[test]
    fn causes_are_named_only_from_figures_that_differ() {
        let same = Replayed {
            fetched: 8000.0,
            run_total: 400.0,
            imports: 4,
            failed: 0,
            rate_limited: 0,
        };
        // 8,000 games in 400 s of run: 20 a second, as the mock; nothing to name.
        assert!(causes(Platform::Lichess, &observed(8000, 400.0, 0), &same, 20.0).is_empty());
        // Production took 600 s for the same games: a slower pace and 200 s without games.
        let slow = causes(Platform::Lichess, &observed(8000, 600.0, 0), &same, 20.0);
        assert!(slow.iter().any(|c| c.starts_with("pace:")), "{slow:?}");
        assert!(slow.iter().any(|c| c.contains("200 s longer")), "{slow:?}");
        // Bigger histories in production, and a failure the replay did not have.
        let big = causes(Platform::Lichess, &observed(12000, 600.0, 1), &same, 20.0);
        assert!(big.iter().any(|c| c.starts_with("history sizes:")), "{big:?}");
        assert!(big.iter().any(|c| c.starts_with("failures:")), "{big:?}");
    }
}
