//! A hard memory limit for the importer, the way a 512 MB hosting plan sets one.
//!
//! The importer is started inside a memory cgroup of its own whose limit is
//! the budget, with swap off. cgroup v1 (the memory controller under this
//! process's own memory cgroup) and cgroup v2 (a memory-enabled subtree of the
//! process's own cgroup) are both supported; the child joins the cgroup
//! between fork and exec, so every page it ever touches is charged to it.
//! An OOM kill is read from the cgroup's own counter (`oom_kill`).

use std::ffi::CString;
use std::path::{Path, PathBuf};

/// Why no limit could be set.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither cgroup version offers a writable memory controller here.
    #[error(
        "no writable memory cgroup on this machine (cgroup v1: {v1}; cgroup v2: {v2}); \
         run as root on a machine with the memory controller, or use --enforce-budget=auto to go on unenforced"
    )]
    Unavailable {
        /// Why v1 was not usable.
        v1: Unusable,
        /// Why v2 was not usable.
        v2: Unusable,
    },
    /// A cgroup file could not be written.
    #[error("cannot set up the memory cgroup at {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Why one cgroup version offers this process no memory controller.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// `/proc/self/cgroup` names no v1 memory cgroup.
    #[error("this process is in no v1 memory cgroup")]
    NoV1Cgroup,
    /// The v1 memory cgroup's folder has no limit file.
    #[error("{0} has no memory.limit_in_bytes")]
    NoV1Limit(PathBuf),
    /// `/proc/self/cgroup` names no v2 cgroup.
    #[error("this process is in no v2 cgroup")]
    NoV2Cgroup,
    /// No folder of the v2 cgroup lists `memory` in its `cgroup.controllers`.
    #[error("no v2 cgroup of this process offers the memory controller")]
    NoV2Memory,
}

/// Which interface a limit uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Version {
    /// cgroup v1 memory controller.
    V1,
    /// cgroup v2.
    V2,
}

/// A memory cgroup with a hard limit, removed when dropped.
#[derive(Debug)]
pub struct Limit {
    dir: PathBuf,
    version: Version,
    /// The limit, bytes.
    pub bytes: u64,
    procs: CString,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// This process's cgroup path for a controller (`memory` for v1, `` for v2).
fn own_cgroup(controller: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        matches.then(|| path.to_string())
    })
}

fn v1_parent() -> Result<PathBuf, Unusable> {
    let own = own_cgroup("memory").ok_or(Unusable::NoV1Cgroup)?;
    let dir = Path::new("/sys/fs/cgroup/memory").join(own.trim_start_matches('/'));
    if dir.join("memory.limit_in_bytes").is_file() {
        Ok(dir)
    } else {
        Err(Unusable::NoV1Limit(dir))
    }
}

fn v2_parent() -> Result<PathBuf, Unusable> {
    let own = own_cgroup("").ok_or(Unusable::NoV2Cgroup)?;
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let dir = Path::new(root).join(own.trim_start_matches('/'));
        let controllers = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "memory") {
            return Ok(dir);
        }
    }
    Err(Unusable::NoV2Memory)
}

impl Limit {
    /// Creates a cgroup named `name` limited to `bytes`, swap off.
    pub fn create(name: &str, bytes: u64) -> Result<Limit, Error> {
        let (parent, version) = match (v1_parent(), v2_parent()) {
            (Ok(p), _) => (p, Version::V1),
            (Err(_), Ok(p)) => (p, Version::V2),
            (Err(v1), Err(v2)) => return Err(Error::Unavailable { v1, v2 }),
        };
        if version == Version::V2 {
            // Children of this cgroup may only use the memory controller once it is delegated.
            let ctl = parent.join("cgroup.subtree_control");
            let _ = std::fs::write(&ctl, "+memory");
        }
        let dir = parent.join(format!("harness-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).map_err(io(&dir))?;
        let write = |file: &str, value: &str| {
            let p = dir.join(file);
            std::fs::write(&p, value).map_err(io(&p))
        };
        let set = match version {
            Version::V1 => write("memory.limit_in_bytes", &bytes.to_string())
                .and_then(|()| write("memory.swappiness", "0"))
                // Without swap accounting the file is absent; with no swap there is nothing to limit.
                .and_then(|()| {
                    if dir.join("memory.memsw.limit_in_bytes").is_file() {
                        write("memory.memsw.limit_in_bytes", &bytes.to_string())
                    } else {
                        Ok(())
                    }
                }),
            Version::V2 => write("memory.max", &bytes.to_string()).and_then(|()| {
                if dir.join("memory.swap.max").is_file() {
                    write("memory.swap.max", "0")
                } else {
                    Ok(())
                }
            }),
        };
        if let Err(e) = set {
            let _ = std::fs::remove_dir(&dir);
            return Err(e);
        }
        let procs =
            CString::new(dir.join("cgroup.procs").to_string_lossy().into_owned()).map_err(|e| Error::Io {
                path: dir.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            })?;
        Ok(Limit {
            dir,
            version,
            bytes,
            procs,
        })
    }

    /// The interface in use.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Makes `cmd`'s child join this cgroup before it runs a single instruction of its own.
    pub fn apply(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        let procs = self.procs.clone();
        // SAFETY: between fork and exec only async-signal-safe calls are made:
        // open, write and close on a path prepared before the fork, and the pid
        // formatted into a stack buffer; nothing allocates.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let mut buf = [0u8; 20];
                let mut n = libc::getpid() as u64;
                let mut i = buf.len();
                loop {
                    i -= 1;
                    buf[i] = b'0' + (n % 10) as u8;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                let written = libc::write(fd, buf[i..].as_ptr().cast(), buf.len() - i);
                libc::close(fd);
                if written < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// How many times the kernel killed a process of this cgroup for lack of memory.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = match self.version {
            Version::V1 => ("memory.oom_control", "oom_kill"),
            Version::V2 => ("memory.events", "oom_kill"),
        };
        std::fs::read_to_string(self.dir.join(file))
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    let mut p = l.split_whitespace();
                    (p.next() == Some(key)).then(|| p.next()?.parse().ok())?
                })
            })
            .unwrap_or(0)
    }

    /// Peak memory the cgroup was charged (v1 `max_usage_in_bytes`, v2 `memory.peak` where present).
    pub fn peak_bytes(&self) -> Option<u64> {
        let file = match self.version {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        };
        std::fs::read_to_string(self.dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Limit {
    fn drop(&mut self) {
        // Empty once the child is gone; a cgroup with a live process cannot be removed.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cgroup_says_why_for_each_version() {
        let e = Error::Unavailable {
            v1: Unusable::NoV1Limit(PathBuf::from("/sys/fs/cgroup/memory/x")),
            v2: Unusable::NoV2Memory,
        };
        assert_eq!(
            e.to_string(),
            "no writable memory cgroup on this machine (cgroup v1: /sys/fs/cgroup/memory/x has no \
             memory.limit_in_bytes; cgroup v2: no v2 cgroup of this process offers the memory controller); \
             run as root on a machine with the memory controller, or use --enforce-budget=auto to go on unenforced"
        );
    }

    #[test]
    fn a_child_in_the_cgroup_is_killed_when_it_exceeds_the_limit() {
        let limit = match Limit::create("selftest", 32 << 20) {
            Ok(l) => l,
            // Machines without a writable memory cgroup say so; this project's machines have one.
            Err(e) => panic!("memory cgroup unavailable: {e}"),
        };
        let mut cmd = std::process::Command::new("python3");
        cmd.args([
            "-c",
            "x = bytearray(200 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1",
        ]);
        limit.apply(&mut cmd);
        let status = cmd.status().expect("python3 runs");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        assert!(limit.oom_kills() >= 1);
    }
}
