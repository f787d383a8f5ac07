//! `harness capture`: reads the importer's job history (read-only) and writes a scenario that
//! replays a window of it, with what production observed beside it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use super::{FAILED, USAGE};
use crate::scenario::Checked;
use crate::scenario::capture::{self, Settings, Window, read::Source, window};

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

fn settings(args: &CaptureArgs) -> Result<Settings, String> {
    let mut pairs = Vec::new();
    let mut by = Vec::new();
    if let Some(file) = &args.env_file {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        pairs = capture::parse_env_file(&text).map_err(|e| format!("{}: {e}", file.display()))?;
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
) -> Result<(DateTime<Utc>, DateTime<Utc>, String), String> {
    match (args.from, args.to, args.busiest) {
        (Some(from), Some(to), None) if from < to => Ok((from, to, format!("--from {from} --to {to}"))),
        (Some(from), Some(to), None) => Err(format!("--from {from} is not before --to {to}")),
        (None, None, Some(secs)) => {
            let arrivals = source.arrivals().await.map_err(|e| e.to_string())?;
            let length = chrono::Duration::milliseconds((secs * 1000.0) as i64);
            let (from, to) = window::busiest(&arrivals, length)
                .ok_or_else(|| "the database records no import".to_string())?;
            Ok((
                from,
                to,
                format!("the busiest {secs:.0} s of {} recorded imports", arrivals.len()),
            ))
        }
        _ => Err("give a window: --from and --to, or --busiest DURATION".into()),
    }
}

/// Longest window a capture takes: a scenario's arrivals span at most a day.
const MAX_WINDOW_SECS: f64 = 86_400.0;

/// What is wrong with the window asked for, before any database is opened.
fn window_asked(args: &CaptureArgs) -> Result<(), String> {
    let secs = match (args.from, args.to, args.busiest) {
        (Some(from), Some(to), None) if from < to => (to - from).num_milliseconds() as f64 / 1000.0,
        (Some(from), Some(to), None) => return Err(format!("--from {from} is not before --to {to}")),
        (None, None, Some(secs)) => secs,
        _ => return Err("give a window: --from and --to, or --busiest DURATION".into()),
    };
    if secs > MAX_WINDOW_SECS {
        return Err(format!(
            "a window of {secs:.0} s is longer than a day, the longest a scenario replays: choose a shorter one"
        ));
    }
    Ok(())
}

async fn capture(args: &CaptureArgs) -> Result<(usize, Window), (u8, String)> {
    let usage = |e: String| (USAGE, e);
    window_asked(args).map_err(usage)?;
    let settings = settings(args).map_err(usage)?;
    let mut source = Source::open(&args.database_url)
        .await
        .map_err(|e| usage(e.to_string()))?;
    let (from, to, chosen_by) = choose(args, &mut source).await.map_err(usage)?;
    let jobs = source.jobs(from, to).await.map_err(|e| usage(e.to_string()))?;
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
        return Err((FAILED, format!("no import was requested in [{from}, {to})")));
    }
    let text = capture::scenario(&jobs, &window, &settings);
    // What is written must be what `harness check` accepts.
    Checked::parse(&args.out, &text)
        .map_err(|e| (FAILED, format!("the captured scenario does not check: {e}")))?;
    write(&args.out, &text).map_err(usage)?;
    Ok((jobs.len(), window))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
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
        Err((code, e)) => {
            eprintln!("error: {e}");
            ExitCode::from(code)
        }
    }
}
