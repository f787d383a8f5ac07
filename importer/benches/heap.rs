//! Where an import's heap goes, stage by stage: a counting allocator records
//! the peak and the number of allocations of each stage of the pipeline
//! (framing, parsing, one batch held, one batch written to SQLite), over the
//! same 2,000 synthetic lichess games. `make bench` prints the table.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use harness::upstream::{MockUser, Platform as MockPlatform, games};
use importer::pgn::{Framed, GameRow, Splitter, parse_game};
use importer::store::{Store, StoreOptions};
use importer::{Counters, Platform};

mod support;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout, as GlobalAlloc requires of the caller.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let now = if new_size >= layout.size() {
            CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size()
        } else {
            CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed) - (layout.size() - new_size)
        };
        PEAK.fetch_max(now, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What one stage cost: heap above what was live before it, and allocations.
struct Cost {
    peak: usize,
    allocations: usize,
}

fn measure<T>(stage: impl FnOnce() -> T) -> (T, Cost) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    let out = stage();
    let cost = Cost {
        peak: PEAK.load(Ordering::Relaxed) - base,
        allocations: ALLOCATIONS.load(Ordering::Relaxed) - allocations,
    };
    (out, cost)
}

const GAMES: u64 = 2_000;
const CHUNK: usize = 16 * 1024;
const BATCH: usize = 50;

fn main() {
    let stream = games::export(
        &MockUser::new("heap_user", MockPlatform::Lichess, GAMES),
        42,
        GAMES,
    );
    let per_game = stream.len() / GAMES as usize;

    let (framed, framing) = measure(|| {
        let mut splitter = Splitter::new();
        let mut n = 0;
        for chunk in stream.chunks(CHUNK) {
            splitter.push(chunk);
            while let Some(Framed::Game(g)) = splitter.next_game() {
                std::hint::black_box(&g);
                n += 1;
            }
        }
        splitter.finish();
        while splitter.next_game().is_some() {
            n += 1;
        }
        n
    });
    assert_eq!(framed, GAMES);

    let mut splitter = Splitter::new();
    splitter.push(&stream);
    splitter.finish();
    let mut framed_games = Vec::new();
    while let Some(Framed::Game(g)) = splitter.next_game() {
        framed_games.push(g);
    }
    let (parsed, parsing) = measure(|| {
        framed_games
            .iter()
            .filter(|g| parse_game(Platform::Lichess, g).is_ok())
            .count()
    });
    assert_eq!(parsed as u64, GAMES);

    let (rows, batch) = measure(|| {
        framed_games[..BATCH]
            .iter()
            .map(|g| parse_game(Platform::Lichess, g).expect("parses"))
            .collect::<Vec<GameRow>>()
    });

    let dir = std::env::temp_dir().join(format!("importer-heap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let url = format!("sqlite://{}", dir.join("heap.db").display());
    let (store, job) = rt.block_on(async {
        let options = StoreOptions {
            url,
            pool_size: 1,
            queue_pool_size: StoreOptions::default_queue_pool_size(),
            sqlite_cache_kib: 2000,
            transaction_pooler: false,
        };
        let store = Store::connect(&options).await.expect("sqlite");
        let job = support::claimed_job(&store, "heap", "heap_user").await;
        // One batch first, so that the measured one finds the connection and statements warm.
        store
            .insert_batch(&job, "heap", &rows[..1], &Counters::default(), chrono::Utc::now())
            .await
            .expect("warm-up insert");
        (store, job)
    });
    let fresh: Vec<GameRow> = rows[1..].to_vec();
    let (inserted, storing) = measure(|| {
        rt.block_on(store.insert_batch(&job, "heap", &fresh, &Counters::default(), chrono::Utc::now()))
            .expect("insert")
    });
    assert_eq!(inserted as usize, BATCH - 1);
    rt.block_on(store.close());
    let _ = std::fs::remove_dir_all(&dir);

    let kib = |b: usize| b as f64 / 1024.0;
    println!("Heap per stage, {GAMES} lichess games of {per_game} bytes on average, batch {BATCH}:\n");
    println!("| stage | peak heap above the start | allocations |");
    println!("|---|---|---|");
    println!(
        "| framing {GAMES} games from {} KiB chunks | {:.1} KiB | {:.1} per game |",
        CHUNK / 1024,
        kib(framing.peak),
        framing.allocations as f64 / GAMES as f64
    );
    println!(
        "| parsing {GAMES} games into rows, one at a time | {:.1} KiB | {:.1} per game |",
        kib(parsing.peak),
        parsing.allocations as f64 / GAMES as f64
    );
    println!(
        "| one batch of {BATCH} rows held | {:.1} KiB | {:.1} per row |",
        kib(batch.peak),
        batch.allocations as f64 / BATCH as f64
    );
    println!(
        "| writing {} rows to SQLite (one transaction) | {:.1} KiB | {:.1} per row |",
        BATCH - 1,
        kib(storing.peak),
        storing.allocations as f64 / (BATCH - 1) as f64
    );
}
