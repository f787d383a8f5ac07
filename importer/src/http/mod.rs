//! The HTTP API: imports, health and metrics.
//!
//! `app(state)` builds the whole router, so tests can drive it without a socket.

mod error;
mod imports;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

pub use error::ApiError;

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
}

/// The router of the whole API.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/import-more-games", post(imports::create))
        .route("/api/v1/imports/{import_id}", get(imports::show))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    if state.scheduler.is_stopping().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting down"})),
        );
    }
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok"}))),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "database unavailable"})),
            )
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let (active, queued) = state.scheduler.load().await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(active, queued),
    ))
}
