//! `engage plugin deploy`: try the project's build on the calls production
//! recorded for the bound version, show where its answers differ, then
//! upload it and bind it — for every player, or with `--percent` as a
//! canary beside the bound version; `canary`, `promote` and `rollback`
//! follow a canary up.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::{Value, json};

use super::remote::{Session, send, send_or_missing};
use super::replay::{Instead, replay_on};
use super::{load, report, scaffold, toolchain};
use crate::plugins::config::RuntimeConfig;
use crate::plugins::invocations::{Invocation, KEEP_PER_BINDING};
use crate::plugins::local::Local;

/// `engage plugin deploy`.
#[derive(clap::Args, Debug, Clone)]
pub struct DeployArgs {
    /// The project (default: the current directory).
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
    /// Bind the new version for this share of players (1 to 99), chosen by
    /// a stable hash of the player id, beside the bound version.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=99))]
    pub percent: Option<u8>,
    /// The binding's config: a JSON object, or a file holding one
    /// (default: the bound config when the bound plugin is this one, else {}).
    #[arg(long)]
    pub plugin_config: Option<String>,
    /// Only compare: replay the recorded calls and report; upload nothing.
    /// Exit status 0 when every answer is production's, 4 when one differs.
    #[arg(long)]
    pub dry_run: bool,
    /// Deploy even when the build fails calls production answered (without
    /// it, that stops the deploy with exit status 5).
    #[arg(long)]
    pub force: bool,
    /// Deploy the component as it is in build/, without building.
    #[arg(long)]
    pub no_build: bool,
    /// Print the comparison and the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How one recorded call went on the new build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compared {
    Same,
    Different,
    NowFailing,
    NowAnswering,
    NotReplayable,
}

impl Compared {
    fn label(self) -> &'static str {
        match self {
            Compared::Same => "same",
            Compared::Different => "different",
            Compared::NowFailing => "now_failing",
            Compared::NowAnswering => "now_answering",
            Compared::NotReplayable => "not_replayable",
        }
    }
}

/// The binding's config the deploy asks for, if it names one.
fn explicit_config(arg: Option<&str>) -> anyhow::Result<Option<Value>> {
    let Some(arg) = arg else { return Ok(None) };
    let text = if arg.trim_start().starts_with('{') {
        arg.to_owned()
    } else {
        std::fs::read_to_string(arg).with_context(|| format!("reading --plugin-config {arg}"))?
    };
    let v: Value = serde_json::from_str(&text).context("--plugin-config is not JSON")?;
    anyhow::ensure!(v.is_object(), "--plugin-config must be a JSON object");
    Ok(Some(v))
}

/// `engage plugin deploy`; the exit status.
pub async fn deploy(session: &Session, args: &DeployArgs) -> anyhow::Result<u8> {
    let dir = args.path.clone();
    let manifest = scaffold::Manifest::read(&dir)?;
    let component = if args.no_build {
        manifest.component(&dir)
    } else {
        let d = dir.clone();
        tokio::task::spawn_blocking(move || toolchain::build(&d)).await??
    };
    let point = manifest.world.point();
    let name = manifest.name.clone();
    let config = explicit_config(args.plugin_config.as_deref())?;
    let bound = send(session.get(&format!("/v1/bindings/{point}"))).await?;
    let bound_plugin = bound["plugin"].as_str().unwrap_or_default().to_owned();
    let bound_version = bound["version"].as_u64().unwrap_or_default();
    let same_plugin = bound_plugin == name;

    // The calls production recorded for the bound version, replayed here.
    let records = recorded(session, &bound_plugin, point, bound_version).await?;
    let instead = Instead {
        plugin: Some(name.clone()),
        config: match (&config, same_plugin) {
            (Some(c), _) => Some(c.to_string()),
            (None, true) => None,
            (None, false) => Some("{}".into()),
        },
    };
    let file = component.clone();
    let compared =
        tokio::task::spawn_blocking(move || compare(&file, &records, &instead)).await??;
    let count = |k: Compared| compared.iter().filter(|(c, _)| *c == k).count();
    let failing = count(Compared::NowFailing);
    let differing = compared
        .iter()
        .filter(|(c, _)| !matches!(c, Compared::Same | Compared::NotReplayable))
        .count();
    let summary = json!({
        "component": component, "plugin": name, "point": point,
        "bound": { "plugin": bound_plugin, "version": bound_version },
        "recorded_calls": compared.len(),
        "same": count(Compared::Same), "different": count(Compared::Different),
        "now_failing": failing, "now_answering": count(Compared::NowAnswering),
        "not_replayable": count(Compared::NotReplayable),
        "calls": compared.iter().map(|(c, r)| {
            let mut v = r.clone();
            v["compared"] = json!(c.label());
            v
        }).collect::<Vec<_>>(),
    });
    if !args.json {
        print_comparison(&summary);
    }
    let stop = if args.dry_run {
        Some(if differing > 0 { 4 } else { 0 })
    } else if failing > 0 && !args.force {
        Some(5)
    } else {
        None
    };
    if let Some(code) = stop {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&summary)?);
        } else if code == 5 {
            println!(
                "not deployed: the build fails {failing} call(s) production answered; fix it, or pass --force"
            );
        }
        return Ok(code);
    }

    let bytes =
        std::fs::read(&component).with_context(|| format!("reading {}", component.display()))?;
    let uploaded = send(
        session
            .put(&format!("/v1/plugins/{name}"))
            .header("content-type", "application/wasm")
            .body(bytes),
    )
    .await?;
    let version = uploaded["version"]
        .as_u64()
        .context("the upload answer has no version")?;
    let binding = match args.percent {
        Some(percent) => {
            let mut body = json!({ "plugin": name, "version": version, "percent": percent });
            if let Some(c) = &config {
                body["config"] = c.clone();
            }
            send(
                session
                    .put(&format!("/v1/bindings/{point}/canary"))
                    .json(&body),
            )
            .await
        }
        None => {
            let body = bind_request(&bound, &name, version, config.clone());
            send(session.put(&format!("/v1/bindings/{point}")).json(&body)).await
        }
    };
    let binding = binding.with_context(|| {
        format!("{name} v{version} was uploaded but not bound (the bound version is unchanged)")
    })?;
    if args.json {
        let mut out = summary;
        out["uploaded"] = uploaded;
        out["binding"] = binding;
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("uploaded      {name} v{version}");
        match args.percent {
            Some(p) => println!(
                "bound         {name} v{version} at `{point}` for {p}% of players, beside {bound_plugin} v{bound_version}\n              follow it: engage plugin canary {point}; then engage plugin promote {point} or engage plugin rollback {point}"
            ),
            None => println!(
                "bound         {name} v{version} at `{point}` for every player (was {bound_plugin} v{bound_version}); roll back: engage plugin bind {point} {bound_plugin} --version {bound_version}"
            ),
        }
    }
    Ok(0)
}

/// The bind request putting `version` of `name` in force: the bound
/// binding's limits, isolation, error policy and WASI carried over when it
/// is of the same plugin, so a deploy changes the version and nothing else.
fn bind_request(bound: &Value, name: &str, version: u64, config: Option<Value>) -> Value {
    let mut body = json!({ "plugin": name, "version": version });
    if bound["plugin"] == name {
        body["config"] = config.unwrap_or_else(|| bound["config"].clone());
        for field in ["on_error", "isolation", "wasi"] {
            if let Some(v) = bound.get(field) {
                body[field] = v.clone();
            }
        }
        let l = &bound["limits"];
        body["limits"] = json!({
            "timeout_ms": l["timeout_ms"], "fuel": l["fuel"],
            "memory_mib": l["memory_bytes"].as_u64().map(|b| b >> 20),
        });
    } else if let Some(c) = config {
        body["config"] = c;
    }
    body
}

/// The whole records of the calls `plugin` v`version` answered at `point`.
async fn recorded(
    session: &Session,
    plugin: &str,
    point: &str,
    version: u64,
) -> anyhow::Result<Vec<Invocation>> {
    let limit = KEEP_PER_BINDING as usize * crate::plugins::Point::ALL.len();
    let Some(list) =
        send_or_missing(session.get(&format!("/v1/plugins/{plugin}/invocations?limit={limit}")))
            .await?
    else {
        return Ok(Vec::new());
    };
    let mut records = Vec::new();
    for summary in list["invocations"].as_array().into_iter().flatten() {
        if summary["point"] != point || summary["version"].as_u64() != Some(version) {
            continue;
        }
        let Some(id) = summary["id"].as_str() else {
            continue;
        };
        let Some(record) = send_or_missing(session.get(&format!("/v1/invocations/{id}"))).await?
        else {
            continue; // replaced by a newer one meanwhile
        };
        records.push(serde_json::from_value(record).context("the server's invocation record")?);
    }
    Ok(records)
}

/// Replay every record on `file`; each with how it compared and a short
/// report (its id, call, and the diff when the answer changed).
fn compare(
    file: &Path,
    records: &[Invocation],
    instead: &Instead,
) -> anyhow::Result<Vec<(Compared, Value)>> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let local = Local::new(RuntimeConfig::default())?;
    let plugin = load(&local, file)?;
    let mut out = Vec::new();
    for record in records {
        let mut line =
            json!({ "id": record.id, "request_id": record.request_id, "at_ms": record.at_ms });
        let compared = match replay_on(&local, &plugin, record, instead) {
            Err(_) => Compared::NotReplayable,
            Ok((_, true)) => Compared::Same,
            Ok((ran, false)) => {
                line["diff"] = ran.report["diff"].clone();
                let was_ok = record.error.is_none();
                let is_ok = ran.report["error"].is_null();
                match (was_ok, is_ok) {
                    (true, false) => Compared::NowFailing,
                    (false, true) => Compared::NowAnswering,
                    _ => Compared::Different,
                }
            }
        };
        out.push((compared, line));
    }
    Ok(out)
}

fn print_comparison(summary: &Value) {
    let colour = report::colour();
    let paint = |code: &str, s: &str| {
        if colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    };
    let b = &summary["bound"];
    let n = summary["recorded_calls"].as_u64().unwrap_or(0);
    if n == 0 {
        println!(
            "compared      no calls recorded for {} v{} yet: nothing to compare",
            b["plugin"].as_str().unwrap_or(""),
            b["version"]
        );
        return;
    }
    println!(
        "compared      {n} call(s) production recorded for {} v{}: {} same, {} different, {} now failing, {} now answering, {} not replayable",
        b["plugin"].as_str().unwrap_or(""),
        b["version"],
        summary["same"],
        summary["different"],
        summary["now_failing"],
        summary["now_answering"],
        summary["not_replayable"],
    );
    for call in summary["calls"].as_array().into_iter().flatten() {
        let Some(diff) = call["diff"].as_str() else {
            continue;
        };
        println!(
            "  {} {} (request {}), -production +this build:",
            paint("33", call["compared"].as_str().unwrap_or("")),
            call["id"].as_str().unwrap_or(""),
            call["request_id"].as_str().unwrap_or("")
        );
        for line in diff.lines() {
            let line = match line.chars().next() {
                Some('-') => paint("31", line),
                Some('+') => paint("32", line),
                _ => line.to_owned(),
            };
            println!("      {line}");
        }
    }
}

/// `engage plugin canary POINT`: the canary and its statistics beside the
/// stable version's.
pub async fn status(session: &Session, point: &str, json_out: bool) -> anyhow::Result<u8> {
    let binding = send(session.get(&format!("/v1/bindings/{point}"))).await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&binding)?);
        return Ok(0);
    }
    let Some(c) = binding.get("canary") else {
        println!(
            "`{point}`: {} v{} for every player; no canary",
            binding["plugin"].as_str().unwrap_or(""),
            binding["version"]
        );
        return Ok(0);
    };
    println!(
        "`{point}`: {} v{} (stable), {} v{} for {}% of players (canary)",
        binding["plugin"].as_str().unwrap_or(""),
        binding["version"],
        c["plugin"].as_str().unwrap_or(""),
        c["version"],
        c["percent"]
    );
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "", "calls", "errors", "fallbacks", "p50 µs", "p99 µs"
    );
    for arm in ["stable", "canary"] {
        let s = &c["stats"][arm];
        let errors: u64 = s["errors"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        let q = |v: &Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x:.0}"));
        println!(
            "{arm:<8} {:>9} {:>9} {:>9} {:>10} {:>10}",
            s["calls"].as_u64().unwrap_or(0),
            errors,
            s["fallbacks"].as_u64().unwrap_or(0),
            q(&s["p50_us"]),
            q(&s["p99_us"])
        );
    }
    println!("(counted since the canary started, by the host that answered)");
    Ok(0)
}
