//! Resident memory of the importer, seen from outside.
//!
//! A thread samples the child's RSS with sysinfo every few milliseconds for
//! the timeline, and with each sample the kernel's split of it from
//! `/proc/PID/status` (as lading's observer reports each figure by name):
//! anonymous (`RssAnon`: the heap and stacks, what the code's behaviour
//! decides), file-backed (`RssFile`: mostly the binary's resident text, which
//! depends on how the page cache holds that file, not on the code) and shared
//! (`RssShmem`). The total is their sum; at the end the kernel's own peak (`VmHWM`) is read from
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
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the cell's origin.
    pub t: f64,
    /// Resident set size in bytes.
    pub rss: u64,
    /// Of which anonymous (`RssAnon`), bytes; 0 when it could not be read.
    #[serde(default)]
    pub anon: u64,
    /// Of which file-backed (`RssFile`), bytes.
    #[serde(default)]
    pub file: u64,
    /// Of which shared memory (`RssShmem`), bytes.
    #[serde(default)]
    pub shmem: u64,
}

/// The resident set of a process split as the kernel counts it (`/proc/PID/status`), bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RssSplit {
    /// `RssAnon`.
    pub anon: u64,
    /// `RssFile`.
    pub file: u64,
    /// `RssShmem`.
    pub shmem: u64,
}

/// `pid`'s resident set split into anonymous, file-backed and shared memory.
pub fn rss_split(pid: u32) -> Option<RssSplit> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(RssSplit {
        anon: field_kib(&status, "RssAnon:")? * 1024,
        file: field_kib(&status, "RssFile:")? * 1024,
        shmem: field_kib(&status, "RssShmem:")? * 1024,
    })
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
                    Some(p) => {
                        let split = rss_split(pid.as_u32()).unwrap_or_default();
                        samples.push(Sample {
                            t: origin.elapsed().as_secs_f64(),
                            rss: p.memory(),
                            anon: split.anon,
                            file: split.file,
                            shmem: split.shmem,
                        });
                    }
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
    field_kib(&status, field)
}

fn field_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Median RSS of the samples whose time is in `[from, to)`.
pub fn median_rss(samples: &[Sample], from: f64, to: f64) -> Option<u64> {
    median_of(samples, from, to, |s| s.rss)
}

/// Median anonymous memory of the samples whose time is in `[from, to)`.
pub fn median_anon(samples: &[Sample], from: f64, to: f64) -> Option<u64> {
    median_of(samples, from, to, |s| s.anon)
}

fn median_of(samples: &[Sample], from: f64, to: f64, figure: impl Fn(&Sample) -> u64) -> Option<u64> {
    let mut v: Vec<u64> = samples
        .iter()
        .filter(|s| s.t >= from && s.t < to)
        .map(figure)
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

    /// A child holding 30 MiB it wrote (anonymous, resident): the sampler's anonymous peak and a
    /// reading of `/proc/PID/status` taken from outside at the same moment agree within 5 %.
    #[test]
    fn the_sampled_anonymous_peak_is_what_the_kernel_says() {
        use std::io::BufRead;
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import time\nx = b'x' * (30 << 20)\nprint('ready', flush=True)\ntime.sleep(5)",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready");
        assert_eq!(line.trim(), "ready");
        let sampler = Sampler::start(child.id(), Instant::now(), Duration::from_millis(5));
        std::thread::sleep(Duration::from_millis(300));
        let outside = rss_split(child.id()).expect("status");
        let samples = sampler.stop();
        let _ = child.kill();
        let _ = child.wait();
        let peak_anon = samples.iter().map(|s| s.anon).max().unwrap_or(0);
        assert!(outside.anon >= 30 << 20, "{outside:?}");
        assert!(
            peak_anon.abs_diff(outside.anon) <= outside.anon / 20,
            "sampled {peak_anon}, outside {}",
            outside.anon
        );
    }

    #[test]
    fn samples_this_process_and_reads_its_peak() {
        let s = Sampler::start(std::process::id(), Instant::now(), Duration::from_millis(2));
        std::thread::sleep(Duration::from_millis(50));
        let samples = s.stop();
        assert!(samples.len() >= 5, "{} samples", samples.len());
        assert!(samples.iter().all(|x| x.rss > 0));
        // The kernel's split adds up to its total, read a moment apart (pages come and go).
        for x in &samples {
            assert!(x.anon > 0 && x.file > 0, "{x:?}");
            let sum = x.anon + x.file + x.shmem;
            assert!(sum.abs_diff(x.rss) < x.rss / 5, "{x:?}");
        }
        assert!(median_anon(&samples, 0.0, 10.0).is_some());
        let hwm = vm_hwm(std::process::id()).unwrap_or(0);
        assert!(hwm >= samples.iter().map(|x| x.rss).max().unwrap_or(0) / 2);
        assert!(median_rss(&samples, 0.0, 10.0).is_some());
    }
}
