//! The plugin authoring kit: what `engage plugin new`, `build`, `run`,
//! `test`, `replay` and `deploy` do. Local commands run components on
//! [`crate::plugins::local`], the engine configuration production uses, so
//! an author sees the limits production enforces before uploading.

pub mod deploy;
pub mod diff;
pub mod fixtures;
pub mod remote;
pub mod replay;
pub mod report;
pub mod scaffold;
pub mod toolchain;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::Value;

use crate::plugins::config::RuntimeConfig;
use crate::plugins::fixture::Fixture;
use crate::plugins::io::Action;
use crate::plugins::local::{Local, LocalCall, LocalPlugin};
use crate::plugins::{Input, LimitsRequest, Point};

/// Limits of a local call; each defaults to the server's default.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LimitArgs {
    /// Fuel (roughly, WebAssembly instructions) for the call.
    #[arg(long)]
    pub fuel: Option<u64>,
    /// The call's deadline in milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// The call's memory cap in MiB, over all its memories.
    #[arg(long)]
    pub memory_mib: Option<usize>,
}

impl LimitArgs {
    pub fn request(&self) -> LimitsRequest {
        LimitsRequest {
            timeout_ms: self.timeout_ms,
            fuel: self.fuel,
            memory_mib: self.memory_mib,
        }
    }
}

/// `engage plugin run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The component (.wasm).
    pub file: PathBuf,
    /// The call, as `POST /v1/bindings/{point}/invoke` takes it
    /// (`{"call":"evaluate","action":{…}}`); for a rules plugin a bare
    /// action object works too.
    #[arg(long)]
    pub input: PathBuf,
    /// The binding's config, a JSON object (default `{}`).
    #[arg(long = "plugin-config", visible_alias = "with-config")]
    pub plugin_config: Option<PathBuf>,
    /// The plugin's key-value state: a JSON object of key to a string, an
    /// integer (a counter) or {"text"|"counter"|"base64": …, "expires_at_ms": n}.
    #[arg(long)]
    pub kv: Option<PathBuf>,
    /// The host's views: {"balances": {player: {currency: n}},
    /// "actions": {player: {action: [time_ms, …]}}}.
    #[arg(long)]
    pub views: Option<PathBuf>,
    /// The request's clock (default: the action's time_ms, else now).
    #[arg(long)]
    pub now_ms: Option<i64>,
    /// The tenant the call runs for (what `host.tenant` returns).
    #[arg(long, default_value = "local")]
    pub tenant: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// Load a component for local runs, saying what to do when it is refused.
pub fn load(local: &Local, file: &Path) -> anyhow::Result<LocalPlugin> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    local.load(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: the server would refuse this upload: {e}",
            file.display()
        )
    })
}

/// A call from JSON: the invoke format, or a bare action for rules.
pub fn input_from(v: Value, point: Point) -> anyhow::Result<Input> {
    if v.get("call").is_some() {
        return serde_json::from_value(v).context(
            "the input is not a call: see POST /v1/bindings/{point}/invoke for the format",
        );
    }
    if point == Point::Rules {
        let action: Action = serde_json::from_value(v)
            .context("the input is neither a call ({\"call\": …}) nor an action")?;
        return Ok(Input::Evaluate { action });
    }
    anyhow::bail!(
        "the input has no \"call\": give one of the {} world's calls (see POST /v1/bindings/{}/invoke)",
        point.world(),
        point.as_str()
    )
}

/// The request's clock a call implies: an action's or a gift's own time.
pub fn input_time(input: &Input) -> Option<i64> {
    match input {
        Input::Evaluate { action } => Some(action.time_ms),
        _ => None,
    }
}

/// The data a run sees, from `--kv` and `--views` documents.
pub fn fixture(kv: Option<&Value>, views: Option<&Value>) -> anyhow::Result<Fixture> {
    let mut f = match views {
        Some(v) => serde_json::from_value::<Fixture>(v.clone())
            .context("views: expected {\"balances\": {player: {currency: n}}, \"actions\": {player: {action: [time_ms]}}}")?,
        None => Fixture::default(),
    };
    if let Some(kv) = kv {
        f.kv = Fixture::kv_from_json(kv).map_err(anyhow::Error::msg)?;
    }
    Ok(f)
}

/// `engage plugin run`: print the report, return the exit status.
pub fn run(args: &RunArgs) -> anyhow::Result<u8> {
    let ran = run_report(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&ran.report)?);
    } else {
        print!("{}", report::render(&ran.report, report::colour()));
    }
    Ok(ran.outcome.exit_code())
}

/// What `engage plugin run` reports, without printing it.
pub fn run_report(args: &RunArgs) -> anyhow::Result<report::Ran> {
    let local = Local::new(RuntimeConfig::default())?;
    let plugin = load(&local, &args.file)?;
    let input = input_from(read_json(&args.input)?, plugin.point)?;
    let config = match &args.plugin_config {
        Some(p) => read_json(p)?,
        None => Value::Object(Default::default()),
    };
    if !config.is_object() {
        anyhow::bail!("the binding's config must be a JSON object");
    }
    let kv = args.kv.as_deref().map(read_json).transpose()?;
    let views = args.views.as_deref().map(read_json).transpose()?;
    let call = LocalCall {
        tenant: args.tenant.clone(),
        plugin: plugin_name(&args.file),
        config: config.to_string(),
        now_ms: args
            .now_ms
            .or_else(|| input_time(&input))
            .unwrap_or_else(crate::store::ids::now_ms),
        request_id: "local".into(),
        fixture: fixture(kv.as_ref(), views.as_ref())?,
        limits: local.limits(&plugin, args.limits.request())?,
    };
    Ok(report::run(&local, &plugin, &call, &input))
}

/// The plugin's name a local run uses for its key-value scope: the file's stem.
fn plugin_name(file: &Path) -> String {
    file.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("local")
        .replace('_', "-")
}

/// `engage plugin test`: build (unless told not to), run every fixture,
/// print the verdicts; exit status 1 when one fails.
pub fn test(dir: &Path, build: bool, json: bool) -> anyhow::Result<u8> {
    let manifest = scaffold::Manifest::read(dir)?;
    let component = if build {
        toolchain::build(dir)?
    } else {
        manifest.component(dir)
    };
    let files = fixtures::find(&dir.join("fixtures"))?;
    if files.is_empty() {
        anyhow::bail!("no fixtures in {}", dir.join("fixtures").display());
    }
    let verdicts = fixtures::run_all(&component, &files)?;
    let failed = verdicts.iter().filter(|v| !v.failures.is_empty()).count();
    if json {
        let list: Vec<Value> = verdicts
            .iter()
            .map(|v| serde_json::json!({ "file": v.file, "name": v.name, "passed": v.failures.is_empty(), "failures": v.failures, "report": v.report }))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "passed": verdicts.len() - failed, "failed": failed, "fixtures": list })
            )?
        );
    } else {
        let colour = report::colour();
        let paint = |code: &str, s: &str| {
            if colour {
                format!("\x1b[{code}m{s}\x1b[0m")
            } else {
                s.to_owned()
            }
        };
        for v in &verdicts {
            if v.failures.is_empty() {
                println!("{} {}", paint("32", "pass"), v.name);
            } else {
                println!("{} {} ({})", paint("31", "FAIL"), v.name, v.file.display());
                for f in &v.failures {
                    for line in f.lines() {
                        let line = match line.chars().next() {
                            Some('-') => paint("31", line),
                            Some('+') => paint("32", line),
                            _ => line.to_owned(),
                        };
                        println!("    {line}");
                    }
                }
            }
        }
        println!("{} passed, {failed} failed", verdicts.len() - failed);
    }
    Ok(u8::from(failed > 0))
}

/// `engage plugin replay`: print the replay's report; exit status 0 when
/// the answer is production's, 4 when it differs.
pub fn replay_and_print(
    record: &crate::plugins::invocations::Invocation,
    file: &Path,
    json: bool,
) -> anyhow::Result<u8> {
    let (ran, same) = replay::replay(record, file)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&ran.report)?);
    } else {
        print!("{}", report::render(&ran.report, report::colour()));
        let r = &ran.report["recorded"];
        println!(
            "replayed      {} ({} v{}, request {})",
            record.id,
            r["plugin"].as_str().unwrap_or(""),
            r["version"],
            r["request_id"].as_str().unwrap_or("")
        );
        match ran.report["diff"].as_str() {
            None => println!("compared      the same answer as production"),
            Some(d) => {
                println!("compared      a different answer (-production +this build):");
                d.lines().for_each(|l| println!("    {l}"));
            }
        }
    }
    Ok(if same { 0 } else { 4 })
}
