//! Which part of the history a capture takes, and what production saw in it.

use chrono::{DateTime, Duration, Utc};
use statrs::statistics::{Data, OrderStatistics};

use super::read::JobRecord;
use crate::scenario::ObservedProvider;
use settings::Platform;

/// The window of length `length` holding the most arrivals: it starts at an arrival, and of
/// windows holding as many, the earliest wins. `arrivals` sorted, oldest first; `None` when empty.
pub fn busiest(arrivals: &[DateTime<Utc>], length: Duration) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let mut best: Option<(usize, DateTime<Utc>)> = None;
    let mut end = 0;
    for (i, &start) in arrivals.iter().enumerate() {
        end = end.max(i);
        while end < arrivals.len() && arrivals[end] < start + length {
            end += 1;
        }
        let count = end - i;
        // Strictly more: a later window with as many arrivals does not replace an earlier one.
        if best.is_none_or(|(n, _)| count > n) {
            best = Some((count, start));
        }
    }
    best.map(|(_, start)| (start, start + length))
}

/// Seconds from `from` to `to`, to the millisecond.
pub(super) fn secs(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

/// p50, p95 (statrs' interpolated quantile, as the harness's own timing) and max; zeros when empty.
fn spread(v: Vec<f64>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let max = v.iter().copied().fold(0.0, f64::max);
    let mut d = Data::new(v);
    (d.median(), d.quantile(0.95), max)
}

/// What `platform`'s jobs among `jobs` gave their users; `None` when it had none.
pub fn observed(jobs: &[JobRecord], platform: Platform) -> Option<ObservedProvider> {
    let mine: Vec<&JobRecord> = jobs.iter().filter(|j| j.platform == platform).collect();
    if mine.is_empty() {
        return None;
    }
    let waits = mine
        .iter()
        .filter_map(|j| Some(secs(j.created_at, j.started_at?)))
        .collect();
    let runs: Vec<f64> = mine
        .iter()
        .filter_map(|j| Some(secs(j.started_at?, j.finished_at?)))
        .collect();
    let run_total_secs = runs.iter().sum();
    let (wait_p50_secs, wait_p95_secs, wait_max_secs) = spread(waits);
    let (run_p50_secs, run_p95_secs, run_max_secs) = spread(runs);
    let count = |status: &str| mine.iter().filter(|j| j.status == status).count() as u32;
    let sum = |f: fn(&JobRecord) -> i64| mine.iter().map(|j| u64::try_from(f(j)).unwrap_or(0)).sum();
    Some(ObservedProvider {
        imports: mine.len() as u32,
        completed: count("completed"),
        failed: count("failed"),
        wait_p50_secs,
        wait_p95_secs,
        wait_max_secs,
        run_p50_secs,
        run_p95_secs,
        run_max_secs,
        run_total_secs,
        games_fetched: sum(|j| j.fetched),
        games_imported: sum(|j| j.imported),
        games_skipped: sum(|j| j.skipped),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000 + secs, 0).expect("time")
    }

    #[test]
    fn the_busiest_window_is_the_earliest_of_the_fullest() {
        let arrivals: Vec<DateTime<Utc>> = [0, 10, 20, 100, 105, 109, 300, 305, 309].map(at).to_vec();
        // Two windows of 10 s hold 3 arrivals (100..110 and 300..310): the earlier wins.
        assert_eq!(
            busiest(&arrivals, Duration::seconds(10)),
            Some((at(100), at(110)))
        );
        // 30 s: 0..30 holds 3, 100..130 holds 3, 300..330 holds 3: the first.
        assert_eq!(busiest(&arrivals, Duration::seconds(30)), Some((at(0), at(30))));
        assert_eq!(busiest(&[], Duration::seconds(30)), None);
        // The end is exclusive: an arrival exactly at start + length belongs to the next window.
        let edge = [0, 10, 10].map(at).to_vec();
        assert_eq!(busiest(&edge, Duration::seconds(10)), Some((at(10), at(20))));
    }
}
