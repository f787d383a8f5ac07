//! The one HTTP client every import shares: connection limits, provider
//! lanes, one cool-down per provider after a 429, the User-Agent, timeouts,
//! and the retry policy for 5xx and transport errors.
//!
//! A response is returned together with its permits (the global
//! `HTTP_MAX_CONNECTIONS` one and its provider's lane); they live as long as
//! the body is being read, so the limits count streams in flight, not just
//! requests.
//!
//! Why a cool-down shared by every import: lichess asks for a full minute of
//! silence after any 429 (its API docs), and its concurrency counter is kept
//! per address, so one import retrying on its own while the others keep
//! asking only prolongs the penalty for all of them.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, IF_MODIFIED_SINCE, IF_NONE_MATCH, RETRY_AFTER};
use reqwest::{Response, StatusCode, Url};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::UpstreamError;
use super::said::Said;
use crate::job::Platform;
use crate::metrics::Metrics;
use crate::sync::Validators;

/// The answer to a conditional request.
pub enum Fetched {
    /// The data, being read.
    Body(Streaming),
    /// `304 Not Modified`: what the validators came with is still current; no body.
    NotModified,
}

/// The default User-Agent: this software and its version, and its home page when the build names
/// one (`IMPORTER_HOME_URL=https://… cargo build`), as `chess-games-importer/0.1.0 (+URL)`. It
/// names no operator, so the importer warns at start until `UPSTREAM_USER_AGENT` gives a contact.
pub static USER_AGENT: LazyLock<String> = LazyLock::new(|| {
    let software = concat!("chess-games-importer/", env!("CARGO_PKG_VERSION"));
    match option_env!("IMPORTER_HOME_URL") {
        Some(home) if !home.trim().is_empty() => format!("{software} (+{})", home.trim()),
        _ => software.to_string(),
    }
});

/// Retries, in place, of a 5xx answer or a transport error while the provider is not known to be
/// in trouble: a blip. Past them, or at once while the provider is in trouble, the import waits
/// in the queue (the scheduler's deferral), its slot and lane free.
const MAX_TRANSIENT_RETRIES: u32 = 2;
/// The cool-down after a provider's first failure that an import gives up on; doubled with each
/// one in a row, up to [`OUTAGE_WAIT_CAP`].
const OUTAGE_FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest cool-down between tries during an outage: python-lichess waits a minute after a
/// 5xx (cyanfish/python-lichess#11), lichess's app polls its status on the same order.
const OUTAGE_WAIT_CAP: Duration = Duration::from_secs(60);
/// 429 answers tolerated in a row, each followed by a cool-down, before the import fails.
const MAX_RATE_LIMITED: u32 = 10;
/// Most bytes of an error body read to say what the provider said.
const ERROR_BODY_BYTES: usize = 8 * 1024;

/// First backoff after a transient failure (a retried request, a reopened stream); doubled each
/// time, with jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(500);

/// The providers and how the shared client reaches them: the configuration's `upstream` section.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// lichess base URL, without trailing slash.
    pub lichess_base_url: String,
    /// chess.com base URL, without trailing slash.
    pub chess_com_base_url: String,
    /// Requests (and streams) in flight, all imports together.
    pub max_connections: usize,
    /// lichess requests in flight (`LICHESS_MAX_STREAMS`).
    pub lichess_lanes: usize,
    /// chess.com requests in flight (`CHESSCOM_MAX_REQUESTS`).
    pub chess_com_lanes: usize,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// Cool-down after a 429 with no Retry-After.
    pub rate_limit_wait: Duration,
    /// Silence after which a stream is stalled.
    pub read_timeout: Duration,
    /// Bearer token for lichess.
    pub lichess_token: Option<String>,
    /// The User-Agent header; `None`: [`USER_AGENT`].
    pub user_agent: Option<String>,
}

impl ClientConfig {
    /// Lanes of `platform`: its requests in flight, hence its imports that may run at once.
    pub fn lanes(&self, platform: Platform) -> usize {
        match platform {
            Platform::Lichess => self.lichess_lanes,
            Platform::ChessCom => self.chess_com_lanes,
        }
    }
}

/// A response being read, holding its connection permit and its provider lane.
pub struct Streaming {
    /// The response.
    pub response: Response,
    _permit: OwnedSemaphorePermit,
    _lane: OwnedSemaphorePermit,
}

/// What the client keeps per provider.
struct Provider {
    /// `lichess` or `chess.com`, for its log lines.
    name: &'static str,
    lanes: Arc<Semaphore>,
    /// No request to this provider before this instant.
    cool_down_until: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Its bad day, as this process sees it.
    trouble: std::sync::Mutex<Trouble>,
}

/// A provider's failures that imports gave up on, in a row (none since its last good answer).
#[derive(Default)]
struct Trouble {
    in_a_row: u32,
    /// What it answered last, as it said it.
    last: Option<String>,
    /// When an import last gave up on it.
    at: Option<tokio::time::Instant>,
}

/// Quiet after which a provider's old failures no longer count: a failure after it starts a new
/// bad day at the first wait, not at the last one of a day long gone.
const TROUBLE_FORGOTTEN_AFTER: Duration = Duration::from_secs(300);

/// The cool-down after the `n`-th failure in a row (1-based): 1, 2, 4 … 60 s, with jitter, or the
/// provider's own `Retry-After` when longer.
fn outage_wait(n: u32, retry_after: Option<Duration>) -> Duration {
    let doubled = OUTAGE_FIRST_WAIT.saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(16)));
    jitter(doubled.min(OUTAGE_WAIT_CAP)).max(retry_after.unwrap_or_default())
}

impl Provider {
    fn new(platform: Platform, lanes: usize) -> Provider {
        Provider {
            name: platform.as_str(),
            lanes: Arc::new(Semaphore::new(lanes.max(1))),
            cool_down_until: std::sync::Mutex::new(None),
            trouble: std::sync::Mutex::new(Trouble::default()),
        }
    }

    fn trouble(&self) -> std::sync::MutexGuard<'_, Trouble> {
        self.trouble.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A good answer: the bad day is over.
    fn recovered(&self) {
        let mut trouble = self.trouble();
        if trouble.in_a_row > 0 {
            tracing::info!(
                provider = self.name,
                failures = trouble.in_a_row,
                "provider answers again"
            );
        }
        *trouble = Trouble::default();
    }

    /// An import gave up on a failure that said `last`: no request to the provider for a growing
    /// wait, so that one outage does not become every import hammering a restarting server.
    fn gave_up(&self, retry_after: Option<Duration>, last: String) -> Duration {
        let n = {
            let mut trouble = self.trouble();
            let now = tokio::time::Instant::now();
            if trouble.at.is_some_and(|at| now - at > TROUBLE_FORGOTTEN_AFTER) {
                trouble.in_a_row = 0;
            }
            trouble.at = Some(now);
            trouble.in_a_row += 1;
            trouble.last = Some(last);
            trouble.in_a_row
        };
        let wait = outage_wait(n, retry_after);
        self.cool_down(wait);
        wait
    }

    /// Whether imports gave up on it lately, with no good answer since.
    fn in_trouble(&self) -> bool {
        let trouble = self.trouble();
        trouble.in_a_row > 0
            && trouble
                .at
                .is_some_and(|at| at.elapsed() <= TROUBLE_FORGOTTEN_AFTER)
    }

    /// While it is in trouble and cools down: what it answered last.
    fn in_outage(&self) -> Option<String> {
        self.cooling_until()?;
        self.trouble().last.clone()
    }

    fn cooling_until(&self) -> Option<tokio::time::Instant> {
        let until = *self.cool_down_until.lock().unwrap_or_else(|e| e.into_inner());
        until.filter(|u| *u > tokio::time::Instant::now())
    }

    /// Extends the cool-down to `now + wait`: (the seconds added, 0 when one already lasts longer;
    /// whether this call began a new cool-down rather than extending one).
    fn cool_down(&self, wait: Duration) -> (f64, bool) {
        let now = tokio::time::Instant::now();
        let mut until = self.cool_down_until.lock().unwrap_or_else(|e| e.into_inner());
        let current = until.filter(|u| *u > now);
        let new_end = now + wait;
        match current {
            Some(end) if end >= new_end => (0.0, false),
            Some(end) => {
                *until = Some(new_end);
                ((new_end - end).as_secs_f64(), false)
            }
            None => {
                *until = Some(new_end);
                (wait.as_secs_f64(), true)
            }
        }
    }
}

/// The shared upstream client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    permits: Arc<Semaphore>,
    lichess: Arc<Provider>,
    chess_com: Arc<Provider>,
    cfg: Arc<ClientConfig>,
    metrics: Arc<Metrics>,
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

fn is_html(resp: &Response) -> bool {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("html"))
}

/// Reads at most [`ERROR_BODY_BYTES`] of an error response and says what it says.
async fn said(mut resp: Response) -> Said {
    let html = is_html(&resp);
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_BYTES {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(ERROR_BODY_BYTES);
    Said::of(&body, html)
}

impl Client {
    /// Builds the client.
    pub fn new(cfg: ClientConfig, metrics: Arc<Metrics>) -> Result<Client, UpstreamError> {
        let http = reqwest::Client::builder()
            .user_agent(cfg.user_agent.as_deref().unwrap_or(USER_AGENT.as_str()))
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
            lichess: Arc::new(Provider::new(Platform::Lichess, cfg.lichess_lanes)),
            chess_com: Arc::new(Provider::new(Platform::ChessCom, cfg.chess_com_lanes)),
            cfg: Arc::new(cfg),
            metrics,
        })
    }

    fn provider(&self, platform: Platform) -> &Arc<Provider> {
        match platform {
            Platform::Lichess => &self.lichess,
            Platform::ChessCom => &self.chess_com,
        }
    }

    /// Whether no request may go to `platform` now (a cool-down after a 429 or during an outage):
    /// the scheduler claims none of its imports meanwhile.
    pub fn cooling(&self, platform: Platform) -> bool {
        self.provider(platform).cooling_until().is_some()
    }

    /// How long `platform` still cools down; zero when it does not.
    pub fn cooling_for(&self, platform: Platform) -> Duration {
        self.provider(platform)
            .cooling_until()
            .map_or(Duration::ZERO, |until| until - tokio::time::Instant::now())
    }

    /// An import gives up on `failure` from `platform` (a request that kept failing, a broken
    /// stream that made no progress): the provider cools down, for its `Retry-After` when it sent
    /// a longer one, and the wait is logged once, whichever path gave up.
    pub fn gave_up(&self, platform: Platform, failure: &UpstreamError) -> Duration {
        let retry_after = match failure {
            UpstreamError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        };
        let wait = self.provider(platform).gave_up(retry_after, failure.to_string());
        tracing::warn!(provider = platform.as_str(), error = %failure, wait_secs = wait.as_secs_f64(),
            "provider in trouble: no request to it until the wait ends; its imports wait in the queue");
        wait
    }

    /// Waits while `platform` cools down after a 429.
    async fn wait_cool_down(&self, platform: Platform) {
        while let Some(until) = self.provider(platform).cooling_until() {
            tokio::time::sleep_until(until).await;
        }
    }

    /// GETs `url` from `platform`: waits for its cool-down and a lane, retries 5xx and transport
    /// errors; a 404 with an empty body is `NotFound`, any other refusal says what the provider said.
    pub async fn get(&self, url: &Url, accept: &str, platform: Platform) -> Result<Streaming, UpstreamError> {
        match self.fetch(url, accept, platform, None).await? {
            Fetched::Body(body) => Ok(body),
            Fetched::NotModified => Err(UpstreamError::BadResponse(format!(
                "{} answered 304 Not Modified to an unconditional request for {url}",
                platform.as_str()
            ))),
        }
    }

    /// [`Client::get`], conditionally when `validators` are given (`If-None-Match`,
    /// `If-Modified-Since`): a `304 Not Modified` is [`Fetched::NotModified`].
    pub async fn fetch(
        &self,
        url: &Url,
        accept: &str,
        platform: Platform,
        validators: Option<&Validators>,
    ) -> Result<Fetched, UpstreamError> {
        let provider = platform.as_str();
        let mut transient = 0;
        let mut limited = 0;
        loop {
            // During an outage the import waits in the queue, not here holding its slot.
            if let Some(last) = self.provider(platform).in_outage() {
                return Err(UpstreamError::Waiting { provider, last });
            }
            self.wait_cool_down(platform).await;
            let lane = Arc::clone(&self.provider(platform).lanes)
                .acquire_owned()
                .await
                .map_err(|_| UpstreamError::ShuttingDown)?;
            let permit = Arc::clone(&self.permits)
                .acquire_owned()
                .await
                .map_err(|_| UpstreamError::ShuttingDown)?;
            // Another import's 429 may have arrived while this one waited for its permits.
            if self.provider(platform).cooling_until().is_some() {
                continue;
            }
            let req = self.request(url, accept, platform, validators);
            let failure = match req.send().await {
                Ok(resp) => match resp.status() {
                    // An HTML page where PGN or JSON was asked for is an error page (a proxy's, a
                    // maintenance page), whatever its status.
                    s if s.is_success() && is_html(&resp) && !accept.contains("html") => {
                        UpstreamError::Unavailable {
                            provider,
                            status: s.as_u16(),
                            retry_after: retry_after(&resp),
                            said: said(resp).await,
                        }
                    }
                    s if s.is_success() => {
                        self.provider(platform).recovered();
                        return Ok(Fetched::Body(Streaming {
                            response: resp,
                            _permit: permit,
                            _lane: lane,
                        }));
                    }
                    StatusCode::NOT_MODIFIED if validators.is_some() => {
                        self.provider(platform).recovered();
                        self.metrics.not_modified(platform);
                        return Ok(Fetched::NotModified);
                    }
                    StatusCode::TOO_MANY_REQUESTS => {
                        drop((permit, lane));
                        limited += 1;
                        self.cool_down_after_429(platform, url, resp, limited).await?;
                        continue;
                    }
                    s if s.is_server_error() => UpstreamError::Unavailable {
                        provider,
                        status: s.as_u16(),
                        retry_after: retry_after(&resp),
                        said: said(resp).await,
                    },
                    s => {
                        let said = said(resp).await;
                        return Err(if s == StatusCode::NOT_FOUND && said.is_empty() {
                            UpstreamError::NotFound
                        } else {
                            UpstreamError::Refused {
                                provider,
                                status: s.as_u16(),
                                said,
                            }
                        });
                    }
                },
                Err(e) => UpstreamError::Transport(e),
            };
            drop((permit, lane));
            transient += 1;
            // A provider already in trouble gets no retry here: the import waits in the queue.
            let in_trouble = self.provider(platform).in_trouble();
            if transient > MAX_TRANSIENT_RETRIES || in_trouble {
                self.gave_up(platform, &failure);
                return Err(failure);
            }
            let wait = jitter(BACKOFF_BASE * 2u32.pow(transient - 1));
            tracing::warn!(provider, %url, error = %failure, attempt = transient, wait_ms = wait.as_millis() as u64, "upstream failed, retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// The GET for `url`: the `Accept` asked for, lichess's token, and the validators of a
    /// conditional request.
    fn request(
        &self,
        url: &Url,
        accept: &str,
        platform: Platform,
        validators: Option<&Validators>,
    ) -> reqwest::RequestBuilder {
        let mut req = self.http.get(url.clone()).header(ACCEPT, accept);
        if platform == Platform::Lichess
            && let Some(token) = &self.cfg.lichess_token
        {
            req = req.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(v) = validators {
            if let Some(etag) = &v.etag {
                req = req.header(IF_NONE_MATCH, etag);
            }
            if let Some(at) = &v.last_modified {
                req = req.header(IF_MODIFIED_SINCE, at);
            }
        }
        req
    }

    /// A 429 (the `limited`-th for this request): no request goes to the provider until its
    /// `Retry-After` (or the configured wait) has passed; past [`MAX_RATE_LIMITED`], the error.
    async fn cool_down_after_429(
        &self,
        platform: Platform,
        url: &Url,
        resp: reqwest::Response,
        limited: u32,
    ) -> Result<(), UpstreamError> {
        let provider = platform.as_str();
        let wait = retry_after(&resp).unwrap_or(self.cfg.rate_limit_wait);
        // Read for the log only: a 429's body is never taken for games.
        let said = said(resp).await;
        let (added, started) = self.provider(platform).cool_down(wait);
        // Counted once the cool-down holds: a reader of the counter can rely on it.
        self.metrics.rate_limited(platform);
        self.metrics.cooled_down(platform, added);
        if started {
            tracing::warn!(provider, %url, wait_secs = wait.as_secs_f64(), said = %said,
                "rate limited (429): no request to this provider until the cool-down ends");
        }
        if limited > MAX_RATE_LIMITED {
            return Err(UpstreamError::RateLimited {
                provider,
                times: limited,
                said,
            });
        }
        Ok(())
    }

    /// How long to back off before reopening a broken stream.
    pub fn backoff(&self, attempt: u32) -> Duration {
        jitter(BACKOFF_BASE * 2u32.pow(attempt.min(6)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_failure_in_a_row_doubles_the_wait_until_a_good_answer() {
        let p = Provider::new(Platform::Lichess, 1);
        for (n, base) in [1u64, 2, 4, 8, 16, 32, 60, 60].into_iter().enumerate() {
            let wait = p.gave_up(None, "lichess answered 502".into());
            let base = Duration::from_secs(base);
            assert!(
                wait >= base && wait < base.mul_f64(1.5),
                "failure {}: {wait:?}",
                n + 1
            );
        }
        assert!(p.in_trouble());
        assert_eq!(p.in_outage().as_deref(), Some("lichess answered 502"));
        p.recovered();
        assert!(!p.in_trouble());
        // The first failure of a new bad day waits the first wait, or the provider's Retry-After.
        assert!(p.gave_up(None, "again".into()) < Duration::from_millis(1500));
        assert!(p.gave_up(Some(Duration::from_secs(120)), "later".into()) >= Duration::from_secs(120));
    }

    #[tokio::test]
    async fn a_cool_down_is_extended_never_shortened() {
        let p = Provider::new(Platform::Lichess, 1);
        assert!(p.cooling_until().is_none());
        assert_eq!(p.cool_down(Duration::from_millis(300)), (0.3, true));
        assert!(p.cooling_until().is_some());
        // A shorter wait asked meanwhile changes nothing.
        assert_eq!(p.cool_down(Duration::from_millis(50)), (0.0, false));
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A longer one extends it by the difference only.
        let (added, started) = p.cool_down(Duration::from_millis(300));
        assert!(!started);
        assert!((0.05..0.2).contains(&added), "{added}");
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(p.cooling_until().is_none());
    }

    #[test]
    fn the_default_user_agent_names_the_software_and_no_invented_home() {
        let ua = USER_AGENT.as_str();
        assert!(ua.starts_with(concat!("chess-games-importer/", env!("CARGO_PKG_VERSION"))));
        match option_env!("IMPORTER_HOME_URL") {
            Some(home) if !home.trim().is_empty() => {
                assert!(ua.ends_with(&format!("(+{})", home.trim())), "{ua}")
            }
            _ => assert!(!ua.contains("http"), "no URL the build was not given: {ua}"),
        }
    }
}
