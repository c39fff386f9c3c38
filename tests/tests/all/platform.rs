//! The platform, driven over HTTP: bootstrap, tenants and tokens, plugin
//! upload and binding, hostile plugins, isolation, hot swap, restart.

use engage_tests::{Server, action, components, first_grant};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_creates_demo_tenant_and_credentials() {
    let server = Server::start("bootstrap", |_| {}).await;
    let path = server.config.data_dir.join("credentials.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("credentials.json")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (key, secret) = server.demo_credentials();
    let token = server.token(&key, &secret).await;
    // The demo tenant's first-party rule table awards the seed's 100 points.
    let a = server.act(&token, "buy").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(first_grant(&a), Some(100));
    assert_eq!(a.body["plugin"], "rules-table");
    // Every point is bound to a first-party plugin.
    let b = server.call("GET", "/v1/bindings", Some(&token), None).await;
    let points: Vec<_> = b.body["bindings"]
        .as_array()
        .expect("list")
        .iter()
        .map(|b| b["point"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(points, ["gift", "route", "rules", "template"]);
    let health = server.call("GET", "/health", None, None).await;
    assert_eq!(health.body["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_tokens() {
    let server = Server::start("tenants", |_| {}).await;
    let created = server
        .call(
            "POST",
            "/admin/tenants",
            Some(&server.admin_token),
            Some(json!({ "name": "acme" })),
        )
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.body["tenant"], "acme");
    let key = created.body["api_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let secret = created.body["api_secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let dup = server
        .call(
            "POST",
            "/admin/tenants",
            Some(&server.admin_token),
            Some(json!({ "name": "acme" })),
        )
        .await;
    assert_eq!(
        (dup.status, dup.body["error"]["code"].as_str()),
        (409, Some("tenant_exists"))
    );
    let bad = server
        .call(
            "POST",
            "/admin/tenants",
            Some(&server.admin_token),
            Some(json!({ "name": "Not OK!" })),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["error"]["code"].as_str()),
        (400, Some("invalid_name"))
    );
    let not_admin = server
        .call(
            "POST",
            "/admin/tenants",
            Some("wrong"),
            Some(json!({ "name": "x" })),
        )
        .await;
    assert_eq!(not_admin.status, 401);
    let no_auth = server
        .call("POST", "/admin/tenants", None, Some(json!({ "name": "x" })))
        .await;
    assert_eq!(no_auth.status, 401);
    let garbage = server
        .call(
            "POST",
            "/admin/tenants",
            Some(&server.admin_token),
            Some(json!({ "nom": "x" })),
        )
        .await;
    assert_eq!(
        (garbage.status, garbage.body["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );

    let wrong = server
        .call(
            "POST",
            "/v1/auth/token",
            None,
            Some(json!({ "api_key": key, "api_secret": "nope" })),
        )
        .await;
    assert_eq!(
        (wrong.status, wrong.body["error"]["code"].as_str()),
        (401, Some("bad_credentials"))
    );
    let token = server.token(&key, &secret).await;
    let issued = server
        .call(
            "POST",
            "/v1/auth/token",
            None,
            Some(json!({ "api_key": key, "api_secret": secret })),
        )
        .await;
    assert!(
        issued.body["expires_at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    let renewed = server
        .call("POST", "/v1/auth/renew", Some(&token), None)
        .await;
    assert_eq!(renewed.status, 200);
    assert_ne!(renewed.body["token"], json!(token));
    let with_renewed = server
        .call("GET", "/v1/plugins", renewed.body["token"].as_str(), None)
        .await;
    assert_eq!(with_renewed.status, 200);
    let bogus = server.call("GET", "/v1/plugins", Some("bogus"), None).await;
    assert_eq!(
        (bogus.status, bogus.body["error"]["code"].as_str()),
        (401, Some("bad_token"))
    );
    // The new tenant got the first-party plugins.
    let plugins = server.call("GET", "/v1/plugins", Some(&token), None).await;
    assert_eq!(plugins.body["plugins"].as_array().map(Vec::len), Some(4));
    let listed = server
        .call("GET", "/admin/tenants", Some(&server.admin_token), None)
        .await;
    assert_eq!(listed.body["tenants"].as_array().map(Vec::len), Some(2));
}

/// A tenant cannot fill the disk with uploads: past its version and byte
/// quota an upload is refused (507) and stores nothing; another tenant still
/// uploads, and the first-party plugins do not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_storage_is_bounded_per_tenant() {
    let server = Server::start("plugin-quota", |c| {
        c.runtime.max_plugin_versions_per_tenant = 2;
    })
    .await;
    let (a, b) = (server.tenant("qa").await, server.tenant("qb").await);
    for name in ["one", "two"] {
        let up = server.upload(&a, name, components::HOSTILE).await;
        assert_eq!(up.status, 201, "{up:?}");
    }
    let full = server.upload(&a, "three", components::HOSTILE).await;
    assert_eq!(
        (full.status, full.body["error"]["code"].as_str()),
        (507, Some("quota_exceeded")),
        "{full:?}"
    );
    let again = server.upload(&a, "one", components::HOSTILE).await;
    assert_eq!(again.status, 507, "a new version counts too: {again:?}");
    let listed = server.call("GET", "/v1/plugins", Some(&a), None).await;
    let names: Vec<&str> = listed.body["plugins"]
        .as_array()
        .map(|l| l.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(!names.contains(&"three"), "{names:?}");
    assert_eq!(
        names.len(),
        6,
        "four first-party plugins and two uploads: {names:?}"
    );
    let other = server.upload(&b, "one", components::HOSTILE).await;
    assert_eq!(
        other.status, 201,
        "another tenant's quota is its own: {other:?}"
    );

    // Deleting a version frees the quota; a retry with its key answers the
    // same, without one finds nothing; a bound version stays.
    let sha = other.body["sha256"].as_str().expect("sha").to_owned();
    let stored = || {
        server
            .state()
            .plugins
            .component_stored(&sha)
            .expect("read the store")
    };
    let delete = |name: &'static str, key: Option<&'static str>| {
        let mut r = server.request(
            "DELETE",
            &format!("/v1/plugins/{name}/versions/1"),
            Some(&a),
        );
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        server.send(r)
    };
    let (gone, again) = (
        delete("one", Some("d1")).await,
        delete("one", Some("d1")).await,
    );
    assert_eq!(
        (gone.status, again.status),
        (204, 204),
        "{gone:?} {again:?}"
    );
    assert!(again.replayed, "{again:?}");
    let missing = delete("one", None).await;
    assert_eq!(
        (missing.status, missing.body["error"]["code"].as_str()),
        (404, Some("version_not_found"))
    );
    assert!(
        stored(),
        "the other versions of the component keep it stored"
    );
    assert_eq!(
        server.upload(&a, "three", components::HOSTILE).await.status,
        201
    );
    let bind = server
        .call(
            "PUT",
            "/v1/bindings/rules",
            Some(&a),
            Some(json!({ "plugin": "two" })),
        )
        .await;
    assert_eq!(bind.status, 200, "{bind:?}");
    let bound = delete("two", None).await;
    assert_eq!(
        (bound.status, bound.body["error"]["code"].as_str()),
        (409, Some("version_bound")),
        "{bound:?}"
    );
    let builtin = server
        .call(
            "DELETE",
            "/v1/plugins/rules-table/versions/1",
            Some(&a),
            None,
        )
        .await;
    assert_eq!(
        builtin.body["error"]["code"], "reserved_name",
        "{builtin:?}"
    );
    // The last version of the component anywhere takes its file with it.
    let unbind = server
        .call("DELETE", "/v1/bindings/rules", Some(&a), None)
        .await;
    assert!(unbind.status < 300, "{unbind:?}");
    for (tenant, name) in [(&a, "two"), (&a, "three"), (&b, "one")] {
        let d = server
            .call(
                "DELETE",
                &format!("/v1/plugins/{name}/versions/1"),
                Some(tenant),
                None,
            )
            .await;
        assert_eq!(d.status, 204, "{name}: {d:?}");
    }
    assert!(
        !stored(),
        "no version uses the component: it is no longer stored"
    );
    drop(server);

    // The byte quota: a version that fits the count but not the bytes.
    let server = Server::start("plugin-bytes", |c| {
        c.runtime.max_plugin_bytes_per_tenant = (components::HOSTILE.len() * 3 / 2) as u64;
    })
    .await;
    let a = server.tenant("qa").await;
    assert_eq!(
        server.upload(&a, "one", components::HOSTILE).await.status,
        201
    );
    let full = server.upload(&a, "two", components::HOSTILE).await;
    assert_eq!(full.status, 507, "{full:?}");
    assert!(
        full.body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("bytes"),
        "{full:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_and_store_nothing() {
    let server = Server::start("uploads", |c| c.runtime.max_component_bytes = 2 << 20).await;
    let token = server.tenant("up").await;
    let cases: [(&[u8], u16, &str, &str); 4] = [
        (b"", 400, "empty_upload", "empty"),
        (
            b"hello world",
            422,
            "invalid_component",
            "not a WebAssembly component",
        ),
        (
            b"\0asm\x01\0\0\0",
            422,
            "invalid_component",
            "core WebAssembly module",
        ),
        (
            components::NO_WORLD,
            422,
            "invalid_component",
            "none of the worlds",
        ),
    ];
    for (bytes, status, code, says) in cases {
        let a = server.upload(&token, "bad", bytes).await;
        assert_eq!(a.status, status, "{a:?}");
        assert_eq!(a.body["error"]["code"], code);
        assert!(
            a.body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(says),
            "{a:?}"
        );
    }
    let big = vec![0u8; 3 << 20];
    let a = server.upload(&token, "bad", &big).await;
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (413, Some("component_too_large"))
    );
    let a = server
        .upload("not-a-token", "bad", components::HOSTILE)
        .await;
    assert_eq!(a.status, 401);
    let a = server
        .upload(&token, "rules-table", components::HOSTILE)
        .await;
    assert_eq!(a.body["error"]["code"], "reserved_name");
    let a = server.upload(&token, "Bad Name", components::HOSTILE).await;
    assert_eq!(a.body["error"]["code"], "invalid_name");
    let a = server
        .call(
            "PUT",
            "/v1/bindings/nowhere",
            Some(&token),
            Some(json!({ "plugin": "x" })),
        )
        .await;
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (400, Some("unknown_point"))
    );
    let a = server
        .call("GET", "/v1/plugins/bad", Some(&token), None)
        .await;
    assert_eq!(a.status, 404);
    let listed = server.call("GET", "/v1/plugins", Some(&token), None).await;
    assert_eq!(
        listed.body["plugins"].as_array().map(Vec::len),
        Some(4),
        "only the first-party plugins"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_bind_and_roll_back() {
    let server = Server::start("bind", |_| {}).await;
    let token = server.tenant("binder").await;
    let v1 = server.upload(&token, "hostile", components::HOSTILE).await;
    assert_eq!(v1.status, 201, "{v1:?}");
    assert_eq!(
        (v1.body["version"].as_u64(), v1.body["world"].as_str()),
        (Some(1), Some("rules"))
    );
    assert_eq!(v1.body["sha256"].as_str().map(str::len), Some(64));
    let v2 = server.upload(&token, "hostile", components::HOSTILE).await;
    assert_eq!(v2.body["version"], 2);

    let wrong = server
        .call(
            "PUT",
            "/v1/bindings/template",
            Some(&token),
            Some(json!({ "plugin": "hostile" })),
        )
        .await;
    assert_eq!(
        (wrong.status, wrong.body["error"]["code"].as_str()),
        (422, Some("wrong_world"))
    );
    let bound = server
        .call(
            "PUT",
            "/v1/bindings/rules",
            Some(&token),
            Some(json!({ "plugin": "hostile", "config": { "amount": 2 } })),
        )
        .await;
    assert_eq!(
        (bound.status, bound.body["version"].as_u64()),
        (200, Some(2))
    );
    assert_eq!(first_grant(&server.act(&token, "ok").await), Some(2));
    // Roll back: bind version 1 with another config.
    let back = server
        .call(
            "PUT",
            "/v1/bindings/rules",
            Some(&token),
            Some(json!({ "plugin": "hostile", "version": 1, "config": { "amount": 1 } })),
        )
        .await;
    assert_eq!(back.body["version"], 1);
    let a = server.act(&token, "ok").await;
    assert_eq!(
        (first_grant(&a), a.body["version"].as_u64()),
        (Some(1), Some(1))
    );
    let missing = server
        .call(
            "PUT",
            "/v1/bindings/rules",
            Some(&token),
            Some(json!({ "plugin": "hostile", "version": 9 })),
        )
        .await;
    assert_eq!(missing.body["error"]["code"], "version_not_found");
    // DELETE returns the point to the first-party default.
    let reset = server
        .call("DELETE", "/v1/bindings/rules", Some(&token), None)
        .await;
    assert_eq!(reset.body["plugin"], "rules-table");
    assert_eq!(server.act(&token, "ok").await.body["plugin"], "rules-table");

    // Another tenant never sees or binds this tenant's plugins.
    let other = server.tenant("other").await;
    assert_eq!(
        server
            .call("GET", "/v1/plugins/hostile", Some(&other), None)
            .await
            .status,
        404
    );
    let steal = server
        .call(
            "PUT",
            "/v1/bindings/rules",
            Some(&other),
            Some(json!({ "plugin": "hostile" })),
        )
        .await;
    assert_eq!(steal.body["error"]["code"], "plugin_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_are_contained() {
    let server = Server::start("hostile", |_| {}).await;
    let token = server.tenant("victim").await;
    server.upload(&token, "hostile", components::HOSTILE).await;
    let bind = json!({ "plugin": "hostile", "limits": { "timeout_ms": 50, "memory_mib": 16, "fuel": 20_000_000_000u64 } });
    assert_eq!(
        server
            .call(
                "PUT",
                "/v1/bindings/rules",
                Some(&token),
                Some(bind.clone())
            )
            .await
            .status,
        200
    );

    let cases = [
        ("loop", "timeout"),
        ("grow", "memory_limit"),
        ("trap", "trap"),
        ("panic", "panic"),
        ("huge", "output_too_large"),
        ("negative", "invalid_output"),
        ("wasi", "trap"),
    ];
    for (mode, kind) in cases {
        let started = std::time::Instant::now();
        let a = server.act(&token, mode).await;
        assert_eq!(a.status, 502, "{mode}: {a:?}");
        assert_eq!(a.body["error"]["code"], "plugin_failed", "{mode}");
        assert_eq!(
            a.body["error"]["details"]["error"]["kind"], kind,
            "{mode}: {a:?}"
        );
        assert!(
            started.elapsed().as_secs() < 5,
            "{mode} took {:?}",
            started.elapsed()
        );
        // The very next call succeeds.
        let ok = server.act(&token, "ok").await;
        assert_eq!(
            (ok.status, first_grant(&ok)),
            (200, Some(1)),
            "after {mode}: {ok:?}"
        );
    }
    let panic = server.act(&token, "panic").await;
    assert!(
        panic.body["error"]["details"]["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("boom: player p1"),
        "{panic:?}"
    );

    // A small fuel budget ends the same loop sooner, as out of fuel.
    let frugal =
        json!({ "plugin": "hostile", "limits": { "timeout_ms": 5000, "fuel": 1_000_000 } });
    server
        .call("PUT", "/v1/bindings/rules", Some(&token), Some(frugal))
        .await;
    let a = server.act(&token, "loop").await;
    assert_eq!(
        a.body["error"]["details"]["error"]["kind"], "out_of_fuel",
        "{a:?}"
    );
    assert_eq!(first_grant(&server.act(&token, "ok").await), Some(1));
    server
        .call("PUT", "/v1/bindings/rules", Some(&token), Some(bind))
        .await;

    let refused = server.act(&token, "error").await;
    assert_eq!(refused.body["error"]["code"], "plugin_rejected");
    assert_eq!(refused.body["error"]["details"]["error"]["code"], "nope");

    let spam = server.act(&token, "logspam").await;
    assert_eq!(spam.status, 200, "{spam:?}");
    assert_eq!(spam.body["logs"].as_array().map(Vec::len), Some(64));
    assert_eq!(spam.body["logs_dropped"], 10_000 - 64);

    let stats = server
        .call("GET", "/v1/plugins/hostile", Some(&token), None)
        .await;
    let s = &stats.body["versions"][0]["stats"];
    for kind in [
        "timeout",
        "memory_limit",
        "panic",
        "output_too_large",
        "invalid_output",
        "guest_error",
    ] {
        assert!(s["errors"][kind].as_u64() >= Some(1), "{kind}: {s}");
    }
    assert_eq!(s["errors"]["trap"], 2);
    assert!(s["calls"].as_u64() >= Some(17));
    assert!(s["p50_us"].as_f64().is_some() && s["p99_us"].as_f64() >= s["p50_us"].as_f64());
    assert!(s["fuel_used"].as_u64() > Some(0));

    // Fail open: the first-party default answers instead.
    let open = json!({ "plugin": "hostile", "on_error": "default", "limits": { "timeout_ms": 50, "fuel": 20_000_000_000u64 } });
    server
        .call("PUT", "/v1/bindings/rules", Some(&token), Some(open))
        .await;
    let a = server.act(&token, "loop").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["plugin"], "rules-table");
    assert_eq!(a.body["fallback"]["kind"], "timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_tenant_does_not_disturb_another() {
    let server = std::sync::Arc::new(Server::start("neighbours", |_| {}).await);
    let bad = server.tenant("bad").await;
    let good = server.tenant("good").await;
    for t in [&bad, &good] {
        server.upload(t, "hostile", components::HOSTILE).await;
        server
            .call(
                "PUT",
                "/v1/bindings/rules",
                Some(t),
                Some(json!({ "plugin": "hostile", "limits": { "timeout_ms": 50 } })),
            )
            .await;
    }
    let s = server.clone();
    let looping = tokio::spawn(async move {
        for _ in 0..10 {
            assert_eq!(s.act(&bad, "loop").await.status, 502);
        }
    });
    for _ in 0..50 {
        let a = server.act(&good, "ok").await;
        assert_eq!((a.status, first_grant(&a)), (200, Some(1)));
    }
    looping.await.expect("looping task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_kv_writes_commit_atomically_under_concurrency() {
    let server = std::sync::Arc::new(Server::start("kv", |_| {}).await);
    let token = server.tenant("quota").await;
    server.upload(&token, "hostile", components::HOSTILE).await;
    server
        .call(
            "PUT",
            "/v1/bindings/rules",
            Some(&token),
            Some(json!({ "plugin": "hostile" })),
        )
        .await;
    // A dry run changes nothing.
    let dry = server
        .call(
            "POST",
            "/v1/bindings/rules/invoke?dry_run=true",
            Some(&token),
            Some(action("quota")),
        )
        .await;
    assert_eq!(
        (first_grant(&dry), dry.body["committed"].as_bool()),
        (Some(1), Some(false))
    );
    let mut tasks = Vec::new();
    for _ in 0..60 {
        let (s, t) = (server.clone(), token.clone());
        tasks.push(tokio::spawn(async move { s.act(&t, "quota").await }));
    }
    let mut granted = 0;
    for task in tasks {
        let a = task.await.expect("task");
        assert_eq!(a.status, 200, "{a:?}");
        granted += first_grant(&a).unwrap_or(0);
    }
    assert_eq!(granted, 5, "the plugin's quota of 5 must hold exactly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_load_fails_no_call() {
    let server = std::sync::Arc::new(Server::start("swap", |_| {}).await);
    let token = server.tenant("swapper").await;
    server.upload(&token, "hostile", components::HOSTILE).await;
    server
        .upload(&token, "streaks", components::RUST_RULES)
        .await;
    server
        .call(
            "PUT",
            "/v1/bindings/rules",
            Some(&token),
            Some(json!({ "plugin": "hostile", "config": { "amount": 1 } })),
        )
        .await;
    let mut callers = Vec::new();
    for _ in 0..4 {
        let (s, t) = (server.clone(), token.clone());
        callers.push(tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..100 {
                let a = s
                    .call(
                        "POST",
                        "/v1/bindings/rules/invoke",
                        Some(&t),
                        Some(action("ok")),
                    )
                    .await;
                assert_eq!(a.status, 200, "{a:?}");
                seen.insert(a.body["plugin"].as_str().unwrap_or("").to_owned());
            }
            seen
        }));
    }
    // A new version uploaded (compiled) while the calls run, then bound.
    let up = server.upload(&token, "hostile", components::HOSTILE).await;
    assert_eq!(up.body["version"], 2, "{up:?}");
    for i in 0..20 {
        let body = match i % 3 {
            0 => json!({ "plugin": "streaks" }),
            1 => json!({ "plugin": "hostile", "config": { "amount": 7 } }),
            _ => json!({ "plugin": "hostile", "version": 1, "config": { "amount": 1 } }),
        };
        let a = server
            .call("PUT", "/v1/bindings/rules", Some(&token), Some(body))
            .await;
        assert_eq!(a.status, 200);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut seen = std::collections::BTreeSet::new();
    for c in callers {
        seen.extend(c.await.expect("caller"));
    }
    assert!(seen.contains("hostile"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_and_bindings_survive_a_restart_without_recompiling() {
    let server = Server::start("restart", |_| {}).await;
    let token = server.tenant("keeper").await;
    server.upload(&token, "hostile", components::HOSTILE).await;
    server
        .call(
            "PUT",
            "/v1/bindings/rules",
            Some(&token),
            Some(json!({ "plugin": "hostile", "config": { "amount": 3 } })),
        )
        .await;
    let server = server.restart().await;
    assert_eq!(
        server.state().plugins.compilations(),
        0,
        "a restart loads compiled components from the cache"
    );
    let a = server.act(&token, "ok").await;
    assert_eq!(
        (a.status, first_grant(&a), a.body["plugin"].as_str()),
        (200, Some(3), Some("hostile"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_modes_and_the_request_clock() {
    let server = Server::start("isolation", |_| {}).await;
    let token = server.tenant("iso").await;
    server.upload(&token, "hostile", components::HOSTILE).await;
    server
        .call(
            "PUT",
            "/v1/bindings/rules",
            Some(&token),
            Some(json!({ "plugin": "hostile" })),
        )
        .await;
    for _ in 0..3 {
        assert_eq!(
            first_grant(&server.act(&token, "instance-calls").await),
            Some(1),
            "fresh: nothing survives a call"
        );
    }
    for _ in 0..4 {
        // Hundreds of scattered pages, zeroed and initialised, some beyond
        // what a pool slot keeps resident: the slot's reset restores them all.
        assert_eq!(
            first_grant(&server.act(&token, "scatter").await),
            Some(1),
            "fresh: no page an earlier instance wrote survives"
        );
    }
    let now = engage::ids::now_ms();
    let clock = first_grant(&server.act(&token, "clock").await).unwrap_or(0);
    assert!(
        (clock - now).abs() < 60_000,
        "the host's clock reaches the plugin"
    );
    let warm = json!({ "plugin": "hostile", "isolation": { "mode": "warm", "recycle_after": 3 } });
    assert_eq!(
        server
            .call("PUT", "/v1/bindings/rules", Some(&token), Some(warm))
            .await
            .status,
        200
    );
    let counts: Vec<_> = futures_lite(&server, &token).await;
    assert_eq!(
        counts,
        [1, 2, 3, 1, 2],
        "warm instances are reused, then recycled after 3 calls"
    );
    // A trap recycles the instance at once.
    assert_eq!(server.act(&token, "trap").await.status, 502);
    assert_eq!(
        first_grant(&server.act(&token, "instance-calls").await),
        Some(1)
    );
    // The same instance, warm, does see its own writes (the check above can fail).
    assert_eq!(first_grant(&server.act(&token, "scatter").await), Some(1));
    assert_eq!(
        first_grant(&server.act(&token, "scatter").await),
        Some(1 + 512 + 8),
        "a warm instance keeps its memory"
    );
}

async fn futures_lite(server: &Server, token: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for _ in 0..5 {
        out.push(first_grant(&server.act(token, "instance-calls").await).unwrap_or(0));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_plugins_through_the_host() {
    let server = Server::start("builtins", |_| {}).await;
    let (key, secret) = server.demo_credentials();
    let token = server.token(&key, &secret).await;
    let r = server
        .call("POST", "/v1/bindings/template/invoke", Some(&token), Some(json!({ "call": "render", "template": "Congratulation, here is your coupon code: {{code}}.", "vars": [{ "name": "code", "value": "8830644924" }] })))
        .await;
    assert_eq!(
        r.body["output"]["text"],
        "Congratulation, here is your coupon code: 8830644924."
    );
    let missing = server
        .call(
            "POST",
            "/v1/bindings/template/invoke",
            Some(&token),
            Some(json!({ "call": "render", "template": "{{code}}", "vars": [] })),
        )
        .await;
    assert_eq!(
        missing.body["error"]["details"]["error"]["code"],
        "missing-variable"
    );

    let route_cfg = json!({ "plugin": "router", "config": { "routes": [{ "channel": "viber", "attempts": [{ "channel": "viber", "provider": "bsg" }, { "channel": "sms", "provider": "twilio", "body_param": "alt_text" }] }] } });
    server
        .call("PUT", "/v1/bindings/route", Some(&token), Some(route_cfg))
        .await;
    let msg = json!({ "call": "route", "message": { "id": "m1", "to": "+380972920000", "channel": "viber", "sender": "BSG", "body": "My Viber message", "kind": "Transactional", "reference": "ext_id_19", "metadata": [{ "name": "alt_text", "value": "SMS text" }] } });
    let r = server
        .call("POST", "/v1/bindings/route/invoke", Some(&token), Some(msg))
        .await;
    let attempts = &r.body["output"]["attempts"];
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        (
            attempts[0]["provider"].as_str(),
            attempts[1]["provider"].as_str()
        ),
        (Some("bsg"), Some("twilio"))
    );
    assert_eq!(attempts[1]["body"], "SMS text");

    let gift_cfg = json!({ "plugin": "gift-quota", "config": { "requests_per_day": 2 } });
    server
        .call("PUT", "/v1/bindings/gift", Some(&token), Some(gift_cfg))
        .await;
    let req = json!({ "call": "pre_request", "request": { "id": "g1", "sender": "kunalg", "recipients": ["abcd"], "expires_at_ms": 1_900_000_000_000i64, "attributes": [] } });
    let mut verdicts = Vec::new();
    for _ in 0..3 {
        let a = server
            .call(
                "POST",
                "/v1/bindings/gift/invoke",
                Some(&token),
                Some(req.clone()),
            )
            .await;
        verdicts.push(a.body["output"]["verdict"].clone());
    }
    assert_eq!(verdicts[0], "Allow");
    assert_eq!(verdicts[1], "Allow");
    assert_eq!(verdicts[2]["Reject"]["code_str"], "E_GIFT_QUOTA_EXCEEDED");
    assert_eq!(verdicts[2]["Reject"]["code"], -30004);

    let wrong = server
        .call("POST", "/v1/bindings/rules/invoke", Some(&token), Some(req))
        .await;
    assert_eq!(wrong.body["error"]["code"], "wrong_point");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_only_real_endpoints() {
    let server = Server::start("openapi", |_| {}).await;
    let doc = server.call("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"], "3.1.0");
    let paths = doc.body["paths"].as_object().expect("paths");
    assert!(paths.len() >= 10);
    for (path, item) in paths {
        let concrete = path
            .replace("{name}", "some-plugin")
            .replace("{point}", "rules")
            .replace("{ref_id}", "0123456789abcdef01234567")
            .replace("{id}", "some-id")
            .replace("{mode}", "fb")
            .replace("{gift}", "some-gift")
            .replace("{nid}", "1");
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let a = server
                .call(&method.to_uppercase(), &concrete, Some("not-a-token"), None)
                .await;
            assert_ne!(
                a.body["error"]["code"], "not_found",
                "{method} {path} is documented but not served"
            );
            assert_ne!(
                a.status, 405,
                "{method} {path} is documented but not served"
            );
        }
    }
    let missing = server.call("GET", "/v1/nothing-here", None, None).await;
    assert_eq!(
        (missing.status, missing.body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_is_denied_unless_the_binding_grants_it() {
    let server = Server::start("wasi", |_| {}).await;
    let token = server.tenant("clocky").await;
    server.upload(&token, "hostile", components::HOSTILE).await;
    let bind = |wasi: serde_json::Value| json!({ "plugin": "hostile", "wasi": wasi });
    let kind = |a: &engage_tests::Answer| {
        a.body["error"]["details"]["error"]["kind"]
            .as_str()
            .map(str::to_owned)
    };

    // Nothing granted: the clock and the random seed trap.
    let b = server
        .call(
            "PUT",
            "/v1/bindings/rules",
            Some(&token),
            Some(bind(json!([]))),
        )
        .await;
    assert_eq!(b.status, 200, "{b:?}");
    for mode in ["wasi-clock", "wasi-random"] {
        let a = server.act(&token, mode).await;
        assert_eq!(
            (a.status, kind(&a).as_deref()),
            (502, Some("trap")),
            "{mode}: {a:?}"
        );
    }

    // Clocks granted: the wall clock answers the real date; random still traps.
    let b = server
        .call(
            "PUT",
            "/v1/bindings/rules",
            Some(&token),
            Some(bind(json!(["clocks"]))),
        )
        .await;
    assert_eq!(b.body["wasi"], json!(["clocks"]), "{b:?}");
    let days = engage::ids::now_ms() / 86_400_000;
    let a = server.act(&token, "wasi-clock").await;
    assert_eq!(first_grant(&a), Some(days), "{a:?}");
    let a = server.act(&token, "wasi-random").await;
    assert_eq!(kind(&a).as_deref(), Some("trap"), "{a:?}");

    // Random granted too.
    server
        .call(
            "PUT",
            "/v1/bindings/rules",
            Some(&token),
            Some(bind(json!(["clocks", "random"]))),
        )
        .await;
    let a = server.act(&token, "wasi-random").await;
    assert!(
        first_grant(&a).is_some_and(|g| (1..=1000).contains(&g)),
        "{a:?}"
    );

    // Unknown grants are refused; the grant survives a restart.
    let bad = server
        .call(
            "PUT",
            "/v1/bindings/rules",
            Some(&token),
            Some(bind(json!(["filesystem"]))),
        )
        .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    let server = server.restart().await;
    let a = server.act(&token, "wasi-clock").await;
    assert_eq!(first_grant(&a), Some(days), "{a:?}");
}

/// A client of a vendor's API that calls something Engage does not serve
/// gets that vendor's error format, never the native one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_answer_in_each_vendors_format() {
    let server = Server::start("unknown-paths", |_| {}).await;
    let pb = server
        .call("GET", "/playbasis/Quest/list", None, None)
        .await;
    assert_eq!(
        (
            pb.status,
            pb.body["success"].as_bool(),
            pb.body["error_code"].as_str()
        ),
        (200, Some(false), Some("0005")),
        "{pb:?}"
    );
    let pb_method = server.call("DELETE", "/playbasis/Auth", None, None).await;
    assert_eq!(pb_method.body["error_code"], "0005", "{pb_method:?}");
    let sms = server.call("GET", "/playsms/nothing.php", None, None).await;
    assert_eq!(
        (
            sms.status,
            sms.body["status"].as_str(),
            sms.body["error"].as_str()
        ),
        (404, Some("ERR"), Some("101")),
        "{sms:?}"
    );
    let bsg = server.call("GET", "/bsg/rest/hlr/create", None, None).await;
    assert_eq!(
        (bsg.status, bsg.body["error"].as_i64()),
        (404, Some(1)),
        "{bsg:?}"
    );
    let att = server.call("GET", "/attentive/v1/users", None, None).await;
    assert_eq!(
        (att.status, att.body["errors"][0]["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{att:?}"
    );
    let annex = server
        .call("DELETE", "/annex/api/3.0/segment", None, None)
        .await;
    assert_eq!(
        (annex.status, annex.body["errorCode"].as_str()),
        (404, Some("AC1002")),
        "{annex:?}"
    );
    let gifts = server
        .call("GET", "/playblazer/v1/app/demo/nothing", None, None)
        .await;
    assert_eq!(
        (
            gifts.status,
            gifts.body["status"].as_str(),
            gifts.body["error"]["code_str"].as_str()
        ),
        (404, Some("error"), Some("E_GIFT_REQUEST_FAILED")),
        "{gifts:?}"
    );
    let native = server.call("DELETE", "/v1/auth/renew", None, None).await;
    assert_eq!(
        (native.status, native.body["error"]["code"].as_str()),
        (405, Some("method_not_allowed")),
        "{native:?}"
    );
}

/// A query or path the native API cannot read is its JSON error, like
/// every other refusal, never axum's plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_and_path_errors_are_json() {
    let s = Server::start("json-errors", |_| {}).await;
    let t = s.demo_token().await;
    for (path, code) in [
        ("/v1/players?limit=many", "invalid_query"),
        ("/v1/messages?status=not-a-status", "invalid_query"),
        ("/v1/plugins/rules-table/versions/first", "invalid_path"),
        (
            "/v1/plugins/rules-table/versions/99999999999",
            "invalid_path",
        ),
    ] {
        let method = if path.contains("/versions/") {
            "DELETE"
        } else {
            "GET"
        };
        let r = s
            .request(method, path, Some(&t))
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status(), 400, "{path}");
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(ct.starts_with("application/json"), "{path}: {ct}");
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        assert!(
            !body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{path}: says what is wrong"
        );
    }
}
