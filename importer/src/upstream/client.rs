//! The one HTTP client every import shares: connection limits, User-Agent,
//! timeouts, and the retry policy for 429, 5xx and transport errors.
//!
//! A response is returned together with its permit from the global
//! `HTTP_MAX_CONNECTIONS` semaphore; the permit lives as long as the body is
//! being read, so the limit counts streams in flight, not just requests.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Response, StatusCode, Url};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::UpstreamError;

/// Identifies us to the providers, as chess.com asks.
pub const USER_AGENT: &str = concat!(
    "chess-games-importer/",
    env!("CARGO_PKG_VERSION"),
    " (+https://example.invalid/chess-importer; ops@example.invalid)"
);

/// Retries of a 5xx answer or a transport error before the import fails.
const MAX_TRANSIENT_RETRIES: u32 = 4;
/// 429 answers tolerated in a row before the import fails.
const MAX_RATE_LIMITED: u32 = 10;

/// Settings of the shared client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Requests (and streams) in flight, all imports together.
    pub max_connections: usize,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// Wait after a 429 with no Retry-After.
    pub rate_limit_wait: Duration,
    /// First backoff after a transient failure; doubled each time, with jitter.
    pub backoff_base: Duration,
    /// Silence after which a stream is stalled.
    pub read_timeout: Duration,
    /// Bearer token for lichess.
    pub lichess_token: Option<String>,
}

/// A response being read, holding its connection permit.
pub struct Streaming {
    /// The response.
    pub response: Response,
    _permit: OwnedSemaphorePermit,
}

/// The shared upstream client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    permits: Arc<Semaphore>,
    cfg: Arc<ClientConfig>,
}

fn jitter(base: Duration) -> Duration {
    // Cheap jitter without a random-number crate: the clock's nanoseconds.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base + base.mul_f64(f64::from(nanos % 1000) / 2000.0)
}

fn retry_after(resp: &Response) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

impl Client {
    /// Builds the client.
    pub fn new(cfg: ClientConfig) -> Result<Client, UpstreamError> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            // A stream that sends nothing for this long is stalled, not slow.
            .read_timeout(cfg.read_timeout)
            .build()
            .map_err(UpstreamError::Client)?;
        Ok(Client {
            http,
            permits: Arc::new(Semaphore::new(cfg.max_connections)),
            cfg: Arc::new(cfg),
        })
    }

    /// GETs `url`, retrying what is worth retrying; 404 and 410 come back as errors of their own.
    pub async fn get(&self, url: &Url, accept: &str, lichess: bool) -> Result<Streaming, UpstreamError> {
        let mut transient = 0;
        let mut limited = 0;
        loop {
            let permit = Arc::clone(&self.permits)
                .acquire_owned()
                .await
                .map_err(|_| UpstreamError::ShuttingDown)?;
            let mut req = self.http.get(url.clone()).header(ACCEPT, accept);
            if lichess && let Some(token) = &self.cfg.lichess_token {
                req = req.header(AUTHORIZATION, format!("Bearer {token}"));
            }
            let failure = match req.send().await {
                Ok(resp) => match resp.status() {
                    s if s.is_success() => {
                        return Ok(Streaming {
                            response: resp,
                            _permit: permit,
                        });
                    }
                    StatusCode::NOT_FOUND => return Err(UpstreamError::NotFound),
                    StatusCode::GONE => return Err(UpstreamError::Gone),
                    StatusCode::TOO_MANY_REQUESTS => {
                        drop(permit);
                        limited += 1;
                        if limited > MAX_RATE_LIMITED {
                            return Err(UpstreamError::RateLimited { url: url.to_string() });
                        }
                        let wait = retry_after(&resp).unwrap_or(self.cfg.rate_limit_wait);
                        tracing::warn!(%url, wait_secs = wait.as_secs_f64(), "upstream rate limit, waiting");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    s if s.is_server_error() => UpstreamError::Status {
                        status: s.as_u16(),
                        url: url.to_string(),
                    },
                    s => {
                        return Err(UpstreamError::Status {
                            status: s.as_u16(),
                            url: url.to_string(),
                        });
                    }
                },
                Err(e) => UpstreamError::Transport(e),
            };
            drop(permit);
            transient += 1;
            if transient > MAX_TRANSIENT_RETRIES {
                return Err(failure);
            }
            let wait = jitter(self.cfg.backoff_base * 2u32.pow(transient - 1));
            tracing::warn!(%url, error = %failure, attempt = transient, wait_ms = wait.as_millis() as u64, "upstream failed, retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// How long to back off before reopening a broken stream.
    pub fn backoff(&self, attempt: u32) -> Duration {
        jitter(self.cfg.backoff_base * 2u32.pow(attempt.min(6)))
    }
}
