//! Reports of a run: `results.json`, `samples.csv`, plots and `summary.md`.

pub mod html;
pub mod plot;
pub mod summary;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use plot::{peak_vs_config, timeline};
pub use summary::summary_markdown;

use crate::observer::Sample;
use crate::results::RunResults;

/// A report that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A plot could not be drawn.
    #[error("cannot draw {path}: {message}")]
    Plot {
        /// The file.
        path: PathBuf,
        /// What plotters said.
        message: String,
    },
    /// results.json could not be encoded.
    #[error("cannot encode results: {0}")]
    Json(#[from] serde_json::Error),
}

/// RSS over time of one cell run, with the moments imports started and ended.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// Cell label.
    pub label: String,
    /// 0-based repeat.
    pub repeat: u32,
    /// The samples.
    pub samples: Vec<Sample>,
    /// Seconds at which an import was posted or ended.
    pub marks: Vec<f64>,
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn write_samples(path: &Path, timelines: &[Timeline]) -> Result<(), Error> {
    let err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(err)?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "cell,repeat,t_secs,rss_bytes").map_err(err)?;
    for t in timelines {
        for s in &t.samples {
            writeln!(out, "{},{},{:.4},{}", t.label, t.repeat + 1, s.t, s.rss).map_err(err)?;
        }
    }
    out.flush().map_err(err)
}

/// Writes every report of a run into `dir`.
pub fn write_all(dir: &Path, results: &RunResults, timelines: &[Timeline]) -> Result<(), Error> {
    write_file(&dir.join("results.json"), &serde_json::to_vec_pretty(results)?)?;
    write_samples(&dir.join("samples.csv"), timelines)?;
    for ext in ["png", "svg"] {
        timeline(
            &dir.join(format!("memory-timeline.{ext}")),
            timelines,
            results.budget_bytes,
        )?;
        peak_vs_config(&dir.join(format!("peak-vs-config.{ext}")), results)?;
    }
    write_file(&dir.join("summary.md"), summary_markdown(results).as_bytes())?;
    html::write_run(dir, &format!("harness run: {}", results.scenario))?;
    Ok(())
}

/// Samples of the first repeat of `label` from a `samples.csv` (empty when absent).
pub fn read_samples(path: &Path, label: &str) -> Vec<Sample> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            let (cell, repeat, t, rss) = (f.next()?, f.next()?, f.next()?, f.next()?);
            (cell == label && repeat == "1").then_some(())?;
            Some(Sample {
                t: t.parse().ok()?,
                rss: rss.parse().ok()?,
            })
        })
        .collect()
}
