//! `/v1/audiences/*`: sign-up sources and subscriptions.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::{ApiError, AppState};
use crate::audiences::subscriptions::{self, Person, Source, Subscription, SubscriptionError};
use crate::ids::now_ms;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/audiences/sources", get(list_sources))
        .route("/v1/audiences/sources/{id}", put(put_source))
        .route(
            "/v1/audiences/subscriptions",
            post(subscribe).get(eligibility),
        )
        .route("/v1/audiences/subscriptions/unsubscribe", post(unsubscribe))
}

impl From<SubscriptionError> for ApiError {
    fn from(e: SubscriptionError) -> ApiError {
        let message = e.to_string();
        match e {
            SubscriptionError::Store(s) => s.into(),
            SubscriptionError::Invalid(_) => ApiError::bad_request("invalid_request", message),
            SubscriptionError::NoSource(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "source_not_found", message)
            }
        }
    }
}

async fn list_sources(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "sources": subscriptions::sources(&s.store.read()?, &tenant)? }),
    ))
}

async fn put_source(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let mut source: Source = m.json()?;
    source.id = id;
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::OK, now_ms(), move |tx| {
        subscriptions::put_source(tx, &t, source.clone())
    })
    .await
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct SubscribeRequest {
    phone: Option<String>,
    email: Option<String>,
    source: String,
}

async fn subscribe(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let req: SubscribeRequest = m.json()?;
    let (t, now) = (tenant.clone(), now_ms());
    mutation::write(&s, &tenant, &m, StatusCode::OK, now, move |tx| {
        let person = Person { phone: req.phone.clone(), email: req.email.clone() };
        let done = subscriptions::subscribe(tx, &t, &person, &req.source, now)?;
        Ok::<_, SubscriptionError>(json!({ "subscriptions": done.into_iter()
            .map(|(sub, status)| json!({ "subscription": sub, "status": status })).collect::<Vec<_>>() }))
    })
    .await
}

async fn eligibility(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Query(person): Query<Person>,
) -> Result<Json<Value>, ApiError> {
    let list = subscriptions::eligibility(&s.store.read()?, &tenant, &person)?;
    Ok(Json(json!({ "subscriptions": list.into_iter()
        .map(|(sub, ok)| json!({ "subscription": sub, "eligible": ok })).collect::<Vec<_>>() })))
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct UnsubscribeRequest {
    phone: Option<String>,
    email: Option<String>,
    /// None: every subscription.
    subscriptions: Option<Vec<Subscription>>,
}

async fn unsubscribe(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let req: UnsubscribeRequest = m.json()?;
    let (t, now) = (tenant.clone(), now_ms());
    mutation::write(&s, &tenant, &m, StatusCode::OK, now, move |tx| {
        let done =
            subscriptions::unsubscribe(
            tx,
            &t,
            &Person { phone: req.phone.clone(), email: req.email.clone() },
            req.subscriptions.as_deref(),
            now,
        )?;
        Ok::<_, SubscriptionError>(json!({ "subscriptions": done.into_iter()
            .map(|(sub, status)| json!({ "subscription": sub, "status": status })).collect::<Vec<_>>() }))
    })
    .await
}
