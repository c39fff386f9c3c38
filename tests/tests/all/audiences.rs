//! Seed 002's segments through the Annex-compatible API, rule segments
//! through /v1, and campaigns.

use engage_tests::Server;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_002_annex_segment_as_written() {
    let s = Server::start("annex", |_| {}).await;
    let t = s.demo_token().await;
    let (key, _) = s.demo_credentials();
    let request = json!({
        "name":"Only Members",
        "type":"Current Data",
        "fromDate":"2020-01-17",
        "toDate":"2020-02-14",
        "member":"jacobsmith@gmail.com,brianpaul@gmail.com,markburger@gmail.com",
        "status":"ACTIVE",
        "externalId":"123",
        "externalName":"Members specific"
    });
    let post = |body: Value, auth: Option<String>| {
        let mut r = s
            .request("POST", "/annex/api/3.0/segment", None)
            .json(&body);
        if let Some(a) = auth {
            r = r.header("Authorization", format!("Bearer {a}"));
        }
        s.send(r)
    };
    let anon = post(request.clone(), None).await;
    assert_eq!(
        (anon.status, anon.body["errorCode"].clone()),
        (401, json!("AC1003"))
    );
    // Annex's access token: base64 of the loyalty token and the site id.
    use base64::Engine;
    let access = base64::engine::general_purpose::STANDARD.encode(json!([key, "demo"]).to_string());
    let created = post(request.clone(), Some(access)).await;
    assert_eq!(created.status, 200, "{created:?}");
    assert_eq!(
        created.body,
        json!({ "segmentId": 101, "segmentName": "Only Members", "segmentType": "Current Data",
                "segmentFromDate": "2020-01-17T00:00:00+0000", "segmentToDate": "2020-02-14T23:59:00+0000",
                "member": "jacobsmith@gmail.com,brianpaul@gmail.com,markburger@gmail.com",
                "status":"ACTIVE", "externalId":"123", "externalName":"Members specific" })
    );
    let mut bad = request.clone();
    bad["toDate"] = json!("14/02/2020");
    let refused = post(bad, Some(key.clone())).await;
    assert_eq!(
        (refused.status, refused.body["errorCode"].clone()),
        (400, json!("AC1002")),
        "{refused:?}"
    );
    let mut bad = request.clone();
    bad["type"] = json!("Future Data");
    assert_eq!(post(bad, Some(key.clone())).await.status, 400);

    // Listed members are matched to players by e-mail (or id).
    for (id, email) in [
        ("jacob", "jacobsmith@gmail.com"),
        ("zoe", "zoe@example.com"),
    ] {
        let p = s
            .call(
                "POST",
                "/v1/players",
                Some(&t),
                Some(json!({ "id": id, "email": email })),
            )
            .await;
        assert_eq!(p.status, 201, "{p:?}");
    }
    let members = s
        .call("GET", "/v1/audiences/segments/101/members", Some(&t), None)
        .await;
    assert_eq!(members.body["members"], json!(["jacob"]), "{members:?}");

    // A rule segment: evaluated when used.
    let rule = json!({ "name": "Big spenders", "rule": { "min_balance": { "point": 50 } } });
    let r = s
        .call("POST", "/v1/audiences/segments", Some(&t), Some(rule))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.body["id"].as_u64().expect("id");
    let path = format!("/v1/audiences/segments/{id}/members");
    assert_eq!(
        s.call("GET", &path, Some(&t), None).await.body["members"],
        json!([])
    );
    let credit = s
        .call(
            "POST",
            "/v1/ledger/credit",
            Some(&t),
            Some(json!({ "player": "zoe", "currency": "point", "amount": 60, "reason": "test" })),
        )
        .await;
    assert!(credit.status < 300, "{credit:?}");
    assert_eq!(
        s.call("GET", &path, Some(&t), None).await.body["members"],
        json!(["zoe"])
    );
    // Update and delete.
    let inactive = s.call("PUT", &format!("/v1/audiences/segments/{id}"), Some(&t),
        Some(json!({ "name": "Big spenders", "status": "INACTIVE", "rule": { "min_balance": { "point": 50 } } }))).await;
    assert_eq!(inactive.status, 200, "{inactive:?}");
    assert_eq!(
        s.call("GET", &path, Some(&t), None).await.body["members"],
        json!([])
    );
    assert_eq!(
        s.call(
            "DELETE",
            &format!("/v1/audiences/segments/{id}"),
            Some(&t),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        s.call(
            "GET",
            &format!("/v1/audiences/segments/{id}"),
            Some(&t),
            None
        )
        .await
        .status,
        404
    );
}

async fn setup_player(s: &Server, t: &str, id: &str, phone: &str, subscribe: bool) {
    let p = s
        .call(
            "POST",
            "/v1/players",
            Some(t),
            Some(json!({ "id": id, "phone": phone, "first_name": id })),
        )
        .await;
    assert_eq!(p.status, 201, "{p:?}");
    if subscribe {
        let r = s
            .call(
                "POST",
                "/v1/audiences/subscriptions",
                Some(t),
                Some(json!({ "phone": phone, "source": "web" })),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
    }
}

/// Quiet hours from `start` to `end`, minutes after local midnight.
async fn quiet_hours(s: &Server, t: &str, start: i64, end: i64) {
    let hhmm = |m: i64| {
        format!(
            "{:02}:{:02}",
            m.rem_euclid(1440) / 60,
            m.rem_euclid(1440) % 60
        )
    };
    let quiet = json!({ "quiet_hours": { "start": hhmm(start), "end": hhmm(end) } });
    let r = s
        .call("PUT", "/v1/audiences/settings", Some(t), Some(quiet))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
}

async fn source(s: &Server, t: &str) {
    let r = s
        .call(
            "PUT",
            "/v1/audiences/sources/web",
            Some(t),
            Some(json!({ "name": "Web form" })),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// Wait until the campaign's stats satisfy `done`.
async fn stats_when(s: &Server, t: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = json!(null);
    for _ in 0..400 {
        last = s
            .call("GET", &format!("/v1/campaigns/{id}"), Some(t), None)
            .await
            .body;
        if done(&last["stats"]) {
            return last["stats"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("campaign {id} did not get there: {last}");
}

async fn messages_to(s: &Server, t: &str, phone: &str) -> Vec<Value> {
    let path = format!("/v1/messages?to={}&limit=500", phone.replace('+', "%2B"));
    s.call("GET", &path, Some(t), None).await.body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_campaign_with_a_cap_of_one_sends_once_under_100_concurrent_actions() {
    let s = Server::start("campaign-cap", |_| {}).await;
    let t = s.demo_token().await;
    source(&s, &t).await;
    setup_player(&s, &t, "ann", "+14155550201", true).await;
    let cap = s
        .call(
            "PUT",
            "/v1/audiences/settings",
            Some(&t),
            Some(json!({ "frequency_cap": { "max": 1, "hours": 24 } })),
        )
        .await;
    assert_eq!(cap.status, 200, "{cap:?}");
    let c = s
        .call(
            "PUT",
            "/v1/campaigns/thanks",
            Some(&t),
            Some(json!({
        "name": "Thanks for buying", "template": "Thanks {{first_name}}!",
        "trigger": { "type": "event", "name": "buy" } })),
        )
        .await;
    assert_eq!(c.status, 200, "{c:?}");

    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (base, t) = (s.base.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{base}/v1/actions"))
                .bearer_auth(t)
                .json(&json!({ "player": "ann", "action": "buy" }))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap_or(0), 200);
    }
    let stats = stats_when(&s, &t, "thanks", |st| st["targeted"] == 100).await;
    assert_eq!(stats["sent"], 1, "{stats}");
    assert_eq!(stats["skipped"]["capped"], 99, "{stats}");
    let got = messages_to(&s, &t, "+14155550201").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["body"], "Thanks ann!");
    assert_eq!(got[0]["kind"], "marketing");
    assert_eq!(got[0]["metadata"]["campaign"], "thanks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_now_reports_why_people_were_skipped_and_quiet_hours_defer() {
    let s = Server::start("campaign-run", |_| {}).await;
    let t = s.demo_token().await;
    source(&s, &t).await;
    setup_player(&s, &t, "ann", "+14155550301", true).await;
    setup_player(&s, &t, "bob", "+14155550302", false).await;
    setup_player(&s, &t, "cid", "+14155550303", true).await;
    let p = s
        .call(
            "POST",
            "/v1/players",
            Some(&t),
            Some(json!({ "id": "dan" })),
        )
        .await;
    assert_eq!(p.status, 201);
    // cid replies STOP.
    let stop = s
        .call(
            "POST",
            "/v1/gateway/incoming",
            Some(&t),
            Some(json!({ "from": "+14155550303", "text": "STOP" })),
        )
        .await;
    assert_eq!(stop.status, 201);
    // Quiet hours around now (UTC) for everyone.
    let now_min = (engage::ids::now_ms() / 60_000) % 1440;
    quiet_hours(&s, &t, now_min - 5, now_min + 30).await;
    let c = s
        .call(
            "PUT",
            "/v1/campaigns/promo",
            Some(&t),
            Some(json!({
        "name": "Weekend promo", "template": "Hi {{first_name}}, 20% off this weekend",
        "trigger": { "type": "manual" } })),
        )
        .await;
    assert_eq!(c.status, 200, "{c:?}");
    let run = s
        .call("POST", "/v1/campaigns/promo/run", Some(&t), None)
        .await;
    assert_eq!(run.status, 202, "{run:?}");
    let stats = stats_when(&s, &t, "promo", |st| st["targeted"] == 4).await;
    assert_eq!(stats["sent"], 1, "{stats}");
    assert_eq!(stats["deferred_quiet_hours"], 1, "{stats}");
    assert_eq!(
        stats["skipped"],
        json!({ "no_phone": 1, "not_subscribed": 1, "opted_out": 1 }),
        "{stats}"
    );
    let got = messages_to(&s, &t, "+14155550301").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0]["status"], "scheduled",
        "deferred to the end of quiet hours: {got:?}"
    );
    let at = got[0]["schedule_at_ms"].as_i64().unwrap_or(0);
    assert_eq!((at / 60_000) % 1440, (now_min + 30) % 1440, "{got:?}");
    assert_eq!(stats["pending"], 1);

    // A redemption triggers its campaign (transactional: no quiet hours).
    let c = s
        .call(
            "PUT",
            "/v1/campaigns/code",
            Some(&t),
            Some(json!({
        "name": "Your coupon", "template": "Enjoy, {{first_name}}", "kind": "transactional",
        "trigger": { "type": "event", "name": "redeemed", "params": { "goods": "coupons" } } })),
        )
        .await;
    assert_eq!(c.status, 200, "{c:?}");
    let g = s
        .call(
            "PUT",
            "/v1/goods/coupons",
            Some(&t),
            Some(json!({ "name": "Coupon", "price": 0 })),
        )
        .await;
    assert_eq!(g.status, 200, "{g:?}");
    let up = s
        .send(
            s.request("POST", "/v1/goods/coupons/codes", Some(&t))
                .header("content-type", "text/plain")
                .body("A1\nA2\n"),
        )
        .await;
    assert_eq!(up.status, 200, "{up:?}");
    let r = s
        .call(
            "POST",
            "/v1/goods/coupons/redeem",
            Some(&t),
            Some(json!({ "player": "bob" })),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let stats = stats_when(&s, &t, "code", |st| st["delivered"] == 1).await;
    assert_eq!(stats["sent"], 1, "{stats}");
    let got = messages_to(&s, &t, "+14155550302").await;
    assert_eq!(got[0]["body"], "Enjoy, bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_campaign_fires_once_per_slot_across_a_restart() {
    let s = Server::start("campaign-cron", |_| {}).await;
    let t = s.demo_token().await;
    source(&s, &t).await;
    setup_player(&s, &t, "ann", "+14155550401", true).await;
    let c = s
        .call(
            "PUT",
            "/v1/campaigns/tick",
            Some(&t),
            Some(json!({
        "name": "Every two seconds", "template": "tick", "kind": "transactional",
        "trigger": { "type": "schedule", "cron": "*/2 * * * * *", "timezone": "+0700" } })),
        )
        .await;
    assert_eq!(c.status, 200, "{c:?}");
    let bad = s
        .call(
            "PUT",
            "/v1/campaigns/bad",
            Some(&t),
            Some(json!({
        "name": "x", "template": "x", "trigger": { "type": "schedule", "cron": "61 * * * *" } })),
        )
        .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    stats_when(&s, &t, "tick", |st| st["sent"].as_u64() >= Some(2)).await;
    let s = s.restart().await;
    let t = s.demo_token().await;
    let before = s
        .call("GET", "/v1/campaigns/tick", Some(&t), None)
        .await
        .body["stats"]["sent"]
        .as_u64()
        .unwrap_or(0);
    stats_when(&s, &t, "tick", |st| st["sent"].as_u64() >= Some(before + 2)).await;
    // Every slot fired once: one message per trigger, slots two seconds apart.
    let got = messages_to(&s, &t, "+14155550401").await;
    let mut slots: Vec<i64> = got
        .iter()
        .filter_map(|m| {
            m["metadata"]["trigger"]
                .as_str()?
                .strip_prefix("slot:")?
                .parse()
                .ok()
        })
        .collect();
    let n = slots.len();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), n, "a slot fired twice: {got:?}");
    assert!(slots.iter().all(|s| s % 2000 == 0), "{slots:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaching_a_balance_triggers_once_and_parameters_must_match() {
    let s = Server::start("campaign-balance", |_| {}).await;
    let t = s.demo_token().await;
    source(&s, &t).await;
    setup_player(&s, &t, "ann", "+14155550501", true).await;
    let c = s.call("PUT", "/v1/campaigns/vip", Some(&t), Some(json!({
        "name": "300 points", "template": "You reached 300 points, {{first_name}}",
        "trigger": { "type": "event", "name": "buy", "min_balance": { "currency": "points", "amount": 300 } } }))).await;
    assert_eq!(c.status, 200, "{c:?}");
    let c = s
        .call(
            "PUT",
            "/v1/campaigns/shoes",
            Some(&t),
            Some(json!({
        "name": "Shoes", "template": "Nice shoes", "kind": "transactional",
        "trigger": { "type": "event", "name": "buy", "params": { "sku": "shoes" } } })),
        )
        .await;
    assert_eq!(c.status, 200, "{c:?}");
    for sku in ["hat", "hat", "hat", "hat", "shoes"] {
        let a = s
            .call(
                "POST",
                "/v1/actions",
                Some(&t),
                Some(json!({ "player": "ann", "action": "buy", "params": { "sku": sku } })),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
    }
    // 100 points per buy: 300 reached at the third, and 400, 500 after it.
    let vip = stats_when(&s, &t, "vip", |st| st["targeted"] == 3).await;
    assert_eq!(vip["sent"], 1, "once per player: {vip}");
    assert_eq!(vip["skipped"]["already_sent"], 2, "{vip}");
    let shoes = stats_when(&s, &t, "shoes", |st| st["targeted"] == 1).await;
    assert_eq!(shoes["sent"], 1, "{shoes}");
    let bodies: Vec<String> = messages_to(&s, &t, "+14155550501")
        .await
        .iter()
        .filter_map(|m| m["body"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(
        bodies.contains(&"You reached 300 points, ann".to_owned()),
        "{bodies:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_defer_a_marketing_message_which_is_sent_when_they_end() {
    let s = Server::start("campaign-quiet", |_| {}).await;
    let t = s.demo_token().await;
    source(&s, &t).await;
    setup_player(&s, &t, "ann", "+14155550601", true).await;
    // Quiet until the next minute in the player's own time zone (+0530).
    let attrs = s
        .call(
            "PATCH",
            "/v1/players/ann",
            Some(&t),
            Some(json!({ "attributes": { "timezone": "+0530" } })),
        )
        .await;
    assert!(attrs.status < 300, "{attrs:?}");
    let local = (engage::ids::now_ms() / 60_000 + 330) % 1440;
    quiet_hours(&s, &t, local - 60, local + 1).await;
    let c = s
        .call(
            "PUT",
            "/v1/campaigns/night",
            Some(&t),
            Some(json!({
        "name": "Night", "template": "Good morning", "trigger": { "type": "manual" } })),
        )
        .await;
    assert_eq!(c.status, 200);
    assert_eq!(
        s.call("POST", "/v1/campaigns/night/run", Some(&t), None)
            .await
            .status,
        202
    );
    let deferred = stats_when(&s, &t, "night", |st| st["sent"] == 1).await;
    assert_eq!(deferred["deferred_quiet_hours"], 1);
    assert_eq!(
        messages_to(&s, &t, "+14155550601").await[0]["status"],
        "scheduled"
    );
    // At most a minute later the window is over and the message goes.
    let mut status = json!(null);
    for _ in 0..180 {
        status = messages_to(&s, &t, "+14155550601").await[0]["status"].clone();
        if status == "delivered" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(status, "delivered");
}

/// A JWT as Annex's commerce connector makes it: HS256 with the site's API
/// token, `siteId` and `hmac` claims, an expiry.
fn connector_jwt(site: &str, token: &str, exp: i64) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(json!({ "typ": "JWT", "alg": "HS256" }).to_string());
    let claims = b64.encode(
        json!({ "sub": "site", "exp": exp, "siteId": site, "hmac": "bm90IHRoZSBib2R5" })
            .to_string(),
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()).expect("key");
    mac.update(format!("{header}.{claims}").as_bytes());
    let sig = b64.encode(mac.finalize().into_bytes());
    format!("{header}.{claims}.{sig}")
}

/// The loyalty calls of Annex's own commerce connector: users and points,
/// with its JWT and `X-AnnexCloud-Site` header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annex_connector_users_and_points() {
    let s = Server::start("annex-loyalty", |_| {}).await;
    let t = s.demo_token().await;
    let (key, _) = s.demo_credentials();
    let far = 4_102_444_800; // 2100-01-01
    let jwt = connector_jwt("demo", &key, far);
    let call = |method: &str, path: &str, auth: &str, body: Option<Value>| {
        let mut r = s
            .request(method, &format!("/annex/api/3.0{path}"), None)
            .header("Authorization", format!("Bearer {auth}"))
            .header("X-AnnexCloud-Site", "demo");
        if let Some(b) = body {
            r = r.json(&b);
        }
        s.send(r)
    };

    // Tokens that must not pass: a wrong key, expired, alg none, another site.
    for bad in [
        connector_jwt("demo", "not-the-key", far),
        connector_jwt("demo", &key, 1_000_000_000),
        connector_jwt("elsewhere", &key, far),
        // `alg: none` with the real claims and no signature.
        format!(
            "eyJhbGciOiJub25lIn0.{}.",
            jwt.split('.').nth(1).unwrap_or_default()
        ),
    ] {
        let a = call("GET", "/points/u1", &bad, None).await;
        assert_eq!(
            (a.status, a.body["errorCode"].clone()),
            (401, json!("AC1003")),
            "{bad}: {a:?}"
        );
    }

    let user = json!({ "id": "u1", "email": "ron@example.com", "firstName": "Ron", "lastName": "Idaho",
        "optInStatus": "YES", "status": "ACTIVE", "phone": "+15055555555", "birthDate": "1990-01-02",
        "extendedAttribute": { "tier": "gold" } });
    let created = call("POST", "/users", &jwt, Some(user.clone())).await;
    assert_eq!(created.status, 200, "{created:?}");
    assert_eq!(created.body["id"], "u1");
    assert_eq!(created.body["optInStatus"], "YES");
    assert_eq!(created.body["extendedAttribute"]["tier"], "gold");
    let again = call("POST", "/users", &jwt, Some(user)).await;
    assert_eq!(
        (again.status, again.body["errorCode"].clone()),
        (400, json!("AC1002")),
        "{again:?}"
    );
    let upd = call(
        "PUT",
        "/users/u1",
        &jwt,
        Some(json!({ "zipCode": "10001", "lastName": "Ohio" })),
    )
    .await;
    assert_eq!(upd.body["lastName"], "Ohio", "{upd:?}");
    assert_eq!(upd.body["zipCode"], "10001");
    assert_eq!(
        upd.body["firstName"], "Ron",
        "an update keeps what it does not name"
    );
    let shown = call("GET", "/users/u1", &jwt, None).await;
    assert_eq!(shown.body["email"], "ron@example.com");
    let missing = call("GET", "/users/nobody", &jwt, None).await;
    assert_eq!(
        (missing.status, missing.body["errorCode"].clone()),
        (404, json!("AC1004"))
    );
    let native = s.call("GET", "/v1/players/u1", Some(&t), None).await;
    assert_eq!(
        native.body["phone"], "+15055555555",
        "the user is the player: {native:?}"
    );

    // Points: a credit (once per orderId), a debit, an action the rules pay.
    let credit = json!({ "id": "u1", "activity": "CREDIT", "credit": "250", "reason": "order", "orderId": "O-1" });
    for _ in 0..2 {
        let c = call("POST", "/points", &jwt, Some(credit.clone())).await;
        assert_eq!(c.status, 200, "{c:?}");
        assert_eq!(
            c.body["availablePoints"], 250,
            "a retried order counts once: {c:?}"
        );
    }
    let reused = call(
        "POST",
        "/points",
        &jwt,
        Some(json!({ "id": "u1", "activity": "CREDIT", "credit": 1, "orderId": "O-1" })),
    )
    .await;
    assert_eq!(reused.status, 400, "{reused:?}");
    let debit = call(
        "POST",
        "/points",
        &jwt,
        Some(json!({ "id": "u1", "activity": "DEBIT", "debit": 50 })),
    )
    .await;
    assert_eq!(debit.body["availablePoints"], 200, "{debit:?}");
    let over = call(
        "POST",
        "/points",
        &jwt,
        Some(json!({ "id": "u1", "activity": "DEBIT", "debit": 201 })),
    )
    .await;
    assert_eq!(
        (over.status, over.body["errorCode"].clone()),
        (400, json!("AC1002")),
        "{over:?}"
    );
    let action = call(
        "POST",
        "/points",
        &jwt,
        Some(json!({ "id": "u1", "activity": "CUSTOM", "actionId": "buy" })),
    )
    .await;
    assert_eq!(
        action.body["availablePoints"], 300,
        "the rules pay 100 for buy: {action:?}"
    );
    let unknown = call(
        "POST",
        "/points",
        &jwt,
        Some(json!({ "id": "u1", "actionId": "dance" })),
    )
    .await;
    assert_eq!(unknown.status, 400, "{unknown:?}");
    for bad in [
        json!({ "id": "u1", "credit": -5 }),
        json!({ "id": "u1", "credit": "ten" }),
        json!({ "id": "u1", "credit": 5, "debit": 5 }),
        json!({ "id": "u1" }),
        json!({ "id": "nobody", "credit": 5 }),
    ] {
        let a = call("POST", "/points", &jwt, Some(bad.clone())).await;
        assert!(a.status == 400 || a.status == 404, "{bad}: {a:?}");
    }
    // A segment created twice with one Idempotency-Key is one segment.
    let seg = json!({ "name": "Gold", "member": "u1" });
    let make = || {
        s.send(
            s.request("POST", "/annex/api/3.0/segment", None)
                .header("Authorization", format!("Bearer {jwt}"))
                .header("Idempotency-Key", "seg-1")
                .json(&seg),
        )
    };
    let (one, two) = (make().await, make().await);
    assert_eq!(one.status, 200, "{one:?}");
    assert!(two.replayed, "{two:?}");
    assert_eq!(one.body["segmentId"], two.body["segmentId"]);
    // Its removal retried with the key answers 204 again (replayed); a
    // retry without one finds nothing to remove.
    let path = format!("/annex/api/3.0/segment/{}", one.body["segmentId"]);
    let remove = |key: Option<&'static str>| {
        let mut r = s
            .request("DELETE", &path, None)
            .header("Authorization", format!("Bearer {jwt}"));
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        s.send(r)
    };
    let (gone, again) = (remove(Some("rm-1")).await, remove(Some("rm-1")).await);
    assert_eq!(
        (gone.status, again.status),
        (204, 204),
        "{gone:?} {again:?}"
    );
    assert!(!gone.replayed && again.replayed, "{again:?}");
    assert_eq!(remove(None).await.status, 404);
    let p = call("GET", "/points/u1", &jwt, None).await;
    assert_eq!(p.status, 200, "{p:?}");
    assert_eq!(p.body["availablePoints"], 300);
    assert_eq!(p.body["lifetimePoints"], 350);
    assert_eq!(p.body["usedPoints"], 50);
    assert_eq!(s.balance(&t, "u1").await, 300);
}
