//! The Attentive-compatible subscriptions API under `/attentive` (seed
//! 002): subscribe, eligibility, unsubscribe, and the legacy message send.
//! Translation only, over [`crate::audiences`] and [`crate::messaging`].
//!
//! `Authorization: Bearer` carries the tenant's API key (what an Attentive
//! app's key is to its clients) or a tenant access token. Errors are
//! `{"errors":[{"code","message"}]}` with a 4xx status.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::form::{Body, BodyError};
use super::{AppState, RequestId};
use crate::audiences::subscriptions::{self, Person, Subscription, SubscriptionError};
use crate::ids::now_ms;
use crate::messaging::{Kind, MessageError, SendRequest, Status};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/attentive/v1/subscriptions",
            post(subscribe).get(eligibility),
        )
        .route("/attentive/v1/subscriptions/unsubscribe", post(unsubscribe))
        .route("/attentive/v1/subscriptions/messages", post(message))
}

/// An Attentive-style error answer.
struct AttentiveError(StatusCode, &'static str, String);

/// A path or method under `/attentive` that Engage does not serve.
pub fn not_served() -> Response {
    AttentiveError(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "no such endpoint (Engage serves v1/subscriptions, v1/subscriptions/unsubscribe and v1/subscriptions/messages)".into(),
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

impl From<crate::store::StoreError> for AttentiveError {
    fn from(e: crate::store::StoreError) -> Self {
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
        super::auth::bearer_key_tenant_throttled(parts, &s.store.read()?, s)?
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
    Body(raw, _): Body<AttentiveError>,
) -> Result<Json<Value>, AttentiveError> {
    let req: SubscribeRequest = body(&raw)?;
    let Some(source) = req.sign_up_source_id.filter(|s| !s.is_empty()) else {
        return Err(AttentiveError(
            StatusCode::BAD_REQUEST,
            "INVALID_SIGN_UP_SOURCE",
            "signUpSourceId is required".into(),
        ));
    };
    let (t, person, now) = (tenant, req.user.clone(), now_ms());
    let done = s
        .store
        .write(move |tx| subscriptions::subscribe(tx, &t, &person, &source, now))
        .await?;
    let responses: Vec<Value> = done
        .into_iter()
        .map(|(sub, status)| json!({ "subscription": sub, "subscriptionCreationStatus": status }))
        .collect();
    Ok(Json(
        json!({ "user": req.user, "subscriptionResponses": responses }),
    ))
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
    Body(raw, _): Body<AttentiveError>,
) -> Result<Json<Value>, AttentiveError> {
    let req: UnsubscribeRequest = body(&raw)?;
    let (t, person, which, now) = (tenant, req.user.clone(), req.subscriptions, now_ms());
    let done = s
        .store
        .write(move |tx| subscriptions::unsubscribe(tx, &t, &person, which.as_deref(), now))
        .await?;
    let responses: Vec<Value> = done
        .into_iter()
        .map(
            |(sub, status)| json!({ "subscription": sub, "subscriptionUnsubscribeStatus": status }),
        )
        .collect();
    Ok(Json(
        json!({ "user": req.user, "subscriptionResponses": responses }),
    ))
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
    Body(raw, _): Body<AttentiveError>,
) -> Result<Json<Value>, AttentiveError> {
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
        .send(&tenant, send, None, now_ms(), &rid.0)
        .await
        .map_err(|e| match e {
            MessageError::Store(s) => s.into(),
            e => AttentiveError(StatusCode::BAD_REQUEST, "INVALID_REQUEST", e.to_string()),
        })?;
    let refused = match &accepted {
        crate::idempotency::Guarded::Fresh(a) => a
            .messages
            .iter()
            .any(|m| m.status == Status::Rejected && m.error.is_some()),
        _ => false,
    };
    if refused {
        return Err(AttentiveError(
            StatusCode::BAD_REQUEST,
            "RECIPIENT_OPTED_OUT",
            format!("{to} unsubscribed from marketing text messages"),
        ));
    }
    Ok(Json(json!({
        "type": "v1",
        "to": to,
        "body": req.body,
        "skipFatigue": true,
        "createShortLink": false,
        "addSubscriber": "true",
    })))
}
