//! `POST /api/v1/import-more-games` and `GET /api/v1/imports/{id}`.
//!
//! The request body is checked field by field from a JSON value rather than
//! through serde derive, so that every rejection names the field at fault; its
//! OpenAPI schema is written by hand from the same rules (`ImportRequest`).

use std::borrow::Cow;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::openapi::schema::{
    AdditionalProperties, KnownFormat, ObjectBuilder, OneOfBuilder, Ref, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use super::{ApiError, AppState, ErrorBody, MAX_BODY_BYTES};
use crate::job::{Job, JobStatus, Platform, UsernameRule};
use crate::scheduler::Admission;

/// Games imported when the request gives no limit.
pub(super) const DEFAULT_LIMIT: i64 = 500;
/// Smallest limit accepted.
pub(super) const MIN_LIMIT: i64 = 1;
/// Largest limit accepted.
pub(super) const MAX_LIMIT: i64 = 10_000;

/// A checked import request: the one type both [`parse_request`] returns and the OpenAPI document
/// describes (as `ImportRequestBody`, one shape per platform since their username rules differ),
/// so that the rules it is checked by and the rules it is documented with are the same values.
#[derive(Debug, PartialEq)]
pub(super) struct ImportRequest {
    /// Lowercased username, accepted by its platform's [`UsernameRule`].
    user_id: String,
    platform: Platform,
    /// In `MIN_LIMIT..=MAX_LIMIT`.
    limit: i64,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// Checks a request body; every error names the field.
pub(super) fn parse_request(body: &[u8]) -> Result<ImportRequest, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not valid JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(bad("body must be a JSON object with user_id, platform and limit"));
    };
    let platform = match obj.remove("platform") {
        Some(Value::String(p)) => Platform::parse(&p).ok_or_else(|| {
            bad(format!(
                "platform: unknown platform {p:?}; expected \"lichess\" or \"chess.com\""
            ))
        })?,
        Some(_) => return Err(bad("platform: must be a string, \"lichess\" or \"chess.com\"")),
        None => return Err(bad("platform: missing; expected \"lichess\" or \"chess.com\"")),
    };
    let user_id = match obj.remove("user_id") {
        Some(Value::String(u)) => u,
        Some(_) => return Err(bad("user_id: must be a string")),
        None => return Err(bad("user_id: missing")),
    };
    let rule = UsernameRule::of(platform);
    if !rule.accepts(&user_id) {
        return Err(bad(format!(
            "user_id: not a valid {} username; expected {rule}",
            platform.as_str()
        )));
    }
    let limit = match obj.remove("limit") {
        None | Some(Value::Null) => DEFAULT_LIMIT,
        // JSON has one number type: 581.0 and 5.81e2 are the integer 581, as JSON Schema's
        // `integer` says (found by schemathesis: a schema-valid `581.0` was refused).
        Some(Value::Number(n)) => match integral(&n) {
            Some(l) if (MIN_LIMIT..=MAX_LIMIT).contains(&l) => l,
            _ => {
                return Err(bad(format!(
                    "limit: {n} is out of range; expected an integer in {MIN_LIMIT}..={MAX_LIMIT}"
                )));
            }
        },
        Some(_) => {
            return Err(bad(format!(
                "limit: must be an integer in {MIN_LIMIT}..={MAX_LIMIT}"
            )));
        }
    };
    reject_unknown(&obj)?;
    Ok(ImportRequest {
        user_id: user_id.to_ascii_lowercase(),
        platform,
        limit,
    })
}

/// `n` as an integer when it has no fractional part (`581`, `581.0`, `5.81e2`), within i64.
fn integral(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        let f = n.as_f64()?;
        // Bounds as f64: i64::MAX itself rounds up to 2^63, which does not fit.
        (f.fract() == 0.0 && (-9.2e18..=9.2e18).contains(&f)).then_some(f as i64)
    })
}

fn reject_unknown(rest: &Map<String, Value>) -> Result<(), ApiError> {
    match rest.keys().next() {
        Some(k) => Err(bad(format!(
            "{}: unknown field; expected user_id, platform, limit",
            k.escape_default()
        ))),
        None => Ok(()),
    }
}

/// The OpenAPI schema of the request body: one of `platform_import`'s shapes.
impl PartialSchema for ImportRequest {
    fn schema() -> RefOr<Schema> {
        let mut one_of = OneOfBuilder::new().description(Some(
            "The request body, as the OpenAPI document states it: one shape per platform, since their\n\
             username rules differ. `parse_request` reads the body field by field (so that each rejection\n\
             names its field); the contract check (`make contract`) holds the two to the same rules.",
        ));
        for platform in Platform::ALL {
            one_of = one_of.item(
                Ref::builder()
                    .ref_location_from_schema_name(format!("{}Import", schema_prefix(platform)))
                    .description(Some(format!("A {platform} user."))),
            );
        }
        one_of.into()
    }
}

impl ToSchema for ImportRequest {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ImportRequestBody")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        for platform in Platform::ALL {
            let prefix = schema_prefix(platform);
            schemas.push((format!("{prefix}Import"), platform_import(platform)));
            let name = ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(format!("`\"{platform}\"`.")))
                .enum_values(Some([platform.as_str()]));
            schemas.push((format!("{prefix}Name"), name.into()));
        }
    }
}

/// The start of the names of `platform`'s schemas (`LichessImport`, `ChessComName`).
fn schema_prefix(platform: Platform) -> &'static str {
    match platform {
        Platform::Lichess => "Lichess",
        Platform::ChessCom => "ChessCom",
    }
}

/// An import of a `platform` user: its username rule and the limit's, as `parse_request` checks them.
fn platform_import(platform: Platform) -> RefOr<Schema> {
    let rule = UsernameRule::of(platform);
    let user_id = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!("The {platform} username, any case.")))
        .min_length(Some(rule.min_len))
        .max_length(Some(rule.max_len))
        .pattern(Some(UsernameRule::pattern()));
    let limit = ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .description(Some(format!(
            "Most new games to store; {DEFAULT_LIMIT} when absent or null."
        )))
        .minimum(Some(MIN_LIMIT))
        .maximum(Some(MAX_LIMIT));
    let platform_name = Ref::builder()
        .ref_location_from_schema_name(format!("{}Name", schema_prefix(platform)))
        .description(Some("The platform."));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!("An import of a {platform} user's games.")))
        .property("platform", platform_name)
        .required("platform")
        .property("user_id", user_id)
        .required("user_id")
        .property("limit", limit)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .into()
}

#[derive(Serialize, utoipa::ToSchema)]
/// Answer to an accepted import request.
pub(super) struct Admitted {
    /// The import's id.
    import_id: String,
    /// `running` or `queued` when just created; any status for the user's existing import.
    status: JobStatus,
    /// Place among the queued imports of its provider (1 = next); 0 when it is not queued.
    queue_position: usize,
}

/// Starts or queues an import; the same user and platform already active answers 200 with that import.
#[utoipa::path(post, path = "/api/v1/import-more-games",
    request_body(content = ImportRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Created: running (queue_position 0) or queued", body = Admitted),
        (status = 200, description = "The user already has an import queued or running on this platform: that one", body = Admitted),
        (status = 400, description = "The body is not a valid request; the message names the field", body = ErrorBody),
        (status = 401, description = "`API_TOKEN` is set and the request did not carry it", body = ErrorBody),
        (status = 408, description = "The request was not complete within 120 s", body = ErrorBody),
        (status = 413, description = "The body is over 16 KiB", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 429, description = "No slot free and the queue is full", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds after which to try again"))),
        (status = 500, description = "The database failed; the cause is logged, not sent", body = ErrorBody),
        (status = 503, description = "The process is stopping", body = ErrorBody),
    ))]
pub(super) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Admitted>), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(ApiError::UnsupportedMediaType(
            "content-type: expected application/json".into(),
        ));
    }
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(MAX_BODY_BYTES),
        _ => bad(format!("body: {e}")),
    })?;
    let req = parse_request(&body)?;
    match state
        .scheduler
        .submit(req.user_id, req.platform, req.limit)
        .await?
    {
        Admission::Accepted { job, position } => Ok((
            StatusCode::ACCEPTED,
            Json(Admitted {
                import_id: job.import_id,
                status: job.status,
                queue_position: position,
            }),
        )),
        Admission::Existing { import_id } => {
            // As it stands now: it may have started, or ended, since it was found active.
            let (status, position) = match state.store.job_with_position(&import_id).await? {
                Some(placed) => (
                    placed.job.status,
                    usize::try_from(placed.queue_position).unwrap_or(0),
                ),
                None => (JobStatus::Running, 0),
            };
            Ok((
                StatusCode::OK,
                Json(Admitted {
                    import_id,
                    status,
                    queue_position: position,
                }),
            ))
        }
        Admission::ShuttingDown => Err(ApiError::ShuttingDown),
        Admission::QueueFull => Err(ApiError::QueueFull {
            capacity: state.queue_capacity,
            retry_after_secs: 30,
        }),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
/// An import as `GET /api/v1/imports/{id}` shows it.
pub(super) struct JobView {
    #[serde(flatten)]
    job: Job,
    /// Place among the queued imports of its provider (1 = next); 0 when it is not queued.
    queue_position: usize,
}

/// One import's status and counters.
#[utoipa::path(get, path = "/api/v1/imports/{import_id}",
    params(("import_id" = String, Path, description = "The id a POST answered")),
    responses(
        (status = 200, description = "The import", body = JobView),
        (status = 401, description = "`API_TOKEN` is set and the request did not carry it", body = ErrorBody),
        (status = 404, description = "No import with this id", body = ErrorBody),
        (status = 500, description = "The database failed; the cause is logged, not sent", body = ErrorBody),
    ))]
pub(super) async fn show(
    State(state): State<AppState>,
    Path(import_id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let not_found = || {
        ApiError::NotFound(format!(
            "import_id: no import with id {:?}",
            import_id.escape_default().to_string()
        ))
    };
    if import_id.len() > 64 {
        return Err(not_found());
    }
    let placed = state
        .store
        .job_with_position(&import_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(JobView {
        job: placed.job,
        queue_position: usize::try_from(placed.queue_position).unwrap_or(0),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        parse_request(body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn a_limit_is_any_json_number_with_no_fractional_part() {
        let limit = |l: &str| {
            parse_request(format!(r#"{{"user_id":"abc","platform":"lichess","limit":{l}}}"#).as_bytes())
                .map(|r| r.limit)
        };
        assert_eq!(limit("581").ok(), Some(581));
        assert_eq!(limit("581.0").ok(), Some(581));
        assert_eq!(limit("5.81e2").ok(), Some(581));
        assert_eq!(limit("1e4").ok(), Some(10_000));
        for refused in ["1.5", "0.0", "1e5", "-1", "1e300", "10000.5"] {
            assert!(limit(refused).is_err(), "{refused} accepted");
        }
    }

    #[test]
    fn good_request_is_lowercased_with_default_limit() {
        let r = parse_request(br#"{"user_id":"Thibault","platform":"lichess"}"#).unwrap();
        assert_eq!(
            r,
            ImportRequest {
                user_id: "thibault".into(),
                platform: Platform::Lichess,
                limit: DEFAULT_LIMIT
            }
        );
    }

    #[test]
    fn each_rejection_names_its_field() {
        assert!(err("{").starts_with("body is not valid JSON"));
        assert!(err("[]").starts_with("body must be"));
        assert!(err(r#"{"user_id":"ab","platform":"chess.org"}"#).starts_with("platform:"));
        assert!(err(r#"{"platform":"lichess"}"#).starts_with("user_id: missing"));
        assert!(err(r#"{"user_id":5,"platform":"lichess"}"#).starts_with("user_id:"));
        for name in [
            "a",
            "../etc",
            "a/b",
            "a%2Fb",
            "a?b",
            "a#b",
            "a b",
            "a\u{1}b",
            "josé",
            &"x".repeat(200),
        ] {
            let body = serde_json::json!({"user_id": name, "platform": "lichess"}).to_string();
            assert!(err(&body).starts_with("user_id: not a valid"), "{name:?}");
        }
        for limit in ["0", "-1", "1.5", "\"10\"", "10001"] {
            let body = format!(r#"{{"user_id":"abc","platform":"lichess","limit":{limit}}}"#);
            assert!(err(&body).starts_with("limit:"), "{limit}");
        }
        assert!(
            err(r#"{"user_id":"abc","platform":"lichess","admin":true}"#).starts_with("admin: unknown field")
        );
    }
}
