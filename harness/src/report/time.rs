//! The time a run's users waited, as the summary's "Time" section: per cell
//! and provider the p50/p95/max wait and when the last import ended, then
//! each user of each cell's first repeat. All in provider seconds.

use std::fmt::Write;

use super::table::Table;
use crate::observe::timing::{Provider, Timing};
use crate::session::results::{CellRuns, RunResults};

/// lichess's export pace, games a second a stream (docs/providers.md).
const REAL_LICHESS_PACE: u32 = 20;

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |s| format!("{s:.1}"))
}

/// Appends the "Time" section when the run's `cells` (its runs by cell) measured times.
pub fn section(results: &RunResults, cells: &[CellRuns<'_>], out: &mut String) {
    let timed: Vec<(&str, Vec<(&crate::session::results::CellRun, &Timing)>)> = cells
        .iter()
        .map(|c| {
            let t = c
                .runs
                .iter()
                .filter_map(|r| Some((*r, r.timing.as_ref()?)))
                .collect();
            (c.label, t)
        })
        .filter(|(_, t): &(&str, Vec<_>)| !t.is_empty())
        .collect();
    let Some(scale) = timed
        .first()
        .and_then(|(_, t)| t.first())
        .map(|(_, t)| t.time_scale)
    else {
        return;
    };
    if !results.paced() {
        // Unpaced mocks: the times would be the importer's own speed, not a user's wait.
        return;
    }
    let _ = writeln!(out, "\n## Time\n");
    if results.pace_games_per_sec > 0 && results.pace_games_per_sec != REAL_LICHESS_PACE {
        let _ = writeln!(
            out,
            "The lichess mock streamed {} games a second a stream, not lichess's {REAL_LICHESS_PACE}: these times are \
             the importer's against that mock, not what a user waits at lichess (`make wait` measures that).\n",
            results.pace_games_per_sec
        );
    }
    if scale > 1.0 {
        let _ = writeln!(
            out,
            "Provider time ran {scale:.0} times faster than real time: every time here is provider seconds \
             (measured × {scale:.0}). The importer's own work was not sped up, so it weighs {scale:.0} times more \
             than it would.\n"
        );
    }
    let _ = writeln!(
        out,
        "Wait = from the user's POST to the import's start (client clock, admission included); provider wait = \
         the time the import spent waiting for its provider (an outage, a broken stream: the job's \
         `provider_wait_secs`), apart from the queue; done = from the POST to the last game stored. Worst repeat \
         of each cell.\n"
    );
    providers_table(&timed, out);
    let users: usize = timed
        .iter()
        .filter_map(|(_, runs)| runs.first().map(|(_, t)| t.imports.len()))
        .sum();
    // A table of every user is read by people; past a few hundred rows it is only scrolled.
    if users > 400 {
        let _ = writeln!(
            out,
            "\n{users} users: each one's times are in `results.json` (`timing.imports` of each cell run)."
        );
        return;
    }
    users_table(&timed, out);
    let queue = if super::time_plot::has_queue(results) {
        "`queue.png` (each user waiting, then importing, a panel per cell) and "
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "\nPictures: {queue}`wait-vs-config.png` (p95 wait and last completion against the slots, a line per \
         lane setting)."
    );
}

/// A cell's timed runs, by cell label.
type Timed<'a> = [(&'a str, Vec<(&'a crate::session::results::CellRun, &'a Timing)>)];

/// Per cell and provider, the worst repeat's p50/p95/max wait and last completion.
fn providers_table(timed: &Timed<'_>, out: &mut String) {
    let mut table = Table::new([
        "cell",
        "slots",
        "lichess streams",
        "chess.com requests",
        "provider",
        "imports",
        "wait p50 s",
        "wait p95 s",
        "wait max s",
        "provider wait p50 s",
        "provider wait p95 s",
        "provider wait max s",
        "last done s",
    ]);
    for (label, runs) in timed {
        let Some((run, _)) = runs.first() else { continue };
        let lanes = crate::scenario::lanes(&run.cell.env);
        for provider in Provider::EACH_THEN_ALL {
            let worst = runs
                .iter()
                .filter_map(|(_, t)| t.provider(provider))
                .max_by(|a, b| a.wait_p95_secs.total_cmp(&b.wait_p95_secs));
            let Some(p) = worst else { continue };
            table.row([
                label.to_string(),
                run.cell.max_concurrent_imports.to_string(),
                lanes.lichess.to_string(),
                lanes.chess_com.to_string(),
                provider.to_string(),
                p.imports.to_string(),
                format!("{:.1}", p.wait_p50_secs),
                format!("{:.1}", p.wait_p95_secs),
                format!("{:.1}", p.wait_max_secs),
                format!("{:.1}", p.provider_wait_p50_secs),
                format!("{:.1}", p.provider_wait_p95_secs),
                format!("{:.1}", p.provider_wait_max_secs),
                format!("{:.1}", p.last_done_secs),
            ]);
        }
    }
    out.push_str(&table.to_string());
}

/// Each user of each cell's first repeat.
fn users_table(timed: &Timed<'_>, out: &mut String) {
    let _ = writeln!(out, "\n### Each user (first repeat)\n");
    let mut table = Table::new([
        "cell",
        "user",
        "provider",
        "posted at s",
        "wait s",
        "provider wait s",
        "run s",
        "first game s",
        "done s",
        "games",
        "games/s",
        "received per stored",
    ]);
    for (label, runs) in timed {
        let Some((_, t)) = runs.first() else { continue };
        for i in &t.imports {
            table.row([
                label.to_string(),
                i.user.clone(),
                i.platform.to_string(),
                format!("{:.1}", i.arrived_secs),
                secs(i.wait_secs),
                format!("{:.1}", i.provider_wait_secs),
                secs(i.run_secs),
                secs(i.first_game_secs),
                secs(i.done_secs),
                i.games.to_string(),
                secs(i.games_per_sec),
                i.received_per_stored
                    .map_or("–".to_string(), |r| format!("{r:.2}")),
            ]);
        }
    }
    out.push_str(&table.to_string());
}
