//! Turns one framed game into a row, with pgn-reader's visitor.
//!
//! The visitor keeps only the handful of tags a row needs and counts plies;
//! variations are skipped by the reader. No legality check is made: variant
//! games (crazyhouse drops, antichess, Chess960) are real games of the user
//! and must be stored, and a standard-chess check would reject them.

use std::ops::ControlFlow;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use pgn_reader::{RawTag, Reader, SanPlus, Visitor};

use crate::Platform;

/// One game ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct GameRow {
    /// The provider's id (lichess: 8 characters; chess.com: `live/N` or `daily/N`, the kind and number of the game URL).
    pub provider_game_id: String,
    /// When the game was played (its start, UTC), when the PGN says.
    pub played_at: Option<DateTime<Utc>>,
    /// When it ended: `EndDate`/`EndTime` (chess.com), else `played_at`. Orders the games of a
    /// chess.com month; not stored.
    pub ended_at: Option<DateTime<Utc>>,
    /// White's name.
    pub white: Option<String>,
    /// Black's name.
    pub black: Option<String>,
    /// White's rating.
    pub white_elo: Option<i32>,
    /// Black's rating.
    pub black_elo: Option<i32>,
    /// `1-0`, `0-1`, `1/2-1/2` or `*`.
    pub result: Option<String>,
    /// As the provider writes it (`180+0`, `1/259200`).
    pub time_control: Option<String>,
    /// ECO code.
    pub eco: Option<String>,
    /// Opening name.
    pub opening: Option<String>,
    /// Why the game ended.
    pub termination: Option<String>,
    /// The variant (`Standard` when the PGN does not say).
    pub variant: String,
    /// Half-moves in the main line.
    pub ply_count: i32,
    /// The game's PGN as received, its line endings normalised to LF (a CRLF export stores as LF).
    pub pgn: String,
}

/// Why a game was skipped; counted in `games_failed_parse`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseFailure {
    /// pgn-reader could not read it (an unterminated tag or comment).
    #[error("unreadable PGN: {0}")]
    Unreadable(String),
    /// No tags at all.
    #[error("no tag section")]
    NoTags,
    /// No tag gives the provider's game id.
    #[error("no game id in the tags")]
    NoGameId,
    /// Larger than any real game.
    #[error("game larger than the size limit")]
    Oversized,
}

#[derive(Default)]
struct Tags {
    any: bool,
    game_id: Option<String>,
    site: Option<String>,
    link: Option<String>,
    utc_date: Option<String>,
    utc_time: Option<String>,
    end_date: Option<String>,
    end_time: Option<String>,
    date: Option<String>,
    white: Option<String>,
    black: Option<String>,
    white_elo: Option<i32>,
    black_elo: Option<i32>,
    result: Option<String>,
    time_control: Option<String>,
    eco: Option<String>,
    opening: Option<String>,
    termination: Option<String>,
    variant: Option<String>,
}

struct RowVisitor;

fn text(value: &RawTag<'_>) -> Option<String> {
    let s = value.decode_utf8_lossy();
    let s = s.trim();
    (!s.is_empty() && s != "?").then(|| s.to_string())
}

/// A game's tags and its plies counted so far: the visitor's state through the movetext.
struct Movetext {
    tags: Tags,
    plies: i32,
}

impl Visitor for RowVisitor {
    type Tags = Tags;
    type Movetext = Movetext;
    type Output = Movetext;

    fn begin_tags(&mut self) -> ControlFlow<Self::Output, Self::Tags> {
        ControlFlow::Continue(Tags::default())
    }

    fn tag(&mut self, tags: &mut Tags, name: &[u8], value: RawTag<'_>) -> ControlFlow<Self::Output> {
        tags.any = true;
        let slot = match name {
            b"GameId" => &mut tags.game_id,
            b"Site" => &mut tags.site,
            b"Link" => &mut tags.link,
            b"UTCDate" => &mut tags.utc_date,
            b"UTCTime" => &mut tags.utc_time,
            b"EndDate" => &mut tags.end_date,
            b"EndTime" => &mut tags.end_time,
            b"Date" => &mut tags.date,
            b"White" => &mut tags.white,
            b"Black" => &mut tags.black,
            b"Result" => &mut tags.result,
            b"TimeControl" => &mut tags.time_control,
            b"ECO" => &mut tags.eco,
            b"Opening" => &mut tags.opening,
            b"Termination" => &mut tags.termination,
            b"Variant" => &mut tags.variant,
            b"WhiteElo" => {
                tags.white_elo = text(&value).and_then(|s| s.parse().ok());
                return ControlFlow::Continue(());
            }
            b"BlackElo" => {
                tags.black_elo = text(&value).and_then(|s| s.parse().ok());
                return ControlFlow::Continue(());
            }
            _ => return ControlFlow::Continue(()),
        };
        *slot = text(&value);
        ControlFlow::Continue(())
    }

    fn begin_movetext(&mut self, tags: Tags) -> ControlFlow<Self::Output, Self::Movetext> {
        ControlFlow::Continue(Movetext { tags, plies: 0 })
    }

    fn san(&mut self, movetext: &mut Self::Movetext, _san: SanPlus) -> ControlFlow<Self::Output> {
        movetext.plies += 1;
        ControlFlow::Continue(())
    }

    fn end_game(&mut self, movetext: Self::Movetext) -> Self::Output {
        movetext
    }
}

fn last_path_segment(url: &str) -> Option<&str> {
    let url = url.split(['?', '#']).next()?.trim_end_matches('/');
    url.rsplit('/')
        .next()
        .filter(|s| !s.is_empty() && !s.contains(':'))
}

/// The provider's id of a game, from the tags each provider writes.
fn game_id(platform: Platform, tags: &Tags) -> Option<String> {
    match platform {
        Platform::Lichess => tags
            .game_id
            .clone()
            .or_else(|| {
                tags.site
                    .as_deref()
                    .and_then(last_path_segment)
                    .map(str::to_string)
            })
            .filter(|id| id.len() == 8 && id.bytes().all(|b| b.is_ascii_alphanumeric())),
        Platform::ChessCom => [tags.link.as_deref(), tags.site.as_deref()]
            .into_iter()
            .flatten()
            .find_map(crate::game_key::chess_com_key),
    }
}

fn date_time(date: Option<&str>, time: Option<&str>) -> Option<DateTime<Utc>> {
    let date = NaiveDate::parse_from_str(date?, "%Y.%m.%d").ok()?;
    let time = time
        .and_then(|t| NaiveTime::parse_from_str(t, "%H:%M:%S").ok())
        .unwrap_or_default();
    Some(date.and_time(time).and_utc())
}

fn played_at(tags: &Tags) -> Option<DateTime<Utc>> {
    date_time(
        tags.utc_date.as_deref().or(tags.date.as_deref()),
        tags.utc_time.as_deref(),
    )
}

/// LF line endings: chess.com has served months with CRLF, and the same game must be the same
/// bytes whichever way it arrived.
fn normalise_line_endings(pgn: std::borrow::Cow<'_, str>) -> String {
    if pgn.contains('\r') {
        pgn.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        pgn.into_owned()
    }
}

/// Parses one framed game of `platform` into a row, or says why it cannot be stored.
pub fn parse_game(platform: Platform, bytes: &[u8]) -> Result<GameRow, ParseFailure> {
    let mut reader = Reader::new(bytes);
    let Movetext {
        tags,
        plies: ply_count,
    } = match reader.read_game(&mut RowVisitor) {
        Ok(Some(out)) => out,
        Ok(None) => return Err(ParseFailure::NoTags),
        Err(e) => return Err(ParseFailure::Unreadable(e.to_string())),
    };
    if !tags.any {
        return Err(ParseFailure::NoTags);
    }
    let provider_game_id = game_id(platform, &tags).ok_or(ParseFailure::NoGameId)?;
    let pgn = normalise_line_endings(String::from_utf8_lossy(bytes.trim_ascii()));
    let played_at = played_at(&tags);
    Ok(GameRow {
        provider_game_id,
        played_at,
        ended_at: date_time(tags.end_date.as_deref(), tags.end_time.as_deref()).or(played_at),
        white: tags.white,
        black: tags.black,
        white_elo: tags.white_elo,
        black_elo: tags.black_elo,
        result: tags.result,
        time_control: tags.time_control,
        eco: tags.eco,
        opening: tags.opening,
        termination: tags.termination,
        variant: tags.variant.unwrap_or_else(|| "Standard".to_string()),
        ply_count,
        pgn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LICHESS: &str = r#"[Event "rated blitz game"]
[Site "https://lichess.org/fY44h4OY"]
[Date "2018.03.29"]
[White "pveldman"]
[Black "A \"B\" C"]
[Result "1-0"]
[GameId "fY44h4OY"]
[UTCDate "2018.03.29"]
[UTCTime "01:38:15"]
[WhiteElo "1610"]
[BlackElo "?"]
[Variant "Standard"]
[TimeControl "180+0"]
[ECO "C62"]
[Opening "Ruy Lopez: Steinitz Defense"]
[Termination "Normal"]

1. e4 { [%clk 0:03:00] } e5 { [%clk 0:03:00] } 2. Nf3 { [%eval 0.17] [%clk 0:02:59] } (2. f4 exf4) 2... d6 $1 3. Bb5+ 1-0
"#;

    #[test]
    fn lichess_game_becomes_a_row() {
        let row = parse_game(Platform::Lichess, LICHESS.as_bytes()).unwrap();
        assert_eq!(row.provider_game_id, "fY44h4OY");
        assert_eq!(row.played_at.unwrap().to_rfc3339(), "2018-03-29T01:38:15+00:00");
        assert_eq!(row.black.as_deref(), Some("A \"B\" C"));
        assert_eq!(row.white_elo, Some(1610));
        assert_eq!(row.black_elo, None);
        assert_eq!(row.ply_count, 5, "variations are not counted");
        assert_eq!(row.result.as_deref(), Some("1-0"));
        assert_eq!(row.opening.as_deref(), Some("Ruy Lopez: Steinitz Defense"));
    }

    #[test]
    fn chess_com_id_comes_from_link() {
        let pgn = "[Event \"Live Chess\"]\n[Site \"Chess.com\"]\n[UTCDate \"2024.01.02\"]\n[UTCTime \"10:00:00\"]\n[Link \"https://www.chess.com/game/live/4814018950\"]\n\n1. e4 {[%clk 0:25:02.6]} 1... e5 {[%clk 0:25:06.8]} 0-1\n";
        let row = parse_game(Platform::ChessCom, pgn.as_bytes()).unwrap();
        assert_eq!(row.provider_game_id, "live/4814018950");
        assert_eq!(row.ply_count, 2);
    }

    /// Every game of a case file, framed by the splitter as a stream would be.
    fn rows_of(platform: Platform, file: &[u8]) -> Vec<GameRow> {
        let mut splitter = crate::pgn::Splitter::new();
        // In small pieces, as a network delivers them.
        for chunk in file.chunks(7) {
            splitter.push(chunk);
        }
        splitter.finish();
        std::iter::from_fn(|| splitter.next_game())
            .map(|framed| match framed {
                crate::pgn::Framed::Game(bytes) => parse_game(platform, &bytes).expect("parses"),
                crate::pgn::Framed::Oversized => panic!("oversized"),
            })
            .collect()
    }

    fn case(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/data/cases/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn reported_shapes_give_their_right_values() {
        let zh = rows_of(Platform::Lichess, &case("lichess-crazyhouse-pawn-drops.pgn"));
        assert_eq!(
            zh.iter()
                .map(|r| (r.provider_game_id.as_str(), r.variant.as_str(), r.ply_count))
                .collect::<Vec<_>>(),
            [("zH4pUt7q", "Crazyhouse", 35)]
        );
        let cc_zh = rows_of(
            Platform::ChessCom,
            &case("chesscom-crazyhouse-bare-pawn-drop.pgn"),
        );
        assert_eq!(
            cc_zh
                .iter()
                .map(|r| (r.provider_game_id.as_str(), r.ply_count))
                .collect::<Vec<_>>(),
            [("live/145023877113", 32)],
            "the bare pawn drop @f2+ is a ply"
        );
        let rk = rows_of(Platform::Lichess, &case("lichess-racing-kings-standard-fen.pgn"));
        assert_eq!(
            rk.iter()
                .map(|r| (r.provider_game_id.as_str(), r.ply_count))
                .collect::<Vec<_>>(),
            [("rKq9Tz2m", 11)]
        );
        let ai = rows_of(Platform::Lichess, &case("lichess-ai-opponent.pgn"));
        assert_eq!(ai.len(), 1);
        assert_eq!(
            (ai[0].white_elo, ai[0].time_control.as_deref()),
            (None, Some("-"))
        );
        let pair = rows_of(
            Platform::ChessCom,
            &case("chesscom-live-and-daily-same-number.pgn"),
        );
        assert_eq!(
            pair.iter()
                .map(|r| (r.provider_game_id.as_str(), r.ply_count))
                .collect::<Vec<_>>(),
            [("daily/412345678", 22), ("live/412345678", 24)]
        );
        let query = rows_of(Platform::ChessCom, &case("chesscom-link-with-query.pgn"));
        assert_eq!(query[0].provider_game_id, "daily/412345678");
        let repeated = rows_of(Platform::Lichess, &case("lichess-repeated-game.pgn"));
        let ids: std::collections::HashSet<&str> =
            repeated.iter().map(|r| r.provider_game_id.as_str()).collect();
        assert_eq!(
            (repeated.len(), ids.len()),
            (6, 4),
            "six games in the export, four distinct"
        );
    }

    #[test]
    fn crlf_is_stored_as_lf_and_equals_the_lf_file() {
        let crlf = case("chesscom-crlf.pgn");
        assert!(crlf.windows(2).any(|w| w == b"\r\n"), "the case has CRLF");
        let lf: Vec<u8> = String::from_utf8_lossy(&crlf).replace("\r\n", "\n").into_bytes();
        let (a, b) = (
            rows_of(Platform::ChessCom, &crlf),
            rows_of(Platform::ChessCom, &lf),
        );
        assert_eq!(a.len(), 2);
        assert_eq!(a, b, "the same games whichever line endings they came with");
        for row in &a {
            let fields = [
                Some(row.pgn.as_str()),
                row.white.as_deref(),
                row.black.as_deref(),
                row.result.as_deref(),
                row.time_control.as_deref(),
                row.eco.as_deref(),
                row.termination.as_deref(),
            ];
            assert!(fields.iter().flatten().all(|f| !f.contains('\r')), "{row:?}");
        }
    }

    #[test]
    fn failures_are_told_apart() {
        assert_eq!(
            parse_game(Platform::Lichess, b"1. e4 *\n"),
            Err(ParseFailure::NoTags)
        );
        assert_eq!(
            parse_game(Platform::Lichess, b"[Event \"x\"]\n\n1. e4 *\n"),
            Err(ParseFailure::NoGameId)
        );
        assert!(matches!(
            parse_game(
                Platform::Lichess,
                b"[Event \"x\"]\n[GameId \"abcdefgh\"]\n\n1. e4 { never closed"
            ),
            Err(ParseFailure::Unreadable(_))
        ));
    }

    #[test]
    fn variant_and_moveless_games_are_rows() {
        let zh = "[Event \"x\"]\n[Site \"https://lichess.org/R4GSdrpV\"]\n[Variant \"Crazyhouse\"]\n\n1. d4 d5 2. Nc3 N@g5 *\n";
        let row = parse_game(Platform::Lichess, zh.as_bytes()).unwrap();
        assert_eq!(
            (row.provider_game_id.as_str(), row.variant.as_str(), row.ply_count),
            ("R4GSdrpV", "Crazyhouse", 4)
        );
        let empty = "[Event \"x\"]\n[GameId \"abcdEFGH\"]\n[Result \"*\"]\n";
        assert_eq!(
            parse_game(Platform::Lichess, empty.as_bytes()).unwrap().ply_count,
            0
        );
    }
}
