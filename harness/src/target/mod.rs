//! The measured program: the real `importer` binary as a child process.
//!
//! It starts with a clean environment (only what the cell sets), so nothing
//! from the harness's own shell changes what is measured; it is stopped with
//! SIGTERM then waited for, and killed if it does not stop. `cgroup` puts it
//! under a hard memory limit; `db` is the fresh database each cell gives it;
//! `build` makes another revision's binary for an A/B gate.

pub mod build;
pub mod cgroup;
pub mod db;
pub mod heaptrack;
pub mod pooler;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the importer could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The binary is missing.
    #[error(
        "importer binary {0} not found; build it with `cargo build --release -p importer` or pass --importer"
    )]
    Missing(PathBuf),
    /// Spawning failed.
    #[error("cannot start {bin}: {source}")]
    Spawn {
        /// The binary.
        bin: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It exited or never answered /healthz.
    #[error("importer not healthy after {secs} s ({why}); its log: {log}")]
    Unhealthy {
        /// Seconds waited.
        secs: u64,
        /// What was seen.
        #[source]
        why: Unhealthy,
        /// Its log file.
        log: PathBuf,
    },
}

/// What showed a started importer was not healthy.
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    /// It exited before it answered.
    #[error("exited with {0}")]
    Exited(std::process::ExitStatus),
    /// /healthz never answered 200 in time.
    #[error("no answer")]
    NoAnswer,
    /// The address it reported is not one it listens on.
    #[error(transparent)]
    Addr(#[from] AddrError),
}

/// Why the address an importer reported (`LISTEN_ADDR_FILE`) cannot be the one it listens on.
#[derive(Debug, thiserror::Error)]
pub enum AddrError {
    /// The file holds something else than `IP:PORT`.
    #[error("{file} holds {text:?}, not an address")]
    NotAnAddress {
        /// The address file.
        file: PathBuf,
        /// What it holds.
        text: String,
    },
    /// The socket listening on the reported port is another process's.
    #[error("port {0} is not its own socket")]
    NotItsSocket(u16),
}

/// A running importer.
pub struct Server {
    child: Child,
    /// Its base URL, `http://127.0.0.1:PORT`, known once [`Server::wait_healthy`] has returned.
    pub base: String,
    /// Where its output goes.
    pub log: PathBuf,
    /// Where it writes the address it listens on (`LISTEN_ADDR_FILE`).
    addr_file: PathBuf,
}

impl Server {
    /// Starts `bin` with exactly `env` (plus `BIND_ADDR` on `port`, or on port 0: the importer
    /// binds a free port itself and writes it to `LISTEN_ADDR_FILE`, so no other process can take
    /// it between a choice and a bind), output to `log`, inside `limit` when given.
    pub fn spawn(
        bin: &Path,
        env: &BTreeMap<String, String>,
        log: &Path,
        limit: Option<&cgroup::Limit>,
        port: Option<u16>,
    ) -> Result<Server, Error> {
        if !bin.is_file() {
            return Err(Error::Missing(bin.to_path_buf()));
        }
        let spawn_err = |source| Error::Spawn {
            bin: bin.to_path_buf(),
            source,
        };
        let port = port.unwrap_or(0);
        let addr_file = log.with_extension("addr");
        if let Err(e) = std::fs::remove_file(&addr_file)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(spawn_err(e));
        }
        // Appended: a restarted importer's log follows its predecessor's.
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(spawn_err)?;
        let err = out.try_clone().map_err(spawn_err)?;
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .envs(env)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("LISTEN_ADDR_FILE", &addr_file)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if let Some(limit) = limit {
            limit.apply(&mut cmd);
        }
        let child = cmd.spawn().map_err(spawn_err)?;
        Ok(Server {
            child,
            base: String::new(),
            log: log.to_path_buf(),
            addr_file,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// SIGKILL, as a crash would, and reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until it has written the address it listens on and /healthz answers 200 there.
    ///
    /// Errors when the listening socket on that address is not this child's (read from
    /// `/proc`): a server that answers is then proved to be the one started.
    pub async fn wait_healthy(&mut self, http: &reqwest::Client, timeout: Duration) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.unhealthy(started, Unhealthy::Exited(status)));
            }
            if self.base.is_empty()
                && let Some(addr) = reported_addr(&self.addr_file, self.child.id())
                    .map_err(|e| self.unhealthy(started, e.into()))?
            {
                self.base = format!("http://{addr}");
            }
            // An importer older than LISTEN_ADDR_FILE (the other side of an A/B gate) says the
            // address only in its "listening addr=..." log line; the log may hold a predecessor's
            // line too (a restart appends), so only a port this child holds is taken.
            if self.base.is_empty()
                && let Some(addr) = logged_addr(&std::fs::read_to_string(&self.log).unwrap_or_default())
                && listens_on(self.child.id(), addr.port())
            {
                self.base = format!("http://{addr}");
            }
            if !self.base.is_empty()
                && let Ok(r) = http.get(format!("{}/healthz", self.base)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(self.unhealthy(started, Unhealthy::NoAnswer));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn unhealthy(&self, started: Instant, why: Unhealthy) -> Error {
        Error::Unhealthy {
            secs: started.elapsed().as_secs(),
            why,
            log: self.log.clone(),
        }
    }

    /// SIGTERM, then wait up to `grace`; SIGKILL after.
    pub fn stop(mut self, grace: Duration) -> Stopped {
        use std::os::unix::process::ExitStatusExt;
        if let Ok(Some(status)) = self.child.try_wait() {
            // It was already gone before we asked: died on its own (or was OOM-killed).
            return Stopped {
                code: status.code(),
                signal: status.signal(),
                before_sigterm: true,
                forced: false,
            };
        }
        // SAFETY: kill(2) with a pid we own and a valid signal number has no memory effects.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let started = Instant::now();
        while started.elapsed() < grace {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Stopped {
                    code: status.code(),
                    signal: status.signal(),
                    before_sigterm: false,
                    forced: false,
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        Stopped {
            code: status.and_then(|s| s.code()),
            signal: status.and_then(|s| s.signal()),
            before_sigterm: false,
            forced: true,
        }
    }
}

/// How the importer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// Signal, if one killed it.
    pub signal: Option<i32>,
    /// It had already ended before SIGTERM was sent.
    pub before_sigterm: bool,
    /// It ignored SIGTERM and was killed.
    pub forced: bool,
}

impl Stopped {
    /// Exited 0 on SIGTERM, as it should.
    pub fn clean(&self) -> bool {
        self.code == Some(0) && !self.before_sigterm && !self.forced
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A harness that fails half way must not leave importers running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The address an importer started with `LISTEN_ADDR_FILE=addr_file` reports, once it has written
/// it, as a client reaches it (an unspecified address, `0.0.0.0`, on loopback); `None` before.
/// Errors when the file holds no address, or when the socket listening on that port is not
/// process `pid`'s own ([`listens_on`]): a server that answers is then the one started.
pub fn reported_addr(addr_file: &Path, pid: u32) -> Result<Option<std::net::SocketAddr>, AddrError> {
    let Ok(text) = std::fs::read_to_string(addr_file) else {
        return Ok(None);
    };
    let Ok(mut addr) = text.trim().parse::<std::net::SocketAddr>() else {
        return Err(AddrError::NotAnAddress {
            file: addr_file.to_path_buf(),
            text,
        });
    };
    if !listens_on(pid, addr.port()) {
        return Err(AddrError::NotItsSocket(addr.port()));
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(Some(addr))
}

/// The address of the last "listening addr=IP:PORT" line of an importer's log.
fn logged_addr(log: &str) -> Option<std::net::SocketAddr> {
    log.lines()
        .rev()
        .filter(|l| l.contains("listening"))
        .find_map(|l| l.split_once("addr=")?.1.split_whitespace().next()?.parse().ok())
}

/// Whether process `pid` holds a TCP socket listening on `port` (any address), read from
/// `/proc/net/tcp{,6}` and `/proc/PID/fd`: which server answers on a port, without asking it.
pub fn listens_on(pid: u32, port: u16) -> bool {
    let want = format!(":{port:04X}");
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
                    let f: Vec<&str> = line.split_whitespace().collect();
                    (f.len() > 9 && f[1].ends_with(&want) && f[3] == "0A")
                        .then(|| format!("socket:[{}]", f[9]))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .any(|link| inodes.iter().any(|i| link.as_os_str() == i.as_str()))
}

#[cfg(test)]
mod tests {
    /// A reported address that cannot be the importer's says why, with the file or the port.
    #[test]
    fn a_wrong_reported_address_says_why() {
        let dir = std::env::temp_dir().join(format!("harness-addr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("addr");
        assert!(
            matches!(super::reported_addr(&file, std::process::id()), Ok(None)),
            "not written yet"
        );
        std::fs::write(&file, "soon\n").expect("write");
        let err = super::reported_addr(&file, std::process::id()).expect_err("not an address");
        assert_eq!(
            err.to_string(),
            format!("{} holds \"soon\\n\", not an address", file.display())
        );
        // A port this process does not listen on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        std::fs::write(&file, format!("127.0.0.1:{port}")).expect("write");
        let err = super::reported_addr(&file, std::process::id()).expect_err("not ours");
        let unhealthy = super::Error::Unhealthy {
            secs: 3,
            why: err.into(),
            log: dir.join("importer.log"),
        };
        assert_eq!(
            unhealthy.to_string(),
            format!(
                "importer not healthy after 3 s (port {port} is not its own socket); its log: {}",
                dir.join("importer.log").display()
            )
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn listens_on_tells_its_own_socket_from_another() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(super::listens_on(std::process::id(), port));
        let other = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let other_port = other.local_addr().expect("addr").port();
        drop(other);
        assert!(
            !super::listens_on(std::process::id(), other_port),
            "closed: no longer ours"
        );
        // Another process does not hold this test's socket (it inherits no descriptor of it).
        let mut other = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        assert!(std::path::Path::new(&format!("/proc/{}/fd", other.id())).exists());
        assert!(!super::listens_on(other.id(), port));
        let _ = other.kill();
        let _ = other.wait();
    }

    #[test]
    fn the_last_listening_line_gives_the_address() {
        let log = "2026-12-03T10:00:00Z  INFO listening addr=127.0.0.1:4000 database=sqlite://a\n\
                   2026-12-03T10:00:01Z  INFO shutdown signal received\n\
                   2026-12-03T10:00:02Z  INFO listening addr=127.0.0.1:4001 database=sqlite://a\n";
        assert_eq!(super::logged_addr(log), Some(([127, 0, 0, 1], 4001).into()));
        assert_eq!(super::logged_addr("no such line"), None);
    }
}
