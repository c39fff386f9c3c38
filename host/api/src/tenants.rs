//! `/admin/tenants` and `/v1/auth/*`.

use crate::wire::Query;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{AdminAuth, TenantAuth};
use super::{ApiError, AppState};
use engage_domain::tenants::{self, AccessToken};
use engage_store::ids::rfc3339;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/tenants", post(create).get(list))
        .route("/v1/auth/token", post(token))
        .route("/v1/auth/renew", post(renew))
        .route("/v1/settings/cors", get(cors_settings).put(set_cors))
}

async fn cors_settings(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<engage_domain::cors::Settings>, ApiError> {
    Ok(Json(engage_domain::cors::settings(
        &s.store.read()?,
        &tenant,
    )?))
}

async fn set_cors(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    m: super::mutation::Mutation,
) -> Result<Json<engage_domain::cors::Settings>, ApiError> {
    let settings: engage_domain::cors::Settings = m.json()?;
    Ok(Json(
        engage_domain::cors::set(&s.store, &tenant, settings).await?,
    ))
}

/// Parse a JSON body into `T`, answering malformed input in the API's format.
pub fn parse<T: serde::de::DeserializeOwned>(body: &axum::body::Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the request body is not what this endpoint takes: {e}"),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
}

async fn create(
    _: AdminAuth,
    State(s): State<AppState>,
    crate::wire::Body(body, ..): crate::wire::Body<ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: CreateTenant = parse(&body)?;
    let creds = tenants::create(&s.store, &req.name).await?;
    s.plugins.provision(&creds.tenant).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(creds).unwrap_or_default()),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    /// Only tenants after this id.
    after: Option<String>,
    /// At most this many (1 to 500; 100 by default).
    limit: Option<usize>,
}

async fn list(
    _: AdminAuth,
    State(s): State<AppState>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let limit = page.limit.unwrap_or(100).clamp(1, 500);
    let list = tenants::list(&s.store.read()?, page.after.as_deref(), limit)?;
    let next = (list.len() == limit)
        .then(|| list.last().map(|t| t.id.clone()))
        .flatten();
    let tenants: Vec<Value> = list
        .into_iter()
        .map(|t| json!({ "tenant": t.id, "api_key": t.api_key, "created_at": rfc3339(t.created_at_ms) }))
        .collect();
    Ok(Json(json!({ "tenants": tenants, "next": next })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    api_key: String,
    api_secret: String,
}

fn token_json(t: AccessToken) -> Json<Value> {
    Json(json!({ "token": t.token, "expires_at": rfc3339(t.expires_at_ms) }))
}

async fn token(
    State(s): State<AppState>,
    super::auth::ClientIp(ip): super::auth::ClientIp,
    crate::wire::Body(body, ..): crate::wire::Body<ApiError>,
) -> Result<Json<Value>, ApiError> {
    let req: TokenRequest = parse(&body)?;
    let subject = crate::throttle::Subject::new("key", &req.api_key, ip);
    let issued = tenants::issue_token(&s.store, &req.api_key, &req.api_secret);
    Ok(token_json(
        super::auth::throttled_async(&s, &subject, issued).await??,
    ))
}

async fn renew(
    State(s): State<AppState>,
    parts: axum::http::HeaderMap,
    _: TenantAuth,
) -> Result<Json<Value>, ApiError> {
    let token = parts
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split_whitespace().nth(1))
        .unwrap_or_default();
    Ok(token_json(tenants::renew_token(&s.store, token).await?))
}
