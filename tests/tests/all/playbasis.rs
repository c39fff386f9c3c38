//! Seed 000 through the Playbasis-compatible API: form-encoded parameters,
//! the Playbasis envelope, HTTP 200 with Playbasis error codes.

use engage_tests::twilio::FakeTwilio;
use engage_tests::{Answer, Server, multipart};
use serde_json::json;

async fn form(s: &Server, path: &str, params: &[(&str, &str)]) -> Answer {
    s.send(
        s.request("POST", &format!("/playbasis{path}"), None)
            .form(params),
    )
    .await
}

async fn query(s: &Server, path: &str, params: &[(&str, &str)]) -> Answer {
    s.send(
        s.request("GET", &format!("/playbasis{path}"), None)
            .query(params),
    )
    .await
}

fn assert_ok(a: &Answer) {
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["success"], true, "{a:?}");
    assert_eq!(a.body["error_code"], "0000", "{a:?}");
    assert!(a.body["timestamp"].as_i64().is_some());
    assert!(a.body["time"].as_str().is_some_and(|t| t.ends_with("UTC")));
}

fn assert_err(a: &Answer, code: &str) {
    assert_eq!(a.status, 200, "Playbasis answers errors with 200: {a:?}");
    assert_eq!(a.body["success"], false, "{a:?}");
    assert_eq!(a.body["error_code"], code, "{a:?}");
    assert!(a.body["response"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_walkthrough_playbasis() {
    let s = Server::start("seed000-pb", |_| {}).await;
    let (key, secret) = s.demo_credentials();

    // Get the token.
    assert_err(&form(&s, "/Auth", &[("api_key", &key)]).await, "0903");
    assert_err(
        &form(&s, "/Auth", &[("api_key", &key), ("api_secret", "wrong")]).await,
        "0001",
    );
    let auth = form(&s, "/Auth", &[("api_key", &key), ("api_secret", &secret)]).await;
    assert_ok(&auth);
    let token = auth.body["response"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert!(auth.body["response"]["date_expire"].as_str().is_some());
    let renewed = form(&s, "/Auth/renew", &[("token", &token)]).await;
    assert_ok(&renewed);

    // Token rules.
    assert_err(
        &form(&s, "/Player/player1/register", &[("username", "player1")]).await,
        "0902",
    );
    assert_err(
        &form(
            &s,
            "/Player/player1/register",
            &[("token", "nope"), ("username", "player1")],
        )
        .await,
        "0900",
    );

    // Step 1: register with the mobile number.
    let bad = form(
        &s,
        "/Player/player1/register",
        &[
            ("token", &token),
            ("username", "player1"),
            ("phone_number", "081234567"),
        ],
    )
    .await;
    assert_err(&bad, "0205");
    let reg = form(
        &s,
        "/Player/player1/register",
        &[
            ("token", &token),
            ("username", "player1"),
            ("email", "player1@example.com"),
            ("phone_number", "+6681234567"),
        ],
    )
    .await;
    assert_ok(&reg);
    assert_err(
        &form(
            &s,
            "/Player/player1/register",
            &[("token", &token), ("username", "x")],
        )
        .await,
        "0201",
    );
    // Update without the phone number keeps it.
    let upd = form(
        &s,
        "/Player/player1/update",
        &[("token", &token), ("first_name", "Somchai")],
    )
    .await;
    assert_ok(&upd);

    // Step 2: the action fires the rule: 100 points.
    assert_err(
        &form(
            &s,
            "/Engine/rule",
            &[("token", &token), ("player_id", "player1")],
        )
        .await,
        "0903",
    );
    assert_err(
        &form(
            &s,
            "/Engine/rule",
            &[
                ("token", &token),
                ("player_id", "nobody"),
                ("action", "buy"),
            ],
        )
        .await,
        "0200",
    );
    assert_err(
        &form(
            &s,
            "/Engine/rule",
            &[
                ("token", &token),
                ("player_id", "player1"),
                ("action", "dance"),
            ],
        )
        .await,
        "0301",
    );
    let rule = form(
        &s,
        "/Engine/rule",
        &[
            ("token", &token),
            ("player_id", "player1"),
            ("action", "buy"),
            ("url", "/shop/1"),
        ],
    )
    .await;
    assert_ok(&rule);
    assert_eq!(
        rule.body["response"]["events"][0]["event_type"],
        "REWARD_RECEIVED"
    );
    assert_eq!(rule.body["response"]["events"][0]["reward_type"], "points");
    assert_eq!(rule.body["response"]["events"][0]["value"], "100");

    // Get user information (reads take the api_key): the public profile
    // only — an API key is embedded in browser apps, so no contact details.
    let me = query(&s, "/Player/player1", &[("api_key", &key)]).await;
    assert_ok(&me);
    assert_eq!(me.body["response"]["player"]["cl_player_id"], "player1");
    assert_eq!(me.body["response"]["player"]["first_name"], "Somchai");
    let public = me.body["response"]["player"].as_object().expect("player");
    assert!(
        !public.contains_key("phone_number") && !public.contains_key("email"),
        "{public:?}"
    );
    // The token-authenticated POST adds the private fields.
    let private = form(&s, "/Player/player1", &[("token", &token)]).await;
    assert_ok(&private);
    assert_eq!(
        private.body["response"]["player"]["phone_number"],
        "+6681234567"
    );
    assert_eq!(
        private.body["response"]["player"]["email"],
        "player1@example.com"
    );
    assert_err(&query(&s, "/Player/player1", &[]).await, "0902");
    assert_err(
        &query(&s, "/Player/nobody", &[("api_key", &key)]).await,
        "0200",
    );
    let pts = query(&s, "/Player/player1/points", &[("api_key", &key)]).await;
    assert_eq!(pts.body["response"]["points"][0]["reward_name"], "points");
    assert_eq!(pts.body["response"]["points"][0]["value"], 100);
    let pt = query(&s, "/Player/player1/point/points", &[("token", &token)]).await;
    assert_eq!(pt.body["response"]["point"][0]["value"], 100);
    assert_err(
        &query(&s, "/Player/player1/point/gold", &[("api_key", &key)]).await,
        "0401",
    );

    // The dashboard part: a group of goods with codes imported from a file.
    let t = s.token(&key, &secret).await;
    s.goods(&t, "coupon", 100, &["8830644924".to_owned()]).await;
    let list = query(&s, "/Goods", &[("api_key", &key)]).await;
    assert_eq!(list.body["response"]["goods_list"][0]["quantity"], 1);
    assert_eq!(
        list.body["response"]["goods_list"][0]["redeem"]["point"]["point_value"],
        100
    );
    assert_err(
        &query(&s, "/Goods/nothing", &[("api_key", &key)]).await,
        "0501",
    );

    // Availability of a good in the group, then redeem it.
    let avail = query(
        &s,
        "/Redeem/goodsGroup",
        &[
            ("api_key", &key),
            ("player_id", "player1"),
            ("group", "coupon"),
        ],
    )
    .await;
    assert_ok(&avail);
    assert_eq!(avail.body["response"], 1);
    let r = form(
        &s,
        "/Redeem/goodsGroup",
        &[
            ("token", &token),
            ("player_id", "player1"),
            ("group", "coupon"),
            ("amount", "1"),
        ],
    )
    .await;
    assert_ok(&r);
    assert_eq!(
        r.body["response"]["events"][0]["event_type"],
        "GOODS_RECEIVED"
    );
    assert_eq!(
        r.body["response"]["events"][0]["goods_data"]["code"],
        "8830644924"
    );
    let ref_id = r.body["response"]["ref_id"].as_str().expect("ref_id");
    assert_eq!(ref_id.len(), 24);
    assert_eq!(r.body["response"]["log_id"], ref_id);

    // Points are gone, and so is the stock: each error in its own code.
    let pts = query(&s, "/Player/player1/points", &[("api_key", &key)]).await;
    assert_eq!(pts.body["response"]["points"][0]["value"], 0);
    s.credit(&t, "player1", 100).await;
    let empty = form(
        &s,
        "/Redeem/goodsGroup",
        &[
            ("token", &token),
            ("player_id", "player1"),
            ("group", "coupon"),
        ],
    )
    .await;
    assert_err(&empty, "0603");
    let pts = query(&s, "/Player/player1/points", &[("api_key", &key)]).await;
    assert_eq!(
        pts.body["response"]["points"][0]["value"], 100,
        "no points taken"
    );
    // Step 4: upload more codes; a poor player gets 0605.
    s.goods(
        &t,
        "coupon",
        100,
        &["8830644925".to_owned(), "8830644926".to_owned()],
    )
    .await;
    form(
        &s,
        "/Player/poor/register",
        &[("token", &token), ("username", "poor")],
    )
    .await;
    let poor = form(
        &s,
        "/Redeem/goodsGroup",
        &[
            ("token", &token),
            ("player_id", "poor"),
            ("group", "coupon"),
        ],
    )
    .await;
    assert_err(&poor, "0605");
    // A per-player limit gives 0601.
    let lim = s
        .call(
            "PUT",
            "/v1/goods/coupon",
            Some(&t),
            Some(json!({ "per_player_limit": 1 })),
        )
        .await;
    assert_eq!(lim.status, 200);
    let over = form(
        &s,
        "/Redeem/goods",
        &[
            ("token", &token),
            ("player_id", "player1"),
            ("goods_id", "coupon"),
        ],
    )
    .await;
    assert_err(&over, "0601");
    // Lower-case paths work too.
    assert_ok(&query(&s, "/player/player1", &[("api_key", &key)]).await);

    // The SMS half: the coupon goes to the player's phone through Twilio.
    let twilio = FakeTwilio::start().await;
    let provider = json!({ "kind": "twilio", "account_sid": "AC0123456789abcdef0123456789abcdef", "auth_token": "secret",
                           "from": "+15005550006", "base_url": twilio.url });
    assert_eq!(
        s.call("PUT", "/v1/providers/twilio", Some(&t), Some(provider))
            .await
            .status,
        200
    );
    let route = json!({ "plugin": "router", "config": { "default_provider": "twilio" } });
    assert_eq!(
        s.call("PUT", "/v1/bindings/route", Some(&t), Some(route))
            .await
            .status,
        200
    );
    let message =
        "Congratulation, here is your coupon code: {{code}}. Don't miss it: \"50% & more\" ✓";
    let sent = form(
        &s,
        "/Sms/goods",
        &[
            ("token", &token),
            ("ref_id", ref_id),
            ("player_id", "player1"),
            ("message", message),
        ],
    )
    .await;
    assert_ok(&sent);
    let expected =
        "Congratulation, here is your coupon code: 8830644924. Don't miss it: \"50% & more\" ✓";
    assert_eq!(sent.body["response"]["to"], "+6681234567");
    assert_eq!(sent.body["response"]["message"], expected);
    let plain = form(
        &s,
        "/Sms/send",
        &[
            ("token", &token),
            ("player_id", "player1"),
            ("message", "Hello {{first_name}}!"),
        ],
    )
    .await;
    assert_ok(&plain);
    for _ in 0..100 {
        if twilio.requests().len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let reqs = twilio.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(
        twilio.violations(),
        Vec::<String>::new(),
        "requests conform to CreateMessage"
    );
    let coupon = reqs
        .iter()
        .find(|r| r.field("Body") == Some(expected))
        .expect("the coupon SMS");
    assert_eq!(coupon.field("To"), Some("+6681234567"));
    assert_eq!(coupon.field("From"), Some("+15005550006"));
    assert!(
        reqs.iter()
            .any(|r| r.field("Body") == Some("Hello Somchai!")),
        "{reqs:?}"
    );
    // Someone else's redemption, an unknown one, a player without a phone.
    assert_err(
        &form(
            &s,
            "/Sms/goods",
            &[
                ("token", &token),
                ("ref_id", ref_id),
                ("player_id", "poor"),
                ("message", "{{code}}"),
            ],
        )
        .await,
        "0502",
    );
    assert_err(
        &form(
            &s,
            "/Sms/goods",
            &[
                ("token", &token),
                ("ref_id", "nope"),
                ("player_id", "player1"),
                ("message", "{{code}}"),
            ],
        )
        .await,
        "0502",
    );
    assert_err(
        &form(
            &s,
            "/Sms/send",
            &[("token", &token), ("player_id", "poor"), ("message", "hi")],
        )
        .await,
        "0205",
    );
    assert_err(
        &form(
            &s,
            "/Sms/send",
            &[("token", &token), ("player_id", "player1")],
        )
        .await,
        "0903",
    );
}

/// The PHP client library posts with curl's `multipart/form-data`: the
/// same calls work, and a POST for player info with the token answers the
/// private fields too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_forms_as_the_php_library_sends_them() {
    let s = Server::start("pb-multipart", |_| {}).await;
    let (key, secret) = s.demo_credentials();
    let post = |path: &'static str, fields: Vec<(&'static str, String)>| {
        let s = &s;
        async move {
            let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (ct, body) = multipart(&f);
            s.send(
                s.request("POST", &format!("/playbasis{path}"), None)
                    .header("content-type", ct)
                    .body(body),
            )
            .await
        }
    };
    let auth = post(
        "/Auth",
        vec![("api_key", key.clone()), ("api_secret", secret)],
    )
    .await;
    assert_ok(&auth);
    let token = auth.body["response"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let reg = post(
        "/Player/mp1/register",
        vec![
            ("token", token.clone()),
            ("username", "mp1".into()),
            ("email", "mp1@example.com".into()),
            ("phone_number", "+6681234567".into()),
        ],
    )
    .await;
    assert_ok(&reg);
    let info = post("/Player/mp1", vec![("token", token.clone())]).await;
    assert_ok(&info);
    assert_eq!(info.body["response"]["player"]["email"], "mp1@example.com");
    let rule = post(
        "/Engine/rule",
        vec![
            ("token", token),
            ("player_id", "mp1".into()),
            ("action", "buy".into()),
        ],
    )
    .await;
    assert_ok(&rule);
    assert_eq!(rule.body["response"]["events"][0]["value"], "100");
}

/// The browser library calls from the app's own origin: a preflight and
/// the call itself are allowed for the tenant's origins only, and no
/// origin is allowed until the tenant lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_for_the_browser_library() {
    let s = Server::start("pb-cors", |_| {}).await;
    let (key, _) = s.demo_credentials();
    let token = s.demo_token().await;
    let app = "https://app.example.com";
    let preflight = |origin: &'static str, path: String| {
        let s = &s;
        async move {
            s.http
                .request(reqwest::Method::OPTIONS, format!("{}{path}", s.base))
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .header("access-control-request-headers", "content-type")
                .send()
                .await
                .expect("sent")
        }
    };
    let player = format!("/playbasis/Player/nobody?api_key={key}");
    let before = preflight(app, player.clone()).await;
    assert_eq!(before.status(), 403, "no origin is allowed by default");
    assert!(
        before
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let set = s
        .call(
            "PUT",
            "/v1/settings/cors",
            Some(&token),
            Some(json!({ "allowed_origins": [app] })),
        )
        .await;
    assert_eq!(set.status, 200, "{set:?}");
    let bad = s
        .call(
            "PUT",
            "/v1/settings/cors",
            Some(&token),
            Some(json!({ "allowed_origins": ["https://app.example.com/path"] })),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["error"]["code"].as_str()),
        (400, Some("invalid_origin"))
    );
    let ok = preflight(app, player.clone()).await;
    assert_eq!(ok.status(), 204);
    assert_eq!(ok.headers()["access-control-allow-origin"], app);
    assert!(
        ok.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    assert_eq!(
        preflight("https://evil.example", player.clone())
            .await
            .status(),
        403
    );
    // The call itself: readable from the allowed origin only.
    let get = |origin: &'static str| {
        let s = &s;
        let path = player.clone();
        async move {
            s.http
                .get(format!("{}{path}", s.base))
                .header("origin", origin)
                .send()
                .await
                .expect("sent")
        }
    };
    let allowed = get(app).await;
    assert_eq!(allowed.headers()["access-control-allow-origin"], app);
    let refused = get("https://evil.example").await;
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    // /v1 too: the preflight carries no token, the call does.
    let v1 = preflight(app, "/v1/players/p1".into()).await;
    assert_eq!(v1.status(), 204);
    let call = s
        .http
        .get(format!("{}/v1/players/p1", s.base))
        .bearer_auth(&token)
        .header("origin", app)
        .send()
        .await
        .expect("sent");
    assert_eq!(call.headers()["access-control-allow-origin"], app);
    // Another tenant's token from that origin: not this tenant's origin.
    let other = s.tenant("other").await;
    let theirs = s
        .http
        .get(format!("{}/v1/players/p1", s.base))
        .bearer_auth(&other)
        .header("origin", app)
        .send()
        .await
        .expect("sent");
    assert!(
        theirs
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

/// The player calls the client libraries make besides the seed's:
/// `POST /Player/list`, `/Player/{id}/data/all` (public by API key,
/// private with a token) and `/Player/{id}/goods`, with `registered` as
/// Playbasis writes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn player_details_lists_and_goods() {
    let s = Server::start("pb-details", |_| {}).await;
    let (key, secret) = s.demo_credentials();
    let v1 = s.demo_token().await;
    for id in ["d1", "d2"] {
        let r = s
            .call(
                "POST",
                "/v1/players",
                Some(&v1),
                Some(json!({ "id": id, "email": format!("{id}@example.com"), "phone": "+6681234567" })),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    s.credit(&v1, "d1", 500).await;
    s.goods(&v1, "coupon", 100, &["C-1".to_owned(), "C-2".to_owned()])
        .await;
    let red = s
        .call(
            "POST",
            "/v1/goods/coupon/redeem",
            Some(&v1),
            Some(json!({ "player": "d1" })),
        )
        .await;
    assert_eq!(red.status, 201, "{red:?}");
    let auth = form(&s, "/Auth", &[("api_key", &key), ("api_secret", &secret)]).await;
    let token = auth.body["response"]["token"]
        .as_str()
        .expect("token")
        .to_owned();

    let list = form(
        &s,
        "/Player/list",
        &[("token", &token), ("list_player_id", "d1,nobody,d2")],
    )
    .await;
    assert_ok(&list);
    let ids: Vec<&str> = list.body["response"]["player"]
        .as_array()
        .expect("players")
        .iter()
        .filter_map(|p| p["cl_player_id"].as_str())
        .collect();
    assert_eq!(ids, ["d1", "d2"], "unknown ids are left out");
    assert_eq!(
        list.body["response"]["player"][1]["email"],
        "d2@example.com"
    );
    let registered = list.body["response"]["player"][0]["registered"]
        .as_str()
        .unwrap_or_default();
    assert!(
        registered.len() == 24 && registered.ends_with("+0000") && &registered[10..11] == "T",
        "{registered}"
    );

    let public = query(&s, "/Player/d1/data/all", &[("api_key", &key)]).await;
    assert_ok(&public);
    let p = &public.body["response"]["player"];
    assert!(
        p.get("email").is_none() && p.get("phone_number").is_none(),
        "{p}"
    );
    assert_eq!(p["points"][0]["reward_name"], "points");
    assert_eq!(p["points"][0]["value"], 400);
    assert_eq!(p["goods"][0]["goods_id"], "coupon");
    assert_eq!(p["goods"][0]["amount"], 1);
    let private = form(&s, "/Player/d1/data/all", &[("token", &token)]).await;
    assert_eq!(
        private.body["response"]["player"]["email"],
        "d1@example.com"
    );

    let owned = query(&s, "/Player/d1/goods", &[("api_key", &key)]).await;
    assert_ok(&owned);
    let code = owned.body["response"]["goods"][0]["code"]
        .as_str()
        .unwrap_or_default();
    assert!(code == "C-1" || code == "C-2", "{owned:?}");
    assert_err(
        &query(&s, "/Player/nobody/goods", &[("api_key", &key)]).await,
        "0200",
    );
}

/// The Player API calls the libraries make for history, action times and
/// counts, and deduction — in Playbasis's own shapes and error codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_history_action_times_and_deduct() {
    let s = std::sync::Arc::new(Server::start("pb-history", |_| {}).await);
    let (key, _) = s.demo_credentials();
    let v1 = s.demo_token().await;
    let r = s
        .call(
            "POST",
            "/v1/players",
            Some(&v1),
            Some(json!({ "id": "h1" })),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let rules = json!({ "plugin": "rules-table", "config": { "rules": [
        { "name": "buy-100", "action": "buy", "award": { "currency": "points", "amount": 100 }, "badges": ["shopper"] } ] } });
    let b = s
        .call("PUT", "/v1/bindings/rules", Some(&v1), Some(rules))
        .await;
    assert_eq!(b.status, 200, "{b:?}");
    let auth = form(
        &s,
        "/Auth",
        &[("api_key", &key), ("api_secret", &s.demo_credentials().1)],
    )
    .await;
    let token = auth.body["response"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    for url in ["/shop/1", "/shop/2"] {
        let rule = form(
            &s,
            "/Engine/rule",
            &[
                ("token", &token),
                ("player_id", "h1"),
                ("action", "buy"),
                ("url", url),
            ],
        )
        .await;
        assert_ok(&rule);
    }
    s.credit(&v1, "h1", 50).await;

    // History: credits only, newest first, each action-earned one naming
    // its action; offset/limit page it; order=asc turns it round.
    let h = query(&s, "/Player/h1/point_history", &[("api_key", &key)]).await;
    assert_ok(&h);
    let rows = h.body["response"]["points"]
        .as_array()
        .expect("points")
        .clone();
    let values: Vec<i64> = rows.iter().filter_map(|r| r["value"].as_i64()).collect();
    assert_eq!(values, [50, 100, 100], "{h:?}");
    assert!(rows[0].get("action_name").is_none(), "{}", rows[0]);
    assert_eq!(rows[1]["action_name"], "buy");
    assert_eq!(rows[1]["string_filter"], "/shop/2");
    assert_eq!(rows[1]["reward_name"], "points");
    assert!(
        rows[1]["date_added"]
            .as_str()
            .is_some_and(|d| d.ends_with("+0000"))
    );
    let page = query(
        &s,
        "/Player/h1/point_history",
        &[
            ("api_key", &key),
            ("offset", "1"),
            ("limit", "1"),
            ("order", "asc"),
        ],
    )
    .await;
    let page = page.body["response"]["points"]
        .as_array()
        .expect("page")
        .clone();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["string_filter"], "/shop/2", "the second oldest");
    assert_err(
        &query(
            &s,
            "/Player/h1/point_history",
            &[("api_key", &key), ("point_name", "gems")],
        )
        .await,
        "0401",
    );
    assert_err(
        &query(
            &s,
            "/Player/h1/point_history",
            &[("api_key", &key), ("limit", "lots")],
        )
        .await,
        "0903",
    );

    // The tenant's recent credits, every player's, with public profiles.
    let r = query(
        &s,
        "/Service/recent_point",
        &[("api_key", &key), ("limit", "2")],
    )
    .await;
    assert_ok(&r);
    let rows = r.body["response"]["points"]
        .as_array()
        .expect("points")
        .clone();
    assert_eq!(rows.len(), 2, "{r:?}");
    assert_eq!(rows[0]["value"], 50);
    assert_eq!(rows[1]["action_name"], "buy");
    assert_eq!(rows[0]["player"]["cl_player_id"], "h1");
    assert!(
        rows[0]["player"].get("email").is_none(),
        "public profiles only"
    );
    let mine = query(
        &s,
        "/Service/recent_point",
        &[("api_key", &key), ("player_id", "h1"), ("offset", "2")],
    )
    .await;
    assert_eq!(
        mine.body["response"]["points"].as_array().map(Vec::len),
        Some(1),
        "{mine:?}"
    );
    assert_err(
        &query(
            &s,
            "/Service/recent_point",
            &[("api_key", &key), ("point_name", "gems")],
        )
        .await,
        "0401",
    );

    // Action counts and times.
    let c = query(&s, "/Player/h1/action/buy/count", &[("api_key", &key)]).await;
    assert_ok(&c);
    assert_eq!(c.body["response"]["action"]["count"], 2);
    assert_eq!(c.body["response"]["action"]["action_name"], "buy");
    let none = query(&s, "/Player/h1/action/dance/count", &[("api_key", &key)]).await;
    assert_eq!(none.body["response"]["action"]["count"], 0);
    assert_err(
        &query(
            &s,
            "/Player/h1/action/buy/count",
            &[("api_key", &key), ("key", "url"), ("value", "/shop/1")],
        )
        .await,
        "0005",
    );
    let t = query(&s, "/Player/h1/action/buy/time", &[("api_key", &key)]).await;
    assert_ok(&t);
    let time = t.body["response"]["action"]["time"]
        .as_str()
        .unwrap_or_default();
    assert!(time.len() == 24 && time.ends_with("+0000"), "{t:?}");
    let last = query(&s, "/Player/h1/action/time", &[("api_key", &key)]).await;
    assert_eq!(last.body["response"]["action"]["action_name"], "buy");
    assert_eq!(last.body["response"]["action"]["time"], time);
    let never = query(&s, "/Player/h1/action/dance/time", &[("api_key", &key)]).await;
    assert_eq!(never.body["response"]["action"], json!([]));
    assert_err(
        &query(&s, "/Player/nobody/action/time", &[("api_key", &key)]).await,
        "0200",
    );
    let badges = query(&s, "/Player/h1/badge", &[("api_key", &key)]).await;
    assert_ok(&badges);
    assert_eq!(badges.body["response"][0]["name"], "shopper", "{badges:?}");
    assert_eq!(
        badges.body["response"][0]["amount"], 2,
        "two buys, the badge twice"
    );
    assert_err(
        &query(&s, "/Player/nobody/badge", &[("api_key", &key)]).await,
        "0200",
    );

    // Deduct: refused when short (nothing taken), forced takes what is
    // there; bad amounts change nothing.
    assert_eq!(points_of(&s, &key, "h1").await, 250);
    let short = form(
        &s,
        "/Player/h1/deduct",
        &[("token", &token), ("reward", "points"), ("amount", "1000")],
    )
    .await;
    assert_err(&short, "0207");
    for bad in ["0", "-5", "ten", "99999999999999999999"] {
        assert_err(
            &form(
                &s,
                "/Player/h1/deduct",
                &[("token", &token), ("reward", "points"), ("amount", bad)],
            )
            .await,
            "0903",
        );
    }
    assert_err(
        &form(
            &s,
            "/Player/h1/deduct",
            &[("token", &token), ("reward", "gems"), ("amount", "1")],
        )
        .await,
        "0401",
    );
    assert_err(
        &form(
            &s,
            "/Player/h1/deduct",
            &[("api_key", &key), ("reward", "points"), ("amount", "1")],
        )
        .await,
        "0902",
    );
    assert_eq!(
        points_of(&s, &key, "h1").await,
        250,
        "refused deductions took nothing"
    );

    // Concurrent deductions never take more than there is.
    let mut calls = Vec::new();
    for _ in 0..8 {
        let (s, token) = (s.clone(), token.clone());
        calls.push(tokio::spawn(async move {
            form(
                &s,
                "/Player/h1/deduct",
                &[("token", &token), ("reward", "points"), ("amount", "100")],
            )
            .await
        }));
    }
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.expect("task"));
    }
    let taken = answers.iter().filter(|a| a.body["success"] == true).count();
    assert_eq!(taken, 2, "250 points pay two deductions of 100");
    assert!(
        answers
            .iter()
            .all(|a| a.body["success"] == true || a.body["error_code"] == "0207")
    );
    assert_eq!(points_of(&s, &key, "h1").await, 50);

    let forced = form(
        &s,
        "/Player/h1/deduct",
        &[
            ("token", &token),
            ("reward", "points"),
            ("amount", "1000"),
            ("force", "1"),
        ],
    )
    .await;
    assert_ok(&forced);
    assert_eq!(
        forced.body["response"],
        json!({ "old_value": 50, "new_value": 0, "value_deducted": 50 })
    );
    assert_eq!(points_of(&s, &key, "h1").await, 0);
    let again = form(
        &s,
        "/Player/h1/deduct",
        &[
            ("token", &token),
            ("reward", "points"),
            ("amount", "10"),
            ("force", "true"),
        ],
    )
    .await;
    assert_eq!(
        again.body["response"],
        json!({ "old_value": 0, "new_value": 0, "value_deducted": 0 })
    );
    // Deductions are debits: the history of credits is unchanged.
    let h = query(&s, "/Player/h1/point_history", &[("api_key", &key)]).await;
    assert_eq!(
        h.body["response"]["points"].as_array().map(Vec::len),
        Some(3)
    );
}

async fn points_of(s: &Server, key: &str, player: &str) -> i64 {
    let b = query(
        s,
        &format!("/Player/{player}/point/points"),
        &[("api_key", key)],
    )
    .await;
    b.body["response"]["point"][0]["value"]
        .as_i64()
        .unwrap_or(-1)
}

async fn keyed(s: &Server, path: &str, key: &str, params: &[(&str, &str)]) -> Answer {
    s.send(
        s.request("POST", &format!("/playbasis{path}"), None)
            .header("Idempotency-Key", key)
            .form(params),
    )
    .await
}

/// Every Playbasis write honours `Idempotency-Key`: a client that retries
/// after a timeout gets the first answer again, and nothing happens twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_an_idempotency_key_happen_once() {
    let s = Server::start("pb-idem", |_| {}).await;
    let (key, secret) = s.demo_credentials();
    let v1 = s.demo_token().await;
    s.player(&v1, "r1").await;
    s.credit(&v1, "r1", 300).await;
    let codes: Vec<String> = (1..=5).map(|i| format!("K-{i}")).collect();
    s.goods(&v1, "coupon", 100, &codes).await;
    let auth = form(&s, "/Auth", &[("api_key", &key), ("api_secret", &secret)]).await;
    let token = auth.body["response"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let tk = token.as_str();

    // A redemption retried: the same coupon, the points taken once.
    let redeem = [("token", tk), ("player_id", "r1"), ("group", "coupon")];
    let first = keyed(&s, "/Redeem/goodsGroup", "redeem-1", &redeem).await;
    assert_ok(&first);
    assert!(!first.replayed);
    let again = keyed(&s, "/Redeem/goodsGroup", "redeem-1", &redeem).await;
    assert_ok(&again);
    assert!(again.replayed, "{again:?}");
    assert_eq!(again.body["response"], first.body["response"]);
    assert_eq!(s.balance(&v1, "r1").await, 200, "paid once");
    let stock = s.call("GET", "/v1/goods/coupon", Some(&v1), None).await;
    assert_eq!(stock.body["stock"], 4, "one code out");
    // The same key with another request is refused and changes nothing.
    let other = keyed(
        &s,
        "/Redeem/goodsGroup",
        "redeem-1",
        &[
            ("token", tk),
            ("player_id", "r1"),
            ("group", "coupon"),
            ("amount", "2"),
        ],
    )
    .await;
    assert_err(&other, "0903");
    assert_eq!(s.balance(&v1, "r1").await, 200);
    // Without a key, a second request is a second redemption.
    assert_ok(&form(&s, "/Redeem/goodsGroup", &redeem).await);
    assert_eq!(s.balance(&v1, "r1").await, 100);

    // Deduct, rule and SMS: once each.
    let deduct = [("token", tk), ("reward", "points"), ("amount", "30")];
    for _ in 0..2 {
        assert_ok(&keyed(&s, "/Player/r1/deduct", "deduct-1", &deduct).await);
    }
    assert_eq!(s.balance(&v1, "r1").await, 70);
    let rule = [("token", tk), ("player_id", "r1"), ("action", "buy")];
    let a = keyed(&s, "/Engine/rule", "rule-1", &rule).await;
    let b = keyed(&s, "/Engine/rule", "rule-1", &rule).await;
    assert_ok(&b);
    assert!(b.replayed);
    assert_eq!(
        a.body["response"]["action_id"],
        b.body["response"]["action_id"]
    );
    assert_eq!(s.balance(&v1, "r1").await, 170, "the rule paid once");
    let sms = [("token", tk), ("player_id", "r1"), ("message", "hello")];
    let m1 = keyed(&s, "/Sms/send", "sms-1", &sms).await;
    let m2 = keyed(&s, "/Sms/send", "sms-1", &sms).await;
    assert_ok(&m2);
    assert_eq!(
        m1.body["response"]["message_id"],
        m2.body["response"]["message_id"]
    );
    let sent = s.call("GET", "/v1/messages", Some(&v1), None).await;
    assert_eq!(
        sent.body["messages"].as_array().map(Vec::len),
        Some(1),
        "one SMS"
    );

    // A registration retried is the first answer, not "user already exists".
    let reg = [
        ("token", tk),
        ("username", "newbie"),
        ("email", "n@example.com"),
        ("image", "x"),
    ];
    assert_ok(&keyed(&s, "/Player/n1/register", "reg-1", &reg).await);
    assert_ok(&keyed(&s, "/Player/n1/register", "reg-1", &reg).await);
    assert_err(&form(&s, "/Player/n1/register", &reg).await, "0201");

    // A malformed key is refused before anything happens.
    let long = "k".repeat(300);
    assert_err(
        &keyed(&s, "/Player/r1/deduct", &long, &deduct).await,
        "0903",
    );
    assert_eq!(s.balance(&v1, "r1").await, 170);

    // Playbasis checks the player before the goods.
    assert_err(
        &form(
            &s,
            "/Redeem/goodsGroup",
            &[("token", tk), ("player_id", "ghost"), ("group", "nothing")],
        )
        .await,
        "0200",
    );
}
