//! The reports' Markdown tables, written one way: the header, the `|---|` rule, a line per row.

use std::fmt;

/// A Markdown table, built row by row and written by `Display`, every line ending in `\n`.
///
/// Each cell is written as given between `| ` and ` |`, so an empty one is `|  |`; a `|` inside a
/// cell is the caller's to escape. A row shorter than the header is completed with empty cells
/// written ` |` each.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    header: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

/// How a column's cells line up: the rule under its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    /// Markdown's default, `---`.
    Default,
    /// Right, `---:`, for figures.
    Right,
}

impl Table {
    /// A table with these column names and no row yet.
    pub(crate) fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        let header: Vec<String> = header.into_iter().map(Into::into).collect();
        Table {
            align: vec![Align::Default; header.len()],
            header,
            rows: Vec::new(),
        }
    }

    /// The same table with its columns aligned as `align` says, left to right; a column it does
    /// not reach keeps the default.
    pub(crate) fn aligned(mut self, align: impl IntoIterator<Item = Align>) -> Table {
        for (a, to) in self.align.iter_mut().zip(align) {
            *a = to;
        }
        self
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
        f.write_str("|")?;
        for a in &self.align {
            f.write_str(match a {
                Align::Default => "---|",
                Align::Right => "---:|",
            })?;
        }
        f.write_str("\n")?;
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

    #[test]
    fn a_right_aligned_column_says_so_in_the_rule() {
        let t = Table::new(["crate", "MiB", "share"]).aligned([Align::Default, Align::Right, Align::Right]);
        assert_eq!(t.to_string(), "| crate | MiB | share |\n|---|---:|---:|\n");
    }
}
