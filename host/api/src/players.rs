//! `/v1/players`: profiles, balances, ledger history, redemptions.

use crate::wire::{Path, Query};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::BTreeMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::{ApiError, AppState};
use engage_domain::players::{self, Player, PlayerError, Profile};
use engage_domain::{actions, goods};
use engage_ledger as ledger;
use engage_store::ids::now_ms;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, register))
        .routes(routes!(show, update, remove))
        .routes(routes!(balances))
        .routes(routes!(history))
        .routes(routes!(redemptions))
}

/// A player to register: the client's `id` for them and their profile, in
/// one object (the handler takes `id` out and reads the rest as a
/// [`Profile`]; the schema is Profile's with `id` added and required).
struct NewPlayer;

impl utoipa::PartialSchema for NewPlayer {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::Schema;
        use utoipa::openapi::{Ref, RefOr};
        let mut schema = <Profile as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::Object(o)) = &mut schema {
            o.properties
                .insert("id".into(), RefOr::Ref(Ref::from_schema_name("ClientId")));
            o.properties.move_index(o.properties.len() - 1, 0);
            o.required.insert(0, "id".into());
            o.description = Some("The client's id for the player, and their profile".into());
        }
        schema
    }
}

impl utoipa::ToSchema for NewPlayer {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <Profile as utoipa::ToSchema>::schemas(schemas);
        schemas.push((
            "ClientId".into(),
            <engage_store::ids::ClientId as utoipa::PartialSchema>::schema(),
        ));
    }
}

#[utoipa::path(
    post,
    path = "/v1/players",
    operation_id = "registerPlayer",
    tag = "players",
    summary = "Register a player",
    security(("tenantToken" = [])),
    params(crate::openapi::IdempotencyKey),
    request_body(content = NewPlayer, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = Player),
        (status = 400, description = "invalid_player_id, invalid_phone, invalid_email, invalid_request", body = crate::openapi::ErrorBody),
        (status = 409, description = "player_exists, username_taken", body = crate::openapi::ErrorBody),
    ),
)]
async fn register(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let mut body: serde_json::Map<String, Value> = m.json()?;
    let id = match body.remove("id") {
        Some(Value::String(id)) => id,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "`id` (the client's player id, a string) is required",
            ));
        }
    };
    let profile: Profile = serde_json::from_value(Value::Object(body))
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::CREATED, now_ms(), move |tx| {
        players::register(tx, &t, &id, profile.clone(), now_ms())
    })
    .await
}

#[utoipa::path(
    patch,
    path = "/v1/players/{id}",
    operation_id = "updatePlayer",
    tag = "players",
    summary = "Change a player's profile",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "The client's player id"), crate::openapi::IdempotencyKey),
    request_body(content = Profile, content_type = "application/json"),
    responses(
        (status = 200, description = "Updated", body = Player),
        (status = 409, description = "username_taken", body = crate::openapi::ErrorBody),
        (status = 404, description = "player_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn update(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let profile: Profile = m.json()?;
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::OK, now_ms(), move |tx| {
        players::update(tx, &t, &id, profile.clone(), now_ms())
    })
    .await
}

#[utoipa::path(
    delete,
    path = "/v1/players/{id}",
    operation_id = "deletePlayer",
    tag = "players",
    summary = "Delete a player's profile (the ledger history stays)",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "The client's player id"), crate::openapi::IdempotencyKey),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 404, description = "player_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn remove(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let t = tenant.clone();
    mutation::write(&s, &tenant, &m, StatusCode::OK, now_ms(), move |tx| {
        players::delete(tx, &t, &id).map(|()| Deleted {
            deleted: id.clone(),
        })
    })
    .await
}

/// What `DELETE /v1/players/{id}` answers.
#[derive(Serialize, utoipa::ToSchema)]
struct Deleted {
    /// The player whose profile was deleted.
    deleted: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Page {
    before: Option<String>,
    limit: Option<usize>,
    currency: Option<String>,
}

/// The list of players: a page, or a search.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PlayerQuery {
    /// Only players whose id, username, name or e-mail contains this
    /// (ignoring case), or whose phone number contains its digits (three or
    /// more). A search examines at most 5,000 players per request; follow
    /// `next` for more.
    #[param(max_length = 100)]
    q: Option<String>,
    /// Only players after this id.
    after: Option<String>,
    /// At most this many (1 to 500; 50 by default).
    limit: Option<usize>,
}

impl Page {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(50).clamp(1, 500)
    }
}

#[utoipa::path(
    get,
    path = "/v1/players",
    operation_id = "listPlayers",
    tag = "players",
    summary = "Players in id order, or those matching a search",
    security(("tenantToken" = [])),
    params(PlayerQuery),
    responses(
        (status = 200, description = "A page of players", body = PlayerPage),
    ),
)]
async fn list(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Query(page): Query<PlayerQuery>,
) -> Result<Json<PlayerPage>, ApiError> {
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    let snap = s.store.read()?;
    let (list, next) = match page.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        Some(q) if q.chars().count() > 100 => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "`q` is at most 100 characters",
            ));
        }
        Some(q) => players::search(&snap, &tenant, q, page.after.as_deref(), limit)?,
        None => {
            let list = players::list(&snap, &tenant, page.after.as_deref(), limit)?;
            let next = (list.len() == limit)
                .then(|| list.last().map(|p| p.id.clone()))
                .flatten();
            (list, next)
        }
    };
    Ok(Json(PlayerPage {
        players: list,
        next,
    }))
}

/// A page of players.
#[derive(Serialize, utoipa::ToSchema)]
struct PlayerPage {
    players: Vec<Player>,
    /// Pass as `after` for the next page; null on the last one.
    next: Option<String>,
}

/// A player with balances, badges and action counts.
#[derive(Serialize, utoipa::ToSchema)]
struct PlayerView {
    #[serde(flatten)]
    player: Player,
    /// Every currency the player holds, and the default one (0 if none).
    balances: BTreeMap<String, i64>,
    /// Badge name to how many times it was earned.
    badges: BTreeMap<String, u64>,
    /// Action name to how many times it was performed.
    action_counts: BTreeMap<String, u64>,
}

/// A player's balances.
#[derive(Serialize, utoipa::ToSchema)]
struct Balances {
    player: String,
    balances: BTreeMap<String, i64>,
}

/// A page of ledger entries, newest first.
#[derive(Serialize, utoipa::ToSchema)]
struct EntryPage {
    entries: Vec<ledger::Entry>,
    /// Pass as `before` for the next page; null on the last one.
    next: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct RedemptionList {
    redemptions: Vec<goods::Redemption>,
}

fn balances_of(list: Vec<(String, i64)>) -> BTreeMap<String, i64> {
    let mut map = BTreeMap::from([(ledger::DEFAULT_CURRENCY.to_owned(), 0)]);
    map.extend(list);
    map
}

#[utoipa::path(
    get,
    path = "/v1/players/{id}",
    operation_id = "getPlayer",
    tag = "players",
    summary = "A player with balances, badges and action counts",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "The client's player id")),
    responses(
        (status = 200, description = "The player", body = Player),
        (status = 404, description = "player_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn show(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PlayerView>, ApiError> {
    let snap = s.store.read()?;
    Ok(Json(PlayerView {
        player: players::get(&snap, &tenant, &id)?,
        balances: balances_of(ledger::balances(&snap, &tenant, &id)?),
        badges: actions::badges(&snap, &tenant, &id)?,
        action_counts: actions::counts(&snap, &tenant, &id)?,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/players/{id}/balances",
    operation_id = "getBalances",
    tag = "players",
    summary = "A player's balances by currency",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "The client's player id")),
    responses(
        (status = 200, description = "Balances", body = Balances),
        (status = 404, description = "player_not_found", body = crate::openapi::ErrorBody),
    ),
)]
async fn balances(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Balances>, ApiError> {
    let snap = s.store.read()?;
    if !players::exists(&snap, &tenant, &id)? {
        return Err(PlayerError::NotFound(id).into());
    }
    let balances = balances_of(ledger::balances(&snap, &tenant, &id)?);
    Ok(Json(Balances {
        player: id,
        balances,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/players/{id}/ledger",
    operation_id = "getLedger",
    tag = "players",
    summary = "A player's ledger entries, newest first",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "The client's player id"), Page),
    responses(
        (status = 200, description = "Entries", body = EntryPage),
    ),
)]
async fn history(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<EntryPage>, ApiError> {
    let snap = s.store.read()?;
    let limit = page.limit();
    let entries = ledger::history(
        &snap,
        &tenant,
        &id,
        page.currency.as_deref(),
        page.before.as_deref(),
        limit,
    )?;
    let next = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.id.clone()))
        .flatten();
    Ok(Json(EntryPage { entries, next }))
}

#[utoipa::path(
    get,
    path = "/v1/players/{id}/redemptions",
    operation_id = "getPlayerRedemptions",
    tag = "players",
    summary = "A player's redemptions, newest first",
    security(("tenantToken" = [])),
    params(("id" = String, Path, description = "The client's player id"), Page),
    responses(
        (status = 200, description = "Redemptions", body = RedemptionList),
    ),
)]
async fn redemptions(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<RedemptionList>, ApiError> {
    let redemptions = goods::redemptions_of(&s.store.read()?, &tenant, &id, page.limit())?;
    Ok(Json(RedemptionList { redemptions }))
}
