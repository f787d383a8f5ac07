//! What part of a user's history the database holds completely, and what an import must therefore
//! ask the provider for: the plan of an incremental import.
//!
//! lichess: creation-time ranges in ms, `[lo, hi)`, each meaning "every game created in it that
//! lichess exported when it was read is stored, or was ongoing and is remembered as pending". An
//! import asks only for the windows outside them, newest first (`since`/`until`, which lila reads
//! as `createdAt >= since` and `createdAt < until` on the unfiltered export path: lila
//! `GameApiV2.exportByUser`; `docs/providers.md`).
//!
//! chess.com: months (`YYYY/MM`, the month a game *ended*), each recorded whole or partial with
//! the `ETag` and `Last-Modified` it came with. A game can still be filed under the newest month
//! and, at a month's turn, the one before, so those are always asked again (conditionally: a
//! `304 Not Modified` costs no body); older months recorded whole are not asked at all.
//!
//! Everything here is pure: the store reads and writes these values, the sources follow them.

use std::fmt;

/// A part of a lichess user's history held completely: games created in `[lo_ms, hi_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Inclusive lower edge, ms since the epoch (0: the beginning of the user's history).
    pub lo_ms: i64,
    /// Exclusive upper edge, ms since the epoch.
    pub hi_ms: i64,
}

/// A lichess game that was still being played when its range was read (exported with
/// `ongoing=true`, Result `*`, Termination `Unterminated`): fetched again until it has finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// lichess's 8-character game id.
    pub game_id: String,
    /// Its creation time in ms, at the second (`UTCDate` + `UTCTime`).
    pub created_ms: i64,
}

/// What a window of the export is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowKind {
    /// Above the newest range, or the whole history when nothing is recorded: no `until`.
    Newest,
    /// Between two ranges, or below the oldest.
    Gap,
    /// The second of one pending game, to see whether it has finished.
    Pending(String),
}

/// One request of a lichess import: games created in `[since_ms, until_ms)`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// `since` (inclusive), ms; `None`: from the user's first game.
    pub since_ms: Option<i64>,
    /// `until` (exclusive), ms; `None`: up to now.
    pub until_ms: Option<i64>,
    /// What it is for.
    pub kind: WindowKind,
}

/// The windows an import of this lichess user reads, newest first: above the newest range, then
/// each pending game and gap in creation order, then below the oldest range. With no range, one
/// window: the whole history.
pub fn windows(ranges: &[Range], pending: &[Pending]) -> Vec<Window> {
    let mut sorted = ranges.to_vec();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.hi_ms));
    let mut out = Vec::with_capacity(sorted.len() + pending.len() + 1);
    out.push(Window {
        since_ms: sorted.first().map(|r| r.hi_ms),
        until_ms: None,
        kind: WindowKind::Newest,
    });
    for (i, r) in sorted.iter().enumerate() {
        let below = sorted.get(i + 1).map(|next| next.hi_ms);
        // Nothing to read below a range that starts at the beginning of history.
        if r.lo_ms > 0 && below.is_none_or(|b| b < r.lo_ms) {
            out.push(Window {
                since_ms: below,
                until_ms: Some(r.lo_ms),
                kind: WindowKind::Gap,
            });
        }
    }
    for p in pending {
        let second = p.created_ms.div_euclid(1000) * 1000;
        out.push(Window {
            since_ms: Some(second),
            until_ms: Some(second + 1000),
            kind: WindowKind::Pending(p.game_id.clone()),
        });
    }
    // Creation order, newest first: the import's limit takes the most recent games not stored.
    out.sort_by_key(|w| std::cmp::Reverse(w.until_ms.unwrap_or(i64::MAX)));
    out
}

/// `ranges` with `new` added: every range it overlaps or touches becomes one.
pub fn merge(ranges: &[Range], new: Range) -> Vec<Range> {
    let mut merged = new;
    let mut out: Vec<Range> = Vec::with_capacity(ranges.len() + 1);
    for r in ranges {
        if r.hi_ms < merged.lo_ms || r.lo_ms > merged.hi_ms {
            out.push(*r);
        } else {
            merged.lo_ms = merged.lo_ms.min(r.lo_ms);
            merged.hi_ms = merged.hi_ms.max(r.hi_ms);
        }
    }
    out.push(merged);
    out.sort_by_key(|r| r.lo_ms);
    out
}

/// The start of the second `ms` is in, and of the next one.
fn second_of(ms: i64) -> (i64, i64) {
    let start = ms.div_euclid(1000) * 1000;
    (start, start + 1000)
}

/// Follows one window as its games are handled, and says which range is complete.
///
/// A game's time is known to the second only (PGN `UTCTime`), so the edges are kept conservative:
/// the second of the oldest game handled, and (with no `until`) the second of the newest game
/// seen, stay outside the range; the next import reads them again and drops their games as stored.
#[derive(Debug, Clone)]
pub struct Coverage {
    window: Window,
    /// Upper edge of what is complete: `until`, or the newest game's second.
    top: Option<i64>,
    /// Creation time of the oldest game handed to the batch so far.
    oldest_seen: Option<i64>,
}

impl Coverage {
    /// Coverage of `window`, before any game.
    pub fn new(window: Window) -> Coverage {
        Coverage {
            top: window.until_ms,
            window,
            oldest_seen: None,
        }
    }

    /// A game created at `created_ms` was received (games arrive newest first).
    pub fn saw(&mut self, created_ms: i64) {
        if self.top.is_none() {
            self.top = Some(second_of(created_ms).0);
        }
        self.oldest_seen = Some(self.oldest_seen.map_or(created_ms, |o| o.min(created_ms)));
    }

    /// The range complete once every game received so far, or, when the limit cut the batch,
    /// every game down to `oldest_kept_ms`, is stored. `None` for a pending game's window (it lies
    /// inside a range already) or when nothing is complete yet.
    pub fn complete(&self, oldest_kept_ms: Option<i64>) -> Option<Range> {
        if matches!(self.window.kind, WindowKind::Pending(_)) {
            return None;
        }
        let oldest = oldest_kept_ms.or(self.oldest_seen)?;
        self.range_from(second_of(oldest).1)
    }

    /// The range complete once the window's stream has ended: the whole window.
    pub fn finished(&self) -> Option<Range> {
        if matches!(self.window.kind, WindowKind::Pending(_)) {
            return None;
        }
        self.range_from(self.window.since_ms.unwrap_or(0))
    }

    fn range_from(&self, lo_ms: i64) -> Option<Range> {
        let hi_ms = self.top?;
        let lo_ms = lo_ms.max(self.window.since_ms.unwrap_or(0));
        (lo_ms < hi_ms).then_some(Range { lo_ms, hi_ms })
    }
}

/// What one write completes of a user's history, recorded in the transaction of its batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncProgress {
    /// lichess: a range now held completely.
    pub range: Option<Range>,
    /// lichess: games seen still ongoing, to fetch once finished.
    pub pending_found: Vec<Pending>,
    /// lichess: pending games now finished and handled (ids).
    pub pending_done: Vec<String>,
    /// chess.com: a month read (whole or partial).
    pub month: Option<MonthRecord>,
}

impl SyncProgress {
    /// Whether there is nothing to record.
    pub fn is_empty(&self) -> bool {
        self.range.is_none()
            && self.pending_found.is_empty()
            && self.pending_done.is_empty()
            && self.month.is_none()
    }
}

/// A calendar month, as chess.com files games: by the month they ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    /// Year.
    pub year: u16,
    /// 1..=12.
    pub month: u8,
}

impl Month {
    /// The month before.
    pub fn previous(self) -> Month {
        if self.month <= 1 {
            Month {
                year: self.year.saturating_sub(1),
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    /// Parses `YYYY/MM`.
    pub fn parse(s: &str) -> Option<Month> {
        let (y, m) = s.split_once('/')?;
        let (year, month) = (y.parse().ok()?, m.parse().ok()?);
        (y.len() == 4 && m.len() == 2 && (1..=12).contains(&month)).then_some(Month { year, month })
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}/{:02}", self.year, self.month)
    }
}

/// What chess.com sent a month with, to ask it again conditionally (`If-None-Match`,
/// `If-Modified-Since`; its answer to unchanged data is `304 Not Modified` without a body).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Validators {
    /// The `ETag` header, as sent (weak: `W/"..."`).
    pub etag: Option<String>,
    /// The `Last-Modified` header, as sent.
    pub last_modified: Option<String>,
}

impl Validators {
    /// Whether there is anything to ask with.
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// A chess.com month as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthRecord {
    /// The month.
    pub month: Month,
    /// Every game of it is stored (or failed to parse); `false`: the limit ended inside it.
    pub complete: bool,
    /// What it came with; kept only for a complete month (a partial one must be read whole again).
    pub validators: Validators,
    /// When its answer was last taken (read, or confirmed by a `304`), Unix ms; `None` when
    /// recorded before this was kept. Written by the store, ignored when writing.
    pub checked_ms: Option<i64>,
}

/// How to ask for one month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthRequest {
    /// The month.
    pub month: Month,
    /// Ask conditionally with these (a complete month that may still have grown).
    pub validators: Option<Validators>,
}

/// Older months recorded whole that an import asks again, conditionally, besides the newest two.
///
/// chess.com's published data is a cache refreshed at most every 12 hours, and it has served a
/// month short (4,068 of 4,508 games one day, all of them the next: NotJoeMartinez/chess-insights#60).
/// A month recorded whole is asked again in turn, the one checked longest ago first: a `304` costs
/// no body and one lane-second at chess.com's pace, so two a turn keep a returning user's import at
/// what is new, and a history of M months is checked again every M / 2 imports. A month whose
/// answer changed (its `ETag`) is read again, and only the games not stored are kept.
pub const MONTHS_RECHECKED_PER_IMPORT: usize = 2;

/// The months of an import, newest first, from the archive list and what is recorded: the newest
/// recorded month and the one before are asked with their validators, and so are the
/// [`MONTHS_RECHECKED_PER_IMPORT`] older months recorded whole and checked longest ago; other
/// months recorded whole are not asked at all; anything not recorded whole is read.
pub fn plan_months(archive: &[Month], records: &[MonthRecord]) -> Vec<MonthRequest> {
    let newest = records.iter().map(|r| r.month).max();
    let refresh_from = newest.map(Month::previous);
    // Older whole months, checked longest ago first (never checked first; ties: the older month).
    let mut older: Vec<&MonthRecord> = records
        .iter()
        .filter(|r| r.complete && refresh_from.is_some_and(|f| r.month < f) && archive.contains(&r.month))
        .collect();
    older.sort_by_key(|r| (r.checked_ms, r.month));
    let rechecked: Vec<Month> = older
        .into_iter()
        .take(MONTHS_RECHECKED_PER_IMPORT)
        .map(|r| r.month)
        .collect();
    let mut months: Vec<Month> = archive.to_vec();
    months.sort_unstable_by(|a, b| b.cmp(a));
    months.dedup();
    months
        .into_iter()
        .filter_map(|month| {
            let record = records.iter().find(|r| r.month == month && r.complete);
            match record {
                None => Some(MonthRequest {
                    month,
                    validators: None,
                }),
                Some(_) if refresh_from.is_some_and(|f| month < f) && !rechecked.contains(&month) => None,
                Some(r) => Some(MonthRequest {
                    month,
                    validators: (!r.validators.is_empty()).then(|| r.validators.clone()),
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(lo_ms: i64, hi_ms: i64) -> Range {
        Range { lo_ms, hi_ms }
    }

    #[test]
    fn nothing_recorded_reads_the_whole_history_in_one_window() {
        assert_eq!(
            windows(&[], &[]),
            vec![Window {
                since_ms: None,
                until_ms: None,
                kind: WindowKind::Newest
            }]
        );
    }

    #[test]
    fn windows_are_above_between_and_below_the_ranges_newest_first() {
        let ranges = [r(10_000, 20_000), r(30_000, 40_000)];
        let pending = [Pending {
            game_id: "abcdefgh".into(),
            created_ms: 35_500,
        }];
        let w = windows(&ranges, &pending);
        let edges: Vec<(Option<i64>, Option<i64>)> = w.iter().map(|w| (w.since_ms, w.until_ms)).collect();
        assert_eq!(
            edges,
            vec![
                (Some(40_000), None),
                (Some(35_000), Some(36_000)),
                (Some(20_000), Some(30_000)),
                (None, Some(10_000)),
            ]
        );
        assert_eq!(w[1].kind, WindowKind::Pending("abcdefgh".into()));
        // A range from the beginning of history has nothing below it.
        let from_start = windows(&[r(0, 5_000)], &[]);
        assert_eq!(from_start.len(), 1);
        assert_eq!(from_start[0].since_ms, Some(5_000));
    }

    #[test]
    fn ranges_that_touch_or_overlap_merge() {
        assert_eq!(merge(&[r(0, 10)], r(10, 20)), vec![r(0, 20)]);
        assert_eq!(merge(&[r(0, 10), r(30, 40)], r(5, 35)), vec![r(0, 40)]);
        assert_eq!(merge(&[r(0, 10)], r(20, 30)), vec![r(0, 10), r(20, 30)]);
    }

    #[test]
    fn coverage_keeps_the_edge_seconds_outside() {
        let mut c = Coverage::new(Window {
            since_ms: Some(1_000),
            until_ms: None,
            kind: WindowKind::Newest,
        });
        assert_eq!(c.complete(None), None, "nothing seen");
        c.saw(90_000);
        c.saw(50_000);
        // The newest game's second and the oldest game's second are left out.
        assert_eq!(c.complete(None), Some(r(51_000, 90_000)));
        // Cut by the limit at a game of second 70: what is below it is not claimed.
        assert_eq!(c.complete(Some(70_000)), Some(r(71_000, 90_000)));
        // The stream ended: the whole window down to `since`.
        assert_eq!(c.finished(), Some(r(1_000, 90_000)));

        let gap = Coverage::new(Window {
            since_ms: None,
            until_ms: Some(5_000),
            kind: WindowKind::Gap,
        });
        assert_eq!(gap.finished(), Some(r(0, 5_000)), "an empty gap is known empty");
        let pending = Coverage::new(Window {
            since_ms: Some(1_000),
            until_ms: Some(2_000),
            kind: WindowKind::Pending("x".into()),
        });
        assert_eq!(pending.finished(), None);
    }

    fn m(year: u16, month: u8) -> Month {
        Month { year, month }
    }

    #[test]
    fn months_recorded_whole_and_old_are_asked_only_in_turn() {
        let v = Validators {
            etag: Some("W/\"1\"".into()),
            last_modified: None,
        };
        let whole = |month, checked_ms| MonthRecord {
            month,
            complete: true,
            validators: v.clone(),
            checked_ms,
        };
        let archive = [
            m(2025, 5),
            m(2025, 6),
            m(2025, 7),
            m(2025, 8),
            m(2025, 9),
            m(2025, 10),
            m(2025, 11),
            m(2025, 12),
            m(2026, 1),
        ];
        let records = [
            whole(m(2025, 5), Some(300)),
            whole(m(2025, 6), Some(100)),
            whole(m(2025, 7), Some(200)),
            whole(m(2025, 8), Some(100)),
            whole(m(2025, 9), Some(400)),
            MonthRecord {
                month: m(2025, 10),
                complete: false,
                validators: Validators::default(),
                checked_ms: Some(500),
            },
            whole(m(2025, 11), Some(500)),
            whole(m(2025, 12), Some(500)),
        ];
        let plan = plan_months(&archive, &records);
        let asked: Vec<(Month, bool)> = plan.iter().map(|p| (p.month, p.validators.is_some())).collect();
        assert_eq!(
            asked,
            vec![
                (m(2026, 1), false),  // new
                (m(2025, 12), true),  // the newest recorded: conditionally
                (m(2025, 11), true),  // the one before: conditionally
                (m(2025, 10), false), // partial: read whole again
                (m(2025, 8), true),   // checked longest ago (a tie: the older month first)
                (m(2025, 6), true),   // in turn, conditionally
            ]
        );
        assert_eq!(MONTHS_RECHECKED_PER_IMPORT, 2);
        // Checked again, they go to the back of the line: the next import asks the next two.
        let later: Vec<MonthRecord> = records
            .iter()
            .cloned()
            .map(|mut r| {
                if [m(2025, 6), m(2025, 8)].contains(&r.month) {
                    r.checked_ms = Some(900);
                }
                r
            })
            .collect();
        let next: Vec<Month> = plan_months(&archive, &later)
            .iter()
            .map(|p| p.month)
            .filter(|month| *month < m(2025, 10))
            .collect();
        assert_eq!(next, vec![m(2025, 7), m(2025, 5)]);
        // A month recorded before checks were kept is asked first.
        let mut unknown = later.clone();
        unknown[4].checked_ms = None;
        let first: Vec<Month> = plan_months(&archive, &unknown)
            .iter()
            .map(|p| p.month)
            .filter(|month| *month < m(2025, 10))
            .collect();
        assert_eq!(first, vec![m(2025, 9), m(2025, 7)]);
        assert_eq!(m(2026, 1).previous(), m(2025, 12));
        assert_eq!(Month::parse("2025/03"), Some(m(2025, 3)));
        assert_eq!(Month::parse("2025/13"), None);
        assert_eq!(m(2025, 3).to_string(), "2025/03");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Ranges as batches record them: mostly on whole seconds (a PGN time has no
        /// milliseconds, so ranges touch and overlap at second edges), some anywhere, in the first
        /// 20 s, up to 4 s long.
        fn ranges() -> impl Strategy<Value = Vec<Range>> {
            let on_seconds = (0i64..20, 1i64..4).prop_map(|(lo, len)| r(lo * 1000, (lo + len) * 1000));
            let anywhere = (0i64..20_000, 1i64..4_000).prop_map(|(lo, len)| r(lo, lo + len));
            prop::collection::vec(prop_oneof![3 => on_seconds, 1 => anywhere], 0..8)
        }

        fn merged(all: &[Range]) -> Vec<Range> {
            all.iter().fold(Vec::new(), |acc, new| merge(&acc, *new))
        }

        fn covered(ranges: &[Range], t: i64) -> bool {
            ranges.iter().any(|x| (x.lo_ms..x.hi_ms).contains(&t))
        }

        /// Every edge of every range, and its neighbours: where a mistake would show.
        fn edges(ranges: &[Range]) -> Vec<i64> {
            let mut points = vec![0, 1, 25_000];
            for x in ranges {
                points.extend([
                    x.lo_ms - 1,
                    x.lo_ms,
                    x.lo_ms + 1,
                    x.hi_ms - 1,
                    x.hi_ms,
                    x.hi_ms + 1,
                ]);
            }
            points.retain(|t| *t >= 0);
            points
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

            /// Merging is order-free and idempotent, its result sorted and apart (no two ranges
            /// overlap or touch), and it covers exactly the instants its parts covered: every edge
            /// kept.
            #[test]
            fn merging_is_order_free_idempotent_and_keeps_every_edge(all in ranges(), seed in any::<u64>()) {
                let once = merged(&all);
                let mut shuffled = all.clone();
                // A permutation drawn from the seed.
                let mut state = seed | 1;
                for i in (1..shuffled.len()).rev() {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    shuffled.swap(i, (state % (i as u64 + 1)) as usize);
                }
                prop_assert_eq!(&merged(&shuffled), &once);
                let twice = once.iter().fold(once.clone(), |acc, x| merge(&acc, *x));
                prop_assert_eq!(&twice, &once);
                for pair in once.windows(2) {
                    prop_assert!(pair[0].hi_ms < pair[1].lo_ms, "{:?} apart", pair);
                }
                for t in edges(&all) {
                    prop_assert_eq!(covered(&once, t), covered(&all, t), "instant {}", t);
                }
            }

            /// The windows an import reads and the ranges it holds partition the timeline: every
            /// instant from 0 on is in exactly one of them.
            #[test]
            fn windows_and_ranges_partition_the_timeline(all in ranges()) {
                let held = merged(&all);
                let read = windows(&held, &[]);
                let in_window = |t: i64| {
                    read.iter()
                        .filter(|w| w.since_ms.is_none_or(|s| s <= t) && w.until_ms.is_none_or(|u| t < u))
                        .count()
                };
                for t in edges(&held) {
                    let n = in_window(t) + usize::from(covered(&held, t));
                    prop_assert_eq!(n, 1, "instant {} in {} of windows {:?} and ranges {:?}", t, n, read, held);
                }
            }
        }
    }
}
