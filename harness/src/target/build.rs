//! The importer of another git revision, built for an A/B gate (`harness gate --against-ref`).
//!
//! The revision is checked out in a git worktree and built with cargo into this workspace's own
//! target directory under a profile of its own (`gate-against`, inheriting `release`), so that
//! its build never overwrites `target/release/importer` and its compiled dependencies stay for
//! the next gate. It is built as `make release` builds the candidate (the whole workspace): cargo
//! unifies dependency features over what it builds, and a binary built with `-p importer` alone
//! differs from the candidate even from the same source. The binary is kept as
//! `target/gate-against/importer-<commit>`. One build at a time: a lock file serialises gates.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The cargo profile the other revision is built with.
const PROFILE: &str = "gate-against";

/// Why the other revision's importer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// git could not be run.
    #[error("git {args}: {source}")]
    GitSpawn {
        /// The git arguments.
        args: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// git failed or does not know the revision.
    #[error("git {args}: {message}")]
    Git {
        /// The git arguments.
        args: String,
        /// What git said.
        message: String,
    },
    /// cargo failed to build it.
    #[error("building the importer of {commit} failed ({status}); its output is above")]
    Cargo {
        /// The commit.
        commit: String,
        /// cargo's exit status.
        status: std::process::ExitStatus,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn git(dir: &Path, args: &[&str]) -> Result<String, Error> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|source| Error::GitSpawn {
            args: args.join(" "),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Git {
            args: args.join(" "),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The importer binary of `git_ref` (a commit, branch, tag or `HEAD~1`) of the repository around
/// the current directory, built on first use (minutes: a release build) and reused after; blocks
/// while another gate builds. `say` reports progress.
pub fn importer_at(git_ref: &str, say: impl Fn(String)) -> Result<PathBuf, Error> {
    let here = std::env::current_dir().map_err(io(Path::new(".")))?;
    let root = PathBuf::from(git(&here, &["rev-parse", "--show-toplevel"])?);
    let commit = git(
        &root,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{git_ref}^{{commit}}"),
        ],
    )
    .map_err(|_| Error::Git {
        args: format!("rev-parse {git_ref}"),
        message: "no such commit in this repository".into(),
    })?;
    let short = &commit[..12.min(commit.len())];
    // Cargo resolves a relative CARGO_TARGET_DIR against the worktree: make it absolute here.
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |t| here.join(t));
    let dir = target.join(PROFILE);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let _lock = Lock::take(&dir.join(".lock"))?;
    let bin = dir.join(format!("importer-{short}"));
    if bin.is_file() {
        say(format!("{git_ref}: {short} already built: {}", bin.display()));
        return Ok(bin);
    }
    let tree = dir.join(format!("src-{short}"));
    // A worktree an interrupted gate left behind, or one whose folder is gone (cargo clean).
    let _ = git(&root, &["worktree", "remove", "--force", &tree.to_string_lossy()]);
    let _ = std::fs::remove_dir_all(&tree);
    let _ = git(&root, &["worktree", "prune"]);
    git(
        &root,
        &["worktree", "add", "--detach", &tree.to_string_lossy(), &commit],
    )?;
    say(format!(
        "{git_ref}: building the importer of {short} (profile {PROFILE})"
    ));
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(&tree)
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "--locked", "--workspace", "--profile", PROFILE])
        .args(["--config", &format!("profile.{PROFILE}.inherits=\"release\"")])
        .stdout(Stdio::null())
        .status()
        .map_err(io(&tree));
    let built = dir.join("importer");
    // Copied under a temporary name and renamed: a binary is never seen half written.
    let partial = dir.join(format!(".importer-{short}.partial"));
    let result = match status {
        Ok(s) if s.success() => std::fs::copy(&built, &partial)
            .map_err(io(&built))
            .and_then(|_| std::fs::rename(&partial, &bin).map_err(io(&bin))),
        Ok(status) => Err(Error::Cargo {
            commit: short.to_string(),
            status,
        }),
        Err(e) => Err(e),
    };
    let _ = git(&root, &["worktree", "remove", "--force", &tree.to_string_lossy()]);
    result.map(|()| bin)
}

/// An exclusive `flock` on a file, released when dropped (or when the process dies).
struct Lock {
    _file: std::fs::File,
}

impl Lock {
    fn take(path: &Path) -> Result<Lock, Error> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io(path))?;
        // SAFETY: flock on a descriptor this function owns; no memory is shared with the call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Lock { _file: file })
    }
}
