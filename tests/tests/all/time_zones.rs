//! Real time zones, driven over HTTP through the first-party components:
//! a daily cap in `Europe/Berlin` across both of 2026's changes, zones
//! refused with a clear error where a client gives one, a campaign
//! schedule's next slot in a zone.

use engage_tests::Server;
use serde_json::json;

/// Milliseconds of a UTC date and time.
fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> i64 {
    engage::time::Zone::utc()
        .instant(y, mo, d, h, mi, 0)
        .expect("instant")
}

async fn login_at(s: &Server, t: &str, player: &str, at: i64) -> i64 {
    let r = s
        .call(
            "POST",
            "/v1/bindings/rules/invoke",
            Some(t),
            Some(json!({ "call": "evaluate", "action": { "player": player, "name": "login", "params": [], "url": null, "time_ms": at } })),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["committed"], true, "{r:?}");
    r.body["output"]["outcome"]["grants"]
        .as_array()
        .map(|g| g.iter().filter_map(|x| x["amount"].as_i64()).sum())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_cap_in_berlin_holds_across_daylight_saving_changes() {
    let s = Server::start("tz-cap", |_| {}).await;
    let t = s.demo_token().await;
    let config = json!({ "time_zone": "Europe/Berlin", "rules": [
        { "name": "daily", "action": "login", "award": { "currency": "points", "amount": 10 },
          "cap": { "count": 1, "per": "day" } } ] });
    let b = s
        .call(
            "PUT",
            "/v1/bindings/rules",
            Some(&t),
            Some(json!({ "plugin": "rules-table", "config": config })),
        )
        .await;
    assert_eq!(b.status, 200, "{b:?}");

    // Sunday 29 March: 23 hours. 23:30 CEST (21:30 UTC) is still Sunday;
    // Monday begins at 22:00 UTC, where a fixed +01:00 would say 23:00.
    assert_eq!(login_at(&s, &t, "p1", utc(2026, 3, 29, 21, 30)).await, 10);
    assert_eq!(login_at(&s, &t, "p1", utc(2026, 3, 29, 21, 59)).await, 0);
    assert_eq!(login_at(&s, &t, "p1", utc(2026, 3, 29, 22, 0)).await, 10);
    // Sunday 25 October: 25 hours. 02:30 CEST (00:30 UTC) and 23:30 CET
    // (22:30 UTC) are the same day; Monday begins at 23:00 UTC.
    assert_eq!(login_at(&s, &t, "p1", utc(2026, 10, 25, 0, 30)).await, 10);
    assert_eq!(login_at(&s, &t, "p1", utc(2026, 10, 25, 22, 30)).await, 0);
    assert_eq!(login_at(&s, &t, "p1", utc(2026, 10, 25, 23, 0)).await, 10);

    // A zone that does not exist, or both kinds at once: refused at bind
    // with the plugin's reason, the binding unchanged.
    for (bad, says) in [
        (
            json!({ "time_zone": "Europe/Atlantis", "rules": [] }),
            "IANA",
        ),
        (
            json!({ "time_zone": "Europe/Berlin", "utc_offset": "+01:00", "rules": [] }),
            "not both",
        ),
    ] {
        let r = s
            .call(
                "PUT",
                "/v1/bindings/rules",
                Some(&t),
                Some(json!({ "plugin": "rules-table", "config": bad })),
            )
            .await;
        assert_eq!(r.status, 422, "{r:?}");
        assert_eq!(r.body["error"]["code"], "config_rejected");
        let m = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(m.contains(says), "{m}");
    }
    assert_eq!(
        login_at(&s, &t, "p2", utc(2026, 3, 29, 21, 30)).await,
        10,
        "still Berlin"
    );

    // The gift quota's day is a zone's too.
    let g = s
        .call(
            "PUT",
            "/v1/bindings/gift",
            Some(&t),
            Some(json!({ "plugin": "gift-quota", "config": { "requests_per_day": 2, "time_zone": "America/New_York" } })),
        )
        .await;
    assert_eq!(g.status, 200, "{g:?}");
    let g = s
        .call(
            "PUT",
            "/v1/bindings/gift",
            Some(&t),
            Some(json!({ "plugin": "gift-quota", "config": { "time_zone": "America/Gotham" } })),
        )
        .await;
    assert_eq!(g.status, 422, "{g:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_where_clients_give_them() {
    let s = Server::start("tz-api", |_| {}).await;
    let t = s.demo_token().await;
    // A campaign at 02:30 every day in Berlin: the next slot is 02:30 CET
    // (01:30 UTC) in winter, read back from the campaign.
    let c = s
        .call(
            "PUT",
            "/v1/campaigns/nightly",
            Some(&t),
            Some(json!({ "name": "Nightly", "template": "Hi", "trigger": { "type": "schedule", "cron": "30 2 * * *", "timezone": "Europe/Berlin" } })),
        )
        .await;
    assert_eq!(c.status, 200, "{c:?}");
    let next = c.body["next_slot_ms"].as_i64().expect("a next slot");
    let local = engage::time::Zone::parse("Europe/Berlin")
        .expect("zone")
        .local(next)
        .expect("local");
    assert_eq!(
        (local.hour, local.minute, local.second),
        (2, 30, 0),
        "{c:?}"
    );
    let bad = s
        .call(
            "PUT",
            "/v1/campaigns/never",
            Some(&t),
            Some(json!({ "name": "Never", "template": "Hi", "trigger": { "type": "schedule", "cron": "30 2 * * *", "timezone": "Mars/Olympus" } })),
        )
        .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(
        bad.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("IANA"),
        "{bad:?}"
    );
    // A gateway account in Jakarta's zone; a made-up one is refused.
    let a = s
        .call(
            "POST",
            "/v1/gateway/accounts",
            Some(&t),
            Some(json!({ "username": "jkt", "password": "s3cret-pass", "level": "user", "name": "Jakarta", "email": "jkt@example.com", "timezone": "Asia/Jakarta" })),
        )
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["timezone"], "Asia/Jakarta");
    let a = s
        .call(
            "POST",
            "/v1/gateway/accounts",
            Some(&t),
            Some(json!({ "username": "nowhere", "password": "s3cret-pass", "level": "user", "name": "No", "email": "no@example.com", "timezone": "Asia/Nowhere" })),
        )
        .await;
    assert_eq!(a.status, 400, "{a:?}");
}
