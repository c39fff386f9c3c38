//! `/v1/gateway/*`: the SMS gateway's accounts, phonebooks, keywords,
//! settings and inbound SMS, and `/v1/messaging/opt-outs`; plus the
//! providers' inbound-SMS webhooks under `/hooks`.

use crate::wire::{Path, Query};
use axum::extract::{Extension, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::{ApiError, AppState, RequestId};
use engage_messaging::address::normalize_phone;
use engage_messaging::gateway::accounts::{self, Changes, NewAccount};
use engage_messaging::gateway::inbound::{self, Inbound};
use engage_messaging::gateway::phonebook::{self, NewContact, NewGroup};
use engage_messaging::gateway::{self, GatewayError, Settings};
use engage_messaging::optouts;
use engage_messaging::providers::{self, ProviderConfig};
use engage_store::Tx;
use engage_store::ids::now_ms;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(show_settings, put_settings))
        .routes(routes!(create_account, list_accounts))
        .routes(routes!(show_account, edit_account, remove_account))
        .routes(routes!(rotate_token, revoke_token))
        .routes(routes!(add_contact, list_contacts))
        .routes(routes!(remove_contact))
        .routes(routes!(add_group, list_groups))
        .routes(routes!(remove_group))
        .routes(routes!(list_keywords))
        .routes(routes!(put_keyword, remove_keyword))
        .routes(routes!(list_incoming, receive))
        .routes(routes!(list_opt_outs))
        .routes(routes!(opt_out, opt_in, show_opt_out))
}

/// The providers' webhooks (their own formats, not the native API).
pub fn hooks() -> Router<AppState> {
    Router::new()
        .route(
            "/hooks/twilio/{tenant}/{provider}/inbound",
            post(twilio_inbound),
        )
        .route(
            "/hooks/kannel/{tenant}/{provider}/inbound",
            get(kannel_inbound).post(kannel_inbound),
        )
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> ApiError {
        let message = e.to_string();
        let (status, code) = match e {
            GatewayError::Store(s) => return s.into(),
            GatewayError::Pricing(p) => return p.into(),
            GatewayError::Message(m) => return m.into(),
            GatewayError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            GatewayError::Reserved(_) => (StatusCode::CONFLICT, "keyword_reserved"),
            GatewayError::NoAccount(_) => (StatusCode::NOT_FOUND, "account_not_found"),
            GatewayError::AccountExists(_) => (StatusCode::CONFLICT, "account_exists"),
            GatewayError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            GatewayError::Exists(_) => (StatusCode::CONFLICT, "already_exists"),
            GatewayError::KeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
        };
        ApiError::new(status, code, message)
    }
}

#[utoipa::path(
    get,
    path = "/v1/gateway/settings",
    operation_id = "getGatewaySettings",
    tag = "gateway",
    summary = "The tenant's gateway settings",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "Settings", body = Settings),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn show_settings(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<Settings>, ApiError> {
    Ok(Json(gateway::settings(&s.store.read()?, &tenant)?))
}

#[utoipa::path(
    put,
    path = "/v1/gateway/settings",
    operation_id = "putGatewaySettings",
    tag = "gateway",
    summary = "Replace the gateway settings",
    security(("tenantToken" = [])),
    params(crate::openapi::IdempotencyKey),
    request_body(content = Settings, content_type = "application/json"),
    responses(
        (status = 200, description = "Settings", body = Settings),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn put_settings(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let settings: Settings = m.json::<Settings>()?.validate()?;
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::OK, now_ms(), move |tx| {
        gateway::set_settings(tx, &t, &settings)?;
        Ok::<_, GatewayError>(settings.clone())
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/gateway/accounts",
    operation_id = "createGatewayAccount",
    tag = "gateway",
    summary = "Create a gateway account (token issued, webservices enabled)",
    security(("tenantToken" = [])),
    params(crate::openapi::IdempotencyKey),
    request_body(content = NewAccount, content_type = "application/json"),
    responses(
        (status = 201, description = "Account", body = accounts::Account),
        (status = 409, description = "error", body = crate::openapi::ErrorBody),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn create_account(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let n: NewAccount = m.json()?;
    let n = n.hashed().await?;
    let (t, now) = (tenant.clone(), now_ms());
    mutation::write(&s, &tenant, &m, StatusCode::CREATED, now, move |tx| {
        Ok::<_, GatewayError>(accounts::create(tx, &t, n.clone(), now)?.view())
    })
    .await
}

#[utoipa::path(
    get,
    path = "/v1/gateway/accounts",
    operation_id = "listGatewayAccounts",
    tag = "gateway",
    summary = "The tenant's gateway accounts",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "Accounts", body = AccountList),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn list_accounts(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<AccountList>, ApiError> {
    let accounts = accounts::list(&s.store.read()?, &tenant)?
        .iter()
        .map(accounts::Account::view)
        .collect();
    Ok(Json(AccountList { accounts }))
}

#[utoipa::path(
    get,
    path = "/v1/gateway/accounts/{username}",
    operation_id = "getGatewayAccount",
    tag = "gateway",
    summary = "A gateway account with its credit",
    security(("tenantToken" = [])),
    params(("username" = String, Path, description = "Gateway account username")),
    responses(
        (status = 200, description = "Account", body = accounts::Account),
        (status = 404, description = "error", body = crate::openapi::ErrorBody),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn show_account(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(username): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let snap = s.store.read()?;
    let a = accounts::get(&snap, &tenant, &username)?.ok_or(GatewayError::NoAccount(username))?;
    let (available, reserved) =
        engage_messaging::pricing::credit(&snap, &tenant, &a.credit_account())?;
    let mut v = a.view();
    v["credit"] = json!({
        "available": engage_messaging::pricing::to_units(available),
        "reserved": engage_messaging::pricing::to_units(reserved),
    });
    Ok(Json(v))
}

#[utoipa::path(
    patch,
    path = "/v1/gateway/accounts/{username}",
    operation_id = "editGatewayAccount",
    tag = "gateway",
    summary = "Change an account's profile, configuration, webservices access or ban",
    security(("tenantToken" = [])),
    params(("username" = String, Path, description = "Gateway account username"), crate::openapi::IdempotencyKey),
    request_body(content = Changes, content_type = "application/json"),
    responses(
        (status = 200, description = "Account", body = accounts::Account),
        (status = 404, description = "error", body = crate::openapi::ErrorBody),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn edit_account(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(username): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let changes: Changes = m.json()?;
    let changes = changes.hashed().await?;
    let (t, now) = (tenant.clone(), now_ms());
    mutation::write(&s, &tenant, &m, StatusCode::OK, now, move |tx| {
        let changes = changes.clone();
        Ok::<_, GatewayError>(
            accounts::update(tx, &t, &username, now, move |a| changes.apply(a))?.view(),
        )
    })
    .await
}

/// Set (or, with `None`, revoke) an account's webservices token.
async fn set_token(
    s: &AppState,
    tenant: String,
    username: String,
    m: &Mutation,
    token: Option<String>,
) -> Result<Response, ApiError> {
    let (t, now) = (tenant.clone(), now_ms());
    mutation::write(s, &tenant, m, StatusCode::OK, now, move |tx| {
        let a = accounts::set_token(tx, &t, &username, token.clone(), now)?;
        Ok::<_, GatewayError>(a.view())
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/gateway/accounts/{username}/token",
    operation_id = "rotateGatewayToken",
    tag = "gateway",
    summary = "Issue a new webservices token",
    security(("tenantToken" = [])),
    params(("username" = String, Path, description = "Gateway account username"), crate::openapi::IdempotencyKey),
    responses(
        (status = 404, description = "account_not_found", body = crate::openapi::ErrorBody),
        (status = 200, description = "Account", body = accounts::Account),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn rotate_token(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(username): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    set_token(&s, tenant, username, &m, Some(accounts::new_token())).await
}

#[utoipa::path(
    delete,
    path = "/v1/gateway/accounts/{username}/token",
    operation_id = "revokeGatewayToken",
    tag = "gateway",
    summary = "Revoke the webservices token (get_token then answers ERR 104)",
    security(("tenantToken" = [])),
    params(("username" = String, Path, description = "Gateway account username"), crate::openapi::IdempotencyKey),
    responses(
        (status = 404, description = "account_not_found", body = crate::openapi::ErrorBody),
        (status = 200, description = "Account", body = accounts::Account),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn revoke_token(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(username): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    set_token(&s, tenant, username, &m, None).await
}

/// The account must exist for its phonebook to be touched.
fn account_exists(
    src: &impl engage_store::Reader,
    tenant: &str,
    username: &str,
) -> Result<String, GatewayError> {
    accounts::get(src, tenant, username)?
        .map(|a| a.username)
        .ok_or_else(|| GatewayError::NoAccount(username.to_owned()))
}

#[utoipa::path(
    post,
    path = "/v1/gateway/accounts/{username}/contacts",
    operation_id = "addContact",
    tag = "gateway",
    summary = "Add a phonebook contact (groups by code)",
    security(("tenantToken" = [])),
    params(("username" = String, Path, description = "Gateway account username"), crate::openapi::IdempotencyKey),
    request_body(content = NewContact, content_type = "application/json"),
    responses(
        (status = 201, description = "Contact", body = phonebook::Contact),
        (status = 404, description = "error", body = crate::openapi::ErrorBody),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn add_contact(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(username): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let n: NewContact = m.json()?;
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::CREATED, now_ms(), move |tx| {
        let user = account_exists(tx, &t, &username)?;
        phonebook::add_contact(tx, &t, &user, n.clone())
    })
    .await
}

#[utoipa::path(
    get,
    path = "/v1/gateway/accounts/{username}/contacts",
    operation_id = "listContacts",
    tag = "gateway",
    summary = "The account's contacts",
    security(("tenantToken" = [])),
    params(("username" = String, Path, description = "Gateway account username")),
    responses(
        (status = 404, description = "account_not_found", body = crate::openapi::ErrorBody),
        (status = 200, description = "Contacts", body = ContactList),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn list_contacts(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(username): Path<String>,
) -> Result<Json<ContactList>, ApiError> {
    let snap = s.store.read()?;
    let user = account_exists(&snap, &tenant, &username)?;
    Ok(Json(ContactList {
        contacts: phonebook::contacts(&snap, &tenant, &user)?,
    }))
}

#[utoipa::path(
    post,
    path = "/v1/gateway/accounts/{username}/groups",
    operation_id = "addContactGroup",
    tag = "gateway",
    summary = "Add a phonebook group; `#CODE` sends to its members",
    security(("tenantToken" = [])),
    params(("username" = String, Path, description = "Gateway account username"), crate::openapi::IdempotencyKey),
    request_body(content = NewGroup, content_type = "application/json"),
    responses(
        (status = 404, description = "account_not_found", body = crate::openapi::ErrorBody),
        (status = 201, description = "Group", body = phonebook::Group),
        (status = 409, description = "error", body = crate::openapi::ErrorBody),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn add_group(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(username): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let n: NewGroup = m.json()?;
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::CREATED, now_ms(), move |tx| {
        let user = account_exists(tx, &t, &username)?;
        phonebook::add_group(tx, &t, &user, n.clone())
    })
    .await
}

#[utoipa::path(
    get,
    path = "/v1/gateway/accounts/{username}/groups",
    operation_id = "listContactGroups",
    tag = "gateway",
    summary = "The account's groups",
    security(("tenantToken" = [])),
    params(("username" = String, Path, description = "Gateway account username")),
    responses(
        (status = 404, description = "account_not_found", body = crate::openapi::ErrorBody),
        (status = 200, description = "Groups", body = GroupList),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn list_groups(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(username): Path<String>,
) -> Result<Json<GroupList>, ApiError> {
    let snap = s.store.read()?;
    let user = account_exists(&snap, &tenant, &username)?;
    Ok(Json(GroupList {
        groups: phonebook::groups(&snap, &tenant, &user)?,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/gateway/keywords",
    operation_id = "listKeywords",
    tag = "gateway",
    summary = "Registered inbound keywords",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "Keywords", body = KeywordList),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn list_keywords(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<KeywordList>, ApiError> {
    Ok(Json(KeywordList {
        keywords: inbound::keywords(&s.store.read()?, &tenant)?,
    }))
}

#[derive(Deserialize, Clone, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct KeywordRequest {
    account: String,
    reply: Option<String>,
}

#[utoipa::path(
    put,
    path = "/v1/gateway/keywords/{keyword}",
    operation_id = "putKeyword",
    tag = "gateway",
    summary = "Give a keyword (first word of an inbound SMS) to an account, with an optional reply",
    security(("tenantToken" = [])),
    params(("keyword" = String, Path, description = "1 to 32 letters, digits, - or _ (compared in upper case)", pattern = "^\\s*[\\w-]{1,32}\\s*$"), crate::openapi::IdempotencyKey),
    request_body(content = KeywordRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Keyword", body = inbound::Keyword),
        (status = 404, description = "account_not_found", body = crate::openapi::ErrorBody),
        (status = 400, description = "invalid_request", body = crate::openapi::ErrorBody),
        (status = 409, description = "keyword_reserved: a STOP / START / HELP word of the tenant's", body = crate::openapi::ErrorBody),
    ),
)]
async fn put_keyword(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(keyword): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let k: KeywordRequest = m.json()?;
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::OK, now_ms(), move |tx| {
        inbound::put_keyword(tx, &t, &keyword, &k.account, k.reply.clone())
    })
    .await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct IncomingQuery {
    /// Only ids above this one.
    after: Option<u64>,
    limit: Option<usize>,
    handled: Option<bool>,
}

#[utoipa::path(
    get,
    path = "/v1/gateway/incoming",
    operation_id = "listIncoming",
    tag = "gateway",
    summary = "Inbound SMS, newest first",
    security(("tenantToken" = [])),
    params(IncomingQuery),
    responses(
        (status = 200, description = "Incoming", body = IncomingList),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn list_incoming(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Query(q): Query<IncomingQuery>,
) -> Result<Json<IncomingList>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let list = inbound::incoming(
        &s.store.read()?,
        &tenant,
        q.after.unwrap_or(0),
        limit,
        |i| q.handled.is_none_or(|h| i.handled() == h),
    )?;
    Ok(Json(IncomingList { incoming: list }))
}

/// An inbound SMS handed over through the API (as a provider would).
#[utoipa::path(
    post,
    path = "/v1/gateway/incoming",
    operation_id = "receiveSms",
    tag = "gateway",
    summary = "Hand over an inbound SMS (as a provider would): keywords, STOP/START/HELP, inbox",
    security(("tenantToken" = [])),
    params(crate::openapi::IdempotencyKey),
    request_body(content = Inbound, content_type = "application/json"),
    responses(
        (status = 201, description = "Incoming", body = inbound::Incoming),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn receive(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Extension(rid): Extension<RequestId>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let sms: Inbound = m.json()?;
    let g = inbound::receive(&s.gateway, &tenant, sms, m.idem.clone(), now_ms(), &rid.0).await?;
    Ok(mutation::respond(g, StatusCode::CREATED))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct OptOutQuery {
    after: Option<String>,
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/v1/messaging/opt-outs",
    operation_id = "listOptOuts",
    tag = "gateway",
    summary = "Numbers opted out of marketing messages",
    security(("tenantToken" = [])),
    params(OptOutQuery),
    responses(
        (status = 200, description = "Opt-outs", body = OptOutPage),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn list_opt_outs(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Query(q): Query<OptOutQuery>,
) -> Result<Json<OptOutPage>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let list = optouts::list(&s.store.read()?, &tenant, q.after.as_deref(), limit)?;
    let next = (list.len() == limit)
        .then(|| list.last().map(|o| o.number.clone()))
        .flatten();
    Ok(Json(OptOutPage {
        opt_outs: list,
        next,
    }))
}

fn e164(number: &str) -> Result<String, ApiError> {
    normalize_phone(number).map_err(|e| ApiError::bad_request("invalid_phone", e.to_string()))
}

#[utoipa::path(
    get,
    path = "/v1/messaging/opt-outs/{number}",
    operation_id = "getOptOut",
    tag = "gateway",
    summary = "Whether a number opted out",
    security(("tenantToken" = [])),
    params(("number" = engage_messaging::address::Phone, Path, description = "The number (stored as E.164)")),
    responses(
        (status = 200, description = "Status", body = OptOutStatus),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn show_opt_out(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(number): Path<String>,
) -> Result<Json<OptOutStatus>, ApiError> {
    let n = e164(&number)?;
    let opted_out = optouts::contains(&s.store.read()?, &tenant, &n)?;
    Ok(Json(OptOutStatus {
        number: n,
        opted_out,
        changed: None,
    }))
}

#[utoipa::path(
    put,
    path = "/v1/messaging/opt-outs/{number}",
    operation_id = "optOut",
    tag = "gateway",
    summary = "Opt a number out of marketing messages",
    security(("tenantToken" = [])),
    params(("number" = engage_messaging::address::Phone, Path, description = "The number (stored as E.164)"), crate::openapi::IdempotencyKey),
    responses(
        (status = 200, description = "Status", body = OptOutStatus),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn opt_out(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(number): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let n = e164(&number)?;
    let (t, now) = (tenant.clone(), now_ms());
    mutation::write(&s, &tenant, &m, StatusCode::OK, now, move |tx| {
        let added = optouts::add(tx, &t, &n, "api", now)?;
        Ok::<_, engage_store::StoreError>(OptOutStatus {
            number: n.clone(),
            opted_out: true,
            changed: Some(added),
        })
    })
    .await
}

#[utoipa::path(
    delete,
    path = "/v1/messaging/opt-outs/{number}",
    operation_id = "optIn",
    tag = "gateway",
    summary = "Opt a number back in",
    security(("tenantToken" = [])),
    params(("number" = engage_messaging::address::Phone, Path, description = "The number (stored as E.164)"), crate::openapi::IdempotencyKey),
    responses(
        (status = 200, description = "Status", body = OptOutStatus),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn opt_in(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(number): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let n = e164(&number)?;
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::OK, now_ms(), move |tx| {
        let removed = optouts::remove(tx, &t, &n)?;
        Ok::<_, engage_store::StoreError>(OptOutStatus {
            number: n.clone(),
            opted_out: false,
            changed: Some(removed),
        })
    })
    .await
}

/// Twilio's incoming-message webhook (form-encoded, signed like status
/// callbacks); answered with empty TwiML, so Twilio sends nothing back.
async fn twilio_inbound(
    State(s): State<AppState>,
    Path((tenant, provider)): Path<(String, String)>,
    Extension(rid): Extension<RequestId>,
    uri: Uri,
    headers: HeaderMap,
    crate::wire::Body(body, ..): crate::wire::Body<ApiError>,
) -> Result<Response, ApiError> {
    let form = super::messages::verify_twilio(&s, &tenant, &provider, &uri, &headers, &body)?;
    let field = |name: &str| form.field(name).map(str::to_owned);
    let (Some(from), Some(text)) = (field("From"), field("Body")) else {
        return Err(ApiError::bad_request(
            "invalid_message",
            "From and Body are required",
        ));
    };
    // Twilio retries a webhook that failed: its MessageSid makes the retry
    // an idempotent replay.
    let idem = field("MessageSid").map(|sid| engage_store::idempotency::Call {
        key: format!("twilio-inbound:{provider}:{sid}"),
        fingerprint: engage_store::ids::sha256_hex(sid.as_bytes()),
    });
    let sms = Inbound {
        from,
        to: field("To").unwrap_or_default(),
        text,
        smsc: provider,
        source: "twilio".into(),
    };
    inbound::receive(&s.gateway, &tenant, sms, idem, now_ms(), &rid.0).await?;
    Ok((
        [(CONTENT_TYPE, "text/xml")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
    )
        .into_response())
}

#[derive(Deserialize)]
struct KannelInbound {
    from: String,
    #[serde(default)]
    to: String,
    text: String,
    #[serde(default)]
    smsc: String,
    sig: String,
}

/// Kannel's sms-service `get-url` for inbound SMS: the signature is the
/// provider's [`providers::kannel_inbound_signature`], fixed in the URL.
/// The body is empty so Kannel sends no reply (set `max-messages = 0` or
/// `omit-empty = true` in the sms-service group).
async fn kannel_inbound(
    State(s): State<AppState>,
    Path((tenant, provider)): Path<(String, String)>,
    Extension(rid): Extension<RequestId>,
    Query(q): Query<KannelInbound>,
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
    let expected = providers::kannel_inbound_signature(&password);
    if !engage_store::ids::constant_time_eq(q.sig.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_signature",
            "the sms-service signature does not match",
        ));
    }
    let sms = Inbound {
        from: q.from,
        to: q.to,
        text: q.text,
        smsc: if q.smsc.is_empty() { provider } else { q.smsc },
        source: "kannel".into(),
    };
    inbound::receive(&s.gateway, &tenant, sms, None, now_ms(), &rid.0).await?;
    Ok(StatusCode::OK)
}

#[utoipa::path(
    delete,
    path = "/v1/gateway/accounts/{username}",
    operation_id = "removeGatewayAccount",
    tag = "gateway",
    summary = "Remove an account and its phonebook (its credit stays in the ledger)",
    security(("tenantToken" = [])),
    params(("username" = String, Path, description = "The account's username"), crate::openapi::IdempotencyKey),
    responses(
        (status = 204, description = "removed"),
        (status = 404, description = "error", body = crate::openapi::ErrorBody),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn remove_account(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(username): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    mutation::removal(&s, &tenant, &m, move |tx: &mut Tx, t: &str| {
        accounts::remove(tx, t, &username)
    })
    .await
}

#[utoipa::path(
    delete,
    path = "/v1/gateway/accounts/{username}/contacts/{id}",
    operation_id = "removeContact",
    tag = "gateway",
    summary = "Remove a contact",
    security(("tenantToken" = [])),
    params(("username" = String, Path, description = "The account's username"), ("id" = u64, Path, description = "The contact's id"), crate::openapi::IdempotencyKey),
    responses(
        (status = 204, description = "removed"),
        (status = 404, description = "error", body = crate::openapi::ErrorBody),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn remove_contact(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path((username, id)): Path<(String, u64)>,
    m: Mutation,
) -> Result<Response, ApiError> {
    mutation::removal(&s, &tenant, &m, move |tx: &mut Tx, t: &str| {
        let user = account_exists(tx, t, &username)?;
        phonebook::remove_contact(tx, t, &user, id)
    })
    .await
}

#[utoipa::path(
    delete,
    path = "/v1/gateway/accounts/{username}/groups/{code}",
    operation_id = "removeContactGroup",
    tag = "gateway",
    summary = "Remove a group (its contacts stay)",
    security(("tenantToken" = [])),
    params(("username" = String, Path, description = "The account's username"), ("code" = String, Path, description = "The group's code"), crate::openapi::IdempotencyKey),
    responses(
        (status = 204, description = "removed"),
        (status = 404, description = "error", body = crate::openapi::ErrorBody),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn remove_group(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path((username, code)): Path<(String, String)>,
    m: Mutation,
) -> Result<Response, ApiError> {
    mutation::removal(&s, &tenant, &m, move |tx: &mut Tx, t: &str| {
        let user = account_exists(tx, t, &username)?;
        phonebook::remove_group(tx, t, &user, &code)
    })
    .await
}

#[utoipa::path(
    delete,
    path = "/v1/gateway/keywords/{keyword}",
    operation_id = "removeKeyword",
    tag = "gateway",
    summary = "Remove a keyword",
    security(("tenantToken" = [])),
    params(("keyword" = String, Path, description = "1 to 32 letters, digits, - or _ (compared in upper case)", pattern = "^\\s*[\\w-]{1,32}\\s*$"), crate::openapi::IdempotencyKey),
    responses(
        (status = 204, description = "removed"),
        (status = 404, description = "error", body = crate::openapi::ErrorBody),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn remove_keyword(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(keyword): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    mutation::removal(&s, &tenant, &m, move |tx: &mut Tx, t: &str| {
        inbound::remove_keyword(tx, t, &keyword)
    })
    .await
}

/// Gateway accounts (each as `GET /v1/gateway/accounts/{username}` shows it,
/// without its credit).
#[derive(serde::Serialize, utoipa::ToSchema)]
struct AccountList {
    #[schema(value_type = Vec<accounts::Account>)]
    accounts: Vec<Value>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct ContactList {
    contacts: Vec<phonebook::Contact>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct GroupList {
    groups: Vec<phonebook::Group>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct KeywordList {
    keywords: Vec<inbound::Keyword>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct IncomingList {
    incoming: Vec<inbound::Incoming>,
}

/// A page of opted-out numbers.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct OptOutPage {
    opt_outs: Vec<optouts::OptOut>,
    /// Pass as `after` for the next page; null on the last one.
    next: Option<String>,
}

/// Whether a number is opted out.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct OptOutStatus {
    /// E.164.
    number: String,
    opted_out: bool,
    /// Whether this call changed it (absent on a read).
    #[serde(skip_serializing_if = "Option::is_none")]
    changed: Option<bool>,
}
