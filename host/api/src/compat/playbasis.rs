//! The Playbasis-compatible API under `/playbasis`: translation only.
//!
//! Playbasis clients send form-encoded parameters (a `token` on writes, the
//! `api_key` or a `token` on reads) and always get HTTP 200 with an
//! envelope: `success`, a four-digit `error_code` ("0000" when fine), a
//! `message`, the `response`, and the server time. Field names and error
//! codes follow the vendor's public API.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

use crate::auth::throttled_async;
use crate::throttle::Subject;
use crate::{AppState, RequestId};
use engage_domain::actions::{self, ActionError, ActionRequest, Event};
use engage_domain::goods::{self, GoodsError, GroupView};
use engage_domain::players::{self, PlayerError, Profile};
use engage_domain::tenants::{self, TenantError};
use engage_ledger as ledger;
use engage_messaging::email::suppression;
use engage_messaging::pricing::PricingError;
use engage_messaging::{MessageError, SendRequest};
use engage_store::idempotency::Guarded;
use engage_store::ids::{iso8601_offset, now_ms, php_date_r, sql_datetime};
use engage_store::{Snapshot, StoreError};

pub fn routes() -> Router<AppState> {
    let routes: [(&str, axum::routing::MethodRouter<AppState>); 30] = [
        ("/Auth", post(auth)),
        ("/Auth/renew", post(renew)),
        ("/Player/list", post(player_list)),
        ("/Player/{id}", get(player).post(player)),
        ("/Player/{id}/data/all", get(player_all).post(player_all)),
        ("/Player/{id}/goods", get(player_goods)),
        ("/Player/{id}/register", post(register)),
        ("/Player/{id}/update", post(update)),
        ("/Player/{id}/points", get(points)),
        ("/Player/{id}/point/{name}", get(point)),
        ("/Player/{id}/point_history", get(point_history)),
        ("/Player/{id}/action/time", get(last_action)),
        ("/Player/{id}/action/{name}/time", get(action_time)),
        ("/Player/{id}/action/{name}/count", get(action_count)),
        ("/Player/{id}/deduct", post(deduct)),
        ("/Player/{id}/badge", get(player_badges)),
        ("/Service/recent_point", get(recent_points)),
        ("/Engine/rule", post(rule)),
        ("/Goods", get(goods_list)),
        ("/Goods/{id}", get(goods_one)),
        (
            "/Redeem/goodsGroup",
            get(group_availability).post(redeem_group),
        ),
        ("/Redeem/goods", post(redeem_goods)),
        ("/Player/{id}/redeemed", get(redeemed)),
        ("/Sms/send", post(sms_send)),
        ("/Sms/goods", post(sms_goods)),
        ("/Email/send", post(email_send)),
        ("/Email/goods", post(email_goods)),
        ("/Email/isBlackList", post(email_is_blacklisted)),
        ("/Email/addBlackList", post(email_blacklist)),
        ("/Email/removeBlackList", post(email_unblacklist)),
    ];
    let mut r = Router::new();
    for (path, handler) in routes {
        // Playbasis documents both `/Player/...` and `/player/...`.
        let lower = path.to_lowercase();
        if lower != path {
            r = r.route(&format!("/playbasis{lower}"), handler.clone());
        }
        r = r.route(&format!("/playbasis{path}"), handler);
    }
    r
}

/// Any call Engage does not implement under `/playbasis`: Playbasis's own
/// `NOT_IMPLEMENTED` (0005) in its envelope, so a client library reads it
/// as an API error instead of failing on a foreign body.
pub fn not_served() -> Response {
    PbError(
        "0005",
        "There is no implementation for the requested service".into(),
    )
    .into_response()
}

/// A Playbasis failure: its code and message.
pub struct PbError(&'static str, String);

impl PbError {
    fn missing(names: &[&str]) -> PbError {
        PbError(
            "0903",
            format!(
                "Invalid parameter , [ {} ] require , must not be blank or special character",
                names.join(" , ")
            ),
        )
    }
}

fn envelope(success: bool, code: &str, message: &str, response: Value) -> Response {
    let now = now_ms();
    Json(json!({
        "success": success,
        "error_code": code,
        "message": message,
        "response": response,
        "timestamp": now / 1000,
        "time": php_date_r(now),
    }))
    .into_response()
}

fn ok(response: Value) -> Response {
    envelope(true, "0000", "Success", response)
}

impl IntoResponse for PbError {
    fn into_response(self) -> Response {
        envelope(false, self.0, &self.1, Value::Null)
    }
}

type PbResult = Result<Response, PbError>;

/// The answer to a call its `Idempotency-Key` guards: the fresh `response`,
/// the first answer's again (marked `Idempotent-Replayed`), or Playbasis's
/// invalid-parameter error when the key came with another request.
fn answer(g: Guarded<Value>) -> PbResult {
    match g {
        Guarded::Fresh(v) => Ok(ok(v)),
        Guarded::Replay(r) => Ok(replayed(ok(r.body))),
        Guarded::Conflict => Err(reused()),
    }
}

/// An answer given again for a repeated `Idempotency-Key`.
fn replayed(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        "idempotent-replayed",
        axum::http::HeaderValue::from_static("true"),
    );
    resp
}

fn reused() -> PbError {
    PbError("0903", crate::mutation::KEY_REUSED.into())
}

/// The result of a domain call guarded by the request's key: the fresh
/// one, or the first one's again (true), decoded from what was kept.
fn fresh_or_kept<T: serde::de::DeserializeOwned>(g: Guarded<T>) -> Result<(T, bool), PbError> {
    match g {
        Guarded::Fresh(v) => Ok((v, false)),
        Guarded::Replay(r) => serde_json::from_value(r.body)
            .map(|v| (v, true))
            .map_err(|e| PbError("0800", format!("There is an internal server error: {e}"))),
        Guarded::Conflict => Err(reused()),
    }
}

/// Run `job` (which renders its `response`) in a write guarded by the
/// request's `Idempotency-Key`.
async fn guarded_write<F>(s: &AppState, tenant: &str, p: &Params, job: F) -> PbResult
where
    F: FnMut(&mut engage_store::Tx) -> Result<Value, PbError> + Send + 'static,
{
    let g = crate::mutation::guarded_json(s, tenant, p.2.clone(), axum::http::StatusCode::OK, job)
        .await?;
    answer(g)
}

impl From<StoreError> for PbError {
    fn from(e: StoreError) -> PbError {
        tracing::error!(error = %e, "internal error");
        PbError("0800", "There is an internal server error".into())
    }
}

impl From<crate::throttle::Locked> for PbError {
    fn from(l: crate::throttle::Locked) -> PbError {
        // Playbasis's own code for too many requests, saying why.
        PbError("0901", format!("Request exceeded , Too much request: {l}"))
    }
}

impl From<TenantError> for PbError {
    fn from(e: TenantError) -> PbError {
        match e {
            TenantError::BadCredentials => PbError("0001", "Invalid API-KEY OR API-SECRET".into()),
            TenantError::Store(s) => s.into(),
            _ => PbError("0900", "Invalid token Key".into()),
        }
    }
}

impl From<PlayerError> for PbError {
    fn from(e: PlayerError) -> PbError {
        match e {
            PlayerError::NotFound(_) => PbError("0200", "User doesn't exist".into()),
            PlayerError::Exists(_) => PbError("0201", "User already exist".into()),
            PlayerError::InvalidId => {
                PbError("0204", "cl_player_id format should be 0-9a-zA-Z_-".into())
            }
            PlayerError::InvalidPhone(_) => PbError(
                "0205",
                "phone number format should be +[countrycode][number] example. +66861234567".into(),
            ),
            PlayerError::UsernameTaken(_) => PbError("0215", "Username already exist.".into()),
            PlayerError::Store(s) => s.into(),
            e => PbError("0903", e.to_string()),
        }
    }
}

impl From<GoodsError> for PbError {
    fn from(e: GoodsError) -> PbError {
        match e {
            GoodsError::NotFound(_) => PbError("0501", "Goods not available".into()),
            GoodsError::PlayerNotFound(_) => PbError("0200", "User doesn't exist".into()),
            GoodsError::LimitReached { .. } => {
                PbError("0601", "User has exceeded redeem limit".into())
            }
            GoodsError::NotActive(_) | GoodsError::OutOfStock { stock: 0, .. } => {
                PbError("0603", "Goods is not available to redeem".into())
            }
            GoodsError::OutOfStock { .. } => {
                PbError("0604", "Goods is not enough to redeem".into())
            }
            GoodsError::InsufficientBalance { .. } => {
                PbError("0605", "Point is not enough to redeem".into())
            }
            GoodsError::Store(s) => s.into(),
            e => PbError("0903", e.to_string()),
        }
    }
}

impl From<ledger::LedgerError> for PbError {
    fn from(e: ledger::LedgerError) -> PbError {
        use ledger::LedgerError as L;
        match e {
            L::InsufficientBalance { .. } => {
                PbError("0207", "The user has not enough reward".into())
            }
            L::InvalidCurrency | L::TooManyCurrencies => {
                PbError("0401", "Reward not available".into())
            }
            L::Store(s) => s.into(),
            e => PbError("0903", e.to_string()),
        }
    }
}

impl From<ActionError> for PbError {
    fn from(e: ActionError) -> PbError {
        match e {
            ActionError::PlayerNotFound(_) => PbError("0200", "User doesn't exist".into()),
            ActionError::UnknownAction(_) => PbError("0301", "Action not available".into()),
            ActionError::Invalid(m) => PbError("0903", m),
            ActionError::Store(s) => s.into(),
            e => {
                tracing::warn!(error = %e, "rule engine failed");
                PbError("0800", format!("There is an internal server error: {e}"))
            }
        }
    }
}

/// The request's parameters (the query string and a form or JSON body), the
/// client's address, and the call its `Idempotency-Key` guards, if any.
pub struct Params(
    HashMap<String, String>,
    Option<std::net::IpAddr>,
    Option<engage_store::idempotency::Call>,
);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn require<const N: usize>(&self, names: [&str; N]) -> Result<[&str; N], PbError> {
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| self.get(n).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(PbError::missing(&missing));
        }
        Ok(names.map(|n| self.get(n).unwrap_or_default()))
    }
}

impl FromRequest<AppState> for Params {
    type Rejection = PbError;

    async fn from_request(req: Request, _: &AppState) -> Result<Self, PbError> {
        let ip = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let query = req.uri().query().unwrap_or_default().to_owned();
        let mut map: HashMap<String, String> = crate::wire::body_fields("", query.as_bytes())
            .await
            .into_iter()
            .collect();
        let content_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let json = content_type.starts_with("application/json");
        let key =
            crate::mutation::key_of(req.headers()).map_err(|m| PbError("0903", m.to_owned()))?;
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let body = crate::wire::read_limited(req.into_body(), crate::wire::MAX_BODY_BYTES)
            .await
            .map_err(|e| PbError("0903", e.message))?;
        if json {
            let v: serde_json::Map<String, Value> = serde_json::from_slice(&body)
                .map_err(|e| PbError("0903", format!("the JSON body is invalid: {e}")))?;
            for (k, v) in v {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                map.insert(k, v);
            }
        } else {
            // URL-encoded, or multipart as the PHP library's curl sends it.
            map.extend(crate::wire::body_fields(&content_type, &body).await);
        }
        let idem = crate::mutation::call_of(key, &method, &uri, &body);
        Ok(Params(map, ip, idem))
    }
}

/// The tenant of a Playbasis call: `token` (writes and reads) or `api_key`
/// (reads), as Playbasis accepts them.
fn tenant_of(s: &AppState, method: &Method, p: &Params) -> Result<String, PbError> {
    let t = tenant_of_credential(s, method, p)?;
    crate::identified(&t);
    Ok(t)
}

fn tenant_of_credential(s: &AppState, method: &Method, p: &Params) -> Result<String, PbError> {
    let snap = s.store.read()?;
    let subject = Subject::address(p.1);
    if let Some(token) = p.get("token") {
        return crate::auth::throttled(s, &subject, || {
            tenants::verify_token(&snap, token, now_ms())
        })?
        .map_err(|_| PbError("0900", "Invalid token Key".into()));
    }
    if method == Method::GET
        && let Some(key) = p.get("api_key")
    {
        return Ok(crate::auth::throttled(s, &subject, || {
            tenants::by_api_key(&snap, key)
        })??);
    }
    Err(PbError("0902", "Token key required".into()))
}

async fn auth(State(s): State<AppState>, p: Params) -> PbResult {
    let [key, secret] = p.require(["api_key", "api_secret"])?;
    let subject = Subject::new("key", key, p.1);
    let t = throttled_async(&s, &subject, tenants::issue_token(&s.store, key, secret)).await??;
    Ok(ok(
        json!({ "token": t.token, "date_expire": sql_datetime(t.expires_at_ms) }),
    ))
}

async fn renew(State(s): State<AppState>, p: Params) -> PbResult {
    let t = match p.get("token") {
        Some(token) => tenants::renew_token(&s.store, token)
            .await
            .map_err(|_| PbError("0900", "Invalid token Key".into()))?,
        None => {
            let [key, secret] = p.require(["api_key", "api_secret"])?;
            let subject = Subject::new("key", key, p.1);
            throttled_async(&s, &subject, tenants::issue_token(&s.store, key, secret)).await??
        }
    };
    Ok(ok(
        json!({ "token": t.token, "date_expire": sql_datetime(t.expires_at_ms) }),
    ))
}

fn profile_from(p: &Params) -> Profile {
    let f = |n: &str| p.get(n).map(str::to_owned);
    Profile {
        username: f("username"),
        email: f("email"),
        phone: f("phone_number"),
        image: f("image"),
        first_name: f("first_name"),
        last_name: f("last_name"),
        nickname: f("nickname"),
        gender: f("gender"),
        birth_date: f("birth_date"),
        attributes: None,
    }
}

/// Register or update a player from the form's profile fields.
async fn write_profile(
    s: AppState,
    method: Method,
    id: String,
    p: Params,
    op: players::ProfileWrite,
) -> PbResult {
    let tenant = tenant_of(&s, &method, &p)?;
    let profile = profile_from(&p);
    let (t, now) = (tenant.clone(), now_ms());
    guarded_write(&s, &tenant, &p, move |tx| {
        op(tx, &t, &id, profile.clone(), now)?;
        Ok(json!([]))
    })
    .await
}

async fn register(
    State(s): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    p: Params,
) -> PbResult {
    write_profile(s, method, id, p, players::register).await
}

async fn update(
    State(s): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    p: Params,
) -> PbResult {
    write_profile(s, method, id, p, players::update).await
}

async fn player(
    State(s): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    p: Params,
) -> PbResult {
    let tenant = tenant_of(&s, &method, &p)?;
    let pl = players::get(&s.store.read()?, &tenant, &id)?;
    Ok(ok(
        json!({ "player": player_json(pl, audience(&method, &p)) }),
    ))
}

/// Playbasis: `GET` (API key) is the public profile; `POST` with a token
/// adds the private fields.
fn audience(method: &Method, p: &Params) -> players::Audience {
    if method == Method::POST && p.get("token").is_some() {
        players::Audience::Private
    } else {
        players::Audience::Public
    }
}

/// A player object as Playbasis documents it; the domain decides what the
/// audience may see.
fn player_json(pl: players::Player, audience: players::Audience) -> Value {
    let pl = pl.for_audience(audience);
    let mut player = json!({
        "cl_player_id": pl.id,
        "username": pl.username,
        "first_name": pl.first_name,
        "last_name": pl.last_name,
        "gender": pl.gender,
        "image": pl.image,
        "exp": 0,
        "level": 1,
        "registered": iso8601_offset(pl.created_at_ms),
        "date_added": sql_datetime(pl.created_at_ms),
        "birth_date": pl.birth_date,
        "last_login": Value::Null,
        "last_logout": Value::Null,
    });
    if audience == players::Audience::Private {
        player["email"] = json!(pl.email);
        player["phone_number"] = json!(pl.phone);
    }
    player
}

/// The tenant of a read about player `id`, and the snapshot it reads, once
/// the player is known (`0200` otherwise).
fn player_read(
    s: &AppState,
    method: &Method,
    p: &Params,
    id: &str,
) -> Result<(String, Snapshot), PbError> {
    let tenant = tenant_of(s, method, p)?;
    let snap = s.store.read()?;
    players::get(&snap, &tenant, id)?;
    Ok((tenant, snap))
}

/// `POST /Player/list`: the players named in `list_player_id` (comma
/// separated, at most 100), public and private data; unknown ids are left
/// out, as Playbasis does.
async fn player_list(State(s): State<AppState>, method: Method, p: Params) -> PbResult {
    let tenant = tenant_of(&s, &method, &p)?;
    let [ids] = p.require(["list_player_id"])?;
    let snap = s.store.read()?;
    let mut list = Vec::new();
    for id in ids
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .take(100)
    {
        match players::get(&snap, &tenant, id) {
            Ok(pl) => list.push(player_json(pl, players::Audience::Private)),
            Err(PlayerError::Store(e)) => return Err(e.into()),
            Err(_) => {}
        }
    }
    Ok(ok(json!({ "player": list })))
}

/// `/Player/{id}/data/all`: the player with points, badges and the goods
/// redeemed (the latest 100).
async fn player_all(
    State(s): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    p: Params,
) -> PbResult {
    let tenant = tenant_of(&s, &method, &p)?;
    let snap = s.store.read()?;
    let pl = players::get(&snap, &tenant, &id)?;
    let mut player = player_json(pl, audience(&method, &p));
    player["badges"] = json!(badge_rows(&snap, &tenant, &id)?);
    player["goods"] = json!(owned_goods(&snap, &tenant, &id)?);
    player["points"] = json!(point_rows(balances_with_points(&snap, &tenant, &id)?));
    Ok(ok(json!({ "player": player })))
}

/// A player's badges as Playbasis lists them: Engage keeps a count per
/// badge name, no catalogue (images, hints, tags).
fn badge_rows(snap: &Snapshot, tenant: &str, player: &str) -> Result<Vec<Value>, PbError> {
    Ok(actions::badges(snap, tenant, player)?
        .into_iter()
        .map(|(b, n)| json!({ "badge_id": b, "name": b, "image": "", "description": "", "amount": n, "hint": "", "tags": null }))
        .collect())
}

/// `GET /Player/{id}/badge`: the badges the player earned.
async fn player_badges(
    State(s): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    p: Params,
) -> PbResult {
    let (tenant, snap) = player_read(&s, &method, &p, &id)?;
    Ok(ok(json!(badge_rows(&snap, &tenant, &id)?)))
}

/// `GET /Player/{id}/goods`: the goods the player owns (redeemed).
async fn player_goods(
    State(s): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    p: Params,
) -> PbResult {
    let (tenant, snap) = player_read(&s, &method, &p, &id)?;
    Ok(ok(json!({ "goods": owned_goods(&snap, &tenant, &id)? })))
}

/// Redeemed goods as Playbasis lists a player's goods: one row per
/// redemption (the latest 100), with its codes.
fn owned_goods(snap: &Snapshot, tenant: &str, player: &str) -> Result<Vec<Value>, PbError> {
    Ok(goods::redemptions_of(snap, tenant, player, 100)?
        .into_iter()
        .map(|r| {
            json!({
                "goods_id": r.group,
                "name": r.group_name,
                "image": "",
                "description": "",
                "code": r.codes.join(","),
                "amount": r.amount,
            })
        })
        .collect())
}

fn point_rows(list: Vec<(String, i64)>) -> Vec<Value> {
    list.into_iter()
        .map(|(c, v)| json!({ "reward_id": c, "reward_name": c, "value": v }))
        .collect()
}

async fn points(
    State(s): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    p: Params,
) -> PbResult {
    let (tenant, snap) = player_read(&s, &method, &p, &id)?;
    let list = balances_with_points(&snap, &tenant, &id)?;
    Ok(ok(json!({ "points": point_rows(list) })))
}

/// The player's balances, the default currency always among them (as
/// Playbasis lists `point` even at 0).
fn balances_with_points(
    snap: &Snapshot,
    tenant: &str,
    player: &str,
) -> Result<Vec<(String, i64)>, PbError> {
    let mut list = ledger::balances(snap, tenant, player)?;
    if !list.iter().any(|(c, _)| c == ledger::DEFAULT_CURRENCY) {
        list.insert(0, (ledger::DEFAULT_CURRENCY.to_owned(), 0));
    }
    Ok(list)
}

async fn point(
    State(s): State<AppState>,
    method: Method,
    Path((id, name)): Path<(String, String)>,
    p: Params,
) -> PbResult {
    let (tenant, snap) = player_read(&s, &method, &p, &id)?;
    if !ledger::currencies(&snap, &tenant)?.contains(&name) {
        return Err(PbError("0401", "Reward not available".into()));
    }
    let v = engage_ledger::views::balance(&snap, &tenant, &id, &name)?;
    Ok(ok(json!({ "point": point_rows(vec![(name, v)]) })))
}

/// `GET /Player/{id}/point_history`: the credits of one currency
/// (`point_name`) or all, newest first (`order=asc` for oldest first),
/// `offset` and `limit` (at most 500, 20 by default) as Playbasis pages them.
async fn point_history(
    State(s): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    p: Params,
) -> PbResult {
    let tenant = tenant_of(&s, &method, &p)?;
    let offset = number(&p, "offset", 0)?;
    let limit = number(&p, "limit", 20)?.min(500);
    let oldest_first = p
        .get("order")
        .is_some_and(|o| o.eq_ignore_ascii_case("asc"));
    let snap = s.store.read()?;
    players::get(&snap, &tenant, &id)?;
    let filter = credits_of(&snap, &tenant, &p)?;
    let entries = ledger::page(&snap, &tenant, &id, filter, offset, limit, oldest_first)?;
    let mut rows = Vec::with_capacity(entries.len());
    for e in entries {
        rows.push(history_row(&snap, &tenant, e)?);
    }
    Ok(ok(json!({ "points": rows })))
}

/// The credits a history lists: of `point_name` (`0401` when the tenant
/// has no such currency) or of every currency.
fn credits_of<'a>(
    snap: &Snapshot,
    tenant: &str,
    p: &'a Params,
) -> Result<ledger::Filter<'a>, PbError> {
    let currency = p.get("point_name");
    if let Some(c) = currency
        && !ledger::currencies(snap, tenant)?.iter().any(|k| k == c)
    {
        return Err(PbError("0401", "Reward not available".into()));
    }
    Ok(ledger::Filter {
        currency,
        credits_only: true,
    })
}

/// A credit as Playbasis's histories show it; one an action earned names it.
fn history_row(snap: &Snapshot, tenant: &str, e: ledger::Entry) -> Result<Value, PbError> {
    let mut row = json!({
        "reward_id": e.currency,
        "reward_name": e.currency,
        "value": e.amount,
        "message": e.reason,
        "date_added": iso8601_offset(e.time_ms),
    });
    let by = e
        .reference
        .as_deref()
        .map(|r| actions::by_reference(snap, tenant, r));
    if let Some(a) = by.transpose()?.flatten() {
        row["action_name"] = json!(a.action);
        row["action_time"] = json!(iso8601_offset(a.time_ms));
        row["string_filter"] = json!(a.url.unwrap_or_default());
    }
    Ok(row)
}

/// `GET /Service/recent_point`: the latest credits of every player (or of
/// `player_id`), with each player's public profile; `point_name`,
/// `offset` and `limit` (at most 500, 50 by default) as Playbasis takes them.
async fn recent_points(State(s): State<AppState>, method: Method, p: Params) -> PbResult {
    let tenant = tenant_of(&s, &method, &p)?;
    let offset = number(&p, "offset", 0)?;
    let limit = number(&p, "limit", 50)?.min(500);
    let snap = s.store.read()?;
    let filter = credits_of(&snap, &tenant, &p)?;
    let entries = match p.get("player_id") {
        Some(player) => {
            players::get(&snap, &tenant, player)?;
            ledger::page(&snap, &tenant, player, filter, offset, limit, false)?
        }
        None => ledger::recent(&snap, &tenant, filter, offset, limit)?,
    };
    let mut rows = Vec::with_capacity(entries.len());
    for e in entries {
        // Messaging accounts (`~messaging:…`) are ledger owners, not players.
        let Some(pl) = players::find(&snap, &tenant, &e.player)? else {
            continue;
        };
        let mut row = history_row(&snap, &tenant, e)?;
        row["player"] = player_json(pl, players::Audience::Public);
        rows.push(row);
    }
    Ok(ok(json!({ "points": rows })))
}

/// A whole-number parameter, `default` when absent.
fn number(p: &Params, name: &str, default: usize) -> Result<usize, PbError> {
    match p.get(name) {
        None => Ok(default),
        Some(v) => v.parse::<usize>().map_err(|_| {
            PbError(
                "0903",
                format!("Invalid parameter , [ {name} ] must be a number"),
            )
        }),
    }
}

/// `GET /Player/{id}/action/time`: the player's latest action and when.
async fn last_action(
    State(s): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    p: Params,
) -> PbResult {
    action_time_of(s, method, id, None, p).await
}

/// `GET /Player/{id}/action/{name}/time`: when the player last did it.
async fn action_time(
    State(s): State<AppState>,
    method: Method,
    Path((id, name)): Path<(String, String)>,
    p: Params,
) -> PbResult {
    action_time_of(s, method, id, Some(name), p).await
}

async fn action_time_of(
    s: AppState,
    method: Method,
    id: String,
    name: Option<String>,
    p: Params,
) -> PbResult {
    let (tenant, snap) = player_read(&s, &method, &p, &id)?;
    let action = match actions::last(&snap, &tenant, &id, name.as_deref())? {
        Some(l) => json!({
            "action_id": l.action,
            "action_name": l.action,
            "time": iso8601_offset(l.time_ms),
        }),
        // Playbasis answers an empty list when the player never did it.
        None => json!([]),
    };
    Ok(ok(json!({ "action": action })))
}

/// `GET /Player/{id}/action/{name}/count`: how many times the player did it.
async fn action_count(
    State(s): State<AppState>,
    method: Method,
    Path((id, name)): Path<(String, String)>,
    p: Params,
) -> PbResult {
    let tenant = tenant_of(&s, &method, &p)?;
    if p.get("key").is_some() || p.get("value").is_some() {
        // Engage counts actions per name, not per parameter value.
        return Err(PbError(
            "0005",
            "There is no implementation for the requested service: counting by key and value"
                .into(),
        ));
    }
    let snap = s.store.read()?;
    players::get(&snap, &tenant, &id)?;
    let n = actions::count(&snap, &tenant, &id, &name)?;
    Ok(ok(json!({
        "action": { "action_id": name, "action_name": name, "count": n }
    })))
}

/// `POST /Player/{id}/deduct`: take `amount` of the currency `reward`; with
/// `force`, what there is when that is less.
async fn deduct(
    State(s): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    p: Params,
) -> PbResult {
    let tenant = tenant_of(&s, &method, &p)?;
    let [reward, amount] = p.require(["reward", "amount"])?;
    let amount: i64 = amount.parse().map_err(|_| {
        PbError(
            "0903",
            "Invalid parameter , [ amount ] must be a number".into(),
        )
    })?;
    let force = p.get("force").is_some_and(|f| !matches!(f, "0" | "false"));
    let (currency, t, now) = (reward.to_owned(), tenant.clone(), now_ms());
    guarded_write(&s, &tenant, &p, move |tx| {
        players::get(tx, &t, &id)?;
        if !ledger::currencies(tx, &t)?.contains(&currency) {
            return Err(PbError("0401", "Reward not available".into()));
        }
        let done = ledger::deduct(tx, &t, &id, &currency, amount, force, "deduct", now)?;
        Ok(json!({
            "old_value": done.before,
            "new_value": done.after,
            "value_deducted": done.before - done.after,
        }))
    })
    .await
}

async fn rule(
    State(s): State<AppState>,
    method: Method,
    Extension(RequestId(rid)): Extension<RequestId>,
    p: Params,
) -> PbResult {
    let tenant = tenant_of(&s, &method, &p)?;
    let [player, action] = p.require(["player_id", "action"])?;
    const OWN: [&str; 5] = ["token", "api_key", "player_id", "action", "url"];
    let req = ActionRequest {
        player: player.to_owned(),
        action: action.to_owned(),
        params: p
            .0
            .iter()
            .filter(|(k, _)| !OWN.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
        url: p.get("url").map(str::to_owned),
    };
    let done = actions::perform(
        &s.plugins,
        &s.store,
        &tenant,
        &req,
        now_ms(),
        &rid,
        actions::Mode {
            dry_run: false,
            idem: p.2.clone(),
        },
    )
    .await?;
    let (done, again) = fresh_or_kept(done)?;
    let events: Vec<Value> = done
        .events
        .iter()
        .filter_map(|e| match e {
            Event::RewardReceived {
                currency, amount, ..
            } => Some(json!({
                "event_type": "REWARD_RECEIVED",
                "reward_type": currency,
                "value": amount.to_string(),
            })),
            Event::BadgeEarned { badge, .. } => Some(json!({
                "event_type": "REWARD_RECEIVED",
                "reward_type": "badge",
                "reward_data": { "badge_id": badge, "name": badge },
                "value": 1,
            })),
            Event::Custom { name, data } => Some(json!({
                "event_type": name,
                "value": data,
            })),
            Event::MessageRequested { .. } => None,
        })
        .collect();
    let resp = ok(json!({ "events": events, "action_id": done.action.id }));
    Ok(if again { replayed(resp) } else { resp })
}

fn goods_json(g: &GroupView) -> Value {
    json!({
        "goods_id": g.group.id,
        "name": g.group.name,
        "description": g.group.description,
        "image": Value::Null,
        "quantity": g.stock,
        "per_user": g.group.per_player_limit,
        "redeem": { "point": { "point_value": g.group.price } },
        "currency": g.group.currency,
        "date_start": g.group.active_from_ms.map(sql_datetime),
        "date_expire": g.group.active_until_ms.map(sql_datetime),
        "group": g.group.id,
        "is_group": true,
    })
}

async fn goods_list(State(s): State<AppState>, method: Method, p: Params) -> PbResult {
    let tenant = tenant_of(&s, &method, &p)?;
    let list = goods::list(&s.store.read()?, &tenant)?;
    Ok(ok(
        json!({ "goods_list": list.iter().map(goods_json).collect::<Vec<_>>() }),
    ))
}

async fn goods_one(
    State(s): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    p: Params,
) -> PbResult {
    let tenant = tenant_of(&s, &method, &p)?;
    let g = goods::get(&s.store.read()?, &tenant, &id)?;
    Ok(ok(json!({ "goods": goods_json(&g) })))
}

/// A group named by its id, or else by its name (Playbasis clients send the
/// group's name).
fn group_id(s: &AppState, tenant: &str, group: &str) -> Result<String, PbError> {
    Ok(goods::find(&s.store.read()?, tenant, group)?.group.id)
}

fn amount(p: &Params) -> Result<u64, PbError> {
    match p.get("amount") {
        None => Ok(1),
        Some(a) => a
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| PbError::missing(&["amount"])),
    }
}

async fn group_availability(State(s): State<AppState>, method: Method, p: Params) -> PbResult {
    let tenant = tenant_of(&s, &method, &p)?;
    let [player, group] = p.require(["player_id", "group"])?;
    let snap = s.store.read()?;
    players::get(&snap, &tenant, player)?;
    let id = group_id(&s, &tenant, group)?;
    let wanted = amount(&p)?;
    let n = goods::availability(&snap, &tenant, &id, Some(player), now_ms())?;
    Ok(ok(json!(if n >= wanted { n } else { 0 })))
}

async fn redeem_with(
    s: AppState,
    p: &Params,
    tenant: String,
    player: String,
    id: String,
    n: u64,
) -> PbResult {
    let (t, now) = (tenant.clone(), now_ms());
    guarded_write(&s, &tenant, p, move |tx| {
        let r = goods::redeem(tx, &t, &player, &id, n, now)?;
        let code = match r.codes.as_slice() {
            [one] => json!(one),
            many => json!(many),
        };
        Ok(json!({
            "events": [{
                "event_type": "GOODS_RECEIVED",
                "goods_data": {
                    "goods_id": r.group,
                    "name": r.group_name,
                    "group": r.group,
                    "code": code,
                    "redeem": { "point": { "point_value": r.price_each } },
                },
                "value": r.amount,
            }],
            "log_id": r.ref_id,
            "ref_id": r.ref_id,
        }))
    })
    .await
}

async fn redeem_group(State(s): State<AppState>, method: Method, p: Params) -> PbResult {
    let tenant = tenant_of(&s, &method, &p)?;
    let [player, group] = p.require(["player_id", "group"])?;
    // Playbasis checks the player before the goods.
    players::get(&s.store.read()?, &tenant, player)?;
    let id = group_id(&s, &tenant, group)?;
    let n = amount(&p)?;
    redeem_with(s, &p, tenant, player.to_owned(), id, n).await
}

async fn redeem_goods(State(s): State<AppState>, method: Method, p: Params) -> PbResult {
    let tenant = tenant_of(&s, &method, &p)?;
    let [player, goods_id] = p.require(["player_id", "goods_id"])?;
    let n = amount(&p)?;
    redeem_with(s, &p, tenant, player.to_owned(), goods_id.to_owned(), n).await
}

async fn redeemed(
    State(s): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    p: Params,
) -> PbResult {
    let (tenant, snap) = player_read(&s, &method, &p, &id)?;
    let list = goods::redemptions_of(&snap, &tenant, &id, 100)?;
    let rows: Vec<Value> = list
        .iter()
        .map(|r| {
            json!({
                "ref_id": r.ref_id,
                "goods_id": r.group,
                "name": r.group_name,
                "code": r.codes,
                "amount": r.amount,
                "date_added": sql_datetime(r.time_ms),
            })
        })
        .collect();
    Ok(ok(json!({ "goods": rows })))
}

impl From<MessageError> for PbError {
    fn from(e: MessageError) -> PbError {
        match e {
            MessageError::Pricing(PricingError::InsufficientCredit { .. }) => {
                PbError("0003", "Limit Exceed, Contact Admin".into())
            }
            MessageError::InvalidNumber(_) => PbError(
                "0205",
                "phone number format should be +[countrycode][number] example. +66861234567".into(),
            ),
            MessageError::Store(e) => e.into(),
            e => PbError("0800", format!("There is an internal server error: {e}")),
        }
    }
}

/// `/Sms/send` and `/Sms/goods`, `/Email/send` and `/Email/goods`: a
/// message to the player's phone, or with a subject to the player's e-mail,
/// through the tenant's route. `vars` fill the message's `{{...}}` through
/// the tenant's template binding.
async fn to_player(
    s: &AppState,
    (p, rid): (&Params, &str),
    tenant: &str,
    player: &players::Player,
    (message, subject): (&str, Option<&str>),
    mut vars: BTreeMap<String, String>,
) -> PbResult {
    let to = match subject {
        None => player.phone.clone().ok_or_else(|| {
            PbError(
                "0205",
                "phone number format should be +[countrycode][number] example. +66861234567".into(),
            )
        })?,
        Some(_) => {
            let email = player
                .email
                .as_deref()
                .and_then(|e| engage_messaging::address::normalize_email(e).ok())
                .ok_or_else(|| {
                    PbError(
                        "0801",
                        format!("Email error, cannot send email to: {}", player.id),
                    )
                })?;
            if suppression::contains(&s.store.read()?, tenant, &email)? {
                return Err(PbError(
                    "0802",
                    format!("Email error, all designated recipients are in black list: {email}"),
                ));
            }
            email
        }
    };
    vars.insert("player_id".into(), player.id.clone());
    for (name, value) in [
        ("username", &player.username),
        ("first_name", &player.first_name),
        ("last_name", &player.last_name),
        ("email", &player.email),
        ("phone_number", &player.phone),
    ] {
        if let Some(v) = value {
            vars.insert(name.into(), v.clone());
        }
    }
    let req = SendRequest {
        to: vec![to.clone()],
        channel: if subject.is_some() { "email" } else { "sms" }.into(),
        template: Some(message.to_owned()),
        subject: subject.map(str::to_owned),
        vars,
        ..SendRequest::default()
    };
    let sent = s
        .messaging
        .send(tenant, req, p.2.clone(), now_ms(), rid)
        .await?;
    let (accepted, again) = fresh_or_kept(sent)?;
    let m = accepted.messages.first();
    let resp = ok(json!({
        "to": to,
        "from": m.and_then(|m| m.plan.first()).and_then(|a| a.sender.clone()),
        "message": m.map(|m| m.body.clone()),
        "message_id": m.map(|m| m.id.clone()),
        "status": m.map(|m| m.status.as_str()),
    }));
    Ok(if again { replayed(resp) } else { resp })
}

async fn sms_send(
    State(s): State<AppState>,
    method: Method,
    Extension(RequestId(rid)): Extension<RequestId>,
    p: Params,
) -> PbResult {
    let tenant = tenant_of(&s, &method, &p)?;
    let [player_id, message] = p.require(["player_id", "message"])?;
    let player = players::get(&s.store.read()?, &tenant, player_id)?;
    to_player(
        &s,
        (&p, &rid),
        &tenant,
        &player,
        (message, None),
        BTreeMap::new(),
    )
    .await
}

async fn email_send(
    State(s): State<AppState>,
    method: Method,
    Extension(RequestId(rid)): Extension<RequestId>,
    p: Params,
) -> PbResult {
    let tenant = tenant_of(&s, &method, &p)?;
    let [player_id, subject, message] = p.require(["player_id", "subject", "message"])?;
    let player = players::get(&s.store.read()?, &tenant, player_id)?;
    let what = (message, Some(subject));
    to_player(&s, (&p, &rid), &tenant, &player, what, BTreeMap::new()).await
}

/// The coupon of redemption `ref_id` by SMS (`/Sms/goods`) or, with a
/// subject, by e-mail (`/Email/goods`): `{{code}}` (as the seed writes it)
/// and `{{coupon}}` (as Playbasis documents it) are the code.
async fn goods_message(
    s: &AppState,
    method: &Method,
    rid: &str,
    p: &Params,
    email: bool,
) -> PbResult {
    let tenant = tenant_of(s, method, p)?;
    let [player_id, ref_id, message] = p.require(["player_id", "ref_id", "message"])?;
    let subject = if email {
        Some(p.require(["subject"])?[0])
    } else {
        None
    };
    let snap = s.store.read()?;
    let player = players::get(&snap, &tenant, player_id)?;
    let redemption = goods::redemption(&snap, &tenant, ref_id)
        .ok()
        .filter(|r| r.player == player.id)
        .ok_or_else(|| PbError("0502", "Goods is not yet redeemed".into()))?;
    drop(snap);
    let code = redemption.codes.join(", ");
    let vars = BTreeMap::from([
        ("code".to_owned(), code.clone()),
        ("coupon".to_owned(), code),
    ]);
    to_player(s, (p, rid), &tenant, &player, (message, subject), vars).await
}

async fn sms_goods(
    State(s): State<AppState>,
    method: Method,
    Extension(RequestId(rid)): Extension<RequestId>,
    p: Params,
) -> PbResult {
    goods_message(&s, &method, &rid, &p, false).await
}

async fn email_goods(
    State(s): State<AppState>,
    method: Method,
    Extension(RequestId(rid)): Extension<RequestId>,
    p: Params,
) -> PbResult {
    goods_message(&s, &method, &rid, &p, true).await
}

/// The `email` parameter, as Engage keeps addresses.
fn email_param(p: &Params) -> Result<String, PbError> {
    let [email] = p.require(["email"])?;
    engage_messaging::address::normalize_email(email).map_err(|_| {
        PbError(
            "0801",
            format!("Email error, cannot send email to: {email}"),
        )
    })
}

/// `/Email/isBlackList`: whether the address is suppressed.
async fn email_is_blacklisted(State(s): State<AppState>, method: Method, p: Params) -> PbResult {
    let tenant = tenant_of(&s, &method, &p)?;
    let email = email_param(&p)?;
    let banned = suppression::contains(&s.store.read()?, &tenant, &email)?;
    Ok(ok(json!(banned)))
}

/// `/Email/addBlackList` and `/Email/removeBlackList`: suppress the address
/// or lift its suppression (Playbasis's black list is Engage's suppression
/// list).
async fn email_black_list(s: &AppState, method: &Method, p: &Params, add: bool) -> PbResult {
    let tenant = tenant_of(s, method, p)?;
    let email = email_param(p)?;
    let changed = if add {
        (s.messaging)
            .suppress(&tenant, &email, "playbasis:addBlackList", now_ms())
            .await?
    } else {
        s.messaging.lift_suppression(&tenant, &email).await?
    };
    match (add, changed) {
        (true, true) => Ok(ok(json!("Add email into blacklist successfully"))),
        (false, true) => Ok(ok(json!("Remove email from blacklist successfully"))),
        (true, false) => Err(PbError(
            "0803",
            format!("Email is already in black list: {email}"),
        )),
        (false, false) => Err(PbError(
            "0804",
            format!("Email is not in black list: {email}"),
        )),
    }
}

async fn email_blacklist(State(s): State<AppState>, method: Method, p: Params) -> PbResult {
    email_black_list(&s, &method, &p, true).await
}

async fn email_unblacklist(State(s): State<AppState>, method: Method, p: Params) -> PbResult {
    email_black_list(&s, &method, &p, false).await
}
