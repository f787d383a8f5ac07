//! The key a game is stored under (`provider_game_id`): unique per provider, so
//! that the (user, platform, key) constraint never takes one game for another.
//!
//! - lichess: the 8-character game id (`GameId`, or the last segment of `Site`).
//! - chess.com: `live/N` or `daily/N`. chess.com numbers live and daily
//!   (correspondence) games in two separate sequences, so the bare number is
//!   not unique: a live and a daily game can carry the same N (chess-web-api#20).
//!   The kind comes from the game's URL (`Link`, else `Site`).
//!
//! A leaf module: the parser keys new games with it, and the store's migration
//! re-keys rows stored before the kind was kept.

/// The key of a chess.com game from its URL, or `None` when the URL is not a game's.
///
/// Accepted paths end in `/game/live/N`, `/live/game/N`, `/game/daily/N`, `/daily/game/N`, or
/// `/game/N` (live, chess.com's older form); a query string or a fragment is ignored.
pub fn chess_com_key(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next()?;
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (number, rest) = segs.split_last()?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let kind = match rest {
        [.., "game", "live"] | [.., "live", "game"] => "live",
        [.., "game", "daily"] | [.., "daily", "game"] => "daily",
        [.., "game"] => "live",
        _ => return None,
    };
    Some(format!("{kind}/{number}"))
}

/// The value of tag `name` in a stored PGN's tag section (`[Name "value"]`), unescaped of `\"`.
pub fn tag_value<'a>(pgn: &'a str, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    for line in pgn.lines() {
        let line = line.trim();
        if !line.starts_with('[') {
            // The tag section ends at the first line that is not a tag.
            if line.is_empty() {
                continue;
            }
            return None;
        }
        let Some(rest) = line.strip_prefix('[').and_then(|l| l.strip_prefix(name)) else {
            continue;
        };
        // `[Links "..."]` is not `Link`.
        if !rest.starts_with([' ', '\t']) {
            continue;
        }
        let Some(value) = rest
            .trim_start()
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix("\"]"))
        else {
            continue;
        };
        return Some(if value.contains('\\') {
            std::borrow::Cow::Owned(value.replace("\\\"", "\"").replace("\\\\", "\\"))
        } else {
            std::borrow::Cow::Borrowed(value)
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chess_com_keys_keep_the_kind_in_every_form_seen() {
        for (url, key) in [
            (
                "https://www.chess.com/game/live/412345678",
                Some("live/412345678"),
            ),
            (
                "https://www.chess.com/live/game/412345678",
                Some("live/412345678"),
            ),
            (
                "https://www.chess.com/game/daily/412345678",
                Some("daily/412345678"),
            ),
            (
                "https://www.chess.com/daily/game/412345678",
                Some("daily/412345678"),
            ),
            ("https://www.chess.com/game/412345678", Some("live/412345678")),
            (
                "https://www.chess.com/game/daily/412345678?move=0",
                Some("daily/412345678"),
            ),
            (
                "https://www.chess.com/game/live/412345678#analysis",
                Some("live/412345678"),
            ),
            (
                "https://www.chess.com/game/live/412345678/",
                Some("live/412345678"),
            ),
            ("Chess.com", None),
            ("https://www.chess.com/member/412345678", None),
            ("https://www.chess.com/game/live/abc", None),
            ("", None),
        ] {
            assert_eq!(chess_com_key(url).as_deref(), key, "{url}");
        }
    }

    #[test]
    fn tags_are_read_from_the_tag_section_only() {
        let pgn = "[Event \"Live \\\"Chess\\\"\"]\r\n[Link \"https://www.chess.com/game/daily/9\"]\n\n1. e4 {[Link \"x\"]} 1-0";
        assert_eq!(
            tag_value(pgn, "Link").as_deref(),
            Some("https://www.chess.com/game/daily/9")
        );
        assert_eq!(tag_value(pgn, "Event").as_deref(), Some("Live \"Chess\""));
        assert_eq!(tag_value(pgn, "Site"), None);
        // A tag name that only starts like another is not it.
        assert_eq!(tag_value("[Links \"a\"]\n", "Link"), None);
        assert_eq!(
            tag_value("[Links \"a\"]\n[Link \"b\"]\n", "Link").as_deref(),
            Some("b")
        );
    }
}
