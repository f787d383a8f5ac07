//! Parsing throughput: the importer's splitter + row parser against
//! pgn-reader's own reading (`harness::observe::parse_rate`, the yardstick the perf
//! scenarios use too) over the same bytes, so the ratio is measured in one run.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use harness::observe::parse_rate::read_all;
use harness::upstream::{MockUser, Platform as MockPlatform, games};
use importer::Platform;
use importer::pgn::{Framed, Splitter, parse_game};

/// Games in the stream: a large lichess export, as the upstream sends it.
const GAMES: u64 = 2_000;
/// Bytes per read from the network, as reqwest hands them over.
const CHUNK: usize = 16 * 1024;

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
    let bytes = games::export(
        &MockUser::new("bench_user", MockPlatform::Lichess, GAMES),
        42,
        GAMES,
    );
    assert_eq!(read_all(&bytes), GAMES, "pgn-reader reads every game");
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
        group.bench_function("pgn_reader_raw", |b| b.iter(|| read_all(black_box(&bytes))));
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
