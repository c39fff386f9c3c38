//! Templates, assets, and the pages a failure is shown as.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::{Environment, Value, context};

use crate::Console;
use crate::api::Answer;
use crate::session::Session;

/// Every template, embedded at build time.
const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../templates/layout.html")),
    ("macros.html", include_str!("../templates/macros.html")),
    ("sign_in.html", include_str!("../templates/sign_in.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("overview.html", include_str!("../templates/overview.html")),
    ("players.html", include_str!("../templates/players.html")),
    ("player.html", include_str!("../templates/player.html")),
    ("reverse.html", include_str!("../templates/reverse.html")),
    ("goods.html", include_str!("../templates/goods.html")),
    (
        "goods_group.html",
        include_str!("../templates/goods_group.html"),
    ),
    (
        "goods_fields.html",
        include_str!("../templates/goods_fields.html"),
    ),
    (
        "codes_result.html",
        include_str!("../templates/codes_result.html"),
    ),
    ("rules.html", include_str!("../templates/rules.html")),
    ("plugins.html", include_str!("../templates/plugins.html")),
    ("plugin.html", include_str!("../templates/plugin.html")),
    (
        "plugin_uploaded.html",
        include_str!("../templates/plugin_uploaded.html"),
    ),
    (
        "messaging.html",
        include_str!("../templates/messaging.html"),
    ),
    ("message.html", include_str!("../templates/message.html")),
    (
        "audiences.html",
        include_str!("../templates/audiences.html"),
    ),
    (
        "campaigns.html",
        include_str!("../templates/campaigns.html"),
    ),
    ("campaign.html", include_str!("../templates/campaign.html")),
    ("trigger.html", include_str!("../templates/trigger.html")),
    ("gateway.html", include_str!("../templates/gateway.html")),
    ("tenants.html", include_str!("../templates/tenants.html")),
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(environment);

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    for (name, source) in TEMPLATES {
        if let Err(e) = env.add_template(name, source) {
            // A template that does not parse is a build defect; the unit
            // test below renders every one.
            tracing::error!(template = name, error = %e, "console template does not parse");
        }
    }
    // A missing value (JSON null) shows as nothing, not as "none".
    env.set_formatter(|out, state, value| {
        if value.is_none() || value.is_undefined() {
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env.add_filter("time", time);
    env.add_filter("truncate", truncate);
    env.add_filter("money", money);
    env.add_filter("pretty", pretty);
    env
}

/// `ms` since the epoch as `2026-12-04 21:46:21 UTC`.
fn time(ms: Value) -> String {
    match i64::try_from(ms) {
        Ok(ms) => {
            let t = engage_store::ids::rfc3339(ms);
            let t = t.replacen('T', " ", 1);
            let t = t.split('.').next().unwrap_or(&t).trim_end_matches('Z');
            format!("{t} UTC")
        }
        Err(_) => "—".into(),
    }
}

/// `ms` since the epoch as the UTC time of day, `21:45`.
pub fn time_of_day(ms: i64) -> String {
    let t = engage_store::ids::rfc3339(ms);
    t.split_once('T')
        .map(|(_, rest)| rest.get(..5).unwrap_or(rest).to_owned())
        .unwrap_or(t)
}

/// Millionths as a decimal amount (`1500000` → `1.50`).
fn money(micros: Value) -> String {
    match i64::try_from(micros) {
        Ok(m) => {
            let sign = if m < 0 { "-" } else { "" };
            let m = m.unsigned_abs();
            let (whole, frac) = (m / 1_000_000, m % 1_000_000);
            let frac = format!("{frac:06}");
            let frac = frac.trim_end_matches('0');
            let frac = if frac.len() < 2 {
                format!("{frac:0<2}")
            } else {
                frac.to_owned()
            };
            format!("{sign}{whole}.{frac}")
        }
        Err(_) => "—".into(),
    }
}

/// At most `n` characters of `s`, with `…` when cut.
fn truncate(s: String, n: usize) -> String {
    if s.chars().count() <= n {
        return s;
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A value as indented JSON.
fn pretty(v: Value) -> String {
    serde_json::to_value(&v)
        .and_then(|j| serde_json::to_string_pretty(&j))
        .unwrap_or_default()
}

/// Anything serializable as a template value.
pub fn json<T: serde::Serialize>(x: T) -> Value {
    Value::from(minijinja::value::Serde(x))
}

impl Console {
    /// Render `name` with `ctx`.
    pub fn render(&self, name: &str, ctx: Value) -> Result<Html<String>, PageError> {
        render(name, ctx).map(Html)
    }
}

fn render(name: &str, ctx: Value) -> Result<String, PageError> {
    ENV.get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| PageError::Internal(format!("rendering {name}: {e:#}")))
}

/// A page of a signed-in session: `section` marks the navigation.
pub fn page(s: &Session, name: &str, section: &str, ctx: Value) -> Result<Response, PageError> {
    page_with(s, name, section, ctx, StatusCode::OK)
}

/// [`page`] answered with `status` (a form shown again with its error).
pub fn page_with(
    s: &Session,
    name: &str,
    section: &str,
    ctx: Value,
    status: StatusCode,
) -> Result<Response, PageError> {
    let ctx = context! { me => s.view(), section, ..ctx };
    Ok((status, Html(render(name, ctx)?)).into_response())
}

/// Why a page is not shown.
#[derive(Debug)]
pub enum PageError {
    /// No session, or its token expired or was revoked.
    SignIn {
        next: Option<String>,
    },
    /// The API refused (its status and message are shown).
    Api(Answer),
    Forbidden(String),
    BadForm(String),
    Redirect(String),
    NotFound,
    Internal(String),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PageError::SignIn { next } => {
                let to = match next {
                    Some(n) => format!(
                        "/console/sign-in?next={}",
                        serde_urlencoded::to_string([("n", n)])
                            .map(|s| s[2..].to_owned())
                            .unwrap_or_default()
                    ),
                    None => "/console/sign-in".into(),
                };
                let mut res = Redirect::to(&to).into_response();
                res.headers_mut().append(
                    header::SET_COOKIE,
                    header::HeaderValue::from_static(
                        "engage_session=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0",
                    ),
                );
                return res;
            }
            PageError::Redirect(to) => return Redirect::to(&to).into_response(),
            PageError::Api(a) if a.status == StatusCode::NOT_FOUND => {
                (StatusCode::NOT_FOUND, "Not found", a.message())
            }
            PageError::Api(a) => (a.status, "The API refused", a.message()),
            PageError::Forbidden(m) => (StatusCode::FORBIDDEN, "Refused", m),
            PageError::BadForm(m) => (StatusCode::BAD_REQUEST, "That form could not be read", m),
            PageError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such page in the console.".into(),
            ),
            PageError::Internal(m) => {
                tracing::error!(error = %m, "console: page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The page could not be shown; the server's log says why.".into(),
                )
            }
        };
        let html = render(
            "error.html",
            context! { status => status.as_u16(), title, message },
        )
        .unwrap_or_else(|_| format!("<!doctype html><title>{}</title><p>{}", status, status));
        (status, Html(html)).into_response()
    }
}

/// The console's fallback.
pub async fn not_found() -> PageError {
    PageError::NotFound
}

/// The stylesheet, the script and the icon, embedded at build time.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "console.css" => (
            include_bytes!("../assets/console.css"),
            "text/css; charset=utf-8",
        ),
        "console.js" => (
            include_bytes!("../assets/console.js"),
            "text/javascript; charset=utf-8",
        ),
        "icon.svg" => (include_bytes!("../assets/icon.svg"), "image/svg+xml"),
        _ => return PageError::NotFound.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_with_nothing_in_it() {
        // Unknown filters and tests are found when rendering, not parsing:
        // render each template with an empty context (every value
        // undefined), as the first page of a new tenant nearly is.
        for (name, _) in TEMPLATES {
            let t = ENV
                .get_template(name)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            if let Err(e) = t.render(context! {}) {
                panic!("{name}: {e:#}");
            }
        }
    }

    #[test]
    fn amounts_and_times_read_as_people_write_them() {
        assert_eq!(money(Value::from(1_500_000)), "1.50");
        assert_eq!(money(Value::from(-50_000)), "-0.05");
        assert_eq!(money(Value::from(1_234_567)), "1.234567");
        assert_eq!(time(Value::from(0)), "1970-01-01 00:00:00 UTC");
    }
}
