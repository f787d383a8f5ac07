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
