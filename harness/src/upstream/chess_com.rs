//! chess.com published-data API: archive list, month as JSON, month as PGN.

use serde_json::json;

use super::games::{self, SyntheticGame};
use super::{Answer, MockUser, Plain, Users};

fn json_answer(status: u16, body: String) -> Answer {
    Answer::Whole {
        status,
        mime: "application/json",
        body,
        games: 0,
        validators: None,
        short: false,
    }
}

/// Counts a request for month `back` of a user and says whether it is answered short: one of
/// the month's first `short_months.requests`.
fn served_short(state: &super::UserState, back: u32) -> bool {
    let before = state.month_request(back);
    state
        .user
        .short_months
        .as_ref()
        .is_some_and(|s| s.covers(back) && before < u64::from(s.requests))
}

/// The validators a request came with: `If-None-Match`, `If-Modified-Since`.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Conditional<'a> {
    pub if_none_match: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
}

/// A month's games that exist now (finished: chess.com publishes no game in progress), newest first.
fn month_games(user: &MockUser, back: u32) -> Vec<u64> {
    games::indices_of_month(user, back)
        .filter(|&i| user.finished(i))
        .collect()
}

/// A month's `ETag` (weak, as chess.com's) and `Last-Modified` (an HTTP date): both change
/// whenever a game is added to the month.
fn month_validators(user: &MockUser, seed: u64, back: u32, indices: &[u64]) -> (String, String) {
    let newest = indices.first().map_or(0, |&i| games::created_at(user, i));
    let tag = format!("{}:{seed}:{back}:{}:{newest}", user.key(), indices.len());
    let hash = games::hash(&tag);
    let at = chrono::DateTime::from_timestamp(newest, 0).unwrap_or_default();
    (
        format!("W/\"{hash:016x}\""),
        at.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
    )
}

/// Whether a request's validators match: `If-None-Match` decides when sent (RFC 9110 13.2.2),
/// else `If-Modified-Since` not older than `Last-Modified`.
fn unchanged(cond: Conditional<'_>, (etag, last_modified): &(String, String)) -> bool {
    if let Some(tags) = cond.if_none_match {
        return tags.split(',').any(|t| t.trim() == etag || t.trim() == "*");
    }
    let parse = |s: &str| chrono::DateTime::parse_from_rfc2822(s.trim()).ok();
    match (cond.if_modified_since.and_then(parse), parse(last_modified)) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

fn not_found(name: &str) -> Answer {
    json_answer(
        404,
        json!({"code": 0, "message": format!("User \"{name}\" not found.")}).to_string(),
    )
}

/// Months that have games, as months-back numbers, oldest first.
fn months_with_games(user: &MockUser) -> Vec<u32> {
    (0..user.months.max(1))
        .rev()
        .filter(|&m| games::indices_of_month(user, m).any(|i| user.finished(i)))
        .collect()
}

fn months_back_of(year: i32, month: u32) -> Option<u32> {
    let newest = 2025 * 12 + 11;
    let this = i64::from(year) * 12 + i64::from(month) - 1;
    u32::try_from(newest - this).ok()
}

fn game_json(g: &SyntheticGame, kind: &str, base_tc: String) -> serde_json::Value {
    let result = |white: bool| match (g.result, white) {
        ("1-0", true) | ("0-1", false) => "win",
        ("1/2-1/2", _) => "agreed",
        _ => "resigned",
    };
    let player = |name: &str, rating: u32, white: bool| {
        json!({
            "rating": rating, "result": result(white),
            "@id": format!("https://api.chess.com/pub/player/{}", name.to_ascii_lowercase()),
            "username": name, "uuid": format!("{:032x}", name.len() as u64 * 7919 + rating as u64),
        })
    };
    json!({
        "url": format!("https://www.chess.com/game/{kind}/{}", g.id),
        "pgn": g.pgn,
        "time_control": base_tc,
        "end_time": g.ended_at,
        "rated": true,
        "tcn": "",
        "uuid": format!("{:032x}", g.id.parse::<u128>().unwrap_or(0) * 2 + u128::from(kind == "daily")),
        "initial_setup": "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1",
        "fen": "",
        "time_class": if kind == "daily" {
            "daily".to_string()
        } else {
            games::speed(g.clock).replace("ultraBullet", "bullet").replace("classical", "rapid")
        },
        "rules": "chess",
        "white": player(&g.white, g.white_elo, true),
        "black": player(&g.black, g.black_elo, false),
    })
}

/// Routes a request as chess.com's published-data API does; `base` is the mock's own URL, for the
/// archive list's absolute URLs.
pub(super) fn answer(
    users: &Users,
    seed: u64,
    base: &str,
    method: &str,
    url: &reqwest::Url,
    cond: Conditional<'_>,
) -> Answer {
    let segs: Vec<&str> = url.path().trim_matches('/').split('/').collect();
    let (name, rest) = match segs.as_slice() {
        ["pub", "player", name, "games", rest @ ..] => (*name, rest),
        _ => return Answer::Status(Plain::status(404)),
    };
    if method != "GET" {
        return Answer::Status(Plain::status(405));
    }
    let Some(state) = users.get(&name.to_ascii_lowercase()) else {
        return not_found(name);
    };
    if let Some(fault) = state.fault() {
        return Answer::Status(fault);
    }
    {
        let user = &state.user;
        let lower = user.key();
        match rest {
            ["archives"] => {
                let archives: Vec<String> = months_with_games(user)
                    .into_iter()
                    .map(|m| {
                        let (y, mo) = games::year_month(m);
                        format!("{}/pub/player/{lower}/games/{y:04}/{mo:02}", base)
                    })
                    .collect();
                json_answer(200, json!({ "archives": archives }).to_string())
            }
            [year, month] | [year, month, "pgn"] => {
                let (Ok(y), Ok(m)) = (year.parse::<i32>(), month.parse::<u32>()) else {
                    return not_found(name);
                };
                let back = months_back_of(y, m).filter(|&back| back < user.months.max(1));
                let mut indices = back.map(|b| month_games(user, b)).unwrap_or_default();
                let short = back.is_some_and(|b| served_short(state, b));
                if short && let Some(s) = &user.short_months {
                    // The newest games are the ones a lagging cache lacks.
                    indices.drain(
                        ..indices
                            .len()
                            .min(usize::try_from(s.missing).unwrap_or(usize::MAX)),
                    );
                }
                // Of what this answer holds: a short answer's validators are not the whole month's.
                let validators = month_validators(user, seed, back.unwrap_or(u32::MAX), &indices);
                if unchanged(cond, &validators) {
                    if let Some(b) = back {
                        state.month_answered(b, short, true, 0);
                    }
                    return Answer::NotModified { validators };
                }
                // Sent whole, right away: counted for the user here.
                state
                    .games_served
                    .fetch_add(indices.len() as u64, std::sync::atomic::Ordering::Relaxed);
                if rest.len() == 3 {
                    // Newest first, unless the user says otherwise: chess.com documents no order.
                    if user.oldest_first {
                        indices.reverse();
                    }
                    let mut body = String::new();
                    for &i in &indices {
                        body.push_str(&games::generate(user, seed, i).pgn);
                        body.push_str("\n\n");
                    }
                    if let Some(b) = back {
                        state.month_answered(b, short, false, body.len() as u64);
                    }
                    Answer::Whole {
                        status: 200,
                        mime: "application/x-chess-pgn",
                        body,
                        games: indices.len() as u64,
                        validators: Some(validators),
                        short,
                    }
                } else {
                    // The JSON month is sorted by ascending end_time.
                    let list: Vec<_> = indices
                        .iter()
                        .rev()
                        .map(|&i| {
                            let g = games::generate(user, seed, i);
                            let tc = if g.clock.1 == 0 {
                                g.clock.0.to_string()
                            } else {
                                format!("{}+{}", g.clock.0, g.clock.1)
                            };
                            game_json(&g, games::chess_com_kind(user, i), tc)
                        })
                        .collect();
                    let body = json!({ "games": list }).to_string();
                    if let Some(b) = back {
                        state.month_answered(b, short, false, body.len() as u64);
                    }
                    Answer::Whole {
                        status: 200,
                        mime: "application/json",
                        games: list.len() as u64,
                        body,
                        validators: Some(validators),
                        short,
                    }
                }
            }
            _ => not_found(name),
        }
    }
}
