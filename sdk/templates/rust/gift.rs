//! {{name}}: a gift-hooks plugin. A player may make at most
//! `requests_per_day` (default 5) gift requests per UTC day, counted in
//! the plugin's key-value store; replies are not limited.
//!
//! Config: `{"requests_per_day": 5}`; a field it does not know is refused
//! when the plugin is bound.

use engage_plugin_sdk::gift::{GiftReply, GiftRequest, Rejection, Verdict};
use engage_plugin_sdk::{PluginError, host};
use serde::Deserialize;

const DAY_MS: i64 = 86_400_000;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    requests_per_day: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            requests_per_day: 5,
        }
    }
}

struct Plugin;

impl engage_plugin_sdk::gift::Guest for Plugin {
    fn pre_request(request: GiftRequest) -> Result<Verdict, PluginError> {
        let config: Config = host::config()?;
        let now = host::now_ms();
        let day = now.div_euclid(DAY_MS);
        let key = format!("requests/{}/{day}", request.sender);
        let used = host::kv_get(&key)
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(i64::from_le_bytes)
            .unwrap_or(0);
        if used >= config.requests_per_day {
            return Ok(Verdict::Reject(Rejection {
                code: -30004,
                code_str: "E_GIFT_QUOTA_EXCEEDED".into(),
                message: format!("{} gift requests a day at most", config.requests_per_day),
            }));
        }
        host::kv_increment(&key, 1, Some(((day + 1) * DAY_MS - now) as u64));
        Ok(Verdict::Allow)
    }

    fn post_request(_request: GiftRequest) -> Result<(), PluginError> {
        Ok(())
    }

    fn pre_reply(_reply: GiftReply) -> Result<Verdict, PluginError> {
        Ok(Verdict::Allow)
    }

    fn post_reply(_reply: GiftReply) -> Result<(), PluginError> {
        Ok(())
    }
}

engage_plugin_sdk::export_gift_hooks!(Plugin, config = Config);
