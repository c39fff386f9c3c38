//! The Annex Cloud-compatible API under `/annex/api/3.0` (seed 002):
//! segments (`POST /segment`, reading, replacing and deleting one), and
//! the loyalty calls Annex's own commerce connector makes: users
//! (`POST /users`, `GET`/`PUT /users/{id}`) and points (`POST /points` to
//! credit, debit or do an action, `GET /points/{id}`). Translation only,
//! over [`engage_domain::audiences::segments`], [`engage_domain::players`],
//! [`engage_ledger`] and [`engage_domain::actions`].
//!
//! Authentication: `Authorization: Bearer` with the tenant's API key, an
//! access token, Annex's own form of access token — base64 of a JSON
//! array or object holding the site id (the tenant) and the token (its
//! API key) — or the connector's JWT: HS256 signed with the site's API
//! token (the tenant's API key), its `siteId` claim (or the
//! `X-AnnexCloud-Site` header) naming the tenant. Errors are
//! `{"errorCode","errorMessage"}`: `AC1001` something went wrong (500),
//! `AC1002` invalid request (400), `AC1003` not authorised (401), `AC1004`
//! no such segment or user (404).

use crate::wire::{Body, BodyError};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::mutation::{guarded_json, vendor_answer};
use engage_domain::actions::{self, ActionError, ActionRequest};
use engage_domain::audiences::segments::{self, Segment, SegmentError, SegmentSpec, SegmentStatus};
use engage_domain::players::{self, Player, PlayerError, Profile};
use engage_domain::tenants;
use engage_ledger::{self as ledger, LedgerError, Posting};
use engage_store::idempotency::{self, Guarded};
use engage_store::ids::{now_ms, parse_sql_datetime, sha256_hex, sql_datetime};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/annex/api/3.0/segment", post(create))
        .route(
            "/annex/api/3.0/segment/{id}",
            axum::routing::get(show).put(replace).delete(remove),
        )
        .route("/annex/api/3.0/users", post(create_user))
        .route(
            "/annex/api/3.0/users/{id}",
            axum::routing::get(show_user).put(update_user),
        )
        .route("/annex/api/3.0/points", post(points))
        .route(
            "/annex/api/3.0/points/{id}",
            axum::routing::get(show_points),
        )
}

struct AnnexError(StatusCode, &'static str, String);

/// A path or method under `/annex` that Engage does not serve.
pub fn not_served() -> Response {
    AnnexError(
        StatusCode::NOT_FOUND,
        "AC1002",
        "no such endpoint (Engage serves api/3.0/segment, api/3.0/users and api/3.0/points)".into(),
    )
    .into_response()
}

impl From<BodyError> for AnnexError {
    fn from(e: BodyError) -> AnnexError {
        AnnexError(e.status, "AC1002", e.message)
    }
}

impl IntoResponse for AnnexError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({ "errorCode": self.1, "errorMessage": self.2 })),
        )
            .into_response()
    }
}

impl From<SegmentError> for AnnexError {
    fn from(e: SegmentError) -> Self {
        match e {
            SegmentError::Store(s) => s.into(),
            SegmentError::NotFound(_) => AnnexError(StatusCode::NOT_FOUND, "AC1004", e.to_string()),
            SegmentError::Invalid(m) => AnnexError(StatusCode::BAD_REQUEST, "AC1002", m),
        }
    }
}

impl From<engage_store::StoreError> for AnnexError {
    fn from(e: engage_store::StoreError) -> Self {
        tracing::error!(error = %e, "annex");
        AnnexError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "AC1001",
            "Oops! Something went wrong.".into(),
        )
    }
}

/// The tenant of the bearer credential.
struct Tenant(String);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = AnnexError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, AnnexError> {
        let denied = || {
            AnnexError(
                StatusCode::UNAUTHORIZED,
                "AC1003",
                "Authorization: Bearer <access token> is required".into(),
            )
        };
        let snap = s.store.read()?;
        if let Some(t) = crate::auth::bearer_key_tenant(parts, &snap)? {
            return Ok(Tenant(t));
        }
        let bearer = crate::auth::bearer_credential(parts).ok_or_else(denied)?;
        if bearer.split('.').count() == 3 {
            let site = parts
                .headers
                .get("x-annexcloud-site")
                .and_then(|v| v.to_str().ok());
            let tenant = jwt_tenant(&snap, bearer, site, now_ms() / 1000).ok_or_else(denied)?;
            crate::identified(&tenant);
            return Ok(Tenant(tenant));
        }
        // Annex's access token: base64 of [token, site id] or {…}.
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(bearer)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .ok_or_else(denied)?;
        let strings: Vec<String> = match &decoded {
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Value::Object(o) => o
                .values()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let tenant = strings
            .iter()
            .find_map(|key| tenants::by_api_key(&snap, key).ok())
            .ok_or_else(denied)?;
        if !strings.contains(&tenant) {
            return Err(denied()); // the site id must name the key's tenant
        }
        crate::identified(&tenant);
        Ok(Tenant(tenant))
    }
}

/// The tenant of the connector's JWT: HS256 over `header.payload` with the
/// tenant's API key, not expired, its `siteId` (or `site`, the
/// `X-AnnexCloud-Site` header) the tenant's id. The `hmac` claim binds the
/// token to what the connector signed (not the body): not checked.
fn jwt_tenant(
    snap: &engage_store::Snapshot,
    jwt: &str,
    site: Option<&str>,
    now_s: i64,
) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use hmac::{Hmac, Mac};
    let mut parts = jwt.splitn(3, '.');
    let (h, p, sig) = (parts.next()?, parts.next()?, parts.next()?);
    let header: Value = serde_json::from_slice(&B64.decode(h).ok()?).ok()?;
    if header["alg"] != "HS256" {
        return None; // never `none`, never a public-key algorithm
    }
    let claims: Value = serde_json::from_slice(&B64.decode(p).ok()?).ok()?;
    let tenant = claims["siteId"].as_str().or(site)?;
    if site.is_some_and(|s| s != tenant) {
        return None;
    }
    if let Some(exp) = claims.get("exp")
        && exp.as_i64().is_none_or(|e| e < now_s)
    {
        return None;
    }
    let t = tenants::get(snap, tenant).ok()?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(t.api_key.as_bytes()).ok()?;
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    mac.verify_slice(&B64.decode(sig).ok()?).ok()?;
    Some(t.id)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnnexSegment {
    name: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    from_date: Option<String>,
    to_date: Option<String>,
    #[serde(default)]
    member: String,
    status: Option<String>,
    external_id: Option<String>,
    external_name: Option<String>,
}

fn bad(m: impl Into<String>) -> AnnexError {
    AnnexError(StatusCode::BAD_REQUEST, "AC1002", m.into())
}

/// `yyyy-mm-dd` at `time`, as ms.
fn date(d: &Option<String>, time: &str, field: &str) -> Result<Option<i64>, AnnexError> {
    match d.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        None => Ok(None),
        Some(d) => parse_sql_datetime(&format!("{d} {time}"))
            .map(Some)
            .ok_or_else(|| bad(format!("{field} is a date in yyyy-mm-dd format"))),
    }
}

fn spec(raw: &[u8]) -> Result<SegmentSpec, AnnexError> {
    let a: AnnexSegment = serde_json::from_slice(raw)
        .map_err(|e| bad(format!("the body is not the expected JSON: {e}")))?;
    let status = match a.status.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("ACTIVE") => SegmentStatus::Active,
        Some("INACTIVE") => SegmentStatus::Inactive,
        Some(_) => return Err(bad("status is ACTIVE or INACTIVE")),
    };
    Ok(SegmentSpec {
        name: a.name,
        kind: a.kind.unwrap_or_else(|| "Current Data".into()),
        from_ms: date(&a.from_date, "00:00:00", "fromDate")?,
        to_ms: date(&a.to_date, "23:59:00", "toDate")?,
        members: a
            .member
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
        rule: None,
        status,
        external_id: a.external_id,
        external_name: a.external_name,
    })
}

/// `yyyy-MM-dd'T'HH:mm:ssZ`.
fn annex_date(ms: Option<i64>) -> Value {
    ms.map(|ms| format!("{}+0000", sql_datetime(ms).replacen(' ', "T", 1)).into())
        .unwrap_or(Value::Null)
}

fn view(s: &Segment) -> Value {
    json!({
        "segmentId": s.id,
        "segmentName": s.name,
        "segmentType": s.kind,
        "segmentFromDate": annex_date(s.from_ms),
        "segmentToDate": annex_date(s.to_ms),
        "member": s.members.join(","),
        "status": match s.status { SegmentStatus::Active => "ACTIVE", SegmentStatus::Inactive => "INACTIVE" },
        "externalId": s.external_id,
        "externalName": s.external_name,
    })
}

async fn create(
    Tenant(t): Tenant,
    State(s): State<AppState>,
    Body(raw, idem, _): Body<AnnexError>,
) -> Result<Response, AnnexError> {
    let spec = spec(&raw)?;
    let (tenant, now) = (t.clone(), now_ms());
    let g = guarded_json(&s, &tenant, idem, StatusCode::OK, move |tx| {
        Ok::<_, AnnexError>(view(&segments::create(tx, &t, spec.clone(), now)?))
    })
    .await?;
    vendor_answer(g, StatusCode::OK, reused)
}

async fn show(
    Tenant(t): Tenant,
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<Value>, AnnexError> {
    let seg = segments::get(&s.store.read()?, &t, id)?.ok_or(SegmentError::NotFound(id))?;
    Ok(Json(view(&seg)))
}

async fn replace(
    Tenant(t): Tenant,
    State(s): State<AppState>,
    Path(id): Path<u64>,
    Body(raw, idem, _): Body<AnnexError>,
) -> Result<Response, AnnexError> {
    let spec = spec(&raw)?;
    let (tenant, now) = (t.clone(), now_ms());
    let g = guarded_json(&s, &tenant, idem, StatusCode::OK, move |tx| {
        Ok::<_, AnnexError>(view(&segments::replace(tx, &t, id, spec.clone(), now)?))
    })
    .await?;
    vendor_answer(g, StatusCode::OK, reused)
}

async fn remove(
    Tenant(t): Tenant,
    State(s): State<AppState>,
    Path(id): Path<u64>,
    Body(_, idem, _): Body<AnnexError>,
) -> Result<Response, AnnexError> {
    let tenant = t.clone();
    let g = guarded_json(&s, &tenant, idem, StatusCode::NO_CONTENT, move |tx| {
        segments::remove(tx, &t, id)?;
        Ok::<_, AnnexError>(Value::Null)
    })
    .await?;
    vendor_answer(g, StatusCode::NO_CONTENT, reused)
}

fn reused() -> AnnexError {
    bad(crate::mutation::KEY_REUSED)
}

fn user_not_found(id: &str) -> AnnexError {
    AnnexError(
        StatusCode::NOT_FOUND,
        "AC1004",
        format!("no user `{}`", id.chars().take(64).collect::<String>()),
    )
}

impl From<PlayerError> for AnnexError {
    fn from(e: PlayerError) -> Self {
        match e {
            PlayerError::Store(s) => s.into(),
            PlayerError::NotFound(id) => user_not_found(&id),
            e => bad(e.to_string()),
        }
    }
}

/// A user as the connector sends it.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AnnexUser {
    id: Option<String>,
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<String>,
    birth_date: Option<String>,
    user_profile_image_url: Option<String>,
    opt_in_status: Option<String>,
    status: Option<String>,
    anniversary_date: Option<String>,
    zip_code: Option<String>,
    #[serde(default)]
    extended_attribute: std::collections::BTreeMap<String, String>,
}

/// Annex's fields that Engage keeps as player attributes.
const KEPT: [&str; 4] = ["optInStatus", "status", "anniversaryDate", "zipCode"];

fn profile_of(u: AnnexUser) -> Profile {
    let mut attributes: std::collections::BTreeMap<String, Value> = u
        .extended_attribute
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    for (k, v) in KEPT
        .into_iter()
        .zip([u.opt_in_status, u.status, u.anniversary_date, u.zip_code])
    {
        if let Some(v) = v {
            attributes.insert(k.to_owned(), Value::String(v));
        }
    }
    Profile {
        email: u.email,
        phone: u.phone.filter(|p| !p.trim().is_empty()),
        first_name: u.first_name,
        last_name: u.last_name,
        birth_date: u.birth_date,
        image: u.user_profile_image_url,
        attributes: (!attributes.is_empty()).then_some(attributes),
        ..Profile::default()
    }
}

fn user_view(p: &Player) -> Value {
    let attr = |k: &str| p.attributes.get(k).cloned().unwrap_or(Value::Null);
    let extended: serde_json::Map<String, Value> = p
        .attributes
        .iter()
        .filter(|(k, _)| !KEPT.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    json!({
        "id": p.id,
        "email": p.email,
        "firstName": p.first_name,
        "lastName": p.last_name,
        "phone": p.phone,
        "birthDate": p.birth_date,
        "userProfileImageUrl": p.image,
        "optInStatus": attr("optInStatus"),
        "status": match attr("status") { Value::Null => json!("ACTIVE"), s => s },
        "anniversaryDate": attr("anniversaryDate"),
        "zipCode": attr("zipCode"),
        "extendedAttribute": extended,
        "createdAt": annex_date(Some(p.created_at_ms)),
    })
}

fn annex_user(raw: &[u8]) -> Result<AnnexUser, AnnexError> {
    serde_json::from_slice(raw).map_err(|e| bad(format!("the body is not the expected JSON: {e}")))
}

async fn create_user(
    Tenant(t): Tenant,
    State(s): State<AppState>,
    Body(raw, idem, _): Body<AnnexError>,
) -> Result<Response, AnnexError> {
    let mut u = annex_user(&raw)?;
    let id =
        u.id.take()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| bad("id is required"))?;
    write_user(&s, t, id, profile_of(u), idem, players::register).await
}

async fn show_user(
    Tenant(t): Tenant,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AnnexError> {
    Ok(Json(user_view(&players::get(&s.store.read()?, &t, &id)?)))
}

async fn update_user(
    Tenant(t): Tenant,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(raw, idem, _): Body<AnnexError>,
) -> Result<Response, AnnexError> {
    write_user(
        &s,
        t,
        id,
        profile_of(annex_user(&raw)?),
        idem,
        players::update,
    )
    .await
}

/// Register or update a user (a player) in a write guarded by the key.
async fn write_user(
    s: &AppState,
    t: String,
    id: String,
    profile: Profile,
    idem: Option<idempotency::Call>,
    op: players::ProfileWrite,
) -> Result<Response, AnnexError> {
    let (tenant, now) = (t.clone(), now_ms());
    let g = guarded_json(s, &tenant, idem, StatusCode::OK, move |tx| {
        Ok::<_, AnnexError>(user_view(&op(tx, &t, &id, profile.clone(), now)?))
    })
    .await?;
    vendor_answer(g, StatusCode::OK, reused)
}

/// A points request: a credit, a debit, or an action whose rules decide.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PointsRequest {
    id: String,
    activity: Option<String>,
    reason: Option<String>,
    credit: Option<Value>,
    debit: Option<Value>,
    order_id: Option<String>,
    action_id: Option<String>,
}

/// A whole number of points, as a number or digits.
fn amount(v: &Option<Value>, field: &str) -> Result<Option<i64>, AnnexError> {
    let n = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    match n {
        Some(n) if n > 0 && n <= ledger::MAX_AMOUNT => Ok(Some(n)),
        _ => Err(bad(format!(
            "{field} is a whole number of points, 1 to {}",
            ledger::MAX_AMOUNT
        ))),
    }
}

fn points_view(s: &engage_store::Snapshot, t: &str, id: &str) -> Result<Value, AnnexError> {
    let available = engage_ledger::views::balance(s, t, id, ledger::DEFAULT_CURRENCY)?;
    let totals = ledger::totals(s, t, id, ledger::DEFAULT_CURRENCY)?;
    Ok(json!({
        "id": id,
        "availablePoints": available,
        "usedPoints": totals.debited,
        "lifetimePoints": totals.credited,
        "expiredPoints": 0,
        "holdPoints": 0,
        "pointsToExpire": 0,
    }))
}

/// `POST /points`: `credit` or `debit` points (the default currency), or
/// do the user's action `actionId`. An `orderId` makes a retried request
/// count once (the same order and action again replays the answer).
async fn points(
    Tenant(t): Tenant,
    State(s): State<AppState>,
    Body(raw, header_idem, _): Body<AnnexError>,
) -> Result<Json<Value>, AnnexError> {
    let req: PointsRequest = serde_json::from_slice(&raw)
        .map_err(|e| bad(format!("the body is not the expected JSON: {e}")))?;
    let (credit, debit) = (amount(&req.credit, "credit")?, amount(&req.debit, "debit")?);
    // The client's Idempotency-Key; else the order the points are for.
    let idem = header_idem.or(req.order_id.as_ref().map(|o| idempotency::Call {
        key: format!(
            "annex-points:{o}:{}:{}",
            req.activity.as_deref().unwrap_or_default(),
            req.action_id.as_deref().unwrap_or_default()
        ),
        fingerprint: sha256_hex(&raw),
    }));
    let now = now_ms();
    let move_by = match (credit, debit) {
        (Some(_), Some(_)) => return Err(bad("credit or debit, not both")),
        (Some(c), None) => Some(c),
        (None, Some(d)) => Some(-d),
        (None, None) => None,
    };
    if let Some(delta) = move_by {
        let (t2, id) = (t.clone(), req.id.clone());
        let reason = req
            .reason
            .clone()
            .unwrap_or_else(|| if delta > 0 { "credit" } else { "debit" }.into());
        let reference = req.order_id.clone();
        let done = guarded_json(&s, &t2.clone(), idem, StatusCode::OK, move |tx| {
            let posting = Posting {
                player: &id,
                currency: ledger::DEFAULT_CURRENCY,
                amount: delta,
                reason: &reason,
                reference: reference.as_deref(),
            };
            engage_domain::players::post_points(tx, &t2, &posting, now).map_err(|e| match e {
                LedgerError::Store(s) => AnnexError::from(s),
                LedgerError::PlayerNotFound(id) => user_not_found(&id),
                LedgerError::InsufficientBalance { balance, .. } => {
                    bad(format!("not enough points: {balance} available"))
                }
                e => bad(e.to_string()),
            })?;
            Ok::<_, AnnexError>(Value::Null)
        })
        .await?;
        if matches!(done, Guarded::Conflict) {
            return Err(bad("orderId was used for another points request"));
        }
    } else {
        let Some(action) = req.action_id.clone().filter(|a| !a.is_empty()) else {
            return Err(bad("credit, debit or actionId is required"));
        };
        let a = ActionRequest {
            player: req.id.clone(),
            action,
            params: Default::default(),
            url: None,
        };
        let mode = actions::Mode {
            dry_run: false,
            idem,
        };
        match actions::perform(&s.plugins, &s.store, &t, &a, now, "annex", mode).await {
            Ok(Guarded::Conflict) => {
                return Err(bad("orderId was used for another points request"));
            }
            Ok(_) => {}
            Err(ActionError::PlayerNotFound(id)) => return Err(user_not_found(&id)),
            Err(ActionError::UnknownAction(a)) => {
                return Err(bad(format!(
                    "no rule gives points for action `{}`",
                    a.chars().take(64).collect::<String>()
                )));
            }
            Err(ActionError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(bad(e.to_string())),
        }
    }
    let mut v = points_view(&s.store.read()?, &t, &req.id)?;
    v["activity"] = json!(req.activity);
    v["actionId"] = json!(req.action_id);
    v["orderId"] = json!(req.order_id);
    v["credit"] = json!(credit);
    v["debit"] = json!(debit);
    Ok(Json(v))
}

async fn show_points(
    Tenant(t): Tenant,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AnnexError> {
    let snap = s.store.read()?;
    players::get(&snap, &t, &id)?;
    Ok(Json(points_view(&snap, &t, &id)?))
}
