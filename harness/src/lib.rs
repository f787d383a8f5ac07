//! The memory-budget harness: mock upstreams, the importer as a child
//! process, load, memory sampling, verification and reports.
//!
//! The harness never links the importer: it drives the real binary over HTTP,
//! exactly as a deploy would.

pub mod capacity;
pub mod cgroup;
pub mod compare;
pub mod db;
pub mod gate;
pub mod load;
pub mod mock;
pub mod observer;
pub mod recommend;
pub mod reference;
pub mod report;
pub mod results;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod target;
pub mod verify;
