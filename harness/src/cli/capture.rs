//! `harness capture`: reads the importer's job history (read-only) and writes a scenario that
//! replays a window of it, with what production observed beside it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use super::{FAILED, USAGE};
use crate::scenario::Checked;
use crate::scenario::capture::{self, Settings, Window, read, read::Source, window};

/// What `harness capture` was asked.
#[derive(clap::Args)]
pub struct CaptureArgs {
    /// The importer's database: sqlite://PATH or postgres://… (opened read-only: SQLite in
    /// read-only mode, PostgreSQL in a READ ONLY transaction; nothing is written to it).
    #[arg(long)]
    database_url: String,
    /// The scenario file to write.
    #[arg(long)]
    out: PathBuf,
    /// The window's start, RFC 3339 (e.g. 2026-11-30T18:00:00Z); with --to.
    #[arg(long, requires = "to", conflicts_with = "busiest")]
    from: Option<DateTime<Utc>>,
    /// The window's end, RFC 3339, exclusive; with --from.
    #[arg(long, requires = "from")]
    to: Option<DateTime<Utc>>,
    /// The window of this length (e.g. 1h, 30m, 600) with the most imports requested. It starts
    /// at a request; when several hold as many, the earliest wins.
    #[arg(long, value_parser = super::parse_wait)]
    busiest: Option<f64>,
    /// The deploy's settings as KEY=VALUE lines (a .env file); only the importer's own tuning
    /// settings are kept (slots, lanes, batch and page sizes, pools...), every other name is left out.
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// A deploy setting, KEY=VALUE (repeatable; after --env-file).
    #[arg(long = "set", value_parser = super::parse_set)]
    set: Vec<(String, String)>,
}

/// Why nothing was captured: exit 1 ([`Error::exit_code`]) when the window holds no import or its
/// scenario does not check, else exit 2 (bad usage, a database or a file that cannot be read).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--from` is not before `--to`.
    #[error("--from {from} is not before --to {to}")]
    Backwards {
        /// The window's start.
        from: DateTime<Utc>,
        /// Its end.
        to: DateTime<Utc>,
    },
    /// Neither `--from` and `--to` nor `--busiest`.
    #[error("give a window: --from and --to, or --busiest DURATION")]
    NoWindow,
    /// A window longer than a scenario replays.
    #[error(
        "a window of {secs:.0} s is longer than a day, the longest a scenario replays: choose a shorter one"
    )]
    TooLong {
        /// Its length, seconds.
        secs: f64,
    },
    /// The `--env-file` cannot be read.
    #[error("{file}: {source}")]
    EnvFile {
        /// The file.
        file: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line of the `--env-file` is not `KEY=VALUE`.
    #[error("{file}: {source}")]
    EnvLine {
        /// The file.
        file: PathBuf,
        /// The line.
        #[source]
        source: capture::NotKeyValue,
    },
    /// The database cannot be opened or read.
    #[error(transparent)]
    Database(#[from] read::Error),
    /// `--busiest` on a database that records no import.
    #[error("the database records no import")]
    NoHistory,
    /// The window holds no import.
    #[error("no import was requested in [{from}, {to})")]
    NoImport {
        /// The window's start.
        from: DateTime<Utc>,
        /// Its end.
        to: DateTime<Utc>,
    },
    /// What would be written is not a scenario `harness check` accepts.
    #[error("the captured scenario does not check: {0}")]
    DoesNotCheck(#[source] crate::scenario::Error),
    /// The scenario cannot be written.
    #[error("{path}: {source}")]
    Write {
        /// The file or its folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The exit code it ends `harness capture` with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NoImport { .. } | Error::DoesNotCheck(_) => FAILED,
            _ => USAGE,
        }
    }
}

fn settings(args: &CaptureArgs) -> Result<Settings, Error> {
    let mut pairs = Vec::new();
    let mut by = Vec::new();
    if let Some(file) = &args.env_file {
        let text = std::fs::read_to_string(file).map_err(|source| Error::EnvFile {
            file: file.clone(),
            source,
        })?;
        pairs = capture::parse_env_file(&text).map_err(|source| Error::EnvLine {
            file: file.clone(),
            source,
        })?;
        by.push(format!("--env-file {}", file.display()));
    }
    if !args.set.is_empty() {
        by.push("--set".to_string());
        pairs.extend(args.set.iter().cloned());
    }
    Ok(Settings::of(pairs, (!by.is_empty()).then(|| by.join(" and "))))
}

/// The window asked for, from the history's arrivals when it is the busiest.
async fn choose(
    args: &CaptureArgs,
    source: &mut Source,
) -> Result<(DateTime<Utc>, DateTime<Utc>, String), Error> {
    match (args.from, args.to, args.busiest) {
        (Some(from), Some(to), None) if from < to => Ok((from, to, format!("--from {from} --to {to}"))),
        (Some(from), Some(to), None) => Err(Error::Backwards { from, to }),
        (None, None, Some(secs)) => {
            let arrivals = source.arrivals().await?;
            let length = chrono::Duration::milliseconds((secs * 1000.0) as i64);
            let (from, to) = window::busiest(&arrivals, length).ok_or(Error::NoHistory)?;
            Ok((
                from,
                to,
                format!("the busiest {secs:.0} s of {} recorded imports", arrivals.len()),
            ))
        }
        _ => Err(Error::NoWindow),
    }
}

/// Longest window a capture takes: a scenario's arrivals span at most a day.
const MAX_WINDOW_SECS: f64 = 86_400.0;

/// What is wrong with the window asked for, before any database is opened.
fn window_asked(args: &CaptureArgs) -> Result<(), Error> {
    let secs = match (args.from, args.to, args.busiest) {
        (Some(from), Some(to), None) if from < to => (to - from).num_milliseconds() as f64 / 1000.0,
        (Some(from), Some(to), None) => return Err(Error::Backwards { from, to }),
        (None, None, Some(secs)) => secs,
        _ => return Err(Error::NoWindow),
    };
    if secs > MAX_WINDOW_SECS {
        return Err(Error::TooLong { secs });
    }
    Ok(())
}

async fn capture(args: &CaptureArgs) -> Result<(usize, Window), Error> {
    window_asked(args)?;
    let settings = settings(args)?;
    let mut source = Source::open(&args.database_url).await?;
    let (from, to, chosen_by) = choose(args, &mut source).await?;
    let jobs = source.jobs(from, to).await?;
    let database = match source {
        Source::Sqlite(_) => "sqlite",
        Source::Postgres(_) => "postgres",
    };
    let window = Window {
        from,
        to,
        chosen_by,
        database,
    };
    if jobs.is_empty() {
        return Err(Error::NoImport { from, to });
    }
    let text = capture::scenario(&jobs, &window, &settings);
    // What is written must be what `harness check` accepts.
    Checked::parse(&args.out, &text).map_err(Error::DoesNotCheck)?;
    write(&args.out, &text)?;
    Ok((jobs.len(), window))
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Write { path, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed(dir))?;
    }
    std::fs::write(path, text).map_err(failed(path))
}

/// `harness capture`: exit 0 with the scenario written, 1 when the window holds no import, 2 on
/// bad usage or a database that cannot be read.
pub async fn command(args: &CaptureArgs) -> ExitCode {
    match capture(args).await {
        Ok((n, w)) => {
            println!(
                "captured {n} imports requested in [{}, {}) ({}) into {}\nreplay: harness run {}",
                capture::rfc3339(w.from),
                capture::rfc3339(w.to),
                w.chosen_by,
                args.out.display(),
                args.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty window fails the capture (exit 1); a window asked wrong is bad usage (exit 2).
    #[test]
    fn an_empty_window_fails_and_a_wrong_one_is_bad_usage() {
        let (from, to) = (
            DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("time"),
            DateTime::<Utc>::from_timestamp(1_800_003_600, 0).expect("time"),
        );
        let empty = Error::NoImport { from, to };
        assert_eq!(empty.exit_code(), FAILED);
        assert_eq!(
            empty.to_string(),
            "no import was requested in [2027-01-15 08:00:00 UTC, 2027-01-15 09:00:00 UTC)"
        );
        let backwards = Error::Backwards { from: to, to: from };
        assert_eq!(backwards.exit_code(), USAGE);
        assert_eq!(
            backwards.to_string(),
            "--from 2027-01-15 09:00:00 UTC is not before --to 2027-01-15 08:00:00 UTC"
        );
        assert_eq!(Error::TooLong { secs: 90_000.0 }.exit_code(), USAGE);
    }
}
