//! Messaging through the native API: templating and routing plugins on the
//! path, the console provider, a Twilio-shaped provider on loopback with
//! signed delivery reports, failover, pricing and credit.

use std::time::Duration;

use engage_tests::Server;
use engage_tests::twilio::FakeTwilio;
use serde_json::{Value, json};

/// Poll message `id` until `done` holds (at most 10 s).
async fn wait_for(s: &Server, t: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let a = s
            .call("GET", &format!("/v1/messages/{id}"), Some(t), None)
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        if done(&a.body) {
            return a.body;
        }
        last = a.body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("message {id} did not reach the expected state: {last}");
}

fn is(status: &'static str) -> impl Fn(&Value) -> bool {
    move |m| m["status"] == status
}

async fn send(s: &Server, t: &str, body: Value) -> engage_tests::Answer {
    s.call("POST", "/v1/messages", Some(t), Some(body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_templated_message_is_delivered_by_the_console_provider() {
    let s = Server::start("msg-console", |_| {}).await;
    let t = s.demo_token().await;
    let a = send(
        &s,
        &t,
        json!({
            "to": ["+1 415 555 0100"],
            "template": "Your code: {{code}} ✓",
            "vars": { "code": "ÄBC-123 & <ok>" },
            "reference": "order-1",
        }),
    )
    .await;
    assert_eq!(a.status, 202, "{a:?}");
    let m = &a.body["messages"][0];
    assert_eq!(m["to"], "+14155550100");
    assert_eq!(m["body"], "Your code: ÄBC-123 & <ok> ✓");
    assert_eq!(m["encoding"], "ucs2");
    let id = m["id"].as_str().expect("id");
    let done = wait_for(&s, &t, id, is("delivered")).await;
    assert_eq!(done["attempts"][0]["provider"], "console");
    assert_eq!(done["attempts"][0]["status"], "delivered");

    // The reference is unique per tenant; it finds the message.
    let again = send(
        &s,
        &t,
        json!({ "to": ["+14155550101"], "body": "x", "reference": "order-1" }),
    )
    .await;
    assert_eq!(again.status, 409, "{again:?}");
    assert_eq!(again.body["error"]["code"], "duplicate_reference");
    let found = s
        .call("GET", "/v1/messages?reference=order-1", Some(&t), None)
        .await;
    assert_eq!(found.body["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(found.body["messages"][0]["id"], id);

    // An idempotent retry sends nothing new.
    let first = s
        .send(
            s.request("POST", "/v1/messages", Some(&t))
                .header("idempotency-key", "k-1")
                .json(&json!({ "to": ["+14155550102"], "body": "once" })),
        )
        .await;
    let second = s
        .send(
            s.request("POST", "/v1/messages", Some(&t))
                .header("idempotency-key", "k-1")
                .json(&json!({ "to": ["+14155550102"], "body": "once" })),
        )
        .await;
    assert_eq!((first.status, second.status), (202, 202));
    assert_eq!(
        first.body["messages"][0]["id"],
        second.body["messages"][0]["id"]
    );
    let to = s
        .call("GET", "/v1/messages?to=%2B14155550102", Some(&t), None)
        .await;
    assert_eq!(
        to.body["messages"].as_array().map(Vec::len),
        Some(1),
        "{to:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_refused_and_nothing_is_queued() {
    let s = Server::start("msg-bad", |_| {}).await;
    let t = s.demo_token().await;
    let many: Vec<String> = (0..51).map(|i| format!("+1415555{i:04}")).collect();
    let long = "x".repeat(153 * 10 + 1);
    let cases = [
        (json!({ "to": ["12"], "body": "hi" }), 400, "invalid_phone"),
        (
            json!({ "to": many, "body": "hi" }),
            400,
            "too_many_recipients",
        ),
        (
            json!({ "to": ["+14155550100"], "body": "  " }),
            400,
            "invalid_message",
        ),
        (
            json!({ "to": ["+14155550100"], "body": "hi", "channel": "fax" }),
            400,
            "invalid_message",
        ),
        (
            json!({ "to": ["+14155550100"], "body": long }),
            400,
            "message_too_long",
        ),
        (json!({ "to": [], "body": "hi" }), 400, "invalid_message"),
        (
            json!({ "to": ["+14155550100"], "body": "hi", "template": "x" }),
            400,
            "invalid_message",
        ),
        (
            json!({ "to": ["+14155550100"], "template": "{{missing}}" }),
            502,
            "plugin_rejected",
        ),
        (
            json!({ "to": ["+14155550100"], "body": "hi", "colour": "red" }),
            400,
            "invalid_json",
        ),
    ];
    for (body, status, code) in cases {
        let a = send(&s, &t, body.clone()).await;
        assert_eq!(
            (a.status, a.body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body} → {a:?}"
        );
    }
    let all = s.call("GET", "/v1/messages", Some(&t), None).await;
    assert_eq!(all.body["messages"], json!([]), "nothing was queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_is_reserved_charged_for_what_went_out_and_released() {
    let s = Server::start("msg-credit", |_| {}).await;
    let t = s.demo_token().await;
    let prices = json!({ "currency": "EUR", "prices": [
        { "channel": "sms", "price": 0.05 },
        { "channel": "viber", "prefix": "+380", "price": 0.23 },
    ]});
    assert_eq!(
        s.call("PUT", "/v1/messaging/prices", Some(&t), Some(prices))
            .await
            .status,
        200
    );
    // Viber is undeliverable here; SMS goes through.
    let viber = json!({ "kind": "console", "report": "undeliverable", "channels": ["viber"] });
    assert_eq!(
        s.call("PUT", "/v1/providers/viber-sim", Some(&t), Some(viber))
            .await
            .status,
        200
    );
    let route = json!({ "plugin": "router", "config": { "routes": [
        { "channel": "viber", "attempts": [
            { "channel": "viber", "provider": "viber-sim" },
            { "channel": "sms", "provider": "console", "body_param": "alt_text" } ] } ] } });
    let b = s
        .call("PUT", "/v1/bindings/route", Some(&t), Some(route))
        .await;
    assert_eq!(b.status, 200, "{b:?}");

    let msg = json!({ "to": ["+380972920000"], "channel": "viber", "body": "Viber text",
                      "metadata": { "alt_text": "SMS text" } });
    // A quote needs no credit.
    let q = s
        .call("POST", "/v1/messages/quote", Some(&t), Some(msg.clone()))
        .await;
    assert_eq!(q.status, 200, "{q:?}");
    assert_eq!(q.body["total_price"], 0.23);
    assert_eq!(q.body["total_reserved"], 0.23);
    assert_eq!(q.body["currency"], "EUR");

    let none = send(&s, &t, msg.clone()).await;
    assert_eq!(none.status, 402, "{none:?}");
    assert_eq!(none.body["error"]["code"], "insufficient_credit");
    assert_eq!(
        s.call("GET", "/v1/messages", Some(&t), None).await.body["messages"],
        json!([])
    );

    let top = s
        .call(
            "POST",
            "/v1/messaging/accounts/default/credit",
            Some(&t),
            Some(json!({ "amount": 1.0 })),
        )
        .await;
    assert_eq!(top.body["available"], 1.0, "{top:?}");
    let a = send(&s, &t, msg).await;
    assert_eq!(a.status, 202, "{a:?}");
    let id = a.body["messages"][0]["id"].as_str().expect("id");
    let done = wait_for(&s, &t, id, |m| m["final_at_ms"].is_i64()).await;
    assert_eq!(done["status"], "delivered", "{done}");
    assert_eq!(done["attempts"][0]["channel"], "viber");
    assert_eq!(done["attempts"][0]["status"], "undeliverable");
    assert_eq!(done["attempts"][1]["channel"], "sms");
    assert_eq!(done["attempts"][1]["status"], "delivered");
    assert_eq!(done["charged_micros"], 50_000, "only the SMS went out");
    let credit = s
        .call(
            "GET",
            "/v1/messaging/accounts/default/credit",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(credit.body["available_micros"], 950_000, "{credit:?}");
    assert_eq!(credit.body["reserved_micros"], 0);

    // A scheduled message holds credit until cancelled.
    let later = send(
        &s,
        &t,
        json!({ "to": ["+14155550100"], "body": "later", "schedule_at_ms": engage::ids::now_ms() + 3_600_000 }),
    )
    .await;
    assert_eq!(
        later.body["messages"][0]["status"], "scheduled",
        "{later:?}"
    );
    let held = s
        .call(
            "GET",
            "/v1/messaging/accounts/default/credit",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(held.body["reserved_micros"], 50_000);
    let lid = later.body["messages"][0]["id"].as_str().expect("id");
    let c = s
        .call(
            "POST",
            &format!("/v1/messages/{lid}/cancel"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(c.body["status"], "rejected", "{c:?}");
    let back = s
        .call(
            "GET",
            "/v1/messaging/accounts/default/credit",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(
        (
            back.body["available_micros"].clone(),
            back.body["reserved_micros"].clone()
        ),
        (json!(950_000), json!(0))
    );
    let again = s
        .call(
            "POST",
            &format!("/v1/messages/{lid}/cancel"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(again.body["error"]["code"], "not_cancellable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_sends_are_retried_and_an_undelivered_report_fails_over() {
    let tw = FakeTwilio::start().await;
    tw.fail_next(1);
    let twilio_url = tw.url.clone();

    let s = Server::start("msg-twilio", |_| {}).await;
    let t = s.demo_token().await;
    let provider = json!({ "kind": "twilio", "account_sid": "AC0123456789abcdef0123456789abcdef", "auth_token": "tok-secret",
                           "from": "+15005550006", "base_url": twilio_url });
    let p = s
        .call("PUT", "/v1/providers/twilio", Some(&t), Some(provider))
        .await;
    assert_eq!(p.status, 200, "{p:?}");
    assert_eq!(
        p.body["provider"]["auth_token"], "***",
        "secrets are not echoed"
    );
    let route = json!({ "plugin": "router", "config": { "routes": [ { "attempts": [
        { "channel": "sms", "provider": "twilio" },
        { "channel": "sms", "provider": "console" } ] } ] } });
    assert_eq!(
        s.call("PUT", "/v1/bindings/route", Some(&t), Some(route))
            .await
            .status,
        200
    );

    let a = send(
        &s,
        &t,
        json!({ "to": ["+14155550100"], "body": "Hi & welcome: ½ price!" }),
    )
    .await;
    assert_eq!(a.status, 202, "{a:?}");
    let id = a.body["messages"][0]["id"].as_str().expect("id").to_owned();
    let sent = wait_for(&s, &t, &id, |m| m["attempts"][0]["provider_id"].is_string()).await;
    assert_eq!(sent["status"], "queued");
    assert_eq!(sent["attempts"][0]["tries"], 2, "the 500 was retried");
    let sid = sent["attempts"][0]["provider_id"]
        .as_str()
        .expect("sid")
        .to_owned();

    let reqs = tw.requests();
    assert_eq!(reqs.len(), 2);
    let r = &reqs[1];
    assert_eq!(
        r.path,
        "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"
    );
    use base64::Engine as _;
    let expected = base64::engine::general_purpose::STANDARD
        .encode("AC0123456789abcdef0123456789abcdef:tok-secret");
    assert_eq!(r.authorization, format!("Basic {expected}"));
    assert_eq!(r.field("To"), Some("+14155550100"));
    assert_eq!(r.field("From"), Some("+15005550006"));
    assert_eq!(r.field("Body"), Some("Hi & welcome: ½ price!"));
    assert_eq!(
        r.field("StatusCallback").map(str::to_owned),
        Some(format!("{}/hooks/twilio/demo/twilio?message={id}", s.base))
    );

    assert_eq!(
        tw.violations(),
        Vec::<String>::new(),
        "requests conform to CreateMessage"
    );
    assert_eq!(
        r.field("ValidityPeriod"),
        Some("36000"),
        "Twilio's maximum; Engage's validity is 24 h"
    );

    // Twilio reports the message undelivered; the signature is checked.
    let hook = "/hooks/twilio/demo/twilio";
    let params = vec![
        ("MessageSid".to_owned(), sid.to_uppercase()),
        ("MessageStatus".to_owned(), "undelivered".to_owned()),
        ("ErrorCode".to_owned(), "30003".to_owned()),
        (
            "AccountSid".to_owned(),
            "AC0123456789abcdef0123456789abcdef".to_owned(),
        ),
    ];
    let signature = engage::messaging::providers::twilio_signature(
        "tok-secret",
        &format!("{}{hook}", s.base),
        &params,
    );
    let forged = s
        .send(
            s.request("POST", hook, None)
                .header("x-twilio-signature", "AAAA")
                .form(&params),
        )
        .await;
    assert_eq!(forged.status, 403, "{forged:?}");
    let real = s
        .send(
            s.request("POST", hook, None)
                .header("x-twilio-signature", signature)
                .form(&params),
        )
        .await;
    assert_eq!(real.status, 204, "{real:?}");
    let done = wait_for(&s, &t, &id, is("delivered")).await;
    assert_eq!(done["attempts"][0]["status"], "undeliverable");
    assert_eq!(done["attempts"][0]["error"], "twilio error 30003");
    assert_eq!(done["attempts"][1]["provider"], "console");
    // A report for an id nobody sent is accepted and changes nothing.
    let stray = vec![
        ("MessageSid".to_owned(), "SMnope".to_owned()),
        ("MessageStatus".to_owned(), "delivered".to_owned()),
    ];
    let sig = engage::messaging::providers::twilio_signature(
        "tok-secret",
        &format!("{}{hook}", s.base),
        &stray,
    );
    let r = s
        .send(
            s.request("POST", hook, None)
                .header("x-twilio-signature", sig)
                .form(&stray),
        )
        .await;
    assert_eq!(r.status, 204);
}

/// The fake Twilio's reporting mode, which `scripts/bench-messages`
/// measures: every message taken is reported `delivered` by a signed
/// status callback, and the server applies each report. A fake that signs
/// with another account's token is refused, and its messages stay queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_status_callback_per_message_delivers_each() {
    use engage_tests::twilio::Counts;
    let bind = || async {
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
    };
    let tw = FakeTwilio::reporting(bind().await, "tok-right", true);
    let liar = FakeTwilio::reporting(bind().await, "tok-wrong", true);
    let s = Server::start("msg-twilio-dlr", |_| {}).await;
    let t = s.demo_token().await;
    for (name, url) in [("twilio", &tw.url), ("liar", &liar.url)] {
        let provider = json!({ "kind": "twilio", "account_sid": "AC0123456789abcdef0123456789abcdef",
                               "auth_token": "tok-right", "from": "+15005550006", "base_url": url });
        let p = s
            .call(
                "PUT",
                &format!("/v1/providers/{name}"),
                Some(&t),
                Some(provider),
            )
            .await;
        assert_eq!(p.status, 200, "{p:?}");
    }
    let route =
        |provider: &str| json!({ "plugin": "router", "config": { "default_provider": provider } });
    let bound = s
        .call("PUT", "/v1/bindings/route", Some(&t), Some(route("twilio")))
        .await;
    assert_eq!(bound.status, 200, "{bound:?}");
    let to: Vec<String> = (0..20).map(|i| format!("+1415555{i:04}")).collect();
    let a = send(
        &s,
        &t,
        json!({ "to": to, "body": "Your code is 8830644924" }),
    )
    .await;
    assert_eq!(a.status, 202, "{a:?}");
    let ids: Vec<String> = a.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 20);
    for id in &ids {
        let m = wait_for(&s, &t, id, is("delivered")).await;
        assert_eq!(m["attempts"][0]["provider"], "twilio");
        assert_eq!(m["attempts"][0]["status"], "delivered");
    }
    assert_eq!(
        tw.counts(),
        Counts {
            created: 20,
            reports_accepted: 20,
            reports_refused: 0
        }
    );
    assert_eq!(tw.violations(), Vec::<String>::new());

    let bound = s
        .call("PUT", "/v1/bindings/route", Some(&t), Some(route("liar")))
        .await;
    assert_eq!(bound.status, 200, "{bound:?}");
    let a = send(&s, &t, json!({ "to": ["+14155559999"], "body": "Hi" })).await;
    assert_eq!(a.status, 202, "{a:?}");
    let id = a.body["messages"][0]["id"].as_str().expect("id").to_owned();
    for _ in 0..200 {
        if liar.counts().reports_refused == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        liar.counts(),
        Counts {
            created: 1,
            reports_accepted: 0,
            reports_refused: 1
        },
        "a callback signed with the wrong token is refused"
    );
    let m = s
        .call("GET", &format!("/v1/messages/{id}"), Some(&t), None)
        .await;
    assert_eq!(m.body["status"], "queued", "{m:?}");
    assert_eq!(m.body["attempts"][0]["status"], "queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_kannel_delivers_and_reports_back() {
    let kannel = engage_tests::kannel::Kannel::start().await;
    let s = Server::start("msg-kannel", |_| {}).await;
    let t = s.demo_token().await;
    let provider = json!({ "kind": "kannel", "url": kannel.url, "username": kannel.username,
                           "password": kannel.password, "from": "Engage" });
    let p = s
        .call("PUT", "/v1/providers/kannel", Some(&t), Some(provider))
        .await;
    assert_eq!(p.status, 200, "{p:?}");
    assert_eq!(p.body["provider"]["password"], "***");
    let route = json!({ "plugin": "router", "config": { "default_provider": "kannel" } });
    assert_eq!(
        s.call("PUT", "/v1/bindings/route", Some(&t), Some(route))
            .await
            .status,
        200
    );

    let texts = ["Hello & welcome: 100% off", "Grüße ✓ ½"];
    let mut ids = Vec::new();
    for text in texts {
        let a = send(&s, &t, json!({ "to": ["+14155550100"], "body": text })).await;
        assert_eq!(a.status, 202, "{a:?}");
        ids.push(a.body["messages"][0]["id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        // Kannel's fake SMSC acknowledges; bearerbox reports through dlr-url.
        let m = wait_for(&s, &t, id, is("delivered")).await;
        assert_eq!(m["attempts"][0]["provider"], "kannel");
        assert_eq!(m["attempts"][0]["provider_id"], id.as_str());
    }
    let got = kannel.received();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.iter().all(|l| l.contains("Engage +14155550100")),
        "{got:?}"
    );
    // Special characters arrive intact: GSM text as is, the rest as UCS-2.
    assert!(
        got.iter()
            .any(|l| l.ends_with("text Hello & welcome: 100% off>")),
        "{got:?}"
    );
    let ucs2 = got
        .iter()
        .find_map(|l| l.split(" ucs-2 ").nth(1))
        .map(|t| t.trim_end_matches('>'))
        .expect("the non-GSM text went as UCS-2");
    assert_eq!(decode_ucs2(ucs2), "Grüße ✓ ½");

    // A forged delivery report is refused.
    let forged = s
        .call(
            "GET",
            &format!(
                "/hooks/kannel/demo/kannel?message={}&type=2&reply=x&sig=00",
                ids[0]
            ),
            None,
            None,
        )
        .await;
    assert_eq!(forged.status, 403, "{forged:?}");
}

/// fakesmsc's display of a UCS-2 text: URL-encoded UTF-16BE bytes.
fn decode_ucs2(shown: &str) -> String {
    let mut bytes = Vec::new();
    let mut it = shown.bytes();
    while let Some(b) = it.next() {
        match b {
            b'%' => {
                let hex: String = it.by_ref().take(2).map(char::from).collect();
                bytes.push(u8::from_str_radix(&hex, 16).unwrap_or(0));
            }
            b'+' => bytes.push(b' '),
            b => bytes.push(b),
        }
    }
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|p| u16::from_be_bytes([p[0], p.get(1).copied().unwrap_or(0)]))
        .collect();
    String::from_utf16_lossy(&units)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_and_closing_providers_fail_over_and_other_tenants_keep_flowing() {
    let s = Server::start("msg-stall", |c| c.messaging.provider_timeout_ms = 1000).await;
    let a = s.demo_token().await;
    let b = s.tenant("other").await;
    let tw = FakeTwilio::start().await;
    tw.hang(true);
    let closing = engage_tests::twilio::closing_server().await;
    for (name, url) in [("slow", tw.url.clone()), ("broken", closing)] {
        let p = json!({ "kind": "twilio", "account_sid": "AC0123456789abcdef0123456789abcdef",
                        "auth_token": "x", "from": "+15005550006", "base_url": url });
        assert_eq!(
            s.call("PUT", &format!("/v1/providers/{name}"), Some(&a), Some(p))
                .await
                .status,
            200
        );
    }
    let route = json!({ "plugin": "router", "config": { "routes": [
        { "prefixes": ["+1415"], "attempts": [
            { "channel": "sms", "provider": "slow" }, { "channel": "sms", "provider": "console" } ] },
        { "prefixes": ["+1416"], "attempts": [
            { "channel": "sms", "provider": "broken" }, { "channel": "sms", "provider": "console" } ] } ] } });
    assert_eq!(
        s.call("PUT", "/v1/bindings/route", Some(&a), Some(route))
            .await
            .status,
        200
    );

    let slow: Vec<String> = (0..20).map(|i| format!("+1415555{i:04}")).collect();
    let sa = send(&s, &a, json!({ "to": slow, "body": "slow" })).await;
    let sb = send(&s, &a, json!({ "to": ["+14165550000"], "body": "broken" })).await;
    assert_eq!((sa.status, sb.status), (202, 202));
    let started = std::time::Instant::now();
    // Another tenant's message goes out while those are stuck.
    let other = send(&s, &b, json!({ "to": ["+14155550199"], "body": "fast" })).await;
    let oid = other.body["messages"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    wait_for(&s, &b, &oid, is("delivered")).await;
    let waited = started.elapsed();
    let first = sa.body["messages"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let still = s
        .call("GET", &format!("/v1/messages/{first}"), Some(&a), None)
        .await;
    assert_ne!(
        still.body["status"], "delivered",
        "the slow ones were still trying after {waited:?}"
    );

    // Each stuck message: three tries against the provider, then failover.
    let mut ids: Vec<String> = sa.body["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.push(
        sb.body["messages"][0]["id"]
            .as_str()
            .expect("id")
            .to_owned(),
    );
    for id in &ids {
        // Three timeouts of 1 s and two backoffs: about 5 s, all in parallel.
        let m = wait_for(&s, &a, id, |m| m["final_at_ms"].is_i64()).await;
        assert_eq!(m["status"], "delivered", "{m}");
        assert_eq!(m["attempts"][0]["status"], "rejected", "{m}");
        assert_eq!(m["attempts"][0]["tries"], 3, "{m}");
        assert_eq!(m["attempts"][1]["provider"], "console");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_rate_limit_spaces_its_sends() {
    let s = Server::start("msg-rate", |_| {}).await;
    let t = s.demo_token().await;
    let bad = json!({ "kind": "console", "max_per_s": 0 });
    let b = s
        .call("PUT", "/v1/providers/paced", Some(&t), Some(bad))
        .await;
    assert_eq!(b.body["error"]["code"], "invalid_limits", "{b:?}");
    let paced = json!({ "kind": "console", "max_per_s": 5, "max_in_flight": 2 });
    let p = s
        .call("PUT", "/v1/providers/paced", Some(&t), Some(paced))
        .await;
    assert_eq!(p.status, 200, "{p:?}");
    let shown = s.call("GET", "/v1/providers/paced", Some(&t), None).await;
    assert_eq!(
        shown.body["limits"],
        json!({ "max_in_flight": 2, "max_per_s": 5.0 })
    );
    let route = json!({ "plugin": "router", "config": { "default_provider": "paced" } });
    assert_eq!(
        s.call("PUT", "/v1/bindings/route", Some(&t), Some(route))
            .await
            .status,
        200
    );

    let to: Vec<String> = (0..15).map(|i| format!("+1415555{i:04}")).collect();
    let a = send(&s, &t, json!({ "to": to, "body": "paced" })).await;
    assert_eq!(a.status, 202, "{a:?}");
    let mut sent_at = Vec::new();
    for m in a.body["messages"].as_array().expect("messages") {
        let id = m["id"].as_str().expect("id");
        let done = wait_for(&s, &t, id, is("delivered")).await;
        sent_at.push(done["attempts"][0]["at_ms"].as_i64().expect("at_ms"));
    }
    let span = sent_at.iter().max().unwrap_or(&0) - sent_at.iter().min().unwrap_or(&0);
    // A burst of 5, then 10 more at 5 per second: at least about 2 s.
    assert!(span >= 1500, "15 sends at 5/s took only {span} ms");
}

/// Providers are reached over HTTPS, their certificate checked: a private
/// CA given in `[messaging] ca_file` is trusted beside the built-in roots,
/// and a certificate for another name is refused (the send fails over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_are_called_over_verified_https() {
    let tw = FakeTwilio::start().await;
    let upstream = tw
        .url
        .strip_prefix("http://")
        .and_then(|a| a.parse().ok())
        .expect("the fake's address");
    let front = engage_tests::tls::front(upstream).await;
    let ca = front.ca_file.clone();
    let s = Server::start("msg-https", move |c| {
        c.messaging.ca_file = Some(ca);
        c.messaging.provider_timeout_ms = 1000;
    })
    .await;
    let t = s.demo_token().await;
    for (name, host) in [("trusted", "localhost"), ("misnamed", "127.0.0.1")] {
        let p = json!({ "kind": "twilio", "account_sid": "AC0123456789abcdef0123456789abcdef",
                        "auth_token": "x", "from": "+15005550006",
                        "base_url": format!("https://{host}:{}", front.port) });
        let r = s
            .call("PUT", &format!("/v1/providers/{name}"), Some(&t), Some(p))
            .await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let route = json!({ "plugin": "router", "config": { "routes": [
        { "prefixes": ["+1415"], "attempts": [ { "channel": "sms", "provider": "trusted" } ] },
        { "prefixes": ["+1416"], "attempts": [
            { "channel": "sms", "provider": "misnamed" }, { "channel": "sms", "provider": "console" } ] } ] } });
    let r = s
        .call("PUT", "/v1/bindings/route", Some(&t), Some(route))
        .await;
    assert_eq!(r.status, 200, "{r:?}");

    let a = send(
        &s,
        &t,
        json!({ "to": ["+14155550100"], "body": "over TLS" }),
    )
    .await;
    assert_eq!(a.status, 202, "{a:?}");
    let id = a.body["messages"][0]["id"].as_str().expect("id").to_owned();
    let m = wait_for(&s, &t, &id, |m| m["attempts"][0]["provider_id"].is_string()).await;
    assert_eq!(m["attempts"][0]["tries"], 1, "{m}");
    let reqs = tw.requests();
    assert_eq!(reqs.len(), 1, "one request reached the fake through TLS");
    assert_eq!(reqs[0].field("Body"), Some("over TLS"));

    let b = send(
        &s,
        &t,
        json!({ "to": ["+14165550100"], "body": "wrong name" }),
    )
    .await;
    assert_eq!(b.status, 202, "{b:?}");
    let id = b.body["messages"][0]["id"].as_str().expect("id").to_owned();
    let m = wait_for(&s, &t, &id, |m| m["final_at_ms"].is_i64()).await;
    assert_eq!(m["status"], "delivered", "{m}");
    assert_eq!(m["attempts"][0]["provider"], "misnamed", "{m}");
    assert_eq!(m["attempts"][0]["status"], "rejected", "{m}");
    let why = m["attempts"][0]["error"].as_str().unwrap_or_default();
    assert!(why.contains("certificate"), "the error says why: {m}");
    assert_eq!(m["attempts"][1]["provider"], "console", "{m}");
    assert_eq!(
        tw.requests().len(),
        1,
        "nothing was sent to a misnamed host"
    );
}
