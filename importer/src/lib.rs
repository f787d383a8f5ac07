//! The chess games importer: streams a user's games from lichess or
//! chess.com, parses them with pgn-reader, drops those already stored and
//! writes the rest in batches, with at most `MAX_CONCURRENT_IMPORTS` imports
//! at a time. See ARCHITECTURE.md for the map and the invariants.

pub mod config;
pub mod game_key;
pub mod http;
pub mod job;
pub mod metrics;
pub mod pgn;
pub mod pipeline;
pub mod retention;
pub mod scheduler;
pub mod spool;
pub mod store;
pub mod sync;
pub mod upstream;

pub use job::{Counters, Job, JobStatus, Platform};

// The allocator's name as a literal, so that `concat!` can put it in the version string.
#[cfg(feature = "jemalloc")]
macro_rules! allocator_name {
    () => {
        "jemalloc"
    };
}
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
macro_rules! allocator_name {
    () => {
        "mimalloc"
    };
}
#[cfg(not(any(feature = "jemalloc", feature = "mimalloc")))]
macro_rules! allocator_name {
    () => {
        "glibc"
    };
}

/// The memory allocator this binary was built with (`--features jemalloc|mimalloc`, else glibc's).
pub const ALLOCATOR: &str = allocator_name!();

#[cfg(feature = "hungry")]
macro_rules! build_note {
    () => {
        ", HUNGRY TEST BUILD: keeps every row of an import"
    };
}
#[cfg(not(feature = "hungry"))]
macro_rules! build_note {
    () => {
        ""
    };
}

#[cfg(feature = "heap-profile")]
macro_rules! profile_note {
    () => {
        ", heap profile at /debug/pprof/heap"
    };
}
#[cfg(not(feature = "heap-profile"))]
macro_rules! profile_note {
    () => {
        ""
    };
}

/// `--version`: the crate version and the allocator, which the harness checks before measuring,
/// whether the heap profile is built in, and a warning when this is the deliberately hungrier
/// test build.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (allocator: ",
    allocator_name!(),
    ")",
    profile_note!(),
    build_note!()
);
