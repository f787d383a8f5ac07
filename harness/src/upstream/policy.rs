//! The providers' rules, as the mocks enforce them (`docs/providers.md`):
//!
//! - lichess: at most 2 export streams at once per address (lila's
//!   `ConcurrencyLimit`, key `api.ip.download`); one more is answered `429` with
//!   `{"error":"Please only run 1 request(s) at a time"}` and no `Retry-After`.
//!   The API docs ask for a full minute of silence after a 429: here every
//!   lichess request in the `penalty_secs` after a 429 is answered 429 again,
//!   and each such 429 starts the window anew.
//! - A User-Agent naming neither a URL nor an e-mail address: lichess answers
//!   `404` with its HTML "Page not found" page, chess.com `403`.
//! - chess.com: "serial access is unlimited; parallel requests may trigger
//!   429": at most `max_parallel` requests in flight, a 429 beyond.
//!
//! Every process of a scenario reaches the mocks from 127.0.0.1, as replicas
//! behind one egress address reach the real providers, so the limits count all
//! of them together. A request is in flight from its arrival until its body has
//! been sent (or its connection dropped): the guard travels with the body.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::Platform;

/// lichess's body for a stream beyond its concurrency limit (the text says 1 whatever the limit).
pub const LICHESS_429_BODY: &str = r#"{"error":"Please only run 1 request(s) at a time"}"#;

/// lichess's page for a request it will not serve (shortened; the title and status are lichess's).
pub const LICHESS_404_PAGE: &str = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Page not found • lichess.org</title></head><body><main class=\"page-small box box-pad page\">\
<h1>404</h1><div><strong>Page not found!</strong></div></main></body></html>";

/// chess.com's error object for an account that exists, seen with a 404 (lukasmonk/lucaschessR2#253);
/// the mock also sends it with an injected 5xx.
pub const CHESS_COM_INTERNAL_ERROR: &str = r#"{"code":0,"message":"An internal error has occurred. Please contact Chess.com Developer's Forum for further help https://www.chess.com/club/chess-com-developer-community ."}"#;

/// chess.com's answer to a client that does not identify itself.
pub const CHESS_COM_403_BODY: &str = r#"{"code":0,"message":"Forbidden: identify your client in the User-Agent header with a contact (URL or e-mail)."}"#;

/// The rules as a scenario sets them (`upstream.policy`); the defaults are the providers' own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// lichess export streams in flight from one address; one more is a 429.
    #[serde(default = "two")]
    pub max_streams_per_client: u32,
    /// Seconds after a lichess 429 in which every lichess request is a 429 (lichess asks for 60).
    #[serde(default = "sixty")]
    pub penalty_secs: f64,
    /// chess.com requests in flight; one more is a 429.
    #[serde(default = "two")]
    pub max_parallel: u32,
    /// Refuse a User-Agent with neither a URL nor an e-mail address.
    #[serde(default = "yes")]
    pub require_contact: bool,
}

fn two() -> u32 {
    2
}
fn sixty() -> f64 {
    60.0
}
fn yes() -> bool {
    true
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            max_streams_per_client: two(),
            penalty_secs: sixty(),
            max_parallel: two(),
            require_contact: yes(),
        }
    }
}

impl Rules {
    /// What is wrong with these rules, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.max_streams_per_client == 0 || self.max_parallel == 0 {
            return Some(
                "upstream.policy: max_streams_per_client and max_parallel must be at least 1".into(),
            );
        }
        if !(0.0..=3600.0).contains(&self.penalty_secs) {
            return Some(format!(
                "upstream.policy.penalty_secs: {} is not between 0 and 3600",
                self.penalty_secs
            ));
        }
        None
    }
}

/// `upstream.policy`: the providers' rules (the default), or `off` for an experiment that
/// measures something else (memory with hundreds of streams) and says so.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// The rules are enforced.
    Enforced(Rules),
    /// Anything goes; only counted.
    Off,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::Enforced(Rules::default())
    }
}

impl Serialize for Policy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Policy::Enforced(rules) => rules.serialize(s),
            Policy::Off => s.serialize_str("off"),
        }
    }
}

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Policy, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Policy;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`off` or a map of rules (max_streams_per_client, penalty_secs, max_parallel, require_contact)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Policy, E> {
                match v {
                    "off" => Ok(Policy::Off),
                    "on" => Ok(Policy::default()),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Policy, E> {
                // YAML 1.1 readers take a bare `off` for false.
                Ok(if v { Policy::default() } else { Policy::Off })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Policy, A::Error> {
                Rules::deserialize(de::value::MapAccessDeserializer::new(map)).map(Policy::Enforced)
            }
        }
        d.deserialize_any(V)
    }
}

/// What one provider's mock served, for `results.json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    /// Requests received.
    pub requests: u64,
    /// 429 answers served (for the limit, in a penalty window, or injected as a fault).
    pub rate_limited: u64,
    /// Most requests in flight at once.
    pub max_in_flight: u64,
    /// Games sent (whole ones; a stream cut mid-game counts the games before the cut).
    #[serde(default)]
    pub games_served: u64,
    /// Bytes of game data sent (lichess's streams, chess.com's month bodies).
    #[serde(default)]
    pub bytes_served: u64,
    /// `304 Not Modified` answers (chess.com: a month unchanged since the validators it came with).
    #[serde(default)]
    pub not_modified: u64,
    /// Requests an outage answered (`outage.rs`), among `requests`.
    #[serde(default)]
    pub outage_answers: u64,
    /// chess.com month answers served short (`short_months`).
    #[serde(default)]
    pub short_answers: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    rate_limited: AtomicU64,
    games_served: AtomicU64,
    bytes_served: AtomicU64,
    not_modified: AtomicU64,
    outage_answers: AtomicU64,
    short_answers: AtomicU64,
    /// (in flight now, most at once), moved together.
    in_flight: Mutex<(u64, u64)>,
}

/// Whether a User-Agent names a contact: a URL or an e-mail address.
pub fn has_contact(user_agent: &str) -> bool {
    user_agent.contains("http://")
        || user_agent.contains("https://")
        || user_agent
            .split(|c: char| c.is_whitespace() || "()<>;,".contains(c))
            .any(|w| {
                w.split_once('@')
                    .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
            })
}

/// Why a request is refused before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The User-Agent names no contact.
    Anonymous,
    /// Over the limit, or inside a penalty window.
    RateLimited,
}

/// The rules of one provider's mock, and what it served.
pub struct Enforcer {
    platform: Platform,
    rules: Option<Rules>,
    counters: Counters,
    penalty_until: Mutex<Option<Instant>>,
}

/// A request in flight; dropping it ends it.
pub struct InFlight(Arc<Enforcer>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut f = self
            .0
            .counters
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        f.0 = f.0.saturating_sub(1);
    }
}

impl Enforcer {
    /// The mock of `platform` under `policy`.
    pub fn new(platform: Platform, policy: &Policy) -> Enforcer {
        Enforcer {
            platform,
            rules: match policy {
                Policy::Enforced(r) => Some(r.clone()),
                Policy::Off => None,
            },
            counters: Counters::default(),
            penalty_until: Mutex::new(None),
        }
    }

    fn limit(&self) -> Option<u64> {
        let r = self.rules.as_ref()?;
        Some(u64::from(match self.platform {
            Platform::Lichess => r.max_streams_per_client,
            Platform::ChessCom => r.max_parallel,
        }))
    }

    /// Counts a request and admits it, or says why it is refused (a 429 is counted here).
    pub fn admit(self: &Arc<Self>, user_agent: Option<&str>) -> Result<InFlight, Refusal> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if self.rules.as_ref().is_some_and(|r| r.require_contact) && !user_agent.is_some_and(has_contact) {
            return Err(Refusal::Anonymous);
        }
        let penalised = self
            .penalty_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|until| Instant::now() < until);
        if penalised {
            self.served_429();
            return Err(Refusal::RateLimited);
        }
        {
            let mut f = self.counters.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if self.limit().is_some_and(|max| f.0 >= max) {
                drop(f);
                self.served_429();
                return Err(Refusal::RateLimited);
            }
            f.0 += 1;
            f.1 = f.1.max(f.0);
        }
        Ok(InFlight(Arc::clone(self)))
    }

    /// Counts a 429 served (also an injected one) and, on lichess, starts the penalty window anew.
    pub fn served_429(&self) {
        self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        if self.platform == Platform::Lichess
            && let Some(r) = &self.rules
            && r.penalty_secs > 0.0
        {
            *self.penalty_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + Duration::from_secs_f64(r.penalty_secs));
        }
    }

    /// What was served so far.
    pub fn served(&self) -> Served {
        let f = *self.counters.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        Served {
            requests: self.counters.requests.load(Ordering::Relaxed),
            rate_limited: self.counters.rate_limited.load(Ordering::Relaxed),
            max_in_flight: f.1,
            games_served: self.counters.games_served.load(Ordering::Relaxed),
            bytes_served: self.counters.bytes_served.load(Ordering::Relaxed),
            not_modified: self.counters.not_modified.load(Ordering::Relaxed),
            outage_answers: self.counters.outage_answers.load(Ordering::Relaxed),
            short_answers: self.counters.short_answers.load(Ordering::Relaxed),
        }
    }

    /// Counts a request an outage answered before the rules were asked.
    pub fn answered_in_outage(&self) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.counters.outage_answers.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a chess.com month answer served short.
    pub fn sent_short(&self) {
        self.counters.short_answers.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `games` games in `bytes` bytes sent.
    pub fn sent(&self, games: u64, bytes: u64) {
        self.counters.games_served.fetch_add(games, Ordering::Relaxed);
        self.counters.bytes_served.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts a `304 Not Modified`.
    pub fn sent_not_modified(&self) {
        self.counters.not_modified.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UA: Option<&str> = Some("importer/1 (+https://example.org)");

    #[test]
    fn lichess_refuses_a_third_stream_then_penalises_every_request() {
        let rules = Rules {
            penalty_secs: 0.2,
            ..Rules::default()
        };
        let e = Arc::new(Enforcer::new(Platform::Lichess, &Policy::Enforced(rules)));
        let a = e.admit(UA).unwrap();
        let b = e.admit(UA).unwrap();
        assert_eq!(e.admit(UA).err(), Some(Refusal::RateLimited));
        drop((a, b));
        // Both streams ended, but the penalty holds.
        assert_eq!(e.admit(UA).err(), Some(Refusal::RateLimited));
        std::thread::sleep(Duration::from_millis(250));
        let _c = e.admit(UA).unwrap();
        assert_eq!(
            e.served(),
            Served {
                requests: 5,
                rate_limited: 2,
                max_in_flight: 2,
                ..Served::default()
            }
        );
    }

    #[test]
    fn anonymous_clients_are_refused_and_off_refuses_nothing() {
        let e = Arc::new(Enforcer::new(Platform::ChessCom, &Policy::default()));
        assert_eq!(e.admit(Some("reqwest/0.12")).err(), Some(Refusal::Anonymous));
        assert_eq!(e.admit(None).err(), Some(Refusal::Anonymous));
        assert!(e.admit(Some("bot (ops@example.org)")).is_ok());
        let off = Arc::new(Enforcer::new(Platform::Lichess, &Policy::Off));
        let held: Vec<_> = (0..5).map(|_| off.admit(None).unwrap()).collect();
        assert_eq!(off.served().max_in_flight, 5);
        drop(held);
        assert_eq!(off.served().rate_limited, 0);
    }

    #[test]
    fn chess_com_has_no_penalty_window() {
        let e = Arc::new(Enforcer::new(Platform::ChessCom, &Policy::default()));
        let (_a, _b) = (e.admit(UA).unwrap(), e.admit(UA).unwrap());
        assert_eq!(e.admit(UA).err(), Some(Refusal::RateLimited));
        drop(_a);
        assert!(e.admit(UA).is_ok());
    }

    #[test]
    fn policy_reads_off_or_rules() {
        let p: Policy = serde_yaml::from_str("off").unwrap();
        assert_eq!(p, Policy::Off);
        let p: Policy = serde_yaml::from_str("penalty_secs: 1").unwrap();
        assert_eq!(
            p,
            Policy::Enforced(Rules {
                penalty_secs: 1.0,
                ..Rules::default()
            })
        );
        let err = serde_yaml::from_str::<Policy>("max_stream: 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_stream"), "{err}");
        let err = serde_yaml::from_str::<Policy>("sometimes")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`off`"), "{err}");
    }
}
