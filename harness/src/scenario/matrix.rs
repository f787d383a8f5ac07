//! The matrix: which settings a scenario may vary, their values checked, and every
//! combination of the axes' values expanded into a cell labelled by the settings it varies.
//!
//! The settings and their accepted values come from the settings table (`settings` crate), the
//! one the importer checks its own with: `harness check` accepts exactly what the importer does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use settings::{EXISTING_GAMES_PAGE_SIZE, IMPORT_BATCH_SIZE, MAX_CONCURRENT_IMPORTS, SETTINGS, Setting};

use super::schema::Matrix;

/// Most cells a scenario may expand to.
pub(super) const MAX_CELLS: usize = 500;

/// Allocators the importer can be built with (`make allocators`).
pub const ALLOCATORS: [&str; 3] = ["glibc", "jemalloc", "mimalloc"];

/// One combination of settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Short label, e.g. `c3-b50-p2000`.
    pub label: String,
    /// The importer environment this cell sets.
    pub env: BTreeMap<String, String>,
    /// MAX_CONCURRENT_IMPORTS of the cell (the importer's default when not varied).
    pub max_concurrent_imports: u32,
    /// IMPORT_BATCH_SIZE (the importer's default when not varied).
    pub batch_size: u32,
    /// EXISTING_GAMES_PAGE_SIZE (the importer's default when not varied).
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

/// `setting`'s value in `env`, or the importer's default.
pub fn value_of(env: &BTreeMap<String, String>, setting: &Setting) -> u32 {
    env.get(setting.name)
        .and_then(|v| v.trim().parse().ok())
        .or_else(|| setting.default_integer().and_then(|d| u32::try_from(d).ok()))
        .unwrap_or(1)
}

/// Imports of each provider that may run at once in one importer process: the importer's own
/// type, from the settings crate (the harness never links the importer).
pub use settings::Lanes;

/// LICHESS_MAX_STREAMS and CHESSCOM_MAX_REQUESTS in `env`, or the importer's defaults.
pub fn lanes(env: &BTreeMap<String, String>) -> Lanes {
    Lanes::from_fn(|p| value_of(env, p.lanes_setting()))
}

/// What checks an axis's values.
#[derive(Debug, Clone, Copy)]
enum Values {
    /// The settings table's row: what the importer accepts.
    Table(&'static Setting),
    /// glibc's `MALLOC_ARENA_MAX`: glibc's variable, hence not in the table (the importer only
    /// looks whether it is set, and limits glibc to one arena when it is not); a count of
    /// arenas, 0 leaving glibc's own default.
    Arenas,
    /// Which importer build runs: not a setting at all.
    Allocator,
}

/// A setting the matrix may vary.
#[derive(Debug, Clone, Copy)]
pub struct Axis {
    /// Its name, the matrix's key and the importer's variable.
    pub name: &'static str,
    /// Its short name in cell labels (`c` in `c3-b50-p2000`).
    label: &'static str,
    values: Values,
}

/// Every setting the matrix may vary, in the order cells expand (the first varies slowest) and
/// labels read: the table's rows that have a label, with the harness's own two before the
/// lanes and `DATABASE_POOLER` last, the order cells had before the table existed, so that
/// earlier runs' labels (and a baseline's) still name the same cells.
pub fn axes() -> Vec<Axis> {
    let table = SETTINGS.iter().filter_map(|s| {
        Some(Axis {
            name: s.name,
            label: s.axis?,
            values: Values::Table(s),
        })
    });
    let (pooler, mut axes): (Vec<Axis>, Vec<Axis>) =
        table.partition(|a| a.name == settings::DATABASE_POOLER.name);
    let lanes = axes
        .iter()
        .position(|a| a.name == settings::LICHESS_MAX_STREAMS.name)
        .unwrap_or(axes.len());
    let own = [
        Axis {
            name: "MALLOC_ARENA_MAX",
            label: "a",
            values: Values::Arenas,
        },
        Axis {
            name: "ALLOCATOR",
            label: "",
            values: Values::Allocator,
        },
    ];
    axes.splice(lanes..lanes, own);
    axes.extend(pooler);
    axes
}

/// A value the importer would refuse; says what is accepted, in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `MALLOC_ARENA_MAX` takes a whole number.
    #[error("a whole number of arenas (0: glibc's default)")]
    Arenas,
    /// `ALLOCATOR` takes one of [`ALLOCATORS`].
    #[error("one of {}", ALLOCATORS.join(", "))]
    Allocator,
    /// The settings table's row refuses it: its accepted values, in the table's words.
    #[error("{}", .0.accepted_words())]
    Setting(&'static Setting),
}

impl Axis {
    /// Whether `value` is one this axis takes; the error says what is accepted, in words.
    fn check(&self, value: &str) -> Result<(), Refused> {
        match self.values {
            Values::Table(s) => s.check(value).map_err(|_| Refused::Setting(s)),
            Values::Arenas => match value.trim().parse::<u32>() {
                Ok(_) => Ok(()),
                Err(_) => Err(Refused::Arenas),
            },
            Values::Allocator if ALLOCATORS.contains(&value) => Ok(()),
            Values::Allocator => Err(Refused::Allocator),
        }
    }
}

/// Variables the importer's environment may carry besides the table's settings and the
/// harness's axes, read by the importer (`PGAPPNAME`; `TMPDIR`, where the chess.com spool goes)
/// or by what it links: glibc (`GLIBC_TUNABLES`, `MALLOC_*`), jemalloc (`_RJEM_*`), Rust
/// (`RUST_*`), rustls's certificate lookup (`SSL_CERT_*`).
const PASSED_ON: &[&str] = &["PGAPPNAME", "TMPDIR", "GLIBC_TUNABLES"];
/// Prefixes of such variables.
const PASSED_ON_PREFIXES: &[&str] = &["MALLOC_", "_RJEM_", "RUST_", "SSL_CERT_"];

/// A variable that neither the importer nor the harness reads: most likely a setting misspelt,
/// which would measure the default and pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a setting of the importer (`importer --help` lists them), an axis of the harness ({}) or a variable its libraries read{}",
    own_axes().join(", "),
    closest.map(|c| format!("; did you mean {c}?")).unwrap_or_default()
)]
pub struct UnknownVariable {
    /// The setting or axis whose name is closest, when one is close.
    pub closest: Option<&'static str>,
}

/// The names of the axes that are the harness's own, not the table's, in alphabetical order.
fn own_axes() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = axes()
        .into_iter()
        .filter(|a| !matches!(a.values, Values::Table(_)))
        .map(|a| a.name)
        .collect();
    names.sort_unstable();
    names
}

/// Whether `name` is a variable the importer's environment may carry: a setting of the table,
/// an axis, or one of [`PASSED_ON`] and [`PASSED_ON_PREFIXES`].
///
/// # Errors
/// [`UnknownVariable`], with the closest setting's name when one is within two edits.
pub fn known_variable(name: &str) -> Result<(), UnknownVariable> {
    let axes = axes();
    if settings::setting(name).is_some()
        || axes.iter().any(|a| a.name == name)
        || PASSED_ON.contains(&name)
        || PASSED_ON_PREFIXES.iter().any(|p| name.starts_with(p))
    {
        return Ok(());
    }
    let closest = settings::SETTINGS
        .iter()
        .map(|s| s.name)
        .chain(own_axes())
        .map(|known| (strsim::damerau_levenshtein(name, known), known))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, known)| known);
    Err(UnknownVariable { closest })
}

/// Whether the importer's environment variable `name` may be `value`, wherever a scenario or
/// `--set` gives it: an axis checks its own values, any other setting of the table its row;
/// other names are [`known_variable`]'s to judge.
///
/// # Errors
/// What is accepted, in words.
pub fn accepts(name: &str, value: &str) -> Result<(), Refused> {
    match axes().into_iter().find(|a| a.name == name) {
        Some(axis) => axis.check(value),
        None => settings::setting(name).map_or(Ok(()), |s| s.check(value).map_err(|_| Refused::Setting(s))),
    }
}

/// An axis and the values a scenario gives it.
#[derive(Debug, Clone)]
pub(super) struct AxisValues {
    /// The setting varied.
    pub axis: Axis,
    /// Its values in order; `[None]`: not varied, the importer's default.
    pub values: Vec<Option<String>>,
}

/// A key of the scenario and what is wrong with its value.
pub(super) type Bad = (String, String);

/// A YAML scalar as the environment value it sets.
fn scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        // Trimmed as the importer trims it: the cell's label and pooler read the same word.
        serde_yaml::Value::String(s) => Some(s.trim().to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The matrix's values, every axis in order; an axis not given is one value, `None`: the
/// importer's default.
///
/// # Errors
/// The key at fault and why: a name the matrix cannot vary, an empty axis, or a value the
/// importer would refuse.
pub(super) fn values_of(matrix: &Matrix) -> Result<Vec<AxisValues>, Bad> {
    let all = axes();
    if let Some(unknown) = matrix
        .0
        .keys()
        .find(|k| !all.iter().any(|a| a.name == k.as_str()))
    {
        let names: Vec<_> = all.iter().map(|a| a.name).collect();
        return Err((
            unknown.clone(),
            format!(
                "not a setting the matrix can vary; those are {}",
                names.join(", ")
            ),
        ));
    }
    all.into_iter()
        .map(|axis| {
            let Some(given) = matrix.0.get(axis.name) else {
                return Ok(AxisValues {
                    axis,
                    values: vec![None],
                });
            };
            if given.is_empty() {
                return Err((axis.name.into(), "an axis needs at least one value".into()));
            }
            let values = given
                .iter()
                .map(|v| {
                    let value = scalar(v)
                        .ok_or_else(|| (axis.name.to_string(), format!("{v:?} is not a number or a word")))?;
                    axis.check(&value)
                        .map_err(|words| (axis.name.to_string(), format!("{value:?}: expected {words}")))?;
                    Ok::<_, Bad>(Some(value))
                })
                .collect::<Result<_, _>>()?;
            Ok(AxisValues { axis, values })
        })
        .collect()
}

/// Every combination of the axes' values, in order (the first axis varies slowest); each cell
/// requests `imports` imports at once, or as many as it has slots. `Err(n)` when the
/// product is `n` > [`MAX_CELLS`] cells.
pub(super) fn expand(axes: &[AxisValues], imports: Option<u32>) -> Result<Vec<Cell>, usize> {
    let n = axes
        .iter()
        .try_fold(1usize, |n, a| n.checked_mul(a.values.len().max(1)))
        .unwrap_or(usize::MAX);
    if n > MAX_CELLS {
        return Err(n);
    }
    let mut cells: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
    for AxisValues { axis, values } in axes {
        cells = cells
            .into_iter()
            .flat_map(|env| {
                values.iter().map(move |v| {
                    let mut env = env.clone();
                    if let Some(v) = v {
                        env.insert(axis.name.to_string(), v.clone());
                    }
                    env
                })
            })
            .collect();
    }
    Ok(cells
        .into_iter()
        .map(|env| {
            let c = value_of(&env, &MAX_CONCURRENT_IMPORTS);
            Cell {
                label: label(&env, axes),
                imports: imports.unwrap_or(c),
                max_concurrent_imports: c,
                batch_size: value_of(&env, &IMPORT_BATCH_SIZE),
                page_size: value_of(&env, &EXISTING_GAMES_PAGE_SIZE),
                env,
            }
        })
        .collect())
}

/// A cell's label: slots, batch and page always (`c3-b50-p2000`, defaults included, as every
/// report reads a configuration from them), then each other setting the cell sets, and last
/// how it reaches PostgreSQL (`-pgbouncer` or `-direct`) when that is set.
fn label(env: &BTreeMap<String, String>, axes: &[AxisValues]) -> String {
    let always = [
        &MAX_CONCURRENT_IMPORTS,
        &IMPORT_BATCH_SIZE,
        &EXISTING_GAMES_PAGE_SIZE,
    ];
    let mut label = format!(
        "c{}-b{}-p{}",
        value_of(env, always[0]),
        value_of(env, always[1]),
        value_of(env, always[2])
    );
    for AxisValues { axis, .. } in axes {
        if always.iter().any(|s| s.name == axis.name) || axis.name == settings::DATABASE_POOLER.name {
            continue;
        }
        if let Some(v) = env.get(axis.name) {
            label.push_str(&format!("-{}{v}", axis.label));
        }
    }
    match env.get(settings::DATABASE_POOLER.name).map(String::as_str) {
        Some("transaction") => label.push_str("-pgbouncer"),
        Some(_) => label.push_str("-direct"),
        None => {}
    }
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_are_read_from_the_env_or_the_defaults_and_kept_as_a_pair() {
        let env = BTreeMap::from([("LICHESS_MAX_STREAMS".to_string(), "2".to_string())]);
        let l = lanes(&env);
        assert_eq!(
            (
                l.of(settings::Platform::Lichess),
                l.of(settings::Platform::ChessCom)
            ),
            (2, 1)
        );
        assert_eq!(serde_json::to_string(&l).unwrap(), "[2,1]");
        assert_eq!(serde_json::from_str::<Lanes>("[2,1]").unwrap(), l);
    }
}
