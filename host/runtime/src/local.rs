//! Running a component outside the server exactly as the server runs it:
//! the same engine configuration (pooling allocator, fuel, epoch deadline,
//! the memory cap over all of a call's memories), the same compile-time
//! checks (world, WIT version, imports, shape), the same host interface and
//! output checks, on data given by a [`Fixture`] instead of the store.
//!
//! `engage plugin run`, `test` and `replay` use it, so what a plugin does
//! on an author's machine — and which limit it hits, with which error
//! kind — is what it does in production.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::config::RuntimeConfig;
use crate::engine::{self, Flavor};
use crate::fixture::Fixture;
use crate::runtime::{self, Context, Input, Limits, Prepared, Report};
use crate::sandbox::{CallState, Data};
use crate::{
    LimitsRequest, PluginsError, Point, WitVersion, base_linker, binding_limits, check_bytes,
    check_compiled, measured_core_instances,
};

/// An engine pair and linkers, as the server builds them, for local runs.
pub struct Local {
    engines: [Engine; 2],
    linkers: [Linker<CallState>; 2],
    config: RuntimeConfig,
    ticker: Arc<engine::Ticker>,
}

/// A component compiled and checked for local runs.
pub struct LocalPlugin {
    prepared: Prepared,
    pub point: Point,
    pub wit: WitVersion,
    /// The component's size in bytes.
    pub size: usize,
}

impl Drop for Local {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

impl Local {
    /// Engines with the server's limits from `config` (its pool sizes are
    /// cut to a few slots: one call runs at a time here, and the per-call
    /// limits do not depend on the pool's size).
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Local> {
        let pool = RuntimeConfig {
            max_concurrent_instances: 4,
            max_concurrent_large_instances: 2,
            ..config.clone()
        };
        let engines = [
            engine::build(&pool, Flavor::Small)?,
            engine::build(&pool, Flavor::Large)?,
        ];
        let ticker = Arc::new(engine::Ticker::default());
        engine::start_ticker(engines.to_vec(), ticker.clone());
        let linkers = [base_linker(&engines[0])?, base_linker(&engines[1])?];
        Ok(Local {
            engines,
            linkers,
            config,
            ticker,
        })
    }

    /// The server's limits for a call of `plugin`, with the given
    /// overrides, checked as a binding's are.
    pub fn limits(&self, plugin: &LocalPlugin, req: LimitsRequest) -> Result<Limits, PluginsError> {
        binding_limits(&self.config, req, Flavor::for_size(plugin.size))
    }

    /// The largest component an upload may carry.
    pub fn max_component_bytes(&self) -> usize {
        self.config.max_component_bytes
    }

    /// Compile and check `bytes` as an upload is checked (no WASI granted).
    pub fn load(&self, bytes: &[u8]) -> Result<LocalPlugin, PluginsError> {
        check_bytes(&self.config, bytes)?;
        let flavor = Flavor::for_size(bytes.len()) as usize;
        let engine = &self.engines[flavor];
        let core_instances = measured_core_instances(bytes)?;
        let component = Component::new(engine, bytes)
            .map_err(|e| PluginsError::Invalid(format!("the component does not compile: {e}")))?;
        let (point, pre, shape) = check_compiled(
            engine,
            &self.linkers[flavor],
            &component,
            core_instances,
            &[],
        )?;
        let wit = pre.version();
        Ok(LocalPlugin {
            prepared: Prepared {
                point,
                pre,
                engine: engine.clone(),
                flavor,
                shape,
            },
            point,
            wit,
            size: bytes.len(),
        })
    }

    /// Run `input` once in a fresh instance, as a call with `config` by
    /// `tenant` at `now_ms` on `fixture`.
    pub fn call(&self, plugin: &LocalPlugin, call: &LocalCall, input: &Input) -> Report {
        if input.point() != plugin.point {
            return Report::failed(
                crate::CallError::Trap {
                    message: format!(
                        "the input is a `{}` call; the component implements the {} world",
                        input.point().as_str(),
                        plugin.point.world()
                    ),
                },
                Instant::now(),
            );
        }
        runtime::call_fresh(&plugin.prepared, &call.context(&self.config), input)
    }

    /// Run the component's config check on `call.config` (None: its WIT
    /// version has none, every config binds).
    pub fn check_config(&self, plugin: &LocalPlugin, call: &LocalCall) -> Option<Report> {
        let mut ctx = call.context(&self.config);
        ctx.data = Data::None;
        runtime::check_config(&plugin.prepared, &ctx)
    }
}

/// Who calls, with what config, when, on what data, with which limits.
pub struct LocalCall {
    pub tenant: String,
    pub plugin: String,
    pub config: String,
    pub now_ms: i64,
    pub request_id: String,
    pub fixture: Fixture,
    pub limits: Limits,
}

impl LocalCall {
    fn context(&self, config: &RuntimeConfig) -> Context {
        Context {
            tenant: self.tenant.as_str().into(),
            plugin: self.plugin.as_str().into(),
            config: self.config.as_str().into(),
            now_ms: self.now_ms,
            request_id: self.request_id.as_str().into(),
            data: Data::Fixture(Arc::new(self.fixture.clone())),
            limits: self.limits,
            kv_quota: config.kv_quota(),
        }
    }
}
