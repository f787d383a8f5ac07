//! Frames a PGN byte stream into whole games as the bytes arrive.
//!
//! The upstream sends a stream that may take minutes; we must hand each game
//! on as soon as it is whole and never hold the response. The splitter keeps
//! only the game being read (bounded by `MAX_GAME_BYTES`) and the games it
//! has finished but not yet handed out (at most those in one network chunk).
//!
//! A game ends where the next game's tag section starts: a tag line outside a
//! comment after movetext, or an `[Event` line once the game already has
//! tags (a game with no movetext at all). A blank line inside a tag section
//! does not end a game (ChessBase writes those). What is left when the stream
//! ends is the last game; a caller whose stream broke must call
//! [`Splitter::discard_partial`] instead of [`Splitter::finish`], so a half
//! game is never stored.

use std::collections::VecDeque;

/// A game larger than this is hostile or broken: it is dropped, and counted.
pub const MAX_GAME_BYTES: usize = 1 << 20;

/// What the splitter hands out.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// The bytes of one whole game.
    Game(Vec<u8>),
    /// A game that exceeded `MAX_GAME_BYTES` and was dropped.
    Oversized,
}

/// Incremental PGN game framer.
#[derive(Debug, Default)]
pub struct Splitter {
    line: Vec<u8>,
    game: Vec<u8>,
    ready: VecDeque<Framed>,
    has_tags: bool,
    has_movetext: bool,
    in_comment: bool,
    oversized: bool,
    at_stream_start: bool,
    started: bool,
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace())
}

fn is_tag_line(line: &[u8]) -> bool {
    let trimmed = line.trim_ascii_start();
    trimmed.first() == Some(&b'[') && trimmed.get(1).is_some_and(|b| b.is_ascii_alphabetic())
}

impl Splitter {
    /// A splitter at the start of a stream.
    pub fn new() -> Self {
        Splitter {
            at_stream_start: true,
            ..Default::default()
        }
    }

    /// Feeds bytes as they arrive; finished games become available from [`Splitter::next_game`].
    pub fn push(&mut self, mut bytes: &[u8]) {
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            if self.line.is_empty() {
                self.take_line_owned(&bytes[..=nl]);
            } else {
                self.line.extend_from_slice(&bytes[..=nl]);
                let line = std::mem::take(&mut self.line);
                self.take_line_owned(&line);
                self.line = line;
                self.line.clear();
            }
            bytes = &bytes[nl + 1..];
        }
        if !bytes.is_empty() {
            if self.line.len() + bytes.len() > MAX_GAME_BYTES {
                // A line longer than any game we accept: drop it, the game is oversized.
                self.oversized = true;
                self.line.clear();
            } else {
                self.line.extend_from_slice(bytes);
            }
        }
    }

    /// The next whole game, if one is ready.
    pub fn next_game(&mut self) -> Option<Framed> {
        self.ready.pop_front()
    }

    /// The stream ended cleanly: what remains is the last game.
    pub fn finish(&mut self) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.take_line_owned(&line);
        }
        self.end_game();
    }

    /// The stream broke: the game being read is incomplete and is thrown away.
    pub fn discard_partial(&mut self) {
        self.line.clear();
        self.game.clear();
        self.reset_game_state();
        self.at_stream_start = true;
    }

    fn reset_game_state(&mut self) {
        self.has_tags = false;
        self.has_movetext = false;
        self.in_comment = false;
        self.oversized = false;
        self.started = false;
    }

    fn end_game(&mut self) {
        if self.oversized {
            self.ready.push_back(Framed::Oversized);
        } else if self.started && !is_blank(&self.game) {
            let game = std::mem::take(&mut self.game);
            self.ready.push_back(Framed::Game(game));
        }
        self.game.clear();
        self.reset_game_state();
    }

    fn take_line_owned(&mut self, mut line: &[u8]) {
        if self.at_stream_start {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
            self.at_stream_start = false;
        }
        let blank = is_blank(line);
        let event = line.trim_ascii_start().starts_with(b"[Event \"");
        // An `[Event "` line inside an unclosed comment means the comment never
        // closed: end the broken game there rather than swallow the next one.
        if (!self.in_comment && is_tag_line(line)) || (self.in_comment && event) {
            let starts_new = self.in_comment || self.has_movetext || (self.has_tags && event);
            if starts_new {
                self.end_game();
            }
            self.has_tags = true;
        } else if !blank && line.first() != Some(&b'%') {
            self.has_movetext = true;
            self.track_comments(line);
        }
        if !blank || self.started {
            self.started = true;
            if self.oversized {
                return;
            }
            if self.game.len() + line.len() > MAX_GAME_BYTES {
                self.oversized = true;
                self.game = Vec::new();
                return;
            }
            self.game.extend_from_slice(line);
        }
    }

    fn track_comments(&mut self, line: &[u8]) {
        for &b in line {
            match (self.in_comment, b) {
                (false, b'{') => self.in_comment = true,
                (true, b'}') => self.in_comment = false,
                // A `;` comment runs to the end of the line; braces in it do not count.
                (false, b';') => return,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(input: &[u8], chunk: usize) -> Vec<Framed> {
        let mut s = Splitter::new();
        for part in input.chunks(chunk.max(1)) {
            s.push(part);
        }
        s.finish();
        std::iter::from_fn(|| s.next_game()).collect()
    }

    fn games(input: &[u8]) -> Vec<String> {
        split_all(input, 7)
            .into_iter()
            .map(|f| match f {
                Framed::Game(g) => String::from_utf8(g).unwrap(),
                Framed::Oversized => "<oversized>".into(),
            })
            .collect()
    }

    const TWO: &str = "[Event \"a\"]\n[Site \"x\"]\n\n1. e4 e5 1-0\n\n[Event \"b\"]\n\n1. d4 *\n\n";

    #[test]
    fn splits_games_at_the_next_tag_section_whatever_the_chunking() {
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let got: Vec<_> = split_all(TWO.as_bytes(), chunk);
            assert_eq!(got.len(), 2, "chunk {chunk}");
        }
        let g = games(TWO.as_bytes());
        assert!(g[0].starts_with("[Event \"a\"]") && g[0].contains("1. e4 e5 1-0"));
        assert!(g[1].starts_with("[Event \"b\"]") && g[1].contains("1. d4 *"));
    }

    #[test]
    fn blank_line_inside_tags_keeps_one_game() {
        let g = games(b"[Event \"a\"]\n\n[Date \"2017.12.04\"]\n\n1. e4 *\n");
        assert_eq!(g.len(), 1);
        assert!(g[0].contains("Date"));
    }

    #[test]
    fn game_without_movetext_is_its_own_game() {
        let g = games(b"[Event \"a\"]\n[Result \"*\"]\n\n[Event \"b\"]\n\n1. e4 *\n");
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn tag_right_after_result_without_blank_line_starts_a_game() {
        let g = games(b"[Event \"a\"]\n\n1. e4 0-1\n[Event \"b\"]\n\n1. d4 *\n");
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn bracket_lines_inside_a_comment_are_not_tags() {
        let g = games(b"[Event \"a\"]\n\n1. e4 { a comment\n[%clk 0:01:00] } e5 *\n");
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn unclosed_comment_does_not_swallow_the_next_game() {
        let g = games(b"[Event \"a\"]\n\n1. e4 { [%clk 0:0\n\n[Event \"b\"]\n\n1. d4 { [%clk 0:01:00] } *\n");
        assert_eq!(g.len(), 2);
        assert!(g[1].starts_with("[Event \"b\"]"));
    }

    #[test]
    fn bom_and_crlf_are_accepted() {
        let g = games(b"\xEF\xBB\xBF[Event \"a\"]\r\n\r\n1. e4 *\r\n\r\n[Event \"b\"]\r\n\r\n1. d4 *\r\n");
        assert_eq!(g.len(), 2);
        assert!(g[0].starts_with("[Event"));
    }

    #[test]
    fn broken_stream_discards_the_half_game() {
        let mut s = Splitter::new();
        s.push(b"[Event \"a\"]\n\n1. e4 e5 1-0\n\n[Event \"b\"]\n\n1. d4 d5 2. c");
        s.discard_partial();
        let got: Vec<_> = std::iter::from_fn(|| s.next_game()).collect();
        assert_eq!(got.len(), 1, "only the whole first game survives");
    }

    #[test]
    fn oversized_game_is_reported_and_the_next_one_survives() {
        let mut input = b"[Event \"a\"]\n\n1. e4 {".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_GAME_BYTES + 10));
        input.extend_from_slice(b"} *\n\n[Event \"b\"]\n\n1. d4 *\n");
        let got = split_all(&input, 4096);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Framed::Oversized);
        assert!(matches!(got[1], Framed::Game(_)));
    }

    #[test]
    fn leading_blank_lines_and_escape_lines_make_no_game() {
        assert!(games(b"\n\n\n").is_empty());
        let g = games(b"\n% escape\n[Event \"a\"]\n\n1. e4 *\n");
        assert_eq!(g.len(), 1);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Real exports of several shapes, one after the other: comments, variations, BOM, blank
        /// lines inside tag sections, CRLF.
        fn stream() -> Vec<u8> {
            let mut all = Vec::new();
            for pgn in [
                &include_bytes!("../../tests/data/real-pgn/chessbase-empty-line.pgn")[..],
                &include_bytes!("../../tests/data/real-pgn/kasparov-deep-blue-1997.pgn")[..],
                &include_bytes!("../../tests/data/real-pgn/knightvuillaume-jannlee-zh-lichess.pgn")[..],
                &include_bytes!("../../tests/data/real-pgn/stockfish-learning.pgn")[..],
                TWO.as_bytes(),
            ] {
                all.extend_from_slice(pgn);
                all.extend_from_slice(b"\n\n");
            }
            all
        }

        /// Cut points of a stream of `len` bytes: any number, anywhere.
        fn cuts(len: usize) -> impl Strategy<Value = Vec<usize>> {
            prop::collection::vec(0..=len, 0..40).prop_map(|mut v| {
                v.sort_unstable();
                v
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// However the network chunks a stream, the splitter hands out the same games.
            #[test]
            fn any_chunking_of_a_stream_gives_the_same_games(cut in cuts(stream().len())) {
                let bytes = stream();
                let whole = split_all(&bytes, bytes.len());
                let mut s = Splitter::new();
                let mut from = 0;
                for at in cut.into_iter().chain([bytes.len()]) {
                    s.push(&bytes[from..at]);
                    from = at;
                }
                s.finish();
                let chunked: Vec<Framed> = std::iter::from_fn(|| s.next_game()).collect();
                prop_assert!(whole.len() > 5, "the stream holds several games: {}", whole.len());
                prop_assert_eq!(chunked, whole);
            }
        }
    }
}
