//! Seed 002's Attentive requests, as written, through `/attentive`; an
//! unsubscribed number gets no marketing message from any API.

use engage_tests::{Answer, Server};
use serde_json::{Value, json};

async fn attentive(s: &Server, method: &str, path: &str, key: &str, body: Option<Value>) -> Answer {
    let mut req = s
        .request(method, &format!("/attentive/v1{path}"), None)
        .header("Authorization", format!("Bearer {key}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    s.send(req).await
}

fn both(text: &str, email: &str, field: &str) -> Value {
    json!([
        { "subscription": { "type": "MARKETING", "channel": "TEXT" }, field: text },
        { "subscription": { "type": "MARKETING", "channel": "EMAIL" }, field: email },
    ])
}

fn eligibilities(text: bool, email: bool) -> Value {
    json!({ "subscriptionEligibilities": [
        { "subscription": { "type": "MARKETING", "channel": "TEXT" }, "eligibility": { "isEligible": text } },
        { "subscription": { "type": "MARKETING", "channel": "EMAIL" }, "eligibility": { "isEligible": email } },
    ] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_002_subscriptions_as_written() {
    let s = Server::start("attentive", |_| {}).await;
    let t = s.demo_token().await;
    let (key, _) = s.demo_credentials();
    let source = s
        .call(
            "PUT",
            "/v1/audiences/sources/132109",
            Some(&t),
            Some(json!({ "name": "Loyalty sign-up" })),
        )
        .await;
    assert_eq!(source.status, 200, "{source:?}");

    let user = json!({ "phone": "7707651750", "email": "test@gmail.com" });
    let subscribe = json!({ "user": user, "signUpSourceId": "132109" });
    // Authentication is a bearer key.
    let anon = s
        .send(
            s.request("POST", "/attentive/v1/subscriptions", None)
                .json(&subscribe),
        )
        .await;
    assert_eq!(anon.status, 401, "{anon:?}");
    let no_source = attentive(
        &s,
        "POST",
        "/subscriptions",
        &key,
        Some(json!({ "user": user })),
    )
    .await;
    assert_eq!(
        (
            no_source.status,
            no_source.body["errors"][0]["code"].clone()
        ),
        (400, json!("INVALID_SIGN_UP_SOURCE"))
    );
    let unknown = attentive(
        &s,
        "POST",
        "/subscriptions",
        &key,
        Some(json!({ "user": user, "signUpSourceId": "999" })),
    )
    .await;
    assert_eq!(unknown.status, 400, "{unknown:?}");

    // Subscribe: the seed's answer, literally; then again.
    let created = attentive(&s, "POST", "/subscriptions", &key, Some(subscribe.clone())).await;
    assert_eq!(created.status, 200, "{created:?}");
    assert_eq!(
        created.body,
        json!({ "user": user, "subscriptionResponses": both("NEWLY_CREATED", "NEWLY_CREATED", "subscriptionCreationStatus") })
    );
    let again = attentive(&s, "POST", "/subscriptions", &key, Some(subscribe.clone())).await;
    assert_eq!(
        again.body["subscriptionResponses"],
        both(
            "ALREADY_SUBSCRIBED",
            "ALREADY_SUBSCRIBED",
            "subscriptionCreationStatus"
        )
    );

    // Eligibility, as the seed shows it.
    let path = "/subscriptions?phone=7707651750&email=test@gmail.com";
    let eligible = attentive(&s, "GET", path, &key, None).await;
    assert_eq!(eligible.body, eligibilities(true, true), "{eligible:?}");

    // The legacy message API, as the seed shows it; a marketing SMS went out.
    let msg = json!({ "to": "7707651750", "body": "Hello check the test message please7" });
    let sent = attentive(
        &s,
        "POST",
        "/subscriptions/messages",
        &key,
        Some(msg.clone()),
    )
    .await;
    assert_eq!(
        sent.body,
        json!({ "type": "v1", "to": "+17707651750", "body": "Hello check the test message please7",
                "skipFatigue": true, "createShortLink": false, "addSubscriber": "true" })
    );
    let listed = s
        .call("GET", "/v1/messages?to=%2B17707651750", Some(&t), None)
        .await;
    assert_eq!(
        listed.body["messages"][0]["kind"], "marketing",
        "{listed:?}"
    );

    // Unsubscribe (the seed lists EMAIL first; answers come TEXT first).
    let unsubscribe = json!({ "user": user, "subscriptions": [
        { "type": "MARKETING", "channel": "EMAIL" }, { "type": "MARKETING", "channel": "TEXT" } ] });
    let gone = attentive(
        &s,
        "POST",
        "/subscriptions/unsubscribe",
        &key,
        Some(unsubscribe.clone()),
    )
    .await;
    assert_eq!(
        gone.body,
        json!({ "user": user, "subscriptionResponses": both("NEWLY_UNSUBSCRIBED", "NEWLY_UNSUBSCRIBED", "subscriptionUnsubscribeStatus") })
    );
    assert_eq!(
        attentive(&s, "GET", path, &key, None).await.body,
        eligibilities(false, false)
    );

    // No marketing message reaches the number from any API now.
    let refused = attentive(
        &s,
        "POST",
        "/subscriptions/messages",
        &key,
        Some(msg.clone()),
    )
    .await;
    assert_eq!(
        (refused.status, refused.body["errors"][0]["code"].clone()),
        (400, json!("RECIPIENT_OPTED_OUT"))
    );
    let v1 = s
        .call(
            "POST",
            "/v1/messages",
            Some(&t),
            Some(json!({ "to": ["+17707651750"], "body": "sale", "kind": "marketing" })),
        )
        .await;
    assert_eq!(v1.body["messages"][0]["status"], "rejected", "{v1:?}");
    let bsg = s
        .send(
            s.request("POST", "/bsg/rest/viber/create", None)
                .header("X-API-KEY", &key)
                .json(&json!({ "validity": "1", "messages": [ { "to": [ { "msisdn": "17707651750", "reference": "promo-1" } ],
                    "text": "sale", "alpha_name": "BSG", "is_promotional": true } ] })),
        )
        .await;
    assert_eq!(bsg.body["result"][0]["error"], 0, "{bsg:?}");
    let m = s
        .call("GET", "/v1/messages?reference=promo-1", Some(&t), None)
        .await;
    let m = &m.body["messages"][0];
    assert_eq!(m["status"], "rejected", "BSG is_promotional: {bsg:?} {m:?}");
    assert_eq!(m["attempts"], json!([]));
    let adm = s.call("POST", "/v1/gateway/accounts", Some(&t),
        Some(json!({ "username": "anton", "password": "anton-pass", "name": "Anton", "email": "anton@example.com" }))).await;
    let h = adm.body["token"].as_str().unwrap_or_default().to_owned();
    let pv = s
        .send(s.request("GET", "/playsms/index.php", None).query(&[
            ("app", "ws"),
            ("op", "pv"),
            ("u", "anton"),
            ("h", h.as_str()),
            ("to", "+17707651750"),
            ("msg", "sale"),
        ]))
        .await;
    assert_eq!(pv.body["data"][0]["error"], "200", "playSMS pv: {pv:?}");
    // A transactional message still goes.
    let otp = s
        .call(
            "POST",
            "/v1/messages",
            Some(&t),
            Some(json!({ "to": ["+17707651750"], "body": "code 1234", "kind": "transactional" })),
        )
        .await;
    assert_eq!(otp.body["messages"][0]["status"], "queued", "{otp:?}");

    // Unsubscribing again changes nothing; subscribing again is fresh consent.
    let twice = attentive(
        &s,
        "POST",
        "/subscriptions/unsubscribe",
        &key,
        Some(unsubscribe),
    )
    .await;
    assert_eq!(
        twice.body["subscriptionResponses"],
        both(
            "ALREADY_UNSUBSCRIBED",
            "ALREADY_UNSUBSCRIBED",
            "subscriptionUnsubscribeStatus"
        )
    );
    let back = attentive(&s, "POST", "/subscriptions", &key, Some(subscribe)).await;
    assert_eq!(
        back.body["subscriptionResponses"],
        both(
            "NEWLY_CREATED",
            "NEWLY_CREATED",
            "subscriptionCreationStatus"
        )
    );
    assert_eq!(
        attentive(&s, "POST", "/subscriptions/messages", &key, Some(msg))
            .await
            .status,
        200
    );

    // A STOP reply unsubscribes TEXT marketing; START resubscribes.
    for (text, eligible) in [("STOP", false), ("START", true)] {
        let r = s
            .call(
                "POST",
                "/v1/gateway/incoming",
                Some(&t),
                Some(json!({ "from": "+17707651750", "to": "12345", "text": text })),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(
            attentive(&s, "GET", path, &key, None).await.body,
            eligibilities(eligible, true),
            "after {text}"
        );
    }
}

/// The calls Attentive's REST API documents (its OpenAPI description, as
/// its generated SDKs send them) that Engage serves beyond the seed: who
/// am I, custom events (the player's actions, once per externalEventId),
/// identifiers linked to a player, custom attributes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_identities_and_attributes() {
    let s = Server::start("attentive-events", |_| {}).await;
    let t = s.demo_token().await;
    let (key, _) = s.demo_credentials();
    s.player(&t, "p1").await;
    s.player(&t, "p2").await;

    let me = attentive(&s, "GET", "/me", &key, None).await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.body["applicationName"], "Engage");
    assert!(me.body["companyId"].is_string());

    // A custom event is the player's action: the demo rules pay 100 for
    // `buy`; the same externalEventId again is the same event.
    let buy = json!({ "type": "buy", "properties": { "sku": "A-1", "price": 12.5 },
        "externalEventId": "37fb97a9-6cfd-4983-bd65-68d104d53b70",
        "user": { "externalIdentifiers": { "clientUserId": "p1" } } });
    for _ in 0..2 {
        let e = attentive(&s, "POST", "/events/custom", &key, Some(buy.clone())).await;
        assert_eq!(e.status, 200, "{e:?}");
    }
    assert_eq!(
        s.balance(&t, "p1").await,
        100,
        "a retried event counts once"
    );
    let mut other = buy.clone();
    other["type"] = json!("buy again");
    let reused = attentive(&s, "POST", "/events/custom", &key, Some(other)).await;
    assert_eq!(reused.status, 409, "{reused:?}");
    let shipped = json!({ "type": "Order Shipped", "user": { "externalIdentifiers": { "clientUserId": "p1" } } });
    let e = attentive(&s, "POST", "/events/custom", &key, Some(shipped)).await;
    assert_eq!(e.status, 200, "an event no rule knows is accepted: {e:?}");
    assert_eq!(s.balance(&t, "p1").await, 100);

    // Unknown users: a clear 404 that says how to name a player.
    let nobody = json!({ "type": "buy", "user": { "phone": "+13115552368" } });
    let e = attentive(&s, "POST", "/events/custom", &key, Some(nobody.clone())).await;
    assert_eq!(e.status, 404, "{e:?}");
    assert_eq!(e.body["errors"][0]["code"], "NOT_FOUND");
    assert!(
        e.body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("clientUserId")),
        "{e:?}"
    );

    // Link the phone and e-mail to p1: then they alone name the player.
    let link = json!({ "clientUserId": "p1", "phone": "(311) 555-2368", "email": "Ron@Example.com",
        "customIdentifiers": [ { "name": "loyalty", "value": "L-77" } ] });
    let l = attentive(
        &s,
        "POST",
        "/identity-resolution/user-identifiers",
        &key,
        Some(link),
    )
    .await;
    assert_eq!(l.status, 202, "{l:?}");
    let e = attentive(&s, "POST", "/events/custom", &key, Some(nobody)).await;
    assert_eq!(e.status, 200, "{e:?}");
    assert_eq!(s.balance(&t, "p1").await, 200);
    let by_custom = json!({ "type": "buy", "user": { "externalIdentifiers": { "customIdentifiers": [ { "name": "loyalty", "value": "L-77" } ] } } });
    let e = attentive(&s, "POST", "/events/custom", &key, Some(by_custom)).await;
    assert_eq!(e.status, 200, "{e:?}");
    assert_eq!(s.balance(&t, "p1").await, 300);
    let taken = json!({ "clientUserId": "p2", "phone": "+13115552368" });
    let l = attentive(
        &s,
        "POST",
        "/identity-resolution/user-identifiers",
        &key,
        Some(taken),
    )
    .await;
    assert_eq!(l.status, 409, "a phone names one player: {l:?}");
    let ghost = json!({ "clientUserId": "ghost", "email": "g@example.com" });
    let l = attentive(
        &s,
        "POST",
        "/identity-resolution/user-identifiers",
        &key,
        Some(ghost),
    )
    .await;
    assert_eq!(l.status, 404, "{l:?}");
    let alone = json!({ "clientUserId": "p2" });
    let l = attentive(
        &s,
        "POST",
        "/identity-resolution/user-identifiers",
        &key,
        Some(alone),
    )
    .await;
    assert_eq!(l.status, 400, "{l:?}");

    // Custom attributes land on the player (by e-mail here).
    let attrs = json!({ "properties": { "favorite color": "blue", "visits": 3 },
        "user": { "email": "ron@example.com" } });
    let a = attentive(&s, "POST", "/attributes/custom", &key, Some(attrs)).await;
    assert_eq!(a.status, 200, "{a:?}");
    let p = s.call("GET", "/v1/players/p1", Some(&t), None).await;
    assert_eq!(p.body["attributes"]["favorite color"], "blue", "{p:?}");
    assert_eq!(p.body["attributes"]["visits"], 3);

    // Bad requests: Attentive's error shape, nothing changed.
    for bad in [
        json!({ "type": "buy" }),
        json!({ "type": "", "user": { "externalIdentifiers": { "clientUserId": "p1" } } }),
        json!({ "type": "buy", "user": {} }),
        json!({ "type": "buy", "user": { "phone": "+1", "nickname": "x" } }),
    ] {
        let e = attentive(&s, "POST", "/events/custom", &key, Some(bad.clone())).await;
        assert_eq!(e.status, 400, "{bad}: {e:?}");
        assert_eq!(e.body["errors"][0]["code"], "INVALID_REQUEST", "{e:?}");
    }
    assert_eq!(s.balance(&t, "p1").await, 300);
    let anon = s
        .send(
            s.request("POST", "/attentive/v1/events/custom", None)
                .json(&json!({})),
        )
        .await;
    assert_eq!(anon.status, 401, "{anon:?}");
}

/// Attentive's writes honour `Idempotency-Key`: a retried message is sent
/// once, a retried subscribe answers as the first time did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_writes_happen_once() {
    let s = Server::start("attentive-idem", |_| {}).await;
    let t = s.demo_token().await;
    let (key, _) = s.demo_credentials();
    let send = |k: &'static str, body: Value| {
        s.send(
            s.request("POST", "/attentive/v1/subscriptions/messages", None)
                .header("Authorization", format!("Bearer {key}"))
                .header("Idempotency-Key", k)
                .json(&body),
        )
    };
    let msg = json!({ "to": "+17707651751", "body": "sale" });
    let a = send("m-1", msg.clone()).await;
    assert_eq!(a.status, 200, "{a:?}");
    let b = send("m-1", msg).await;
    assert_eq!(b.status, 200, "{b:?}");
    assert!(b.replayed);
    assert_eq!(a.body, b.body);
    let listed = s.call("GET", "/v1/messages", Some(&t), None).await;
    assert_eq!(
        listed.body["messages"].as_array().map(Vec::len),
        Some(1),
        "one SMS"
    );
    let c = send("m-1", json!({ "to": "+17707651751", "body": "other" })).await;
    assert_eq!(
        (c.status, c.body["errors"][0]["code"].clone()),
        (409, json!("CONFLICT")),
        "{c:?}"
    );
    let bad = s
        .send(
            s.request("POST", "/attentive/v1/subscriptions/messages", None)
                .header("Authorization", format!("Bearer {key}"))
                .header("Idempotency-Key", "k".repeat(300))
                .json(&json!({ "to": "+17707651751", "body": "x" })),
        )
        .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert_eq!(bad.body["errors"][0]["code"], "INVALID_REQUEST");
}
