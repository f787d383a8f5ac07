//! The profiled runs behind `gate --where` and `run --heap-profile`: one run of a cell per side
//! under heaptrack, in the report folder's `where/`, read back as profiles.
//!
//! They are extra runs, after the measured ones: heaptrack slows the importer and adds its own
//! memory, so their figures never reach a verdict.

use std::path::{Path, PathBuf};

use crate::analysis::heap::{self, Profile};
use crate::scenario::{Cell, Checked};
use crate::session::{self, Options, Session};
use crate::target::heaptrack::{self, Heaptrack};

/// Why a cell could not be profiled (the gate still decides; it says so).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// heaptrack is missing or failed.
    #[error(transparent)]
    Heaptrack(#[from] heaptrack::Error),
    /// The profiled run could not start.
    #[error(transparent)]
    Session(#[from] session::Error),
    /// The profiled run failed.
    #[error("the profiled run of {cell} failed: {why}")]
    Run {
        /// The run's label.
        cell: String,
        /// Why.
        why: String,
    },
    /// Its profile could not be read.
    #[error("cannot read the heap profile {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// One side to profile: a name for its run folder, its importer and its options (`--set`s).
pub struct Side {
    /// `against`, `candidate`, or `peak` for a run's own.
    pub name: &'static str,
    /// The importer binary.
    pub importer: PathBuf,
    /// Its options (the heap profile is switched on here).
    pub opts: Options,
}

/// The profiled run of `side` on `cell` lands in `dir/where/cells/CELL-SIDE-r1/`.
pub fn run_dir(dir: &Path, cell: &Cell, side: &str) -> PathBuf {
    dir.join("where")
        .join("cells")
        .join(format!("{}-{side}-r1", cell.label))
}

/// Profiles `cell` once per side, in order, into `dir/where/`; the first process's profile each.
pub async fn profiles(s: &Checked, cell: &Cell, sides: &[Side], dir: &Path) -> Result<Vec<Profile>, Error> {
    let heaptrack = Heaptrack::find()?;
    let with_heap = |o: &Options| Options {
        heap_profile: Some(heaptrack.clone()),
        progress: false,
        repeats: Some(1),
        ..o.clone()
    };
    let Some(first) = sides.first() else {
        return Ok(Vec::new());
    };
    let base = with_heap(&first.opts);
    let mut session = Session::start_in(s, &base, sides.len() as u64, Some(dir.join("where"))).await?;
    let (mut out, mut runs) = (Vec::new(), Vec::new());
    for side in sides {
        let opts = with_heap(&side.opts);
        let labelled = Cell {
            label: format!("{}-{}", cell.label, side.name),
            ..cell.clone()
        };
        let started = std::time::Instant::now();
        let run = session.measure_with(&labelled, 0, &side.importer, &opts).await;
        tracing::info!(
            cell = %labelled.label,
            secs = started.elapsed().as_secs_f64(),
            "profiled run under heaptrack"
        );
        if let Some(why) = &run.error {
            return Err(Error::Run {
                cell: labelled.label,
                why: why.clone(),
            });
        }
        let path = heaptrack::peaks_file(&run_dir(dir, cell, side.name), 0);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read { path, source })?;
        out.push(heap::parse(&text));
        runs.push(run);
    }
    // Only to remove the staged binaries: the profiled runs' figures are reported nowhere.
    let _ = session.finish(runs);
    Ok(out)
}
