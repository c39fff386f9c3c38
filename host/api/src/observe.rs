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
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    description = "The Prometheus text exposition (docs/operations.md lists every metric). Needs the admin token unless `[metrics] public = true`.",
    security(("adminToken" = [])),
    responses((status = 200, description = "The exposition", body = String, content_type = "text/plain")),
)]
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
    ready: tokio::sync::Mutex<Option<(Instant, Readiness)>>,
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

/// What `/ready` answers.
#[derive(Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    status: ReadyStatus,
    checks: ReadyChecks,
}

#[derive(Clone, Copy, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum ReadyStatus {
    Ready,
    NotReady,
}

#[derive(Clone, serde::Serialize, utoipa::ToSchema)]
struct ReadyChecks {
    /// A durable write through the writer, within 2 s, on this build's schema.
    storage: Check,
    /// The plugin engines' deadline ticker runs.
    plugins: Check,
    /// The server is not stopping.
    serving: Check,
}

#[derive(Clone, serde::Serialize, utoipa::ToSchema)]
struct Check {
    ok: bool,
    /// How long the storage write took.
    #[serde(skip_serializing_if = "Option::is_none")]
    ms: Option<u64>,
    /// Why the check failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Check {
    fn ok() -> Check {
        Check {
            ok: true,
            ms: None,
            error: None,
        }
    }

    fn failed(error: impl Into<String>) -> Check {
        Check {
            ok: false,
            ms: None,
            error: Some(error.into()),
        }
    }
}

/// `GET /ready`: 200 when this host can serve — storage answers and takes
/// a durable write through the writer, its schema is this build's, the
/// plugin engines' deadline ticker runs, and the server is not shutting
/// down — else 503 with the failing checks. A load balancer sends
/// traffic on 200 only; `/health` says only that the process answers.
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "ready",
    tag = "operations",
    summary = "Readiness, for a load balancer",
    description = "200 when this host can serve: storage answers and takes a durable write through the writer, its schema is this build's, the plugin engines' deadline ticker runs, and the server is not shutting down. Otherwise 503 with the failing checks. The answer is reused for one second, so probes cost at most one small write a second. `/health` only says the process answers.",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: send no traffic here", body = Readiness),
    ),
)]
pub async fn ready(axum::extract::State(s): axum::extract::State<crate::AppState>) -> Response {
    use axum::response::IntoResponse;
    let mut cached = s.ops.ready.lock().await;
    let fresh = cached
        .as_ref()
        .filter(|(at, _)| at.elapsed() < std::time::Duration::from_secs(1))
        .filter(|_| !s.ops.is_draining());
    let body = match fresh {
        Some((_, body)) => body.clone(),
        None => {
            let started = Instant::now();
            let storage = match tokio::time::timeout(READY_WRITE_LIMIT, s.store.check_ready()).await
            {
                Ok(Ok(())) => Check {
                    ms: Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)),
                    ..Check::ok()
                },
                Ok(Err(e)) => Check::failed(e.to_string()),
                Err(_) => Check::failed(format!(
                    "a write took longer than {} ms",
                    READY_WRITE_LIMIT.as_millis()
                )),
            };
            let plugins = match s.plugins.ready() {
                Ok(()) => Check::ok(),
                Err(e) => Check::failed(e),
            };
            let stopping = s.ops.is_draining() || s.shutdown.is_requested();
            let serving = if stopping {
                Check::failed("shutting down")
            } else {
                Check::ok()
            };
            let ok = storage.ok && plugins.ok && serving.ok;
            let body = Readiness {
                status: if ok {
                    ReadyStatus::Ready
                } else {
                    ReadyStatus::NotReady
                },
                checks: ReadyChecks {
                    storage,
                    plugins,
                    serving,
                },
            };
            if !ok {
                let checks = serde_json::to_string(&body.checks).unwrap_or_default();
                tracing::warn!(%checks, "not ready");
            }
            *cached = Some((Instant::now(), body.clone()));
            body
        }
    };
    drop(cached);
    let status = if body.status == ReadyStatus::Ready {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// What `/health` answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`: the process answers.
    #[schema(value_type = String, pattern = "^ok$")]
    status: &'static str,
}

/// `GET /health`: the process answers (liveness; see [`ready`]).
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "operations",
    summary = "Liveness",
    responses((status = 200, description = "The server is up", body = Health)),
)]
pub async fn health() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}
