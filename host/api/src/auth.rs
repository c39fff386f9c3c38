//! Bearer-token extractors: a tenant's access token, or the admin token.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::throttle::{Locked, Subject};
use engage_domain::tenants;
use engage_store::ids::now_ms;

/// The client's address (the TCP peer), when known.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Run the credential check `check` under the server's throttle: refused
/// at once (`Err(Locked)`) while the login or the address is locked out,
/// else run and counted as a success or a failure.
pub fn throttled<T, E>(
    s: &AppState,
    subject: &Subject,
    check: impl FnOnce() -> Result<T, E>,
) -> Result<Result<T, E>, Locked> {
    s.throttle.check(subject)?;
    let r = check();
    s.throttle.record(subject, r.is_ok());
    Ok(r)
}

/// [`throttled`] for a check that awaits.
pub async fn throttled_async<T, E>(
    s: &AppState,
    subject: &Subject,
    check: impl Future<Output = Result<T, E>>,
) -> Result<Result<T, E>, Locked> {
    s.throttle.check(subject)?;
    let r = check.await;
    s.throttle.record(subject, r.is_ok());
    Ok(r)
}

impl From<Locked> for ApiError {
    fn from(l: Locked) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            l.to_string(),
        )
        .retry_after(l.retry_after_secs())
    }
}

/// The tenant a request acts for, from `Authorization: Bearer <token>`.
pub struct TenantAuth(pub String);

/// A request carrying the admin token, or an admin session token issued
/// for it (`POST /admin/token`).
pub struct AdminAuth;

/// The bearer credential itself, for the operations that act on it
/// (revoking it). Checked by [`TenantAuth`] or [`AdminAuth`] beside it.
pub struct BearerToken(pub String);

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        bearer(parts).map(|t| BearerToken(t.to_owned()))
    }
}

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
        let snap = state.store.read()?;
        let subject = Subject::address(client_ip(parts));
        let tenant = throttled(state, &subject, || {
            tenants::verify_token(&snap, token, now_ms())
        })??;
        crate::identified(&tenant);
        Ok(TenantAuth(tenant))
    }
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let snap = state.store.read()?;
        let subject = Subject::address(client_ip(parts));
        throttled(state, &subject, || {
            let admin = tenants::is_admin_token(&snap, token)
                .and_then(|a| Ok(a || tenants::is_admin_session(&snap, token, now_ms())?));
            match admin {
                Ok(true) => Ok(AdminAuth),
                Ok(false) => Err(ApiError::unauthorized("that is not the admin token")),
                Err(e) => Err(e.into()),
            }
        })?
    }
}

/// The tenant of a vendor API's static credential: the tenant's API key,
/// or (for clients that can renew them) an access token. `None` when
/// there is no bearer credential or it names no tenant.
pub fn bearer_key_tenant(
    parts: &Parts,
    snap: &engage_store::Snapshot,
) -> Result<Option<String>, engage_store::StoreError> {
    let Ok(credential) = bearer(parts) else {
        return Ok(None);
    };
    let found = match tenants::by_api_key(snap, credential) {
        Ok(t) => Some(t),
        Err(_) => tenants::verify_token(snap, credential, now_ms()).ok(),
    };
    if let Some(t) = &found {
        crate::identified(t);
    }
    Ok(found)
}

/// [`bearer_key_tenant`] under the throttle: a credential that names no
/// tenant counts as a failure of the client's address; while the address
/// is locked out every credential from it is refused (`None`) unchecked.
pub fn bearer_key_tenant_throttled(
    parts: &Parts,
    snap: &engage_store::Snapshot,
    s: &AppState,
) -> Result<Option<String>, engage_store::StoreError> {
    if bearer(parts).is_err() {
        return Ok(None);
    }
    let subject = Subject::address(client_ip(parts));
    let found = throttled(s, &subject, || match bearer_key_tenant(parts, snap) {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err(None),
        Err(e) => Err(Some(e)),
    });
    match found {
        Ok(Ok(t)) => Ok(Some(t)),
        Ok(Err(Some(e))) => Err(e),
        Ok(Err(None)) | Err(_) => Ok(None),
    }
}

/// The raw bearer credential, if any.
pub fn bearer_credential(parts: &Parts) -> Option<&str> {
    bearer(parts).ok()
}
