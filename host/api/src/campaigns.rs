//! `/v1/campaigns`: campaigns, their statistics, send-now, and the
//! tenant's quiet hours and frequency cap.

use crate::wire::Path;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::{ApiError, AppState};
use engage_domain::campaigns::{self, CampaignError, Settings, Spec};
use engage_store::Tx;
use engage_store::ids::{now_ms, random_hex};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show, put, remove))
        .routes(routes!(run))
        .routes(routes!(show_settings, put_settings))
}

impl From<CampaignError> for ApiError {
    fn from(e: CampaignError) -> ApiError {
        let message = e.to_string();
        match e {
            CampaignError::Store(s) => s.into(),
            CampaignError::Invalid(_) => ApiError::bad_request("invalid_campaign", message),
            CampaignError::NoSegment(_) => ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "segment_not_found",
                message,
            ),
            CampaignError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "campaign_not_found", message)
            }
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/campaigns",
    operation_id = "listCampaigns",
    tag = "campaigns",
    summary = "Campaigns",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "Campaigns", body = CampaignList),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn list(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<CampaignList>, ApiError> {
    Ok(Json(CampaignList {
        campaigns: campaigns::list(&s.store.read()?, &tenant)?,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
struct CampaignList {
    campaigns: Vec<campaigns::Campaign>,
}

/// A send-now run, queued.
#[derive(Serialize, utoipa::ToSchema)]
struct RunQueued {
    campaign: String,
    /// The run's id: its messages carry it in their reference.
    run: String,
}

/// A campaign with its statistics: targeted, skipped by reason, deferred
/// by quiet hours, sent, and the sent messages' outcomes so far.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}",
    operation_id = "getCampaign",
    tag = "campaigns",
    summary = "A campaign with its statistics",
    security(("tenantToken" = [])),
    params(("id" = engage_store::ids::ClientId, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "Campaign", body = CampaignView),
        (status = 404, description = "error", body = crate::openapi::ErrorBody),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn show(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CampaignView>, ApiError> {
    let snap = s.store.read()?;
    let campaign =
        campaigns::get(&snap, &tenant, &id)?.ok_or(CampaignError::NotFound(id.clone()))?;
    Ok(Json(CampaignView {
        campaign,
        stats: campaigns::stats(&snap, &tenant, &id)?,
    }))
}

/// A campaign with its funnel.
#[derive(Serialize, utoipa::ToSchema)]
struct CampaignView {
    #[serde(flatten)]
    campaign: campaigns::Campaign,
    stats: campaigns::Stats,
}

#[utoipa::path(
    put,
    path = "/v1/campaigns/{id}",
    operation_id = "putCampaign",
    tag = "campaigns",
    summary = "Create or replace a campaign",
    security(("tenantToken" = [])),
    params(("id" = engage_store::ids::ClientId, Path, description = "Campaign id"), crate::openapi::IdempotencyKey),
    request_body(content = Spec, content_type = "application/json"),
    responses(
        (status = 200, description = "Campaign", body = campaigns::Campaign),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn put(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let spec: Spec = m.json()?;
    let (t, now) = (tenant.clone(), now_ms());
    mutation::write(&s, &tenant, &m, StatusCode::OK, now, move |tx| {
        campaigns::put(tx, &t, &id, spec.clone(), now)
    })
    .await
}

/// Send now to the whole audience (once per call).
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/run",
    operation_id = "runCampaign",
    tag = "campaigns",
    summary = "Send now to the whole audience (once per call)",
    security(("tenantToken" = [])),
    params(("id" = engage_store::ids::ClientId, Path, description = "Campaign id"), crate::openapi::IdempotencyKey),
    responses(
        (status = 202, description = "Queued", body = RunQueued),
        (status = 404, description = "error", body = crate::openapi::ErrorBody),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn run(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let (t, now, run) = (tenant.clone(), now_ms(), random_hex(8));
    let r = mutation::write(&s, &tenant, &m, StatusCode::ACCEPTED, now, move |tx| {
        campaigns::run_now(tx, &t, &id, &run, now)?;
        Ok::<_, CampaignError>(RunQueued {
            campaign: id.clone(),
            run: run.clone(),
        })
    })
    .await;
    s.campaigns.wake();
    r
}

#[utoipa::path(
    get,
    path = "/v1/audiences/settings",
    operation_id = "getMarketingSettings",
    tag = "campaigns",
    summary = "Quiet hours and frequency cap",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "Settings", body = Settings),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn show_settings(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<Settings>, ApiError> {
    Ok(Json(campaigns::settings(&s.store.read()?, &tenant)?))
}

#[utoipa::path(
    put,
    path = "/v1/audiences/settings",
    operation_id = "putMarketingSettings",
    tag = "campaigns",
    summary = "Set quiet hours and frequency cap",
    security(("tenantToken" = [])),
    params(crate::openapi::IdempotencyKey),
    request_body(content = Settings, content_type = "application/json"),
    responses(
        (status = 200, description = "Settings", body = Settings),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn put_settings(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let settings: Settings = m.json()?;
    settings.validate()?;
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::OK, now_ms(), move |tx| {
        campaigns::set_settings(tx, &t, &settings)?;
        Ok::<_, CampaignError>(settings.clone())
    })
    .await
}

#[utoipa::path(
    delete,
    path = "/v1/campaigns/{id}",
    operation_id = "deleteCampaign",
    tag = "campaigns",
    summary = "Delete a campaign",
    security(("tenantToken" = [])),
    params(("id" = engage_store::ids::ClientId, Path, description = "The campaign's id"), crate::openapi::IdempotencyKey),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "error", body = crate::openapi::ErrorBody),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn remove(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    mutation::removal(&s, &tenant, &m, move |tx: &mut Tx, t: &str| {
        campaigns::remove(tx, t, &id)
    })
    .await
}
