//! Configuration: raw flags and environment first, then one validated `Config`.
//!
//! Every setting is an environment variable (and the same name as a flag).
//! Validation happens once, at start, so that a bad deploy fails loudly with
//! a message naming the variable, the value and what is accepted, instead of
//! misbehaving under load.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;

/// A setting that could not be accepted; the message names variable, value and range.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}={value:?}: expected {accepted}")]
pub struct ConfigError {
    /// The environment variable (or flag) at fault.
    pub var: &'static str,
    /// The value as given.
    pub value: String,
    /// What would have been accepted.
    pub accepted: String,
}

/// Raw settings as given on the command line or in the environment, not yet checked.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "importer",
    version = crate::VERSION,
    about = "Imports chess games from lichess and chess.com into SQLite or PostgreSQL, \
             with at most MAX_CONCURRENT_IMPORTS imports at a time.",
    long_about = None,
    after_help = "Every option can be given as the environment variable shown beside it; \
                  a flag wins over the environment. A bad value stops the program with exit code 2."
)]
pub struct RawConfig {
    /// Print the API's OpenAPI document (JSON, as importer/openapi.json) and exit.
    #[arg(long)]
    pub openapi: bool,
    /// Imports running at once (1..=256); the rest wait in the queue.
    #[arg(long, env = "MAX_CONCURRENT_IMPORTS", default_value = "3")]
    pub max_concurrent_imports: String,
    /// Games written per transaction; also the most games an import holds in memory (1..=10000).
    #[arg(long, env = "IMPORT_BATCH_SIZE", default_value = "50")]
    pub import_batch_size: String,
    /// Stored ids read per query when checking which games exist (1..=100000).
    #[arg(long, env = "EXISTING_GAMES_PAGE_SIZE", default_value = "2000")]
    pub existing_games_page_size: String,
    /// How stored games are recognised: `batch` (ask the database per batch) or `preload` (read all stored ids first).
    #[arg(long, env = "DEDUP_STRATEGY", default_value = "batch")]
    pub dedup_strategy: String,
    /// Imports that may wait for a free slot (0..=100000); beyond it, 429.
    #[arg(long, env = "IMPORT_QUEUE_CAPACITY", default_value = "100")]
    pub import_queue_capacity: String,
    /// Upstream requests in flight, all imports together (1..=1024).
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value = "15")]
    pub http_max_connections: String,
    /// Idle connections kept per upstream host (0..=1024).
    #[arg(long, env = "HTTP_POOL_MAX_IDLE_PER_HOST", default_value = "6")]
    pub http_pool_max_idle_per_host: String,
    /// Database connections for the imports' batches (1..=100); default 2 on SQLite (one writer),
    /// 5 on PostgreSQL. The queue has DB_QUEUE_POOL_SIZE more.
    #[arg(long, env = "DB_POOL_SIZE")]
    pub db_pool_size: Option<String>,
    /// Queue connections (1..=100), beside DB_POOL_SIZE: the process opens at most
    /// DB_POOL_SIZE + DB_QUEUE_POOL_SIZE connections to the database.
    #[arg(long, env = "DB_QUEUE_POOL_SIZE", default_value = "4")]
    pub db_queue_pool_size: String,
    /// `sqlite://FILE` (created if missing) or `postgres://...` (TLS: `?sslmode=require`, or
    /// `?sslmode=verify-full&sslrootcert=CA.pem`).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://importer.db")]
    pub database_url: String,
    /// What stands between the importer and PostgreSQL: `none`, or `transaction` for a pooler in
    /// transaction mode (PgBouncer, Supavisor on port 6543): then no statement stays prepared on a
    /// connection and each statement runs in a transaction of its own.
    #[arg(long, env = "DATABASE_POOLER", default_value = "none")]
    pub database_pooler: String,
    /// Write the address the API really listens on (BIND_ADDR with port 0 gets a free port) to
    /// this file once it listens, as `IP:PORT` and a newline; written whole, then renamed.
    #[arg(long, env = "LISTEN_ADDR_FILE")]
    pub listen_addr_file: Option<std::path::PathBuf>,
    /// Base URL of lichess.
    #[arg(long, env = "LICHESS_BASE_URL", default_value = "https://lichess.org")]
    pub lichess_base_url: String,
    /// Base URL of the chess.com published-data API.
    #[arg(long, env = "CHESSCOM_BASE_URL", default_value = "https://api.chess.com")]
    pub chesscom_base_url: String,
    /// Address to listen on; default 127.0.0.1:8080, or 0.0.0.0:$PORT when PORT is set.
    #[arg(long, env = "BIND_ADDR")]
    pub bind_addr: Option<String>,
    /// Port set by hosting platforms; used when BIND_ADDR is not set.
    #[arg(long, env = "PORT", hide = true)]
    pub port: Option<String>,
    /// The token every API client must send as `Authorization: Bearer <token>` (all endpoints but
    /// /healthz). Required when BIND_ADDR is not a loopback address, unless ALLOW_UNAUTHENTICATED.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// `true`: serve without API_TOKEN on a non-loopback address (a private network only).
    #[arg(long, env = "ALLOW_UNAUTHENTICATED", default_value = "false")]
    pub allow_unauthenticated: String,
    /// Optional bearer token for lichess (raises its rate limit).
    #[arg(long, env = "LICHESS_TOKEN", hide_env_values = true)]
    pub lichess_token: Option<String>,
    /// Seconds to wait after a 429 that carries no Retry-After (0..=3600).
    #[arg(long, env = "UPSTREAM_RATE_LIMIT_WAIT_SECS", default_value = "60")]
    pub upstream_rate_limit_wait_secs: String,
    /// Seconds an upstream stream may send nothing before it is treated as stalled and resumed (1..=3600).
    #[arg(long, env = "UPSTREAM_READ_TIMEOUT_SECS", default_value = "60")]
    pub upstream_read_timeout_secs: String,
    /// Runtime worker threads (1..=64); fewer threads, less memory.
    #[arg(long, env = "WORKER_THREADS", default_value = "2")]
    pub worker_threads: String,
    /// SQLite page cache per connection, KiB (64..=1048576). SQLite's own default is 2000; an import
    /// appends, so a larger cache holds pages it will not read again, and how full each pooled
    /// connection's cache got varied a run's peak by up to 1 MiB.
    #[arg(long, env = "SQLITE_CACHE_KIB", default_value = "512")]
    pub sqlite_cache_kib: String,
    /// This process's name in the shared job queue (1 to 64 of A-Z a-z 0-9 . _ : -); default a random one.
    /// Give a name stable across restarts and unique among live processes (a host or pod name) so that
    /// after a crash the process takes its own imports back at once instead of after their lease.
    #[arg(long, env = "INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Seconds a running import stays claimed without a renewal before another process takes it over (2..=3600).
    #[arg(long, env = "JOB_LEASE_SECS", default_value = "30")]
    pub job_lease_secs: String,
    /// Days a finished (completed or failed) import's record is kept (0..=36500; 0 keeps every
    /// record). Older ones are deleted hourly in small batches; queued and running ones never are.
    /// `harness capture` sees at most this far back.
    #[arg(long, env = "JOB_RETENTION_DAYS", default_value = "30")]
    pub job_retention_days: String,
    /// How often a process with a free slot looks for imports queued by others, ms (50..=60000).
    #[arg(long, env = "JOB_POLL_MILLIS", default_value = "1000")]
    pub job_poll_millis: String,
    /// lichess export streams in flight (1..=256): each running lichess import holds one. lichess
    /// allows 2 per address and asks for 1 (lila's `api.ip.download` limit); above 2 it answers 429.
    #[arg(long, env = "LICHESS_MAX_STREAMS", default_value = "1")]
    pub lichess_max_streams: String,
    /// chess.com requests in flight (1..=256): each running chess.com import makes one at a time.
    /// chess.com: "serial access is unlimited; parallel requests may trigger 429".
    #[arg(long, env = "CHESSCOM_MAX_REQUESTS", default_value = "1")]
    pub chesscom_max_requests: String,
    /// What the provider lanes count: `process` (this process's imports: each process has its own
    /// egress address) or `database` (every process's running imports on the database: processes
    /// that share one address).
    #[arg(long, env = "PROVIDER_LANES_SCOPE", default_value = "process")]
    pub provider_lanes_scope: String,
    /// The whole User-Agent header sent to lichess and chess.com. Both providers refuse clients
    /// that do not identify themselves with a contact: name a URL or an e-mail address.
    #[arg(long, env = "UPSTREAM_USER_AGENT")]
    pub upstream_user_agent: Option<String>,
}

/// What the provider lanes count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanesScope {
    /// This process's running imports (each process has its own egress address).
    Process,
    /// Every process's running imports on the shared database (one egress address for all).
    Database,
}

/// How an import recognises games that are already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupStrategy {
    /// Ask the database about each batch's ids: memory bounded by the batch.
    Batch,
    /// Read every stored id (page by page) into a set first: memory grows with history.
    Preload,
}

/// Which database the importer writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseKind {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// Validated, ready-to-use configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// This process's name in the shared queue.
    pub instance_id: String,
    /// How long a claim holds without renewal.
    pub job_lease: Duration,
    /// How often to look for queued imports.
    pub job_poll: Duration,
    /// How long a finished import's record is kept; `None` keeps every record.
    pub job_retention: Option<Duration>,
    /// Imports running at once.
    pub max_concurrent_imports: usize,
    /// Games per batch (and per transaction).
    pub import_batch_size: usize,
    /// Ids per query when reading stored ids.
    pub existing_games_page_size: usize,
    /// How stored games are recognised.
    pub dedup_strategy: DedupStrategy,
    /// Imports that may wait.
    pub import_queue_capacity: usize,
    /// Upstream requests in flight.
    pub http_max_connections: usize,
    /// Idle upstream connections per host.
    pub http_pool_max_idle_per_host: usize,
    /// Database pool size (the imports' connections).
    pub db_pool_size: u32,
    /// The queue's connections.
    pub db_queue_pool_size: u32,
    /// Database URL as given.
    pub database_url: String,
    /// PostgreSQL through a pooler in transaction mode.
    pub transaction_pooler: bool,
    /// Where to write the address listened on.
    pub listen_addr_file: Option<std::path::PathBuf>,
    /// Which database the URL names.
    pub database_kind: DatabaseKind,
    /// lichess base URL, without trailing slash.
    pub lichess_base_url: String,
    /// chess.com base URL, without trailing slash.
    pub chesscom_base_url: String,
    /// Listen address.
    pub bind_addr: SocketAddr,
    /// lichess bearer token.
    pub lichess_token: Option<String>,
    /// The token API clients must send; `None`: no authentication (loopback, or explicitly allowed).
    pub api_token: Option<String>,
    /// Wait after a 429 without Retry-After.
    pub rate_limit_wait: Duration,
    /// Silence after which a stream is stalled.
    pub read_timeout: Duration,
    /// Runtime worker threads.
    pub worker_threads: usize,
    /// SQLite page cache per connection, KiB.
    pub sqlite_cache_kib: u32,
    /// lichess streams in flight (a lane each).
    pub lichess_max_streams: usize,
    /// chess.com requests in flight (a lane each).
    pub chesscom_max_requests: usize,
    /// What the lanes count.
    pub lanes_scope: LanesScope,
    /// The User-Agent header as configured; `None`: the built-in default, which names no operator.
    pub user_agent: Option<String>,
}

impl Config {
    /// Lanes of `platform`: imports of that provider that may run at once.
    pub fn lanes(&self, platform: crate::job::Platform) -> usize {
        match platform {
            crate::job::Platform::Lichess => self.lichess_max_streams,
            crate::job::Platform::ChessCom => self.chesscom_max_requests,
        }
    }

    /// Warnings worth one log line each at start: settings that work but that a provider will punish.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.lichess_max_streams > 2 {
            out.push(format!(
                "LICHESS_MAX_STREAMS={} but lichess refuses more than 2 export streams per address \
                 (429, then a penalty of a minute or more); use 1 or 2 unless each stream leaves from its own address",
                self.lichess_max_streams
            ));
        }
        if let Some(ua) = &self.user_agent
            && !has_contact(ua)
        {
            out.push(format!(
                "UPSTREAM_USER_AGENT={ua:?} names neither a URL nor an e-mail address: \
                 lichess answers such clients 404 and chess.com 403"
            ));
        }
        if self.user_agent.is_none() {
            out.push(
                "UPSTREAM_USER_AGENT is not set: the User-Agent names this software but no contact for its operator; \
                 lichess and chess.com refuse clients they cannot reach, so set it with a URL or an e-mail address"
                    .into(),
            );
        }
        out
    }
}

/// Whether a User-Agent names a contact: a URL or an e-mail address, the two forms lichess's and
/// chess.com's API docs ask for.
pub fn has_contact(user_agent: &str) -> bool {
    user_agent.contains("http://")
        || user_agent.contains("https://")
        || user_agent
            .split(|c: char| c.is_whitespace() || "()<>;,".contains(c))
            .any(|w| {
                w.split_once('@')
                    .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
            })
}

fn user_agent(value: &str) -> Result<String, ConfigError> {
    let v = value.trim();
    // Printable ASCII only: anything else is not a valid header value everywhere.
    if v.is_empty() || v.len() > 512 || !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(ConfigError {
            var: "UPSTREAM_USER_AGENT",
            value: value.to_string(),
            accepted: "1 to 512 printable ASCII characters, naming a contact (URL or e-mail)".into(),
        });
    }
    Ok(v.to_string())
}

/// DB_POOL_SIZE, or the database's default.
fn db_pool_size_of(given: Option<&str>, kind: &DatabaseKind) -> Result<u32, ConfigError> {
    match given {
        Some(n) => int_in("DB_POOL_SIZE", n, 1, 100),
        // SQLite has one writer: more connections only add page caches (and make peak memory
        // depend on how many happened to open); docs/measurements.md has the figures.
        None if *kind == DatabaseKind::Sqlite => Ok(2),
        None => Ok(5),
    }
}

/// DATABASE_POOLER: `transaction` only with PostgreSQL.
fn transaction_pooler_of(value: &str, kind: &DatabaseKind) -> Result<bool, ConfigError> {
    match value.trim() {
        "none" => Ok(false),
        "transaction" if *kind == DatabaseKind::Postgres => Ok(true),
        other => Err(ConfigError {
            var: "DATABASE_POOLER",
            value: other.to_string(),
            accepted: "`none`, or `transaction` with a postgres:// DATABASE_URL".into(),
        }),
    }
}

/// `value` as one of `choices` (its name, its meaning), or the error naming every name.
fn choice<T: Copy>(var: &'static str, value: &str, choices: &[(&str, T)]) -> Result<T, ConfigError> {
    let v = value.trim();
    choices
        .iter()
        .find(|(name, _)| *name == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| ConfigError {
            var,
            value: v.to_string(),
            accepted: choices
                .iter()
                .map(|(name, _)| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(" or "),
        })
}

/// BIND_ADDR, else every address on PORT (a hosting platform's), else 127.0.0.1:8080.
fn bind_addr_of(bind_addr: Option<&str>, port: Option<&str>) -> Result<SocketAddr, ConfigError> {
    match (bind_addr, port) {
        (Some(addr), _) => addr.parse().map_err(|_| ConfigError {
            var: "BIND_ADDR",
            value: addr.to_string(),
            accepted: "a socket address such as 127.0.0.1:8080".into(),
        }),
        (None, Some(port)) => Ok(SocketAddr::from((
            [0, 0, 0, 0],
            int_in("PORT", port, 1, u16::MAX)?,
        ))),
        (None, None) => Ok(SocketAddr::from(([127, 0, 0, 1], 8080))),
    }
}

/// API_TOKEN: at least 16 printable ASCII characters without spaces; never echoed back.
fn api_token_of(token: Option<String>) -> Result<Option<String>, ConfigError> {
    match token {
        Some(t) if t.len() >= 16 && t.bytes().all(|b| (0x21..0x7f).contains(&b)) => Ok(Some(t)),
        Some(_) => Err(ConfigError {
            var: "API_TOKEN",
            // Never echoed: a token that is almost right is still a secret.
            value: "(hidden)".into(),
            accepted: "16 to any number of printable ASCII characters without spaces".into(),
        }),
        None => Ok(None),
    }
}

/// A public address serves anyone: it needs a token, unless ALLOW_UNAUTHENTICATED says otherwise.
fn token_off_loopback(
    has_token: bool,
    allow_unauthenticated: bool,
    bind_addr: SocketAddr,
) -> Result<(), ConfigError> {
    if has_token || allow_unauthenticated || bind_addr.ip().is_loopback() {
        return Ok(());
    }
    Err(ConfigError {
        var: "API_TOKEN",
        value: String::new(),
        accepted: format!(
            "a token, because BIND_ADDR {bind_addr} is not loopback and every endpoint would answer \
             anyone; or ALLOW_UNAUTHENTICATED=true on a private network"
        ),
    })
}

/// INSTANCE_ID as given, or a random one.
fn instance_id_of(id: Option<String>) -> Result<String, ConfigError> {
    match id {
        Some(id) if valid_instance_id(&id) => Ok(id),
        Some(id) => Err(ConfigError {
            var: "INSTANCE_ID",
            value: id,
            accepted: "1 to 64 characters among A-Z a-z 0-9 . _ : -".into(),
        }),
        None => Ok(format!(
            "importer-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )),
    }
}

fn int_in<T>(var: &'static str, value: &str, lo: T, hi: T) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let bad = || ConfigError {
        var,
        value: value.to_string(),
        accepted: format!("an integer in {lo}..={hi}"),
    };
    let n: T = value.trim().parse().map_err(|_| bad())?;
    if n < lo || n > hi {
        return Err(bad());
    }
    Ok(n)
}

fn base_url(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let ok = reqwest::Url::parse(value)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    match ok {
        Some(_) => Ok(value.trim_end_matches('/').to_string()),
        None => Err(ConfigError {
            var,
            value: value.to_string(),
            accepted: "an http:// or https:// URL with a host".into(),
        }),
    }
}

/// Whether a base URL (already checked by `base_url`) names this machine: the mocks and tests.
fn is_loopback_url(value: &str) -> bool {
    let url = reqwest::Url::parse(value).ok();
    let Some(host) = url.as_ref().and_then(|u| u.host_str()) else {
        return false;
    };
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn database_kind(value: &str) -> Result<DatabaseKind, ConfigError> {
    let bad = |why: &str| ConfigError {
        var: "DATABASE_URL",
        value: value.to_string(),
        accepted: format!("sqlite://FILE or postgres://USER@HOST/DB ({why})"),
    };
    if let Some(rest) = value.strip_prefix("sqlite:") {
        if rest.trim_start_matches('/').is_empty() {
            return Err(bad("no file named"));
        }
        Ok(DatabaseKind::Sqlite)
    } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        reqwest::Url::parse(value).map_err(|e| bad(&e.to_string()))?;
        Ok(DatabaseKind::Postgres)
    } else {
        Err(bad("unknown scheme"))
    }
}

fn valid_instance_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

impl Config {
    /// Checks every raw value and builds the configuration, naming the first bad one.
    pub fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let bind_addr = bind_addr_of(raw.bind_addr.as_deref(), raw.port.as_deref())?;
        let dedup_strategy = choice(
            "DEDUP_STRATEGY",
            &raw.dedup_strategy,
            &[
                ("batch", DedupStrategy::Batch),
                ("preload", DedupStrategy::Preload),
            ],
        )?;
        let lichess_token = raw.lichess_token.filter(|t| !t.trim().is_empty());
        let api_token = api_token_of(raw.api_token)?;
        let allow_unauthenticated = choice(
            "ALLOW_UNAUTHENTICATED",
            &raw.allow_unauthenticated,
            &[("true", true), ("false", false)],
        )?;
        token_off_loopback(api_token.is_some(), allow_unauthenticated, bind_addr)?;
        let kind = database_kind(&raw.database_url)?;
        let lichess_base_url = base_url("LICHESS_BASE_URL", &raw.lichess_base_url)?;
        let chesscom_base_url = base_url("CHESSCOM_BASE_URL", &raw.chesscom_base_url)?;
        let user_agent = raw.upstream_user_agent.as_deref().map(user_agent).transpose()?;
        let instance_id = instance_id_of(raw.instance_id)?;
        let config = Config {
            instance_id,
            job_lease: Duration::from_secs(int_in("JOB_LEASE_SECS", &raw.job_lease_secs, 2, 3600)?),
            job_poll: Duration::from_millis(int_in("JOB_POLL_MILLIS", &raw.job_poll_millis, 50, 60_000)?),
            job_retention: match int_in::<u64>("JOB_RETENTION_DAYS", &raw.job_retention_days, 0, 36_500)? {
                0 => None,
                days => Some(Duration::from_secs(days * 86_400)),
            },
            max_concurrent_imports: int_in("MAX_CONCURRENT_IMPORTS", &raw.max_concurrent_imports, 1, 256)?,
            import_batch_size: int_in("IMPORT_BATCH_SIZE", &raw.import_batch_size, 1, 10_000)?,
            existing_games_page_size: int_in(
                "EXISTING_GAMES_PAGE_SIZE",
                &raw.existing_games_page_size,
                1,
                100_000,
            )?,
            dedup_strategy,
            import_queue_capacity: int_in("IMPORT_QUEUE_CAPACITY", &raw.import_queue_capacity, 0, 100_000)?,
            http_max_connections: int_in("HTTP_MAX_CONNECTIONS", &raw.http_max_connections, 1, 1024)?,
            http_pool_max_idle_per_host: int_in(
                "HTTP_POOL_MAX_IDLE_PER_HOST",
                &raw.http_pool_max_idle_per_host,
                0,
                1024,
            )?,
            db_pool_size: db_pool_size_of(raw.db_pool_size.as_deref(), &kind)?,
            db_queue_pool_size: int_in("DB_QUEUE_POOL_SIZE", &raw.db_queue_pool_size, 1, 100)?,
            transaction_pooler: transaction_pooler_of(&raw.database_pooler, &kind)?,
            listen_addr_file: raw.listen_addr_file,
            database_kind: kind,
            database_url: raw.database_url,
            lichess_base_url,
            chesscom_base_url,
            bind_addr,
            lichess_token,
            api_token,
            rate_limit_wait: Duration::from_secs(int_in(
                "UPSTREAM_RATE_LIMIT_WAIT_SECS",
                &raw.upstream_rate_limit_wait_secs,
                0,
                3600,
            )?),
            read_timeout: Duration::from_secs(int_in(
                "UPSTREAM_READ_TIMEOUT_SECS",
                &raw.upstream_read_timeout_secs,
                1,
                3600,
            )?),
            worker_threads: int_in("WORKER_THREADS", &raw.worker_threads, 1, 64)?,
            sqlite_cache_kib: int_in("SQLITE_CACHE_KIB", &raw.sqlite_cache_kib, 64, 1_048_576)?,
            lichess_max_streams: int_in("LICHESS_MAX_STREAMS", &raw.lichess_max_streams, 1, 256)?,
            chesscom_max_requests: int_in("CHESSCOM_MAX_REQUESTS", &raw.chesscom_max_requests, 1, 256)?,
            lanes_scope: choice(
                "PROVIDER_LANES_SCOPE",
                &raw.provider_lanes_scope,
                &[
                    ("process", LanesScope::Process),
                    ("database", LanesScope::Database),
                ],
            )?,
            user_agent,
        };
        config.contact_for_real_providers()?;
        Ok(config)
    }

    /// Against the real providers, a client naming no contact has every import refused (lichess
    /// answers 404, chess.com 403): a first start that would fail every import does not start.
    /// Any base URL off loopback counts as a real provider; mocks on loopback keep the warning only.
    fn contact_for_real_providers(&self) -> Result<(), ConfigError> {
        let sent = self
            .user_agent
            .as_deref()
            .unwrap_or(crate::upstream::USER_AGENT.as_str());
        if has_contact(sent)
            || (is_loopback_url(&self.lichess_base_url) && is_loopback_url(&self.chesscom_base_url))
        {
            return Ok(());
        }
        Err(ConfigError {
            var: "UPSTREAM_USER_AGENT",
            value: self.user_agent.clone().unwrap_or_default(),
            accepted: "a User-Agent naming a contact, a URL or an e-mail address, such as \
                       \"my-importer/1.0 (+https://example.org/importer; ops@example.org)\": \
                       lichess answers 404 and chess.com 403 to clients without one"
                .into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `args`, with a contact in the User-Agent unless `args` give a User-Agent.
    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["importer"];
        if !args.contains(&"--upstream-user-agent") {
            argv.extend(["--upstream-user-agent", "test/1 (ops@example.org)"]);
        }
        argv.extend_from_slice(args);
        Config::from_raw(RawConfig::parse_from(argv))
    }

    const MOCKS: [&str; 4] = [
        "--lichess-base-url",
        "http://127.0.0.1:9001",
        "--chesscom-base-url",
        "http://localhost:9002",
    ];

    #[test]
    fn the_real_providers_need_a_contact_the_mocks_do_not() {
        let bare = |args: &[&str]| {
            let mut argv = vec!["importer"];
            argv.extend_from_slice(args);
            Config::from_raw(RawConfig::parse_from(argv))
        };
        if option_env!("IMPORTER_HOME_URL").is_none() {
            let err = bare(&[]).unwrap_err();
            assert_eq!(err.var, "UPSTREAM_USER_AGENT");
            assert!(err.to_string().contains("e-mail address"), "{err}");
            // One provider real is enough to refuse.
            let err = bare(&["--lichess-base-url", "http://127.0.0.1:9001"]).unwrap_err();
            assert_eq!(err.var, "UPSTREAM_USER_AGENT");
        }
        let err = bare(&["--upstream-user-agent", "my-importer/1.0"]).unwrap_err();
        assert_eq!(err.var, "UPSTREAM_USER_AGENT");
        assert!(err.to_string().contains("my-importer/1.0"), "{err}");
        let mocks = bare(&MOCKS).unwrap();
        assert!(mocks.warnings().iter().any(|w| w.contains("UPSTREAM_USER_AGENT")));
        assert!(bare(&["--upstream-user-agent", "x/1 (+https://example.org)"]).is_ok());
        let ipv6 = [
            "--lichess-base-url",
            "http://[::1]:1",
            "--chesscom-base-url",
            "http://[::1]:2",
        ];
        assert!(bare(&ipv6).is_ok());
    }

    #[test]
    fn defaults_are_valid() {
        // The defaults must not depend on the test process's environment.
        let cfg = parse(&["--database-url", "sqlite://x.db"]).unwrap();
        assert!(cfg.max_concurrent_imports >= 1);
        assert_eq!(cfg.database_kind, DatabaseKind::Sqlite);
        assert_eq!(cfg.db_pool_size, 2, "SQLite: one writer, two connections");
        assert_eq!(
            cfg.sqlite_cache_kib, 512,
            "an import appends: a small page cache per connection"
        );
        let pg = parse(&["--database-url", "postgres://u@h/db"]).unwrap();
        assert_eq!(pg.db_pool_size, 5);
        assert_eq!(parse(&["--db-pool-size", "7"]).unwrap().db_pool_size, 7);
    }

    #[test]
    fn out_of_range_names_variable_value_and_range() {
        let err = parse(&["--max-concurrent-imports", "0"]).unwrap_err();
        assert_eq!(err.var, "MAX_CONCURRENT_IMPORTS");
        assert_eq!(
            err.to_string(),
            "invalid MAX_CONCURRENT_IMPORTS=\"0\": expected an integer in 1..=256"
        );
        let err = parse(&["--import-batch-size", "10001"]).unwrap_err();
        assert_eq!(err.var, "IMPORT_BATCH_SIZE");
        let err = parse(&["--existing-games-page-size", "lots"]).unwrap_err();
        assert_eq!(err.var, "EXISTING_GAMES_PAGE_SIZE");
        assert_eq!(err.value, "lots");
    }

    #[test]
    fn urls_and_addresses_are_checked() {
        assert_eq!(
            parse(&["--database-url", "mysql://x"]).unwrap_err().var,
            "DATABASE_URL"
        );
        assert_eq!(
            parse(&["--database-url", "sqlite://"]).unwrap_err().var,
            "DATABASE_URL"
        );
        assert_eq!(
            parse(&["--lichess-base-url", "ftp://x"]).unwrap_err().var,
            "LICHESS_BASE_URL"
        );
        assert_eq!(parse(&["--bind-addr", "localhost"]).unwrap_err().var, "BIND_ADDR");
        assert_eq!(
            parse(&["--dedup-strategy", "magic"]).unwrap_err().var,
            "DEDUP_STRATEGY"
        );
    }

    #[test]
    fn instance_ids_are_checked_and_default_to_distinct_names() {
        assert_eq!(
            parse(&["--instance-id", "pod-7.eu:1"]).unwrap().instance_id,
            "pod-7.eu:1"
        );
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
            assert_eq!(
                parse(&["--instance-id", bad]).unwrap_err().var,
                "INSTANCE_ID",
                "{bad:?}"
            );
        }
        assert_ne!(parse(&[]).unwrap().instance_id, parse(&[]).unwrap().instance_id);
        assert_eq!(
            parse(&["--job-lease-secs", "1"]).unwrap_err().var,
            "JOB_LEASE_SECS"
        );
        assert_eq!(
            parse(&["--job-poll-millis", "10"]).unwrap_err().var,
            "JOB_POLL_MILLIS"
        );
        assert_eq!(
            parse(&[]).unwrap().job_retention,
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(parse(&["--job-retention-days", "0"]).unwrap().job_retention, None);
        assert_eq!(
            parse(&["--job-retention-days", "36501"]).unwrap_err().var,
            "JOB_RETENTION_DAYS"
        );
    }

    #[test]
    fn lanes_scope_and_user_agent_are_checked() {
        let mut none = MOCKS.to_vec();
        none.push("--upstream-user-agent");
        let cfg = Config::from_raw(RawConfig::parse_from(
            std::iter::once("importer").chain(MOCKS.iter().copied()),
        ))
        .unwrap();
        assert_eq!((cfg.lichess_max_streams, cfg.chesscom_max_requests), (1, 1));
        assert_eq!(cfg.lanes_scope, LanesScope::Process);
        assert!(cfg.user_agent.is_none());
        assert!(
            cfg.warnings().iter().any(|w| w.contains("UPSTREAM_USER_AGENT")),
            "no contact configured: one warning naming the setting"
        );
        for (flag, var) in [
            ("--lichess-max-streams", "LICHESS_MAX_STREAMS"),
            ("--chesscom-max-requests", "CHESSCOM_MAX_REQUESTS"),
        ] {
            for bad in ["0", "257", "two"] {
                assert_eq!(parse(&[flag, bad]).unwrap_err().var, var, "{bad}");
            }
        }
        let three = parse(&["--lichess-max-streams", "3"]).unwrap();
        assert!(
            three
                .warnings()
                .iter()
                .any(|w| w.contains("LICHESS_MAX_STREAMS=3"))
        );
        assert!(
            parse(&[
                "--lichess-max-streams",
                "2",
                "--upstream-user-agent",
                "x (ops@example.org)"
            ])
            .unwrap()
            .warnings()
            .is_empty()
        );
        none.push("my-importer/1.0");
        let anonymous = parse(&none).unwrap();
        assert!(
            anonymous
                .warnings()
                .iter()
                .any(|w| w.contains("neither a URL nor an e-mail"))
        );
        assert!(has_contact("x/1 (+https://example.org/bot)"));
        assert!(has_contact("x/1 (ops@example.org)"));
        assert!(!has_contact("x/1 (@handle)"));
        // The default names the software, not its operator: hence the warning when unset.
        if option_env!("IMPORTER_HOME_URL").is_none() {
            assert!(!has_contact(&crate::upstream::USER_AGENT));
        }
        assert_eq!(
            parse(&["--provider-lanes-scope", "database"])
                .unwrap()
                .lanes_scope,
            LanesScope::Database
        );
        assert_eq!(
            parse(&["--provider-lanes-scope", "global"]).unwrap_err().var,
            "PROVIDER_LANES_SCOPE"
        );
        for bad in ["", "  ", "caf\u{e9}", "a\nb"] {
            assert_eq!(
                parse(&["--upstream-user-agent", bad]).unwrap_err().var,
                "UPSTREAM_USER_AGENT",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_public_address_needs_a_token_or_the_explicit_opt_out() {
        let err = parse(&["--port", "9000"]).unwrap_err();
        assert_eq!(err.var, "API_TOKEN");
        assert!(err.to_string().contains("ALLOW_UNAUTHENTICATED=true"), "{err}");
        let token = "0123456789abcdef-token";
        assert_eq!(
            parse(&["--port", "9000", "--api-token", token])
                .unwrap()
                .api_token
                .as_deref(),
            Some(token)
        );
        assert!(
            parse(&["--port", "9000", "--allow-unauthenticated", "true"])
                .unwrap()
                .api_token
                .is_none()
        );
        assert_eq!(
            parse(&["--allow-unauthenticated", "yes"]).unwrap_err().var,
            "ALLOW_UNAUTHENTICATED"
        );
        // Loopback needs nothing; a short token is refused without being echoed.
        assert!(parse(&[]).unwrap().api_token.is_none());
        let short = parse(&["--api-token", "secret"]).unwrap_err();
        assert_eq!(short.var, "API_TOKEN");
        assert!(!short.to_string().contains("secret"), "{short}");
    }

    #[test]
    fn port_sets_public_bind_address_unless_bind_addr_given() {
        let cfg = parse(&["--port", "9000", "--allow-unauthenticated", "true"]).unwrap();
        assert_eq!(cfg.bind_addr.to_string(), "0.0.0.0:9000");
        let cfg = parse(&["--port", "9000", "--bind-addr", "127.0.0.1:7000"]).unwrap();
        assert_eq!(cfg.bind_addr.to_string(), "127.0.0.1:7000");
        assert_eq!(parse(&["--port", "0"]).unwrap_err().var, "PORT");
    }
}
