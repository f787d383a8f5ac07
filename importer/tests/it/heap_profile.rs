//! The live heap (`--features heap-profile`): `GET /debug/pprof/heap` answers a pprof profile that
//! decodes, with samples and function names, only with the token; never unguarded on a public
//! address. Run by `make heap-profile-test`.

use std::io::Read;

use prost::Message;

use super::*;

const TOKEN: &str = "it-heap-token-0123456789";

/// The part of pprof's `profile.proto` (github.com/google/pprof, proto/profile.proto) the test
/// reads; prost skips the other fields. The tags are the proto's.
#[derive(Clone, PartialEq, prost::Message)]
struct Profile {
    #[prost(message, repeated, tag = "1")]
    sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    sample: Vec<Sample>,
    #[prost(message, repeated, tag = "4")]
    location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    string_table: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ValueType {
    #[prost(int64, tag = "1")]
    r#type: i64,
    #[prost(int64, tag = "2")]
    unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    value: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Location {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(message, repeated, tag = "4")]
    line: Vec<Line>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Line {
    #[prost(uint64, tag = "1")]
    function_id: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Function {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(int64, tag = "2")]
    name: i64,
}

impl Profile {
    /// Reads what the endpoint sends: gzip, then the protobuf.
    fn decode_gzipped(bytes: &[u8]) -> Profile {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut raw)
            .expect("a gzip stream");
        Profile::decode(raw.as_slice()).expect("a pprof Profile message")
    }

    fn string(&self, index: i64) -> &str {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.string_table.get(i))
            .map_or("", String::as_str)
    }

    /// The function names of one sample's stack, innermost first.
    fn stack(&self, sample: &Sample) -> Vec<&str> {
        sample
            .location_id
            .iter()
            .filter_map(|id| self.location.iter().find(|l| l.id == *id))
            .flat_map(|l| &l.line)
            .filter_map(|line| self.function.iter().find(|f| f.id == line.function_id))
            .map(|f| self.string(f.name))
            .collect()
    }
}

/// Imports `user`'s lichess games with the token and waits for the end: the heap then holds what an
/// import leaves (connections, caches), and jemalloc has sampled an import's allocations.
async fn import_with_token(imp: &Importer, user: &str) {
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("{}/api/v1/import-more-games", imp.base))
        .bearer_auth(TOKEN)
        .json(&json!({"user_id": user, "platform": "lichess", "limit": 2000}))
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("json");
    let id = created["import_id"].as_str().expect("an import id").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let job: serde_json::Value = http
            .get(format!("{}/api/v1/imports/{id}", imp.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("json");
        if job["status"] == "completed" {
            return;
        }
        assert!(job["status"] != "failed", "{job}");
        assert!(std::time::Instant::now() < deadline, "not done in 60 s: {job}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn get_heap(imp: &Importer, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}/debug/pprof/heap", imp.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("GET /debug/pprof/heap")
}

/// With the token, a profile that decodes: `inuse_space` in bytes, samples whose stacks name the
/// importer's functions. Without it, or with a wrong one, 401 and no profile.
///
/// jemalloc samples one allocation per 2^19 bytes allocated by default: an idle importer's heap of
/// about 2 MiB may hold no sampled allocation at all. The test samples every 4 KiB
/// (`MALLOC_CONF`, read by jemalloc over the built-in options) so that its checks of the format
/// never depend on chance; the built-in rate is checked from the start-up log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heap_profile_is_served_with_the_token_and_names_functions() {
    let db = TestDb::sqlite();
    let mocks = Upstreams::start(&[lichess("heapy", 300)], SEED)
        .await
        .expect("mocks");
    let imp = Importer::start(
        &db,
        &mocks,
        &[("API_TOKEN", TOKEN), ("MALLOC_CONF", "lg_prof_sample:12")],
    )
    .await;
    import_with_token(&imp, "heapy").await;

    for token in [None, Some("wrong-token-0123456789")] {
        let resp = get_heap(&imp, token).await;
        assert_eq!(resp.status(), 401, "{token:?}");
        let body = resp.text().await.expect("body");
        assert!(body.contains("Authorization"), "{body}");
    }

    let resp = get_heap(&imp, Some(TOKEN)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/octet-stream"[..])
    );
    let bytes = resp.bytes().await.expect("body");
    let profile = Profile::decode_gzipped(&bytes);
    let kinds: Vec<(&str, &str)> = profile
        .sample_type
        .iter()
        .map(|t| (profile.string(t.r#type), profile.string(t.unit)))
        .collect();
    assert_eq!(kinds, [("inuse_space", "bytes")]);
    assert!(!profile.sample.is_empty(), "no sample in the profile");
    assert!(
        profile
            .sample
            .iter()
            .all(|s| s.value.first().is_some_and(|v| *v > 0)),
        "a sample of no bytes"
    );
    // Symbolized in the process: the importer's own functions are named, not only addresses.
    let ours = profile
        .sample
        .iter()
        .filter(|s| profile.stack(s).iter().any(|f| f.starts_with("importer::")))
        .count();
    assert!(
        ours > 0,
        "no stack names an importer:: function; functions: {:?}",
        profile
            .function
            .iter()
            .take(20)
            .map(|f| profile.string(f.name))
            .collect::<Vec<_>>()
    );
    let log = imp.log_text();
    assert!(
        log.contains("heap profile served at /debug/pprof/heap") && log.contains("sample_every_bytes=4096"),
        "{log}"
    );
}

/// The built-in rate is jemalloc_pprof's default, 512 KiB; a profile at that rate still decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_sampling_rate_is_512_kib() {
    let db = TestDb::sqlite();
    let mocks = Upstreams::start(&[], SEED).await.expect("mocks");
    let imp = Importer::start(&db, &mocks, &[("API_TOKEN", TOKEN)]).await;
    let resp = get_heap(&imp, Some(TOKEN)).await;
    assert_eq!(resp.status(), 200);
    let profile = Profile::decode_gzipped(&resp.bytes().await.expect("body"));
    assert_eq!(profile.string_table.first().map(String::as_str), Some(""));
    let log = imp.log_text();
    assert!(log.contains("sample_every_bytes=524288"), "{log}");
}

/// `ALLOW_UNAUTHENTICATED=true` on a public address opens the API, never the heap profile: 403
/// naming what would serve it, while the rest of the API answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_address_without_a_token_never_serves_the_heap() {
    let db = TestDb::sqlite();
    let mocks = Upstreams::start(&[], SEED).await.expect("mocks");
    let imp = Importer::start(
        &db,
        &mocks,
        &[("BIND_ADDR", "0.0.0.0:0"), ("ALLOW_UNAUTHENTICATED", "true")],
    )
    .await;
    let resp = get_heap(&imp, None).await;
    assert_eq!(resp.status(), 403);
    let err: serde_json::Value = resp.json().await.expect("json");
    assert!(
        err["error"].as_str().unwrap_or_default().contains("API_TOKEN"),
        "{err}"
    );
    let (status, _) = imp.get("/metrics").await;
    assert_eq!(status, 200, "the rest of the API is open, as configured");
    assert!(
        imp.log_text().contains("not served"),
        "the start-up log says so: {}",
        imp.log_text()
    );
}

/// On loopback without a token every endpoint answers anyone on the machine, the profile too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_without_a_token_serves_the_heap() {
    let db = TestDb::sqlite();
    let mocks = Upstreams::start(&[], SEED).await.expect("mocks");
    let imp = Importer::start(&db, &mocks, &[]).await;
    let resp = get_heap(&imp, None).await;
    assert_eq!(resp.status(), 200);
    Profile::decode_gzipped(&resp.bytes().await.expect("body"));
}
