//! `/v1/messages`, `/v1/providers`, `/v1/messaging/*` and the providers'
//! delivery-report webhooks under `/hooks`.

use crate::wire::{Path, Query};
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::{ApiError, AppState, RequestId};
use engage_messaging::pricing::{self, PriceList, PricingError};
use engage_messaging::providers::{self, ProviderConfig};
use engage_messaging::{self as messaging, Message, MessageError, SendRequest, Status};
use engage_store::ids::now_ms;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/messages", post(send).get(list))
        .route("/v1/messages/quote", post(quote))
        .route("/v1/messages/{id}", get(show))
        .route("/v1/messages/{id}/cancel", post(cancel))
        .route("/v1/providers", get(list_providers))
        .route("/v1/providers/{name}", put(put_provider).get(show_provider))
        .route("/v1/messaging/prices", put(put_prices).get(show_prices))
        .route(
            "/v1/messaging/accounts/{account}/credit",
            get(show_credit).post(top_up),
        )
        .route("/hooks/twilio/{tenant}/{provider}", post(twilio_report))
        .route(
            "/hooks/kannel/{tenant}/{provider}",
            get(kannel_report).post(kannel_report),
        )
}

async fn send(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Extension(rid): Extension<RequestId>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let req: SendRequest = m.json()?;
    let accepted = s
        .messaging
        .send(&tenant, req, m.idem.clone(), now_ms(), &rid.0)
        .await?;
    Ok(mutation::respond(accepted, StatusCode::ACCEPTED))
}

async fn quote(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Extension(rid): Extension<RequestId>,
    m: Mutation,
) -> Result<Json<messaging::Quote>, ApiError> {
    let req: SendRequest = m.json()?;
    Ok(Json(s.messaging.quote(&tenant, &req, now_ms(), &rid.0)?))
}

async fn show(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Message>, ApiError> {
    messaging::get(&s.store.read()?, &tenant, &id)?
        .map(Json)
        .ok_or_else(|| MessageError::NotFound(id).into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    reference: Option<String>,
    status: Option<Status>,
    to: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn list(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let snap = s.store.read()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let messages = match &q.reference {
        Some(r) => messaging::by_reference(&snap, &tenant, r)?,
        None => {
            let to = match &q.to {
                Some(n) => Some(engage_messaging::address::normalize_phone(n).map_err(|_| {
                    ApiError::from(MessageError::InvalidNumber(n.chars().take(32).collect()))
                })?),
                None => None,
            };
            messaging::list(
                &snap,
                &tenant,
                |m| {
                    q.status.is_none_or(|st| m.status == st)
                        && to.as_deref().is_none_or(|t| m.to == t)
                },
                q.after.as_deref(),
                limit,
            )?
        }
    };
    let next = (messages.len() == limit)
        .then(|| messages.last().map(|m| m.id.clone()))
        .flatten();
    Ok(Json(json!({ "messages": messages, "next_after": next })))
}

async fn cancel(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Message>, ApiError> {
    Ok(Json(s.messaging.cancel(&tenant, &id, now_ms()).await?))
}

fn provider_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_name",
            "a provider name is 1 to 64 letters, digits, `-` or `_`",
        ))
    }
}

async fn put_provider(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(name): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    provider_name(&name)?;
    let mut raw: Value = m.json()?;
    let limits = providers::Limits::take_from(&mut raw)
        .map_err(|e| ApiError::bad_request("invalid_limits", e))?;
    let config: ProviderConfig = serde_json::from_value(raw).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the request body is not what this endpoint takes: {e}"),
        )
    })?;
    let (t, now) = (tenant.clone(), now_ms());
    let sealer = s.messaging.sealer().clone();
    mutation::write(&s, &tenant, &m, StatusCode::OK, now, move |tx| {
        providers::put(tx, &t, &name, &config, &limits, &sealer)?;
        Ok::<_, engage_store::StoreError>(provider_view(&name, &config, &limits))
    })
    .await
}

fn provider_view(name: &str, c: &ProviderConfig, l: &providers::Limits) -> Value {
    json!({ "name": name, "provider": c.redacted(), "limits": l })
}

async fn show_provider(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let snap = s.store.read()?;
    match providers::config(&snap, &tenant, &name, s.messaging.sealer())? {
        Some(c) => {
            let mut v = provider_view(&name, &c, &providers::limits(&snap, &tenant, &name)?);
            let base = format!(
                "{}/hooks/{}/{tenant}/{name}/inbound",
                s.messaging.public_url(),
                c.kind_name()
            );
            match &c {
                ProviderConfig::Twilio { .. } => v["inbound_url"] = json!(base),
                ProviderConfig::Kannel { password, .. } => {
                    let sig = providers::kannel_inbound_signature(password);
                    v["inbound_url"] =
                        json!(format!("{base}?from=%p&to=%P&text=%a&smsc=%i&sig={sig}"));
                }
                _ => {}
            }
            Ok(Json(v))
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "provider_not_found",
            format!("no provider named `{name}`; define it with PUT /v1/providers/{name}"),
        )),
    }
}

async fn list_providers(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let snap = s.store.read()?;
    let mut list = Vec::new();
    for (name, c) in providers::list(&snap, &tenant, s.messaging.sealer())? {
        let l = providers::limits(&snap, &tenant, &name)?;
        list.push(provider_view(&name, &c, &l));
    }
    Ok(Json(json!({ "providers": list })))
}

async fn put_prices(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let list: PriceList = m.json()?;
    list.validate()?;
    let (t, now) = (tenant.clone(), now_ms());
    mutation::write(&s, &tenant, &m, StatusCode::OK, now, move |tx| {
        pricing::set_price_list(tx, &t, &list)?;
        Ok::<_, engage_store::StoreError>(list.clone())
    })
    .await
}

async fn show_prices(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    match pricing::price_list(&s.store.read()?, &tenant)? {
        Some(l) => Ok(Json(serde_json::to_value(l).unwrap_or_default())),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_price_list",
            "no price list: messages are free; set one with PUT /v1/messaging/prices",
        )),
    }
}

fn credit_view(account: &str, (available, reserved): (i64, i64)) -> Value {
    json!({
        "account": account,
        "available": pricing::to_units(available),
        "reserved": pricing::to_units(reserved),
        "available_micros": available,
        "reserved_micros": reserved,
    })
}

async fn show_credit(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(account): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = pricing::credit(&s.store.read()?, &tenant, &account)?;
    Ok(Json(credit_view(&account, c)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopUp {
    /// Currency units; negative takes credit back.
    amount: f64,
    reference: Option<String>,
}

async fn top_up(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(account): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    if !pricing::valid_account(&account) {
        return Err(ApiError::bad_request(
            "invalid_account",
            "an account name is 1 to 128 characters",
        ));
    }
    let req: TopUp = m.json()?;
    let micros = if req.amount.is_finite() {
        pricing::to_micros(req.amount)
    } else {
        0
    };
    let (t, now) = (tenant.clone(), now_ms());
    mutation::write(&s, &tenant, &m, StatusCode::OK, now, move |tx| {
        let c = pricing::top_up(tx, &t, &account, micros, req.reference.as_deref(), now)?;
        Ok::<_, PricingError>(credit_view(&account, c))
    })
    .await
}

/// A Twilio webhook's form parameters.
pub(super) struct TwilioForm(Vec<(String, String)>);

impl TwilioForm {
    pub(super) fn field(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Check a Twilio webhook's `X-Twilio-Signature` (the provider's auth
/// token over the URL Engage gave Twilio and the sorted parameters).
pub(super) fn verify_twilio(
    s: &AppState,
    tenant: &str,
    provider: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<TwilioForm, ApiError> {
    let forbidden = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_signature",
            "the X-Twilio-Signature does not match",
        )
    };
    let Some(ProviderConfig::Twilio { auth_token, .. }) =
        providers::config(&s.store.read()?, tenant, provider, s.messaging.sealer())?
    else {
        return Err(forbidden());
    };
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let url = format!("{}{}", s.messaging.public_url(), uri);
    let expected = providers::twilio_signature(&auth_token, &url, &params);
    let given = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !engage_store::ids::constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return Err(forbidden());
    }
    Ok(TwilioForm(params))
}

/// Twilio's status callback: form-encoded and signed.
async fn twilio_report(
    State(s): State<AppState>,
    Path((tenant, provider)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    crate::wire::Body(body, ..): crate::wire::Body<ApiError>,
) -> Result<StatusCode, ApiError> {
    let form = verify_twilio(&s, &tenant, &provider, &uri, &headers, &body)?;
    let field = |name: &str| form.field(name);
    let (Some(sid), Some(status)) = (field("MessageSid"), field("MessageStatus")) else {
        return Err(ApiError::bad_request(
            "invalid_report",
            "MessageSid and MessageStatus are required",
        ));
    };
    let error = field("ErrorCode").map(|c| format!("twilio error {c}"));
    s.messaging
        .report(
            "twilio",
            &tenant,
            sid,
            providers::twilio_status(status),
            error,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct KannelReport {
    message: String,
    #[serde(rename = "type")]
    dlr_type: u32,
    reply: Option<String>,
    sig: String,
}

/// Kannel's `dlr-url` call: the message id and a signature Engage put in
/// the URL, and Kannel's DLR type and SMSC reply.
async fn kannel_report(
    State(s): State<AppState>,
    Path((tenant, provider)): Path<(String, String)>,
    Query(q): Query<KannelReport>,
) -> Result<StatusCode, ApiError> {
    let Some(ProviderConfig::Kannel { password, .. }) =
        providers::config(&s.store.read()?, &tenant, &provider, s.messaging.sealer())?
    else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_signature",
            "not a Kannel provider",
        ));
    };
    let expected = providers::kannel_signature(&password, &q.message);
    if !engage_store::ids::constant_time_eq(q.sig.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_signature",
            "the dlr-url signature does not match",
        ));
    }
    let status = providers::kannel_status(q.dlr_type);
    let error = status
        .is_failure()
        .then(|| format!("kannel dlr {}: {}", q.dlr_type, q.reply.unwrap_or_default()));
    s.messaging
        .report("kannel", &tenant, &q.message, status, error)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

impl From<PricingError> for ApiError {
    fn from(e: PricingError) -> ApiError {
        let message = e.to_string();
        let (status, code) = match e {
            PricingError::Ledger(l) => return l.into(),
            PricingError::Store(s) => return s.into(),
            PricingError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_price_list"),
            PricingError::NoPrice { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "no_price"),
            PricingError::InsufficientCredit { .. } => {
                (StatusCode::PAYMENT_REQUIRED, "insufficient_credit")
            }
        };
        ApiError::new(status, code, message)
    }
}

impl From<MessageError> for ApiError {
    fn from(e: MessageError) -> ApiError {
        let message = e.to_string();
        let (status, code) = match e {
            MessageError::Pricing(p) => return p.into(),
            MessageError::Plugin(p) => return p.into(),
            MessageError::Store(s) => return s.into(),
            MessageError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_message"),
            MessageError::InvalidNumber(_) => (StatusCode::BAD_REQUEST, "invalid_phone"),
            MessageError::TooManyRecipients => (StatusCode::BAD_REQUEST, "too_many_recipients"),
            MessageError::DuplicateReference(_) => (StatusCode::CONFLICT, "duplicate_reference"),
            MessageError::TooLong(_) => (StatusCode::BAD_REQUEST, "message_too_long"),
            MessageError::NoRoute(_) => (StatusCode::UNPROCESSABLE_ENTITY, "no_route"),
            MessageError::NotFound(_) => (StatusCode::NOT_FOUND, "message_not_found"),
            MessageError::NotCancellable(_) => (StatusCode::CONFLICT, "not_cancellable"),
            MessageError::Declined(_) => (StatusCode::CONFLICT, "declined"),
        };
        ApiError::new(status, code, message)
    }
}
