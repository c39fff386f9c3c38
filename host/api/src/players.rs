//! `/v1/players`: profiles, balances, ledger history, redemptions.

use crate::wire::{Path, Query};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::{ApiError, AppState};
use engage_domain::players::{self, PlayerError, Profile};
use engage_domain::{actions, goods};
use engage_ledger as ledger;
use engage_store::ids::now_ms;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/players", get(list).post(register))
        .route("/v1/players/{id}", get(show).patch(update).delete(remove))
        .route("/v1/players/{id}/balances", get(balances))
        .route("/v1/players/{id}/ledger", get(history))
        .route("/v1/players/{id}/redemptions", get(redemptions))
}

async fn register(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let mut body: serde_json::Map<String, Value> = m.json()?;
    let id = match body.remove("id") {
        Some(Value::String(id)) => id,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "`id` (the client's player id, a string) is required",
            ));
        }
    };
    let profile: Profile = serde_json::from_value(Value::Object(body))
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::CREATED, now_ms(), move |tx| {
        players::register(tx, &t, &id, profile.clone(), now_ms())
    })
    .await
}

async fn update(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let profile: Profile = m.json()?;
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::OK, now_ms(), move |tx| {
        players::update(tx, &t, &id, profile.clone(), now_ms())
    })
    .await
}

async fn remove(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::OK, now_ms(), move |tx| {
        players::delete(tx, &t, &id).map(|()| json!({ "deleted": id }))
    })
    .await
}

#[derive(Deserialize)]
struct Page {
    after: Option<String>,
    before: Option<String>,
    limit: Option<usize>,
    currency: Option<String>,
}

impl Page {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(50).clamp(1, 500)
    }
}

async fn list(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let limit = page.limit();
    let list = players::list(&s.store.read()?, &tenant, page.after.as_deref(), limit)?;
    let next = (list.len() == limit)
        .then(|| list.last().map(|p| p.id.clone()))
        .flatten();
    Ok(Json(json!({ "players": list, "next": next })))
}

fn balances_json(list: Vec<(String, i64)>) -> Value {
    let mut map = serde_json::Map::new();
    map.insert(ledger::DEFAULT_CURRENCY.into(), json!(0));
    for (c, v) in list {
        map.insert(c, json!(v));
    }
    Value::Object(map)
}

async fn show(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let snap = s.store.read()?;
    let p = players::get(&snap, &tenant, &id)?;
    let mut v = serde_json::to_value(&p).unwrap_or_default();
    v["balances"] = balances_json(ledger::balances(&snap, &tenant, &id)?);
    v["badges"] = json!(actions::badges(&snap, &tenant, &id)?);
    v["action_counts"] = json!(actions::counts(&snap, &tenant, &id)?);
    Ok(Json(v))
}

async fn balances(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let snap = s.store.read()?;
    if !players::exists(&snap, &tenant, &id)? {
        return Err(PlayerError::NotFound(id).into());
    }
    let b = balances_json(ledger::balances(&snap, &tenant, &id)?);
    Ok(Json(json!({ "player": id, "balances": b })))
}

async fn history(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let snap = s.store.read()?;
    let limit = page.limit();
    let entries = ledger::history(
        &snap,
        &tenant,
        &id,
        page.currency.as_deref(),
        page.before.as_deref(),
        limit,
    )?;
    let next = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.id.clone()))
        .flatten();
    Ok(Json(json!({ "entries": entries, "next": next })))
}

async fn redemptions(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let list = goods::redemptions_of(&s.store.read()?, &tenant, &id, page.limit())?;
    Ok(Json(json!({ "redemptions": list })))
}
