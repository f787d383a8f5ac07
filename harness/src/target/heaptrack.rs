//! The importer under heaptrack (KDE's heap profiler, Debian's package `heaptrack`), for the
//! gate's "where did memory grow" (`harness gate --where`, `harness run --heap-profile`).
//!
//! Why heaptrack: it needs no change to the importer and works on any build (an `LD_PRELOAD`
//! library that records every malloc/free with its backtrace), it sees C allocations too
//! (SQLite's page cache), and its own `heaptrack_print` reports the bytes each backtrace held
//! at the moment of the peak heap. jemalloc's profiler would need the importer built with
//! jemalloc, which is not the allocator the gate measures; dhat-rs, a code change in it.
//!
//! The importer is started with the preload library in its (otherwise clean) environment and
//! writes heaptrack's raw trace to a file; once it has stopped, `heaptrack_interpret` turns the
//! file into heaptrack's data file and `heaptrack_print` reads that. The `heaptrack` launcher
//! script is not used: it would stand between the harness and the importer's pid (the sampler,
//! SIGTERM).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why heaptrack cannot be used or its output read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// heaptrack is not installed.
    #[error(
        "heaptrack not found ({0}); install Debian's package: apt-get install heaptrack (the gate's --where and run --heap-profile need it)"
    )]
    Missing(String),
    /// A heaptrack program could not run, or a file it reads or writes could not be opened.
    #[error("{program} on {file}: {source}")]
    Io {
        /// The program.
        program: &'static str,
        /// The file it reads or writes.
        file: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A heaptrack program exited with an error.
    #[error("{program} on {file}: {status}")]
    Exited {
        /// The program.
        program: &'static str,
        /// The file it read.
        file: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// A heaptrack program failed and said why.
    #[error("{program} on {file}: {stderr}")]
    Failed {
        /// The program.
        program: &'static str,
        /// The file it read.
        file: PathBuf,
        /// What it printed on its standard error.
        stderr: String,
    },
}

/// Where heaptrack's parts are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heaptrack {
    /// `libheaptrack_preload.so`.
    pub preload: PathBuf,
    /// `heaptrack_interpret`.
    pub interpret: PathBuf,
    /// `heaptrack_print`.
    pub print: PathBuf,
}

/// The raw trace of process `k` of a cell run, in its folder.
pub fn raw_file(dir: &Path, k: usize) -> PathBuf {
    dir.join(format!("heaptrack-{}.raw", k + 1))
}

/// The interpreted data file of process `k` of a cell run: what `heaptrack_print` and
/// `heaptrack --analyze` (its GUI) read.
pub fn data_file(dir: &Path, k: usize) -> PathBuf {
    dir.join(format!("heaptrack-{}.data", k + 1))
}

/// The peaks' text (`heaptrack_print --print-peaks`) of process `k` of a cell run.
pub fn peaks_file(dir: &Path, k: usize) -> PathBuf {
    dir.join(format!("heaptrack-{}.peaks.txt", k + 1))
}

impl Heaptrack {
    /// Finds heaptrack beside `heaptrack_print` on the PATH (Debian: `/usr/bin`, the libraries in
    /// `/usr/lib/heaptrack`).
    pub fn find() -> Result<Heaptrack, Error> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let print = std::env::split_paths(&path)
            .map(|d| d.join("heaptrack_print"))
            .find(|p| p.is_file())
            .ok_or_else(|| Error::Missing("no heaptrack_print on the PATH".into()))?;
        let prefix = print.parent().and_then(Path::parent).unwrap_or(Path::new("/usr"));
        let libs = [
            prefix.join("lib/heaptrack"),
            prefix.join("lib/x86_64-linux-gnu/heaptrack"),
            prefix.join("lib/aarch64-linux-gnu/heaptrack"),
        ];
        let lib = libs
            .iter()
            .find(|d| d.join("libheaptrack_preload.so").is_file())
            .ok_or_else(|| {
                Error::Missing(format!("no libheaptrack_preload.so under {}", prefix.display()))
            })?;
        let interpret = lib.join("libexec/heaptrack_interpret");
        if !interpret.is_file() {
            return Err(Error::Missing(format!("no {}", interpret.display())));
        }
        Ok(Heaptrack {
            preload: lib.join("libheaptrack_preload.so"),
            interpret,
            print,
        })
    }

    /// The environment that makes a process record its heap into `raw`.
    pub fn env(&self, raw: &Path) -> [(String, String); 2] {
        [
            ("LD_PRELOAD".into(), self.preload.display().to_string()),
            ("DUMP_HEAPTRACK_OUTPUT".into(), raw.display().to_string()),
        ]
    }

    /// Turns process `k`'s raw trace in `dir` into its data file and its peaks' text, and
    /// removes the raw trace (the data file holds all of it, resolved). Call once it has exited.
    pub fn finish(&self, dir: &Path, k: usize) -> Result<PathBuf, Error> {
        let (raw, data, peaks) = (raw_file(dir, k), data_file(dir, k), peaks_file(dir, k));
        let io = |program, file: &Path| {
            let file = file.to_path_buf();
            move |source| Error::Io {
                program,
                file,
                source,
            }
        };
        let input = std::fs::File::open(&raw).map_err(io("heaptrack_interpret", &raw))?;
        let output = std::fs::File::create(&data).map_err(io("heaptrack_interpret", &data))?;
        let status = Command::new(&self.interpret)
            .stdin(input)
            .stdout(output)
            .stderr(Stdio::null())
            .status()
            .map_err(io("heaptrack_interpret", &raw))?;
        if !status.success() {
            return Err(Error::Exited {
                program: "heaptrack_interpret",
                file: raw,
                status,
            });
        }
        let _ = std::fs::remove_file(&raw);
        // Every backtrace on its own (-m 0: merged ones' peaks are not correct, its help says),
        // each with its frames and their file:line; the harness groups them into sites.
        let out = Command::new(&self.print)
            .args([
                "--print-peaks",
                "1",
                "--merge-backtraces",
                "0",
                "--peak-limit",
                "1000000",
            ])
            .args([
                "--print-allocators",
                "0",
                "--print-temporary",
                "0",
                "--print-leaks",
                "0",
            ])
            .arg("--file")
            .arg(&data)
            .output()
            .map_err(io("heaptrack_print", &data))?;
        if !out.status.success() {
            return Err(Error::Failed {
                program: "heaptrack_print",
                file: data,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        std::fs::write(&peaks, &out.stdout).map_err(io("heaptrack_print", &peaks))?;
        Ok(peaks)
    }
}
