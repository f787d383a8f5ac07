//! The one error type of the HTTP API: every failure is JSON `{"error": "..."}`.
//!
//! 4xx messages say what was wrong with the request; 5xx causes are logged
//! and never sent to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// The body of every error answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong: for a 4xx the field at fault and what is expected; for a 5xx no cause.
    pub error: String,
}

/// A request that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is wrong; the message names the field.
    #[error("{0}")]
    BadRequest(String),
    /// The body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body is over the size limit.
    #[error("body: larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// No such resource.
    #[error("{0}")]
    NotFound(String),
    /// The request took longer than the limit, in seconds.
    #[error("request not complete within {0} s")]
    RequestTimeout(u64),
    /// `API_TOKEN` is set and the request did not carry it.
    #[error("{0}: send `Authorization: Bearer <API_TOKEN>`")]
    Unauthorized(&'static str),
    /// The queue is full; retry after the given seconds.
    #[error("import queue is full ({capacity} waiting); retry later")]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
        /// Seconds to suggest.
        retry_after_secs: u64,
    },
    /// The process is stopping.
    #[error("the importer is shutting down; retry on another instance or after the restart")]
    ShuttingDown,
    /// The database failed.
    #[error("internal error")]
    Store(#[from] StoreError),
    /// The request may not be served on this address; the message says why.
    #[cfg(feature = "heap-profile")]
    #[error("{0}")]
    Forbidden(&'static str),
    /// The heap profile could not be made; the cause is logged, not sent.
    #[cfg(feature = "heap-profile")]
    #[error("internal error")]
    HeapProfile(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(e) => {
                tracing::error!(error = %e, "request failed on the database");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            #[cfg(feature = "heap-profile")]
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            #[cfg(feature = "heap-profile")]
            ApiError::HeapProfile(cause) => {
                tracing::error!(error = %cause, "heap profile failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let body = ErrorBody {
            error: self.to_string(),
        };
        let mut resp = (status, Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized(_)) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::QueueFull { retry_after_secs, .. } = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        resp
    }
}
