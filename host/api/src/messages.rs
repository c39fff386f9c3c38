//! `/v1/messages`, `/v1/providers`, `/v1/messaging/*` and the providers'
//! delivery-report webhooks under `/hooks`.

use crate::wire::{Path, Query};
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::{ApiError, AppState, RequestId};
use engage_messaging::pricing::{self, PriceList, PricingError};
use engage_messaging::providers::{self, ProviderConfig};
use engage_messaging::{self as messaging, Message, MessageError, SendRequest, Status};
use engage_store::ids::now_ms;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send, list))
        .routes(routes!(quote))
        .routes(routes!(show))
        .routes(routes!(cancel))
        .routes(routes!(list_providers))
        .routes(routes!(put_provider, show_provider))
        .routes(routes!(put_prices, show_prices))
        .routes(routes!(show_credit, top_up))
}

/// The providers' webhooks (their own formats, not the native API).
pub fn hooks() -> Router<AppState> {
    Router::new()
        .route("/hooks/twilio/{tenant}/{provider}", post(twilio_report))
        .route(
            "/hooks/kannel/{tenant}/{provider}",
            get(kannel_report).post(kannel_report),
        )
}

#[utoipa::path(
    post,
    path = "/v1/messages",
    operation_id = "sendMessage",
    tag = "messaging",
    summary = "Send a message to up to 50 numbers: rendered by the template binding, planned by the route binding, credit reserved, queued durably",
    security(("tenantToken" = [])),
    params(crate::openapi::IdempotencyKey),
    request_body(content = SendRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: one message per number", body = messaging::Accepted),
        (status = 400, description = "invalid_message, invalid_phone, too_many_recipients, message_too_long, invalid_json", body = crate::openapi::ErrorBody),
        (status = 402, description = "insufficient_credit (nothing queued)", body = crate::openapi::ErrorBody),
        (status = 409, description = "duplicate_reference", body = crate::openapi::ErrorBody),
        (status = 422, description = "no_route, no_price", body = crate::openapi::ErrorBody),
        (status = 502, description = "plugin_failed, plugin_rejected", body = crate::openapi::ErrorBody),
    ),
)]
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

#[utoipa::path(
    post,
    path = "/v1/messages/quote",
    operation_id = "quoteMessage",
    tag = "messaging",
    summary = "What sending would cost: segments, encoding, price per recipient, what would be reserved",
    security(("tenantToken" = [])),
    params(crate::openapi::IdempotencyKey),
    request_body(content = SendRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The quote", body = messaging::Quote),
        (status = 400, description = "invalid_message, invalid_phone, too_many_recipients, message_too_long, invalid_json", body = crate::openapi::ErrorBody),
        (status = 422, description = "no_route, no_price", body = crate::openapi::ErrorBody),
    ),
)]
async fn quote(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Extension(rid): Extension<RequestId>,
    m: Mutation,
) -> Result<Json<messaging::Quote>, ApiError> {
    let req: SendRequest = m.json()?;
    Ok(Json(s.messaging.quote(&tenant, &req, now_ms(), &rid.0)?))
}

#[utoipa::path(
    get,
    path = "/v1/messages/{id}",
    operation_id = "getMessage",
    tag = "messaging",
    summary = "A message with every attempt and status",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "The message", body = Message),
        (status = 404, description = "message_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn show(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Message>, ApiError> {
    messaging::get(&s.store.read()?, &tenant, &id)?
        .map(Json)
        .ok_or_else(|| MessageError::NotFound(id).into())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    reference: Option<String>,
    status: Option<Status>,
    #[param(value_type = Option<engage_messaging::address::Recipient>)]
    to: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/v1/messages",
    operation_id = "listMessages",
    tag = "messaging",
    summary = "List messages, filtered",
    security(("tenantToken" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page", body = MessagePage),
    ),
)]
async fn list(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let snap = s.store.read()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let to = match &q.to {
        Some(n) if n.contains('@') => {
            Some(engage_messaging::address::normalize_email(n).map_err(|_| {
                ApiError::from(MessageError::InvalidEmail(n.chars().take(64).collect()))
            })?)
        }
        Some(n) => Some(engage_messaging::address::normalize_phone(n).map_err(|_| {
            ApiError::from(MessageError::InvalidNumber(n.chars().take(32).collect()))
        })?),
        None => None,
    };
    let wanted = |m: &engage_messaging::Message| {
        q.status.is_none_or(|st| m.status == st) && to.as_deref().is_none_or(|t| m.to == t)
    };
    let messages = match &q.reference {
        // A reference names a few messages (one send): every filter applies.
        Some(r) => messaging::by_reference(&snap, &tenant, r)?
            .into_iter()
            .filter(|m| wanted(m) && q.after.as_deref().is_none_or(|a| m.id.as_str() > a))
            .take(limit)
            .collect(),
        None => messaging::list(&snap, &tenant, wanted, q.after.as_deref(), limit)?,
    };
    let next = (messages.len() == limit)
        .then(|| messages.last().map(|m| m.id.clone()))
        .flatten();
    Ok(Json(MessagePage {
        messages,
        next_after: next,
    }))
}

/// A page of messages, newest first.
#[derive(Serialize, utoipa::ToSchema)]
struct MessagePage {
    messages: Vec<Message>,
    /// Pass as `after` for the next page; null on the last one.
    next_after: Option<String>,
}

/// What `PUT /v1/providers/{name}` reads: the provider, and how hard
/// Engage may drive it (`max_in_flight`, `max_per_s`) beside its fields.
/// (The schema is each kind of provider's object with the limits' fields
/// beside its own: the body is one flat object.)
struct ProviderRequest;

impl utoipa::PartialSchema for ProviderRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::Schema;
        let limits = match <providers::Limits as utoipa::PartialSchema>::schema() {
            RefOr::T(Schema::Object(o)) => o.properties,
            _ => Default::default(),
        };
        let mut schema = <ProviderConfig as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::OneOf(one_of)) = &mut schema {
            for kind in &mut one_of.items {
                if let RefOr::T(Schema::Object(o)) = kind {
                    o.properties
                        .extend(limits.iter().map(|(k, v)| (k.clone(), v.clone())));
                    // The provider's fields and the limits: nothing else.
                    o.additional_properties = Some(Box::new(
                        utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                    ));
                }
            }
        }
        schema
    }
}

impl utoipa::ToSchema for ProviderRequest {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <ProviderConfig as utoipa::ToSchema>::schemas(schemas);
        <providers::Limits as utoipa::ToSchema>::schemas(schemas);
    }
}

/// A provider, its secrets redacted.
#[derive(Serialize, utoipa::ToSchema)]
struct ProviderView {
    name: String,
    /// The provider's settings with every secret replaced by `***`.
    #[schema(value_type = Object)]
    provider: Value,
    limits: providers::Limits,
    /// Where the provider posts inbound messages (Twilio, Kannel).
    #[serde(skip_serializing_if = "Option::is_none")]
    inbound_url: Option<String>,
    /// Where the mail system posts bounces and complaints (SMTP): the
    /// whole message as received, `POST`ed as `message/rfc822`.
    #[serde(skip_serializing_if = "Option::is_none")]
    bounce_url: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ProviderList {
    providers: Vec<ProviderView>,
}

/// A sending account's credit, in units and in millionths.
#[derive(Serialize, utoipa::ToSchema)]
struct CreditView {
    account: String,
    available: f64,
    reserved: f64,
    available_micros: i64,
    reserved_micros: i64,
}

#[utoipa::path(
    post,
    path = "/v1/messages/{id}/cancel",
    operation_id = "cancelMessage",
    tag = "messaging",
    summary = "Cancel a scheduled message; its reserved credit is released",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "The cancelled message (status rejected)", body = Message),
        (status = 404, description = "message_not_found", body = crate::openapi::ErrorBody),
        (status = 409, description = "not_cancellable", body = crate::openapi::ErrorBody),
    ),
)]
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

#[utoipa::path(
    put,
    path = "/v1/providers/{name}",
    operation_id = "putProvider",
    tag = "messaging",
    summary = "Define or replace a provider the route plugin can name",
    security(("tenantToken" = [])),
    params(("name" = String, Path, description = "1 to 64 letters, digits, `-` or `_`", pattern = "^[A-Za-z0-9_-]{1,64}$"), crate::openapi::IdempotencyKey),
    request_body(content = ProviderRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The provider, secrets redacted", body = ProviderView),
        (status = 400, description = "invalid_name, invalid_limits, invalid_provider, invalid_json", body = crate::openapi::ErrorBody),
    ),
)]
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
    config
        .check()
        .map_err(|e| ApiError::bad_request("invalid_provider", e))?;
    let (t, now) = (tenant.clone(), now_ms());
    let sealer = s.messaging.sealer().clone();
    mutation::write(&s, &tenant, &m, StatusCode::OK, now, move |tx| {
        providers::put(tx, &t, &name, &config, &limits, &sealer)?;
        Ok::<_, engage_store::StoreError>(provider_view(&name, &config, &limits))
    })
    .await
}

fn provider_view(name: &str, c: &ProviderConfig, l: &providers::Limits) -> ProviderView {
    ProviderView {
        name: name.to_owned(),
        provider: c.redacted(),
        limits: *l,
        inbound_url: None,
        bounce_url: None,
    }
}

#[utoipa::path(
    get,
    path = "/v1/providers/{name}",
    operation_id = "getProvider",
    tag = "messaging",
    summary = "A provider (secrets redacted); `console` always exists",
    security(("tenantToken" = [])),
    params(("name" = String, Path, description = "1 to 64 letters, digits, `-` or `_`", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "The provider", body = ProviderView),
        (status = 404, description = "provider_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn show_provider(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ProviderView>, ApiError> {
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
                ProviderConfig::Twilio { .. } => v.inbound_url = Some(base),
                ProviderConfig::Kannel { password, .. } => {
                    let sig = providers::kannel_inbound_signature(password);
                    v.inbound_url = Some(format!("{base}?from=%p&to=%P&text=%a&smsc=%i&sig={sig}"));
                }
                ProviderConfig::Smtp { .. } => {
                    let sig = engage_messaging::email::bounces::webhook_signature(
                        s.messaging.sealer(),
                        &tenant,
                        &name,
                    );
                    v.bounce_url = Some(format!(
                        "{}/hooks/smtp/{tenant}/{name}/bounces?sig={sig}",
                        s.messaging.public_url()
                    ));
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

#[utoipa::path(
    get,
    path = "/v1/providers",
    operation_id = "listProviders",
    tag = "messaging",
    summary = "The tenant's providers (secrets redacted)",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "Providers", body = ProviderList),
    ),
)]
async fn list_providers(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<ProviderList>, ApiError> {
    let snap = s.store.read()?;
    let mut list = Vec::new();
    for (name, c) in providers::list(&snap, &tenant, s.messaging.sealer())? {
        let l = providers::limits(&snap, &tenant, &name)?;
        list.push(provider_view(&name, &c, &l));
    }
    Ok(Json(ProviderList { providers: list }))
}

#[utoipa::path(
    put,
    path = "/v1/messaging/prices",
    operation_id = "putPrices",
    tag = "messaging",
    summary = "Set the price list; with one, every message is paid from credit",
    security(("tenantToken" = [])),
    params(crate::openapi::IdempotencyKey),
    request_body(content = PriceList, content_type = "application/json"),
    responses(
        (status = 200, description = "The price list", body = PriceList),
        (status = 400, description = "invalid_price_list, invalid_json", body = crate::openapi::ErrorBody),
    ),
)]
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

#[utoipa::path(
    get,
    path = "/v1/messaging/prices",
    operation_id = "getPrices",
    tag = "messaging",
    summary = "The price list",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "The price list", body = PriceList),
        (status = 404, description = "no_price_list (messages are free)", body = crate::openapi::ErrorBody),
    ),
)]
async fn show_prices(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<PriceList>, ApiError> {
    match pricing::price_list(&s.store.read()?, &tenant)? {
        Some(l) => Ok(Json(l)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_price_list",
            "no price list: messages are free; set one with PUT /v1/messaging/prices",
        )),
    }
}

fn credit_view(account: &str, (available, reserved): (i64, i64)) -> CreditView {
    CreditView {
        account: account.to_owned(),
        available: pricing::to_units(available),
        reserved: pricing::to_units(reserved),
        available_micros: available,
        reserved_micros: reserved,
    }
}

#[utoipa::path(
    get,
    path = "/v1/messaging/accounts/{account}/credit",
    operation_id = "getCredit",
    tag = "messaging",
    summary = "A sending account's available and reserved credit",
    security(("tenantToken" = [])),
    params(("account" = String, Path, description = "Sending account, `default` unless named")),
    responses(
        (status = 200, description = "Credit", body = CreditView),
    ),
)]
async fn show_credit(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(account): Path<String>,
) -> Result<Json<CreditView>, ApiError> {
    let c = pricing::credit(&s.store.read()?, &tenant, &account)?;
    Ok(Json(credit_view(&account, c)))
}

/// A top-up's `amount` as the server reads it: it moves a whole number of
/// micro-units, 1 to 10^12 either way.
fn top_up_amount() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
    // Half a micro-unit rounds to one: the smallest amount that moves.
    let side = |min: f64, max: f64| {
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .minimum(Some(min))
            .maximum(Some(max))
    };
    Schema::OneOf(
        OneOfBuilder::new()
            .item(side(0.000_000_5, 1_000_000.0))
            .item(side(-1_000_000.0, -0.000_000_5))
            .build(),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TopUp {
    /// Currency units, to the millionth (at most 1,000,000 either way, and
    /// not less than a millionth); negative takes credit back.
    #[schema(schema_with = top_up_amount)]
    amount: f64,
    reference: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/messaging/accounts/{account}/credit",
    operation_id = "topUpCredit",
    tag = "messaging",
    summary = "Add credit (negative takes it back, never below zero); a ledger entry",
    security(("tenantToken" = [])),
    params(("account" = engage_store::ids::ClientId, Path, description = "Sending account"), crate::openapi::IdempotencyKey),
    request_body(content = TopUp, content_type = "application/json"),
    responses(
        (status = 200, description = "Credit", body = CreditView),
        (status = 400, description = "invalid_account, invalid_amount", body = crate::openapi::ErrorBody),
        (status = 409, description = "insufficient_balance", body = crate::openapi::ErrorBody),
    ),
)]
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
            MessageError::InvalidEmail(_) => (StatusCode::BAD_REQUEST, "invalid_email"),
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
