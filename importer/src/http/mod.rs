//! The HTTP API: imports, health and metrics (and, built with `heap-profile`, the live heap).
//!
//! `app(state)` builds the whole router; `serve` runs it on the listener. The tests drive it
//! through the real binary (`tests/it/`).

mod error;
#[cfg(feature = "heap-profile")]
pub mod heap_profile;
mod imports;
pub mod openapi;
pub mod serve;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use subtle::ConstantTimeEq;

pub use error::{ApiError, ErrorBody};

use crate::metrics::Metrics;
use crate::scheduler::Scheduler;
use crate::store::Store;

/// Largest request body accepted; an import request is a few dozen bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Slots and queue.
    pub scheduler: Arc<Scheduler>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Queue capacity, for the 429 message.
    pub queue_capacity: usize,
    /// The token every request but `/healthz` must carry; `None`: none needed.
    pub api_token: Option<Arc<str>>,
    /// Whether `/debug/` endpoints may answer: a token guards them, or the address is loopback
    /// (`HttpConfig::debug_endpoints`). `ALLOW_UNAUTHENTICATED` opens the API, never these.
    pub debug_endpoints: bool,
}

/// The router of the whole API.
pub fn app(state: AppState) -> Router {
    let guarded = Router::new()
        .route("/api/v1/import-more-games", post(imports::create))
        .route("/api/v1/imports/{import_id}", get(imports::show))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi::serve));
    // Among the guarded routes, so that the token layer below covers it as every other.
    #[cfg(feature = "heap-profile")]
    let guarded = guarded.route("/debug/pprof/heap", get(heap_profile::heap));
    let guarded = guarded.route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(guarded)
        // Open: a platform's health check carries no token, and it says nothing but up or down.
        .route("/healthz", get(healthz))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(timeout))
        .layer(middleware::from_fn_with_state(state.clone(), record_duration))
        .with_state(state)
}

/// Records each request's time to its response head in `importer_http_request_duration_seconds`,
/// under the route's template (a request that matched no route: `unmatched`).
async fn record_duration(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    state.metrics.request_served(
        method.as_str(),
        &route,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// Answers 408 to a request that takes longer than `serve::REQUEST_TIMEOUT` (a slow body, say).
async fn timeout(req: Request, next: Next) -> Response {
    match tokio::time::timeout(serve::REQUEST_TIMEOUT, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::RequestTimeout(serve::REQUEST_TIMEOUT.as_secs()).into_response(),
    }
}

/// Lets a request through only with `Authorization: Bearer <API_TOKEN>`, when a token is set.
/// Compared in constant time, so that the answer's timing tells nothing of the token.
async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.api_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(token.as_bytes())));
        if !ok {
            let why = if given.is_some() {
                "wrong token in the Authorization header"
            } else {
                "missing Authorization header"
            };
            return ApiError::Unauthorized(why).into_response();
        }
    }
    next.run(req).await
}

/// `/healthz`'s body.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, `shutting down` or `database unavailable`.
    pub status: &'static str,
}

/// Whether this process takes imports: the database answers and it is not stopping.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses(
    (status = 200, description = "Up: the database answers", body = Health),
    (status = 503, description = "Stopping, or the database does not answer", body = Health),
))]
pub(crate) async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    if state.scheduler.is_stopping() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "shutting down",
            }),
        );
    }
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(Health { status: "ok" })),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "database unavailable",
                }),
            )
        }
    }
}

/// Counters, gauges and the request-duration histogram in the OpenMetrics text format.
///
/// Among them, what users were given, per provider, observed when each import ends:
/// `importer_import_wait_seconds` (request to start) and `importer_import_run_seconds` (start to
/// end) histograms, and `importer_import_games_total{provider,outcome}` (`imported`,
/// `skipped_existing`, `failed_parse`).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "OpenMetrics 1.0 text exposition, as Prometheus scrapes it: imports active and queued, \
games imported, 429s and cool-down per provider, imports put back to wait for their provider (`importer_provider_waits_total`) \
and waiting for it now (`importer_imports_waiting_for_provider`), resident memory, request durations per route and status, and per provider \
the import wait (`importer_import_wait_seconds`) and run (`importer_import_run_seconds`) histograms and \
`importer_import_games_total{provider,outcome}`", body = String, content_type = "application/openmetrics-text"),
    (status = 401, description = "`API_TOKEN` is set and the request did not carry it", body = ErrorBody),
    (status = 500, description = "The database failed; the cause is logged, not sent", body = ErrorBody),
))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let load = state.scheduler.load().await?;
    Ok((
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(&load),
    ))
}
