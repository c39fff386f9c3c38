//! The plugin contract over versions: a bind checks the config with the
//! plugin (0.2.0's `validate-config`) and refuses what it refuses, and a
//! component built against 0.1.0 before 0.2.0 existed keeps loading,
//! binding and deciding requests unchanged.

use engage_tests::{Server, example_component, first_grant};
use serde_json::{Value, json};

fn fixture(file: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/components")
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn login(player: &str, time_ms: i64) -> Value {
    json!({ "call": "evaluate", "action": { "player": player, "name": "login", "params": [], "url": null, "time_ms": time_ms } })
}

async fn bound(server: &Server, token: &str, point: &str) -> Value {
    let b = server
        .call("GET", &format!("/v1/bindings/{point}"), Some(token), None)
        .await;
    assert_eq!(b.status, 200, "{b:?}");
    b.body
}

/// The case: `{"points":5}` for the rules table, which has no such
/// field, used to bind and then fail every action with 502. Now the bind
/// is refused with the plugin's own message and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_the_plugin_refuses_is_never_bound() {
    let server = Server::start("config-check", |_| {}).await;
    let token = server.tenant("cc").await;
    let before = bound(&server, &token, "rules").await;

    for (point, plugin, config, says) in [
        (
            "rules",
            "rules-table",
            json!({ "points": 5 }),
            "unknown field `points`",
        ),
        (
            "rules",
            "rules-table",
            json!({ "utc_offset": "CET", "rules": [] }),
            "utc_offset `CET`",
        ),
        (
            "rules",
            "rules-table",
            json!({ "rules": [{ "name": "a", "action": "buy", "award": { "currency": "points" } }] }),
            "awards no amount",
        ),
        (
            "gift",
            "gift-quota",
            json!({ "requests_per_dya": 3 }),
            "unknown field `requests_per_dya`",
        ),
        (
            "template",
            "template",
            json!({ "mising": "keep" }),
            "unknown field `mising`",
        ),
        (
            "route",
            "router",
            json!({ "default_provider": 7 }),
            "invalid type",
        ),
    ] {
        let before = bound(&server, &token, point).await;
        let r = server
            .call(
                "PUT",
                &format!("/v1/bindings/{point}"),
                Some(&token),
                Some(json!({ "plugin": plugin, "config": config })),
            )
            .await;
        assert_eq!(r.status, 422, "{point} {config}: {r:?}");
        assert_eq!(r.body["error"]["code"], "config_rejected", "{r:?}");
        assert_eq!(
            r.body["error"]["details"]["plugin_code"], "bad-config",
            "{r:?}"
        );
        let message = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{point}: {message}");
        assert!(message.contains("nothing was bound"), "{message}");
        assert_eq!(
            bound(&server, &token, point).await,
            before,
            "{point} unchanged"
        );
    }

    // Actions still run on the binding in force.
    let a = server.act(&token, "buy").await;
    assert_ne!(a.status, 502, "{a:?}");
    assert_eq!(bound(&server, &token, "rules").await, before);

    // A config the plugin accepts binds as before.
    let ok = json!({ "plugin": "rules-table", "config": { "rules": [{ "name": "buy", "action": "buy", "award": { "amount": 7 } }] } });
    let r = server
        .call("PUT", "/v1/bindings/rules", Some(&token), Some(ok))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(first_grant(&server.act(&token, "buy").await), Some(7));
}

/// Plugins in Python and JavaScript check their config too (the examples
/// export `validate-config`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_plugins_check_their_config() {
    let server = Server::start("config-check-guests", |_| {}).await;
    let token = server.tenant("ccg").await;
    for (file, name, good, bad, says) in [
        (
            "python_rules.wasm",
            "weekend",
            json!({ "points_per_unit": 2 }),
            json!({ "points_per_unit": 2, "daly_cap": 1 }),
            "unknown field `daly_cap`",
        ),
        (
            "js_rules.wasm",
            "tier",
            json!({ "rate": 2 }),
            json!({ "rate": "two" }),
            "`rate` must be a whole number",
        ),
    ] {
        let up = server.upload(&token, name, &example_component(file)).await;
        assert_eq!(up.status, 201, "{up:?}");
        assert_eq!(up.body["wit"], "0.2.0", "{up:?}");
        let r = server
            .call(
                "PUT",
                "/v1/bindings/rules",
                Some(&token),
                Some(json!({ "plugin": name, "config": bad })),
            )
            .await;
        assert_eq!(r.status, 422, "{file}: {r:?}");
        assert_eq!(r.body["error"]["code"], "config_rejected");
        let message = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{file}: {message}");
        assert_ne!(bound(&server, &token, "rules").await["plugin"], name);
        let r = server
            .call(
                "PUT",
                "/v1/bindings/rules",
                Some(&token),
                Some(json!({ "plugin": name, "config": good })),
            )
            .await;
        assert_eq!(r.status, 200, "{file}: {r:?}");
        assert_eq!(bound(&server, &token, "rules").await["plugin"], name);
    }
}

/// `tests/fixtures/components/streaks-wit-0.1.0.wasm` was built from the
/// Rust example before 0.2.0 existed. It still uploads (as 0.1.0), binds
/// with any config object (0.1.0 has no check) and decides actions, its
/// key-value state and host views working as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_built_for_0_1_0_keeps_working() {
    let server = Server::start("wit-0-1-0", |_| {}).await;
    let token = server.tenant("old").await;
    let up = server
        .upload(&token, "streaks", &fixture("streaks-wit-0.1.0.wasm"))
        .await;
    assert_eq!(up.status, 201, "{up:?}");
    assert_eq!(
        (up.body["world"].as_str(), up.body["wit"].as_str()),
        (Some("rules"), Some("0.1.0"))
    );
    let bind = json!({ "plugin": "streaks", "config": { "points": 5, "streak_bonus": 40, "streak_length": 2 } });
    let r = server
        .call("PUT", "/v1/bindings/rules", Some(&token), Some(bind))
        .await;
    assert_eq!(r.status, 200, "{r:?}");

    // Real actions through the domain: 5 points a login, and on the second
    // login of the week the bonus (the host's action-count view) once (kv).
    let t = 1_700_000_000_000i64;
    server.player(&token, "p1").await;
    let mut grants = Vec::new();
    for _ in 0..3 {
        let a = server
            .call(
                "POST",
                "/v1/actions",
                Some(&token),
                Some(json!({ "player": "p1", "action": "login" })),
            )
            .await;
        assert!(a.status < 300, "{a:?}");
        grants.push(a.body.clone());
    }
    assert_eq!(
        server.balance(&token, "p1").await,
        5 + (5 + 40) + 5,
        "{grants:?}"
    );
    let dry = server
        .call(
            "POST",
            "/v1/bindings/rules/invoke?dry_run=true",
            Some(&token),
            Some(login("p2", t)),
        )
        .await;
    assert_eq!(
        (dry.body["plugin"].as_str(), first_grant(&dry)),
        (Some("streaks"), Some(5)),
        "{dry:?}"
    );

    // The listing says which contract each version speaks.
    let p = server
        .call("GET", "/v1/plugins/streaks", Some(&token), None)
        .await;
    assert_eq!(p.body["versions"][0]["wit"], "0.1.0", "{p:?}");
    let table = server
        .call("GET", "/v1/plugins/rules-table", Some(&token), None)
        .await;
    let latest = table.body["versions"]
        .as_array()
        .and_then(|v| v.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(latest["wit"], "0.2.0", "{table:?}");
}
