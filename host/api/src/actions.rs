//! `/v1/actions`: a player did something; the rules plugin decides what
//! it earns.

use crate::wire::{Path, Query};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::TenantAuth;
use super::mutation::{Mutation, respond};
use super::{ApiError, AppState, RequestId};
use engage_domain::actions::{self, ActionRecord, ActionRequest};
use engage_store::ids::now_ms;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(perform))
        .routes(routes!(settings, set_settings))
        .routes(routes!(show))
}

#[utoipa::path(
    get,
    path = "/v1/actions/settings",
    operation_id = "getActionLimits",
    tag = "actions",
    summary = "What one action may grant",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "The tenant's action limits", body = actions::Limits),
        (status = 429, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn settings(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<actions::Limits>, ApiError> {
    Ok(Json(actions::limits(&s.store.read()?, &tenant)?))
}

#[utoipa::path(
    put,
    path = "/v1/actions/settings",
    operation_id = "putActionLimits",
    tag = "actions",
    summary = "Set what one action may grant",
    description = "A rules plugin's answer that carries more grants, or grants more of one currency in total, is refused (422 grant_limit_exceeded) and nothing of the action is written.",
    security(("tenantToken" = [])),
    params(crate::openapi::IdempotencyKey),
    request_body(content = actions::Limits, content_type = "application/json"),
    responses(
        (status = 200, description = "The tenant's action limits", body = actions::Limits),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
        (status = 429, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn set_settings(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    m: Mutation,
) -> Result<Json<actions::Limits>, ApiError> {
    let l: actions::Limits = m.json()?;
    Ok(Json(actions::set_limits(&s.store, &tenant, l).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DryRun {
    #[serde(default)]
    dry_run: bool,
}

#[utoipa::path(
    post,
    path = "/v1/actions",
    operation_id = "performAction",
    tag = "actions",
    summary = "Report an action: the rules plugin decides its effects, applied in one transaction",
    security(("tenantToken" = [])),
    params(DryRun, crate::openapi::IdempotencyKey),
    request_body(content = ActionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "What happened", body = actions::Performed),
        (status = 400, description = "invalid_request", body = crate::openapi::ErrorBody),
        (status = 404, description = "player_not_found, unknown_action (no rule knows the action; nothing recorded)", body = crate::openapi::ErrorBody),
        (status = 422, description = "grant_limit_exceeded: the rules granted more than the tenant allows in one action", body = crate::openapi::ErrorBody),
        (status = 502, description = "plugin_failed, plugin_rejected (details: error kind and logs)", body = crate::openapi::ErrorBody),
        (status = 503, description = "plugin_busy: the tenant's plugin calls held their whole share of the pool until the deadline", body = crate::openapi::ErrorBody),
        (status = 507, description = "quota_exceeded: the plugin's key-value writes would exceed the tenant's quota", body = crate::openapi::ErrorBody),
    ),
)]
async fn perform(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Extension(RequestId(rid)): Extension<RequestId>,
    Query(q): Query<DryRun>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let req: ActionRequest = m.json()?;
    let done = actions::perform(
        &s.plugins,
        &s.store,
        &tenant,
        &req,
        now_ms(),
        &rid,
        actions::Mode {
            dry_run: q.dry_run,
            idem: m.idem.clone().filter(|_| !q.dry_run),
        },
    )
    .await?;
    Ok(respond(done, StatusCode::OK))
}

#[utoipa::path(
    get,
    path = "/v1/actions/{id}",
    operation_id = "getAction",
    tag = "actions",
    summary = "A recorded action",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "Action id")),
    responses(
        (status = 200, description = "The action", body = ActionRecord),
        (status = 404, description = "action_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn show(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ActionRecord>, ApiError> {
    actions::get(&s.store.read()?, &tenant, &id)?
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "action_not_found",
                format!("action `{id}` does not exist"),
            )
        })
}
