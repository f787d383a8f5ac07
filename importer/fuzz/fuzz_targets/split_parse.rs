//! The path every upstream byte takes: the stream splitter, then the PGN parser.
//!
//! Beyond "no panic", it checks what the pipeline relies on: the games framed
//! do not depend on how the stream was cut into network chunks, no game is
//! larger than `MAX_GAME_BYTES`, and a parsed game has an id and a sane ply count.
#![no_main]

use importer::Platform;
use importer::pgn::{Framed, MAX_GAME_BYTES, Splitter, parse_game};
use libfuzzer_sys::fuzz_target;

fn frame(chunks: impl Iterator<Item = Vec<u8>>) -> Vec<Framed> {
    let mut splitter = Splitter::new();
    let mut out = Vec::new();
    for chunk in chunks {
        splitter.push(&chunk);
        while let Some(game) = splitter.next_game() {
            out.push(game);
        }
    }
    splitter.finish();
    while let Some(game) = splitter.next_game() {
        out.push(game);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the chunk size, the rest is the stream.
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let whole = frame(std::iter::once(stream.to_vec()));
    let size = usize::from(cut % 64) + 1;
    let chunked = frame(stream.chunks(size).map(<[u8]>::to_vec));
    assert_eq!(whole, chunked, "framing depends on chunk boundaries (chunk size {size})");
    for framed in &whole {
        let Framed::Game(bytes) = framed else { continue };
        assert!(bytes.len() <= MAX_GAME_BYTES);
        for platform in [Platform::Lichess, Platform::ChessCom] {
            if let Ok(row) = parse_game(platform, bytes) {
                assert!(!row.provider_game_id.is_empty(), "a stored game always has an id");
                assert!(row.ply_count >= 0);
                if let Ok(text) = std::str::from_utf8(bytes) {
                    assert_eq!(row.pgn, text.trim_ascii(), "the stored PGN is the game's own bytes");
                }
            }
        }
    }
});
