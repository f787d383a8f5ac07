//! A provider's bad day: for a while, every request gets the same error, as the provider's edge
//! sends it while the servers behind it restart.
//!
//! - lichess, while it restarts or deploys, answers `502` (sometimes `503`) with an HTML page
//!   titled "lichess.org" that says "We expect to be back very soon", for tens of seconds to a
//!   few minutes (issue 35; cyanfish/python-lichess#11, guidopetri/chess-pipeline#44). The
//!   connections it was streaming on drop: a stream in flight when the outage begins breaks in
//!   the middle of a game (`serve.rs` asks [`Outages::down`] before each game).
//! - chess.com: `503`. No capture of its outage body is public; it sits behind Cloudflare, whose
//!   edge answers with an HTML page when the origin is down, and its API's own errors are JSON
//!   `{"code":0,"message":…}`. Both are offered (`html`, `json`); `empty` is a bare status.
//!
//! An outage answers before the provider's own rules: the edge answers, the application that
//! counts streams and penalises 429s is down. Each window counts the requests it answered and
//! when, so that a report can tell a client that waited from one that hammered.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Plain, Platform};

/// lichess's page while it restarts (shortened; status, title and words as lichess serves them).
pub const LICHESS_RESTART_PAGE: &str = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>lichess.org</title></head><body><main><h1>lichess.org</h1>\
<p>Lichess is restarting.</p><p>We expect to be back very soon.</p></main></body></html>";

/// The page an edge in front of chess.com serves while the origin is down (Cloudflare's shape).
pub const CHESS_COM_OUTAGE_PAGE: &str = "<!DOCTYPE html><html lang=\"en-US\"><head><meta charset=\"utf-8\">\
<title>api.chess.com | 503: Service temporarily unavailable</title></head><body><h1>Service temporarily \
unavailable</h1><p>The web server reported a temporary error. Please try again in a few minutes.</p></body></html>";

/// chess.com's API error object, with an outage's words.
pub const CHESS_COM_OUTAGE_JSON: &str =
    r#"{"code":0,"message":"Service temporarily unavailable. Please try again in a few minutes."}"#;

/// What an outage answers in its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutageBody {
    /// The provider's (or its edge's) HTML error page, `text/html`.
    Html,
    /// A JSON error object, `application/json` (chess.com's API errors).
    Json,
    /// No body at all.
    Empty,
}

/// One outage: for `duration`, every request to the provider gets `status` and `body`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outage {
    /// The status every request gets (502 or 503 for real).
    pub status: u16,
    /// What the body says.
    pub body: OutageBody,
    /// How long it lasts, in real time (a scenario's provider seconds ÷ its time scale).
    pub duration: Duration,
}

impl Outage {
    /// lichess restarting: `502` with its HTML page.
    pub fn lichess_restart(duration: Duration) -> Outage {
        Outage {
            status: 502,
            body: OutageBody::Html,
            duration,
        }
    }

    /// chess.com down: `503` with its API's JSON error object.
    pub fn chess_com_down(duration: Duration) -> Outage {
        Outage {
            status: 503,
            body: OutageBody::Json,
            duration,
        }
    }

    /// The answer every request gets on `platform` while this outage lasts.
    pub(super) fn answer(&self, platform: Platform) -> Plain {
        let body = match (self.body, platform) {
            (OutageBody::Empty, _) => None,
            (OutageBody::Html, Platform::Lichess) => Some((LICHESS_RESTART_PAGE, "text/html; charset=utf-8")),
            (OutageBody::Html, Platform::ChessCom) => {
                Some((CHESS_COM_OUTAGE_PAGE, "text/html; charset=UTF-8"))
            }
            // lichess's API errors are JSON objects with an `error` key.
            (OutageBody::Json, Platform::Lichess) => Some((
                r#"{"error":"Lichess is restarting. We expect to be back very soon."}"#,
                "application/json",
            )),
            (OutageBody::Json, Platform::ChessCom) => Some((CHESS_COM_OUTAGE_JSON, "application/json")),
        };
        Plain {
            status: self.status,
            body,
        }
    }
}

/// Request times kept per window beyond which only the count grows: a client that hammers must
/// not grow the mock's memory without end.
const MAX_TIMES_KEPT: usize = 10_000;

/// One outage window and what it answered.
struct Window {
    outage: Outage,
    from: Instant,
    until: Instant,
    requests: u64,
    times: Vec<Instant>,
}

/// The outages of one provider's mock: windows begun or scheduled, and what each answered.
pub(super) struct Outages {
    platform: Platform,
    windows: Mutex<Vec<Window>>,
}

impl Outages {
    pub(super) fn new(platform: Platform) -> Outages {
        Outages {
            platform,
            windows: Mutex::new(Vec::new()),
        }
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, Vec<Window>> {
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `outage` on from `from` for its duration.
    pub(super) fn begin(&self, outage: Outage, from: Instant) {
        self.windows().push(Window {
            outage,
            from,
            until: from + outage.duration,
            requests: 0,
            times: Vec::new(),
        });
    }

    /// Whether an outage is on at `now` (a stream in flight breaks).
    pub(super) fn down(&self, now: Instant) -> bool {
        self.windows().iter().any(|w| (w.from..w.until).contains(&now))
    }

    /// The answer to a request arriving at `now` if an outage is on, counted in its window.
    pub(super) fn answer(&self, now: Instant) -> Option<Plain> {
        let mut windows = self.windows();
        let w = windows.iter_mut().find(|w| (w.from..w.until).contains(&now))?;
        w.requests += 1;
        if w.times.len() < MAX_TIMES_KEPT {
            w.times.push(now);
        }
        Some(w.outage.answer(self.platform))
    }

    /// Each window so far, its times in seconds from `origin` (measured, not provider, seconds).
    pub(super) fn records(&self, origin: Instant) -> Vec<OutageRecord> {
        let since = |t: Instant| t.saturating_duration_since(origin).as_secs_f64();
        self.windows()
            .iter()
            .map(|w| OutageRecord {
                provider: self.platform,
                status: w.outage.status,
                body: w.outage.body,
                start_secs: since(w.from),
                duration_secs: w.outage.duration.as_secs_f64(),
                requests: w.requests,
                gaps_secs: w
                    .times
                    .windows(2)
                    .map(|p| p[1].saturating_duration_since(p[0]).as_secs_f64())
                    .collect(),
                first_request_secs: w
                    .times
                    .first()
                    .map(|&t| t.saturating_duration_since(w.from).as_secs_f64()),
                allowed_requests: None,
            })
            .collect()
    }
}

/// What one outage window answered, for `results.json`. Times are seconds; the mocks record them
/// measured, a cell run's record holds them in provider seconds ([`OutageRecord::scaled`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutageRecord {
    /// The provider that was down.
    pub provider: Platform,
    /// The status it answered.
    pub status: u16,
    /// Its body.
    pub body: OutageBody,
    /// When it began, seconds from the cell's origin.
    pub start_secs: f64,
    /// How long it lasted.
    pub duration_secs: f64,
    /// Requests it answered.
    pub requests: u64,
    /// Time between each answered request and the next, in order (the first 10,000 requests).
    pub gaps_secs: Vec<f64>,
    /// When the first request arrived, from the window's start.
    #[serde(default)]
    pub first_request_secs: Option<f64>,
    /// The most requests a client that waits would have sent ([`allowance`]); `None` when not judged.
    #[serde(default)]
    pub allowed_requests: Option<u64>,
}

impl OutageRecord {
    /// The same record with its times × `time_scale`: provider seconds.
    pub fn scaled(mut self, time_scale: f64) -> OutageRecord {
        self.start_secs *= time_scale;
        self.duration_secs *= time_scale;
        self.first_request_secs = self.first_request_secs.map(|s| s * time_scale);
        for g in &mut self.gaps_secs {
            *g *= time_scale;
        }
        self
    }

    /// More requests than a client that waits would send.
    pub fn hammered(&self) -> bool {
        self.allowed_requests
            .is_some_and(|allowed| self.requests > allowed)
    }
}

/// The most requests a client that waits sends during an outage of `duration` (real time) with
/// `probers` requests allowed in flight at once (lanes × processes): each may ask once per wait,
/// its waits doubling from 1 s, so ⌊log2(duration / 1 s)⌋ + 1 asks; 2 more each for the request
/// already in flight when the outage began and the jitter that lets one wait end early.
/// A client that retries every second of a 30 s outage on 1 lane sends 30; this allows 7.
pub fn allowance(duration: Duration, probers: u64) -> u64 {
    let doublings = duration.as_secs_f64().max(1.0).log2().floor() as u64;
    probers.max(1) * (doublings + 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_answers_every_request_then_ends() {
        let o = Outages::new(Platform::Lichess);
        let t0 = Instant::now();
        assert!(o.answer(t0).is_none(), "no outage yet");
        o.begin(Outage::lichess_restart(Duration::from_secs(30)), t0);
        let a = o.answer(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(a.status, 502);
        let (page, mime) = a.body.unwrap();
        assert!(
            page.contains("<title>lichess.org</title>") && page.contains("We expect to be back very soon")
        );
        assert!(mime.starts_with("text/html"));
        assert!(o.answer(t0 + Duration::from_secs(3)).is_some());
        assert!(o.down(t0 + Duration::from_secs(29)));
        assert!(
            o.answer(t0 + Duration::from_secs(30)).is_none(),
            "the window is [start, end)"
        );
        assert!(!o.down(t0 + Duration::from_secs(31)));
        let records = o.records(t0);
        let r = &records[0];
        assert_eq!((r.requests, r.status, r.gaps_secs.clone()), (2, 502, vec![2.0]));
        assert_eq!(r.first_request_secs, Some(1.0));
        let scaled = r.clone().scaled(10.0);
        assert_eq!((scaled.duration_secs, scaled.gaps_secs[0]), (300.0, 20.0));
    }

    #[test]
    fn chess_com_bodies_are_json_html_or_none() {
        let json = Outage::chess_com_down(Duration::from_secs(1)).answer(Platform::ChessCom);
        assert_eq!(json.status, 503);
        let (body, mime) = json.body.unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!((v["code"].as_i64(), mime), (Some(0), "application/json"));
        let html = Outage {
            body: OutageBody::Html,
            ..Outage::chess_com_down(Duration::from_secs(1))
        };
        assert!(
            html.answer(Platform::ChessCom)
                .body
                .unwrap()
                .0
                .contains("<title>")
        );
        let empty = Outage {
            body: OutageBody::Empty,
            ..Outage::chess_com_down(Duration::from_secs(1))
        };
        assert!(empty.answer(Platform::ChessCom).body.is_none());
    }

    #[test]
    fn the_allowance_grows_with_the_log_of_the_outage() {
        assert_eq!(allowance(Duration::from_secs(30), 1), 7);
        assert_eq!(allowance(Duration::from_secs(30), 2), 14);
        assert_eq!(allowance(Duration::from_millis(300), 1), 3);
        assert_eq!(allowance(Duration::from_secs(300), 1), 11);
        let r = Outages::new(Platform::ChessCom);
        r.begin(Outage::chess_com_down(Duration::from_secs(5)), Instant::now());
        let mut rec = r.records(Instant::now()).remove(0);
        assert!(!rec.hammered(), "not judged");
        rec.requests = 6;
        rec.allowed_requests = Some(5);
        assert!(rec.hammered());
    }
}
