//! Gifts between friends: seed 004 through the Playblazer-compatible API
//! (multipart and URL-encoded, JSON and XML), hooks with transactional
//! semantics, notifications.

use std::sync::Arc;

use engage_tests::{Answer, Server, components};
use engage_tests::{friends, multipart};
use serde_json::{Value, json};

async fn curl_f(s: &Server, path: &str, fields: &[(&str, &str)]) -> Answer {
    let (ct, body) = multipart(fields);
    s.send(
        s.request("POST", &format!("/playblazer/v1{path}"), None)
            .header("content-type", ct)
            .body(body),
    )
    .await
}

fn error(code: i64, code_str: &str) -> impl Fn(&Answer) {
    let code_str = code_str.to_owned();
    move |a: &Answer| {
        assert_eq!(a.body["status"], "error", "{a:?}");
        assert_eq!(a.body["error"]["code"], code, "{a:?}");
        assert_eq!(a.body["error"]["code_str"], code_str.as_str(), "{a:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_004_examples_as_written() {
    let s = Server::start("seed004", |_| {}).await;
    let t = s.demo_token().await;
    let (_, secret) = s.demo_credentials();
    friends(&s, &t).await;
    let playing = s
        .call(
            "GET",
            "/v1/players/kunal/friends?playing=true",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(
        playing.body["friends"],
        json!([{ "mode": "fb", "id": "abcd", "player": "abcd" }])
    );
    let quota = s
        .call(
            "PUT",
            "/v1/bindings/gift",
            Some(&t),
            Some(json!({ "plugin": "gift-quota", "config": { "requests_per_day": 1 } })),
        )
        .await;
    assert_eq!(quota.status, 200, "{quota:?}");

    // 1. Successful request.
    let ok = curl_f(
        &s,
        "/app/demo/gifts/fb/kunalg/request/new",
        &[
            ("secret_key", &secret),
            ("custom:item_name", "item1"),
            ("custom:item_id", "1234"),
            ("expiry", "3600"),
        ],
    )
    .await;
    assert_eq!(ok.body["status"], "ok", "{ok:?}");
    let request_id = ok.body["request_id"]
        .as_str()
        .expect("request_id")
        .to_owned();
    assert_eq!(request_id.len(), 32);
    assert_eq!(
        ok.body.as_object().map(|o| o.len()),
        Some(2),
        "exactly status and request_id"
    );

    // 2. Failed request due to validation (quota exceeded): the seed's answer.
    let over = curl_f(
        &s,
        "/app/demo/gifts/fb/kunalg/request/new",
        &[
            ("secret_key", &secret),
            ("custom:item_name", "item2"),
            ("custom:item_id", "9876"),
            ("expiry", "3600"),
        ],
    )
    .await;
    assert_eq!(
        over.body,
        json!({ "status": "error", "error": { "message": "You have exceeded your quota of gifts", "code": -30004, "code_str": "E_GIFT_QUOTA_EXCEEDED" } })
    );

    // The same error as XML.
    let (ct, body) = multipart(&[("secret_key", &secret), ("fmt", "xml")]);
    let over_xml = s
        .send(
            s.request(
                "POST",
                "/playblazer/v1/app/demo/gifts/fb/kunalg/request/new",
                None,
            )
            .header("content-type", ct)
            .body(body),
        )
        .await;
    assert_eq!(
        over_xml
            .body
            .as_str()
            .map(|x| x.trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")),
        Some(
            "<response><status>error</status><error><message>You have exceeded your quota of gifts</message><code>-30004</code><code_str>E_GIFT_QUOTA_EXCEEDED</code_str></error></response>"
        ),
        "{over_xml:?}"
    );

    // List gift requests (as the friend who received it).
    let list = s
        .send(s.request(
            "GET",
            &format!("/playblazer/v1/app/demo/gifts/fb/abcd/list?secret_key={secret}"),
            None,
        ))
        .await;
    assert_eq!(list.body["status"], "ok", "{list:?}");
    assert_eq!(list.body["count"], 1);
    let r = &list.body["requests"][0];
    assert_eq!(r["id"], request_id.as_str());
    assert_eq!(
        r["extra"],
        json!({ "item_id": "1234", "item_name": "item1" })
    );
    let ts = r["expiry_time"]["timestamp"].as_i64().expect("timestamp");
    assert!((ts - engage::ids::now_ms() / 1000 - 3600).abs() <= 5, "{r}");
    assert_eq!(
        r["expiry_time"]["time_str"],
        format!("{} +0000", engage::ids::sql_datetime(ts * 1000))
    );
    assert_eq!(r["user"]["first_name"], "Kunal");
    assert_eq!(r["user"]["last_name"], "TestHG");
    assert_eq!(r["user"]["fbid"], "kunalg");
    assert!(r["user"]["twitterid"].is_null() && r["user"]["googleid"].is_null());
    // The requester received nothing.
    let own = s
        .send(s.request(
            "GET",
            &format!("/playblazer/v1/app/demo/gifts/fb/kunalg/list?secret_key={secret}"),
            None,
        ))
        .await;
    assert_eq!(own.body["count"], 0);

    // The same list as XML.
    let xml = s
        .send(s.request(
            "GET",
            &format!("/playblazer/v1/app/demo/gifts/fb/abcd/list?secret_key={secret}&fmt=xml"),
            None,
        ))
        .await;
    let text = xml.body.as_str().expect("xml text");
    assert!(text.starts_with("<?xml"), "{text}");
    assert!(
        text.contains("<status>ok</status>") && text.contains("<count>1</count>"),
        "{text}"
    );
    assert!(text.contains(&format!("<id>{request_id}</id>")), "{text}");
    assert!(text.contains("<item_name>item1</item_name>"), "{text}");

    // Reply errors, then the successful reply.
    let reply = |fields: Vec<(&'static str, String)>| {
        let s = &s;
        async move {
            let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            curl_f(s, "/app/demo/gifts/fb/abcd/request/reply", &f).await
        }
    };
    let base = || {
        vec![
            ("secret_key", secret.clone()),
            ("custom:item_name", "item1".into()),
            ("custom:item_id", "1234".into()),
            ("resp", "accept".into()),
        ]
    };
    let missing = reply(base()).await;
    error(-30002, "E_GIFT_INVALID_REQUEST")(&missing);
    assert_eq!(missing.body["error"]["message"], "Request ID not passed");
    let mut unknown = base();
    unknown.push(("request_id", "-1".into()));
    let unknown = reply(unknown).await;
    error(-30002, "E_GIFT_INVALID_REQUEST")(&unknown);
    assert_eq!(
        unknown.body["error"]["message"],
        "Request with id='-1' not found"
    );
    let mut good = base();
    good.push(("request_id", request_id.clone()));
    let done = reply(good.clone()).await;
    assert_eq!(done.body, json!({ "status": "ok" }));
    error(-30002, "E_GIFT_INVALID_REQUEST")(&reply(good).await);
    let stored = s
        .call("GET", &format!("/v1/gifts/{request_id}"), Some(&t), None)
        .await;
    assert_eq!(stored.body["replies"]["abcd"]["accept"], true);
    assert_eq!(
        stored.body["replies"]["abcd"]["attributes"]["item_id"],
        "1234"
    );

    // An expired request: listed as it is, refused on reply.
    s.call(
        "PUT",
        "/v1/bindings/gift",
        Some(&t),
        Some(json!({ "plugin": "gift-quota", "config": { "requests_per_day": null } })),
    )
    .await;
    let short = s
        .send(
            s.request(
                "POST",
                "/playblazer/v1/app/demo/gifts/fb/kunalg/request/new",
                None,
            )
            .form(&[("secret_key", secret.as_str()), ("expiry", "1")]),
        )
        .await;
    assert_eq!(short.body["status"], "ok", "{short:?}");
    let short_id = short.body["request_id"].as_str().expect("id").to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut late = base();
    late.push(("request_id", short_id.clone()));
    let late = reply(late).await;
    error(-30003, "E_GIFT_REQUEST_EXPIRED")(&late);
    assert_eq!(
        late.body["error"]["message"],
        format!("Request with id='{short_id}' has expired")
    );
    let both = s
        .send(s.request(
            "GET",
            &format!("/playblazer/v1/app/demo/gifts/fb/abcd/list?secret_key={secret}&sort=asc"),
            None,
        ))
        .await;
    assert_eq!(both.body["count"], 2, "expired requests are still listed");
    assert_eq!(
        both.body["requests"][0]["id"],
        short_id.as_str(),
        "asc: the earliest expiry first"
    );
    let desc = s
        .send(s.request(
            "GET",
            &format!(
                "/playblazer/v1/app/demo/gifts/fb/abcd/list?secret_key={secret}&sort=desc&limit=1"
            ),
            None,
        ))
        .await;
    assert_eq!(
        (
            desc.body["count"].as_u64(),
            desc.body["requests"][0]["id"].as_str()
        ),
        (Some(1), Some(request_id.as_str()))
    );
    let page2 = s
        .send(s.request(
            "GET",
            &format!("/playblazer/v1/app/demo/gifts/fb/abcd/list?secret_key={secret}&start=1"),
            None,
        ))
        .await;
    assert_eq!(page2.body["requests"][0]["id"], request_id.as_str());

    // Unknown user, wrong secret, another tenant's secret.
    error(-10002, "E_NO_PROFILE")(
        &curl_f(
            &s,
            "/app/demo/gifts/fb/nobody/request/new",
            &[("secret_key", &secret)],
        )
        .await,
    );
    error(-10001, "E_AUTH_FAILED")(
        &curl_f(
            &s,
            "/app/demo/gifts/fb/kunalg/request/new",
            &[("secret_key", "nope")],
        )
        .await,
    );
    let other = s
        .call(
            "POST",
            "/admin/tenants",
            Some(&s.admin_token),
            Some(json!({ "name": "other" })),
        )
        .await;
    let other_secret = other.body["api_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let cross = s
        .send(s.request(
            "GET",
            &format!("/playblazer/v1/app/demo/gifts/fb/abcd/list?secret_key={other_secret}"),
            None,
        ))
        .await;
    error(-10001, "E_AUTH_FAILED")(&cross);

    // The friend was notified; the requester heard of the reply.
    let inbox = s
        .call("GET", "/v1/players/abcd/notifications", Some(&t), None)
        .await;
    let notes = inbox.body["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(notes.len(), 2, "{inbox:?}");
    assert!(notes.iter().all(|n| n["kind"] == "gift_request"));
    let nid = notes[0]["id"].as_str().expect("id").to_owned();
    let read = s
        .call(
            "POST",
            &format!("/v1/players/abcd/notifications/{nid}/read"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(read.status, 200);
    let unread = s
        .call(
            "GET",
            "/v1/players/abcd/notifications?unread=true",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(
        unread.body["notifications"].as_array().map(Vec::len),
        Some(1)
    );
    let kunal = s
        .call("GET", "/v1/players/kunal/notifications", Some(&t), None)
        .await;
    assert_eq!(kunal.body["notifications"][0]["kind"], "gift_reply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_of_two_holds_under_a_hundred_concurrent_requests() {
    let s = Arc::new(Server::start("gift-quota", |_| {}).await);
    let t = s.demo_token().await;
    friends(&s, &t).await;
    s.call(
        "PUT",
        "/v1/bindings/gift",
        Some(&t),
        Some(json!({ "plugin": "gift-quota", "config": { "requests_per_day": 2 } })),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (s, t) = (s.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            s.call(
                "POST",
                "/v1/players/kunal/gifts",
                Some(&t),
                Some(json!({ "attributes": { "n": i.to_string() } })),
            )
            .await
        }));
    }
    let mut created = 0;
    for task in tasks {
        let a = task.await.expect("task");
        match a.status {
            201 => created += 1,
            422 => assert_eq!(
                a.body["error"]["details"]["code_str"], "E_GIFT_QUOTA_EXCEEDED",
                "{a:?}"
            ),
            _ => panic!("{a:?}"),
        }
    }
    assert_eq!(created, 2);
    let got = s
        .call("GET", "/v1/players/abcd/gifts/received", Some(&t), None)
        .await;
    assert_eq!(got.body["count"], 2);
}

async fn request_via_v1(s: &Server, t: &str, attrs: Value) -> Answer {
    s.call(
        "POST",
        "/v1/players/kunal/gifts",
        Some(t),
        Some(json!({ "attributes": attrs })),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_pre_hooks_follow_the_binding_policy_and_post_hooks_run_after_a_restart() {
    let s = Server::start("gift-hooks", |c| c.gifts.post_hooks_paused = true).await;
    let t = s.demo_token().await;
    friends(&s, &t).await;
    let up = s.upload(&t, "probe", components::GIFT_PROBE).await;
    assert_eq!(up.status, 201, "{up:?}");
    let bind = |on_error: &str| json!({ "plugin": "probe", "on_error": on_error, "limits": { "timeout_ms": 50, "memory_mib": 8, "fuel": 20_000_000_000u64 } });
    s.call("PUT", "/v1/bindings/gift", Some(&t), Some(bind("fail")))
        .await;
    for (mode, kind) in [
        ("trap", "trap"),
        ("loop", "timeout"),
        ("grow", "memory_limit"),
    ] {
        let a = request_via_v1(&s, &t, json!({ "mode": mode })).await;
        assert_eq!(
            (
                a.status,
                a.body["error"]["details"]["error"]["kind"].as_str()
            ),
            (502, Some(kind)),
            "{mode}: {a:?}"
        );
        let next = request_via_v1(&s, &t, json!({})).await;
        assert_eq!(next.status, 201, "after {mode}: {next:?}");
    }
    // Through Playblazer a failed hook is E_GIFT_REQUEST_FAILED.
    let (_, secret) = s.demo_credentials();
    let pb = curl_f(
        &s,
        "/app/demo/gifts/fb/kunalg/request/new",
        &[("secret_key", &secret), ("custom:mode", "trap")],
    )
    .await;
    error(-30001, "E_GIFT_REQUEST_FAILED")(&pb);
    // With on_error=default the first-party quota answers instead.
    s.call("PUT", "/v1/bindings/gift", Some(&t), Some(bind("default")))
        .await;
    let fallback = request_via_v1(&s, &t, json!({ "mode": "trap" })).await;
    assert_eq!(fallback.status, 201, "{fallback:?}");
    s.call("PUT", "/v1/bindings/gift", Some(&t), Some(bind("fail")))
        .await;

    // Post hooks are paused: three requests saved, none of their post hooks ran.
    let before = request_via_v1(&s, &t, json!({})).await;
    assert_eq!(before.body["attributes"]["posts_seen"], "0", "{before:?}");
    // Stop with the hooks still queued, start with them running.
    let mut config = s.config.clone();
    config.gifts.post_hooks_paused = false;
    if let Some(r) = s.running {
        r.stop().await.expect("stops");
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let s = Server::start_with(config).await;
    // Every queued post hook runs (4 successful requests and the fallback one
    // reached the probe's post hook: 5), in order, exactly once here.
    let mut seen = String::new();
    for _ in 0..100 {
        let a = request_via_v1(&s, &t, json!({})).await;
        assert_eq!(a.status, 201, "{a:?}");
        seen = a.body["attributes"]["posts_seen"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if seen.parse::<u32>().unwrap_or(0) >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(seen.parse::<u32>().unwrap_or(0) >= 5, "posts seen: {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_app_gets_its_notifications_live() {
    let s = Server::start("gift-sse", |_| {}).await;
    let t = s.demo_token().await;
    friends(&s, &t).await;
    let mut stream = s
        .request("GET", "/v1/players/abcd/notifications/stream", Some(&t))
        .send()
        .await
        .expect("stream opens");
    assert_eq!(stream.status(), 200);
    assert!(
        stream
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"))
    );
    let sent = request_via_v1(&s, &t, json!({ "item": "sword" })).await;
    assert_eq!(sent.status, 201, "{sent:?}");
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), stream.chunk())
            .await
            .expect("an event within 5 s")
            .expect("chunk")
            .expect("stream open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("event: notification"), "{text}");
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("data line");
    let n: Value = serde_json::from_str(data).expect("json");
    assert_eq!(n["kind"], "gift_request");
    assert_eq!(n["data"]["request_id"], sent.body["id"]);
    assert_eq!(n["data"]["extra"]["item"], "sword");

    // A stopping server ends open streams instead of waiting on them, and
    // releases its data directory for the next start.
    let restarted = tokio::time::timeout(std::time::Duration::from_secs(15), s.restart())
        .await
        .expect("an open stream does not hold up shutdown");
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ends when the server stops");
    let t = restarted.demo_token().await;
    assert_eq!(
        restarted
            .call("GET", "/v1/players/abcd", Some(&t), None)
            .await
            .status,
        200
    );
}

/// A gift request retried with its `Idempotency-Key` — natively or through
/// Playblazer — is the first request again: one request, one quota use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_gift_requests_count_once() {
    let s = Server::start("gifts-idem", |_| {}).await;
    let t = s.demo_token().await;
    let (_, secret) = s.demo_credentials();
    friends(&s, &t).await;
    let quota = s
        .call(
            "PUT",
            "/v1/bindings/gift",
            Some(&t),
            Some(json!({ "plugin": "gift-quota", "config": { "requests_per_day": 2 } })),
        )
        .await;
    assert_eq!(quota.status, 200, "{quota:?}");
    let playblazer = |key: &'static str, item: &'static str| {
        let (ct, body) = multipart(&[("secret_key", &secret), ("custom:item_name", item)]);
        s.send(
            s.request(
                "POST",
                "/playblazer/v1/app/demo/gifts/fb/kunalg/request/new",
                None,
            )
            .header("content-type", ct)
            .header("Idempotency-Key", key)
            .body(body),
        )
    };
    let a = playblazer("pb-1", "item1").await;
    let b = playblazer("pb-1", "item1").await;
    assert_eq!(a.body["status"], "ok", "{a:?}");
    assert!(b.replayed, "{b:?}");
    assert_eq!(a.body["request_id"], b.body["request_id"]);
    let c = playblazer("pb-1", "item2").await;
    assert_eq!(
        c.body["status"], "error",
        "the key with another request: {c:?}"
    );
    let native = |key: &'static str| {
        s.send(
            s.request("POST", "/v1/players/kunal/gifts", Some(&t))
                .header("Idempotency-Key", key)
                .json(&json!({ "attributes": { "item_name": "item3" } })),
        )
    };
    let d = native("v1-1").await;
    let e = native("v1-1").await;
    assert_eq!(d.status, 201, "{d:?}");
    assert_eq!((e.status, e.replayed), (201, true), "{e:?}");
    assert_eq!(d.body["id"], e.body["id"]);
    // Two requests used the daily quota of two; a third is refused.
    let over = native("v1-2").await;
    assert_ne!(
        over.status, 201,
        "quota of two used by two requests: {over:?}"
    );
    let received = s
        .call("GET", "/v1/players/abcd/gifts/received", Some(&t), None)
        .await;
    assert_eq!(received.body["count"], 2, "{received:?}");
}
