//! `/v1/campaigns`: campaigns, their statistics, send-now, and the
//! tenant's quiet hours and frequency cap.

use crate::wire::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::{ApiError, AppState};
use engage_domain::campaigns::{self, CampaignError, Settings, Spec};
use engage_store::Tx;
use engage_store::ids::{now_ms, random_hex};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/campaigns", get(list))
        .route(
            "/v1/campaigns/{id}",
            get(show)
                .put(put)
                .delete(mutation::removal(|tx: &mut Tx, t: &str, id: &String| {
                    campaigns::remove(tx, t, id)
                })),
        )
        .route("/v1/campaigns/{id}/run", post(run))
        .route(
            "/v1/audiences/settings",
            get(show_settings).put(put_settings),
        )
}

impl From<CampaignError> for ApiError {
    fn from(e: CampaignError) -> ApiError {
        let message = e.to_string();
        match e {
            CampaignError::Store(s) => s.into(),
            CampaignError::Invalid(_) => ApiError::bad_request("invalid_campaign", message),
            CampaignError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "campaign_not_found", message)
            }
        }
    }
}

async fn list(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "campaigns": campaigns::list(&s.store.read()?, &tenant)? }),
    ))
}

/// A campaign with its statistics: targeted, skipped by reason, deferred
/// by quiet hours, sent, and the sent messages' outcomes so far.
async fn show(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let snap = s.store.read()?;
    let c = campaigns::get(&snap, &tenant, &id)?.ok_or(CampaignError::NotFound(id.clone()))?;
    let mut v = serde_json::to_value(&c).unwrap_or_default();
    v["stats"] = serde_json::to_value(campaigns::stats(&snap, &tenant, &id)?).unwrap_or_default();
    Ok(Json(v))
}

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
async fn run(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let (t, now, run) = (tenant.clone(), now_ms(), random_hex(8));
    let r = mutation::write(&s, &tenant, &m, StatusCode::ACCEPTED, now, move |tx| {
        campaigns::run_now(tx, &t, &id, &run, now)?;
        Ok::<_, CampaignError>(json!({ "campaign": id, "run": run }))
    })
    .await;
    s.campaigns.wake();
    r
}

async fn show_settings(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<Settings>, ApiError> {
    Ok(Json(campaigns::settings(&s.store.read()?, &tenant)?))
}

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
