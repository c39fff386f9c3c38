//! Running one call: a fresh `Store` with limits, instantiate, call,
//! classify what went wrong.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmtime::component::Component;
use wasmtime::{Engine, Store, Trap};

use super::bindings::WitVersion;
use super::engine::EPOCH_TICK;
use super::gate::{IdleBudget, Units};
use super::io::{Attempt, GiftReply, GiftRequest, Outcome, Outgoing, Param, PluginError, Verdict};
use super::sandbox::{CallState, LogLine};
use super::since_v0_1_0 as v0_1_0;
use super::since_v0_2_0 as v0_2_0;
use super::{CallError, Point};
use crate::kv::Effects;

/// The largest output a plugin may return (serialized as JSON).
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;

/// Limits of one call.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Limits {
    pub timeout_ms: u64,
    pub fuel: u64,
    pub memory_bytes: usize,
}

/// A compiled component, ready to instantiate for the world it implements.
pub struct Prepared {
    pub point: Point,
    pub pre: WorldPre,
    /// The engine it was compiled for (see `engine::Flavor`).
    pub engine: Engine,
    /// Which engine (and so which instance pool and gate): 0 small, 1 large.
    pub flavor: usize,
    /// What one instantiation takes from the pool.
    pub shape: super::shape::Shape,
}

/// A typed `InstancePre` of the world and WIT version the component
/// implements.
pub enum WorldPre {
    V0_1_0(v0_1_0::Pre),
    V0_2_0(v0_2_0::Pre),
}

enum Instance {
    V0_1_0(v0_1_0::Instance),
    V0_2_0(v0_2_0::Instance),
}

/// What a call asks of a plugin.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Input {
    Evaluate { action: super::io::Action },
    PreRequest { request: GiftRequest },
    PostRequest { request: GiftRequest },
    PreReply { reply: GiftReply },
    PostReply { reply: GiftReply },
    Render { template: String, vars: Vec<Param> },
    Route { message: Outgoing },
}

impl Input {
    /// The extension point this call belongs to.
    pub fn point(&self) -> Point {
        match self {
            Input::Evaluate { .. } => Point::Rules,
            Input::PreRequest { .. }
            | Input::PostRequest { .. }
            | Input::PreReply { .. }
            | Input::PostReply { .. } => Point::Gift,
            Input::Render { .. } => Point::Template,
            Input::Route { .. } => Point::Route,
        }
    }
}

/// What a plugin answered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    Outcome(Outcome),
    Verdict(Verdict),
    Done,
    Text(String),
    Attempts(Vec<Attempt>),
}

/// Everything a call produced, whether it succeeded or not.
pub struct Report {
    pub result: Result<Output, CallError>,
    pub effects: Effects,
    pub logs: Vec<LogLine>,
    pub logs_dropped: u32,
    pub fuel_used: u64,
    /// The call's linear memories at the end (they never shrink: the peak).
    pub memory_bytes: usize,
    pub elapsed: Duration,
}

/// The call's context: who, with what config, at what time, on what data.
pub struct Context {
    pub tenant: Arc<str>,
    pub plugin: Arc<str>,
    pub config: Arc<str>,
    pub now_ms: i64,
    pub request_id: Arc<str>,
    pub data: super::sandbox::Data,
    pub limits: Limits,
    /// The tenant's key-value quota, checked when the call's writes apply.
    pub kv_quota: crate::kv::Quota,
}

impl WorldPre {
    /// Check that `component`, linked by `pre`, implements `point`'s world
    /// of WIT `version`.
    pub fn new(
        point: Point,
        version: WitVersion,
        pre: wasmtime::component::InstancePre<CallState>,
    ) -> wasmtime::Result<WorldPre> {
        Ok(match version {
            WitVersion::V0_1_0 => WorldPre::V0_1_0(v0_1_0::Pre::new(point, pre)?),
            WitVersion::V0_2_0 => WorldPre::V0_2_0(v0_2_0::Pre::new(point, pre)?),
        })
    }

    /// The WIT version of the component's world.
    pub fn version(&self) -> WitVersion {
        match self {
            WorldPre::V0_1_0(_) => WitVersion::V0_1_0,
            WorldPre::V0_2_0(_) => WitVersion::V0_2_0,
        }
    }

    fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Instance> {
        Ok(match self {
            WorldPre::V0_1_0(p) => Instance::V0_1_0(p.instantiate(store)?),
            WorldPre::V0_2_0(p) => Instance::V0_2_0(p.instantiate(store)?),
        })
    }
}

/// A call's result as the guest gave it, before it is classified.
pub(crate) type GuestResult = wasmtime::Result<Result<Output, PluginError>>;

fn invoke(instance: &Instance, store: &mut Store<CallState>, input: &Input) -> GuestResult {
    match instance {
        Instance::V0_1_0(i) => v0_1_0::invoke(i, store, input),
        Instance::V0_2_0(i) => v0_2_0::invoke(i, store, input),
    }
}

fn new_store(engine: &Engine, ctx: &Context) -> wasmtime::Result<Store<CallState>> {
    let state = CallState::new(ctx);
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    arm(&mut store, &ctx.limits)?;
    Ok(store)
}

fn arm(store: &mut Store<CallState>, limits: &Limits) -> wasmtime::Result<()> {
    store.set_fuel(limits.fuel)?;
    let ticks = limits
        .timeout_ms
        .div_ceil(EPOCH_TICK.as_millis() as u64)
        .max(1);
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();
    Ok(())
}

/// Call `input` on a fresh instance of `prepared`.
pub fn call_fresh(prepared: &Prepared, ctx: &Context, input: &Input) -> Report {
    let started = Instant::now();
    let mut store = match new_store(&prepared.engine, ctx) {
        Ok(s) => s,
        Err(e) => return failed_before_start(e, started),
    };
    let result = prepared
        .pre
        .instantiate(&mut store)
        .and_then(|inst| invoke(&inst, &mut store, input));
    finish(store, result, ctx.limits.fuel, started)
}

/// Run the component's config check (0.2.0 and later) on `ctx.config`, in
/// a fresh instance with the call's limits. None when the component's WIT
/// version has no check: every config object binds.
pub fn check_config(prepared: &Prepared, ctx: &Context) -> Option<Report> {
    let WorldPre::V0_2_0(pre) = &prepared.pre else {
        return None;
    };
    let started = Instant::now();
    let mut store = match new_store(&prepared.engine, ctx) {
        Ok(s) => s,
        Err(e) => return Some(failed_before_start(e, started)),
    };
    let result = pre.instantiate(&mut store).and_then(|i| {
        v0_2_0::validate(&i, &mut store, &ctx.config).map(|r| r.map(|()| Output::Done))
    });
    Some(finish(store, result, ctx.limits.fuel, started))
}

impl Report {
    /// A call that failed without running.
    pub fn failed(error: CallError, started: Instant) -> Report {
        Report {
            result: Err(error),
            effects: Effects::default(),
            logs: Vec::new(),
            logs_dropped: 0,
            fuel_used: 0,
            memory_bytes: 0,
            elapsed: started.elapsed(),
        }
    }
}

fn failed_before_start(e: wasmtime::Error, started: Instant) -> Report {
    let error = CallError::Trap {
        message: format!("{e:#}"),
    };
    Report::failed(error.bounded(), started)
}

fn finish(store: Store<CallState>, result: GuestResult, fuel: u64, started: Instant) -> Report {
    let fuel_used = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
    let state = store.into_data();
    let result = classify(result, &state);
    Report {
        result,
        effects: state.effects,
        logs: state.logs,
        logs_dropped: state.logs_dropped,
        fuel_used,
        memory_bytes: state.limiter.total,
        elapsed: started.elapsed(),
    }
}

fn classify(result: GuestResult, state: &CallState) -> Result<Output, CallError> {
    classify_unbounded(result, state).map_err(CallError::bounded)
}

fn classify_unbounded(result: GuestResult, state: &CallState) -> Result<Output, CallError> {
    let err = match result {
        Ok(Ok(output)) => return check_output(output),
        Ok(Err(e)) => {
            return Err(CallError::Guest {
                code: e.code,
                message: e.message,
            });
        }
        Err(e) => e,
    };
    if state.limiter.memory_exceeded {
        return Err(CallError::MemoryLimit);
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        match trap {
            Trap::Interrupt => return Err(CallError::Timeout),
            Trap::OutOfFuel => return Err(CallError::OutOfFuel),
            _ => {}
        }
    }
    if let Some(why) = &state.host_failure {
        return Err(CallError::Trap {
            message: why.clone(),
        });
    }
    let panic = state
        .logs
        .iter()
        .rev()
        .find_map(|l| l.message.strip_prefix("panic: "));
    Err(match panic {
        Some(p) => CallError::Panic {
            message: p.to_owned(),
        },
        None => CallError::Trap {
            message: format!("{err:#}"),
        },
    })
}

/// Reject outputs no caller could use, so a buggy plugin cannot, for
/// instance, debit points through a negative grant.
fn check_output(output: Output) -> Result<Output, CallError> {
    let size = serde_json::to_vec(&output)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_OUTPUT_BYTES {
        return Err(CallError::OutputTooLarge {
            bytes: size,
            limit: MAX_OUTPUT_BYTES,
        });
    }
    let invalid = |why: String| Err(CallError::InvalidOutput { message: why });
    match &output {
        Output::Outcome(o) => {
            for g in &o.grants {
                if g.amount <= 0 {
                    return invalid(format!(
                        "grant of {} {} is not positive",
                        g.amount, g.currency
                    ));
                }
                if !engage_store::ids::valid_id(&g.currency) {
                    return invalid(format!(
                        "grant currency `{}` is not a valid name",
                        g.currency
                    ));
                }
            }
        }
        Output::Attempts(list) => {
            if list.len() > 16 {
                return invalid(format!("{} attempts; at most 16", list.len()));
            }
            if let Some(a) = list
                .iter()
                .find(|a| a.provider.is_empty() || a.channel.is_empty())
            {
                return invalid(format!("attempt {a:?} names no channel or provider"));
            }
        }
        Output::Verdict(Verdict::Reject(r)) if r.code_str.is_empty() => {
            return invalid("a rejection needs a code_str".into());
        }
        _ => {}
    }
    Ok(output)
}

/// Idle instances kept for bindings that opted into warm isolation.
pub struct WarmPool {
    idle: Mutex<Vec<Warm>>,
    /// Recycle an instance after this many calls.
    pub max_calls: u32,
    /// Keep at most this many idle instances.
    pub max_idle: usize,
    /// What all idle instances of the pool's engine may hold together.
    budget: Arc<IdleBudget>,
}

struct Warm {
    store: Store<CallState>,
    instance: Instance,
    calls: u32,
    /// What it holds of the idle budget while idle.
    held: Units,
}

impl Drop for WarmPool {
    fn drop(&mut self) {
        if let Ok(idle) = self.idle.get_mut() {
            idle.iter().for_each(|w| self.budget.give(w.held));
        }
    }
}

impl WarmPool {
    pub fn new(max_calls: u32, max_idle: usize, budget: Arc<IdleBudget>) -> WarmPool {
        WarmPool {
            idle: Mutex::new(Vec::new()),
            max_calls,
            max_idle,
            budget,
        }
    }

    /// Call `input` on an idle instance (or a new one), then keep the
    /// instance unless the call failed in any way or it reached `max_calls`.
    pub fn call(&self, prepared: &Prepared, ctx: &Context, input: &Input) -> Report {
        let started = Instant::now();
        let taken = self.idle.lock().map(|mut idle| idle.pop()).unwrap_or(None);
        if let Some(w) = &taken {
            self.budget.give(w.held);
        }
        let mut warm = match taken {
            Some(mut w) => {
                let state = w.store.data_mut();
                // The instance's memories are still there: keep counting them.
                let memory_in_use = state.limiter.total;
                *state = CallState::new(ctx);
                state.limiter.total = memory_in_use;
                if let Err(e) = arm(&mut w.store, &ctx.limits) {
                    return failed_before_start(e, started);
                }
                w
            }
            None => {
                let mut store = match new_store(&prepared.engine, ctx) {
                    Ok(s) => s,
                    Err(e) => return failed_before_start(e, started),
                };
                match prepared.pre.instantiate(&mut store) {
                    Ok(instance) => Warm {
                        store,
                        instance,
                        calls: 0,
                        held: Units::default(),
                    },
                    Err(e) => return finish(store, Err(e), ctx.limits.fuel, started),
                }
            }
        };
        let result = invoke(&warm.instance, &mut warm.store, input);
        let fuel_used = ctx
            .limits
            .fuel
            .saturating_sub(warm.store.get_fuel().unwrap_or(0));
        warm.calls += 1;
        let state = warm.store.data_mut();
        let result = classify(result, state);
        let report = Report {
            effects: std::mem::take(&mut state.effects),
            logs: std::mem::take(&mut state.logs),
            logs_dropped: state.logs_dropped,
            fuel_used,
            memory_bytes: state.limiter.total,
            elapsed: started.elapsed(),
            result,
        };
        // A trap may leave the instance's memory inconsistent: never reuse it.
        let reusable =
            report.result.is_ok() || matches!(report.result, Err(CallError::Guest { .. }));
        if reusable && warm.calls < self.max_calls {
            warm.store.data_mut().data = super::sandbox::Data::None;
            warm.held = Units::call(prepared.shape, warm.store.data().limiter.total);
            if let Ok(mut idle) = self.idle.lock()
                && idle.len() < self.max_idle
                && self.budget.take(warm.held)
            {
                idle.push(warm);
            }
        }
        report
    }
}

/// Load-time facts about a component: which world, of which WIT version,
/// it implements.
pub fn detect_point(engine: &Engine, component: &Component) -> Result<(Point, WitVersion), String> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let mut found: Option<(Point, WitVersion)> = None;
    let mut version: Option<WitVersion> = None;
    for name in &exports {
        let Some(rest) = name.strip_prefix("engage:plugin/") else {
            continue;
        };
        let (interface, v) = rest.split_once('@').unwrap_or((rest, ""));
        let Some(v) = WitVersion::ALL.into_iter().find(|k| k.as_str() == v) else {
            return Err(format!(
                "it exports `{name}`, a version of engage:plugin this host does not know (it speaks {}); rebuild against one of those",
                WitVersion::ALL
                    .map(|k| format!("engage:plugin@{}", k.as_str()))
                    .join(", ")
            ));
        };
        if version.is_some_and(|seen| seen != v) {
            return Err(
                "it exports interfaces of two engage:plugin versions; build it against one".into(),
            );
        }
        version = Some(v);
        let point = match interface {
            "rule-engine" => Point::Rules,
            "gift-hook" => Point::Gift,
            "template" => Point::Template,
            "router" => Point::Route,
            other => {
                return Err(format!(
                    "it exports `engage:plugin/{other}@{}`, which that version does not have",
                    v.as_str()
                ));
            }
        };
        if found.is_some() {
            return Err(
                "it exports more than one Engage interface; a plugin implements exactly one world"
                    .into(),
            );
        }
        found = Some((point, v));
    }
    found.ok_or_else(|| {
        format!(
            "it implements none of the worlds rules, gift-hooks, templating, routing (its exports: {})",
            if exports.is_empty() { "none".to_string() } else { exports.join(", ") }
        )
    })
}
