//! Seed 001 through the BSG-compatible API: Viber messages with an SMS
//! fallback that really is sent when Viber cannot deliver.

use std::time::Duration;

use engage_tests::{Answer, Server};
use serde_json::{Value, json};

/// The seed's request, as written (with straight quotes).
fn seed_request() -> Value {
    json!({ "tariff": "0",
      "validity": "1",
      "messages": [
        {
          "to": [ { "msisdn": "380972920000", "reference": "ext_id_19" } ],
          "text": "My Viber messages is shinier than your SMS messages",
          "alpha_name": "BSG",
          "is_promotional": false,
          "options": {
            "viber": {
              "img": "http://mysite.com/logo.png",
              "caption": "See Details",
              "action": "http://mysite.com/",
              "alt_route": {
                "originator": "BSG",
                "text": "SMS message will be received if you not a VIBER user."
              }
            }
          }
        }
      ]
    })
}

async fn bsg(s: &Server, method: &str, path: &str, key: &str, body: Option<Value>) -> Answer {
    let mut req = s
        .request(method, &format!("/bsg/rest/viber{path}"), None)
        .header("X-API-KEY", key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    s.send(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_viber_with_sms_fallback() {
    let s = Server::start("seed001", |_| {}).await;
    let t = s.demo_token().await;
    let (key, _) = s.demo_credentials();
    // The tenant's setup: prices, credit, and a Viber provider that cannot
    // reach this subscriber (the console provider told to report so).
    let prices = json!({ "currency": "EUR", "prices": [
        { "channel": "viber", "prefix": "+380", "price": 0.23 },
        { "channel": "sms", "prefix": "+380", "price": 0.023 } ] });
    assert_eq!(
        s.call("PUT", "/v1/messaging/prices", Some(&t), Some(prices))
            .await
            .status,
        200
    );
    let top = json!({ "amount": 10 });
    let c = s
        .call(
            "POST",
            "/v1/messaging/accounts/default/credit",
            Some(&t),
            Some(top),
        )
        .await;
    assert_eq!(c.status, 200, "{c:?}");
    let viber = json!({ "kind": "console", "report": "undeliverable", "channels": ["viber"] });
    assert_eq!(
        s.call("PUT", "/v1/providers/viber", Some(&t), Some(viber))
            .await
            .status,
        200
    );
    let route = json!({ "plugin": "router", "config": { "routes": [
        { "channel": "viber", "attempts": [ { "channel": "viber", "provider": "viber" } ] } ] } });
    assert_eq!(
        s.call("PUT", "/v1/bindings/route", Some(&t), Some(route))
            .await
            .status,
        200
    );

    // Authentication is BSG's: an X-API-KEY header.
    let anon = s
        .send(
            s.request("POST", "/bsg/rest/viber/create", None)
                .json(&seed_request()),
        )
        .await;
    assert_eq!(
        (anon.status, anon.body["error"].clone()),
        (401, json!(2)),
        "{anon:?}"
    );

    let created = bsg(&s, "POST", "/create", &key, Some(seed_request())).await;
    assert_eq!(created.status, 200, "{created:?}");
    let r = &created.body["result"][0];
    assert_eq!(r["error"], 0);
    assert_eq!(r["errorDescription"], "No errors");
    assert_eq!(r["reference"], "ext_id_19");
    assert_eq!(r["price"], 0.23);
    assert_eq!(r["currency"], "EUR");
    assert_eq!(created.body["currency"], "EUR");
    assert_eq!(created.body["total_price"], 0.23);
    let id = r["id"].as_str().expect("id").to_owned();
    assert!(
        id.bytes().all(|b| b.is_ascii_digit()),
        "BSG's Python library takes ids for integers: {id}"
    );
    let listed = s
        .call("GET", "/v1/messages?reference=ext_id_19", Some(&t), None)
        .await;
    let native_id = listed.body["messages"][0]["id"]
        .as_str()
        .expect("native id")
        .to_owned();
    assert_eq!(listed.body["messages"][0]["number"].to_string(), id);

    // The reference is the client's external id: reusing it is error 43.
    let again = bsg(&s, "PUT", "/create", &key, Some(seed_request())).await;
    assert_eq!(
        again.body,
        json!({ "result": [ { "error": 43, "errorDescription": "External ID already exists", "reference": "ext_id_19" } ] })
    );

    // Viber is undeliverable; the SMS fallback is really sent and reported.
    let mut status = json!(null);
    for _ in 0..200 {
        let a = bsg(&s, "GET", &format!("/{id}"), &key, None).await;
        assert_eq!(a.status, 200, "{a:?}");
        if a.body["alt_route"][0]["status"] == "delivered" {
            status = a.body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status["error"], 0, "{status}");
    assert_eq!(status["id"], id.as_str());
    assert_eq!(status["msisdn"], "380972920000");
    assert_eq!(status["reference"], "ext_id_19");
    assert_eq!(status["status"], "undeliverable");
    assert_eq!(status["price"], 0.0);
    assert_eq!(status["currency"], "EUR");
    assert!(
        status["time_in"].as_str().is_some_and(|t| t.len() == 19),
        "{status}"
    );
    assert!(status["time_sent"].is_string() && status["time_dr"].is_string());
    assert_eq!(status["alt_route"][0]["channel"], "sms");
    assert_eq!(status["alt_route"][0]["price"], 0.023);
    let by_ref = bsg(&s, "GET", "/reference/ext_id_19", &key, None).await;
    assert_eq!(by_ref.body["id"], id.as_str());

    // The SMS carried the alt_route text and originator; only it was paid.
    let native = s
        .call("GET", &format!("/v1/messages/{native_id}"), Some(&t), None)
        .await;
    let sms = &native.body["attempts"][1];
    assert_eq!(sms["sender"], "BSG");
    assert_eq!(
        native.body["plan"][1]["body"],
        "SMS message will be received if you not a VIBER user."
    );
    assert_eq!(native.body["metadata"]["caption"], "See Details");
    let credit = s
        .call(
            "GET",
            "/v1/messaging/accounts/default/credit",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(
        credit.body["available_micros"],
        10_000_000 - 23_000,
        "{credit:?}"
    );

    // Unknown ids are error 40; bad input errors per recipient, nothing sent.
    let missing = bsg(&s, "GET", "/nope", &key, None).await;
    assert_eq!(
        missing.body,
        json!({ "error": 40, "errorDescription": "Message not found" })
    );
    let mut bad = seed_request();
    bad["messages"][0]["to"] = json!([ { "msisdn": "12", "reference": "r-bad" } ]);
    let b = bsg(&s, "POST", "/create", &key, Some(bad)).await;
    assert_eq!(b.body["result"][0]["error"], 21, "{b:?}");
    let mut many = seed_request();
    many["messages"][0]["to"] = json!(
        (0..51)
            .map(|i| json!({ "msisdn": format!("38097292{i:04}") }))
            .collect::<Vec<_>>()
    );
    let m = bsg(&s, "POST", "/create", &key, Some(many)).await;
    assert_eq!(m.body["error"], 24, "{m:?}");
    let listed = s.call("GET", "/v1/messages", Some(&t), None).await;
    assert_eq!(listed.body["messages"].as_array().map(Vec::len), Some(1));
    // A bearer token works as well as the API key.
    let bearer = s
        .send(s.request("GET", &format!("/bsg/rest/viber/{id}"), Some(&t)))
        .await;
    assert_eq!(bearer.body["id"], id.as_str());
}

/// Engage sending through BSG: here the BSG it talks to is a second Engage
/// speaking the BSG API, so both sides are checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engage_sends_viber_through_a_bsg_provider_and_polls_its_status() {
    let upstream = Server::start("bsg-upstream", |_| {}).await;
    let (upstream_key, _) = upstream.demo_credentials();
    let s = Server::start("bsg-downstream", |_| {}).await;
    let t = s.demo_token().await;
    let provider = json!({ "kind": "bsg", "api_key": upstream_key,
                           "base_url": format!("{}/bsg/rest", upstream.base) });
    let p = s
        .call("PUT", "/v1/providers/bsg", Some(&t), Some(provider))
        .await;
    assert_eq!(p.status, 200, "{p:?}");
    assert_eq!(p.body["provider"]["api_key"], "***");
    let route = json!({ "plugin": "router", "config": { "routes": [
        { "channel": "viber", "attempts": [ { "channel": "viber", "provider": "bsg" } ] } ] } });
    assert_eq!(
        s.call("PUT", "/v1/bindings/route", Some(&t), Some(route))
            .await
            .status,
        200
    );

    let a = s
        .call(
            "POST",
            "/v1/messages",
            Some(&t),
            Some(json!({ "to": ["+380972920000"], "channel": "viber", "sender": "BSG", "body": "Hi ✓" })),
        )
        .await;
    assert_eq!(a.status, 202, "{a:?}");
    let id = a.body["messages"][0]["id"].as_str().expect("id").to_owned();
    let mut m = Value::Null;
    for _ in 0..200 {
        m = s
            .call("GET", &format!("/v1/messages/{id}"), Some(&t), None)
            .await
            .body;
        if m["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(m["status"], "delivered", "{m}");
    // The upstream has it under Engage's message id as the reference.
    let upstream_id = m["attempts"][0]["provider_id"]
        .as_str()
        .expect("provider id");
    let seen = bsg(
        &upstream,
        "GET",
        &format!("/reference/{id}"),
        &upstream_key,
        None,
    )
    .await;
    assert_eq!(seen.body["id"], upstream_id, "{seen:?}");
    assert_eq!(seen.body["msisdn"], "380972920000");
    let t_up = upstream.demo_token().await;
    let there = upstream
        .call(
            "GET",
            &format!("/v1/messages?reference={id}"),
            Some(&t_up),
            None,
        )
        .await;
    let there = &there.body["messages"][0];
    assert_eq!(there["number"].to_string(), upstream_id);
    assert_eq!(there["body"], "Hi ✓");
    assert_eq!(there["sender"], "BSG");
}

/// A raw BSG request as a client library sends it: its method, path,
/// content type and body bytes.
async fn raw(s: &Server, method: &str, path: &str, key: &str, ctype: &str, body: &str) -> Answer {
    s.send(
        s.request(method, path, None)
            .header("X-API-KEY", key)
            .header("X-API-SOURCE", "BSG PHP Library")
            .header("Content-Type", ctype)
            .body(body.to_owned()),
    )
    .await
}

/// What BSG's own PHP, Node and Python libraries send, exactly: PUT with
/// `text/json` under `/v1.0/` (PHP), POST with a JSON body labelled
/// `multipart/form-data` (Node), Viber validity in seconds, numeric ids,
/// the SMS API's three destinations, price quotes, price lists, balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vendor_libraries_calls() {
    let s = Server::start("bsg-libs", |_| {}).await;
    let t = s.demo_token().await;
    let (key, _) = s.demo_credentials();
    let prices = json!({ "currency": "EUR", "prices": [
        { "channel": "viber", "prefix": "+380", "price": 0.5 },
        { "channel": "sms", "prefix": "+380", "price": 0.25 } ] });
    let p = s
        .call("PUT", "/v1/messaging/prices", Some(&t), Some(prices))
        .await;
    assert_eq!(p.status, 200, "{p:?}");
    let c = s
        .call(
            "POST",
            "/v1/messaging/accounts/default/credit",
            Some(&t),
            Some(json!({ "amount": 10 })),
        )
        .await;
    assert_eq!(c.status, 200, "{c:?}");
    let viber = json!({ "kind": "console", "channels": ["viber"] });
    let v = s
        .call("PUT", "/v1/providers/viber", Some(&t), Some(viber))
        .await;
    assert_eq!(v.status, 200, "{v:?}");
    let route = json!({ "plugin": "router", "config": { "routes": [
        { "channel": "viber", "attempts": [ { "channel": "viber", "provider": "viber" } ] } ] } });
    let b = s
        .call("PUT", "/v1/bindings/route", Some(&t), Some(route))
        .await;
    assert_eq!(b.status, 200, "{b:?}");

    // Balance and price lists, read by every library.
    let bal = raw(&s, "GET", "/bsg/rest/common/balance", &key, "text/json", "").await;
    assert_eq!(bal.status, 200, "{bal:?}");
    assert_eq!(bal.body["error"], 0);
    assert_eq!(bal.body["amount"], 10.0);
    assert_eq!(bal.body["currency"], "EUR");
    let vp = raw(&s, "GET", "/bsg/v1.0/viber/prices", &key, "text/json", "").await;
    assert_eq!(vp.body["prices"][0]["type"], "viber", "{vp:?}");
    assert_eq!(vp.body["prices"][0]["price"], 0.5);
    assert_eq!(vp.body["prices"].as_array().map(Vec::len), Some(1));
    let sp = raw(&s, "GET", "/bsg/rest/sms/prices/0", &key, "text/json", "").await;
    assert_eq!(sp.body["prices"][0]["type"], "sms", "{sp:?}");
    for field in ["country", "country_name", "mcc", "price", "currency"] {
        assert!(!sp.body["prices"][0][field].is_null(), "{field}: {sp:?}");
    }

    // PHP: PUT, text/json, validity 86400 (seconds), a number without a
    // reference; a price quote first, which sends nothing.
    let php = r#"{"validity":86400,"messages":[{"to":[{"msisdn":380501111111}],"text":"test","alpha_name":"Shop"}]}"#;
    let quote = raw(
        &s,
        "PUT",
        "/bsg/v1.0/viber/price",
        &key,
        "text/json; charset=utf-8",
        php,
    )
    .await;
    assert_eq!(quote.body["result"][0]["error"], 0, "{quote:?}");
    assert_eq!(quote.body["result"][0]["price"], 0.5);
    assert!(quote.body["result"][0].get("id").is_none());
    let none = s.call("GET", "/v1/messages", Some(&t), None).await;
    assert_eq!(none.body["messages"], json!([]), "a quote sends nothing");
    let sent = raw(
        &s,
        "PUT",
        "/bsg/v1.0/viber/create",
        &key,
        "text/json; charset=utf-8",
        php,
    )
    .await;
    assert_eq!(sent.status, 200, "{sent:?}");
    let r = &sent.body["result"][0];
    assert_eq!(r["error"], 0, "{sent:?}");
    let id = r["id"].as_str().expect("id").to_owned();
    assert!(id.parse::<u64>().is_ok(), "{id}");
    let listed = s.call("GET", "/v1/messages", Some(&t), None).await;
    let m = &listed.body["messages"][0];
    assert_eq!(
        m["expires_at_ms"].as_i64().unwrap_or(0) - m["created_at_ms"].as_i64().unwrap_or(0),
        86_400_000,
        "validity 86400 is seconds: {m}"
    );

    // Node: POST with a JSON body labelled multipart/form-data.
    let node = r#"{"tariff":0,"validity":1,"messages":[{"to":[{"msisdn":380972920001,"reference":"node-1"}],"text":"hi","alpha_name":"BSG","is_promotional":false,"options":{"viber":{"caption":"See"}}}]}"#;
    let n = raw(
        &s,
        "POST",
        "/bsg/rest/viber/create",
        &key,
        "multipart/form-data",
        node,
    )
    .await;
    assert_eq!(n.body["result"][0]["error"], 0, "{n:?}");
    assert_eq!(n.body["result"][0]["reference"], "node-1");

    // Python: status by integer id and by reference.
    let mut status = Value::Null;
    for _ in 0..200 {
        status = raw(
            &s,
            "GET",
            &format!("/bsg/rest/viber/{id}"),
            &key,
            "application/json; charset=utf-8",
            "",
        )
        .await
        .body;
        if status["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status["status"], "delivered", "{status}");
    assert_eq!(status["id"], id.as_str());
    let by_ref = raw(
        &s,
        "GET",
        "/bsg/rest/viber/reference/node-1",
        &key,
        "text/json",
        "",
    )
    .await;
    assert_eq!(by_ref.body["reference"], "node-1", "{by_ref:?}");

    // SMS: one number (one result object), one text to many, a text each.
    let one = r#"{"destination":"phone","msisdn":"380501111112","originator":"Shop","body":"one","reference":"sms-1","validity":72}"#;
    let q = raw(&s, "PUT", "/bsg/v1.0/sms/price", &key, "text/json", one).await;
    assert_eq!(q.body["result"]["price"], 0.25, "{q:?}");
    let a = raw(&s, "PUT", "/bsg/v1.0/sms/create", &key, "text/json", one).await;
    assert_eq!(a.body["result"]["error"], 0, "{a:?}");
    assert_eq!(a.body["result"]["reference"], "sms-1");
    let sms_id = a.body["result"]["id"].as_str().expect("sms id").to_owned();
    let shown = raw(
        &s,
        "GET",
        &format!("/bsg/rest/sms/{sms_id}"),
        &key,
        "text/json",
        "",
    )
    .await;
    assert_eq!(shown.body["msisdn"], "380501111112", "{shown:?}");
    let by_ref = raw(
        &s,
        "GET",
        "/bsg/rest/sms/reference/sms-1",
        &key,
        "text/json",
        "",
    )
    .await;
    assert_eq!(by_ref.body["id"], sms_id.as_str());
    let wrong = raw(
        &s,
        "GET",
        &format!("/bsg/rest/viber/{sms_id}"),
        &key,
        "text/json",
        "",
    )
    .await;
    assert_eq!(
        (wrong.status, wrong.body["error"].clone()),
        (404, json!(40)),
        "an SMS is no Viber message"
    );
    let many = r#"{"destination":"phones","phones":["380501111113",{"msisdn":380501111114,"reference":"sms-3"}],"originator":"Shop","body":"many"}"#;
    let m = raw(
        &s,
        "POST",
        "/bsg/rest/sms/create",
        &key,
        "application/json",
        many,
    )
    .await;
    let rows = m.body["result"].as_array().expect("rows").clone();
    assert_eq!(rows.len(), 2, "{m:?}");
    assert!(rows.iter().all(|r| r["error"] == 0), "{m:?}");
    assert_eq!(m.body["total_price"], 0.5);
    let each = r#"{"destination":"individual","phones":[{"msisdn":"380501111115","body":"for you"},{"msisdn":"380501111116","body":""}]}"#;
    let e = raw(
        &s,
        "POST",
        "/bsg/rest/sms/create",
        &key,
        "application/json",
        each,
    )
    .await;
    assert_eq!(
        (e.status, e.body["error"].clone()),
        (400, json!(26)),
        "an empty text: {e:?}"
    );

    // Bad payloads change nothing; unserved calls answer in BSG's format.
    let before = s
        .call("GET", "/v1/messages?limit=500", Some(&t), None)
        .await;
    for bad in [
        "not json",
        r#"{"messages":[]}"#,
        r#"{"validity":"forever","messages":[{"to":[{"msisdn":1}],"text":"x"}]}"#,
        r#"{"validity":9999999,"messages":[{"to":[{"msisdn":1}],"text":"x"}]}"#,
    ] {
        let a = raw(
            &s,
            "POST",
            "/bsg/rest/viber/create",
            &key,
            "application/json",
            bad,
        )
        .await;
        assert_eq!(
            (a.status, a.body["error"].clone()),
            (400, json!(44)),
            "{bad}: {a:?}"
        );
    }
    let d = raw(
        &s,
        "POST",
        "/bsg/rest/sms/create",
        &key,
        "application/json",
        r#"{"destination":"fax","body":"x"}"#,
    )
    .await;
    assert_eq!(d.body["error"], 44, "{d:?}");
    let after = s
        .call("GET", "/v1/messages?limit=500", Some(&t), None)
        .await;
    let ids = |a: &Answer| -> Vec<String> {
        a.body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(ids(&before), ids(&after), "refused requests send nothing");
    let hlr = raw(
        &s,
        "POST",
        "/bsg/rest/hlr/create",
        &key,
        "application/json",
        "[]",
    )
    .await;
    assert_eq!(hlr.status, 404, "{hlr:?}");
    assert!(hlr.body["error"].is_number() && hlr.body["errorDescription"].is_string());
    let anon = s
        .send(s.request("GET", "/bsg/rest/common/balance", None))
        .await;
    assert_eq!((anon.status, anon.body["error"].clone()), (401, json!(2)));
}

/// A create retried with the same `Idempotency-Key` (after a timeout, say)
/// answers the first result again and sends nothing more; the key with
/// another body is refused; references repeated inside one request are
/// refused (43) for the second, the rest go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_create_sends_once() {
    let s = Server::start("bsg-idem", |_| {}).await;
    let t = s.demo_token().await;
    let (key, _) = s.demo_credentials();
    let viber = json!({ "kind": "console", "channels": ["viber"] });
    assert_eq!(
        s.call("PUT", "/v1/providers/viber", Some(&t), Some(viber))
            .await
            .status,
        200
    );
    let route = json!({ "plugin": "router", "config": { "routes": [
        { "channel": "viber", "attempts": [ { "channel": "viber", "provider": "viber" } ] } ] } });
    assert_eq!(
        s.call("PUT", "/v1/bindings/route", Some(&t), Some(route))
            .await
            .status,
        200
    );
    let body = json!({ "messages": [ { "to": [
        { "msisdn": "380972920001", "reference": "r-1" },
        { "msisdn": "380972920002", "reference": "r-2" },
        { "msisdn": "380972920003", "reference": "r-1" } ], "text": "hi", "alpha_name": "BSG" } ] });
    let create = |b: Value, k: &'static str| {
        s.send(
            s.request("POST", "/bsg/rest/viber/create", None)
                .header("X-API-KEY", &key)
                .header("Idempotency-Key", k)
                .json(&b),
        )
    };
    let first = create(body.clone(), "create-1").await;
    assert_eq!(first.status, 200, "{first:?}");
    let codes: Vec<i64> = first.body["result"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["error"].as_i64())
        .collect();
    assert_eq!(codes, [0, 0, 43], "{first:?}");
    let again = create(body.clone(), "create-1").await;
    assert!(again.replayed, "{again:?}");
    assert_eq!(again.body, first.body);
    let listed = s.call("GET", "/v1/messages", Some(&t), None).await;
    assert_eq!(
        listed.body["messages"].as_array().map(Vec::len),
        Some(2),
        "sent once"
    );
    let mut other = body.clone();
    other["messages"][0]["text"] = json!("changed");
    let reused = create(other, "create-1").await;
    assert_eq!(
        (reused.status, reused.body["error"].clone()),
        (409, json!(44)),
        "{reused:?}"
    );
    let listed = s.call("GET", "/v1/messages", Some(&t), None).await;
    assert_eq!(listed.body["messages"].as_array().map(Vec::len), Some(2));
}
