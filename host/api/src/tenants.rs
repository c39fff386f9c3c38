//! `/admin/tenants` and `/v1/auth/*`.

use crate::wire::Query;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{AdminAuth, TenantAuth};
use super::{ApiError, AppState};
use engage_domain::tenants::{self, AccessToken};
use engage_store::ids::rfc3339;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(token, revoke))
        .routes(routes!(admin_session, revoke_admin_session))
        .routes(routes!(renew))
        .routes(routes!(cors_settings, set_cors))
}

#[utoipa::path(
    get,
    path = "/v1/settings/cors",
    operation_id = "getCors",
    tag = "tenants",
    summary = "Web origins allowed to call from a browser",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "The tenant's allowed origins", body = engage_domain::cors::Settings),
    ),
)]
async fn cors_settings(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<engage_domain::cors::Settings>, ApiError> {
    Ok(Json(engage_domain::cors::settings(
        &s.store.read()?,
        &tenant,
    )?))
}

#[utoipa::path(
    put,
    path = "/v1/settings/cors",
    operation_id = "putCors",
    tag = "tenants",
    summary = "Set the web origins allowed to call from a browser",
    description = "Every API answers CORS preflights and marks answers readable for these origins (none by default). Credentials are never allowed: Engage takes none implicitly.",
    security(("tenantToken" = [])),
    params(crate::openapi::IdempotencyKey),
    request_body(content = engage_domain::cors::Settings, content_type = "application/json"),
    responses(
        (status = 200, description = "The tenant's allowed origins", body = engage_domain::cors::Settings),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
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
    let bad = |e: serde_json::Error| {
        ApiError::bad_request(
            "invalid_json",
            format!("the request body is not what this endpoint takes: {e}"),
        )
    };
    let mut value: serde_json::Value = serde_json::from_slice(body).map_err(bad)?;
    whole_numbers(&mut value);
    serde_json::from_value(value).map_err(bad)
}

/// JSON has one number type, and JSON Schema calls `1.0` an integer: a
/// number without a fraction is read as the integer it is, so that a field
/// of whole numbers takes `5.0` as it takes `5` (serde would refuse it).
/// Only up to 2^53: beyond, a float is no longer exact (an integer too
/// large for 64 bits arrives as one), and is left for the field to refuse.
fn whole_numbers(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
            {
                const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
                if (-EXACT..=EXACT).contains(&f) {
                    *n = (f as i64).into();
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(map) => map.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    /// Lower-case letters, digits and `-`, 1 to 63 characters, not starting with `-`.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    name: String,
}

#[utoipa::path(
    post,
    path = "/admin/tenants",
    operation_id = "createTenant",
    tag = "tenants",
    summary = "Create a tenant",
    security(("adminToken" = [])),
    request_body(content = CreateTenant, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; the secret is shown only now", body = tenants::Credentials),
        (status = 400, description = "invalid_name or invalid_json", body = crate::openapi::ErrorBody),
        (status = 409, description = "tenant_exists", body = crate::openapi::ErrorBody),
    ),
)]
async fn create(
    _: AdminAuth,
    State(s): State<AppState>,
    crate::wire::Body(body, ..): crate::wire::Body<ApiError>,
) -> Result<(StatusCode, Json<tenants::Credentials>), ApiError> {
    let req: CreateTenant = parse(&body)?;
    let creds = tenants::create(&s.store, &req.name).await?;
    s.plugins.provision(&creds.tenant).await?;
    Ok((StatusCode::CREATED, Json(creds)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct Page {
    /// Only tenants after this id.
    after: Option<String>,
    /// At most this many (1 to 500; 100 by default).
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/admin/tenants",
    operation_id = "listTenants",
    tag = "tenants",
    summary = "List tenants",
    security(("adminToken" = [])),
    params(Page),
    responses(
        (status = 200, description = "Tenants", body = TenantPage),
    ),
)]
async fn list(
    _: AdminAuth,
    State(s): State<AppState>,
    Query(page): Query<Page>,
) -> Result<Json<TenantPage>, ApiError> {
    let limit = page.limit.unwrap_or(100).clamp(1, 500);
    let list = tenants::list(&s.store.read()?, page.after.as_deref(), limit)?;
    let next = (list.len() == limit)
        .then(|| list.last().map(|t| t.id.clone()))
        .flatten();
    let tenants = list
        .into_iter()
        .map(|t| TenantSummary {
            tenant: t.id,
            api_key: t.api_key,
            created_at: rfc3339(t.created_at_ms),
        })
        .collect();
    Ok(Json(TenantPage { tenants, next }))
}

/// A page of tenants.
#[derive(Serialize, utoipa::ToSchema)]
struct TenantPage {
    tenants: Vec<TenantSummary>,
    /// Pass as `after` for the next page; null on the last one.
    next: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct TenantSummary {
    tenant: String,
    api_key: String,
    /// RFC 3339.
    created_at: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    api_key: String,
    api_secret: String,
    /// How long the token lives, in seconds: 60 to 259,200 (three days,
    /// the default).
    #[schema(minimum = 60, maximum = 259_200)]
    ttl_s: Option<u32>,
}

/// A tenant's access token.
#[derive(Serialize, utoipa::ToSchema)]
struct Token {
    /// Send as `Authorization: Bearer <token>`.
    token: String,
    /// The tenant it acts for (absent for an admin session token).
    #[serde(skip_serializing_if = "String::is_empty")]
    tenant: String,
    /// RFC 3339; renew before then with POST /v1/auth/renew.
    expires_at: String,
}

fn token_json(t: AccessToken) -> Json<Token> {
    Json(Token {
        token: t.token,
        tenant: t.tenant,
        expires_at: rfc3339(t.expires_at_ms),
    })
}

#[utoipa::path(
    post,
    path = "/v1/auth/token",
    operation_id = "token",
    tag = "tenants",
    summary = "Exchange an API key and secret for an access token (valid 3 days, or ttl_s)",
    request_body(content = TokenRequest, content_type = "application/json"),
    responses(
        (status = 401, description = "bad_credentials: no tenant has this key and secret", body = crate::openapi::ErrorBody),
        (status = 200, description = "A token", body = Token),
        (status = 400, description = "invalid_json", body = crate::openapi::ErrorBody),
        (status = 429, description = "too_many_attempts: too many failed checks of this key or from this address; see Retry-After", body = crate::openapi::ErrorBody),
    ),
)]
async fn token(
    State(s): State<AppState>,
    super::auth::ClientIp(ip): super::auth::ClientIp,
    crate::wire::Body(body, ..): crate::wire::Body<ApiError>,
) -> Result<Json<Token>, ApiError> {
    let req: TokenRequest = parse(&body)?;
    let subject = crate::throttle::Subject::new("key", &req.api_key, ip);
    let ttl_ms = match req.ttl_s {
        None => tenants::TOKEN_TTL_MS,
        Some(t @ 60..=259_200) => i64::from(t) * 1000,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_ttl",
                "ttl_s is 60 to 259200 seconds",
            ));
        }
    };
    let issued = tenants::issue_token_for(&s.store, &req.api_key, &req.api_secret, ttl_ms);
    Ok(token_json(
        super::auth::throttled_async(&s, &subject, issued).await??,
    ))
}

#[utoipa::path(
    delete,
    path = "/v1/auth/token",
    operation_id = "revokeToken",
    tag = "tenants",
    summary = "Revoke the access token this request carries (sign out)",
    description = "From now on the token is refused on every host. Other tokens of the tenant stay valid.",
    security(("tenantToken" = [])),
    responses(
        (status = 204, description = "Revoked"),
    ),
)]
async fn revoke(
    TenantAuth(_): TenantAuth,
    super::auth::BearerToken(token): super::auth::BearerToken,
    State(s): State<AppState>,
) -> Result<StatusCode, ApiError> {
    tenants::revoke_token(&s.store, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/admin/token",
    operation_id = "adminSession",
    tag = "tenants",
    summary = "Exchange the admin token for an admin session token (valid 12 hours)",
    description = "A session token is accepted wherever the admin token is, expires, and can be revoked: it is what a browser (the console) keeps instead of the long-lived admin token.",
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "A session token", body = Token),
    ),
)]
async fn admin_session(_: AdminAuth, State(s): State<AppState>) -> Result<Json<Token>, ApiError> {
    Ok(token_json(tenants::issue_admin_session(&s.store).await?))
}

#[utoipa::path(
    delete,
    path = "/admin/token",
    operation_id = "revokeAdminSession",
    tag = "tenants",
    summary = "Revoke the admin session token this request carries",
    description = "The admin token itself cannot be revoked this way (restart with a new `--admin-token` to replace it); revoking it answers 204 and changes nothing.",
    security(("adminToken" = [])),
    responses(
        (status = 204, description = "Revoked"),
    ),
)]
async fn revoke_admin_session(
    _: AdminAuth,
    super::auth::BearerToken(token): super::auth::BearerToken,
    State(s): State<AppState>,
) -> Result<StatusCode, ApiError> {
    tenants::revoke_admin_session(&s.store, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/v1/auth/renew",
    operation_id = "renew",
    tag = "tenants",
    summary = "Exchange a valid token for a new one",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "A new token", body = Token),
    ),
)]
async fn renew(
    State(s): State<AppState>,
    parts: axum::http::HeaderMap,
    _: TenantAuth,
) -> Result<Json<Token>, ApiError> {
    let token = parts
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split_whitespace().nth(1))
        .unwrap_or_default();
    Ok(token_json(tenants::renew_token(&s.store, token).await?))
}
