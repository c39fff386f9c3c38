//! Signing in and out, the session cookie, and the CSRF check every unsafe
//! request passes ([`guard`]).
//!
//! The session cookie holds the API token the console calls with: a
//! tenant's access token (asked for with a 12-hour life) or an admin session
//! token. It is `HttpOnly` (no script reads it), `SameSite=Strict` (no other
//! site's page sends it) and `Secure` over TLS. The CSRF token a form
//! carries is a hash of the session token, so it cannot be made without the
//! cookie; the sign-in form, before any session, carries a random one also
//! kept in a cookie (double submit). Origin and `Sec-Fetch-Site` are checked
//! too, for browsers that send them.

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;

use crate::Console;
use crate::api::{Answer, Caller, Payload};
use crate::render::PageError;
use engage_store::ids::{random_hex, sha256_hex};

const SESSION_COOKIE: &str = "engage_session";
const PRE_COOKIE: &str = "engage_signin";
/// How long a session lasts: the token it holds is asked for with this life.
pub const SESSION_TTL_S: u32 = 12 * 3600;
/// The largest form body the CSRF check reads (a rule table fits easily).
const MAX_FORM_BYTES: usize = 1 << 20;

/// Whose session it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tenant,
    Admin,
}

/// A signed-in browser: the token its pages call the API with.
pub struct Session {
    pub kind: Kind,
    /// The tenant's name (empty for the admin); shown, never trusted: the
    /// token alone decides what the API answers.
    pub tenant: String,
    pub csrf: String,
    caller: Caller,
    pub console: Console,
}

fn csrf_for(token: &str) -> String {
    sha256_hex(format!("engage-console-csrf:{token}").as_bytes())[..32].to_owned()
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The session cookie's value: `t.<tenant>.<token>` or `a.<token>`.
fn parse_session(value: &str) -> Option<(Kind, String, String)> {
    let hex = |t: &str| !t.is_empty() && t.len() <= 128 && t.bytes().all(|b| b.is_ascii_hexdigit());
    let name = |t: &str| {
        !t.is_empty()
            && t.len() <= 63
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if let Some(token) = value.strip_prefix("a.") {
        return hex(token).then(|| (Kind::Admin, String::new(), token.to_owned()));
    }
    let (tenant, token) = value.strip_prefix("t.")?.split_once('.')?;
    (name(tenant) && hex(token)).then(|| (Kind::Tenant, tenant.to_owned(), token.to_owned()))
}

fn session_token(headers: &HeaderMap) -> Option<(Kind, String, String)> {
    cookie(headers, SESSION_COOKIE).and_then(parse_session)
}

fn peer(parts: &Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

impl FromRequestParts<Console> for Session {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, PageError> {
        // Inside the nested router the path is the console's own part.
        let next = format!(
            "{}{}",
            crate::PREFIX,
            parts
                .uri
                .path_and_query()
                .map_or("/overview", |p| p.as_str())
        );
        let (kind, tenant, token) = session_token(&parts.headers).ok_or(PageError::SignIn {
            next: (parts.method == Method::GET).then_some(next),
        })?;
        Ok(Session {
            kind,
            tenant,
            csrf: csrf_for(&token),
            caller: Caller {
                token,
                peer: peer(parts),
            },
            console: console.clone(),
        })
    }
}

impl Session {
    /// Call the API as this session; a 401 (the token expired or was
    /// revoked) ends the session.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        payload: Payload,
    ) -> Result<Answer, PageError> {
        let a = self
            .console
            .api
            .call(Some(&self.caller), method, path, payload)
            .await;
        if a.status == StatusCode::UNAUTHORIZED {
            return Err(PageError::SignIn { next: None });
        }
        Ok(a)
    }

    /// `GET path`: its JSON, or the API's error as the page's.
    pub async fn get(&self, path: &str) -> Result<Value, PageError> {
        let a = self.call(Method::GET, path, Payload::None).await?;
        if a.ok() {
            Ok(a.body)
        } else {
            Err(PageError::Api(a))
        }
    }

    /// `GET path` of something that may not exist: `None` on a 404.
    pub async fn find(&self, path: &str) -> Result<Option<Value>, PageError> {
        let a = self.call(Method::GET, path, Payload::None).await?;
        match a.status {
            s if s.is_success() => Ok(Some(a.body)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(PageError::Api(a)),
        }
    }

    /// Refuse a tenant page to the admin and an admin page to a tenant.
    pub fn require(&self, kind: Kind) -> Result<(), PageError> {
        match (self.kind, kind) {
            (a, b) if a == b => Ok(()),
            (Kind::Admin, Kind::Tenant) => Err(PageError::Redirect("/console/tenants".into())),
            _ => Err(PageError::Forbidden(
                "this page is for the admin; sign in with the admin token".into(),
            )),
        }
    }

    /// What every page's layout shows of the session.
    pub fn view(&self) -> minijinja::Value {
        context! {
            admin => self.kind == Kind::Admin,
            tenant => self.tenant.clone(),
            csrf => self.csrf.clone(),
        }
    }
}

/// A cookie header value with the console's attributes.
fn set_cookie(
    console: &Console,
    headers: &HeaderMap,
    name: &str,
    value: &str,
    max_age: u32,
) -> HeaderValue {
    let secure = console.config.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let v = format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Only a path inside the console is a place to go back to after signing in.
fn safe_next(next: Option<&str>) -> Option<&str> {
    next.filter(|n| {
        n.starts_with("/console/")
            && !n.starts_with("/console/sign-")
            && !n.contains("//")
            && !n.contains('\\')
            && n.bytes().all(|b| b.is_ascii_graphic())
    })
}

#[derive(Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
    signed_out: Option<String>,
}

/// The sign-in form.
pub async fn sign_in_page(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<SignInQuery>,
) -> Result<Response, PageError> {
    sign_in_form(
        &c,
        &headers,
        q.next.as_deref(),
        q.signed_out.is_some().then_some("You are signed out."),
        None,
        StatusCode::OK,
    )
}

fn sign_in_form(
    c: &Console,
    headers: &HeaderMap,
    next: Option<&str>,
    notice: Option<&str>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let pre = cookie(headers, PRE_COOKIE)
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .unwrap_or_else(|| random_hex(16));
    let html = c.render(
        "sign_in.html",
        context! { csrf => pre.clone(), next => safe_next(next), notice, error },
    )?;
    let mut res = (status, html).into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(c, headers, PRE_COOKIE, &pre, 3600),
    );
    Ok(res)
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    api_key: String,
    #[serde(default)]
    api_secret: String,
    #[serde(default)]
    admin_token: String,
    next: Option<String>,
}

/// Sign in: the key and secret (or the admin token) for a session token.
pub async fn sign_in(State(c): State<Console>, req: Request) -> Result<Response, PageError> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| PageError::BadForm("the form is too large".into()))?;
    let form: SignInForm = serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| PageError::BadForm(format!("the sign-in form could not be read: {e}")))?;
    let peer = peer(&parts);
    let next = form.next.as_deref();
    let admin = !form.admin_token.trim().is_empty();
    let answer = if admin {
        let caller = Caller {
            token: form.admin_token.trim().to_owned(),
            peer,
        };
        c.api
            .call(Some(&caller), Method::POST, "/admin/token", Payload::None)
            .await
    } else if form.api_key.trim().is_empty() || form.api_secret.is_empty() {
        return sign_in_form(
            &c,
            &parts.headers,
            next,
            None,
            Some("Enter the tenant's API key and secret, or the admin token.".into()),
            StatusCode::BAD_REQUEST,
        );
    } else {
        let caller = Caller {
            token: String::new(),
            peer,
        };
        let body = json!({
            "api_key": form.api_key.trim(),
            "api_secret": form.api_secret,
            "ttl_s": SESSION_TTL_S,
        });
        // No bearer: the token endpoint takes the key and secret; the
        // browser's address still counts for the API's throttle.
        c.api
            .call(
                Some(&caller),
                Method::POST,
                "/v1/auth/token",
                Payload::Json(body),
            )
            .await
    };
    if !answer.ok() {
        let message = match answer.status {
            StatusCode::UNAUTHORIZED if admin => "That is not the admin token.".to_owned(),
            StatusCode::UNAUTHORIZED => {
                "The API key and secret do not match any tenant.".to_owned()
            }
            StatusCode::TOO_MANY_REQUESTS => {
                format!("{} Wait a while and try again.", answer.message())
            }
            _ => answer.message(),
        };
        return sign_in_form(&c, &parts.headers, next, None, Some(message), answer.status);
    }
    let token = answer.body["token"].as_str().unwrap_or_default();
    let value = if admin {
        format!("a.{token}")
    } else {
        format!(
            "t.{}.{token}",
            answer.body["tenant"].as_str().unwrap_or_default()
        )
    };
    if parse_session(&value).is_none() {
        return Err(PageError::Internal(
            "the API issued a token the console cannot keep".into(),
        ));
    }
    let to = safe_next(next).map(str::to_owned).unwrap_or_else(|| {
        if admin {
            "/console/tenants"
        } else {
            "/console/overview"
        }
        .into()
    });
    let mut res = Redirect::to(&to).into_response();
    let h = res.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&c, &parts.headers, SESSION_COOKIE, &value, SESSION_TTL_S),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(&c, &parts.headers, PRE_COOKIE, "", 0),
    );
    tracing::info!(
        admin,
        tenant = answer.body["tenant"].as_str().unwrap_or(""),
        "console: signed in"
    );
    Ok(res)
}

/// Sign out: the token is revoked, the cookie dropped.
pub async fn sign_out(s: Session, headers: HeaderMap) -> Result<Response, PageError> {
    let path = match s.kind {
        Kind::Admin => "/admin/token",
        Kind::Tenant => "/v1/auth/token",
    };
    // A token that already expired is as good as revoked.
    let _ = s.call(Method::DELETE, path, Payload::None).await;
    let mut res = Redirect::to("/console/sign-in?signed_out=1").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&s.console, &headers, SESSION_COOKIE, "", 0),
    );
    Ok(res)
}

/// Every console request: unsafe ones must come from the console's own
/// pages (CSRF token, origin); every answer gets the console's security
/// headers.
pub async fn guard(State(c): State<Console>, req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD);
    let req = if safe {
        req
    } else {
        match checked(req, c.config.public_origin.as_deref()).await {
            Ok(r) => r,
            Err(why) => {
                tracing::warn!(%why, "console: request refused by the CSRF check");
                return PageError::Forbidden(why).into_response();
            }
        }
    };
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "same-origin");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    res
}

/// The request, once its CSRF token and origin are checked (a form body is
/// read to find its `csrf` field, then handed on unchanged).
async fn checked(req: Request, public_origin: Option<&str>) -> Result<Request, String> {
    let headers = req.headers();
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Err("the request came from another site".into());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        if !same_origin(origin, headers, public_origin) {
            return Err(format!("the request came from another origin ({origin})"));
        }
    }
    let signing_in = req.uri().path().ends_with("/sign-in");
    let expected = if signing_in {
        cookie(headers, PRE_COOKIE).map(str::to_owned)
    } else {
        session_token(headers).map(|(_, _, t)| csrf_for(&t))
    }
    .ok_or("there is no session; sign in again")?;
    if let Some(sent) = headers.get("x-csrf-token") {
        return if equal(sent.as_bytes(), expected.as_bytes()) {
            Ok(req)
        } else {
            Err("the CSRF token does not match this session; reload the page".into())
        };
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Err("the request carries no CSRF token".into());
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| "the form is larger than 1 MiB".to_owned())?;
    let sent = form_urlencoded_field(&bytes, "csrf").ok_or("the form carries no CSRF token")?;
    if !equal(sent.as_bytes(), expected.as_bytes()) {
        return Err("the form's CSRF token does not match this session; reload the page".into());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Whether a request's `Origin` is the console's own: the host it was sent
/// to (`Host`, or `X-Forwarded-Host` from a proxy), or the configured
/// public origin.
fn same_origin(origin: &str, headers: &HeaderMap, public_origin: Option<&str>) -> bool {
    if origin == "null" {
        return false;
    }
    if public_origin.is_some_and(|p| p.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        return true;
    }
    let Some((_, origin_host)) = origin.split_once("://") else {
        return false;
    };
    ["x-forwarded-host", "host"]
        .iter()
        .filter_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .any(|host| host.eq_ignore_ascii_case(origin_host))
}

fn form_urlencoded_field(bytes: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Compare without an early exit (the time taken tells nothing of where
/// two tokens differ).
fn equal(a: &[u8], b: &[u8]) -> bool {
    engage_store::ids::constant_time_eq(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookies_parse_strictly() {
        assert_eq!(
            parse_session("t.acme.abc123"),
            Some((Kind::Tenant, "acme".into(), "abc123".into()))
        );
        assert_eq!(
            parse_session("a.ff00"),
            Some((Kind::Admin, String::new(), "ff00".into()))
        );
        for bad in [
            "",
            "t.",
            "t.acme.",
            "t..ab",
            "t.Acme.ab",
            "t.acme.zz",
            "x.ab",
            "a.",
            "a.ab;c",
            "t.a b.ab",
        ] {
            assert_eq!(parse_session(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_console_paths_are_places_to_return_to() {
        assert_eq!(
            safe_next(Some("/console/players/p1")),
            Some("/console/players/p1")
        );
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/console//evil",
            "/v1/players",
            "/console/sign-out",
            "/console/a\\b",
        ] {
            assert_eq!(safe_next(Some(bad)), None, "{bad}");
        }
    }

    #[test]
    fn an_origin_is_the_consoles_own_by_its_host_or_the_public_origin() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        let direct = h(&[("host", "127.0.0.1:8080")]);
        assert!(same_origin("http://127.0.0.1:8080", &direct, None));
        assert!(!same_origin("http://evil.example", &direct, None));
        assert!(!same_origin("null", &direct, None));
        // Behind a proxy that rewrites Host.
        let proxied = h(&[
            ("host", "10.0.0.5:8080"),
            ("x-forwarded-host", "engage.example.com"),
        ]);
        assert!(same_origin("https://engage.example.com", &proxied, None));
        let rewritten = h(&[("host", "10.0.0.5:8080")]);
        assert!(!same_origin("https://engage.example.com", &rewritten, None));
        assert!(same_origin(
            "https://engage.example.com",
            &rewritten,
            Some("https://engage.example.com/")
        ));
        assert!(!same_origin(
            "https://evil.example",
            &rewritten,
            Some("https://engage.example.com")
        ));
    }

    #[test]
    fn the_csrf_token_is_the_sessions_own() {
        assert_eq!(csrf_for("a"), csrf_for("a"));
        assert_ne!(csrf_for("a"), csrf_for("b"));
        assert!(equal(b"abc", b"abc") && !equal(b"abc", b"abd") && !equal(b"ab", b"abc"));
    }
}
