//! The reports' Markdown tables, written one way: the header, the `|---|` rule, a line per row.

use std::fmt;

/// A Markdown table, built row by row and written by `Display`, every line ending in `\n`.
///
/// Each cell is written as given between `| ` and ` |`, so an empty one is `|  |`; a `|` inside a
/// cell is the caller's to escape. A row shorter than the header is completed with empty cells
/// written ` |` each. Every column is left as Markdown aligns it by default (`---`).
#[derive(Debug, Clone)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names and no row yet.
    pub(crate) fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row: its cells, left to right.
    pub(crate) fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        self.rows.push(cells.into_iter().collect());
    }

    /// Whether it has no row.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

fn line(f: &mut fmt::Formatter<'_>, cells: &[String], columns: usize) -> fmt::Result {
    f.write_str("|")?;
    for c in cells {
        write!(f, " {c} |")?;
    }
    for _ in cells.len()..columns {
        f.write_str(" |")?;
    }
    f.write_str("\n")
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let columns = self.header.len();
        line(f, &self.header, columns)?;
        writeln!(f, "|{}", "---|".repeat(columns))?;
        for r in &self.rows {
            line(f, r, columns)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_written_to_the_byte() {
        let mut t = Table::new(["", "cell", "peak MiB"]);
        assert!(t.is_empty());
        t.row(["✓".to_string(), "c2-b50".into(), "15.3".into()]);
        t.row(["✗".to_string(), String::new(), "`a\\|b`".into()]);
        // Short of a cell: the missing one is written ` |`, not `  |`.
        t.row(["⚠".to_string(), "range".into()]);
        assert_eq!(
            t.to_string(),
            "|  | cell | peak MiB |\n\
             |---|---|---|\n\
             | ✓ | c2-b50 | 15.3 |\n\
             | ✗ |  | `a\\|b` |\n\
             | ⚠ | range | |\n"
        );
    }

    #[test]
    fn a_table_without_rows_is_its_header_and_rule() {
        assert_eq!(Table::new(["a", "b"]).to_string(), "| a | b |\n|---|---|\n");
    }
}
