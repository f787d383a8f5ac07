//! `GET /api/games/user/{username}`: PGN or NDJSON, filtered and ordered as lichess does.

use serde_json::json;
use wiremock::{Request, Respond, ResponseTemplate};

use super::games::{self, SyntheticGame};
use super::{Users, flag};

pub(super) struct Responder {
    pub users: Users,
    pub seed: u64,
}

/// Which games a query selects, by index (0 = newest), in the order served.
pub fn select(user: &super::MockUser, url: &reqwest::Url) -> Vec<u64> {
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<i64>().ok())
    };
    // created_at decreases with the index: since/until are index bounds.
    let since = param("since");
    let until = param("until");
    let first = until.map_or(0, |u| {
        partition(user.games, |i| games::created_at(user, i) * 1000 > u)
    });
    let end = since.map_or(user.games, |s| {
        partition(user.games, |i| games::created_at(user, i) * 1000 >= s)
    });
    let mut picked: Vec<u64> = (first..end.max(first)).collect();
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

fn ndjson(g: &SyntheticGame, user: &str, with_pgn: Option<&str>) -> String {
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
    let _ = user;
    let mut line = obj.to_string();
    line.push('\n');
    line
}

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let path = req.url.path();
        let Some(name) = path
            .strip_prefix("/api/games/user/")
            .filter(|n| !n.is_empty() && !n.contains('/'))
        else {
            return ResponseTemplate::new(404);
        };
        if req.method.as_str() != "GET" {
            return ResponseTemplate::new(405);
        }
        let Some(state) = self.users.get(&name.to_ascii_lowercase()) else {
            // Unknown or closed account: a bare 404.
            return ResponseTemplate::new(404);
        };
        if let Some(fault) = state.fault() {
            return fault;
        }
        let user = &state.user;
        let url = &req.url;
        let comments = flag(url, "clocks").unwrap_or(false) || flag(url, "evals").unwrap_or(false);
        let opening = flag(url, "opening").unwrap_or(false);
        let json = req
            .headers
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/x-ndjson"));
        let with_pgn = flag(url, "pgnInJson").unwrap_or(false);
        let mut body = String::new();
        for i in select(user, url) {
            let g = games::generate(user, self.seed, i);
            let mut pgn = if comments {
                g.pgn.clone()
            } else {
                strip_comments(&g.pgn)
            };
            if !opening {
                pgn = pgn
                    .lines()
                    .filter(|l| !l.starts_with("[Opening "))
                    .collect::<Vec<_>>()
                    .join("\n");
                pgn.push('\n');
            }
            if json {
                body.push_str(&ndjson(&g, &user.name, with_pgn.then_some(pgn.as_str())));
            } else {
                // Each game ends with a blank line, and a blank line separates games.
                body.push_str(&pgn);
                body.push_str("\n\n");
            }
        }
        let mime = if json {
            "application/x-ndjson"
        } else {
            "application/x-chess-pgn"
        };
        ResponseTemplate::new(200).set_body_raw(body, mime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::{MockUser, Platform};

    #[test]
    fn since_until_max_and_sort_select_like_lichess() {
        let u = MockUser::new("bob", Platform::Lichess, 100);
        let url = |q: &str| reqwest::Url::parse(&format!("http://x/api/games/user/bob?{q}")).unwrap();
        assert_eq!(select(&u, &url("")).len(), 100);
        assert_eq!(select(&u, &url("max=10")), (0..10).collect::<Vec<_>>());
        assert_eq!(select(&u, &url("sort=dateAsc&max=2")), vec![99, 98]);
        let t10 = games::created_at(&u, 10) * 1000;
        assert_eq!(select(&u, &url(&format!("until={t10}")))[0], 10);
        let s = select(&u, &url(&format!("since={t10}")));
        assert_eq!(s.last(), Some(&10));
    }
}
