//! Parsing throughput: the importer's splitter + row parser against
//! pgn-reader's own reading (a visitor that only counts moves) over the same
//! bytes, so the ratio between the two is measured in one run.

use std::hint::black_box;
use std::ops::ControlFlow;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use harness::mock::{MockUser, Platform as MockPlatform, games};
use importer::Platform;
use importer::pgn::{Framed, Splitter, parse_game};
use pgn_reader::{RawTag, Reader, SanPlus, Visitor};

/// Games in the stream: a large lichess export, as the upstream sends it.
const GAMES: u64 = 2_000;
/// Bytes per read from the network, as reqwest hands them over.
const CHUNK: usize = 16 * 1024;

fn stream() -> Vec<u8> {
    let user = MockUser::new("bench_user", MockPlatform::Lichess, GAMES);
    let mut out = Vec::new();
    for i in 0..GAMES {
        out.extend_from_slice(games::generate(&user, 42, i).pgn.as_bytes());
        out.extend_from_slice(b"\n\n");
    }
    out
}

/// pgn-reader's fastest useful reading: tags and moves seen, nothing kept.
struct CountMoves;

impl Visitor for CountMoves {
    type Tags = ();
    type Movetext = u32;
    type Output = u32;

    fn begin_tags(&mut self) -> ControlFlow<u32, ()> {
        ControlFlow::Continue(())
    }
    fn tag(&mut self, _: &mut (), _: &[u8], _: RawTag<'_>) -> ControlFlow<u32> {
        ControlFlow::Continue(())
    }
    fn begin_movetext(&mut self, _: ()) -> ControlFlow<u32, u32> {
        ControlFlow::Continue(0)
    }
    fn san(&mut self, n: &mut u32, _: SanPlus) -> ControlFlow<u32> {
        *n += 1;
        ControlFlow::Continue(())
    }
    fn end_game(&mut self, n: u32) -> u32 {
        n
    }
}

fn pgn_reader_raw(bytes: &[u8]) -> u64 {
    let mut reader = Reader::new(bytes);
    let mut games = 0;
    while let Ok(Some(plies)) = reader.read_game(&mut CountMoves) {
        black_box(plies);
        games += 1;
    }
    games
}

fn importer_split_parse(bytes: &[u8]) -> u64 {
    let mut splitter = Splitter::new();
    let mut rows = 0;
    let mut take = |s: &mut Splitter| {
        while let Some(framed) = s.next_game() {
            if let Framed::Game(game) = framed
                && let Ok(row) = parse_game(Platform::Lichess, &game)
            {
                black_box(row);
                rows += 1;
            }
        }
    };
    for chunk in bytes.chunks(CHUNK) {
        splitter.push(chunk);
        take(&mut splitter);
    }
    splitter.finish();
    take(&mut splitter);
    rows
}

fn parse(c: &mut Criterion) {
    let bytes = stream();
    assert_eq!(pgn_reader_raw(&bytes), GAMES, "pgn-reader reads every game");
    assert_eq!(
        importer_split_parse(&bytes),
        GAMES,
        "the importer parses every game"
    );
    eprintln!(
        "stream: {GAMES} games, {} bytes ({:.0} bytes per game)",
        bytes.len(),
        bytes.len() as f64 / GAMES as f64
    );
    for (unit, throughput) in [
        ("games", Throughput::Elements(GAMES)),
        ("bytes", Throughput::Bytes(bytes.len() as u64)),
    ] {
        let mut group = c.benchmark_group(format!("parse_{unit}"));
        group.throughput(throughput);
        group.bench_function("pgn_reader_raw", |b| b.iter(|| pgn_reader_raw(black_box(&bytes))));
        group.bench_function("importer_split_parse", |b| {
            b.iter(|| importer_split_parse(black_box(&bytes)))
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = parse
}
criterion_main!(benches);
