//! The rows of the table: one per setting, in the order `--help` and the README show them.

use crate::{Accepted, Default, Setting};

const URL: &str = "an http:// or https:// URL with a host";

const fn row(
    name: &'static str,
    flag: &'static str,
    default: Default,
    accepted: Accepted,
    about: &'static str,
) -> Setting {
    Setting {
        name,
        flag,
        default,
        accepted,
        about,
        secret: false,
        hidden: false,
        tuning: false,
        axis: None,
    }
}

const fn int(min: u64, max: u64, unit: &'static str) -> Accepted {
    Accepted::Integer { min, max, unit }
}

/// The `MAX_CONCURRENT_IMPORTS` row.
pub const MAX_CONCURRENT_IMPORTS: Setting = Setting {
    tuning: true,
    axis: Some("c"),
    ..row(
        "MAX_CONCURRENT_IMPORTS",
        "max-concurrent-imports",
        Default::Value("2"),
        int(1, 256, "imports"),
        "Imports running at once; the rest wait in the queue. The default is the lanes' sum (1 lichess stream + 1 chess.com request): a slot beyond the lanes the process may use never runs an import.",
    )
};

/// The `IMPORT_BATCH_SIZE` row.
pub const IMPORT_BATCH_SIZE: Setting = Setting {
    tuning: true,
    axis: Some("b"),
    ..row(
        "IMPORT_BATCH_SIZE",
        "import-batch-size",
        Default::Value("50"),
        int(1, 10_000, "games"),
        "Games written per transaction; also the most games an import holds in memory.",
    )
};

/// The `EXISTING_GAMES_PAGE_SIZE` row.
pub const EXISTING_GAMES_PAGE_SIZE: Setting = Setting {
    tuning: true,
    axis: Some("p"),
    ..row(
        "EXISTING_GAMES_PAGE_SIZE",
        "existing-games-page-size",
        Default::Value("2000"),
        int(1, 100_000, "ids"),
        "Stored ids read per query when checking which games are stored.",
    )
};

/// The `DEDUP_STRATEGY` row.
pub const DEDUP_STRATEGY: Setting = Setting {
    tuning: true,
    axis: Some("d"),
    ..row(
        "DEDUP_STRATEGY",
        "dedup-strategy",
        Default::Value("batch"),
        Accepted::OneOf(&["batch", "preload"]),
        "How stored games are recognised: `batch` asks the database per batch (memory bounded by the batch); `preload` reads every stored id first, page by page (memory grows with history; kept to be measured).",
    )
};

/// The `IMPORT_QUEUE_CAPACITY` row.
pub const IMPORT_QUEUE_CAPACITY: Setting = Setting {
    tuning: true,
    ..row(
        "IMPORT_QUEUE_CAPACITY",
        "import-queue-capacity",
        Default::Value("100"),
        int(0, 100_000, "imports"),
        "Imports that may wait in the queue, whatever keeps them waiting (a slot, their provider's lane, their provider's outage); beyond it, 429 with `Retry-After`.",
    )
};

/// The `HTTP_MAX_CONNECTIONS` row.
pub const HTTP_MAX_CONNECTIONS: Setting = Setting {
    tuning: true,
    axis: Some("h"),
    ..row(
        "HTTP_MAX_CONNECTIONS",
        "http-max-connections",
        Default::Value("15"),
        int(1, 1024, "requests"),
        "Upstream requests in flight, all imports together.",
    )
};

/// The `HTTP_POOL_MAX_IDLE_PER_HOST` row.
pub const HTTP_POOL_MAX_IDLE_PER_HOST: Setting = Setting {
    tuning: true,
    axis: Some("hi"),
    ..row(
        "HTTP_POOL_MAX_IDLE_PER_HOST",
        "http-pool-max-idle-per-host",
        Default::Value("6"),
        int(0, 1024, "connections"),
        "Idle connections kept per upstream host.",
    )
};

/// The `DB_POOL_SIZE` row.
pub const DB_POOL_SIZE: Setting = Setting {
    tuning: true,
    axis: Some("db"),
    ..row(
        "DB_POOL_SIZE",
        "db-pool-size",
        Default::Unset("2 on SQLite (one writer), 5 on PostgreSQL"),
        int(1, 100, "connections"),
        "Database connections for the imports' batches; on SQLite each has its own page cache. The queue has `DB_QUEUE_POOL_SIZE` more.",
    )
};

/// The `DB_QUEUE_POOL_SIZE` row. Its default, 4: one connection writes at a time (admissions,
/// claims, renewals, ends), the others serve reads; with 512 clients polling their import every
/// 0.1 s, one reader was the queue (GET p99 212 ms, capacity-512). An SQLite connection here holds
/// a few pages of `import_jobs`, not games.
pub const DB_QUEUE_POOL_SIZE: Setting = Setting {
    tuning: true,
    ..row(
        "DB_QUEUE_POOL_SIZE",
        "db-queue-pool-size",
        Default::Value("4"),
        int(1, 100, "connections"),
        "Connections for the queue (admissions, claims, polls), beside `DB_POOL_SIZE`: a process opens at most their sum (9 on PostgreSQL by default), as it needs them.",
    )
};

/// The `DATABASE_URL` row.
pub const DATABASE_URL: Setting = Setting {
    // Its value may carry a password: `--help` never shows it.
    secret: true,
    ..row(
        "DATABASE_URL",
        "database-url",
        Default::Value("sqlite://importer.db"),
        Accepted::Text("`sqlite://FILE` (created if missing) or `postgres://USER@HOST/DB`"),
        "The database. PostgreSQL over TLS: `?sslmode=require`, or `?sslmode=verify-full&sslrootcert=CA.pem`; in a schema of its own: `?options=-c%20search_path%3DNAME` (not through PgBouncer, which refuses `options`).",
    )
};

/// The `DATABASE_POOLER` row.
pub const DATABASE_POOLER: Setting = Setting {
    axis: Some(""),
    ..row(
        "DATABASE_POOLER",
        "database-pooler",
        Default::Value("none"),
        Accepted::OneOf(&["none", "transaction"]),
        "What stands between the importer and PostgreSQL: `transaction` for a pooler in transaction mode (PgBouncer, Supavisor on port 6543), with a `postgres://` URL; then no statement stays prepared on a connection and each runs in a transaction of its own.",
    )
};

/// The `LISTEN_ADDR_FILE` row.
pub const LISTEN_ADDR_FILE: Setting = row(
    "LISTEN_ADDR_FILE",
    "listen-addr-file",
    Default::Unset("unset"),
    Accepted::Text("a file path"),
    "Once the API listens, the address it really got is written to this file (`IP:PORT` and a newline, written whole, then renamed): `BIND_ADDR=127.0.0.1:0` takes a free port without a race.",
);

/// The `LICHESS_BASE_URL` row.
pub const LICHESS_BASE_URL: Setting = row(
    "LICHESS_BASE_URL",
    "lichess-base-url",
    Default::Value("https://lichess.org"),
    Accepted::Text(URL),
    "Base URL of lichess.",
);

/// The `CHESSCOM_BASE_URL` row.
pub const CHESSCOM_BASE_URL: Setting = row(
    "CHESSCOM_BASE_URL",
    "chesscom-base-url",
    Default::Value("https://api.chess.com"),
    Accepted::Text(URL),
    "Base URL of the chess.com published-data API.",
);

/// The `BIND_ADDR` row.
pub const BIND_ADDR: Setting = row(
    "BIND_ADDR",
    "bind-addr",
    Default::Unset("`127.0.0.1:8080`; `0.0.0.0:$PORT` when `PORT` is set"),
    Accepted::Text("a socket address such as 127.0.0.1:8080"),
    "Address the API listens on.",
);

/// The `PORT` row.
pub const PORT: Setting = Setting {
    hidden: true,
    ..row(
        "PORT",
        "port",
        Default::Unset("unset"),
        int(1, 65_535, "port number"),
        "Port set by hosting platforms; used when `BIND_ADDR` is not set.",
    )
};

/// The `API_TOKEN` row.
pub const API_TOKEN: Setting = Setting {
    secret: true,
    ..row(
        "API_TOKEN",
        "api-token",
        Default::Unset("unset"),
        Accepted::Text("16 or more printable ASCII characters without spaces"),
        "The token every API client sends as `Authorization: Bearer <token>` (every endpoint but `/healthz`; 401 otherwise). Required when `BIND_ADDR` is not loopback, unless `ALLOW_UNAUTHENTICATED=true`. Never logged nor shown by `--help`.",
    )
};

/// The `ALLOW_UNAUTHENTICATED` row.
pub const ALLOW_UNAUTHENTICATED: Setting = row(
    "ALLOW_UNAUTHENTICATED",
    "allow-unauthenticated",
    Default::Value("false"),
    Accepted::OneOf(&["true", "false"]),
    "`true`: serve a non-loopback address without `API_TOKEN` (a private network only).",
);

/// The `LICHESS_TOKEN` row.
pub const LICHESS_TOKEN: Setting = Setting {
    secret: true,
    ..row(
        "LICHESS_TOKEN",
        "lichess-token",
        Default::Unset("unset"),
        Accepted::Text("a lichess API token; blank is none"),
        "Optional bearer token for lichess (raises its rate limit).",
    )
};

/// The `UPSTREAM_RATE_LIMIT_WAIT_SECS` row.
pub const UPSTREAM_RATE_LIMIT_WAIT_SECS: Setting = Setting {
    tuning: true,
    ..row(
        "UPSTREAM_RATE_LIMIT_WAIT_SECS",
        "upstream-rate-limit-wait-secs",
        Default::Value("60"),
        int(0, 3600, "seconds"),
        "How long no request goes to a provider after its 429 without `Retry-After` (lichess asks for a full minute).",
    )
};

/// The `UPSTREAM_OUTAGE_MAX_SECS` row.
pub const UPSTREAM_OUTAGE_MAX_SECS: Setting = Setting {
    tuning: true,
    ..row(
        "UPSTREAM_OUTAGE_MAX_SECS",
        "upstream-outage-max-secs",
        Default::Value("600"),
        int(1, 86_400, "seconds"),
        "How long an import waits, in the queue, for a provider that answers 5xx, an HTML error page, or streams that break without progress, before it fails with the provider's last words. lichess's restarts last tens of seconds to a few minutes (clients wait 20 s to a minute and retry: docs/providers.md); 10 minutes rides out a restart or a deploy with margin.",
    )
};

/// The `UPSTREAM_READ_TIMEOUT_SECS` row.
pub const UPSTREAM_READ_TIMEOUT_SECS: Setting = Setting {
    tuning: true,
    ..row(
        "UPSTREAM_READ_TIMEOUT_SECS",
        "upstream-read-timeout-secs",
        Default::Value("60"),
        int(1, 3600, "seconds"),
        "Silence after which an upstream stream is stalled and resumed.",
    )
};

/// The `WORKER_THREADS` row.
pub const WORKER_THREADS: Setting = Setting {
    tuning: true,
    axis: Some("t"),
    ..row(
        "WORKER_THREADS",
        "worker-threads",
        Default::Value("2"),
        int(1, 64, "threads"),
        "Runtime worker threads; fewer threads, less memory.",
    )
};

/// The `SQLITE_CACHE_KIB` row.
pub const SQLITE_CACHE_KIB: Setting = Setting {
    tuning: true,
    axis: Some("sc"),
    ..row(
        "SQLITE_CACHE_KIB",
        "sqlite-cache-kib",
        Default::Value("512"),
        int(64, 1_048_576, "KiB"),
        "SQLite page cache per connection. SQLite's own default is 2000 KiB; an import appends, so a larger cache holds pages it will not read again.",
    )
};

/// The `INSTANCE_ID` row.
pub const INSTANCE_ID: Setting = row(
    "INSTANCE_ID",
    "instance-id",
    Default::Unset("a random name per start"),
    Accepted::Text("1 to 64 of `A-Z a-z 0-9 . _ : -`"),
    "This process's name in the shared job queue. Give one stable across restarts and unique among live processes (a host or pod name): after a crash the process takes its own imports back at once instead of after their lease.",
);

/// The `JOB_LEASE_SECS` row.
pub const JOB_LEASE_SECS: Setting = Setting {
    tuning: true,
    ..row(
        "JOB_LEASE_SECS",
        "job-lease-secs",
        Default::Value("30"),
        int(2, 3600, "seconds"),
        "How long a running import stays claimed without a renewal before another process takes it over.",
    )
};

/// The `JOB_RETENTION_DAYS` row.
pub const JOB_RETENTION_DAYS: Setting = Setting {
    tuning: true,
    ..row(
        "JOB_RETENTION_DAYS",
        "job-retention-days",
        Default::Value("30"),
        int(0, 36_500, "days"),
        "How long a finished (completed or failed) import's record is kept; older ones are deleted hourly in batches of 500, queued and running ones never. 0 keeps every record. `harness capture` sees at most this far back.",
    )
};

/// The `JOB_POLL_MILLIS` row.
pub const JOB_POLL_MILLIS: Setting = Setting {
    tuning: true,
    ..row(
        "JOB_POLL_MILLIS",
        "job-poll-millis",
        Default::Value("1000"),
        int(50, 60_000, "ms"),
        "How often a process with a free slot looks for imports queued by others.",
    )
};

/// The `LICHESS_MAX_STREAMS` row.
pub const LICHESS_MAX_STREAMS: Setting = Setting {
    tuning: true,
    axis: Some("ls"),
    ..row(
        "LICHESS_MAX_STREAMS",
        "lichess-max-streams",
        Default::Value("1"),
        int(1, 256, "streams"),
        "lichess export streams in flight: lichess imports running at once. lichess allows 2 per address and asks for 1 (lila's `api.ip.download` limit); above 2 the importer warns at start.",
    )
};

/// The `CHESSCOM_MAX_REQUESTS` row.
pub const CHESSCOM_MAX_REQUESTS: Setting = Setting {
    tuning: true,
    axis: Some("cr"),
    ..row(
        "CHESSCOM_MAX_REQUESTS",
        "chesscom-max-requests",
        Default::Value("1"),
        int(1, 256, "requests"),
        "chess.com requests in flight: chess.com imports running at once. chess.com: \"serial access is unlimited; parallel requests may trigger 429\".",
    )
};

/// The `PROVIDER_LANES_SCOPE` row.
pub const PROVIDER_LANES_SCOPE: Setting = Setting {
    tuning: true,
    ..row(
        "PROVIDER_LANES_SCOPE",
        "provider-lanes-scope",
        Default::Value("process"),
        Accepted::OneOf(&["process", "database"]),
        "What the two settings above count: `process`, this process's imports (each process has its own egress address); `database`, every process's running imports on the shared database (processes behind one address).",
    )
};

/// The `UPSTREAM_USER_AGENT` row.
pub const UPSTREAM_USER_AGENT: Setting = row(
    "UPSTREAM_USER_AGENT",
    "upstream-user-agent",
    Default::Unset("`chess-games-importer/VERSION`, plus ` (+URL)` when built with `IMPORTER_HOME_URL=URL`"),
    Accepted::Text("1 to 512 printable ASCII characters naming a contact: a URL or an e-mail address"),
    "The whole User-Agent header sent to lichess and chess.com, which refuse clients without a contact (lichess 404, chess.com 403): off loopback without one the importer does not start; with both base URLs on loopback (mocks) it warns.",
);

/// Every setting, in the order `--help` and the README show them.
pub static SETTINGS: &[Setting] = &[
    MAX_CONCURRENT_IMPORTS,
    IMPORT_BATCH_SIZE,
    EXISTING_GAMES_PAGE_SIZE,
    DEDUP_STRATEGY,
    IMPORT_QUEUE_CAPACITY,
    DB_POOL_SIZE,
    DB_QUEUE_POOL_SIZE,
    HTTP_MAX_CONNECTIONS,
    HTTP_POOL_MAX_IDLE_PER_HOST,
    DATABASE_URL,
    DATABASE_POOLER,
    LISTEN_ADDR_FILE,
    LICHESS_BASE_URL,
    CHESSCOM_BASE_URL,
    BIND_ADDR,
    PORT,
    API_TOKEN,
    ALLOW_UNAUTHENTICATED,
    LICHESS_TOKEN,
    UPSTREAM_RATE_LIMIT_WAIT_SECS,
    UPSTREAM_OUTAGE_MAX_SECS,
    UPSTREAM_READ_TIMEOUT_SECS,
    WORKER_THREADS,
    SQLITE_CACHE_KIB,
    INSTANCE_ID,
    JOB_LEASE_SECS,
    JOB_RETENTION_DAYS,
    JOB_POLL_MILLIS,
    LICHESS_MAX_STREAMS,
    CHESSCOM_MAX_REQUESTS,
    PROVIDER_LANES_SCOPE,
    UPSTREAM_USER_AGENT,
];
