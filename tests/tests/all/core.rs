//! The engagement core over HTTP: players, actions through the rules
//! plugin, the ledger, goods and redemption, idempotency, and the
//! concurrency guarantees the issue names.

use std::collections::HashSet;
use std::sync::Arc;

use engage_tests::{Answer, Server};
use serde_json::json;

fn codes(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:06}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_walkthrough_native() {
    let s = Server::start("seed000-native", |_| {}).await;
    let t = s.demo_token().await;

    // Step 1: register a user with a mobile number (stored in E.164).
    let reg = s
        .call(
            "POST",
            "/v1/players",
            Some(&t),
            Some(json!({ "id": "player1", "username": "player1", "email": "p1@example.com", "phone": "+66 8123-4567" })),
        )
        .await;
    assert_eq!(reg.status, 201, "{reg:?}");
    assert_eq!(reg.body["phone"], "+6681234567");
    // Update without a phone number keeps the stored one.
    let upd = s
        .call(
            "PATCH",
            "/v1/players/player1",
            Some(&t),
            Some(json!({ "first_name": "Som" })),
        )
        .await;
    assert_eq!(upd.status, 200, "{upd:?}");
    assert_eq!(upd.body["phone"], "+6681234567");
    assert_eq!(upd.body["first_name"], "Som");

    // Step 2: a valuable action fires the rule: 100 points.
    let act = s
        .call("POST", "/v1/actions", Some(&t), Some(json!({ "player": "player1", "action": "buy", "params": { "sku": "A1", "qty": 2 } })))
        .await;
    assert_eq!(act.status, 200, "{act:?}");
    assert_eq!(act.body["events"][0]["type"], "reward_received");
    assert_eq!(act.body["events"][0]["amount"], 100);
    assert_eq!(act.body["events"][0]["balance"], 100);
    assert_eq!(act.body["action"]["params"]["qty"], "2");
    let action_id = act.body["action"]["id"]
        .as_str()
        .expect("action id")
        .to_owned();
    let stored = s
        .call("GET", &format!("/v1/actions/{action_id}"), Some(&t), None)
        .await;
    assert_eq!(stored.body["grants"][0]["amount"], 100);

    let me = s.call("GET", "/v1/players/player1", Some(&t), None).await;
    assert_eq!(me.body["balances"]["points"], 100);
    assert_eq!(me.body["action_counts"]["buy"], 1);

    // Goods: a group priced 100 points, codes from a file with a duplicate,
    // a blank line and a line too long.
    let g = s
        .call(
            "PUT",
            "/v1/goods/coupons",
            Some(&t),
            Some(json!({ "name": "Coupon", "price": 100, "low_stock_threshold": 1 })),
        )
        .await;
    assert_eq!(g.status, 200, "{g:?}");
    let file = format!(
        "8830644924\r\n\r\n8830644925\n8830644924\n{}\n",
        "x".repeat(300)
    );
    let up = s
        .send(
            s.request("POST", "/v1/goods/coupons/codes", Some(&t))
                .header("content-type", "text/plain")
                .body(file),
        )
        .await;
    assert_eq!(up.status, 200, "{up:?}");
    assert_eq!(
        (
            up.body["added"].as_u64(),
            up.body["duplicates"].as_u64(),
            up.body["blank"].as_u64(),
            up.body["rejected"].as_u64()
        ),
        (Some(2), Some(1), Some(1), Some(1)),
        "{up:?}"
    );
    assert_eq!(up.body["problems"][0]["line"], 4);
    let avail = s
        .call(
            "GET",
            "/v1/goods/coupons/availability?player=player1",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(avail.body["available"], 2);

    // Step 3: redeem for 100 points: one code, the ref_id, balance 0.
    let r = s
        .call(
            "POST",
            "/v1/goods/coupons/redeem",
            Some(&t),
            Some(json!({ "player": "player1" })),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["codes"], json!(["8830644924"]));
    let ref_id = r.body["ref_id"].as_str().expect("ref_id").to_owned();
    assert_eq!(ref_id.len(), 24);
    assert_eq!(s.balance(&t, "player1").await, 0);
    let got = s
        .call("GET", &format!("/v1/redemptions/{ref_id}"), Some(&t), None)
        .await;
    assert_eq!(got.body["codes"][0], "8830644924");
    assert_eq!(got.body["player"], "player1");

    // Not enough points: nothing changes.
    let poor = s
        .call(
            "POST",
            "/v1/goods/coupons/redeem",
            Some(&t),
            Some(json!({ "player": "player1" })),
        )
        .await;
    assert_eq!(
        (poor.status, poor.body["error"]["code"].as_str()),
        (409, Some("insufficient_balance")),
        "{poor:?}"
    );
    let g = s.call("GET", "/v1/goods/coupons", Some(&t), None).await;
    assert_eq!(
        (g.body["stock"].as_u64(), g.body["low_stock"].as_bool()),
        (Some(1), Some(true))
    );

    // No code left: no points taken.
    s.credit(&t, "player1", 300).await;
    let ok = s
        .call(
            "POST",
            "/v1/goods/coupons/redeem",
            Some(&t),
            Some(json!({ "player": "player1" })),
        )
        .await;
    assert_eq!(ok.status, 201, "{ok:?}");
    let empty = s
        .call(
            "POST",
            "/v1/goods/coupons/redeem",
            Some(&t),
            Some(json!({ "player": "player1" })),
        )
        .await;
    assert_eq!(empty.body["error"]["code"], "out_of_stock", "{empty:?}");
    assert_eq!(s.balance(&t, "player1").await, 200);

    // Step 4: uploading more codes raises the stock.
    let more = s
        .send(
            s.request("POST", "/v1/goods/coupons/codes", Some(&t))
                .header("content-type", "text/csv")
                .body("code,value\n9000000001,10\n9000000002,10\n8830644925,10\n"),
        )
        .await;
    assert_eq!(
        (
            more.body["added"].as_u64(),
            more.body["duplicates"].as_u64(),
            more.body["stock"].as_u64()
        ),
        (Some(2), Some(1), Some(2)),
        "{more:?}"
    );

    let history = s
        .call("GET", "/v1/players/player1/redemptions", Some(&t), None)
        .await;
    assert_eq!(
        history.body["redemptions"].as_array().map(Vec::len),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_reject_bad_input_and_change_nothing() {
    let s = Server::start("players", |_| {}).await;
    let t = s.demo_token().await;
    let bad_phone = s
        .call(
            "POST",
            "/v1/players",
            Some(&t),
            Some(json!({ "id": "p", "phone": "081234" })),
        )
        .await;
    assert_eq!(
        (bad_phone.status, bad_phone.body["error"]["code"].as_str()),
        (400, Some("invalid_phone"))
    );
    assert_eq!(
        s.call("GET", "/v1/players/p", Some(&t), None).await.status,
        404
    );
    let no_id = s
        .call(
            "POST",
            "/v1/players",
            Some(&t),
            Some(json!({ "phone": "+14155550100" })),
        )
        .await;
    assert_eq!(no_id.status, 400);
    let typo = s
        .call(
            "POST",
            "/v1/players",
            Some(&t),
            Some(json!({ "id": "p", "phnoe": "+14155550100" })),
        )
        .await;
    assert_eq!(typo.status, 400, "{typo:?}");
    s.player(&t, "p").await;
    let twice = s
        .call("POST", "/v1/players", Some(&t), Some(json!({ "id": "p" })))
        .await;
    assert_eq!(
        (twice.status, twice.body["error"]["code"].as_str()),
        (409, Some("player_exists"))
    );
    s.call(
        "POST",
        "/v1/players",
        Some(&t),
        Some(json!({ "id": "q", "username": "alice" })),
    )
    .await;
    let taken = s
        .call(
            "PATCH",
            "/v1/players/p",
            Some(&t),
            Some(json!({ "username": "alice" })),
        )
        .await;
    assert_eq!(taken.body["error"]["code"], "username_taken");
    let list = s.call("GET", "/v1/players?limit=1", Some(&t), None).await;
    assert_eq!(list.body["players"][0]["id"], "p");
    let next = list.body["next"].as_str().expect("cursor");
    let page2 = s
        .call(
            "GET",
            &format!("/v1/players?limit=1&after={next}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(page2.body["players"][0]["id"], "q");
    assert_eq!(
        s.call("DELETE", "/v1/players/p", Some(&t), None)
            .await
            .status,
        200
    );
    assert_eq!(
        s.call("GET", "/v1/players/p", Some(&t), None).await.status,
        404
    );
    // Another tenant never sees this tenant's players.
    let other = s.tenant("other").await;
    assert_eq!(
        s.call("GET", "/v1/players/q", Some(&other), None)
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_answer_unknowns_dry_runs_and_plugin_failures_distinctly() {
    let s = Server::start("actions", |_| {}).await;
    let t = s.demo_token().await;
    let ghost = s
        .call(
            "POST",
            "/v1/actions",
            Some(&t),
            Some(json!({ "player": "ghost", "action": "buy" })),
        )
        .await;
    assert_eq!(
        (ghost.status, ghost.body["error"]["code"].as_str()),
        (404, Some("player_not_found"))
    );
    s.player(&t, "p1").await;
    let unknown = s
        .call(
            "POST",
            "/v1/actions",
            Some(&t),
            Some(json!({ "player": "p1", "action": "dance" })),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.body["error"]["code"].as_str()),
        (404, Some("unknown_action")),
        "{unknown:?}"
    );
    let dry = s
        .call(
            "POST",
            "/v1/actions?dry_run=true",
            Some(&t),
            Some(json!({ "player": "p1", "action": "buy" })),
        )
        .await;
    assert_eq!(dry.status, 200, "{dry:?}");
    assert_eq!(dry.body["dry_run"], true);
    assert_eq!(dry.body["events"][0]["amount"], 100);
    assert!(dry.body["action"]["id"].is_null());
    assert_eq!(dry.body["trace"][0]["matched"], true);
    assert_eq!(s.balance(&t, "p1").await, 0, "a dry run changes nothing");

    // A rules plugin that traps: 502 with the kind, nothing recorded.
    let up = s
        .upload(&t, "hostile", engage_tests::components::HOSTILE)
        .await;
    assert_eq!(up.status, 201, "{up:?}");
    let bind = s
        .call(
            "PUT",
            "/v1/bindings/rules",
            Some(&t),
            Some(json!({ "plugin": "hostile", "config": { "mode": "trap" } })),
        )
        .await;
    assert_eq!(bind.status, 200, "{bind:?}");
    let failed = s
        .call(
            "POST",
            "/v1/actions",
            Some(&t),
            Some(json!({ "player": "p1", "action": "trap" })),
        )
        .await;
    assert_eq!(
        (failed.status, failed.body["error"]["code"].as_str()),
        (502, Some("plugin_failed")),
        "{failed:?}"
    );
    // A plugin that grants a negative amount: an invalid answer, not applied.
    let negative = s
        .call(
            "POST",
            "/v1/actions",
            Some(&t),
            Some(json!({ "player": "p1", "action": "negative" })),
        )
        .await;
    assert_eq!(
        (
            negative.status,
            negative.body["error"]["details"]["error"]["kind"].as_str()
        ),
        (502, Some("invalid_output")),
        "{negative:?}"
    );
    assert_eq!(s.balance(&t, "p1").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_never_goes_negative_and_reversals_compensate() {
    let s = Server::start("ledger", |_| {}).await;
    let t = s.demo_token().await;
    s.player(&t, "p").await;
    s.credit(&t, "p", 50).await;
    let over = s
        .call(
            "POST",
            "/v1/ledger/debit",
            Some(&t),
            Some(json!({ "player": "p", "amount": 51 })),
        )
        .await;
    assert_eq!(
        (
            over.status,
            over.body["error"]["details"]["balance"].as_i64()
        ),
        (409, Some(50)),
        "{over:?}"
    );
    let neg = s
        .call(
            "POST",
            "/v1/ledger/credit",
            Some(&t),
            Some(json!({ "player": "p", "amount": -5 })),
        )
        .await;
    assert_eq!(neg.body["error"]["code"], "invalid_amount");
    let gems = s
        .call(
            "POST",
            "/v1/ledger/credit",
            Some(&t),
            Some(json!({ "player": "p", "amount": 7, "currency": "gems", "reference": "promo-1" })),
        )
        .await;
    assert_eq!(gems.status, 201);
    let debit = s
        .call(
            "POST",
            "/v1/ledger/debit",
            Some(&t),
            Some(json!({ "player": "p", "amount": 20, "reason": "fee" })),
        )
        .await;
    let debit_id = debit.body["id"].as_str().expect("entry id").to_owned();
    assert_eq!(debit.body["balance_after"], 30);
    let rev = s
        .call(
            "POST",
            &format!("/v1/ledger/entries/{debit_id}/reverse"),
            Some(&t),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (
            rev.status,
            rev.body["reverses"].as_str(),
            rev.body["amount"].as_i64()
        ),
        (201, Some(debit_id.as_str()), Some(20)),
        "{rev:?}"
    );
    let again = s
        .call(
            "POST",
            &format!("/v1/ledger/entries/{debit_id}/reverse"),
            Some(&t),
            Some(json!({})),
        )
        .await;
    assert_eq!(again.body["error"]["code"], "already_reversed");
    assert_eq!(s.balance(&t, "p").await, 50);
    // A credit already spent cannot be reversed.
    let spend = s
        .call(
            "POST",
            "/v1/ledger/debit",
            Some(&t),
            Some(json!({ "player": "p", "amount": 50 })),
        )
        .await;
    assert_eq!(spend.status, 201);
    let first = s
        .call("GET", "/v1/players/p/ledger?limit=100", Some(&t), None)
        .await;
    let first_credit = first.body["entries"]
        .as_array()
        .and_then(|e| e.last())
        .and_then(|e| e["id"].as_str())
        .expect("oldest")
        .to_owned();
    let spent = s
        .call(
            "POST",
            &format!("/v1/ledger/entries/{first_credit}/reverse"),
            Some(&t),
            Some(json!({})),
        )
        .await;
    assert_eq!(spent.body["error"]["code"], "insufficient_balance");
    // History: newest first, cursor pagination, currency filter.
    let p1 = s
        .call("GET", "/v1/players/p/ledger?limit=2", Some(&t), None)
        .await;
    assert_eq!(p1.body["entries"].as_array().map(Vec::len), Some(2));
    let cursor = p1.body["next"].as_str().expect("next");
    let p2 = s
        .call(
            "GET",
            &format!("/v1/players/p/ledger?limit=10&before={cursor}"),
            Some(&t),
            None,
        )
        .await;
    let total = 2 + p2.body["entries"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(total, 5, "{p2:?}");
    let gems_only = s
        .call("GET", "/v1/players/p/ledger?currency=gems", Some(&t), None)
        .await;
    assert_eq!(gems_only.body["entries"][0]["reference"], "promo-1");
    let cur = s.call("GET", "/v1/currencies", Some(&t), None).await;
    assert_eq!(cur.body["currencies"], json!(["gems", "points"]));
}

async fn redeem(s: &Server, t: &str, player: &str, group: &str) -> Answer {
    s.call(
        "POST",
        &format!("/v1/goods/{group}/redeem"),
        Some(t),
        Some(json!({ "player": player })),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_redemptions_of_fifty_codes() {
    let s = Arc::new(Server::start("redeem200", |_| {}).await);
    let t = s.demo_token().await;
    s.goods(&t, "g", 10, &codes("C", 50)).await;
    for i in 0..200 {
        s.player(&t, &format!("p{i}")).await;
        s.credit(&t, &format!("p{i}"), 10).await;
    }
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (s, t) = (s.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            redeem(&s, &t, &format!("p{i}"), "g").await
        }));
    }
    let mut won = HashSet::new();
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let a = task.await.expect("task");
        match a.status {
            201 => {
                let code = a.body["codes"][0].as_str().expect("code").to_owned();
                assert!(won.insert(code), "a code was given out twice");
                winners.push(i);
            }
            409 => assert_eq!(a.body["error"]["code"], "out_of_stock", "{a:?}"),
            _ => panic!("{a:?}"),
        }
    }
    assert_eq!(won.len(), 50);
    let mut total = 0;
    for i in 0..200 {
        let b = s.balance(&t, &format!("p{i}")).await;
        assert_eq!(b, if winners.contains(&i) { 0 } else { 10 }, "player p{i}");
        total += b;
    }
    assert_eq!(total, 150 * 10, "points taken exactly for the 50");
    let g = s.call("GET", "/v1/goods/g", Some(&t), None).await;
    assert_eq!(g.body["stock"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_redemptions_with_points_for_three() {
    let s = Arc::new(Server::start("redeem3", |_| {}).await);
    let t = s.demo_token().await;
    s.goods(&t, "g", 100, &codes("D", 100)).await;
    s.player(&t, "p").await;
    s.credit(&t, "p", 300).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (s, t) = (s.clone(), t.clone());
        tasks.push(tokio::spawn(async move { redeem(&s, &t, "p", "g").await }));
    }
    let mut ok = 0;
    for task in tasks {
        let a = task.await.expect("task");
        match a.status {
            201 => ok += 1,
            409 => assert_eq!(a.body["error"]["code"], "insufficient_balance", "{a:?}"),
            _ => panic!("{a:?}"),
        }
    }
    assert_eq!(ok, 3);
    assert_eq!(s.balance(&t, "p").await, 0);
    let g = s.call("GET", "/v1/goods/g", Some(&t), None).await;
    assert_eq!(g.body["stock"], 97);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_cap_holds_under_a_hundred_concurrent_actions() {
    let s = Arc::new(Server::start("cap", |_| {}).await);
    let t = s.demo_token().await;
    let bind = s
        .call(
            "PUT",
            "/v1/bindings/rules",
            Some(&t),
            Some(json!({ "plugin": "rules-table", "config": { "rules": [{ "name": "daily-login", "action": "login", "award": { "amount": 10 }, "cap": { "count": 1, "per": "day" } }] } })),
        )
        .await;
    assert_eq!(bind.status, 200, "{bind:?}");
    s.player(&t, "p").await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (s, t) = (s.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            s.call(
                "POST",
                "/v1/actions",
                Some(&t),
                Some(json!({ "player": "p", "action": "login" })),
            )
            .await
        }));
    }
    let mut awarded = 0;
    for task in tasks {
        let a = task.await.expect("task");
        assert_eq!(a.status, 200, "{a:?}");
        awarded += a.body["events"].as_array().map(Vec::len).unwrap_or(0);
    }
    assert_eq!(awarded, 1);
    assert_eq!(s.balance(&t, "p").await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_twenty_times_concurrently() {
    let s = Arc::new(Server::start("idem", |_| {}).await);
    let t = s.demo_token().await;
    s.player(&t, "p").await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (s, t) = (s.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            s.send(
                s.request("POST", "/v1/actions", Some(&t))
                    .header("idempotency-key", "order-42")
                    .json(&json!({ "player": "p", "action": "buy" })),
            )
            .await
        }));
    }
    let mut bodies = Vec::new();
    for task in tasks {
        let a = task.await.expect("task");
        assert_eq!(a.status, 200, "{a:?}");
        bodies.push(a.body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "20 identical answers"
    );
    assert_eq!(s.balance(&t, "p").await, 100, "one effect");
    // The same key with a different body is a conflict; nothing changes.
    let other = s
        .send(
            s.request("POST", "/v1/actions", Some(&t))
                .header("idempotency-key", "order-42")
                .json(&json!({ "player": "p", "action": "buy", "params": { "x": 1 } })),
        )
        .await;
    assert_eq!(
        (other.status, other.body["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    // Keys work on every mutating call: a credit replayed.
    for _ in 0..3 {
        let c = s
            .send(
                s.request("POST", "/v1/ledger/credit", Some(&t))
                    .header("idempotency-key", "credit-1")
                    .json(&json!({ "player": "p", "amount": 5 })),
            )
            .await;
        assert_eq!(c.status, 201, "{c:?}");
    }
    assert_eq!(s.balance(&t, "p").await, 105);
}

/// What a tenant keeps of each kind is capped, so every list is one bounded
/// read: past 100 currencies a credit in a new one is refused and changes
/// nothing, the currencies it has still work, and another tenant is not
/// affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_keeps_at_most_a_hundred_currencies() {
    let s = Server::start("currency-cap", |_| {}).await;
    let t = s.demo_token().await;
    s.player(&t, "p").await;
    let credit = |t: String, currency: String| {
        let s = &s;
        async move {
            s.call(
                "POST",
                "/v1/ledger/credit",
                Some(&t),
                Some(json!({ "player": "p", "amount": 1, "currency": currency })),
            )
            .await
        }
    };
    for i in 1..=100 {
        let c = credit(t.clone(), format!("c{i}")).await;
        assert_eq!(c.status, 201, "{c:?}");
    }
    let refused = credit(t.clone(), "one-too-many".into()).await;
    assert_eq!(
        (refused.status, refused.body["error"]["code"].as_str()),
        (400, Some("too_many_currencies")),
        "{refused:?}"
    );
    assert_eq!(credit(t.clone(), "c7".into()).await.status, 201);
    let balances = s
        .call("GET", "/v1/players/p/balances", Some(&t), None)
        .await;
    let listed = balances.body["balances"].as_object().map(|b| b.len());
    assert_eq!(listed, Some(101), "the 100 and `points` at 0: {balances:?}");
    let other = s.tenant("other").await;
    s.player(&other, "p").await;
    assert_eq!(credit(other, "one-too-many".into()).await.status, 201);
}
