//! `/v1/goods` and `/v1/redemptions`: goods groups, coupon code uploads,
//! availability and redemption.

use crate::wire::{Path, Query};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::{ApiError, AppState};
use engage_domain::goods::{self, GroupSpec, UploadReport};
use engage_store::ids::now_ms;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show, put))
        .routes(routes!(upload_codes))
        .routes(routes!(availability))
        .routes(routes!(redeem))
        .routes(routes!(redemption))
}

#[utoipa::path(
    get,
    path = "/v1/goods",
    operation_id = "listGoods",
    tag = "goods",
    summary = "Goods groups with their stock",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "Groups", body = GoodsList),
    ),
)]
async fn list(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<GoodsList>, ApiError> {
    Ok(Json(GoodsList {
        goods: goods::list(&s.store.read()?, &tenant)?,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
struct GoodsList {
    goods: Vec<goods::GroupView>,
}

/// How many a player (or anyone) can redeem now.
#[derive(Serialize, utoipa::ToSchema)]
struct Availability {
    group: String,
    /// 0 when inactive or the player is at the per-player limit.
    available: u64,
    stock: u64,
    low_stock: bool,
}

#[utoipa::path(
    get,
    path = "/v1/goods/{id}",
    operation_id = "getGoods",
    tag = "goods",
    summary = "A goods group",
    security(("tenantToken" = [])),
    params(("id" = engage_store::ids::ClientId, Path, description = "Goods group id")),
    responses(
        (status = 200, description = "The group", body = goods::GroupView),
        (status = 404, description = "goods_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn show(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<goods::GroupView>, ApiError> {
    Ok(Json(goods::get(&s.store.read()?, &tenant, &id)?))
}

#[utoipa::path(
    put,
    path = "/v1/goods/{id}",
    operation_id = "putGoods",
    tag = "goods",
    summary = "Create or change a goods group",
    security(("tenantToken" = [])),
    params(("id" = engage_store::ids::ClientId, Path, description = "Goods group id"), crate::openapi::IdempotencyKey),
    request_body(content = GroupSpec, content_type = "application/json"),
    responses(
        (status = 200, description = "The group", body = goods::GroupView),
        (status = 400, description = "invalid_request", body = crate::openapi::ErrorBody),
        (status = 422, description = "incomplete_group: the group does not exist and the request has no `name` or no `price` to create it", body = crate::openapi::ErrorBody),
    ),
)]
async fn put(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let spec: GroupSpec = m.json()?;
    let t = tenant.clone();
    let now = now_ms();
    mutation::write(&s, &tenant, &m, StatusCode::OK, now, move |tx| {
        goods::put(tx, &t, &id, spec.clone(), now).map(|(view, _)| view)
    })
    .await
}

/// Lines per write job while a file streams in.
const LINES_PER_BATCH: usize = 2000;
/// The longest line kept whole; longer ones are rejected as codes anyway.
const MAX_LINE: usize = 4096;

/// Codes from a text or CSV file, one per line (CSV: the first column; a
/// `code` header is skipped). The body is read as it arrives and committed
/// in batches; a re-upload of the same file adds nothing twice.
#[utoipa::path(
    post,
    path = "/v1/goods/{id}/codes",
    operation_id = "uploadCodes",
    tag = "goods",
    summary = "Upload coupon codes from a text or CSV file (one per line; CSV: first column, a `code` header skipped). Streamed and committed in batches; codes already in the group are counted as duplicates, never stored twice, so a re-upload is safe.",
    security(("tenantToken" = [])),
    params(("id" = engage_store::ids::ClientId, Path, description = "Goods group id")),
    request_body(content = String, content_type = "text/plain", description = "One code per line; with `Content-Type: text/csv`, the first column (a `code` header is skipped)"),
    responses(
        (status = 200, description = "What the upload did", body = UploadReport),
        (status = 404, description = "goods_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn upload_codes(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<UploadReport>, ApiError> {
    goods::get(&s.store.read()?, &tenant, &id)?;
    let csv = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("csv"));
    let mut stream = body.into_data_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut report = UploadReport::default();
    let mut first_line = 1u64;
    let mut header_checked = false;
    loop {
        let chunk = stream.next().await;
        let done = chunk.is_none();
        if let Some(c) = chunk {
            let c = c.map_err(|e| {
                ApiError::bad_request("invalid_body", format!("could not read the upload: {e}"))
            })?;
            pending.extend_from_slice(&c);
        }
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = pending.drain(..=pos).collect();
            lines.push(line_text(&raw[..raw.len() - 1]));
        }
        if pending.len() > MAX_LINE {
            // A runaway line: keep its head (it will be rejected as too long).
            pending.truncate(MAX_LINE);
        }
        if done && !pending.is_empty() {
            lines.push(line_text(&std::mem::take(&mut pending)));
        }
        if csv && !header_checked && !lines.is_empty() {
            header_checked = true;
            if goods::first_field(&lines[0]).eq_ignore_ascii_case("code") {
                lines.remove(0);
                first_line += 1;
            }
        }
        if lines.len() >= LINES_PER_BATCH || (done && !lines.is_empty()) {
            let batch = std::mem::take(&mut lines);
            let n = batch.len() as u64;
            report = goods::import_codes(&s.store, &tenant, &id, batch, first_line, report).await?;
            first_line += n;
        }
        if done {
            break;
        }
    }
    Ok(Json(report))
}

fn line_text(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    String::from_utf8_lossy(raw).into_owned()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AvailabilityQuery {
    player: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/goods/{id}/availability",
    operation_id = "goodsAvailability",
    tag = "goods",
    summary = "How many units a player could redeem now",
    security(("tenantToken" = [])),
    params(("id" = engage_store::ids::ClientId, Path, description = "Goods group id"), AvailabilityQuery),
    responses(
        (status = 200, description = "Availability", body = Availability),
        (status = 404, description = "goods_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn availability(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<AvailabilityQuery>,
) -> Result<Json<Availability>, ApiError> {
    let snap = s.store.read()?;
    let g = goods::get(&snap, &tenant, &id)?;
    let available = goods::availability(&snap, &tenant, &id, q.player.as_deref(), now_ms())?;
    Ok(Json(Availability {
        group: id,
        available,
        stock: g.stock,
        low_stock: g.low_stock,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Redeem {
    #[schema(value_type = engage_store::ids::ClientId)]
    player: String,
    /// Units, 1 by default.
    #[schema(minimum = 1, maximum = 100)]
    amount: Option<u64>,
}

#[utoipa::path(
    post,
    path = "/v1/goods/{id}/redeem",
    operation_id = "redeemGoods",
    tag = "goods",
    summary = "Redeem units for points: takes one code per unit and debits the price in one transaction",
    security(("tenantToken" = [])),
    params(("id" = engage_store::ids::ClientId, Path, description = "Goods group id"), crate::openapi::IdempotencyKey),
    request_body(content = Redeem, content_type = "application/json"),
    responses(
        (status = 201, description = "The redemption", body = goods::Redemption),
        (status = 404, description = "goods_not_found, player_not_found", body = crate::openapi::ErrorBody),
        (status = 409, description = "out_of_stock (no points taken), insufficient_balance (nothing changes), redeem_limit_reached, goods_not_active", body = crate::openapi::ErrorBody),
    ),
)]
async fn redeem(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let req: Redeem = m.json()?;
    let t = tenant.clone();
    let now = now_ms();
    mutation::write(&s, &tenant, &m, StatusCode::CREATED, now, move |tx| {
        goods::redeem(tx, &t, &req.player, &id, req.amount.unwrap_or(1), now)
    })
    .await
}

#[utoipa::path(
    get,
    path = "/v1/redemptions/{ref_id}",
    operation_id = "getRedemption",
    tag = "goods",
    summary = "A redemption by its ref_id",
    security(("tenantToken" = [])),
    params(("ref_id" = String, Path, description = "The redemption's ref_id")),
    responses(
        (status = 200, description = "The redemption", body = goods::Redemption),
        (status = 404, description = "redemption_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn redemption(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(ref_id): Path<String>,
) -> Result<Json<goods::Redemption>, ApiError> {
    Ok(Json(goods::redemption(&s.store.read()?, &tenant, &ref_id)?))
}
