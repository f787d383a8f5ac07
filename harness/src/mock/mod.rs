//! Mock lichess and chess.com, faithful to `shared/UPSTREAM.md`, on wiremock.
//!
//! Each provider is one wiremock server whose single responder routes by
//! path, so that query parameters (`max`, `since`, `until`, `sort`), the
//! `Accept` header and per-user faults behave as the real API does. Request
//! recording is off: wiremock would otherwise keep every request for the
//! life of the server. wiremock sends each response whole; the paced stream
//! (lichess's ~20 games a second) is the job of `stream.rs`, which gives the
//! same answers through `lichess::answer`.

mod chess_com;
pub mod games;
mod lichess;
mod stream;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A game provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Platform {
    /// lichess.org
    #[serde(rename = "lichess")]
    Lichess,
    /// chess.com
    #[serde(rename = "chess.com")]
    ChessCom,
}

impl Platform {
    /// The name the importer's API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Lichess => "lichess",
            Platform::ChessCom => "chess.com",
        }
    }
}

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
        }
    }

    /// Whether serving this user needs the streaming responder (wiremock cannot cut or stall a body).
    pub fn needs_stream(&self) -> bool {
        self.cut_after.is_some() || self.stall_after.is_some()
    }

    /// The name as shown in PGN.
    pub fn display_name(&self) -> String {
        self.name.clone()
    }

    /// The id the importer stores the user under.
    pub fn key(&self) -> String {
        self.name.to_ascii_lowercase()
    }

    /// Ids of the games that are well formed, newest first.
    pub fn valid_ids(&self) -> impl Iterator<Item = (u64, String)> + '_ {
        (0..self.games)
            .filter(|i| !self.malformed.contains(i))
            .map(|i| (i, games::game_id(self, i)))
    }
}

/// Per-user state of a responder: the faults still to serve.
struct UserState {
    user: MockUser,
    requests: AtomicUsize,
    streams: AtomicUsize,
    /// Each game's PGN, generated once at start (`Options::prerender`), so serving costs no generation.
    pgn: Option<Arc<Vec<String>>>,
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

    /// As a wiremock response.
    fn template(&self) -> ResponseTemplate {
        let t = ResponseTemplate::new(self.status);
        match self.body {
            Some((body, mime)) => t.set_body_raw(body, mime),
            None => t,
        }
    }
}

impl UserState {
    /// A fault to answer with now, if any remain.
    fn fault(&self) -> Option<Plain> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let status = *self.user.faults.get(n)?;
        let mut resp = Plain::status(status);
        if status == 429 && self.user.platform == Platform::Lichess {
            // lichess sends no Retry-After; this body is what it says.
            resp.body = Some((
                r#"{"error":"Please only run 1 request(s) at a time"}"#,
                "application/json",
            ));
        }
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
    pub lichess_games_per_sec: u32,
    /// Serve lichess with the streaming responder even unpaced (wiremock builds each body whole,
    /// which for hundreds of imports at once costs the harness gigabytes).
    pub lichess_stream: bool,
    /// Generate every lichess game once at start, so that serving measures the importer, not the generator.
    pub prerender: bool,
    /// Serve lichess on this listener instead of a free port.
    pub lichess_listener: Option<std::net::TcpListener>,
    /// Serve chess.com on this listener instead of a free port.
    pub chess_com_listener: Option<std::net::TcpListener>,
}

enum Lichess {
    Wiremock(MockServer),
    Streaming {
        base: String,
        task: tokio::task::JoinHandle<()>,
    },
}

/// Both mock providers, running; they stop when this is dropped.
pub struct Upstreams {
    lichess: Lichess,
    chess_com: MockServer,
}

async fn wiremock_on(listener: Option<std::net::TcpListener>) -> MockServer {
    let mut builder = MockServer::builder().disable_request_recording();
    if let Some(l) = listener {
        builder = builder.listener(l);
    }
    builder.start().await
}

impl Upstreams {
    /// Starts both mocks on free loopback ports, unpaced.
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
    pub async fn start_with(users: &[MockUser], opts: Options) -> std::io::Result<Upstreams> {
        let lichess_users = users_of(users, Platform::Lichess, opts.prerender.then_some(opts.seed));
        let needs_stream = users
            .iter()
            .any(|u| u.platform == Platform::Lichess && u.needs_stream());
        let lichess = if opts.lichess_games_per_sec > 0 || opts.lichess_stream || needs_stream {
            let listener = match opts.lichess_listener {
                Some(l) => l,
                None => std::net::TcpListener::bind("127.0.0.1:0")?,
            };
            let (base, task) =
                stream::serve(listener, lichess_users, opts.seed, opts.lichess_games_per_sec).await?;
            Lichess::Streaming { base, task }
        } else {
            let server = wiremock_on(opts.lichess_listener).await;
            Mock::given(any())
                .respond_with(lichess::Responder {
                    users: lichess_users,
                    seed: opts.seed,
                })
                .mount(&server)
                .await;
            Lichess::Wiremock(server)
        };
        let chess_com = wiremock_on(opts.chess_com_listener).await;
        Mock::given(any())
            .respond_with(chess_com::Responder {
                users: users_of(users, Platform::ChessCom, None),
                seed: opts.seed,
                base: chess_com.uri(),
            })
            .mount(&chess_com)
            .await;
        Ok(Upstreams { lichess, chess_com })
    }

    /// Base URL to give the importer as LICHESS_BASE_URL.
    pub fn lichess_url(&self) -> String {
        match &self.lichess {
            Lichess::Wiremock(s) => s.uri(),
            Lichess::Streaming { base, .. } => base.clone(),
        }
    }

    /// Base URL to give the importer as CHESSCOM_BASE_URL.
    pub fn chess_com_url(&self) -> String {
        self.chess_com.uri()
    }
}

impl Drop for Upstreams {
    fn drop(&mut self) {
        if let Lichess::Streaming { task, .. } = &self.lichess {
            task.abort();
        }
    }
}

/// Whether `value` of query parameter `name` is `true`.
fn flag(url: &reqwest::Url, name: &str) -> Option<bool> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v == "true")
}
