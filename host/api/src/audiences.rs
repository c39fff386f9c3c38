//! `/v1/audiences/*`: sign-up sources and subscriptions.

use crate::wire::{Path, Query};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::{ApiError, AppState};
use engage_domain::audiences::segments::{self, Segment, SegmentError, SegmentSpec};
use engage_domain::audiences::subscriptions::{
    self, Person, Source, Subscription, SubscriptionError,
};
use engage_store::Tx;
use engage_store::ids::now_ms;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/audiences/sources", get(list_sources))
        .route("/v1/audiences/sources/{id}", put(put_source))
        .route(
            "/v1/audiences/subscriptions",
            post(subscribe).get(eligibility),
        )
        .route("/v1/audiences/subscriptions/unsubscribe", post(unsubscribe))
        .route(
            "/v1/audiences/segments",
            post(create_segment).get(list_segments),
        )
        .route(
            "/v1/audiences/segments/{id}",
            get(show_segment)
                .put(replace_segment)
                .delete(mutation::removal(|tx: &mut Tx, t: &str, id: &u64| {
                    segments::remove(tx, t, *id)
                })),
        )
        .route("/v1/audiences/segments/{id}/members", get(segment_members))
}

impl From<SegmentError> for ApiError {
    fn from(e: SegmentError) -> ApiError {
        let message = e.to_string();
        match e {
            SegmentError::Store(s) => s.into(),
            SegmentError::Invalid(_) => ApiError::bad_request("invalid_segment", message),
            SegmentError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "segment_not_found", message)
            }
        }
    }
}

async fn create_segment(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let spec: SegmentSpec = m.json()?;
    let (t, now) = (tenant.clone(), now_ms());
    mutation::write(&s, &tenant, &m, StatusCode::CREATED, now, move |tx| {
        segments::create(tx, &t, spec.clone(), now)
    })
    .await
}

async fn list_segments(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "segments": segments::list(&s.store.read()?, &tenant)? }),
    ))
}

async fn show_segment(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<Segment>, ApiError> {
    Ok(Json(
        segments::get(&s.store.read()?, &tenant, id)?.ok_or(SegmentError::NotFound(id))?,
    ))
}

async fn replace_segment(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<u64>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let spec: SegmentSpec = m.json()?;
    let (t, now) = (tenant.clone(), now_ms());
    mutation::write(&s, &tenant, &m, StatusCode::OK, now, move |tx| {
        segments::replace(tx, &t, id, spec.clone(), now)
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// The segment's members now (rules evaluated at this moment).
async fn segment_members(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<u64>,
    Query(q): Query<MembersQuery>,
) -> Result<Json<Value>, ApiError> {
    let snap = s.store.read()?;
    let seg = segments::get(&snap, &tenant, id)?.ok_or(SegmentError::NotFound(id))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let players = segments::members(&snap, &tenant, &seg, q.after.as_deref(), limit, now_ms())?;
    let next = (players.len() == limit)
        .then(|| players.last().map(|p| p.id.clone()))
        .flatten();
    let ids: Vec<&str> = players.iter().map(|p| p.id.as_str()).collect();
    Ok(Json(json!({ "members": ids, "next": next })))
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
