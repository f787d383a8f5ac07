//! The importer's settings and the two providers, each written once.
//!
//! Data only: a [`Setting`] is a row (environment variable, flag, default,
//! accepted values, one-line meaning) of [`SETTINGS`]. From this table come
//! the importer's command line, `--help` and range checks, the harness's
//! matrix axes, defaults and scenario checks, and the README's configuration
//! table (`make settings-table`; a test fails when the committed one differs).
//! What the table cannot say (a URL's shape, a token's length, the pooler
//! only with PostgreSQL) the importer checks itself, and the table's
//! [`Accepted::Text`] says it in words.
//!
//! The harness depends on this crate and never on the importer's logic, so
//! its mocks keep their own checks of what a client sends (the providers'
//! rules): a mistake of the importer cannot hide in the mock that tests it.

mod table;

pub use table::*;

/// A game provider, named `lichess` or `chess.com` in the API, the database and scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Platform {
    /// lichess.org
    #[cfg_attr(feature = "serde", serde(rename = "lichess"))]
    Lichess,
    /// chess.com
    #[cfg_attr(feature = "serde", serde(rename = "chess.com"))]
    ChessCom,
}

impl Platform {
    /// Both providers, lichess first.
    pub const ALL: [Platform; 2] = [Platform::Lichess, Platform::ChessCom];

    /// `lichess` or `chess.com`: the name in the API, the database and scenarios.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Lichess => "lichess",
            Platform::ChessCom => "chess.com",
        }
    }

    /// The platform named `name` (`lichess`, `chess.com`), if any.
    pub fn parse(name: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The setting that caps how many of this provider's imports run at once (its lanes).
    pub fn lanes_setting(self) -> &'static Setting {
        match self {
            Platform::Lichess => &LICHESS_MAX_STREAMS,
            Platform::ChessCom => &CHESSCOM_MAX_REQUESTS,
        }
    }
}

/// Imports of each provider that may run at once: its lanes (`LICHESS_MAX_STREAMS`,
/// `CHESSCOM_MAX_REQUESTS`), or what is left of them. Serialized as `[lichess, chess_com]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "(u32, u32)", into = "(u32, u32)"))]
pub struct Lanes {
    /// lichess export streams.
    pub lichess: u32,
    /// chess.com requests.
    pub chess_com: u32,
}

impl Lanes {
    /// The lanes of `platform`.
    pub fn of(self, platform: Platform) -> u32 {
        match platform {
            Platform::Lichess => self.lichess,
            Platform::ChessCom => self.chess_com,
        }
    }

    /// Each provider's lanes from `lanes_of`, lichess first.
    pub fn from_fn(mut lanes_of: impl FnMut(Platform) -> u32) -> Lanes {
        Lanes {
            lichess: lanes_of(Platform::Lichess),
            chess_com: lanes_of(Platform::ChessCom),
        }
    }
}

impl From<(u32, u32)> for Lanes {
    fn from((lichess, chess_com): (u32, u32)) -> Lanes {
        Lanes { lichess, chess_com }
    }
}

impl From<Lanes> for (u32, u32) {
    fn from(l: Lanes) -> (u32, u32) {
        (l.lichess, l.chess_com)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The values a setting accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// A whole number in `min..=max`, in `unit` (plural, e.g. "imports", "seconds").
    Integer {
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
        /// What one counts.
        unit: &'static str,
    },
    /// One of these words, exactly.
    OneOf(&'static [&'static str]),
    /// Text whose shape the importer checks itself, described in words.
    Text(&'static str),
}

/// The value a setting takes when it is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    /// This value.
    Value(&'static str),
    /// No value; the words say what holds then (e.g. "2 on SQLite, 5 on PostgreSQL").
    Unset(&'static str),
}

/// One setting of the importer: an environment variable, and a flag of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The environment variable, e.g. `MAX_CONCURRENT_IMPORTS`.
    pub name: &'static str,
    /// The long flag without dashes, e.g. `max-concurrent-imports`.
    pub flag: &'static str,
    /// Its value when not given.
    pub default: Default,
    /// What it accepts.
    pub accepted: Accepted,
    /// What it means, in one line.
    pub about: &'static str,
    /// A secret: `--help` never shows its value, and nothing copies it.
    pub secret: bool,
    /// Left out of `--help` (set by hosting platforms, not by people).
    pub hidden: bool,
    /// It tunes speed or memory, not where or who: a captured deploy's value is replayed.
    pub tuning: bool,
    /// Short name in a harness cell's label (`c` in `c3-b50-p2000`), when the harness may vary it.
    pub axis: Option<&'static str>,
}

impl Setting {
    /// The largest number accepted; 0 for a setting that is not a number. A `const fn`, so that
    /// a bound elsewhere (the harness's concurrency levels) can be this one.
    pub const fn max_integer(&self) -> u64 {
        match self.accepted {
            Accepted::Integer { max, .. } => max,
            _ => 0,
        }
    }

    /// The default value, when there is one.
    pub fn default_value(&self) -> Option<&'static str> {
        match self.default {
            Default::Value(v) => Some(v),
            Default::Unset(_) => None,
        }
    }

    /// The default as a number; `None` when unset or not a number.
    pub fn default_integer(&self) -> Option<u64> {
        self.default_value().and_then(|v| v.parse().ok())
    }

    /// `value` as the number it names.
    ///
    /// # Errors
    /// What is accepted, in words ([`Setting::accepted_words`]), when `value` (trimmed) is not
    /// a whole number in range; a setting that is not an [`Accepted::Integer`] never parses.
    pub fn integer(&self, value: &str) -> Result<u64, String> {
        match self.accepted {
            Accepted::Integer { min, max, .. } => value
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| self.accepted_words()),
            _ => Err(self.accepted_words()),
        }
    }

    /// Whether the table accepts `value`: a number in range, one of the words; text is the
    /// importer's to check and passes here.
    ///
    /// # Errors
    /// What is accepted, in words.
    pub fn check(&self, value: &str) -> Result<(), String> {
        match self.accepted {
            Accepted::Integer { .. } => self.integer(value).map(|_| ()),
            Accepted::OneOf(words) if words.contains(&value.trim()) => Ok(()),
            Accepted::OneOf(_) => Err(self.accepted_words()),
            Accepted::Text(_) => Ok(()),
        }
    }

    /// What is accepted, in words: "an integer in 1..=256", "`batch` or `preload`", or the text's description.
    pub fn accepted_words(&self) -> String {
        match self.accepted {
            Accepted::Integer { min, max, .. } => format!("an integer in {min}..={max}"),
            Accepted::OneOf(words) => words
                .iter()
                .map(|w| format!("`{w}`"))
                .collect::<Vec<_>>()
                .join(" or "),
            Accepted::Text(words) => words.to_string(),
        }
    }

    /// What is accepted, as the README's table says it: "1..=256 imports", "`batch` or `preload`".
    pub fn accepted_short(&self) -> String {
        match self.accepted {
            Accepted::Integer { min, max, unit } => format!("{min}..={max} {unit}"),
            _ => self.accepted_words(),
        }
    }

    /// The `--help` text: the meaning, what is accepted and, when there is no default value,
    /// what holds instead (clap adds a default value and the variable itself).
    pub fn help(&self) -> String {
        let mut help = format!("{} [accepts: {}]", self.about, self.accepted_short());
        if let Default::Unset(words) = self.default
            && words != "unset"
        {
            help.push_str(&format!(" [default: {words}]"));
        }
        help
    }
}

/// The setting called `name` (its environment variable), if any.
pub fn setting(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// The README's configuration table, in Markdown: one row per setting `--help` shows.
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | default | accepted | meaning |\n|---|---|---|---|\n");
    for s in SETTINGS.iter().filter(|s| !s.hidden) {
        let default = match s.default {
            Default::Value(v) => format!("`{v}`"),
            Default::Unset(words) => words.to_string(),
        };
        let accepted = s.accepted_short();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            s.name,
            default.replace('|', "\\|"),
            accepted.replace('|', "\\|"),
            s.about.replace('|', "\\|")
        ));
    }
    out
}

/// The line before the README's generated table.
pub const TABLE_BEGIN: &str =
    "<!-- settings table: generated by `make settings-table` from settings/src/table.rs -->";
/// The line after it.
pub const TABLE_END: &str = "<!-- end of settings table -->";

/// `readme` with the text between [`TABLE_BEGIN`] and [`TABLE_END`] replaced by
/// [`markdown_table`]; `None` when either line is missing.
pub fn with_table(readme: &str) -> Option<String> {
    let begin = readme.find(TABLE_BEGIN)? + TABLE_BEGIN.len();
    let end = begin + readme[begin..].find(TABLE_END)?;
    Some(format!(
        "{}\n{}{}",
        &readme[..begin],
        markdown_table(),
        &readme[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_well_formed() {
        for s in SETTINGS {
            assert_eq!(
                s.flag,
                s.name.to_ascii_lowercase().replace('_', "-"),
                "{}",
                s.name
            );
            assert_eq!(
                SETTINGS.iter().filter(|o| o.name == s.name).count(),
                1,
                "{}",
                s.name
            );
            if let Some(d) = s.default_value() {
                assert_eq!(s.check(d), Ok(()), "{}'s default is accepted", s.name);
            }
            if let Accepted::Integer { min, max, .. } = s.accepted {
                assert!(min <= max, "{}", s.name);
            }
            assert!(!(s.secret && s.tuning), "{}: a secret is never replayed", s.name);
        }
        let labels: Vec<_> = SETTINGS.iter().filter_map(|s| s.axis).collect();
        let mut unique = labels.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), labels.len(), "cell labels tell axes apart");
    }

    #[test]
    fn bounds_are_accepted_and_their_neighbours_refused() {
        assert_eq!(MAX_CONCURRENT_IMPORTS.integer(" 256 "), Ok(256));
        assert_eq!(
            MAX_CONCURRENT_IMPORTS.integer("257"),
            Err("an integer in 1..=256".to_string())
        );
        assert!(MAX_CONCURRENT_IMPORTS.check("0").is_err());
        assert!(MAX_CONCURRENT_IMPORTS.check("-1").is_err());
        assert!(MAX_CONCURRENT_IMPORTS.check("two").is_err());
        assert_eq!(DEDUP_STRATEGY.check("preload"), Ok(()));
        assert_eq!(
            DEDUP_STRATEGY.check("magic"),
            Err("`batch` or `preload`".to_string())
        );
        assert_eq!(
            DATABASE_URL.check("anything"),
            Ok(()),
            "text is the importer's to check"
        );
    }

    #[test]
    fn the_readme_table_is_the_generated_one() {
        let readme = include_str!("../../README.md");
        let fresh = with_table(readme).expect("README.md has the settings table's markers");
        assert!(
            fresh == readme,
            "README.md's settings table differs from settings/src/table.rs: run `make settings-table`"
        );
    }

    #[test]
    fn platforms_round_trip_their_names() {
        for p in Platform::ALL {
            assert_eq!(Platform::parse(p.as_str()), Some(p));
        }
        assert_eq!(Platform::parse("chesscom"), None);
        assert_eq!(Platform::ChessCom.lanes_setting().name, "CHESSCOM_MAX_REQUESTS");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// The table's integer and word settings, by index (text settings accept anything).
        fn checked() -> Vec<&'static Setting> {
            SETTINGS
                .iter()
                .filter(|s| !matches!(s.accepted, Accepted::Text(_)))
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Every integer is accepted exactly when it lies within the setting's bounds, written
            /// with or without surrounding spaces; its bounds are, their neighbours are not.
            #[test]
            fn an_integer_is_accepted_exactly_within_its_bounds(
                pick in any::<prop::sample::Index>(),
                value in any::<u64>(),
                pad in "[ \t]{0,2}",
            ) {
                let integers: Vec<&Setting> = checked()
                    .into_iter()
                    .filter(|s| matches!(s.accepted, Accepted::Integer { .. }))
                    .collect();
                let setting = integers[pick.index(integers.len())];
                let Accepted::Integer { min, max, .. } = setting.accepted else { unreachable!() };
                let written = format!("{pad}{value}{pad}");
                prop_assert_eq!(setting.check(&written).is_ok(), (min..=max).contains(&value), "{}={}", setting.name, value);
                prop_assert!(setting.check(&min.to_string()).is_ok());
                prop_assert!(setting.check(&max.to_string()).is_ok());
                if let Some(below) = min.checked_sub(1) {
                    prop_assert!(setting.check(&below.to_string()).is_err(), "{} below its minimum", setting.name);
                }
                if let Some(above) = max.checked_add(1) {
                    prop_assert!(setting.check(&above.to_string()).is_err(), "{} above its maximum", setting.name);
                }
            }

            /// A word setting accepts its words and nothing else.
            #[test]
            fn a_word_is_accepted_exactly_when_listed(pick in any::<prop::sample::Index>(), word in "[a-z.\\-]{0,12}") {
                let words: Vec<&Setting> = checked()
                    .into_iter()
                    .filter(|s| matches!(s.accepted, Accepted::OneOf(_)))
                    .collect();
                let setting = words[pick.index(words.len())];
                let Accepted::OneOf(listed) = setting.accepted else { unreachable!() };
                prop_assert_eq!(setting.check(&word).is_ok(), listed.contains(&word.as_str()), "{}={}", setting.name, word);
            }
        }
    }
}
