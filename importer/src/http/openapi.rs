//! The API's contract: an OpenAPI 3.1 document generated from the handlers' own types and
//! annotations, so that it cannot drift from the code. Served at `GET /api/v1/openapi.json`;
//! `importer --openapi` prints it, and `importer/openapi.json` is the committed copy (a test fails
//! when the two differ: regenerate with `make openapi`).

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::imports;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "chess games importer",
        description = "Imports a user's games from lichess or chess.com. Every request but \
            `/healthz` carries `Authorization: Bearer <API_TOKEN>` when the importer has one. \
            Errors answer `{\"error\": \"...\"}`.",
    ),
    paths(imports::create, imports::show, super::healthz, super::metrics, serve),
    modifiers(&BearerToken),
    security((), ("bearer" = [])),
)]
struct ApiDoc;

/// `API_TOKEN` as an HTTP bearer scheme.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        }
    }
}

/// The endpoints of a `heap-profile` build: listed only there, so that the committed contract
/// stays the default build's.
#[cfg(feature = "heap-profile")]
#[derive(OpenApi)]
#[openapi(paths(super::heap_profile::heap))]
struct HeapProfileDoc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    #[cfg(feature = "heap-profile")]
    doc.merge(HeapProfileDoc::openapi());
    // The crate's version would change the committed file at every release for nothing.
    doc.info.version = "1".into();
    doc
}

/// The document as pretty JSON, as committed in `importer/openapi.json` (newline-terminated).
pub fn pretty_json() -> String {
    let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
    text.push('\n');
    text
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", responses(
    (status = 200, description = "This OpenAPI document", content_type = "application/json"),
))]
pub(crate) async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

#[cfg(test)]
mod tests {
    /// The committed contract is the one the code generates (the default build's).
    #[cfg(not(feature = "heap-profile"))]
    #[test]
    fn the_committed_openapi_json_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == super::pretty_json(),
            "importer/openapi.json differs from the document the code generates: run `make openapi`"
        );
    }

    /// A `heap-profile` build lists its endpoint, with the token it needs and its refusals.
    #[cfg(feature = "heap-profile")]
    #[test]
    fn a_heap_profile_build_lists_the_endpoint() {
        let doc = super::document();
        let path = doc.paths.paths.get("/debug/pprof/heap");
        let Some(get) = path.and_then(|p| p.get.as_ref()) else {
            panic!("no GET /debug/pprof/heap in the document");
        };
        for status in ["200", "401", "403", "500"] {
            assert!(get.responses.responses.contains_key(status), "no {status} answer");
        }
        // The document's default security (the bearer token) applies: the operation says no other.
        assert!(get.security.is_none());
    }
}
