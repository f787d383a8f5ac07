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
pre{background:#f5f5f5;padding:1em}figure{margin:1.5em 0}figure svg{max-width:100%;height:auto;border:1px solid #ddd}";

/// A whole page: the Markdown, then each SVG inlined in a figure.
pub fn page(title: &str, markdown: &str, svgs: &[PathBuf]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(title)
    );
    out.push_str(&markdown_to_html(markdown));
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
    out.push_str("</body>\n</html>\n");
    out
}

/// Writes a run's page from its `summary.md` and plots (those that exist).
pub fn write_run(dir: &Path, title: &str) -> Result<(), Error> {
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap_or_default();
    let svgs: Vec<PathBuf> = [
        "capacity.svg",
        "queue.svg",
        "wait-vs-config.svg",
        "peak-vs-config.svg",
        "memory-timeline.svg",
    ]
    .iter()
    .map(|f| dir.join(f))
    .filter(|p| p.is_file())
    .collect();
    write_file(&dir.join("report.html"), page(title, &md, &svgs).as_bytes())
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
