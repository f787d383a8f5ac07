//! Resident memory of the importer, seen from outside.
//!
//! A thread samples the child's RSS with sysinfo every few milliseconds for
//! the timeline; at the end the kernel's own peak (`VmHWM`) is read from
//! `/proc/PID/status`, since sampling can miss a short spike. Neither bounds
//! the other: the kernel updates its high-water mark lazily (on unmap and
//! exit), so memory an allocator returns with `madvise` can peak unseen by
//! VmHWM while a sample catches it. The peak used is the larger of the two.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// One reading.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the cell's origin.
    pub t: f64,
    /// Resident set size in bytes.
    pub rss: u64,
}

/// A running sampler.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    /// Starts sampling `pid` every `every`, times measured from `origin`.
    pub fn start(pid: u32, origin: Instant, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let pid = Pid::from_u32(pid);
            let mut sys = System::new();
            let kind = ProcessRefreshKind::nothing().with_memory();
            let mut samples = Vec::with_capacity(8192);
            while !flag.load(Ordering::Relaxed) {
                sys.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, kind);
                match sys.process(pid) {
                    Some(p) => samples.push(Sample {
                        t: origin.elapsed().as_secs_f64(),
                        rss: p.memory(),
                    }),
                    None => break,
                }
                std::thread::sleep(every);
            }
            samples
        });
        Sampler { stop, handle }
    }

    /// Stops and returns every sample.
    pub fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// The kernel's peak resident size of `pid` (`VmHWM`), in bytes.
pub fn vm_hwm(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:").map(|k| k * 1024)
}

/// Current resident size of `pid` (`VmRSS`), in bytes.
pub fn vm_rss(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:").map(|k| k * 1024)
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Median of the samples whose time is in `[from, to)`.
pub fn median_rss(samples: &[Sample], from: f64, to: f64) -> Option<u64> {
    let mut v: Vec<u64> = samples
        .iter()
        .filter(|s| s.t >= from && s.t < to)
        .map(|s| s.rss)
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[v.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process_and_reads_its_peak() {
        let s = Sampler::start(std::process::id(), Instant::now(), Duration::from_millis(2));
        std::thread::sleep(Duration::from_millis(50));
        let samples = s.stop();
        assert!(samples.len() >= 5, "{} samples", samples.len());
        assert!(samples.iter().all(|x| x.rss > 0));
        let hwm = vm_hwm(std::process::id()).unwrap_or(0);
        assert!(hwm >= samples.iter().map(|x| x.rss).max().unwrap_or(0) / 2);
        assert!(median_rss(&samples, 0.0, 10.0).is_some());
    }
}
