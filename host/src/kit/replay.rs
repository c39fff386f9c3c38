//! `engage plugin replay`: a call recorded in production, run again on the
//! author's build with exactly what it saw (input, config, clock, limits,
//! and every key and view it read), and compared with what production
//! answered.

use std::path::Path;

use serde_json::{Value, json};

use super::report::{self, Ran};
use super::{diff, load};
use crate::plugins::config::RuntimeConfig;
use crate::plugins::fixture::Fixture;
use crate::plugins::invocations::Invocation;
use crate::plugins::local::{Local, LocalCall, LocalPlugin};

/// The replay's report: the run's own, plus `recorded` (production's
/// answer), `same` and, when they differ, `diff`.
pub fn replay(record: &Invocation, file: &Path) -> anyhow::Result<(Ran, bool)> {
    let local = Local::new(RuntimeConfig::default())?;
    let plugin = load(&local, file)?;
    replay_on(&local, &plugin, record, &Instead::default())
}

/// What a replay changes of the recorded call: a new plugin (its own,
/// empty, key-value state) and config, for trying a replacement.
#[derive(Debug, Default)]
pub struct Instead {
    pub plugin: Option<String>,
    pub config: Option<String>,
}

/// [`replay`] on a loaded component.
pub fn replay_on(
    local: &Local,
    plugin: &LocalPlugin,
    record: &Invocation,
    instead: &Instead,
) -> anyhow::Result<(Ran, bool)> {
    if !record.replayable() {
        anyhow::bail!(
            "invocation {} was too large to keep whole (its reads were dropped); it cannot be replayed exactly",
            record.id
        );
    }
    let mut fixture = Fixture::from_reads(&record.reads);
    let name = match &instead.plugin {
        Some(other) if *other != record.plugin => {
            // Another plugin's keys are not this one's.
            fixture.kv.clear();
            other.clone()
        }
        _ => record.plugin.clone(),
    };
    let call = LocalCall {
        tenant: record.tenant.clone(),
        plugin: name,
        config: instead
            .config
            .clone()
            .unwrap_or_else(|| record.config.clone()),
        now_ms: record.now_ms,
        request_id: record.request_id.clone(),
        fixture,
        limits: record.limits,
    };
    let mut ran = report::run(local, plugin, &call, &record.input);
    let recorded = answer(&json!(record.output), &json!(record.error));
    let replayed = answer(&ran.report["output"], &ran.report["error"]);
    let changed = diff::json_diff(&recorded, &replayed);
    ran.report["recorded"] = json!({
        "id": record.id, "plugin": record.plugin, "version": record.version,
        "at_ms": record.at_ms, "request_id": record.request_id,
        "output": record.output, "error": record.error,
        "fuel_used": record.fuel_used, "elapsed_us": record.elapsed_us,
    });
    ran.report["same"] = json!(changed.is_none());
    if let Some(d) = &changed {
        ran.report["diff"] = json!(d);
    }
    Ok((ran, changed.is_none()))
}

/// What a call answered, for comparing: the output, or the error's kind
/// (and the plugin's own code and message, for its own errors).
fn answer(output: &Value, error: &Value) -> Value {
    if error.is_null() {
        return json!({ "output": output });
    }
    match error["kind"].as_str() {
        Some("guest_error") => {
            json!({ "error": { "kind": "guest_error", "code": error["code"], "message": error["message"] } })
        }
        _ => json!({ "error": { "kind": error["kind"] } }),
    }
}
