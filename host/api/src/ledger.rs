//! `/v1/ledger` and `/v1/currencies`: manual credits and debits, entries,
//! reversals.

use crate::wire::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::{ApiError, AppState};
use engage_ledger::{self as ledger, LedgerError, Posting};
use engage_store::ids::now_ms;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/ledger/credit", post(credit))
        .route("/v1/ledger/debit", post(debit))
        .route("/v1/ledger/entries/{id}", get(entry))
        .route("/v1/ledger/entries/{id}/reverse", post(reverse))
        .route("/v1/currencies", get(currencies))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Move {
    player: String,
    currency: Option<String>,
    amount: i64,
    reason: Option<String>,
    reference: Option<String>,
}

async fn post_move(
    tenant: String,
    s: AppState,
    m: Mutation,
    sign: i64,
) -> Result<Response, ApiError> {
    let req: Move = m.json()?;
    if req.amount <= 0 {
        return Err(LedgerError::InvalidAmount.into());
    }
    let t = tenant.clone();
    let now = now_ms();
    mutation::write(&s, &tenant, &m, StatusCode::CREATED, now, move |tx| {
        let default_reason = if sign > 0 { "credit" } else { "debit" };
        let posting = Posting {
            player: &req.player,
            currency: req.currency.as_deref().unwrap_or(ledger::DEFAULT_CURRENCY),
            amount: sign * req.amount,
            reason: req.reason.as_deref().unwrap_or(default_reason),
            reference: req.reference.as_deref(),
        };
        engage_domain::players::post_points(tx, &t, &posting, now)
    })
    .await
}

async fn credit(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    m: Mutation,
) -> Result<Response, ApiError> {
    post_move(tenant, s, m, 1).await
}

async fn debit(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    m: Mutation,
) -> Result<Response, ApiError> {
    post_move(tenant, s, m, -1).await
}

async fn entry(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ledger::Entry>, ApiError> {
    Ok(Json(ledger::entry(&s.store.read()?, &tenant, &id)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reverse {
    reason: Option<String>,
}

async fn reverse(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let req: Reverse = m.json()?;
    let t = tenant.clone();
    let now = now_ms();
    mutation::write(&s, &tenant, &m, StatusCode::CREATED, now, move |tx| {
        let reason = req
            .reason
            .clone()
            .unwrap_or_else(|| format!("reversal of {id}"));
        ledger::reverse(tx, &t, &id, &reason, now)
    })
    .await
}

async fn currencies(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let list = ledger::currencies(&s.store.read()?, &tenant)?;
    Ok(Json(json!({ "currencies": list })))
}
