//! A rules plugin whose behaviour is chosen by the action's name, to test
//! that the host contains every kind of misbehaviour.

use std::sync::atomic::{AtomicI64, Ordering};

use engage_plugin_sdk::rules::{Action, Grant, Outcome};
use engage_plugin_sdk::{PluginError, host};

static CALLS_IN_THIS_INSTANCE: AtomicI64 = AtomicI64::new(0);

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
            other => Err(PluginError::new(
                "unknown-mode",
                format!("no mode `{other}`"),
            )),
        }
    }
}

engage_plugin_sdk::export_rules!(Hostile);
