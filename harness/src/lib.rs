//! The memory-budget harness: mock upstreams, the importer as a child
//! process, load, memory sampling, verification and reports.
//!
//! The harness never links the importer: it drives the real binary over HTTP,
//! exactly as a deploy would.
//!
//! The modules stand in the order data flows through a run; each uses only
//! the ones before it (`tests/it/layout.rs` holds the tree to that):
//! `upstream` → `target` → `load` → `observe` → `verify` → `scenario` →
//! `session` → `analysis` → `report` → `cli`.

pub mod upstream;

pub mod target;

pub mod load;

pub mod observe;

pub mod verify;

pub mod scenario;

pub mod session;

pub mod analysis;

pub mod report;

pub mod cli;
