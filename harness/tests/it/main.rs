//! Harness integration tests: the verifier on crafted databases, and one short
//! real run of the importer binary that checks the reports.

mod capture;
mod cli;
mod layout;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use harness::scenario::Checked;
use harness::session::{self, Options};
use harness::target::db::{CellDb, JobRow};
use harness::upstream::{MockUser, Platform};
use harness::verify::{self, Expectation};
use sqlx::Connection;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("harness_it_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The importer binary built beside this test (cargo test --workspace builds it).
fn importer_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("importer");
    assert!(
        bin.is_file(),
        "{} missing: run `cargo test --workspace` (or `cargo build -p importer`) first",
        bin.display()
    );
    bin
}

/// Writes `yaml` as `dir/NAME.yaml`, loads it, and the options that run it with `importer` into `dir/reports`.
fn scenario_in(dir: &Path, name: &str, yaml: &str, importer: PathBuf) -> (Checked, Options) {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).expect("write scenario");
    let s = Checked::load(&file).expect("scenario");
    let opts = Options {
        importer: Some(importer),
        out_root: dir.join("reports"),
        progress: false,
        ..Options::default()
    };
    (s, opts)
}

const SCHEMA: &str = "CREATE TABLE games (user_id TEXT, platform TEXT, provider_game_id TEXT, played_at TEXT, \
     variant TEXT, ply_count INTEGER, pgn TEXT, imported_at TEXT); \
     CREATE TABLE import_jobs (user_id TEXT, platform TEXT, status TEXT, games_imported INTEGER, \
     games_skipped_existing INTEGER, games_failed_parse INTEGER, error TEXT, created_at TEXT);";

/// A SQLite database with the tables but without the unique key, so a doubled game can be crafted.
async fn crafted(name: &str, user: &MockUser, ids: &[String], job_imported: i64) -> CellDb {
    let dir = temp_dir(name);
    let url = format!("sqlite://{}?mode=rwc", dir.join("games.db").display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
    sqlx::raw_sql(SCHEMA).execute(&mut c).await.expect("schema");
    for id in ids {
        sqlx::query("INSERT INTO games (user_id, platform, provider_game_id) VALUES ($1, $2, $3)")
            .bind(user.key())
            .bind(user.platform.as_str())
            .bind(id)
            .execute(&mut c)
            .await
            .expect("insert");
    }
    sqlx::query("INSERT INTO import_jobs VALUES ($1, $2, 'completed', $3, 0, 0, NULL, '2026-01-01')")
        .bind(user.key())
        .bind(user.platform.as_str())
        .bind(job_imported)
        .execute(&mut c)
        .await
        .expect("job");
    CellDb::Sqlite { url }
}

async fn verify_db(db: &CellDb, e: &Expectation) -> verify::Verification {
    let stored = db.stored_ids().await.expect("stored");
    let jobs: Vec<JobRow> = db.jobs().await.expect("jobs");
    verify::check(std::slice::from_ref(e), &stored, &jobs)
}

#[tokio::test]
async fn verifier_catches_a_lost_a_doubled_and_a_miscounted_game() {
    let user = MockUser::new("vera", Platform::Lichess, 20);
    let e = Expectation {
        user: user.clone(),
        stored_before: Vec::new(),
        limit: 10,
    };
    let expected = e.new_ids();
    assert_eq!(expected.len(), 10);

    let exact = verify_db(&crafted("exact", &user, &expected, 10).await, &e).await;
    assert!(exact.ok, "{:?}", exact.problems);

    let lost = verify_db(&crafted("lost", &user, &expected[1..], 9).await, &e).await;
    assert!(!lost.ok);
    assert_eq!(lost.users[0].missing, 1);
    assert!(lost.problems[0].contains("lost"), "{:?}", lost.problems);

    let mut twice = expected.clone();
    twice.push(expected[3].clone());
    let doubled = verify_db(&crafted("doubled", &user, &twice, 11).await, &e).await;
    assert!(!doubled.ok);
    assert_eq!(doubled.users[0].doubled, 1);
    assert!(
        doubled.problems.iter().any(|p| p.contains("more than once")),
        "{:?}",
        doubled.problems
    );

    let miscounted = verify_db(&crafted("miscounted", &user, &expected, 12).await, &e).await;
    assert!(!miscounted.ok);
    assert!(
        miscounted
            .problems
            .iter()
            .any(|p| p.contains("job says 12 imported")),
        "{:?}",
        miscounted.problems
    );
}

#[test]
fn verifier_flags_games_of_users_nobody_asked_for() {
    let user = MockUser::new("vera", Platform::Lichess, 5);
    let e = Expectation {
        user: user.clone(),
        stored_before: Vec::new(),
        limit: 5,
    };
    let mut stored = HashMap::new();
    stored.insert((user.key(), "lichess".to_string()), e.new_ids());
    stored.insert(
        ("intruder".to_string(), "lichess".to_string()),
        vec!["x".to_string()],
    );
    let jobs = vec![JobRow {
        user_id: user.key(),
        platform: "lichess".into(),
        status: "completed".into(),
        games_imported: 5,
        games_skipped_existing: 0,
        games_failed_parse: 0,
        error: None,
    }];
    let v = verify::check(&[e], &stored, &jobs);
    assert!(!v.ok);
    assert!(v.problems[0].contains("intruder"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_real_run_writes_every_report() {
    let dir = temp_dir("run");
    let (s, opts) = scenario_in(
        &dir,
        "tiny",
        "budget: 512MB\nmatrix:\n  MAX_CONCURRENT_IMPORTS: [2]\n  IMPORT_BATCH_SIZE: [20]\n\
         workload:\n  users:\n    - platform: lichess\n      games: 150\n      stored: 20\n      limit: 100\n\
         \x20   - platform: chess.com\n      games: 90\n      months: 3\n      limit: 500\n",
        importer_bin(),
    );
    let outcome = harness::cli::run::run(&s, &opts).await.expect("run");
    let cell = &outcome.results.cells[0];
    assert!(cell.error.is_none(), "{:?}", cell.error);
    assert!(cell.verification.ok, "{:?}", cell.verification.problems);
    assert_eq!(cell.games_imported, 100 + 90);
    assert!(cell.samples > 10, "{} samples", cell.samples);
    assert!(
        cell.idle_rss > 0 && cell.peak >= cell.idle_rss,
        "peak {} idle {}",
        cell.peak,
        cell.idle_rss
    );
    // VmHWM is updated lazily by the kernel (on unmap and exit), so a peak that the
    // allocator returned with madvise can escape it: the peak is the larger of the two.
    assert_eq!(cell.peak, cell.peak_hwm.max(cell.peak_sampled));
    assert!(
        cell.peak_hwm as f64 >= cell.peak_sampled as f64 * 0.8,
        "VmHWM {} and the sampled peak {} roughly agree",
        cell.peak_hwm,
        cell.peak_sampled
    );
    // The split: the importer's own memory and its binary's resident text, each a real share.
    assert!(
        cell.idle_anon > 0 && cell.peak_anon >= cell.idle_anon && cell.peak_file > 0,
        "anon idle {} peak {}, file peak {}",
        cell.idle_anon,
        cell.peak_anon,
        cell.peak_file
    );
    assert!(
        cell.peak_anon < cell.peak && cell.peak_file < cell.peak,
        "each part below the total {}: anon {} file {}",
        cell.peak,
        cell.peak_anon,
        cell.peak_file
    );
    let csv = std::fs::read_to_string(outcome.dir.join("samples.csv")).expect("samples.csv");
    assert!(csv.starts_with("cell,repeat,t_secs,rss_bytes,anon_bytes,file_bytes,shmem_bytes\n"));
    let summary = std::fs::read_to_string(outcome.dir.join("summary.md")).expect("summary.md");
    assert!(summary.contains("| anon MiB | file MiB |"), "{summary}");
    assert!(outcome.results.passed());
    for f in [
        "results.json",
        "samples.csv",
        "summary.md",
        "memory-timeline.svg",
        "peak-vs-config.svg",
    ] {
        let len = std::fs::metadata(outcome.dir.join(f))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 100, "{f}: {len} bytes");
    }
    for png in ["memory-timeline.png", "peak-vs-config.png"] {
        let img = image::open(outcome.dir.join(png)).expect(png);
        assert!(img.width() > 500 && img.height() > 300, "{png} decodes");
    }
    let csv = std::fs::read_to_string(outcome.dir.join("samples.csv")).expect("csv");
    assert!(csv.lines().count() > 10);
    let back: harness::session::results::RunResults =
        serde_json::from_slice(&std::fs::read(outcome.dir.join("results.json")).expect("json"))
            .expect("parses");
    assert_eq!(back.cells.len(), 1);
    assert!(
        std::fs::read_link(dir.join("reports/tiny/latest")).is_ok(),
        "latest link"
    );
}

/// A kill -9 mid-import with a restart is survived with exact delivery; a crash whose
/// threshold is never reached fails the cell instead of passing it untested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_import_is_survived_and_one_that_never_strikes_fails() {
    let dir = temp_dir("crash");
    let yaml = |after: u64| {
        format!(
            "budget: 512MB\nmatrix:\n  MAX_CONCURRENT_IMPORTS: [1]\n  IMPORT_BATCH_SIZE: [10]\n\
             workload:\n  users:\n    - platform: lichess\n      games: 400\n      limit: 500\n\
             upstream:\n  pace_games_per_sec: 400\ncrash:\n  after_games: {after}\n  restart: true\n"
        )
    };
    let (s, opts) = scenario_in(&dir, "struck", &yaml(100), importer_bin());
    let outcome = harness::cli::run::run(&s, &opts).await.expect("run");
    let cell = &outcome.results.cells[0];
    let crash = cell.crash.as_ref().expect("the crash struck");
    assert!(crash.restarted && crash.stored_at_kill >= 100, "{crash:?}");
    assert!(cell.error.is_none(), "{:?}", cell.error);
    assert!(cell.verification.ok, "{:?}", cell.verification.problems);
    assert_eq!(cell.games_imported, 400);

    let (s, opts) = scenario_in(&dir, "never", &yaml(100_000), importer_bin());
    let outcome = harness::cli::run::run(&s, &opts).await.expect("run");
    let cell = &outcome.results.cells[0];
    assert!(cell.crash.is_none());
    assert!(
        cell.error.as_deref().is_some_and(|e| e.contains("never struck")),
        "{:?}",
        cell.error
    );
    assert!(
        !outcome.results.passed(),
        "an untested fault scenario does not pass"
    );
}

/// The ALLOCATOR axis measures only a binary that says it was built with that allocator.
#[test]
fn an_allocator_build_is_checked_by_its_version() {
    let bin = importer_bin();
    assert_eq!(session::importer_for(&bin, None).expect("glibc build"), bin);
    assert_eq!(
        session::importer_for(&bin, Some("glibc")).expect("glibc build"),
        bin
    );
    let dir = temp_dir("alloc");
    let err = session::importer_for(&dir.join("importer"), Some("jemalloc"))
        .expect_err("not built")
        .to_string();
    assert!(
        err.contains("importer-jemalloc") && err.contains("make allocators"),
        "{err}"
    );
    // A glibc build under the jemalloc name is refused, not measured as jemalloc.
    std::fs::copy(&bin, dir.join("importer-mimalloc")).expect("copy");
    let err = session::importer_for(&dir.join("importer"), Some("mimalloc"))
        .expect_err("wrong build")
        .to_string();
    assert!(err.contains("not allocator mimalloc"), "{err}");
}

/// A paced lichess stream keeps its schedule: 2,000 games at 20,000 games/s take about 0.1 s.
/// A sleep per game (at least the timer's 1 ms) would take 2 s or more; the bound between is
/// wide, so that a loaded machine (tests run side by side) cannot fail a stream that keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_stream_sends_at_the_rate_asked() {
    let user = MockUser::new("paced", Platform::Lichess, 2000);
    let opts = harness::upstream::Options {
        lichess_games_per_sec: 20_000.0,
        prerender: true,
        ..Default::default()
    };
    let mocks = harness::upstream::Upstreams::start_with(&[user], opts)
        .await
        .expect("mocks");
    let url = format!("{}/api/games/user/paced?max=2000", mocks.lichess_url());
    let started = std::time::Instant::now();
    // The mocks, like lichess, refuse a client that names no contact.
    let http = reqwest::Client::builder()
        .user_agent(harness::session::HARNESS_USER_AGENT)
        .build()
        .expect("client");
    let body = http
        .get(&url)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(body.matches("[Event ").count(), 2000);
    assert!(secs >= 0.095, "not faster than asked: {secs:.3} s");
    assert!(secs < 1.5, "2,000 games at 20,000/s took {secs:.3} s");
}

#[tokio::test]
async fn a_missing_importer_is_a_set_up_error_before_anything_starts() {
    let dir = temp_dir("missing");
    let (s, opts) = scenario_in(
        &dir,
        "s",
        "budget: 512MB\nworkload:\n  users:\n    - platform: lichess\n      games: 5\n",
        dir.join("no-such-importer"),
    );
    let err = harness::cli::run::run(&s, &opts).await.err().expect("fails");
    assert!(err.to_string().contains("no-such-importer"), "{err}");
    assert!(!dir.join("reports").exists(), "nothing written");
}

/// Headless Chromium as the probe of this workplace starts it: no background networking at all.
fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or_else(|| {
            panic!("Chromium is needed for this test: `make chromium` or `make test` installs it")
        });
    std::process::Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--hide-scrollbars",
            "--no-pings",
            "--disable-breakpad",
            "--disable-domain-reliability",
            "--disable-features=NetworkTimeServiceQuerying,MediaRouter,OptimizationHints,Translate,AutofillServerCommunication",
            // Nothing may leave this machine: no name resolves, and every request goes to a dead loopback proxy.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=127.0.0.1:9",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_html_renders_in_a_real_browser_and_loads_nothing() {
    let dir = temp_dir("html");
    let (s, opts) = scenario_in(
        &dir,
        "page",
        "budget: 512MB\nmatrix:\n  MAX_CONCURRENT_IMPORTS: [1, 2]\n\
         workload:\n  imports: 3\n  users:\n    - platform: lichess\n      games: 60\n      limit: 100\n",
        importer_bin(),
    );
    let outcome = harness::cli::run::run(&s, &opts).await.expect("run");
    let page = outcome.dir.join("report.html");
    let html = std::fs::read_to_string(&page).expect("report.html");
    for banned in ["<script", "<link", "<img", "@import", "url(", "src="] {
        assert!(!html.contains(banned), "self-contained: found {banned}");
    }
    let url = format!("file://{}", page.display());

    let shot = dir.join("shot.png");
    let netlog = dir.join("netlog.json");
    let out = chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,2400",
            &format!("--log-net-log={}", netlog.display()),
            &url,
        ],
        &dir.join("profile-shot"),
    );
    assert!(
        shot.is_file(),
        "screenshot taken: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(&shot).expect("png").to_rgb8();
    let non_white = img.pixels().filter(|p| p.0.iter().any(|&c| c < 200)).count();
    let share = non_white as f64 / f64::from(img.width() * img.height());
    assert!(
        share > 0.02,
        "the page is not blank: {:.1} % drawn",
        share * 100.0
    );

    // The first screen of a laptop (1400 × 900) holds the verdict and a picture: this run's users
    // are lichess's, drawn in the palette's blue (0, 114, 178), which nothing but a plot uses (the
    // verdict and the tables are black and grey, their ticks green).
    let first = dir.join("first-screen.png");
    chromium(
        &[
            &format!("--screenshot={}", first.display()),
            "--window-size=1400,900",
            &url,
        ],
        &dir.join("profile-first"),
    );
    let img = image::open(&first).expect("first screen png").to_rgb8();
    let blue = img
        .pixels()
        .filter(|p| {
            let [r, g, b] = p.0.map(i32::from);
            b > r + 80 && b > g + 30
        })
        .count();
    assert!(
        blue > 500,
        "a plot on the first screen: {blue} pixels of the palette's blue"
    );

    let out = chromium(&["--dump-dom", &url], &dir.join("profile-dom"));
    let dom = String::from_utf8_lossy(&out.stdout);
    let cells_in_file = html.matches("<td").count();
    assert!(cells_in_file >= 2 * 13, "the summary table has a row per cell");
    assert_eq!(
        dom.matches("<td").count(),
        cells_in_file,
        "every table cell rendered"
    );
    assert!(dom.matches("<svg").count() >= 2, "the plots are inline SVG");
    // Top-down: the verdict is the page's first heading, a picture comes before the first folded
    // table, and the detailed tables are folded.
    let heading = dom.find("<h1").expect("a verdict heading");
    let verdict = &dom[heading..dom[heading..].find("</h1>").map_or(dom.len(), |e| heading + e)];
    assert!(
        verdict.contains('✓') || verdict.contains('✗'),
        "the first heading is the verdict: {verdict}"
    );
    let picture = dom.find("<svg").expect("a picture");
    let folded = dom.find("<details").expect("the detailed tables are folded");
    assert!(
        heading < picture && picture < folded,
        "verdict, then a picture, then the folded tables"
    );
    assert!(dom.matches("<text").count() > 10, "the plots have text");

    // Requests the page made carry its origin as initiator; the browser's own carry "not an origin".
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&netlog).expect("net log")).expect("net log is JSON");
    let events = log["events"].as_array().map(Vec::as_slice).unwrap_or_default();
    assert!(!events.is_empty(), "the net log recorded events");
    let from_page: Vec<String> = events
        .iter()
        .filter_map(|e| {
            let p = &e["params"];
            let initiator = p["initiator"].as_str()?;
            (initiator != "not an origin")
                .then(|| format!("{} <- {initiator}", p["url"].as_str().unwrap_or("?")))
        })
        .collect();
    assert!(
        from_page.is_empty(),
        "the page requested nothing from the network: {from_page:?}"
    );
}
