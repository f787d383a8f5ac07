//! The bad days a scenario asks for while its imports run, and whether they struck:
//!
//! - provider outages (`upstream.outages`), put on the mocks from the attack's start, then
//!   judged: a client that waits sends at most [`upstream::outage::allowance`] requests into one;
//! - the importer's PostgreSQL backends terminated in the middle of a write every few seconds
//!   (`database_faults`), as a managed PostgreSQL's restart terminates them (`FATAL 57P01`,
//!   transact-rs/sqlx#2763). A write lasts milliseconds: a look at `pg_stat_activity` every few
//!   seconds finds one by chance, rarely (measured: 1 in a 60 s run). So each round holds the
//!   cell's `games` table in `SHARE` mode for at most a second: the next batch that writes games
//!   waits on it inside its transaction, and is terminated there; then the table is let go.
//!
//! A fault that never struck proves nothing, so a cell whose outage answered no request, or
//! whose terminations found no backend at work, fails saying so (as a crash that never struck).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection};

use crate::scenario::{Cell, Checked};
use crate::target::db::CellDb;
use crate::upstream::{self, OutageRecord, Upstreams};

/// The importer's application_name on its PostgreSQL connections: only its backends are
/// terminated, never the harness's own or another program's.
pub const IMPORTER_APPLICATION_NAME: &str = "chess-games-importer";

/// Backends of the importer waiting, inside a transaction, for the lock a round holds: writes
/// cut in the middle. Only the importer's (its application_name), never the harness's own.
const TERMINATE: &str = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
     WHERE application_name = $1 AND wait_event_type = 'Lock' AND xact_start IS NOT NULL \
     AND datname = current_database() AND pid <> pg_backend_pid()";

/// How often a round looks for a write waiting on its lock.
const LOOK_EVERY: Duration = Duration::from_millis(5);

/// Longest a round holds the table: the imports' writes wait that long at most.
const HOLD_AT_MOST: Duration = Duration::from_secs(1);

/// Puts the scenario's outages on the mocks, each `after_secs` (provider seconds) from now.
pub(super) fn schedule_outages(s: &Checked, mocks: &Upstreams) {
    let scale = s.raw.upstream.time_scale;
    for o in &s.raw.upstream.outages {
        let after = Duration::from_secs_f64(o.after_secs / scale);
        mocks.schedule_outage(o.provider, after, o.outage(scale));
    }
}

/// The outages of a cell run since `started`, each judged against what a client that waits
/// sends (its lanes in every process may each probe once per doubling wait), in provider seconds.
pub(super) fn judged_outages(
    s: &Checked,
    cell: &Cell,
    mocks: &Upstreams,
    started: Instant,
) -> Vec<OutageRecord> {
    let lanes = crate::scenario::lanes(&cell.env);
    let instances = u64::from(s.raw.instances.max(1));
    mocks
        .outages(started)
        .into_iter()
        .map(|mut r| {
            let lanes = lanes.of(r.provider);
            // Judged on the real duration: the importer's waits are real seconds.
            let real = Duration::from_secs_f64(r.duration_secs);
            r.allowed_requests = Some(upstream::outage::allowance(real, instances * u64::from(lanes)));
            r.scaled(s.raw.upstream.time_scale)
        })
        .collect()
}

/// What terminating the importer's backends did, for `results.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatabaseFaultRecord {
    /// Seconds between two rounds (real time).
    pub every_secs: f64,
    /// Rounds begun while the imports ran (each holds the games table for at most a second).
    pub rounds: u64,
    /// Rounds in which a write came, waited on the table and had its backend terminated.
    pub rounds_that_struck: u64,
    /// Rounds that could not take the table within 1 s: a write held it all that time.
    #[serde(default)]
    pub rounds_table_busy: u64,
    /// Backends terminated, all rounds together.
    pub terminated: u64,
    /// Why the rounds stopped early, if they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The task terminating the importer's backends, running until it is stopped.
pub(super) struct Terminator {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<DatabaseFaultRecord>,
}

impl Terminator {
    /// Starts the rounds the scenario asks for on the cell's PostgreSQL, if it asks for any.
    pub(super) fn start(s: &Checked, db: &CellDb) -> Option<Terminator> {
        let faults = s.raw.database_faults.as_ref()?;
        let every = Duration::from_secs_f64(faults.terminate_backends_every_secs);
        let target = match db {
            CellDb::Postgres { server, schema } => Some((server.clone(), schema.clone())),
            // `harness check` refuses it on SQLite; a record says so if it ever gets here.
            CellDb::Sqlite { .. } => None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(terminate_every(target, every, stopped));
        Some(Terminator { stop, task })
    }

    /// Stops the rounds; what they did.
    pub(super) async fn stop(self) -> DatabaseFaultRecord {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_else(|e| DatabaseFaultRecord {
            error: Some(format!("the terminating task died: {e}")),
            ..DatabaseFaultRecord::default()
        })
    }
}

async fn terminate_every(
    target: Option<(String, String)>,
    every: Duration,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) -> DatabaseFaultRecord {
    let mut rec = DatabaseFaultRecord {
        every_secs: every.as_secs_f64(),
        ..DatabaseFaultRecord::default()
    };
    let Some((server, schema)) = target else {
        rec.error = Some("database faults need PostgreSQL".into());
        return rec;
    };
    // Two connections: one holds the lock in its transaction, the other terminates.
    let (mut holder, mut killer) = match (
        PgConnection::connect(&server).await,
        PgConnection::connect(&server).await,
    ) {
        (Ok(h), Ok(k)) => (h, k),
        (Err(e), _) | (_, Err(e)) => {
            rec.error = Some(format!("connecting to terminate backends: {e}"));
            return rec;
        }
    };
    let games = format!("\"{}\".games", schema.replace('"', "\"\""));
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = tokio::time::sleep(every) => {}
        }
        rec.rounds += 1;
        match round(&mut holder, &mut killer, &games, &mut stopped).await {
            Ok(Round::Struck(n)) => {
                rec.terminated += n;
                rec.rounds_that_struck += 1;
                tracing::info!(terminated = n, "importer backends terminated mid-write");
            }
            Ok(Round::NoWrite) => {}
            Ok(Round::Busy) => rec.rounds_table_busy += 1,
            Ok(Round::Stopped) => break,
            Err(e) => {
                rec.error = Some(format!("terminating backends: {e}"));
                break;
            }
        }
    }
    let _ = holder.close().await;
    let _ = killer.close().await;
    rec
}

/// How a round ended.
enum Round {
    /// It terminated this many backends.
    Struck(u64),
    /// No write came while it held the table.
    NoWrite,
    /// A write held the table a whole second: the round could not take it.
    Busy,
    /// The imports ended.
    Stopped,
}

/// One round: hold `games` in SHARE mode (writers wait, readers do not) until a backend of the
/// importer waits on it, terminate it, let the table go.
async fn round(
    holder: &mut PgConnection,
    killer: &mut PgConnection,
    games: &str,
    stopped: &mut tokio::sync::oneshot::Receiver<()>,
) -> Result<Round, sqlx::Error> {
    let mut tx = holder.begin().await?;
    // A write already under way keeps the lock from us; not for long, or the round is skipped.
    sqlx::query("SET LOCAL lock_timeout = '1s'")
        .execute(&mut *tx)
        .await?;
    if let Err(e) = sqlx::query(&format!("LOCK TABLE {games} IN SHARE MODE"))
        .execute(&mut *tx)
        .await
    {
        tx.rollback().await?;
        return match e.as_database_error().and_then(|d| d.code()).as_deref() {
            // lock_not_available
            Some("55P03") => Ok(Round::Busy),
            _ => Err(e),
        };
    }
    let until = Instant::now() + HOLD_AT_MOST;
    let outcome = loop {
        let killed: Vec<bool> = sqlx::query_scalar(TERMINATE)
            .bind(IMPORTER_APPLICATION_NAME)
            .fetch_all(&mut *killer)
            .await?;
        let n = killed.iter().filter(|k| **k).count() as u64;
        if n > 0 {
            break Round::Struck(n);
        }
        if Instant::now() >= until {
            break Round::NoWrite;
        }
        tokio::select! {
            _ = &mut *stopped => break Round::Stopped,
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
    };
    tx.rollback().await?;
    Ok(outcome)
}

/// Why the cell's faults make it fail, if they do: an outage that struck no request or that the
/// importer hammered, terminations that failed or never found a backend at work.
pub(super) fn fault_error(outages: &[OutageRecord], db: Option<&DatabaseFaultRecord>) -> Option<String> {
    for o in outages {
        let what = format!(
            "the {} outage ({} for {:.0} s from {:.0} s)",
            o.provider, o.status, o.duration_secs, o.start_secs
        );
        if o.requests == 0 {
            return Some(format!(
                "{what} answered no request: it struck no import, so it proves nothing (begin it earlier)"
            ));
        }
        if o.hammered() {
            return Some(format!(
                "{what}: the importer sent {} requests into it, more than the {} a client that waits sends \
                 (per lane and process, one per wait doubling from 1 s, + 2)",
                o.requests,
                o.allowed_requests.unwrap_or(0)
            ));
        }
    }
    let db = db?;
    if let Some(e) = &db.error {
        return Some(format!("database faults: {e}"));
    }
    (db.terminated == 0).then(|| {
        format!(
            "database faults never struck: in {} rounds ({} of which could not take the games table) no backend \
             with application_name '{}' came to write while the table was held",
            db.rounds, db.rounds_table_busy, IMPORTER_APPLICATION_NAME
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{OutageBody, Platform};

    fn outage(requests: u64, allowed: u64) -> OutageRecord {
        OutageRecord {
            provider: Platform::Lichess,
            status: 502,
            body: OutageBody::Html,
            start_secs: 5.0,
            duration_secs: 30.0,
            requests,
            gaps_secs: Vec::new(),
            first_request_secs: None,
            allowed_requests: Some(allowed),
        }
    }

    #[test]
    fn a_fault_that_never_struck_or_a_client_that_hammered_fails_the_cell() {
        assert_eq!(fault_error(&[outage(4, 7)], None), None);
        let never = fault_error(&[outage(0, 7)], None).unwrap();
        assert!(never.contains("answered no request"), "{never}");
        let hammered = fault_error(&[outage(30, 7)], None).unwrap();
        assert!(
            hammered.contains("30 requests") && hammered.contains("the 7"),
            "{hammered}"
        );
        let idle = DatabaseFaultRecord {
            every_secs: 2.0,
            rounds: 10,
            ..DatabaseFaultRecord::default()
        };
        let e = fault_error(&[], Some(&idle)).unwrap();
        assert!(
            e.contains("never struck") && e.contains("chess-games-importer"),
            "{e}"
        );
        let struck = DatabaseFaultRecord {
            terminated: 3,
            ..idle
        };
        assert_eq!(fault_error(&[], Some(&struck)), None);
    }
}
