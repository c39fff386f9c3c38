//! `/v1/goods` and `/v1/redemptions`: goods groups, coupon code uploads,
//! availability and redemption.

use crate::wire::{Path, Query};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::{ApiError, AppState};
use engage_domain::goods::{self, GroupSpec, UploadReport};
use engage_store::ids::now_ms;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/goods", get(list))
        .route("/v1/goods/{id}", get(show).put(put))
        .route("/v1/goods/{id}/codes", post(upload_codes))
        .route("/v1/goods/{id}/availability", get(availability))
        .route("/v1/goods/{id}/redeem", post(redeem))
        .route("/v1/redemptions/{ref_id}", get(redemption))
}

async fn list(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "goods": goods::list(&s.store.read()?, &tenant)? }),
    ))
}

async fn show(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<goods::GroupView>, ApiError> {
    Ok(Json(goods::get(&s.store.read()?, &tenant, &id)?))
}

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

#[derive(Deserialize)]
struct AvailabilityQuery {
    player: Option<String>,
}

async fn availability(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<AvailabilityQuery>,
) -> Result<Json<Value>, ApiError> {
    let snap = s.store.read()?;
    let g = goods::get(&snap, &tenant, &id)?;
    let available = goods::availability(&snap, &tenant, &id, q.player.as_deref(), now_ms())?;
    Ok(Json(json!({
        "group": id,
        "available": available,
        "stock": g.stock,
        "low_stock": g.low_stock,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Redeem {
    player: String,
    amount: Option<u64>,
}

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

async fn redemption(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(ref_id): Path<String>,
) -> Result<Json<goods::Redemption>, ApiError> {
    Ok(Json(goods::redemption(&s.store.read()?, &tenant, &ref_id)?))
}
