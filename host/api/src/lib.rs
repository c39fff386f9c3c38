//! HTTP: the native API under `/v1` and `/admin` (a module per resource),
//! and under [`compat`] one module per vendor API that Engage also speaks,
//! each behind its own prefix. Every handler is translation only: it parses
//! its wire format ([`wire`] holds what several share: forms, multipart,
//! bounded bodies), calls the same domain function as `/v1`, and renders the
//! answer in its API's own format. Also here: the connection [`listener`]
//! (limits and timeouts) and the credential [`throttle`].

#![deny(unsafe_code)]

mod actions;
mod activity;
mod audiences;
mod auth;
mod backup;
mod campaigns;
mod compat;
mod cors;
mod email;
mod error;
mod gateway;
mod goods;
mod ledger;
pub mod listener;
mod messages;
mod mutation;
mod observe;
mod openapi;
mod players;
mod plugins;
mod social;
mod tenants;
pub mod throttle;
mod wire;

use compat::{annex, attentive, bsg, playbasis, playblazer, playsms};

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;

use engage_runtime::Plugins;
use engage_store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub plugins: Arc<Plugins>,
    pub max_component_bytes: usize,
    pub gifts: Arc<engage_domain::gifts::Gifts>,
    pub live: engage_domain::notifications::Live,
    /// Ends live streams when the server stops.
    pub shutdown: engage_store::shutdown::Shutdown,
    pub messaging: Arc<engage_messaging::Messaging>,
    pub gateway: Arc<engage_messaging::gateway::Gateway>,
    pub campaigns: Arc<engage_domain::campaigns::engine::Campaigns>,
    /// Failed credential checks, per login and per client address.
    pub throttle: Arc<crate::throttle::Throttle>,
    /// Who may read `/metrics`, the readiness answer, draining.
    pub ops: Arc<observe::Ops>,
}

pub use observe::{MetricsConfig, Ops, RequestId, identified};

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let native: Router<AppState> = native().into();
    Router::new()
        .merge(native)
        .merge(messages::hooks())
        .merge(email::hooks())
        .merge(gateway::hooks())
        .merge(bsg::routes())
        .merge(playbasis::routes())
        .merge(playblazer::routes())
        .merge(playsms::routes())
        .merge(attentive::routes())
        .merge(annex::routes())
        .fallback(not_served)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn(crate::listener::body_deadline))
        .layer(middleware::from_fn_with_state(state.clone(), cors::cors))
        .layer(middleware::from_fn(observe::request))
        .with_state(state)
}

/// The native API (`/v1`, `/admin`, health and metrics): every route with
/// its OpenAPI operation.
fn native() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(observe::health))
        .routes(routes!(observe::ready))
        .routes(routes!(observe::metrics))
        .routes(routes!(openapi_json))
        .merge(tenants::routes())
        .merge(backup::routes())
        .merge(plugins::routes())
        .merge(players::routes())
        .merge(ledger::routes())
        .merge(actions::routes())
        .merge(activity::routes())
        .merge(goods::routes())
        .merge(messages::routes())
        .merge(email::routes())
        .merge(gateway::routes())
        .merge(social::routes())
        .merge(audiences::routes())
        .merge(campaigns::routes())
}

/// The native API's OpenAPI 3.1 document, as served at `/v1/openapi.json`.
pub fn openapi_document() -> serde_json::Value {
    openapi::document(native().into_openapi())
}

/// This document, as JSON.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 document of the native API", body = Object)),
)]
async fn openapi_json() -> impl IntoResponse {
    static DOC: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        serde_json::to_string_pretty(&openapi_document())
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOC.as_str(),
    )
}

/// A path, or a method on a path, that Engage does not serve: answered in
/// the format of the API its prefix names, so a vendor's client reads a
/// vendor error, never a foreign body.
async fn not_served(req: Request) -> Response {
    vendor_not_served(&req).unwrap_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint; see /v1/openapi.json",
        )
        .into_response()
    })
}

/// A method a path does not take (see [`not_served`]).
async fn wrong_method(req: Request) -> Response {
    vendor_not_served(&req).unwrap_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "{} is not served with {}; see /v1/openapi.json",
                req.uri().path(),
                req.method()
            ),
        )
        .into_response()
    })
}

/// The not-served answer of the vendor API whose prefix `req` is under.
fn vendor_not_served(req: &Request) -> Option<Response> {
    let path = req.uri().path();
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    let query = req.uri().query().unwrap_or_default().to_ascii_lowercase();
    Some(if under("/playbasis") {
        playbasis::not_served()
    } else if under("/playsms") {
        playsms::not_served(query.contains("format=xml"))
    } else if under("/bsg") {
        bsg::not_served()
    } else if under("/attentive") {
        attentive::not_served()
    } else if under("/annex") {
        annex::not_served()
    } else if under("/playblazer") {
        playblazer::not_served(query.contains("fmt=xml"))
    } else {
        return None;
    })
}
