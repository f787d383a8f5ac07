//! `importer`: configuration, database, client, scheduler, HTTP server. Nothing else lives here.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use importer::config::{Config, RawConfig};
use importer::http::{AppState, app};
use importer::metrics::Metrics;
use importer::pipeline::ImportContext;
use importer::scheduler::Scheduler;
use importer::store::{Store, StoreOptions};
use importer::upstream::Client;
use tracing_subscriber::EnvFilter;

#[cfg(all(feature = "jemalloc", feature = "mimalloc"))]
compile_error!("choose one allocator: the `jemalloc` and `mimalloc` features exclude each other");

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options in a `heap-profile` build, read at its first allocation, before `main`.
/// - `prof:true,prof_active:true`: the profiler on and sampling from the start, so that a profile
///   holds what start-up allocated too.
/// - `lg_prof_sample:19`: one sample per 2^19 bytes (512 KiB) allocated on average, jemalloc_pprof's
///   default (why this rate: docs/deploying.md).
/// - `narenas:1,tcache_max:1024,dirty_decay_ms:1000,muzzy_decay_ms:0`: jemalloc's defaults (4
///   arenas a core, 32 KiB thread caches, freed pages kept 10 s) doubled the anonymous peak
///   against glibc's (11.4 against 5.2 MiB, `make heap-profile-cost`); these brought it to 6.5 MiB,
///   as the importer's one glibc arena does there (`limit_malloc_arenas`).
///
/// `MALLOC_CONF` at run time overrides any of it (`MALLOC_CONF=lg_prof_sample:16`).
#[cfg(feature = "heap-profile")]
#[unsafe(export_name = "malloc_conf")]
static MALLOC_CONF: JemallocConf = JemallocConf(
    c"prof:true,prof_active:true,lg_prof_sample:19,narenas:1,tcache_max:1024,dirty_decay_ms:1000,muzzy_decay_ms:0"
        .as_ptr(),
);

/// `malloc_conf` is a `const char *` to jemalloc.
#[cfg(feature = "heap-profile")]
#[repr(transparent)]
struct JemallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a C string literal, static and never written.
#[cfg(feature = "heap-profile")]
unsafe impl Sync for JemallocConf {}

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One glibc malloc arena unless MALLOC_ARENA_MAX says otherwise.
///
/// glibc gives each thread that allocates its own arena, and freed memory stays
/// in the arena it came from; under a multi-threaded runtime that inflates RSS
/// for nothing. Measured with the harness (scenarios/lichess-1500.yaml, 3
/// repeats): peak 17.7 -> 15.9 MiB for one import, 20.9 -> 18.0 MiB for three,
/// repeat spread 6-12 % -> under 4 %, games per second unchanged.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before any thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Lowers the calling thread's CPU priority (nice 10): import threads are batch work, and on a
/// machine whose cores they saturate the API's thread (nice 0) then gets a core at once instead
/// of a fair share's wait at every wake-up. Threads these start (SQLite connections an import
/// opens) inherit it. Best effort: a failure changes only latency.
fn yield_to_the_api() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread's own id (gettid) only changes its nice value.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid);
        if let Ok(tid) = libc::id_t::try_from(tid) {
            libc::setpriority(libc::PRIO_PROCESS, tid, IMPORT_NICE);
        }
    }
}

/// The nice value of import threads (see `yield_to_the_api`).
const IMPORT_NICE: i32 = 10;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let raw = RawConfig::parse();
    if raw.openapi {
        print!("{}", importer::http::openapi::pretty_json());
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_raw(raw) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
        )
        .with_target(false)
        // Colour codes only for a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    // Two runtimes: the imports on `WORKER_THREADS` threads, the API and the queue on one thread
    // of their own. On one runtime a request waited in the run queue behind every import's
    // parsing: with 256 imports on 2 cores, POST p99 was 28.7 s although its admission took
    // milliseconds (harness run scenarios/capacity-512.yaml).
    let imports = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads)
        .thread_name("import")
        .on_thread_start(yield_to_the_api)
        .enable_all()
        .build();
    let api = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let (imports, api) = match (imports, api) {
        (Ok(imports), Ok(api)) => (imports, api),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match api.block_on(serve(config, imports.handle().clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let said = causes(&e);
            tracing::error!("{said}");
            eprintln!("error: {said}");
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, joined by ": " as `{:#}` joins them, each cause only where its
/// words are not already said: an error whose message holds its source's (ours, and sqlx's
/// "error returned from database: …") would say it twice, or three times.
fn causes(e: &anyhow::Error) -> String {
    let mut said = String::new();
    for cause in e.chain() {
        let words = cause.to_string();
        if said.contains(&words) {
            continue;
        }
        if !said.is_empty() {
            said.push_str(": ");
        }
        said.push_str(&words);
    }
    said
}

/// Deletes the chess.com spool files a crash left in TMPDIR (only where `O_TMPFILE` is refused:
/// otherwise the kernel freed them with the process). A failure costs disk, not an import.
fn remove_spool_leftovers() {
    let dir = std::env::temp_dir();
    match importer::spool::remove_leftovers(&dir, importer::spool::LEFTOVER_AGE) {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, dir = %dir.display(), "removed spool files left by a crash"),
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot clean spool files left by a crash")
        }
    }
}

async fn serve(config: Config, imports: tokio::runtime::Handle) -> anyhow::Result<()> {
    let config = Arc::new(config);
    if let Some(path) = &config.http.listen_addr_file {
        // A parent polling the file must never read a previous run's address.
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing the previous {}", path.display()));
            }
            _ => {}
        }
    }
    let store = Store::connect(&config.store)
        .await
        .map_err(|e| with_pooler_hint(e, &config.store))
        .with_context(|| format!("opening {}", redact(&config.store.url)))?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    remove_spool_leftovers();
    let metrics = Arc::new(Metrics::default());
    let client = Client::new(config.upstream.clone(), Arc::clone(&metrics))?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let ctx = Arc::new(ImportContext {
        store: store.clone(),
        client,
        config: Arc::clone(&config),
        metrics: Arc::clone(&metrics),
        stopping,
    });
    let scheduler = Scheduler::new(ctx, stop, imports);
    scheduler
        .start()
        .await
        .map_err(|e| with_pooler_hint(e, &config.store))
        .context("taking back unfinished imports")?;
    let listener = tokio::net::TcpListener::bind(config.http.bind_addr)
        .await
        .with_context(|| format!("binding {}", config.http.bind_addr))?;
    let addr = listener.local_addr().context("reading the address listened on")?;
    if let Some(path) = &config.http.listen_addr_file {
        write_whole(path, &format!("{addr}\n")).with_context(|| format!("writing {}", path.display()))?;
    }
    tracing::info!(
        %addr,
        database = %redact(&config.store.url),
        db_connections = config.store.pool_size + config.store.queue_pool_size,
        transaction_pooler = config.store.transaction_pooler,
        max_concurrent_imports = config.queue.max_concurrent_imports,
        import_batch_size = config.import.batch_size,
        existing_games_page_size = config.import.existing_games_page_size,
        allocator = importer::ALLOCATOR,
        "listening"
    );
    let state = AppState {
        store: store.clone(),
        scheduler: Arc::clone(&scheduler),
        metrics,
        queue_capacity: config.queue.import_queue_capacity,
        api_token: config.http.api_token.as_deref().map(Arc::from),
        debug_endpoints: config.http.debug_endpoints(),
    };
    #[cfg(feature = "heap-profile")]
    importer::http::heap_profile::log_at_start(state.debug_endpoints);
    // On SIGTERM the server keeps answering (POST: 503) while running imports
    // commit their batch; then it stops. The whole must fit in 10 s.
    let drain = async move {
        shutdown_signal().await;
        scheduler.begin_shutdown().await;
        if !scheduler.wait_idle(Duration::from_secs(8)).await {
            tracing::warn!(
                "imports still running after 8 s; their last batch is lost, they resume at the next start"
            );
        }
    };
    importer::http::serve::serve(listener, app(state), drain)
        .await
        .context("serving HTTP")?;
    tracing::info!("stopped; unfinished imports resume at the next start");
    store.close().await;
    Ok(())
}

/// Writes `text` to `path` whole: to a file beside it first, then renamed, so that a reader
/// polling `path` never sees half of it.
fn write_whole(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// A refused prepared statement, without `DATABASE_POOLER=transaction`, with what that means.
fn with_pooler_hint(e: importer::store::StoreError, store: &StoreOptions) -> anyhow::Error {
    if e.is_prepared_statement_refused() && !store.transaction_pooler {
        anyhow::Error::new(e).context(
            "PostgreSQL refused a prepared statement this connection had made, which happens behind a pooler \
             in transaction mode (PgBouncer, Supavisor): set DATABASE_POOLER=transaction",
        )
    } else {
        e.into()
    }
}

/// Hides a password in a database URL before it is logged.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_already_said_is_not_said_again() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot connect to the database: {0}")]
        struct Outer(#[source] std::io::Error);
        let e = anyhow::Error::new(Outer(std::io::Error::other("connection refused"))).context("opening x");
        assert_eq!(
            super::causes(&e),
            "opening x: cannot connect to the database: connection refused"
        );
        let apart = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::causes(&apart), "outer: inner");
    }
}
