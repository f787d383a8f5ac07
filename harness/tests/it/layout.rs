//! The harness's tree follows its data flow: a module uses only the ones that
//! stand before it (lib.rs lists them in that order), never one after it.

use std::path::Path;

/// The top-level modules, in the order data flows through a run.
const FLOW: [&str; 10] = [
    "upstream", "target", "load", "observe", "verify", "scenario", "session", "analysis", "report", "cli",
];

fn rank(module: &str) -> Option<usize> {
    FLOW.iter().position(|m| *m == module)
}

/// `crate::NAME` paths in a source text, comments included (a doc link that reaches back is a smell too).
fn crate_uses(text: &str) -> Vec<String> {
    text.match_indices("crate::")
        .filter(|(i, _)| !text[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .map(|(i, m)| {
            text[i + m.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src readable").flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_reaches_back_up_the_flow() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert_eq!(declared, FLOW, "lib.rs declares the modules in flow order");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs"))
            .unwrap_or_default();
        let Some(mine) = rank(top) else { continue };
        let text = std::fs::read_to_string(f).expect("readable");
        for used in crate_uses(&text) {
            match rank(&used) {
                Some(r) if r > mine => wrong.push(format!("{}: crate::{used}", rel.display())),
                None => wrong.push(format!(
                    "{}: crate::{used} is not a module of the flow",
                    rel.display()
                )),
                _ => {}
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "modules reaching down the flow:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_a_reach_back() {
    assert_eq!(
        crate_uses("use crate::report::x; // see crate::cli\nmy_crate::no"),
        ["report", "cli"]
    );
}
