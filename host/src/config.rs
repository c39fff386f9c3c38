//! Server configuration: embedded defaults, then an optional TOML file, then
//! `ENGAGE_*` environment variables and command-line flags (clap reads both).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

pub use crate::plugins::config::RuntimeConfig;

/// Storage settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// The most writes one durable commit carries (group commit). 1 makes
    /// every write its own commit: only useful to measure the difference.
    pub max_batch: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            max_batch: crate::store::MAX_BATCH,
        }
    }
}

/// Gift settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GiftsConfig {
    /// Leave post hooks queued instead of running them (while a broken hook
    /// is being fixed); they run, in order, once this is off again.
    pub post_hooks_paused: bool,
}

/// Messaging settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessagingConfig {
    /// How long one provider request may take before it counts as a
    /// transient failure (retried, then failed over).
    pub provider_timeout_ms: u64,
    /// The base URL providers call back; by default the listen address
    /// (set it when Engage is behind a proxy).
    pub public_url: Option<String>,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        MessagingConfig {
            provider_timeout_ms: 10_000,
            public_url: None,
        }
    }
}

pub use engage_api::listener::HttpConfig;

/// The whole server's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Sets (or replaces) the admin token; when absent on first start, one
    /// is generated and written to `credentials.json` in the data directory.
    pub admin_token: Option<String>,
    /// Create the `demo` tenant on first start.
    pub demo_tenant: bool,
    pub runtime: RuntimeConfig,
    pub storage: StorageConfig,
    pub gifts: GiftsConfig,
    pub messaging: MessagingConfig,
    pub http: HttpConfig,
    /// Lockout of failed credential checks.
    pub auth: engage_api::throttle::ThrottleConfig,
    /// How long expiring records are kept before the sweeper deletes them.
    pub retention: crate::sweeper::RetentionConfig,
    /// The key (64 hex digits) that seals provider credentials at rest;
    /// also `ENGAGE_SECRET_KEY`. Without one, a key is generated into the
    /// data directory.
    pub secret_key: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: None,
            demo_tenant: true,
            runtime: RuntimeConfig::default(),
            storage: StorageConfig::default(),
            gifts: GiftsConfig::default(),
            messaging: MessagingConfig::default(),
            http: HttpConfig::default(),
            auth: engage_api::throttle::ThrottleConfig::default(),
            retention: crate::sweeper::RetentionConfig::default(),
            secret_key: None,
        }
    }
}

impl ServerConfig {
    /// Read a TOML file over the defaults.
    pub fn from_toml_file(path: &std::path::Path) -> anyhow::Result<ServerConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults_and_rejects_typos() {
        let dir = std::env::temp_dir().join(format!("engage-config-{}", crate::ids::random_hex(4)));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("engage.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:9000\"\n[runtime]\ndefault_timeout_ms = 250\n",
        )
        .expect("write");
        let c = ServerConfig::from_toml_file(&path).expect("parses");
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.runtime.default_timeout_ms, 250);
        assert_eq!(
            c.runtime.default_fuel,
            RuntimeConfig::default().default_fuel
        );
        std::fs::write(&path, "[runtime]\ndefault_timeout = 250\n").expect("write");
        let err = ServerConfig::from_toml_file(&path)
            .expect_err("typo")
            .to_string();
        assert!(err.contains("default_timeout"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
