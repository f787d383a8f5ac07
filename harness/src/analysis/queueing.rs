//! A queueing prediction of each user's wait from the providers' pace, the
//! importer's slots and lanes, and the workload's arrivals.
//!
//! The model is the importer's scheduler played forward in provider time,
//! with no noise: imports queue in POST order; whenever a slot is free, the
//! oldest queued import whose provider has a free lane starts (a slot never
//! waits for a lane, as `importer::scheduler` claims); it holds its slot and
//! its lane until it ends. An import's run time is the provider's alone:
//! a lichess export streams `games / pace` seconds (docs/providers.md: 20 games/s
//! anonymous, 30 with a token); a chess.com import asks for the archive list
//! and then each month, one request at a time, each answered after the
//! provider's latency. The importer's own parsing and writing are left out:
//! at the providers' pace they take a few percent of the time (the measured
//! runs say how far off that leaves the prediction).

use settings::Platform;
use statrs::statistics::{Data, OrderStatistics};

use crate::scenario::Lanes;

/// One import to place.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The provider, whose lanes it takes.
    pub platform: Platform,
    /// When it is posted, provider seconds.
    pub arrival_secs: f64,
    /// How long the provider takes to deliver it, provider seconds.
    pub service_secs: f64,
}

/// The importer's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// MAX_CONCURRENT_IMPORTS.
    pub slots: u32,
    /// LICHESS_MAX_STREAMS and CHESSCOM_MAX_REQUESTS.
    pub lanes: Lanes,
}

/// What the model predicts for one import.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placed {
    /// Seconds from its POST to its start.
    pub wait_secs: f64,
    /// When it ends, provider seconds from the start.
    pub done_at_secs: f64,
}

/// The lichess export's time for `games` at `games_per_sec` (0: unpaced, no time).
pub fn lichess_secs(games: u64, games_per_sec: f64) -> f64 {
    if games_per_sec > 0.0 {
        games as f64 / games_per_sec
    } else {
        0.0
    }
}

/// chess.com's time for an import over `months` archives: the list, then each month, in turn.
pub fn chess_com_secs(months: u32, latency_secs: f64) -> f64 {
    f64::from(months + 1) * latency_secs
}

/// Places every job, in the order given (their POST order for equal arrivals).
pub fn place(jobs: &[Job], limits: Limits) -> Vec<Placed> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by(|&a, &b| {
        jobs[a]
            .arrival_secs
            .total_cmp(&jobs[b].arrival_secs)
            .then(a.cmp(&b))
    });
    let mut placed: Vec<Option<Placed>> = vec![None; jobs.len()];
    // Running jobs: (end, provider).
    let mut running: Vec<(f64, Platform)> = Vec::new();
    let mut queue: Vec<usize> = Vec::new();
    let mut next = 0;
    let mut now = 0.0f64;
    while next < order.len() || !queue.is_empty() {
        // Everything that happens at `now`: ends free their slot and lane, arrivals queue.
        running.retain(|(end, _)| *end > now);
        while next < order.len() && jobs[order[next]].arrival_secs <= now {
            queue.push(order[next]);
            next += 1;
        }
        let mut k = 0;
        while k < queue.len() && running.len() < limits.slots as usize {
            let j = queue[k];
            let lanes = limits.lanes.of(jobs[j].platform);
            let busy = running.iter().filter(|(_, p)| *p == jobs[j].platform).count();
            if busy < lanes as usize {
                let end = now + jobs[j].service_secs;
                running.push((end, jobs[j].platform));
                placed[j] = Some(Placed {
                    wait_secs: now - jobs[j].arrival_secs,
                    done_at_secs: end,
                });
                queue.remove(k);
            } else {
                k += 1;
            }
        }
        let next_end = running.iter().map(|(e, _)| *e).fold(f64::INFINITY, f64::min);
        let next_arrival = order.get(next).map_or(f64::INFINITY, |&j| jobs[j].arrival_secs);
        let then = next_end.min(next_arrival);
        if !then.is_finite() {
            // Queued jobs no lane can ever take (0 lanes): they never start.
            break;
        }
        now = then;
    }
    placed
        .into_iter()
        .map(|p| {
            p.unwrap_or(Placed {
                wait_secs: f64::INFINITY,
                done_at_secs: f64::INFINITY,
            })
        })
        .collect()
}

/// The 95th percentile of the waits, as `observe::timing` computes the measured one.
pub fn p95_wait(placed: &[Placed]) -> f64 {
    if placed.is_empty() {
        return 0.0;
    }
    Data::new(placed.iter().map(|p| p.wait_secs).collect::<Vec<_>>()).quantile(0.95)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lichess(at: f64, secs: f64) -> Job {
        Job {
            platform: Platform::Lichess,
            arrival_secs: at,
            service_secs: secs,
        }
    }

    const ONE_LANE: Limits = Limits {
        slots: 3,
        lanes: Lanes {
            lichess: 1,
            chess_com: 1,
        },
    };

    #[test]
    fn one_lane_serves_lichess_users_one_after_another() {
        // The seed's case: 500 games at 20 games/s is 25 s; three at once, a fourth at 5 s.
        let t = lichess_secs(500, 20.0);
        assert_eq!(t, 25.0);
        let jobs = [lichess(0.0, t), lichess(0.0, t), lichess(0.0, t), lichess(5.0, t)];
        let p = place(&jobs, ONE_LANE);
        let waits: Vec<f64> = p.iter().map(|p| p.wait_secs).collect();
        assert_eq!(waits, vec![0.0, 25.0, 50.0, 70.0]);
        assert_eq!(p[3].done_at_secs, 100.0);
        // Two lanes: the 4th starts when the first two end.
        let two = Limits {
            lanes: Lanes {
                lichess: 2,
                ..ONE_LANE.lanes
            },
            ..ONE_LANE
        };
        let waits: Vec<f64> = place(&jobs, two).iter().map(|p| p.wait_secs).collect();
        assert_eq!(waits, vec![0.0, 0.0, 25.0, 20.0]);
    }

    #[test]
    fn a_slot_never_waits_for_a_lane() {
        // Two lichess jobs, one lane, two slots: the chess.com job behind them starts at once.
        let jobs = [
            lichess(0.0, 10.0),
            lichess(0.0, 10.0),
            Job {
                platform: Platform::ChessCom,
                arrival_secs: 0.0,
                service_secs: chess_com_secs(3, 0.5),
            },
        ];
        let limits = Limits { slots: 2, ..ONE_LANE };
        let p = place(&jobs, limits);
        assert_eq!(p[2].wait_secs, 0.0);
        assert_eq!(p[2].done_at_secs, 2.0);
        assert_eq!(p[1].wait_secs, 10.0);
    }

    #[test]
    fn slots_bind_when_lanes_do_not() {
        let jobs = [lichess(0.0, 10.0), lichess(0.0, 10.0), lichess(0.0, 10.0)];
        let limits = Limits {
            slots: 1,
            lanes: Lanes {
                lichess: 2,
                chess_com: 1,
            },
        };
        let waits: Vec<f64> = place(&jobs, limits).iter().map(|p| p.wait_secs).collect();
        assert_eq!(waits, vec![0.0, 10.0, 20.0]);
        let p95 = p95_wait(&place(&jobs, limits));
        assert!((19.0..=20.0).contains(&p95), "{p95}");
    }

    #[test]
    fn no_lane_never_starts() {
        let limits = Limits {
            lanes: Lanes {
                lichess: 0,
                ..ONE_LANE.lanes
            },
            ..ONE_LANE
        };
        assert!(place(&[lichess(0.0, 1.0)], limits)[0].wait_secs.is_infinite());
    }
}
