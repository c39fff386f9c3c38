//! Per-call cost of the first-party plugins through the real runtime:
//! a fresh sandbox per call on 1 and 2 threads, and a warm instance.
//!
//! Run: `cargo bench -p engage --bench plugin_calls`

use std::sync::Arc;
use std::time::Instant;

use engage::config::ServerConfig;
use engage::plugins::{BindRequest, Input, Isolation, Plugins};

fn inputs() -> Vec<(&'static str, Input)> {
    let action: engage::plugins::bindings::Action = serde_json::from_value(serde_json::json!({
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

fn run(plugins: &Arc<Plugins>, input: &Input, threads: usize, per_thread: usize) -> (f64, f64) {
    let started = Instant::now();
    let mut medians = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut times = Vec::with_capacity(per_thread);
                    for _ in 0..per_thread {
                        let t = Instant::now();
                        let called = plugins.call("demo", input, None, 1_700_000_000_000, "bench");
                        times.push(t.elapsed().as_nanos() as f64 / 1000.0);
                        assert!(called.is_ok());
                    }
                    times.sort_by(f64::total_cmp);
                    times[times.len() / 2]
                })
            })
            .collect();
        for h in handles {
            medians.push(h.join().expect("thread"));
        }
    });
    let throughput = (threads * per_thread) as f64 / started.elapsed().as_secs_f64();
    (
        medians.iter().sum::<f64>() / medians.len() as f64,
        throughput,
    )
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let dir = std::env::temp_dir().join(format!("engage-bench-{}", engage::ids::random_hex(4)));
    let config = ServerConfig {
        data_dir: dir.clone(),
        ..ServerConfig::default()
    };
    let state = rt.block_on(engage::server::open(&config))?;
    let plugins = state.plugins.clone();
    let n = 20_000;
    println!(
        "{:<12} {:>14} {:>14} {:>14} {:>8} {:>14}",
        "plugin", "fresh 1t p50", "fresh 1t /s", "fresh 2t /s", "2t/1t", "warm 1t p50"
    );
    for (name, input) in inputs() {
        run(&plugins, &input, 1, 2000); // warm up the pool's slots
        let (p50_1, tput_1) = run(&plugins, &input, 1, n);
        let (_, tput_2) = run(&plugins, &input, 2, n);
        let point = input.point();
        let bind = |isolation| BindRequest {
            plugin: name.to_owned(),
            version: None,
            config: None,
            on_error: Default::default(),
            isolation,
            limits: None,
        };
        rt.block_on(plugins.bind(
            "demo",
            point,
            bind(Isolation::Warm {
                recycle_after: 1_000_000,
            }),
        ))?;
        run(&plugins, &input, 1, 1000);
        let (warm_p50, _) = run(&plugins, &input, 1, n);
        rt.block_on(plugins.bind("demo", point, bind(Isolation::Fresh)))?;
        println!(
            "{name:<12} {:>11.2} µs {:>14.0} {:>14.0} {:>7.2}x {:>11.2} µs",
            p50_1,
            tput_1,
            tput_2,
            tput_2 / tput_1,
            warm_p50
        );
    }
    drop(state);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
