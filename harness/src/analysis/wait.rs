//! `harness recommend --max-wait`: which slots and lanes serve a scenario's
//! users within a wait, in a memory budget.
//!
//! Each cell of the scenario is a configuration (slots, lichess streams,
//! chess.com requests). A configuration qualifies when its runs were verified,
//! drew no 429 from the mocks, kept their peak within the budget less its
//! headroom, and kept the users' p95 wait (provider time) within the limit.
//! The recommendation is the qualifying one with the fewest slots, then the
//! fewest lanes (a second lichess stream risks lichess's penalty). Beside each
//! measured p95 stands the queueing model's prediction (`queueing`), and when
//! nothing qualifies the model says what would: a token, another lane, or
//! fewer games per import.

use serde::{Deserialize, Serialize};

use super::queueing::{self, Job, Limits};
use crate::observe::timing::Provider;
use crate::scenario::{Cell, Checked, Lanes};
use crate::session::cell_users;
use crate::session::results::{CellRun, RunResults, mib};
use settings::Platform;

/// lichess's pace to a client with a token when the scenario gives none (docs/providers.md: 30 games/s).
pub const TOKEN_PACE: f64 = 30.0;
/// lichess export streams one address may hold (docs/providers.md: 2; more draw 429 and a penalty).
pub const LICHESS_STREAMS_ALLOWED: u32 = 2;

/// One configuration as measured and predicted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// The cell's label.
    pub label: String,
    /// The importer's limits.
    pub slots: u32,
    /// LICHESS_MAX_STREAMS.
    pub lichess_lanes: u32,
    /// CHESSCOM_MAX_REQUESTS.
    pub chess_com_lanes: u32,
    /// Highest peak of its runs, bytes.
    pub peak: u64,
    /// Peak within the budget less headroom.
    pub fits_memory: bool,
    /// Every run verified, without error and without a 429 from the mocks.
    pub clean: bool,
    /// Worst measured p95 wait over its runs, provider seconds.
    pub measured_p95_secs: f64,
    /// The model's p95 wait, provider seconds.
    pub predicted_p95_secs: f64,
    /// Worst time the last user had all their games, provider seconds.
    pub last_done_secs: f64,
    /// Qualifies: clean, fits, p95 within the limit.
    pub qualifies: bool,
}

/// What `recommend --max-wait` concluded (`recommend-wait.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WaitRecommendation {
    /// Scenario.
    pub scenario: String,
    /// The production window a captured scenario replays, in words.
    #[serde(default)]
    pub window: Option<String>,
    /// Budget, bytes.
    pub budget_bytes: u64,
    /// Headroom fraction.
    pub headroom: f64,
    /// The limit on the p95 wait, provider seconds.
    pub max_wait_secs: f64,
    /// The time scale the runs were made at.
    pub time_scale: f64,
    /// Every configuration.
    pub rows: Vec<Row>,
    /// The recommended row.
    pub best: Option<usize>,
    /// What limits the wait, in words.
    pub binding: String,
    /// When nothing qualifies: what would, by the model.
    pub advice: Vec<String>,
    /// The recommended configuration run again under a hard memory limit.
    pub validation: Option<WaitValidation>,
    /// Reports folder of the runs.
    pub reports: String,
}

/// The validation run of the recommendation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WaitValidation {
    /// Its p95 wait, provider seconds.
    pub p95_wait_secs: f64,
    /// Its peak, bytes.
    pub peak: u64,
    /// Verified, no error, no 429, within the wait.
    pub held: bool,
    /// Why not, if so.
    pub problems: Vec<String>,
}

impl WaitRecommendation {
    /// 0: a configuration qualifies (and held when validated); 1: none does, or it did not hold.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.best.is_none() || self.validation.as_ref().is_some_and(|v| !v.held))
    }

    /// The line to deploy with.
    pub fn env_line(&self) -> Option<String> {
        let r = &self.rows[self.best?];
        Some(format!(
            "MAX_CONCURRENT_IMPORTS={} LICHESS_MAX_STREAMS={} CHESSCOM_MAX_REQUESTS={}",
            r.slots, r.lichess_lanes, r.chess_com_lanes
        ))
    }
}

/// The importer's limits in a cell.
pub fn limits_of(cell: &Cell) -> Limits {
    Limits {
        slots: cell.max_concurrent_imports,
        lanes: crate::scenario::lanes(&cell.env),
    }
}

/// The providers' pace in the model: lichess games/s per stream, chess.com seconds per answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// lichess games per second per stream.
    pub lichess_games_per_sec: f64,
    /// chess.com seconds per answer.
    pub chess_com_latency_secs: f64,
}

/// The scenario's pace as the importer of `cell` meets it (a token when `LICHESS_TOKEN` is set).
pub fn pace_of(s: &Checked, cell: &Cell) -> Pace {
    let up = &s.raw.upstream;
    let token = cell.env.contains_key("LICHESS_TOKEN") || s.raw.env.contains_key("LICHESS_TOKEN");
    let anonymous = f64::from(up.pace_games_per_sec);
    Pace {
        lichess_games_per_sec: match up.authenticated_pace_games_per_sec {
            Some(p) if token => f64::from(p),
            _ => anonymous,
        },
        chess_com_latency_secs: up.chesscom_latency_ms as f64 / 1000.0,
    }
}

/// The model's jobs for a cell's workload; `games_factor` scales every import's games (advice).
pub fn jobs_of(s: &Checked, cell: &Cell, pace: Pace, games_factor: f64) -> Vec<Job> {
    let batch = f64::from(cell.batch_size);
    let offsets = s
        .raw
        .workload
        .arrivals
        .offsets(cell.imports as usize, s.raw.upstream.seed);
    cell_users(s, cell)
        .into_iter()
        .zip(offsets)
        .map(|(cu, arrival_secs)| {
            let (user, limit) = (cu.user, cu.limit);
            // An import reads what is new only (sync ranges): the games not stored, to the limit.
            let stored = cu.earlier.stored;
            let games = (user.games.saturating_sub(stored).min(limit) as f64 * games_factor).round() as u64;
            let service_secs = match user.platform {
                Platform::Lichess => queueing::lichess_secs(games, pace.lichess_games_per_sec),
                Platform::ChessCom => {
                    // The archive list, then each month; a month of more games than a batch is
                    // read twice (surveyed, then stored: the importer's memory bound).
                    let months = user.months.max(1);
                    let per_month = games as f64 / f64::from(months);
                    let reads = if per_month > batch { 2 } else { 1 };
                    queueing::chess_com_secs(months * reads, pace.chess_com_latency_secs)
                }
            };
            Job {
                platform: user.platform,
                arrival_secs,
                service_secs,
            }
        })
        .collect()
}

/// The model's p95 wait for a cell with other limits, pace or games.
fn predict(s: &Checked, cell: &Cell, limits: Limits, pace: Pace, games_factor: f64) -> f64 {
    queueing::p95_wait(&queueing::place(&jobs_of(s, cell, pace, games_factor), limits))
}

fn row_of(s: &Checked, budget_bytes: u64, max_wait: f64, runs: &[&CellRun]) -> Option<Row> {
    let cell = &runs.first()?.cell;
    let limits = limits_of(cell);
    let peak = runs.iter().map(|r| r.peak).max().unwrap_or(0);
    let fits_memory = (peak as f64) <= budget_bytes as f64 * (1.0 - s.headroom);
    let clean = runs
        .iter()
        .all(|r| r.passed() && r.upstream.values().all(|u| u.rate_limited == 0) && r.timing.is_some());
    let all = |f: fn(&crate::observe::timing::ProviderTiming) -> f64| {
        runs.iter()
            .filter_map(|r| r.timing.as_ref()?.provider(Provider::All).map(f))
            .fold(0.0, f64::max)
    };
    let measured = all(|p| p.wait_p95_secs);
    Some(Row {
        label: cell.label.clone(),
        slots: limits.slots,
        lichess_lanes: limits.lanes.lichess,
        chess_com_lanes: limits.lanes.chess_com,
        peak,
        fits_memory,
        clean,
        measured_p95_secs: measured,
        predicted_p95_secs: predict(s, cell, limits, pace_of(s, cell), 1.0),
        last_done_secs: all(|p| p.last_done_secs),
        qualifies: clean && fits_memory && measured <= max_wait,
    })
}

/// Judges every configuration of `results` (a run of `s`) against the budget and the wait.
pub fn conclude(
    s: &Checked,
    budget_bytes: u64,
    max_wait_secs: f64,
    results: &RunResults,
    reports: String,
) -> WaitRecommendation {
    let rows: Vec<Row> = crate::session::results::by_cell(results)
        .iter()
        .filter_map(|c| row_of(s, budget_bytes, max_wait_secs, &c.runs))
        .collect();
    let best = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.qualifies)
        .min_by_key(|(_, r)| (r.slots, r.lichess_lanes, r.chess_com_lanes, r.peak))
        .map(|(i, _)| i);
    // The row the words are about: the recommendation, or the one whose users waited least.
    let focus = best.or_else(|| {
        rows.iter()
            .enumerate()
            .filter(|(_, r)| r.clean)
            .min_by(|a, b| a.1.measured_p95_secs.total_cmp(&b.1.measured_p95_secs))
            .map(|(i, _)| i)
    });
    let cell = |i: usize| s.cells.iter().find(|c| c.label == rows[i].label);
    let (binding, advice) = match focus.and_then(|i| Some((i, cell(i)?))) {
        Some((i, c)) => (
            binding_words(s, c, &rows[i], &rows, budget_bytes),
            if best.is_none() {
                advice(s, c, max_wait_secs)
            } else {
                Vec::new()
            },
        ),
        None => ("no configuration ran cleanly".into(), Vec::new()),
    };
    WaitRecommendation {
        scenario: s.name.clone(),
        window: s.observed_window(),
        budget_bytes,
        headroom: s.headroom,
        max_wait_secs,
        time_scale: s.raw.upstream.time_scale,
        rows,
        best,
        binding,
        advice,
        validation: None,
        reports,
    }
}

/// What limits the wait of `row`, in words, with the provider's arithmetic.
fn binding_words(s: &Checked, cell: &Cell, row: &Row, rows: &[Row], budget_bytes: u64) -> String {
    let limits = limits_of(cell);
    let pace = pace_of(s, cell);
    let unlimited_slots = Limits {
        slots: cell.imports.max(1),
        ..limits
    };
    let with_slots = predict(s, cell, unlimited_slots, pace, 1.0);
    let bigger_fits = rows.iter().filter(|r| r.slots > row.slots).all(|r| r.fits_memory);
    if with_slots + 0.5 < row.predicted_p95_secs {
        if bigger_fits {
            return format!(
                "the slots: {} imports at once; with a slot per user the p95 wait would be {:.0} s",
                row.slots, with_slots
            );
        }
        return format!(
            "memory: more than {} slots do not fit {:.0} MiB less headroom",
            row.slots,
            mib(budget_bytes)
        );
    }
    // Lanes and pace bind: the provider's arithmetic, for the provider that waits longest.
    let jobs = jobs_of(s, cell, pace, 1.0);
    let placed = queueing::place(&jobs, limits);
    let lichess: Vec<(f64, f64)> = jobs
        .iter()
        .zip(&placed)
        .filter(|(j, _)| j.platform == Platform::Lichess)
        .map(|(j, p)| (j.service_secs, p.wait_secs))
        .collect();
    let longest = lichess.iter().map(|l| l.0).fold(0.0, f64::max);
    let last_wait = lichess.iter().map(|l| l.1).fold(0.0, f64::max);
    let chess_com_wait = jobs
        .iter()
        .zip(&placed)
        .filter(|(j, _)| j.platform == Platform::ChessCom)
        .map(|(_, p)| p.wait_secs)
        .fold(0.0, f64::max);
    match lichess.len() {
        k if k > 0 && pace.lichess_games_per_sec > 0.0 && last_wait >= chess_com_wait => format!(
            "the provider's pace and lanes: lichess at {:.0} games/s per stream, so {:.0} games take {longest:.0} s; \
             {k} lichess users on {} stream(s): the last to start waits {last_wait:.0} s",
            pace.lichess_games_per_sec,
            longest * pace.lichess_games_per_sec,
            limits.lanes.lichess,
        ),
        _ => format!(
            "chess.com's lanes: {} request(s) at once, {:.1} s an answer: the last chess.com user to \
             start waits {chess_com_wait:.0} s",
            limits.lanes.chess_com, pace.chess_com_latency_secs
        ),
    }
}

/// What would bring the p95 wait within `max_wait`, by the model.
fn advice(s: &Checked, cell: &Cell, max_wait: f64) -> Vec<String> {
    let limits = limits_of(cell);
    let pace = pace_of(s, cell);
    let mut out = Vec::new();
    let token_pace = Pace {
        lichess_games_per_sec: f64::from(
            s.raw
                .upstream
                .authenticated_pace_games_per_sec
                .unwrap_or(TOKEN_PACE as u32),
        ),
        ..pace
    };
    if token_pace.lichess_games_per_sec > pace.lichess_games_per_sec {
        let w = predict(s, cell, limits, token_pace, 1.0);
        out.push(format!(
            "a lichess token (LICHESS_TOKEN: {:.0} games/s a stream): p95 wait {w:.0} s{}",
            token_pace.lichess_games_per_sec,
            if w <= max_wait { " — meets the limit" } else { "" }
        ));
    }
    if limits.lanes.lichess < LICHESS_STREAMS_ALLOWED {
        let more = Limits {
            lanes: Lanes {
                lichess: limits.lanes.lichess + 1,
                ..limits.lanes
            },
            slots: limits.slots.max(limits.lanes.lichess + 1),
        };
        let w = predict(s, cell, more, pace, 1.0);
        out.push(format!(
            "LICHESS_MAX_STREAMS={}{} (lichess allows {LICHESS_STREAMS_ALLOWED} streams an address; one more is a \
             429 and a minute's penalty for every import): p95 wait {w:.0} s{}",
            more.lanes.lichess,
            if more.slots > limits.slots {
                format!(" with MAX_CONCURRENT_IMPORTS={}", more.slots)
            } else {
                String::new()
            },
            if w <= max_wait { " — meets the limit" } else { "" }
        ));
    }
    // The largest share of each import's games that meets the limit, by bisection.
    if predict(s, cell, limits, pace, 0.01) <= max_wait {
        let (mut lo, mut hi) = (0.01, 1.0);
        for _ in 0..30 {
            let mid = (lo + hi) / 2.0;
            if predict(s, cell, limits, pace, mid) <= max_wait {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        out.push(format!(
            "imports of at most {:.0} % of their games (a smaller `limit`): p95 wait within {max_wait:.0} s",
            lo * 100.0
        ));
    }
    out
}

/// Judges the validation run of a recommendation.
pub fn validation(run: &CellRun, max_wait_secs: f64) -> WaitValidation {
    let p95 = run
        .timing
        .as_ref()
        .and_then(|t| t.provider(Provider::All))
        .map_or(f64::INFINITY, |p| p.wait_p95_secs);
    let mut problems: Vec<String> = run.error.iter().cloned().collect();
    if !run.verification.ok {
        problems.push("not every game was delivered exactly once".into());
    }
    if p95 > max_wait_secs {
        problems.push(format!("p95 wait {p95:.1} s is over {max_wait_secs:.0} s"));
    }
    let limited: u64 = run.upstream.values().map(|u| u.rate_limited).sum();
    if limited > 0 {
        problems.push(format!("the mocks served {limited} 429 Too Many Requests"));
    }
    if !run.fits_budget {
        problems.push("the peak did not fit the budget".into());
    }
    WaitValidation {
        p95_wait_secs: p95,
        peak: run.peak,
        held: problems.is_empty(),
        problems,
    }
}
