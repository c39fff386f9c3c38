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
