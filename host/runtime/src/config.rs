//! The runtime's limits and sizes: the `[runtime]` table of the server's
//! configuration.

use serde::Deserialize;

/// Limits and sizes of the plugin runtime.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Pooling-allocator slots: the most small (e.g. Rust) plugin instances
    /// alive at once.
    pub max_concurrent_instances: u32,
    /// The same for large plugins (over 1 MiB: Python, JavaScript).
    pub max_concurrent_large_instances: u32,
    /// The largest memory a binding may allow a plugin, in MiB.
    pub max_memory_mib: usize,
    /// A binding's memory cap unless it sets one, in MiB.
    pub default_memory_mib: usize,
    /// A call's deadline unless the binding sets one.
    pub default_timeout_ms: u64,
    /// The same for large plugins (over 1 MiB: an interpreter such as
    /// Python or JavaScript). A fresh Python call takes ~1-2 ms alone and
    /// its p99.9 reaches tens of ms when both cores of a small machine are
    /// busy (docs/benchmarks.md, issue 18); 100 ms timed some out.
    pub default_large_timeout_ms: u64,
    pub max_timeout_ms: u64,
    /// A call's fuel (roughly, WebAssembly instructions) unless the binding sets it.
    pub default_fuel: u64,
    pub max_fuel: u64,
    /// The largest component an upload may carry.
    pub max_component_bytes: usize,
    /// The most plugin versions one tenant may keep, over all its plugins.
    pub max_plugin_versions_per_tenant: usize,
    /// The most component bytes one tenant may keep, over all its versions.
    pub max_plugin_bytes_per_tenant: u64,
    /// The most calls of one tenant's plugins running at once; more wait
    /// (within their deadline) for one to finish.
    pub max_concurrent_calls_per_tenant: u64,
    /// The share, in percent, of the instance pool and of the plugin memory
    /// total that one tenant's calls may hold at once.
    pub tenant_pool_share_percent: u64,
    /// The memory, in MiB, that all tenants' plugin calls may reserve at
    /// once (each call reserves its binding's memory cap).
    pub plugin_memory_total_mib: u64,
    /// The most keys all of one tenant's plugins may keep in the key-value store.
    pub kv_max_keys_per_tenant: u64,
    /// The most bytes (keys and values) they may keep there.
    pub kv_max_bytes_per_tenant: u64,
}

impl RuntimeConfig {
    /// The key-value quota every tenant gets.
    pub fn kv_quota(&self) -> crate::kv::Quota {
        crate::kv::Quota {
            max_keys: self.kv_max_keys_per_tenant,
            max_bytes: self.kv_max_bytes_per_tenant,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_concurrent_instances: 1000,
            max_concurrent_large_instances: 100,
            max_memory_mib: 256,
            default_memory_mib: 64,
            default_timeout_ms: 100,
            default_large_timeout_ms: 1_000,
            max_timeout_ms: 10_000,
            default_fuel: 200_000_000,
            max_fuel: 20_000_000_000,
            max_component_bytes: 32 << 20,
            max_plugin_versions_per_tenant: 500,
            max_plugin_bytes_per_tenant: 1 << 30,
            max_concurrent_calls_per_tenant: 16,
            tenant_pool_share_percent: 25,
            plugin_memory_total_mib: 8192,
            kv_max_keys_per_tenant: 100_000,
            kv_max_bytes_per_tenant: 64 << 20,
        }
    }
}
