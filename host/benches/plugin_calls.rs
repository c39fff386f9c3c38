//! Per-call cost of the first-party plugins through the real runtime:
//! a fresh sandbox per call on 1 and 2 threads, and a warm instance.
//!
//! Run: `cargo bench -p engage --bench plugin_calls`

use std::sync::Arc;
use std::time::Instant;

use engage::config::ServerConfig;
use engage::plugins::{BindRequest, Input, Isolation, Plugins, Point};

fn inputs() -> Vec<(&'static str, Input)> {
    let action: engage::plugins::io::Action = serde_json::from_value(serde_json::json!({
        "player": "p1", "name": "buy", "params": [], "url": null, "time_ms": 1_700_000_000_000i64
    }))
    .expect("action");
    let render: Input = serde_json::from_value(serde_json::json!({
        "call": "render", "template": "Congratulation, here is your coupon code: {{code}}.",
        "vars": [{ "name": "code", "value": "8830644924" }]
    }))
    .expect("render");
    let route: Input = serde_json::from_value(serde_json::json!({
        "call": "route", "message": { "id": "m1", "to": "+380972920000", "channel": "viber", "sender": null,
        "body": "hi", "kind": "Transactional", "reference": null, "metadata": [] }
    }))
    .expect("route");
    let gift: Input = serde_json::from_value(serde_json::json!({
        "call": "pre_request", "request": { "id": "g", "sender": "kunalg", "recipients": ["a"], "expires_at_ms": 1_900_000_000_000i64, "attributes": [] }
    }))
    .expect("gift");
    vec![
        ("rules-table", Input::Evaluate { action }),
        ("template", render),
        ("router", route),
        ("gift-quota", gift),
    ]
}

/// The same work as each plugin, as plain Rust on this machine: the floor
/// the sandbox's overhead is measured against.
fn native(name: &str) -> Box<dyn FnMut()> {
    use engage_plugin_sdk::{Param, host::parse_config};
    match name {
        "rules-table" => {
            struct Mem(std::collections::HashMap<String, i64>);
            impl engage_rules_table::Env for Mem {
                fn kv_get_i64(&mut self, key: &str) -> Option<i64> {
                    self.0.get(key).copied()
                }
                fn kv_increment(&mut self, key: &str, _ttl_ms: u64) -> i64 {
                    let v = self.0.entry(key.into()).or_default();
                    *v += 1;
                    *v
                }
                fn kv_set_flag(&mut self, key: &str, _ttl_ms: u64) {
                    self.0.insert(key.into(), 1);
                }
            }
            let action = engage_plugin_sdk::rules::Action {
                player: "p1".into(),
                name: "buy".into(),
                params: vec![],
                url: None,
                time_ms: 1_700_000_000_000,
            };
            Box::new(move || {
                // The guest parses its config on every call too.
                let config: engage_rules_table::Config =
                    parse_config(engage::server::DEMO_RULES).expect("config");
                let out =
                    engage_rules_table::evaluate(&action, &config, &mut Mem(Default::default()));
                std::hint::black_box(out.expect("evaluate"));
            })
        }
        "template" => {
            let vars = vec![Param::new("code", "8830644924")];
            Box::new(move || {
                let config: engage_template::Config = parse_config("{}").expect("config");
                let out = engage_template::render(
                    "Congratulation, here is your coupon code: {{code}}.",
                    &vars,
                    &config,
                );
                std::hint::black_box(out.expect("render"));
            })
        }
        "router" => {
            let message = engage_plugin_sdk::routing::Outgoing {
                id: "m1".into(),
                to: "+380972920000".into(),
                channel: "viber".into(),
                sender: None,
                body: "hi".into(),
                kind: engage_plugin_sdk::routing::MessageKind::Transactional,
                reference: None,
                metadata: vec![],
            };
            Box::new(move || {
                let config: engage_router::Config = parse_config("{}").expect("config");
                std::hint::black_box(engage_router::route(&message, &config));
            })
        }
        _ => {
            struct Counter(std::collections::HashMap<String, i64>);
            impl engage_gift_quota::Counter for Counter {
                fn get(&mut self, key: &str) -> i64 {
                    self.0.get(key).copied().unwrap_or(0)
                }
                fn increment(&mut self, key: &str, _ttl_ms: u64) {
                    *self.0.entry(key.into()).or_default() += 1;
                }
            }
            Box::new(move || {
                let config: engage_gift_quota::Config =
                    parse_config(r#"{"requests_per_day":10}"#).expect("config");
                let v = engage_gift_quota::take(
                    &config,
                    config.requests_per_day,
                    "requests",
                    "kunalg",
                    1_700_000_000_000,
                    &mut Counter(Default::default()),
                );
                std::hint::black_box(v.expect("take"));
            })
        }
    }
}

/// Whether the rows named on the command line include `name`
/// (`cargo bench -p engage --bench plugin_calls -- python router`); all
/// rows when none is named.
fn selected(name: &str) -> bool {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    wanted.is_empty() || wanted.iter().any(|w| name.contains(w.as_str()))
}

/// This thread's minor page faults so far (field 10 of its stat line).
fn minor_faults() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    rest.split_whitespace()
        .nth(7)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn median_us(mut f: impl FnMut(), n: usize) -> f64 {
    let mut times: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as f64 / 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[n / 2]
}

/// One cell of the table: per-call latencies over every thread's calls,
/// throughput, and minor page faults per call (from `/proc/thread-self`).
struct Run {
    p50: f64,
    p99: f64,
    p999: f64,
    per_s: f64,
    faults: f64,
}

fn run(plugins: &Arc<Plugins>, input: &Input, threads: usize, per_thread: usize) -> Run {
    let started = Instant::now();
    let mut times = Vec::with_capacity(threads * per_thread);
    let mut faults = 0;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let f0 = minor_faults();
                    let mut times = Vec::with_capacity(per_thread);
                    for _ in 0..per_thread {
                        let t = Instant::now();
                        let called = plugins.call("demo", input, None, 1_700_000_000_000, "bench");
                        times.push(t.elapsed().as_nanos() as f64 / 1000.0);
                        if let Err(e) = &called {
                            panic!("plugin call failed: {e}");
                        }
                    }
                    (times, minor_faults().saturating_sub(f0))
                })
            })
            .collect();
        for h in handles {
            let (t, f) = h.join().expect("thread");
            times.extend(t);
            faults += f;
        }
    });
    let per_s = times.len() as f64 / started.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    Run {
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
        per_s,
        faults: faults as f64 / times.len() as f64,
    }
}

/// The Python and JavaScript examples (built by `scripts/build-examples`),
/// fresh and warm. Skipped with a note when they have not been built.
fn guest_examples(rt: &tokio::runtime::Runtime, plugins: &Arc<Plugins>) -> anyhow::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests/examples");
    let examples = [
        (
            "python",
            "python_rules.wasm",
            r#"{"daily_cap": 1000000000}"#,
            "buy",
            "amount",
        ),
        ("javascript", "js_rules.wasm", "{}", "purchase", "total"),
    ];
    println!();
    println!(
        "{:<12} {:>12} {:>12} {:>12} {:>10} {:>10} {:>7} {:>12} {:>12} {:>10}",
        "guest",
        "fresh 1t p50",
        "fresh 1t /s",
        "fresh 2t /s",
        "2t p99",
        "2t p99.9",
        "2t/1t",
        "faults/call",
        "warm 1t p50",
        "warm p99.9"
    );
    for (name, file, config, action, param) in examples {
        if !selected(name) {
            continue;
        }
        let Ok(bytes) = std::fs::read(dir.join(file)) else {
            println!("{name:<12} not built: run scripts/build-examples first");
            continue;
        };
        let plugin = format!("{name}-example");
        rt.block_on(plugins.upload("demo", &plugin, bytes))?;
        let bind = |isolation| BindRequest {
            plugin: plugin.clone(),
            version: None,
            config: serde_json::from_str(config).ok(),
            on_error: Default::default(),
            isolation,
            limits: None,
            wasi: Vec::new(),
        };
        let input: Input = serde_json::from_value(serde_json::json!({
            "call": "evaluate",
            "action": { "player": "p1", "name": action, "params": [{ "name": param, "value": "3" }], "url": null, "time_ms": 1_700_000_000_000i64 }
        }))?;
        rt.block_on(plugins.bind("demo", Point::Rules, bind(Isolation::Fresh)))?;
        run(plugins, &input, 1, 50);
        let one = run(plugins, &input, 1, 1000);
        let two = run(plugins, &input, 2, 1000);
        rt.block_on(plugins.bind(
            "demo",
            Point::Rules,
            bind(Isolation::Warm {
                recycle_after: 1_000_000,
            }),
        ))?;
        run(plugins, &input, 1, 50);
        let warm = run(plugins, &input, 1, 2000);
        println!(
            "{name:<12} {:>9.0} µs {:>12.0} {:>12.0} {:>7.0} µs {:>7.0} µs {:>6.2}x {:>12.1} {:>9.0} µs {:>7.0} µs",
            one.p50,
            one.per_s,
            two.per_s,
            two.p99,
            two.p999,
            two.per_s / one.per_s,
            one.faults,
            warm.p50,
            warm.p999
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let dir = std::env::temp_dir().join(format!("engage-bench-{}", engage::ids::random_hex(4)));
    let config = ServerConfig {
        data_dir: dir.clone(),
        ..ServerConfig::default()
    };
    let (state, _background) = rt.block_on(engage::server::open(&config))?;
    let plugins = state.plugins.clone();
    let n = 20_000;
    println!(
        "{:<12} {:>12} {:>14} {:>14} {:>14} {:>8} {:>10} {:>14}",
        "plugin",
        "native p50",
        "fresh 1t p50",
        "fresh 1t /s",
        "fresh 2t /s",
        "2t/1t",
        "2t p99.9",
        "warm 1t p50"
    );
    for (name, input) in inputs() {
        if !selected(name) {
            continue;
        }
        run(&plugins, &input, 1, 2000); // warm up the pool's slots
        let one = run(&plugins, &input, 1, n);
        let two = run(&plugins, &input, 2, n);
        let point = input.point();
        // The same config the fresh runs had (the demo tenant's).
        let config = match name {
            "rules-table" => engage::server::DEMO_RULES,
            "gift-quota" => r#"{"requests_per_day":10}"#,
            _ => "{}",
        };
        let bind = |isolation| BindRequest {
            plugin: name.to_owned(),
            version: None,
            config: serde_json::from_str(config).ok(),
            on_error: Default::default(),
            isolation,
            limits: None,
            wasi: Vec::new(),
        };
        rt.block_on(plugins.bind(
            "demo",
            point,
            bind(Isolation::Warm {
                recycle_after: 1_000_000,
            }),
        ))?;
        run(&plugins, &input, 1, 1000);
        let warm = run(&plugins, &input, 1, n);
        rt.block_on(plugins.bind("demo", point, bind(Isolation::Fresh)))?;
        let native_p50 = median_us(native(name), n);
        println!(
            "{name:<12} {native_p50:>9.2} µs {:>11.2} µs {:>14.0} {:>14.0} {:>7.2}x {:>7.0} µs {:>11.2} µs",
            one.p50,
            one.per_s,
            two.per_s,
            two.per_s / one.per_s,
            two.p999,
            warm.p50
        );
    }
    guest_examples(&rt, &plugins)?;
    drop(state);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
