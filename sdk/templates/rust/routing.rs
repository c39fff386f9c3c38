//! {{name}}: a routing plugin. Every message goes to `provider` (default
//! `console`) on the channel it asked for; with `sms_fallback`, a Viber
//! message is tried by SMS on the same provider if Viber fails.
//!
//! Config: `{"provider": "console", "sms_fallback": false}`; a field it
//! does not know is refused when the plugin is bound.

use engage_plugin_sdk::routing::{Attempt, Outgoing};
use engage_plugin_sdk::{PluginError, host};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    provider: String,
    sms_fallback: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            provider: "console".into(),
            sms_fallback: false,
        }
    }
}

struct Plugin;

impl engage_plugin_sdk::routing::Guest for Plugin {
    fn route(message: Outgoing) -> Result<Vec<Attempt>, PluginError> {
        let config: Config = host::config()?;
        let mut attempts = vec![Attempt {
            channel: message.channel.clone(),
            provider: config.provider.clone(),
            sender: None,
            body: None,
        }];
        if config.sms_fallback && message.channel == "viber" {
            attempts.push(Attempt {
                channel: "sms".into(),
                provider: config.provider,
                sender: None,
                body: None,
            });
        }
        Ok(attempts)
    }
}

engage_plugin_sdk::export_routing!(Plugin, config = Config);
