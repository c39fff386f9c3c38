//! `/v1/ledger` and `/v1/currencies`: manual credits and debits, entries,
//! reversals.

use crate::wire::Path;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::{ApiError, AppState};
use engage_ledger::{self as ledger, LedgerError, Posting};
use engage_store::ids::now_ms;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(credit))
        .routes(routes!(debit))
        .routes(routes!(entry))
        .routes(routes!(reverse))
        .routes(routes!(currencies))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Move {
    #[schema(value_type = engage_store::ids::ClientId)]
    player: String,
    /// `points` when left out.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    currency: Option<String>,
    #[schema(minimum = 1, maximum = 1000000000000i64)]
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

#[utoipa::path(
    post,
    path = "/v1/ledger/credit",
    operation_id = "ledgerCredit",
    tag = "ledger",
    summary = "Credit a player's account by hand",
    security(("tenantToken" = [])),
    params(crate::openapi::IdempotencyKey),
    request_body(content = Move, content_type = "application/json"),
    responses(
        (status = 201, description = "The entry", body = ledger::Entry),
        (status = 400, description = "invalid_amount, invalid_currency", body = crate::openapi::ErrorBody),
        (status = 404, description = "player_not_found", body = crate::openapi::ErrorBody),
        (status = 409, description = "insufficient_balance (details: currency, balance, needed)", body = crate::openapi::ErrorBody),
    ),
)]
async fn credit(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    m: Mutation,
) -> Result<Response, ApiError> {
    post_move(tenant, s, m, 1).await
}

#[utoipa::path(
    post,
    path = "/v1/ledger/debit",
    operation_id = "ledgerDebit",
    tag = "ledger",
    summary = "Debit a player's account by hand",
    security(("tenantToken" = [])),
    params(crate::openapi::IdempotencyKey),
    request_body(content = Move, content_type = "application/json"),
    responses(
        (status = 201, description = "The entry", body = ledger::Entry),
        (status = 400, description = "invalid_amount, invalid_currency", body = crate::openapi::ErrorBody),
        (status = 404, description = "player_not_found", body = crate::openapi::ErrorBody),
        (status = 409, description = "insufficient_balance (details: currency, balance, needed)", body = crate::openapi::ErrorBody),
    ),
)]
async fn debit(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    m: Mutation,
) -> Result<Response, ApiError> {
    post_move(tenant, s, m, -1).await
}

#[utoipa::path(
    get,
    path = "/v1/ledger/entries/{id}",
    operation_id = "getEntry",
    tag = "ledger",
    summary = "One ledger entry",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "Entry id")),
    responses(
        (status = 200, description = "The entry", body = ledger::Entry),
        (status = 404, description = "entry_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn entry(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ledger::Entry>, ApiError> {
    Ok(Json(ledger::entry(&s.store.read()?, &tenant, &id)?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Reverse {
    reason: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/ledger/entries/{id}/reverse",
    operation_id = "reverseEntry",
    tag = "ledger",
    summary = "Reverse an entry with a compensating entry",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "Entry id"), crate::openapi::IdempotencyKey),
    request_body(content = Reverse, content_type = "application/json"),
    responses(
        (status = 201, description = "The compensating entry", body = ledger::Entry),
        (status = 404, description = "entry_not_found", body = crate::openapi::ErrorBody),
        (status = 409, description = "already_reversed, insufficient_balance (a credit already spent)", body = crate::openapi::ErrorBody),
        (status = 409, description = "reverse_of_reversal: a reversal is not reversed; post a new entry", body = crate::openapi::ErrorBody),
    ),
)]
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

#[utoipa::path(
    get,
    path = "/v1/currencies",
    operation_id = "listCurrencies",
    tag = "ledger",
    summary = "The tenant's currencies (points, and every one used)",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "Currencies", body = Currencies),
    ),
)]
async fn currencies(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<Currencies>, ApiError> {
    let currencies = ledger::currencies(&s.store.read()?, &tenant)?;
    Ok(Json(Currencies { currencies }))
}

/// The currencies a tenant's ledger holds.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Currencies {
    currencies: Vec<String>,
}
