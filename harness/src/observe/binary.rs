//! What the importer binary's machine code is made of: its `.text` by crate, read from the ELF
//! symbol table, as `cargo bloat --crates` reports it.
//!
//! Most of an idle importer's memory is this code (`RssFile`), not its heap, so the summary
//! shows which crates bring it. A symbol's crate is the first segment of its demangled path,
//! as cargo bloat counts (its `crate_name.rs`): a generic function is counted under the crate
//! that defines it (`core::ptr::drop_in_place<importer::Job>` is `core`'s), whoever instantiated
//! it. An impl's method (`<Type as Trait>::method`) is the type's crate's when the type is a
//! named one, else (a type parameter, a primitive, a slice, a tuple) the trait's; a primitive
//! type's own methods (`<str>::trim_matches`, `<[T]>::copy_within`) are counted as `core`'s,
//! where most are defined (`alloc` defines the allocating ones). Unlike cargo bloat, `core` and
//! `alloc` are not folded into `std`. Symbols that are not mangled come from the C code some
//! crates compile in (SQLite, aws-lc), named by their prefix or source file, or are Rust's
//! `#[no_mangle]` functions and the compiler's builtins, counted together as `unmangled`. What
//! no symbol covers (padding, stubs) is left out of the crates and counted in the section's
//! size.

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
    /// The binary has no `.text` section: no machine code to split.
    #[error("{path} has no .text section: it holds no machine code to split by crate")]
    NoText {
        /// The binary.
        path: String,
    },
    /// The binary's symbol table lists no function (a stripped binary has none).
    #[error(
        "{path} lists no function symbols (a stripped binary lists none): its text cannot be split by crate"
    )]
    NoSymbols {
        /// The binary.
        path: String,
    },
}

/// One crate's share of the text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrateText {
    /// The crate's name (`core`, `tokio`, …), `C: sqlite` or `C: aws-lc` for C code compiled
    /// in, or [`UNMANGLED`].
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
            .ok_or_else(|| Error::NoText { path: shown.clone() })?;
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

/// The row of symbols that are not mangled and not of a known C library: other C code,
/// `#[no_mangle]` Rust functions, the compiler's builtins.
pub const UNMANGLED: &str = "unmangled";

/// The crate a (mangled) symbol belongs to, `file` the C source a local symbol was compiled
/// from (empty when unknown); see the module's docs for the rule.
fn crate_of(symbol: &str, file: &str) -> String {
    let Ok(demangled) = rustc_demangle::try_demangle(symbol) else {
        return c_library_of(symbol, file).to_string();
    };
    // `{:#}` drops the hash suffix.
    let path = format!("{demangled:#}");
    crate_of_path(&path).unwrap_or("core").to_string()
}

/// The crate of a demangled path: its first segment, or for a qualified path (`<Self as
/// Trait>::item`, `<Self>::item`) the self type's crate, else the trait's. `None` when neither
/// names a crate (a primitive's own method).
fn crate_of_path(path: &str) -> Option<&str> {
    match path.strip_prefix('<') {
        Some(inner) => {
            let qualified = &inner[..closing_angle(inner)?];
            match split_top_level_as(qualified) {
                Some((self_type, trait_path)) => {
                    crate_of_type(self_type).or_else(|| crate_of_type(trait_path))
                }
                None => crate_of_type(qualified),
            }
        }
        None => crate_of_type(path),
    }
}

/// The crate of a type written in a path: a named type's first segment (through references,
/// pointers and `dyn`); `None` for a type parameter, a primitive, a slice, an array, a tuple or
/// a function pointer, which no crate names.
fn crate_of_type(ty: &str) -> Option<&str> {
    let mut ty = ty.trim_start();
    loop {
        let before = ty;
        ty = ty.trim_start_matches('&');
        if let Some(rest) = ty.strip_prefix('\'') {
            // A lifetime, as in `&'a T`.
            ty = rest.split_once(' ').map_or("", |(_, t)| t);
        }
        for prefix in ["mut ", "dyn ", "*const ", "*mut "] {
            ty = ty.strip_prefix(prefix).unwrap_or(ty);
        }
        if ty == before {
            break;
        }
    }
    if ty.starts_with('<') {
        return crate_of_path(ty);
    }
    let end = ty
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(ty.len());
    // A single segment (`T`, `u8`, `str`) is a parameter or a primitive; only a path names a crate.
    (end > 0 && ty[end..].starts_with("::")).then(|| &ty[..end])
}

/// The index in `s` of the `>` that closes a `<` opened just before `s` (an arrow's `>` in a
/// function type, `-> T`, is not one).
fn closing_angle(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut prev = ' ';
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' if prev != '-' => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            _ => {}
        }
        prev = c;
    }
    None
}

/// `Self as Trait` split at its ` as ` outside any `<…>`, or `None` when there is none.
fn split_top_level_as(s: &str) -> Option<(&str, &str)> {
    let mut depth = 0usize;
    let mut prev = ' ';
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' if prev != '-' => depth = depth.saturating_sub(1),
            ' ' if depth == 0 && s[i..].starts_with(" as ") => return Some((&s[..i], &s[i + 4..])),
            _ => {}
        }
        prev = c;
    }
    None
}

/// The C library a symbol that is not Rust's comes from: by the prefix each library gives its
/// functions, or for a `static` one by its source file; else [`UNMANGLED`].
fn c_library_of(symbol: &str, file: &str) -> &'static str {
    if symbol.starts_with("sqlite3") || file == "sqlite3.c" {
        "C: sqlite"
    } else if ["aws_lc", "AWS_LC", "AWSLC"]
        .iter()
        .any(|p| symbol.starts_with(p))
    {
        "C: aws-lc"
    } else {
        UNMANGLED
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
        assert_eq!(rust("AWSLC_fips_evp_pkey_methods_init"), "C: aws-lc");
        assert_eq!(rust("memcpy"), UNMANGLED);
    }

    #[test]
    fn an_impl_is_counted_under_its_named_type_else_its_trait_and_a_primitive_under_core() {
        let path = |p| crate_of_path(p).unwrap_or("core");
        assert_eq!(path("<importer::job::Job as core::fmt::Debug>::fmt"), "importer");
        assert_eq!(path("<T as alloc::string::ToString>::to_string"), "alloc");
        assert_eq!(path("<u8 as core::fmt::Display>::fmt"), "core");
        assert_eq!(
            path("<&mut F as core::ops::function::FnOnce<A>>::call_once"),
            "core"
        );
        assert_eq!(
            path("<&'a tokio::net::TcpStream as std::io::Read>::read"),
            "tokio"
        );
        assert_eq!(path("<[importer::job::Job] as core::fmt::Debug>::fmt"), "core");
        assert_eq!(path("<(A, B) as serde::de::Deserialize>::deserialize"), "serde");
        assert_eq!(path("<dyn core::any::Any>::is"), "core");
        assert_eq!(path("<str>::trim_matches"), "core");
        assert_eq!(path("<[u8]>::copy_within"), "core");
        assert_eq!(
            path(
                "<<sqlx_core::pool::Pool<DB> as core::clone::Clone>::clone as core::ops::FnOnce<()>>::call_once"
            ),
            "sqlx_core"
        );
        assert_eq!(path("<fn() -> u8 as core::ops::function::Fn<()>>::call"), "core");
        assert_eq!(
            path("<alloc::vec::Vec<fn(&u8) -> u8> as core::ops::drop::Drop>::drop"),
            "alloc"
        );
        assert_eq!(path("importer::pipeline::run::{{closure}}"), "importer");
        assert_eq!(path("core::ptr::drop_in_place<importer::job::Job>"), "core");
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
