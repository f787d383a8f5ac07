//! Plots, as PNG and SVG, drawn with plotters and a bundled font (no system font libraries).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::combinators::{LogCoord, WithKeyPoints};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::Error;
use crate::observe::Timeline;
use crate::session::results::{RunResults, median, mib, mib_f64};

static FONT: Once = Once::new();

fn ensure_font() {
    FONT.call_once(|| {
        // DejaVu Sans, bundled: text renders the same on every machine.
        let bytes: &'static [u8] = include_bytes!("../../assets/DejaVuSans.ttf");
        if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_err() {
            tracing::warn!("bundled font rejected; plots will have no text");
        }
    });
}

/// A log-scale axis labelled at 1, 2 and 5 of each decade: plotters' own log key points put
/// 10 × 10 and the next decade's 100 a rounding error apart, and drew that label twice.
fn log_axis(lo: f64, hi: f64) -> WithKeyPoints<LogCoord<f64>> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        ticks.extend(
            [1.0, 2.0, 5.0]
                .map(|m| m * decade)
                .into_iter()
                .filter(|t| (lo..=hi).contains(t)),
        );
        decade *= 10.0;
    }
    (lo..hi).log_scale().with_key_points(ticks)
}

/// A tick's label on an axis of whole numbers (slots, imports): the number at whole ticks, nothing
/// between them.
pub(super) fn whole_number(x: &f64) -> String {
    if (x - x.round()).abs() < 0.01 {
        format!("{x:.0}")
    } else {
        String::new()
    }
}

/// A labelled line through `pts` with a dot at each point: a measured series.
pub(super) fn dotted_line<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    pts: &[(f64, f64)],
    colour: RGBColor,
    label: &str,
) -> DrawResult<DB> {
    chart
        .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], colour.stroke_width(2)));
    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
    Ok(())
}

/// The legend box every plot here draws, at `position`.
pub(super) fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    position: SeriesLabelPosition,
) -> DrawResult<DB> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font(("sans-serif", 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

/// A chart of two linear axes.
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// What drawing on a backend `DB` ends with: plotters' error, of that backend.
pub(super) type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn plot_err<E: std::error::Error + Send + Sync + 'static>(
    path: &Path,
) -> impl Fn(DrawingAreaErrorKind<E>) -> Error + '_ {
    move |e| Error::Plot {
        path: path.to_path_buf(),
        source: Box::new(e),
    }
}

/// A generic drawing routine, instantiated for both backends.
pub(super) trait Draw {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// The axes every RSS timeline shares: seconds since healthy against MiB, both from 0, mesh drawn.
fn rss_over_time<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    caption: String,
    max_t: f64,
    max_y: f64,
) -> Result<Chart<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_t, 0f64..max_y)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the importer was healthy")
        .y_desc("RSS (MiB)")
        .label_style(("sans-serif", 14))
        .draw()?;
    Ok(chart)
}

/// Draws `what` with the backend the file's extension names.
pub(super) fn render_with<D: Draw>(path: &Path, size: (u32, u32), what: &D) -> Result<(), Error> {
    ensure_font();
    if path.extension().is_some_and(|e| e == "svg") {
        let root = SVGBackend::new(path, size).into_drawing_area();
        what.draw(&root).map_err(plot_err(path))?;
        root.present().map_err(plot_err(path))
    } else {
        let root = BitMapBackend::new(path, size).into_drawing_area();
        what.draw(&root).map_err(plot_err(path))?;
        root.present().map_err(plot_err(path))
    }
}

struct TimelinePlot<'a> {
    timelines: &'a [Timeline],
    budget: u64,
}

impl Draw for TimelinePlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        // The first repeat of each cell: later repeats would hide it.
        let shown: Vec<&Timeline> = self.timelines.iter().filter(|t| t.repeat == 0).collect();
        let max_t = shown
            .iter()
            .flat_map(|t| t.samples.last().map(|s| s.t))
            .fold(1.0_f64, f64::max);
        let max_rss = shown
            .iter()
            .flat_map(|t| t.samples.iter().map(|s| s.rss))
            .max()
            .unwrap_or(1);
        let max_y = mib(max_rss) * 1.15;
        let budget = mib(self.budget);
        let title = format!(
            "Importer memory over time (solid: RSS; dashed: anonymous): the highest RSS uses {:.1} % of the {budget:.0} MiB budget",
            mib(max_rss) / budget.max(f64::MIN_POSITIVE) * 100.0
        );
        let root = root.titled(&title, ("sans-serif", 20))?;
        // Small multiples on one scale: a panel per six cells, so that no colour repeats.
        let groups: Vec<&[&Timeline]> = shown.chunks(LINES_PER_PANEL).collect();
        let cols = groups.len().clamp(1, 2);
        let panels = root.split_evenly((groups.len().div_ceil(cols).max(1), cols));
        for (g, (group, area)) in groups.iter().zip(panels.iter()).enumerate() {
            let caption = if groups.len() > 1 {
                format!(
                    "cells {}–{}",
                    g * LINES_PER_PANEL + 1,
                    g * LINES_PER_PANEL + group.len()
                )
            } else {
                String::new()
            };
            let mut chart = rss_over_time(area, caption, max_t, max_y)?;
            if budget <= max_y {
                chart
                    .draw_series(LineSeries::new(
                        [(0.0, budget), (max_t, budget)],
                        BLACK.stroke_width(2),
                    ))?
                    .label("budget")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK));
            }
            for (i, t) in group.iter().enumerate() {
                let color = super::palette::pick(i).to_rgba();
                chart
                    .draw_series(LineSeries::new(
                        t.samples.iter().map(|s| (s.t, mib(s.rss))),
                        color.stroke_width(2),
                    ))?
                    .label(t.label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(2)));
                // The anonymous part, in the same colour: the gap to the total is the binary's
                // resident text and other file-backed pages.
                if t.samples.iter().any(|s| s.anon > 0) {
                    chart.draw_series(DashedLineSeries::new(
                        t.samples.iter().map(|s| (s.t, mib(s.anon))),
                        6,
                        4,
                        color.stroke_width(1),
                    ))?;
                }
                // Ticks at the bottom where this cell's imports started and ended.
                chart.draw_series(
                    t.marks
                        .iter()
                        .map(|&m| PathElement::new(vec![(m, 0.0), (m, max_y * 0.04)], color.stroke_width(2))),
                )?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .label_font(("sans-serif", 11))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
        }
        Ok(())
    }
}

/// `memory-timeline.{png,svg}`: RSS over time, a line per cell, six to a panel, ticks where
/// imports start and end.
pub fn timeline(path: &Path, timelines: &[Timeline], budget: u64) -> Result<(), Error> {
    let cells = timelines.iter().filter(|t| t.repeat == 0).count().max(1);
    let panels = cells.div_ceil(LINES_PER_PANEL) as u32;
    let (cols, rows) = (panels.clamp(1, 2), panels.div_ceil(2).max(1));
    let width = if cols == 1 { 1400 } else { 1800 };
    render_with(
        path,
        (width, 520 * rows + 40),
        &TimelinePlot { timelines, budget },
    )
}

struct PeakPlot<'a> {
    results: &'a RunResults,
}

/// Lines a panel of a small-multiples plot holds: one colour each, none repeated.
const LINES_PER_PANEL: usize = super::palette::OKABE_ITO.len() - 1;

/// A configuration's line: its label and (concurrency, median peak MiB) points.
type PeakLine = (String, Vec<(f64, f64)>);

/// Median peak per concurrency, per configuration other than concurrency.
fn peak_lines(results: &RunResults) -> Vec<PeakLine> {
    let mut lines: BTreeMap<String, BTreeMap<u32, Vec<u64>>> = BTreeMap::new();
    for c in &results.cells {
        if c.error.is_some() {
            continue;
        }
        lines
            .entry(c.cell.config_label())
            .or_default()
            .entry(c.cell.max_concurrent_imports)
            .or_default()
            .push(c.peak);
    }
    lines
        .into_iter()
        .map(|(key, points)| {
            let pts = points
                .iter()
                .map(|(&n, peaks)| (f64::from(n), mib(median(peaks.iter().copied()))))
                .collect();
            (key, pts)
        })
        .collect()
}

impl Draw for PeakPlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let lines = peak_lines(self.results);
        let budget = mib(self.results.budget_bytes);
        let highest = lines
            .iter()
            .flat_map(|(_, pts)| pts.iter().map(|p| p.1))
            .fold(0.0f64, f64::max);
        // A linear axis up to the highest peak: the budget is written as a share, not drawn
        // hundreds of MiB above lines it would squeeze onto the floor.
        let title = format!(
            "Peak RSS against MAX_CONCURRENT_IMPORTS ({}): the highest uses {:.1} % of the {budget:.0} MiB budget",
            self.results.scenario,
            highest / budget.max(f64::MIN_POSITIVE) * 100.0
        );
        let root = root.titled(&title, ("sans-serif", 20))?;
        let xs: Vec<f64> = lines.iter().flat_map(|(_, p)| p.iter().map(|p| p.0)).collect();
        let (min_x, max_x) = (
            xs.iter().copied().reduce(f64::min).unwrap_or(1.0) - 0.5,
            xs.iter().copied().fold(0.0, f64::max).max(1.0) + 0.5,
        );
        let max_y = (highest * 1.15).max(1.0);
        let groups: Vec<&[PeakLine]> = lines.chunks(LINES_PER_PANEL).collect();
        let cols = groups.len().clamp(1, 3);
        let panels = root.split_evenly((groups.len().div_ceil(cols).max(1), cols));
        for (group, area) in groups.iter().zip(panels.iter()) {
            let mut chart = ChartBuilder::on(area)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(min_x..max_x, 0f64..max_y)?;
            chart
                .configure_mesh()
                .x_desc("MAX_CONCURRENT_IMPORTS (imports at once)")
                .y_desc("peak RSS, VmHWM (MiB)")
                .x_labels(xs.len().clamp(2, 12))
                .x_label_formatter(&whole_number)
                .label_style(("sans-serif", 13))
                .draw()?;
            for (i, (key, pts)) in group.iter().enumerate() {
                dotted_line(&mut chart, pts, super::palette::pick(i), key)?;
            }
            legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        }
        Ok(())
    }
}

/// `peak-vs-config.{png,svg}`: peak RSS against concurrency, a line per batch/page, at most six
/// to a panel (small multiples on one scale), the budget as a share in the title.
pub fn peak_vs_config(path: &Path, results: &RunResults) -> Result<(), Error> {
    let configs = peak_lines(results).len().max(1);
    let panels = configs.div_ceil(LINES_PER_PANEL);
    let (cols, rows) = (panels.clamp(1, 3) as u32, panels.div_ceil(3).max(1) as u32);
    render_with(path, (560 * cols.max(2), 480 * rows + 40), &PeakPlot { results })
}

struct CapacityPlot<'a> {
    rec: &'a crate::analysis::recommend::Recommendation,
}

impl Draw for CapacityPlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let r = self.rec;
        let budget = mib(r.budget_bytes);
        let limit = budget * (1.0 - r.headroom);
        let max_n = r
            .models
            .iter()
            .flat_map(|m| m.points.iter().map(|p| p.0).chain(m.recommended))
            .max()
            .unwrap_or(4)
            .max(4);
        let max_x = f64::from(max_n) * 1.5;
        let min_peak = r
            .models
            .iter()
            .flat_map(|m| m.points.iter().map(|p| p.1))
            .min()
            .unwrap_or(1 << 20);
        let min_y = (mib(min_peak) * 0.7).max(0.5);
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("Peak memory by imports running at once ({})", r.scenario),
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((0.8f64..max_x).log_scale(), log_axis(min_y, budget * 1.3))?;
        chart
            .configure_mesh()
            .x_desc("imports running at once (as measured; log scale)")
            .y_desc("peak RSS (MiB, log scale)")
            .label_style(("sans-serif", 14))
            .draw()?;
        for (value, color, name) in [
            (budget, BLACK, "budget"),
            (limit, super::palette::OKABE_ITO[3], "budget less headroom"),
        ] {
            chart
                .draw_series(LineSeries::new(
                    [(0.8, value), (max_x, value)],
                    color.stroke_width(2),
                ))?
                .label(format!("{name} {value:.0} MiB"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        }
        for (i, m) in r.models.iter().enumerate() {
            let color = super::palette::pick(i).to_rgba();
            chart
                .draw_series(
                    m.points
                        .iter()
                        .map(|&(n, p)| Circle::new((f64::from(n), mib(p)), 4, color.filled())),
                )?
                .label(format!(
                    "{}{}",
                    m.config,
                    m.recommended
                        .map_or(" (no recommendation)".into(), |n| format!(": safe up to {n}"))
                ))
                .legend(move |(x, y)| Circle::new((x + 7, y), 4, color.filled()));
            // A line only where it describes the points: an untrusted fit is not drawn.
            if let Some(f) = m.fit.filter(|f| f.trusted()) {
                let line: Vec<(f64, f64)> = (0..=60)
                    .map(|k| 0.8 * (max_x / 0.8).powf(f64::from(k) / 60.0))
                    .map(|n| (n, mib_f64(f.predict(n)).max(min_y)))
                    .collect();
                chart.draw_series(LineSeries::new(line, color.stroke_width(1)))?;
            }
            if let (Some(n), Some(p)) = (m.recommended, m.predicted_peak) {
                chart.draw_series([Cross::new((f64::from(n), mib_f64(p)), 9, color.stroke_width(3))])?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }
}

/// `capacity.{png,svg}`: measured points, the fitted lines, the budget, the recommended points (crosses).
pub fn capacity(path: &Path, rec: &crate::analysis::recommend::Recommendation) -> Result<(), Error> {
    render_with(path, (1200, 800), &CapacityPlot { rec })
}

struct ComparePeakPlot<'a> {
    cmp: &'a crate::analysis::compare::Comparison,
}

impl Draw for ComparePeakPlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let rows: Vec<&crate::analysis::compare::Row> =
            self.cmp.rows.iter().filter(|r| r.metric == "peak RSS").collect();
        let labels: Vec<String> = rows.iter().map(|r| r.cell.clone()).collect();
        let max_y = rows
            .iter()
            .flat_map(|r| r.before.iter().chain(&r.after))
            .fold(1.0_f64, |a, &b| a.max(b))
            * 1.2;
        let n = rows.len().max(1) as f64;
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Peak RSS per cell: before and after (each repeat, median joined)",
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(60)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..n - 0.5, 0f64..max_y)?;
        chart
            .configure_mesh()
            .x_labels(rows.len().max(1))
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 0.01 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("peak RSS (MiB)")
            .label_style(("sans-serif", 13))
            .draw()?;
        for (side, color, offset) in [
            ("before", super::palette::OKABE_ITO[0], -0.12),
            ("after", super::palette::OKABE_ITO[1], 0.12),
        ] {
            let medians: Vec<(f64, f64)> = rows
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    (
                        i as f64 + offset,
                        if side == "before" {
                            r.before_median
                        } else {
                            r.after_median
                        },
                    )
                })
                .collect();
            chart
                .draw_series(LineSeries::new(medians, color.stroke_width(2)))?
                .label(side)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
            let points: Vec<(f64, f64)> = rows
                .iter()
                .enumerate()
                .flat_map(|(i, r)| {
                    let v = if side == "before" { &r.before } else { &r.after };
                    v.iter().map(move |&y| (i as f64 + offset, y))
                })
                .collect();
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }
}

/// `compare-peak.{png,svg}`: both runs' peaks per cell on one chart.
pub fn compare_peak(path: &Path, cmp: &crate::analysis::compare::Comparison) -> Result<(), Error> {
    render_with(path, (1200, 700), &ComparePeakPlot { cmp })
}

struct CompareTimelinePlot<'a> {
    cell: &'a str,
    before: &'a [crate::observe::Sample],
    after: &'a [crate::observe::Sample],
}

impl Draw for CompareTimelinePlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let all = self.before.iter().chain(self.after);
        let max_t = all.clone().map(|s| s.t).fold(1.0_f64, f64::max);
        let max_y = mib(all.map(|s| s.rss).max().unwrap_or(1)) * 1.15;
        let caption = format!("RSS over time, {}: before and after", self.cell);
        let mut chart = rss_over_time(root, caption, max_t, max_y)?;
        for (name, samples, color) in [
            ("before", self.before, super::palette::OKABE_ITO[0]),
            ("after", self.after, super::palette::OKABE_ITO[1]),
        ] {
            chart
                .draw_series(LineSeries::new(
                    samples.iter().map(|s| (s.t, mib(s.rss))),
                    color.stroke_width(2),
                ))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }
}

/// `compare-timeline-CELL.{png,svg}`: the same cell's RSS over time in both runs, overlaid.
pub fn compare_timeline(
    path: &Path,
    cell: &str,
    before: &[crate::observe::Sample],
    after: &[crate::observe::Sample],
) -> Result<(), Error> {
    render_with(path, (1200, 600), &CompareTimelinePlot { cell, before, after })
}
