//! Reports: what a run measured and what the analysis decided, rendered as
//! `results.json`, `samples.csv`, plots, `summary.md` and `report.html`
//! (and a gate's, a recommendation's or a comparison's own files).

pub mod binary;
pub mod compare;
pub mod faults;
pub mod gate;
pub mod heap;
pub mod html;
pub mod palette;
pub mod plot;
pub mod recommend;
pub mod replay;
pub mod summary;
mod table;
pub mod time;
pub mod time_plot;
pub mod wait;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use plot::{peak_vs_config, timeline};
pub use summary::summary_markdown;

use crate::observe::{Sample, Timeline};
use crate::session::Outcome;
use crate::session::results::RunResults;

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
    #[error("cannot draw {path}: {source}")]
    Plot {
        /// The file.
        path: PathBuf,
        /// What plotters said (its error for the file's backend).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A flame graph could not be drawn (inferno).
    #[error("cannot draw the flame graph: {0}")]
    Flame(#[source] std::io::Error),
    /// JSON could not be encoded.
    #[error("cannot encode: {0}")]
    Json(#[from] serde_json::Error),
    /// JUnit XML could not be encoded.
    #[error("cannot encode junit.xml: {0}")]
    Junit(#[from] quick_junit::SerializeError),
    /// A run's `results.json` could not be read.
    #[error("{path}: cannot read {file}: {source}")]
    Input {
        /// The path given (a report folder or the file).
        path: PathBuf,
        /// The file read.
        file: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A run's `results.json` is not what `harness run` writes.
    #[error("{path}: not a harness results.json: {source}")]
    NotResults {
        /// The path given.
        path: PathBuf,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
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
    writeln!(
        out,
        "cell,repeat,t_secs,rss_bytes,anon_bytes,file_bytes,shmem_bytes"
    )
    .map_err(err)?;
    for t in timelines {
        for s in &t.samples {
            writeln!(
                out,
                "{},{},{:.4},{},{},{},{}",
                t.label,
                t.repeat + 1,
                s.t,
                s.rss,
                s.anon,
                s.file,
                s.shmem
            )
            .map_err(err)?;
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
        if time_plot::has_queue(results) {
            time_plot::queue(&dir.join(format!("queue.{ext}")), results)?;
        }
        // Against mocks that answer at once, a wait chart would show the importer's own speed as
        // if it were what users wait at a provider.
        if results.paced() && results.cells.iter().any(|c| c.timing.is_some()) {
            time_plot::wait_vs_config(&dir.join(format!("wait-vs-config.{ext}")), results)?;
        }
    }
    write_file(&dir.join("summary.md"), summary_markdown(results).as_bytes())?;
    if results.observed.is_some() {
        let mut replay = String::new();
        replay::section(results, &mut replay);
        write_file(&dir.join("replay.md"), replay.as_bytes())?;
    }
    html::write_run(
        dir,
        &format!("harness run: {}", results.scenario),
        &summary::glance(results),
    )?;
    Ok(())
}

/// Text made safe inside HTML, element content or a quoted attribute: `& < > "` escaped.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Writes every report of a finished run into its folder and points `latest` beside it there.
pub fn write_run(outcome: &Outcome) -> Result<(), Error> {
    write_all(&outcome.dir, &outcome.results, &outcome.timelines)?;
    let latest = outcome.dir.with_file_name("latest");
    let _ = std::fs::remove_file(&latest);
    if let Some(name) = outcome.dir.file_name() {
        let _ = std::os::unix::fs::symlink(name, &latest);
    }
    Ok(())
}

/// A run read back from its report folder.
pub struct Loaded {
    /// Its folder.
    pub dir: PathBuf,
    /// What it measured.
    pub results: RunResults,
}

/// Reads `results.json` from a report folder or the file itself.
pub fn read_results(path: &Path) -> Result<Loaded, Error> {
    let file = if path.is_dir() {
        path.join("results.json")
    } else {
        path.to_path_buf()
    };
    let bytes = std::fs::read(&file).map_err(|source| Error::Input {
        path: path.to_path_buf(),
        file: file.clone(),
        source,
    })?;
    let results: RunResults = serde_json::from_slice(&bytes).map_err(|source| Error::NotResults {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Ok(Loaded { dir, results })
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
            // Files written before the split have the first four columns only.
            let mut split = || f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            Some(Sample {
                t: t.parse().ok()?,
                rss: rss.parse().ok()?,
                anon: split(),
                file: split(),
                shmem: split(),
            })
        })
        .collect()
}
