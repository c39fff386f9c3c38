//! `/v1/plugins` and `/v1/bindings`: upload, inspect, bind, roll back, try.

use crate::wire::{Path, Query};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::tenants::parse;
use super::{ApiError, AppState, RequestId};
use engage_runtime::{BindRequest, Binding, CanaryRequest, Input, PluginsError, Point};
use engage_store::ids::now_ms;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/plugins", get(list))
        .route(
            "/v1/plugins/{name}",
            get(get_one).put(upload).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/v1/plugins/{name}/versions/{version}",
            delete(remove_version),
        )
        .route("/v1/plugins/{name}/invocations", get(invocations))
        .route("/v1/invocations/{id}", get(invocation))
        .route("/v1/bindings", get(bindings))
        .route(
            "/v1/bindings/{point}",
            get(binding).put(bind).delete(unbind),
        )
        .route("/v1/bindings/{point}/invoke", post(invoke))
        .route(
            "/v1/bindings/{point}/canary",
            get(canary).put(start_canary).delete(roll_back_canary),
        )
        .route("/v1/bindings/{point}/canary/promote", post(promote_canary))
}

fn point(s: &str) -> Result<Point, ApiError> {
    Point::parse(s).ok_or_else(|| PluginsError::UnknownPoint(s.to_owned()).into())
}

/// Delete a version the tenant no longer needs (not a bound one): it stops
/// counting against the tenant's plugin storage.
async fn remove_version(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path((name, version)): Path<(String, u32)>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let g = s
        .plugins
        .remove_version(&tenant, &name, version, m.idem.clone())
        .await?;
    Ok(mutation::respond(g, StatusCode::NO_CONTENT))
}

async fn upload(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.is_empty()
        && content_type != "application/wasm"
        && content_type != "application/octet-stream"
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "send the component with `Content-Type: application/wasm`, not `{content_type}`"
            ),
        ));
    }
    let limit = s.max_component_bytes;
    let bytes = crate::wire::read_limited(body, limit)
        .await
        .map_err(|e| match e.status {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "component_too_large",
                format!("the component is larger than the limit of {limit} bytes"),
            ),
            _ => ApiError::from(e),
        })?
        .to_vec();
    let info = s.plugins.upload(&tenant, &name, bytes).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "name": info.name, "version": info.version, "sha256": info.sha256,
            "world": info.world, "wit": info.wit, "size": info.size,
        })),
    ))
}

async fn list(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "plugins": s.plugins.list(&tenant)? })))
}

async fn get_one(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        serde_json::to_value(s.plugins.get(&tenant, &name)?).unwrap_or_default(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvocationsQuery {
    limit: Option<usize>,
}

/// The plugin's last recorded calls, newest first, in brief (the whole
/// record, reads included, at `/v1/invocations/{id}`).
async fn invocations(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<InvocationsQuery>,
) -> Result<Json<Value>, ApiError> {
    let max = engage_runtime::invocations::KEEP_PER_BINDING as usize * Point::ALL.len();
    let limit = q.limit.unwrap_or(20);
    if limit == 0 || limit > max {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be 1..={max}"),
        ));
    }
    let list: Vec<Value> = s
        .plugins
        .invocations(&tenant, &name)?
        .into_iter()
        .take(limit)
        .map(|r| {
            json!({
                "id": r.id, "at_ms": r.at_ms, "request_id": r.request_id, "point": r.point,
                "plugin": r.plugin, "version": r.version, "call": call_name(&r.input),
                "error": r.error, "fuel_used": r.fuel_used, "memory_bytes": r.memory_bytes,
                "elapsed_us": r.elapsed_us, "replayable": r.replayable(),
            })
        })
        .collect();
    Ok(Json(json!({ "invocations": list })))
}

/// One recorded call, whole: what `engage plugin replay` runs again.
async fn invocation(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = s.plugins.invocation(&tenant, &id)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invocation_not_found",
            format!(
                "no kept invocation `{id}` (each binding keeps its last {})",
                engage_runtime::invocations::KEEP_PER_BINDING
            ),
        )
    })?;
    let replayable = r.replayable();
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["replayable"] = json!(replayable);
    Ok(Json(v))
}

async fn bindings(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "bindings": s.plugins.bindings(&tenant)? })))
}

async fn binding(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(p): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = point(&p)?;
    let found = s
        .plugins
        .bindings(&tenant)?
        .into_iter()
        .find(|b| b.point == p)
        .ok_or(PluginsError::NotBound(p.as_str()))?;
    Ok(Json(binding_view(&s, &tenant, found)))
}

/// A binding as the API shows it: with a canary, the canary's statistics
/// beside the stable version's since it started (this host's counts).
fn binding_view(s: &AppState, tenant: &str, b: Binding) -> Value {
    let point = b.point;
    let mut v = serde_json::to_value(b).unwrap_or_default();
    if let (Some(c), Some(stats)) = (v.get_mut("canary"), s.plugins.canary_stats(tenant, point)) {
        c["stats"] = serde_json::to_value(stats).unwrap_or_default();
    }
    v
}

/// The running canary of `point`, with its statistics beside the stable
/// version's.
async fn canary(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(p): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = point(&p)?;
    let found = s
        .plugins
        .bindings(&tenant)?
        .into_iter()
        .find(|b| b.point == p)
        .ok_or(PluginsError::NotBound(p.as_str()))?;
    let view = binding_view(&s, &tenant, found);
    match view.get("canary") {
        Some(c) => Ok(Json(c.clone())),
        None => Err(PluginsError::NoCanary(p.as_str()).into()),
    }
}

/// Bind another version for a share of players beside the stable one (or
/// change the share of the running canary).
async fn start_canary(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(p): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let p = point(&p)?;
    let req: CanaryRequest = parse(&body)?;
    let b = s.plugins.start_canary(&tenant, p, req).await?;
    Ok(Json(binding_view(&s, &tenant, b)))
}

/// The canary becomes the binding for every player.
async fn promote_canary(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(p): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = point(&p)?;
    let b = s.plugins.promote_canary(&tenant, p).await?;
    Ok(Json(binding_view(&s, &tenant, b)))
}

/// End the canary: every player is back on the stable version.
async fn roll_back_canary(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(p): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = point(&p)?;
    let b = s.plugins.roll_back_canary(&tenant, p).await?;
    Ok(Json(binding_view(&s, &tenant, b)))
}

async fn bind(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(p): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let p = point(&p)?;
    let req: BindRequest = parse(&body)?;
    let b = s.plugins.bind(&tenant, p, req).await?;
    Ok(Json(serde_json::to_value(b).unwrap_or_default()))
}

async fn unbind(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(p): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = point(&p)?;
    let b = s.plugins.unbind(&tenant, p).await?;
    Ok(Json(serde_json::to_value(b).unwrap_or_default()))
}

#[derive(Deserialize)]
struct InvokeQuery {
    #[serde(default)]
    dry_run: bool,
}

/// Run the bound plugin on a hand-written input, as the domain would, and
/// commit its key-value writes (unless `dry_run`). For plugin authors and
/// tests: it shows output, logs, fallback and the attempts a conflict cost.
async fn invoke(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(p): Path<String>,
    Query(q): Query<InvokeQuery>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let p = point(&p)?;
    let input: Input = parse(&body)?;
    if input.point() != p {
        return Err(ApiError::bad_request(
            "wrong_point",
            format!(
                "call `{}` belongs to the `{}` point",
                call_name(&input),
                input.point().as_str()
            ),
        ));
    }
    let (called, attempts) = s
        .plugins
        .call_and_commit(&tenant, &input, now_ms(), &request_id, q.dry_run)
        .await?;
    Ok(Json(json!({
        "plugin": called.plugin,
        "version": called.version,
        "output": called.output,
        "fallback": called.fallback,
        "logs": called.logs,
        "logs_dropped": called.logs_dropped,
        "kv_writes": called.effects.writes.len(),
        "committed": !q.dry_run,
        "attempts": attempts,
        "fuel_used": called.fuel_used,
        "elapsed_us": called.elapsed_us,
    })))
}

fn call_name(input: &Input) -> String {
    serde_json::to_value(input)
        .ok()
        .and_then(|v| v.get("call").and_then(|c| c.as_str()).map(str::to_owned))
        .unwrap_or_default()
}
