//! The tenant console: web pages under `/console` for the people who run a
//! program (players, goods, rules, plugins, messaging, audiences and
//! campaigns, the SMS gateway; tenants for the admin).
//!
//! **It implements no rule of its own.** Every page reads, and every form
//! acts, through an in-process call of the native API (`/v1`, `/admin`)
//! carrying the session's token ([`api`]), so a page is authorised, and a
//! form is validated, exactly as the API call behind it is; a tenant's
//! session holds a tenant token and can reach nothing else. The console is
//! translation from HTML forms to API calls and from JSON answers to pages,
//! as a vendor-compatible API is translation of a wire format.
//!
//! Pages are rendered on the server ([`minijinja`] templates embedded at
//! build time, HTML-escaped), charts are SVG drawn on the server, and one
//! small script (`assets/console.js`) adds upload progress; everything works
//! with a keyboard, and without the script but for the progress bar.
//!
//! Sessions ([`session`]): signing in exchanges the API key and secret for a
//! 12-hour access token (the admin token for a 12-hour admin session token)
//! kept in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` over TLS).
//! Every unsafe request must carry the session's CSRF token, derived from
//! the session token, in a form field or a header. Signing out revokes the
//! token on every host.

#![deny(unsafe_code)]

pub mod api;
mod chart;
mod pages;
mod render;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::response::Redirect;
use axum::routing::{get, post};

/// How the console is served.
#[derive(Debug, Clone, Default)]
pub struct ConsoleConfig {
    /// Mark the session cookie `Secure`: the server is reached over TLS
    /// (its public URL is `https://`). A request forwarded with
    /// `X-Forwarded-Proto: https` gets a `Secure` cookie too.
    pub secure_cookies: bool,
    /// The origin browsers reach the server at (`https://engage.example.com`),
    /// when a proxy in front of it may rewrite `Host`: a form posted from
    /// it passes the origin check too.
    pub public_origin: Option<String>,
}

/// What every console handler can reach.
#[derive(Clone)]
pub struct Console {
    api: api::Api,
    config: Arc<ConsoleConfig>,
}

/// Where the console is served: [`router`] is nested here.
pub const PREFIX: &str = "/console";

/// The console's routes, to nest at [`PREFIX`], calling `api` (the native
/// API's router) for everything they show and do.
pub fn router(api: Router, config: ConsoleConfig) -> Router {
    let console = Console {
        api: api::Api::new(api),
        config: Arc::new(config),
    };
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/overview") }))
        .route(
            "/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/sign-out", post(session::sign_out))
        .route("/assets/{file}", get(render::asset))
        .merge(pages::routes())
        .fallback(render::not_found)
        .layer(middleware::from_fn_with_state(
            console.clone(),
            session::guard,
        ))
        .with_state(console)
}
