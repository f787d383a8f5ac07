//! chess.com months larger than a batch: each downloaded once (spooled to disk as it arrives, the
//! games chosen read back), the limit's newest chosen whatever the month's order, memory bounded
//! by the batch whatever the month's size, and every game once through a kill -9 inside a month.

use harness::upstream::{MockUser, Platform, Served, Upstreams, games};

use crate::incremental::{assert_stored_exactly, ids, import_then_with};
use crate::support::{Importer, TestDb};
use crate::{SEED, on_both_databases, on_every_database, wait_for_progress};

/// The batch of these tests: a month of 100 games holds 4 batches.
const BATCH: &str = "25";

/// Bytes of the body of month `back` of `user` as served (each game's PGN and a blank line).
fn month_bytes(user: &MockUser, back: u32) -> u64 {
    games::indices_of_month(user, back)
        .filter(|&i| user.finished(i))
        .map(|i| games::generate(user, SEED, i).pgn.len() as u64 + 2)
        .sum()
}

/// chess.com's counters since `before`.
fn served_since(mocks: &Upstreams, before: &Served) -> Served {
    let now = mocks.served()["chess.com"];
    Served {
        requests: now.requests - before.requests,
        games_served: now.games_served - before.games_served,
        bytes_served: now.bytes_served - before.bytes_served,
        not_modified: now.not_modified - before.not_modified,
        ..now
    }
}

/// Asserts the bounds (games received per game stored, bytes against the months asked)
/// and prints the figures.
fn assert_once(case: &str, served: &Served, stored: u64, months_bytes: u64) {
    let per_stored = served.games_served as f64 / stored as f64;
    let per_month_bytes = served.bytes_served as f64 / months_bytes as f64;
    println!(
        "{case}: {} games received for {stored} stored ({per_stored:.2} per stored), {} bytes for \
         months of {months_bytes} ({per_month_bytes:.2}), {} requests",
        served.games_served, served.bytes_served, served.requests
    );
    assert!(per_stored <= 1.05, "{case}: {served:?}");
    assert!(per_month_bytes <= 1.05, "{case}: {served:?}");
}

/// 100 games a month over 6 months, served oldest first: the newest must be chosen, not met first.
fn user(name: &str) -> MockUser {
    MockUser {
        months: 6,
        oldest_first: true,
        ..MockUser::new(name, Platform::ChessCom, 600)
    }
}

async fn each_month_is_downloaded_once(db: TestDb) {
    let (whole, cut) = (user("once_whole"), user("once_cut"));
    let mocks = Upstreams::start(&[whole.clone(), cut.clone()], SEED)
        .await
        .expect("mocks");
    let imp = Importer::start(&db, &mocks, &[("IMPORT_BATCH_SIZE", BATCH)]).await;

    // A new user whose limit ends with a month: the four newest months, each asked once.
    let before = mocks.served()["chess.com"];
    let job = imp.import(&whole.name, "chess.com", 400).await;
    assert_eq!(job["games_imported"], 400, "{job}");
    assert_eq!(job["games_fetched"], 400, "{job}");
    let served = served_since(&mocks, &before);
    assert_eq!(served.requests, 5, "the archive list and four months: {served:?}");
    assert_once(
        "new user",
        &served,
        400,
        (0..4).map(|m| month_bytes(&whole, m)).sum(),
    );
    assert_stored_exactly(&db, &whole.key(), &ids(&whole, 0..400)).await;

    // A limit ending inside a month: its 50 newest by end time, from the spool, the month still
    // downloaded once (its other 50 games are received and not stored: 400 for 350).
    let before = mocks.served()["chess.com"];
    let job = imp.import(&cut.name, "chess.com", 350).await;
    assert_eq!(job["games_imported"], 350, "{job}");
    let served = served_since(&mocks, &before);
    assert_eq!(served.requests, 5, "{served:?}");
    assert_eq!(served.games_served, 400, "{served:?}");
    let months: u64 = (0..4).map(|m| month_bytes(&cut, m)).sum();
    assert_eq!(served.bytes_served, months, "every month asked, once");
    assert_stored_exactly(&db, &cut.key(), &ids(&cut, 0..350)).await;
    // The rest: the partial month again (its 50 stored skipped), then the two older ones.
    let job = imp.import(&cut.name, "chess.com", 1000).await;
    assert_eq!(job["games_imported"], 250, "{job}");
    assert_stored_exactly(&db, &cut.key(), &ids(&cut, 0..600)).await;
    assert_eq!(imp.stop().await, Some(0));
}
on_every_database!(months_once, each_month_is_downloaded_once);

async fn a_returning_users_new_months_are_downloaded_once(db: TestDb) {
    let now = user("once_back");
    // Then: the two newest months were not played yet.
    let then = MockUser {
        unplayed: 200,
        ..now.clone()
    };
    let first = import_then_with(&db, &then, 10_000, &[("IMPORT_BATCH_SIZE", BATCH)]).await;
    assert_eq!(first["games_imported"], 400, "{first}");

    let mocks = Upstreams::start(std::slice::from_ref(&now), SEED)
        .await
        .expect("mocks");
    let imp = Importer::start(&db, &mocks, &[("IMPORT_BATCH_SIZE", BATCH)]).await;
    let job = imp.import(&now.name, "chess.com", 200).await;
    assert_eq!(job["games_imported"], 200, "{job}");
    let served = mocks.served()["chess.com"];
    assert_eq!(
        served.requests, 3,
        "the archive list and the two new months: {served:?}"
    );
    assert_once(
        "returning user",
        &served,
        200,
        (0..2).map(|m| month_bytes(&now, m)).sum(),
    );
    assert_stored_exactly(&db, &now.key(), &ids(&now, 0..600)).await;
    assert_eq!(imp.stop().await, Some(0));
}
on_both_databases!(
    months_once_returning,
    a_returning_users_new_months_are_downloaded_once
);

/// Peak resident memory of a fresh importer importing one chess.com month of `games` games whole.
async fn peak_of_one_month(db: &TestDb, games: u64) -> u64 {
    let month = MockUser {
        oldest_first: true,
        ..MockUser::new(&format!("month_of_{games}"), Platform::ChessCom, games)
    };
    let mocks = Upstreams::start(std::slice::from_ref(&month), SEED)
        .await
        .expect("mocks");
    // SQLite's page cache fills with the rows written, ten times more of them for the large month:
    // its smallest size keeps the comparison on what the import itself holds.
    let imp = Importer::start(db, &mocks, &[("SQLITE_CACHE_KIB", "64")]).await;
    let job = imp.import(&month.name, "chess.com", 10_000).await;
    assert_eq!(job["games_imported"].as_u64(), Some(games), "{job}");
    assert_eq!(mocks.served()["chess.com"].games_served, games, "downloaded once");
    let peak = imp.peak_rss();
    assert_eq!(imp.stop().await, Some(0));
    peak
}

async fn a_large_month_is_not_held_in_memory(db: TestDb) {
    let small = peak_of_one_month(&db, 500).await;
    let large = peak_of_one_month(&db, 5000).await;
    let mib = |b: u64| b as f64 / 1_048_576.0;
    println!(
        "peak RSS: a month of 500 games {:.1} MiB, of 5,000 games {:.1} MiB ({:+.1} %)",
        mib(small),
        mib(large),
        (large as f64 / small as f64 - 1.0) * 100.0
    );
    assert!(
        large as f64 <= small as f64 * 1.10,
        "a month of 5,000 games peaked at {large} bytes, of 500 at {small}"
    );
}
on_both_databases!(month_memory, a_large_month_is_not_held_in_memory);

async fn kill_9_inside_a_large_month(db: TestDb) {
    let month = MockUser {
        oldest_first: true,
        ..MockUser::new("spool_kill", Platform::ChessCom, 3000)
    };
    let mocks = Upstreams::start(std::slice::from_ref(&month), SEED)
        .await
        .expect("mocks");
    // A TMPDIR of the test's own, to see what a kill leaves in it.
    let tmp = std::env::temp_dir().join(format!("spool_kill_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    let tmp_str = tmp.to_string_lossy().into_owned();
    // One game per transaction: slow enough to be killed while the month is read back.
    let env = [("IMPORT_BATCH_SIZE", "1"), ("TMPDIR", tmp_str.as_str())];
    let mut imp = Importer::start(&db, &mocks, &env).await;
    let (status, body) = imp
        .post(serde_json::json!({"user_id": month.name, "platform": "chess.com", "limit": 2000}))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["import_id"].as_str().unwrap_or_default().to_string();
    wait_for_progress(&imp, &id).await;
    imp.signal("KILL");
    imp.wait_exit(std::time::Duration::from_secs(10))
        .await
        .expect("killed");
    let stored_before = db.games_of(&month.key()).await;
    assert!(
        stored_before > 0 && stored_before < 2000,
        "killed inside the month: {stored_before}"
    );
    let left: Vec<_> = std::fs::read_dir(&tmp).expect("tmp dir").collect();
    assert!(left.is_empty(), "the spool had no name to leave: {left:?}");

    let imp = Importer::start(&db, &mocks, &env).await;
    let job = imp.wait(&id).await;
    assert_eq!(job["status"], "completed", "{job}\n{}", imp.log_text());
    assert_eq!(job["games_imported"], 2000, "{job}");
    // The newest 2,000 by end time, each once, as an import not killed stores them.
    assert_stored_exactly(&db, &month.key(), &ids(&month, 0..2000)).await;
    assert_eq!(imp.stop().await, Some(0));
    std::fs::remove_dir_all(&tmp).expect("cleanup");
}
on_every_database!(months_kill, kill_9_inside_a_large_month);
