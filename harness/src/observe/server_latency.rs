//! The importer's own side of the API latency: its
//! `importer_http_request_duration_seconds` histogram, read from `/metrics`
//! once the load is done. Beside the client's percentiles it tells server
//! time from time spent in the client and the network stack.

use prometheus_parse::{Scrape, Value};
use serde::{Deserialize, Serialize};

/// The histogram the importer keeps per route and status.
const HISTOGRAM: &str = "importer_http_request_duration_seconds";

/// Why the importer's latency could not be read from its `/metrics`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request failed or its body could not be read.
    #[error("GET /metrics: {0}")]
    Request(#[from] reqwest::Error),
    /// The importer answered with an error status.
    #[error("GET /metrics answered {0}")]
    Status(reqwest::StatusCode),
    /// The text is not a Prometheus exposition.
    #[error("GET /metrics: not a Prometheus exposition: {0}")]
    Parse(#[source] std::io::Error),
}

/// One route's requests as the server timed them, every status together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteLatency {
    /// Method and route template, e.g. `GET /api/v1/imports/:import_id`.
    pub name: String,
    /// Requests the server answered.
    pub count: u64,
    /// Of them, answered within 100 ms, percent.
    pub within_100ms_pct: f64,
    /// The upper bound of the bucket holding the 99th percentile, ms (the histogram's resolution);
    /// `None` when it lies beyond the last finite bound.
    pub p99_at_most_ms: Option<f64>,
}

/// Reads every route's latency from an OpenMetrics/Prometheus exposition.
pub fn parse(text: &str) -> Result<Vec<RouteLatency>, Error> {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).map_err(Error::Parse)?;
    // (method route) -> (upper bound s -> cumulative count), summed over statuses.
    let mut routes: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    for s in &scrape.samples {
        let Value::Histogram(buckets) = &s.value else {
            continue;
        };
        if s.metric != HISTOGRAM {
            continue;
        }
        let name = format!(
            "{} {}",
            s.labels.get("method").unwrap_or("?"),
            s.labels.get("route").unwrap_or("?")
        );
        let sums = routes.entry(name).or_default();
        for b in buckets {
            match sums.iter_mut().find(|(le, _)| *le == b.less_than) {
                Some((_, n)) => *n += b.count,
                None => sums.push((b.less_than, b.count)),
            }
        }
    }
    Ok(routes
        .into_iter()
        .filter_map(|(name, mut buckets)| {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let total = buckets.last()?.1;
            if total <= 0.0 {
                return None;
            }
            let within = buckets
                .iter()
                .filter(|(le, _)| *le <= 0.1 + 1e-9)
                .map(|(_, n)| *n)
                .fold(0.0, f64::max);
            let p99 = buckets
                .iter()
                .find(|(_, n)| *n >= total * 0.99)
                .map(|(le, _)| *le)
                .filter(|le| le.is_finite());
            Some(RouteLatency {
                name,
                count: total as u64,
                within_100ms_pct: within * 100.0 / total,
                p99_at_most_ms: p99.map(|s| s * 1000.0),
            })
        })
        .collect())
}

/// Scrapes `base`/metrics (with the API token, when the importer wants one).
pub async fn scrape(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
) -> Result<Vec<RouteLatency>, Error> {
    let mut req = http.get(format!("{base}/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.timeout(std::time::Duration::from_secs(5)).send().await?;
    if !resp.status().is_success() {
        return Err(Error::Status(resp.status()));
    }
    let text = resp.text().await?;
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_of_every_status_add_up_per_route() {
        let text = "# TYPE importer_http_request_duration_seconds histogram\n\
            importer_http_request_duration_seconds_sum{method=\"POST\",route=\"/r\",status=\"202\"} 1.0\n\
            importer_http_request_duration_seconds_count{method=\"POST\",route=\"/r\",status=\"202\"} 90\n\
            importer_http_request_duration_seconds_bucket{le=\"0.05\",method=\"POST\",route=\"/r\",status=\"202\"} 80\n\
            importer_http_request_duration_seconds_bucket{le=\"0.1\",method=\"POST\",route=\"/r\",status=\"202\"} 89\n\
            importer_http_request_duration_seconds_bucket{le=\"0.25\",method=\"POST\",route=\"/r\",status=\"202\"} 90\n\
            importer_http_request_duration_seconds_bucket{le=\"+Inf\",method=\"POST\",route=\"/r\",status=\"202\"} 90\n\
            importer_http_request_duration_seconds_bucket{le=\"0.05\",method=\"POST\",route=\"/r\",status=\"429\"} 10\n\
            importer_http_request_duration_seconds_bucket{le=\"0.1\",method=\"POST\",route=\"/r\",status=\"429\"} 10\n\
            importer_http_request_duration_seconds_bucket{le=\"0.25\",method=\"POST\",route=\"/r\",status=\"429\"} 10\n\
            importer_http_request_duration_seconds_bucket{le=\"+Inf\",method=\"POST\",route=\"/r\",status=\"429\"} 10\n\
            # EOF\n";
        let r = parse(text).expect("parses");
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].name.as_str(), r[0].count), ("POST /r", 100));
        assert!((r[0].within_100ms_pct - 99.0).abs() < 1e-9, "{r:?}");
        assert!(
            r[0].p99_at_most_ms.is_some_and(|p| (p - 100.0).abs() < 1e-9),
            "{r:?}"
        );
    }
}
