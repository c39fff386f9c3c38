//! The BSG-compatible Viber API under `/bsg` (seed 001): create Viber
//! messages with an SMS fallback (`alt_route`) and look them up. Only
//! translation: every message goes through [`crate::messaging`].
//!
//! Authentication is BSG's `X-API-KEY` header carrying the tenant's API
//! key, or a tenant bearer token. Answers are BSG's: `error` and
//! `errorDescription` in every result. The seed fixes codes 0, 40 and 43;
//! the others are Engage's and listed in the README.

use super::form::{Body, BodyError};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::idempotency::Guarded;
use crate::ids::{now_ms, random_hex, sql_datetime};
use crate::messaging::pricing::{self, PricingError};
use crate::messaging::{self, Fallback, Kind, Message, MessageError, SendRequest, Status};
use crate::tenants;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/bsg/rest/viber/create", post(create).put(create))
        .route("/bsg/rest/viber/reference/{reference}", get(by_reference))
        .route("/bsg/rest/viber/{id}", get(show))
}

/// A BSG error: its code, description and HTTP status.
struct BsgError(StatusCode, u32, String);

/// A path or method under `/bsg` that Engage does not serve, in BSG's
/// error format.
pub fn not_served() -> Response {
    BsgError(
        StatusCode::NOT_FOUND,
        1,
        "Invalid request: no such endpoint (Engage serves rest/viber/create, rest/viber/{id} and rest/viber/reference/{reference})".into(),
    )
    .into_response()
}

impl From<BodyError> for BsgError {
    fn from(e: BodyError) -> BsgError {
        BsgError(e.status, 1, e.message)
    }
}

impl IntoResponse for BsgError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({ "error": self.1, "errorDescription": self.2 })),
        )
            .into_response()
    }
}

impl From<crate::store::StoreError> for BsgError {
    fn from(e: crate::store::StoreError) -> BsgError {
        tracing::error!(error = %e, "internal error");
        BsgError(
            StatusCode::INTERNAL_SERVER_ERROR,
            99,
            "Internal error".into(),
        )
    }
}

/// A message error as BSG's (code, description).
fn code_of(e: &MessageError) -> (u32, String) {
    match e {
        MessageError::DuplicateReference(_) => (43, "External ID already exists".into()),
        MessageError::InvalidNumber(_) => (21, "Invalid msisdn".into()),
        MessageError::TooManyRecipients => (24, "Too many recipients".into()),
        MessageError::TooLong(_) => (22, e.to_string()),
        MessageError::Invalid(m) => (1, m.clone()),
        MessageError::NoRoute(_) | MessageError::Pricing(PricingError::NoPrice { .. }) => {
            (42, e.to_string())
        }
        MessageError::Pricing(PricingError::InsufficientCredit { .. }) => {
            (41, "Insufficient funds".into())
        }
        MessageError::NotFound(_) => (40, "Message not found".into()),
        e => {
            tracing::warn!(error = %e, "bsg create");
            (99, e.to_string())
        }
    }
}

/// The tenant: `X-API-KEY` (the tenant's API key) or a bearer token.
struct BsgTenant(String);

impl FromRequestParts<AppState> for BsgTenant {
    type Rejection = BsgError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, BsgError> {
        let denied = || BsgError(StatusCode::UNAUTHORIZED, 2, "Authorization error".into());
        let snap = s.store.read()?;
        let subject = crate::throttle::Subject::address(super::auth::client_ip(parts));
        if let Some(key) = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
            return super::auth::throttled(s, &subject, || tenants::by_api_key(&snap, key.trim()))
                .map_err(|_| denied())?
                .map(BsgTenant)
                .map_err(|_| denied());
        }
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(denied)?;
        super::auth::throttled(s, &subject, || {
            tenants::verify_token(&snap, token.trim(), now_ms())
        })
        .map_err(|_| denied())?
        .map(BsgTenant)
        .map_err(|_| denied())
    }
}

#[derive(Deserialize)]
struct Create {
    tariff: Option<Value>,
    validity: Option<Value>,
    messages: Vec<BsgMessage>,
}

#[derive(Deserialize)]
struct BsgMessage {
    to: Vec<Recipient>,
    text: String,
    alpha_name: Option<String>,
    #[serde(default)]
    is_promotional: bool,
    options: Option<Options>,
}

#[derive(Deserialize)]
struct Recipient {
    msisdn: Value,
    reference: Option<String>,
}

#[derive(Deserialize)]
struct Options {
    viber: Option<ViberOptions>,
}

#[derive(Deserialize)]
struct ViberOptions {
    img: Option<String>,
    caption: Option<String>,
    action: Option<String>,
    alt_route: Option<AltRoute>,
}

#[derive(Deserialize)]
struct AltRoute {
    originator: Option<String>,
    text: String,
}

/// A number or a string of digits, as BSG clients send them.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// BSG numbers carry no `+`.
fn e164(msisdn: &str) -> String {
    if msisdn.starts_with('+') {
        msisdn.to_owned()
    } else {
        format!("+{msisdn}")
    }
}

async fn create(
    State(s): State<AppState>,
    BsgTenant(tenant): BsgTenant,
    Body(body, _): Body<BsgError>,
) -> Response {
    let req: Create = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return BsgError(StatusCode::BAD_REQUEST, 1, format!("Invalid request: {e}"))
                .into_response();
        }
    };
    // BSG's validity is in hours.
    let validity_h = req
        .validity
        .as_ref()
        .and_then(text_of)
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(24);
    if !(1..=168).contains(&validity_h) {
        return BsgError(
            StatusCode::BAD_REQUEST,
            1,
            "validity is 1 to 168 hours".into(),
        )
        .into_response();
    }
    let total: usize = req.messages.iter().map(|m| m.to.len()).sum();
    if req
        .messages
        .iter()
        .any(|m| m.to.len() > messaging::MAX_RECIPIENTS)
    {
        return BsgError(StatusCode::BAD_REQUEST, 24, "Too many recipients".into()).into_response();
    }
    let tariff = req.tariff.as_ref().and_then(text_of);
    let rid = random_hex(8);
    let mut results = Vec::with_capacity(total);
    let mut total_price = 0i64;
    let mut currency = None;
    for m in &req.messages {
        let viber = m.options.as_ref().and_then(|o| o.viber.as_ref());
        let mut metadata = std::collections::BTreeMap::new();
        for (k, v) in [
            ("img", viber.and_then(|v| v.img.clone())),
            ("caption", viber.and_then(|v| v.caption.clone())),
            ("action", viber.and_then(|v| v.action.clone())),
            ("tariff", tariff.clone()),
        ] {
            if let Some(v) = v {
                metadata.insert(k.to_owned(), v);
            }
        }
        for to in &m.to {
            let msisdn = text_of(&to.msisdn).unwrap_or_default();
            let send = SendRequest {
                to: vec![e164(&msisdn)],
                channel: "viber".into(),
                sender: m.alpha_name.clone(),
                body: Some(m.text.clone()),
                reference: to.reference.clone(),
                kind: if m.is_promotional {
                    Kind::Marketing
                } else {
                    Kind::Transactional
                },
                validity_s: Some(validity_h * 3600),
                fallback: viber.and_then(|v| v.alt_route.as_ref()).map(|a| Fallback {
                    channel: "sms".into(),
                    sender: a.originator.clone(),
                    body: a.text.clone(),
                }),
                metadata: metadata.clone(),
                ..SendRequest::default()
            };
            match s.messaging.send(&tenant, send, None, now_ms(), &rid).await {
                Ok(Guarded::Fresh(accepted)) => {
                    for msg in accepted.messages {
                        let price = msg.plan.first().map(|a| a.price).unwrap_or(0);
                        total_price += price;
                        currency = currency.or(msg.currency.clone());
                        results.push(json!({
                            "error": 0,
                            "errorDescription": "No errors",
                            "reference": msg.reference,
                            "id": msg.id,
                            "price": pricing::to_units(price),
                            "currency": msg.currency,
                        }));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let (code, description) = code_of(&e);
                    results.push(json!({
                        "error": code,
                        "errorDescription": description,
                        "reference": to.reference,
                    }));
                }
            }
        }
    }
    let any_sent = results.iter().any(|r| r["error"] == 0);
    let mut answer = json!({ "result": results });
    if let Some(c) = currency {
        answer["currency"] = json!(c);
    }
    if any_sent {
        answer["total_price"] = json!(pricing::to_units(total_price));
    }
    Json(answer).into_response()
}

/// A status as BSG names it (BSG has no `queued`: not yet sent is `scheduled`).
fn bsg_status(s: Status) -> &'static str {
    match s {
        Status::Queued => "scheduled",
        s => s.as_str(),
    }
}

fn view(m: &Message) -> Value {
    let (primary, alternative): (Vec<_>, Vec<_>) = m
        .attempts
        .iter()
        .enumerate()
        .partition(|(_, a)| a.channel == m.channel);
    let last = primary.last().map(|(_, a)| *a);
    let status = match last {
        Some(a) => a.status,
        None if m.status == Status::Expired => Status::Expired,
        None if m.status.is_final() => m.status,
        None => Status::Scheduled,
    };
    let price: i64 = primary
        .iter()
        .filter(|(_, a)| a.status.went_out())
        .map(|(_, a)| a.price)
        .sum();
    let time_dr = last
        .filter(|a| a.status.is_final())
        .map(|a| sql_datetime(a.updated_at_ms));
    let alt: Vec<Value> = alternative
        .iter()
        .map(|(i, a)| {
            json!({
                "channel": a.channel,
                "id": format!("{}-{i}", m.id),
                "status": bsg_status(a.status),
                "price": pricing::to_units(if a.status.went_out() { a.price } else { 0 }),
            })
        })
        .collect();
    let mut v = json!({
        "error": 0,
        "errorDescription": "No errors",
        "id": m.id,
        "msisdn": m.to.trim_start_matches('+'),
        "reference": m.reference,
        "time_in": sql_datetime(m.created_at_ms),
        "time_sent": m.sent_at_ms.map(sql_datetime),
        "time_dr": time_dr,
        "status": bsg_status(status),
        "price": pricing::to_units(price),
        "currency": m.currency,
    });
    if let Some(at) = m.schedule_at_ms {
        v["time_scheduled"] = json!(sql_datetime(at));
    }
    if !alt.is_empty() {
        v["alt_route"] = json!(alt);
    }
    v
}

fn not_found() -> BsgError {
    BsgError(StatusCode::NOT_FOUND, 40, "Message not found".into())
}

async fn show(
    State(s): State<AppState>,
    BsgTenant(tenant): BsgTenant,
    Path(id): Path<String>,
) -> Result<Json<Value>, BsgError> {
    let m = messaging::get(&s.store.read()?, &tenant, &id)?.ok_or_else(not_found)?;
    Ok(Json(view(&m)))
}

async fn by_reference(
    State(s): State<AppState>,
    BsgTenant(tenant): BsgTenant,
    Path(reference): Path<String>,
) -> Result<Json<Value>, BsgError> {
    let list = messaging::by_reference(&s.store.read()?, &tenant, &reference)?;
    let m = list.first().ok_or_else(not_found)?;
    Ok(Json(view(m)))
}
