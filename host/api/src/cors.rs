//! CORS on every API: preflights answered, and cross-origin answers marked
//! readable, for the origins the tenant allows (`/v1/settings/cors`).
//!
//! The tenant is taken from what the request shows before its handler
//! runs — a bearer API key or token, `X-API-KEY`, an `api_key` query
//! parameter, or a tenant in the path. A request that shows none (a
//! preflight carries no credentials; a Playbasis POST has its token in the
//! body) is allowed when some tenant allows the origin: with no ambient
//! credentials (no cookies) there is nothing a foreign page could borrow,
//! the handler still checks the credential itself.

use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use engage_domain::{cors, tenants};
use engage_store::Snapshot;

/// Headers a browser client may send (when a preflight asks for others,
/// they are not allowed).
const ALLOWED_HEADERS: &str =
    "authorization, content-type, idempotency-key, x-api-key, x-request-id";
const EXPOSED_HEADERS: &str = "x-request-id, retry-after, idempotent-replayed";

pub async fn cors(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(origin) = req
        .headers()
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return next.run(req).await;
    };
    let allowed = s
        .store
        .read()
        .ok()
        .and_then(|snap| allowed(&snap, &req, &origin).ok())
        .unwrap_or(false);
    let preflight = req.method() == Method::OPTIONS
        && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let asked = req
            .headers()
            .get(ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let known = asked
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .all(|h| ALLOWED_HEADERS.split(", ").any(|a| a == h));
        if !allowed || !known {
            return (StatusCode::FORBIDDEN, [(VARY, "Origin")]).into_response();
        }
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&origin) {
            h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        h.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
        );
        h.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        h.insert(VARY, HeaderValue::from_static("Origin"));
        return r;
    }
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.append(VARY, HeaderValue::from_static("Origin"));
    if allowed && let Ok(v) = HeaderValue::from_str(&origin) {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
    r
}

fn allowed(snap: &Snapshot, req: &Request, origin: &str) -> Result<bool, engage_store::StoreError> {
    match tenant_shown(snap, req)? {
        Some(t) => Ok(cors::settings(snap, &t)?.allows(origin)),
        None => cors::any_allows(snap, origin),
    }
}

/// The tenant a request names before its handler runs, if any.
fn tenant_shown(
    snap: &Snapshot,
    req: &Request,
) -> Result<Option<String>, engage_store::StoreError> {
    let h = req.headers();
    let bearer = h
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    if let Some(c) = bearer {
        if let Ok(t) = tenants::by_api_key(snap, c) {
            return Ok(Some(t));
        }
        return Ok(tenants::verify_token(snap, c, engage_store::ids::now_ms()).ok());
    }
    if let Some(k) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Ok(tenants::by_api_key(snap, k.trim()).ok());
    }
    let key = req.uri().query().and_then(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "api_key")
            .map(|(_, v)| v)
    });
    if let Some(k) = key {
        return Ok(tenants::by_api_key(snap, &k).ok());
    }
    let path = req.uri().path();
    let named = path
        .strip_prefix("/playblazer/v1/app/")
        .or_else(|| path.strip_prefix("/playsms/").filter(|p| p.contains('/')))
        .and_then(|p| p.split('/').next())
        .filter(|t| tenants::get(snap, t).is_ok());
    Ok(named.map(str::to_owned))
}
