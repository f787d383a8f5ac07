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

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
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
    /// The committed contract is the one the code generates.
    #[test]
    fn the_committed_openapi_json_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == super::pretty_json(),
            "importer/openapi.json differs from the document the code generates: run `make openapi`"
        );
    }
}
