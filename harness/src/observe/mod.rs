//! What the harness observes of the importer while it works: its RSS over
//! time and `VmHWM` (`sampler`), and, as a yardstick, how fast pgn-reader
//! alone reads the same games (`parse_rate`); the importer's own request
//! timings from its `/metrics` (`server_latency`); each user's wait and completion on
//! provider time (`timing`); what the binary's code is made of (`binary`). The cgroup's own peak is read
//! where the cgroup lives, in `target::cgroup`.

pub mod binary;
pub mod parse_rate;
pub mod sampler;
pub mod server_latency;
pub mod timing;

pub use sampler::{RssSplit, Sample, Sampler, median_anon, median_rss, rss_split, vm_hwm, vm_rss};

/// RSS over time of one cell run, with the moments imports started and ended.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// Cell label.
    pub label: String,
    /// 0-based repeat.
    pub repeat: u32,
    /// The samples.
    pub samples: Vec<Sample>,
    /// Seconds at which an import was posted or ended.
    pub marks: Vec<f64>,
}
