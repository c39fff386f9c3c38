//! A tenant's own rules, in Rust: 10 points per `login`, and a bonus on the
//! seventh login within a week, at most once per week.
//!
//! Config: `{"points": 10, "streak_bonus": 50, "streak_length": 7}`.
//!
//! Build: `cargo build -p engage-example-rust-rules --target wasm32-wasip2 --release`,
//! then `PUT /v1/plugins/streaks` with the `.wasm` and `PUT /v1/bindings/rules`
//! with `{"plugin": "streaks"}`.

use engage_plugin_sdk::rules::{Action, Grant, Outcome, TraceEntry};
use engage_plugin_sdk::time::{Period, period_bounds};
use engage_plugin_sdk::{PluginError, host};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    points: i64,
    streak_bonus: i64,
    streak_length: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            points: 10,
            streak_bonus: 50,
            streak_length: 7,
        }
    }
}

struct Streaks;

impl engage_plugin_sdk::rules::Guest for Streaks {
    fn evaluate(action: Action) -> Result<Outcome, PluginError> {
        let config: Config = host::config()?;
        let mut outcome = Outcome::default();
        if action.name != "login" {
            outcome.trace.push(TraceEntry {
                rule: "login".into(),
                matched: false,
                reason: format!("`{}` is not a login", action.name),
            });
            return Ok(outcome);
        }
        outcome.grants.push(Grant {
            currency: "points".into(),
            amount: config.points,
            reason: "login".into(),
        });
        outcome.trace.push(TraceEntry {
            rule: "login".into(),
            matched: true,
            reason: format!("{} points", config.points),
        });

        let (week_start, week_end) = period_bounds(action.time_ms, 0, Period::Week);
        // This login is not in the log yet: count it.
        let logins = host::action_count(&action.player, "login", week_start) + 1;
        let paid_key = format!("streak-paid/{}/{week_start}", action.player);
        let due = logins >= config.streak_length && host::kv_get(&paid_key).is_none();
        if due {
            host::kv_set(
                &paid_key,
                b"1",
                Some((week_end - action.time_ms).max(1) as u64),
            );
            outcome.grants.push(Grant {
                currency: "points".into(),
                amount: config.streak_bonus,
                reason: "weekly streak".into(),
            });
            outcome.badges.push("weekly-streak".into());
        }
        outcome.trace.push(TraceEntry {
            rule: "weekly-streak".into(),
            matched: due,
            reason: format!("{logins} of {} logins this week", config.streak_length),
        });
        Ok(outcome)
    }
}

engage_plugin_sdk::export_rules!(Streaks, config = Config);
