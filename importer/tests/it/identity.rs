//! Game identity and migration: chess.com keys keep the kind, PGN is LF, the limit takes a month's newest, a repeated game is stored once, stored keys are re-keyed.

use super::*;
use crate::{on_both_databases, on_every_database};

/// A chess.com that serves each user's one month (2025/06) as the given PGN bytes.
async fn chess_com_months(users: &[(&str, Vec<u8>)]) -> wiremock::MockServer {
    use wiremock::matchers::path;
    let server = wiremock::MockServer::start().await;
    for (user, pgn) in users {
        let archives = json!({"archives": [format!("{}/pub/player/{user}/games/2025/06", server.uri())]});
        wiremock::Mock::given(path(format!("/pub/player/{user}/games/archives")))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(archives))
            .mount(&server)
            .await;
        wiremock::Mock::given(path(format!("/pub/player/{user}/games/2025/06/pgn")))
            .respond_with(
                wiremock::ResponseTemplate::new(200).set_body_raw(pgn.clone(), "application/x-chess-pgn"),
            )
            .mount(&server)
            .await;
    }
    server
}

/// The keys stored for `user`, sorted.
async fn keys_of(db: &TestDb, user: &str) -> Vec<String> {
    let n = db.games_of(user).await;
    let mut keys = Vec::new();
    for k in ["live/%", "daily/%"] {
        let sql = format!("SELECT COUNT(*) FROM games WHERE user_id = $1 AND provider_game_id LIKE '{k}'");
        keys.push(format!("{k}: {}", db.count(&sql, user).await));
    }
    keys.push(format!("all: {n}"));
    keys
}

/// A live and a daily game with the same number are two games; a CRLF month is stored with LF,
/// byte for byte as the same month with LF.
async fn chess_com_keys_keep_the_kind_and_pgn_is_lf(db: TestDb) {
    let pair = case("chesscom-live-and-daily-same-number.pgn");
    let crlf = case("chesscom-crlf.pgn");
    let lf = String::from_utf8_lossy(&crlf).replace("\r\n", "\n").into_bytes();
    let server = chess_com_months(&[("player_a", pair), ("crlf_user", crlf), ("lf_user", lf)]).await;
    let mocks = Upstreams::start(&[], SEED).await.expect("mocks");
    let imp = Importer::start(&db, &mocks, &[("CHESSCOM_BASE_URL", server.uri().as_str())]).await;
    let job = imp.import("player_a", "chess.com", 100).await;
    assert_eq!(
        (
            job["games_imported"].as_i64(),
            job["games_skipped_existing"].as_i64()
        ),
        (Some(2), Some(0)),
        "{job}"
    );
    assert_eq!(
        keys_of(&db, "player_a").await,
        ["live/%: 1", "daily/%: 1", "all: 2"]
    );
    let plies = db
        .count(
            "SELECT SUM(ply_count) FROM games WHERE user_id = $1 AND provider_game_id IN ('daily/412345678', 'live/412345678')",
            "player_a",
        )
        .await;
    assert_eq!(plies, 22 + 24);
    for user in ["crlf_user", "lf_user"] {
        let job = imp.import(user, "chess.com", 100).await;
        assert_eq!(job["games_imported"], 2, "{job}");
    }
    let cr = db
        .count("SELECT COUNT(*) FROM games WHERE pgn LIKE '%' || $1 || '%'", "\r")
        .await;
    assert_eq!(cr, 0, "no stored PGN holds a carriage return");
    let same = db
        .count(
            "SELECT COUNT(*) FROM games a JOIN games b ON a.provider_game_id = b.provider_game_id \
             AND a.pgn = b.pgn WHERE a.user_id = $1 AND b.user_id = 'lf_user'",
            "crlf_user",
        )
        .await;
    assert_eq!(
        same, 2,
        "the CRLF month's games are byte-identical to the LF month's"
    );
}
on_both_databases!(chess_com_keys, chess_com_keys_keep_the_kind_and_pgn_is_lf);

/// `limit` takes the newest games of a month by end time, whichever order the month arrives in,
/// both when the month fits a batch (held) and when it is read again.
async fn the_limit_takes_the_newest_of_a_month_in_any_order(db: TestDb) {
    let newest = MockUser::new("order_new", Platform::ChessCom, 120);
    let oldest = MockUser {
        oldest_first: true,
        ..MockUser::new("order_old", Platform::ChessCom, 120)
    };
    let mocks = Upstreams::start(&[newest.clone(), oldest.clone()], SEED)
        .await
        .expect("mocks");
    for batch in ["500", "20"] {
        let imp = Importer::start(&db, &mocks, &[("IMPORT_BATCH_SIZE", batch)]).await;
        for u in [&newest, &oldest] {
            let job = imp.import(&u.name, "chess.com", 30).await;
            assert_eq!(job["games_imported"], 30, "batch {batch}: {job}");
        }
        assert_eq!(imp.stop().await, Some(0));
    }
    for u in [&newest, &oldest] {
        let want: Vec<String> = u.valid_ids().take(60).map(|(_, k)| format!("'{k}'")).collect();
        let sql = format!(
            "SELECT COUNT(*) FROM games WHERE user_id = $1 AND provider_game_id IN ({})",
            want.join(",")
        );
        assert_eq!(
            db.count(&sql, &u.key()).await,
            60,
            "{}: the 60 newest, twice 30",
            u.name
        );
        assert_eq!(db.games_of(&u.key()).await, 60);
    }
}
on_both_databases!(month_order, the_limit_takes_the_newest_of_a_month_in_any_order);

/// An export that repeats a game stores each game once, at any batch size.
async fn a_repeated_game_is_stored_once(db: TestDb) {
    use wiremock::matchers::path_regex;
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(path_regex("^/api/games/user/repeater_[0-9]+$"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_raw(case("lichess-repeated-game.pgn"), "application/x-chess-pgn"),
        )
        .mount(&server)
        .await;
    let mocks = Upstreams::start(&[], SEED).await.expect("mocks");
    for batch in ["1", "100"] {
        let imp = Importer::start(
            &db,
            &mocks,
            &[
                ("LICHESS_BASE_URL", server.uri().as_str()),
                ("IMPORT_BATCH_SIZE", batch),
            ],
        )
        .await;
        let user = format!("repeater_{batch}");
        let job = imp.import(&user, "lichess", 100).await;
        assert_eq!(
            (
                job["games_imported"].as_i64(),
                job["games_skipped_existing"].as_i64()
            ),
            (Some(4), Some(2)),
            "batch {batch}: {job}"
        );
        assert_eq!(db.games_of(&user).await, 4);
        assert_eq!(imp.stop().await, Some(0));
    }
}
on_both_databases!(repeated_game, a_repeated_game_is_stored_once);

/// A database written before chess.com keys kept the kind: today's schema (migrations 1 and 2)
/// and rows keyed by the bare number, one with CRLF. The importer re-keys them at start (in one
/// transaction, idempotent), and importing the same month again stores only the game that the
/// bare number had lost.
async fn stored_chess_com_keys_are_migrated(db: TestDb) {
    let dir = if db.is_postgres() { "postgres" } else { "sqlite" };
    let root = env!("CARGO_MANIFEST_DIR");
    for m in ["0001_init.sql", "0002_shared_queue.sql"] {
        let sql = std::fs::read_to_string(format!("{root}/migrations/{dir}/{m}")).expect("migration");
        db.execute(&sql).await;
    }
    db.execute(
        "CREATE TABLE IF NOT EXISTS importer_schema (version BIGINT PRIMARY KEY); \
         INSERT INTO importer_schema (version) VALUES (1), (2);",
    )
    .await;
    // What the importer stored before: the daily game of the pair under its bare number (the live
    // one was then lost as "already stored"), and a CRLF game.
    let pair = String::from_utf8(case("chesscom-live-and-daily-same-number.pgn")).expect("utf-8");
    let daily = pair
        .split("\n\n[Event")
        .next()
        .expect("first game")
        .trim()
        .to_string();
    let crlf = String::from_utf8(case("chesscom-crlf.pgn")).expect("utf-8");
    let crlf_game = crlf
        .split("\r\n\r\n[Event")
        .next()
        .expect("first game")
        .trim()
        .to_string();
    let insert = |key: &str, user: &str, pgn: &str| {
        format!(
            "INSERT INTO games (user_id, platform, provider_game_id, variant, ply_count, pgn, imported_at) \
             VALUES ('{user}', 'chess.com', '{key}', 'Standard', 1, '{}', '2025-07-01T00:00:00Z');",
            pgn.replace('\'', "''")
        )
    };
    db.execute(&format!(
        "{}{}{}",
        insert("412345678", "player_a", &daily),
        insert("398765432", "crlf_user", &crlf_game),
        insert("123", "no_link", "[Event \"x\"]\n\n1. e4 *")
    ))
    .await;

    let server = chess_com_months(&[("player_a", case("chesscom-live-and-daily-same-number.pgn"))]).await;
    let mocks = Upstreams::start(&[], SEED).await.expect("mocks");
    let imp = Importer::start(&db, &mocks, &[("CHESSCOM_BASE_URL", server.uri().as_str())]).await;
    let by_key = "SELECT COUNT(*) FROM games WHERE provider_game_id = $1";
    assert_eq!(db.count(by_key, "daily/412345678").await, 1, "{}", imp.log_text());
    assert_eq!(db.count(by_key, "412345678").await, 0);
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM games WHERE user_id = $1 AND provider_game_id LIKE 'live/%'",
            "crlf_user"
        )
        .await,
        1
    );
    assert_eq!(
        db.count(by_key, "123").await,
        1,
        "a row without a link keeps its key"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM games WHERE pgn LIKE '%' || $1 || '%'", "\r")
            .await,
        0,
        "stored CRLF became LF"
    );
    assert!(imp.log_text().contains("re-keyed"), "{}", imp.log_text());
    let job = imp.import("player_a", "chess.com", 100).await;
    assert_eq!(
        (
            job["games_imported"].as_i64(),
            job["games_skipped_existing"].as_i64()
        ),
        (Some(1), Some(1)),
        "the live game, lost before, is stored; the daily one is known: {job}"
    );
    assert_eq!(imp.stop().await, Some(0));
    // A second start changes nothing.
    let imp = Importer::start(&db, &mocks, &[("CHESSCOM_BASE_URL", server.uri().as_str())]).await;
    let job = imp.import("player_a", "chess.com", 100).await;
    assert_eq!(job["games_imported"], 0, "{job}");
    assert_eq!(db.games_of("player_a").await, 2);
}
on_every_database!(rekey_migration, stored_chess_com_keys_are_migrated);

/// A case file from `tests/data/cases`.
fn case(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/cases/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}
