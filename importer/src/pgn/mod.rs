//! PGN: framing a byte stream into games, and a game into a row.

mod parse;
mod split;

pub use parse::{GameRow, ParseFailure, parse_game};
pub use split::{Framed, MAX_GAME_BYTES, Splitter};
