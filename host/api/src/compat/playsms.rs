//! The playSMS-compatible webservices API (seed 003): `index.php?app=ws`
//! under `/playsms` (the tenant found from the token) or under
//! `/playsms/{tenant}` (needed only for `get_token` and `ws_login` when
//! a username exists in several tenants). Translation only: every
//! operation is a [`engage_messaging::gateway`] function.
//!
//! Parameters come from the query and a form body, GET or POST. Answers
//! are JSON, or XML with `format=xml`, shaped as playSMS shapes them:
//! `status` / `error` (`"0"` or an `ERR` number as a string) and
//! `error_string` (null on success), list data under `data`.
//! Engage adds one optional parameter to `pv`: `kind=marketing` or
//! `kind=transactional` (the account's default otherwise); marketing
//! messages are not sent to numbers that replied STOP.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{Map, Value, json};

use crate::auth::throttled_async;
use crate::throttle::Subject;
use crate::wire::{XmlStyle, write_xml};
use crate::{AppState, RequestId};
use engage_messaging::gateway::accounts::{self, Account, Changes, Level, NewAccount};
use engage_messaging::gateway::inbound::{self, Inbound};
use engage_messaging::gateway::outgoing::{self, Delivery, OutLog};
use engage_messaging::gateway::send::{self, Outcome, Sent, Spec};
use engage_messaging::gateway::{GatewayError, numbers, phonebook};
use engage_messaging::pricing::{self, PricingError};
use engage_messaging::{Kind, Message};
use engage_store::idempotency::{self, Guarded};
use engage_store::ids::{now_ms, random_hex, sql_datetime};
use engage_store::{Snapshot, StoreError, Tx};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/playsms/index.php", get(ws).post(ws))
        // Clients that resolve `/index.php` against the host, not the base
        // URL they were given (the Laravel notification channel's Guzzle
        // call does), reach it at the root.
        .route("/index.php", get(ws).post(ws))
        .route(
            "/playsms/{tenant}/index.php",
            get(ws_in_tenant).post(ws_in_tenant),
        )
}

/// The description of each error code.
fn error_string(code: &str) -> &'static str {
    match code {
        "100" => "authentication failed",
        "101" => "type of action is invalid or unknown",
        "102" => "one or more field empty",
        "103" => "not enough credit for this operation",
        "104" => "webservice token is not available",
        "105" => "webservice token not enable for this user",
        "106" => "webservice token not allowed from this IP address",
        "200" => "send message failed",
        "201" => "destination number or message is empty",
        "400" => "no delivery status available",
        "401" => "no delivery status retrieved and SMS still in queue",
        "402" => "no delivery status retrieved and SMS has been processed from queue",
        "501" => "no data returned or result is empty",
        "600" => "admin level authentication failed",
        "601" => "inject message failed",
        "602" => "sender id or message is empty",
        "603" => "account addition failed due to missing data",
        "604" => "fail to add account",
        "605" => "account removal failed due to unknown username",
        "606" => "fail to remove account",
        "607" => "set parent failed due to unknown username",
        "608" => "fail to set parent",
        "609" => "get parent failed due to unknown username",
        "610" => "fail to get parent",
        "611" => "account ban failed due to unknown username",
        "612" => "fail to ban account",
        "613" => "account unban failed due to unknown username",
        "614" => "fail to unban account",
        "615" => "editing account preferences failed due to missing data",
        "616" => "fail to edit account preferences",
        "617" => "editing account configuration failed due to missing data",
        "618" => "fail to edit account configuration",
        "619" => "viewing credit failed due to missing data",
        "620" => "fail to view credit",
        "621" => "adding credit failed due to missing data",
        "622" => "fail to add credit",
        "623" => "deducting credit failed due to missing data",
        "624" => "fail to deduct credit",
        "625" => "setting login key failed due to missing data",
        "626" => "fail to set login key",
        "627" => "number is already in the stop list",
        _ => "",
    }
}

/// An answer: a JSON object in playSMS's field order, or an error code.
type Answer = Result<Map<String, Value>, Fail>;

/// An error answer: the code, and optionally playSMS's `info` text.
struct Fail {
    code: &'static str,
    info: Option<String>,
    http: StatusCode,
}

fn fail(code: &'static str) -> Fail {
    Fail {
        code,
        info: None,
        http: StatusCode::OK,
    }
}

fn fail_info(code: &'static str, info: impl std::fmt::Display) -> Fail {
    Fail {
        code,
        info: Some(info.to_string()),
        http: StatusCode::OK,
    }
}

/// A store failure: logged, answered with the operation's failure code.
fn internal(code: &'static str) -> impl Fn(StoreError) -> Fail {
    move |e| {
        tracing::error!(error = %e, "playsms webservices");
        Fail {
            code,
            info: None,
            http: StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// `{"status":"OK","error":"0", …fields}`.
fn ok(fields: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("status".into(), "OK".into());
    m.insert("error".into(), "0".into());
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    m
}

/// Request parameters, trimmed; absent ones read as empty.
struct Params(BTreeMap<String, String>);

impl Params {
    fn get(&self, name: &str) -> &str {
        self.0.get(name).map(|v| v.trim()).unwrap_or_default()
    }

    fn has(&self, name: &str) -> bool {
        !self.get(name).is_empty()
    }

    /// `c`: how many rows, 100 by default.
    fn count(&self) -> usize {
        self.get("c")
            .parse::<usize>()
            .ok()
            .filter(|c| *c > 0)
            .unwrap_or(100)
            .min(1000)
    }

    /// `last`: only ids above this one.
    fn last(&self) -> u64 {
        self.get("last").parse().unwrap_or(0)
    }
}

async fn ws(
    State(s): State<AppState>,
    Extension(rid): Extension<RequestId>,
    req: Request,
) -> Response {
    handle(s, None, rid, req).await
}

async fn ws_in_tenant(
    State(s): State<AppState>,
    Path(tenant): Path<String>,
    Extension(rid): Extension<RequestId>,
    req: Request,
) -> Response {
    handle(s, Some(tenant), rid, req).await
}

/// Everything one call needs.
struct Call<'a> {
    s: &'a AppState,
    /// The tenant named in the path, if any.
    tenant: Option<&'a str>,
    ip: Option<IpAddr>,
    p: &'a Params,
    rid: &'a str,
    /// The call its `Idempotency-Key` guards: the key and a fingerprint of
    /// the operation and its parameters.
    idem: Option<engage_store::idempotency::Call>,
}

async fn handle(s: AppState, tenant: Option<String>, rid: RequestId, req: Request) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let xml_in_query = req
        .uri()
        .query()
        .is_some_and(|q| q.to_ascii_lowercase().contains("format=xml"));
    let key = match crate::mutation::key_of(req.headers()) {
        Ok(k) => k,
        Err(m) => return render(xml_in_query, Err(fail_info("102", m))),
    };
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let p = match crate::wire::read(req, &s).await {
        Ok(map) => Params(map),
        Err(e) => return render(xml_in_query, Err(fail_info("102", e))),
    };
    // Serialised (and hashed) only when the client sent a key: a large
    // request without one costs nothing here.
    let idem = key.and_then(|k| {
        let fingerprinted = serde_json::to_vec(&p.0).unwrap_or_default();
        crate::mutation::call_of(Some(k), &method, &uri, &fingerprinted)
    });
    let xml = p.get("format").eq_ignore_ascii_case("xml");
    if p.get("app") != "ws" {
        let mut r = render(xml, Err(fail("101")));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    let call = Call {
        s: &s,
        tenant: tenant.as_deref(),
        ip,
        p: &p,
        rid: &rid.0,
        idem,
    };
    let op = p.get("op").to_ascii_lowercase();
    if op == "ws_login" {
        return ws_login(&call).await;
    }
    let answer = match op.as_str() {
        "" => Err(fail("102")),
        "pv" => pv(&call).await,
        "ds" => ds(&call),
        "in" => incoming(&call),
        "sx" => unhandled(&call),
        "ix" => inbox(&call),
        "cr" => credit(&call),
        "get_token" => get_token(&call).await,
        "set_token" => set_token(&call).await,
        "get_contact" => get_contact(&call),
        "get_contact_group" => get_contact_group(&call),
        "query" => query(&call),
        "inject" => inject(&call).await,
        "accountadd" => account_add(&call).await,
        "accountremove" => account_remove(&call).await,
        "parentset" => parent_set(&call).await,
        "parentget" => parent_get(&call),
        "accountban" => account_ban(&call, true).await,
        "accountunban" => account_ban(&call, false).await,
        "accountpref" => account_pref(&call).await,
        "accountconf" => account_conf(&call).await,
        "creditview" => credit_view(&call),
        "creditadd" => credit_change(&call, true).await,
        "creditdeduct" => credit_change(&call, false).await,
        "loginkeyset" => login_key_set(&call).await,
        "stoplist" => stoplist(&call).await,
        "bc" => broadcast(&call).await,
        _ => Err(fail("101")),
    };
    render(xml, answer)
}

/// A path under `/playsms` that is not the webservices endpoint: ERR 101,
/// as an unknown `app` is answered.
pub fn not_served(xml: bool) -> Response {
    let mut r = render(xml, Err(fail("101")));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// The answer as playSMS renders it; `error_string` then `timestamp` last.
fn render(xml: bool, answer: Answer) -> Response {
    let (http, mut body) = match answer {
        Ok(m) => (StatusCode::OK, m),
        Err(f) => {
            let mut m = Map::new();
            m.insert("status".into(), "ERR".into());
            m.insert("error".into(), f.code.into());
            if let Some(i) = f.info {
                m.insert("info".into(), i.into());
            }
            (f.http, m)
        }
    };
    let code = body.get("error").and_then(Value::as_str).unwrap_or("0");
    let text = error_string(code);
    body.insert(
        "error_string".into(),
        if text.is_empty() {
            Value::Null
        } else {
            text.into()
        },
    );
    // playSMS stamps every answer with its time (unix seconds), last.
    body.insert("timestamp".into(), json!(now_ms() / 1000));
    if xml {
        let mut out = String::from("<?xml version=\"1.0\"?>\n<response>");
        for (k, v) in &body {
            write_xml(&mut out, k, v, XmlStyle::Php);
        }
        out.push_str("</response>\n");
        (http, [(CONTENT_TYPE, "text/xml")], out).into_response()
    } else {
        (http, axum::Json(Value::Object(body))).into_response()
    }
}

// ------------------------------------------------------------------------
// Authentication

/// The token's account, if `u` names it and it may use webservices from
/// here: 100 (unknown, mismatched or banned), 105 (webservices disabled),
/// 106 (not from this address).
fn authenticate(c: &Call, snap: &Snapshot) -> Result<(String, Account), Fail> {
    let (u, h) = (c.p.get("u"), c.p.get("h"));
    if u.is_empty() || h.is_empty() {
        return Err(fail("100"));
    }
    let subject = Subject::address(c.ip);
    let found = crate::auth::throttled(c.s, &subject, || match accounts::by_token(snap, h) {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(fail("100")),
        Err(e) => Err(internal("100")(e)),
    });
    let (tenant, a) = found.map_err(|l| fail_info("100", l))??;
    let named = accounts::normalize_username(u).as_deref() == Some(a.username.as_str())
        || (!a.email.is_empty() && a.email.eq_ignore_ascii_case(u));
    if c.tenant.is_some_and(|t| t != tenant) || !named || a.banned {
        return Err(fail("100"));
    }
    if !a.webservices {
        return Err(fail("105"));
    }
    if !a.ip_allowed(c.ip) {
        return Err(fail("106"));
    }
    crate::identified(&tenant);
    Ok((tenant, a))
}

/// [`authenticate`] for admin operations: any failure, or a non-admin, is 600.
fn authenticate_admin(c: &Call, snap: &Snapshot) -> Result<(String, Account), Fail> {
    match authenticate(c, snap) {
        Ok((t, a)) if a.level == Level::Admin => Ok((t, a)),
        _ => Err(fail("600")),
    }
}

fn snapshot(c: &Call, code: &'static str) -> Result<Snapshot, Fail> {
    c.s.store.read().map_err(internal(code))
}

// ------------------------------------------------------------------------
// User operations

async fn pv(c: &Call<'_>) -> Answer {
    let (tenant, a) = authenticate(c, &snapshot(c, "200")?)?;
    let p = c.p;
    if !p.has("to") || !p.has("msg") {
        return Err(fail("201"));
    }
    let kind = match p.get("kind") {
        "marketing" => Some(Kind::Marketing),
        "transactional" => Some(Kind::Transactional),
        _ => None,
    };
    let spec = Spec {
        to: p.get("to").to_owned(),
        msg: p.get("msg").to_owned(),
        from: p.get("from").to_owned(),
        footer: p.get("footer").to_owned(),
        nofooter: p.has("nofooter") && p.get("nofooter") != "0",
        flash: p.get("type").eq_ignore_ascii_case("flash"),
        unicode: p.get("unicode") == "1",
        schedule: p.get("schedule").to_owned(),
        kind,
    };
    let sent = send::send(
        &c.s.gateway,
        &tenant,
        &a,
        spec,
        c.idem.clone(),
        now_ms(),
        c.rid,
    );
    let Sent { queue, outcomes } = match sent.await {
        Ok(r) => r,
        Err(e @ (GatewayError::Invalid(_) | GatewayError::KeyReused)) => {
            return Err(fail_info("200", e));
        }
        Err(e) => {
            tracing::error!(error = %e, "playsms pv");
            return Err(Fail {
                code: "200",
                info: None,
                http: StatusCode::INTERNAL_SERVER_ERROR,
            });
        }
    };
    let none_sent = !outcomes
        .iter()
        .any(|o| matches!(o, Outcome::Queued { .. } | Outcome::Inbox { .. }));
    if none_sent
        && outcomes
            .iter()
            .any(|o| matches!(o, Outcome::NoCredit { .. }))
    {
        return Err(fail("103"));
    }
    if outcomes.is_empty() {
        return Err(fail("201"));
    }
    let data: Vec<Value> = outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::Queued { log_id, to } => json!({
                "status": "OK", "error": "0", "smslog_id": log_id.to_string(),
                "queue": queue, "to": to }),
            Outcome::Inbox { to } => json!({
                "status": "OK", "error": "0", "smslog_id": "", "queue": queue, "to": to }),
            Outcome::NoCredit { to } => json!({
                "status": "ERR", "error": "103", "smslog_id": "", "queue": "", "to": to }),
            Outcome::Failed { to, why } => json!({
                "status": "ERR", "error": "200", "smslog_id": "", "queue": "", "to": to,
                "info": why }),
        })
        .collect();
    let mut m = Map::new();
    m.insert("data".into(), Value::Array(data));
    Ok(m)
}

/// `dt` as the account sees it.
fn local_time(a: &Account, ms: i64) -> String {
    sql_datetime(accounts::zone(&a.timezone).to_naive(ms))
}

fn ds(c: &Call) -> Answer {
    let snap = snapshot(c, "400")?;
    let (tenant, a) = authenticate(c, &snap)?;
    let p = c.p;
    let (queue, src, dst, dt) = (p.get("queue"), p.get("src"), p.get("dst"), p.get("dt"));
    let wanted_id: Option<u64> = p.get("smslog_id").parse().ok().filter(|i| *i > 0);
    let after = p.last();
    let filter = |l: &OutLog| {
        wanted_id.is_none_or(|i| l.id == i)
            && (queue.is_empty() || l.queue == queue)
            && (src.is_empty() || l.src == src)
            && (dst.is_empty() || numbers::matches(&l.dst, dst) || l.dst == dst)
            && (dt.is_empty() || local_time(&a, l.at_ms).contains(dt))
            && l.id > after
    };
    // Candidates: by id or queue directly, else the newest of the account.
    let candidates: Vec<(OutLog, Option<Message>)> = if let Some(id) = wanted_id {
        outgoing::get(&snap, &tenant, &a.username, id)
            .map_err(internal("400"))?
            .into_iter()
            .collect()
    } else if !queue.is_empty() {
        let mut v =
            outgoing::by_queue(&snap, &tenant, &a.username, queue).map_err(internal("400"))?;
        v.reverse();
        v
    } else {
        // Messages still queued are skipped: allow for a backlog of them.
        let logs = outgoing::newest(&snap, &tenant, &a.username, p.count() + 256, |l| filter(l))
            .map_err(internal("400"))?;
        let mut v = Vec::new();
        for l in logs {
            let m =
                engage_messaging::get(&snap, &tenant, &l.message_id).map_err(internal("400"))?;
            let processed = m
                .as_ref()
                .is_some_and(|m| Delivery::of(m) != Delivery::Queued);
            if processed {
                v.push((l, m));
                if v.len() >= p.count() {
                    break;
                }
            } else if v.is_empty() {
                v.push((l, m)); // kept to tell "still in queue" apart
            }
        }
        v
    };
    let matching: Vec<&(OutLog, Option<Message>)> =
        candidates.iter().filter(|(l, _)| filter(l)).collect();
    let processed: Vec<&(OutLog, Option<Message>)> = matching
        .iter()
        .copied()
        .filter(|(_, m)| {
            m.as_ref()
                .is_some_and(|m| Delivery::of(m) != Delivery::Queued)
        })
        .take(p.count())
        .collect();
    if processed.is_empty() {
        return Err(if !matching.is_empty() {
            fail("401")
        } else if !candidates.is_empty() {
            fail("402")
        } else {
            fail("400")
        });
    }
    let data: Vec<Value> = processed
        .into_iter()
        .map(|(l, m)| {
            let m = m.as_ref();
            let status = m.map(|m| Delivery::of(m).code()).unwrap_or(2);
            let update = m.map(|m| m.updated_at_ms).unwrap_or(l.at_ms);
            json!({
                "smslog_id": l.id.to_string(),
                "src": l.src,
                "dst": l.dst,
                "msg": l.msg.replace('"', "'"),
                "dt": local_time(&a, l.at_ms),
                "update": local_time(&a, update),
                "status": status.to_string(),
            })
        })
        .collect();
    rows(data)
}

/// A list answer: `data`, or ERR 501 when there is nothing.
fn rows(data: Vec<Value>) -> Answer {
    if data.is_empty() {
        return Err(fail("501"));
    }
    let mut out = Map::new();
    out.insert("data".into(), Value::Array(data));
    Ok(out)
}

/// An inbound SMS or inbox row (quotes in the text become `'`, as
/// playSMS does).
fn inbound_row(a: &Account, id: u64, src: &str, dst: &str, msg: &str, at_ms: i64) -> Value {
    json!({ "id": id.to_string(), "src": src, "dst": dst,
        "msg": msg.replace('"', "'"), "dt": local_time(a, at_ms) })
}

/// A `src` filter on a sender: its tail, like the gateway's.
fn src_matches(stored: &str, filter: &str) -> bool {
    filter.is_empty() || numbers::matches(stored, filter) || stored == filter
}

fn incoming(c: &Call) -> Answer {
    let snap = snapshot(c, "501")?;
    let (tenant, a) = authenticate(c, &snap)?;
    let p = c.p;
    let (src, dst, kwd, dt) = (p.get("src"), p.get("dst"), p.get("kwd"), p.get("dt"));
    let admin = a.level == Level::Admin;
    let found = inbound::incoming(&snap, &tenant, p.last(), p.count(), |i| {
        let mine = match &i.owner {
            Some(o) => *o == a.username,
            None => admin, // system keywords (STOP, HELP) belong to the admins
        };
        i.handled()
            && mine
            && src_matches(&i.src, src)
            && (dst.is_empty() || i.dst == dst)
            && (kwd.is_empty() || i.keyword.eq_ignore_ascii_case(kwd))
            && (dt.is_empty() || local_time(&a, i.at_ms).contains(dt))
    })
    .map_err(internal("501"))?;
    rows(
        found
            .into_iter()
            .map(|i| {
                json!({ "id": i.id.to_string(), "src": i.src, "dst": i.dst, "kwd": i.keyword,
                    "msg": i.msg.replace('"', "'"), "dt": local_time(&a, i.at_ms), "status": "1" })
            })
            .collect(),
    )
}

fn unhandled(c: &Call) -> Answer {
    let snap = snapshot(c, "501")?;
    let (tenant, a) = authenticate(c, &snap)?;
    if a.level != Level::Admin {
        return Err(fail("501")); // only admins see unhandled SMS
    }
    let p = c.p;
    let (src, dst, dt) = (p.get("src"), p.get("dst"), p.get("dt"));
    let found = inbound::incoming(&snap, &tenant, p.last(), p.count(), |i| {
        !i.handled()
            && src_matches(&i.src, src)
            && (dst.is_empty() || i.dst == dst)
            && (dt.is_empty() || local_time(&a, i.at_ms).contains(dt))
    })
    .map_err(internal("501"))?;
    rows(
        found
            .iter()
            .map(|i| inbound_row(&a, i.id, &i.src, &i.dst, &i.msg, i.at_ms))
            .collect(),
    )
}

fn inbox(c: &Call) -> Answer {
    let snap = snapshot(c, "501")?;
    let (tenant, a) = authenticate(c, &snap)?;
    let p = c.p;
    let (src, dst, dt) = (p.get("src"), p.get("dst"), p.get("dt"));
    let found = inbound::inbox(&snap, &tenant, &a.username, p.last(), p.count(), |e| {
        src_matches(&e.src, src)
            && (dst.is_empty() || e.dst == dst)
            && (dt.is_empty() || local_time(&a, e.at_ms).contains(dt))
    })
    .map_err(internal("501"))?;
    rows(
        found
            .iter()
            .map(|e| inbound_row(&a, e.id, &e.src, &e.dst, &e.msg, e.at_ms))
            .collect(),
    )
}

/// Credit in currency units, as playSMS prints it: `12.5`, `0`.
fn units(micros: i64) -> String {
    let s = format!("{:.6}", pricing::to_units(micros));
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn available(snap: &Snapshot, tenant: &str, a: &Account, code: &'static str) -> Result<i64, Fail> {
    Ok(pricing::credit(snap, tenant, &a.credit_account())
        .map_err(internal(code))?
        .0)
}

fn credit(c: &Call) -> Answer {
    let snap = snapshot(c, "100")?;
    let (tenant, a) = authenticate(c, &snap)?;
    let credit = available(&snap, &tenant, &a, "100")?;
    Ok(ok(json!({ "credit": units(credit) })))
}

async fn get_token(c: &Call<'_>) -> Answer {
    let (u, pw) = (c.p.get("u").to_owned(), c.p.get("p").to_owned());
    if u.is_empty() || pw.is_empty() {
        return Err(fail("100"));
    }
    let login = format!(
        "{}/{}",
        c.tenant.unwrap_or("*"),
        u.trim().to_ascii_lowercase()
    );
    let subject = Subject::password("user", &login, c.ip);
    let snap = snapshot(c, "100")?;
    let tenant = c.tenant.map(str::to_owned);
    // Hashing takes milliseconds of CPU: on the blocking pool, never on the
    // async workers that serve everyone else's requests.
    let check = async move {
        tokio::task::spawn_blocking(move || accounts::login(&snap, tenant.as_deref(), &u, &pw))
            .await
            .map_err(|e| StoreError::JobPanicked(format!("login: {e}")))
            .and_then(|r| r)
            .map_err(internal("100"))?
            .ok_or_else(|| fail("100"))
    };
    let (_, a) = throttled_async(c.s, &subject, check)
        .await
        .map_err(|l| fail_info("100", l))??;
    if a.banned {
        return Err(fail("100"));
    }
    if !a.ip_allowed(c.ip) {
        return Err(fail("106"));
    }
    let Some(token) = a.token.clone() else {
        return Err(fail("104"));
    };
    if !a.webservices {
        return Err(fail("105"));
    }
    Ok(ok(json!({ "token": token })))
}

async fn set_token(c: &Call<'_>) -> Answer {
    let (tenant, a) = authenticate(c, &snapshot(c, "100")?)?;
    let (token, t) = (accounts::new_token(), tenant.clone());
    guarded(
        c,
        &tenant,
        "100",
        |e| gateway_fail("100", e),
        move |tx| {
            accounts::set_token(tx, &t, &a.username, Some(token.clone()), now_ms())?;
            Ok::<_, GatewayError>(json!({ "token": token }))
        },
    )
    .await
}

fn get_contact(c: &Call) -> Answer {
    let snap = snapshot(c, "501")?;
    let (tenant, a) = authenticate(c, &snap)?;
    if !c.p.has("kwd") {
        return Err(fail("102"));
    }
    let hits = phonebook::search(&snap, &tenant, &a.username, c.p.get("kwd"), c.p.count())
        .map_err(internal("501"))?;
    let data: Vec<Value> = hits
        .into_iter()
        .map(|h| {
            let g = h.group.as_ref();
            json!({
                "pid": h.contact.id.to_string(),
                "gpid": g.map(|g| g.id.to_string()).unwrap_or_default(),
                "p_desc": h.contact.name,
                "p_num": h.contact.mobile,
                "email": h.contact.email,
                "group_name": g.map(|g| g.name.clone()).unwrap_or_default(),
                "code": g.map(|g| g.code.clone()).unwrap_or_default(),
            })
        })
        .collect();
    Ok(ok(json!({ "data": data, "multi": true })))
}

fn get_contact_group(c: &Call) -> Answer {
    let snap = snapshot(c, "501")?;
    let (tenant, a) = authenticate(c, &snap)?;
    if !c.p.has("kwd") {
        return Err(fail("102"));
    }
    let groups = phonebook::search_groups(&snap, &tenant, &a.username, c.p.get("kwd"), c.p.count())
        .map_err(internal("501"))?;
    let data: Vec<Value> = groups
        .into_iter()
        .map(|g| json!({ "gpid": g.id.to_string(), "group_name": g.name, "code": g.code }))
        .collect();
    Ok(ok(json!({ "data": data, "multi": true })))
}

/// Validates and uses up the login key, then sends the browser to
/// `index.php` whatever happened (as playSMS does). Engage has no web
/// interface to log into: the login is recorded on the account.
async fn ws_login(c: &Call<'_>) -> Response {
    let (u, key) = (c.p.get("u").to_owned(), c.p.get("login_key").to_owned());
    let found =
        c.s.store
            .read()
            .ok()
            .and_then(|snap| accounts::by_login(&snap, c.tenant, &u).ok())
            .unwrap_or_default()
            .into_iter()
            .find(|(_, a)| a.login_key.is_some());
    if let Some((tenant, a)) = found {
        let result = accounts::log_in(&c.s.store, &tenant, &a.username, &key, now_ms()).await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "ws_login");
        }
    }
    (StatusCode::FOUND, [(LOCATION, "index.php")]).into_response()
}

fn query(c: &Call) -> Answer {
    let snap = snapshot(c, "100")?;
    let (tenant, a) = authenticate(c, &snap)?;
    let credit = available(&snap, &tenant, &a, "100")?;
    let admin = a.level == Level::Admin;
    let last_incoming = inbound::incoming(&snap, &tenant, 0, 1, |i| {
        i.handled() && i.owner.as_deref().map_or(admin, |o| o == a.username)
    })
    .map_err(internal("100"))?
    .first()
    .map(|i| i.id)
    .unwrap_or(0);
    let last_inbox =
        inbound::last_inbox_id(&snap, &tenant, &a.username).map_err(internal("100"))?;
    let last_outgoing = outgoing::last_id(&snap, &tenant, &a.username).map_err(internal("100"))?;
    Ok(ok(json!({ "data": {
        "user": {
            "username": a.username, "uid": a.uid, "status": a.level.code(),
            "name": a.name, "email": a.email, "mobile": a.mobile, "credit": units(credit),
        },
        "last_id": {
            "user_inbox": last_inbox, "user_incoming": last_incoming, "user_outgoing": last_outgoing,
        },
    } })))
}

// ------------------------------------------------------------------------
// Admin operations

/// A gateway error as the operation's failure code, with its text as `info`.
fn gateway_fail(code: &'static str, e: GatewayError) -> Fail {
    match e {
        GatewayError::Store(s) => internal(code)(s),
        e => fail_info(code, e),
    }
}

/// Runs `job` in one write guarded by the call's `Idempotency-Key` and
/// answers its fields: the same call again gets the first answer; another
/// call under the key fails with `failed`. `on_err` says how the domain's
/// refusals read.
async fn guarded<E, F>(
    c: &Call<'_>,
    tenant: &str,
    failed: &'static str,
    on_err: impl FnOnce(E) -> Fail,
    job: F,
) -> Answer
where
    E: From<StoreError> + Send + 'static,
    F: FnMut(&mut Tx) -> Result<Value, E> + Send + 'static,
{
    let kept = idempotency::write(&c.s.store, tenant, c.idem.clone(), 200, now_ms(), job)
        .await
        .map_err(on_err)?;
    match kept {
        Guarded::Fresh(v) => Ok(ok(v)),
        Guarded::Replay(r) => Ok(ok(r.body)),
        Guarded::Conflict => Err(fail_info(failed, crate::mutation::KEY_REUSED)),
    }
}

/// The account named by `data_username`, or `unknown`.
fn target(c: &Call, snap: &Snapshot, tenant: &str, unknown: &'static str) -> Result<Account, Fail> {
    let name = c.p.get("data_username");
    if name.is_empty() {
        return Err(fail(unknown));
    }
    accounts::get(snap, tenant, name)
        .map_err(internal(unknown))?
        .ok_or_else(|| fail(unknown))
}

/// `bc`, older playSMS's send to phonebook groups (its PHP client still
/// calls it): `to` names group codes; the same as `pv` to `#code`.
async fn broadcast(c: &Call<'_>) -> Answer {
    let mut map = c.p.0.clone();
    let groups: Vec<String> =
        c.p.get("to")
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(|g| format!("#{}", g.trim_start_matches('#')))
            .collect();
    map.insert("to".into(), groups.join(","));
    let p = Params(map);
    let call = Call {
        s: c.s,
        tenant: c.tenant,
        ip: c.ip,
        p: &p,
        rid: c.rid,
        idem: c.idem.clone(),
    };
    pv(&call).await
}

/// `stoplist`: no more marketing messages to `from` (playSMS's stop list is
/// the tenant's opt-out list); ERR 627 when it is on it already.
async fn stoplist(c: &Call<'_>) -> Answer {
    let (tenant, a) = authenticate(c, &snapshot(c, "100")?)?;
    let from = c.p.get("from");
    if from.trim().is_empty() {
        return Err(fail("102"));
    }
    let added = inbound::stop_number(&c.s.gateway, &tenant, &a, from, now_ms())
        .await
        .map_err(|e| gateway_fail("102", e))?;
    if added {
        Ok(ok(json!({})))
    } else {
        Err(fail("627"))
    }
}

async fn inject(c: &Call<'_>) -> Answer {
    let (tenant, _) = authenticate_admin(c, &snapshot(c, "601")?)?;
    let (from, msg) = (c.p.get("from"), c.p.get("msg"));
    if from.is_empty() || msg.is_empty() {
        return Err(fail("602"));
    }
    let sms = Inbound {
        from: from.to_owned(),
        to: c.p.get("recvnum").to_owned(),
        text: msg.to_owned(),
        smsc: c.p.get("smsc").to_owned(),
        source: "inject".into(),
    };
    let received = inbound::receive(&c.s.gateway, &tenant, sms, c.idem.clone(), now_ms(), c.rid)
        .await
        .map_err(|e| gateway_fail("601", e))?;
    if matches!(received, Guarded::Conflict) {
        return Err(fail_info("601", crate::mutation::KEY_REUSED));
    }
    Ok(ok(json!({})))
}

async fn account_add(c: &Call<'_>) -> Answer {
    let (tenant, _) = authenticate_admin(c, &snapshot(c, "604")?)?;
    let p = c.p;
    let required = [
        "data_status",
        "data_username",
        "data_password",
        "data_name",
        "data_email",
    ];
    if required.iter().any(|f| !p.has(f)) {
        return Err(fail("603"));
    }
    let Some(level) = Level::from_code(p.get("data_status")) else {
        return Err(fail_info(
            "604",
            "data_status is 2 (admin), 3 (user) or 4 (subuser)",
        ));
    };
    let opt = |f: &str| p.has(f).then(|| p.get(f).to_owned());
    let n = NewAccount {
        username: p.get("data_username").to_owned(),
        password: p.get("data_password").to_owned(),
        level: Some(level),
        parent: opt("data_parent"),
        name: p.get("data_name").to_owned(),
        email: p.get("data_email").to_owned(),
        mobile: p.get("data_mobile").to_owned(),
        timezone: opt("data_datetime_timezone"),
        language: opt("data_language_module"),
        footer: p.get("data_footer").to_owned(),
        ..NewAccount::default()
    };
    let n = n.hashed().await.map_err(|e| gateway_fail("604", e))?;
    let t = tenant.clone();
    guarded(
        c,
        &tenant,
        "604",
        |e| gateway_fail("604", e),
        move |tx| {
            let a = accounts::create(tx, &t, n.clone(), now_ms())?;
            Ok::<_, GatewayError>(
                json!({ "info": format!("account {} has been added", a.username) }),
            )
        },
    )
    .await
}

async fn account_remove(c: &Call<'_>) -> Answer {
    let snap = snapshot(c, "606")?;
    let (tenant, admin) = authenticate_admin(c, &snap)?;
    let a = target(c, &snap, &tenant, "605")?;
    drop(snap);
    let on_err = |e| match e {
        GatewayError::NoAccount(_) => fail("605"),
        e => gateway_fail("606", e),
    };
    let t = tenant.clone();
    guarded(c, &tenant, "606", on_err, move |tx| {
        accounts::remove_by(tx, &t, &admin.username, &a.username)?;
        Ok::<_, GatewayError>(json!({ "info": "account has been removed" }))
    })
    .await
}

async fn parent_set(c: &Call<'_>) -> Answer {
    let snap = snapshot(c, "608")?;
    let (tenant, _) = authenticate_admin(c, &snap)?;
    let a = target(c, &snap, &tenant, "607")?;
    drop(snap);
    let parent = match c.p.get("data_parent") {
        "" => return Err(fail("607")),
        p => p.to_owned(),
    };
    let on_err = |e| match e {
        GatewayError::NoAccount(_) => fail("607"),
        e => gateway_fail("608", e),
    };
    let t = tenant.clone();
    guarded(c, &tenant, "608", on_err, move |tx| {
        accounts::set_parent(tx, &t, &a.username, &parent, now_ms())?;
        Ok::<_, GatewayError>(json!({}))
    })
    .await
}

fn parent_get(c: &Call) -> Answer {
    let snap = snapshot(c, "610")?;
    let (tenant, _) = authenticate_admin(c, &snap)?;
    let a = target(c, &snap, &tenant, "609")?;
    let parent = a
        .parent
        .as_deref()
        .and_then(|p| accounts::get(&snap, &tenant, p).ok().flatten())
        .ok_or_else(|| fail("610"))?;
    Ok(ok(
        json!({ "parent_uid": parent.uid, "parent": parent.username }),
    ))
}

async fn account_ban(c: &Call<'_>, ban: bool) -> Answer {
    let (unknown, failed) = if ban { ("611", "612") } else { ("613", "614") };
    let snap = snapshot(c, failed)?;
    let (tenant, admin) = authenticate_admin(c, &snap)?;
    let a = target(c, &snap, &tenant, unknown)?;
    drop(snap);
    let on_err = |e| match e {
        GatewayError::NoAccount(_) => fail(unknown),
        e => gateway_fail(failed, e),
    };
    let t = tenant.clone();
    guarded(c, &tenant, failed, on_err, move |tx| {
        accounts::set_banned(tx, &t, &admin.username, &a.username, ban, now_ms())?;
        Ok::<_, GatewayError>(json!({}))
    })
    .await
}

/// The `data_*` fields among `names` that are present.
fn data_fields(p: &Params, names: &[&str]) -> BTreeMap<String, String> {
    names
        .iter()
        .filter(|n| p.has(&format!("data_{n}")))
        .map(|n| ((*n).to_owned(), p.get(&format!("data_{n}")).to_owned()))
        .collect()
}

async fn account_pref(c: &Call<'_>) -> Answer {
    let snap = snapshot(c, "616")?;
    let (tenant, _) = authenticate_admin(c, &snap)?;
    let a = target(c, &snap, &tenant, "615")?;
    drop(snap);
    let f = data_fields(
        c.p,
        &[
            "name", "email", "mobile", "address", "city", "state", "country", "zipcode", "password",
        ],
    );
    if f.is_empty() {
        return Err(fail("615"));
    }
    let changes = Changes {
        password: f.get("password").cloned(),
        name: f.get("name").cloned(),
        email: f.get("email").cloned(),
        mobile: f.get("mobile").cloned(),
        address: f.get("address").cloned(),
        city: f.get("city").cloned(),
        state: f.get("state").cloned(),
        country: f.get("country").cloned(),
        zipcode: f.get("zipcode").cloned(),
        ..Changes::default()
    };
    edit(c, tenant, a, changes, "616").await
}

async fn account_conf(c: &Call<'_>) -> Answer {
    let snap = snapshot(c, "618")?;
    let (tenant, _) = authenticate_admin(c, &snap)?;
    let a = target(c, &snap, &tenant, "617")?;
    drop(snap);
    let mut f = data_fields(
        c.p,
        &[
            "footer",
            "datetime_timezone",
            "language_module",
            "fwd_to_inbox",
            "fwd_to_email",
            "fwd_to_mobile",
            "local_length",
            "replace_zero",
            "sender",
        ],
    );
    // The seed spells one of them without the prefix.
    if !f.contains_key("datetime_timezone") && c.p.has("datetime_timezone") {
        f.insert(
            "datetime_timezone".into(),
            c.p.get("datetime_timezone").to_owned(),
        );
    }
    if f.is_empty() {
        return Err(fail("617"));
    }
    let flag = |name: &str| -> Result<Option<bool>, Fail> {
        match f.get(name).map(String::as_str) {
            None => Ok(None),
            Some("1") => Ok(Some(true)),
            Some("0") => Ok(Some(false)),
            Some(_) => Err(fail_info("618", format!("data_{name} is 0 or 1"))),
        }
    };
    let local_length = match f.get("local_length") {
        None => None,
        Some(l) => Some(
            l.parse::<u32>()
                .map_err(|_| fail_info("618", "data_local_length is a number of digits"))?,
        ),
    };
    let changes = Changes {
        footer: f.get("footer").cloned(),
        timezone: f.get("datetime_timezone").cloned(),
        language: f.get("language_module").cloned(),
        fwd_to_inbox: flag("fwd_to_inbox")?,
        fwd_to_email: flag("fwd_to_email")?,
        fwd_to_mobile: flag("fwd_to_mobile")?,
        local_length,
        replace_zero: f.get("replace_zero").cloned(),
        sender: f.get("sender").cloned(),
        ..Changes::default()
    };
    edit(c, tenant, a, changes, "618").await
}

async fn edit(
    c: &Call<'_>,
    tenant: String,
    a: Account,
    changes: Changes,
    failed: &'static str,
) -> Answer {
    let changes = changes
        .hashed()
        .await
        .map_err(|e| gateway_fail(failed, e))?;
    let t = tenant.clone();
    guarded(
        c,
        &tenant,
        failed,
        |e| gateway_fail(failed, e),
        move |tx| {
            let changes = changes.clone();
            accounts::update(tx, &t, &a.username, now_ms(), move |a| changes.apply(a))?;
            Ok::<_, GatewayError>(json!({ "info": "account has been updated" }))
        },
    )
    .await
}

fn credit_view(c: &Call) -> Answer {
    let snap = snapshot(c, "620")?;
    let (tenant, _) = authenticate_admin(c, &snap)?;
    if !c.p.has("data_username") {
        return Err(fail("619"));
    }
    let a = target(c, &snap, &tenant, "620")?;
    let credit = available(&snap, &tenant, &a, "620")?;
    Ok(ok(json!({ "balance": pricing::to_units(credit) })))
}

async fn credit_change(c: &Call<'_>, add: bool) -> Answer {
    let (missing, failed) = if add { ("621", "622") } else { ("623", "624") };
    let snap = snapshot(c, failed)?;
    let (tenant, _) = authenticate_admin(c, &snap)?;
    let amount: f64 = c.p.get("data_amount").parse().unwrap_or(f64::NAN);
    if !(c.p.has("data_username") && amount.is_finite() && amount > 0.0 && amount <= 1e9) {
        return Err(fail(missing));
    }
    let a = target(c, &snap, &tenant, failed)?;
    drop(snap);
    let micros = pricing::to_micros(amount);
    let signed = if add { micros } else { -micros };
    let (account, t) = (a.credit_account(), tenant.clone());
    let reference = format!("playsms:{}", random_hex(8));
    let on_err = |e| match e {
        PricingError::Store(s) => internal(failed)(s),
        e => fail_info(failed, e),
    };
    guarded(c, &tenant, failed, on_err, move |tx| {
        let (available, _) = pricing::top_up(tx, &t, &account, signed, Some(&reference), now_ms())?;
        Ok::<_, PricingError>(json!({ "amount": amount, "balance": pricing::to_units(available) }))
    })
    .await
}

async fn login_key_set(c: &Call<'_>) -> Answer {
    let snap = snapshot(c, "626")?;
    let (tenant, _) = authenticate_admin(c, &snap)?;
    if !c.p.has("data_username") {
        return Err(fail("625"));
    }
    let a = target(c, &snap, &tenant, "626")?;
    drop(snap);
    let (key, t) = (random_hex(16), tenant.clone());
    guarded(
        c,
        &tenant,
        "626",
        |e| gateway_fail("626", e),
        move |tx| {
            accounts::new_login_key(tx, &t, &a.username, &key, now_ms())?;
            Ok::<_, GatewayError>(json!({ "login_key": key }))
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_is_phps_array_to_xml() {
        let mut m = Map::new();
        m.insert(
            "data".into(),
            json!([{ "id": "2", "src": "+629876543210", "msg": "A & B" }]),
        );
        m.insert("multi".into(), json!(true));
        let r = {
            let mut out = String::new();
            for (k, v) in &m {
                write_xml(&mut out, k, v, XmlStyle::Php);
            }
            out
        };
        assert_eq!(
            r,
            "<data><item><id>2</id><src>+629876543210</src><msg>A &amp; B</msg></item></data><multi>1</multi>"
        );
    }

    #[test]
    fn credit_prints_like_php() {
        assert_eq!(units(12_500_000), "12.5");
        assert_eq!(units(0), "0");
        assert_eq!(units(950_000), "0.95");
    }
}
