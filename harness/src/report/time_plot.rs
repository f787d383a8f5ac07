//! Pictures of time: the queue of each cell (`queue.{png,svg}`) and the waits
//! against the slots (`wait-vs-config.{png,svg}`), on provider time.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::Error;
use super::palette;
use super::plot::{Draw, DrawResult, dotted_line, legend, render_with, whole_number};
use crate::observe::timing::{Provider, Timing};
use crate::session::results::{CellRun, RunResults, by_cell};

/// Cells a queue picture shows at most (3 columns of panels).
pub const MAX_QUEUE_PANELS: usize = 24;
/// Imports a queue panel shows at most: a row per import stays readable up to here.
pub const MAX_QUEUE_ROWS: usize = 64;

/// The first repeat of each cell that measured times, in cell order.
fn first_timed(results: &RunResults) -> Vec<(String, &CellRun, &Timing)> {
    by_cell(results)
        .into_iter()
        .filter_map(|c| {
            let run = c.runs.into_iter().find(|r| r.timing.is_some())?;
            Some((c.label.to_string(), run, run.timing.as_ref()?))
        })
        .collect()
}

/// Whether a run can have a queue picture: some timed cell, none too large to draw.
pub fn has_queue(results: &RunResults) -> bool {
    let cells = first_timed(results);
    !cells.is_empty()
        && cells.len() <= MAX_QUEUE_PANELS
        && cells.iter().all(|(_, _, t)| t.imports.len() <= MAX_QUEUE_ROWS)
}

struct QueuePlot<'a> {
    cells: Vec<(String, &'a CellRun, &'a Timing)>,
}

impl Draw for QueuePlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let scale = self.cells.first().map_or(1.0, |(_, _, t)| t.time_scale);
        let title = if scale > 1.0 {
            format!(
                "Waiting (pale), then importing (solid); lichess blue, chess.com vermillion; run {scale:.0}× faster"
            )
        } else {
            "Waiting (pale), then importing (solid); lichess blue, chess.com vermillion".into()
        };
        let root = root.titled(&title, ("sans-serif", 18))?;
        // One time axis for every panel, so that panels compare at a glance.
        let max_t = self
            .cells
            .iter()
            .flat_map(|(_, _, t)| {
                t.imports
                    .iter()
                    .filter_map(|i| Some(i.arrived_secs + i.done_secs?))
            })
            .fold(1.0f64, f64::max)
            * 1.05;
        let cols = self.cells.len().clamp(1, 3);
        let rows = self.cells.len().div_ceil(cols);
        let panels = root.split_evenly((rows, cols));
        for ((label, run, t), area) in self.cells.iter().zip(panels.iter()) {
            let n = t.imports.len().max(1);
            let lanes = crate::scenario::lanes(&run.cell.env);
            let caption = format!(
                "{label}: {} slots, {} lichess stream(s), {} chess.com request(s)",
                run.cell.max_concurrent_imports, lanes.lichess, lanes.chess_com,
            );
            let mut chart = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 14))
                .margin(8)
                .x_label_area_size(34)
                .y_label_area_size(90)
                .build_cartesian_2d(0f64..max_t, -0.5f64..n as f64 - 0.5)?;
            let users: Vec<&str> = t.imports.iter().map(|i| i.user.as_str()).collect();
            chart
                .configure_mesh()
                .disable_y_mesh()
                .light_line_style(TRANSPARENT)
                .x_desc("provider seconds since the first POST")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_labels(n + 1)
                .y_label_formatter(&|y| {
                    // Row y (an integer) is user n - 1 - y: the first POST at the top.
                    let row = n as f64 - 1.0 - y;
                    if (row - row.round()).abs() < 0.05 && row >= 0.0 {
                        users
                            .get(row.round() as usize)
                            .map_or(String::new(), |u| (*u).to_string())
                    } else {
                        String::new()
                    }
                })
                .label_style(("sans-serif", 11))
                .draw()?;
            for (k, i) in t.imports.iter().enumerate() {
                let centre = (n - 1 - k) as f64;
                let (bottom, top) = (centre - 0.35, centre + 0.35);
                let colour = palette::provider(i.platform);
                let start = i.wait_secs.map(|w| i.arrived_secs + w);
                let end = i.done_secs.map(|d| i.arrived_secs + d);
                let waited_to = start.or(end).unwrap_or(max_t);
                chart.draw_series([Rectangle::new(
                    [(i.arrived_secs, bottom), (waited_to, top)],
                    colour.mix(0.25).filled(),
                )])?;
                if let (Some(s), Some(f)) = (start, end) {
                    chart.draw_series([Rectangle::new([(s, bottom), (f, top)], colour.filled())])?;
                }
            }
        }
        Ok(())
    }
}

/// `queue.{png,svg}`: a panel per cell (first repeat), a row per user: waiting, then importing.
pub fn queue(path: &Path, results: &RunResults) -> Result<(), Error> {
    let cells = first_timed(results);
    let cols = cells.len().clamp(1, 3) as u32;
    let rows = cells.len().div_ceil(3).max(1) as u32;
    let per_panel_rows = cells.iter().map(|(_, _, t)| t.imports.len()).max().unwrap_or(1) as u32;
    let height = rows * (120 + 22 * per_panel_rows.min(MAX_QUEUE_ROWS as u32)) + 40;
    // Wide enough for the title even with one panel.
    render_with(
        path,
        ((560 * cols).max(1000), height.min(4000)),
        &QueuePlot { cells },
    )
}

struct WaitPlot<'a> {
    results: &'a RunResults,
}

/// (slots, worst p95 wait, worst last completion) per lichess-lane setting.
type Lines = BTreeMap<String, BTreeMap<u32, (f64, f64)>>;

fn wait_lines(results: &RunResults) -> Lines {
    let mut lines: Lines = BTreeMap::new();
    for c in &results.cells {
        let Some(all) = c.timing.as_ref().and_then(|t| t.provider(Provider::All)) else {
            continue;
        };
        let lanes = crate::scenario::lanes(&c.cell.env);
        let key = format!(
            "{} lichess stream(s), {} chess.com request(s)",
            lanes.lichess, lanes.chess_com
        );
        let point = lines
            .entry(key)
            .or_default()
            .entry(c.cell.max_concurrent_imports)
            .or_insert((0.0, 0.0));
        point.0 = point.0.max(all.wait_p95_secs);
        point.1 = point.1.max(all.last_done_secs);
    }
    lines
}

impl Draw for WaitPlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let lines = wait_lines(self.results);
        let xs: Vec<u32> = lines.values().flat_map(|m| m.keys().copied()).collect();
        let (lo, hi) = (
            f64::from(xs.iter().copied().min().unwrap_or(1)) - 0.5,
            f64::from(xs.iter().copied().max().unwrap_or(1)) + 0.5,
        );
        let panels = root.split_evenly((1, 2));
        for (area, (title, pick)) in panels.iter().zip([
            ("95th percentile of the users' wait", 0usize),
            ("when the last user had all their games", 1),
        ]) {
            let value = |p: &(f64, f64)| if pick == 0 { p.0 } else { p.1 };
            let max_y = lines
                .values()
                .flat_map(|m| m.values().map(value))
                .fold(1.0f64, f64::max)
                * 1.15;
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(lo..hi, 0f64..max_y)?;
            chart
                .configure_mesh()
                .x_desc("MAX_CONCURRENT_IMPORTS (slots)")
                .y_desc("provider seconds")
                .x_labels(xs.len().max(2))
                .x_label_formatter(&whole_number)
                .label_style(("sans-serif", 13))
                .draw()?;
            for (i, (key, points)) in lines.iter().enumerate() {
                let pts: Vec<(f64, f64)> = points.iter().map(|(&n, p)| (f64::from(n), value(p))).collect();
                dotted_line(&mut chart, &pts, palette::pick(i), key)?;
            }
            legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        }
        Ok(())
    }
}

/// `wait-vs-config.{png,svg}`: p95 wait and last completion against the slots, a line per lane setting.
pub fn wait_vs_config(path: &Path, results: &RunResults) -> Result<(), Error> {
    render_with(path, (1400, 600), &WaitPlot { results })
}
