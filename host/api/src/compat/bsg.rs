//! The BSG-compatible Viber API under `/bsg` (seed 001): create Viber
//! messages with an SMS fallback (`alt_route`) and look them up. Only
//! translation: every message goes through [`engage_messaging`].
//!
//! Authentication is BSG's `X-API-KEY` header carrying the tenant's API
//! key, or a tenant bearer token. Answers are BSG's: `error` and
//! `errorDescription` in every result. The seed fixes codes 0, 40 and 43;
//! the others are Engage's and listed in the README.

use crate::wire::{Body, BodyError};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{AppState, RequestId};
use engage_domain::tenants;
use engage_messaging::pricing::{self, PricingError};
use engage_messaging::{
    self as messaging, Fallback, Kind, Message, MessageError, Refusal, RefusalKind, SendRequest,
    Status, Submitted,
};
use engage_store::ids::{now_ms, sql_datetime};

pub fn routes() -> Router<AppState> {
    let mut r = Router::new();
    // BSG's documents and its Node and Python libraries call `/rest/…`;
    // its PHP library the same paths under `/v1.0/`.
    for base in ["/bsg/rest", "/bsg/v1.0"] {
        let at = |path: &str| format!("{base}{path}");
        r = r
            .route(&at("/viber/create"), post(viber_create).put(viber_create))
            .route(&at("/viber/price"), post(viber_price).put(viber_price))
            .route(&at("/viber/prices"), get(viber_prices))
            .route(&at("/viber/prices/{tariff}"), get(viber_prices))
            .route(
                &at("/viber/reference/{reference}"),
                get(by_reference::<false>),
            )
            .route(&at("/viber/{id}"), get(show::<false>))
            .route(&at("/sms/create"), post(sms_create).put(sms_create))
            .route(&at("/sms/price"), post(sms_price).put(sms_price))
            .route(&at("/sms/prices"), get(sms_prices))
            .route(&at("/sms/prices/{tariff}"), get(sms_prices))
            .route(&at("/sms/reference/{reference}"), get(by_reference::<true>))
            .route(&at("/sms/{id}"), get(show::<true>))
            .route(&at("/common/balance"), get(balance));
    }
    r
}

/// A BSG error: its code, description and HTTP status.
struct BsgError(StatusCode, u32, String);

/// A path or method under `/bsg` that Engage does not serve, in BSG's
/// error format.
pub fn not_served() -> Response {
    BsgError(
        StatusCode::NOT_FOUND,
        1,
        "Invalid request: no such endpoint (Engage serves viber/… and sms/… create, price, prices, {id} and reference/{reference}, and common/balance, under rest/ or v1.0/)".into(),
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

impl From<engage_store::StoreError> for BsgError {
    fn from(e: engage_store::StoreError) -> BsgError {
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
        let subject = crate::throttle::Subject::address(crate::auth::client_ip(parts));
        if let Some(key) = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
            return crate::auth::throttled(s, &subject, || tenants::by_api_key(&snap, key.trim()))
                .map_err(|_| denied())?
                .map(BsgTenant::identified)
                .map_err(|_| denied());
        }
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(denied)?;
        crate::auth::throttled(s, &subject, || {
            tenants::verify_token(&snap, token.trim(), now_ms())
        })
        .map_err(|_| denied())?
        .map(BsgTenant::identified)
        .map_err(|_| denied())
    }
}

impl BsgTenant {
    fn identified(tenant: String) -> BsgTenant {
        crate::identified(&tenant);
        BsgTenant(tenant)
    }
}

#[derive(Deserialize)]
struct ViberCreate {
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

/// BSG's SMS request: one number (`destination: "phone"`), one text to
/// many (`"phones"`), or a text per number (`"individual"`).
#[derive(Deserialize)]
struct SmsCreate {
    destination: Option<String>,
    msisdn: Option<Value>,
    reference: Option<String>,
    originator: Option<String>,
    body: Option<String>,
    validity: Option<Value>,
    tariff: Option<Value>,
    #[serde(default)]
    phones: Vec<Phone>,
}

/// A number of an SMS request: just the number, or with its own reference
/// (and, for `individual`, its own text and sender).
#[derive(Deserialize)]
#[serde(untagged)]
enum Phone {
    // First: an object with `msisdn` is this; anything else is a number.
    Detailed {
        msisdn: Value,
        reference: Option<String>,
        body: Option<String>,
        originator: Option<String>,
    },
    Number(Value),
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

fn payload_error(e: impl std::fmt::Display) -> BsgError {
    BsgError(
        StatusCode::BAD_REQUEST,
        44,
        format!("Invalid request payload: {e}"),
    )
}

/// A validity in seconds. BSG's documents give it in hours (the seed's
/// `"1"`, the libraries' SMS default 72) while its PHP and Python
/// libraries send Viber validity in seconds (default 86400): up to 168 is
/// read as hours, more as seconds; at most a week either way.
fn validity_s(v: Option<&Value>, default_h: i64) -> Result<i64, BsgError> {
    let Some(v) = v else {
        return Ok(default_h * 3600);
    };
    let n = text_of(v)
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| payload_error("validity must be a whole number"))?;
    const WEEK_S: i64 = 168 * 3600;
    match n {
        1..=168 => Ok(n * 3600),
        169..=WEEK_S => Ok(n),
        _ => Err(payload_error(
            "validity is 1 to 168 hours (or 169 to 604800 seconds)",
        )),
    }
}

/// One message of a request, with what its result row names it by.
struct Item {
    send: SendRequest,
}

fn viber_items(body: &[u8]) -> Result<Vec<Item>, BsgError> {
    let req: ViberCreate = serde_json::from_slice(body).map_err(payload_error)?;
    if req.messages.is_empty() {
        return Err(payload_error("no messages"));
    }
    let validity = validity_s(req.validity.as_ref(), 24)?;
    if req
        .messages
        .iter()
        .any(|m| m.to.len() > messaging::MAX_RECIPIENTS)
    {
        return Err(BsgError(
            StatusCode::BAD_REQUEST,
            24,
            "Too many recipients".into(),
        ));
    }
    let tariff = req.tariff.as_ref().and_then(text_of);
    let mut items = Vec::new();
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
            items.push(Item {
                send: SendRequest {
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
                    validity_s: Some(validity),
                    fallback: viber.and_then(|v| v.alt_route.as_ref()).map(|a| Fallback {
                        channel: "sms".into(),
                        sender: a.originator.clone(),
                        body: a.text.clone(),
                    }),
                    metadata: metadata.clone(),
                    ..SendRequest::default()
                },
            });
        }
    }
    Ok(items)
}

/// The SMS items of a request, and whether it named one number (BSG then
/// answers one result object instead of a list).
fn sms_items(body: &[u8]) -> Result<(Vec<Item>, bool), BsgError> {
    let req: SmsCreate = serde_json::from_slice(body).map_err(payload_error)?;
    let validity = validity_s(req.validity.as_ref(), 72)?;
    let mut metadata = std::collections::BTreeMap::new();
    if let Some(t) = req.tariff.as_ref().and_then(text_of) {
        metadata.insert("tariff".to_owned(), t);
    }
    let item = |msisdn: &Value, reference: Option<String>, body: Option<String>, sender| {
        let body = body
            .filter(|b| !b.trim().is_empty())
            .ok_or_else(|| BsgError(StatusCode::BAD_REQUEST, 26, "Invalid sms text".into()))?;
        Ok::<_, BsgError>(Item {
            send: SendRequest {
                to: vec![e164(&text_of(msisdn).unwrap_or_default())],
                channel: "sms".into(),
                sender,
                body: Some(body),
                reference,
                validity_s: Some(validity),
                metadata: metadata.clone(),
                ..SendRequest::default()
            },
        })
    };
    let single = req.destination.as_deref().unwrap_or("phone") == "phone";
    let items = match req.destination.as_deref().unwrap_or("phone") {
        "phone" => {
            let msisdn = req
                .msisdn
                .as_ref()
                .ok_or_else(|| payload_error("msisdn is required"))?;
            vec![item(
                msisdn,
                req.reference.clone(),
                req.body.clone(),
                req.originator.clone(),
            )?]
        }
        destination @ ("phones" | "individual") => {
            if req.phones.is_empty() {
                return Err(payload_error("phones is empty"));
            }
            if req.phones.len() > messaging::MAX_RECIPIENTS {
                return Err(BsgError(
                    StatusCode::BAD_REQUEST,
                    24,
                    "Too many recipients".into(),
                ));
            }
            let individual = destination == "individual";
            let mut items = Vec::with_capacity(req.phones.len());
            for p in &req.phones {
                let (msisdn, reference, body, sender) = match p {
                    Phone::Number(n) => (n, None, None, None),
                    Phone::Detailed {
                        msisdn,
                        reference,
                        body,
                        originator,
                    } => (msisdn, reference.clone(), body.clone(), originator.clone()),
                };
                let (body, sender) = if individual {
                    (body, sender.or_else(|| req.originator.clone()))
                } else {
                    (req.body.clone(), req.originator.clone())
                };
                items.push(item(msisdn, reference, body, sender)?);
            }
            items
        }
        other => {
            return Err(payload_error(format!(
                "destination `{}` is not phone, phones or individual",
                other.chars().take(32).collect::<String>()
            )));
        }
    };
    Ok((items, single))
}

/// Send (or, with `quote_only`, price) the items, all in one write and
/// guarded by `idem`; BSG's result rows, with the total price of those
/// accepted.
async fn submit(
    s: &AppState,
    tenant: &str,
    items: Vec<Item>,
    quote_only: bool,
    (idem, rid): (Option<engage_store::idempotency::Call>, &str),
) -> Result<(Value, bool), BsgError> {
    let mut results = Vec::with_capacity(items.len());
    let mut total_price = 0.0f64;
    let mut currency = None;
    if quote_only {
        for item in items {
            let reference = item.send.reference.clone();
            match s.messaging.quote(tenant, &item.send, now_ms(), rid) {
                Ok(q) => {
                    let price: f64 = q.recipients.iter().map(|r| r.price).sum();
                    total_price += price;
                    currency = currency.or(q.currency.clone());
                    results.push(json!({
                        "error": 0,
                        "errorDescription": "No errors",
                        "reference": reference,
                        "price": price,
                        "currency": q.currency,
                    }));
                }
                Err(MessageError::Store(e)) => return Err(e.into()),
                Err(e) => results.push(error_row(&e, reference)),
            }
        }
        return Ok((totals(results, total_price, currency), false));
    }
    let references: Vec<Option<String>> = items.iter().map(|i| i.send.reference.clone()).collect();
    let reqs = items.into_iter().map(|i| i.send).collect();
    let sent = s
        .messaging
        .send_batch(tenant, reqs, idem, now_ms(), rid)
        .await
        .map_err(|e| match e {
            MessageError::Store(e) => BsgError::from(e),
            e => BsgError(StatusCode::BAD_REQUEST, code_of(&e).0, e.to_string()),
        })?;
    let (outcomes, again) = crate::mutation::fresh_or_kept(sent).map_err(|e| match e {
        crate::mutation::NotKept::Reused => BsgError(
            StatusCode::CONFLICT,
            44,
            format!("Invalid request payload: {}", crate::mutation::KEY_REUSED),
        ),
        crate::mutation::NotKept::Unreadable(m) => {
            tracing::error!(error = %m, "a kept answer cannot be read");
            BsgError(
                StatusCode::INTERNAL_SERVER_ERROR,
                99,
                "Internal error".into(),
            )
        }
    })?;
    let mut total_micros = 0i64;
    for (outcome, reference) in outcomes.into_iter().zip(references) {
        match outcome {
            Submitted::Accepted(messages) => {
                for msg in messages {
                    let price = msg.plan.first().map(|a| a.price).unwrap_or(0);
                    total_micros += price;
                    currency = currency.or(msg.currency.clone());
                    results.push(json!({
                        "error": 0,
                        "errorDescription": "No errors",
                        "reference": msg.reference,
                        "id": bsg_id(&msg),
                        "price": pricing::to_units(price),
                        "currency": msg.currency,
                    }));
                }
            }
            Submitted::Refused(r) => {
                let (code, description) = refusal_code(&r);
                results.push(json!({ "error": code, "errorDescription": description, "reference": reference }));
            }
        }
    }
    Ok((
        totals(results, pricing::to_units(total_micros), currency),
        again,
    ))
}

/// The answer's totals: the currency, and the total price when any row
/// was accepted.
fn totals(results: Vec<Value>, total_price: f64, currency: Option<String>) -> Value {
    let any_ok = results.iter().any(|r| r["error"] == 0);
    let mut answer = json!({ "result": results });
    if let Some(c) = currency {
        answer["currency"] = json!(c);
    }
    if any_ok {
        answer["total_price"] = json!(total_price);
    }
    answer
}

/// A refused message as BSG's (code, description).
fn refusal_code(r: &Refusal) -> (u32, String) {
    match r.kind {
        RefusalKind::DuplicateReference => (43, "External ID already exists".into()),
        RefusalKind::InvalidNumber => (21, "Invalid msisdn".into()),
        RefusalKind::TooManyRecipients => (24, "Too many recipients".into()),
        RefusalKind::TooLong => (22, r.message.clone()),
        RefusalKind::Invalid => (1, r.message.clone()),
        RefusalKind::NoRoute | RefusalKind::NoPrice => (42, r.message.clone()),
        RefusalKind::InsufficientCredit => (41, "Insufficient funds".into()),
        RefusalKind::Other => (99, r.message.clone()),
    }
}

fn error_row(e: &MessageError, reference: Option<String>) -> Value {
    let (code, description) = code_of(e);
    json!({ "error": code, "errorDescription": description, "reference": reference })
}

/// A message's id as BSG's clients take it: its number (digits; the Python
/// library turns it into an integer), or the message id for messages older
/// than numbers.
fn bsg_id(m: &Message) -> String {
    if m.number > 0 {
        m.number.to_string()
    } else {
        m.id.clone()
    }
}

async fn viber_create(
    State(s): State<AppState>,
    BsgTenant(tenant): BsgTenant,
    Extension(RequestId(rid)): Extension<RequestId>,
    Body(body, idem, _): Body<BsgError>,
) -> Result<Response, BsgError> {
    let items = viber_items(&body)?;
    let (answer, again) = submit(&s, &tenant, items, false, (idem, &rid)).await?;
    Ok(render(answer, again))
}

async fn viber_price(
    State(s): State<AppState>,
    BsgTenant(tenant): BsgTenant,
    Extension(RequestId(rid)): Extension<RequestId>,
    Body(body, ..): Body<BsgError>,
) -> Result<Response, BsgError> {
    let items = viber_items(&body)?;
    let (answer, again) = submit(&s, &tenant, items, true, (None, &rid)).await?;
    Ok(render(answer, again))
}

async fn sms_create(
    State(s): State<AppState>,
    BsgTenant(tenant): BsgTenant,
    Extension(RequestId(rid)): Extension<RequestId>,
    Body(body, idem, _): Body<BsgError>,
) -> Result<Response, BsgError> {
    let (items, single) = sms_items(&body)?;
    let (answer, again) = submit(&s, &tenant, items, false, (idem, &rid)).await?;
    Ok(render(one_or_list(answer, single), again))
}

async fn sms_price(
    State(s): State<AppState>,
    BsgTenant(tenant): BsgTenant,
    Extension(RequestId(rid)): Extension<RequestId>,
    Body(body, ..): Body<BsgError>,
) -> Result<Response, BsgError> {
    let (items, single) = sms_items(&body)?;
    let (answer, again) = submit(&s, &tenant, items, true, (None, &rid)).await?;
    Ok(render(one_or_list(answer, single), again))
}

/// BSG answers a one-number SMS request with one result object.
fn one_or_list(mut answer: Value, single: bool) -> Value {
    if single && let Some(first) = answer["result"].get(0).cloned() {
        answer["result"] = first;
    }
    answer
}

/// The JSON answer, marked when it is a kept one given again.
fn render(answer: Value, again: bool) -> Response {
    let resp = Json(answer).into_response();
    if again {
        crate::mutation::mark_replayed(resp)
    } else {
        resp
    }
}

/// `common/balance`: the credit of the tenant's default sending account.
async fn balance(
    State(s): State<AppState>,
    BsgTenant(tenant): BsgTenant,
) -> Result<Json<Value>, BsgError> {
    let snap = s.store.read()?;
    let (available, _) = pricing::credit(&snap, &tenant, pricing::DEFAULT_ACCOUNT)?;
    let currency = pricing::price_list(&snap, &tenant)?.map(|p| p.currency);
    Ok(Json(json!({
        "error": 0,
        "errorDescription": "No errors",
        "amount": pricing::to_units(available),
        "currency": currency,
        "limit": 0,
    })))
}

async fn viber_prices(
    State(s): State<AppState>,
    BsgTenant(tenant): BsgTenant,
) -> Result<Json<Value>, BsgError> {
    prices_of(&s, &tenant, "viber")
}

async fn sms_prices(
    State(s): State<AppState>,
    BsgTenant(tenant): BsgTenant,
) -> Result<Json<Value>, BsgError> {
    prices_of(&s, &tenant, "sms")
}

/// The tenant's prices of one channel, a row per number prefix. Engage
/// prices by prefix, not by country and network: `prefix` is the key,
/// `country`, `country_name` and `mcc` are empty. There is one price list
/// per tenant: a tariff in the path is not a second one.
fn prices_of(s: &AppState, tenant: &str, channel: &str) -> Result<Json<Value>, BsgError> {
    let list = pricing::price_list(&s.store.read()?, tenant)?;
    let rows: Vec<Value> = list
        .iter()
        .flat_map(|l| {
            l.prices.iter().filter(|p| p.channel == channel).map(|p| {
                json!({
                    "type": channel,
                    "prefix": p.prefix,
                    "country": "",
                    "country_name": "",
                    "mcc": "",
                    "price": p.price,
                    "currency": l.currency,
                })
            })
        })
        .collect();
    Ok(Json(
        json!({ "error": 0, "errorDescription": "No errors", "prices": rows }),
    ))
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
                "id": format!("{}-{i}", bsg_id(m)),
                "status": bsg_status(a.status),
                "price": pricing::to_units(if a.status.went_out() { a.price } else { 0 }),
            })
        })
        .collect();
    let mut v = json!({
        "error": 0,
        "errorDescription": "No errors",
        "id": bsg_id(m),
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

/// The message BSG's id names (its number, or the message id), on
/// `channel`.
fn find(s: &AppState, tenant: &str, id: &str, channel: &str) -> Result<Message, BsgError> {
    let snap = s.store.read()?;
    let m = match id.parse::<u64>() {
        Ok(n) => messaging::by_number(&snap, tenant, n)?,
        Err(_) => messaging::get(&snap, tenant, id)?,
    };
    m.filter(|m| m.channel == channel).ok_or_else(not_found)
}

fn find_by_reference(
    s: &AppState,
    tenant: &str,
    reference: &str,
    channel: &str,
) -> Result<Message, BsgError> {
    let list = messaging::by_reference(&s.store.read()?, tenant, reference)?;
    list.into_iter()
        .find(|m| m.channel == channel)
        .ok_or_else(not_found)
}

/// The channel of a BSG path: `sms/…` or `viber/…`.
const fn channel(sms: bool) -> &'static str {
    if sms { "sms" } else { "viber" }
}

async fn show<const SMS: bool>(
    State(s): State<AppState>,
    BsgTenant(tenant): BsgTenant,
    Path(id): Path<String>,
) -> Result<Json<Value>, BsgError> {
    Ok(Json(view(&find(&s, &tenant, &id, channel(SMS))?)))
}

async fn by_reference<const SMS: bool>(
    State(s): State<AppState>,
    BsgTenant(tenant): BsgTenant,
    Path(reference): Path<String>,
) -> Result<Json<Value>, BsgError> {
    Ok(Json(view(&find_by_reference(
        &s,
        &tenant,
        &reference,
        channel(SMS),
    )?)))
}
