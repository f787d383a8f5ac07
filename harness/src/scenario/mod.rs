//! Scenarios: what to measure, read from YAML and checked before anything starts.
//!
//! A scenario is a matrix of importer settings, a workload, a database, a
//! memory budget and repeats. Unknown keys are rejected (a typo must not
//! silently measure the default), and every error names the file, the line
//! and the key.

pub mod capture;
mod matrix;
mod schema;

use std::path::{Path, PathBuf};

use settings::Platform;

pub use matrix::{
    ALLOCATORS, Axis, Cell, Lanes, Refused, UnknownVariable, accepts, axes, known_variable, lanes, value_of,
};
pub use schema::{
    Crash, Database, DatabaseFaults, Gate, Matrix, Observed, ObservedProvider, OutageSpec, Pooler, REPEATS,
    Scenario, ShortMonths, Upstream, UserTemplate, Workload,
};

/// A scenario that cannot be used; the message names file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// YAML syntax, an unknown key or a value of the wrong type.
    #[error("{file}:{line}: {source}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line, 0 when unknown.
        line: usize,
        /// What serde_yaml said, naming the key.
        #[source]
        source: serde_yaml::Error,
    },
    /// A value of the right type but not acceptable.
    #[error("{file}:{line}: {key}: {message}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line of the key, 0 when not found.
        line: usize,
        /// The key at fault.
        key: String,
        /// Why.
        message: String,
    },
    /// A captured scenario's `observed` section does not hold together.
    #[error("{file}:{line}: observed: {source}")]
    Observed {
        /// The file.
        file: PathBuf,
        /// 1-based line of `observed`, 0 when not found.
        line: usize,
        /// What is wrong in it.
        #[source]
        source: BadObserved,
    },
}

/// What is wrong with a captured scenario's `observed` section.
#[derive(Debug, thiserror::Error)]
pub enum BadObserved {
    /// `from` or `to` is not a time.
    #[error("{key}: {value:?} is not an RFC 3339 time: {source}")]
    Time {
        /// `from` or `to`.
        key: &'static str,
        /// What it holds.
        value: String,
        /// What chrono said.
        #[source]
        source: chrono::ParseError,
    },
    /// The window ends before it starts.
    #[error("from {from} is not before to {to}")]
    Order {
        /// Its start.
        from: String,
        /// Its end.
        to: String,
    },
    /// `tolerance_pct` is out of its range.
    #[error("tolerance_pct: {0} is not in (0, 1000]")]
    Tolerance(f64),
    /// A provider the harness does not know.
    #[error("providers: {0:?} is neither lichess nor chess.com")]
    Provider(String),
    /// A provider's time is negative or not a number.
    #[error("{0}: every time is a number of seconds, 0 or more")]
    Times(String),
    /// A provider's imports ended more often than they were requested.
    #[error("{provider}: {completed} completed and {failed} failed of {imports} imports")]
    Counts {
        /// The provider.
        provider: String,
        /// Imports completed.
        completed: u32,
        /// Imports failed.
        failed: u32,
        /// Imports requested.
        imports: u32,
    },
}

/// A scenario checked and ready to run.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Where it was read from.
    pub file: PathBuf,
    /// Its name.
    pub name: String,
    /// As written.
    pub raw: Scenario,
    /// Budget in bytes.
    pub budget_bytes: u64,
    /// Headroom as a fraction.
    pub headroom: f64,
    /// Every cell of the matrix, in order.
    pub cells: Vec<Cell>,
}

/// 1-based line of the first line that sets `key`, 0 when not found.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with(key) && t[key.len()..].trim_start().starts_with(':')
        })
        .map_or(0, |i| i + 1)
}

/// Parses a size such as `512MB`, `1GB`, `700MiB` or a plain byte count.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = n * mult;
    (bytes >= 1.0 && bytes.is_finite()).then_some(bytes as u64)
}

fn parse_percent(s: &str) -> Option<f64> {
    let n: f64 = s.trim().trim_end_matches('%').trim().parse().ok()?;
    (0.0..100.0).contains(&n).then_some(n / 100.0)
}

impl Checked {
    /// Reads and checks a scenario file.
    pub fn load(file: &Path) -> Result<Checked, Error> {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Self::parse(file, &text)
    }

    /// Checks scenario text as if read from `file`.
    pub fn parse(file: &Path, text: &str) -> Result<Checked, Error> {
        let raw: Scenario = serde_yaml::from_str(text).map_err(|source| Error::Syntax {
            file: file.to_path_buf(),
            line: source.location().map_or(0, |l| l.line()),
            source,
        })?;
        let invalid = |key: &str, message: String| Error::Invalid {
            file: file.to_path_buf(),
            line: line_of(text, key),
            key: key.to_string(),
            message,
        };
        let bad_at = |(key, message): Bad| invalid(&key, message);
        let budget_bytes = parse_bytes(&raw.budget).ok_or_else(|| {
            invalid(
                "budget",
                format!("{:?} is not a size such as 512MB or 1GB", raw.budget),
            )
        })?;
        let headroom = parse_percent(&raw.headroom).ok_or_else(|| {
            invalid(
                "headroom",
                format!("{:?} is not a percentage in 0..100", raw.headroom),
            )
        })?;
        check_users(&raw.workload).map_err(bad_at)?;
        check_gate(&raw.gate).map_err(bad_at)?;
        check_upstream(&raw).map_err(bad_at)?;
        let imports = imports_of(&raw.workload).map_err(bad_at)?;
        check_processes(&raw).map_err(bad_at)?;
        check_database_faults(&raw).map_err(bad_at)?;
        let axes = matrix::values_of(&raw.matrix).map_err(bad_at)?;
        check_env(&raw).map_err(bad_at)?;
        check_pooler(&raw).map_err(bad_at)?;
        let mut cells = matrix::expand(&axes, imports)
            .map_err(|n| invalid("matrix", format!("{n} cells; at most {}", matrix::MAX_CELLS)))?;
        check_arrival_span(&raw, &cells).map_err(bad_at)?;
        lanes_into_cells(&raw, &mut cells);
        if let Some(o) = &raw.observed {
            check_observed(o).map_err(|source| Error::Observed {
                file: file.to_path_buf(),
                line: line_of(text, "observed"),
                source,
            })?;
        }
        let name = name_of(&raw, file).map_err(bad_at)?;
        Ok(Checked {
            file: file.to_path_buf(),
            name,
            budget_bytes,
            headroom,
            cells,
            raw,
        })
    }

    /// The production window a captured scenario replays, in words (`observed`), if it is one.
    pub fn observed_window(&self) -> Option<String> {
        self.raw
            .observed
            .as_ref()
            .map(|o| format!("{} to {} (as production recorded it)", o.from, o.to))
    }

    /// The user kind of import number `i` (0-based): templates are taken in turn.
    pub fn template(&self, i: usize) -> &UserTemplate {
        let users = &self.raw.workload.users;
        &users[i % users.len()]
    }
}

use matrix::Bad;

fn wrong(key: &str, message: String) -> Bad {
    (key.to_string(), message)
}

/// The users: counts that fit together, faults on the platform that has them, the API's limit.
fn check_users(workload: &Workload) -> Result<(), Bad> {
    if workload.users.is_empty() {
        return Err(wrong("users", "at least one user is needed".into()));
    }
    for u in &workload.users {
        if u.stored > u.games {
            return Err(wrong(
                "stored",
                format!("{} stored of {} games upstream", u.stored, u.games),
            ));
        }
        if u.new_since_stored + u.stored > u.games {
            return Err(wrong(
                "new_since_stored",
                format!(
                    "{} new + {} stored is more than the {} games upstream",
                    u.new_since_stored, u.stored, u.games
                ),
            ));
        }
        if !u.finishes_late.is_empty() && u.platform != Platform::Lichess {
            return Err(wrong(
                "finishes_late",
                "chess.com files a game under the month it ended, which every import reads: \
                 late finishes are a lichess case"
                    .into(),
            ));
        }
        let stored_range = u.new_since_stored..u.new_since_stored + u.stored;
        if let Some(bad) = u.finishes_late.iter().find(|i| !stored_range.contains(*i)) {
            return Err(wrong(
                "finishes_late",
                format!(
                    "game {bad} is not inside the stored range (indices {}..{})",
                    stored_range.start, stored_range.end
                ),
            ));
        }
        if !(1..=10_000).contains(&u.limit) {
            return Err(wrong(
                "limit",
                format!("{} is not in 1..=10000 (the API's range)", u.limit),
            ));
        }
        let stream_faults = [
            ("cut_after", u.cut_after),
            ("stall_after", u.stall_after),
            ("cut_every", u.cut_every),
        ];
        if let Some((key, _)) = stream_faults.iter().find(|(_, v)| v.is_some())
            && u.platform != Platform::Lichess
        {
            return Err(wrong(key, "cut and stalled streams are lichess faults".into()));
        }
        if u.cut_every == Some(0) {
            return Err(wrong(
                "cut_every",
                "0: a stream cut before its first game never makes progress".into(),
            ));
        }
        if u.months == 0 || u.months > 600 {
            return Err(wrong("months", format!("{} is not in 1..=600", u.months)));
        }
        if let Some(short) = &u.short_months {
            check_short_months(u, short)?;
        }
    }
    if workload.imports == Some(0) {
        return Err(wrong("imports", "0 imports measure nothing".into()));
    }
    Ok(())
}

/// Months served short to a returning chess.com user's earlier import: within the user's
/// months, some of the games left out within the earlier import's reach (else the fault never
/// struck), and the measured import's `limit` reaching them (else healing is not asked for).
fn check_short_months(u: &UserTemplate, short: &schema::ShortMonths) -> Result<(), Bad> {
    if u.platform != Platform::ChessCom {
        return Err(wrong("short_months", "months are chess.com's".into()));
    }
    if u.stored == 0 {
        return Err(wrong(
            "short_months",
            "the month is served short to the earlier import of a returning user: set `stored`".into(),
        ));
    }
    if short.missing == 0 {
        return Err(wrong("missing", "0 games missing is a whole month".into()));
    }
    if let Some(m) = short.months.iter().find(|&&m| m >= u.months) {
        return Err(wrong(
            "short_months",
            format!("month {m} back is not one of the user's {} months", u.months),
        ));
    }
    let earlier = crate::upstream::MockUser {
        months: u.months,
        malformed: u.malformed.clone(),
        unplayed: u.new_since_stored,
        short_months: Some(crate::upstream::ShortMonths {
            requests: u32::MAX,
            missing: short.missing,
            months: short.months.clone(),
        }),
        ..crate::upstream::MockUser::new("check", u.platform, u.games)
    };
    let left_out = earlier.left_out_of(u.stored).len() as u64;
    if left_out == 0 {
        return Err(wrong(
            "short_months",
            "no game left out is among those the earlier import stores: the fault never strikes".into(),
        ));
    }
    if u.limit < u.new_since_stored + left_out {
        return Err(wrong(
            "limit",
            format!(
                "{} does not reach the {left_out} games the earlier import missed after the {} new ones:                  the measured import would not be asked to heal the month",
                u.limit, u.new_since_stored
            ),
        ));
    }
    Ok(())
}

/// The gate's tolerances.
fn check_gate(g: &Gate) -> Result<(), Bad> {
    for (key, v) in [
        ("peak_tolerance_pct", g.peak_tolerance_pct),
        ("per_import_tolerance_pct", g.per_import_tolerance_pct),
    ] {
        if !(0.0..=1000.0).contains(&v) {
            return Err(wrong(key, format!("{v} is not in 0..=1000")));
        }
    }
    if !(0.0..=1000.0).contains(&g.tolerance_pct) {
        return Err(wrong(
            "tolerance_pct",
            format!("{} is not in 0..=1000", g.tolerance_pct),
        ));
    }
    if !(0.0..=100_000.0).contains(&g.tolerance_floor_mb) {
        return Err(wrong(
            "tolerance_floor_mb",
            format!("{} is not in 0..=100000", g.tolerance_floor_mb),
        ));
    }
    if !(0.0..=1000.0).contains(&g.max_spread_pct) {
        return Err(wrong(
            "max_spread_pct",
            format!("{} is not in 0..=1000", g.max_spread_pct),
        ));
    }
    Ok(())
}

/// The mocks: their rules, latency, time scale and paces, and the arrivals.
fn check_upstream(raw: &Scenario) -> Result<(), Bad> {
    if let crate::upstream::Policy::Enforced(rules) = &raw.upstream.policy
        && let Some(problem) = rules.problem()
    {
        return Err(wrong("policy", problem));
    }
    if raw.upstream.chesscom_latency_ms > 60_000 {
        return Err(wrong(
            "chesscom_latency_ms",
            format!("{} is not in 0..=60000", raw.upstream.chesscom_latency_ms),
        ));
    }
    let up = &raw.upstream;
    if !(up.time_scale.is_finite() && (1.0..=1000.0).contains(&up.time_scale)) {
        return Err(wrong(
            "time_scale",
            format!("{} is not in 1..=1000", up.time_scale),
        ));
    }
    if up.authenticated_pace_games_per_sec.is_some() && up.pace_games_per_sec == 0 {
        return Err(wrong(
            "authenticated_pace_games_per_sec",
            "needs pace_games_per_sec too: an unpaced anonymous stream would be the faster one".into(),
        ));
    }
    if let Some(problem) = raw.workload.arrivals.problem() {
        return Err(wrong("arrivals", problem));
    }
    for o in &up.outages {
        check_outage(o, up.time_scale, raw.cell_timeout_secs)?;
    }
    Ok(())
}

/// An outage: a 5xx, for a while, beginning before the cell gives up.
fn check_outage(o: &schema::OutageSpec, time_scale: f64, cell_timeout_secs: u64) -> Result<(), Bad> {
    if let Some(status) = o.status.filter(|s| !(500..=599).contains(s)) {
        return Err(wrong(
            "status",
            format!("{status}: an outage answers a 5xx (lichess 502 or 503, chess.com 503)"),
        ));
    }
    if !(o.duration_secs.is_finite() && o.duration_secs > 0.0 && o.duration_secs <= 3600.0) {
        return Err(wrong(
            "duration_secs",
            format!("{} is not in (0, 3600] provider seconds", o.duration_secs),
        ));
    }
    let begins = o.after_secs / time_scale;
    if !(o.after_secs.is_finite() && o.after_secs >= 0.0) || begins >= cell_timeout_secs as f64 {
        return Err(wrong(
            "after_secs",
            format!(
                "{} is not a time, 0 or more, before the cell's timeout ({cell_timeout_secs} s at time_scale {time_scale})",
                o.after_secs
            ),
        ));
    }
    Ok(())
}

/// Database faults: PostgreSQL's backends are what they terminate.
fn check_database_faults(raw: &Scenario) -> Result<(), Bad> {
    let Some(f) = &raw.database_faults else {
        return Ok(());
    };
    if raw.database != Database::Postgres {
        return Err(wrong(
            "database_faults",
            "terminating the importer's backends is a PostgreSQL fault (pg_terminate_backend);              set `database: postgres`"
                .into(),
        ));
    }
    let every = f.terminate_backends_every_secs;
    if !(every.is_finite() && (0.1..=600.0).contains(&every)) {
        return Err(wrong(
            "terminate_backends_every_secs",
            format!("{every} is not in 0.1..=600 seconds"),
        ));
    }
    Ok(())
}

/// The imports each cell requests: `workload.imports`, or one per listed offset.
fn imports_of(workload: &Workload) -> Result<Option<u32>, Bad> {
    let mut imports = workload.imports;
    if let Some(listed) = workload.arrivals.count() {
        match imports {
            Some(n) if n != listed => {
                return Err(wrong(
                    "at_secs",
                    format!("{listed} offsets for {n} imports: give one offset per import"),
                ));
            }
            _ => imports = Some(listed),
        }
    }
    Ok(imports)
}

/// The cell timeout, the importer processes and the crash.
fn check_processes(raw: &Scenario) -> Result<(), Bad> {
    if raw.cell_timeout_secs == 0 {
        return Err(wrong("cell_timeout_secs", "must be at least 1".into()));
    }
    if !(1..=8).contains(&raw.instances) {
        return Err(wrong("instances", format!("{} is not in 1..=8", raw.instances)));
    }
    if raw.instances > 1 && raw.database != Database::Postgres {
        return Err(wrong(
            "instances",
            "several importer processes share a queue only on PostgreSQL; set `database: postgres`".into(),
        ));
    }
    if let Some(c) = &raw.crash {
        if c.after_games == 0 {
            return Err(wrong("after_games", "must be at least 1".into()));
        }
        if !(1..=raw.instances).contains(&c.instance) {
            return Err(wrong(
                "instance",
                format!(
                    "{} is not one of the {} importer processes",
                    c.instance, raw.instances
                ),
            ));
        }
        if raw.instances == 1 && !c.restart {
            return Err(wrong(
                "restart",
                "with one importer process, a crash without `restart: true` leaves no one to finish".into(),
            ));
        }
    }
    Ok(())
}

/// The importer's environment: a setting of the table (or an axis of the harness's own) takes
/// what it accepts there.
fn check_env(raw: &Scenario) -> Result<(), Bad> {
    for (key, value) in &raw.env {
        matrix::known_variable(key).map_err(|unknown| wrong(key, unknown.to_string()))?;
        matrix::accepts(key, value).map_err(|words| wrong(key, format!("{value:?}: expected {words}")))?;
    }
    Ok(())
}

/// `DATABASE_POOLER: transaction` puts a PgBouncer in front of PostgreSQL, which the harness
/// starts with the allowance `pooler` gives.
fn check_pooler(raw: &Scenario) -> Result<(), Bad> {
    let key = settings::DATABASE_POOLER.name;
    let transaction = raw
        .matrix
        .0
        .get(key)
        .into_iter()
        .flatten()
        .any(|v| v.as_str().map(str::trim) == Some("transaction"))
        || raw.env.get(key).is_some_and(|v| v.trim() == "transaction");
    if transaction && raw.database != Database::Postgres {
        return Err(wrong(
            key,
            "`transaction` puts a PgBouncer in front of PostgreSQL: it needs `database: postgres`".into(),
        ));
    }
    if !(1..=100).contains(&raw.pooler.default_pool_size) {
        return Err(wrong(
            "pooler.default_pool_size",
            format!("{} is not in 1..=100", raw.pooler.default_pool_size),
        ));
    }
    Ok(())
}

/// The last import must be posted well before the cell gives up on it.
fn check_arrival_span(raw: &Scenario, cells: &[Cell]) -> Result<(), Bad> {
    for c in cells {
        let last = raw
            .workload
            .arrivals
            .offsets(c.imports as usize, raw.upstream.seed)
            .into_iter()
            .fold(0.0, f64::max);
        let real = last / raw.upstream.time_scale;
        if real > raw.cell_timeout_secs as f64 / 2.0 || last > crate::load::arrivals::MAX_SPAN_SECS {
            return Err(wrong(
                "arrivals",
                format!(
                    "the last of {} imports is posted at {last:.0} s of provider time ({real:.0} s at time_scale {}): \
                     more than half of cell_timeout_secs {} or a day",
                    c.imports, raw.upstream.time_scale, raw.cell_timeout_secs
                ),
            ));
        }
    }
    Ok(())
}

/// The lanes a cell runs with belong to its record, wherever the scenario set them: the time
/// reports and `recommend --max-wait` read them there.
fn lanes_into_cells(raw: &Scenario, cells: &mut [Cell]) {
    for key in Platform::ALL.map(|p| p.lanes_setting().name) {
        if let Some(v) = raw.env.get(key) {
            for c in cells.iter_mut() {
                c.env.entry(key.to_string()).or_insert_with(|| v.clone());
            }
        }
    }
}

/// The scenario's name: its own, or the file's stem; letters, digits, - and _.
fn name_of(raw: &Scenario, file: &Path) -> Result<String, Bad> {
    let name = raw.name.clone().unwrap_or_else(|| {
        file.file_stem()
            .map_or("scenario".into(), |s| s.to_string_lossy().into_owned())
    });
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(wrong("name", format!("{name:?}: use letters, digits, - and _")));
    }
    Ok(name)
}

/// What is wrong with a captured scenario's `observed` section, in words.
fn check_observed(o: &schema::Observed) -> Result<(), BadObserved> {
    let at = |key: &'static str, v: &str| {
        chrono::DateTime::parse_from_rfc3339(v).map_err(|source| BadObserved::Time {
            key,
            value: v.to_string(),
            source,
        })
    };
    if at("from", &o.from)? >= at("to", &o.to)? {
        return Err(BadObserved::Order {
            from: o.from.clone(),
            to: o.to.clone(),
        });
    }
    if !(o.tolerance_pct.is_finite() && o.tolerance_pct > 0.0 && o.tolerance_pct <= 1000.0) {
        return Err(BadObserved::Tolerance(o.tolerance_pct));
    }
    for (provider, p) in &o.providers {
        if Platform::parse(provider).is_none() {
            return Err(BadObserved::Provider(provider.clone()));
        }
        let times = [
            p.wait_p50_secs,
            p.wait_p95_secs,
            p.wait_max_secs,
            p.run_p50_secs,
            p.run_p95_secs,
            p.run_max_secs,
        ];
        if times.iter().any(|t| !t.is_finite() || *t < 0.0) {
            return Err(BadObserved::Times(provider.clone()));
        }
        if p.completed + p.failed > p.imports {
            return Err(BadObserved::Counts {
                provider: provider.clone(),
                completed: p.completed,
                failed: p.failed,
                imports: p.imports,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "budget: 512MB\nmatrix:\n  MAX_CONCURRENT_IMPORTS: [2, 3]\n  IMPORT_BATCH_SIZE: [30, 50]\nworkload:\n  users:\n    - platform: lichess\n      games: 100\n";

    fn parse(text: &str) -> Result<Checked, Error> {
        Checked::parse(Path::new("s.yaml"), text)
    }

    #[test]
    fn returning_users_keys_are_checked() {
        let err = parse(&GOOD.replace(
            "games: 100",
            "games: 100\n      stored: 60\n      new_since_stored: 50",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("new_since_stored"), "{err}");
        let err = parse(&GOOD.replace(
            "games: 100",
            "games: 100\n      stored: 10\n      finishes_late: [50]",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("not inside the stored range"), "{err}");
        assert!(
            parse(&GOOD.replace(
                "games: 100",
                "games: 100\n      stored: 50\n      new_since_stored: 10\n      finishes_late: [20]"
            ))
            .is_ok()
        );
    }

    #[test]
    fn matrix_expands_to_every_combination() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.cells.len(), 4);
        assert_eq!(s.cells[0].label, "c2-b30-p2000");
        assert_eq!(s.cells[0].config_label(), "b30-p2000");
        assert_eq!(s.cells[3].imports, 3, "imports default to MAX_CONCURRENT_IMPORTS");
        assert_eq!(s.budget_bytes, 512 * 1024 * 1024);
        assert!((s.headroom - 0.15).abs() < 1e-9);
        assert_eq!(s.name, "s");
    }

    /// Labels name the same cells as before the settings table: a baseline's labels still match.
    #[test]
    fn a_label_reads_every_varied_setting_in_its_place() {
        let every = "  DEDUP_STRATEGY: [batch]\n  DB_POOL_SIZE: [5]\n  HTTP_MAX_CONNECTIONS: [15]\n  \
                     HTTP_POOL_MAX_IDLE_PER_HOST: [6]\n  WORKER_THREADS: [2]\n  SQLITE_CACHE_KIB: [512]\n  \
                     MALLOC_ARENA_MAX: [0]\n  ALLOCATOR: [\" glibc\"]\n  LICHESS_MAX_STREAMS: [1]\n  \
                     CHESSCOM_MAX_REQUESTS: [2]\n  DATABASE_POOLER: [\"transaction \"]\n";
        let text = GOOD.replace("  IMPORT_BATCH_SIZE: [30, 50]\n", every) + "database: postgres\n";
        let s = parse(&text).unwrap();
        assert_eq!(
            s.cells[0].label,
            "c2-b50-p2000-dbatch-db5-h15-hi6-t2-sc512-a0-glibc-ls1-cr2-pgbouncer"
        );
        assert_eq!(
            s.cells[0].env["DATABASE_POOLER"], "transaction",
            "trimmed as the importer trims"
        );
        let sqlite = GOOD.replace(
            "  IMPORT_BATCH_SIZE: [30, 50]",
            "  DATABASE_POOLER: [\"transaction \"]",
        );
        assert!(
            parse(&sqlite)
                .unwrap_err()
                .to_string()
                .contains("needs `database: postgres`")
        );
        let err = parse(&format!("{GOOD}env:\n  MALLOC_ARENA_MAX: many\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("MALLOC_ARENA_MAX: \"many\": expected a whole number"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_file_and_line() {
        let err = parse(&GOOD.replace("  IMPORT_BATCH_SIZE", "  IMPORT_BATCH_SIZ"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.yaml:4:"), "{err}");
        assert!(err.contains("IMPORT_BATCH_SIZ"), "{err}");
        let err = parse(&format!("{GOOD}colour: blue\n")).unwrap_err().to_string();
        assert!(err.contains("colour") && err.starts_with("s.yaml:9:"), "{err}");
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let err = parse(&GOOD.replace("512MB", "lots")).unwrap_err().to_string();
        assert_eq!(
            err,
            "s.yaml:1: budget: \"lots\" is not a size such as 512MB or 1GB"
        );
        let err = parse(&GOOD.replace("games: 100", "games: 100\n      stored: 200"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.yaml:9: stored:"), "{err}");
        let err = parse(&GOOD.replace("[2, 3]", "[]")).unwrap_err().to_string();
        assert!(err.starts_with("s.yaml:3: MAX_CONCURRENT_IMPORTS:"), "{err}");
        let err = parse(&GOOD.replace("platform: lichess", "platform: fics"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.yaml:7:") && err.contains("fics"), "{err}");
    }

    /// A captured scenario's `observed` section: every fault names the key at fault, at its line.
    #[test]
    fn a_bad_observed_section_says_what_is_wrong_at_its_line() {
        let provider = "    lichess: {imports: 2, completed: 2, failed: 1, wait_p50_secs: 1, wait_p95_secs: 2, \
                        wait_max_secs: 3, run_p50_secs: 1, run_p95_secs: 2, run_max_secs: 3, \
                        games_fetched: 9, games_imported: 9, games_skipped: 0}\n";
        let observed = |from: &str, tolerance: &str| {
            format!(
                "{GOOD}observed:\n  from: \"{from}\"\n  to: \"2026-12-01T01:00:00Z\"\n  \
                 tolerance_pct: {tolerance}\n  providers:\n{provider}"
            )
        };
        let err = parse(&observed("2026-12-01T02:00:00Z", "25"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "s.yaml:9: observed: from 2026-12-01T02:00:00Z is not before to 2026-12-01T01:00:00Z"
        );
        let err = parse(&observed("yesterday", "25")).unwrap_err().to_string();
        assert!(
            err.starts_with("s.yaml:9: observed: from: \"yesterday\" is not an RFC 3339 time: "),
            "{err}"
        );
        let err = parse(&observed("2026-12-01T00:00:00Z", "0"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "s.yaml:9: observed: tolerance_pct: 0 is not in (0, 1000]");
        let err = parse(&observed("2026-12-01T00:00:00Z", "25"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "s.yaml:9: observed: lichess: 2 completed and 1 failed of 2 imports"
        );
    }

    #[test]
    fn time_and_arrivals_are_checked() {
        let with = |workload: &str, extra: &str| {
            parse(&format!("{}{workload}{extra}", GOOD.replace("[2, 3]", "[2]")))
        };
        let s = with(
            "  arrivals: {at_secs: [0, 0, 0, 75]}\n",
            "upstream:\n  time_scale: 10\n",
        )
        .unwrap();
        assert_eq!(s.cells[0].imports, 4, "one import per offset");
        assert_eq!(s.raw.upstream.time_scale, 10.0);
        let err = with("  imports: 3\n  arrivals: {at_secs: [0, 5]}\n", "")
            .unwrap_err()
            .to_string();
        assert!(err.contains("at_secs: 2 offsets for 3 imports"), "{err}");
        let err = with("  arrivals: {every_secs: -1}\n", "")
            .unwrap_err()
            .to_string();
        assert!(err.contains("arrivals: every_secs: -1"), "{err}");
        let err = with("  arrivals: {every_secs: 3600}\n", "")
            .unwrap_err()
            .to_string();
        assert!(err.contains("the last of 2 imports is posted at 3600 s"), "{err}");
        assert!(
            with(
                "  arrivals: {every_secs: 3600}\n",
                "upstream:\n  time_scale: 100\n"
            )
            .is_ok()
        );
        let err = with("", "upstream:\n  time_scale: 0.5\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("s.yaml:10: time_scale: 0.5 is not in 1..=1000"),
            "{err}"
        );
        let err = with("", "upstream:\n  authenticated_pace_games_per_sec: 30\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs pace_games_per_sec"), "{err}");
        let s = parse(&GOOD.replace(
            "  IMPORT_BATCH_SIZE: [30, 50]",
            "  LICHESS_MAX_STREAMS: [1, 2]\n  CHESSCOM_MAX_REQUESTS: [1]",
        ))
        .unwrap();
        assert_eq!(s.cells[1].label, "c2-b50-p2000-ls2-cr1");
        assert_eq!(s.cells[1].env["LICHESS_MAX_STREAMS"], "2");
    }

    #[test]
    fn instances_and_crashes_are_checked() {
        let err = |extra: &str| parse(&format!("{GOOD}{extra}")).unwrap_err().to_string();
        assert!(
            err("instances: 2\n").starts_with("s.yaml:9: instances:")
                && err("instances: 2\n").contains("PostgreSQL"),
            "{}",
            err("instances: 2\n")
        );
        assert!(err("database: postgres\ninstances: 9\n").contains("instances: 9 is not in 1..=8"));
        assert!(
            err("crash:\n  after_games: 10\n").contains("restart:"),
            "one process needs a restart"
        );
        assert!(err("crash:\n  after_games: 0\n  restart: true\n").contains("after_games:"));
        let two = "database: postgres\ninstances: 2\ncrash:\n  after_games: 10\n  instance: 3\n";
        assert!(
            err(two).contains("instance: 3 is not one of the 2"),
            "{}",
            err(two)
        );
        assert!(err("crash:\n  after_games: 10\n  restart: yes please\n").starts_with("s.yaml:"));
        let alloc = GOOD.replace("  IMPORT_BATCH_SIZE: [30, 50]", "  ALLOCATOR: [glibc, tcmalloc]");
        let e = parse(&alloc).unwrap_err().to_string();
        assert!(
            e.starts_with("s.yaml:4: ALLOCATOR:") && e.contains("tcmalloc"),
            "{e}"
        );
        let ok = GOOD.replace("  IMPORT_BATCH_SIZE: [30, 50]", "  ALLOCATOR: [glibc, jemalloc]");
        assert!(
            parse(&ok)
                .unwrap()
                .cells
                .iter()
                .any(|c| c.label.ends_with("-jemalloc"))
        );
        let cut = GOOD.replace("platform: lichess", "platform: chess.com\n      cut_after: 5");
        assert!(parse(&cut).unwrap_err().to_string().contains("cut_after:"));
        let ok = parse(&format!(
            "{GOOD}database: postgres\ninstances: 2\ncrash:\n  after_games: 10\n  instance: 2\n"
        ))
        .unwrap();
        assert_eq!(ok.raw.instances, 2);
    }

    /// The harness accepts exactly what the importer accepts (the importer's own test walks the
    /// same table): each bound in `env:` and, for a setting the matrix varies, as an axis value;
    /// the numbers just outside are refused naming the setting.
    #[test]
    fn every_setting_accepts_its_bounds_and_refuses_their_neighbours() {
        let base = GOOD.replace("  IMPORT_BATCH_SIZE: [30, 50]\n", "") + "database: postgres\n";
        let in_env = |name: &str, v: &str| parse(&format!("{base}env:\n  {name}: \"{v}\"\n"));
        let in_matrix = |name: &str, v: &str| {
            parse(&base.replace("matrix:\n", &format!("matrix:\n  {name}: [\"{v}\"]\n")))
        };
        let axes = axes();
        let mut walked = 0;
        for s in settings::SETTINGS {
            let (ok, bad): (Vec<String>, Vec<String>) = match s.accepted {
                settings::Accepted::Integer { min, max, .. } => (
                    vec![min.to_string(), max.to_string()],
                    [min.checked_sub(1), max.checked_add(1)]
                        .into_iter()
                        .flatten()
                        .map(|n| n.to_string())
                        .collect(),
                ),
                settings::Accepted::OneOf(words) => (
                    words.iter().map(|w| w.to_string()).collect(),
                    vec!["neither".into()],
                ),
                settings::Accepted::Text(_) => continue,
            };
            let varied = axes.iter().any(|a| a.name == s.name);
            for v in &ok {
                assert!(in_env(s.name, v).is_ok(), "env {}={v}", s.name);
                if varied && s.name != "MAX_CONCURRENT_IMPORTS" {
                    assert!(in_matrix(s.name, v).is_ok(), "matrix {}={v}", s.name);
                }
            }
            for v in &bad {
                let err = in_env(s.name, v).unwrap_err().to_string();
                assert!(err.contains(&format!("{}: \"{v}\": expected", s.name)), "{err}");
                if varied && s.name != "MAX_CONCURRENT_IMPORTS" {
                    let err = in_matrix(s.name, v).unwrap_err().to_string();
                    assert!(err.contains(&format!("{}: \"{v}\": expected", s.name)), "{err}");
                }
            }
            walked += 1;
        }
        assert!(walked >= 20, "{walked} settings walked");
        let err = parse(&GOOD.replace("[2, 3]", "[0, 3]")).unwrap_err().to_string();
        assert_eq!(
            err,
            "s.yaml:3: MAX_CONCURRENT_IMPORTS: \"0\": expected an integer in 1..=256"
        );
        let err = parse(&GOOD.replace("  MAX_CONCURRENT_IMPORTS: [2, 3]", "  BIND_ADDR: [\"0.0.0.0:1\"]"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("s.yaml:3: BIND_ADDR: not a setting the matrix can vary"),
            "{err}"
        );
        // A misspelt setting in `env:` would measure the default and pass.
        let err = parse(&format!("{GOOD}env:\n  IMPORT_BATCH_SIZ: 50\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("IMPORT_BATCH_SIZ: not a setting of the importer")
                && err.ends_with("did you mean IMPORT_BATCH_SIZE?"),
            "{err}"
        );
        let err = parse(&format!("{GOOD}repeats: -1\n")).unwrap_err().to_string();
        assert!(err.contains("repeats: -1 is not in 1..=50"), "{err}");
        assert!(parse(&format!("{GOOD}env:\n  RUST_LOG: debug\n  TMPDIR: /tmp\n")).is_ok());
    }

    #[test]
    fn bad_days_keys_are_checked() {
        let with_up = |up: &str| parse(&format!("{GOOD}upstream:\n  time_scale: 2\n  outages:\n{up}"));
        let s = with_up("    - {provider: lichess, after_secs: 4, duration_secs: 30}\n    - {provider: chess.com, duration_secs: 10, body: html}\n").unwrap();
        let li = s.raw.upstream.outages[0].outage(2.0);
        assert_eq!(
            (li.status, li.body, li.duration),
            (
                502,
                crate::upstream::OutageBody::Html,
                std::time::Duration::from_secs(15)
            )
        );
        let cc = s.raw.upstream.outages[1].outage(2.0);
        assert_eq!((cc.status, cc.body), (503, crate::upstream::OutageBody::Html));
        let err = with_up("    - {provider: lichess, duration_secs: 30, status: 404}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("status: 404: an outage answers a 5xx"), "{err}");
        let err = with_up("    - {provider: lichess, duration_secs: 0}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("duration_secs: 0 is not in"), "{err}");
        let err = with_up("    - {provider: lichess, after_secs: 700, duration_secs: 5}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("after_secs: 700") && err.contains("timeout"),
            "{err}"
        );
        let err = with_up("    - {provider: lichess, duration_secs: 5, body: xml}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("xml"), "{err}");

        let user = |extra: &str| parse(&GOOD.replace("games: 100", &format!("games: 100{extra}")));
        assert!(user("\n      cut_every: 10").is_ok());
        assert!(
            user("\n      cut_every: 0")
                .unwrap_err()
                .to_string()
                .contains("cut_every: 0")
        );
        let cc = |extra: &str| {
            parse(&GOOD.replace(
                "platform: lichess\n      games: 100",
                &format!("platform: chess.com\n      games: 300\n      months: 3{extra}"),
            ))
        };
        assert!(
            cc("\n      cut_every: 10")
                .unwrap_err()
                .to_string()
                .contains("lichess faults")
        );
        let short = "\n      short_months: {missing: 5, months: [1]}";
        let err = cc(short).unwrap_err().to_string();
        assert!(err.contains("set `stored`"), "{err}");
        // 100 games a month; the earlier import of 150 reaches into month 1, whose newest 5 it lacked.
        assert!(cc(&format!("\n      stored: 150\n      new_since_stored: 10{short}")).is_ok());
        let err = cc(&format!("\n      stored: 50{short}")).unwrap_err().to_string();
        assert!(err.contains("never strikes"), "{err}");
        let err = cc(&format!(
            "\n      stored: 150\n      new_since_stored: 10\n      limit: 12{short}"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("limit: 12 does not reach the 5 games"), "{err}");
        let err = cc("\n      stored: 150\n      short_months: {missing: 5, months: [3]}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("month 3 back"), "{err}");
        let err = user("\n      stored: 10\n      short_months: {missing: 5}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("chess.com's"), "{err}");

        let faults = "database_faults:\n  terminate_backends_every_secs: 2\n";
        let err = parse(&format!("{GOOD}{faults}")).unwrap_err().to_string();
        assert!(
            err.contains("database_faults:") && err.contains("database: postgres"),
            "{err}"
        );
        assert!(parse(&format!("{GOOD}database: postgres\n{faults}")).is_ok());
        let err = parse(&format!(
            "{GOOD}database: postgres\n{}",
            faults.replace("2\n", "0\n")
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("terminate_backends_every_secs: 0 is not"), "{err}");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("1GB"), Some(1 << 30));
        assert_eq!(parse_bytes("1.5 MiB"), Some(3 << 19));
        assert_eq!(parse_bytes("12 parsecs"), None);
        assert_eq!(parse_bytes("0"), None);
    }
}
