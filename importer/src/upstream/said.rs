//! What a provider said in an error response, reduced to one line for a job's
//! `error` and a log field.
//!
//! Why not a guess: lichess's 404 page, chess.com's JSON `message` and a proxy's
//! HTML page all come with statuses that read alike; the operator is only sent
//! after the right cause if the provider's own words reach them.

use std::fmt;

/// Most characters kept of what a provider said.
const MAX_CHARS: usize = 200;

/// The body of an error response, as far as it says anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// No body (or only whitespace).
    Empty,
    /// A JSON object's `message` (chess.com) or `error` (lichess) field.
    Json(String),
    /// An HTML page; its `<title>`, when it has one.
    Html(Option<String>),
    /// Any other text, trimmed to one line.
    Text(String),
}

/// Whitespace runs (newlines included) become one space; at most [`MAX_CHARS`] characters.
fn one_line(text: &str) -> String {
    let mut out = String::new();
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() > MAX_CHARS {
            let cut: String = out.chars().take(MAX_CHARS).collect();
            return format!("{cut}…");
        }
    }
    out
}

fn html_title(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title")?;
    let open_end = start + lower[start..].find('>')? + 1;
    let close = open_end + lower[open_end..].find("</title")?;
    let title = one_line(&text[open_end..close]);
    (!title.is_empty()).then_some(title)
}

impl Said {
    /// Reads `body`; `html` is whether the response's `Content-Type` said HTML.
    pub fn of(body: &[u8], html: bool) -> Said {
        let text = String::from_utf8_lossy(body);
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Said::Empty;
        }
        if trimmed.starts_with('{')
            && let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(trimmed)
        {
            let field = ["message", "error"]
                .iter()
                .find_map(|k| map.get(*k).and_then(|v| v.as_str()));
            if let Some(field) = field {
                return Said::Json(one_line(field));
            }
        }
        let looks_html = {
            let head: String = trimmed.chars().take(64).collect::<String>().to_ascii_lowercase();
            head.starts_with("<!doctype html") || head.starts_with("<html")
        };
        if html || looks_html {
            return Said::Html(html_title(trimmed));
        }
        Said::Text(one_line(trimmed))
    }

    /// No body at all.
    pub fn is_empty(&self) -> bool {
        matches!(self, Said::Empty)
    }

    /// An HTML page.
    pub fn is_html(&self) -> bool {
        matches!(self, Said::Html(_))
    }
}

impl fmt::Display for Said {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Said::Empty => f.write_str("an empty body"),
            Said::Json(m) | Said::Text(m) => f.write_str(m),
            Said::Html(Some(title)) => write!(f, "an HTML page titled \"{title}\""),
            Said::Html(None) => f.write_str("an HTML page"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_messages_are_taken_from_either_provider() {
        let chess_com = br#"{"code":0,"message":"An internal error has occurred. Please contact Chess.com Developer's Forum for further help https://www.chess.com/club/chess-com-developer-community ."}"#;
        assert_eq!(
            Said::of(chess_com, false),
            Said::Json("An internal error has occurred. Please contact Chess.com Developer's Forum for further help https://www.chess.com/club/chess-com-developer-community .".into())
        );
        let lichess = br#"{"error":"Please only run 1 request(s) at a time"}"#;
        assert_eq!(
            Said::of(lichess, false).to_string(),
            "Please only run 1 request(s) at a time"
        );
    }

    #[test]
    fn html_is_told_by_its_header_or_its_start_and_named_by_its_title() {
        let page = b"<!DOCTYPE html>\n<html><head><title>Page not found \xe2\x80\xa2 lichess.org</title></head><body>...</body></html>";
        assert_eq!(
            Said::of(page, true),
            Said::Html(Some("Page not found • lichess.org".into()))
        );
        assert!(Said::of(page, false).is_html());
        assert_eq!(Said::of(b"<p>no title</p>", true), Said::Html(None));
    }

    #[test]
    fn text_is_one_bounded_line_and_whitespace_is_empty() {
        assert_eq!(Said::of(b"  \n\t ", false), Said::Empty);
        assert_eq!(Said::of(b"", true), Said::Empty);
        assert_eq!(
            Said::of(b"upstream\r\nconnect error\n", false),
            Said::Text("upstream connect error".into())
        );
        let long = "x ".repeat(500);
        let Said::Text(t) = Said::of(long.as_bytes(), false) else {
            panic!("not text");
        };
        assert_eq!(t.chars().count(), MAX_CHARS + 1, "{t}");
        // A JSON object without a known field is kept as text, not dropped.
        assert_eq!(
            Said::of(br#"{"code":7}"#, false),
            Said::Text("{\"code\":7}".into())
        );
    }
}
