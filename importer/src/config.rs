//! Configuration: raw flags and environment first, then one validated `Config`.
//!
//! Every setting is an environment variable (and the same name as a flag).
//! Validation happens once, at start, so that a bad deploy fails loudly with
//! a message naming the variable, the value and what is accepted, instead of
//! misbehaving under load.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};
use settings::{
    ALLOW_UNAUTHENTICATED, API_TOKEN, BIND_ADDR, CHESSCOM_BASE_URL, CHESSCOM_MAX_REQUESTS, DATABASE_POOLER,
    DATABASE_URL, DB_POOL_SIZE, DB_QUEUE_POOL_SIZE, DEDUP_STRATEGY, EXISTING_GAMES_PAGE_SIZE,
    HTTP_MAX_CONNECTIONS, HTTP_POOL_MAX_IDLE_PER_HOST, IMPORT_BATCH_SIZE, IMPORT_QUEUE_CAPACITY, INSTANCE_ID,
    JOB_LEASE_SECS, JOB_POLL_MILLIS, JOB_RETENTION_DAYS, LICHESS_BASE_URL, LICHESS_MAX_STREAMS,
    LICHESS_TOKEN, LISTEN_ADDR_FILE, MAX_CONCURRENT_IMPORTS, PORT, PROVIDER_LANES_SCOPE, SETTINGS,
    SQLITE_CACHE_KIB, Setting, UPSTREAM_OUTAGE_MAX_SECS, UPSTREAM_RATE_LIMIT_WAIT_SECS,
    UPSTREAM_READ_TIMEOUT_SECS, UPSTREAM_USER_AGENT, WORKER_THREADS,
};

use crate::store::StoreOptions;
use crate::upstream::ClientConfig;

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

impl ConfigError {
    /// `setting` refused `value`, saying what the table accepts.
    fn refused(setting: &'static Setting, value: &str) -> ConfigError {
        ConfigError {
            var: setting.name,
            value: value.to_string(),
            accepted: setting.accepted_words(),
        }
    }
}

/// Raw settings as given on the command line or in the environment, not yet checked.
///
/// The flags are the rows of [`settings::SETTINGS`]: each setting's flag, variable, default
/// and `--help` line come from there, as its accepted range does in [`Config::from_raw`].
#[derive(Debug, Clone)]
pub struct RawConfig {
    /// `--openapi`: print the API's OpenAPI document and exit.
    pub openapi: bool,
    /// Each setting given or defaulted, by variable name.
    values: BTreeMap<&'static str, String>,
}

impl RawConfig {
    /// The command line: `--openapi` and one flag per setting, each also read from its variable.
    pub fn command() -> Command {
        let flags = SETTINGS.iter().map(|s| {
            let arg = Arg::new(s.name)
                .long(s.flag)
                .env(s.name)
                .value_name(s.name)
                .value_parser(clap::value_parser!(String))
                .help(s.help())
                .hide(s.hidden)
                .hide_env_values(s.secret);
            match s.default_value() {
                Some(d) => arg.default_value(d),
                None => arg,
            }
        });
        Command::new("importer")
            .version(crate::VERSION)
            .about(
                "Imports chess games from lichess and chess.com into SQLite or PostgreSQL, \
                 with at most MAX_CONCURRENT_IMPORTS imports at a time.",
            )
            .after_help(
                "Every option can be given as the environment variable shown beside it; \
                 a flag wins over the environment. A bad value stops the program with exit code 2.",
            )
            .arg(
                Arg::new("openapi")
                    .long("openapi")
                    .action(ArgAction::SetTrue)
                    .help("Print the API's OpenAPI document (JSON, as importer/openapi.json) and exit."),
            )
            .args(flags)
    }

    /// This process's arguments and environment; a bad command line prints clap's message and exits 2.
    pub fn parse() -> RawConfig {
        Self::of(&Self::command().get_matches())
    }

    /// `args` (the first is the program's name) and this process's environment, as [`RawConfig::parse`].
    pub fn parse_from<I, T>(args: I) -> RawConfig
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::of(&Self::command().get_matches_from(args))
    }

    fn of(matches: &ArgMatches) -> RawConfig {
        RawConfig {
            openapi: matches.get_flag("openapi"),
            values: SETTINGS
                .iter()
                .filter_map(|s| Some((s.name, matches.get_one::<String>(s.name)?.clone())))
                .collect(),
        }
    }

    /// The value of `setting` as given, or its default; `None` when neither.
    pub fn get(&self, setting: &Setting) -> Option<&str> {
        self.values.get(setting.name).map(String::as_str)
    }

    /// Sets `setting` as if given.
    pub fn set(&mut self, setting: &'static Setting, value: impl Into<String>) {
        self.values.insert(setting.name, value.into());
    }
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

/// Which database `DATABASE_URL` names: the pool's default size and the pooler depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DatabaseKind {
    Sqlite,
    Postgres,
}

/// Validated, ready-to-use configuration, in sections: each is handed whole to the part that uses
/// it, so that a new setting is a row of the settings table, a field of one section and a line
/// of the function that builds that section.
#[derive(Debug, Clone)]
pub struct Config {
    /// The database (`DATABASE_URL`, `DATABASE_POOLER`, `DB_*`, `SQLITE_CACHE_KIB`), for
    /// [`Store::connect`](crate::store::Store::connect).
    pub store: StoreOptions,
    /// The providers and how they are reached (`*_BASE_URL`, `HTTP_*`, the lanes,
    /// `UPSTREAM_USER_AGENT`, `LICHESS_TOKEN`, the cool-down and the read timeout), for
    /// [`Client::new`](crate::upstream::Client::new).
    pub upstream: ClientConfig,
    /// The shared job queue and this process's slots, for the scheduler.
    pub queue: QueueConfig,
    /// One import's work, for the pipeline.
    pub import: ImportConfig,
    /// The API: where it listens and who may call it.
    pub http: HttpConfig,
    /// Runtime worker threads for the imports (`WORKER_THREADS`).
    pub worker_threads: usize,
}

/// The job queue, shared by every process on the database, and this process's part in it.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// This process's name in the shared queue (`INSTANCE_ID`).
    pub instance_id: String,
    /// How long a claim holds without renewal (`JOB_LEASE_SECS`).
    pub job_lease: Duration,
    /// How often to look for queued imports (`JOB_POLL_MILLIS`).
    pub job_poll: Duration,
    /// How long a finished import's record is kept; `None` keeps every record (`JOB_RETENTION_DAYS`).
    pub job_retention: Option<Duration>,
    /// Imports running at once (`MAX_CONCURRENT_IMPORTS`).
    pub max_concurrent_imports: usize,
    /// Imports that may wait (`IMPORT_QUEUE_CAPACITY`).
    pub import_queue_capacity: usize,
    /// What the provider lanes count (`PROVIDER_LANES_SCOPE`).
    pub lanes_scope: LanesScope,
    /// Longest an import waits for a provider having a bad day before it fails
    /// (`UPSTREAM_OUTAGE_MAX_SECS`).
    pub outage_max: Duration,
}

/// How one import reads, deduplicates and writes.
#[derive(Debug, Clone)]
pub struct ImportConfig {
    /// Games per batch and per transaction (`IMPORT_BATCH_SIZE`).
    pub batch_size: usize,
    /// Ids per query when reading stored ids (`EXISTING_GAMES_PAGE_SIZE`).
    pub existing_games_page_size: usize,
    /// How stored games are recognised (`DEDUP_STRATEGY`).
    pub dedup_strategy: DedupStrategy,
}

/// The API's listener and its authentication.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Listen address (`BIND_ADDR`, or `PORT`).
    pub bind_addr: SocketAddr,
    /// The token API clients must send; `None`: no authentication (loopback, or explicitly
    /// allowed by `ALLOW_UNAUTHENTICATED`).
    pub api_token: Option<String>,
    /// Where to write the address listened on (`LISTEN_ADDR_FILE`).
    pub listen_addr_file: Option<std::path::PathBuf>,
}

impl HttpConfig {
    /// Whether `/debug/` endpoints (the heap profile) may answer: only behind `API_TOKEN` or on a
    /// loopback address. `ALLOW_UNAUTHENTICATED=true` opens the API on a private network; it never
    /// opens what shows the process's insides.
    pub fn debug_endpoints(&self) -> bool {
        self.api_token.is_some() || self.bind_addr.ip().is_loopback()
    }
}

impl Config {
    /// Warnings worth one log line each at start: settings that work but that a provider will punish.
    pub fn warnings(&self) -> Vec<String> {
        let (up, queue) = (&self.upstream, &self.queue);
        let mut out = Vec::new();
        if up.lichess_lanes > 2 {
            out.push(format!(
                "LICHESS_MAX_STREAMS={} but lichess refuses more than 2 export streams per address \
                 (429, then a penalty of a minute or more); use 1 or 2 unless each stream leaves from its own address",
                up.lichess_lanes
            ));
        }
        let lanes = up.lichess_lanes + up.chess_com_lanes;
        if queue.lanes_scope == LanesScope::Process && queue.max_concurrent_imports > lanes {
            out.push(format!(
                "MAX_CONCURRENT_IMPORTS={} but the provider lanes allow {lanes} imports at once \
                 (LICHESS_MAX_STREAMS={} + CHESSCOM_MAX_REQUESTS={}): the other slots never run an import",
                queue.max_concurrent_imports, up.lichess_lanes, up.chess_com_lanes
            ));
        }
        if let Some(ua) = &up.user_agent
            && !has_contact(ua)
        {
            out.push(format!(
                "UPSTREAM_USER_AGENT={ua:?} names neither a URL nor an e-mail address: \
                 lichess answers such clients 404 and chess.com 403"
            ));
        }
        if up.user_agent.is_none() {
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
        return Err(ConfigError::refused(&UPSTREAM_USER_AGENT, value));
    }
    Ok(v.to_string())
}

/// DB_POOL_SIZE, or the database's default.
fn db_pool_size_of(raw: &RawConfig, kind: DatabaseKind) -> Result<u32, ConfigError> {
    match raw.get(&DB_POOL_SIZE) {
        Some(_) => int(&DB_POOL_SIZE, raw),
        // SQLite has one writer: more connections only add page caches (and make peak memory
        // depend on how many happened to open); docs/measurements.md has the figures.
        None if kind == DatabaseKind::Sqlite => Ok(2),
        None => Ok(5),
    }
}

/// DATABASE_POOLER: `transaction` only with PostgreSQL.
fn transaction_pooler_of(raw: &RawConfig, kind: DatabaseKind) -> Result<bool, ConfigError> {
    let pooler = choice(&DATABASE_POOLER, raw, &[("none", false), ("transaction", true)])?;
    if pooler && kind != DatabaseKind::Postgres {
        return Err(ConfigError {
            var: DATABASE_POOLER.name,
            value: "transaction".into(),
            accepted: "`none`, or `transaction` with a postgres:// DATABASE_URL".into(),
        });
    }
    Ok(pooler)
}

/// The value of `setting` (one of the table's words) as what it means in `meanings`.
fn choice<T: Copy>(
    setting: &'static Setting,
    raw: &RawConfig,
    meanings: &[(&str, T)],
) -> Result<T, ConfigError> {
    let value = raw.get(setting).unwrap_or_default();
    let bad = || ConfigError::refused(setting, value);
    setting.check(value).map_err(|_| bad())?;
    meanings
        .iter()
        .find(|(word, _)| *word == value.trim())
        .map(|(_, t)| *t)
        .ok_or_else(bad)
}

/// BIND_ADDR, else every address on PORT (a hosting platform's), else 127.0.0.1:8080.
fn bind_addr_of(raw: &RawConfig) -> Result<SocketAddr, ConfigError> {
    match (raw.get(&BIND_ADDR), raw.get(&PORT)) {
        (Some(addr), _) => addr.parse().map_err(|_| ConfigError::refused(&BIND_ADDR, addr)),
        (None, Some(_)) => Ok(SocketAddr::from(([0, 0, 0, 0], int(&PORT, raw)?))),
        (None, None) => Ok(SocketAddr::from(([127, 0, 0, 1], 8080))),
    }
}

/// API_TOKEN: at least 16 printable ASCII characters without spaces; never echoed back.
fn api_token_of(token: Option<&str>) -> Result<Option<String>, ConfigError> {
    match token {
        Some(t) if t.len() >= 16 && t.bytes().all(|b| (0x21..0x7f).contains(&b)) => Ok(Some(t.to_string())),
        // Never echoed: a token that is almost right is still a secret.
        Some(_) => Err(ConfigError::refused(&API_TOKEN, "(hidden)")),
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
        var: API_TOKEN.name,
        value: String::new(),
        accepted: format!(
            "a token, because BIND_ADDR {bind_addr} is not loopback and every endpoint would answer \
             anyone; or ALLOW_UNAUTHENTICATED=true on a private network"
        ),
    })
}

/// INSTANCE_ID as given, or a random one.
fn instance_id_of(id: Option<&str>) -> Result<String, ConfigError> {
    match id {
        Some(id) if valid_instance_id(id) => Ok(id.to_string()),
        Some(id) => Err(ConfigError::refused(&INSTANCE_ID, id)),
        None => Ok(format!(
            "importer-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )),
    }
}

/// The value of `setting`, a number in the table's range, as a `T`.
fn int<T: TryFrom<u64>>(setting: &'static Setting, raw: &RawConfig) -> Result<T, ConfigError> {
    let value = raw.get(setting).unwrap_or_default();
    setting
        .integer(value)
        .ok()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| ConfigError::refused(setting, value))
}

fn base_url(setting: &'static Setting, raw: &RawConfig) -> Result<String, ConfigError> {
    let value = raw.get(setting).unwrap_or_default();
    let ok = reqwest::Url::parse(value)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    match ok {
        Some(_) => Ok(value.trim_end_matches('/').to_string()),
        None => Err(ConfigError::refused(setting, value)),
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
        var: DATABASE_URL.name,
        value: value.to_string(),
        accepted: format!("{} ({why})", DATABASE_URL.accepted_words()),
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

fn secs(setting: &'static Setting, raw: &RawConfig) -> Result<Duration, ConfigError> {
    int(setting, raw).map(Duration::from_secs)
}

fn http_of(raw: &RawConfig) -> Result<HttpConfig, ConfigError> {
    let bind_addr = bind_addr_of(raw)?;
    let api_token = api_token_of(raw.get(&API_TOKEN))?;
    let allow_unauthenticated = choice(&ALLOW_UNAUTHENTICATED, raw, &[("true", true), ("false", false)])?;
    token_off_loopback(api_token.is_some(), allow_unauthenticated, bind_addr)?;
    Ok(HttpConfig {
        bind_addr,
        api_token,
        listen_addr_file: raw.get(&LISTEN_ADDR_FILE).map(std::path::PathBuf::from),
    })
}

fn store_of(raw: &RawConfig) -> Result<StoreOptions, ConfigError> {
    let url = raw.get(&DATABASE_URL).unwrap_or_default().to_string();
    let kind = database_kind(&url)?;
    Ok(StoreOptions {
        url,
        pool_size: db_pool_size_of(raw, kind)?,
        queue_pool_size: int(&DB_QUEUE_POOL_SIZE, raw)?,
        sqlite_cache_kib: int(&SQLITE_CACHE_KIB, raw)?,
        transaction_pooler: transaction_pooler_of(raw, kind)?,
    })
}

fn queue_of(raw: &RawConfig) -> Result<QueueConfig, ConfigError> {
    Ok(QueueConfig {
        instance_id: instance_id_of(raw.get(&INSTANCE_ID))?,
        job_lease: secs(&JOB_LEASE_SECS, raw)?,
        job_poll: Duration::from_millis(int(&JOB_POLL_MILLIS, raw)?),
        job_retention: match int::<u64>(&JOB_RETENTION_DAYS, raw)? {
            0 => None,
            days => Some(Duration::from_secs(days * 86_400)),
        },
        max_concurrent_imports: int(&MAX_CONCURRENT_IMPORTS, raw)?,
        import_queue_capacity: int(&IMPORT_QUEUE_CAPACITY, raw)?,
        lanes_scope: choice(
            &PROVIDER_LANES_SCOPE,
            raw,
            &[
                ("process", LanesScope::Process),
                ("database", LanesScope::Database),
            ],
        )?,
        outage_max: secs(&UPSTREAM_OUTAGE_MAX_SECS, raw)?,
    })
}

fn import_of(raw: &RawConfig) -> Result<ImportConfig, ConfigError> {
    Ok(ImportConfig {
        batch_size: int(&IMPORT_BATCH_SIZE, raw)?,
        existing_games_page_size: int(&EXISTING_GAMES_PAGE_SIZE, raw)?,
        dedup_strategy: choice(
            &DEDUP_STRATEGY,
            raw,
            &[
                ("batch", DedupStrategy::Batch),
                ("preload", DedupStrategy::Preload),
            ],
        )?,
    })
}

fn upstream_of(raw: &RawConfig) -> Result<ClientConfig, ConfigError> {
    Ok(ClientConfig {
        lichess_base_url: base_url(&LICHESS_BASE_URL, raw)?,
        chess_com_base_url: base_url(&CHESSCOM_BASE_URL, raw)?,
        max_connections: int(&HTTP_MAX_CONNECTIONS, raw)?,
        pool_max_idle_per_host: int(&HTTP_POOL_MAX_IDLE_PER_HOST, raw)?,
        lichess_lanes: int(&LICHESS_MAX_STREAMS, raw)?,
        chess_com_lanes: int(&CHESSCOM_MAX_REQUESTS, raw)?,
        rate_limit_wait: secs(&UPSTREAM_RATE_LIMIT_WAIT_SECS, raw)?,
        read_timeout: secs(&UPSTREAM_READ_TIMEOUT_SECS, raw)?,
        lichess_token: raw
            .get(&LICHESS_TOKEN)
            .filter(|t| !t.trim().is_empty())
            .map(str::to_string),
        user_agent: raw.get(&UPSTREAM_USER_AGENT).map(user_agent).transpose()?,
    })
}

impl Config {
    /// Checks every raw value and builds the configuration, naming the first bad one.
    pub fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let config = Config {
            http: http_of(&raw)?,
            store: store_of(&raw)?,
            queue: queue_of(&raw)?,
            import: import_of(&raw)?,
            upstream: upstream_of(&raw)?,
            worker_threads: int(&WORKER_THREADS, &raw)?,
        };
        config.contact_for_real_providers()?;
        Ok(config)
    }

    /// Against the real providers, a client naming no contact has every import refused (lichess
    /// answers 404, chess.com 403): a first start that would fail every import does not start.
    /// Any base URL off loopback counts as a real provider; mocks on loopback keep the warning only.
    fn contact_for_real_providers(&self) -> Result<(), ConfigError> {
        let up = &self.upstream;
        let sent = up
            .user_agent
            .as_deref()
            .unwrap_or(crate::upstream::USER_AGENT.as_str());
        if has_contact(sent)
            || (is_loopback_url(&up.lichess_base_url) && is_loopback_url(&up.chess_com_base_url))
        {
            return Ok(());
        }
        Err(ConfigError {
            var: UPSTREAM_USER_AGENT.name,
            value: up.user_agent.clone().unwrap_or_default(),
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

    /// Every number and word the table accepts is accepted here, and the numbers just outside
    /// each range are refused naming the setting: the importer's checks are the table's.
    #[test]
    fn every_setting_accepts_its_bounds_and_refuses_their_neighbours() {
        let with = |setting: &'static Setting, value: &str| {
            let mut raw = RawConfig::parse_from([
                "importer",
                "--upstream-user-agent",
                "test/1 (ops@example.org)",
                "--database-url",
                "postgres://u@h/db",
            ]);
            raw.set(&ALLOW_UNAUTHENTICATED, "true");
            raw.set(setting, value);
            Config::from_raw(raw)
        };
        let mut walked = 0;
        for s in SETTINGS {
            match s.accepted {
                settings::Accepted::Integer { min, max, .. } => {
                    for ok in [min, max] {
                        assert!(with(s, &ok.to_string()).is_ok(), "{}={ok}", s.name);
                    }
                    for bad in [min.checked_sub(1), max.checked_add(1)].into_iter().flatten() {
                        let err = with(s, &bad.to_string()).unwrap_err();
                        assert_eq!(err.var, s.name, "{}={bad}", s.name);
                        assert_eq!(err.accepted, s.accepted_words());
                    }
                    walked += 1;
                }
                settings::Accepted::OneOf(words) => {
                    for w in words {
                        assert!(with(s, w).is_ok(), "{}={w}", s.name);
                    }
                    assert_eq!(with(s, "neither").unwrap_err().var, s.name);
                    walked += 1;
                }
                settings::Accepted::Text(_) => {}
            }
        }
        assert!(walked >= 20, "{walked} settings walked");
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
        assert!(cfg.queue.max_concurrent_imports >= 1);
        assert_eq!(cfg.store.pool_size, 2, "SQLite: one writer, two connections");
        assert_eq!(
            cfg.store.sqlite_cache_kib, 512,
            "an import appends: a small page cache per connection"
        );
        let pg = parse(&["--database-url", "postgres://u@h/db"]).unwrap();
        assert_eq!(pg.store.pool_size, 5);
        assert_eq!(parse(&["--db-pool-size", "7"]).unwrap().store.pool_size, 7);
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
            parse(&["--instance-id", "pod-7.eu:1"]).unwrap().queue.instance_id,
            "pod-7.eu:1"
        );
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
            assert_eq!(
                parse(&["--instance-id", bad]).unwrap_err().var,
                "INSTANCE_ID",
                "{bad:?}"
            );
        }
        assert_ne!(
            parse(&[]).unwrap().queue.instance_id,
            parse(&[]).unwrap().queue.instance_id
        );
        assert_eq!(
            parse(&["--job-lease-secs", "1"]).unwrap_err().var,
            "JOB_LEASE_SECS"
        );
        assert_eq!(
            parse(&["--job-poll-millis", "10"]).unwrap_err().var,
            "JOB_POLL_MILLIS"
        );
        assert_eq!(
            parse(&[]).unwrap().queue.job_retention,
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(
            parse(&["--job-retention-days", "0"]).unwrap().queue.job_retention,
            None
        );
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
        assert_eq!((cfg.upstream.lichess_lanes, cfg.upstream.chess_com_lanes), (1, 1));
        assert_eq!(cfg.queue.lanes_scope, LanesScope::Process);
        assert!(cfg.upstream.user_agent.is_none());
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
                .queue
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
                .http
                .api_token
                .as_deref(),
            Some(token)
        );
        assert!(
            parse(&["--port", "9000", "--allow-unauthenticated", "true"])
                .unwrap()
                .http
                .api_token
                .is_none()
        );
        assert_eq!(
            parse(&["--allow-unauthenticated", "yes"]).unwrap_err().var,
            "ALLOW_UNAUTHENTICATED"
        );
        // Loopback needs nothing; a short token is refused without being echoed.
        assert!(parse(&[]).unwrap().http.api_token.is_none());
        let short = parse(&["--api-token", "secret"]).unwrap_err();
        assert_eq!(short.var, "API_TOKEN");
        assert!(!short.to_string().contains("secret"), "{short}");
    }

    #[test]
    fn port_sets_public_bind_address_unless_bind_addr_given() {
        let cfg = parse(&["--port", "9000", "--allow-unauthenticated", "true"]).unwrap();
        assert_eq!(cfg.http.bind_addr.to_string(), "0.0.0.0:9000");
        let cfg = parse(&["--port", "9000", "--bind-addr", "127.0.0.1:7000"]).unwrap();
        assert_eq!(cfg.http.bind_addr.to_string(), "127.0.0.1:7000");
        assert_eq!(parse(&["--port", "0"]).unwrap_err().var, "PORT");
    }
}
