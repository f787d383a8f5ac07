//! The chess games importer: streams a user's games from lichess or
//! chess.com, parses them with pgn-reader, drops those already stored and
//! writes the rest in batches, with at most `MAX_CONCURRENT_IMPORTS` imports
//! at a time. See ARCHITECTURE.md for the map and the invariants.

pub mod config;
pub mod http;
pub mod job;
pub mod metrics;
pub mod pgn;
pub mod pipeline;
pub mod scheduler;
pub mod store;
pub mod upstream;

pub use job::{Counters, Job, JobStatus, Platform};

/// The memory allocator this binary was built with (`--features jemalloc|mimalloc`, else glibc's).
#[cfg(feature = "jemalloc")]
pub const ALLOCATOR: &str = "jemalloc";
/// The memory allocator this binary was built with (`--features jemalloc|mimalloc`, else glibc's).
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
pub const ALLOCATOR: &str = "mimalloc";
/// The memory allocator this binary was built with (`--features jemalloc|mimalloc`, else glibc's).
#[cfg(not(any(feature = "jemalloc", feature = "mimalloc")))]
pub const ALLOCATOR: &str = "glibc";

/// `--version`: the crate version and the allocator, which the harness checks before measuring.
pub const VERSION: &str = {
    #[cfg(feature = "jemalloc")]
    let v = concat!(env!("CARGO_PKG_VERSION"), " (allocator: jemalloc)");
    #[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
    let v = concat!(env!("CARGO_PKG_VERSION"), " (allocator: mimalloc)");
    #[cfg(not(any(feature = "jemalloc", feature = "mimalloc")))]
    let v = concat!(env!("CARGO_PKG_VERSION"), " (allocator: glibc)");
    v
};
