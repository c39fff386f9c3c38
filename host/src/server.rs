//! Start-up: the data directory, first-start bootstrap, the HTTP server and
//! graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::api::{self, AppState};
use crate::config::ServerConfig;
use crate::ids::random_hex;
use crate::plugins::{BindRequest, Plugins, Point};
use crate::shutdown::Background;
use crate::store::files::{open_data_dir, write_private};
use crate::tenants;

/// The first-party rule table the demo tenant starts with: the seed's
/// "an action awards 100 points".
pub const DEMO_RULES: &str = r#"{"rules":[{"name":"buy-100-points","action":"buy","award":{"currency":"points","amount":100}}]}"#;

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    background: Background,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// How long background loops get to finish their current unit of work.
const BACKGROUND_GRACE: Duration = Duration::from_secs(10);
/// How long the database may take to close once everything let go of it.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

impl Running {
    /// Stop accepting, finish requests in flight, end background loops and
    /// close storage; when this returns the data directory is free.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.wait().await
    }

    /// Wait until the server stops (Ctrl-C, SIGTERM or [`Running::stop`]),
    /// then close everything in order.
    pub async fn wait(self) -> anyhow::Result<()> {
        // Live streams end with the shutdown signal, so in-flight requests
        // can finish and the HTTP server returns.
        let served = self.task.await;
        self.background.stop(BACKGROUND_GRACE).await;
        close(self.state).await;
        served?
    }
}

/// Drop the last handles on storage and wait until the file is released.
pub async fn close(state: AppState) {
    let closing = state.store.closing();
    drop(state);
    if !closing.wait(CLOSE_LIMIT).await {
        tracing::warn!("storage is still in use; it closes when the process ends");
    }
}

/// Every kind of record the sweeper deletes, each declared by the crate
/// that owns its table.
pub fn sweeps() -> Vec<crate::sweeper::Sweep> {
    vec![
        crate::tenants::TOKEN_SWEEP,
        crate::tenants::ADMIN_SESSION_SWEEP,
        crate::plugins::kv::SWEEP,
        crate::idempotency::SWEEP,
        crate::messaging::EARLY_REPORT_SWEEP,
        crate::campaigns::DONE_SWEEP,
        crate::campaigns::CAP_SWEEP,
    ]
}

/// Open storage and the plugin runtime, bootstrap on first start, and
/// provision every tenant with the current first-party plugins.
pub async fn open(config: &ServerConfig) -> anyhow::Result<(AppState, Background)> {
    // Metrics are recorded from here on (once per process).
    engage_telemetry::install();
    engage_telemetry::label_tenants(config.metrics.tenants.iter().map(String::as_str));
    let data = open_data_dir(&config.data_dir)?;
    let store = match config.storage.backend {
        crate::config::BackendKind::Embedded => config
            .storage
            .open(&data)
            .map_err(|e| anyhow::anyhow!("{}: {e}", config.data_dir.display()))?,
        crate::config::BackendKind::Postgres => config.storage.open(&data)?,
    };
    // Components live in the store; installations from before kept them
    // as files.
    crate::plugins::import_component_files(&store, &data).await?;
    let plugins = Arc::new(Plugins::open(
        &data,
        &config.data_dir,
        store.clone(),
        config.runtime.clone(),
    )?);
    // Before serving: data from before component references were counted
    // is counted once, here, not in the first upload's request.
    plugins.count_component_references().await?;
    let p = plugins.clone();
    let mut background = Background::default();
    let hosts = Arc::new(crate::store::hosts::Hosts::default());
    if store.is_shared() {
        // Counted before serving, so the first sends take this host's share.
        hosts.beat(&store).await?;
    }
    let (h, st) = (hosts.clone(), store.clone());
    background.spawn("host heartbeat", |stop| h.heartbeat_loop(st, stop));
    background.spawn("plugin bindings", |stop| p.refresh_loop(stop));
    let p = plugins.clone();
    background.spawn("plugin invocations", |stop| p.record_loop(stop));
    let live = crate::notifications::Live::new(store.is_shared());
    let (l, st) = (live.clone(), store.clone());
    background.spawn("notification relay", |stop| l.relay_loop(st, stop));
    let gifts = crate::gifts::Gifts::new(store.clone(), plugins.clone(), live.clone());
    if config.gifts.post_hooks_paused {
        tracing::warn!("gift post hooks are paused; they stay queued");
    } else {
        let g = gifts.clone();
        background.spawn("gift post hooks", |stop| g.post_hook_loop(stop));
    }
    let sealer =
        crate::secrets::Sealer::load(config.secret_key.as_deref(), &data, store.is_shared())?;
    let sealed = crate::messaging::providers::seal_stored(&store, &sealer).await?;
    if sealed > 0 {
        tracing::info!(
            sealed,
            "provider credentials stored in clear are now sealed"
        );
    }
    let messaging = crate::messaging::Messaging::new(
        store.clone(),
        plugins.clone(),
        Duration::from_millis(config.messaging.provider_timeout_ms.max(1)),
        sealer,
        hosts.clone(),
        config.messaging.extra_roots()?,
    )
    .map_err(|e| anyhow::anyhow!("the HTTP client for providers: {e}"))?;
    let m = messaging.clone();
    background.spawn("message dispatcher", |stop| m.dispatch_loop(stop));
    let campaigns = crate::campaigns::engine::Campaigns::new(store.clone(), messaging.clone());
    let c = campaigns.clone();
    background.spawn("campaigns", |stop| c.run_loop(stop));
    let sweeper = crate::sweeper::Sweeper::new(store.clone(), config.retention.clone(), sweeps());
    background.spawn("sweeper", |stop| sweeper.run_loop(stop));
    let state = AppState {
        store: store.clone(),
        plugins: plugins.clone(),
        max_component_bytes: config.runtime.max_component_bytes,
        gifts,
        live,
        shutdown: background.signal(),
        gateway: Arc::new(crate::gateway::Gateway {
            store: store.clone(),
            messaging: messaging.clone(),
        }),
        messaging,
        campaigns,
        throttle: Arc::new(crate::throttle::Throttle::new(config.auth.clone())),
        ops: Arc::new(api::Ops::new(config.metrics.clone())),
    };

    let first_start = !tenants::has_admin_token(&store.read()?)?;
    if let Some(token) = &config.admin_token {
        tenants::set_admin_token(&store, token).await?;
    }
    if first_start {
        bootstrap(config, &data, &state).await?;
    }
    let mut after: Option<String> = None;
    loop {
        let page = tenants::list(&store.read()?, after.as_deref(), 256)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for t in &page {
            plugins.provision(&t.id).await?;
        }
    }
    Ok((state, background))
}

async fn bootstrap(
    config: &ServerConfig,
    data: &cap_std::fs::Dir,
    state: &AppState,
) -> anyhow::Result<()> {
    let admin_token = match &config.admin_token {
        Some(t) => t.clone(),
        None => {
            let t = format!("adm_{}", random_hex(24));
            tenants::set_admin_token(&state.store, &t).await?;
            t
        }
    };
    let mut creds = json!({ "admin_token": admin_token });
    if config.demo_tenant {
        let demo = tenants::create(&state.store, "demo").await?;
        state.plugins.provision(&demo.tenant).await?;
        state
            .plugins
            .bind(
                &demo.tenant,
                Point::Rules,
                BindRequest {
                    plugin: "rules-table".into(),
                    version: None,
                    config: serde_json::from_str(DEMO_RULES).ok(),
                    on_error: Default::default(),
                    isolation: Default::default(),
                    limits: None,
                    wasi: Vec::new(),
                },
            )
            .await?;
        creds["demo"] = serde_json::to_value(&demo)?;
    }
    let text = serde_json::to_string_pretty(&creds)?;
    write_private(data, "credentials.json", &text)?;
    // The secrets go to a person at a terminal (on stderr: stdout stays
    // machine-readable), never into a log file or a log collector.
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!(
            "Engage first start: credentials (also in {}/credentials.json, mode 0600):\n{text}",
            config.data_dir.display()
        );
    } else {
        tracing::info!(
            file = %config.data_dir.join("credentials.json").display(),
            "first start: the admin token and the demo tenant's credentials are in this file (mode 0600)"
        );
    }
    Ok(())
}

/// Open everything and serve on `config.listen` until stopped.
pub async fn start(config: &ServerConfig) -> anyhow::Result<Running> {
    let (state, background) = open(config).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let public_url = config
        .messaging
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    state.messaging.set_public_url(&public_url);
    let data = open_data_dir(&config.data_dir)?;
    write_private(
        &data,
        "server.json",
        &json!({ "listen": addr.to_string() }).to_string(),
    )?;
    let app = api::router(state.clone());
    let app = if config.console.enabled {
        with_console(app, &public_url)
    } else {
        app
    };
    let (tx, rx) = oneshot::channel::<()>();
    let streams = background.switch();
    let http = config.http.clone();
    let drain = Duration::from_millis(http.drain_ms);
    let ops = state.ops.clone();
    let task = tokio::spawn(async move {
        crate::listener::serve(listener, app, http, async move {
            tokio::select! {
                _ = rx => {}
                _ = shutdown_signal() => {}
            }
            ops.drain();
            if !drain.is_zero() {
                tracing::info!(
                    drain_ms = drain.as_millis() as u64,
                    "shutting down: /ready answers 503 while load balancers stop sending here"
                );
                tokio::time::sleep(drain).await;
            }
            tracing::info!("shutting down: finishing requests in flight");
            streams.request();
        })
        .await?;
        Ok(())
    });
    tracing::info!(%addr, "Engage listening");
    Ok(Running {
        addr,
        state,
        background,
        shutdown: Some(tx),
        task,
    })
}

/// The native API with the tenant console nested at `/console`: the
/// console calls the API in process (it owns no data), and its requests
/// get the same body deadline as the API's.
fn with_console(api: axum::Router, public_url: &str) -> axum::Router {
    // The origin of the public URL (scheme and authority, no path).
    let public_origin = public_url
        .split_once("://")
        .map(|(scheme, rest)| format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)));
    let config = engage_console::ConsoleConfig {
        secure_cookies: public_url.starts_with("https://"),
        public_origin,
    };
    let console = engage_console::router(api.clone(), config).layer(axum::middleware::from_fn(
        engage_api::listener::body_deadline,
    ));
    api.nest(engage_console::PREFIX, console)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
