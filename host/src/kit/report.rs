//! One local call and its report: input, config check, logs, output, key
//! value writes and usage against every limit production enforces, as JSON
//! (`--json`) or for a person (in colour on a terminal).

use std::io::IsTerminal;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::plugins::kv::Write;
use crate::plugins::local::{Local, LocalCall, LocalPlugin};
use crate::plugins::{CallError, Input, Report, call_caps};

/// A call's report, and whether (and how) it failed.
pub struct Ran {
    pub report: Value,
    pub outcome: Outcome,
}

/// How a local call ended, which decides the command's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The plugin answered (exit 0).
    Answered,
    /// The plugin erred: its own error, a panic, a trap, an invalid answer,
    /// or a config it refuses (exit 1).
    Failed,
    /// A limit stopped it: fuel, memory, the deadline, the output size (exit 3).
    LimitExceeded,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Answered => 0,
            Outcome::Failed => 1,
            Outcome::LimitExceeded => 3,
        }
    }
}

fn limit_kind(e: &CallError) -> bool {
    matches!(
        e,
        CallError::Timeout
            | CallError::OutOfFuel
            | CallError::MemoryLimit
            | CallError::OutputTooLarge { .. }
    )
}

/// Check the config, then run `input`, and report both.
pub fn run(local: &Local, plugin: &LocalPlugin, call: &LocalCall, input: &Input) -> Ran {
    let mut report = json!({
        "component": { "world": plugin.point.world(), "wit": plugin.wit.as_str(), "size": plugin.size },
        "input": input,
        "config": serde_json::from_str::<Value>(&call.config).unwrap_or(Value::Null),
        "now_ms": call.now_ms,
    });
    match local.check_config(plugin, call) {
        None => {
            report["config_check"] = json!({ "result": "none", "why": "engage:plugin@0.1.0 has no config check: every config binds" })
        }
        Some(checked) => match checked.result {
            Ok(_) => report["config_check"] = json!({ "result": "ok" }),
            Err(error) => {
                let outcome = if limit_kind(&error) {
                    Outcome::LimitExceeded
                } else {
                    Outcome::Failed
                };
                report["config_check"] =
                    json!({ "result": "refused", "error": error, "logs": checked.logs });
                return Ran { report, outcome };
            }
        },
    }
    let called = local.call(plugin, call, input);
    let outcome = match &called.result {
        Ok(_) => Outcome::Answered,
        Err(e) if limit_kind(e) => Outcome::LimitExceeded,
        Err(_) => Outcome::Failed,
    };
    fill(&mut report, &called, call, plugin, local);
    Ran { report, outcome }
}

fn fill(
    report: &mut Value,
    called: &Report,
    call: &LocalCall,
    plugin: &LocalPlugin,
    local: &Local,
) {
    let output_bytes = called
        .result
        .as_ref()
        .ok()
        .and_then(|o| serde_json::to_vec(o).ok())
        .map(|v| v.len());
    match &called.result {
        Ok(output) => report["output"] = json!(output),
        Err(e) => report["error"] = json!(e),
    }
    report["logs"] = json!(called.logs);
    report["logs_dropped"] = json!(called.logs_dropped);
    report["kv_writes"] = kv_writes(&called.effects.writes);
    report["reads"] = json!(called.effects.reads);
    let limits = call_caps();
    let used = |u: Value, l: Value| json!({ "used": u, "limit": l });
    report["usage"] = json!({
        "fuel": used(json!(called.fuel_used), json!(call.limits.fuel)),
        "memory_bytes": used(json!(called.memory_bytes), json!(call.limits.memory_bytes)),
        "wall_ms": used(json!((called.elapsed.as_secs_f64() * 1000.0 * 100.0).round() / 100.0), json!(call.limits.timeout_ms)),
        "output_bytes": used(json!(output_bytes), json!(limits.max_output_bytes)),
        "module_bytes": used(json!(plugin.size), json!(local.max_component_bytes())),
        "log_lines": used(json!(called.logs.len()), json!(limits.max_log_lines)),
        "log_bytes": used(json!(called.logs.iter().map(|l| l.message.len() + l.fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()).sum::<usize>()), json!(limits.max_log_bytes)),
        "kv_reads": used(json!(called.effects.reads.len()), json!(limits.max_reads)),
        "kv_writes": used(json!(called.effects.writes.len()), json!(limits.max_writes)),
    });
}

/// Buffered writes in the `--kv` file's own format (text, counter or
/// base64, with the expiry), `null` for a delete: a run's writes can seed
/// the next run.
pub fn kv_writes(writes: &std::collections::BTreeMap<String, Write>) -> Value {
    let mut out = serde_json::Map::new();
    for (k, w) in writes {
        let v = match w {
            Write::Delete => Value::Null,
            Write::Set {
                value,
                expires_at_ms,
            } => {
                let mut v = match (
                    std::str::from_utf8(value),
                    <[u8; 8]>::try_from(value.as_slice()),
                ) {
                    (_, Ok(b)) => json!({ "counter": i64::from_le_bytes(b) }),
                    (Ok(t), _) => json!({ "text": t }),
                    _ => {
                        json!({ "base64": base64::engine::general_purpose::STANDARD.encode(value) })
                    }
                };
                if let Some(e) = expires_at_ms {
                    v["expires_at_ms"] = json!(e);
                }
                v
            }
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

/// Whether to colour: a terminal, and `NO_COLOR` unset.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

struct Paint(bool);

impl Paint {
    fn c(&self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.c("1", s)
    }
    fn ok(&self, s: &str) -> String {
        self.c("32", s)
    }
    fn bad(&self, s: &str) -> String {
        self.c("31", s)
    }
    fn warn(&self, s: &str) -> String {
        self.c("33", s)
    }
    fn dim(&self, s: &str) -> String {
        self.c("2", s)
    }
}

fn bytes(n: f64) -> String {
    if n >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", n / (1u64 << 20) as f64)
    } else if n >= 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{n} B")
    }
}

fn count(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.2}G", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n}")
    }
}

/// The report for a person.
pub fn render(report: &Value, colour: bool) -> String {
    let p = Paint(colour);
    let mut out = String::new();
    let mut line = |label: &str, text: String| {
        out.push_str(&format!("{:<13} {text}\n", p.bold(label)));
    };
    let c = &report["component"];
    line(
        "component",
        format!(
            "{} world, engage:plugin@{}, {}",
            c["world"].as_str().unwrap_or("?"),
            c["wit"].as_str().unwrap_or("?"),
            bytes(c["size"].as_f64().unwrap_or(0.0))
        ),
    );
    line("config", compact(&report["config"]));
    let check = &report["config_check"];
    line(
        "config check",
        match check["result"].as_str() {
            Some("ok") => p.ok("ok"),
            Some("none") => p.dim("none (engage:plugin@0.1.0)"),
            _ => p.bad(&format!("refused: {}", error_text(&check["error"]))),
        },
    );
    line("input", compact(&report["input"]));
    if let Some(logs) = report["logs"].as_array() {
        let mut first = true;
        for l in logs {
            let fields: Vec<String> = l["fields"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .map(|kv| {
                            format!(
                                "{}={}",
                                kv[0].as_str().unwrap_or(""),
                                kv[1].as_str().unwrap_or("")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let level = l["level"].as_str().unwrap_or("info");
            let tag = match level {
                "error" => p.bad(level),
                "warn" => p.warn(level),
                _ => p.dim(level),
            };
            line(
                if first { "logs" } else { "" },
                format!(
                    "[{tag}] {} {}",
                    l["message"].as_str().unwrap_or(""),
                    p.dim(&fields.join(" "))
                ),
            );
            first = false;
        }
        if first {
            line("logs", p.dim("none"));
        }
        if let Some(n) = report["logs_dropped"].as_u64().filter(|n| *n > 0) {
            line(
                "",
                p.warn(&format!("{n} more lines dropped (limit reached)")),
            );
        }
    }
    if !report["output"].is_null() {
        let pretty = serde_json::to_string_pretty(&report["output"]).unwrap_or_default();
        let mut first = true;
        for l in pretty.lines() {
            line(if first { "output" } else { "" }, l.to_owned());
            first = false;
        }
    }
    if let Some(w) = report["kv_writes"].as_object().filter(|w| !w.is_empty()) {
        let mut first = true;
        for (k, v) in w {
            line(
                if first { "kv writes" } else { "" },
                format!("{k} = {}", compact(v)),
            );
            first = false;
        }
    }
    let usage = &report["usage"];
    let mut first = true;
    for (key, label, fmt) in [
        ("fuel", "fuel", count as fn(f64) -> String),
        ("memory_bytes", "memory", bytes),
        ("wall_ms", "wall time", |n| format!("{n} ms")),
        ("output_bytes", "output", bytes),
        ("module_bytes", "module", bytes),
        ("log_lines", "log lines", count),
        ("kv_reads", "kv reads", count),
        ("kv_writes", "kv writes", count),
    ] {
        let u = &usage[key];
        let Some(limit) = u["limit"].as_f64() else {
            continue;
        };
        let Some(used) = u["used"].as_f64() else {
            continue;
        };
        let share = if limit > 0.0 {
            used / limit * 100.0
        } else {
            0.0
        };
        let text = format!(
            "{label:<10} {:>10} / {:<10} {:>5.1}%",
            fmt(used),
            fmt(limit),
            share
        );
        let text = if share >= 100.0 {
            p.bad(&text)
        } else if share >= 80.0 {
            p.warn(&text)
        } else {
            text
        };
        line(if first { "usage" } else { "" }, text);
        first = false;
    }
    match &report["error"] {
        Value::Null if check["result"] != "refused" => line("result", p.ok("ok")),
        Value::Null => line("result", p.bad("refused by the config check")),
        e => line("result", p.bad(&error_text(e))),
    }
    out
}

fn error_text(e: &Value) -> String {
    let kind = e["kind"].as_str().unwrap_or("error");
    match (e["code"].as_str(), e["message"].as_str()) {
        (Some(code), Some(m)) => format!("{kind}: {code}: {m}"),
        (None, Some(m)) => format!("{kind}: {m}"),
        _ => kind.to_owned(),
    }
}

fn compact(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 400 {
        format!("{}…", &s[..s.floor_char_boundary(400)])
    } else {
        s
    }
}
