//! `/v1/actions`: a player did something; the rules plugin decides what
//! it earns.

use crate::wire::{Path, Query};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

use super::auth::TenantAuth;
use super::mutation::{Mutation, respond};
use super::{ApiError, AppState, RequestId};
use engage_domain::actions::{self, ActionRecord, ActionRequest};
use engage_store::ids::now_ms;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/actions", post(perform))
        .route("/v1/actions/settings", get(settings).put(set_settings))
        .route("/v1/actions/{id}", get(show))
}

async fn settings(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<actions::Limits>, ApiError> {
    Ok(Json(actions::limits(&s.store.read()?, &tenant)?))
}

async fn set_settings(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    m: Mutation,
) -> Result<Json<actions::Limits>, ApiError> {
    let l: actions::Limits = m.json()?;
    Ok(Json(actions::set_limits(&s.store, &tenant, l).await?))
}

#[derive(Deserialize)]
struct DryRun {
    #[serde(default)]
    dry_run: bool,
}

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
