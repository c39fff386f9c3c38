//! The plugin runtime and per-tenant registry.
//!
//! One wasmtime [`Engine`]; a component compiled once at upload and cached on
//! disk; one typed `InstancePre` per component (shared by content hash, it
//! holds no state); a fresh `Store` per call with a memory cap, a fuel budget
//! and an epoch deadline. WASI imports are linked as traps: a plugin reaches
//! nothing but the `engage:plugin/host` interface.
//!
//! Binding a version swaps an `Arc` under a lock: calls in flight keep the
//! `Arc` of the version they started on and finish there.

mod bindings;
mod boundary;
pub mod builtin;
mod canary;
pub mod config;
mod engine;
pub mod fixture;
mod gate;
pub mod invocations;
pub mod io;
pub mod judged;
pub mod kv;
pub mod local;
mod runtime;
mod sandbox;
mod shape;
mod since_v0_1_0;
mod since_v0_2_0;
mod stats;
mod wasi;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

pub use bindings::WitVersion;
pub use canary::{Canary, CanaryRequest, CanaryStats};
pub use runtime::{Context, Input, Limits, Output, Report};
pub use sandbox::{CallState, Data, LogLine};
pub use stats::StatsView;

/// Name/value pairs as the WIT `param` list plugins take.
pub fn params(map: &std::collections::BTreeMap<String, String>) -> Vec<io::Param> {
    map.iter()
        .map(|(k, v)| io::Param {
            name: k.clone(),
            value: v.clone(),
        })
        .collect()
}

use crate::config::RuntimeConfig;
use engage_store::idempotency::{Call, Guarded};
use engage_store::ids::{now_ms, sha256_hex};
use engage_store::{Reader, Snapshot, Store, StoreError, Table, Tx, key, prefix};
use engine::Flavor;
use runtime::{Prepared, WarmPool, WorldPre};
use stats::Stats;

const PLUGINS: Table = Table::new("plugins");
/// component sha256 → how many stored versions (of any tenant) are that
/// component (u64 LE); [`REFS_INDEXED`] once counted. A component file is
/// deleted when its count reaches 0.
const BLOB_REFS: Table = Table::new("plugin_blob_refs");
/// The components themselves, by content hash, stored once however many
/// versions (of any tenant) are that component; in the store, so every
/// host sharing it has them.
const BLOBS: Table = Table::new("plugin_blobs");
const REFS_INDEXED: &str = "~indexed";
/// First-party versions a tenant may hold beside its quota (one per
/// first-party plugin per Engage release that changed it).
const BUILTIN_VERSIONS_ALLOWANCE: usize = 256;
const VERSIONS: Table = Table::new("plugin_versions");
const BINDINGS: Table = Table::new("plugin_bindings");
/// Every binding change, in commit order: sequence → tenant. Hosts sharing
/// a store read it to apply changes made through another host.
const BINDING_LOG: Table = Table::new("plugin_binding_log");
/// How many of one tenant's plugins a refresh looks at, and how many
/// components it prepares, ahead of their bind.
const MAX_PRECOMPILED_PLUGINS: usize = 64;
const PRECOMPILED_PER_REFRESH: usize = 2;
/// The most entries the binding log keeps; a host further behind than
/// that reloads every binding.
const BINDING_LOG_KEEP: u64 = 10_000;
/// How often a host sharing its store looks for binding changes.
pub const BINDING_REFRESH: std::time::Duration = std::time::Duration::from_millis(200);

/// An extension point a tenant binds a plugin to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Point {
    Rules,
    Gift,
    Template,
    Route,
}

impl Point {
    pub const ALL: [Point; 4] = [Point::Rules, Point::Gift, Point::Template, Point::Route];

    /// The binding point's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Point::Rules => "rules",
            Point::Gift => "gift",
            Point::Template => "template",
            Point::Route => "route",
        }
    }

    /// The WIT world a plugin for this point implements.
    pub fn world(self) -> &'static str {
        match self {
            Point::Rules => "rules",
            Point::Gift => "gift-hooks",
            Point::Template => "templating",
            Point::Route => "routing",
        }
    }

    pub fn parse(s: &str) -> Option<Point> {
        Point::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// How a call went wrong. Every kind is counted in the plugin's statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CallError {
    #[error("the plugin ran past its deadline")]
    Timeout,
    #[error("the plugin used up its fuel budget")]
    OutOfFuel,
    #[error("the plugin exceeded its memory limit")]
    MemoryLimit,
    #[error("the plugin panicked: {message}")]
    Panic { message: String },
    #[error("the plugin trapped: {message}")]
    Trap { message: String },
    #[error("the plugin returned an invalid answer: {message}")]
    InvalidOutput { message: String },
    #[error("the plugin's answer is {bytes} bytes; the limit is {limit}")]
    OutputTooLarge { bytes: usize, limit: usize },
    #[error("the plugin reported an error: {code}: {message}")]
    Guest { code: String, message: String },
    #[error("the plugin was not run: {message}")]
    Busy { message: String },
}

/// The longest error code from a plugin an answer carries, in bytes.
pub const MAX_ERROR_CODE_BYTES: usize = 64;
/// The longest error message from a plugin (or about it) an answer carries.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

/// `s` cut to at most `max` bytes at a character boundary, marked with `…`.
pub fn clip(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max.saturating_sub('…'.len_utf8());
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

impl CallError {
    /// The error's kind, as counted in statistics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Timeout => "timeout",
            CallError::OutOfFuel => "out_of_fuel",
            CallError::MemoryLimit => "memory_limit",
            CallError::Panic { .. } => "panic",
            CallError::Trap { .. } => "trap",
            CallError::InvalidOutput { .. } => "invalid_output",
            CallError::OutputTooLarge { .. } => "output_too_large",
            CallError::Guest { .. } => "guest_error",
            CallError::Busy { .. } => "busy",
        }
    }

    /// The error with every plugin-controlled string cut to a bounded size,
    /// so a plugin cannot make an answer (or a log line) large.
    pub fn bounded(self) -> CallError {
        let m = |s: String| clip(s, MAX_ERROR_MESSAGE_BYTES);
        match self {
            CallError::Panic { message } => CallError::Panic {
                message: m(message),
            },
            CallError::Trap { message } => CallError::Trap {
                message: m(message),
            },
            CallError::InvalidOutput { message } => CallError::InvalidOutput {
                message: m(message),
            },
            CallError::Guest { code, message } => CallError::Guest {
                code: clip(code, MAX_ERROR_CODE_BYTES),
                message: m(message),
            },
            other => other,
        }
    }
}

/// Errors of plugin management (upload, bind) and of calls that fail closed.
#[derive(Debug, thiserror::Error)]
pub enum PluginsError {
    #[error("the upload is empty: send the component's bytes as the request body")]
    Empty,
    #[error("the component is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("{0}")]
    Invalid(String),
    #[error("a plugin name is 1 to 64 characters of a-z, 0-9, '-' and '_'")]
    BadName,
    #[error("`{0}` is a first-party plugin's name; choose another")]
    ReservedName(String),
    #[error("`{0}` is not an extension point; use rules, gift, template or route")]
    UnknownPoint(String),
    #[error("no plugin named `{0}`")]
    NoPlugin(String),
    #[error("plugin `{0}` has no version {1}")]
    NoVersion(String, u32),
    #[error(
        "plugin `{plugin}` implements the {world} world; the `{point}` point needs a {wanted} plugin"
    )]
    WrongWorld {
        plugin: String,
        world: &'static str,
        point: &'static str,
        wanted: &'static str,
    },
    #[error("the binding's config must be a JSON object")]
    BadConfig,
    #[error("{plugin} v{version} refuses this config ({code}): {message}; nothing was bound")]
    ConfigRejected {
        plugin: String,
        version: u32,
        code: String,
        message: String,
    },
    #[error("{plugin} v{version}'s config check failed ({error}); nothing was bound")]
    ConfigCheckFailed {
        plugin: String,
        version: u32,
        error: CallError,
        logs: Vec<LogLine>,
    },
    #[error("limits out of range: {0}")]
    BadLimits(String),
    #[error("the plugin call failed ({plugin} v{version}): {error}")]
    CallFailed {
        plugin: String,
        version: u32,
        error: CallError,
        logs: Vec<LogLine>,
    },
    #[error("the plugin's data kept changing under it ({0} attempts); try again")]
    TooManyConflicts(u32),
    #[error(transparent)]
    KvQuota(#[from] kv::QuotaExceeded),
    #[error("{0}")]
    PluginQuota(String),
    #[error(
        "version {version} of `{plugin}` is bound at the {point} point; bind another version first"
    )]
    VersionBound {
        plugin: String,
        version: u32,
        point: &'static str,
    },
    #[error("nothing is bound to `{0}`")]
    NotBound(&'static str),
    #[error("no canary runs at the `{0}` point")]
    NoCanary(&'static str),
    #[error("{0}")]
    BadCanary(String),
    /// The canary asked for is the version already bound.
    #[error("{0}")]
    CanaryIsStable(String),
    #[error("the `{0}` binding changed while this request was deciding; read it again and retry")]
    BindingChanged(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

/// A stored plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PluginRecord {
    name: String,
    latest: u32,
    point: Point,
}

/// A stored, immutable plugin version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct VersionInfo {
    pub name: String,
    pub version: u32,
    pub sha256: String,
    pub world: String,
    /// The `engage:plugin` version it was built against (versions stored
    /// before 0.2.0 existed were all 0.1.0).
    #[serde(default = "wit_0_1_0")]
    pub wit: String,
    pub size: usize,
    pub uploaded_at_ms: i64,
}

fn wit_0_1_0() -> String {
    WitVersion::V0_1_0.as_str().to_owned()
}

/// What to do when the bound plugin fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Fail the request with an error naming the plugin failure.
    #[default]
    Fail,
    /// Run the first-party default plugin instead.
    Default,
}

/// How calls are isolated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Isolation {
    /// A fresh instance per call (the default): nothing survives a call.
    #[default]
    Fresh,
    /// Reuse instances of this binding, recycled after any trap and after
    /// `recycle_after` calls. For guests whose instantiation is costly
    /// (Python, JavaScript); globals may survive between calls.
    Warm { recycle_after: u32 },
}

/// A stored binding.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Binding {
    pub point: Point,
    pub plugin: String,
    pub version: u32,
    pub config: serde_json::Value,
    pub on_error: OnError,
    pub isolation: Isolation,
    pub limits: Limits,
    /// WASI families granted to the plugin (none by default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wasi: Vec<wasi::WasiGrant>,
    pub bound_at_ms: i64,
    /// Another version answering a share of players beside this one (with
    /// this binding's limits, isolation, WASI and error policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
}

/// What a tenant asks for when binding.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindRequest {
    pub plugin: String,
    pub version: Option<u32>,
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default)]
    pub isolation: Isolation,
    #[serde(default)]
    pub limits: Option<LimitsRequest>,
    /// WASI to grant: `clocks`, `random`. Everything else stays denied.
    #[serde(default)]
    pub wasi: Vec<wasi::WasiGrant>,
}

/// Per-binding limits; each defaults to the server's.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    pub timeout_ms: Option<u64>,
    pub fuel: Option<u64>,
    pub memory_mib: Option<usize>,
}

/// Whether a bind runs the plugin's config check: a tenant's bind does;
/// carrying an existing binding over to a new first-party version does not
/// (a config bound before the checks existed must not stop the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checked {
    Yes,
    CarriedOver,
}

/// A bound plugin, ready to call.
struct Active {
    binding: Binding,
    /// The binding log's position this binding was read at (or written
    /// as): an activation from an older position never replaces it.
    logged: u64,
    stable: Arm,
    canary: Option<Arm>,
}

/// One version a binding calls: the stable one, or its canary.
struct Arm {
    plugin: String,
    version: u32,
    config: Arc<str>,
    prepared: Arc<Prepared>,
    /// The version's counters since this host started.
    stats: Arc<Stats>,
    /// Its counters since the binding's canary started (none without one).
    session: Option<Arc<Stats>>,
    warm: Option<WarmPool>,
}

impl Arm {
    /// What this version's call answered: its output with what it did, or
    /// its error with its logs.
    fn answer(&self, report: runtime::Report) -> Result<Called, (CallError, Vec<LogLine>)> {
        match report.result {
            Ok(output) => Ok(Called {
                output,
                effects: report.effects,
                logs: report.logs,
                logs_dropped: report.logs_dropped,
                plugin: self.plugin.clone(),
                version: self.version,
                fallback: None,
                fuel_used: report.fuel_used,
                elapsed_us: report.elapsed.as_micros() as u64,
            }),
            Err(error) => Err((error, report.logs)),
        }
    }
}

impl Active {
    /// The version that answers `input`: the canary for its share of
    /// players, else the stable one.
    fn arm(&self, tenant: &str, input: &Input) -> &Arm {
        match (&self.binding.canary, &self.canary) {
            (Some(c), Some(arm))
                if canary::chosen(tenant, self.binding.point, c, canary::subject(input)) =>
            {
                arm
            }
            _ => &self.stable,
        }
    }
}

/// What a binding's versions were prepared as.
struct Arms {
    stable: Arc<Prepared>,
    canary: Option<Arc<Prepared>>,
    /// How many of them this host compiled (rather than found cached).
    compiled: usize,
}

/// The result of a successful call (possibly by the fallback plugin).
pub struct Called {
    pub output: Output,
    pub effects: kv::Effects,
    pub logs: Vec<LogLine>,
    pub logs_dropped: u32,
    pub plugin: String,
    pub version: u32,
    /// Set when the bound plugin failed and the first-party default answered.
    pub fallback: Option<CallError>,
    pub fuel_used: u64,
    pub elapsed_us: u64,
}

/// A plugin with its versions and statistics, as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Plugin)]
pub struct PluginView {
    pub name: String,
    pub world: String,
    pub latest: u32,
    pub builtin: bool,
    pub versions: Vec<VersionView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = PluginVersion)]
pub struct VersionView {
    #[serde(flatten)]
    pub info: VersionInfo,
    pub stats: StatsView,
}

/// The plugin runtime: engine, caches, registry, bindings.
pub struct Plugins {
    /// One engine per memory-initialisation flavor: [small, large].
    engines: [Engine; 2],
    linkers: [Linker<CallState>; 2],
    caches: [engine::Cache; 2],
    store: Store,
    config: RuntimeConfig,
    prepared: Mutex<HashMap<String, Arc<Prepared>>>,
    active: RwLock<HashMap<(String, Point), Arc<Active>>>,
    stats: Mutex<HashMap<String, Arc<Stats>>>,
    /// This host's counters of each running canary.
    canaries: Mutex<HashMap<(String, Point), Arc<canary::Session>>>,
    ticker: Arc<engine::Ticker>,
    compilations: AtomicU64,
    /// The last binding-log entry this host applied.
    binding_log_seen: AtomicU64,
    /// Admission to each engine's instance pool for tenants' plugins.
    gates: [gate::Gate; 2],
    /// What idle warm instances may hold, per engine.
    idle: [Arc<gate::IdleBudget>; 2],
    /// One compilation at a time: an upload flood queues instead of taking
    /// every core from the requests being served.
    compiling: tokio::sync::Semaphore,
    /// The last invocations of each binding, for authors.
    recorder: invocations::Recorder,
}

impl Drop for Plugins {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

const COMPONENT_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
const MODULE_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

/// Whether `tenant` may keep one more version of `size` bytes: at most
/// `max_versions` uploaded versions and `max_bytes` of them (first-party
/// versions do not count). Reads at most the cap (and the first-party
/// versions beside it).
fn check_plugin_quota(
    src: &impl Reader,
    tenant: &str,
    size: usize,
    max_versions: usize,
    max_bytes: u64,
) -> Result<(), PluginsError> {
    let kept: Vec<VersionInfo> = src
        .scan_page::<VersionInfo>(
            VERSIONS,
            &prefix(&[tenant]),
            None,
            max_versions + BUILTIN_VERSIONS_ALLOWANCE,
            false,
        )?
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| !builtin::is_builtin_name(&v.name))
        .collect();
    if kept.len() >= max_versions {
        return Err(PluginsError::PluginQuota(format!(
            "this tenant keeps {} plugin versions, the most it may; delete one (DELETE /v1/plugins/{{name}}/versions/{{version}}) or ask the operator to raise max_plugin_versions_per_tenant",
            kept.len()
        )));
    }
    let bytes: u64 = kept.iter().map(|v| v.size as u64).sum();
    if bytes.saturating_add(size as u64) > max_bytes {
        return Err(PluginsError::PluginQuota(format!(
            "this tenant keeps {bytes} bytes of components; {size} more would pass the {max_bytes} it may keep (delete a version first)"
        )));
    }
    Ok(())
}

/// Count the stored versions of every component once (data from before
/// the counts were kept); inside a write job, before its other writes.
fn index_blob_refs(tx: &mut Tx) -> Result<(), StoreError> {
    if tx.get_raw(BLOB_REFS, REFS_INDEXED)?.is_some() {
        return Ok(());
    }
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = tx.scan_page::<VersionInfo>(VERSIONS, "", after.as_deref(), 512, false)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (_, v) in page {
            *counts.entry(v.sha256).or_default() += 1;
        }
    }
    for (sha, n) in counts {
        tx.put_u64(BLOB_REFS, &sha, n)?;
    }
    tx.put_raw(BLOB_REFS, REFS_INDEXED, b"")
}

/// Move components kept as files by earlier versions
/// (`plugins/blobs/SHA.wasm` in the data directory) into the store, one
/// commit each, then delete the files. Runs before [`Plugins::open`].
pub async fn import_component_files(
    store: &Store,
    data: &cap_std::fs::Dir,
) -> anyhow::Result<usize> {
    const DIR: &str = "plugins/blobs";
    if !data.exists(DIR) {
        return Ok(0);
    }
    let dir = data.open_dir(DIR)?;
    let mut moved = 0;
    for entry in dir.entries()? {
        let name = entry?.file_name();
        let Some(sha) = name.to_str().and_then(|n| n.strip_suffix(".wasm")) else {
            continue;
        };
        let bytes = Arc::new(dir.read(&name)?);
        if sha256_hex(&bytes) != sha {
            tracing::warn!(
                file = sha,
                "a stored component file does not match its hash; left in place"
            );
            continue;
        }
        let sha_s = sha.to_owned();
        store
            .write(move |tx| {
                if tx.count_from(BLOBS, &sha_s, &sha_s)? == 0 {
                    tx.put_raw(BLOBS, &sha_s, &bytes)?;
                }
                Ok::<_, StoreError>(())
            })
            .await?;
        dir.remove_file(&name)?;
        moved += 1;
    }
    if moved > 0 {
        tracing::info!(moved, "components moved from files into storage");
    }
    let _ = data.remove_dir(DIR);
    Ok(moved)
}

/// The sequence of the newest binding-log entry (0: none).
fn latest_logged(src: &impl Reader) -> Result<u64, StoreError> {
    Ok(src
        .scan_raw(BINDING_LOG, "", None, 1, true)?
        .first()
        .and_then(|(k, _)| k.parse().ok())
        .unwrap_or(0))
}

/// Record that `tenant`'s bindings changed, in the write that changes them;
/// the change's position in the log.
fn log_binding_change(tx: &mut Tx, tenant: &str) -> Result<u64, StoreError> {
    // The empty tenant is no tenant's: a sequence of the whole store.
    let n = tx.next_seq("", "binding_log")?;
    tx.put_raw(BINDING_LOG, &engage_store::seq_part(n), tenant.as_bytes())?;
    if n > BINDING_LOG_KEEP {
        tx.remove(BINDING_LOG, &engage_store::seq_part(n - BINDING_LOG_KEEP))?;
    }
    Ok(n)
}

impl Plugins {
    /// Start the runtime over `data` (the data directory), loading every
    /// bound plugin from the compiled cache.
    pub fn open(
        data: &cap_std::fs::Dir,
        data_path: &std::path::Path,
        store: Store,
        config: RuntimeConfig,
    ) -> anyhow::Result<Plugins> {
        let flavors = [Flavor::Small, Flavor::Large];
        let engines = [
            engine::build(&config, Flavor::Small)?,
            engine::build(&config, Flavor::Large)?,
        ];
        let ticker = Arc::new(engine::Ticker::default());
        engine::start_ticker(engines.to_vec(), ticker.clone());
        data.create_dir_all("plugins/compiled")?;
        let caches = [0, 1].map(|i| -> anyhow::Result<engine::Cache> {
            Ok(engine::Cache::new(
                engines[i].clone(),
                flavors[i],
                data.open_dir("plugins/compiled")?,
                data_path.join("plugins/compiled"),
            ))
        });
        let [small_cache, large_cache] = caches;
        let linkers = [0, 1].map(|i| base_linker(&engines[i]));
        let [small_linker, large_linker] = linkers;
        let pools = [
            (config.max_concurrent_instances, Flavor::Small),
            (config.max_concurrent_large_instances, Flavor::Large),
        ];
        let gates = pools.map(|(slots, flavor)| tenant_gate(&config, slots, flavor));
        let idle = pools.map(|(slots, flavor)| Arc::new(idle_budget(&config, slots, flavor)));
        let plugins = Plugins {
            gates,
            idle,
            compiling: tokio::sync::Semaphore::new(1),
            recorder: invocations::Recorder::default(),
            linkers: [small_linker?, large_linker?],
            caches: [small_cache?, large_cache?],
            engines,
            store,
            config,
            prepared: Mutex::new(HashMap::new()),
            active: RwLock::new(HashMap::new()),
            stats: Mutex::new(HashMap::new()),
            canaries: Mutex::new(HashMap::new()),
            ticker,
            compilations: AtomicU64::new(0),
            binding_log_seen: AtomicU64::new(0),
        };
        // Changes logged from here on are applied by `refresh_bindings`.
        let seen = latest_logged(&plugins.store.read()?)?;
        plugins.binding_log_seen.store(seen, Ordering::Relaxed);
        plugins.load_bindings()?;
        Ok(plugins)
    }

    /// How many components this process compiled (rather than loaded from
    /// the on-disk cache) since it started.
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    fn load_bindings(&self) -> anyhow::Result<()> {
        let snap = self.store.read()?;
        let logged = latest_logged(&snap)?;
        let mut compiled = 0;
        let mut after: Option<String> = None;
        loop {
            // Every tenant's bindings, a bounded page at a time.
            let page = snap.scan_page::<Binding>(BINDINGS, "", after.as_deref(), 256, false)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (k, binding) in page {
                let tenant = engage_store::parts(&k)
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let arms = self.prepare_arms(&snap, &tenant, &binding)?;
                compiled += arms.compiled;
                self.activate(&tenant, binding, arms, logged);
            }
        }
        tracing::info!(
            bindings = self.active.read().map(|a| a.len()).unwrap_or(0),
            compiled,
            "plugin bindings loaded"
        );
        Ok(())
    }

    fn cached(&self, cache_key: &str) -> Option<Arc<Prepared>> {
        self.prepared
            .lock()
            .ok()
            .and_then(|m| m.get(cache_key).cloned())
    }

    fn prepare_stored(
        &self,
        sha256: &str,
        grants: &[wasi::WasiGrant],
    ) -> anyhow::Result<(Arc<Prepared>, bool)> {
        if let Some(p) = self.cached(&prepared_key(sha256, grants)) {
            return Ok((p, false));
        }
        let bytes = self
            .store
            .read()?
            .get_raw(BLOBS, sha256)?
            .ok_or_else(|| anyhow::anyhow!("component {sha256} is missing from storage"))?;
        self.prepare(sha256, &bytes, grants)
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Prepare the versions `binding` calls: its own and its canary's.
    fn prepare_arms(
        &self,
        snap: &Snapshot,
        tenant: &str,
        binding: &Binding,
    ) -> Result<Arms, PluginsError> {
        let mut compiled = 0;
        let mut prepare = |plugin: &str, version: u32| {
            let info = self.version_info(snap, tenant, plugin, version)?;
            let (prepared, was_compiled) = self
                .prepare_stored(&info.sha256, &binding.wasi)
                .map_err(|e| PluginsError::Internal(e.to_string()))?;
            compiled += usize::from(was_compiled);
            Ok::<_, PluginsError>(prepared)
        };
        let stable = prepare(&binding.plugin, binding.version)?;
        let canary = match &binding.canary {
            Some(c) => Some(prepare(&c.plugin, c.version)?),
            None => None,
        };
        Ok(Arms {
            stable,
            canary,
            compiled,
        })
    }

    /// Compile (or load from cache), check the world and the imports, and
    /// link with `grants`. Returns whether it had to compile.
    fn prepare(
        &self,
        sha256: &str,
        bytes: &[u8],
        grants: &[wasi::WasiGrant],
    ) -> Result<(Arc<Prepared>, bool), PluginsError> {
        let cache_key = prepared_key(sha256, grants);
        if let Some(p) = self.cached(&cache_key) {
            return Ok((p, false));
        }
        let flavor = Flavor::for_size(bytes.len()) as usize;
        let engine = &self.engines[flavor];
        let core_instances = measured_core_instances(bytes)?;
        let (component, compiled) = self.caches[flavor]
            .load_or_compile(sha256, bytes)
            .map_err(|e| PluginsError::Invalid(format!("the component does not compile: {e}")))?;
        if compiled {
            self.compilations.fetch_add(1, Ordering::Relaxed);
        }
        let checked = self.check_compiled(flavor, &component, core_instances, grants);
        let (point, pre, shape) = match checked {
            Ok(c) => c,
            Err(e) => {
                // Refused: leave no compiled file behind (nothing refers to it).
                if compiled {
                    self.caches[flavor].remove(sha256);
                }
                return Err(e);
            }
        };
        let prepared = Arc::new(Prepared {
            point,
            pre,
            engine: engine.clone(),
            flavor,
            shape,
        });
        if let Ok(mut m) = self.prepared.lock() {
            m.insert(cache_key, prepared.clone());
        }
        Ok((prepared, compiled))
    }

    fn check_compiled(
        &self,
        flavor: usize,
        component: &Component,
        core_instances: u32,
        grants: &[wasi::WasiGrant],
    ) -> Result<(Point, WorldPre, shape::Shape), PluginsError> {
        check_compiled(
            &self.engines[flavor],
            &self.linkers[flavor],
            component,
            core_instances,
            grants,
        )
    }

    /// Store a new version of `name` for `tenant` from component `bytes`.
    pub async fn upload(
        self: &Arc<Self>,
        tenant: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<VersionInfo, PluginsError> {
        if !valid_plugin_name(name) {
            return Err(PluginsError::BadName);
        }
        if builtin::is_builtin_name(name) {
            return Err(PluginsError::ReservedName(name.to_owned()));
        }
        self.upload_unchecked(tenant, name, bytes, true).await
    }

    /// Stores a version; `quota`: whether it counts against the tenant's
    /// plugin storage (a tenant's uploads do, first-party plugins do not:
    /// provisioning them never fails on a full quota).
    async fn upload_unchecked(
        self: &Arc<Self>,
        tenant: &str,
        name: &str,
        bytes: Vec<u8>,
        quota: bool,
    ) -> Result<VersionInfo, PluginsError> {
        check_bytes(&self.config, &bytes)?;
        let sha256 = sha256_hex(&bytes);
        let max_versions = self.config.max_plugin_versions_per_tenant.max(1);
        let max_bytes = self.config.max_plugin_bytes_per_tenant;
        if quota {
            // Refused before compiling: a tenant at its quota costs nothing.
            let snap = self.store.read()?;
            check_plugin_quota(&snap, tenant, bytes.len(), max_versions, max_bytes)?;
        }
        self.count_component_references().await?;
        let _compiling = self
            .compiling
            .acquire()
            .await
            .map_err(|e| PluginsError::Internal(e.to_string()))?;
        // Compiling takes milliseconds to seconds: keep it off the async workers.
        let this = self.clone();
        let blob = Arc::new(bytes);
        let (sha, compiled_blob) = (sha256.clone(), blob.clone());
        let size = blob.len();
        let prepared =
            tokio::task::spawn_blocking(move || -> Result<Arc<Prepared>, PluginsError> {
                Ok(this.prepare(&sha, &compiled_blob, &[])?.0)
            })
            .await
            .map_err(|e| PluginsError::Internal(e.to_string()))??;

        let point = prepared.point;
        let wit = prepared.pre.version();
        let (tenant_s, name_s, sha) = (tenant.to_owned(), name.to_owned(), sha256.clone());
        let stored = self
            .store
            .write(move |tx| {
                let pkey = key(&[&tenant_s, &name_s]);
                let record: Option<PluginRecord> = tx.get(PLUGINS, &pkey)?;
                if let Some(r) = &record
                    && r.point != point
                {
                    return Err(PluginsError::Invalid(format!(
                        "plugin `{name_s}` implements the {} world; a new version must too (this component implements {})",
                        r.point.world(),
                        point.world()
                    )));
                }
                if quota {
                    check_plugin_quota(tx, &tenant_s, size, max_versions, max_bytes)?;
                }
                let version = record.map(|r| r.latest + 1).unwrap_or(1);
                let info = VersionInfo {
                    name: name_s.clone(),
                    version,
                    sha256: sha256.clone(),
                    world: point.world().to_owned(),
                    wit: wit.as_str().to_owned(),
                    size,
                    uploaded_at_ms: now_ms(),
                };
                index_blob_refs(tx)?;
                let refs = tx.get_u64(BLOB_REFS, &sha256)?;
                // The component is stored with its first version, in the
                // same commit that counts it.
                let stored = tx.count_from(BLOBS, &sha256, &sha256)? > 0;
                tx.put(VERSIONS, &version_key(&tenant_s, &name_s, version), &info)?;
                tx.put(PLUGINS, &pkey, &PluginRecord { name: name_s.clone(), latest: version, point })?;
                tx.put_u64(BLOB_REFS, &sha256, refs + 1)?;
                if !stored {
                    tx.put_raw(BLOBS, &sha256, &blob)?;
                }
                // Other hosts compile it now, before it is bound.
                log_binding_change(tx, &tenant_s)?;
                Ok(info)
            })
            .await;
        let info = match stored {
            Ok(info) => info,
            Err(e) => {
                // Refused (a quota reached meanwhile, another world): what
                // was compiled for it goes unless a stored version uses it.
                self.forget_unused_component(&sha)?;
                return Err(e);
            }
        };
        tracing::info!(tenant, plugin = name, version = info.version, world = %info.world, "plugin version stored");
        Ok(info)
    }

    /// Count, once, how many stored versions each component has (for data
    /// from before the counts were kept); a no-op afterwards.
    pub async fn count_component_references(&self) -> Result<(), PluginsError> {
        if self
            .store
            .read()?
            .get_raw(BLOB_REFS, REFS_INDEXED)?
            .is_none()
        {
            self.store.write(index_blob_refs).await?;
        }
        Ok(())
    }

    /// Delete `version` of the tenant's plugin `name`: refused while a
    /// binding uses it; the component's files go once no stored version of
    /// any tenant is that component. Guarded by `idem` (a retry answers as
    /// the first time). Version numbers are not reused.
    pub async fn remove_version(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
        idem: Option<Call>,
    ) -> Result<Guarded<()>, PluginsError> {
        if builtin::is_builtin_name(name) {
            return Err(PluginsError::ReservedName(name.to_owned()));
        }
        let (t, n) = (tenant.to_owned(), name.to_owned());
        let done = self
            .store
            .write(move |tx| {
                let mut gone = None;
                let g = engage_store::idempotency::guarded(
                    tx,
                    &t,
                    idem.as_ref(),
                    now_ms(),
                    204,
                    |tx| {
                        let vk = version_key(&t, &n, version);
                        let info: VersionInfo = tx
                            .get(VERSIONS, &vk)?
                            .ok_or_else(|| PluginsError::NoVersion(n.clone(), version))?;
                        for point in Point::ALL {
                            let bound: Option<Binding> =
                                tx.get(BINDINGS, &key(&[&t, point.as_str()]))?;
                            let uses = |b: &Binding| {
                                (b.plugin == n && b.version == version)
                                    || b.canary
                                        .as_ref()
                                        .is_some_and(|c| c.plugin == n && c.version == version)
                            };
                            if bound.as_ref().is_some_and(uses) {
                                return Err(PluginsError::VersionBound {
                                    plugin: n.clone(),
                                    version,
                                    point: point.as_str(),
                                });
                            }
                        }
                        index_blob_refs(tx)?;
                        tx.remove(VERSIONS, &vk)?;
                        let refs = tx.get_u64(BLOB_REFS, &info.sha256)?.saturating_sub(1);
                        if refs == 0 {
                            tx.remove(BLOB_REFS, &info.sha256)?;
                            tx.remove(BLOBS, &info.sha256)?;
                            gone = Some(info.sha256.clone());
                        } else {
                            tx.put_u64(BLOB_REFS, &info.sha256, refs)?;
                        }
                        Ok::<_, PluginsError>(())
                    },
                )?;
                Ok::<_, PluginsError>((g, gone))
            })
            .await?;
        let (g, gone) = done;
        if let Some(sha) = gone {
            self.remove_component_files(&sha);
        }
        tracing::info!(tenant, plugin = name, version, "plugin version deleted");
        Ok(g)
    }

    /// Whether the component with this content hash is stored.
    pub fn component_stored(&self, sha256: &str) -> Result<bool, StoreError> {
        Ok(self.store.read()?.count_from(BLOBS, sha256, sha256)? > 0)
    }

    /// Forget what was compiled of a component unless a stored version
    /// uses it.
    fn forget_unused_component(&self, sha256: &str) -> Result<(), PluginsError> {
        if self.store.read()?.get_u64(BLOB_REFS, sha256)? == 0 {
            self.remove_component_files(sha256);
        }
        Ok(())
    }

    /// The component's compiled forms on this host and what is prepared
    /// of it.
    fn remove_component_files(&self, sha256: &str) {
        for cache in &self.caches {
            cache.remove(sha256);
        }
        self.prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| k != sha256 && !k.starts_with(&format!("{sha256}+")));
    }

    fn version_info(
        &self,
        snap: &Snapshot,
        tenant: &str,
        name: &str,
        version: u32,
    ) -> Result<VersionInfo, PluginsError> {
        snap.get(VERSIONS, &version_key(tenant, name, version))?
            .ok_or_else(|| PluginsError::NoVersion(name.to_owned(), version))
    }

    /// Bind `req.plugin` to `point` for `tenant`. Takes effect for the next
    /// call; calls in flight finish on the previous binding.
    ///
    /// A plugin of WIT 0.2.0 or later checks the config first
    /// (`validate-config`): a config it refuses is never bound.
    pub async fn bind(
        &self,
        tenant: &str,
        point: Point,
        req: BindRequest,
    ) -> Result<Binding, PluginsError> {
        self.bind_checked(tenant, point, req, Checked::Yes, None)
            .await
    }

    async fn bind_checked(
        &self,
        tenant: &str,
        point: Point,
        req: BindRequest,
        checked: Checked,
        canary: Option<Canary>,
    ) -> Result<Binding, PluginsError> {
        let snap = self.store.read()?;
        let record = self.record(&snap, tenant, &req.plugin)?;
        let version = req.version.unwrap_or(record.latest);
        let info = self.version_info(&snap, tenant, &req.plugin, version)?;
        if record.point != point {
            return Err(PluginsError::WrongWorld {
                plugin: req.plugin.clone(),
                world: record.point.world(),
                point: point.as_str(),
                wanted: point.world(),
            });
        }
        let config = match req.config {
            None => serde_json::Value::Object(Default::default()),
            Some(v @ serde_json::Value::Object(_)) => v,
            Some(_) => return Err(PluginsError::BadConfig),
        };
        let limits = binding_limits(
            &self.config,
            req.limits.unwrap_or_default(),
            engine::Flavor::for_size(info.size),
        )?;
        if let Isolation::Warm { recycle_after } = req.isolation
            && recycle_after == 0
        {
            return Err(PluginsError::BadLimits(
                "isolation.recycle_after must be at least 1".into(),
            ));
        }
        let (prepared, _) = self
            .prepare_stored(&info.sha256, &req.wasi)
            .map_err(|e| PluginsError::Internal(e.to_string()))?;
        if checked == Checked::Yes {
            self.check_config(tenant, &req.plugin, version, &prepared, &config, limits)?;
        }
        let binding = Binding {
            point,
            plugin: req.plugin,
            version,
            config,
            on_error: req.on_error,
            isolation: req.isolation,
            limits,
            wasi: req.wasi,
            bound_at_ms: now_ms(),
            canary,
        };
        let arms = self.prepare_arms(&snap, tenant, &binding)?;
        drop(snap);
        let (t, b) = (tenant.to_owned(), binding.clone());
        let logged = self
            .store
            .write(move |tx| {
                tx.put(BINDINGS, &key(&[&t, b.point.as_str()]), &b)?;
                Ok::<_, PluginsError>(log_binding_change(tx, &t)?)
            })
            .await?;
        self.activate(tenant, binding.clone(), arms, logged);
        tracing::info!(tenant, point = point.as_str(), plugin = %binding.plugin, version, "plugin bound");
        Ok(binding)
    }

    /// The tenant's plugin `name`.
    fn record(
        &self,
        snap: &impl Reader,
        tenant: &str,
        name: &str,
    ) -> Result<PluginRecord, PluginsError> {
        snap.get(PLUGINS, &key(&[tenant, name]))?
            .ok_or_else(|| PluginsError::NoPlugin(name.to_owned()))
    }

    /// Run the plugin's config check on `config`, as a call of its own
    /// with the binding's limits and no data (through the tenant's gate
    /// like any call of a tenant's plugin).
    fn check_config(
        &self,
        tenant: &str,
        plugin: &str,
        version: u32,
        prepared: &Arc<Prepared>,
        config: &serde_json::Value,
        limits: Limits,
    ) -> Result<(), PluginsError> {
        let tenant_arc: Arc<str> = tenant.into();
        let ctx = Context {
            tenant: tenant_arc.clone(),
            plugin: plugin.into(),
            config: config.to_string().into(),
            now_ms: now_ms(),
            request_id: "bind".into(),
            data: sandbox::Data::None,
            limits,
            kv_quota: self.config.kv_quota(),
        };
        if !prepared.pre.version().checks_config() {
            return Ok(());
        }
        let check = |ctx: &Context| {
            runtime::check_config(prepared, ctx).unwrap_or_else(|| {
                runtime::Report::failed(
                    CallError::Trap {
                        message: "the component has no config check".into(),
                    },
                    std::time::Instant::now(),
                )
            })
        };
        let report = if builtin::is_builtin_name(plugin) {
            check(&ctx)
        } else {
            off_the_reactor(|| self.admitted(prepared, &tenant_arc, ctx, check))
        };
        match report.result {
            Ok(_) => Ok(()),
            Err(CallError::Guest { code, message }) => Err(PluginsError::ConfigRejected {
                plugin: plugin.to_owned(),
                version,
                code,
                message,
            }),
            Err(error) => Err(PluginsError::ConfigCheckFailed {
                plugin: plugin.to_owned(),
                version,
                error,
                logs: report.logs,
            }),
        }
    }

    /// Limits of a first-party (small) plugin's call.
    fn limits(&self, req: LimitsRequest) -> Result<Limits, PluginsError> {
        binding_limits(&self.config, req, engine::Flavor::Small)
    }

    /// Put `binding` in force for new calls, unless what is in force was
    /// read at a later position of the binding log (`logged`): a refresh
    /// that read its snapshot before a bind on this host committed, or two
    /// binds finishing out of order, must not bring back an older binding.
    fn activate(&self, tenant: &str, binding: Binding, arms: Arms, logged: u64) {
        let session = self.session(tenant, &binding);
        let arm = |plugin: &str,
                   version,
                   config: &serde_json::Value,
                   prepared: Arc<Prepared>,
                   session| {
            let warm = match binding.isolation {
                Isolation::Fresh => None,
                Isolation::Warm { recycle_after } => Some(WarmPool::new(
                    recycle_after,
                    4,
                    self.idle[prepared.flavor].clone(),
                )),
            };
            Arm {
                plugin: plugin.to_owned(),
                version,
                config: config.to_string().into(),
                prepared,
                stats: self.stats_for(tenant, plugin, version),
                session,
                warm,
            }
        };
        let stable = arm(
            &binding.plugin,
            binding.version,
            &binding.config,
            arms.stable,
            session.as_ref().map(|s| s.stable.clone()),
        );
        let canary = match (&binding.canary, arms.canary) {
            (Some(c), Some(prepared)) => Some(arm(
                &c.plugin,
                c.version,
                &c.config,
                prepared,
                session.as_ref().map(|s| s.canary.clone()),
            )),
            _ => None,
        };
        let active = Arc::new(Active {
            logged,
            binding,
            stable,
            canary,
        });
        if let Ok(mut map) = self.active.write() {
            let k = (tenant.to_owned(), active.binding.point);
            if map.get(&k).is_none_or(|current| current.logged <= logged) {
                map.insert(k, active);
            }
        }
    }

    fn stats_for(&self, tenant: &str, plugin: &str, version: u32) -> Arc<Stats> {
        let k = key(&[tenant, plugin, &version.to_string()]);
        match self.stats.lock() {
            Ok(mut m) => m.entry(k).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// Return `point` to the first-party default with its default config.
    pub async fn unbind(
        self: &Arc<Self>,
        tenant: &str,
        point: Point,
    ) -> Result<Binding, PluginsError> {
        let b = builtin::for_point(point);
        self.bind(
            tenant,
            point,
            BindRequest {
                plugin: b.name.to_owned(),
                version: None,
                config: serde_json::from_str(b.default_config).ok(),
                on_error: OnError::Fail,
                isolation: Isolation::Fresh,
                limits: None,
                wasi: Vec::new(),
            },
        )
        .await
    }

    /// Give `tenant` the current first-party plugins: store a new version of
    /// each whose embedded bytes changed, bind those not bound yet, and move
    /// bindings still on an older first-party version to the new one.
    pub async fn provision(self: &Arc<Self>, tenant: &str) -> Result<(), PluginsError> {
        for b in &builtin::BUILTINS {
            let snap = self.store.read()?;
            let record: Option<PluginRecord> = snap.get(PLUGINS, &key(&[tenant, b.name]))?;
            let latest = match &record {
                Some(r)
                    if self.version_info(&snap, tenant, b.name, r.latest)?.sha256 == b.sha256() =>
                {
                    r.latest
                }
                _ => {
                    self.upload_unchecked(tenant, b.name, b.bytes.to_vec(), false)
                        .await?
                        .version
                }
            };
            let bound: Option<Binding> = snap.get(BINDINGS, &key(&[tenant, b.point.as_str()]))?;
            match bound {
                None => {
                    self.unbind(tenant, b.point).await?;
                }
                Some(old) if old.plugin == b.name && old.version != latest => {
                    self.bind_checked(
                        tenant,
                        b.point,
                        BindRequest {
                            plugin: old.plugin,
                            version: Some(latest),
                            config: Some(old.config),
                            on_error: old.on_error,
                            isolation: old.isolation,
                            limits: Some(LimitsRequest {
                                timeout_ms: Some(old.limits.timeout_ms),
                                fuel: Some(old.limits.fuel),
                                memory_mib: Some(old.limits.memory_bytes >> 20),
                            }),
                            wasi: old.wasi,
                        },
                        Checked::CarriedOver,
                        old.canary,
                    )
                    .await?;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Apply the binding changes made since the last look (through any
    /// host sharing the store): each changed tenant's bindings are read
    /// again and activated; calls in flight finish on what they started
    /// with. How many tenants changed. Compiles what this host has not
    /// compiled yet, so run it off the async workers.
    pub fn refresh_bindings(&self) -> Result<usize, PluginsError> {
        let snap = self.store.read()?;
        let seen = self.binding_log_seen.load(Ordering::Relaxed);
        let newest = latest_logged(&snap)?;
        if newest <= seen {
            return Ok(0);
        }
        let mut tenants = std::collections::BTreeSet::new();
        if newest - seen > BINDING_LOG_KEEP {
            // Too far behind to read the log: everything, again.
            drop(snap);
            self.load_bindings()
                .map_err(|e| PluginsError::Internal(e.to_string()))?;
            self.binding_log_seen.store(newest, Ordering::Relaxed);
            return Ok(usize::MAX);
        }
        let mut after = engage_store::seq_part(seen);
        loop {
            let page = snap.scan_raw(BINDING_LOG, "", Some(&after), 256, false)?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            for (k, tenant) in page {
                if k.parse::<u64>().is_ok_and(|n| n <= newest) {
                    tenants.insert(String::from_utf8_lossy(&tenant).into_owned());
                }
            }
        }
        for tenant in &tenants {
            let bound = snap.scan_page::<Binding>(
                BINDINGS,
                &prefix(&[tenant]),
                None,
                Point::ALL.len(),
                false,
            )?;
            for (_, binding) in bound {
                let current = self
                    .active
                    .read()
                    .ok()
                    .and_then(|m| m.get(&(tenant.clone(), binding.point)).cloned());
                if current.is_some_and(|a| a.binding == binding) {
                    continue;
                }
                let arms = self.prepare_arms(&snap, tenant, &binding)?;
                tracing::info!(tenant, point = binding.point.as_str(), plugin = %binding.plugin, version = binding.version, "binding changed through another host");
                self.activate(tenant, binding, arms, newest);
            }
        }
        self.binding_log_seen.store(newest, Ordering::Relaxed);
        // Bindings first, then what was uploaded: a binding that follows
        // finds the component compiled here already (a bind is then in
        // force on every host within one refresh, not one compile later).
        // At most a few per look, with the snapshot let go: a tenant
        // uploading many large components delays the next look by that
        // much, no more; what is left compiles at its bind, as before.
        let mut unprepared = Vec::new();
        for tenant in &tenants {
            unprepared.extend(self.unprepared_latest(&snap, tenant)?);
            if unprepared.len() >= PRECOMPILED_PER_REFRESH {
                break;
            }
        }
        drop(snap);
        for sha in unprepared.iter().take(PRECOMPILED_PER_REFRESH) {
            // A failure is its bind's to report, with the reason.
            if let Err(e) = self.prepare_stored(sha, &[]) {
                tracing::warn!(component = %sha, error = %e, "preparing a component uploaded through another host");
            }
        }
        Ok(tenants.len())
    }

    /// The components of the newest versions of `tenant`'s plugins that
    /// this host has not prepared yet.
    fn unprepared_latest(
        &self,
        snap: &Snapshot,
        tenant: &str,
    ) -> Result<Vec<String>, PluginsError> {
        let records = snap.scan_page::<PluginRecord>(
            PLUGINS,
            &prefix(&[tenant]),
            None,
            MAX_PRECOMPILED_PLUGINS,
            false,
        )?;
        let mut shas = Vec::new();
        for (_, record) in records {
            let info = self.version_info(snap, tenant, &record.name, record.latest)?;
            if self.cached(&prepared_key(&info.sha256, &[])).is_none() {
                shas.push(info.sha256);
            }
        }
        Ok(shas)
    }

    /// The stored binding of `point` for `tenant`, activated here.
    fn load_binding(
        &self,
        tenant: &str,
        point: Point,
    ) -> Result<Option<Arc<Active>>, PluginsError> {
        let snap = self.store.read()?;
        let logged = latest_logged(&snap)?;
        let Some(binding) = snap.get::<Binding>(BINDINGS, &key(&[tenant, point.as_str()]))? else {
            return Ok(None);
        };
        let arms = self.prepare_arms(&snap, tenant, &binding)?;
        self.activate(tenant, binding, arms, logged);
        Ok(self
            .active
            .read()
            .ok()
            .and_then(|m| m.get(&(tenant.to_owned(), point)).cloned()))
    }

    /// Apply binding changes made through other hosts until shutdown,
    /// every [`BINDING_REFRESH`]; nothing to do on a store no other host
    /// shares.
    /// Write the recorded invocations until `stop` (see [`invocations`]).
    pub async fn record_loop(self: Arc<Self>, stop: engage_store::shutdown::Shutdown) {
        self.recorder.flush_loop(self.store.clone(), stop).await;
    }

    /// The kept invocations of `tenant`'s plugin `name`, newest first.
    pub fn invocations(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<invocations::Invocation>, PluginsError> {
        let snap = self.store.read()?;
        snap.get::<PluginRecord>(PLUGINS, &key(&[tenant, name]))?
            .ok_or_else(|| PluginsError::NoPlugin(name.to_owned()))?;
        Ok(invocations::list(&snap, tenant, name)?)
    }

    /// One kept invocation of `tenant`'s.
    pub fn invocation(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<invocations::Invocation>, PluginsError> {
        Ok(invocations::get(&self.store.read()?, tenant, id)?)
    }

    pub async fn refresh_loop(self: Arc<Self>, mut stop: engage_store::shutdown::Shutdown) {
        if !self.store.is_shared() {
            return;
        }
        while !stop.is_requested() {
            let this = self.clone();
            match tokio::task::spawn_blocking(move || this.refresh_bindings()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "refreshing plugin bindings"),
                Err(e) => tracing::warn!(error = %e, "refreshing plugin bindings"),
            }
            stop.sleep(BINDING_REFRESH).await;
        }
    }

    /// The tenant's bindings.
    pub fn bindings(&self, tenant: &str) -> Result<Vec<Binding>, PluginsError> {
        let snap = self.store.read()?;
        Ok(snap
            // One binding per extension point.
            .scan_page::<Binding>(BINDINGS, &prefix(&[tenant]), None, Point::ALL.len(), false)?
            .into_iter()
            .map(|(_, b)| b)
            .collect())
    }

    /// The tenant's plugins with versions and statistics.
    pub fn list(&self, tenant: &str) -> Result<Vec<PluginView>, PluginsError> {
        let snap = self.store.read()?;
        // A plugin has at least one version: the versions cap bounds them.
        let cap = self.config.max_plugin_versions_per_tenant + BUILTIN_VERSIONS_ALLOWANCE;
        let records =
            snap.scan_page::<PluginRecord>(PLUGINS, &prefix(&[tenant]), None, cap, false)?;
        records
            .into_iter()
            .map(|(_, r)| self.view(&snap, tenant, r))
            .collect()
    }

    /// One plugin with versions and statistics.
    pub fn get(&self, tenant: &str, name: &str) -> Result<PluginView, PluginsError> {
        let snap = self.store.read()?;
        let record: PluginRecord = snap
            .get(PLUGINS, &key(&[tenant, name]))?
            .ok_or_else(|| PluginsError::NoPlugin(name.to_owned()))?;
        self.view(&snap, tenant, record)
    }

    fn view(
        &self,
        snap: &Snapshot,
        tenant: &str,
        r: PluginRecord,
    ) -> Result<PluginView, PluginsError> {
        let versions = snap
            .scan_page::<VersionInfo>(
                VERSIONS,
                &prefix(&[tenant, &r.name]),
                None,
                self.config.max_plugin_versions_per_tenant + BUILTIN_VERSIONS_ALLOWANCE,
                false,
            )?
            .into_iter()
            .map(|(_, info)| VersionView {
                stats: self.stats_for(tenant, &info.name, info.version).view(),
                info,
            })
            .collect();
        Ok(PluginView {
            world: r.point.world().to_owned(),
            builtin: builtin::is_builtin_name(&r.name),
            name: r.name,
            latest: r.latest,
            versions,
        })
    }

    /// Whether plugins can run here now: the engines are built (they are,
    /// once [`Plugins::open`] returned) and the epoch ticker that enforces
    /// every call's deadline is ticking. `Err` says what is wrong.
    pub fn ready(&self) -> Result<(), String> {
        let since = self.ticker.since_last_tick();
        if since > std::time::Duration::from_secs(1) {
            return Err(format!(
                "the epoch ticker has not ticked for {} ms: plugin deadlines would not fire",
                since.as_millis()
            ));
        }
        Ok(())
    }

    /// What answers `tenant`'s calls at `point` on this host.
    fn active_binding(&self, tenant: &str, point: Point) -> Result<Arc<Active>, PluginsError> {
        let active = self
            .active
            .read()
            .ok()
            .and_then(|m| m.get(&(tenant.to_owned(), point)).cloned());
        match active {
            Some(a) => Ok(a),
            // Bound through another host a moment ago (a new tenant, say)
            // and not refreshed here yet: read it now.
            None => self.load_binding(tenant, point)?.ok_or_else(|| {
                PluginsError::Internal(format!(
                    "tenant `{tenant}` has nothing bound to `{}`",
                    point.as_str()
                ))
            }),
        }
    }

    /// Run the version bound (stable) to `input`'s point with `config`
    /// instead of its bound config: the plugin checks the config as it would
    /// at binding, then answers `input` on `snapshot`. Nothing is written,
    /// recorded or counted, and the binding is unchanged: what an operator
    /// runs before saving a new config.
    pub fn try_config(
        &self,
        tenant: &str,
        input: &Input,
        config: serde_json::Value,
        snapshot: Arc<Snapshot>,
        now_ms: i64,
        request_id: &str,
    ) -> Result<Called, PluginsError> {
        if !config.is_object() {
            return Err(PluginsError::BadConfig);
        }
        let active = self.active_binding(tenant, input.point())?;
        let arm = &active.stable;
        let limits = active.binding.limits;
        self.check_config(
            tenant,
            &arm.plugin,
            arm.version,
            &arm.prepared,
            &config,
            limits,
        )?;
        let tenant_arc: Arc<str> = tenant.into();
        let ctx = Context {
            tenant: tenant_arc.clone(),
            plugin: arm.plugin.as_str().into(),
            config: config.to_string().into(),
            now_ms,
            request_id: request_id.into(),
            data: Some(snapshot).into(),
            limits,
            kv_quota: self.config.kv_quota(),
        };
        let run = |ctx: &Context| runtime::call_fresh(&arm.prepared, ctx, input);
        let report = if builtin::is_builtin_name(&arm.plugin) {
            run(&ctx)
        } else {
            off_the_reactor(|| self.admitted(&arm.prepared, &tenant_arc, ctx, run))
        };
        arm.answer(report)
            .map_err(|(error, logs)| PluginsError::CallFailed {
                plugin: arm.plugin.clone(),
                version: arm.version,
                error,
                logs,
            })
    }

    /// Call the plugin bound to `input`'s point for `tenant`, on `snapshot`
    /// (none: the plugin sees empty data), applying the binding's `on_error`
    /// policy. Runs on the calling thread; the deadline bounds it.
    pub fn call(
        &self,
        tenant: &str,
        input: &Input,
        snapshot: Option<Arc<Snapshot>>,
        now_ms: i64,
        request_id: &str,
    ) -> Result<Called, PluginsError> {
        let point = input.point();
        let active = self.active_binding(tenant, point)?;
        let arm = active.arm(tenant, input);
        let tenant_arc: Arc<str> = tenant.into();
        let request_id: Arc<str> = request_id.into();
        let ctx_now = now_ms;
        let ctx = Context {
            tenant: tenant_arc.clone(),
            plugin: arm.plugin.as_str().into(),
            config: arm.config.clone(),
            now_ms,
            request_id: request_id.clone(),
            data: snapshot.clone().into(),
            limits: active.binding.limits,
            kv_quota: self.config.kv_quota(),
        };
        let run = |ctx: &Context| match &arm.warm {
            Some(pool) => pool.call(&arm.prepared, ctx, input),
            None => runtime::call_fresh(&arm.prepared, ctx, input),
        };
        // First-party plugins are ours and answer in microseconds: run them
        // on the async worker, on the pool's reserved part. A tenant's plugin
        // is admitted through its pool's gate first and may run to its
        // deadline, so the worker first hands its other tasks to another
        // thread.
        let report = if builtin::is_builtin_name(&arm.plugin) {
            run(&ctx)
        } else {
            off_the_reactor(|| self.admitted(&arm.prepared, &tenant_arc, ctx, run))
        };
        let error = report.result.as_ref().err().cloned();
        if self.recorder.due(tenant, point, error.is_some()) {
            self.recorder.offer(invocations::Invocation {
                id: String::new(),
                at_ms: engage_store::ids::now_ms(),
                request_id: request_id.to_string(),
                tenant: tenant.to_owned(),
                point,
                plugin: arm.plugin.clone(),
                version: arm.version,
                config: arm.config.to_string(),
                now_ms: ctx_now,
                limits: active.binding.limits,
                input: input.clone(),
                reads: report.effects.reads.clone(),
                output: report.result.as_ref().ok().cloned(),
                error: error.clone(),
                logs: report.logs.clone(),
                logs_dropped: report.logs_dropped,
                fuel_used: report.fuel_used,
                memory_bytes: report.memory_bytes,
                elapsed_us: report.elapsed.as_micros() as u64,
                truncated: false,
            });
        }
        let fall_back = error.is_some() && active.binding.on_error == OnError::Default;
        for stats in std::iter::once(&arm.stats).chain(&arm.session) {
            stats.record(
                report.elapsed,
                report.fuel_used,
                error.as_ref().map(CallError::kind),
                fall_back,
            );
        }
        if let Some(CallError::Busy { .. }) = &error {
            engage_telemetry::refused("plugin_busy");
        }
        engage_telemetry::plugin_call(
            point.as_str(),
            error.as_ref().map_or("ok", CallError::kind),
            if arm.warm.is_some() { "warm" } else { "fresh" },
            tenant,
            report.elapsed,
            report.fuel_used,
        );
        match arm.answer(report) {
            Ok(called) => Ok(called),
            Err((error, logs)) => {
                tracing::warn!(tenant, plugin = %arm.plugin, version = arm.version, kind = error.kind(), %error, "plugin call failed");
                if !fall_back {
                    return Err(PluginsError::CallFailed {
                        plugin: arm.plugin.clone(),
                        version: arm.version,
                        error,
                        logs,
                    });
                }
                self.call_default(
                    tenant_arc, point, input, snapshot, now_ms, request_id, error,
                )
            }
        }
    }

    /// Run `run` once the call is admitted to its pool's gate; the wait
    /// counts against the call's deadline, so a call never lasts longer
    /// than its `timeout_ms`, queued or not.
    fn admitted(
        &self,
        prepared: &Prepared,
        tenant: &Arc<str>,
        mut ctx: Context,
        run: impl FnOnce(&Context) -> runtime::Report,
    ) -> runtime::Report {
        let started = std::time::Instant::now();
        let timeout = std::time::Duration::from_millis(ctx.limits.timeout_ms);
        let units = gate::Units::call(prepared.shape, ctx.limits.memory_bytes);
        let ticket = self.gates[prepared.flavor].admit(tenant, units, started + timeout);
        let _ticket = match ticket {
            Ok(t) => t,
            Err(refused) => {
                return runtime::Report::failed(
                    CallError::Busy {
                        message: refused.to_string(),
                    },
                    started,
                );
            }
        };
        let waited = started.elapsed().as_millis() as u64;
        ctx.limits.timeout_ms = ctx.limits.timeout_ms.saturating_sub(waited).max(1);
        let mut report = run(&ctx);
        report.elapsed = started.elapsed();
        report
    }

    #[allow(clippy::too_many_arguments)]
    fn call_default(
        &self,
        tenant: Arc<str>,
        point: Point,
        input: &Input,
        snapshot: Option<Arc<Snapshot>>,
        now_ms: i64,
        request_id: Arc<str>,
        cause: CallError,
    ) -> Result<Called, PluginsError> {
        let b = builtin::for_point(point);
        let (prepared, _) = self.prepare(b.sha256(), b.bytes, &[])?;
        let ctx = Context {
            tenant,
            plugin: b.name.into(),
            config: b.default_config.into(),
            now_ms,
            request_id,
            data: snapshot.into(),
            limits: self.limits(LimitsRequest::default())?,
            kv_quota: self.config.kv_quota(),
        };
        let report = runtime::call_fresh(&prepared, &ctx, input);
        match report.result {
            Ok(output) => Ok(Called {
                output,
                effects: report.effects,
                logs: report.logs,
                logs_dropped: report.logs_dropped,
                plugin: b.name.to_owned(),
                version: 0,
                fallback: Some(cause),
                fuel_used: report.fuel_used,
                elapsed_us: report.elapsed.as_micros() as u64,
            }),
            Err(error) => Err(PluginsError::CallFailed {
                plugin: b.name.to_owned(),
                version: 0,
                error,
                logs: report.logs,
            }),
        }
    }

    /// Call the bound plugin and commit its key-value writes, validating
    /// what it read; on a conflict run it again on fresh data. With
    /// `dry_run` nothing is written.
    pub async fn call_and_commit(
        &self,
        tenant: &str,
        input: &Input,
        now_ms: i64,
        request_id: &str,
        dry_run: bool,
    ) -> Result<(Called, u32), PluginsError> {
        let mut last: Option<(Called, u32)> = None;
        let judge = |snapshot: Arc<Snapshot>, attempt: u32| {
            let called = self.call(tenant, input, Some(snapshot), now_ms, request_id)?;
            let verdict = if dry_run || called.effects.is_read_only() {
                judged::Judgement::Answer(())
            } else {
                judged::Judgement::Commit {
                    effects: called.effects.clone(),
                    payload: (),
                }
            };
            last = Some((called, attempt));
            Ok::<_, PluginsError>(verdict)
        };
        let job = |_: &mut engage_store::Tx, _: &(), _: u32| Ok::<_, PluginsError>(());
        judged::judged_commit(&self.store, tenant, None, (now_ms, 200), judge, job)
            .await?
            .ok_or(PluginsError::TooManyConflicts(judged::MAX_ATTEMPTS))?;
        last.ok_or(PluginsError::TooManyConflicts(0))
    }
}

/// Run a plugin call so that a slow one (bounded by its deadline) does not
/// hold up other requests on this async worker: on the multi-threaded
/// runtime the worker hands its queued tasks to another thread first. This
/// costs a thread hand-off per call (measured: a dry-run action's p99 went
/// from 9 to 42 ms under load), so first-party plugins skip it.
fn off_the_reactor<T>(call: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(call),
        _ => call(),
    }
}

/// The admission gate of a pool of `slots` component instances: tenants'
/// calls may hold 5/8 of it (a quarter is left to first-party plugins,
/// which run outside the gate, and an eighth to idle warm instances), one
/// tenant at most `tenant_pool_share_percent` of that.
fn tenant_gate(config: &RuntimeConfig, slots: u32, flavor: Flavor) -> gate::Gate {
    let pool = engine::pool_sizes(slots, flavor);
    let part = |n: u32| u64::from(n) * 5 / 8;
    let total = gate::Units::budget(
        part(pool.instances),
        part(pool.core_instances),
        part(pool.memories),
        part(pool.tables),
        // Two pools (small and large components) share the memory total.
        config.plugin_memory_total_mib / 2,
    );
    let share = config.tenant_pool_share_percent.clamp(1, 100);
    gate::Gate::new(
        total,
        total.share(share),
        config.max_concurrent_calls_per_tenant,
    )
}

/// What idle warm instances of a pool of `slots` may hold: an eighth of
/// the pool and of its half of the plugin memory total.
fn idle_budget(config: &RuntimeConfig, slots: u32, flavor: Flavor) -> gate::IdleBudget {
    let pool = engine::pool_sizes(slots, flavor);
    let part = |n: u32| u64::from(n) / 8;
    gate::IdleBudget::new(gate::Units::budget(
        part(pool.instances),
        part(pool.core_instances),
        part(pool.memories),
        part(pool.tables),
        config.plugin_memory_total_mib / 16,
    ))
}

/// Everything checked once a component is compiled: its world, its
/// shape against the pool's per-component limits, its imports.
pub(crate) fn check_compiled(
    engine: &Engine,
    linker: &Linker<CallState>,
    component: &Component,
    core_instances: u32,
    grants: &[wasi::WasiGrant],
) -> Result<(Point, WorldPre, shape::Shape), PluginsError> {
    let Some(res) = component.resources_required() else {
        return Err(PluginsError::Invalid(
            "the component instantiates core modules it imports; a plugin must contain its modules"
                .into(),
        ));
    };
    let shape = shape::Shape {
        core_instances,
        memories: res.num_memories,
        tables: res.num_tables,
    };
    shape
        .check()
        .map_err(|why| PluginsError::Invalid(format!("the component is too big to run: {why}")))?;
    let (point, version) = runtime::detect_point(engine, component)
        .map_err(|why| PluginsError::Invalid(format!("not an Engage plugin: {why}")))?;
    let pre = link(engine, linker, component, point, version, grants)?;
    Ok((point, pre, shape))
}

fn link(
    engine: &Engine,
    linker: &Linker<CallState>,
    component: &Component,
    point: Point,
    version: WitVersion,
    grants: &[wasi::WasiGrant],
) -> Result<WorldPre, PluginsError> {
    let ty = component.component_type();
    let v = version.as_str();
    for (name, _) in ty.imports(engine) {
        let ours =
            name == format!("engage:plugin/host@{v}") || name == format!("engage:plugin/types@{v}");
        if ours || name.starts_with("wasi:") {
            continue;
        }
        if name.starts_with("engage:plugin/") {
            return Err(PluginsError::Invalid(format!(
                "the component imports `{name}`, but its exports are engage:plugin@{v} and this host provides only {v}'s host interface to them; build it against one version"
            )));
        }
        return Err(PluginsError::Invalid(format!(
            "the component imports `{name}`, which Engage does not provide"
        )));
    }
    let mut linker = linker.clone();
    wasi::define(&mut linker, engine, component, grants)
        .map_err(|e| PluginsError::Invalid(format!("linking granted WASI: {e:#}")))?;
    // Every other WASI function the guest imports traps if called.
    linker
        .define_unknown_imports_as_traps(component)
        .map_err(|e| PluginsError::Invalid(format!("linking: {e:#}")))?;
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| PluginsError::Invalid(format!("linking: {e:#}")))?;
    WorldPre::new(point, version, pre).map_err(|e| {
        PluginsError::Invalid(format!(
            "the component's {} exports do not match engage:plugin@{v}: {e:#}",
            point.world()
        ))
    })
}

/// The per-call limits that are the same for every binding (the others,
/// fuel, memory and deadline, are the binding's [`Limits`]).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CallCaps {
    pub max_output_bytes: usize,
    pub max_log_lines: usize,
    pub max_log_bytes: usize,
    pub max_reads: usize,
    pub max_writes: usize,
}

/// The per-call limits every binding gets.
pub fn call_caps() -> CallCaps {
    CallCaps {
        max_output_bytes: runtime::MAX_OUTPUT_BYTES,
        max_log_lines: sandbox::MAX_LOG_LINES,
        max_log_bytes: sandbox::MAX_LOG_BYTES,
        max_reads: kv::MAX_READS,
        max_writes: kv::MAX_WRITES,
    }
}

/// The component's core instances, once its shape (read before
/// compiling) fits the pool's per-component limits.
pub(crate) fn measured_core_instances(bytes: &[u8]) -> Result<u32, PluginsError> {
    let measured = shape::measure(bytes).map_err(PluginsError::Invalid)?;
    measured
        .check()
        .map_err(|why| PluginsError::Invalid(format!("the component is too big to run: {why}")))?;
    Ok(measured.core_instances)
}

/// What an upload's bytes must be before anything compiles them: a
/// component (not a core module), within the size limit.
pub fn check_bytes(config: &RuntimeConfig, bytes: &[u8]) -> Result<(), PluginsError> {
    if bytes.is_empty() {
        return Err(PluginsError::Empty);
    }
    if bytes.len() > config.max_component_bytes {
        return Err(PluginsError::TooLarge {
            size: bytes.len(),
            limit: config.max_component_bytes,
        });
    }
    if bytes.starts_with(&MODULE_PREAMBLE) {
        return Err(PluginsError::Invalid(
            "this is a core WebAssembly module, not a component: build for wasm32-wasip2 (or wrap it with `wasm-tools component new`)".into(),
        ));
    }
    if !bytes.starts_with(&COMPONENT_PREAMBLE) {
        return Err(PluginsError::Invalid(
            "this is not a WebAssembly component (it lacks the component preamble)".into(),
        ));
    }
    Ok(())
}

/// A binding's limits: what it asks for, each defaulting to the server's
/// (the deadline by the component's flavor), checked against the server's
/// maximums.
pub fn binding_limits(
    c: &RuntimeConfig,
    req: LimitsRequest,
    flavor: engine::Flavor,
) -> Result<Limits, PluginsError> {
    let default_timeout_ms = match flavor {
        engine::Flavor::Small => c.default_timeout_ms,
        engine::Flavor::Large => c.default_large_timeout_ms,
    };
    let limits = Limits {
        timeout_ms: req.timeout_ms.unwrap_or(default_timeout_ms),
        fuel: req.fuel.unwrap_or(c.default_fuel),
        memory_bytes: req.memory_mib.unwrap_or(c.default_memory_mib) << 20,
    };
    if limits.timeout_ms == 0 || limits.timeout_ms > c.max_timeout_ms {
        return Err(PluginsError::BadLimits(format!(
            "timeout_ms must be 1..={}",
            c.max_timeout_ms
        )));
    }
    if limits.fuel == 0 || limits.fuel > c.max_fuel {
        return Err(PluginsError::BadLimits(format!(
            "fuel must be 1..={}",
            c.max_fuel
        )));
    }
    if limits.memory_bytes == 0 || limits.memory_bytes > c.max_memory_mib << 20 {
        return Err(PluginsError::BadLimits(format!(
            "memory_mib must be 1..={}",
            c.max_memory_mib
        )));
    }
    Ok(limits)
}

/// A linker with the host interface; WASI is added per component, as traps.
pub(crate) fn base_linker(engine: &Engine) -> anyhow::Result<Linker<CallState>> {
    type Own = wasmtime::component::HasSelf<CallState>;
    let mut linker = Linker::new(engine);
    let e = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
    // Every version's host interface, so components of each keep linking.
    bindings::v0_1_0::types::add_to_linker::<CallState, Own>(&mut linker, |s| s).map_err(e)?;
    bindings::v0_1_0::host::add_to_linker::<CallState, Own>(&mut linker, |s| s).map_err(e)?;
    bindings::v0_2_0::types::add_to_linker::<CallState, Own>(&mut linker, |s| s).map_err(e)?;
    bindings::v0_2_0::host::add_to_linker::<CallState, Own>(&mut linker, |s| s).map_err(e)?;
    Ok(linker)
}

/// The prepared-component cache key: the content hash, and the WASI grants
/// it was linked with.
fn prepared_key(sha256: &str, grants: &[wasi::WasiGrant]) -> String {
    match wasi::grants_key(grants) {
        g if g.is_empty() => sha256.to_owned(),
        g => format!("{sha256}+{g}"),
    }
}

fn version_key(tenant: &str, name: &str, version: u32) -> String {
    key(&[tenant, name, &format!("{version:08}")])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_force(plugins: &Plugins, tenant: &str, point: Point) -> Option<(Binding, u64)> {
        let map = plugins.active.read().ok()?;
        let a = map.get(&(tenant.to_owned(), point))?;
        Some((a.binding.clone(), a.logged))
    }

    /// A binding read at an older position of the binding log never
    /// replaces the one in force: a refresh whose snapshot was taken before
    /// a bind on this host committed (the race a shared store opens), or
    /// two binds finishing out of order, cannot bring an old binding back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_older_binding_never_replaces_a_newer_one() {
        let path = std::env::temp_dir().join(format!(
            "engage-bindings-{}",
            engage_store::ids::random_hex(6)
        ));
        let dir = engage_store::files::open_data_dir(&path).expect("dir");
        let store = Store::open(&dir).expect("store");
        let plugins =
            Arc::new(Plugins::open(&dir, &path, store, RuntimeConfig::default()).expect("open"));
        plugins.provision("t").await.expect("provision");
        let (first, first_logged) = in_force(&plugins, "t", Point::Rules).expect("bound");
        let b = builtin::for_point(Point::Rules);
        let rebind = || BindRequest {
            plugin: b.name.to_owned(),
            version: None,
            config: Some(serde_json::json!({ "rules": [] })),
            on_error: OnError::Fail,
            isolation: Isolation::Fresh,
            limits: None,
            wasi: Vec::new(),
        };
        let newer = plugins
            .bind("t", Point::Rules, rebind())
            .await
            .expect("bind");
        let (now, logged) = in_force(&plugins, "t", Point::Rules).expect("bound");
        assert_eq!(now, newer);
        assert!(logged > first_logged, "{logged} after {first_logged}");

        // What a stale snapshot would activate: refused.
        let arms = || {
            plugins
                .prepare_arms(&plugins.store.read().expect("read"), "t", &first)
                .expect("prepared")
        };
        plugins.activate("t", first.clone(), arms(), first_logged);
        assert_eq!(
            in_force(&plugins, "t", Point::Rules).map(|a| a.0),
            Some(newer)
        );

        // Read at the same position or later: in force.
        plugins.activate("t", first.clone(), arms(), logged);
        assert_eq!(
            in_force(&plugins, "t", Point::Rules).map(|a| a.0),
            Some(first)
        );

        // A refresh after a local bind applies nothing older either.
        let newest = plugins
            .bind("t", Point::Rules, rebind())
            .await
            .expect("bind");
        plugins.refresh_bindings().expect("refresh");
        assert_eq!(
            in_force(&plugins, "t", Point::Rules).map(|a| a.0),
            Some(newest)
        );
        drop(plugins);
        let _ = std::fs::remove_dir_all(&path);
    }
}
