//! `GET /debug/pprof/heap` (feature `heap-profile`): the live heap as jemalloc's sampling profiler
//! sees it, in pprof's format (gzipped protobuf, `inuse_space` in bytes), which `pprof`, `go tool
//! pprof` and Grafana Pyroscope read; the address Go services serve theirs at.
//!
//! Served only where the API token guards it, or on a loopback address: a heap profile names the
//! code's functions and how much each holds, which is nobody else's business
//! (`AppState::debug_endpoints`). Making one takes jemalloc's dump and symbolizes every sampled
//! stack in the process, tens of milliseconds and more the first time (the symbol table is read
//! then): it runs on the blocking pool, never on the API's one thread.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::{ApiError, AppState, ErrorBody};

/// Why a profile is refused on this address (403).
const NOT_ON_A_PUBLIC_BIND: &str =
    "the heap profile is served only with API_TOKEN set, or on a loopback BIND_ADDR";

/// The live heap, sampled by jemalloc.
#[utoipa::path(get, path = "/debug/pprof/heap", tag = "operations", responses(
    (status = 200, description = "The live heap as jemalloc's sampling profiler sees it: a pprof profile \
(gzipped protobuf; sample type `inuse_space`, bytes), symbolized. Read it with `pprof -top` or `go tool pprof`, \
or send it to Grafana Pyroscope. Only in a build with the `heap-profile` feature", body = Vec<u8>, content_type = "application/octet-stream"),
    (status = 401, description = "`API_TOKEN` is set and the request did not carry it", body = ErrorBody),
    (status = 403, description = "No `API_TOKEN` and a non-loopback `BIND_ADDR` (`ALLOW_UNAUTHENTICATED=true`): \
the profile is never served unguarded on a public address", body = ErrorBody),
    (status = 500, description = "jemalloc could not dump or the dump could not be read; the cause is logged, not sent", body = ErrorBody),
))]
pub(crate) async fn heap(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    if !state.debug_endpoints {
        return Err(ApiError::Forbidden(NOT_ON_A_PUBLIC_BIND));
    }
    let started = std::time::Instant::now();
    let pprof = tokio::task::spawn_blocking(dump)
        .await
        .map_err(|e| ApiError::HeapProfile(format!("the dump's task ended: {e}")))??;
    tracing::info!(
        bytes = pprof.len(),
        millis = started.elapsed().as_millis() as u64,
        "heap profile served"
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            // As Go's net/http/pprof answers: a file to save, not a page to show.
            (header::CONTENT_DISPOSITION, "attachment; filename=\"heap.pb.gz\""),
        ],
        pprof,
    ))
}

/// jemalloc's current profile as pprof bytes. Blocking: a dump to a temporary file, then reading
/// and symbolizing it.
fn dump() -> Result<Vec<u8>, ApiError> {
    let ctl = jemalloc_pprof::PROF_CTL
        .as_ref()
        // `prof:false` in MALLOC_CONF at run time turns the profiler off for the whole process.
        .ok_or_else(|| {
            ApiError::HeapProfile("jemalloc profiling is off (opt.prof false: MALLOC_CONF?)".into())
        })?;
    let mut ctl = ctl.blocking_lock();
    if !ctl.activated() {
        return Err(ApiError::HeapProfile(
            "jemalloc profiling is not active (prof_active false: MALLOC_CONF?)".into(),
        ));
    }
    ctl.dump_pprof()
        .map_err(|e| ApiError::HeapProfile(format!("{e:#}")))
}

/// Says at start whether the profile is served, and at which sampling rate, so that an operator
/// reading the log knows what a profile will show.
pub fn log_at_start(debug_endpoints: bool) {
    let lg_sample = jemalloc_pprof::PROF_CTL
        .as_ref()
        .and_then(|ctl| ctl.try_lock().ok().map(|c| c.lg_sample()));
    match (debug_endpoints, lg_sample) {
        (true, Some(lg)) => tracing::info!(
            sample_every_bytes = 1u64 << lg.min(63),
            "heap profile served at /debug/pprof/heap"
        ),
        (true, None) => tracing::warn!(
            "built with heap-profile but jemalloc profiling is off (MALLOC_CONF prof:false?): \
             /debug/pprof/heap answers 500"
        ),
        (false, _) => tracing::warn!(
            "built with heap-profile, not served: no API_TOKEN on a non-loopback BIND_ADDR; /debug/pprof/heap answers 403"
        ),
    }
}
