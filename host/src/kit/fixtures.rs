//! `engage plugin test`: every fixture of a project, run on its component
//! as production would run it, compared with what the fixture expects.
//!
//! A fixture is a JSON file in the project's `fixtures/` folder:
//!
//! ```json
//! {
//!   "name": "a purchase earns points",
//!   "input": { "player": "p1", "name": "buy", "params": [], "url": null, "time_ms": 1700000000000 },
//!   "config": { "points": 5 },
//!   "kv": { "seen/p1": "yes" },
//!   "views": { "balances": { "p1": { "points": 100 } } },
//!   "expect": { "output": { "outcome": { … } }, "kv_writes": { … } }
//! }
//! ```
//!
//! `input` is a call (`{"call": …}`) or, for rules, an action. `expect`
//! holds any of `output` (the whole answer), `error` (the fields given
//! must match, e.g. `{"kind": "guest_error", "code": "bad-parameter"}`),
//! `kv_writes` (the whole set of writes), `config_check` (`"ok"` or
//! `"refused"`). The limits are the server's defaults unless the fixture
//! gives `limits` (`fuel`, `timeout_ms`, `memory_mib`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{diff, fixture, input_from, input_time, load, report};
use crate::plugins::LimitsRequest;
use crate::plugins::config::RuntimeConfig;
use crate::plugins::local::{Local, LocalCall};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: Option<String>,
    input: Value,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    kv: Option<Value>,
    #[serde(default)]
    views: Option<Value>,
    #[serde(default)]
    now_ms: Option<i64>,
    #[serde(default)]
    limits: Option<Limits>,
    expect: Expect,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Limits {
    fuel: Option<u64>,
    timeout_ms: Option<u64>,
    memory_mib: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    output: Option<Value>,
    error: Option<Value>,
    kv_writes: Option<Value>,
    config_check: Option<String>,
}

/// One fixture's verdict.
pub struct Verdict {
    pub file: PathBuf,
    pub name: String,
    /// Empty when it passed; otherwise what differs, as a diff or a sentence.
    pub failures: Vec<String>,
    pub report: Value,
}

/// The fixtures in `dir`, sorted by file name.
pub fn find(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// Run every fixture in `fixtures` on `component`.
pub fn run_all(component: &Path, fixtures: &[PathBuf]) -> anyhow::Result<Vec<Verdict>> {
    let local = Local::new(RuntimeConfig::default())?;
    let plugin = load(&local, component)?;
    let mut verdicts = Vec::new();
    for file in fixtures {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let case: Case = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a fixture (see `engage plugin test --help`)",
                file.display()
            )
        })?;
        let input = input_from(case.input, plugin.point)
            .with_context(|| format!("{}: input", file.display()))?;
        let l = case.limits.unwrap_or_default();
        let call = LocalCall {
            tenant: "local".into(),
            plugin: "local".into(),
            config: case.config.unwrap_or_else(|| json!({})).to_string(),
            now_ms: case.now_ms.or_else(|| input_time(&input)).unwrap_or(0),
            request_id: "fixture".into(),
            fixture: fixture(case.kv.as_ref(), case.views.as_ref())
                .with_context(|| format!("{}", file.display()))?,
            limits: local.limits(
                &plugin,
                LimitsRequest {
                    fuel: l.fuel,
                    timeout_ms: l.timeout_ms,
                    memory_mib: l.memory_mib,
                },
            )?,
        };
        let ran = report::run(&local, &plugin, &call, &input);
        let r = &ran.report;
        let mut failures = Vec::new();
        let e = &case.expect;
        if let Some(want) = &e.config_check
            && r["config_check"]["result"] != json!(want)
        {
            failures.push(format!(
                "config check: expected {want}, got {}",
                r["config_check"]
            ));
        }
        if let Some(want) = &e.output {
            if let Some(d) = diff::json_diff(want, &r["output"]) {
                failures.push(format!("output (-expected +actual):\n{d}"));
            }
        } else if e.error.is_none()
            && e.config_check.as_deref() != Some("refused")
            && !r["error"].is_null()
        {
            failures.push(format!("the plugin failed: {}", r["error"]));
        }
        if let Some(want) = &e.error {
            let got = &r["error"];
            let fields = want.as_object().cloned().unwrap_or_default();
            if got.is_null() || fields.iter().any(|(k, v)| got[k] != *v) {
                failures.push(format!("error: expected {want}, got {got}"));
            }
        }
        if let Some(want) = &e.kv_writes
            && let Some(d) = diff::json_diff(want, &r["kv_writes"])
        {
            failures.push(format!("kv writes (-expected +actual):\n{d}"));
        }
        verdicts.push(Verdict {
            name: case.name.unwrap_or_else(|| {
                file.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            }),
            file: file.clone(),
            failures,
            report: ran.report,
        });
    }
    Ok(verdicts)
}
