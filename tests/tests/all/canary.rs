//! Canary bindings, as a tenant deploying a new plugin version uses them:
//! a share of players on the new version, statistics per version, then
//! promoted or rolled back in one call.

use std::collections::BTreeSet;

use engage_tests::{Server, components};
use serde_json::{Value, json};

/// Players the share is measured over.
const PLAYERS: usize = 10_000;
/// How far the measured share may be from the asked one, in percentage
/// points: five standard deviations of a fair draw of 10,000 at 10%
/// (0.3 points each) and 20% (0.4).
const TOLERANCE: f64 = 2.0;

/// Every player's call once (a dry run of the rules), four at a time:
/// for each, the version that answered and the amount it granted.
async fn who_answers(server: &Server, token: &str) -> Vec<(u64, i64)> {
    let mut tasks = Vec::new();
    for part in 0..4 {
        let (http, base, token) = (server.http.clone(), server.base.clone(), token.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for i in (part..PLAYERS).step_by(4) {
                let body = json!({ "call": "evaluate", "action": {
                    "player": format!("player-{i}"), "name": "ok", "params": [],
                    "url": null, "time_ms": 1_700_000_000_000i64 } });
                let a: Value = http
                    .post(format!("{base}/v1/bindings/rules/invoke?dry_run=true"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .expect("sent")
                    .json()
                    .await
                    .expect("json");
                let version = a["version"].as_u64().expect("version");
                let grant = a["output"]["outcome"]["grants"][0]["amount"]
                    .as_i64()
                    .expect("a grant");
                seen.push((i, version, grant));
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all.sort();
    all.into_iter().map(|(_, v, g)| (v, g)).collect()
}

fn on(seen: &[(u64, i64)], version: u64) -> BTreeSet<usize> {
    (0..seen.len()).filter(|&i| seen[i].0 == version).collect()
}

fn share(n: usize) -> f64 {
    n as f64 * 100.0 / PLAYERS as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_answers_its_share_of_players_until_rolled_back_or_promoted() {
    let server = Server::start("canary", |_| {}).await;
    let token = server.tenant("canaries").await;
    for v in [1, 2] {
        let up = server.upload(&token, "hostile", components::HOSTILE).await;
        assert_eq!(up.body["version"], v, "{up:?}");
    }
    let call = |method: &'static str, path: &'static str, body: Option<Value>| {
        server.call(method, path, Some(&token), body)
    };
    let bound = call(
        "PUT",
        "/v1/bindings/rules",
        Some(json!({ "plugin": "hostile", "version": 1, "config": { "amount": 1 } })),
    )
    .await;
    assert_eq!(bound.status, 200, "{bound:?}");
    let none = call("POST", "/v1/bindings/rules/canary/promote", None).await;
    assert_eq!(
        (none.status, none.body["error"]["code"].as_str()),
        (409, Some("no_canary"))
    );

    // Refused, and nothing changes.
    for (body, status, code) in [
        (json!({ "percent": 0, "version": 2 }), 400, "invalid_canary"),
        (
            json!({ "percent": 100, "version": 2 }),
            400,
            "invalid_canary",
        ),
        (
            json!({ "percent": 10, "version": 1 }),
            422,
            "invalid_canary",
        ),
        (
            json!({ "percent": 10, "version": 9 }),
            404,
            "version_not_found",
        ),
        (
            json!({ "percent": 10, "plugin": "nope" }),
            404,
            "plugin_not_found",
        ),
        (
            json!({ "percent": 10, "plugin": "template" }),
            422,
            "wrong_world",
        ),
        (
            json!({ "percent": 10, "config": [1] }),
            400,
            "invalid_config",
        ),
        (json!({ "percent": 10, "share": 3 }), 400, "invalid_json"),
    ] {
        let a = call("PUT", "/v1/bindings/rules/canary", Some(body.clone())).await;
        assert_eq!(
            (a.status, a.body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {a:?}"
        );
    }
    let unchanged = call("GET", "/v1/bindings/rules", None).await;
    assert_eq!(unchanged.body, bound.body);

    // 10% of players on version 2, configured to grant 2.
    let started = call(
        "PUT",
        "/v1/bindings/rules/canary",
        Some(json!({ "version": 2, "percent": 10, "config": { "amount": 2 } })),
    )
    .await;
    assert_eq!(started.status, 200, "{started:?}");
    assert_eq!(
        (
            started.body["version"].as_u64(),
            started.body["canary"]["version"].as_u64(),
            started.body["canary"]["percent"].as_u64()
        ),
        (Some(1), Some(2), Some(10))
    );
    let in_use = call("DELETE", "/v1/plugins/hostile/versions/2", None).await;
    assert_eq!(
        (in_use.status, in_use.body["error"]["code"].as_str()),
        (409, Some("version_bound")),
        "the canary's version cannot be deleted"
    );

    let seen = who_answers(&server, &token).await;
    let tenth = on(&seen, 2);
    // Measured, and bounded below: the share itself.
    eprintln!("canary at 10%: {} of {PLAYERS} players", tenth.len());
    assert!(
        (share(tenth.len()) - 10.0).abs() <= TOLERANCE,
        "{} of {PLAYERS} players on the canary at 10%",
        tenth.len()
    );
    assert!(
        seen.iter().all(|&(v, g)| g == v as i64),
        "each version answered with its own config"
    );
    // The same players again: the same versions.
    assert_eq!(who_answers(&server, &token).await, seen);
    let stats = call("GET", "/v1/bindings/rules/canary", None).await;
    assert_eq!(stats.status, 200, "{stats:?}");
    assert_eq!(
        (
            stats.body["stats"]["canary"]["calls"].as_u64(),
            stats.body["stats"]["stable"]["calls"].as_u64()
        ),
        (
            Some(2 * tenth.len() as u64),
            Some(2 * (PLAYERS - tenth.len()) as u64)
        ),
        "{stats:?}"
    );

    // Widened to 20%: the same canary (its statistics go on), and every
    // player it had is still on it.
    let widened = call(
        "PUT",
        "/v1/bindings/rules/canary",
        Some(json!({ "version": 2, "percent": 20, "config": { "amount": 2 } })),
    )
    .await;
    assert_eq!(
        widened.body["canary"]["started_at_ms"],
        started.body["canary"]["started_at_ms"]
    );
    let fifth = on(&who_answers(&server, &token).await, 2);
    eprintln!("canary at 20%: {} of {PLAYERS} players", fifth.len());
    assert!(
        (share(fifth.len()) - 20.0).abs() <= TOLERANCE,
        "{} players at 20%",
        fifth.len()
    );
    assert!(tenth.is_subset(&fifth), "widening only adds players");

    // Rolled back in one call: nobody on version 2.
    let back = call("DELETE", "/v1/bindings/rules/canary", None).await;
    assert_eq!(back.status, 200, "{back:?}");
    assert!(back.body.get("canary").is_none(), "{back:?}");
    let after = who_answers(&server, &token).await;
    assert!(
        after.iter().all(|&(v, g)| (v, g) == (1, 1)),
        "{} players still on the canary after the rollback",
        on(&after, 2).len()
    );
    let gone = call("GET", "/v1/bindings/rules/canary", None).await;
    assert_eq!(gone.body["error"]["code"], "no_canary");

    // Promoted in one call: everybody on version 2 with its config.
    call(
        "PUT",
        "/v1/bindings/rules/canary",
        Some(json!({ "version": 2, "percent": 50, "config": { "amount": 2 } })),
    )
    .await;
    let promoted = call("POST", "/v1/bindings/rules/canary/promote", None).await;
    assert_eq!(
        (
            promoted.status,
            promoted.body["version"].as_u64(),
            promoted.body["config"].clone(),
            promoted.body.get("canary").is_none()
        ),
        (200, Some(2), json!({ "amount": 2 }), true),
        "{promoted:?}"
    );
    let act = server.act(&token, "ok").await;
    assert_eq!(
        (
            act.body["version"].as_u64(),
            engage_tests::first_grant(&act)
        ),
        (Some(2), Some(2))
    );
    // Version 1 is free to delete now.
    let freed = call("DELETE", "/v1/plugins/hostile/versions/1", None).await;
    assert_eq!(freed.status, 204, "{freed:?}");
}
