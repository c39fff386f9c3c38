//! A rules plugin whose behaviour is chosen by the action's name, to test
//! that the host contains every kind of misbehaviour.

use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};

use engage_plugin_sdk::rules::{Action, Grant, Outcome};
use engage_plugin_sdk::{PluginError, host};

static CALLS_IN_THIS_INSTANCE: AtomicI64 = AtomicI64::new(0);

/// 4 MiB of zeroed memory (more than a slot keeps resident) and 64 KiB of
/// initialised data, which `scatter` writes one byte per page of, to check
/// that a fresh instance never sees what an earlier one wrote.
const PAGE: usize = 4096;
static ZEROED: [AtomicU8; 4 << 20] = [const { AtomicU8::new(0) }; 4 << 20];
static SEVENS: [AtomicU8; 64 << 10] = [const { AtomicU8::new(7) }; 64 << 10];

/// How many of the pages `scatter` writes hold what an earlier call wrote,
/// then write every other page (hundreds of separate dirty regions).
fn scatter() -> i64 {
    let mut seen = 0;
    for i in (0..ZEROED.len()).step_by(2 * PAGE) {
        seen += i64::from(ZEROED[i].swap(0xAA, Ordering::Relaxed) != 0);
    }
    for i in (0..SEVENS.len()).step_by(2 * PAGE) {
        seen += i64::from(SEVENS[i].swap(0xAA, Ordering::Relaxed) != 7);
    }
    seen
}

fn grant(amount: i64) -> Outcome {
    Outcome {
        grants: vec![Grant {
            currency: "points".into(),
            amount,
            reason: "hostile".into(),
        }],
        ..Outcome::default()
    }
}

struct Hostile;

impl engage_plugin_sdk::rules::Guest for Hostile {
    fn evaluate(action: Action) -> Result<Outcome, PluginError> {
        match action.name.as_str() {
            // The amount comes from the binding's config, so tests can tell
            // versions and bindings apart.
            "ok" => {
                let config = host::config_json();
                let amount = config
                    .split("\"amount\":")
                    .nth(1)
                    .and_then(|s| s.trim_start().split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                Ok(grant(amount))
            }
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => std::process::abort(),
            "panic" => panic!("boom: player {} asked for it", action.player),
            "huge" => Ok(Outcome {
                badges: vec!["x".repeat(1024); 2048],
                ..Outcome::default()
            }),
            "logspam" => {
                for i in 0..10_000 {
                    host::log(host::Level::Info, &format!("line {i}"), &[]);
                }
                Ok(grant(1))
            }
            "error" => Err(PluginError::new("nope", "this plugin refuses on purpose")),
            // A 1 MiB code and a 20 MiB message: the answer must stay small.
            "error-huge" => Err(PluginError::new("c".repeat(1 << 20), "m".repeat(20 << 20))),
            // 64 lines of 16 fields of 256 KiB each, then past the deadline.
            "log-fields" => {
                let big = "f".repeat(256 << 10);
                let fields: Vec<(String, String)> =
                    (0..16).map(|_| (big.clone(), big.clone())).collect();
                for _ in 0..64 {
                    host::log(host::Level::Info, &big, &fields);
                }
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            // 1,000 values of 64 KiB under keys named by the action's `batch`.
            "kv-fill" => {
                let batch = action.param("batch").unwrap_or_default();
                let value = vec![7u8; 64 << 10];
                for i in 0..1000 {
                    host::kv_set(&format!("{batch}-{i}"), &value, None);
                }
                Ok(grant(1))
            }
            // 50 values of 1 KiB that expire in an hour, under the action's `batch`.
            "kv-ttl" => {
                let batch = action.param("batch").unwrap_or_default();
                for i in 0..50 {
                    host::kv_set(&format!("{batch}-{i}"), &[1u8; 1024], Some(3_600_000));
                }
                Ok(grant(1))
            }
            // 4,000 grants of a trillion points each.
            "mint" => Ok(Outcome {
                grants: (0..4000)
                    .map(|_| Grant {
                        currency: "points".into(),
                        amount: 1_000_000_000_000,
                        reason: "mint".into(),
                    })
                    .collect(),
                ..Outcome::default()
            }),
            // Two grants of 600 million: over the default total of a billion.
            "mint-two" => Ok(Outcome {
                grants: vec![
                    Grant {
                        currency: "points".into(),
                        amount: 600_000_000,
                        reason: "mint".into(),
                    };
                    2
                ],
                ..Outcome::default()
            }),
            "negative" => Ok(grant(-5)),
            "wasi" => {
                // Any WASI call is denied: it traps.
                let now = std::time::SystemTime::now();
                Ok(grant(
                    now.elapsed().map(|d| d.as_secs() as i64).unwrap_or(1),
                ))
            }
            // Only with `wasi: ["clocks"]`: the wall clock, in days since 1970.
            "wasi-clock" => {
                let since = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64 / 86_400)
                    .unwrap_or(0);
                Ok(grant(since))
            }
            // Only with `wasi: ["random"]`: std seeds its hash maps from WASI.
            "wasi-random" => {
                use std::hash::BuildHasher;
                let h = std::collections::hash_map::RandomState::new().hash_one(7u8);
                Ok(grant((h % 1000) as i64 + 1))
            }
            // At most 5 awards ever, counted in the key-value store.
            "quota" => {
                let used = host::kv_get("quota")
                    .and_then(|b| b.try_into().ok())
                    .map(i64::from_le_bytes)
                    .unwrap_or(0);
                if used >= 5 {
                    return Ok(Outcome::default());
                }
                host::kv_increment("quota", 1, None);
                Ok(grant(1))
            }
            // How many calls this instance has served: 1 when fresh.
            "instance-calls" => Ok(grant(
                CALLS_IN_THIS_INSTANCE.fetch_add(1, Ordering::SeqCst) + 1,
            )),
            "clock" => Ok(grant(host::now_ms())),
            // 1 + the number of pages holding an earlier call's writes.
            "scatter" => Ok(grant(1 + scatter())),
            other => Err(PluginError::new(
                "unknown-mode",
                format!("no mode `{other}`"),
            )),
        }
    }
}

engage_plugin_sdk::export_rules!(Hostile);
