//! `harness`: the command line. Definitions and glue; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use harness::mock::{self, MockUser, Platform, Upstreams};
use harness::results::mib;
use harness::run::{self, Enforce, Options};
use harness::scenario::Checked;

/// Exit codes: 0 pass, 1 a cell over budget or not verified, 2 bad usage or set-up.
const FAILED: u8 = 1;
const USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "harness",
    version,
    about = "Memory-budget load test for the chess games importer: mocks lichess and chess.com, \
             runs the real importer binary, drives concurrent imports with goose, samples its RSS, \
             verifies exact delivery and reports memory against configuration.",
    after_help = "Exit codes: 0 every cell verified and within budget; 1 a cell failed; 2 bad usage or set-up."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario: every cell of its matrix, each repeat; write reports.
    Run(RunArgs),
    /// The CI memory regression gate: run with at least 3 repeats, compare medians with the budget and a baseline.
    Gate {
        #[command(flatten)]
        run: RunArgs,
        /// The baseline to compare with (e.g. reports/baselines/ci-gate.json).
        #[arg(long)]
        baseline: PathBuf,
        /// Write the baseline from this run instead of comparing.
        #[arg(long)]
        update_baseline: bool,
    },
    /// Which MAX_CONCURRENT_IMPORTS is safe in a budget: measure levels, fit, recommend, validate under a hard limit.
    Recommend {
        #[command(flatten)]
        run: RunArgs,
        /// The memory budget, e.g. 512MB (default: the scenario's).
        #[arg(long, value_parser = parse_budget)]
        budget: Option<u64>,
        /// Concurrency levels to measure besides 1..=4 and the scenario's, e.g. --levels 8,16.
        #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=256))]
        levels: Vec<u32>,
        /// Skip the validation run under a hard memory limit.
        #[arg(long)]
        no_validate: bool,
    },
    /// Compare two runs (report folders or results.json) cell by cell; informs, never fails (exit 0, or 2 on bad input).
    Compare {
        /// The run before (e.g. reports/ci-gate/latest).
        before: PathBuf,
        /// The run after.
        after: PathBuf,
        /// Folder for compare.md, compare.json, the plots and report.html (default: reports/compare/<UTC time>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check scenario files without running anything; every error names file, line and key.
    Check {
        /// Scenario files.
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
    /// Serve the lichess and chess.com mocks on fixed ports, for trying the importer by hand.
    Mock {
        /// lichess mock port.
        #[arg(long, default_value = "9001")]
        lichess_port: u16,
        /// chess.com mock port.
        #[arg(long, default_value = "9002")]
        chesscom_port: u16,
        /// A user: NAME:PLATFORM:GAMES[:MONTHS], platform `lichess` or `chess.com`. Repeatable.
        #[arg(long = "user", value_parser = parse_user, default_values = ["alice:lichess:1500", "bob:chess.com:1500:15"])]
        users: Vec<MockUser>,
        /// Seed of the synthetic games.
        #[arg(long, default_value = "42")]
        seed: u64,
        /// lichess games per second per stream (0: as fast as possible).
        #[arg(long, default_value = "0")]
        pace: u32,
    },
}

/// What every command that runs a scenario takes.
#[derive(clap::Args)]
struct RunArgs {
    /// The scenario file (YAML), e.g. scenarios/railway-hobby.yaml.
    scenario: PathBuf,
    /// The importer binary to measure (default: the scenario's, else target/release/importer).
    #[arg(long)]
    importer: Option<PathBuf>,
    /// Folder for reports; a run writes to OUT/<scenario>/<UTC time>/ and links OUT/<scenario>/latest.
    #[arg(long, default_value = "reports")]
    out: PathBuf,
    /// No progress bar (for logs and CI).
    #[arg(long)]
    no_progress: bool,
    /// Runs of each cell, overriding the scenario's.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=50))]
    repeats: Option<u32>,
    /// Importer environment set in every cell on top of the matrix, e.g. --set IMPORT_BATCH_SIZE=5000. Repeatable.
    #[arg(long = "set", value_name = "VAR=VALUE", value_parser = parse_set)]
    set: Vec<(String, String)>,
    /// Run the importer under a hard memory limit equal to the budget (a memory cgroup, swap off).
    /// `auto` goes on unenforced, and says so in every report, where the machine has no memory cgroup.
    #[arg(long, value_name = "on|auto|off", num_args = 0..=1, default_missing_value = "on", default_value = "off", value_parser = ["on", "auto", "off"])]
    enforce_budget: String,
}

impl RunArgs {
    fn options(&self) -> Options {
        Options {
            importer: self.importer.clone(),
            out_root: self.out.clone(),
            progress: !self.no_progress,
            repeats: self.repeats,
            set: self.set.iter().cloned().collect(),
            enforce: match self.enforce_budget.as_str() {
                "on" => Enforce::On,
                "auto" => Enforce::Auto,
                _ => Enforce::Off,
            },
        }
    }
}

fn parse_budget(s: &str) -> Result<u64, String> {
    harness::scenario::parse_bytes(s).ok_or_else(|| format!("{s:?}: a size such as 512MB or 1GB"))
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected VAR=VALUE"))?;
    if k.is_empty()
        || !k
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "{k:?}: an environment variable name such as IMPORT_BATCH_SIZE"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

fn parse_user(s: &str) -> Result<MockUser, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let usage = || format!("{s:?}: expected NAME:PLATFORM:GAMES[:MONTHS], e.g. alice:lichess:1500");
    if !(3..=4).contains(&parts.len()) {
        return Err(usage());
    }
    let platform = match parts[1] {
        "lichess" => Platform::Lichess,
        "chess.com" => Platform::ChessCom,
        _ => return Err(format!("{s:?}: platform must be `lichess` or `chess.com`")),
    };
    let games = parts[2].parse().map_err(|_| usage())?;
    let months = match parts.get(3) {
        Some(m) => m.parse().map_err(|_| usage())?,
        None => 1,
    };
    if parts[0].is_empty()
        || !parts[0]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!("{s:?}: a name of letters, digits, _ and -"));
    }
    Ok(MockUser {
        months,
        ..MockUser::new(parts[0], platform, games)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Tracing first: goose and the mocks log through it. The harness's own queries (seeding,
    // verifying 100,000s of rows) are slow by nature: sqlx's slow-statement warning is noise here.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,sqlx::query=error".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(USAGE);
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Check { scenarios } => check(&scenarios),
            Command::Run(args) => run_scenario(&args).await,
            Command::Gate {
                run,
                baseline,
                update_baseline,
            } => gate(&run, &baseline, update_baseline).await,
            Command::Recommend {
                run,
                budget,
                levels,
                no_validate,
            } => recommend(&run, budget, &levels, !no_validate).await,
            Command::Compare { before, after, out } => compare(&before, &after, out),
            Command::Mock {
                lichess_port,
                chesscom_port,
                users,
                seed,
                pace,
            } => match serve_mocks(lichess_port, chesscom_port, users, seed, pace).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(USAGE)
                }
            },
        }
    })
}

fn check(files: &[PathBuf]) -> ExitCode {
    let mut bad = false;
    for f in files {
        match Checked::load(f) {
            Ok(s) => println!(
                "ok  {}: {} cells × {} repeats, budget {:.0} MiB",
                f.display(),
                s.cells.len(),
                s.raw.repeats,
                mib(s.budget_bytes)
            ),
            Err(e) => {
                eprintln!("error: {e}");
                bad = true;
            }
        }
    }
    if bad {
        ExitCode::from(USAGE)
    } else {
        ExitCode::SUCCESS
    }
}

fn load_scenario(file: &std::path::Path) -> Result<Checked, ExitCode> {
    Checked::load(file).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(USAGE)
    })
}

async fn run_scenario(args: &RunArgs) -> ExitCode {
    let scenario = match load_scenario(&args.scenario) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let opts = args.options();
    eprintln!(
        "running {} ({} cells × {} repeats) with {}",
        scenario.name,
        scenario.cells.len(),
        run::repeats(&scenario, &opts),
        run::importer_path(&scenario, &opts).display()
    );
    match run::run(&scenario, &opts).await {
        Ok(outcome) => {
            println!("{}", harness::report::summary_markdown(&outcome.results));
            println!("reports: {}", outcome.dir.display());
            if outcome.results.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(FAILED)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(USAGE)
        }
    }
}

async fn gate(args: &RunArgs, baseline: &std::path::Path, update: bool) -> ExitCode {
    let scenario = match load_scenario(&args.scenario) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let opts = args.options();
    if !opts.set.is_empty() {
        eprintln!("overrides on every cell: {:?}", opts.set);
    }
    match harness::gate::gate(&scenario, &opts, baseline, update).await {
        Ok(decision) => {
            print!("{}", harness::gate::table(&decision));
            if update && decision.exit_code == 0 {
                println!("baseline written: {}", baseline.display());
            }
            ExitCode::from(decision.exit_code)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(USAGE)
        }
    }
}

async fn recommend(args: &RunArgs, budget: Option<u64>, levels: &[u32], validate: bool) -> ExitCode {
    let scenario = match load_scenario(&args.scenario) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let opts = args.options();
    let budget = budget.unwrap_or(scenario.budget_bytes);
    match harness::recommend::recommend(&scenario, &opts, budget, levels, validate).await {
        Ok(rec) => {
            print!("{}", harness::recommend::markdown(&rec));
            ExitCode::from(rec.exit_code())
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(USAGE)
        }
    }
}

fn compare(before: &std::path::Path, after: &std::path::Path, out: Option<PathBuf>) -> ExitCode {
    let load = |p: &std::path::Path| harness::compare::load(p);
    let (b, a) = match (load(before), load(after)) {
        (Ok(b), Ok(a)) => (b, a),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(USAGE);
        }
    };
    let out = out.unwrap_or_else(|| {
        PathBuf::from("reports/compare").join(chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string())
    });
    match harness::compare::compare(&b, &a, &out) {
        Ok(cmp) => {
            print!("{}", harness::compare::markdown(&cmp));
            println!("\nreports: {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(USAGE)
        }
    }
}

async fn serve_mocks(
    lichess_port: u16,
    chesscom_port: u16,
    users: Vec<MockUser>,
    seed: u64,
    pace: u32,
) -> anyhow::Result<()> {
    let bind = |port: u16| {
        std::net::TcpListener::bind(("127.0.0.1", port)).with_context(|| format!("binding 127.0.0.1:{port}"))
    };
    let mocks = Upstreams::start_with(
        &users,
        mock::Options {
            seed,
            lichess_games_per_sec: pace,
            lichess_listener: Some(bind(lichess_port)?),
            chess_com_listener: Some(bind(chesscom_port)?),
            ..Default::default()
        },
    )
    .await
    .context("starting the mocks")?;
    println!("lichess mock:   {}", mocks.lichess_url());
    println!("chess.com mock: {}", mocks.chess_com_url());
    for u in &users {
        println!(
            "  user {} on {}: {} games over {} month(s)",
            u.name,
            u.platform.as_str(),
            u.games,
            u.months
        );
    }
    println!(
        "\ntry:\n  LICHESS_BASE_URL={} CHESSCOM_BASE_URL={} cargo run --release -p importer",
        mocks.lichess_url(),
        mocks.chess_com_url()
    );
    if let Some(u) = users.first() {
        println!(
            "  curl -s -X POST localhost:8080/api/v1/import-more-games -H 'content-type: application/json' -d '{{\"user_id\":\"{}\",\"platform\":\"{}\",\"limit\":500}}'",
            u.name,
            u.platform.as_str()
        );
    }
    println!("\nCtrl-C stops.");
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    Ok(())
}
