//! `/v1/players/{id}/identities`, `/friends`, `/gifts` and
//! `/notifications` (with a server-sent-events stream).

use std::collections::BTreeMap;
use std::convert::Infallible;

use crate::wire::{Path, Query};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::{ApiError, AppState, RequestId};
use engage_domain::gifts::{self, GiftError};
use engage_domain::notifications;
use engage_domain::players;
use engage_domain::social::{self, Identity, SocialError};
use engage_store::idempotency::Guarded;
use engage_store::ids::now_ms;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/players/{id}/identities", get(identities))
        .route(
            "/v1/players/{id}/identities/{mode}",
            put(link).delete(unlink),
        )
        .route("/v1/players/{id}/friends", get(friends).put(set_friends))
        .route("/v1/players/{id}/gifts", post(request_gift))
        .route("/v1/players/{id}/gifts/received", get(received))
        .route("/v1/players/{id}/gifts/{gift}/reply", post(reply))
        .route("/v1/gifts/{gift}", get(gift))
        .route("/v1/players/{id}/notifications", get(list_notifications))
        .route("/v1/players/{id}/notifications/{nid}/read", post(mark_read))
        .route("/v1/players/{id}/notifications/stream", get(stream))
}

async fn identities(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let snap = s.store.read()?;
    players::get(&snap, &tenant, &id)?;
    Ok(Json(
        json!({ "identities": social::identities(&snap, &tenant, &id)? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    id: String,
}

async fn link(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path((id, mode)): Path<(String, String)>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let body: LinkBody = m.json()?;
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::OK, now_ms(), move |tx| {
        let identity = Identity {
            mode: mode.clone(),
            id: body.id.clone(),
        };
        social::link(tx, &t, &id, &identity).map(|()| identity)
    })
    .await
}

async fn unlink(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path((id, mode)): Path<(String, String)>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::OK, now_ms(), move |tx| {
        social::unlink(tx, &t, &id, &mode).map(|removed| json!({ "removed": removed }))
    })
    .await
}

#[derive(Deserialize)]
struct FriendsQuery {
    #[serde(default)]
    playing: bool,
}

async fn friends(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<FriendsQuery>,
) -> Result<Json<Value>, ApiError> {
    let snap = s.store.read()?;
    players::get(&snap, &tenant, &id)?;
    let list: Vec<social::Friend> = social::friends(&snap, &tenant, &id)?
        .into_iter()
        .filter(|f| !q.playing || f.player.is_some())
        .collect();
    Ok(Json(json!({ "friends": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FriendsBody {
    friends: Vec<Identity>,
}

async fn set_friends(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let body: FriendsBody = m.json()?;
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::OK, now_ms(), move |tx| {
        social::set_friends(tx, &t, &id, &body.friends).map(|n| json!({ "friends": n }))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GiftBody {
    expiry: Option<i64>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

async fn request_gift(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Extension(RequestId(rid)): Extension<RequestId>,
    Path(id): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let body: GiftBody = m.json()?;
    let r = s
        .gifts
        .request(
            &tenant,
            &id,
            body.expiry,
            body.attributes,
            m.idem.clone(),
            now_ms(),
            &rid,
        )
        .await?;
    Ok(super::mutation::respond(r, StatusCode::CREATED))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyBody {
    #[serde(default = "yes")]
    accept: bool,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

async fn reply(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Extension(RequestId(rid)): Extension<RequestId>,
    Path((id, gift)): Path<(String, String)>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let body: ReplyBody = m.json()?;
    let g = s
        .gifts
        .reply(
            &tenant,
            &id,
            Some(&gift),
            body.accept,
            body.attributes,
            m.idem.clone(),
            now_ms(),
            &rid,
        )
        .await?;
    // The answer is the request's own: the same again on a replay.
    let answer = json!({ "replied": gift, "accept": body.accept });
    Ok(match g {
        Guarded::Fresh(()) => Json(answer).into_response(),
        Guarded::Replay(_) => super::mutation::mark_replayed(Json(answer).into_response()),
        Guarded::Conflict => super::mutation::respond(Guarded::<()>::Conflict, StatusCode::OK),
    })
}

#[derive(Deserialize)]
struct ReceivedQuery {
    start: Option<usize>,
    limit: Option<usize>,
    sort: Option<String>,
}

async fn received(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ReceivedQuery>,
) -> Result<Json<Value>, ApiError> {
    let snap = s.store.read()?;
    players::get(&snap, &tenant, &id)?;
    let desc = q.sort.as_deref() == Some("desc");
    let list = gifts::received(
        &snap,
        &tenant,
        &id,
        q.start.unwrap_or(0),
        q.limit.unwrap_or(50).clamp(1, 500),
        desc,
    )?;
    Ok(Json(json!({
        "count": gifts::received_count(&snap, &tenant, &id)?,
        "requests": list,
    })))
}

async fn gift(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(gift): Path<String>,
) -> Result<Json<gifts::GiftRecord>, ApiError> {
    gifts::get(&s.store.read()?, &tenant, &gift)?
        .map(Json)
        .ok_or_else(|| GiftError::NotFound(gift).into())
}

#[derive(Deserialize)]
struct NotificationsQuery {
    #[serde(default)]
    unread: bool,
    before: Option<String>,
    limit: Option<usize>,
}

async fn list_notifications(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<NotificationsQuery>,
) -> Result<Json<Value>, ApiError> {
    let snap = s.store.read()?;
    players::get(&snap, &tenant, &id)?;
    let list = notifications::list(
        &snap,
        &tenant,
        &id,
        q.unread,
        q.before.as_deref(),
        q.limit.unwrap_or(50).clamp(1, 500),
    )?;
    Ok(Json(json!({ "notifications": list })))
}

async fn mark_read(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path((id, nid)): Path<(String, String)>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::OK, now_ms(), move |tx| {
        if !notifications::mark_read(tx, &t, &id, &nid)? {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "notification_not_found",
                format!("notification `{nid}` does not exist"),
            ));
        }
        Ok(json!({ "read": nid }))
    })
    .await
}

/// Server-sent events: every notification for the player from now on, as
/// `event: notification` with the notification as JSON data.
async fn stream(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let snap = s.store.read()?;
    players::get(&snap, &tenant, &id)?;
    let rx = s.live.subscribe();
    let watch = s.live.watch(&snap, &tenant)?;
    drop(snap);
    let events =
        futures_util::stream::unfold((rx, s.shutdown, watch), move |(mut rx, mut stop, watch)| {
            let (tenant, id) = (tenant.clone(), id.clone());
            async move {
                loop {
                    let received = tokio::select! {
                        _ = stop.requested() => return None,
                        r = rx.recv() => r,
                    };
                    match received {
                        Ok(p) if p.tenant == tenant && p.notification.player == id => {
                            let data = serde_json::to_string(&p.notification).unwrap_or_default();
                            let ev = Event::default()
                                .event("notification")
                                .id(p.notification.id.clone())
                                .data(data);
                            return Some((Ok(ev), (rx, stop, watch)));
                        }
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            let ev = Event::default().event("lagged").data(n.to_string());
                            return Some((Ok(ev), (rx, stop, watch)));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

impl From<SocialError> for ApiError {
    fn from(e: SocialError) -> ApiError {
        let message = e.to_string();
        let (status, code) = match e {
            SocialError::PlayerNotFound(_) => (StatusCode::NOT_FOUND, "player_not_found"),
            SocialError::Invalid => (StatusCode::BAD_REQUEST, "invalid_identity"),
            SocialError::Taken { .. } => (StatusCode::CONFLICT, "identity_taken"),
            SocialError::TooManyFriends => (StatusCode::BAD_REQUEST, "too_many_friends"),
            SocialError::TooManyIdentities => (StatusCode::BAD_REQUEST, "too_many_identities"),
            SocialError::Store(s) => return s.into(),
        };
        ApiError::new(status, code, message)
    }
}

impl From<GiftError> for ApiError {
    fn from(e: GiftError) -> ApiError {
        let message = e.to_string();
        let (status, code) = match e {
            GiftError::NoProfile => (StatusCode::NOT_FOUND, "player_not_found"),
            GiftError::Invalid(_) | GiftError::RequestIdMissing => {
                (StatusCode::BAD_REQUEST, "invalid_request")
            }
            GiftError::NotFound(_) => (StatusCode::NOT_FOUND, "gift_not_found"),
            GiftError::Expired(_) => (StatusCode::CONFLICT, "gift_expired"),
            GiftError::AlreadyReplied(_) => (StatusCode::CONFLICT, "gift_already_replied"),
            GiftError::Rejected { code, code_str, .. } => {
                let mut err =
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "gift_rejected", message);
                err.details = Some(Box::new(json!({ "code": code, "code_str": code_str })));
                return err;
            }
            GiftError::Contention | GiftError::Retry => {
                (StatusCode::SERVICE_UNAVAILABLE, "contention")
            }
            GiftError::Plugin(p) => return p.into(),
            GiftError::Store(s) => return s.into(),
        };
        ApiError::new(status, code, message)
    }
}
