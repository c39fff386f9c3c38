//! Mutating requests: their body and their `Idempotency-Key`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ApiError, AppState};
use engage_store::idempotency::{self, Call, Guarded};
use engage_store::ids::now_ms;
use engage_store::ids::sha256_hex;
use engage_store::{StoreError, Tx};

/// The largest JSON body a mutating call takes.
const MAX_BODY: usize = 1 << 20;

/// A mutating call: the raw body, and the idempotency key with the call's
/// fingerprint (method, path and query, body) when the client sent one.
pub struct Mutation {
    pub body: Bytes,
    pub idem: Option<Call>,
}

impl Mutation {
    /// The body as JSON `T` (an empty body reads as `{}`).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let body: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &self.body
        };
        super::tenants::parse(&Bytes::copy_from_slice(body))
    }
}

/// What every API says of a malformed `Idempotency-Key`, in its own format.
pub const INVALID_KEY: &str = "Idempotency-Key is 1 to 255 printable ASCII characters";

/// What every API says when a key comes back with another request.
pub const KEY_REUSED: &str = "this Idempotency-Key was used for a different request; use a new key";

/// A request's `Idempotency-Key` (header), if any.
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .filter(|k| idempotency::valid_key(k))
            .map(|k| Some(k.to_owned()))
            .ok_or(INVALID_KEY),
    }
}

/// The guarded call of a request with `key`: the key and a fingerprint of
/// what it asks (method, path and query, body). Every API, native and
/// vendor, guards its mutations with this.
pub fn call_of(key: Option<String>, method: &Method, uri: &Uri, body: &[u8]) -> Option<Call> {
    key.map(|key| {
        let mut fp = format!("{method} {uri}\n").into_bytes();
        fp.extend_from_slice(body);
        Call {
            key,
            fingerprint: sha256_hex(&fp),
        }
    })
}

impl FromRequest<AppState> for Mutation {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &AppState) -> Result<Self, ApiError> {
        let key = key_of(req.headers())
            .map_err(|m| ApiError::bad_request("invalid_idempotency_key", m))?;
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let body = crate::wire::read_limited(req.into_body(), MAX_BODY)
            .await
            .map_err(ApiError::from)?;
        let idem = call_of(key, &method, &uri, &body);
        Ok(Mutation { body, idem })
    }
}

/// The HTTP answer to a guarded call: the fresh result with `status`, the
/// remembered answer (marked `Idempotent-Replayed: true`), or a conflict.
pub fn respond<T: Serialize>(g: Guarded<T>, status: StatusCode) -> Response {
    match g {
        Guarded::Fresh(_) if status == StatusCode::NO_CONTENT => status.into_response(),
        Guarded::Fresh(v) => (status, axum::Json(v)).into_response(),
        Guarded::Replay(r) => {
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
            let mut resp = if status == StatusCode::NO_CONTENT {
                status.into_response()
            } else {
                (status, axum::Json(r.body)).into_response()
            };
            resp.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            resp
        }
        Guarded::Conflict => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            KEY_REUSED,
        )
        .into_response(),
    }
}

/// Run `job` in a write transaction, guarded by the call's idempotency key,
/// and answer `status` with its result (204 answers have no body).
pub async fn write<T, E, F>(
    state: &AppState,
    tenant: &str,
    m: &Mutation,
    status: StatusCode,
    now_ms: i64,
    job: F,
) -> Result<Response, ApiError>
where
    T: Serialize + Send + 'static,
    E: From<StoreError> + Send + 'static,
    ApiError: From<E>,
    F: FnMut(&mut Tx) -> Result<T, E> + Send + 'static,
{
    let g = idempotency::write(
        &state.store,
        tenant,
        m.idem.clone(),
        status.as_u16(),
        now_ms,
        job,
    )
    .await?;
    Ok(respond(g, status))
}

/// A `DELETE`: `remove(tx, tenant)` in one write guarded by the request's
/// `Idempotency-Key`, answered 204 (again, for a retry).
pub async fn removal<T, E, F>(
    state: &AppState,
    tenant: &str,
    m: &Mutation,
    remove: F,
) -> Result<Response, ApiError>
where
    T: Serialize + Send + 'static,
    E: From<StoreError> + Send + 'static,
    ApiError: From<E>,
    F: Fn(&mut Tx, &str) -> Result<T, E> + Send + 'static,
{
    let t = tenant.to_owned();
    let job = move |tx: &mut Tx| remove(tx, &t);
    write(state, tenant, m, StatusCode::NO_CONTENT, now_ms(), job).await
}

/// Run `job` (which renders the vendor's answer) in a write guarded by
/// `idem`: for the JSON vendor APIs, whose answers are their JSON bodies.
pub async fn guarded_json<E, F>(
    state: &AppState,
    tenant: &str,
    idem: Option<Call>,
    status: StatusCode,
    job: F,
) -> Result<Guarded<serde_json::Value>, E>
where
    E: From<StoreError> + Send + 'static,
    F: FnMut(&mut Tx) -> Result<serde_json::Value, E> + Send + 'static,
{
    let now = engage_store::ids::now_ms();
    idempotency::write(&state.store, tenant, idem, status.as_u16(), now, job).await
}

/// A JSON vendor API's answer to a guarded call: the fresh body with
/// `status`, the first answer's again (`Idempotent-Replayed: true`), or the
/// API's own error `reused` for a key that came with another request.
pub fn vendor_answer<E>(
    g: Guarded<serde_json::Value>,
    status: StatusCode,
    reused: impl FnOnce() -> E,
) -> Result<Response, E> {
    match g {
        Guarded::Conflict => Err(reused()),
        g => Ok(respond(g, status)),
    }
}

/// Why a guarded call has no result to render: its key came with another
/// request, or what was kept for it cannot be read back (a bug).
pub enum NotKept {
    Reused,
    Unreadable(String),
}

/// The result of a domain call guarded by a key: the fresh one, or the
/// first one's again (true), decoded from what was kept.
pub fn fresh_or_kept<T: DeserializeOwned>(g: Guarded<T>) -> Result<(T, bool), NotKept> {
    match g {
        Guarded::Fresh(v) => Ok((v, false)),
        Guarded::Replay(r) => serde_json::from_value(r.body)
            .map(|v| (v, true))
            .map_err(|e| NotKept::Unreadable(e.to_string())),
        Guarded::Conflict => Err(NotKept::Reused),
    }
}

/// Mark an answer as given again for a repeated `Idempotency-Key`.
pub fn mark_replayed(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    resp
}
