//! `/v1/players/{id}/identities`, `/friends`, `/gifts` and
//! `/notifications` (with a server-sent-events stream).

use std::collections::BTreeMap;
use std::convert::Infallible;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::wire::{Path, Query};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::{ApiError, AppState, RequestId};
use engage_domain::gifts::{self, GiftError};
use engage_domain::notifications;
use engage_domain::players;
use engage_domain::social::{self, Identity, SocialError};
use engage_store::idempotency::Guarded;
use engage_store::ids::now_ms;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(identities))
        .routes(routes!(link, unlink))
        .routes(routes!(friends, set_friends))
        .routes(routes!(request_gift))
        .routes(routes!(received))
        .routes(routes!(reply))
        .routes(routes!(gift))
        .routes(routes!(list_notifications))
        .routes(routes!(mark_read))
        .routes(routes!(stream))
}

#[utoipa::path(
    get,
    path = "/v1/players/{id}/identities",
    operation_id = "listIdentities",
    tag = "social",
    summary = "A player's external identities",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "The client's player id")),
    responses(
        (status = 200, description = "Identities", body = Identities),
        (status = 404, description = "player_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn identities(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Identities>, ApiError> {
    let snap = s.store.read()?;
    players::get(&snap, &tenant, &id)?;
    Ok(Json(Identities {
        identities: social::identities(&snap, &tenant, &id)?,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    #[schema(value_type = engage_store::ids::ClientId)]
    id: String,
}

#[utoipa::path(
    put,
    path = "/v1/players/{id}/identities/{mode}",
    operation_id = "linkIdentity",
    tag = "social",
    summary = "Link the player's identity in a mode (replaces the previous one)",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "The client's player id"), ("mode" = String, Path, description = "1 to 32 letters, digits, `_` or `-`: fb, device, …", pattern = "^[A-Za-z0-9_-]{1,32}$"), crate::openapi::IdempotencyKey),
    request_body(content = LinkBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Linked", body = Identity),
        (status = 409, description = "identity_taken", body = crate::openapi::ErrorBody),
        (status = 400, description = "invalid_identity", body = crate::openapi::ErrorBody),
        (status = 404, description = "player_not_found", body = crate::openapi::ErrorBody),
    ),
)]
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

#[utoipa::path(
    delete,
    path = "/v1/players/{id}/identities/{mode}",
    operation_id = "unlinkIdentity",
    tag = "social",
    summary = "Unlink the player's identity in a mode",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "The client's player id"), ("mode" = String, Path, description = "1 to 32 letters, digits, `_` or `-`: fb, device, …", pattern = "^[A-Za-z0-9_-]{1,32}$"), crate::openapi::IdempotencyKey),
    responses(
        (status = 200, description = "Removed or not", body = Unlinked),
    ),
)]
async fn unlink(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path((id, mode)): Path<(String, String)>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::OK, now_ms(), move |tx| {
        social::unlink(tx, &t, &id, &mode).map(|removed| Unlinked { removed })
    })
    .await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct FriendsQuery {
    #[serde(default)]
    playing: bool,
}

#[utoipa::path(
    get,
    path = "/v1/players/{id}/friends",
    operation_id = "listFriends",
    tag = "social",
    summary = "A player's friends, with the player behind each friend who plays",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "The client's player id"), FriendsQuery),
    responses(
        (status = 200, description = "Friends", body = Friends),
        (status = 404, description = "player_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn friends(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<FriendsQuery>,
) -> Result<Json<Friends>, ApiError> {
    let snap = s.store.read()?;
    players::get(&snap, &tenant, &id)?;
    let list: Vec<social::Friend> = social::friends(&snap, &tenant, &id)?
        .into_iter()
        .filter(|f| !q.playing || f.player.is_some())
        .collect();
    Ok(Json(Friends { friends: list }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct FriendsBody {
    /// At most 5000.
    #[schema(max_items = 5000)]
    friends: Vec<Identity>,
}

#[utoipa::path(
    put,
    path = "/v1/players/{id}/friends",
    operation_id = "setFriends",
    tag = "social",
    summary = "Replace a player's friends",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "The client's player id"), crate::openapi::IdempotencyKey),
    request_body(content = FriendsBody, content_type = "application/json"),
    responses(
        (status = 200, description = "How many", body = FriendCount),
        (status = 400, description = "invalid_identity, too_many_friends", body = crate::openapi::ErrorBody),
        (status = 404, description = "player_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn set_friends(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let body: FriendsBody = m.json()?;
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::OK, now_ms(), move |tx| {
        social::set_friends(tx, &t, &id, &body.friends).map(|friends| FriendCount { friends })
    })
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct GiftBody {
    /// Seconds until the request expires (one day by default).
    #[schema(minimum = 1, maximum = 2592000)]
    expiry: Option<i64>,
    /// At most 64, names 1 to 128 characters without control characters,
    /// values at most 4096 characters.
    #[serde(default)]
    #[schema(schema_with = engage_domain::gifts::attributes_schema)]
    attributes: BTreeMap<String, String>,
}

#[utoipa::path(
    post,
    path = "/v1/players/{id}/gifts",
    operation_id = "requestGift",
    tag = "social",
    summary = "Request a gift from every playing friend (runs the gift binding's pre hook in the request's transaction; post hook after commit)",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "The client's player id"), crate::openapi::IdempotencyKey),
    request_body(content = GiftBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The saved request", body = gifts::GiftRecord),
        (status = 404, description = "player_not_found", body = crate::openapi::ErrorBody),
        (status = 422, description = "gift_rejected (details: the hook's code and code_str, e.g. -30004 E_GIFT_QUOTA_EXCEEDED)", body = crate::openapi::ErrorBody),
        (status = 502, description = "plugin_failed", body = crate::openapi::ErrorBody),
        (status = 400, description = "invalid_request", body = crate::openapi::ErrorBody),
    ),
)]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReplyBody {
    #[serde(default = "yes")]
    accept: bool,
    /// At most 64, names 1 to 128 characters without control characters,
    /// values at most 4096 characters.
    #[serde(default)]
    #[schema(schema_with = engage_domain::gifts::attributes_schema)]
    attributes: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

#[utoipa::path(
    post,
    path = "/v1/players/{id}/gifts/{gift}/reply",
    operation_id = "replyGift",
    tag = "social",
    summary = "Reply to a gift request as one of its recipients",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "The client's player id"), ("gift" = String, Path, description = "The request id"), crate::openapi::IdempotencyKey),
    request_body(content = ReplyBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Replied", body = Replied),
        (status = 404, description = "gift_not_found", body = crate::openapi::ErrorBody),
        (status = 409, description = "gift_expired, gift_already_replied", body = crate::openapi::ErrorBody),
        (status = 422, description = "gift_rejected", body = crate::openapi::ErrorBody),
        (status = 502, description = "plugin_failed", body = crate::openapi::ErrorBody),
    ),
)]
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
    let answer = Replied {
        replied: gift,
        accept: body.accept,
    };
    Ok(match g {
        Guarded::Fresh(()) => Json(answer).into_response(),
        Guarded::Replay(_) => super::mutation::mark_replayed(Json(answer).into_response()),
        Guarded::Conflict => super::mutation::respond(Guarded::<()>::Conflict, StatusCode::OK),
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ReceivedQuery {
    start: Option<usize>,
    limit: Option<usize>,
    sort: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/players/{id}/gifts/received",
    operation_id = "receivedGifts",
    tag = "social",
    summary = "Gift requests the player received, by expiry (expired ones included)",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "The client's player id"), ReceivedQuery),
    responses(
        (status = 404, description = "player_not_found", body = crate::openapi::ErrorBody),
        (status = 200, description = "Requests", body = Received),
    ),
)]
async fn received(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ReceivedQuery>,
) -> Result<Json<Received>, ApiError> {
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
    Ok(Json(Received {
        count: gifts::received_count(&snap, &tenant, &id)?,
        requests: list,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/gifts/{gift}",
    operation_id = "getGift",
    tag = "social",
    summary = "A gift request with its replies",
    security(("tenantToken" = [])),
    params(("gift" = String, Path, description = "The request id")),
    responses(
        (status = 200, description = "The request", body = gifts::GiftRecord),
        (status = 404, description = "gift_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn gift(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(gift): Path<String>,
) -> Result<Json<gifts::GiftRecord>, ApiError> {
    gifts::get(&s.store.read()?, &tenant, &gift)?
        .map(Json)
        .ok_or_else(|| GiftError::NotFound(gift).into())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct NotificationsQuery {
    #[serde(default)]
    unread: bool,
    before: Option<String>,
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/v1/players/{id}/notifications",
    operation_id = "listNotifications",
    tag = "social",
    summary = "A player's notifications, newest first",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "The client's player id"), NotificationsQuery),
    responses(
        (status = 200, description = "Notifications", body = Notifications),
        (status = 404, description = "player_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn list_notifications(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<NotificationsQuery>,
) -> Result<Json<Notifications>, ApiError> {
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
    Ok(Json(Notifications {
        notifications: list,
    }))
}

#[utoipa::path(
    post,
    path = "/v1/players/{id}/notifications/{nid}/read",
    operation_id = "readNotification",
    tag = "social",
    summary = "Mark a notification read",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "The client's player id"), ("nid" = String, Path, description = "Notification id"), crate::openapi::IdempotencyKey),
    responses(
        (status = 200, description = "Done", body = Read),
        (status = 404, description = "notification_not_found", body = crate::openapi::ErrorBody),
    ),
)]
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
        Ok(Read { read: nid.clone() })
    })
    .await
}

/// Server-sent events: every notification for the player from now on, as
/// `event: notification` with the notification as JSON data.
#[utoipa::path(
    get,
    path = "/v1/players/{id}/notifications/stream",
    operation_id = "streamNotifications",
    tag = "social",
    summary = "Server-sent events: every new notification of the player, as `event: notification` with the notification as JSON data",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "The client's player id")),
    responses(
        (status = 200, description = "An event stream", body = String, content_type = "text/event-stream"),
        (status = 404, description = "player_not_found", body = crate::openapi::ErrorBody),
    ),
)]
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

#[derive(Serialize, utoipa::ToSchema)]
struct Identities {
    identities: Vec<social::Identity>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Unlinked {
    /// False when the player had no identity of this mode.
    removed: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Friends {
    friends: Vec<social::Friend>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct FriendCount {
    /// How many friends the player has now.
    friends: usize,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Replied {
    /// The gift request replied to.
    replied: String,
    accept: bool,
}

/// Gift requests a player received.
#[derive(Serialize, utoipa::ToSchema)]
struct Received {
    /// How many in all.
    count: u64,
    requests: Vec<gifts::GiftRecord>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Notifications {
    notifications: Vec<notifications::Notification>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Read {
    /// The notification now read.
    read: String,
}
