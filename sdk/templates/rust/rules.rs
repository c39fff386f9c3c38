//! {{name}}: a rules plugin. An action called `action` (default `buy`)
//! earns `points` (default 10), at most `daily_cap` (default 3) times per
//! player per UTC day, counted in the plugin's key-value store.
//!
//! Config: `{"action": "buy", "points": 10, "daily_cap": 3}`; a field it
//! does not know is refused when the plugin is bound.

use engage_plugin_sdk::rules::{Action, Grant, Outcome, TraceEntry};
use engage_plugin_sdk::{PluginError, host};
use serde::Deserialize;

const DAY_MS: i64 = 86_400_000;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    action: String,
    points: i64,
    daily_cap: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            action: "buy".into(),
            points: 10,
            daily_cap: 3,
        }
    }
}

struct Plugin;

impl engage_plugin_sdk::rules::Guest for Plugin {
    fn evaluate(action: Action) -> Result<Outcome, PluginError> {
        let config: Config = host::config()?;
        let mut outcome = Outcome::default();
        let trace = |matched: bool, reason: String| TraceEntry {
            rule: "points".into(),
            matched,
            reason,
        };
        if action.name != config.action {
            outcome.trace.push(trace(
                false,
                format!("`{}` is not `{}`", action.name, config.action),
            ));
            return Ok(outcome);
        }
        let day = action.time_ms.div_euclid(DAY_MS);
        let key = format!("awards/{}/{day}", action.player);
        let used = host::kv_get(&key)
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(i64::from_le_bytes)
            .unwrap_or(0);
        if used >= config.daily_cap {
            outcome.trace.push(trace(
                false,
                format!("capped: {used} of {} today", config.daily_cap),
            ));
            return Ok(outcome);
        }
        let until_midnight = ((day + 1) * DAY_MS - action.time_ms) as u64;
        let n = host::kv_increment(&key, 1, Some(until_midnight));
        host::info(&format!("{} earns {} points", action.player, config.points));
        outcome.grants.push(Grant {
            currency: "points".into(),
            amount: config.points,
            reason: "points".into(),
        });
        outcome.trace.push(trace(
            true,
            format!("{} points ({n} of {} today)", config.points, config.daily_cap),
        ));
        Ok(outcome)
    }
}

engage_plugin_sdk::export_rules!(Plugin, config = Config);
