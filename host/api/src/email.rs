//! E-mail's own endpoints: the suppression list (`/v1/email/suppressions`),
//! the bounce webhook an SMTP provider's mail system posts to
//! (`/hooks/smtp/{tenant}/{provider}/bounces`), and the unsubscribe link
//! every marketing e-mail carries (`/unsubscribe/{token}`, a page and
//! RFC 8058's one-click `POST`).

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::TenantAuth;
use super::mutation::{self, Mutation};
use super::{ApiError, AppState, RequestId};
use crate::wire::{Path, Query};
use engage_messaging::address::normalize_email;
use engage_messaging::email::{bounces, suppression, unsubscribe};
use engage_messaging::providers::{self, ProviderConfig};
use engage_store::ids::now_ms;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_suppressions))
        .routes(routes!(show_suppression, lift_suppression))
}

/// What mail systems and recipients call (not the native API).
pub fn hooks() -> Router<AppState> {
    Router::new()
        .route("/hooks/smtp/{tenant}/{provider}/bounces", post(bounce))
        .route(
            &format!("{}/{{token}}", unsubscribe::PATH),
            get(unsubscribe_page).post(unsubscribe_now),
        )
}

/// The largest bounce or complaint message the webhook reads.
const MAX_REPORT_BYTES: usize = 1 << 20;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// A page of suppressed addresses.
#[derive(Serialize, utoipa::ToSchema)]
struct SuppressionPage {
    suppressions: Vec<suppression::Suppression>,
    /// Pass as `after` for the next page; null on the last one.
    next: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/email/suppressions",
    operation_id = "listSuppressions",
    tag = "messaging",
    summary = "E-mail addresses that bounced: nothing is sent to them",
    security(("tenantToken" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page, in address order", body = SuppressionPage),
    ),
)]
async fn list_suppressions(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Json<SuppressionPage>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let list = suppression::list(&s.store.read()?, &tenant, q.after.as_deref(), limit)?;
    let next = (list.len() == limit)
        .then(|| list.last().map(|x| x.address.clone()))
        .flatten();
    Ok(Json(SuppressionPage {
        suppressions: list,
        next,
    }))
}

fn address(raw: &str) -> Result<String, ApiError> {
    normalize_email(raw).map_err(|e| ApiError::bad_request("invalid_email", e.to_string()))
}

fn not_suppressed(address: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_suppressed",
        format!("`{address}` is not suppressed"),
    )
}

#[utoipa::path(
    get,
    path = "/v1/email/suppressions/{address}",
    operation_id = "getSuppression",
    tag = "messaging",
    summary = "Why an address is suppressed",
    security(("tenantToken" = [])),
    params(("address" = engage_messaging::address::Email, Path, description = "The address (any case)")),
    responses(
        (status = 200, description = "The suppression", body = suppression::Suppression),
        (status = 404, description = "not_suppressed", body = crate::openapi::ErrorBody),
    ),
)]
async fn show_suppression(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<suppression::Suppression>, ApiError> {
    let a = address(&raw)?;
    suppression::get(&s.store.read()?, &tenant, &a)?
        .map(Json)
        .ok_or_else(|| not_suppressed(&a))
}

#[utoipa::path(
    delete,
    path = "/v1/email/suppressions/{address}",
    operation_id = "liftSuppression",
    tag = "messaging",
    summary = "Send to an address again (its mailbox was fixed); its bounce count starts over",
    security(("tenantToken" = [])),
    params(("address" = engage_messaging::address::Email, Path, description = "The address (any case)"), crate::openapi::IdempotencyKey),
    responses(
        (status = 204, description = "Lifted"),
        (status = 404, description = "not_suppressed", body = crate::openapi::ErrorBody),
    ),
)]
async fn lift_suppression(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Path(raw): Path<String>,
    m: Mutation,
) -> Result<Response, ApiError> {
    let a = address(&raw)?;
    let t = tenant.clone();
    mutation::write(
        &s,
        &tenant,
        &m,
        StatusCode::NO_CONTENT,
        now_ms(),
        move |tx| {
            if suppression::remove(tx, &t, &a)? {
                Ok(())
            } else {
                Err(not_suppressed(&a))
            }
        },
    )
    .await
}

#[derive(Deserialize)]
struct Signed {
    sig: String,
}

/// A bounce or complaint, as the tenant's mail system received it (the
/// whole message, `message/rfc822`, e.g. piped from the bounce mailbox with
/// `curl --data-binary @-`). The URL's signature is the provider's
/// `bounce_url`'s.
async fn bounce(
    State(s): State<AppState>,
    Path((tenant, provider)): Path<(String, String)>,
    Query(q): Query<Signed>,
    body: axum::body::Body,
) -> Result<Json<engage_messaging::BounceOutcome>, ApiError> {
    if !bounces::webhook_signature_ok(s.messaging.sealer(), &tenant, &provider, &q.sig) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_signature",
            "the bounce URL's signature does not match: use the provider's bounce_url",
        ));
    }
    let known = providers::config(&s.store.read()?, &tenant, &provider, s.messaging.sealer())?;
    if !matches!(known, Some(ProviderConfig::Smtp { .. })) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "provider_not_found",
            format!("no SMTP provider named `{provider}`"),
        ));
    }
    let raw = crate::wire::read_limited(body, MAX_REPORT_BYTES)
        .await
        .map_err(|e| ApiError::new(e.status, "invalid_report", e.message))?;
    let reports =
        bounces::parse(&raw).map_err(|e| ApiError::bad_request("invalid_report", e.to_string()))?;
    Ok(Json(s.messaging.bounced(&tenant, reports).await?))
}

/// The page an unsubscribe link opens: the address (partly hidden) and a
/// button. It changes nothing: mail scanners open every link.
async fn unsubscribe_page(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    let Some((_, address)) = unsubscribe::open(s.messaging.sealer(), &token) else {
        return invalid_link();
    };
    page(
        StatusCode::OK,
        "Unsubscribe",
        &format!(
            "<p>Stop marketing e-mail to <strong>{}</strong>?</p>\
             <form method=\"post\"><button type=\"submit\">Unsubscribe</button></form>",
            escape(&mask(&address))
        ),
    )
}

/// The unsubscribe itself: the page's button, or a mailbox provider's
/// one-click `POST` (`List-Unsubscribe=One-Click`, RFC 8058). Repeating it
/// changes nothing more.
async fn unsubscribe_now(
    State(s): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path(token): Path<String>,
) -> Response {
    match s.messaging.unsubscribe(&token, now_ms()).await {
        Ok(None) => invalid_link(),
        Ok(Some((tenant, address, newly))) => {
            tracing::info!(tenant, request_id = %rid.0, newly, "e-mail unsubscribe");
            page(
                StatusCode::OK,
                "Unsubscribed",
                &format!(
                    "<p><strong>{}</strong> will get no more marketing e-mail from us.</p>",
                    escape(&mask(&address))
                ),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "e-mail unsubscribe");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "<p>We could not record that just now. Please try again in a minute.</p>",
            )
        }
    }
}

fn invalid_link() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Link not valid",
        "<p>This unsubscribe link is not valid: it may have been cut short. Use the whole link from the e-mail.</p>",
    )
}

/// A small page of its own (no console styles, no scripts).
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}\
         button{{font:inherit;padding:.5rem 1.25rem}}</style></head><body><h1>{title}</h1>{body}</body></html>"
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    (status, headers, Html(html)).into_response()
}

/// `ann@example.com` → `a**@example.com`: enough to recognise, not to read
/// off a shared screen.
fn mask(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!(
                "{first}{}@{domain}",
                "*".repeat(local.chars().count().saturating_sub(1).min(8))
            )
        }
        None => "***".into(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
