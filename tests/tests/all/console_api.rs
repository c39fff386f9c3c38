//! The API the tenant console stands on (and any other client may use):
//! signing out (revoking a token), short-lived tokens, admin session
//! tokens, player search, recent activity per bucket, and trying a config
//! before binding it. The console's pages themselves are tested in a real
//! browser by `scripts/console-test`.

use engage_tests::Server;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_can_be_short_lived_and_revoked_and_the_admin_gets_sessions() {
    let s = Server::start("console-tokens", |_| {}).await;
    let (key, secret) = s.demo_credentials();
    let ask = |ttl: Option<u32>| {
        let mut body = json!({ "api_key": key, "api_secret": secret });
        if let Some(t) = ttl {
            body["ttl_s"] = t.into();
        }
        s.call("POST", "/v1/auth/token", None, Some(body))
    };
    for bad in [0, 59, 259_201] {
        let a = ask(Some(bad)).await;
        assert_eq!(
            (a.status, a.body["error"]["code"].as_str()),
            (400, Some("invalid_ttl")),
            "{bad}"
        );
    }
    let short = ask(Some(60)).await;
    assert_eq!(short.status, 200, "{short:?}");
    assert_eq!(short.body["tenant"], "demo");
    let expires = short.body["expires_at"]
        .as_str()
        .expect("expires_at")
        .to_owned();
    let long = ask(None).await;
    assert!(
        long.body["expires_at"].as_str().expect("expires_at") > expires.as_str(),
        "3 days by default"
    );

    // Signing out revokes that token only.
    let (a, b) = (
        short.body["token"].as_str().unwrap(),
        long.body["token"].as_str().unwrap(),
    );
    assert_eq!(
        s.call("GET", "/v1/players", Some(a), None).await.status,
        200
    );
    assert_eq!(
        s.call("DELETE", "/v1/auth/token", Some(a), None)
            .await
            .status,
        204
    );
    assert_eq!(
        s.call("GET", "/v1/players", Some(a), None).await.status,
        401
    );
    assert_eq!(
        s.call("DELETE", "/v1/auth/token", Some(a), None)
            .await
            .status,
        401
    );
    assert_eq!(
        s.call("GET", "/v1/players", Some(b), None).await.status,
        200
    );

    // An admin session token works where the admin token does, until revoked.
    assert_eq!(
        s.call("POST", "/admin/token", Some(b), None).await.status,
        401,
        "not for a tenant"
    );
    let session = s
        .call("POST", "/admin/token", Some(&s.admin_token), None)
        .await;
    assert_eq!(session.status, 200, "{session:?}");
    assert!(session.body.get("tenant").is_none());
    let t = session.body["token"].as_str().unwrap();
    assert_eq!(
        s.call("GET", "/admin/tenants", Some(t), None).await.status,
        200
    );
    assert_eq!(
        s.call("GET", "/v1/players", Some(t), None).await.status,
        401,
        "not a tenant token"
    );
    assert_eq!(
        s.call("DELETE", "/admin/token", Some(t), None).await.status,
        204
    );
    assert_eq!(
        s.call("GET", "/admin/tenants", Some(t), None).await.status,
        401
    );
    // The admin token itself stays: it is replaced by configuration only.
    assert_eq!(
        s.call("DELETE", "/admin/token", Some(&s.admin_token), None)
            .await
            .status,
        204
    );
    assert_eq!(
        s.call("GET", "/admin/tenants", Some(&s.admin_token), None)
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_search_matches_ids_names_emails_and_phone_digits_of_one_tenant() {
    let s = Server::start("console-search", |_| {}).await;
    let t = s.demo_token().await;
    let other = s.tenant("search-other").await;
    for p in [
        json!({ "id": "ann", "first_name": "Ann", "last_name": "Lee", "email": "Ann.Lee@Example.com" }),
        json!({ "id": "bob", "nickname": "bobby", "phone": "+66 81 234 5678" }),
        json!({ "id": "cara", "username": "c4ra", "phone": "+15551230000" }),
    ] {
        assert_eq!(
            s.call("POST", "/v1/players", Some(&t), Some(p))
                .await
                .status,
            201
        );
    }
    s.call(
        "POST",
        "/v1/players",
        Some(&other),
        Some(json!({ "id": "ann-elsewhere" })),
    )
    .await;
    let ids = |q: &str| {
        let (s, t) = (&s, t.clone());
        let q = q.to_owned();
        async move {
            let a = s
                .send(
                    s.request("GET", "/v1/players", Some(&t))
                        .query(&[("q", q.as_str())]),
                )
                .await;
            assert_eq!(a.status, 200, "{a:?}");
            a.body["players"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids("ann").await, ["ann"], "not the other tenant's");
    assert_eq!(ids("EXAMPLE.COM").await, ["ann"]);
    assert_eq!(ids("ann lee").await, ["ann"], "a full name");
    assert_eq!(ids("BOBBY").await, ["bob"]);
    assert_eq!(
        ids("234-5678").await,
        ["bob"],
        "the digits of a phone number"
    );
    assert_eq!(ids("555 123").await, ["cara"]);
    assert_eq!(
        ids("55").await,
        Vec::<String>::new(),
        "fewer than three digits match no phone"
    );
    assert_eq!(ids("zzz").await, Vec::<String>::new());
    // Paged like the list: `next` continues after the last one shown.
    let a = s
        .call("GET", "/v1/players?q=a&limit=1", Some(&t), None)
        .await;
    assert_eq!(a.body["players"][0]["id"], "ann");
    let next = a.body["next"].as_str().expect("a next page").to_owned();
    let b = s
        .call(
            "GET",
            &format!("/v1/players?q=a&limit=5&after={next}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(b.body["players"].as_array().unwrap().len(), 1, "{b:?}");
    assert_eq!(b.body["players"][0]["id"], "cara");
    let long = "x".repeat(101);
    let a = s
        .call("GET", &format!("/v1/players?q={long}"), Some(&t), None)
        .await;
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_counts_what_happened_in_its_window_per_bucket() {
    let s = Server::start("console-activity", |_| {}).await;
    let t = s.demo_token().await;
    let other = s.tenant("activity-other").await;
    s.player(&t, "p1").await;
    s.credit(&t, "p1", 500).await;
    s.goods(&t, "g", 10, &["C1".into(), "C2".into()]).await;
    for _ in 0..3 {
        let a = s
            .call(
                "POST",
                "/v1/actions",
                Some(&t),
                Some(json!({ "player": "p1", "action": "buy" })),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
    }
    let r = s
        .call(
            "POST",
            "/v1/goods/g/redeem",
            Some(&t),
            Some(json!({ "player": "p1" })),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    for text in ["one", "two"] {
        let m = s
            .call(
                "POST",
                "/v1/messages",
                Some(&t),
                Some(json!({ "to": ["+6681234567"], "body": text })),
            )
            .await;
        assert!(m.status < 300, "{m:?}");
    }
    let sum = |body: &serde_json::Value, k: &str| -> u64 {
        body["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b[k].as_u64().unwrap())
            .sum()
    };
    let hour = s
        .call("GET", "/v1/activity?window=hour", Some(&t), None)
        .await;
    assert_eq!(hour.status, 200, "{hour:?}");
    assert_eq!(hour.body["buckets"].as_array().unwrap().len(), 12);
    assert_eq!(hour.body["bucket_ms"], 300_000);
    assert_eq!(
        (
            sum(&hour.body, "actions"),
            sum(&hour.body, "redemptions"),
            sum(&hour.body, "messages")
        ),
        (3, 1, 2)
    );
    let statuses: u64 = hour.body["messages_by_status"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(statuses, 2);
    assert_eq!(hour.body["capped"], false);
    let newest = hour.body["buckets"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        newest["actions"], 3,
        "everything happened in the newest bucket: {newest}"
    );
    let day = s.call("GET", "/v1/activity", Some(&t), None).await;
    assert_eq!(
        (
            day.body["window"].as_str(),
            day.body["buckets"].as_array().unwrap().len()
        ),
        (Some("day"), 24)
    );
    assert_eq!(sum(&day.body, "actions"), 3);
    let theirs = s.call("GET", "/v1/activity", Some(&other), None).await;
    assert_eq!(
        sum(&theirs.body, "actions") + sum(&theirs.body, "messages"),
        0,
        "per tenant"
    );
    let bad = s
        .call("GET", "/v1/activity?window=week", Some(&t), None)
        .await;
    assert_eq!(bad.status, 400, "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_is_tried_on_an_action_without_binding_or_writing_anything() {
    let s = Server::start("console-try", |_| {}).await;
    let t = s.demo_token().await;
    let bound = s
        .call("GET", "/v1/bindings/rules", Some(&t), None)
        .await
        .body;
    let config = json!({ "rules": [ { "name": "once", "action": "buy",
        "award": { "currency": "points", "amount": 42 }, "cap": { "count": 1, "per": "day" } } ] });
    let input = json!({ "call": "evaluate", "action": { "player": "p1", "name": "buy", "params": [], "url": null, "time_ms": 1_800_000_000_000i64 } });
    for _ in 0..2 {
        // A cap of one a day matches both times: the first try kept nothing.
        let a = s
            .call(
                "POST",
                "/v1/bindings/rules/try",
                Some(&t),
                Some(json!({ "config": config, "input": input })),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.body["committed"], false);
        assert_eq!(a.body["output"]["outcome"]["grants"][0]["amount"], 42);
        assert_eq!(
            a.body["output"]["outcome"]["trace"][0]["matched"], true,
            "{a:?}"
        );
    }
    let after = s
        .call("GET", "/v1/bindings/rules", Some(&t), None)
        .await
        .body;
    assert_eq!(after, bound, "the binding is unchanged");
    let refused = s
        .call(
            "POST",
            "/v1/bindings/rules/try",
            Some(&t),
            Some(json!({ "config": { "rules": "none" }, "input": input })),
        )
        .await;
    assert_eq!(
        (refused.status, refused.body["error"]["code"].as_str()),
        (422, Some("config_rejected")),
        "{refused:?}"
    );
    let not_object = s
        .call(
            "POST",
            "/v1/bindings/rules/try",
            Some(&t),
            Some(json!({ "config": [1], "input": input })),
        )
        .await;
    assert_eq!(not_object.status, 400, "{not_object:?}");
    let render = json!({ "call": "render", "template": "x", "vars": [] });
    let wrong = s
        .call(
            "POST",
            "/v1/bindings/rules/try",
            Some(&t),
            Some(json!({ "config": {}, "input": render })),
        )
        .await;
    assert_eq!(
        (wrong.status, wrong.body["error"]["code"].as_str()),
        (422, Some("wrong_point"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_unless_turned_off() {
    let on = Server::start("console-on", |_| {}).await;
    let page = on.send(on.request("GET", "/console/sign-in", None)).await;
    assert_eq!(page.status, 200);
    let off = Server::start("console-off", |c| c.console.enabled = false).await;
    let none = off.send(off.request("GET", "/console/sign-in", None)).await;
    assert_eq!(
        (none.status, none.body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    // The API is the same either way.
    assert_eq!(off.call("GET", "/health", None, None).await.status, 200);
}
