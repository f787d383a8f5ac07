//! `report.html`: one self-contained page per run or compare.
//!
//! The page is built from the run's own Markdown (tables, headings, lists,
//! code blocks; the harness writes nothing else) and the plots' SVG inlined,
//! with inline CSS. It loads nothing: no script, stylesheet, font or image
//! from anywhere, so it opens from a CI artifact with no network.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{Error, write_file};

use super::escape;

/// The run's Markdown as HTML, by pulldown-cmark (CommonMark and tables). Raw HTML in the text
/// (a provider's error page quoted in a failure, say) is shown as text, never interpreted; a
/// table cell holding only ✓, ✗ or ⚠ gets the class that colours it.
pub fn markdown_to_html(md: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser};
    let events = Parser::new_ext(md, Options::ENABLE_TABLES).map(|e| match e {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        other => other,
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, events);
    for (mark, class) in [("✓", "ok"), ("✗", "bad"), ("⚠", "warn")] {
        out = out.replace(
            &format!("<td>{mark}</td>"),
            &format!("<td class=\"{class}\">{mark}</td>"),
        );
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:1500px}\
table{border-collapse:collapse;margin:1em 0;font-size:14px}\
th,td{border:1px solid #bbb;padding:4px 8px;text-align:right}\
th{background:#eee}td:first-child,th:first-child{text-align:left}\
td.ok{color:#080;font-weight:bold;text-align:center}td.bad{color:#c00;font-weight:bold;text-align:center}\
td.warn{color:#b60;font-weight:bold;text-align:center}\
pre{background:#f5f5f5;padding:1em}figure{margin:1.5em 0}figure svg{max-width:100%;height:auto;border:1px solid #ddd}\
#pictures{display:flex;flex-wrap:wrap;gap:1em}#pictures figure{flex:1 1 640px;margin:0}\
#glance li{font-size:16px;margin:.2em 0}details{margin:.5em 0}summary{font-weight:bold;cursor:pointer}";

/// A whole page, as a person reads it: the verdict (the Markdown's title and its lead, before
/// the first long table or `##` section), the few figures that answer the question (`glance`),
/// the pictures, then every detailed table folded in a `<details>` per section (as goose's and
/// k6's HTML reports do).
pub fn page(title: &str, markdown: &str, glance: &[String], svgs: &[PathBuf]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(title)
    );
    let (lead, sections) = split(markdown);
    out.push_str("<header id=\"verdict\">\n");
    out.push_str(&markdown_to_html(&lead));
    out.push_str("</header>\n");
    if !glance.is_empty() {
        out.push_str("<section id=\"glance\">\n<h2>At a glance</h2>\n<ul>\n");
        for line in glance {
            let _ = writeln!(out, "<li>{}</li>", escape(line));
        }
        out.push_str("</ul>\n</section>\n");
    }
    out.push_str("<section id=\"pictures\">\n");
    for svg in svgs {
        let Ok(text) = std::fs::read_to_string(svg) else {
            continue;
        };
        let name = svg
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Drop an XML declaration: inside HTML it is not allowed.
        let body = match text.find("<svg") {
            Some(i) => &text[i..],
            None => continue,
        };
        let _ = write!(
            out,
            "<figure>\n{body}\n<figcaption>{}</figcaption>\n</figure>\n",
            escape(&name)
        );
    }
    out.push_str("</section>\n<section id=\"details\">\n");
    for (heading, body) in sections {
        let _ = write!(
            out,
            "<details>\n<summary>{}</summary>\n{}</details>\n",
            escape(&heading),
            markdown_to_html(&body)
        );
    }
    out.push_str("</section>\n</body>\n</html>\n");
    out
}

/// Tables longer than this in the lead are folded with the details: the verdict stays on the
/// first screen.
const LEAD_TABLE_ROWS: usize = 8;

/// The Markdown's lead (before its first `##` section; a long table in it goes to the details as
/// "Cells") and its sections, each heading with its body. Code blocks are not split.
fn split(md: &str) -> (String, Vec<(String, String)>) {
    let (mut lead, mut sections): (String, Vec<(String, String)>) = (String::new(), Vec::new());
    let mut in_code = false;
    for line in md.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        match line.strip_prefix("## ") {
            Some(h) if !in_code => sections.push((h.trim().to_string(), String::new())),
            _ => {
                let target = match sections.last_mut() {
                    Some((_, body)) => body,
                    None => &mut lead,
                };
                target.push_str(line);
                target.push('\n');
            }
        }
    }
    let (mut kept, mut table, mut long) = (String::new(), String::new(), Vec::new());
    for line in lead.lines().chain(std::iter::once("")) {
        if line.starts_with('|') {
            table.push_str(line);
            table.push('\n');
            continue;
        }
        if table.lines().count() > LEAD_TABLE_ROWS + 2 {
            long.push(std::mem::take(&mut table));
        } else {
            kept.push_str(&std::mem::take(&mut table));
        }
        kept.push_str(line);
        kept.push('\n');
    }
    for (i, t) in long.into_iter().enumerate().rev() {
        let name = if i == 0 {
            "Cells".to_string()
        } else {
            format!("Cells ({})", i + 1)
        };
        sections.insert(0, (name, t));
    }
    (kept, sections)
}

/// Writes a run's page from its `summary.md`, the figures at a glance and the plots (those that
/// exist; the heap's flame graph first, as it answers "where").
pub fn write_run(dir: &Path, title: &str, glance: &[String]) -> Result<(), Error> {
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap_or_default();
    let svgs: Vec<PathBuf> = [
        super::heap::FLAME_SVG,
        "capacity.svg",
        "queue.svg",
        "wait-vs-config.svg",
        "peak-vs-config.svg",
        "memory-timeline.svg",
        super::heap::PEAK_FLAME_SVG,
    ]
    .iter()
    .map(|f| dir.join(f))
    .filter(|p| p.is_file())
    .collect();
    write_file(
        &dir.join("report.html"),
        page(title, &md, glance, &svgs).as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_headings_lists_and_escaping() {
        let html = markdown_to_html(
            "# T <x>\n\n| a | b |\n|---|---|\n| 1 | ✓ |\n\n- one\n- **two**\n\n```sh\nA=<1>\n```\n",
        );
        assert!(html.contains("<h1>T &lt;x&gt;</h1>"), "{html}");
        assert!(
            html.contains("<th>a</th>") && html.contains("<td class=\"ok\">✓</td>"),
            "{html}"
        );
        assert_eq!(html.matches("<td").count(), 2);
        assert!(html.contains("<li><strong>two</strong></li>"), "{html}");
        assert!(html.contains("A=&lt;1&gt;\n</code></pre>"), "{html}");
        // The report's third-level headings (e.g. "### Each user (first repeat)") are headings.
        assert!(markdown_to_html("### Each user\n").contains("<h3>Each user</h3>"));
        // Raw HTML in the text is text.
        let quoted = markdown_to_html("the provider said <script>alert(1)</script>\n");
        assert!(
            !quoted.contains("<script>") && quoted.contains("&lt;script&gt;"),
            "{quoted}"
        );
    }
}
