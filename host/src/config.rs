//! Server configuration: embedded defaults, then an optional TOML file, then
//! `ENGAGE_*` environment variables and command-line flags (clap reads both).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

pub use crate::plugins::config::RuntimeConfig;

/// Which storage backend keeps the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// One redb file in the data directory: nothing to install, one host.
    #[default]
    Embedded,
    /// A PostgreSQL (or PostgreSQL-protocol) database at `url`: any number
    /// of hosts.
    Postgres,
}

impl std::str::FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "embedded" => Ok(BackendKind::Embedded),
            "postgres" => Ok(BackendKind::Postgres),
            other => Err(format!(
                "unknown storage backend {other:?}: use \"embedded\" or \"postgres\""
            )),
        }
    }
}

/// Storage settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `embedded` (the default) or `postgres`; also `ENGAGE_STORAGE_BACKEND`.
    pub backend: BackendKind,
    /// The database for `postgres`: `postgres://user:password@host:port/db`;
    /// also `ENGAGE_STORAGE_URL`.
    pub url: Option<String>,
    /// The most database connections one host opens (`postgres`).
    pub pool_size: usize,
    /// The most writes one durable commit carries (group commit). 1 makes
    /// every write its own commit: only useful to measure the difference.
    pub max_batch: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: BackendKind::Embedded,
            url: None,
            pool_size: 16,
            max_batch: crate::store::MAX_BATCH,
        }
    }
}

impl StorageConfig {
    /// Open the configured backend; `data` is the data directory (the
    /// embedded backend's file lives there).
    pub fn open(&self, data: &cap_std::fs::Dir) -> anyhow::Result<crate::store::Store> {
        use std::sync::Arc;
        Ok(match self.backend {
            BackendKind::Embedded => crate::store::Store::open_with(data, self.max_batch)?,
            BackendKind::Postgres => {
                let pg = engage_store_postgres::Postgres::open(&self.pg_config()?)?;
                crate::store::Store::on(Arc::new(pg), self.max_batch)
            }
        })
    }

    /// The PostgreSQL settings, or what is missing.
    pub fn pg_config(&self) -> anyhow::Result<engage_store_postgres::PgConfig> {
        let url = self.url.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "[storage] backend = \"postgres\" needs a url: set [storage] url or ENGAGE_STORAGE_URL to postgres://user:password@host:port/database"
            )
        })?;
        let mut pg = engage_store_postgres::PgConfig::new(url);
        pg.pool_size = self.pool_size.max(2);
        Ok(pg)
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
    /// A PEM file of certificates to trust for TLS to providers (HTTPS and
    /// SMTP), beside the Mozilla roots built in: a private CA, or a proxy
    /// that inspects TLS. Also `ENGAGE_PROVIDER_CA_FILE`.
    pub ca_file: Option<PathBuf>,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        MessagingConfig {
            provider_timeout_ms: 10_000,
            public_url: None,
            ca_file: None,
        }
    }
}

impl MessagingConfig {
    /// The certificates of `ca_file` (PEM), read and checked at start: a
    /// wrong path stops the server rather than every later send.
    pub fn extra_roots(&self) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("[messaging] ca_file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            anyhow::anyhow!(
                "[messaging] ca_file {}: not PEM certificates: {e}",
                path.display()
            )
        })?;
        anyhow::ensure!(
            !certs.is_empty(),
            "[messaging] ca_file {} holds no certificate",
            path.display()
        );
        Ok(Some(pem))
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
    /// Prometheus metrics at `/metrics`: which tenants get their own
    /// label, and whether scraping needs the admin token.
    pub metrics: engage_api::MetricsConfig,
    /// The tenant console at `/console`.
    pub console: ConsoleSection,
}

/// `[console]`: the tenant console. It holds no data and no rule of its
/// own (its pages call the API), so turning it off only removes the pages.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSection {
    /// Serve the console (on by default).
    pub enabled: bool,
}

impl Default for ConsoleSection {
    fn default() -> Self {
        ConsoleSection { enabled: true }
    }
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
            metrics: engage_api::MetricsConfig::default(),
            console: ConsoleSection::default(),
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
