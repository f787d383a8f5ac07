//! `harness gate`: the memory regression gate CI runs.
//!
//! With `--against OLD` (or `--against-ref REV`, built here), the old and the new importer are
//! measured in the same run, interleaved (A B, B A, A B …: each repeat on a fresh database, the
//! same mocks and seed), at least [`judge::MIN_AB_REPEATS`] times each, and the difference is judged.
//! Without, each cell runs at least [`judge::MIN_REPEATS`] times (a noisy cell once more) and its
//! medians are compared with a committed baseline. `analysis::gate` decides either way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{GateArgs, RunArgs, USAGE, load_scenario, profile};
use crate::analysis::gate::{self as judge, Against, Baseline, Decision};
use crate::analysis::heap as judge_heap;
use crate::analysis::stats::spread_pct;
use crate::report;
use crate::scenario::{Cell, Checked};
use crate::session::results::CellRun;
use crate::session::{self, Options, Session};
use crate::target;

/// Why the gate could not decide (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The baseline cannot be read.
    #[error(transparent)]
    Baseline(#[from] judge::Error),
    /// The run could not start.
    #[error(transparent)]
    Session(#[from] session::Error),
    /// An output could not be written.
    #[error(transparent)]
    Report(#[from] report::Error),
    /// The other revision could not be built.
    #[error(transparent)]
    Build(#[from] target::build::Error),
    /// The importer to compare against is missing.
    #[error("--against {0}: no such file")]
    NoAgainst(PathBuf),
    /// The build compared against finished fewer than 2 repeats of a cell: nothing to judge by.
    #[error(
        "the build compared against finished {finished} repeat(s) of {cell}, too few to judge ({problems}); reports in {reports}"
    )]
    AgainstFailed {
        /// The cell.
        cell: String,
        /// Its repeats that finished.
        finished: usize,
        /// Why the others did not.
        problems: String,
        /// The report folder.
        reports: String,
    },
}

/// `DB_POOL_SIZE`'s default on SQLite (the table says it in words: it depends on the database).
const SQLITE_DB_POOL_SIZE: u32 = 2;

/// What the gate compares the candidate with.
pub enum Reference {
    /// A committed baseline file (`--baseline`), or none when writing one.
    Baseline(PathBuf),
    /// Another importer binary measured in the same run (A/B), with environment for the
    /// candidate side only (`--candidate-set`).
    Build {
        /// The other importer.
        importer: PathBuf,
        /// Set on the candidate only, on top of `--set`.
        candidate_set: BTreeMap<String, String>,
    },
}

/// The label of the other build's runs of `cell`, beside the candidate's.
fn against_cell(cell: &Cell) -> Cell {
    Cell {
        label: format!("{}-against", cell.label),
        ..cell.clone()
    }
}

/// What the gate's runs measured: the run, and each cell's statistics (label first) for the
/// candidate and, in an A/B gate, for the reference build.
struct Measured {
    outcome: session::Outcome,
    candidate: Vec<(String, judge::Stats)>,
    reference: Vec<(String, judge::Stats)>,
}

/// Runs the gate. With `update`, also writes the candidate's medians to `baseline_out` when the
/// gate passes.
pub async fn gate(
    s: &Checked,
    opts: &Options,
    reference: &Reference,
    update: Option<&Path>,
    where_: Where,
) -> Result<Decision, Error> {
    let baseline = match reference {
        Reference::Baseline(path) if update.is_none() => Some(Baseline::load(path)?),
        _ => None,
    };
    let wall = std::time::Instant::now();
    let measured = match reference {
        Reference::Build {
            importer,
            candidate_set,
        } => measure_ab(s, opts, importer, candidate_set).await?,
        Reference::Baseline(_) => measure_repeats(s, opts).await?,
    };
    let Measured {
        outcome,
        candidate,
        reference: reference_cells,
    } = measured;
    report::write_run(&outcome)?;
    if let Some((cell, a)) = reference_cells.iter().find(|(_, a)| a.peaks.len() < 2) {
        return Err(Error::AgainstFailed {
            cell: cell.clone(),
            finished: a.peaks.len(),
            problems: a.problems.join("; "),
            reports: outcome.dir.display().to_string(),
        });
    }
    let against = match (reference, &baseline) {
        (Reference::Build { .. }, _) => Against::Build(&reference_cells),
        (Reference::Baseline(_), Some(b)) => Against::Baseline(b),
        (Reference::Baseline(_), None) => Against::Nothing,
    };
    let mut decision = judge::decide(
        s,
        against,
        &candidate,
        &outcome.results.machine,
        outcome.dir.display().to_string(),
        wall.elapsed().as_secs_f64(),
    );
    if let Some(path) = update {
        if decision.exit_code != 0 {
            decision
                .warnings
                .push("baseline NOT written: the run itself failed".into());
        } else {
            report::gate::write_baseline(path, &judge::baseline_of(s, &candidate, &outcome.results))?;
        }
    }
    if let Some(cell) = cell_to_profile(s, &decision, where_) {
        match reference {
            Reference::Build {
                importer,
                candidate_set,
            } => match where_grew(s, opts, cell, importer, candidate_set, &outcome.dir).await {
                Ok(w) => decision.where_grew = Some(w),
                Err(e) => decision
                    .warnings
                    .push(format!("where the heap grew: not profiled: {e}")),
            },
            Reference::Baseline(_) => decision.warnings.push(
                "where the heap grew: needs another build to profile (--against or --against-ref)".into(),
            ),
        }
    }
    report::gate::write(&outcome.dir, &decision, &outcome.results)?;
    Ok(decision)
}

/// When the gate profiles where the heap grew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where {
    /// When a check of the anonymous memory fails.
    OnFailure,
    /// Always (`--where`): the first cell whose anonymous memory failed, else the first cell.
    Always,
}

/// The cell to profile: the first whose anonymous memory failed a check; with
/// [`Where::Always`], else the first cell.
fn cell_to_profile<'s>(s: &'s Checked, d: &Decision, when: Where) -> Option<&'s Cell> {
    let failed = d
        .checks
        .iter()
        .find(|c| c.verdict.fails() && c.metric.is_anonymous())
        .and_then(|c| s.cells.iter().find(|cell| cell.label == c.cell));
    match when {
        Where::OnFailure => failed,
        Where::Always => failed.or(s.cells.first()),
    }
}

/// Profiles `cell` once on each side under heaptrack, compares the sites and draws the
/// differential flame graph into `dir`.
async fn where_grew(
    s: &Checked,
    opts: &Options,
    cell: &Cell,
    against: &Path,
    candidate_set: &BTreeMap<String, String>,
    dir: &Path,
) -> Result<judge_heap::Where, WhereError> {
    let mut set = opts.set.clone();
    set.extend(candidate_set.clone());
    let sides = [
        profile::Side {
            name: "against",
            importer: against.to_path_buf(),
            opts: opts.clone(),
        },
        profile::Side {
            name: "candidate",
            importer: session::importer_path(s, opts),
            opts: Options { set, ..opts.clone() },
        },
    ];
    eprintln!(
        "where: profiling {} on both sides under heaptrack (diagnostic runs, not in the verdict)",
        cell.label
    );
    let profiles = profile::profiles(s, cell, &sides, dir).await?;
    let [a, b] = profiles.as_slice() else {
        return Err(WhereError::NotTwo(profiles.len()));
    };
    report::heap::flame_graph(&dir.join(report::heap::FLAME_SVG), a, b)?;
    let page_cache = page_cache_bytes(s, cell, &sides[1].opts.set);
    Ok(judge_heap::compare(&cell.label, a, b, page_cache))
}

/// The most SQLite's page cache may hold in a run of `cell`, bytes: `SQLITE_CACHE_KIB` per
/// connection, over the imports' pool (`DB_POOL_SIZE`, 2 on SQLite) and the queue's; 0 on
/// PostgreSQL, which has no page cache in the importer.
fn page_cache_bytes(s: &Checked, cell: &Cell, set: &BTreeMap<String, String>) -> u64 {
    if s.raw.database != crate::scenario::Database::Sqlite {
        return 0;
    }
    let mut env = s.raw.env.clone();
    env.extend(cell.env.clone());
    env.extend(set.clone());
    let kib = crate::scenario::value_of(&env, &settings::SQLITE_CACHE_KIB);
    let pool = env
        .get(settings::DB_POOL_SIZE.name)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(SQLITE_DB_POOL_SIZE);
    let queue = crate::scenario::value_of(&env, &settings::DB_QUEUE_POOL_SIZE);
    u64::from(kib) * 1024 * u64::from(pool + queue)
}

/// Why the heap could not be profiled; the gate decides anyway and warns.
#[derive(Debug, thiserror::Error)]
pub enum WhereError {
    /// The profiled runs.
    #[error(transparent)]
    Profile(#[from] profile::Error),
    /// The flame graph.
    #[error(transparent)]
    Report(#[from] report::Error),
    /// The profiled runs made another number of profiles than the two sides.
    #[error("cannot draw the flame graph: two profiles expected, {0} made")]
    NotTwo(usize),
}

/// An A/B gate's runs: each cell on the reference build `importer` and on the candidate (with
/// `candidate_set` added), in alternating order.
async fn measure_ab(
    s: &Checked,
    opts: &Options,
    importer: &Path,
    candidate_set: &BTreeMap<String, String>,
) -> Result<Measured, Error> {
    if !importer.is_file() {
        return Err(Error::NoAgainst(importer.to_path_buf()));
    }
    let repeats = session::repeats(s, opts).max(judge::MIN_AB_REPEATS);
    let mut set = opts.set.clone();
    set.extend(candidate_set.clone());
    let candidate_opts = Options { set, ..opts.clone() };
    let runs = s.cells.len() as u64 * u64::from(repeats) * 2;
    let mut session = Session::start(s, &candidate_opts, runs).await?;
    let (mut candidate, mut reference, mut all_runs) = (Vec::new(), Vec::new(), Vec::new());
    for cell in &s.cells {
        let other = against_cell(cell);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        // A B, then B A: whichever side goes first in a pair (a warmer page cache, a
        // drifting machine) takes turns, so an order effect does not land on one side.
        for r in 0..repeats {
            if r % 2 == 0 {
                a.push(session.measure_with(&other, r, importer, opts).await);
                b.push(session.measure(cell, r).await);
            } else {
                b.push(session.measure(cell, r).await);
                a.push(session.measure_with(&other, r, importer, opts).await);
            }
        }
        candidate.push((cell.label.clone(), judge::stats(&b, false)));
        reference.push((cell.label.clone(), judge::stats(&a, false)));
        all_runs.extend(a);
        all_runs.extend(b);
    }
    Ok(Measured {
        outcome: session.finish(all_runs),
        candidate,
        reference,
    })
}

/// A baseline gate's runs: each cell repeated, and repeated again once when its peaks spread
/// more than the scenario allows.
async fn measure_repeats(s: &Checked, opts: &Options) -> Result<Measured, Error> {
    let repeats = session::repeats(s, opts).max(judge::MIN_REPEATS);
    let max_spread = s.raw.gate.max_spread_pct;
    let mut session = Session::start(s, opts, s.cells.len() as u64 * u64::from(repeats)).await?;
    let (mut candidate, mut all_runs) = (Vec::new(), Vec::new());
    for cell in &s.cells {
        let mut measured = Vec::new();
        for r in 0..repeats {
            measured.push(session.measure(cell, r).await);
        }
        let spread = |runs: &[CellRun]| spread_pct(&runs.iter().collect::<Vec<_>>());
        let (mut used_from, mut erratic) = (0, false);
        let first_spread = spread(&measured);
        if first_spread > max_spread {
            session.say(format!(
                "{}: peaks spread {first_spread:.1} % > {max_spread:.1} %, running it again",
                cell.label
            ));
            session.add_to_total(u64::from(repeats));
            for r in repeats..2 * repeats {
                measured.push(session.measure(cell, r).await);
            }
            if spread(&measured[repeats as usize..]) <= max_spread {
                used_from = repeats as usize;
            } else {
                // Still noisy: judge on every run, and say so.
                erratic = true;
            }
        }
        candidate.push((cell.label.clone(), judge::stats(&measured[used_from..], erratic)));
        all_runs.extend(measured);
    }
    Ok(Measured {
        outcome: session.finish(all_runs),
        candidate,
        reference: Vec::new(),
    })
}

/// `harness gate`: exit 0 pass, 1 a check failed, 2 the gate could not decide.
pub async fn command(args: &RunArgs, g: GateArgs) -> ExitCode {
    let usage = |m: &dyn std::fmt::Display| {
        eprintln!("error: {m}");
        ExitCode::from(USAGE)
    };
    if !g.candidate_set.is_empty() && g.against.is_none() && g.against_ref.is_none() {
        return usage(
            &"--candidate-set needs --against or --against-ref: it sets the candidate side of an A/B gate",
        );
    }
    if g.update_baseline && g.baseline.is_none() {
        return usage(&"--update-baseline needs --baseline FILE to write");
    }
    let scenario = match load_scenario(&args.scenario) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut opts = args.options();
    if !opts.set.is_empty() {
        eprintln!("overrides on every cell: {:?}", opts.set);
    }
    if let Some(rev) = &g.candidate_ref {
        match target::build::importer_at(rev, |l| eprintln!("{l}")) {
            Ok(bin) => opts.importer = Some(bin),
            Err(e) => return usage(&e),
        }
    }
    let against = match (&g.against, &g.against_ref) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(rev)) => match target::build::importer_at(rev, |l| eprintln!("{l}")) {
            Ok(bin) => Some(bin),
            Err(e) => return usage(&e),
        },
        (None, None) => None,
    };
    let reference = match (against, &g.baseline) {
        (Some(importer), _) => {
            eprintln!(
                "A/B: {} against {}{}",
                session::importer_path(&scenario, &opts).display(),
                importer.display(),
                if g.candidate_set.is_empty() {
                    String::new()
                } else {
                    format!(", candidate only: {:?}", g.candidate_set)
                }
            );
            Reference::Build {
                importer,
                candidate_set: g.candidate_set.iter().cloned().collect(),
            }
        }
        (None, Some(path)) => Reference::Baseline(path.clone()),
        (None, None) => return usage(&"give --against, --against-ref or --baseline"),
    };
    let update = g.update_baseline.then_some(g.baseline.as_deref()).flatten();
    let where_ = if g.where_ { Where::Always } else { Where::OnFailure };
    match gate(&scenario, &opts, &reference, update, where_).await {
        Ok(decision) => {
            print!("{}", report::gate::table(&decision));
            if let (Some(path), 0) = (update, decision.exit_code) {
                println!("baseline written: {}", path.display());
            }
            ExitCode::from(decision.exit_code)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(USAGE)
        }
    }
}
