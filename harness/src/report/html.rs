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

/// `**bold**` and `` `code` `` inside escaped text.
fn inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut bold = false;
    let mut code = false;
    let mut rest = escape(s);
    while !rest.is_empty() {
        if !code && rest.starts_with("**") {
            out.push_str(if bold { "</strong>" } else { "<strong>" });
            bold = !bold;
            rest.drain(..2);
        } else if rest.starts_with('`') {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
            rest.drain(..1);
        } else {
            let c = rest.remove(0);
            out.push(c);
        }
    }
    if code {
        out.push_str("</code>");
    }
    if bold {
        out.push_str("</strong>");
    }
    out
}

fn cells(line: &str) -> Vec<&str> {
    line.trim().trim_matches('|').split('|').map(str::trim).collect()
}

/// The subset of Markdown the harness writes, as HTML.
pub fn markdown_to_html(md: &str) -> String {
    let mut out = String::new();
    let mut lines = md.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_end();
        if let Some(h) = t.strip_prefix("## ") {
            let _ = writeln!(out, "<h2>{}</h2>", inline(h));
        } else if let Some(h) = t.strip_prefix("# ") {
            let _ = writeln!(out, "<h1>{}</h1>", inline(h));
        } else if t.starts_with("```") {
            out.push_str("<pre>");
            for l in lines.by_ref() {
                if l.trim_start().starts_with("```") {
                    break;
                }
                out.push_str(&escape(l));
                out.push('\n');
            }
            out.push_str("</pre>\n");
        } else if t.starts_with('|') {
            out.push_str("<table>\n<thead><tr>");
            for c in cells(t) {
                let _ = write!(out, "<th>{}</th>", inline(c));
            }
            out.push_str("</tr></thead>\n<tbody>\n");
            while let Some(next) = lines.peek() {
                if !next.trim_start().starts_with('|') {
                    break;
                }
                let row = lines.next().unwrap_or_default();
                if row.contains("---") && row.chars().all(|c| matches!(c, '|' | '-' | ' ' | ':')) {
                    continue;
                }
                out.push_str("<tr>");
                for c in cells(row) {
                    let class = match c {
                        "✓" => " class=\"ok\"",
                        "✗" => " class=\"bad\"",
                        "⚠" => " class=\"warn\"",
                        _ => "",
                    };
                    let _ = write!(out, "<td{class}>{}</td>", inline(c));
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</tbody></table>\n");
        } else if let Some(item) = t.strip_prefix("- ") {
            out.push_str("<ul>\n");
            let _ = writeln!(out, "<li>{}</li>", inline(item));
            while let Some(next) = lines.peek() {
                let Some(item) = next.trim_end().strip_prefix("- ") else {
                    break;
                };
                let _ = writeln!(out, "<li>{}</li>", inline(item));
                lines.next();
            }
            out.push_str("</ul>\n");
        } else if !t.is_empty() {
            let _ = writeln!(out, "<p>{}</p>", inline(t.trim_end_matches("  ")));
        }
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
        assert!(html.contains("<h1>T &lt;x&gt;</h1>"));
        assert!(html.contains("<th>a</th>") && html.contains("<td class=\"ok\">✓</td>"));
        assert_eq!(html.matches("<td").count(), 2);
        assert!(html.contains("<li><strong>two</strong></li>"));
        assert!(html.contains("<pre>A=&lt;1&gt;\n</pre>"));
    }
}
