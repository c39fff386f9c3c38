//! `/v1/gateway/*`: the SMS gateway's accounts, phonebooks, keywords,
//! settings and inbound SMS, and `/v1/messaging/opt-outs`; plus the
//! providers' inbound-SMS webhooks under `/hooks`.

use crate::wire::{Path, Query};
use axum::extract::{Extension, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

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

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/gateway/settings", get(show_settings).put(put_settings))
        .route(
            "/v1/gateway/accounts",
            post(create_account).get(list_accounts),
        )
        .route(
            "/v1/gateway/accounts/{username}",
            get(show_account)
                .patch(edit_account)
                .delete(mutation::removal(
                    |tx: &mut Tx, t: &str, username: &String| accounts::remove(tx, t, username),
                )),
        )
        .route(
            "/v1/gateway/accounts/{username}/token",
            post(rotate_token).delete(revoke_token),
        )
        .route(
            "/v1/gateway/accounts/{username}/contacts",
            post(add_contact).get(list_contacts),
        )
        .route(
            "/v1/gateway/accounts/{username}/contacts/{id}",
            delete(mutation::removal(
                |tx: &mut Tx, t: &str, (username, id): &(String, u64)| {
                    let user = account_exists(tx, t, username)?;
                    phonebook::remove_contact(tx, t, &user, *id)
                },
            )),
        )
        .route(
            "/v1/gateway/accounts/{username}/groups",
            post(add_group).get(list_groups),
        )
        .route(
            "/v1/gateway/accounts/{username}/groups/{code}",
            delete(mutation::removal(
                |tx: &mut Tx, t: &str, (username, code): &(String, String)| {
                    let user = account_exists(tx, t, username)?;
                    phonebook::remove_group(tx, t, &user, code)
                },
            )),
        )
        .route("/v1/gateway/keywords", get(list_keywords))
        .route(
            "/v1/gateway/keywords/{keyword}",
            put(put_keyword).delete(mutation::removal(
                |tx: &mut Tx, t: &str, keyword: &String| inbound::remove_keyword(tx, t, keyword),
            )),
        )
        .route("/v1/gateway/incoming", get(list_incoming).post(receive))
        .route("/v1/messaging/opt-outs", get(list_opt_outs))
        .route(
            "/v1/messaging/opt-outs/{number}",
            put(opt_out).delete(opt_in).get(show_opt_out),
        )
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
            GatewayError::NoAccount(_) => (StatusCode::NOT_FOUND, "account_not_found"),
            GatewayError::AccountExists(_) => (StatusCode::CONFLICT, "account_exists"),
            GatewayError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            GatewayError::Exists(_) => (StatusCode::CONFLICT, "already_exists"),
            GatewayError::KeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
        };
        ApiError::new(status, code, message)
    }
}

async fn show_settings(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<Settings>, ApiError> {
    Ok(Json(gateway::settings(&s.store.read()?, &tenant)?))
}

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

async fn list_accounts(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let list: Vec<Value> = accounts::list(&s.store.read()?, &tenant)?
        .iter()
        .map(accounts::Account::view)
        .collect();
    Ok(Json(json!({ "accounts": list })))
}

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

async fn rotate_token(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(username): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    set_token(&s, tenant, username, &m, Some(accounts::new_token())).await
}

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

async fn list_contacts(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(username): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let snap = s.store.read()?;
    let user = account_exists(&snap, &tenant, &username)?;
    Ok(Json(
        json!({ "contacts": phonebook::contacts(&snap, &tenant, &user)? }),
    ))
}

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

async fn list_groups(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(username): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let snap = s.store.read()?;
    let user = account_exists(&snap, &tenant, &username)?;
    Ok(Json(
        json!({ "groups": phonebook::groups(&snap, &tenant, &user)? }),
    ))
}

async fn list_keywords(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "keywords": inbound::keywords(&s.store.read()?, &tenant)? }),
    ))
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct KeywordRequest {
    account: String,
    reply: Option<String>,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncomingQuery {
    /// Only ids above this one.
    after: Option<u64>,
    limit: Option<usize>,
    handled: Option<bool>,
}

async fn list_incoming(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Query(q): Query<IncomingQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let list = inbound::incoming(
        &s.store.read()?,
        &tenant,
        q.after.unwrap_or(0),
        limit,
        |i| q.handled.is_none_or(|h| i.handled() == h),
    )?;
    Ok(Json(json!({ "incoming": list })))
}

/// An inbound SMS handed over through the API (as a provider would).
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptOutQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_opt_outs(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Query(q): Query<OptOutQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let list = optouts::list(&s.store.read()?, &tenant, q.after.as_deref(), limit)?;
    let next = (list.len() == limit)
        .then(|| list.last().map(|o| o.number.clone()))
        .flatten();
    Ok(Json(json!({ "opt_outs": list, "next": next })))
}

fn e164(number: &str) -> Result<String, ApiError> {
    normalize_phone(number).map_err(|e| ApiError::bad_request("invalid_phone", e.to_string()))
}

async fn show_opt_out(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(number): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let n = e164(&number)?;
    let opted_out = optouts::contains(&s.store.read()?, &tenant, &n)?;
    Ok(Json(json!({ "number": n, "opted_out": opted_out })))
}

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
        Ok::<_, engage_store::StoreError>(
            json!({ "number": n, "opted_out": true, "changed": added }),
        )
    })
    .await
}

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
        Ok::<_, engage_store::StoreError>(
            json!({ "number": n, "opted_out": false, "changed": removed }),
        )
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
