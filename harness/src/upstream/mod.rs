//! Mock lichess and chess.com, faithful to `docs/providers.md`, rules included.
//!
//! Each provider is one small server (`serve.rs`) that first applies the
//! provider's rules (`policy.rs`: streams in flight, the penalty after a 429,
//! the User-Agent), then routes by path in `lichess::answer` or
//! `chess_com::answer`, so that query parameters (`max`, `since`, `until`,
//! `sort`), the `Accept` header and per-user faults behave as the real API
//! does. The servers keep counts of what they served, never the requests, but for the
//! times of the requests an outage answered (`outage.rs`: did the client wait?).

mod chess_com;
pub mod games;
mod lichess;
pub mod outage;
pub mod policy;
mod serve;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use outage::{Outage, OutageBody, OutageRecord};
pub use policy::{Policy, Rules, Served};

pub use settings::Platform;

/// One user the mocks know.
#[derive(Debug, Clone, PartialEq)]
pub struct MockUser {
    /// Username as displayed (the URLs use it lowercased).
    pub name: String,
    /// The provider.
    pub platform: Platform,
    /// How many games the user has.
    pub games: u64,
    /// Over how many monthly archives the games spread (chess.com; lichess ignores it).
    pub months: u32,
    /// Indices (0 = newest) of games served broken.
    pub malformed: Vec<u64>,
    /// Statuses answered to this user's first requests, in order (e.g. 429, 503), before serving normally.
    pub faults: Vec<u16>,
    /// lichess: the first stream breaks after this many games, in the middle of the next one.
    pub cut_after: Option<u64>,
    /// lichess: the first stream stops sending, without closing, after this many games.
    pub stall_after: Option<u64>,
    /// lichess: every stream breaks after this many games, in the middle of the next one, as
    /// lichess's did for days in November 2022 ("the stream always breaks after 101", lila#11926).
    /// A stream of fewer games ends whole. With `cut_after` or `stall_after`, the first stream
    /// misbehaves as they say, the later ones as this says.
    pub cut_every: Option<u64>,
    /// chess.com: months served short for their first requests, then whole under new validators.
    pub short_months: Option<ShortMonths>,
    /// chess.com: serve each month PGN oldest game first (chess.com documents no order).
    pub oldest_first: bool,
    /// The newest this many games are not played yet: the user as an earlier import saw them.
    pub unplayed: u64,
    /// Indices of games still being played: lichess exports them only to `ongoing=true`, with
    /// Result `*` and Termination `Unterminated`; chess.com publishes only finished games.
    pub ongoing: Vec<u64>,
}

impl MockUser {
    /// A user with `games` games, one month, no faults.
    pub fn new(name: &str, platform: Platform, games: u64) -> MockUser {
        MockUser {
            name: name.to_string(),
            platform,
            games,
            months: 1,
            malformed: Vec::new(),
            faults: Vec::new(),
            cut_after: None,
            stall_after: None,
            cut_every: None,
            short_months: None,
            oldest_first: false,
            unplayed: 0,
            ongoing: Vec::new(),
        }
    }

    /// Whether game `index` exists now: played, or being played.
    pub fn exists(&self, index: u64) -> bool {
        index >= self.unplayed && index < self.games
    }

    /// Whether game `index` is finished (and so exported by default).
    pub fn finished(&self, index: u64) -> bool {
        self.exists(index) && !self.ongoing.contains(&index)
    }

    /// The name as shown in PGN.
    pub fn display_name(&self) -> String {
        self.name.clone()
    }

    /// The id the importer stores the user under.
    pub fn key(&self) -> String {
        self.name.to_ascii_lowercase()
    }

    /// Ids of the games that are finished and well formed, newest first.
    pub fn valid_ids(&self) -> impl Iterator<Item = (u64, String)> + '_ {
        (0..self.games)
            .filter(|&i| self.finished(i) && !self.malformed.contains(&i))
            .map(|i| (i, games::stored_key(self, i)))
    }

    /// Indices of the newest `count` games an import of the user as they are now stores, newest
    /// first: finished, well formed, and not left out of a short month's answer.
    pub fn newest_importable(&self, count: u64) -> Vec<u64> {
        (self.unplayed..self.games)
            .filter(|&i| self.finished(i) && !self.malformed.contains(&i) && !self.left_out_when_short(i))
            .take(usize::try_from(count).unwrap_or(usize::MAX))
            .collect()
    }

    /// Games an import of `count` games would have stored but for the months served short: the
    /// games left out that are newer than the oldest it stores.
    pub fn left_out_of(&self, count: u64) -> Vec<u64> {
        let Some(&oldest) = self.newest_importable(count).last() else {
            return Vec::new();
        };
        (self.unplayed..oldest)
            .filter(|&i| self.finished(i) && !self.malformed.contains(&i) && self.left_out_when_short(i))
            .collect()
    }

    /// Whether game `index` is left out of a short answer of its month (`short_months`): one of
    /// the month's newest `missing` finished games, in a month that is served short at all.
    pub fn left_out_when_short(&self, index: u64) -> bool {
        let Some(short) = self.short_months.as_ref().filter(|s| s.requests > 0) else {
            return false;
        };
        let month = games::month_of(self, index);
        short.covers(month)
            && games::indices_of_month(self, month)
                .filter(|&i| self.finished(i))
                .take(usize::try_from(short.missing).unwrap_or(usize::MAX))
                .any(|i| i == index)
    }
}

/// chess.com months served short: each month's first `requests` requests (conditional ones
/// included) get the month without its newest `missing` finished games, as a cache that lags
/// serves it (chess.com's published data is refreshed at most every 12 hours; a chess-insights
/// user got 4,068 of 4,508 games one day and all of them the next, NotJoeMartinez/chess-insights#60).
/// The short answer's `ETag` and `Last-Modified` are those of what it holds, so they differ from
/// the whole month's: a later `If-None-Match` with the short `ETag` gets `200` and the whole month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShortMonths {
    /// Requests of each month answered short, counted per month from the mock's start.
    pub requests: u32,
    /// Games a short answer leaves out: the month's newest.
    pub missing: u64,
    /// Which months (months back, 0 = the newest) are served short; empty: every month.
    #[serde(default)]
    pub months: Vec<u32>,
}

impl ShortMonths {
    /// Whether month `months_back` is one served short.
    pub fn covers(&self, months_back: u32) -> bool {
        self.months.is_empty() || self.months.contains(&months_back)
    }
}

/// What one chess.com month of one user was served (its archive's JSON and PGN together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthServed {
    /// Requests for it.
    pub requests: u64,
    /// Of those, answered short (`short_months`).
    pub short: u64,
    /// Of those, answered `304 Not Modified`.
    pub not_modified: u64,
    /// Bytes of body sent for it.
    pub bytes: u64,
}

/// Per-user state of a responder: the faults still to serve.
struct UserState {
    user: MockUser,
    requests: AtomicUsize,
    streams: AtomicUsize,
    /// Each game's PGN, generated once at start (`Options::prerender`), so serving costs no generation.
    pgn: Option<Arc<Vec<String>>>,
    /// Games sent to this user's requests so far.
    games_served: Arc<AtomicU64>,
    /// chess.com: per month (months back), what was served.
    months: Mutex<BTreeMap<u32, MonthServed>>,
}

/// A response with no games: a status and maybe a small body.
#[derive(Debug, Clone)]
pub(crate) struct Plain {
    pub status: u16,
    pub body: Option<(&'static str, &'static str)>,
}

impl Plain {
    fn status(status: u16) -> Plain {
        Plain { status, body: None }
    }
}

/// What a provider answers to a request, before it is delivered.
enum Answer {
    /// A bare status (404, 405, or an injected fault), maybe with a small body.
    Status(Plain),
    /// A whole body (chess.com's JSON and month PGN).
    Whole {
        /// HTTP status.
        status: u16,
        /// Content type.
        mime: &'static str,
        /// The body.
        body: String,
        /// Games in it.
        games: u64,
        /// `ETag` and `Last-Modified`, as chess.com sends with every answer.
        validators: Option<(String, String)>,
        /// A chess.com month served short (`short_months`).
        short: bool,
    },
    /// `304 Not Modified`, no body: the request's validators match.
    NotModified {
        /// `ETag` and `Last-Modified` of the unchanged data.
        validators: (String, String),
    },
    /// lichess games to stream, in this order, in this format.
    Games(lichess::Selection),
}

impl UserState {
    /// Counts a request for month `back`; how many came before it.
    fn month_request(&self, back: u32) -> u64 {
        let mut months = self.months.lock().unwrap_or_else(|e| e.into_inner());
        let m = months.entry(back).or_default();
        m.requests += 1;
        m.requests - 1
    }

    /// Records how month `back`'s request was answered: short or not, 304, its body's bytes.
    fn month_answered(&self, back: u32, short: bool, not_modified: bool, bytes: u64) {
        let mut months = self.months.lock().unwrap_or_else(|e| e.into_inner());
        let m = months.entry(back).or_default();
        m.short += u64::from(short);
        m.not_modified += u64::from(not_modified);
        m.bytes += bytes;
    }

    /// A fault to answer with now, if any remain.
    fn fault(&self) -> Option<Plain> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let status = *self.user.faults.get(n)?;
        let mut resp = Plain::status(status);
        resp.body = match (self.user.platform, status) {
            // lichess sends no Retry-After; this body is what it says.
            (Platform::Lichess, 429) => Some((policy::LICHESS_429_BODY, "application/json")),
            // chess.com answers its errors with a JSON object; a 404 for an existing account says this.
            (Platform::ChessCom, 404 | 500..=599) => {
                Some((policy::CHESS_COM_INTERNAL_ERROR, "application/json"))
            }
            // lichess's closed account, and the rest: an empty body.
            _ => None,
        };
        Some(resp)
    }
}

type Users = Arc<HashMap<String, UserState>>;

fn users_of(users: &[MockUser], platform: Platform, prerender: Option<u64>) -> Users {
    Arc::new(
        users
            .iter()
            .filter(|u| u.platform == platform)
            .map(|u| {
                (
                    u.key(),
                    UserState {
                        user: u.clone(),
                        requests: AtomicUsize::new(0),
                        streams: AtomicUsize::new(0),
                        pgn: prerender.map(|seed| {
                            Arc::new((0..u.games).map(|i| games::generate(u, seed, i).pgn).collect())
                        }),
                        games_served: Arc::new(AtomicU64::new(0)),
                        months: Mutex::new(BTreeMap::new()),
                    },
                )
            })
            .collect(),
    )
}

/// How the mocks are started.
#[derive(Debug, Default)]
pub struct Options {
    /// Seed of the synthetic games.
    pub seed: u64,
    /// lichess games per second per stream; 0 is unpaced.
    pub lichess_games_per_sec: f64,
    /// lichess games per second per stream to a request with a bearer token; 0: as without.
    pub lichess_authenticated_games_per_sec: f64,
    /// chess.com: time before each answer, a model of its response time (0: none).
    pub chess_com_latency: std::time::Duration,
    /// Generate every lichess game once at start, so that serving measures the importer, not the generator.
    pub prerender: bool,
    /// The providers' rules, or `Policy::Off`.
    pub policy: Policy,
    /// Serve lichess on this listener instead of a free port.
    pub lichess_listener: Option<std::net::TcpListener>,
    /// Serve chess.com on this listener instead of a free port.
    pub chess_com_listener: Option<std::net::TcpListener>,
}

struct Server {
    base: String,
    task: tokio::task::JoinHandle<()>,
    enforcer: Arc<policy::Enforcer>,
    outages: Arc<outage::Outages>,
    users: Users,
}

/// Both mock providers, running; they stop when this is dropped.
pub struct Upstreams {
    lichess: Server,
    chess_com: Server,
}

fn start_server(
    platform: Platform,
    listener: Option<std::net::TcpListener>,
    users: Users,
    opts: &Options,
) -> std::io::Result<Server> {
    let listener = match listener {
        Some(l) => {
            l.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(l)?
        }
        // A backlog of 1024, as a server's: std's 128 dropped the SYNs of 256 imports starting at
        // once, and each dropped one cost its import a second (the client's SYN retransmit).
        None => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
            socket.listen(1024)?
        }
    };
    let base = format!("http://{}", listener.local_addr()?);
    let enforcer = Arc::new(policy::Enforcer::new(platform, &opts.policy));
    let outages = Arc::new(outage::Outages::new(platform));
    let latency = opts.chess_com_latency;
    let pace_of = |per_sec: f64| {
        (platform == Platform::Lichess && per_sec > 0.0)
            .then(|| std::time::Duration::from_secs_f64(1.0 / per_sec))
    };
    let pace = pace_of(opts.lichess_games_per_sec);
    let task = serve::serve(
        listener,
        serve::Shared {
            platform,
            users: Arc::clone(&users),
            seed: opts.seed,
            pace,
            authenticated_pace: pace_of(opts.lichess_authenticated_games_per_sec).or(pace),
            latency: (platform == Platform::ChessCom && !latency.is_zero()).then_some(latency),
            base: base.clone(),
            enforcer: Arc::clone(&enforcer),
            outages: Arc::clone(&outages),
        },
    );
    Ok(Server {
        base,
        task,
        enforcer,
        outages,
        users,
    })
}

impl Upstreams {
    /// Starts both mocks on free loopback ports, unpaced, enforcing the providers' rules.
    pub async fn start(users: &[MockUser], seed: u64) -> std::io::Result<Upstreams> {
        Self::start_with(
            users,
            Options {
                seed,
                ..Options::default()
            },
        )
        .await
    }

    /// Starts both mocks as `opts` says.
    pub async fn start_with(users: &[MockUser], mut opts: Options) -> std::io::Result<Upstreams> {
        let lichess_users = users_of(users, Platform::Lichess, opts.prerender.then_some(opts.seed));
        let chess_com_users = users_of(users, Platform::ChessCom, None);
        let (l, c) = (opts.lichess_listener.take(), opts.chess_com_listener.take());
        Ok(Upstreams {
            lichess: start_server(Platform::Lichess, l, lichess_users, &opts)?,
            chess_com: start_server(Platform::ChessCom, c, chess_com_users, &opts)?,
        })
    }

    /// Base URL to give the importer as LICHESS_BASE_URL.
    pub fn lichess_url(&self) -> String {
        self.lichess.base.clone()
    }

    /// Base URL to give the importer as CHESSCOM_BASE_URL.
    pub fn chess_com_url(&self) -> String {
        self.chess_com.base.clone()
    }

    fn server(&self, platform: Platform) -> &Server {
        match platform {
            Platform::Lichess => &self.lichess,
            Platform::ChessCom => &self.chess_com,
        }
    }

    /// Games sent so far to requests for `user` (its name, any case) on `platform`.
    pub fn games_served_to(&self, platform: Platform, user: &str) -> u64 {
        self.server(platform)
            .users
            .get(&user.to_ascii_lowercase())
            .map_or(0, |u| u.games_served.load(Ordering::Relaxed))
    }

    /// What each chess.com month of `user` (its name, any case) was served so far, by (year,
    /// month): requests, short answers, 304s, bytes. Months never asked for are absent.
    pub fn months_served_to(&self, user: &str) -> BTreeMap<(i32, u32), MonthServed> {
        self.chess_com
            .users
            .get(&user.to_ascii_lowercase())
            .map(|u| {
                u.months
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .map(|(&back, &served)| (games::year_month(back), served))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Bytes of body sent so far for `user`'s chess.com month `year`/`month` (JSON and PGN).
    pub fn month_bytes_served_to(&self, user: &str, year: i32, month: u32) -> u64 {
        self.months_served_to(user)
            .get(&(year, month))
            .map_or(0, |m| m.bytes)
    }

    /// Starts an outage of `platform` now: every request gets its answer for its duration, and
    /// a lichess stream in flight breaks before its next game.
    pub fn begin_outage(&self, platform: Platform, outage: Outage) {
        self.schedule_outage(platform, std::time::Duration::ZERO, outage);
    }

    /// Starts an outage of `platform` `after` from now.
    pub fn schedule_outage(&self, platform: Platform, after: std::time::Duration, outage: Outage) {
        tracing::info!(
            provider = platform.as_str(),
            status = outage.status,
            after_secs = after.as_secs_f64(),
            secs = outage.duration.as_secs_f64(),
            "mock outage scheduled"
        );
        self.server(platform)
            .outages
            .begin(outage, std::time::Instant::now() + after);
    }

    /// Every outage of both providers begun so far and what it answered: requests and the gaps
    /// between them, times in (measured) seconds from `origin`.
    pub fn outages(&self, origin: std::time::Instant) -> Vec<OutageRecord> {
        let mut all = self.lichess.outages.records(origin);
        all.extend(self.chess_com.outages.records(origin));
        all
    }

    /// What each provider served so far: requests, 429s, most requests in flight at once.
    pub fn served(&self) -> std::collections::BTreeMap<String, Served> {
        [
            (Platform::Lichess, &self.lichess),
            (Platform::ChessCom, &self.chess_com),
        ]
        .into_iter()
        .map(|(p, s)| (p.as_str().to_string(), s.enforcer.served()))
        .collect()
    }
}

impl Drop for Upstreams {
    fn drop(&mut self) {
        self.lichess.task.abort();
        self.chess_com.task.abort();
    }
}

#[cfg(test)]
mod tests;

/// Whether `value` of query parameter `name` is `true`.
fn flag(url: &reqwest::Url, name: &str) -> Option<bool> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v == "true")
}
