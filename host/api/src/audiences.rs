//! `/v1/audiences/*`: sign-up sources and subscriptions.

use crate::wire::{Path, Query};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::{ApiError, AppState};
use engage_domain::audiences::segments::{self, Segment, SegmentError, SegmentSpec};
use engage_domain::audiences::subscriptions::{
    self, Person, Source, Subscription, SubscriptionError,
};
use engage_store::Tx;
use engage_store::ids::now_ms;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sources))
        .routes(routes!(put_source))
        .routes(routes!(subscribe, eligibility))
        .routes(routes!(unsubscribe))
        .routes(routes!(create_segment, list_segments))
        .routes(routes!(show_segment, replace_segment, remove_segment))
        .routes(routes!(segment_members))
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

#[utoipa::path(
    post,
    path = "/v1/audiences/segments",
    operation_id = "createSegment",
    tag = "audiences",
    summary = "Create a segment",
    security(("tenantToken" = [])),
    params(crate::openapi::IdempotencyKey),
    request_body(content = SegmentSpec, content_type = "application/json"),
    responses(
        (status = 201, description = "Segment", body = Segment),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
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

#[utoipa::path(
    get,
    path = "/v1/audiences/segments",
    operation_id = "listSegments",
    tag = "audiences",
    summary = "Segments",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "Segments", body = SegmentList),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn list_segments(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<SegmentList>, ApiError> {
    Ok(Json(SegmentList {
        segments: segments::list(&s.store.read()?, &tenant)?,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/audiences/segments/{id}",
    operation_id = "getSegment",
    tag = "audiences",
    summary = "A segment",
    security(("tenantToken" = [])),
    params(("id" = u64, Path, description = "Segment id")),
    responses(
        (status = 200, description = "Segment", body = Segment),
        (status = 404, description = "error", body = crate::openapi::ErrorBody),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn show_segment(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<Segment>, ApiError> {
    Ok(Json(
        segments::get(&s.store.read()?, &tenant, id)?.ok_or(SegmentError::NotFound(id))?,
    ))
}

#[utoipa::path(
    put,
    path = "/v1/audiences/segments/{id}",
    operation_id = "replaceSegment",
    tag = "audiences",
    summary = "Replace a segment",
    security(("tenantToken" = [])),
    params(("id" = u64, Path, description = "Segment id"), crate::openapi::IdempotencyKey),
    request_body(content = SegmentSpec, content_type = "application/json"),
    responses(
        (status = 200, description = "Segment", body = Segment),
        (status = 404, description = "error", body = crate::openapi::ErrorBody),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct MembersQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// The segment's members now (rules evaluated at this moment).
#[utoipa::path(
    get,
    path = "/v1/audiences/segments/{id}/members",
    operation_id = "segmentMembers",
    tag = "audiences",
    summary = "The segment's members now (rules evaluated)",
    security(("tenantToken" = [])),
    params(("id" = u64, Path, description = "Segment id"), MembersQuery),
    responses(
        (status = 404, description = "segment_not_found", body = crate::openapi::ErrorBody),
        (status = 200, description = "Player ids", body = Members),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn segment_members(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<u64>,
    Query(q): Query<MembersQuery>,
) -> Result<Json<Members>, ApiError> {
    let snap = s.store.read()?;
    let seg = segments::get(&snap, &tenant, id)?.ok_or(SegmentError::NotFound(id))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let players = segments::members(&snap, &tenant, &seg, q.after.as_deref(), limit, now_ms())?;
    let next = (players.len() == limit)
        .then(|| players.last().map(|p| p.id.clone()))
        .flatten();
    let members = players.into_iter().map(|p| p.id).collect();
    Ok(Json(Members { members, next }))
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

#[utoipa::path(
    get,
    path = "/v1/audiences/sources",
    operation_id = "listSignUpSources",
    tag = "audiences",
    summary = "Sign-up sources",
    security(("tenantToken" = [])),
    responses(
        (status = 200, description = "Sources", body = SourceList),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn list_sources(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
) -> Result<Json<SourceList>, ApiError> {
    Ok(Json(SourceList {
        sources: subscriptions::sources(&s.store.read()?, &tenant)?,
    }))
}

#[utoipa::path(
    put,
    path = "/v1/audiences/sources/{id}",
    operation_id = "putSignUpSource",
    tag = "audiences",
    summary = "Create or replace a sign-up source",
    security(("tenantToken" = [])),
    params(("id" = engage_store::ids::ClientId, Path, description = "The source's id"), crate::openapi::IdempotencyKey),
    request_body(content = Source, content_type = "application/json"),
    responses(
        (status = 200, description = "Source", body = Source),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
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

#[derive(Deserialize, Clone, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SubscribeRequest {
    /// A person is named by a phone or an e-mail address.
    #[schema(value_type = Option<engage_domain::audiences::subscriptions::PersonPhone>)]
    phone: Option<String>,
    #[schema(value_type = Option<engage_domain::audiences::subscriptions::PersonEmail>)]
    email: Option<String>,
    source: String,
}

#[utoipa::path(
    post,
    path = "/v1/audiences/subscriptions",
    operation_id = "subscribe",
    tag = "audiences",
    summary = "Subscribe a person through a sign-up source (fresh TEXT MARKETING consent lifts an opt-out)",
    security(("tenantToken" = [])),
    params(crate::openapi::IdempotencyKey),
    request_body(content = SubscribeRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "NEWLY_CREATED or ALREADY_SUBSCRIBED per subscription", body = Subscribed),
        (status = 404, description = "error", body = crate::openapi::ErrorBody),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn subscribe(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let req: SubscribeRequest = m.json()?;
    let (t, now) = (tenant.clone(), now_ms());
    mutation::write(&s, &tenant, &m, StatusCode::OK, now, move |tx| {
        let person = Person {
            phone: req.phone.clone(),
            email: req.email.clone(),
        };
        let done = subscriptions::subscribe(tx, &t, &person, &req.source, now)?;
        Ok::<_, SubscriptionError>(Subscribed {
            subscriptions: done
                .into_iter()
                .map(|(subscription, status)| SubscribeOutcome {
                    subscription,
                    status,
                })
                .collect(),
        })
    })
    .await
}

#[derive(Serialize, utoipa::ToSchema)]
struct Subscribed {
    subscriptions: Vec<SubscribeOutcome>,
}

/// A subscription and what subscribing did to it.
#[derive(Serialize, utoipa::ToSchema)]
struct SubscribeOutcome {
    subscription: Subscription,
    status: subscriptions::Created,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Unsubscribed {
    subscriptions: Vec<UnsubscribeOutcome>,
}

/// A subscription and what unsubscribing did to it.
#[derive(Serialize, utoipa::ToSchema)]
struct UnsubscribeOutcome {
    subscription: Subscription,
    status: subscriptions::Removed,
}

/// Whether each subscription of a person may be messaged now.
#[derive(Serialize, utoipa::ToSchema)]
struct Eligibility {
    subscriptions: Vec<Eligible>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Eligible {
    subscription: Subscription,
    eligible: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
struct SourceList {
    sources: Vec<Source>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct SegmentList {
    segments: Vec<Segment>,
}

/// A page of a segment's members (player ids).
#[derive(Serialize, utoipa::ToSchema)]
struct Members {
    members: Vec<String>,
    /// Pass as `after` for the next page; null on the last one.
    next: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/audiences/subscriptions",
    operation_id = "subscriptionEligibility",
    tag = "audiences",
    summary = "A person's eligibility per subscription",
    security(("tenantToken" = [])),
    params(Person),
    responses(
        (status = 200, description = "Eligibility", body = Eligibility),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn eligibility(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Query(person): Query<Person>,
) -> Result<Json<Eligibility>, ApiError> {
    let list = subscriptions::eligibility(&s.store.read()?, &tenant, &person)?;
    Ok(Json(Eligibility {
        subscriptions: list
            .into_iter()
            .map(|(subscription, eligible)| Eligible {
                subscription,
                eligible,
            })
            .collect(),
    }))
}

#[derive(Deserialize, Clone, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UnsubscribeRequest {
    /// A person is named by a phone or an e-mail address.
    #[schema(value_type = Option<engage_domain::audiences::subscriptions::PersonPhone>)]
    phone: Option<String>,
    #[schema(value_type = Option<engage_domain::audiences::subscriptions::PersonEmail>)]
    email: Option<String>,
    /// None: every subscription.
    subscriptions: Option<Vec<Subscription>>,
}

#[utoipa::path(
    post,
    path = "/v1/audiences/subscriptions/unsubscribe",
    operation_id = "unsubscribe",
    tag = "audiences",
    summary = "Unsubscribe a person from some or all subscriptions (TEXT MARKETING: onto the opt-out list)",
    security(("tenantToken" = [])),
    params(crate::openapi::IdempotencyKey),
    request_body(content = UnsubscribeRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "NEWLY_UNSUBSCRIBED or ALREADY_UNSUBSCRIBED per subscription", body = Unsubscribed),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn unsubscribe(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let req: UnsubscribeRequest = m.json()?;
    let (t, now) = (tenant.clone(), now_ms());
    mutation::write(&s, &tenant, &m, StatusCode::OK, now, move |tx| {
        let done = subscriptions::unsubscribe(
            tx,
            &t,
            &Person {
                phone: req.phone.clone(),
                email: req.email.clone(),
            },
            req.subscriptions.as_deref(),
            now,
        )?;
        Ok::<_, SubscriptionError>(Unsubscribed {
            subscriptions: done
                .into_iter()
                .map(|(subscription, status)| UnsubscribeOutcome {
                    subscription,
                    status,
                })
                .collect(),
        })
    })
    .await
}

#[utoipa::path(
    delete,
    path = "/v1/audiences/segments/{id}",
    operation_id = "deleteSegment",
    tag = "audiences",
    summary = "Delete a segment",
    security(("tenantToken" = [])),
    params(("id" = u64, Path, description = "The segment's id"), crate::openapi::IdempotencyKey),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "error", body = crate::openapi::ErrorBody),
        (status = 400, description = "error", body = crate::openapi::ErrorBody),
    ),
)]
async fn remove_segment(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<u64>,
    m: Mutation,
) -> Result<Response, ApiError> {
    mutation::removal(&s, &tenant, &m, move |tx: &mut Tx, t: &str| {
        segments::remove(tx, t, id)
    })
    .await
}
