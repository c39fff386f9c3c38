//! The Annex Cloud-compatible segment API under `/annex` (seed 002):
//! `POST /annex/api/3.0/segment` and reading, replacing and deleting one.
//! Translation only, over [`crate::audiences::segments`].
//!
//! Authentication: `Authorization: Bearer` with the tenant's API key, an
//! access token, or Annex's own form of access token — base64 of a JSON
//! array or object holding the site id (the tenant) and the token (its
//! API key). Errors are `{"errorCode","errorMessage"}`: `AC1001`
//! something went wrong (500), `AC1002` invalid request (400), `AC1003`
//! not authorised (401), `AC1004` no such segment (404).

use super::form::{Body, BodyError};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::audiences::segments::{self, Segment, SegmentError, SegmentSpec, SegmentStatus};
use crate::ids::{now_ms, parse_sql_datetime, sql_datetime};
use crate::tenants;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/annex/api/3.0/segment", post(create))
        .route(
            "/annex/api/3.0/segment/{id}",
            axum::routing::get(show).put(replace).delete(remove),
        )
}

struct AnnexError(StatusCode, &'static str, String);

/// A path or method under `/annex` that Engage does not serve.
pub fn not_served() -> Response {
    AnnexError(
        StatusCode::NOT_FOUND,
        "AC1002",
        "no such endpoint (Engage serves api/3.0/segment)".into(),
    )
    .into_response()
}

impl From<BodyError> for AnnexError {
    fn from(e: BodyError) -> AnnexError {
        AnnexError(e.status, "AC1002", e.message)
    }
}

impl IntoResponse for AnnexError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({ "errorCode": self.1, "errorMessage": self.2 })),
        )
            .into_response()
    }
}

impl From<SegmentError> for AnnexError {
    fn from(e: SegmentError) -> Self {
        match e {
            SegmentError::Store(s) => s.into(),
            SegmentError::NotFound(_) => AnnexError(StatusCode::NOT_FOUND, "AC1004", e.to_string()),
            SegmentError::Invalid(m) => AnnexError(StatusCode::BAD_REQUEST, "AC1002", m),
        }
    }
}

impl From<crate::store::StoreError> for AnnexError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "annex");
        AnnexError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "AC1001",
            "Oops! Something went wrong.".into(),
        )
    }
}

/// The tenant of the bearer credential.
struct Tenant(String);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = AnnexError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, AnnexError> {
        let denied = || {
            AnnexError(
                StatusCode::UNAUTHORIZED,
                "AC1003",
                "Authorization: Bearer <access token> is required".into(),
            )
        };
        let snap = s.store.read()?;
        if let Some(t) = super::auth::bearer_key_tenant(parts, &snap)? {
            return Ok(Tenant(t));
        }
        let bearer = super::auth::bearer_credential(parts).ok_or_else(denied)?;
        // Annex's access token: base64 of [token, site id] or {…}.
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(bearer)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .ok_or_else(denied)?;
        let strings: Vec<String> = match &decoded {
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Value::Object(o) => o
                .values()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let tenant = strings
            .iter()
            .find_map(|key| tenants::by_api_key(&snap, key).ok())
            .ok_or_else(denied)?;
        if !strings.contains(&tenant) {
            return Err(denied()); // the site id must name the key's tenant
        }
        Ok(Tenant(tenant))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnnexSegment {
    name: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    from_date: Option<String>,
    to_date: Option<String>,
    #[serde(default)]
    member: String,
    status: Option<String>,
    external_id: Option<String>,
    external_name: Option<String>,
}

fn bad(m: impl Into<String>) -> AnnexError {
    AnnexError(StatusCode::BAD_REQUEST, "AC1002", m.into())
}

/// `yyyy-mm-dd` at `time`, as ms.
fn date(d: &Option<String>, time: &str, field: &str) -> Result<Option<i64>, AnnexError> {
    match d.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        None => Ok(None),
        Some(d) => parse_sql_datetime(&format!("{d} {time}"))
            .map(Some)
            .ok_or_else(|| bad(format!("{field} is a date in yyyy-mm-dd format"))),
    }
}

fn spec(raw: &[u8]) -> Result<SegmentSpec, AnnexError> {
    let a: AnnexSegment = serde_json::from_slice(raw)
        .map_err(|e| bad(format!("the body is not the expected JSON: {e}")))?;
    let status = match a.status.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("ACTIVE") => SegmentStatus::Active,
        Some("INACTIVE") => SegmentStatus::Inactive,
        Some(_) => return Err(bad("status is ACTIVE or INACTIVE")),
    };
    Ok(SegmentSpec {
        name: a.name,
        kind: a.kind.unwrap_or_else(|| "Current Data".into()),
        from_ms: date(&a.from_date, "00:00:00", "fromDate")?,
        to_ms: date(&a.to_date, "23:59:00", "toDate")?,
        members: a
            .member
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
        rule: None,
        status,
        external_id: a.external_id,
        external_name: a.external_name,
    })
}

/// `yyyy-MM-dd'T'HH:mm:ssZ`.
fn annex_date(ms: Option<i64>) -> Value {
    ms.map(|ms| format!("{}+0000", sql_datetime(ms).replacen(' ', "T", 1)).into())
        .unwrap_or(Value::Null)
}

fn view(s: &Segment) -> Value {
    json!({
        "segmentId": s.id,
        "segmentName": s.name,
        "segmentType": s.kind,
        "segmentFromDate": annex_date(s.from_ms),
        "segmentToDate": annex_date(s.to_ms),
        "member": s.members.join(","),
        "status": match s.status { SegmentStatus::Active => "ACTIVE", SegmentStatus::Inactive => "INACTIVE" },
        "externalId": s.external_id,
        "externalName": s.external_name,
    })
}

async fn create(
    Tenant(t): Tenant,
    State(s): State<AppState>,
    Body(raw, _): Body<AnnexError>,
) -> Result<Json<Value>, AnnexError> {
    let spec = spec(&raw)?;
    let now = now_ms();
    let seg = s
        .store
        .write(move |tx| segments::create(tx, &t, spec.clone(), now))
        .await?;
    Ok(Json(view(&seg)))
}

async fn show(
    Tenant(t): Tenant,
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<Value>, AnnexError> {
    let seg = segments::get(&s.store.read()?, &t, id)?.ok_or(SegmentError::NotFound(id))?;
    Ok(Json(view(&seg)))
}

async fn replace(
    Tenant(t): Tenant,
    State(s): State<AppState>,
    Path(id): Path<u64>,
    Body(raw, _): Body<AnnexError>,
) -> Result<Json<Value>, AnnexError> {
    let spec = spec(&raw)?;
    let now = now_ms();
    let seg = s
        .store
        .write(move |tx| segments::replace(tx, &t, id, spec.clone(), now))
        .await?;
    Ok(Json(view(&seg)))
}

async fn remove(
    Tenant(t): Tenant,
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<StatusCode, AnnexError> {
    s.store
        .write(move |tx| segments::remove(tx, &t, id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
