//! A chess.com month kept on disk while it is chosen from, so that it is downloaded once.
//!
//! chess.com serves a month as one document in no documented order, and the API promises the
//! `limit` newest games: the whole month must be seen before its newest are known, and a month
//! (thousands of games) must not be held in memory. Each game is appended here as it arrives;
//! the pipeline keeps a key, an end time and an [`Extent`] per game, and reads back only the
//! games it chose. The spool holds one month at a time ([`Spool::clear`] between months).
//!
//! The file has no name: it is opened with `O_TMPFILE` in `TMPDIR` (`std::env::temp_dir`), so the
//! kernel frees it when the process ends, kill -9 included, and no other process can open it.
//! Where the file system refuses `O_TMPFILE`, a named file is created and unlinked at once; a
//! crash between the two leaves a file that [`remove_leftovers`] deletes at the next start.
//! On a host whose `TMPDIR` is a tmpfs the spool is memory: point `TMPDIR` at a disk there.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The start of a named spool file's name (the fallback without `O_TMPFILE`).
const PREFIX: &str = "chess-games-importer-spool.";

/// Why the spool failed; the import fails with it.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// No file could be created in the directory.
    #[error("cannot create a spool file in {dir} (TMPDIR): {source}")]
    Create {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing, reading or truncating the file failed (a full disk, most likely).
    #[error("spool file in TMPDIR: {0}")]
    Io(#[from] io::Error),
}

/// Where one game lies in the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Its first byte.
    pub offset: u64,
    /// Its length in bytes (a game is at most `pgn::MAX_GAME_BYTES`).
    pub len: u32,
}

/// An unnamed file that the games of one month are appended to.
#[derive(Debug)]
pub struct Spool {
    file: File,
    /// Bytes written since the last clear: where the next game goes.
    len: u64,
}

impl Spool {
    /// A new, empty spool in `dir`.
    pub fn create_in(dir: &Path) -> Result<Spool, SpoolError> {
        let file = match unnamed(dir) {
            Ok(file) => file,
            Err(why) => {
                tracing::debug!(dir = %dir.display(), error = %why, "no O_TMPFILE here, a named spool file unlinked at once");
                named_then_unlinked(dir).map_err(|source| SpoolError::Create {
                    dir: dir.to_path_buf(),
                    source,
                })?
            }
        };
        Ok(Spool { file, len: 0 })
    }

    /// Appends one game; returns where it lies.
    pub fn append(&mut self, game: &[u8]) -> Result<Extent, SpoolError> {
        let len = u32::try_from(game.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a game over 4 GiB"))?;
        // A blocking write on the runtime, on purpose: a game is a kilobyte or two into the page
        // cache, microseconds, where a `spawn_blocking` per game would cost more than the write.
        self.file.write_all_at(game, self.len)?;
        let extent = Extent {
            offset: self.len,
            len,
        };
        self.len += u64::from(len);
        Ok(extent)
    }

    /// Reads the game at `extent` into `buf` (replacing its contents).
    pub fn read(&self, extent: Extent, buf: &mut Vec<u8>) -> Result<(), SpoolError> {
        buf.clear();
        buf.resize(extent.len as usize, 0);
        self.file.read_exact_at(buf, extent.offset)?;
        Ok(())
    }

    /// Empties the spool for the next month, giving its disk space back.
    pub fn clear(&mut self) -> Result<(), SpoolError> {
        self.file.set_len(0)?;
        self.len = 0;
        Ok(())
    }

    /// Bytes held now.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(target_os = "linux")]
fn unnamed(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(dir)
}

#[cfg(not(target_os = "linux"))]
fn unnamed(_dir: &Path) -> io::Result<File> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "O_TMPFILE is Linux's"))
}

fn named_then_unlinked(dir: &Path) -> io::Result<File> {
    let path = dir.join(format!(
        "{PREFIX}{}.{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// How old a named spool file must be to be a crash's leftover: a live process unlinks its own
/// microseconds after creating it, so a minute leaves a process sharing `TMPDIR` alone.
pub const LEFTOVER_AGE: Duration = Duration::from_secs(60);

/// Deletes the named spool files in `dir` older than `older_than` (left by a process killed
/// between creating and unlinking one); returns how many.
pub fn remove_leftovers(dir: &Path, older_than: Duration) -> io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .map(|t| t.elapsed().unwrap_or_default());
        if matches!(age, Ok(age) if age >= older_than) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                // Another process's start removed it first.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spool_test_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn games_read_back_as_written_and_leave_no_file() {
        let dir = scratch();
        let mut spool = Spool::create_in(&dir).expect("spool");
        let first: &[u8] = b"[Event \"a\"]\n\n1. e4 1-0\n\n";
        let a = spool.append(first).expect("append");
        let b = spool.append(b"[Event \"b\"]\n\n1. d4 0-1\n\n").expect("append");
        assert_eq!(
            a,
            Extent {
                offset: 0,
                len: first.len() as u32
            }
        );
        assert_eq!(b.offset, first.len() as u64);
        let mut buf = Vec::new();
        spool.read(b, &mut buf).expect("read");
        assert_eq!(buf, b"[Event \"b\"]\n\n1. d4 0-1\n\n");
        spool.read(a, &mut buf).expect("read");
        assert_eq!(buf, b"[Event \"a\"]\n\n1. e4 1-0\n\n");
        // The file has no name while it is in use: nothing for a crash to leave behind.
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
        spool.clear().expect("clear");
        assert!(spool.is_empty());
        assert_eq!(spool.append(b"x").expect("append").offset, 0);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn the_fallback_file_is_unlinked_at_once() {
        let dir = scratch();
        let file = named_then_unlinked(&dir).expect("named");
        file.write_all_at(b"game", 0).expect("write");
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn only_old_spool_files_are_leftovers() {
        let dir = scratch();
        std::fs::write(dir.join(format!("{PREFIX}123.abc")), b"half a month").expect("leftover");
        std::fs::write(dir.join("someone-elses.tmp"), b"not ours").expect("other");
        assert_eq!(remove_leftovers(&dir, LEFTOVER_AGE).expect("young"), 0);
        assert_eq!(remove_leftovers(&dir, Duration::ZERO).expect("old"), 1);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["someone-elses.tmp"]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
