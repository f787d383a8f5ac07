//! A PgBouncer of its own in front of PostgreSQL, as managed hosts put one (Supabase's
//! Supavisor, Neon, Render, Heroku): Debian's `pgbouncer`, for the tests and for scenarios that
//! measure the importer through a pooler. It is handed a socket this process has already bound
//! (systemd socket activation, `LISTEN_FDS`), so no port is chosen first and bound later by
//! someone else; it stops when dropped. Its configuration refuses what a strict pooler refuses:
//! no startup parameter is ignored (a client sending `options` or `extra_float_digits` fails).

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why PgBouncer could not be set up or started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `pgbouncer` binary.
    #[error("pgbouncer not found (looked for /usr/sbin/pgbouncer and on PATH): install Debian's `pgbouncer`")]
    Missing,
    /// Preparing its files or its socket failed.
    #[error("preparing pgbouncer: {0}")]
    Io(#[from] std::io::Error),
    /// The `openssl` command making the test's certificates failed.
    #[error("openssl {step} failed:\n{stderr}")]
    Openssl {
        /// Its subcommand.
        step: String,
        /// What it printed.
        stderr: String,
    },
    /// The PostgreSQL URL a cell's pooler should stand in front of does not parse.
    #[error("{url}: {source}")]
    Url {
        /// The URL given.
        url: String,
        /// What the URL parser said.
        #[source]
        source: UrlError,
    },
    /// The PostgreSQL URL names no host.
    #[error("{0}: no host")]
    NoHost(String),
    /// It exited or never said it was up.
    #[error("pgbouncer did not start ({why}); its log:\n{log}")]
    NotUp {
        /// What was seen.
        why: String,
        /// Everything it printed.
        log: String,
    },
}

/// Why a URL does not parse (`url::ParseError`, named through reqwest's `Url`).
pub type UrlError = <reqwest::Url as std::str::FromStr>::Err;

/// TLS between the clients and PgBouncer (`client_tls_sslmode = require`).
#[derive(Debug, Clone)]
pub struct Tls {
    /// PEM certificate PgBouncer presents.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
}

/// One database PgBouncer offers.
#[derive(Debug, Clone)]
pub struct Database {
    /// The name clients connect to.
    pub alias: String,
    /// The PostgreSQL database behind it.
    pub dbname: String,
    /// A schema set on each server connection PgBouncer opens (`connect_query`): a client's own
    /// `options=-c search_path=...` is a startup parameter PgBouncer refuses.
    pub search_path: Option<String>,
    /// The user and password PgBouncer logs in to PostgreSQL with; `None`: the client's (trust).
    pub server_login: Option<(String, String)>,
}

/// How PgBouncer runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// PostgreSQL, `HOST:PORT`.
    pub server: String,
    /// The databases offered; user `postgres`, trust authentication.
    pub databases: Vec<Database>,
    /// `transaction` (what managed hosts sell), `session` or `statement`.
    pub pool_mode: String,
    /// Server connections per database and user: the allowance.
    pub default_pool_size: u32,
    /// TLS towards the clients.
    pub tls: Option<Tls>,
}

/// The database name a cell's importers connect to through [`Options::in_front_of`]'s PgBouncer.
pub const CELL_DATABASE: &str = "cell";

impl Options {
    /// Transaction mode with `default_pool_size` server connections, in front of the PostgreSQL
    /// that `server_url` (`postgres://USER@HOST:PORT/DB`) names, offering its database as
    /// [`CELL_DATABASE`] with `schema` as the search path.
    pub fn in_front_of(server_url: &str, schema: &str, default_pool_size: u32) -> Result<Options, Error> {
        let url = reqwest::Url::parse(server_url).map_err(|source| Error::Url {
            url: server_url.to_string(),
            source,
        })?;
        let host = url
            .host_str()
            .ok_or_else(|| Error::NoHost(server_url.to_string()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let dbname = url.path().trim_start_matches('/');
        let user = match url.username() {
            "" => "postgres",
            u => u,
        };
        Ok(Options {
            server: format!("{host}:{}", url.port().unwrap_or(5432)),
            databases: vec![Database {
                alias: CELL_DATABASE.into(),
                dbname: if dbname.is_empty() {
                    "postgres".into()
                } else {
                    dbname.into()
                },
                search_path: Some(schema.into()),
                server_login: Some((user.into(), url.password().unwrap_or_default().into())),
            }],
            pool_mode: "transaction".into(),
            default_pool_size,
            tls: None,
        })
    }
}

/// A running PgBouncer.
pub struct PgBouncer {
    child: Child,
    /// The port it listens on (loopback).
    pub port: u16,
    dir: PathBuf,
    log: PathBuf,
}

fn binary() -> Option<PathBuf> {
    let sbin = PathBuf::from("/usr/sbin/pgbouncer");
    if sbin.is_file() {
        return Some(sbin);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join("pgbouncer"))
        .find(|p| p.is_file())
}

fn ini(opts: &Options, dir: &Path) -> String {
    let (host, port) = opts.server.rsplit_once(':').unwrap_or((&opts.server, "5432"));
    let mut text = String::from("[databases]\n");
    for db in &opts.databases {
        text.push_str(&format!(
            "{} = host={host} port={port} dbname={}",
            db.alias, db.dbname
        ));
        if let Some((user, password)) = &db.server_login {
            text.push_str(&format!(" user={user}"));
            if !password.is_empty() {
                text.push_str(&format!(" password='{password}'"));
            }
        }
        if let Some(schema) = &db.search_path {
            text.push_str(&format!(" connect_query='SET search_path TO {schema}'"));
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "[pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = 0\n\
         unix_socket_dir =\n\
         auth_type = trust\n\
         auth_file = {auth}\n\
         pool_mode = {mode}\n\
         default_pool_size = {size}\n\
         max_client_conn = 1000\n\
         logfile =\n\
         pidfile =\n",
        auth = dir.join("users.txt").display(),
        mode = opts.pool_mode,
        size = opts.default_pool_size,
    ));
    if let Some(tls) = &opts.tls {
        text.push_str(&format!(
            "client_tls_sslmode = require\nclient_tls_cert_file = {}\nclient_tls_key_file = {}\n",
            tls.cert.display(),
            tls.key.display()
        ));
    }
    text
}

impl PgBouncer {
    /// Starts PgBouncer with `opts` on a loopback port of its own; waits (at most 10 s) until it
    /// says it is up.
    pub fn start(opts: &Options) -> Result<PgBouncer, Error> {
        let bin = binary().ok_or(Error::Missing)?;
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pgbouncer-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // PgBouncer refuses to run as root; as `postgres` it must read its files.
        set_mode(&dir, 0o755)?;
        let config = dir.join("pgbouncer.ini");
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n")?;
        std::fs::write(&config, ini(opts, &dir))?;
        for f in ["users.txt", "pgbouncer.ini"] {
            set_mode(&dir.join(f), 0o644)?;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let log = dir.join("pgbouncer.log");
        let out = std::fs::File::create(&log)?;
        // SAFETY: geteuid has no preconditions.
        let as_root = unsafe { libc::geteuid() } == 0;
        let user = if as_root { "-u postgres " } else { "" };
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            // LISTEN_PID must be PgBouncer's own pid: the shell's, which exec keeps.
            .arg(format!(
                "LISTEN_PID=$$ LISTEN_FDS=1 exec '{}' {user}'{}'",
                bin.display(),
                config.display()
            ))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let fd = listener.as_raw_fd();
        // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl) on an fd this
        // process owns; the socket becomes the child's fd 3, as socket activation expects.
        unsafe {
            cmd.pre_exec(move || {
                if fd == 3 {
                    let flags = libc::fcntl(3, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        // The child holds the socket now; this process's copy would keep the port open after it.
        drop(listener);
        let mut me = PgBouncer {
            child,
            port,
            dir,
            log,
        };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = me.child.try_wait() {
                return Err(me.not_up(format!("exited with {status}")));
            }
            if me.log_text().contains("process up") {
                return Ok(me);
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(me.not_up("not up after 10 s".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn not_up(&self, why: String) -> Error {
        Error::NotUp {
            why,
            log: self.log_text(),
        }
    }

    /// A `DATABASE_URL` for database `alias` through this PgBouncer, with `query` appended (`""`
    /// or `?sslmode=...`).
    pub fn url(&self, alias: &str, query: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{alias}{query}", self.port)
    }

    /// Everything it printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child's pid with a valid signal.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// A certificate authority and a server certificate it signed for `localhost` and 127.0.0.1,
/// made with the `openssl` command in `dir`: (CA certificate, server certificate, server key).
/// Files are readable by everyone: they are a test's, made for one run.
pub fn test_certificates(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf), Error> {
    std::fs::create_dir_all(dir)?;
    set_mode(dir, 0o755)?;
    let run = |args: &[&str]| -> Result<(), Error> {
        let out = Command::new("openssl").args(args).current_dir(dir).output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Openssl {
                step: args.first().unwrap_or(&"").to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=importer test CA",
    ])?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ])?;
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n")?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ])?;
    for f in ["ca.pem", "server.pem", "server.key"] {
        set_mode(&dir.join(f), 0o644)?;
    }
    Ok((dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key")))
}
