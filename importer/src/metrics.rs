//! Process-wide metrics, served on `/metrics` in the OpenMetrics text format
//! by the official `prometheus-client` crate (Prometheus scrapes it as is).
//!
//! Counters grow as work happens; the import gauges (running, queued, waiting
//! for their provider) and the resident memory are read from their owners when
//! scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

use crate::job::Platform;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the request-duration buckets, seconds: 1 ms to 120 s, about ×2.5 apart up to
/// 10 s, so that the API's 100 ms objective (issue #16) falls on a bound.
const REQUEST_SECONDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlatformLabel {
    platform: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    /// The route's template (`/api/v1/imports/{import_id}`), never the raw path: one series per route.
    route: String,
    status: u16,
}

/// Upper bounds of the import wait and run buckets, seconds: 1 s to 2 h. A lichess import of
/// 2,000 games streams for 100 s at its 20 games a second (docs/providers), a queue of such
/// imports behind two lanes waits minutes: the buckets cover both.
const IMPORT_SECONDS: [f64; 12] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    provider: &'static str,
    /// `imported`, `skipped_existing` or `failed_parse`.
    outcome: &'static str,
}

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_SECONDS)
}

fn import_histogram() -> Histogram {
    Histogram::new(IMPORT_SECONDS)
}

/// The queue as a scrape sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Imports running in this process.
    pub running: usize,
    /// Imports queued across every process (waiting for a slot, a lane or their provider).
    pub queued: usize,
    /// Of those, lichess imports waiting for lichess.
    pub waiting_for_lichess: usize,
    /// Of those, chess.com imports waiting for chess.com.
    pub waiting_for_chess_com: usize,
}

/// What one finished import gave its user, as [`Metrics::import_finished`] records it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImportOutcome {
    /// The provider.
    pub platform: Platform,
    /// From the request to the start, seconds (the queue wait the user saw).
    pub wait_secs: f64,
    /// From the start to the end, seconds.
    pub run_secs: f64,
    /// Games newly stored.
    pub imported: u64,
    /// Games received that were already stored.
    pub skipped_existing: u64,
    /// Games that did not parse.
    pub failed_parse: u64,
}

/// The importer's metrics and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    active: Gauge,
    queued: Gauge,
    resident: Gauge,
    imported: Family<PlatformLabel, Counter>,
    failed_parse: Counter,
    rate_limited: Family<ProviderLabel, Counter>,
    not_modified: Family<ProviderLabel, Counter>,
    cool_down: Family<ProviderLabel, Counter<f64, AtomicU64>>,
    provider_waits: Family<ProviderLabel, Counter>,
    waiting_for_provider: Family<ProviderLabel, Gauge>,
    requests: Family<RouteLabels, Histogram, fn() -> Histogram>,
    import_wait: Family<ProviderLabel, Histogram, fn() -> Histogram>,
    import_run: Family<ProviderLabel, Histogram, fn() -> Histogram>,
    import_games: Family<OutcomeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            registry: Registry::default(),
            active: Gauge::default(),
            queued: Gauge::default(),
            resident: Gauge::default(),
            imported: Family::default(),
            failed_parse: Counter::default(),
            rate_limited: Family::default(),
            not_modified: Family::default(),
            cool_down: Family::default(),
            provider_waits: Family::default(),
            waiting_for_provider: Family::default(),
            requests: Family::new_with_constructor(request_histogram),
            import_wait: Family::new_with_constructor(import_histogram),
            import_run: Family::new_with_constructor(import_histogram),
            import_games: Family::default(),
        };
        let mut registry = m.registry;
        registry.register("importer_imports_active", "Imports running now", m.active.clone());
        registry.register(
            "importer_imports_queued",
            "Imports waiting for a slot or their provider's lane",
            m.queued.clone(),
        );
        registry.register(
            "importer_games_imported",
            "Games newly stored",
            m.imported.clone(),
        );
        registry.register(
            "importer_games_failed_parse",
            "Games skipped because they do not parse",
            m.failed_parse.clone(),
        );
        registry.register(
            "importer_upstream_rate_limited",
            "429 Too Many Requests answers received, per provider",
            m.rate_limited.clone(),
        );
        registry.register(
            "importer_upstream_not_modified",
            "304 Not Modified answers received (a month unchanged since it was stored: no body read), per provider",
            m.not_modified.clone(),
        );
        registry.register_with_unit(
            "importer_upstream_cooldown",
            "Seconds in which no request went to a provider after its 429s",
            Unit::Seconds,
            m.cool_down.clone(),
        );
        registry.register(
            "importer_provider_waits",
            "Imports put back in the queue to wait for their provider's bad day (a 5xx, an error page, \
             a transport error, a stream that broke without progress), per provider",
            m.provider_waits.clone(),
        );
        registry.register(
            "importer_imports_waiting_for_provider",
            "Queued imports not tried again before their provider's wait ends (status waiting_for_provider), per provider",
            m.waiting_for_provider.clone(),
        );
        registry.register_with_unit(
            "importer_http_request_duration",
            "Time from a request's arrival to its response's head, per route and status",
            Unit::Seconds,
            m.requests.clone(),
        );
        registry.register_with_unit(
            "importer_import_wait",
            "Time from an import's request to its start (the queue wait its user saw), per provider, \
             observed when the import ends",
            Unit::Seconds,
            m.import_wait.clone(),
        );
        registry.register_with_unit(
            "importer_import_run",
            "Time from an import's start to its end, completed or failed, per provider",
            Unit::Seconds,
            m.import_run.clone(),
        );
        registry.register(
            "importer_import_games",
            "Games of finished imports by outcome (imported, skipped_existing, failed_parse), per provider",
            m.import_games.clone(),
        );
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory of the importer",
            Unit::Bytes,
            m.resident.clone(),
        );
        Metrics { registry, ..m }
    }
}

/// Resident memory of this process in bytes, from `/proc/self/statm` (0 where there is none).
pub fn resident_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn label(platform: Platform) -> &'static str {
    match platform {
        Platform::Lichess => "lichess",
        Platform::ChessCom => "chess.com",
    }
}

impl Metrics {
    /// Counts games newly stored.
    pub fn games_imported(&self, platform: Platform, n: u64) {
        self.imported
            .get_or_create(&PlatformLabel {
                platform: label(platform),
            })
            .inc_by(n);
    }

    /// Counts an import put back in the queue to wait for `platform`.
    pub fn provider_wait(&self, platform: Platform) {
        self.provider_waits
            .get_or_create(&ProviderLabel {
                provider: label(platform),
            })
            .inc();
    }

    /// Counts a 429 answer from `platform`.
    pub fn rate_limited(&self, platform: Platform) {
        self.rate_limited
            .get_or_create(&ProviderLabel {
                provider: label(platform),
            })
            .inc();
    }

    /// Counts a `304 Not Modified` from `platform`.
    pub fn not_modified(&self, platform: Platform) {
        self.not_modified
            .get_or_create(&ProviderLabel {
                provider: label(platform),
            })
            .inc();
    }

    /// Adds `secs` of cool-down (no request to `platform`) to its total.
    pub fn cooled_down(&self, platform: Platform, secs: f64) {
        self.cool_down
            .get_or_create(&ProviderLabel {
                provider: label(platform),
            })
            .inc_by(secs);
    }

    /// Records what a finished import (completed or failed) gave its user: its wait, its run and
    /// its games by outcome. An import interrupted by a shutdown is not finished: it resumes.
    pub fn import_finished(&self, o: &ImportOutcome) {
        let provider = label(o.platform);
        self.import_wait
            .get_or_create(&ProviderLabel { provider })
            .observe(o.wait_secs.max(0.0));
        self.import_run
            .get_or_create(&ProviderLabel { provider })
            .observe(o.run_secs.max(0.0));
        for (outcome, n) in [
            ("imported", o.imported),
            ("skipped_existing", o.skipped_existing),
            ("failed_parse", o.failed_parse),
        ] {
            self.import_games
                .get_or_create(&OutcomeLabels { provider, outcome })
                .inc_by(n);
        }
    }

    /// Counts a game skipped because it does not parse.
    pub fn game_failed_parse(&self) {
        self.failed_parse.inc();
    }

    /// Records one request's duration, seconds, under its route template and status. A path
    /// parameter is written `:name` (`/api/v1/imports/:import_id`), not axum's `{name}`: braces
    /// inside a label value break common exposition parsers (prometheus-parse drops the line).
    /// A method outside HTTP's own is counted as `other`: any client may send any token there,
    /// and a series per token would grow without bound.
    pub fn request_served(&self, method: &str, route: &str, status: u16, secs: f64) {
        let route = route.replace('{', ":").replace('}', "");
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH" => method,
            _ => "other",
        };
        self.requests
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route,
                status,
            })
            .observe(secs);
    }

    /// Renders the OpenMetrics text ([`CONTENT_TYPE`]), with the gauges read now.
    pub fn render(&self, load: &Load) -> String {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.active.set(count(load.running));
        self.queued.set(count(load.queued));
        for (p, n) in [
            (Platform::Lichess, load.waiting_for_lichess),
            (Platform::ChessCom, load.waiting_for_chess_com),
        ] {
            self.waiting_for_provider
                .get_or_create(&ProviderLabel { provider: label(p) })
                .set(count(n));
            let _ = self
                .provider_waits
                .get_or_create(&ProviderLabel { provider: label(p) });
        }
        self.resident
            .set(i64::try_from(resident_bytes()).unwrap_or(i64::MAX));
        // Every series is labelled from the start, so a scrape before the first game or 429 shows 0.
        for p in [Platform::Lichess, Platform::ChessCom] {
            self.games_imported(p, 0);
            self.cooled_down(p, 0.0);
            let _ = self
                .rate_limited
                .get_or_create(&ProviderLabel { provider: label(p) });
            let _ = self
                .not_modified
                .get_or_create(&ProviderLabel { provider: label(p) });
            let _ = self
                .import_wait
                .get_or_create(&ProviderLabel { provider: label(p) });
            let _ = self
                .import_run
                .get_or_create(&ProviderLabel { provider: label(p) });
            for outcome in ["imported", "skipped_existing", "failed_parse"] {
                let _ = self.import_games.get_or_create(&OutcomeLabels {
                    provider: label(p),
                    outcome,
                });
            }
        }
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail; an encoder error would be a bug in a metric.
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding /metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_series_with_its_labels_and_unit() {
        let m = Metrics::default();
        m.games_imported(Platform::Lichess, 1200);
        m.rate_limited(Platform::ChessCom);
        m.cooled_down(Platform::ChessCom, 1.5);
        m.game_failed_parse();
        m.import_finished(&ImportOutcome {
            platform: Platform::ChessCom,
            wait_secs: 42.0,
            run_secs: 0.5,
            imported: 90,
            skipped_existing: 10,
            failed_parse: 1,
        });
        m.request_served("POST", "/api/v1/import-more-games", 202, 0.004);
        m.request_served("GET", "/api/v1/imports/{import_id}", 200, 0.002);
        for junk in ["RANDOM1", "RANDOM2"] {
            m.request_served(junk, "unmatched", 404, 0.001);
        }
        m.provider_wait(Platform::Lichess);
        let text = m.render(&Load {
            running: 2,
            queued: 7,
            waiting_for_lichess: 3,
            waiting_for_chess_com: 0,
        });
        for line in [
            "importer_imports_active 2",
            "importer_imports_queued 7",
            "importer_imports_waiting_for_provider{provider=\"lichess\"} 3",
            "importer_imports_waiting_for_provider{provider=\"chess.com\"} 0",
            "importer_provider_waits_total{provider=\"lichess\"} 1",
            "importer_provider_waits_total{provider=\"chess.com\"} 0",
            "importer_games_imported_total{platform=\"lichess\"} 1200",
            "importer_games_imported_total{platform=\"chess.com\"} 0",
            "importer_games_failed_parse_total 1",
            "importer_upstream_rate_limited_total{provider=\"chess.com\"} 1",
            "importer_upstream_rate_limited_total{provider=\"lichess\"} 0",
            "importer_upstream_cooldown_seconds_total{provider=\"chess.com\"} 1.5",
            "# UNIT importer_http_request_duration_seconds seconds",
            "importer_http_request_duration_seconds_bucket{le=\"0.005\",method=\"POST\",route=\"/api/v1/import-more-games\",status=\"202\"} 1",
            "importer_http_request_duration_seconds_bucket{le=\"0.0025\",method=\"POST\",route=\"/api/v1/import-more-games\",status=\"202\"} 0",
            "importer_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/imports/:import_id\",status=\"200\"} 1",
            "importer_http_request_duration_seconds_count{method=\"other\",route=\"unmatched\",status=\"404\"} 2",
            "# UNIT importer_import_wait_seconds seconds",
            "importer_import_wait_seconds_bucket{le=\"30.0\",provider=\"chess.com\"} 0",
            "importer_import_wait_seconds_bucket{le=\"60.0\",provider=\"chess.com\"} 1",
            "importer_import_wait_seconds_count{provider=\"lichess\"} 0",
            "importer_import_run_seconds_bucket{le=\"1.0\",provider=\"chess.com\"} 1",
            "importer_import_run_seconds_sum{provider=\"chess.com\"} 0.5",
            "importer_import_games_total{provider=\"chess.com\",outcome=\"imported\"} 90",
            "importer_import_games_total{provider=\"chess.com\",outcome=\"skipped_existing\"} 10",
            "importer_import_games_total{provider=\"chess.com\",outcome=\"failed_parse\"} 1",
            "importer_import_games_total{provider=\"lichess\",outcome=\"imported\"} 0",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from:\n{text}");
        }
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
    }
}
