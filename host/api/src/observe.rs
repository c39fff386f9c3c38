//! What every request leaves behind for an operator: its id (the client's
//! `x-request-id` if sane, else a new one, echoed in the answer), a
//! `request` span that every log line of the request carries — the
//! plugin call, the commit and the provider call included — with the
//! tenant once a credential names one, and the HTTP metrics (route
//! template, method, status, tenant label; see `engage_telemetry`).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use engage_store::ids::random_hex;

/// The request's id: the client's `x-request-id` if sane, else a new one.
#[derive(Clone)]
pub struct RequestId(pub Arc<str>);

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    /// The tenant the request's credential named, set once by whichever
    /// check (native token, vendor key, gateway account) accepted it.
    static TENANT: Arc<OnceLock<Arc<str>>>;
}

/// Say that the request being answered acts for `tenant`: its span gets
/// the `tenant` field and its metrics the tenant's label. Called by every
/// credential check that accepts one; a no-op outside a request.
pub fn identified(tenant: &str) {
    let _ = TENANT.try_with(|slot| {
        if slot.get().is_none() {
            let _ = slot.set(engage_telemetry::tenant_label(tenant));
            tracing::Span::current().record("tenant", tenant);
        }
    });
}

pub async fn request(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id: Arc<str> = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(Arc::from)
        .unwrap_or_else(|| random_hex(8).into());
    req.extensions_mut().insert(RequestId(id.clone()));
    // The route template, never the raw path: a label's values must stay
    // few whatever paths clients send.
    let route: Arc<str> = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| Arc::from(m.as_str()))
        .unwrap_or_else(|| Arc::from("unmatched"));
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        id = %id,
        method = %method,
        route = %route,
        path = %req.uri().path(),
        tenant = tracing::field::Empty,
    );
    let slot = Arc::new(OnceLock::new());
    // The span is entered only while the request's future is polled
    // (`instrument`), never held across an await: a guard held across
    // `.await` is entered on one thread and left on another, which made
    // tracing-subscriber panic under load and log under the wrong id.
    let mut resp = TENANT
        .scope(slot.clone(), next.run(req))
        .instrument(span.clone())
        .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::debug!(status, us = elapsed.as_micros() as u64, "answered");
    });
    let tenant = slot.get().map_or("none", |t| t);
    engage_telemetry::http_request(&route, method.as_str(), status, tenant, elapsed);
    resp
}

/// `[metrics]` in the server's configuration.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Tenants whose requests, plugin calls and sends carry their own
    /// `tenant` label; every other tenant is counted as `other`. Keep it
    /// to the few tenants worth a dashboard line: each adds series.
    pub tenants: Vec<String>,
    /// Serve `/metrics` without the admin token (for a scraper inside a
    /// private network). Off: a scraper sends `Authorization: Bearer
    /// <admin token>`.
    pub public: bool,
}

/// `GET /metrics`: the Prometheus text exposition. The gauges read from
/// storage (outbox, campaign queue) are refreshed at most once a second,
/// so scrapes in a tight loop cost one count.
pub async fn metrics(
    axum::extract::State(s): axum::extract::State<crate::AppState>,
    req: Request,
) -> Response {
    use axum::response::IntoResponse;
    if !s.ops.metrics.public {
        let (mut parts, _) = req.into_parts();
        if let Err(e) =
            <crate::auth::AdminAuth as axum::extract::FromRequestParts<_>>::from_request_parts(
                &mut parts, &s,
            )
            .await
        {
            return e.into_response();
        }
    }
    static REFRESHED: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let stale = {
        let mut last = REFRESHED.lock().unwrap_or_else(|p| p.into_inner());
        let stale = last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1));
        if stale {
            *last = Some(Instant::now());
        }
        stale
    };
    if stale {
        let (m, c) = (s.messaging.clone(), s.campaigns.clone());
        let counted = tokio::task::spawn_blocking(move || {
            m.record_outbox()?;
            c.record_queue()
        })
        .await;
        if let Ok(Err(e)) = counted {
            tracing::warn!(error = %e, "metrics: could not count the outbox and campaign queue");
        }
    }
    match engage_telemetry::render() {
        Some(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => crate::ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "metrics_off",
            "this process records metrics into another recorder; Engage serves none",
        )
        .into_response(),
    }
}

/// What the operations endpoints keep per server.
pub struct Ops {
    metrics: MetricsConfig,
    /// Set once a stop was asked for: `/ready` answers 503 from then on,
    /// while the server drains (`[http] drain_ms`) and stops.
    draining: std::sync::atomic::AtomicBool,
    /// The last readiness answer, reused for a second: a load balancer's
    /// probes (or an anonymous flood of them) cost at most one small
    /// write a second.
    ready: tokio::sync::Mutex<Option<(Instant, bool, serde_json::Value)>>,
}

impl Ops {
    pub fn new(metrics: MetricsConfig) -> Ops {
        Ops {
            metrics,
            draining: Default::default(),
            ready: tokio::sync::Mutex::const_new(None),
        }
    }

    /// From now on this server is not ready: it is stopping.
    pub fn drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// How long the storage write of a readiness check may take.
const READY_WRITE_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /ready`: 200 when this host can serve — storage answers and takes
/// a durable write through the writer, its schema is this build's, the
/// plugin engines' deadline ticker runs, and the server is not shutting
/// down — else 503 with the failing checks. A load balancer sends
/// traffic on 200 only; `/health` says only that the process answers.
pub async fn ready(axum::extract::State(s): axum::extract::State<crate::AppState>) -> Response {
    use axum::response::IntoResponse;
    use serde_json::json;
    let mut cached = s.ops.ready.lock().await;
    let fresh = cached
        .as_ref()
        .filter(|(at, ..)| at.elapsed() < std::time::Duration::from_secs(1))
        .filter(|_| !s.ops.is_draining());
    let (ok, body) = match fresh {
        Some((_, ok, body)) => (*ok, body.clone()),
        None => {
            let started = Instant::now();
            let storage = match tokio::time::timeout(READY_WRITE_LIMIT, s.store.check_ready()).await
            {
                Ok(Ok(())) => json!({ "ok": true, "ms": started.elapsed().as_millis() as u64 }),
                Ok(Err(e)) => json!({ "ok": false, "error": e.to_string() }),
                Err(_) => json!({
                    "ok": false,
                    "error": format!("a write took longer than {} ms", READY_WRITE_LIMIT.as_millis()),
                }),
            };
            let plugins = match s.plugins.ready() {
                Ok(()) => json!({ "ok": true }),
                Err(e) => json!({ "ok": false, "error": e }),
            };
            let stopping = s.ops.is_draining() || s.shutdown.is_requested();
            let serving = if stopping {
                json!({ "ok": false, "error": "shutting down" })
            } else {
                json!({ "ok": true })
            };
            let checks = json!({ "storage": storage, "plugins": plugins, "serving": serving });
            let ok = checks
                .as_object()
                .is_some_and(|c| c.values().all(|v| v["ok"] == true));
            let body = json!({
                "status": if ok { "ready" } else { "not_ready" },
                "checks": checks,
            });
            if !ok {
                tracing::warn!(checks = %body["checks"], "not ready");
            }
            *cached = Some((Instant::now(), ok, body.clone()));
            (ok, body)
        }
    };
    drop(cached);
    let status = if ok {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
