//! What the importer binary's machine code is made of: its `.text` by crate, read from the ELF
//! symbol table, as `cargo bloat --crates` reports it.
//!
//! Most of an idle importer's memory is this code (`RssFile`), not its heap, so the summary
//! shows which crates bring it. A symbol's crate is the first path segment of its demangled
//! name, as cargo bloat counts: a generic function is counted under the crate that defines it
//! (`core::ptr::drop_in_place<importer::Job>` is `core`'s), whoever instantiated it. Symbols
//! that are not Rust's come from the C code some crates compile in (SQLite, aws-lc) and are
//! named by their prefix. What no symbol covers (padding, stubs) is left out of the crates and
//! counted in the section's size.

use std::collections::BTreeMap;
use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
use serde::{Deserialize, Serialize};

/// Why the binary's text could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The binary.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not an object file `object` reads.
    #[error("{path} is not an executable this harness can read: {source}")]
    Parse {
        /// The binary.
        path: String,
        /// The cause.
        source: object::Error,
    },
    /// The binary has no `.text` or no symbols (stripped), so there is nothing to attribute.
    #[error("{path} has no symbol table (stripped?): its text cannot be split by crate")]
    NoSymbols {
        /// The binary.
        path: String,
    },
}

/// One crate's share of the text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrateText {
    /// The crate's name (`std`, `tokio`, …), or `C: sqlite`, `C: aws-lc`, `C: other` for code
    /// that is not Rust's.
    pub name: String,
    /// Bytes of machine code in its function symbols.
    pub bytes: u64,
}

/// The binary's `.text`, split by crate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TextByCrate {
    /// Size of the `.text` section, bytes.
    pub text_bytes: u64,
    /// Each crate's bytes, largest first.
    pub crates: Vec<CrateText>,
}

impl TextByCrate {
    /// Reads `path`'s symbol table.
    ///
    /// # Errors
    /// [`Error`] when the file cannot be read or parsed, or has no symbols.
    pub fn of(path: &Path) -> Result<Self, Error> {
        let shown = path.display().to_string();
        let data = std::fs::read(path).map_err(|source| Error::Read {
            path: shown.clone(),
            source,
        })?;
        let file = object::File::parse(&*data).map_err(|source| Error::Parse {
            path: shown.clone(),
            source,
        })?;
        let text = file
            .section_by_name(".text")
            .ok_or_else(|| Error::NoSymbols { path: shown.clone() })?;
        let mut by_crate: BTreeMap<String, u64> = BTreeMap::new();
        let mut any = false;
        // ELF lists a C file's local symbols after a FILE symbol naming it (`sqlite3.c`).
        let mut source_file = "";
        for symbol in file.symbols() {
            if symbol.kind() == SymbolKind::File {
                source_file = symbol.name().unwrap_or("");
                continue;
            }
            if symbol.kind() != SymbolKind::Text || symbol.size() == 0 {
                continue;
            }
            let Ok(name) = symbol.name() else { continue };
            any = true;
            let file = if symbol.is_local() { source_file } else { "" };
            *by_crate.entry(crate_of(name, file)).or_default() += symbol.size();
        }
        if !any {
            return Err(Error::NoSymbols { path: shown });
        }
        let mut crates: Vec<CrateText> = by_crate
            .into_iter()
            .map(|(name, bytes)| CrateText { name, bytes })
            .collect();
        crates.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
        Ok(Self {
            text_bytes: text.size(),
            crates,
        })
    }

    /// The `n` largest crates, then the rest summed as `n others` (when any).
    pub fn top(&self, n: usize) -> Vec<CrateText> {
        let mut shown: Vec<CrateText> = self.crates.iter().take(n).cloned().collect();
        let rest = &self.crates[shown.len()..];
        if !rest.is_empty() {
            shown.push(CrateText {
                name: format!("{} others", rest.len()),
                bytes: rest.iter().map(|c| c.bytes).sum(),
            });
        }
        shown
    }
}

/// The crate a (mangled) symbol belongs to, `file` the C source a local symbol was compiled
/// from (empty when unknown); see the module's docs for the rule.
fn crate_of(symbol: &str, file: &str) -> String {
    let Ok(demangled) = rustc_demangle::try_demangle(symbol) else {
        return c_library_of(symbol, file).to_string();
    };
    // `{:#}` drops the hash suffix; an impl's path starts with `<`, its self type's crate first.
    let path = format!("{demangled:#}");
    let path = path.trim_start_matches('<').trim_start_matches('&');
    let path = path.strip_prefix("mut ").unwrap_or(path);
    let path = path.strip_prefix("dyn ").unwrap_or(path);
    let end = path
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(path.len());
    match &path[..end] {
        "" => "C: other".to_string(),
        name => name.to_string(),
    }
}

/// The C library a symbol that is not Rust's comes from: by the prefix each library gives its
/// functions, or for a `static` one by its source file.
fn c_library_of(symbol: &str, file: &str) -> &'static str {
    if symbol.starts_with("sqlite3") || file == "sqlite3.c" {
        "C: sqlite"
    } else if symbol.starts_with("aws_lc") || symbol.starts_with("AWS_LC") {
        "C: aws-lc"
    } else {
        "C: other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symbol_is_counted_under_the_first_crate_of_its_path() {
        // Legacy mangling of `tokio::runtime::park::wake` and of an impl.
        let rust = |s| crate_of(s, "");
        assert_eq!(rust("_ZN5tokio7runtime4park4wake17h0123456789abcdefE"), "tokio");
        // As the importer's release binary names `<Vec<T, A> as Drop>::drop`.
        assert_eq!(
            rust(
                "_ZN70_$LT$alloc..vec..Vec$LT$T$C$A$GT$$u20$as$u20$core..ops..drop..Drop$GT$4drop17h02949932ef5b45a2E"
            ),
            "alloc"
        );
        assert_eq!(rust("sqlite3VdbeExec"), "C: sqlite");
        assert_eq!(crate_of("yy_reduce.constprop.0", "sqlite3.c"), "C: sqlite");
        assert_eq!(rust("aws_lc_0_47_0_aes_gcm_encrypt_avx512"), "C: aws-lc");
        assert_eq!(rust("AWS_LC_TRAMPOLINE_aws_lc_0_47_0_MD5_Final"), "C: aws-lc");
        assert_eq!(rust("memcpy"), "C: other");
    }

    #[test]
    fn the_test_binary_itself_splits_into_crates_that_sum_to_at_most_its_text() {
        // This test's own executable is a Rust ELF with symbols: the reader's real input.
        let exe = std::env::current_exe().expect("the test binary's path");
        let text = TextByCrate::of(&exe).expect("the test binary reads");
        let sum: u64 = text.crates.iter().map(|c| c.bytes).sum();
        assert!(
            text.text_bytes > 0 && sum > 0 && sum <= text.text_bytes,
            "{text:?}"
        );
        assert!(
            text.crates.iter().any(|c| c.name == "harness"),
            "{:?}",
            text.top(10)
        );
        assert!(text.crates.iter().any(|c| c.name == "core"));
        let top = text.top(3);
        assert_eq!(top.len(), 4);
        assert_eq!(top.iter().map(|c| c.bytes).sum::<u64>(), sum);
    }

    #[test]
    fn a_file_that_is_not_an_executable_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("text-by-crate-{}", std::process::id()));
        std::fs::write(&dir, b"not an ELF").expect("temp file");
        let err = TextByCrate::of(&dir).expect_err("refused");
        let _ = std::fs::remove_file(&dir);
        assert!(err.to_string().contains("is not an executable"), "{err}");
    }
}
