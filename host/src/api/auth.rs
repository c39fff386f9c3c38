//! Bearer-token extractors: a tenant's access token, or the admin token.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::ids::now_ms;
use crate::tenants;

/// The tenant a request acts for, from `Authorization: Bearer <token>`.
pub struct TenantAuth(pub String);

/// A request carrying the admin token.
pub struct AdminAuth;

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("send `Authorization: Bearer <token>`"))?;
    header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))
}

impl FromRequestParts<AppState> for TenantAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let tenant = tenants::verify_token(&state.store.read()?, token, now_ms())?;
        Ok(TenantAuth(tenant))
    }
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if tenants::is_admin_token(&state.store.read()?, token)? {
            Ok(AdminAuth)
        } else {
            Err(ApiError::unauthorized("that is not the admin token"))
        }
    }
}

/// The tenant of a vendor API's static credential: the tenant's API key,
/// or (for clients that can renew them) an access token. `None` when
/// there is no bearer credential or it names no tenant.
pub fn bearer_key_tenant(
    parts: &Parts,
    snap: &crate::store::Snapshot,
) -> Result<Option<String>, crate::store::StoreError> {
    let Ok(credential) = bearer(parts) else {
        return Ok(None);
    };
    if let Ok(t) = tenants::by_api_key(snap, credential) {
        return Ok(Some(t));
    }
    Ok(tenants::verify_token(snap, credential, now_ms()).ok())
}

/// The raw bearer credential, if any.
pub fn bearer_credential(parts: &Parts) -> Option<&str> {
    bearer(parts).ok()
}
