//! `GET /api/games/user/{username}`: PGN or NDJSON, filtered and ordered as lichess does.

use serde_json::json;

use super::games::{self, SyntheticGame};
use super::{Answer, Plain, Users, flag};

/// Which games a query selects, by index (0 = newest), in the order served: as lila's unfiltered
/// export, on creation time in ms, `since` inclusive (`createdAt >= since`) and `until` exclusive
/// (`createdAt < until`); finished games only unless `ongoing=true`; games not played yet never.
pub(super) fn select(user: &super::MockUser, url: &reqwest::Url) -> Vec<u64> {
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<i64>().ok())
    };
    // created_at decreases with the index: since/until are index bounds.
    let since = param("since");
    let until = param("until");
    let first = until.map_or(0, |u| {
        partition(user.games, |i| games::created_at(user, i) * 1000 >= u)
    });
    let end = since.map_or(user.games, |s| {
        partition(user.games, |i| games::created_at(user, i) * 1000 >= s)
    });
    let ongoing = flag(url, "ongoing").unwrap_or(false);
    let mut picked: Vec<u64> = (first.max(user.unplayed)..end.max(first))
        .filter(|&i| ongoing || user.finished(i))
        .collect();
    if url.query_pairs().any(|(k, v)| k == "sort" && v == "dateAsc") {
        picked.reverse();
    }
    if let Some(max) = param("max").filter(|m| *m >= 1) {
        picked.truncate(max as usize);
    }
    picked
}

/// First index for which `pred` is false, `pred` being true then false over 0..n.
fn partition(n: u64, pred: impl Fn(u64) -> bool) -> u64 {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) { lo = mid + 1 } else { hi = mid }
    }
    lo
}

/// A finished game's PGN as lichess exports it while the game is still played: Result `*`,
/// Termination `Unterminated`, the movetext ending in `*`.
fn as_ongoing(pgn: &str) -> String {
    let result = pgn
        .lines()
        .find_map(|l| l.strip_prefix("[Result \"")?.strip_suffix("\"]"))
        .unwrap_or("*")
        .to_string();
    let body = pgn.trim_end();
    let body = body.strip_suffix(result.as_str()).unwrap_or(body);
    format!("{body}*")
        .replace(&format!("[Result \"{result}\"]"), "[Result \"*\"]")
        .replace("[Termination \"Normal\"]", "[Termination \"Unterminated\"]")
}

fn strip_comments(pgn: &str) -> String {
    let mut out = String::with_capacity(pgn.len());
    let mut depth = 0;
    for c in pgn.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.replace("  ", " ")
}

fn ndjson(g: &SyntheticGame, with_pgn: Option<&str>) -> String {
    let winner = match g.result {
        "1-0" => Some("white"),
        "0-1" => Some("black"),
        _ => None,
    };
    let player = |name: &str, rating: u32| json!({"user": {"name": name, "id": name.to_ascii_lowercase()}, "rating": rating});
    let mut obj = json!({
        "id": g.id, "rated": true, "variant": "standard",
        "speed": games::speed(g.clock), "perf": games::speed(g.clock),
        "createdAt": g.created_at * 1000, "lastMoveAt": g.ended_at * 1000,
        "status": if winner.is_some() { "resign" } else { "draw" },
        "players": {"white": player(&g.white, g.white_elo), "black": player(&g.black, g.black_elo)},
        "moves": g.moves,
        "clock": {"initial": g.clock.0, "increment": g.clock.1, "totalTime": g.clock.0 + 40 * g.clock.1},
    });
    if let Some(w) = winner {
        obj["winner"] = json!(w);
    }
    if let Some(pgn) = with_pgn {
        obj["pgn"] = json!(pgn);
    }
    let mut line = obj.to_string();
    line.push('\n');
    line
}

/// How the stream of this answer misbehaves, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Breakage {
    /// Sent whole.
    None,
    /// The connection drops after this many games, half way through the next.
    CutAfter(u64),
    /// Nothing more is sent, and the connection stays open, after this many games.
    StallAfter(u64),
}

/// Selected games of one user and how to write them.
pub(super) struct Selection {
    pub user: super::MockUser,
    /// The user's count of games sent.
    pub served: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub pgn: Option<std::sync::Arc<Vec<String>>>,
    pub breakage: Breakage,
    pub indices: Vec<u64>,
    pub json: bool,
    pub with_pgn: bool,
    pub comments: bool,
    pub opening: bool,
}

impl Selection {
    /// The content type.
    pub(super) fn mime(&self) -> &'static str {
        if self.json {
            "application/x-ndjson"
        } else {
            "application/x-chess-pgn"
        }
    }

    /// The bytes of one selected game, as lichess writes it in the stream.
    pub(super) fn render(&self, seed: u64, index: u64) -> String {
        if self.user.ongoing.contains(&index) {
            let mut pgn = as_ongoing(&games::generate(&self.user, seed, index).pgn);
            pgn.push_str("\n\n");
            return pgn;
        }
        let cached = self.pgn.as_ref().filter(|_| !self.json);
        if let Some(pgn) = cached.and_then(|all| all.get(index as usize))
            && self.comments
            && self.opening
        {
            let mut pgn = pgn.clone();
            pgn.push_str("\n\n");
            return pgn;
        }
        let g = games::generate(&self.user, seed, index);
        let mut pgn = if self.comments {
            g.pgn.clone()
        } else {
            strip_comments(&g.pgn)
        };
        if !self.opening {
            pgn = pgn
                .lines()
                .filter(|l| !l.starts_with("[Opening "))
                .collect::<Vec<_>>()
                .join("\n");
            pgn.push('\n');
        }
        if self.json {
            ndjson(&g, self.with_pgn.then_some(pgn.as_str()))
        } else {
            // Each game ends with a blank line, and a blank line separates games.
            pgn.push_str("\n\n");
            pgn
        }
    }
}

/// How a stream of `user` misbehaves: `cut_after` and `stall_after` break the first stream only
/// (the importer's resumed request must succeed), `cut_every` every stream (each reopened one
/// brings `cut_every` games more, the progress the importer must recognise).
fn breakage_of(user: &super::MockUser, first: bool) -> Breakage {
    match (first, user.cut_after, user.stall_after, user.cut_every) {
        (true, Some(n), _, _) => Breakage::CutAfter(n),
        (true, None, Some(n), _) => Breakage::StallAfter(n),
        (_, _, _, Some(k)) => Breakage::CutAfter(k),
        _ => Breakage::None,
    }
}

/// Routes and filters a request as lichess does.
pub(super) fn answer(users: &Users, method: &str, url: &reqwest::Url, accept: Option<&str>) -> Answer {
    let path = url.path();
    let Some(name) = path
        .strip_prefix("/api/games/user/")
        .filter(|n| !n.is_empty() && !n.contains('/'))
    else {
        return Answer::Status(Plain::status(404));
    };
    if method != "GET" {
        return Answer::Status(Plain::status(405));
    }
    let Some(state) = users.get(&name.to_ascii_lowercase()) else {
        // Unknown or closed account: a bare 404.
        return Answer::Status(Plain::status(404));
    };
    if let Some(fault) = state.fault() {
        return Answer::Status(fault);
    }
    let first = state.streams.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0;
    let breakage = breakage_of(&state.user, first);
    Answer::Games(Selection {
        breakage,
        indices: select(&state.user, url),
        user: state.user.clone(),
        served: std::sync::Arc::clone(&state.games_served),
        pgn: state.pgn.clone(),
        json: accept.is_some_and(|a| a.contains("application/x-ndjson")),
        with_pgn: flag(url, "pgnInJson").unwrap_or(false),
        comments: flag(url, "clocks").unwrap_or(false) || flag(url, "evals").unwrap_or(false),
        opening: flag(url, "opening").unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{MockUser, Platform};

    #[test]
    fn since_until_max_and_sort_select_like_lichess() {
        let u = MockUser::new("bob", Platform::Lichess, 100);
        let url = |q: &str| reqwest::Url::parse(&format!("http://x/api/games/user/bob?{q}")).unwrap();
        assert_eq!(select(&u, &url("")).len(), 100);
        assert_eq!(select(&u, &url("max=10")), (0..10).collect::<Vec<_>>());
        assert_eq!(select(&u, &url("sort=dateAsc&max=2")), vec![99, 98]);
        let t10 = games::created_at(&u, 10) * 1000;
        // `until` is exclusive, `since` inclusive, in ms.
        assert_eq!(select(&u, &url(&format!("until={t10}")))[0], 11);
        assert_eq!(select(&u, &url(&format!("until={}", t10 + 1)))[0], 10);
        let s = select(&u, &url(&format!("since={t10}")));
        assert_eq!(s.last(), Some(&10));
        let s = select(&u, &url(&format!("since={}", t10 + 1)));
        assert_eq!(s.last(), Some(&9));
    }

    #[test]
    fn cut_every_breaks_every_stream_and_cut_after_only_the_first() {
        let every = MockUser {
            cut_every: Some(101),
            ..MockUser::new("bob", Platform::Lichess, 1000)
        };
        assert_eq!(breakage_of(&every, true), Breakage::CutAfter(101));
        assert_eq!(breakage_of(&every, false), Breakage::CutAfter(101));
        let once = MockUser {
            cut_after: Some(5),
            ..MockUser::new("bob", Platform::Lichess, 1000)
        };
        assert_eq!(breakage_of(&once, false), Breakage::None);
        let both = MockUser {
            stall_after: Some(7),
            ..every.clone()
        };
        assert_eq!(breakage_of(&both, true), Breakage::StallAfter(7));
        assert_eq!(breakage_of(&both, false), Breakage::CutAfter(101));
    }

    #[test]
    fn games_not_played_yet_never_come_and_ongoing_ones_only_when_asked() {
        let u = MockUser {
            unplayed: 5,
            ongoing: vec![7],
            ..MockUser::new("bob", Platform::Lichess, 20)
        };
        let url = |q: &str| reqwest::Url::parse(&format!("http://x/api/games/user/bob?{q}")).unwrap();
        let finished = select(&u, &url("max=3"));
        assert_eq!(finished, vec![5, 6, 8]);
        assert_eq!(select(&u, &url("max=3&ongoing=true")), vec![5, 6, 7]);
        let pgn = games::generate(&u, 1, 7).pgn;
        let ongoing = as_ongoing(&pgn);
        assert!(ongoing.contains("[Result \"*\"]"), "{ongoing}");
        assert!(ongoing.contains("[Termination \"Unterminated\"]"));
        assert!(ongoing.ends_with(" *"), "{ongoing}");
    }
}
