//! The one wasmtime `Engine`, its epoch ticker, and the compiled-component
//! cache on disk.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::shape;
use crate::config::RuntimeConfig;

/// How often the epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Components above this size (Python, JavaScript: an interpreter and its
/// heap snapshot) run on the [`Flavor::Large`] engine.
pub const LARGE_COMPONENT_BYTES: usize = 1 << 20;

/// How an engine initialises linear memory; each suits one size of guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Small guests (Rust, a few hundred KiB): a pool of many slots, each
    /// keeping up to 1 MiB of written memory resident.
    Small,
    /// Large guests (an interpreter and its heap snapshot, tens of MiB):
    /// fewer slots, each with room for ~40 core instances and keeping up
    /// to 32 MiB of written memory resident.
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

    /// Bytes of linear memory a pool slot keeps resident between instances.
    /// A Rust guest writes well under 1 MiB per call; an interpreter's heap
    /// writes are scattered over its image (reference counts).
    fn keep_resident(self) -> usize {
        match self {
            Flavor::Small => 1 << 20,
            Flavor::Large => 32 << 20,
        }
    }

    fn table_keep_resident(self) -> usize {
        match self {
            Flavor::Small => 64 << 10,
            Flavor::Large => 1 << 20,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Flavor::Small => "small",
            Flavor::Large => "large",
        }
    }
}

/// How many of each thing a pool of `slots` component instances holds.
pub struct PoolSizes {
    pub instances: u32,
    pub core_instances: u32,
    pub memories: u32,
    pub tables: u32,
}

/// Small guests (Rust) take few core instances each; large ones (Python:
/// ~40 core instances, JavaScript: 3 memories) many, so their pool has room
/// for that many per slot.
pub fn pool_sizes(slots: u32, flavor: Flavor) -> PoolSizes {
    let (core, memories, tables) = match flavor {
        Flavor::Small => (4, 2, 8),
        Flavor::Large => (48, 4, 32),
    };
    PoolSizes {
        instances: slots,
        core_instances: slots.saturating_mul(core),
        memories: slots.saturating_mul(memories),
        tables: slots.saturating_mul(tables),
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
    let sizes = pool_sizes(slots, flavor);
    pool.total_component_instances(sizes.instances)
        .total_core_instances(sizes.core_instances)
        .max_core_instances_per_component(shape::MAX_CORE_INSTANCES)
        .total_memories(sizes.memories)
        .max_memories_per_component(shape::MAX_MEMORIES)
        .total_tables(sizes.tables)
        .max_tables_per_component(shape::MAX_TABLES)
        .max_memory_size(config.max_memory_mib << 20)
        .decommit_batch_size(32);
    // Memory is a copy-on-write mapping of the component's image, reset
    // between instances with Linux's PAGEMAP_SCAN (kernel 6.7+; elsewhere
    // wasmtime falls back to memset and madvise): only the pages the last
    // instance wrote are copied back from the image, and they stay resident,
    // so a reused slot neither page-faults nor unmaps pages (which costs a
    // TLB shootdown on every other core running a plugin). That made a fresh
    // JavaScript call 2-3x cheaper and let two threads scale (see
    // docs/benchmarks.md, issue 18). `keep_resident` bounds how many
    // written bytes a slot keeps; what a guest dirties beyond it is unmapped.
    pool.linear_memory_keep_resident(flavor.keep_resident())
        .table_keep_resident(flavor.table_keep_resident())
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut c = Config::new();
    c.wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(true)
        .max_wasm_stack(512 << 10)
        .memory_init_cow(true)
        .parallel_compilation(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&c).map_err(|e| anyhow::anyhow!("creating the WebAssembly engine: {e}"))
}

/// Advance the engines' epochs so that the epoch counts the milliseconds
/// since the ticker started, until `stop` is set.
///
/// The count follows the wall clock, not the number of wake-ups: when many
/// plugin threads keep both cores busy the ticker wakes late, and a ticker
/// that added one tick per wake-up let a 6 s deadline last 7–22 s. Each
/// wake-up now adds every tick that is due, so a deadline holds to within
/// one late wake-up. The thread also asks for a higher scheduling priority
/// (it succeeds where the process may raise priorities).
/// The epoch ticker's controls: a stop flag, and when it last ticked (a
/// ticker that stopped means no plugin deadline fires: not ready).
pub struct Ticker {
    stop: AtomicBool,
    started: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl Default for Ticker {
    fn default() -> Self {
        Ticker {
            stop: AtomicBool::new(false),
            started: std::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Ticker {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// How long ago the ticker last advanced the engines' epochs.
    pub fn since_last_tick(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

pub fn start_ticker(engines: Vec<Engine>, ticker: Arc<Ticker>) {
    let spawned = std::thread::Builder::new()
        .name("engage-epoch".into())
        .spawn(move || {
            raise_priority();
            let tick = EPOCH_TICK.as_micros().max(1);
            let mut ticks: u128 = 0;
            while !ticker.stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                let now = ticker.started.elapsed();
                let due = now.as_micros() / tick;
                while ticks < due {
                    engines.iter().for_each(Engine::increment_epoch);
                    ticks += 1;
                }
                ticker
                    .last_ms
                    .store(now.as_millis() as u64, Ordering::Relaxed);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the epoch ticker: plugin deadlines will not fire");
    }
}

#[cfg(target_os = "linux")]
fn raise_priority() {
    // SAFETY: gettid and setpriority take no pointers; a failure (no
    // permission to raise priority) leaves the thread as it was.
    #[allow(unsafe_code)]
    let r = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, -10)
    };
    if r != 0 {
        tracing::debug!("the epoch ticker runs at normal priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn raise_priority() {}

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
        match self.deserialize(&name) {
            Ok(c) => Ok((c, true)),
            Err(e) => {
                // Refused by the engine (e.g. over the pool's limits): keep nothing.
                self.remove(sha256);
                Err(e)
            }
        }
    }

    /// Remove the compiled file of `sha256` (a component that was refused
    /// after compiling must leave nothing behind).
    pub fn remove(&self, sha256: &str) {
        let name = self.file_name(sha256);
        if let Err(e) = self.dir.remove_file(&name)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = name, error = %e, "could not remove a refused component's compiled file");
        }
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
