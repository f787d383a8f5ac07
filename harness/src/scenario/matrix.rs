//! The matrix expanded: every combination of the axes' values is a cell,
//! labelled by the settings it varies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most cells a scenario may expand to.
pub const MAX_CELLS: usize = 500;

/// One combination of settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Short label, e.g. `c3-b50-p2000`.
    pub label: String,
    /// The importer environment this cell sets.
    pub env: BTreeMap<String, String>,
    /// MAX_CONCURRENT_IMPORTS of the cell (the importer's default 3 when not varied).
    pub max_concurrent_imports: u32,
    /// IMPORT_BATCH_SIZE (default 50).
    pub batch_size: u32,
    /// EXISTING_GAMES_PAGE_SIZE (default 2000).
    pub page_size: u32,
    /// Imports requested at once.
    pub imports: u32,
}

impl Cell {
    /// The label without its concurrency part (`b50-p2000`): one configuration measured at several levels.
    pub fn config_label(&self) -> String {
        self.label
            .split_once('-')
            .map_or_else(String::new, |(_, rest)| rest.to_string())
    }
}

/// LICHESS_MAX_STREAMS and CHESSCOM_MAX_REQUESTS in `env`, or the importer's default, 1.
pub fn lanes(env: &BTreeMap<String, String>) -> (u32, u32) {
    let get = |k: &str| env.get(k).and_then(|v| v.parse().ok()).unwrap_or(1);
    (get("LICHESS_MAX_STREAMS"), get("CHESSCOM_MAX_REQUESTS"))
}

/// An axis's values as environment values; an axis not given is one cell with the importer's default.
pub fn axis<T: Clone + ToString>(values: &Option<Vec<T>>) -> Vec<Option<String>> {
    match values {
        Some(v) => v.iter().map(|x| Some(x.to_string())).collect(),
        None => vec![None],
    }
}

/// Every combination of the axes' values, in order (the first axis varies slowest); each cell
/// requests `imports` imports at once, or as many as it has slots. `Err(n)` when the
/// product is `n` > [`MAX_CELLS`] cells.
pub fn expand(axes: &[(&str, Vec<Option<String>>)], imports: Option<u32>) -> Result<Vec<Cell>, usize> {
    let n = axes
        .iter()
        .try_fold(1usize, |n, (_, v)| n.checked_mul(v.len().max(1)))
        .unwrap_or(usize::MAX);
    if n > MAX_CELLS {
        return Err(n);
    }
    let mut cells: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
    for (key, values) in axes {
        cells = cells
            .into_iter()
            .flat_map(|env| {
                values.iter().map(move |v| {
                    let mut env = env.clone();
                    if let Some(v) = v {
                        env.insert(key.to_string(), v.clone());
                    }
                    env
                })
            })
            .collect();
    }
    Ok(cells
        .into_iter()
        .map(|env| {
            let get = |k: &str, d: u32| env.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
            let (c, b, p) = (
                get("MAX_CONCURRENT_IMPORTS", 3),
                get("IMPORT_BATCH_SIZE", 50),
                get("EXISTING_GAMES_PAGE_SIZE", 2000),
            );
            let mut label = format!("c{c}-b{b}-p{p}");
            for (k, short) in [
                ("DEDUP_STRATEGY", "d"),
                ("DB_POOL_SIZE", "db"),
                ("HTTP_MAX_CONNECTIONS", "h"),
                ("HTTP_POOL_MAX_IDLE_PER_HOST", "hi"),
                ("WORKER_THREADS", "t"),
                ("SQLITE_CACHE_KIB", "sc"),
                ("MALLOC_ARENA_MAX", "a"),
                ("ALLOCATOR", ""),
                ("LICHESS_MAX_STREAMS", "ls"),
                ("CHESSCOM_MAX_REQUESTS", "cr"),
            ] {
                if let Some(v) = env.get(k) {
                    label.push_str(&format!("-{short}{v}"));
                }
            }
            match env.get("DATABASE_POOLER").map(String::as_str) {
                Some("transaction") => label.push_str("-pgbouncer"),
                Some(_) => label.push_str("-direct"),
                None => {}
            }
            Cell {
                label,
                imports: imports.unwrap_or(c),
                max_concurrent_imports: c,
                batch_size: b,
                page_size: p,
                env,
            }
        })
        .collect())
}
