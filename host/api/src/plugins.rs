//! `/v1/plugins` and `/v1/bindings`: upload, inspect, bind, roll back, try.

use crate::wire::{Path, Query};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::router::UtoipaMethodRouterExt;
use utoipa_axum::routes;

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::tenants::parse;
use super::{ApiError, AppState, RequestId};
use engage_runtime::invocations::Invocation;
use engage_runtime::{
    BindRequest, Binding, CanaryRequest, Input, PluginView, PluginsError, Point, VersionInfo,
};
use engage_runtime::{Canary, CanaryStats};
use engage_store::ids::now_ms;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one, upload).layer(DefaultBodyLimit::disable()))
        .routes(routes!(remove_version))
        .routes(routes!(invocations))
        .routes(routes!(invocation))
        .routes(routes!(bindings))
        .routes(routes!(binding, bind, unbind))
        .routes(routes!(invoke))
        .routes(routes!(try_config))
        .routes(routes!(canary, start_canary, roll_back_canary))
        .routes(routes!(promote_canary))
}

fn point(s: &str) -> Result<Point, ApiError> {
    Point::parse(s).ok_or_else(|| PluginsError::UnknownPoint(s.to_owned()).into())
}

/// Delete a version the tenant no longer needs (not a bound one): it stops
/// counting against the tenant's plugin storage.
#[utoipa::path(
    delete,
    path = "/v1/plugins/{name}/versions/{version}",
    operation_id = "deletePluginVersion",
    tag = "plugins",
    summary = "Delete a version that no binding uses",
    description = "It stops counting against the tenant's plugin storage; the component's file goes once no stored version of any tenant is that component. Version numbers are not reused. Honours Idempotency-Key.",
    security(("tenantToken" = [])),
    params(("name" = String, Path), ("version" = u32, Path), crate::openapi::IdempotencyKey),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "reserved_name (a first-party plugin)", body = crate::openapi::ErrorBody),
        (status = 404, description = "version_not_found", body = crate::openapi::ErrorBody),
        (status = 409, description = "version_bound", body = crate::openapi::ErrorBody),
    ),
)]
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

#[utoipa::path(
    put,
    path = "/v1/plugins/{name}",
    operation_id = "uploadPlugin",
    tag = "plugins",
    summary = "Upload a new version of a plugin (a WebAssembly component)",
    description = "The component is compiled and checked before anything is stored: it must implement exactly one of the worlds rules, gift-hooks, templating, routing of engage:plugin@0.1.0 and import nothing but engage:plugin and (denied) WASI. Every version is kept until it is deleted; a tenant keeps at most max_plugin_versions_per_tenant uploaded versions and max_plugin_bytes_per_tenant bytes of them (507 quota_exceeded).",
    security(("tenantToken" = [])),
    params(("name" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component's bytes (`application/octet-stream` is taken too)"),
    responses(
        (status = 201, description = "Stored", body = VersionInfo),
        (status = 400, description = "empty_upload, invalid_name or reserved_name", body = crate::openapi::ErrorBody),
        (status = 413, description = "component_too_large", body = crate::openapi::ErrorBody),
        (status = 415, description = "unsupported_media_type", body = crate::openapi::ErrorBody),
        (status = 422, description = "invalid_component: not a component, a core module, no known world, unknown imports", body = crate::openapi::ErrorBody),
    ),
)]
async fn upload(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<VersionInfo>), ApiError> {
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
    Ok((StatusCode::CREATED, Json(info)))
}

#[utoipa::path(
    get,
    path = "/v1/plugins",
    operation_id = "listPlugins",
    tag = "plugins",
    summary = "The tenant's plugins, with versions and statistics",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "Plugins", body = PluginList),
    ),
)]
async fn list(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<PluginList>, ApiError> {
    Ok(Json(PluginList {
        plugins: s.plugins.list(&tenant)?,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
struct PluginList {
    plugins: Vec<PluginView>,
}

#[utoipa::path(
    get,
    path = "/v1/plugins/{name}",
    operation_id = "getPlugin",
    tag = "plugins",
    summary = "One plugin, with versions and statistics",
    security(("tenantToken" = [])),
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "The plugin", body = PluginView),
        (status = 404, description = "plugin_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn get_one(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PluginView>, ApiError> {
    Ok(Json(s.plugins.get(&tenant, &name)?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct InvocationsQuery {
    /// At most this many (20 by default; 1 to 128).
    #[param(minimum = 1, maximum = 128)]
    limit: Option<usize>,
}

/// The plugin's last recorded calls, newest first, in brief (the whole
/// record, reads included, at `/v1/invocations/{id}`).
#[utoipa::path(
    get,
    path = "/v1/plugins/{name}/invocations",
    operation_id = "listInvocations",
    tag = "plugins",
    summary = "The plugin's last recorded calls, newest first, in brief",
    description = "Each binding keeps a sample of its last calls (at most one a second, and one failure beside it); the whole record is at /v1/invocations/{id}.",
    security(("tenantToken" = [])),
    params(("name" = String, Path), InvocationsQuery),
    responses(
        (status = 200, description = "Recorded calls", body = InvocationList),
        (status = 400, description = "invalid_limit", body = crate::openapi::ErrorBody),
        (status = 404, description = "plugin_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn invocations(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<InvocationsQuery>,
) -> Result<Json<InvocationList>, ApiError> {
    let max = engage_runtime::invocations::KEEP_PER_BINDING as usize * Point::ALL.len();
    let limit = q.limit.unwrap_or(20);
    if limit == 0 || limit > max {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be 1..={max}"),
        ));
    }
    let invocations = s
        .plugins
        .invocations(&tenant, &name)?
        .into_iter()
        .take(limit)
        .map(|r| InvocationBrief {
            call: call_name(&r.input),
            replayable: r.replayable(),
            id: r.id,
            at_ms: r.at_ms,
            request_id: r.request_id,
            point: r.point,
            plugin: r.plugin,
            version: r.version,
            error: r.error,
            fuel_used: r.fuel_used,
            memory_bytes: r.memory_bytes,
            elapsed_us: r.elapsed_us,
        })
        .collect();
    Ok(Json(InvocationList { invocations }))
}

#[derive(Serialize, utoipa::ToSchema)]
struct InvocationList {
    invocations: Vec<InvocationBrief>,
}

/// A recorded call in brief.
#[derive(Serialize, utoipa::ToSchema)]
struct InvocationBrief {
    id: String,
    at_ms: i64,
    request_id: String,
    point: Point,
    plugin: String,
    version: u32,
    /// The call's kind (`evaluate`, `pre_request`, `render`, `route`, …).
    call: String,
    /// How the call failed, if it did.
    error: Option<engage_runtime::CallError>,
    fuel_used: u64,
    memory_bytes: usize,
    elapsed_us: u64,
    /// Whole enough to run again with `engage plugin replay`.
    replayable: bool,
}

/// A recorded call, whole.
#[derive(Serialize, utoipa::ToSchema)]
struct InvocationRecord {
    #[serde(flatten)]
    record: Invocation,
    /// Whole enough to run again with `engage plugin replay`.
    replayable: bool,
}

/// One recorded call, whole: what `engage plugin replay` runs again.
#[utoipa::path(
    get,
    path = "/v1/invocations/{id}",
    operation_id = "getInvocation",
    tag = "plugins",
    summary = "One recorded call, whole: what `engage plugin replay` runs again",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "`{point}-{n}`")),
    responses(
        (status = 200, description = "The record", body = InvocationRecord),
        (status = 404, description = "invocation_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn invocation(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<InvocationRecord>, ApiError> {
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
    Ok(Json(InvocationRecord {
        replayable: r.replayable(),
        record: r,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/bindings",
    operation_id = "listBindings",
    tag = "plugins",
    summary = "The tenant's bindings",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "Bindings", body = BindingList),
    ),
)]
async fn bindings(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<BindingList>, ApiError> {
    Ok(Json(BindingList {
        bindings: s.plugins.bindings(&tenant)?,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
struct BindingList {
    bindings: Vec<Binding>,
}

#[utoipa::path(
    get,
    path = "/v1/bindings/{point}",
    operation_id = "getBinding",
    tag = "plugins",
    summary = "What is bound to an extension point",
    security(("tenantToken" = [])),
    params(("point" = Point, Path)),
    responses(
        (status = 200, description = "The binding", body = BindingView),
        (status = 400, description = "unknown_point", body = crate::openapi::ErrorBody),
        (status = 404, description = "not_bound", body = crate::openapi::ErrorBody),
    ),
)]
async fn binding(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(p): Path<String>,
) -> Result<Json<BindingView>, ApiError> {
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
#[derive(Serialize, utoipa::ToSchema)]
struct BindingView {
    #[serde(flatten)]
    binding: Binding,
    #[serde(skip_serializing_if = "Option::is_none")]
    canary: Option<CanaryView>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct CanaryView {
    #[serde(flatten)]
    canary: Canary,
    /// Since the canary started, on this host.
    stats: Option<CanaryStats>,
}

fn binding_view(s: &AppState, tenant: &str, mut binding: Binding) -> BindingView {
    let canary = binding.canary.take().map(|canary| CanaryView {
        canary,
        stats: s.plugins.canary_stats(tenant, binding.point),
    });
    BindingView { binding, canary }
}

/// The running canary of `point`, with its statistics beside the stable
/// version's.
#[utoipa::path(
    get,
    path = "/v1/bindings/{point}/canary",
    operation_id = "getCanary",
    tag = "plugins",
    summary = "The running canary with its statistics beside the stable version's",
    security(("tenantToken" = [])),
    params(("point" = Point, Path)),
    responses(
        (status = 200, description = "The canary", body = CanaryView),
        (status = 400, description = "unknown_point", body = crate::openapi::ErrorBody),
        (status = 404, description = "not_bound", body = crate::openapi::ErrorBody),
        (status = 409, description = "no_canary", body = crate::openapi::ErrorBody),
    ),
)]
async fn canary(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(p): Path<String>,
) -> Result<Json<CanaryView>, ApiError> {
    let p = point(&p)?;
    let found = s
        .plugins
        .bindings(&tenant)?
        .into_iter()
        .find(|b| b.point == p)
        .ok_or(PluginsError::NotBound(p.as_str()))?;
    let view = binding_view(&s, &tenant, found);
    match view.canary {
        Some(c) => Ok(Json(c)),
        None => Err(PluginsError::NoCanary(p.as_str()).into()),
    }
}

/// Bind another version for a share of players beside the stable one (or
/// change the share of the running canary).
#[utoipa::path(
    put,
    path = "/v1/bindings/{point}/canary",
    operation_id = "startCanary",
    tag = "plugins",
    summary = "Bind another version for a share of players beside the stable one, or change the running canary's share",
    description = "The same plugin, version and config again changes only the share (the statistics go on); another version or config starts a new canary. A full bind (PUT /v1/bindings/{point}) ends any canary.",
    security(("tenantToken" = [])),
    params(("point" = Point, Path)),
    request_body(content = CanaryRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The binding with its canary", body = BindingView),
        (status = 400, description = "unknown_point, invalid_canary (the stable version itself), invalid_config, invalid_json", body = crate::openapi::ErrorBody),
        (status = 422, description = "wrong_world (the plugin implements another point's world), config_rejected, config_check_failed", body = crate::openapi::ErrorBody),
        (status = 404, description = "not_bound, plugin_not_found, version_not_found", body = crate::openapi::ErrorBody),
        (status = 409, description = "binding_changed: the binding changed meanwhile; read it and retry", body = crate::openapi::ErrorBody),
    ),
)]
async fn start_canary(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(p): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<BindingView>, ApiError> {
    let p = point(&p)?;
    let req: CanaryRequest = parse(&body)?;
    let b = s.plugins.start_canary(&tenant, p, req).await?;
    Ok(Json(binding_view(&s, &tenant, b)))
}

/// The canary becomes the binding for every player.
#[utoipa::path(
    post,
    path = "/v1/bindings/{point}/canary/promote",
    operation_id = "promoteCanary",
    tag = "plugins",
    summary = "Promote the canary: its version and config become the binding for every player",
    security(("tenantToken" = [])),
    params(("point" = Point, Path)),
    responses(
        (status = 200, description = "The binding, now the canary's version", body = BindingView),
        (status = 400, description = "unknown_point", body = crate::openapi::ErrorBody),
        (status = 404, description = "not_bound", body = crate::openapi::ErrorBody),
        (status = 409, description = "no_canary, binding_changed", body = crate::openapi::ErrorBody),
    ),
)]
async fn promote_canary(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(p): Path<String>,
) -> Result<Json<BindingView>, ApiError> {
    let p = point(&p)?;
    let b = s.plugins.promote_canary(&tenant, p).await?;
    Ok(Json(binding_view(&s, &tenant, b)))
}

/// End the canary: every player is back on the stable version.
#[utoipa::path(
    delete,
    path = "/v1/bindings/{point}/canary",
    operation_id = "rollBackCanary",
    tag = "plugins",
    summary = "Roll the canary back: every player is on the stable version again",
    security(("tenantToken" = [])),
    params(("point" = Point, Path)),
    responses(
        (status = 200, description = "The binding without a canary", body = BindingView),
        (status = 400, description = "unknown_point", body = crate::openapi::ErrorBody),
        (status = 404, description = "not_bound", body = crate::openapi::ErrorBody),
        (status = 409, description = "no_canary, binding_changed", body = crate::openapi::ErrorBody),
    ),
)]
async fn roll_back_canary(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(p): Path<String>,
) -> Result<Json<BindingView>, ApiError> {
    let p = point(&p)?;
    let b = s.plugins.roll_back_canary(&tenant, p).await?;
    Ok(Json(binding_view(&s, &tenant, b)))
}

#[utoipa::path(
    put,
    path = "/v1/bindings/{point}",
    operation_id = "bind",
    tag = "plugins",
    summary = "Bind a plugin version (omit version: the latest); binding an older version is a rollback",
    description = "Takes effect for the next call; calls in flight finish on the previous binding.",
    security(("tenantToken" = [])),
    params(("point" = Point, Path)),
    request_body(content = BindRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Bound", body = Binding),
        (status = 400, description = "unknown_point, invalid_config, invalid_limits, invalid_json", body = crate::openapi::ErrorBody),
        (status = 422, description = "wrong_world (the plugin implements another point's world); config_rejected (the plugin's config check refused the config: its code in details.plugin_code, its message in message; nothing was bound); config_check_failed (the check trapped, timed out or ran out of fuel; details.error says which)", body = crate::openapi::ErrorBody),
        (status = 404, description = "plugin_not_found or version_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn bind(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(p): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Binding>, ApiError> {
    let p = point(&p)?;
    let req: BindRequest = parse(&body)?;
    Ok(Json(s.plugins.bind(&tenant, p, req).await?))
}

#[utoipa::path(
    delete,
    path = "/v1/bindings/{point}",
    operation_id = "unbind",
    tag = "plugins",
    summary = "Return the point to the first-party plugin with its default config",
    security(("tenantToken" = [])),
    params(("point" = Point, Path)),
    responses(
        (status = 200, description = "Bound to the first-party plugin", body = Binding),
        (status = 400, description = "unknown_point", body = crate::openapi::ErrorBody),
    ),
)]
async fn unbind(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(p): Path<String>,
) -> Result<Json<Binding>, ApiError> {
    let p = point(&p)?;
    Ok(Json(s.plugins.unbind(&tenant, p).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct InvokeQuery {
    #[serde(default)]
    dry_run: bool,
}

/// Run the bound plugin on a hand-written input, as the domain would, and
/// commit its key-value writes (unless `dry_run`). For plugin authors and
/// tests: it shows output, logs, fallback and the attempts a conflict cost.
#[utoipa::path(
    post,
    path = "/v1/bindings/{point}/invoke",
    operation_id = "invoke",
    tag = "plugins",
    summary = "Run the bound plugin on a hand-written input and commit its key-value writes",
    security(("tenantToken" = [])),
    params(("point" = Point, Path), InvokeQuery),
    request_body(content = Input, content_type = "application/json"),
    responses(
        (status = 200, description = "The plugin's answer", body = InvokeResult),
        (status = 400, description = "unknown_point, invalid_json", body = crate::openapi::ErrorBody),
        (status = 422, description = "wrong_point: the call belongs to another point", body = crate::openapi::ErrorBody),
        (status = 502, description = "plugin_failed (details.error.kind: timeout, out_of_fuel, memory_limit, panic, trap, invalid_output, output_too_large) or plugin_rejected (the plugin reported an error)", body = crate::openapi::ErrorBody),
        (status = 503, description = "contention", body = crate::openapi::ErrorBody),
    ),
)]
async fn invoke(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(p): Path<String>,
    Query(q): Query<InvokeQuery>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    body: axum::body::Bytes,
) -> Result<Json<InvokeResult>, ApiError> {
    let p = point(&p)?;
    let input: Input = parse(&body)?;
    check_input(p, &input)?;
    let (called, attempts) = s
        .plugins
        .call_and_commit(&tenant, &input, now_ms(), &request_id, q.dry_run)
        .await?;
    Ok(Json(InvokeResult::new(called, !q.dry_run, attempts)))
}

/// What a plugin answered a hand-written input.
#[derive(Serialize, utoipa::ToSchema)]
struct InvokeResult {
    plugin: String,
    version: u32,
    #[schema(value_type = Object)]
    output: engage_runtime::Output,
    /// Set when the bound plugin failed and the first-party default answered.
    fallback: Option<engage_runtime::CallError>,
    logs: Vec<engage_runtime::LogLine>,
    logs_dropped: u32,
    /// Key-value writes the call made.
    kv_writes: usize,
    /// False on a dry run: the writes were not kept.
    committed: bool,
    /// How many times the call ran (a conflicting write runs it again).
    attempts: u32,
    fuel_used: u64,
    elapsed_us: u64,
}

impl InvokeResult {
    fn new(called: engage_runtime::Called, committed: bool, attempts: u32) -> InvokeResult {
        InvokeResult {
            kv_writes: called.effects.writes.len(),
            plugin: called.plugin,
            version: called.version,
            output: called.output,
            fallback: called.fallback,
            logs: called.logs,
            logs_dropped: called.logs_dropped,
            committed,
            attempts,
            fuel_used: called.fuel_used,
            elapsed_us: called.elapsed_us,
        }
    }
}

/// Refuse a hand-written input that no domain call could make at `p`.
fn check_input(p: Point, input: &Input) -> Result<(), ApiError> {
    if let Input::Route { message } = input
        && !engage_runtime::io::CHANNELS.contains(&message.channel.as_str())
    {
        return Err(ApiError::bad_request(
            "invalid_json",
            format!("channel `{}` is not sms or viber", message.channel),
        ));
    }
    if input.point() != p {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "wrong_point",
            format!(
                "call `{}` belongs to the `{}` point",
                call_name(input),
                input.point().as_str()
            ),
        ));
    }
    Ok(())
}

/// A config to try on a hand-written input.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TryRequest {
    /// The config to try instead of the bound one (a JSON object).
    #[schema(value_type = Object)]
    config: serde_json::Value,
    input: Input,
}

/// Run the bound plugin version with another config, before binding it.
#[utoipa::path(
    post,
    path = "/v1/bindings/{point}/try",
    operation_id = "tryConfig",
    tag = "plugins",
    summary = "Run the bound plugin version with a config that is not bound yet",
    description = "The plugin first checks the config as binding it would (422 config_rejected when it refuses), then answers the input on the current data. Nothing is written, recorded or counted and the binding is unchanged: what to run before saving a new config with PUT /v1/bindings/{point}.",
    security(("tenantToken" = [])),
    params(("point" = Point, Path)),
    request_body(content = TryRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The plugin's answer (committed is false)", body = InvokeResult),
        (status = 400, description = "unknown_point, invalid_config, invalid_json", body = crate::openapi::ErrorBody),
        (status = 422, description = "wrong_point; config_rejected; config_check_failed", body = crate::openapi::ErrorBody),
        (status = 502, description = "plugin_failed or plugin_rejected", body = crate::openapi::ErrorBody),
    ),
)]
async fn try_config(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(p): Path<String>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    body: axum::body::Bytes,
) -> Result<Json<InvokeResult>, ApiError> {
    let p = point(&p)?;
    let req: TryRequest = parse(&body)?;
    check_input(p, &req.input)?;
    let snapshot = std::sync::Arc::new(s.store.read()?);
    let called = s.plugins.try_config(
        &tenant,
        &req.input,
        req.config,
        snapshot,
        now_ms(),
        &request_id,
    )?;
    Ok(Json(InvokeResult::new(called, false, 1)))
}

fn call_name(input: &Input) -> String {
    serde_json::to_value(input)
        .ok()
        .and_then(|v| v.get("call").and_then(|c| c.as_str()).map(str::to_owned))
        .unwrap_or_default()
}
