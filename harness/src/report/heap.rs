//! "Where memory grew": heaptrack's sites in `summary.md`, the gate's terminal lines, and a
//! differential flame graph (inferno) that `report.html` inlines.

use std::fmt::Write as _;
use std::path::Path;

use super::table::Table;
use super::{Error, write_file};
use crate::analysis::heap::{self, Profile, Where};

/// The differential flame graph's file: the candidate's stacks, coloured by growth.
pub const FLAME_SVG: &str = "where-flamegraph.svg";
/// Sites shown.
const SHOWN: usize = 10;

fn kb(bytes: u64) -> String {
    format!("{:.0} KB", bytes as f64 / 1000.0)
}

fn signed_kb(bytes: i64) -> String {
    format!("{:+.0} KB", bytes as f64 / 1000.0)
}

/// The Markdown section.
pub fn markdown(w: &Where) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Where memory grew (heaptrack, cell {})\n", w.cell);
    let _ = writeln!(
        out,
        "One profiled run of each side under heaptrack: the bytes each allocation site held at the \
         peak heap ({} against, {} candidate). A site is the innermost line of the importer's own \
         code that asked for the memory. **Diagnostic only**: profiled runs are slower and carry \
         heaptrack's own memory, so none of their figures enters the verdict above.\n",
        kb(w.peak_heap.0),
        kb(w.peak_heap.1)
    );
    let grown: Vec<_> = w.grown().collect();
    if grown.is_empty() {
        let _ = writeln!(
            out,
            "No site grew above the profiler's noise ({}: the larger of {} and {:.0} % of the peak heap; \
             which buffers are alive at the peak varies from run to run).\n",
            kb(w.noise_bytes),
            kb(heap::NOISE_FLOOR_BYTES),
            heap::NOISE_SHARE * 100.0
        );
    } else {
        let _ = writeln!(
            out,
            "{} site(s) grew above the profiler's noise ({}: the larger of {} and {:.0} % of the peak heap).\n",
            grown.len(),
            kb(w.noise_bytes),
            kb(heap::NOISE_FLOOR_BYTES),
            heap::NOISE_SHARE * 100.0
        );
    }
    if w.page_cache_bytes > 0 {
        let _ = writeln!(
            out,
            "SQLite's page cache (`{}`) fills with the pages a run touches up to its configured size, \
             here {} (`SQLITE_CACHE_KIB` × the connections): its growth within that is noise too.\n",
            heap::PAGE_CACHE_FUNCTION,
            kb(w.page_cache_bytes)
        );
    }
    let mut table = Table::new(["#", "site", "file:line", "against", "candidate", "growth"]);
    for (i, s) in w.sites.iter().take(SHOWN).enumerate() {
        table.row([
            (i + 1).to_string(),
            format!("`{}`", s.function.replace('|', "\\|")),
            format!("`{}`", s.location),
            kb(s.against),
            kb(s.candidate),
            signed_kb(s.growth()),
        ]);
    }
    out.push_str(&table.to_string());
    let _ = writeln!(
        out,
        "\nThe flame graph below (`{FLAME_SVG}`) is the candidate's heap at its peak, width in bytes; \
         red frames grew against the other build, blue ones shrank. Each side's `heaptrack-1.data` \
         (in `where/cells/`) opens in `heaptrack --analyze`.\n"
    );
    out
}

/// One profile's flame graph file (`run --heap-profile`).
pub const PEAK_FLAME_SVG: &str = "heap-flamegraph.svg";

/// `run --heap-profile`: the largest sites of one profiled run of `cell`, its flame graph, added
/// to the run's `summary.md` and `report.html`.
pub fn write_run_section(
    dir: &Path,
    cell: &str,
    profile: &Profile,
    title: &str,
    glance: &[String],
) -> Result<Vec<String>, Error> {
    single_flame_graph(
        &dir.join(PEAK_FLAME_SVG),
        &format!("Heap at the peak, {cell}"),
        profile,
    )?;
    let mut sites: Vec<((String, String), u64)> = heap::sites(profile).into_iter().collect();
    sites.sort_by_key(|s| std::cmp::Reverse(s.1));
    let mut md = format!(
        "\n## Where the heap is at its peak (heaptrack, cell {cell})\n\n\
         One more run of the cell with the highest anonymous peak, under heaptrack: {} of heap at \
         the peak. **Diagnostic only**: that run is slower and carries heaptrack's own memory; \
         it is not among the runs above. A site is the innermost line of the importer's own code \
         that asked for the memory.\n\n",
        kb(profile.peak_heap)
    );
    let mut table = Table::new(["#", "site", "file:line", "bytes at the peak"]);
    let mut lines = vec![format!("heap at the peak ({cell}, heaptrack, diagnostic):")];
    for (i, ((function, location), bytes)) in sites.iter().take(SHOWN).enumerate() {
        table.row([
            (i + 1).to_string(),
            format!("`{}`", function.replace('|', "\\|")),
            format!("`{location}`"),
            kb(*bytes),
        ]);
        if i < 3 {
            lines.push(format!("  {}. {} {function} at {location}", i + 1, kb(*bytes)));
        }
    }
    md.push_str(&table.to_string());
    md.push_str(&format!(
        "\nThe flame graph `{PEAK_FLAME_SVG}` draws that heap, width in bytes.\n"
    ));
    let summary = dir.join("summary.md");
    let mut text = std::fs::read_to_string(&summary).unwrap_or_default();
    text.push_str(&md);
    write_file(&summary, text.as_bytes())?;
    let mut glance = glance.to_vec();
    glance.extend(lines.get(1).map(|l| format!("largest heap site at the peak:{l}")));
    super::html::write_run(dir, title, &glance)?;
    Ok(lines)
}

/// The gate's terminal lines: the top 3 sites.
pub fn terminal_lines(w: &Where) -> Vec<String> {
    let mut out = vec![format!(
        "where (heaptrack, {}; diagnostic, not in the verdict; noise {}):",
        w.cell,
        kb(w.noise_bytes)
    )];
    for (i, s) in w.sites.iter().take(3).enumerate() {
        let above = if w.above_noise(s) { "" } else { " (within noise)" };
        out.push(format!(
            "  {}. {} {} at {}: {} → {}{above}",
            i + 1,
            signed_kb(s.growth()),
            s.function,
            s.location,
            kb(s.against),
            kb(s.candidate)
        ));
    }
    out
}

/// inferno's SVG made static, as `report.html` must be (it runs and loads nothing): its script
/// element (left even with `no_javascript`: a few variables), the `onload` that calls it, and the
/// background gradient's `url(#…)` fill, made plain white.
fn static_svg(svg: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(svg).into_owned();
    if let (Some(start), Some(end)) = (text.find("<script"), text.find("</script>")) {
        text.replace_range(start..end + "</script>".len(), "");
    }
    text.replace(" onload=\"init(evt)\"", "")
        .replace("fill=\"url(#background)\"", "fill=\"#ffffff\"")
}

/// The differential flame graph of `candidate` against `against`, into `path`.
pub fn flame_graph(path: &Path, against: &Profile, candidate: &Profile) -> Result<(), Error> {
    let (before, after) = (heap::folded(against), heap::folded(candidate));
    let mut diff = Vec::new();
    inferno::differential::from_readers(
        inferno::differential::Options::default(),
        before.as_bytes(),
        after.as_bytes(),
        &mut diff,
    )
    .map_err(Error::Flame)?;
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = "Heap at the peak, candidate (width: bytes; red grew, blue shrank)".into();
    opts.count_name = "bytes".into();
    opts.no_javascript = true;
    opts.deterministic = true;
    opts.min_width = 0.5;
    opts.image_width = Some(1400);
    let mut svg = Vec::new();
    inferno::flamegraph::from_reader(&mut opts, diff.as_slice(), &mut svg).map_err(Error::Flame)?;
    write_file(path, static_svg(&svg).as_bytes())
}

/// The flame graph of one profile (`run --heap-profile`), into `path`.
pub fn single_flame_graph(path: &Path, title: &str, profile: &Profile) -> Result<(), Error> {
    let folded = heap::folded(profile);
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = format!("{title} (width: bytes at the peak heap)");
    opts.count_name = "bytes".into();
    opts.no_javascript = true;
    opts.deterministic = true;
    opts.min_width = 0.5;
    opts.image_width = Some(1400);
    opts.colors = inferno::flamegraph::Palette::Basic(inferno::flamegraph::color::BasicPalette::Mem);
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, folded.lines(), &mut svg).map_err(Error::Flame)?;
    write_file(path, static_svg(&svg).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::heap::{Frame, Trace};

    fn profile(bytes: u64) -> Profile {
        Profile {
            traces: vec![Trace {
                bytes,
                frames: vec![
                    Frame {
                        function: "alloc::alloc".into(),
                        location: None,
                    },
                    Frame {
                        function: "importer::pipeline::run".into(),
                        location: Some("importer/src/pipeline.rs:357".into()),
                    },
                    Frame {
                        function: "main".into(),
                        location: None,
                    },
                ],
            }],
            peak_heap: bytes,
        }
    }

    #[test]
    fn names_the_site_says_diagnostic_and_draws_an_svg_without_script() {
        let (a, b) = (profile(1_000_000), profile(3_000_000));
        let w = heap::compare("c3", &a, &b, 0);
        let md = markdown(&w);
        assert!(md.contains("importer/src/pipeline.rs:357"), "{md}");
        assert!(md.contains("Diagnostic only"), "{md}");
        assert!(md.contains("+2000 KB"), "{md}");
        let lines = terminal_lines(&w);
        assert!(lines[1].contains("importer::pipeline::run"), "{lines:?}");
        let dir = std::env::temp_dir().join(format!("harness-flame-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(FLAME_SVG);
        flame_graph(&path, &a, &b).expect("flame graph");
        let svg = std::fs::read_to_string(&path).expect("svg");
        assert!(
            svg.contains("<svg") && svg.contains("pipeline"),
            "an SVG naming the frames"
        );
        assert!(
            !svg.contains("<script"),
            "no script: report.html loads and runs nothing"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
