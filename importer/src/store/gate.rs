//! One SQLite writer at a time, the queue's writes first.
//!
//! SQLite takes one write transaction at a time for the whole file, and a writer that finds the
//! file locked sleeps and polls (`busy_timeout`) rather than queueing: under 256 imports writing
//! batches, a submission could lose that race for seconds. Here every write of this process waits
//! its turn in a fair (FIFO) async lock instead, and the imports' writes first pass a second lock
//! of their own, so that at most one of them is ever waiting ahead of the queue: a submission,
//! claim or lease renewal waits for at most one batch transaction.

use tokio::sync::{Mutex, MutexGuard};

/// The write turns of one SQLite file in this process.
#[derive(Debug, Default)]
pub(super) struct WriteGate {
    /// Held by an import while it waits for, and holds, the writer.
    games: Mutex<()>,
    /// The one SQLite writer.
    writer: Mutex<()>,
}

/// A turn to write; the write transaction must end before it is dropped.
pub(super) struct Turn<'a> {
    _games: Option<MutexGuard<'a, ()>>,
    _writer: MutexGuard<'a, ()>,
}

impl WriteGate {
    /// A turn for the queue (submit, claim, renew, finish): ahead of every import but one.
    pub(super) async fn queue(&self) -> Turn<'_> {
        Turn {
            _games: None,
            _writer: self.writer.lock().await,
        }
    }

    /// A turn for an import's batch or progress: behind every queue write.
    pub(super) async fn games(&self) -> Turn<'_> {
        let games = self.games.lock().await;
        Turn {
            _games: Some(games),
            _writer: self.writer.lock().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// With imports lined up for the writer, a queue write is served after the one import that
    /// holds it, not after all of them.
    #[tokio::test]
    async fn a_queue_turn_waits_for_one_import_not_all() {
        let gate = Arc::new(WriteGate::default());
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let first = gate.games().await;
        let mut waiting = Vec::new();
        for i in 0..5 {
            let (gate, order) = (Arc::clone(&gate), Arc::clone(&order));
            waiting.push(tokio::spawn(async move {
                let _turn = gate.games().await;
                order.lock().map(|mut o| o.push(format!("import {i}"))).ok();
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let queue = {
            let (gate, order) = (Arc::clone(&gate), Arc::clone(&order));
            tokio::spawn(async move {
                let _turn = gate.queue().await;
                order.lock().map(|mut o| o.push("queue".to_string())).ok();
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(first);
        queue.await.expect("queue turn");
        for w in waiting {
            w.await.expect("import turn");
        }
        let order = order.lock().expect("order").clone();
        let at = order.iter().position(|o| o == "queue");
        assert!(
            matches!(at, Some(0 | 1)),
            "queue served after {at:?} imports: {order:?}"
        );
    }
}
