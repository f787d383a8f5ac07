//! The summary's "Machine code by crate": which crates the importer's resident text comes from.

use std::fmt::Write;

use super::table::{Align, Table};
use crate::session::results::{RunResults, mib};

/// Crates shown by name; the rest are summed in one row.
const SHOWN: usize = 12;

/// Appends the section to `out` when the run recorded the binary's text.
pub fn section(results: &RunResults, out: &mut String) {
    let Some(text) = &results.importer_text else {
        return;
    };
    let _ = writeln!(
        out,
        "\n## Machine code by crate\n\nThe importer's `.text`, {:.1} MiB, by the crate each function symbol's path \
         starts with (as `cargo bloat --crates` counts: a generic function under the crate that defines it; \
         an impl's method under its named type's crate, else its trait's; `C:` rows are C code compiled in, \
         `unmangled` the rest of the symbols without a Rust path: other C code, `#[no_mangle]` Rust, the \
         compiler's builtins). Most of the idle importer's memory is file-backed (`RssFile`, the resident text above): \
         the pages of this code, of its read-only data and of the C library that ran, so it can exceed \
         this section; which pages are resident depends on what ran, so the shares are of the file, \
         not of the resident memory.\n",
        mib(text.text_bytes)
    );
    let mut table =
        Table::new(["crate", "MiB", "share of .text"]).aligned([Align::Default, Align::Right, Align::Right]);
    for c in text.top(SHOWN) {
        table.row([
            c.name,
            format!("{:.2}", mib(c.bytes)),
            format!("{:.1} %", 100.0 * c.bytes as f64 / text.text_bytes.max(1) as f64),
        ]);
    }
    out.push_str(&table.to_string());
}
