//! The authoring kit's local runner against the server: the same hostile
//! component, with the same limits, fails the same way in both.

use engage::kit::{LimitArgs, RunArgs, report::Outcome};
use engage_tests::{Server, components, temp_dir};
use serde_json::{Value, json};

fn call(name: &str) -> Value {
    json!({ "call": "evaluate", "action": { "player": "p1", "name": name, "params": [], "url": null, "time_ms": 1_700_000_000_000i64 } })
}

/// `engage plugin run` on `file` with `input` and limits (what the CLI
/// does after parsing its arguments).
fn run_locally(file: &std::path::Path, input: &Value, limits: LimitArgs) -> (Value, Outcome) {
    let dir = file.parent().expect("dir");
    let input_file = dir.join("input.json");
    std::fs::write(&input_file, input.to_string()).expect("write input");
    let args = RunArgs {
        file: file.to_owned(),
        input: input_file,
        plugin_config: None,
        kv: None,
        views: None,
        now_ms: None,
        tenant: "local".into(),
        json: true,
        limits,
    };
    let ran = engage::kit::run_report(&args).expect("runs");
    (ran.report, ran.outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_enforces_the_limits_production_does() {
    let server = Server::start("kit-limits", |_| {}).await;
    let token = server.tenant("kit").await;
    assert_eq!(
        server
            .upload(&token, "hostile", components::HOSTILE)
            .await
            .status,
        201
    );
    let dir = temp_dir("kit-limits-local");
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("hostile.wasm");
    std::fs::write(&file, components::HOSTILE).expect("write");

    for (action, fuel, timeout_ms, memory_mib, kind) in [
        ("loop", 1_000_000u64, 5_000u64, 64usize, "out_of_fuel"),
        ("loop", 20_000_000_000, 50, 64, "timeout"),
        ("grow", 20_000_000_000, 5_000, 16, "memory_limit"),
        ("huge", 200_000_000, 5_000, 64, "output_too_large"),
        ("panic", 200_000_000, 5_000, 64, "panic"),
    ] {
        let bind = json!({ "plugin": "hostile", "limits": { "fuel": fuel, "timeout_ms": timeout_ms, "memory_mib": memory_mib } });
        let b = server
            .call("PUT", "/v1/bindings/rules", Some(&token), Some(bind))
            .await;
        assert_eq!(b.status, 200, "{b:?}");
        let prod = server
            .call(
                "POST",
                "/v1/bindings/rules/invoke",
                Some(&token),
                Some(call(action)),
            )
            .await;
        assert_eq!(
            prod.body["error"]["details"]["error"]["kind"], kind,
            "server, {action}: {prod:?}"
        );

        let (report, outcome) = run_locally(
            &file,
            &call(action),
            LimitArgs {
                fuel: Some(fuel),
                timeout_ms: Some(timeout_ms),
                memory_mib: Some(memory_mib),
            },
        );
        assert_eq!(report["error"]["kind"], kind, "runner, {action}: {report}");
        let expected = if kind == "panic" {
            Outcome::Failed
        } else {
            Outcome::LimitExceeded
        };
        assert_eq!(outcome, expected, "{action}");
        assert_eq!(outcome.exit_code(), if kind == "panic" { 1 } else { 3 });
        if kind == "out_of_fuel" {
            assert_eq!(report["usage"]["fuel"]["used"], json!(fuel), "{report}");
        }
        if kind == "memory_limit" {
            let peak = report["usage"]["memory_bytes"]["used"]
                .as_u64()
                .unwrap_or(0);
            assert!(peak <= 16 << 20, "{peak}");
        }
        if kind == "panic" {
            assert!(
                report["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("boom: player p1"),
                "{report}"
            );
        }
    }

    // And an answer: same output in both, usage reported.
    let b = server
        .call(
            "PUT",
            "/v1/bindings/rules",
            Some(&token),
            Some(json!({ "plugin": "hostile" })),
        )
        .await;
    assert_eq!(b.status, 200);
    let prod = server
        .call(
            "POST",
            "/v1/bindings/rules/invoke",
            Some(&token),
            Some(call("ok")),
        )
        .await;
    let (report, outcome) = run_locally(&file, &call("ok"), LimitArgs::default());
    assert_eq!(outcome, Outcome::Answered);
    assert_eq!(report["output"], prod.body["output"], "{report}");
    assert!(report["usage"]["fuel"]["used"].as_u64().unwrap_or(0) > 0);
    assert_eq!(report["usage"]["fuel"]["limit"], 200_000_000);
    assert_eq!(report["usage"]["wall_ms"]["limit"], 100);
    assert_eq!(report["usage"]["memory_bytes"]["limit"], 64 << 20);
    assert_eq!(report["usage"]["output_bytes"]["limit"], 256 * 1024);
    let _ = std::fs::remove_dir_all(&dir);
}
