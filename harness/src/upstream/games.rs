//! Seeded synthetic games: legal (played by shakmaty), with each provider's
//! tags and clock comments, some evals, lengths from a few plies to 300+.
//!
//! A game is a pure function of (seed, user, index): nothing is stored, so a
//! user with 100,000 games costs no memory until a page of them is served,
//! and the same seed always gives the same bytes.

use std::fmt::Write;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use shakmaty::san::SanPlus;
use shakmaty::{Chess, Color, KnownOutcome, Outcome, Position};

use super::{MockUser, Platform};

/// The newest month any synthetic game is in ends here (2026-01-01T00:00:00Z).
pub const TIMELINE_END: i64 = 1_767_225_600;

/// A small, fast, reproducible generator (SplitMix64); its sequence never changes with a crate upgrade.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// FNV-1a, to turn a username (or any text) into seed bits.
pub(crate) fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// chess.com: whether game `index` is a daily (correspondence) game. Every tenth is, and it carries
/// the number of the live game before it: chess.com numbers live and daily games in two separate
/// sequences (chess-web-api#20), so a bare number is not a key.
pub fn is_daily(user: &MockUser, index: u64) -> bool {
    user.platform == Platform::ChessCom && index % 10 == 9
}

/// The key the importer stores game `index` of `user` under: lichess's id, chess.com's `live/N` or
/// `daily/N`. Unique per user.
pub fn stored_key(user: &MockUser, index: u64) -> String {
    match user.platform {
        Platform::Lichess => game_id(user, index),
        Platform::ChessCom => format!("{}/{}", chess_com_kind(user, index), game_id(user, index)),
    }
}

/// `live` or `daily`, as chess.com's game URLs say it.
pub fn chess_com_kind(user: &MockUser, index: u64) -> &'static str {
    if is_daily(user, index) { "daily" } else { "live" }
}

/// The provider's number or id of game `index` of `user`: on chess.com a daily game shares its
/// number with a live one; [`stored_key`] is unique.
pub fn game_id(user: &MockUser, index: u64) -> String {
    match user.platform {
        Platform::Lichess => {
            // 4 characters from the index (unique up to 14.7 M games), 4 from a hash.
            let mut h = hash(&user.name) ^ index.wrapping_mul(0x2545_F491_4F6C_DD1D);
            let mut i = index;
            let mut id = String::with_capacity(8);
            for _ in 0..4 {
                id.push(B62[(i % 62) as usize] as char);
                i /= 62;
            }
            for _ in 0..4 {
                id.push(B62[(h % 62) as usize] as char);
                h /= 62;
            }
            id
        }
        Platform::ChessCom => {
            let number = index - u64::from(is_daily(user, index));
            (10_000_000_000 + (hash(&user.name) % 1000) * 10_000_000 + number).to_string()
        }
    }
}

/// First second of the month `months_back` months before the newest (0 = December 2025).
fn month_start(months_back: u32) -> DateTime<Utc> {
    let total = 2025 * 12 + 11 - i64::from(months_back);
    let (y, m) = ((total / 12) as i32, (total % 12) as u32 + 1);
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn month_end(months_back: u32) -> DateTime<Utc> {
    if months_back == 0 {
        Utc.timestamp_opt(TIMELINE_END, 0).single().unwrap_or_default()
    } else {
        month_start(months_back - 1)
    }
}

/// Which month (0 = newest) game `index` is in: games spread evenly over the user's months.
pub fn month_of(user: &MockUser, index: u64) -> u32 {
    let months = u64::from(user.months.max(1));
    ((index * months) / user.games.max(1)) as u32
}

/// Indices of the games in month `months_back`, newest first.
pub fn indices_of_month(user: &MockUser, months_back: u32) -> std::ops::Range<u64> {
    let months = u64::from(user.months.max(1));
    let first = (u64::from(months_back) * user.games).div_ceil(months);
    let end = ((u64::from(months_back) + 1) * user.games)
        .div_ceil(months)
        .min(user.games);
    first..end
}

/// When game `index` started (unix seconds); strictly decreasing with the index.
pub fn created_at(user: &MockUser, index: u64) -> i64 {
    let m = month_of(user, index);
    let range = indices_of_month(user, m);
    let (start, end) = (month_start(m).timestamp(), month_end(m).timestamp());
    let n = (range.end - range.start) as i64;
    let k = (index - range.start) as i64;
    // Evenly inside the month, newest first, never two in the same second while room allows.
    end - (k + 1) * ((end - start) / (n + 1)).max(1)
}

/// The (year, month) of month `months_back`.
pub fn year_month(months_back: u32) -> (i32, u32) {
    let s = month_start(months_back);
    (s.year(), s.month())
}

/// One generated game.
#[derive(Debug, Clone)]
pub struct SyntheticGame {
    /// The provider's id.
    pub id: String,
    /// Start, unix seconds.
    pub created_at: i64,
    /// End, unix seconds.
    pub ended_at: i64,
    /// White's username.
    pub white: String,
    /// Black's username.
    pub black: String,
    /// White's rating.
    pub white_elo: u32,
    /// Black's rating.
    pub black_elo: u32,
    /// `1-0`, `0-1`, `1/2-1/2`.
    pub result: &'static str,
    /// Initial seconds and increment.
    pub clock: (u32, u32),
    /// Moves in SAN, space separated.
    pub moves: String,
    /// The full PGN as the provider writes it.
    pub pgn: String,
    /// Deliberately broken (unterminated comment), to test parse failures.
    pub malformed: bool,
}

const OPENINGS: &[(&str, &str)] = &[
    ("C62", "Ruy Lopez: Steinitz Defense"),
    ("B20", "Sicilian Defense"),
    ("D02", "Queen's Pawn Game: London System"),
    ("C00", "French Defense"),
    ("A00", "Van't Kruijs Opening"),
    ("B01", "Scandinavian Defense"),
];
const CLOCKS: &[(u32, u32)] = &[(60, 0), (180, 0), (180, 2), (300, 3), (600, 0), (900, 10)];

fn fmt_clock(out: &mut String, tenths: u64, with_tenths: bool) {
    let secs = tenths / 10;
    let _ = write!(out, "{}:{:02}:{:02}", secs / 3600, (secs / 60) % 60, secs % 60);
    if with_tenths {
        let _ = write!(out, ".{}", tenths % 10);
    }
}

/// The newest `count` games of `user` as one PGN export (each game followed by a blank line).
pub fn export(user: &MockUser, seed: u64, count: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..count.min(user.games) {
        out.extend_from_slice(generate(user, seed, i).pgn.as_bytes());
        out.extend_from_slice(b"\n\n");
    }
    out
}

/// Generates game `index` of `user`.
pub fn generate(user: &MockUser, seed: u64, index: u64) -> SyntheticGame {
    let mut rng = Rng::new(seed ^ hash(&user.name) ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let created = created_at(user, index);
    let opponent = format!("opponent{}", rng.below(500));
    let user_white = rng.below(2) == 0;
    let (white, black) = if user_white {
        (user.display_name(), opponent)
    } else {
        (opponent, user.display_name())
    };
    let (white_elo, black_elo) = (1200 + rng.below(1200) as u32, 1200 + rng.below(1200) as u32);
    let clock = CLOCKS[rng.below(CLOCKS.len() as u64) as usize];
    let (eco, opening) = OPENINGS[rng.below(OPENINGS.len() as u64) as usize];
    // Most games are 30-130 plies; one in twelve is long, up to 380.
    let target = if rng.below(12) == 0 {
        200 + rng.below(180)
    } else {
        30 + rng.below(100)
    };
    let with_evals = rng.below(4) == 0;
    let lichess = user.platform == Platform::Lichess;
    let mut played = play(&mut rng, clock, target, with_evals, lichess);
    let result = match played.pos.outcome() {
        Outcome::Known(KnownOutcome::Decisive { winner: Color::White }) => "1-0",
        Outcome::Known(KnownOutcome::Decisive { winner: Color::Black }) => "0-1",
        Outcome::Known(KnownOutcome::Draw) => "1/2-1/2",
        Outcome::Unknown => ["1-0", "0-1", "1/2-1/2"][rng.below(3) as usize],
    };
    let ended = created + i64::from(clock.0) * 2 / 3 + rng.below(120) as i64;
    let malformed = user.malformed.contains(&index);
    let header = Header {
        id: game_id(user, index),
        white: &white,
        black: &black,
        white_elo,
        black_elo,
        result,
        clock,
        eco,
        opening,
        start: Utc.timestamp_opt(created, 0).single().unwrap_or_default(),
        end: Utc.timestamp_opt(ended, 0).single().unwrap_or_default(),
    };
    let mut pgn = if lichess {
        lichess_tags(&header, index)
    } else {
        chess_com_tags(&header, user, index, &played.pos)
    };
    if malformed {
        // Cut inside a comment: pgn-reader reports an unterminated comment.
        let cut = played
            .movetext
            .find("[%clk")
            .map_or(played.movetext.len(), |i| i + 7);
        played.movetext.truncate(cut);
        pgn.push_str(&played.movetext);
        pgn.push('\n');
    } else {
        pgn.push_str(&played.movetext);
        pgn.push_str(result);
        pgn.push('\n');
    }
    SyntheticGame {
        id: header.id,
        created_at: created,
        ended_at: ended,
        white,
        black,
        white_elo,
        black_elo,
        result,
        clock,
        moves: played.moves,
        pgn,
        malformed,
    }
}

/// A game as played: its final position, its SAN moves, and its movetext with the provider's
/// clock comments (and, on lichess, evaluations).
struct Played {
    pos: Chess,
    moves: String,
    movetext: String,
}

/// Plays up to `target` random legal plies from the start, writing the movetext as `lichess` or
/// chess.com writes it.
fn play(rng: &mut Rng, clock: (u32, u32), target: u64, with_evals: bool, lichess: bool) -> Played {
    let mut pos = Chess::default();
    let mut moves = String::with_capacity(target as usize * 6);
    let mut movetext = String::with_capacity(target as usize * 30);
    let mut remaining = [u64::from(clock.0) * 10, u64::from(clock.0) * 10];
    let mut eval: i64 = 20;
    for ply in 0..target {
        let legal = pos.legal_moves();
        if legal.is_empty() {
            break;
        }
        let m = legal[rng.below(legal.len() as u64) as usize];
        let color = pos.turn();
        let san = SanPlus::from_move_and_play_unchecked(&mut pos, m);
        let side = usize::from(color == Color::Black);
        remaining[side] = remaining[side].saturating_sub(rng.below(80)) + u64::from(clock.1) * 10;
        if !moves.is_empty() {
            moves.push(' ');
        }
        let _ = write!(moves, "{san}");
        let number = ply / 2 + 1;
        if color == Color::White {
            let _ = write!(movetext, "{number}. ");
        } else if !lichess {
            let _ = write!(movetext, "{number}... ");
        }
        let _ = write!(movetext, "{san} ");
        if lichess {
            movetext.push_str("{ ");
            if with_evals {
                eval += rng.below(61) as i64 - 30;
                let _ = write!(movetext, "[%eval {:.2}] ", eval as f64 / 100.0);
            }
            movetext.push_str("[%clk ");
            fmt_clock(&mut movetext, remaining[side], false);
            movetext.push_str("] } ");
        } else {
            movetext.push_str("{[%clk ");
            fmt_clock(&mut movetext, remaining[side], true);
            movetext.push_str("]} ");
        }
    }
    Played { pos, moves, movetext }
}

/// What a game's tag pairs say, both providers.
struct Header<'a> {
    id: String,
    white: &'a str,
    black: &'a str,
    white_elo: u32,
    black_elo: u32,
    result: &'static str,
    clock: (u32, u32),
    eco: &'a str,
    opening: &'a str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl Header<'_> {
    /// The TimeControl tag's value: `600` or `180+2`.
    fn time_control(&self) -> String {
        match self.clock {
            (base, 0) => base.to_string(),
            (base, inc) => format!("{base}+{inc}"),
        }
    }
}

/// The tag pairs as lichess's export writes them, then the blank line.
fn lichess_tags(h: &Header, index: u64) -> String {
    format!(
        "[Event \"Rated {speed} game\"]\n[Site \"https://lichess.org/{id}\"]\n[Date \"{date}\"]\n[Round \"-\"]\n\
         [White \"{white}\"]\n[Black \"{black}\"]\n[Result \"{result}\"]\n[GameId \"{id}\"]\n\
         [UTCDate \"{date}\"]\n[UTCTime \"{time}\"]\n[WhiteElo \"{white_elo}\"]\n[BlackElo \"{black_elo}\"]\n\
         [WhiteRatingDiff \"+{d}\"]\n[BlackRatingDiff \"-{d}\"]\n[Variant \"Standard\"]\n[TimeControl \"{tc}\"]\n\
         [ECO \"{eco}\"]\n[Opening \"{opening}\"]\n[Termination \"Normal\"]\n\n",
        speed = speed(h.clock),
        id = h.id,
        date = h.start.format("%Y.%m.%d"),
        time = h.start.format("%H:%M:%S"),
        white = h.white,
        black = h.black,
        result = h.result,
        white_elo = h.white_elo,
        black_elo = h.black_elo,
        d = 1 + index % 15,
        tc = h.time_control(),
        eco = h.eco,
        opening = h.opening,
    )
}

/// The tag pairs as chess.com's monthly archive writes them, then the blank line.
fn chess_com_tags(h: &Header, user: &MockUser, index: u64, pos: &Chess) -> String {
    let termination = match h.result {
        "1-0" => format!("{} won by resignation", h.white),
        "0-1" => format!("{} won by resignation", h.black),
        _ => "Game drawn by agreement".to_string(),
    };
    format!(
        "[Event \"{event}\"]\n[Site \"Chess.com\"]\n[Date \"{date}\"]\n[Round \"-\"]\n[White \"{white}\"]\n\
         [Black \"{black}\"]\n[Result \"{result}\"]\n[CurrentPosition \"{fen}\"]\n[Timezone \"UTC\"]\n\
         [ECO \"{eco}\"]\n[ECOUrl \"https://www.chess.com/openings/{slug}\"]\n[UTCDate \"{date}\"]\n\
         [UTCTime \"{time}\"]\n[WhiteElo \"{white_elo}\"]\n[BlackElo \"{black_elo}\"]\n[TimeControl \"{tc}\"]\n\
         [Termination \"{termination}\"]\n[StartTime \"{time}\"]\n[EndDate \"{end_date}\"]\n[EndTime \"{end_time}\"]\n\
         [Link \"https://www.chess.com/game/{kind}/{id}\"]\n\n",
        event = if is_daily(user, index) {
            "Let's Play!"
        } else {
            "Live Chess"
        },
        date = h.start.format("%Y.%m.%d"),
        time = h.start.format("%H:%M:%S"),
        white = h.white,
        black = h.black,
        result = h.result,
        fen = shakmaty::fen::Fen::from_position(pos, shakmaty::EnPassantMode::Legal),
        eco = h.eco,
        slug = h.opening.replace([' ', ':', '\''], "-"),
        white_elo = h.white_elo,
        black_elo = h.black_elo,
        tc = h.time_control(),
        end_date = h.end.format("%Y.%m.%d"),
        end_time = h.end.format("%H:%M:%S"),
        kind = chess_com_kind(user, index),
        id = h.id,
    )
}

/// lichess's speed name for a clock.
pub fn speed(clock: (u32, u32)) -> &'static str {
    match clock.0 + 40 * clock.1 {
        0..=29 => "ultraBullet",
        30..=179 => "bullet",
        180..=479 => "blitz",
        480..=1499 => "rapid",
        _ => "classical",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(platform: Platform, games: u64, months: u32) -> MockUser {
        MockUser {
            months,
            ..MockUser::new("Alice_1", platform, games)
        }
    }

    #[test]
    fn same_seed_same_bytes_and_legal_games() {
        let u = user(Platform::Lichess, 100, 1);
        let a = generate(&u, 7, 42);
        let b = generate(&u, 7, 42);
        assert_eq!(a.pgn, b.pgn);
        assert_ne!(a.pgn, generate(&u, 8, 42).pgn);
        assert!(a.pgn.contains("[GameId \""));
        assert!(a.pgn.contains("[%clk "));
    }

    #[test]
    fn average_size_is_like_real_exports_and_lengths_spread() {
        let u = user(Platform::Lichess, 400, 1);
        let games: Vec<_> = (0..400).map(|i| generate(&u, 1, i)).collect();
        let avg = games.iter().map(|g| g.pgn.len()).sum::<usize>() / games.len();
        assert!((1800..=3500).contains(&avg), "average {avg} bytes");
        let longest = games
            .iter()
            .map(|g| g.moves.split(' ').count())
            .max()
            .unwrap_or(0);
        assert!(longest >= 300, "longest {longest} plies");
    }

    #[test]
    fn ids_are_unique_and_times_decrease() {
        for platform in [Platform::Lichess, Platform::ChessCom] {
            let u = user(platform, 3000, 15);
            let keys: std::collections::HashSet<_> = (0..3000).map(|i| stored_key(&u, i)).collect();
            assert_eq!(keys.len(), 3000);
            if platform == Platform::ChessCom {
                // Live and daily numbers overlap, as on chess.com: only the key is unique.
                assert_eq!(game_id(&u, 9), game_id(&u, 8));
                assert_eq!(stored_key(&u, 9), format!("daily/{}", game_id(&u, 8)));
            }
            assert!((1..3000).all(|i| created_at(&u, i) < created_at(&u, i - 1)));
            let months: std::collections::HashSet<_> = (0..3000).map(|i| month_of(&u, i)).collect();
            assert_eq!(months.len(), 15);
            let covered: u64 = (0..15).map(|m| indices_of_month(&u, m).count() as u64).sum();
            assert_eq!(covered, 3000);
            assert!((0..15).all(|m| indices_of_month(&u, m).all(|i| month_of(&u, i) == m)));
        }
    }
}
