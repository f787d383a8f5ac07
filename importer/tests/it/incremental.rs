//! A returning user's import costs what is new: lichess windows outside the recorded ranges,
//! late-finishing games fetched once finished, chess.com months skipped or answered 304, and a
//! database from before the ranges read as before, once.
//!
//! Each test runs two moments of a user's history: the importer imports the user as they were,
//! stops, and imports them again from mocks that serve the user as they are now (more games,
//! a game finished), on the same database.

use harness::upstream::{MockUser, Platform, Upstreams};

use crate::SEED;
use crate::support::{Importer, TestDb};
use crate::{on_both_databases, on_every_database};

/// The ids of games `indices` of `user`, as stored.
pub(crate) fn ids(user: &MockUser, indices: impl Iterator<Item = u64>) -> Vec<String> {
    indices
        .map(|i| harness::upstream::games::stored_key(user, i))
        .collect()
}

/// Asserts that exactly `expected` are stored for `user`, each once.
pub(crate) async fn assert_stored_exactly(db: &TestDb, user: &str, expected: &[String]) {
    assert_eq!(db.games_of(user).await, expected.len() as i64, "rows of {user}");
    assert_eq!(
        db.distinct_games_of(user).await,
        expected.len() as i64,
        "distinct games of {user}"
    );
    assert_eq!(
        db.count_among(user, expected).await,
        expected.len() as i64,
        "the expected games of {user}"
    );
}

/// Imports `user` once against mocks serving `then`, with extra environment, and stops the importer.
pub(crate) async fn import_then_with(
    db: &TestDb,
    then: &MockUser,
    limit: u64,
    env: &[(&str, &str)],
) -> serde_json::Value {
    let mocks = Upstreams::start(std::slice::from_ref(then), SEED)
        .await
        .expect("mocks");
    let imp = Importer::start(db, &mocks, env).await;
    let job = imp.import(&then.name, then.platform.as_str(), limit).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(imp.stop().await, Some(0));
    job
}

/// Imports `user` once against mocks serving `then`, and stops the importer.
async fn import_then(db: &TestDb, then: &MockUser, limit: u64) -> serde_json::Value {
    import_then_with(db, then, limit, &[]).await
}

async fn lichess_returning_user_reads_only_what_is_new(db: TestDb) {
    let now = MockUser::new("returning", Platform::Lichess, 1000);
    // Then: the 200 newest games were not played yet, and game 300 was still being played.
    let then = MockUser {
        unplayed: 200,
        ongoing: vec![300],
        ..now.clone()
    };
    let first = import_then(&db, &then, 300).await;
    assert_eq!(first["games_imported"], 300, "{first}");
    let mut stored: Vec<u64> = (200..=500).filter(|&i| i != 300).collect();
    assert_stored_exactly(&db, "returning", &ids(&now, stored.iter().copied())).await;

    let mocks = Upstreams::start(std::slice::from_ref(&now), SEED)
        .await
        .expect("mocks");
    let imp = Importer::start(&db, &mocks, &[]).await;
    // The newest new games first (0..200), then the game that finished late (300), then the
    // older ones below what is stored (501..550): the 250 most recent games not stored, each once.
    let second = imp.import("returning", "lichess", 250).await;
    assert_eq!(second["games_imported"], 250, "{second}");
    // Read again: the newest stored game's second (200) and the oldest's (500), nothing else.
    assert_eq!(second["games_skipped_existing"], 2, "{second}");
    assert_eq!(second["games_fetched"], 252, "{second}");
    // Unpaced, the mock writes ahead into the socket's buffers what the importer never reads.
    assert!(mocks.games_served_to(Platform::Lichess, "returning") >= 252);
    stored.extend((0..200).chain([300]).chain(501..550));
    assert_stored_exactly(&db, "returning", &ids(&now, stored.iter().copied())).await;

    // The rest of the history, below what is stored; nothing is read twice but the edges.
    let third = imp.import("returning", "lichess", 10_000).await;
    assert_eq!(third["games_imported"], 450, "{third}");
    assert_eq!(third["games_skipped_existing"], 2, "{third}");
    assert_stored_exactly(&db, "returning", &ids(&now, 0..1000)).await;
    assert_eq!(imp.stop().await, Some(0));
}
on_every_database!(
    lichess_returning_user,
    lichess_returning_user_reads_only_what_is_new
);

async fn chess_com_returning_user_skips_old_months_and_gets_304s(db: TestDb) {
    let now = MockUser {
        months: 6,
        ..MockUser::new("backagain", Platform::ChessCom, 600)
    };
    // Then: the newest month had 50 of its 100 games.
    let then = MockUser {
        unplayed: 50,
        ..now.clone()
    };
    let first = import_then(&db, &then, 10_000).await;
    assert_eq!(first["games_imported"], 550, "{first}");

    let mocks = Upstreams::start(std::slice::from_ref(&now), SEED)
        .await
        .expect("mocks");
    let imp = Importer::start(&db, &mocks, &[]).await;
    let second = imp.import("backagain", "chess.com", 500).await;
    assert_eq!(second["games_imported"], 50, "{second}");
    // The newest month again (it grew: 50 stored, 50 new); the month before answered 304; of
    // the four older months, stored whole, the two checked longest ago were asked again
    // conditionally (304s, no body: a month served short heals this way) and the other two not
    // at all. The newest month outgrows a batch (100 games > 50) and is still downloaded once:
    // spooled as it arrives, its new games read back from the spool (it was read twice before,
    // 6 requests and 200 games served).
    assert_eq!(second["games_fetched"], 100, "{second}");
    let served = mocks.served()["chess.com"];
    assert_eq!(served.not_modified, 3, "{served:?}");
    assert_eq!(
        served.requests, 5,
        "archive list, newest month once, three 304s: {served:?}"
    );
    assert_eq!(served.games_served, 100, "{served:?}");
    assert_stored_exactly(&db, "backagain", &ids(&now, 0..600)).await;

    // Nothing changed: four 304s (the newest two, and the two older months now checked longest
    // ago, not those checked by the second import), no game read.
    let third = imp.import("backagain", "chess.com", 500).await;
    assert_eq!(third["games_fetched"], 0, "{third}");
    assert_eq!(mocks.served()["chess.com"].not_modified, 7);
    assert!(
        imp.get_text("/metrics")
            .await
            .contains("importer_upstream_not_modified_total{provider=\"chess.com\"} 7"),
        "the 304s are counted in /metrics"
    );
    assert_eq!(imp.stop().await, Some(0));
}
on_every_database!(
    chess_com_returning_user,
    chess_com_returning_user_skips_old_months_and_gets_304s
);

async fn games_stored_before_the_ranges_are_read_once_then_never(db: TestDb) {
    let user = MockUser::new("upgraded", Platform::Lichess, 600);
    import_then(&db, &user, 400).await;
    // A database of the version before: the games, no record of what they cover.
    db.execute("DELETE FROM sync_ranges; DELETE FROM sync_pending; DELETE FROM sync_months")
        .await;
    let mocks = Upstreams::start(std::slice::from_ref(&user), SEED)
        .await
        .expect("mocks");
    let imp = Importer::start(&db, &mocks, &[]).await;
    // Read as before, from the newest game: the 400 stored are skipped, 100 older are new.
    let once = imp.import("upgraded", "lichess", 100).await;
    assert_eq!(once["games_imported"], 100, "{once}");
    assert_eq!(once["games_skipped_existing"], 400, "{once}");
    // From then on, only the edges are read again.
    let then = imp.import("upgraded", "lichess", 100).await;
    assert_eq!(then["games_imported"], 100, "{then}");
    assert_eq!(then["games_skipped_existing"], 2, "{then}");
    assert_stored_exactly(&db, "upgraded", &ids(&user, 0..600)).await;
    assert_eq!(imp.stop().await, Some(0));
}
on_both_databases!(
    upgrade_without_ranges,
    games_stored_before_the_ranges_are_read_once_then_never
);
