//! Settings: a bad one stops the program naming it (exit 2), a database it cannot open is said in
//! the client's words (exit 1); `--help` lists every setting.

use super::*;

#[test]
fn each_bad_setting_stops_the_program_with_exit_code_2_naming_it() {
    let cases = [
        ("MAX_CONCURRENT_IMPORTS", "0"),
        ("MAX_CONCURRENT_IMPORTS", "257"),
        ("IMPORT_BATCH_SIZE", "0"),
        ("IMPORT_BATCH_SIZE", "many"),
        ("EXISTING_GAMES_PAGE_SIZE", "100001"),
        ("IMPORT_QUEUE_CAPACITY", "-1"),
        ("HTTP_MAX_CONNECTIONS", "0"),
        ("HTTP_POOL_MAX_IDLE_PER_HOST", "x"),
        ("DB_POOL_SIZE", "101"),
        ("DATABASE_URL", "mysql://localhost/db"),
        ("LICHESS_BASE_URL", "not a url"),
        ("CHESSCOM_BASE_URL", "ftp://api.chess.com"),
        ("BIND_ADDR", "nowhere"),
        ("PORT", "99999"),
        ("UPSTREAM_RATE_LIMIT_WAIT_SECS", "-5"),
        ("DEDUP_STRATEGY", "guess"),
        ("UPSTREAM_READ_TIMEOUT_SECS", "0"),
        ("WORKER_THREADS", "65"),
        ("SQLITE_CACHE_KIB", "10"),
        ("DB_QUEUE_POOL_SIZE", "0"),
        ("DATABASE_POOLER", "session"),
    ];
    for (var, value) in cases {
        let (code, stderr) = run_with_env(&[(var, value)]);
        assert_eq!(code, Some(2), "{var}={value}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.contains(var) && first.contains(value) && first.contains("expected"),
            "{var}={value}: {first}"
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn a_database_that_cannot_be_opened_is_said_at_once_in_the_clients_words() {
    // A loopback port nothing listens on: bound, then let go.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let refused = format!("postgres://postgres@127.0.0.1:{closed}/test");
    let cases = [
        (refused.as_str(), "Connection refused"),
        (
            "postgres://no_such_role@127.0.0.1:5432/test",
            "role \"no_such_role\" does not exist",
        ),
        ("sqlite:///no-such-dir/games.db", "unable to open database file"),
    ];
    for (url, words) in cases {
        let started = std::time::Instant::now();
        let (code, stderr) = run_with_env(&[
            ("DATABASE_URL", url),
            ("LICHESS_BASE_URL", "http://127.0.0.1:9"),
            ("CHESSCOM_BASE_URL", "http://127.0.0.1:9"),
            ("BIND_ADDR", "127.0.0.1:0"),
        ]);
        assert_eq!(code, Some(1), "{url}: {stderr}");
        let said = stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_default();
        // Said once: the pool's "timed out" hid PostgreSQL's words, SQLite's came three times.
        assert_eq!(said.matches(words).count(), 1, "{url}: {said}");
        assert!(!said.contains("pool timed out"), "{url}: {said}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(8),
            "{url}: said after {:?}, not at once",
            started.elapsed()
        );
    }
}

#[test]
fn help_lists_every_setting() {
    let out = Command::new(importer_bin()).arg("--help").output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    for var in settings::SETTINGS.iter().filter(|s| !s.hidden).map(|s| s.name) {
        assert!(help.contains(var), "--help names {var}");
    }
}

/// A secret setting's value, given in the environment, never reaches `--help`: the database URL
/// may hold a password, the tokens are credentials.
#[test]
fn help_never_shows_a_secret_from_the_environment() {
    let out = Command::new(importer_bin())
        .arg("--help")
        .env("DATABASE_URL", "postgres://importer:hunter2-db@db.internal/games")
        .env("API_TOKEN", "hunter2-api-token-0123456789")
        .env("LICHESS_TOKEN", "hunter2-lichess")
        .env("IMPORT_BATCH_SIZE", "77")
        .output()
        .expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(!help.contains("hunter2"), "{help}");
    assert!(
        help.contains("IMPORT_BATCH_SIZE=77"),
        "a value that is no secret is still shown: {help}"
    );
    for s in settings::SETTINGS.iter().filter(|s| s.secret) {
        assert!(help.contains(s.name), "--help still names {}", s.name);
    }
}
