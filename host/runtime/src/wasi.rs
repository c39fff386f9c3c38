//! WASI a binding may grant. Every WASI import is denied by default (it
//! traps when called); a binding can grant a few families whose functions
//! cannot reach outside the sandbox:
//!
//! - `clocks`: `wasi:clocks/wall-clock` `now`/`resolution` and
//!   `wasi:clocks/monotonic-clock` `now`/`resolution` (not its pollables);
//! - `random`: `wasi:random/random`, `wasi:random/insecure` and
//!   `wasi:random/insecure-seed`.
//!
//! Files, sockets, environment and stdio are never granted: plugins reach
//! data through the `engage:plugin/host` interface only.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, Val};
use wasmtime::{Engine, Result};

use super::sandbox::CallState;

/// A family of WASI functions a binding grants.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum WasiGrant {
    Clocks,
    Random,
}

impl WasiGrant {
    fn as_str(self) -> &'static str {
        match self {
            WasiGrant::Clocks => "clocks",
            WasiGrant::Random => "random",
        }
    }
}

/// A stable name for a set of grants, for caching linked components.
pub fn grants_key(grants: &[WasiGrant]) -> String {
    let mut g: Vec<&str> = grants.iter().map(|g| g.as_str()).collect();
    g.sort_unstable();
    g.dedup();
    g.join("+")
}

/// The process-wide origin of the monotonic clock.
fn origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    // Without an entropy source the OS is unusable; the call traps instead.
    if getrandom::fill(&mut bytes).is_err() {
        bytes.clear();
    }
    bytes
}

fn random_u64() -> u64 {
    let b = random_bytes(8);
    <[u8; 8]>::try_from(b.as_slice())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// The largest random buffer a guest may ask for in one call.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// Define the granted functions that `component` imports; everything else
/// is left for the caller to define as traps.
pub fn define(
    linker: &mut Linker<CallState>,
    engine: &Engine,
    component: &Component,
    grants: &[WasiGrant],
) -> Result<()> {
    if grants.is_empty() {
        return Ok(());
    }
    let ty = component.component_type();
    for (name, item) in ty.imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let Some((iface, _version)) = name.split_once('@') else {
            continue;
        };
        let granted = match iface {
            "wasi:clocks/wall-clock" | "wasi:clocks/monotonic-clock" => {
                grants.contains(&WasiGrant::Clocks)
            }
            "wasi:random/random" | "wasi:random/insecure" | "wasi:random/insecure-seed" => {
                grants.contains(&WasiGrant::Random)
            }
            _ => false,
        };
        if !granted {
            continue;
        }
        let funcs: Vec<String> = instance
            .exports(engine)
            .filter(|(_, i)| matches!(i.ty, ComponentItem::ComponentFunc(_)))
            .map(|(n, _)| n.to_owned())
            .collect();
        let mut inst = linker.instance(name)?;
        for f in funcs {
            match (iface, f.as_str()) {
                ("wasi:clocks/wall-clock", "now") => inst.func_new(&f, |_, _, _, out| {
                    let d = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default();
                    out[0] = Val::Record(vec![
                        ("seconds".into(), Val::U64(d.as_secs())),
                        ("nanoseconds".into(), Val::U32(d.subsec_nanos())),
                    ]);
                    Ok(())
                })?,
                ("wasi:clocks/wall-clock", "resolution") => inst.func_new(&f, |_, _, _, out| {
                    out[0] = Val::Record(vec![
                        ("seconds".into(), Val::U64(0)),
                        ("nanoseconds".into(), Val::U32(1)),
                    ]);
                    Ok(())
                })?,
                ("wasi:clocks/monotonic-clock", "now") => inst.func_new(&f, |_, _, _, out| {
                    out[0] = Val::U64(origin().elapsed().as_nanos() as u64);
                    Ok(())
                })?,
                ("wasi:clocks/monotonic-clock", "resolution") => {
                    inst.func_new(&f, |_, _, _, out| {
                        out[0] = Val::U64(1);
                        Ok(())
                    })?
                }
                ("wasi:random/random", "get-random-bytes")
                | ("wasi:random/insecure", "get-insecure-random-bytes") => {
                    inst.func_new(&f, |_, _, args, out| {
                        let n = match args.first() {
                            Some(Val::U64(n)) => *n,
                            _ => 0,
                        };
                        if n > MAX_RANDOM_BYTES {
                            wasmtime::bail!(
                                "asked for {n} random bytes; at most {MAX_RANDOM_BYTES}"
                            );
                        }
                        out[0] =
                            Val::List(random_bytes(n as usize).into_iter().map(Val::U8).collect());
                        Ok(())
                    })?
                }
                ("wasi:random/random", "get-random-u64")
                | ("wasi:random/insecure", "get-insecure-random-u64") => {
                    inst.func_new(&f, |_, _, _, out| {
                        out[0] = Val::U64(random_u64());
                        Ok(())
                    })?
                }
                ("wasi:random/insecure-seed", "insecure-seed") => {
                    inst.func_new(&f, |_, _, _, out| {
                        out[0] = Val::Tuple(vec![Val::U64(random_u64()), Val::U64(random_u64())]);
                        Ok(())
                    })?
                }
                // Anything else in a granted interface (pollables) stays a trap.
                _ => {}
            }
        }
    }
    Ok(())
}
