//! The parsing path over the real PGN corpus (`importer/tests/data/real-pgn`), against pgn-reader's own count.

#[test]
fn every_real_pgn_file_goes_through_the_parsing_path() {
    use importer::pgn::{Framed, Splitter, parse_game};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/real-pgn");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "pgn") {
            continue;
        }
        files += 1;
        let bytes = std::fs::read(&path).expect("read");
        let mut splitter = Splitter::new();
        // Small chunks, as a network would deliver them.
        for chunk in bytes.chunks(97) {
            splitter.push(chunk);
        }
        splitter.finish();
        let (mut rows, mut failed) = (0, 0);
        while let Some(framed) = splitter.next_game() {
            let Framed::Game(game) = framed else {
                failed += 1;
                continue;
            };
            // Every game is a row or a counted failure with a reason, under either platform's rules.
            match parse_game(importer::Platform::Lichess, &game) {
                Ok(row) => {
                    rows += 1;
                    assert!(!row.pgn.is_empty());
                }
                Err(reason) => {
                    failed += 1;
                    assert!(!reason.to_string().is_empty());
                }
            }
        }
        let reference = pgn_reader_game_count(&bytes);
        assert_eq!(
            rows + failed,
            reference,
            "{}: every game accounted for",
            path.display()
        );
    }
    assert!(files >= 10, "corpus present");
}

#[test]
fn lichess_variant_games_from_the_corpus_become_rows() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/real-pgn");
    for (file, variant) in [
        ("knightvuillaume-jannlee-zh-lichess.pgn", "Crazyhouse"),
        ("saturs-jannlee-zh-lichess.pgn", "Crazyhouse"),
    ] {
        let bytes = std::fs::read(dir.join(file)).expect("read");
        let row = importer::pgn::parse_game(importer::Platform::Lichess, &bytes).expect(file);
        assert_eq!(row.variant, variant);
        assert!(row.ply_count > 10, "{file}: {} plies", row.ply_count);
    }
}

/// How many games pgn-reader itself finds reading the whole file at once: the oracle for the splitter.
fn pgn_reader_game_count(bytes: &[u8]) -> usize {
    use std::ops::ControlFlow;
    struct Count;
    impl pgn_reader::Visitor for Count {
        type Tags = ();
        type Movetext = ();
        type Output = ();
        fn begin_tags(&mut self) -> ControlFlow<(), ()> {
            ControlFlow::Continue(())
        }
        fn begin_movetext(&mut self, _: ()) -> ControlFlow<(), ()> {
            ControlFlow::Continue(())
        }
        fn end_game(&mut self, _: ()) {}
    }
    let mut reader = pgn_reader::Reader::new(bytes);
    let mut n = 0;
    while let Ok(Some(())) = reader.read_game(&mut Count) {
        n += 1;
    }
    n
}
