//! The yardstick for import throughput: pgn-reader's own parse rate over the
//! same games the cell imported, measured in the same run on the same machine.
//!
//! pgn-reader reads with a visitor that only counts moves, the cheapest
//! useful reading; the import's games/s divided by this rate says how close
//! the whole pipeline (network, framing, parsing, deduplication, storage)
//! comes to parsing alone.

use std::ops::ControlFlow;
use std::time::Instant;

use pgn_reader::{RawTag, Reader, SanPlus, Visitor};
use serde::{Deserialize, Serialize};

use crate::upstream::{MockUser, games};

/// pgn-reader's rate over a cell's games.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParseRate {
    /// Games read.
    pub games: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Games per second, best of the timed passes.
    pub games_per_sec: f64,
}

struct CountMoves;

impl Visitor for CountMoves {
    type Tags = ();
    type Movetext = u32;
    type Output = u32;

    fn begin_tags(&mut self) -> ControlFlow<u32, ()> {
        ControlFlow::Continue(())
    }
    fn tag(&mut self, _: &mut (), _: &[u8], _: RawTag<'_>) -> ControlFlow<u32> {
        ControlFlow::Continue(())
    }
    fn begin_movetext(&mut self, _: ()) -> ControlFlow<u32, u32> {
        ControlFlow::Continue(0)
    }
    fn san(&mut self, n: &mut u32, _: SanPlus) -> ControlFlow<u32> {
        *n += 1;
        ControlFlow::Continue(())
    }
    fn end_game(&mut self, n: u32) -> u32 {
        n
    }
}

/// Reads every game of `bytes`; returns how many.
pub fn read_all(bytes: &[u8]) -> u64 {
    let mut reader = Reader::new(bytes);
    let mut n = 0;
    while let Ok(Some(plies)) = reader.read_game(&mut CountMoves) {
        std::hint::black_box(plies);
        n += 1;
    }
    n
}

/// pgn-reader's rate over the newest `limit` games of each user (as the mock serves them), best of 5 passes.
pub fn measure(users: &[(MockUser, u64)], seed: u64) -> ParseRate {
    let bytes: Vec<u8> = users
        .iter()
        .flat_map(|(user, limit)| games::export(user, seed, *limit))
        .collect();
    let mut best = f64::INFINITY;
    let mut games = 0;
    for _ in 0..5 {
        let started = Instant::now();
        games = read_all(&bytes);
        best = best.min(started.elapsed().as_secs_f64());
    }
    ParseRate {
        games,
        bytes: bytes.len() as u64,
        games_per_sec: if best > 0.0 { games as f64 / best } else { 0.0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use settings::Platform;

    #[test]
    fn reads_every_generated_game() {
        let user = MockUser::new("ref", Platform::Lichess, 40);
        let rate = measure(&[(user, 30)], 7);
        assert_eq!(rate.games, 30);
        assert!(rate.bytes > 30 * 500, "{} bytes", rate.bytes);
        assert!(rate.games_per_sec > 0.0);
    }
}
