//! The Attentive-compatible API under `/attentive` (seed 002): subscribe,
//! eligibility, unsubscribe, the legacy message send, and the calls that
//! tell Engage what a user did (custom events, which are actions), who
//! they are (identifiers) and what they are like (custom attributes).
//! Translation only, over [`engage_domain::audiences`], [`engage_messaging`],
//! [`engage_domain::actions`], [`engage_domain::players`] and [`engage_domain::social`].
//!
//! Attentive names a user by phone, e-mail or `externalIdentifiers`; an
//! Engage player is found by `clientUserId` (the player's id), then by a
//! phone or e-mail identity linked to a player (through
//! `identity-resolution/user-identifiers` or `/v1`).
//!
//! `Authorization: Bearer` carries the tenant's API key (what an Attentive
//! app's key is to its clients) or a tenant access token. Errors are
//! `{"errors":[{"code","message"}]}` with a 4xx status.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::mutation::{NotKept, fresh_or_kept, guarded_json, mark_replayed, vendor_answer};
use crate::wire::{Body, BodyError};
use crate::{AppState, RequestId};
use engage_domain::actions::{self, ActionError, ActionRequest};
use engage_domain::audiences::subscriptions::{self, Person, Subscription, SubscriptionError};
use engage_domain::players::{self, PlayerError, Profile};
use engage_domain::social::{self, Identity, SocialError};
use engage_messaging::{Kind, MessageError, SendRequest, Status};
use engage_store::ids::{now_ms, sha256_hex};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/attentive/v1/subscriptions",
            post(subscribe).get(eligibility),
        )
        .route("/attentive/v1/subscriptions/unsubscribe", post(unsubscribe))
        .route("/attentive/v1/subscriptions/messages", post(message))
        .route("/attentive/v1/me", get(me))
        .route("/attentive/v1/events/custom", post(custom_event))
        .route("/attentive/v1/attributes/custom", post(custom_attributes))
        .route(
            "/attentive/v1/identity-resolution/user-identifiers",
            post(identify),
        )
}

/// An Attentive-style error answer.
struct AttentiveError(StatusCode, &'static str, String);

/// A path or method under `/attentive` that Engage does not serve.
pub fn not_served() -> Response {
    AttentiveError(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "no such endpoint (Engage serves v1/me, v1/subscriptions, v1/subscriptions/unsubscribe, v1/subscriptions/messages, v1/events/custom, v1/attributes/custom and v1/identity-resolution/user-identifiers)".into(),
    )
    .into_response()
}

impl From<BodyError> for AttentiveError {
    fn from(e: BodyError) -> AttentiveError {
        AttentiveError(e.status, "INVALID_REQUEST", e.message)
    }
}

impl IntoResponse for AttentiveError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({ "errors": [ { "code": self.1, "message": self.2 } ] })),
        )
            .into_response()
    }
}

impl From<SubscriptionError> for AttentiveError {
    fn from(e: SubscriptionError) -> Self {
        match e {
            SubscriptionError::Store(s) => s.into(),
            SubscriptionError::NoSource(_) => AttentiveError(
                StatusCode::BAD_REQUEST,
                "INVALID_SIGN_UP_SOURCE",
                e.to_string(),
            ),
            SubscriptionError::Invalid(m) => {
                AttentiveError(StatusCode::BAD_REQUEST, "INVALID_REQUEST", m)
            }
        }
    }
}

impl From<engage_store::StoreError> for AttentiveError {
    fn from(e: engage_store::StoreError) -> Self {
        tracing::error!(error = %e, "attentive");
        AttentiveError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "an internal error occurred; it has been logged".into(),
        )
    }
}

/// The tenant of the bearer credential: its API key or an access token.
struct Tenant(String);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = AttentiveError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, AttentiveError> {
        let denied = || {
            AttentiveError(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "Authorization: Bearer <API key or access token> is required".into(),
            )
        };
        crate::auth::bearer_key_tenant_throttled(parts, &s.store.read()?, s)?
            .map(Tenant)
            .ok_or_else(denied)
    }
}

/// A JSON body, or Attentive's error for a malformed one.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, AttentiveError> {
    serde_json::from_slice(bytes).map_err(|e| {
        AttentiveError(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            format!("the body is not the expected JSON: {e}"),
        )
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscribeRequest {
    user: Person,
    sign_up_source_id: Option<String>,
}

async fn subscribe(
    Tenant(tenant): Tenant,
    State(s): State<AppState>,
    Body(raw, idem, _): Body<AttentiveError>,
) -> Result<Response, AttentiveError> {
    let req: SubscribeRequest = body(&raw)?;
    let Some(source) = req.sign_up_source_id.filter(|s| !s.is_empty()) else {
        return Err(AttentiveError(
            StatusCode::BAD_REQUEST,
            "INVALID_SIGN_UP_SOURCE",
            "signUpSourceId is required".into(),
        ));
    };
    let (t, person, now) = (tenant.clone(), req.user.clone(), now_ms());
    let g = guarded_json(&s, &tenant, idem, StatusCode::OK, move |tx| {
        let done = subscriptions::subscribe(tx, &t, &person, &source, now)?;
        let responses: Vec<Value> = done
            .into_iter()
            .map(|(sub, status)| json!({ "subscription": sub, "subscriptionCreationStatus": status }))
            .collect();
        Ok::<_, AttentiveError>(json!({ "user": person, "subscriptionResponses": responses }))
    })
    .await?;
    vendor_answer(g, StatusCode::OK, reused)
}

async fn eligibility(
    Tenant(tenant): Tenant,
    State(s): State<AppState>,
    Query(person): Query<Person>,
) -> Result<Json<Value>, AttentiveError> {
    let list = subscriptions::eligibility(&s.store.read()?, &tenant, &person)?;
    let items: Vec<Value> = list
        .into_iter()
        .map(|(sub, ok)| json!({ "subscription": sub, "eligibility": { "isEligible": ok } }))
        .collect();
    Ok(Json(json!({ "subscriptionEligibilities": items })))
}

#[derive(Deserialize)]
struct UnsubscribeRequest {
    user: Person,
    subscriptions: Option<Vec<Subscription>>,
}

async fn unsubscribe(
    Tenant(tenant): Tenant,
    State(s): State<AppState>,
    Body(raw, idem, _): Body<AttentiveError>,
) -> Result<Response, AttentiveError> {
    let req: UnsubscribeRequest = body(&raw)?;
    let (t, person, which, now) = (
        tenant.clone(),
        req.user.clone(),
        req.subscriptions,
        now_ms(),
    );
    let g = guarded_json(&s, &tenant, idem, StatusCode::OK, move |tx| {
        let done = subscriptions::unsubscribe(tx, &t, &person, which.as_deref(), now)?;
        let responses: Vec<Value> = done
            .into_iter()
            .map(
                |(sub, status)| json!({ "subscription": sub, "subscriptionUnsubscribeStatus": status }),
            )
            .collect();
        Ok::<_, AttentiveError>(json!({ "user": person, "subscriptionResponses": responses }))
    })
    .await?;
    vendor_answer(g, StatusCode::OK, reused)
}

#[derive(Deserialize)]
struct MessageRequest {
    to: String,
    body: String,
}

/// The legacy message API: a marketing SMS to one subscriber. A number
/// that unsubscribed or said STOP gets nothing (`RECIPIENT_OPTED_OUT`).
async fn message(
    Tenant(tenant): Tenant,
    State(s): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Body(raw, idem, _): Body<AttentiveError>,
) -> Result<Response, AttentiveError> {
    let req: MessageRequest = body(&raw)?;
    let to = subscriptions::normalize(&req.to)?;
    let send = SendRequest {
        to: vec![to.clone()],
        body: Some(req.body.clone()),
        kind: Kind::Marketing,
        ..SendRequest::default()
    };
    let accepted = s
        .messaging
        .send(&tenant, send, idem, now_ms(), &rid.0)
        .await
        .map_err(|e| match e {
            MessageError::Store(s) => s.into(),
            e => AttentiveError(StatusCode::BAD_REQUEST, "INVALID_REQUEST", e.to_string()),
        })?;
    let (accepted, again) = fresh_or_kept(accepted).map_err(not_kept)?;
    let refused = accepted
        .messages
        .iter()
        .any(|m| m.status == Status::Rejected && m.error.is_some());
    if refused {
        return Err(AttentiveError(
            StatusCode::BAD_REQUEST,
            "RECIPIENT_OPTED_OUT",
            format!("{to} unsubscribed from marketing text messages"),
        ));
    }
    let resp = Json(json!({
        "type": "v1",
        "to": to,
        "body": req.body,
        "skipFatigue": true,
        "createShortLink": false,
        "addSubscriber": "true",
    }))
    .into_response();
    Ok(if again { mark_replayed(resp) } else { resp })
}

fn reused() -> AttentiveError {
    AttentiveError(
        StatusCode::CONFLICT,
        "CONFLICT",
        crate::mutation::KEY_REUSED.into(),
    )
}

fn not_kept(e: NotKept) -> AttentiveError {
    match e {
        NotKept::Reused => reused(),
        NotKept::Unreadable(m) => {
            tracing::error!(error = %m, "a kept answer cannot be read");
            AttentiveError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "an internal error occurred; it has been logged".into(),
            )
        }
    }
}

/// `GET /me`: who the credential belongs to.
async fn me(Tenant(tenant): Tenant) -> Json<Value> {
    Json(json!({
        "applicationName": "Engage",
        "companyName": tenant,
        "companyId": tenant,
        "attentiveDomainName": Value::Null,
        "contactEmail": Value::Null,
    }))
}

/// Attentive's namespaced identifiers of a user.
#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct ExternalIdentifiers {
    client_user_id: Option<String>,
    #[serde(default)]
    custom_identifiers: Vec<CustomIdentifier>,
}

#[derive(Deserialize, Clone)]
struct CustomIdentifier {
    name: String,
    value: String,
}

/// The user of an event or attribute call.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventUser {
    phone: Option<String>,
    email: Option<String>,
    #[serde(default)]
    external_identifiers: ExternalIdentifiers,
}

fn not_found(what: &str) -> AttentiveError {
    AttentiveError(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!(
            "no player is {what}: send externalIdentifiers.clientUserId (the player's id), or link the phone or email to a player first (identity-resolution/user-identifiers)"
        ),
    )
}

/// The identities that may name the user, most specific first.
fn candidates(u: &EventUser) -> Result<Vec<Identity>, AttentiveError> {
    let mut out = Vec::new();
    if let Some(id) = u.external_identifiers.client_user_id.as_deref() {
        out.push(Identity {
            mode: social::PLAYER_MODE.into(),
            id: id.to_owned(),
        });
    }
    for c in &u.external_identifiers.custom_identifiers {
        out.push(Identity {
            mode: c.name.clone(),
            id: c.value.clone(),
        });
    }
    if let Some(phone) = u.phone.as_deref() {
        out.push(Identity {
            mode: "phone".into(),
            id: subscriptions::normalize(phone)?,
        });
    }
    if let Some(email) = u.email.as_deref() {
        out.push(Identity {
            mode: "email".into(),
            id: email.trim().to_ascii_lowercase(),
        });
    }
    if out.is_empty() {
        return Err(AttentiveError(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "user needs a phone, an email or externalIdentifiers".into(),
        ));
    }
    Ok(out)
}

/// The player an event's user is.
fn player_of(s: &AppState, tenant: &str, u: &EventUser) -> Result<String, AttentiveError> {
    let ids = candidates(u)?;
    social::resolve_first(&s.store.read()?, tenant, &ids)?
        .ok_or_else(|| not_found("named by this user"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustomEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    properties: serde_json::Map<String, Value>,
    external_event_id: Option<String>,
    user: EventUser,
}

/// `POST /events/custom`: the user did something; it is the player's
/// action named by the event's `type`, with its `properties` as the
/// action's parameters. `externalEventId` makes a retried event count
/// once. An event no rule knows has no effect (as Attentive accepts any).
async fn custom_event(
    Tenant(tenant): Tenant,
    State(s): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Body(raw, header_idem, _): Body<AttentiveError>,
) -> Result<StatusCode, AttentiveError> {
    let ev: CustomEvent = body(&raw)?;
    if ev.kind.trim().is_empty() {
        return Err(AttentiveError(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "type is required".into(),
        ));
    }
    let player = player_of(&s, &tenant, &ev.user)?;
    let req = ActionRequest {
        player,
        action: ev.kind.clone(),
        params: ev.properties.into_iter().collect(),
        url: None,
    };
    // The client's Idempotency-Key; else the event's own id.
    let idem = header_idem.or(ev
        .external_event_id
        .map(|id| engage_store::idempotency::Call {
            key: format!("attentive-event:{id}"),
            fingerprint: sha256_hex(&raw),
        }));
    let mode = actions::Mode {
        dry_run: false,
        idem,
    };
    match actions::perform(&s.plugins, &s.store, &tenant, &req, now_ms(), &rid.0, mode).await {
        Ok(engage_store::idempotency::Guarded::Conflict) => Err(AttentiveError(
            StatusCode::CONFLICT,
            "CONFLICT",
            "externalEventId was used for another event".into(),
        )),
        Ok(_) | Err(ActionError::UnknownAction(_)) => Ok(StatusCode::OK),
        Err(ActionError::PlayerNotFound(_)) => Err(not_found("named by this user")),
        Err(ActionError::Store(e)) => Err(e.into()),
        Err(e) => Err(AttentiveError(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            e.to_string(),
        )),
    }
}

#[derive(Deserialize)]
struct CustomAttributes {
    properties: std::collections::BTreeMap<String, Value>,
    user: EventUser,
}

/// `POST /attributes/custom`: merged into the player's attributes.
async fn custom_attributes(
    Tenant(tenant): Tenant,
    State(s): State<AppState>,
    Body(raw, idem, _): Body<AttentiveError>,
) -> Result<Response, AttentiveError> {
    let req: CustomAttributes = body(&raw)?;
    let player = player_of(&s, &tenant, &req.user)?;
    let profile = Profile {
        attributes: Some(req.properties),
        ..Profile::default()
    };
    let (t, now) = (tenant.clone(), now_ms());
    let g = guarded_json(&s, &tenant, idem, StatusCode::OK, move |tx| {
        players::update(tx, &t, &player, profile.clone(), now).map_err(|e| match e {
            PlayerError::Store(e) => e.into(),
            PlayerError::NotFound(_) => not_found("named by this user"),
            e => AttentiveError(StatusCode::BAD_REQUEST, "INVALID_REQUEST", e.to_string()),
        })?;
        Ok::<_, AttentiveError>(Value::Null)
    })
    .await?;
    vendor_answer(g, StatusCode::OK, reused).map(empty_body)
}

/// Attentive answers these calls with a status and no body.
fn empty_body(resp: Response) -> Response {
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, axum::body::Body::empty())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentifyRequest {
    client_user_id: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    #[serde(default)]
    custom_identifiers: Vec<CustomIdentifier>,
}

/// `POST /identity-resolution/user-identifiers`: the phone, e-mail and
/// custom identifiers become identities of the player `clientUserId`
/// names, so later events that carry only those find the player.
async fn identify(
    Tenant(tenant): Tenant,
    State(s): State<AppState>,
    Body(raw, idem, _): Body<AttentiveError>,
) -> Result<Response, AttentiveError> {
    let req: IdentifyRequest = body(&raw)?;
    let Some(player) = req.client_user_id.filter(|p| !p.is_empty()) else {
        return Err(AttentiveError(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "clientUserId (the player's id) is required: Engage links identifiers to a player"
                .into(),
        ));
    };
    let mut links = Vec::new();
    if let Some(p) = req.phone.as_deref() {
        links.push(Identity {
            mode: "phone".into(),
            id: subscriptions::normalize(p)?,
        });
    }
    if let Some(e) = req.email.as_deref() {
        links.push(Identity {
            mode: "email".into(),
            id: e.trim().to_ascii_lowercase(),
        });
    }
    links.extend(req.custom_identifiers.into_iter().map(|c| Identity {
        mode: c.name,
        id: c.value,
    }));
    if links.is_empty() {
        return Err(AttentiveError(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "clientUserId needs at least one other identifier".into(),
        ));
    }
    if links.len() > 16 {
        return Err(AttentiveError(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "at most 16 identifiers at once".into(),
        ));
    }
    let t = tenant.clone();
    let g = guarded_json(&s, &tenant, idem, StatusCode::ACCEPTED, move |tx| {
        for l in &links {
            social::link(tx, &t, &player, l).map_err(|e| match e {
                SocialError::Store(e) => e.into(),
                SocialError::PlayerNotFound(_) => not_found("clientUserId"),
                SocialError::Taken { .. } => {
                    AttentiveError(StatusCode::CONFLICT, "CONFLICT", e.to_string())
                }
                e => AttentiveError(StatusCode::BAD_REQUEST, "INVALID_REQUEST", e.to_string()),
            })?;
        }
        Ok::<_, AttentiveError>(Value::Null)
    })
    .await?;
    vendor_answer(g, StatusCode::ACCEPTED, reused).map(empty_body)
}
