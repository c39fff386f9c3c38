//! The one wasmtime `Engine`, its epoch ticker, and the compiled-component
//! cache on disk.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::RuntimeConfig;

/// How often the epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Components above this size (Python, JavaScript: an interpreter and its
/// heap snapshot) run on the [`Flavor::Large`] engine.
pub const LARGE_COMPONENT_BYTES: usize = 1 << 20;

/// How an engine initialises linear memory; each suits one size of guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Small guests (Rust, a few hundred KiB): data segments are copied
    /// into a slot whose first MiB stays resident and is zeroed on reuse.
    /// No page faults, no TLB shootdowns: ~15 µs per fresh call where
    /// copy-on-write images cost ~100 µs.
    Small,
    /// Large guests (tens of MiB of heap image): memory is a copy-on-write
    /// mapping of the image, so a fresh instance does not copy it.
    Large,
}

impl Flavor {
    /// The flavor for a component of `size` bytes.
    pub fn for_size(size: usize) -> Flavor {
        if size > LARGE_COMPONENT_BYTES {
            Flavor::Large
        } else {
            Flavor::Small
        }
    }

    fn name(self) -> &'static str {
        match self {
            Flavor::Small => "small",
            Flavor::Large => "large",
        }
    }
}

/// Build an engine: component model, pooling allocator sized from
/// `config`, epoch interruption and fuel metering.
pub fn build(config: &RuntimeConfig, flavor: Flavor) -> anyhow::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    let slots = match flavor {
        Flavor::Small => config.max_concurrent_instances,
        Flavor::Large => config.max_concurrent_large_instances,
    };
    pool.total_component_instances(slots)
        .total_core_instances(slots * 4)
        .max_core_instances_per_component(64)
        .total_memories(slots * 2)
        .max_memories_per_component(8)
        .total_tables(slots * 8)
        .max_tables_per_component(32)
        .max_memory_size(config.max_memory_mib << 20)
        .decommit_batch_size(32);
    if flavor == Flavor::Small {
        // Keep the first MiB of each slot resident between instances (it is
        // zeroed with memset instead of being unmapped): a small guest then
        // never page-faults, which was most of a fresh call's cost (see
        // docs/benchmarks.md).
        pool.linear_memory_keep_resident(1 << 20)
            .table_keep_resident(64 << 10);
    }
    let mut c = Config::new();
    c.wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(true)
        .max_wasm_stack(512 << 10)
        .memory_init_cow(flavor == Flavor::Large)
        .parallel_compilation(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&c).map_err(|e| anyhow::anyhow!("creating the WebAssembly engine: {e}"))
}

/// Advance the engines' epochs every [`EPOCH_TICK`] until `stop` is set.
pub fn start_ticker(engines: Vec<Engine>, stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("engage-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engines.iter().for_each(Engine::increment_epoch);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the epoch ticker: plugin deadlines will not fire");
    }
}

/// Compiled components on disk, keyed by content hash and by the engine's
/// compatibility hash, so a restart loads them (by mmap) instead of
/// compiling, and an upgraded engine never loads an incompatible artifact.
pub struct Cache {
    engine: Engine,
    flavor: Flavor,
    dir: cap_std::fs::Dir,
    path: PathBuf,
    engine_hash: String,
}

impl Cache {
    pub fn new(engine: Engine, flavor: Flavor, dir: cap_std::fs::Dir, path: PathBuf) -> Cache {
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_hash = format!("{:016x}", h.finish());
        Cache {
            engine,
            flavor,
            dir,
            path,
            engine_hash,
        }
    }

    fn file_name(&self, sha256: &str) -> String {
        format!("{sha256}-{}-{}.cwasm", self.flavor.name(), self.engine_hash)
    }

    /// The compiled component for `bytes` (whose hash is `sha256`): from the
    /// cache when present, else compiled now and written to the cache.
    /// Returns whether it was compiled.
    pub fn load_or_compile(&self, sha256: &str, bytes: &[u8]) -> anyhow::Result<(Component, bool)> {
        let name = self.file_name(sha256);
        if self.dir.exists(&name) {
            match self.deserialize(&name) {
                Ok(c) => return Ok((c, false)),
                Err(e) => {
                    tracing::warn!(file = name, error = %e, "ignoring an unreadable compiled component; recompiling")
                }
            }
        }
        let compiled = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let tmp = format!("{name}.tmp");
        self.dir.write(&tmp, &compiled)?;
        self.dir.rename(&tmp, &self.dir, &name)?;
        Ok((self.deserialize(&name)?, true))
    }

    fn deserialize(&self, name: &str) -> anyhow::Result<Component> {
        // `name` is built from a hex hash inside our own cache directory.
        let path = self.path.join(name);
        // SAFETY: the file was written by `precompile_component` of an engine
        // with the same compatibility hash (it is in the name) into the data
        // directory, which only this process writes; wasmtime still checks
        // the header and refuses an incompatible artifact.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize_file(&self.engine, &path) };
        component.map_err(|e| anyhow::anyhow!("{e:#}"))
    }
}
