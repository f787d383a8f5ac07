//! Settings: a bad one stops the program naming it (exit 2); `--help` lists every setting.

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
fn help_lists_every_setting() {
    let out = Command::new(importer_bin()).arg("--help").output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    for var in settings::SETTINGS.iter().filter(|s| !s.hidden).map(|s| s.name) {
        assert!(help.contains(var), "--help names {var}");
    }
}
