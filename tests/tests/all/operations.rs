//! What an operator runs Engage with: `/metrics` (Prometheus text, counters
//! that move by exactly what a workload did, labels that a client cannot
//! multiply), `/ready` beside `/health`.
//!
//! The recorder is one per process and the other tests of this binary run
//! beside these, so exact deltas are checked only on series labelled with
//! this test's own tenant; process-wide series are checked to move at
//! least as much.

use std::collections::BTreeMap;
use std::time::Duration;

use engage_tests::Server;
use serde_json::{Value, json};

/// Every sample of an exposition: metric name, labels, value.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
        let value: f64 = value.parse().expect("a numeric sample");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}').expect("labels close")),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        // Label values here never hold `",` (route templates, ids, kinds).
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
            map.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
        }
        out.push((name.to_owned(), map, value));
    }
    out
}

/// The sum of `name`'s samples whose labels include every pair of `with`.
fn sum(text: &str, name: &str, with: &[(&str, &str)]) -> f64 {
    samples(text)
        .into_iter()
        .filter(|(n, labels, _)| {
            n == name
                && with
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

async fn scrape(s: &Server) -> String {
    let r = s
        .request("GET", "/metrics", Some(&s.admin_token))
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status(), 200);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("text/plain"), "{ct}");
    r.text().await.expect("exposition")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_a_workload_did() {
    // Tenant ids are their names; one unique to this run of the process.
    let tenant = format!("metered-{}", engage::ids::random_hex(4));
    let unlabelled_id = format!("unlabelled-{}", engage::ids::random_hex(4));
    // Named in `[metrics] tenants`: this tenant gets its own label.
    let named = tenant.clone();
    let s = Server::start("metrics", move |c| c.metrics.tenants = vec![named]).await;
    let created = s
        .call(
            "POST",
            "/admin/tenants",
            Some(&s.admin_token),
            Some(json!({ "name": tenant })),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["tenant"], tenant.as_str());
    let (key, secret) = (
        created.body["api_key"].as_str().expect("key").to_owned(),
        created.body["api_secret"]
            .as_str()
            .expect("secret")
            .to_owned(),
    );
    let t = s.token(&key, &secret).await;
    let unlabelled = s.tenant(&unlabelled_id).await;

    // Without the admin token: refused in the API's error format.
    let anon = s.call("GET", "/metrics", None, None).await;
    assert_eq!(anon.status, 401, "{anon:?}");
    assert_eq!(anon.body["error"]["code"], "unauthorized");
    let wrong = s.call("GET", "/metrics", Some(&t), None).await;
    assert_eq!(
        wrong.status, 401,
        "a tenant's token is not the admin's: {wrong:?}"
    );

    let before = scrape(&s).await;
    let mine = |extra: &[(&'static str, &'static str)]| {
        let mut v: Vec<(&str, String)> = vec![("tenant", tenant.clone())];
        v.extend(extra.iter().map(|(k, x)| (*k, x.to_string())));
        v
    };
    let delta = |before: &str, after: &str, name: &str, with: &[(&str, String)]| {
        let with: Vec<(&str, &str)> = with.iter().map(|(k, v)| (*k, v.as_str())).collect();
        sum(after, name, &with) - sum(before, name, &with)
    };

    // The workload: 3 players, 7 credits, 2 refused bodies, 5 rule
    // evaluations, 2 messages through the console provider.
    for p in ["m1", "m2", "m3"] {
        s.player(&t, p).await;
    }
    for i in 0..7 {
        s.credit(&t, ["m1", "m2", "m3"][i % 3], 10).await;
    }
    for _ in 0..2 {
        let bad = s
            .call(
                "POST",
                "/v1/ledger/credit",
                Some(&t),
                Some(json!({ "player": "m1" })),
            )
            .await;
        assert_eq!(bad.status, 400, "{bad:?}");
    }
    for _ in 0..5 {
        let a = s.act(&t, "buy").await;
        assert_eq!(a.status, 200, "{a:?}");
    }
    let mut ids = Vec::new();
    for to in ["+14155550111", "+14155550112"] {
        let a = s
            .call(
                "POST",
                "/v1/messages",
                Some(&t),
                Some(json!({ "to": [to], "body": "metered" })),
            )
            .await;
        assert_eq!(a.status, 202, "{a:?}");
        ids.push(a.body["messages"][0]["id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        let mut status = Value::Null;
        for _ in 0..200 {
            let m = s
                .call("GET", &format!("/v1/messages/{id}"), Some(&t), None)
                .await;
            status = m.body["status"].clone();
            if status == "delivered" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(status, "delivered");
    }
    // Another tenant's requests count under `other`, never under its id.
    for _ in 0..4 {
        let a = s
            .call("GET", "/v1/players?limit=1", Some(&unlabelled), None)
            .await;
        assert_eq!(a.status, 200, "{a:?}");
    }
    // Paths nobody serves: one `unmatched` route, whatever the paths.
    for i in 0..25 {
        let a = s
            .call(
                "GET",
                &format!("/v1/no-such-thing-{i}/x{i}"),
                Some(&t),
                None,
            )
            .await;
        assert_eq!(a.status, 404);
    }

    // Methods nobody defined: one `other` value, whatever they are.
    for i in 0..5 {
        let m = format!("BREW{i}");
        let a = s.send(s.request(&m, "/v1/players", Some(&t))).await;
        assert_eq!(a.status, 405, "{a:?}");
    }

    let after = scrape(&s).await;
    let http = "engage_http_requests_total";
    let credit = mine(&[("route", "/v1/ledger/credit"), ("method", "POST")]);
    let ok: Vec<_> = credit
        .iter()
        .cloned()
        .chain([("status", "201".to_owned())])
        .collect();
    let refused: Vec<_> = credit
        .iter()
        .cloned()
        .chain([("status", "400".to_owned())])
        .collect();
    assert_eq!(delta(&before, &after, http, &ok), 7.0, "{after}");
    assert_eq!(delta(&before, &after, http, &refused), 2.0);
    assert_eq!(
        delta(
            &before,
            &after,
            http,
            &mine(&[
                ("route", "/v1/players"),
                ("method", "POST"),
                ("status", "201")
            ])
        ),
        3.0
    );
    assert_eq!(
        delta(
            &before,
            &after,
            http,
            &mine(&[("route", "/v1/bindings/{point}/invoke")])
        ),
        5.0,
        "the route template, not the path"
    );
    // The latency histogram counts every one of them (at least: other
    // tests' servers answer the same route in this process).
    let count = [
        ("route", "/v1/ledger/credit".to_owned()),
        ("method", "POST".to_owned()),
    ];
    assert!(
        delta(
            &before,
            &after,
            "engage_http_request_duration_seconds_count",
            &count
        ) >= 9.0
    );
    // Plugin calls: five rule evaluations of this tenant, answered.
    assert_eq!(
        delta(
            &before,
            &after,
            "engage_plugin_calls_total",
            &mine(&[("point", "rules"), ("outcome", "ok")])
        ),
        5.0,
        "{after}"
    );
    // Sends: two, accepted by the console provider. The routing and
    // templating calls of the two messages were counted as plugin calls.
    assert_eq!(
        delta(
            &before,
            &after,
            "engage_message_sends_total",
            &mine(&[
                ("provider", "console"),
                ("channel", "sms"),
                ("outcome", "accepted")
            ])
        ),
        2.0,
        "{after}"
    );
    assert!(
        delta(
            &before,
            &after,
            "engage_plugin_calls_total",
            &mine(&[("point", "route")])
        ) >= 2.0
    );
    // The other tenant: under `other`; its id appears nowhere.
    let other = [
        ("tenant", "other".to_owned()),
        ("route", "/v1/players".to_owned()),
        ("method", "GET".to_owned()),
    ];
    assert!(delta(&before, &after, http, &other) >= 4.0);
    assert!(
        !after.contains(&unlabelled_id),
        "an unnamed tenant's id is not a label value"
    );
    // Unmatched paths: one series, no path in any label.
    assert!(
        delta(&before, &after, http, &mine(&[("route", "unmatched")])).abs() < 0.5,
        "a 404 before auth names no tenant"
    );
    assert!(
        delta(
            &before,
            &after,
            http,
            &[
                ("route", "unmatched".to_owned()),
                ("status", "404".to_owned())
            ]
        ) >= 25.0
    );
    assert!(
        !after.contains("no-such-thing"),
        "raw paths are never labels"
    );
    assert!(!after.contains("BREW"), "unknown methods are never labels");
    assert!(
        delta(
            &before,
            &after,
            http,
            &[("method", "other".to_owned()), ("status", "405".to_owned())]
        ) >= 5.0
    );
    // Process-wide series moved.
    assert!(
        delta(
            &before,
            &after,
            "engage_store_commits_total",
            &[("outcome", "committed".to_owned())]
        ) >= 10.0
    );
    assert!(delta(&before, &after, "engage_store_commit_jobs_count", &[]) >= 10.0);
    for gauge in [
        "engage_store_write_queue_jobs",
        "engage_outbox_messages",
        "engage_outbox_due_messages",
        "engage_outbox_oldest_due_age_seconds",
        "engage_campaign_jobs_queued",
    ] {
        assert!(
            after.contains(&format!("\n{gauge} ")),
            "{gauge} is exposed:\n{after}"
        );
    }
    assert!(
        after.contains("# HELP engage_plugin_call_fuel "),
        "described"
    );
    assert!(
        sum(
            &after,
            "engage_plugin_call_fuel_count",
            &[("point", "rules")]
        ) >= 5.0
    );

    // Failed credential checks until the address is locked out: counted
    // as refusals.
    let refusals = |text: &str| {
        sum(
            text,
            "engage_refusals_total",
            &[("reason", "credential_throttle")],
        )
    };
    let mut locked = false;
    for _ in 0..40 {
        let a = s
            .call(
                "POST",
                "/v1/auth/token",
                None,
                Some(json!({ "api_key": key, "api_secret": "wrong" })),
            )
            .await;
        if a.status == 429 {
            locked = true;
            break;
        }
    }
    assert!(locked, "the throttle locks out a guessing client");
    let later = scrape(&s).await;
    assert!(refusals(&later) - refusals(&after) >= 1.0, "{later}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_public_for_a_private_scraper() {
    let s = Server::start("metrics-public", |c| c.metrics.public = true).await;
    assert_eq!(s.call("GET", "/health", None, None).await.status, 200);
    let r = s
        .request("GET", "/metrics", None)
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    assert!(
        text.contains("# TYPE engage_http_requests_total counter"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_checks_storage_schema_and_plugins() {
    let s = Server::start("ready", |_| {}).await;
    let h = s.call("GET", "/health", None, None).await;
    assert_eq!(h.status, 200);
    let r = s.call("GET", "/ready", None, None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "ready");
    for check in ["storage", "plugins", "serving"] {
        assert_eq!(r.body["checks"][check]["ok"], true, "{r:?}");
    }

    // Another host migrated the shared store past this build: not ready
    // (the load balancer stops sending here), still alive.
    let meta = engage::store::Table::new("meta");
    let store = s.state().store.clone();
    store
        .write(move |tx| tx.put_raw(meta, "schema_version", &2u64.to_le_bytes()))
        .await
        .map_err(|e: engage::store::StoreError| e)
        .expect("write");
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the cached answer
    let r = s.call("GET", "/ready", None, None).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.body["status"], "not_ready");
    assert_eq!(r.body["checks"]["storage"]["ok"], false);
    let why = r.body["checks"]["storage"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("newer Engage"), "{why}");
    assert_eq!(r.body["checks"]["plugins"]["ok"], true);
    assert_eq!(s.call("GET", "/health", None, None).await.status, 200);

    // Back: ready again once the cached answer expires.
    store
        .write(move |tx| tx.put_raw(meta, "schema_version", &1u64.to_le_bytes()))
        .await
        .map_err(|e: engage::store::StoreError| e)
        .expect("write");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(s.call("GET", "/ready", None, None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_is_not_ready_while_it_drains() {
    let mut s = Server::start("drain", |c| c.http.drain_ms = 1_500).await;
    assert_eq!(s.call("GET", "/ready", None, None).await.status, 200);
    let running = s.running.take().expect("running");
    let stopping = tokio::spawn(running.stop());
    // While it drains it still answers, but tells balancers to go away.
    let mut saw = None;
    for _ in 0..20 {
        let r = s.call("GET", "/ready", None, None).await;
        if r.status == 503 {
            saw = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = saw.expect("/ready answers 503 once a stop is asked for");
    assert_eq!(r.body["checks"]["serving"]["ok"], false, "{r:?}");
    assert_eq!(r.body["checks"]["serving"]["error"], "shutting down");
    assert_eq!(
        s.call("GET", "/health", None, None).await.status,
        200,
        "still serving"
    );
    stopping.await.expect("joined").expect("stops");
}

/// A backup taken over HTTP while four clients keep crediting points,
/// restored into a new store: every credit acknowledged before the backup
/// was asked for is there, and every balance matches the entries it holds
/// (nothing torn), whatever was in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_every_acknowledged_write() {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::sync::Mutex;

    let s = Arc::new(Server::start("backup", |_| {}).await);
    let t = s.demo_token().await;
    let players: Vec<String> = (0..8).map(|i| format!("b{i}")).collect();
    for p in &players {
        s.player(&t, p).await;
    }
    // Some bulk for the snapshot to stream while the writes go on.
    let codes: Vec<String> = (0..5_000).map(|i| format!("CODE-{i:06}")).collect();
    s.goods(&t, "bulk", 10, &codes).await;

    // (player, entry id) of every acknowledged credit, in order.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (s, t, acked, stop, players) = (
            s.clone(),
            t.clone(),
            acked.clone(),
            stop.clone(),
            players.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let p = &players[i % players.len()];
                let a = s
                    .call(
                        "POST",
                        "/v1/ledger/credit",
                        Some(&t),
                        Some(json!({ "player": p, "amount": 1 })),
                    )
                    .await;
                assert_eq!(a.status, 201, "{a:?}");
                let id = a.body["id"].as_str().expect("entry id").to_owned();
                acked.lock().await.push((p.clone(), id));
                i += 4;
            }
        }));
    }
    while acked.lock().await.len() < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before: Vec<(String, String)> = acked.lock().await.clone();
    let resp = s
        .request("GET", "/admin/backup", Some(&s.admin_token))
        .send()
        .await
        .expect("backup");
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().await.expect("the whole backup");
    // The writes went on meanwhile; let a few more land, then stop.
    let during = acked.lock().await.len();
    while acked.lock().await.len() < during + 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }
    let all: Vec<(String, String)> = acked.lock().await.clone();
    assert!(all.len() > before.len() + 100);

    // A tenant's token cannot take one; a damaged copy is refused.
    let denied = s.call("GET", "/admin/backup", Some(&t), None).await;
    assert_eq!(denied.status, 401, "{denied:?}");
    let mut damaged = bytes.to_vec();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x55;
    let dir = engage_tests::temp_dir("restore-damaged");
    let store =
        engage::store::Store::open(&engage::store::files::open_data_dir(&dir).expect("dir"))
            .expect("store");
    let refused = engage::store::backup::restore(&store, &damaged[..]).await;
    assert!(
        matches!(refused, Err(engage::store::backup::BackupError::Damaged(_))),
        "{refused:?}"
    );
    let truncated = engage::store::backup::verify(&bytes[..bytes.len() - 10]).await;
    assert!(truncated.is_err(), "a truncated backup is refused");
    drop(store);

    // Restore into a new data directory and serve it.
    let dir = engage_tests::temp_dir("restored");
    let store =
        engage::store::Store::open(&engage::store::files::open_data_dir(&dir).expect("dir"))
            .expect("store");
    let report = engage::store::backup::restore(&store, &bytes[..])
        .await
        .expect("restores");
    assert!(report.entries > 5_000, "{report:?}");
    let again = engage::store::backup::restore(&store, &bytes[..]).await;
    assert!(
        matches!(
            again,
            Err(engage::store::backup::BackupError::TargetNotEmpty(_))
        ),
        "only into an empty store: {again:?}"
    );
    let closing = store.closing();
    drop(store);
    assert!(closing.wait(Duration::from_secs(10)).await);
    for f in ["credentials.json", "secret.key"] {
        let from = s.config.data_dir.join(f);
        if from.exists() {
            std::fs::copy(&from, dir.join(f)).expect("copy");
        }
    }
    let mut config = s.config.clone();
    config.data_dir = dir;
    config.storage.backend = engage::config::BackendKind::Embedded;
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let r = Server::start_with(config).await;
    let t2 = r.demo_token().await;

    let mut present: HashMap<String, i64> = HashMap::new();
    let known_before: std::collections::HashSet<&str> =
        before.iter().map(|(_, id)| id.as_str()).collect();
    for (p, id) in &all {
        let e = r
            .call("GET", &format!("/v1/ledger/entries/{id}"), Some(&t2), None)
            .await;
        match e.status {
            200 => *present.entry(p.clone()).or_default() += 1,
            404 => assert!(
                !known_before.contains(id.as_str()),
                "a credit acknowledged before the backup is missing: {id}"
            ),
            other => panic!("{other}: {e:?}"),
        }
    }
    for p in &players {
        let balance = r.balance(&t2, p).await;
        assert_eq!(
            balance,
            present.get(p).copied().unwrap_or(0),
            "{p}: the balance is the sum of the entries the backup holds"
        );
    }
    let restored: i64 = present.values().sum();
    assert!(restored as usize >= before.len());
    eprintln!(
        "backup: {} bytes, {} entries; credits acknowledged before it {}, in it {restored}, after it {}",
        bytes.len(),
        report.entries,
        before.len(),
        all.len()
    );
}
