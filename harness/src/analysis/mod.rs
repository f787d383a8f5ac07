//! Decisions from measurements: pure functions from a run's results to a
//! verdict, a model or a comparison. Nothing here runs the importer or
//! writes a file; `cli` runs, `report` renders.

pub mod capacity;
pub mod compare;
pub mod gate;
pub mod heap;
pub mod queueing;
pub mod recommend;
pub mod replay;
pub mod stats;
pub mod wait;
