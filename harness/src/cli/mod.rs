//! The command line: its definition here, one file per command. A command
//! parses, runs a session, hands the results to analysis and report, and
//! chooses the exit code.

pub mod capture;
pub mod check;
pub mod compare;
pub mod gate;
pub mod mock;
pub mod profile;
pub mod recommend;
pub mod run;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::scenario::{Checked, REPEATS};
use crate::session::{Enforce, Options};
use crate::upstream::{MockUser, Platform};

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
    Run {
        #[command(flatten)]
        run: RunArgs,
        /// Then one more run, under heaptrack, of the cell with the highest anonymous peak: the
        /// allocation sites at the peak heap and a flame graph in summary.md and report.html
        /// (diagnostic: that run counts in no figure of the run's).
        #[arg(long)]
        heap_profile: bool,
    },
    /// The CI memory regression gate: the candidate importer against an older build measured in
    /// the same run (A/B, --against or --against-ref), or against a committed baseline.
    Gate {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Which MAX_CONCURRENT_IMPORTS is safe in a budget: measure levels, fit, recommend, validate under a hard limit.
    Recommend {
        #[command(flatten)]
        run: RunArgs,
        /// The memory budget, e.g. 512MB (default: the scenario's).
        #[arg(long, allow_hyphen_values = true, value_parser = parse_budget)]
        budget: Option<u64>,
        /// Concurrency levels to measure besides 1..=4 and the scenario's, e.g. --levels 8,16.
        #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::analysis::capacity::MAX_CONCURRENCY)))]
        levels: Vec<u32>,
        /// Skip the validation run under a hard memory limit.
        #[arg(long)]
        no_validate: bool,
        /// Answer in time too: run the scenario's slots and lanes as they are and recommend the
        /// fewest slots and lanes whose users' p95 wait (provider time) is within this, e.g. 60s,
        /// 2m; exit 1 when none is.
        #[arg(long, value_parser = parse_wait)]
        max_wait: Option<f64>,
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
    /// Turn the importer's job history (read-only) into a scenario that replays a window of it at
    /// the providers' pace, with what production observed beside it; users are pseudonymised.
    Capture(capture::CaptureArgs),
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
pub struct RunArgs {
    /// The scenario file (YAML), e.g. scenarios/railway-hobby.yaml.
    scenario: PathBuf,
    /// The importer binary to measure (default: the scenario's, else target/release/importer).
    /// The run measures a copy of it made in its own folder, as it does of every binary: how a
    /// file was written (by the linker, by cp) changes how much of it stays resident.
    #[arg(long)]
    importer: Option<PathBuf>,
    /// Folder for reports; a run writes to OUT/<scenario>/<UTC time>/ and links OUT/<scenario>/latest.
    #[arg(long, default_value = "reports")]
    out: PathBuf,
    /// No progress bar, a line per cell run instead (as when stderr is not a terminal).
    #[arg(long)]
    no_progress: bool,
    /// Runs of each cell, overriding the scenario's.
    #[arg(
        long,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(i64::from(*REPEATS.start())..=i64::from(*REPEATS.end()))
    )]
    repeats: Option<u32>,
    /// Importer environment set in every cell on top of the matrix, e.g. --set IMPORT_BATCH_SIZE=5000. Repeatable.
    #[arg(long = "set", value_name = "VAR=VALUE", value_parser = parse_set)]
    set: Vec<(String, String)>,
    /// Run the importer under a hard memory limit equal to the budget (a memory cgroup, swap off).
    /// `auto` goes on unenforced, and says so in every report, where the machine has no memory cgroup.
    #[arg(long, value_name = "on|auto|off", num_args = 0..=1, default_missing_value = "on", default_value = "off", value_parser = ["on", "auto", "off"])]
    enforce_budget: String,
    /// Keep each cell's PostgreSQL schema after the run (SQLite files are always kept); the cell's
    /// folder names its database in `database.url`, for `harness capture`.
    #[arg(long)]
    keep_databases: bool,
}

/// What `harness gate` takes beyond the run's arguments: what to compare the candidate with.
#[derive(clap::Args)]
pub struct GateArgs {
    /// The committed baseline to compare with when no --against is given
    /// (e.g. reports/baselines/ci-gate.json); also the file --update-baseline writes.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Write the candidate's medians to --baseline when the gate passes.
    #[arg(long)]
    pub update_baseline: bool,
    /// An older importer binary to measure in the same run, interleaved with the candidate
    /// (A B, B A, …; each on a fresh database); the difference is judged.
    #[arg(long, conflicts_with = "against_ref")]
    pub against: Option<PathBuf>,
    /// A git revision (e.g. HEAD~1) whose importer is built (target/gate-against/) and used as --against.
    #[arg(long, value_name = "GIT_REF")]
    pub against_ref: Option<String>,
    /// Build the candidate from this git revision as --against-ref builds its side (same profile,
    /// same way), instead of --importer: binaries built differently differ in resident memory.
    #[arg(long, value_name = "GIT_REF", conflicts_with = "importer")]
    pub candidate_ref: Option<String>,
    /// Importer environment for the candidate side only, e.g. IMPORT_BATCH_SIZE=200. Repeatable.
    #[arg(long = "candidate-set", value_name = "VAR=VALUE", value_parser = parse_set)]
    pub candidate_set: Vec<(String, String)>,
    /// Profile where the heap grew even when the gate passes: one more run of the cell on each
    /// side under heaptrack (it always does when a check of the anonymous memory fails).
    /// Diagnostic: those runs never count in the verdict.
    #[arg(long = "where")]
    pub where_: bool,
}

impl RunArgs {
    fn options(&self) -> Options {
        Options {
            importer: self.importer.clone(),
            out_root: self.out.clone(),
            // indicatif draws nothing where stderr is not a terminal (a pipe, CI's log), and the
            // lines it would print above its bar went with it: there, a line per cell instead.
            progress: !self.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            repeats: self.repeats,
            set: self.set.iter().cloned().collect(),
            enforce: match self.enforce_budget.as_str() {
                "on" => Enforce::On,
                "auto" => Enforce::Auto,
                _ => Enforce::Off,
            },
            keep_databases: self.keep_databases,
            heap_profile: None,
        }
    }
}

/// A command-line value that does not parse; clap prints it after the option's name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadValue {
    /// Not a size.
    #[error("{0:?}: a size such as 512MB or 1GB")]
    Size(String),
    /// Not a number followed by a unit.
    #[error("{0:?}: a wait such as 60s, 2m or 90")]
    Wait(String),
    /// A wait in a unit not known.
    #[error("{given:?}: unknown unit {unit:?} (s, m or h)")]
    WaitUnit {
        /// The value given.
        given: String,
        /// Its unit.
        unit: String,
    },
    /// A wait of 0 or less, or endless.
    #[error("{0:?}: a wait must be more than 0")]
    NoWait(String),
    /// No `=` in a `--set`.
    #[error("{0:?}: expected VAR=VALUE")]
    NotVarValue(String),
    /// The name of a `--set` is not an environment variable's.
    #[error("{0:?}: an environment variable name such as IMPORT_BATCH_SIZE")]
    VarName(String),
    /// The name of a `--set` is no variable the importer or the harness reads.
    #[error("{name}: {unknown}")]
    Unknown {
        /// The variable.
        name: String,
        /// Why it is refused, with the closest setting's name.
        #[source]
        unknown: crate::scenario::UnknownVariable,
    },
    /// The importer would refuse the value of a `--set`.
    #[error("{name}={value:?}: expected {refused}")]
    Refused {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
        /// What the variable accepts.
        #[source]
        refused: crate::scenario::Refused,
    },
    /// A `--user` of the wrong shape.
    #[error("{0:?}: expected NAME:PLATFORM:GAMES[:MONTHS], e.g. alice:lichess:1500")]
    User(String),
    /// A `--user` on another platform.
    #[error("{0:?}: platform must be `lichess` or `chess.com`")]
    Platform(String),
    /// A `--user` whose name has other characters.
    #[error("{0:?}: a name of letters, digits, _ and -")]
    UserName(String),
}

fn parse_budget(s: &str) -> Result<u64, BadValue> {
    crate::scenario::parse_bytes(s).ok_or_else(|| BadValue::Size(s.to_string()))
}

/// A wait such as `60s`, `1.5m`, `1h` or `90` (seconds), in seconds.
fn parse_wait(s: &str) -> Result<f64, BadValue> {
    let t = s.trim();
    let (num, unit) = t.split_at(
        t.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len()),
    );
    let n: f64 = num.parse().map_err(|_| BadValue::Wait(s.to_string()))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(BadValue::WaitUnit {
                given: s.to_string(),
                unit: other.to_string(),
            });
        }
    };
    if secs > 0.0 && secs.is_finite() {
        Ok(secs)
    } else {
        Err(BadValue::NoWait(s.to_string()))
    }
}

fn parse_set(s: &str) -> Result<(String, String), BadValue> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| BadValue::NotVarValue(s.to_string()))?;
    if k.is_empty()
        || !k
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(BadValue::VarName(k.to_string()));
    }
    // A misspelt setting would measure the default and pass: refused here, with the closest name.
    crate::scenario::known_variable(k).map_err(|unknown| BadValue::Unknown {
        name: k.to_string(),
        unknown,
    })?;
    // A value the importer would refuse fails here, not in every cell at its start.
    crate::scenario::accepts(k, v).map_err(|refused| BadValue::Refused {
        name: k.to_string(),
        value: v.to_string(),
        refused,
    })?;
    Ok((k.to_string(), v.to_string()))
}

fn parse_user(s: &str) -> Result<MockUser, BadValue> {
    let parts: Vec<&str> = s.split(':').collect();
    let usage = || BadValue::User(s.to_string());
    if !(3..=4).contains(&parts.len()) {
        return Err(usage());
    }
    let platform = match parts[1] {
        "lichess" => Platform::Lichess,
        "chess.com" => Platform::ChessCom,
        _ => return Err(BadValue::Platform(s.to_string())),
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
        return Err(BadValue::UserName(s.to_string()));
    }
    Ok(MockUser {
        months,
        ..MockUser::new(parts[0], platform, games)
    })
}

/// Parses the command line and runs the command; the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::load::quiet_goose();
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
            Command::Check { scenarios } => check::command(&scenarios),
            Command::Capture(args) => capture::command(&args).await,
            Command::Run { run, heap_profile } => run::command(&run, heap_profile).await,
            Command::Gate { run, gate } => gate::command(&run, gate).await,
            Command::Recommend {
                run,
                budget,
                levels,
                no_validate,
                max_wait,
            } => match max_wait {
                Some(wait) => recommend::wait_command(&run, budget, wait, !no_validate).await,
                None => recommend::command(&run, budget, &levels, !no_validate).await,
            },
            Command::Compare { before, after, out } => compare::command(&before, &after, out),
            Command::Mock {
                lichess_port,
                chesscom_port,
                users,
                seed,
                pace,
            } => mock::command(lichess_port, chesscom_port, users, seed, pace).await,
        }
    })
}

/// Loads a scenario, or says why not (exit 2).
fn load_scenario(file: &Path) -> Result<Checked, ExitCode> {
    Checked::load(file).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(USAGE)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What clap prints after the option's name: the value given and what is expected.
    fn said<T: std::fmt::Debug>(r: Result<T, BadValue>) -> String {
        r.expect_err("refused").to_string()
    }

    #[test]
    fn a_wait_is_a_number_and_a_unit() {
        assert_eq!(parse_wait("90").ok(), Some(90.0));
        assert_eq!(parse_wait("1.5m").ok(), Some(90.0));
        assert_eq!(parse_wait("1h").ok(), Some(3600.0));
        assert_eq!(said(parse_wait("soon")), "\"soon\": a wait such as 60s, 2m or 90");
        assert_eq!(said(parse_wait("3d")), "\"3d\": unknown unit \"d\" (s, m or h)");
        assert_eq!(said(parse_wait("0s")), "\"0s\": a wait must be more than 0");
    }

    #[test]
    fn a_set_names_a_variable_and_a_value_the_importer_takes() {
        assert_eq!(
            parse_set("IMPORT_BATCH_SIZE=500").ok(),
            Some(("IMPORT_BATCH_SIZE".into(), "500".into()))
        );
        assert_eq!(
            said(parse_set("IMPORT_BATCH_SIZE")),
            "\"IMPORT_BATCH_SIZE\": expected VAR=VALUE"
        );
        assert_eq!(
            said(parse_set("lower=1")),
            "\"lower\": an environment variable name such as IMPORT_BATCH_SIZE"
        );
        assert_eq!(
            said(parse_set("IMPORT_BATCH_SIZE=0")),
            "IMPORT_BATCH_SIZE=\"0\": expected an integer in 1..=10000"
        );
        assert_eq!(
            said(parse_set("ALLOCATOR=tcmalloc")),
            "ALLOCATOR=\"tcmalloc\": expected one of glibc, jemalloc, mimalloc"
        );
        assert_eq!(
            said(parse_set("IMPORT_BATCH_SIZ=50")),
            "IMPORT_BATCH_SIZ: not a setting of the importer (`importer --help` lists them), an axis of the harness \
             (ALLOCATOR, MALLOC_ARENA_MAX) or a variable its libraries read; did you mean IMPORT_BATCH_SIZE?"
        );
        assert!(said(parse_set("NOT_A_SETTING=3")).ends_with("libraries read"));
        for passed_on in [
            "RUST_LOG=debug",
            "MALLOC_TRIM_THRESHOLD_=0",
            "TMPDIR=/tmp",
            "ALLOCATOR=jemalloc",
        ] {
            assert!(parse_set(passed_on).is_ok(), "{passed_on}");
        }
        assert_eq!(
            said(parse_budget("lots")),
            "\"lots\": a size such as 512MB or 1GB"
        );
    }

    #[test]
    fn a_mock_user_is_name_platform_games_and_months() {
        let u = parse_user("alice:chess.com:30:3").expect("a user");
        assert_eq!(
            (u.name.as_str(), u.platform, u.games, u.months),
            ("alice", Platform::ChessCom, 30, 3)
        );
        assert_eq!(
            said(parse_user("alice:lichess")),
            "\"alice:lichess\": expected NAME:PLATFORM:GAMES[:MONTHS], e.g. alice:lichess:1500"
        );
        assert_eq!(
            said(parse_user("alice:fics:10")),
            "\"alice:fics:10\": platform must be `lichess` or `chess.com`"
        );
        assert_eq!(
            said(parse_user("a b:lichess:10")),
            "\"a b:lichess:10\": a name of letters, digits, _ and -"
        );
    }
}
