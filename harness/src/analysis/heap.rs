//! Where the heap grew: heaptrack's backtraces at the peak grouped into allocation sites, and two
//! profiles compared site by site (`gate --where`, `run --heap-profile`).
//!
//! A backtrace's **site** is the innermost frame of the measured program's own code (the crate
//! `importer`): the line that asked for the memory. Implementations of the standard library's
//! traits for its types (a derived `Clone`, `From`) are passed over: the caller chose to copy,
//! so the copy is the caller's. A backtrace with no frame of its own (SQLite's page cache, on a
//! worker thread of sqlx) takes its innermost frame that is not allocator plumbing.
//!
//! Everything here is diagnostic: profiled runs are slower and carry heaptrack's own memory, so
//! no figure of theirs reaches the gate's verdict.

use std::collections::BTreeMap;

/// The crate whose frames are sites.
pub const OWN_CRATE: &str = "importer";

/// A site must grow by at least this many bytes to stand out of the profiler's noise ...
pub const NOISE_FLOOR_BYTES: u64 = 128 * 1000;
/// ... and by at least this share of the larger peak heap: which buffers are alive at the peak
/// moment depends on how the imports overlapped, which varies from run to run.
pub const NOISE_SHARE: f64 = 0.10;

/// SQLite's page cache allocates its pages here. It fills, up to its configured size per
/// connection (`SQLITE_CACHE_KIB`), with the pages a run happens to touch, whatever the code: an
/// A/A pair of runs differed by one connection's whole cache (+512 KB). Its growth within that
/// bound is configuration, not a site that grew.
pub const PAGE_CACHE_FUNCTION: &str = "pcache1Alloc";

/// One frame of a backtrace, demangled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The function.
    pub function: String,
    /// `file:line` of the call in it, when the binary has line tables.
    pub location: Option<String>,
}

/// One backtrace and the bytes it held at the peak heap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// Bytes held at the peak.
    pub bytes: u64,
    /// Innermost first.
    pub frames: Vec<Frame>,
}

/// One process's profile: `heaptrack_print --print-peaks --merge-backtraces 0`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Every backtrace.
    pub traces: Vec<Trace>,
    /// The peak heap, heaptrack's "peak heap memory consumption".
    pub peak_heap: u64,
}

/// A site's bytes at the peak on each side.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SiteGrowth {
    /// The function.
    pub function: String,
    /// `file:line`, or the library it is in when the binary has no line tables.
    pub location: String,
    /// Bytes at the peak, the build compared against (or the only profile).
    pub against: u64,
    /// Bytes at the peak, the candidate.
    pub candidate: u64,
}

impl SiteGrowth {
    /// candidate − against.
    pub fn growth(&self) -> i64 {
        self.candidate as i64 - self.against as i64
    }
}

/// Two profiles compared.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Where {
    /// The cell profiled.
    pub cell: String,
    /// Sites by growth, largest first.
    pub sites: Vec<SiteGrowth>,
    /// The peak heaps, against and candidate.
    pub peak_heap: (u64, u64),
    /// Growth below this is the profiler's noise.
    pub noise_bytes: u64,
    /// The most SQLite's page cache may hold in the profiled runs, bytes (`SQLITE_CACHE_KIB` ×
    /// the connections; 0 on PostgreSQL): [`PAGE_CACHE_FUNCTION`]'s noise.
    #[serde(default)]
    pub page_cache_bytes: u64,
}

impl Where {
    /// The growth below which `site` is noise: [`Where::noise_bytes`], or for SQLite's page
    /// cache the larger of that and the cache's bound.
    pub fn noise_of(&self, site: &SiteGrowth) -> u64 {
        if site.function == PAGE_CACHE_FUNCTION {
            self.noise_bytes.max(self.page_cache_bytes)
        } else {
            self.noise_bytes
        }
    }

    /// Whether `site` grew above its noise.
    pub fn above_noise(&self, site: &SiteGrowth) -> bool {
        site.growth() > self.noise_of(site) as i64
    }

    /// The sites that grew above the noise, largest first.
    pub fn grown(&self) -> impl Iterator<Item = &SiteGrowth> {
        self.sites.iter().filter(|s| self.above_noise(s))
    }
}

/// `679.94K`, `3.59M`, `512B`: heaptrack prints decimal units (1K = 1000 bytes).
fn bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let scale = match unit {
        "" | "B" => 1.0,
        "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => return None,
    };
    number.parse::<f64>().ok().map(|n| (n * scale).round() as u64)
}

/// A symbol as people read it: Rust's v0 and legacy manglings demangled (heaptrack leaves the
/// legacy one half done: `Vec$LT$T$GT$::push::h0123…`), without the hash.
pub fn demangle(symbol: &str) -> String {
    if (symbol.starts_with("_R") || symbol.starts_with("_ZN"))
        && let Ok(d) = rustc_demangle::try_demangle(symbol)
    {
        return format!("{d:#}");
    }
    let mut s = symbol.to_string();
    if let Some(i) = s.rfind("::h")
        && s.len() - i == 19
        && s[i + 3..].chars().all(|c| c.is_ascii_hexdigit())
    {
        s.truncate(i);
    }
    if !s.contains('$') {
        return s;
    }
    let s = s.strip_prefix("_$").map_or(s.clone(), |r| format!("${r}"));
    let mut out = s.replace("..", "::");
    for (from, to) in [
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$C$", ","),
        ("$RF$", "&"),
        ("$BP$", "*"),
        ("$SP$", "@"),
        ("$LP$", "("),
        ("$RP$", ")"),
        ("$u20$", " "),
        ("$u27$", "'"),
        ("$u3b$", ";"),
        ("$u5b$", "["),
        ("$u5d$", "]"),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
        ("$u7e$", "~"),
        ("$u2b$", "+"),
        ("$u21$", "!"),
        ("$u22$", "\""),
    ] {
        out = out.replace(from, to);
    }
    out
}

/// A path shortened to what names it: `importer/src/pipeline.rs`, `sqlx-core-0.8.6/src/…`,
/// `library/alloc/src/vec/mod.rs`.
fn short_path(path: &str) -> String {
    for marker in ["/registry/src/", "/git/checkouts/"] {
        if let Some(i) = path.find(marker) {
            let rest = &path[i + marker.len()..];
            // index.crates.io-HASH/crate-1.2.3/src/… : the crate and its path.
            return rest.split_once('/').map_or(rest, |(_, r)| r).to_string();
        }
    }
    if let Some(i) = path.find("/library/") {
        return path[i + 1..].to_string();
    }
    for own in [
        format!("/{OWN_CRATE}/src/"),
        "/harness/src/".into(),
        "/settings/src/".into(),
    ] {
        if let Some(i) = path.find(&own) {
            return path[i + 1..].to_string();
        }
    }
    path.to_string()
}

/// Reads `heaptrack_print --print-peaks --merge-backtraces 0`'s text.
pub fn parse(text: &str) -> Profile {
    let mut profile = Profile::default();
    let mut in_peaks = false;
    for line in text.lines() {
        if line == "PEAK MEMORY CONSUMERS" {
            in_peaks = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("peak heap memory consumption: ") {
            profile.peak_heap = bytes(rest).unwrap_or(0);
            continue;
        }
        // The end of the peaks (the other sections are turned off): totals follow.
        if line.starts_with("total runtime") {
            in_peaks = false;
        }
        if !in_peaks {
            continue;
        }
        if let Some((amount, _)) = line.split_once(" peak memory consumed over ") {
            profile.traces.push(Trace {
                bytes: bytes(amount).unwrap_or(0),
                frames: Vec::new(),
            });
            continue;
        }
        let Some(trace) = profile.traces.last_mut() else {
            continue;
        };
        if let Some(at) = line.strip_prefix("    at ") {
            if let Some(f) = trace.frames.last_mut() {
                f.location = Some(match at.rsplit_once(':') {
                    Some((file, line)) => format!("{}:{line}", short_path(file)),
                    None => short_path(at),
                });
            }
        } else if line.starts_with("    in ") {
            // The module; the location says more when there is one.
        } else if let Some(f) = line.strip_prefix("  ")
            && !f.starts_with(' ')
            && !f.is_empty()
        {
            trace.frames.push(Frame {
                function: demangle(f.trim()),
                location: None,
            });
        }
    }
    profile.traces.retain(|t| t.bytes > 0);
    profile
}

/// Methods of the standard library's traits (`Clone`, `From`, `ToOwned`, `Default`): a frame
/// of the program's own code that is one of them (an inlined frame has only its short name) is
/// passed over, for its caller decided to copy or convert.
const TRAIT_METHODS: [&str; 6] = ["clone", "from", "into", "to_owned", "to_string", "default"];

/// A frame of the measured program's own code (by its symbol, or, for an inlined frame, which
/// has only a short name, by its file), not one of the standard library's traits it implements.
fn own(frame: &Frame) -> bool {
    let function = frame.function.as_str();
    let prefix = format!("{OWN_CRATE}::");
    let own_impl = format!("<{OWN_CRATE}::");
    let std_trait = [" as core::", " as alloc::", " as std::"]
        .iter()
        .any(|t| function.contains(t));
    let short = function.rsplit("::").next().unwrap_or(function);
    let short = short.split('<').next().unwrap_or(short);
    let own_file = frame
        .location
        .as_deref()
        .is_some_and(|l| l.starts_with(&format!("{OWN_CRATE}/src/")));
    let named_own = function.starts_with(&prefix) || function.starts_with(&own_impl);
    (named_own || own_file) && !std_trait && !TRAIT_METHODS.contains(&short)
}

/// Allocation plumbing: a site is never one of these.
fn plumbing(function: &str) -> bool {
    const PREFIXES: [&str; 20] = [
        "0x",
        "alloc::",
        "core::",
        "std::",
        "<alloc::",
        "<core::",
        "<std::",
        "hashbrown::",
        "<hashbrown::",
        "__rust",
        "__rdl",
        "__rg_",
        "malloc",
        "calloc",
        "realloc",
        "operator new",
        "sqlite3Malloc",
        "sqlite3Mem",
        "sqlite3DbMalloc",
        "sqlite3DbRealloc",
    ];
    PREFIXES.iter().any(|p| function.starts_with(p))
        || function.starts_with("dbMallocRaw")
        || function.starts_with("dbReallocFinish")
        || function.starts_with("sqlite3Realloc")
}

/// A backtrace's site: function and location.
pub fn site(trace: &Trace) -> (String, String) {
    let frame = trace
        .frames
        .iter()
        .find(|f| own(f))
        .or_else(|| trace.frames.iter().find(|f| !plumbing(&f.function)))
        .or_else(|| trace.frames.first());
    match frame {
        Some(f) => (
            f.function.clone(),
            f.location.clone().unwrap_or_else(|| "no line tables".into()),
        ),
        None => ("?".into(), "?".into()),
    }
}

/// Bytes at the peak per site.
pub fn sites(profile: &Profile) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for t in &profile.traces {
        *out.entry(site(t)).or_insert(0) += t.bytes;
    }
    out
}

/// The profiler's noise for two profiles: growth a site can show between two runs of the same
/// build ([`NOISE_FLOOR_BYTES`], [`NOISE_SHARE`] of the larger peak heap).
pub fn noise(against: &Profile, candidate: &Profile) -> u64 {
    let peak = against.peak_heap.max(candidate.peak_heap) as f64;
    NOISE_FLOOR_BYTES.max((peak * NOISE_SHARE) as u64)
}

/// The sites of `candidate` against those of `against`, largest growth first; `page_cache_bytes`
/// is the bound of SQLite's page cache in those runs ([`Where::page_cache_bytes`]).
pub fn compare(cell: &str, against: &Profile, candidate: &Profile, page_cache_bytes: u64) -> Where {
    let (a, b) = (sites(against), sites(candidate));
    let mut keys: Vec<&(String, String)> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out: Vec<SiteGrowth> = keys
        .into_iter()
        .map(|k| SiteGrowth {
            function: k.0.clone(),
            location: k.1.clone(),
            against: a.get(k).copied().unwrap_or(0),
            candidate: b.get(k).copied().unwrap_or(0),
        })
        .collect();
    out.sort_by(|x, y| y.growth().cmp(&x.growth()).then(y.candidate.cmp(&x.candidate)));
    Where {
        cell: cell.to_string(),
        sites: out,
        peak_heap: (against.peak_heap, candidate.peak_heap),
        noise_bytes: noise(against, candidate),
        page_cache_bytes,
    }
}

/// Brendan Gregg's folded stacks (outermost frame first, `;`-joined, then the bytes), what
/// `inferno` draws.
pub fn folded(profile: &Profile) -> String {
    let mut stacks: BTreeMap<String, u64> = BTreeMap::new();
    for t in &profile.traces {
        let names: Vec<String> = t
            .frames
            .iter()
            .rev()
            // inferno splits on ';' and takes the last space as the count's.
            .map(|f| f.function.replace(';', ",").replace(' ', "\u{a0}"))
            .collect();
        *stacks.entry(names.join(";")).or_insert(0) += t.bytes;
    }
    stacks
        .into_iter()
        .map(|(stack, n)| format!("{stack} {n}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEAKS: &str = "reading file \"x\" - please wait\n\nPEAK MEMORY CONSUMERS\n\
679.94K peak memory consumed over 3 calls from\n  0x55fbcd9c238e\n    in /tmp/importer\n  \
alloc::raw_vec::RawVecInner$LT$A$GT$::reserve::do_reserve_and_handle::h3651a71102e8e800\n    at /rustc/abc/library/alloc/src/raw_vec.rs:10\n    in /tmp/importer\n  \
<importer::pgn::GameRow as core::clone::Clone>::clone\n    at /work/x/importer/src/pgn.rs:40\n    in /tmp/importer\n  \
importer::pipeline::Batch::push\n    at /work/x/importer/src/pipeline.rs:357\n    in /tmp/importer\n  \
main\n    in /tmp/importer\n\n\
12.5K peak memory consumed over 2 calls from\n  sqlite3MemMalloc\n    in /tmp/importer\n  pcache1Alloc\n    in /tmp/importer\n\n\
0B peak memory consumed over 1 calls from\n  main\n    in /tmp/importer\n\n\n\
total runtime: 5.07s.\npeak heap memory consumption: 3.59M\n";

    #[test]
    fn parses_traces_units_and_the_peak() {
        let p = parse(PEAKS);
        assert_eq!(p.peak_heap, 3_590_000);
        assert_eq!(p.traces.len(), 2, "the empty trace is dropped");
        assert_eq!(p.traces[0].bytes, 679_940);
        assert_eq!(p.traces[0].frames.len(), 5);
        assert_eq!(
            p.traces[0].frames[1].function,
            "alloc::raw_vec::RawVecInner<A>::reserve::do_reserve_and_handle"
        );
        assert_eq!(
            p.traces[0].frames[1].location.as_deref(),
            Some("library/alloc/src/raw_vec.rs:10")
        );
    }

    #[test]
    fn a_site_is_the_own_caller_past_derived_traits_else_the_first_real_frame() {
        let p = parse(PEAKS);
        assert_eq!(
            site(&p.traces[0]),
            (
                "importer::pipeline::Batch::push".into(),
                "importer/src/pipeline.rs:357".into()
            )
        );
        assert_eq!(site(&p.traces[1]).0, "pcache1Alloc");
    }

    #[test]
    fn demangles_both_manglings_without_the_hash() {
        assert_eq!(
            demangle(
                "_$LT$tokio..signal..registry..EventInfo$u20$as$u20$core..default..Default$GT$::default::h744b2d3f77d086cb"
            ),
            "<tokio::signal::registry::EventInfo as core::default::Default>::default"
        );
        assert_eq!(
            demangle("_RNvNtCsjrHSEGnQ3l9_3std2rt19lang_start_internal"),
            "std::rt::lang_start_internal"
        );
        assert_eq!(demangle("pcache1Alloc"), "pcache1Alloc");
    }

    #[test]
    fn compares_sites_largest_growth_first_with_the_noise() {
        let a = parse(PEAKS);
        let mut b = a.clone();
        b.traces[1].bytes = 2_000_000;
        b.peak_heap = 5_000_000;
        let w = compare("c", &a, &b, 0);
        assert_eq!(w.sites[0].function, "pcache1Alloc");
        assert_eq!(w.sites[0].growth(), 2_000_000 - 12_500);
        assert_eq!(w.noise_bytes, 500_000);
        assert_eq!(w.grown().count(), 1);
        let same = compare("c", &a, &a, 0);
        assert_eq!(same.grown().count(), 0);
    }

    #[test]
    fn sqlite_s_page_cache_growing_within_its_bound_is_noise() {
        let a = parse(PEAKS);
        let mut b = a.clone();
        b.traces[1].bytes = 2_000_000;
        b.peak_heap = 5_000_000;
        // The cache may hold 3 MB: its +2 MB is the configuration's, not a site that grew.
        let w = compare("c", &a, &b, 3_000_000);
        assert_eq!(w.sites[0].function, PAGE_CACHE_FUNCTION);
        assert_eq!(w.noise_of(&w.sites[0]), 3_000_000);
        assert_eq!(w.grown().count(), 0);
        // Past its bound it counts.
        assert_eq!(compare("c", &a, &b, 1_000_000).grown().count(), 1);
    }

    #[test]
    fn folds_outermost_first() {
        let f = folded(&parse(PEAKS));
        assert!(f.contains("main;importer::pipeline::Batch::push;"), "{f}");
        assert!(f.contains("sqlite3MemMalloc 12500\n"), "{f}");
    }
}
