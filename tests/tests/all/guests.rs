//! "Any language": the Python (componentize-py) and JavaScript
//! (componentize-qjs) example plugins, built with no WASI imports, uploaded
//! and run through the host over HTTP.

use engage_tests::{Server, example_component, first_grant};
use serde_json::{Value, json};

fn buy(name: &str, params: Value, time_ms: i64) -> Value {
    json!({ "call": "evaluate", "action": { "player": "p1", "name": name, "params": params, "url": null, "time_ms": time_ms } })
}

/// 2023-11-18T12:00:00Z, a Saturday.
const SATURDAY: i64 = 1_700_308_800_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_rules_plugin() {
    let server = Server::start("python", |_| {}).await;
    let token = server.tenant("py").await;
    let up = server
        .upload(&token, "weekend", &example_component("python_rules.wasm"))
        .await;
    assert_eq!(
        (up.status, up.body["world"].as_str()),
        (201, Some("rules")),
        "{up:?}"
    );
    let bind = json!({ "plugin": "weekend", "config": { "points_per_unit": 5, "daily_cap": 2 } });
    assert_eq!(
        server
            .call("PUT", "/v1/bindings/rules", Some(&token), Some(bind))
            .await
            .status,
        200
    );

    let invoke = |body| {
        server.call(
            "POST",
            "/v1/bindings/rules/invoke",
            Some(&token),
            Some(body),
        )
    };
    let a = invoke(buy(
        "buy",
        json!([{ "name": "amount", "value": "3" }]),
        SATURDAY,
    ))
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        first_grant(&a),
        Some(30),
        "3 units x 5 points, doubled on Saturday"
    );
    assert_eq!(
        a.body["output"]["outcome"]["grants"][0]["reason"],
        "weekend-double"
    );
    assert_eq!(a.body["logs"][0]["message"], "awarding points");
    let monday = SATURDAY + 2 * 86_400_000;
    assert_eq!(
        first_grant(
            &invoke(buy(
                "buy",
                json!([{ "name": "amount", "value": "3" }]),
                monday
            ))
            .await
        ),
        Some(15)
    );
    // The cap lives in the plugin's key-value store: 2 awards a day.
    assert_eq!(
        first_grant(
            &invoke(buy(
                "buy",
                json!([{ "name": "amount", "value": "1" }]),
                SATURDAY
            ))
            .await
        ),
        Some(10)
    );
    let capped = invoke(buy(
        "buy",
        json!([{ "name": "amount", "value": "1" }]),
        SATURDAY,
    ))
    .await;
    assert_eq!(first_grant(&capped), None);
    assert!(
        capped.body["output"]["outcome"]["trace"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("capped")
    );
    // A raised PluginError is a guest error with its code.
    let bad = invoke(buy(
        "buy",
        json!([{ "name": "amount", "value": "lots" }]),
        monday,
    ))
    .await;
    assert_eq!(bad.body["error"]["code"], "plugin_rejected");
    assert_eq!(
        bad.body["error"]["details"]["error"]["code"],
        "bad-parameter"
    );

    // Warm isolation serves the same answers from a reused instance.
    let warm = json!({ "plugin": "weekend", "config": { "points_per_unit": 5, "daily_cap": 100 }, "isolation": { "mode": "warm", "recycle_after": 50 } });
    assert_eq!(
        server
            .call("PUT", "/v1/bindings/rules", Some(&token), Some(warm))
            .await
            .status,
        200
    );
    let later = SATURDAY + 7 * 86_400_000;
    for _ in 0..3 {
        assert_eq!(
            first_grant(
                &invoke(buy(
                    "buy",
                    json!([{ "name": "amount", "value": "2" }]),
                    later
                ))
                .await
            ),
            Some(20)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_rules_plugin_and_s64_round_trip() {
    let server = Server::start("javascript", |_| {}).await;
    let token = server.tenant("js").await;
    let up = server
        .upload(&token, "tiers", &example_component("js_rules.wasm"))
        .await;
    assert_eq!(
        (up.status, up.body["world"].as_str()),
        (201, Some("rules")),
        "{up:?}"
    );
    let bind = json!({ "plugin": "tiers", "config": { "rate": 2 } });
    assert_eq!(
        server
            .call("PUT", "/v1/bindings/rules", Some(&token), Some(bind))
            .await
            .status,
        200
    );

    // An s64 goes in (time_ms) and comes back out (the event, and the
    // grant's amount) unchanged.
    let time_ms = 1_795_402_540_293i64;
    let a = server
        .call(
            "POST",
            "/v1/bindings/rules/invoke",
            Some(&token),
            Some(buy(
                "purchase",
                json!([{ "name": "total", "value": "40" }]),
                time_ms,
            )),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(first_grant(&a), Some(80));
    let event: Value = serde_json::from_str(
        a.body["output"]["outcome"]["events"][0]["data"]
            .as_str()
            .unwrap_or("{}"),
    )
    .unwrap_or_default();
    assert_eq!(event["time_ms"], time_ms.to_string());
    assert_eq!(a.body["logs"][0]["fields"][0], json!(["points", "80"]));

    let bad = server
        .call(
            "POST",
            "/v1/bindings/rules/invoke",
            Some(&token),
            Some(buy(
                "purchase",
                json!([{ "name": "total", "value": "x" }]),
                time_ms,
            )),
        )
        .await;
    assert_eq!(
        bad.body["error"]["details"]["error"]["code"],
        "bad-parameter"
    );
    let other = server
        .call(
            "POST",
            "/v1/bindings/rules/invoke",
            Some(&token),
            Some(buy("login", json!([]), time_ms)),
        )
        .await;
    assert_eq!(first_grant(&other), None);
}
