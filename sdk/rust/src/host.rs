//! The host interface, with helpers for the common cases.
//!
//! Everything here goes through the `engage:plugin/host` import; a plugin has
//! no other way out of its sandbox.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::PluginError;

#[doc(hidden)]
pub mod raw {
    pub use crate::rules::bindings::engage::plugin::host::*;
}

pub use raw::{
    Level, action_count, balance, config as config_json, kv_delete, kv_get, kv_increment, kv_set,
    log, now_ms, tenant,
};

/// Log at info level.
pub fn info(message: &str) {
    log(Level::Info, message, &[]);
}

/// Log at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message, &[]);
}

/// The binding's configuration, parsed into `T`. An empty configuration
/// parses as `{}`, so a `T` whose fields all have defaults always works.
pub fn config<T: DeserializeOwned>() -> Result<T, PluginError> {
    parse_config(&config_json())
}

/// Parse a binding configuration document into `T` (what [`config`] does
/// with the host's document; public so plugins can unit-test their parsing).
pub fn parse_config<T: DeserializeOwned>(json: &str) -> Result<T, PluginError> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json).map_err(|e| {
        PluginError::new(
            "bad-config",
            format!("the binding's config is invalid: {e}"),
        )
    })
}

/// Read a JSON value from the plugin's key-value store.
pub fn kv_get_json<T: DeserializeOwned>(key: &str) -> Option<T> {
    kv_get(key).and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

/// Write a JSON value to the plugin's key-value store.
pub fn kv_set_json<T: Serialize>(key: &str, value: &T, ttl_ms: Option<u64>) {
    if let Ok(bytes) = serde_json::to_vec(value) {
        kv_set(key, &bytes, ttl_ms);
    }
}
