//! The Playblazer-compatible gifts API under `/playblazer`: translation
//! only.
//!
//! `APP_ID` is the tenant's id and `secret_key` its API secret; `MODE` says
//! how `USER_ID` is read (an identity mode such as `fb` or `device`, or
//! `player` for an Engage player id). Parameters come from the query, a
//! URL-encoded body or a multipart form (`curl -F`); `custom:*` parameters
//! are the request's attributes. Answers are JSON, or XML with `fmt=xml`:
//! `{"status":"ok",…}` or `{"status":"error","error":{"message","code","code_str"}}`.
//! The seed gives numbers only for the gift codes (-30002, -30003, -30004);
//! `E_GIFT_REQUEST_FAILED` is -30001, `E_NO_PROFILE` -10002 and a bad app id
//! or secret key `E_AUTH_FAILED` -10001.

use std::collections::BTreeMap;

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{Value, json};

use crate::wire::{XmlStyle, write_xml};
use crate::{AppState, RequestId};
use engage_domain::gifts::{self, GiftError};
use engage_domain::players;
use engage_domain::social;
use engage_domain::tenants;
use engage_store::Snapshot;
use engage_store::idempotency::Guarded;
use engage_store::ids::{now_ms, sql_datetime};

pub fn routes() -> Router<AppState> {
    let base = "/playblazer/v1/app/{app}/gifts/{mode}/{user}";
    Router::new()
        .route(&format!("{base}/request/new"), post(request_new))
        .route(&format!("{base}/list"), get(list))
        .route(&format!("{base}/request/reply"), post(reply))
}

/// Parameters from the query string and the body, whatever its encoding.
pub struct Params(
    BTreeMap<String, String>,
    Option<engage_store::idempotency::Call>,
);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn xml(&self) -> bool {
        self.get("fmt") == Some("xml")
    }

    /// The `custom:*` parameters, without the prefix.
    fn custom(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("custom:").map(|k| (k.to_owned(), v.clone())))
            .collect()
    }
}

impl FromRequest<AppState> for Params {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let xml = req.uri().query().is_some_and(|q| q.contains("fmt=xml"));
        let key = crate::mutation::key_of(req.headers())
            .map_err(|m| failure(xml, -30001, "E_GIFT_REQUEST_FAILED", m))?;
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let map = crate::wire::read(req, state)
            .await
            .map_err(|e| failure(xml, -30001, "E_GIFT_REQUEST_FAILED", &e))?;
        let idem = key.and_then(|k| {
            let fingerprinted = serde_json::to_vec(&map).unwrap_or_default();
            crate::mutation::call_of(Some(k), &method, &uri, &fingerprinted)
        });
        Ok(Params(map, idem))
    }
}

fn render(xml: bool, v: Value) -> Response {
    if xml {
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        write_xml(&mut s, "response", &v, XmlStyle::Singular);
        ([(CONTENT_TYPE, "application/xml; charset=utf-8")], s).into_response()
    } else {
        axum::Json(v).into_response()
    }
}

/// A path or method under `/playblazer` that Engage does not serve.
pub fn not_served(xml: bool) -> Response {
    let mut r = failure(
        xml,
        -30001,
        "E_GIFT_REQUEST_FAILED",
        "no such endpoint: Engage serves the gift request, list and reply calls",
    );
    *r.status_mut() = axum::http::StatusCode::NOT_FOUND;
    r
}

fn failure(xml: bool, code: i32, code_str: &str, message: &str) -> Response {
    render(
        xml,
        json!({ "status": "error", "error": { "message": message, "code": code, "code_str": code_str } }),
    )
}

fn gift_failure(xml: bool, e: GiftError) -> Response {
    let message = e.to_string();
    match e {
        GiftError::NoProfile => failure(xml, -10002, "E_NO_PROFILE", "User profile not found"),
        GiftError::RequestIdMissing | GiftError::NotFound(_) | GiftError::AlreadyReplied(_) => {
            failure(xml, -30002, "E_GIFT_INVALID_REQUEST", &message)
        }
        GiftError::Expired(_) => failure(xml, -30003, "E_GIFT_REQUEST_EXPIRED", &message),
        GiftError::Rejected {
            code,
            code_str,
            message,
        } => failure(xml, code, &code_str, &message),
        e => {
            tracing::warn!(error = %e, "gift request failed");
            failure(xml, -30001, "E_GIFT_REQUEST_FAILED", &message)
        }
    }
}

/// A Playblazer error before any gift logic ran.
struct Refused(i32, &'static str, &'static str);

impl Refused {
    fn render(self, xml: bool) -> Response {
        failure(xml, self.0, self.1, self.2)
    }
}

/// Check the app id and secret key and find the user: the tenant and player.
fn authenticate(
    s: &AppState,
    app: &str,
    mode: &str,
    user: &str,
    p: &Params,
    ip: Option<std::net::IpAddr>,
) -> Result<(Snapshot, String, String), Refused> {
    let internal = |e: engage_store::StoreError| {
        tracing::error!(error = %e, "storage");
        Refused(-30001, "E_GIFT_REQUEST_FAILED", "internal error")
    };
    let snap = s.store.read().map_err(internal)?;
    let secret = p.get("secret_key").unwrap_or_default();
    let subject = crate::throttle::Subject::new("app", app, ip);
    match crate::auth::throttled(s, &subject, || {
        tenants::check_tenant_secret(&snap, app, secret)
    }) {
        Ok(Ok(())) => crate::identified(app),
        Ok(Err(_)) => {
            return Err(Refused(
                -10001,
                "E_AUTH_FAILED",
                "Invalid app id or secret key",
            ));
        }
        Err(_) => {
            return Err(Refused(
                -10001,
                "E_AUTH_FAILED",
                "Too many failed attempts with this app id or from this address; try again later",
            ));
        }
    }
    let player = social::resolve(&snap, app, mode, user)
        .map_err(internal)?
        .ok_or(Refused(-10002, "E_NO_PROFILE", "User profile not found"))?;
    Ok((snap, app.to_owned(), player))
}

async fn request_new(
    State(s): State<AppState>,
    Extension(RequestId(rid)): Extension<RequestId>,
    Path((app, mode, user)): Path<(String, String, String)>,
    crate::auth::ClientIp(ip): crate::auth::ClientIp,
    p: Params,
) -> Response {
    let xml = p.xml();
    let (snap, tenant, player) = match authenticate(&s, &app, &mode, &user, &p, ip) {
        Ok(v) => v,
        Err(r) => return r.render(xml),
    };
    drop(snap);
    let expiry = match p.get("expiry") {
        None | Some("") => None,
        Some(e) => match e.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return failure(
                    xml,
                    -30001,
                    "E_GIFT_REQUEST_FAILED",
                    "expiry must be a number of seconds",
                );
            }
        },
    };
    match s
        .gifts
        .request(
            &tenant,
            &player,
            expiry,
            p.custom(),
            p.1.clone(),
            now_ms(),
            &rid,
        )
        .await
    {
        Ok(Guarded::Fresh(r)) => render(xml, json!({ "status": "ok", "request_id": r.id })),
        Ok(Guarded::Replay(kept)) => {
            let id = kept.body["id"].clone();
            crate::mutation::mark_replayed(render(xml, json!({ "status": "ok", "request_id": id })))
        }
        Ok(Guarded::Conflict) => key_reused(xml),
        Err(e) => gift_failure(xml, e),
    }
}

async fn reply(
    State(s): State<AppState>,
    Extension(RequestId(rid)): Extension<RequestId>,
    Path((app, mode, user)): Path<(String, String, String)>,
    crate::auth::ClientIp(ip): crate::auth::ClientIp,
    p: Params,
) -> Response {
    let xml = p.xml();
    let (snap, tenant, player) = match authenticate(&s, &app, &mode, &user, &p, ip) {
        Ok(v) => v,
        Err(r) => return r.render(xml),
    };
    drop(snap);
    let accept = match p.get("resp").unwrap_or("accept") {
        "accept" | "" => true,
        "deny" => false,
        other => {
            return failure(
                xml,
                -30001,
                "E_GIFT_REQUEST_FAILED",
                &format!("resp must be accept or deny, not `{other}`"),
            );
        }
    };
    match s
        .gifts
        .reply(
            &tenant,
            &player,
            p.get("request_id"),
            accept,
            p.custom(),
            p.1.clone(),
            now_ms(),
            &rid,
        )
        .await
    {
        Ok(Guarded::Fresh(())) => render(xml, json!({ "status": "ok" })),
        Ok(Guarded::Replay(_)) => {
            crate::mutation::mark_replayed(render(xml, json!({ "status": "ok" })))
        }
        Ok(Guarded::Conflict) => key_reused(xml),
        Err(e) => gift_failure(xml, e),
    }
}

/// An `Idempotency-Key` that came back with another request.
fn key_reused(xml: bool) -> Response {
    failure(
        xml,
        -30001,
        "E_GIFT_REQUEST_FAILED",
        crate::mutation::KEY_REUSED,
    )
}

/// The sender's profile as Playblazer shows it.
fn user_json(snap: &Snapshot, tenant: &str, player: &str) -> Value {
    let profile = players::find(snap, tenant, player).ok().flatten();
    let ids = social::identities(snap, tenant, player).unwrap_or_default();
    let id_of = |mode: &str| {
        ids.iter()
            .find(|i| i.mode == mode)
            .map(|i| Value::String(i.id.clone()))
            .unwrap_or(Value::Null)
    };
    let mut user = json!({
        "first_name": profile.as_ref().and_then(|p| p.first_name.clone()),
        "last_name": profile.as_ref().and_then(|p| p.last_name.clone()),
        "twitterid": id_of("twitter"),
        "fbid": id_of("fb"),
        "deviceid": id_of("device"),
        "email": profile.as_ref().and_then(|p| p.email.clone()).map(Value::String).unwrap_or_else(|| id_of("email")),
        "googleid": id_of("google"),
    });
    if let Some(lang) = profile.as_ref().and_then(|p| p.attributes.get("lang")) {
        user["lang"] = lang.clone();
    }
    user
}

async fn list(
    State(s): State<AppState>,
    Path((app, mode, user)): Path<(String, String, String)>,
    crate::auth::ClientIp(ip): crate::auth::ClientIp,
    p: Params,
) -> Response {
    let xml = p.xml();
    let (snap, tenant, player) = match authenticate(&s, &app, &mode, &user, &p, ip) {
        Ok(v) => v,
        Err(r) => return r.render(xml),
    };
    let number = |name: &str, default: usize| match p.get(name) {
        None | Some("") => Ok(default),
        Some(v) => v.parse::<usize>().map_err(|_| name.to_owned()),
    };
    let (start, limit) = match (number("start", 0), number("limit", 100)) {
        (Ok(s), Ok(l)) => (s, l.clamp(1, 1000)),
        (Err(n), _) | (_, Err(n)) => {
            return failure(
                xml,
                -30001,
                "E_GIFT_REQUEST_FAILED",
                &format!("{n} must be a number"),
            );
        }
    };
    let desc = match p.get("sort").unwrap_or("asc") {
        "asc" | "" => false,
        "desc" => true,
        other => {
            return failure(
                xml,
                -30001,
                "E_GIFT_REQUEST_FAILED",
                &format!("sort must be asc or desc, not `{other}`"),
            );
        }
    };
    let list = match gifts::received(&snap, &tenant, &player, start, limit, desc) {
        Ok(l) => l,
        Err(e) => return gift_failure(xml, e.into()),
    };
    let requests: Vec<Value> = list
        .iter()
        .map(|r| {
            json!({
                "extra": r.attributes,
                "expiry_time": {
                    "timestamp": r.expires_at_ms / 1000,
                    "time_str": format!("{} +0000", sql_datetime(r.expires_at_ms)),
                },
                "id": r.id,
                "user": user_json(&snap, &tenant, &r.sender),
            })
        })
        .collect();
    render(
        xml,
        json!({ "status": "ok", "count": requests.len(), "requests": requests }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_of_the_list_shape() {
        let mut s = String::new();
        write_xml(
            &mut s,
            "response",
            &json!({ "status": "ok", "count": 1, "requests": [{ "id": "a<b", "extra": { "item id": "1" }, "user": { "fbid": null } }] }),
            XmlStyle::Singular,
        );
        assert_eq!(
            s,
            "<response><status>ok</status><count>1</count><requests><request><id>a&lt;b</id><extra><attr name=\"item id\">1</attr></extra><user><fbid></fbid></user></request></requests></response>"
        );
    }
}
