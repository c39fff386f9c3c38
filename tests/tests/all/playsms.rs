//! Seed 003 through the playSMS-compatible webservices API: every
//! operation, its success and each error code, in JSON and XML, over
//! HTTP; inbound SMS with keywords and STOP; credit per account.

use std::time::Duration;

use engage_tests::{Answer, Server};
use serde_json::{Value, json};

/// A webservices call (GET, parameters in the query); the JSON answer.
async fn ws(s: &Server, params: &[(&str, &str)]) -> Value {
    let a = s
        .send(
            s.request("GET", "/playsms/index.php", None)
                .query(&[("app", "ws")])
                .query(params),
        )
        .await;
    assert!(a.status == 200, "{params:?}: {a:?}");
    a.body
}

/// The same call answered in XML.
async fn ws_xml(s: &Server, params: &[(&str, &str)]) -> String {
    let a = s
        .send(
            s.request("GET", "/playsms/index.php", None)
                .query(&[("app", "ws"), ("format", "xml")])
                .query(params),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    without_timestamp(a.body.as_str().unwrap_or_default())
}

/// An XML answer without its `<timestamp>` (asserted to be there, last,
/// and a plausible unix time).
fn without_timestamp(xml: &str) -> String {
    let (Some(a), Some(b)) = (xml.rfind("<timestamp>"), xml.rfind("</timestamp>")) else {
        panic!("no timestamp: {xml}");
    };
    let t: i64 = xml[a + 11..b].parse().expect("a number");
    assert!(t > 1_700_000_000, "{xml}");
    assert_eq!(
        &xml[b..],
        "</timestamp></response>\n",
        "the timestamp is last"
    );
    format!("{}{}", &xml[..a], &xml[b + 12..])
}

/// `get_token` for anton with his password.
async fn anton_token(s: &Server) -> Value {
    ws(
        s,
        &[("op", "get_token"), ("u", "anton"), ("p", "anton-pass")],
    )
    .await
}

/// The error code of an answer (`"0"` on success of a single operation).
fn code(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("?")
}

/// Assert an error answer is exactly playSMS's.
fn assert_err(v: &Value, code: &str, text: &str) {
    assert_eq!(v["status"], "ERR", "{v}");
    assert_eq!(v["error"], code, "{v}");
    assert_eq!(v["error_string"], text, "{v}");
}

async fn v1(s: &Server, t: &str, method: &str, path: &str, body: Option<Value>) -> Answer {
    s.call(method, path, Some(t), body).await
}

/// The tenant's first admin, made through /v1; its token.
async fn admin(s: &Server, t: &str) -> String {
    let a = v1(
        s,
        t,
        "POST",
        "/v1/gateway/accounts",
        Some(
            json!({ "username": "admin", "password": "admin-pass", "level": "admin",
            "name": "Admin", "email": "admin@example.com" }),
        ),
    )
    .await;
    assert_eq!(a.status, 201, "{a:?}");
    assert!(
        a.body.get("password").is_none(),
        "no hash in answers: {a:?}"
    );
    a.body["token"].as_str().expect("token").to_owned()
}

/// Wait until `ds` shows log id `id` with a delivery status.
async fn delivered(s: &Server, user: &str, token: &str, id: &str) -> Value {
    for _ in 0..200 {
        let v = ws(
            s,
            &[("op", "ds"), ("u", user), ("h", token), ("smslog_id", id)],
        )
        .await;
        if v["data"][0]["status"] == "3" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("smslog {id} was not delivered");
}

/// Seed 003's cast, as the walk-through makes it: the demo tenant with IDR
/// prices for +62, its first admin, `anton` (a user) and `sub` (his
/// subuser), each with a webservices token; no credit yet.
struct Cast {
    s: Server,
    t: String,
    adm: String,
    anton: String,
    sub_tok: String,
}

/// The demo tenant with IDR prices for +62 and its first admin.
async fn seed_003_tenant(name: &str) -> (Server, String, String) {
    let s = Server::start(name, |_| {}).await;
    let t = s.demo_token().await;
    let prices = json!({ "currency": "IDR", "prices": [ { "channel": "sms", "prefix": "+62", "price": 0.05 } ] });
    assert_eq!(
        v1(&s, &t, "PUT", "/v1/messaging/prices", Some(prices))
            .await
            .status,
        200
    );
    let adm = admin(&s, &t).await;
    (s, t, adm)
}

impl Cast {
    async fn start(name: &str) -> Cast {
        let (s, t, adm) = seed_003_tenant(name).await;
        for add in [
            [
                ("data_status", "3"),
                ("data_parent", ""),
                ("data_username", "anton"),
                ("data_password", "anton-pass"),
                ("data_name", "Anton Raharja"),
                ("data_email", "anton@example.com"),
                ("data_mobile", "+6281100000001"),
            ],
            [
                ("data_status", "4"),
                ("data_parent", "anton"),
                ("data_username", "sub"),
                ("data_password", "sub-pass"),
                ("data_name", "Sub User"),
                ("data_email", "sub@example.com"),
                ("data_mobile", ""),
            ],
        ] {
            let mut call = vec![("op", "accountadd"), ("u", "admin"), ("h", adm.as_str())];
            call.extend(add.into_iter().filter(|(_, v)| !v.is_empty()));
            let added = ws(&s, &call).await;
            assert_eq!(code(&added), "0", "{added}");
        }
        let token = |v: Value| v["token"].as_str().expect("token").to_owned();
        let anton = token(anton_token(&s).await);
        let sub_tok = token(ws(&s, &[("op", "get_token"), ("u", "sub"), ("p", "sub-pass")]).await);
        Cast {
            s,
            t,
            adm,
            anton,
            sub_tok,
        }
    }

    /// `amount` of credit for `user`, by the admin.
    async fn credit(&self, user: &str, amount: &str) {
        let c = ws(
            &self.s,
            &[
                ("op", "creditadd"),
                ("u", "admin"),
                ("h", &self.adm),
                ("data_username", user),
                ("data_amount", amount),
            ],
        )
        .await;
        assert_eq!(code(&c), "0", "{c}");
    }

    /// anton's local numbers get 62 and his messages a footer.
    async fn configure_anton(&self) {
        let c = ws(
            &self.s,
            &[
                ("op", "accountconf"),
                ("u", "admin"),
                ("h", &self.adm),
                ("data_username", "anton"),
                ("data_replace_zero", "62"),
                ("data_footer", "via Engage"),
            ],
        )
        .await;
        assert_eq!(code(&c), "0", "{c}");
    }
}

/// Seed 003: errors of any call, adding accounts (a user and its subuser),
/// tokens by user name or e-mail, and an admin operation refused to a user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_accounts_tokens_and_errors() {
    let (s, _t, adm) = seed_003_tenant("playsms-accounts").await;
    let a = |op: &'static str| [("op", op), ("u", "admin"), ("h", adm.as_str())];
    // No operation, an unknown one, a bad token.
    assert_err(&ws(&s, &[]).await, "102", "one or more field empty");
    assert_err(
        &ws(&s, &a("nosuchop")).await,
        "101",
        "type of action is invalid or unknown",
    );
    let bad = ws(
        &s,
        &[
            ("op", "cr"),
            ("u", "admin"),
            ("h", "0123456789abcdef0123456789abcdef"),
        ],
    )
    .await;
    assert_err(&bad, "100", "authentication failed");

    // accountadd: a user and a subuser under it.
    let mut add = a("accountadd").to_vec();
    add.extend([
        ("data_status", "3"),
        ("data_username", "anton"),
        ("data_password", "anton-pass"),
        ("data_name", "Anton Raharja"),
        ("data_email", "anton@example.com"),
        ("data_mobile", "+6281100000001"),
    ]);
    let added = ws(&s, &add).await;
    assert_eq!(
        (added["status"].as_str(), code(&added)),
        (Some("OK"), "0"),
        "{added}"
    );
    assert_eq!(added["error_string"], Value::Null);
    assert_err(&ws(&s, &add).await, "604", "fail to add account");
    assert_err(
        &ws(&s, &add[..5]).await,
        "603",
        "account addition failed due to missing data",
    );
    let sub = ws(
        &s,
        &[
            ("op", "accountadd"),
            ("u", "admin"),
            ("h", &adm),
            ("data_status", "4"),
            ("data_parent", "anton"),
            ("data_username", "sub"),
            ("data_password", "sub-pass"),
            ("data_name", "Sub User"),
            ("data_email", "sub@example.com"),
        ],
    )
    .await;
    assert_eq!(code(&sub), "0", "{sub}");

    // get_token: by username or e-mail with the password.
    let tok = ws(
        &s,
        &[("op", "get_token"), ("u", "anton"), ("p", "anton-pass")],
    )
    .await;
    assert_eq!((tok["status"].as_str(), code(&tok)), (Some("OK"), "0"));
    let anton = tok["token"].as_str().expect("token").to_owned();
    let by_mail = ws(
        &s,
        &[
            ("op", "get_token"),
            ("u", "anton@example.com"),
            ("p", "anton-pass"),
        ],
    )
    .await;
    assert_eq!(by_mail["token"], anton.as_str());
    assert_err(
        &ws(&s, &[("op", "get_token"), ("u", "anton"), ("p", "wrong")]).await,
        "100",
        "authentication failed",
    );
    let sub_tok = ws(&s, &[("op", "get_token"), ("u", "sub"), ("p", "sub-pass")]).await;
    assert!(sub_tok["token"].is_string(), "{sub_tok}");
    let u = |op: &'static str| [("op", op), ("u", "anton"), ("h", anton.as_str())];

    // A user is not an admin.
    let mut not_admin = u("accountadd").to_vec();
    not_admin.extend(&add[3..]);
    assert_err(
        &ws(&s, &not_admin).await,
        "600",
        "admin level authentication failed",
    );
}

/// Seed 003: an admin adds, deducts and views a user's credit, each with
/// its errors; a retried operation with its Idempotency-Key happens once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_credit_operations() {
    let c = Cast::start("playsms-credit-ops").await;
    let s = &c.s;
    let (adm, anton) = (&c.adm, &c.anton);
    let a = |op: &'static str| [("op", op), ("u", "admin"), ("h", adm.as_str())];
    let u = |op: &'static str| [("op", op), ("u", "anton"), ("h", anton.as_str())];

    // Credit.
    let mut credit = a("creditadd").to_vec();
    credit.extend([("data_username", "anton"), ("data_amount", "10")]);
    let c = ws(s, &credit).await;
    assert_eq!(
        (code(&c), c["amount"].as_f64(), c["balance"].as_f64()),
        ("0", Some(10.0), Some(10.0)),
        "{c}"
    );
    assert_err(
        &ws(s, &credit[..4]).await,
        "621",
        "adding credit failed due to missing data",
    );
    let mut nobody = a("creditadd").to_vec();
    nobody.extend([("data_username", "nobody"), ("data_amount", "1")]);
    assert_err(&ws(s, &nobody).await, "622", "fail to add credit");
    let mut deduct = a("creditdeduct").to_vec();
    deduct.extend([("data_username", "anton"), ("data_amount", "1")]);
    // A credit operation retried with its Idempotency-Key happens once.
    let keyed = |params: Vec<(&'static str, String)>, key: &'static str| {
        s.send(
            s.request("GET", "/playsms/index.php", None)
                .header("Idempotency-Key", key)
                .query(&[("app", "ws")])
                .query(&params),
        )
    };
    let owned: Vec<(&'static str, String)> =
        deduct.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let first = keyed(owned.clone(), "deduct-1").await;
    let again = keyed(owned.clone(), "deduct-1").await;
    assert_eq!(first.body["balance"].as_f64(), Some(9.0), "{first:?}");
    assert_eq!(
        again.body["balance"].as_f64(),
        Some(9.0),
        "replayed, not deducted twice: {again:?}"
    );
    let mut other = owned.clone();
    other[4].1 = "2".into();
    let reused = keyed(other, "deduct-1").await;
    assert_eq!(reused.body["error"], "624", "{reused:?}");
    let mut credit_back = a("creditadd").to_vec();
    credit_back.extend([("data_username", "anton"), ("data_amount", "1")]);
    assert_eq!(ws(s, &credit_back).await["balance"].as_f64(), Some(10.0));
    assert_eq!(ws(s, &deduct).await["balance"].as_f64(), Some(9.0));
    deduct[4] = ("data_amount", "100");
    assert_err(&ws(s, &deduct).await, "624", "fail to deduct credit");
    assert_err(
        &ws(s, &deduct[..3]).await,
        "623",
        "deducting credit failed due to missing data",
    );
    let mut view = a("creditview").to_vec();
    assert_err(
        &ws(s, &view).await,
        "619",
        "viewing credit failed due to missing data",
    );
    view.push(("data_username", "nobody"));
    assert_err(&ws(s, &view).await, "620", "fail to view credit");
    view[3] = ("data_username", "anton");
    assert_eq!(ws(s, &view).await["balance"].as_f64(), Some(9.0));
    let cr = ws(s, &u("cr")).await;
    assert_eq!((code(&cr), cr["credit"].as_str()), ("0", Some("9")), "{cr}");
}

/// Seed 003: `accountconf` and `accountpref`, with their errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_account_configuration_and_preferences() {
    let c = Cast::start("playsms-conf").await;
    let s = &c.s;
    let adm = &c.adm;
    let a = |op: &'static str| [("op", op), ("u", "admin"), ("h", adm.as_str())];

    // accountconf: local numbers get 62, a footer.
    let mut conf = a("accountconf").to_vec();
    conf.extend([
        ("data_username", "anton"),
        ("data_replace_zero", "62"),
        ("data_footer", "via Engage"),
    ]);
    assert_eq!(code(&ws(s, &conf).await), "0");
    assert_err(
        &ws(s, &conf[..4]).await,
        "617",
        "editing account configuration failed due to missing data",
    );
    let mut bad_conf = conf[..4].to_vec();
    bad_conf.push(("data_fwd_to_inbox", "maybe"));
    assert_err(
        &ws(s, &bad_conf).await,
        "618",
        "fail to edit account configuration",
    );
    // accountpref.
    let mut pref = a("accountpref").to_vec();
    pref.extend([("data_username", "sub"), ("data_mobile", "+6281100000002")]);
    assert_eq!(code(&ws(s, &pref).await), "0");
    assert_err(
        &ws(s, &pref[..4]).await,
        "615",
        "editing account preferences failed due to missing data",
    );
    pref[4] = ("data_email", "not-an-address");
    assert_err(
        &ws(s, &pref).await,
        "616",
        "fail to edit account preferences",
    );
}

/// Seed 003: the seed's `pv` example (a local number, the account's footer,
/// 0.05 of credit) and `ds` by id, queue and destination, with its errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_pv_and_ds() {
    let c = Cast::start("playsms-pv").await;
    let s = &c.s;
    let anton = &c.anton;
    let u = |op: &'static str| [("op", op), ("u", "anton"), ("h", anton.as_str())];

    c.credit("anton", "9").await;
    c.configure_anton().await;
    // pv: the seed's example, a local number.
    let pv = ws(
        s,
        &[
            ("op", "pv"),
            ("u", "anton"),
            ("h", anton),
            ("to", "0987654321"),
            ("msg", "test only"),
        ],
    )
    .await;
    let item = &pv["data"][0];
    assert_eq!(
        (
            item["status"].as_str(),
            item["error"].as_str(),
            item["to"].as_str()
        ),
        (Some("OK"), Some("0"), Some("0987654321")),
        "{pv}"
    );
    assert_eq!(pv["error_string"], Value::Null);
    assert!(
        item["queue"].as_str().is_some_and(|q| q.len() == 32),
        "{pv}"
    );
    let id = item["smslog_id"].as_str().expect("smslog_id").to_owned();
    let ds = delivered(s, "anton", anton, &id).await;
    let row = &ds["data"][0];
    assert_eq!(row["smslog_id"], id.as_str());
    assert_eq!(row["dst"], "0987654321");
    assert_eq!(row["msg"], "test only via Engage");
    assert!(row["dt"].as_str().is_some_and(|d| d.len() == 19), "{ds}");
    // The message went to +62987654321 and cost 0.05 of anton's credit.
    assert_eq!(ws(s, &u("cr")).await["credit"], "8.95");
    let queue = item["queue"].as_str().unwrap_or_default().to_owned();
    let by_queue = ws(
        s,
        &[
            ("op", "ds"),
            ("u", "anton"),
            ("h", anton),
            ("queue", &queue),
        ],
    )
    .await;
    assert_eq!(by_queue["data"][0]["smslog_id"], id.as_str());
    let by_dst = ws(
        s,
        &[
            ("op", "ds"),
            ("u", "anton"),
            ("h", anton),
            ("dst", "0987654321"),
            ("c", "5"),
        ],
    )
    .await;
    assert_eq!(by_dst["data"][0]["smslog_id"], id.as_str());

    // ds errors: unknown id, processed but filtered out, still queued.
    assert_err(
        &ws(
            s,
            &[
                ("op", "ds"),
                ("u", "anton"),
                ("h", anton),
                ("smslog_id", "999999"),
            ],
        )
        .await,
        "400",
        "no delivery status available",
    );
    assert_err(
        &ws(
            s,
            &[
                ("op", "ds"),
                ("u", "anton"),
                ("h", anton),
                ("smslog_id", &id),
                ("src", "nobody"),
            ],
        )
        .await,
        "402",
        "no delivery status retrieved and SMS has been processed from queue",
    );
    let later = ws(
        s,
        &[
            ("op", "pv"),
            ("u", "anton"),
            ("h", anton),
            ("to", "+6281234500001"),
            ("msg", "later"),
            ("schedule", "2099-01-01 10:00:00"),
            ("nofooter", "1"),
        ],
    )
    .await;
    let later_q = later["data"][0]["queue"]
        .as_str()
        .expect("queue")
        .to_owned();
    assert_err(
        &ws(
            s,
            &[
                ("op", "ds"),
                ("u", "anton"),
                ("h", anton),
                ("queue", &later_q),
            ],
        )
        .await,
        "401",
        "no delivery status retrieved and SMS still in queue",
    );
}

/// Seed 003: `pv` with nothing to send, a date that is not one, and a number
/// that is not one beside one that is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_pv_errors() {
    let c = Cast::start("playsms-pv-errors").await;
    let s = &c.s;
    let anton = &c.anton;

    c.credit("anton", "9").await;
    c.configure_anton().await;
    // pv errors: nothing to send, a date that is not one, a number that is not one.
    assert_err(
        &ws(
            s,
            &[
                ("op", "pv"),
                ("u", "anton"),
                ("h", anton),
                ("to", "0987654321"),
            ],
        )
        .await,
        "201",
        "destination number or message is empty",
    );
    assert_err(
        &ws(
            s,
            &[
                ("op", "pv"),
                ("u", "anton"),
                ("h", anton),
                ("to", "0987654321"),
                ("msg", "x"),
                ("schedule", "tomorrow"),
            ],
        )
        .await,
        "200",
        "send message failed",
    );
    let mixed = ws(
        s,
        &[
            ("op", "pv"),
            ("u", "anton"),
            ("h", anton),
            ("to", "12,+6281234500002"),
            ("msg", "x"),
        ],
    )
    .await;
    assert_eq!(mixed["data"][0]["error"], "200", "{mixed}");
    assert_eq!(mixed["data"][0]["to"], "12");
    assert_eq!(mixed["data"][1]["error"], "0");
}

/// Seed 003: a subuser spends its own credit; phonebook groups and
/// contacts, `#group` and `@user` destinations, `bc`; `query` counts what
/// was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_subusers_phonebook_groups_and_inboxes() {
    let c = Cast::start("playsms-phonebook").await;
    let (s, t, adm, anton, sub_tok) = (&c.s, &c.t, &c.adm, &c.anton, &c.sub_tok);
    let a = |op: &'static str| [("op", op), ("u", "admin"), ("h", adm.as_str())];
    let u = |op: &'static str| [("op", op), ("u", "anton"), ("h", anton.as_str())];
    c.credit("anton", "9").await;
    // A subuser spends its own credit: none yet.
    assert_err(
        &ws(
            s,
            &[
                ("op", "pv"),
                ("u", "sub"),
                ("h", sub_tok),
                ("to", "+6281234500003"),
                ("msg", "hi"),
            ],
        )
        .await,
        "103",
        "not enough credit for this operation",
    );
    let before = ws(s, &u("cr")).await["credit"].clone();
    let mut sub_credit = a("creditadd").to_vec();
    sub_credit.extend([("data_username", "sub"), ("data_amount", "1")]);
    assert_eq!(code(&ws(s, &sub_credit).await), "0");
    let sent = ws(
        s,
        &[
            ("op", "pv"),
            ("u", "sub"),
            ("h", sub_tok),
            ("to", "+6281234500003"),
            ("msg", "hi"),
        ],
    )
    .await;
    assert_eq!(sent["data"][0]["error"], "0", "{sent}");
    assert_eq!(
        ws(s, &[("op", "cr"), ("u", "sub"), ("h", sub_tok)]).await["credit"],
        "0.95"
    );
    assert_eq!(ws(s, &u("cr")).await["credit"], before);

    // Phonebook (through /v1), #group and @username destinations.
    let book = "/v1/gateway/accounts/anton";
    let g = v1(
        s,
        t,
        "POST",
        &format!("{book}/groups"),
        Some(json!({ "name": "Test Group", "code": "testgroup" })),
    )
    .await;
    assert_eq!(g.status, 201, "{g:?}");
    for (name, mobile) in [
        ("Budi Santoso", "+6281200000001"),
        ("Sari", "+6281200000002"),
    ] {
        let c = v1(
            s,
            t,
            "POST",
            &format!("{book}/contacts"),
            Some(json!({ "name": name, "mobile": mobile, "groups": ["TESTGROUP"] })),
        )
        .await;
        assert_eq!(c.status, 201, "{c:?}");
    }
    let contact = ws(
        s,
        &[
            ("op", "get_contact"),
            ("u", "anton"),
            ("h", anton),
            ("kwd", "budi"),
        ],
    )
    .await;
    assert_eq!(contact["status"], "OK");
    assert_eq!(contact["multi"], true);
    let c0 = &contact["data"][0];
    assert_eq!(
        (
            c0["p_desc"].as_str(),
            c0["p_num"].as_str(),
            c0["group_name"].as_str(),
            c0["code"].as_str()
        ),
        (
            Some("Budi Santoso"),
            Some("+6281200000001"),
            Some("Test Group"),
            Some("TESTGROUP")
        ),
        "{contact}"
    );
    assert!(c0["pid"].is_string() && c0["gpid"].is_string() && c0["email"].is_string());
    assert_err(
        &ws(s, &[("op", "get_contact"), ("u", "anton"), ("h", anton)]).await,
        "102",
        "one or more field empty",
    );
    let groups = ws(
        s,
        &[
            ("op", "get_contact_group"),
            ("u", "anton"),
            ("h", anton),
            ("kwd", "test"),
        ],
    )
    .await;
    assert_eq!(groups["data"][0]["code"], "TESTGROUP", "{groups}");
    let to_group = ws(
        s,
        &[
            ("op", "pv"),
            ("u", "anton"),
            ("h", anton),
            ("to", "#testgroup,@sub"),
            ("msg", "hello all"),
        ],
    )
    .await;
    let tos: Vec<&str> = to_group["data"]
        .as_array()
        .map(|d| d.iter().filter_map(|i| i["to"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        tos,
        ["+6281200000001", "+6281200000002", "@sub"],
        "{to_group}"
    );
    assert!(
        to_group["data"]
            .as_array()
            .is_some_and(|d| d.iter().all(|i| i["error"] == "0"))
    );
    // `@sub` is an internal message into sub's inbox (as playSMS), not an SMS.
    let sub_inbox = ws(s, &[("op", "ix"), ("u", "sub"), ("h", sub_tok)]).await;
    let rows = sub_inbox["data"].as_array().cloned().unwrap_or_default();
    assert!(
        rows.iter()
            .any(|r| r["src"] == "@anton" && r["msg"] == "hello all"),
        "{sub_inbox}"
    );
    let to_sub = &to_group["data"][2];
    assert_eq!(
        (to_sub["smslog_id"].as_str(), to_sub["status"].as_str()),
        (Some(""), Some("OK"))
    );
    // `bc`, as playSMS's PHP client still sends it: group codes in `to`.
    let bc = ws(
        s,
        &[
            ("op", "bc"),
            ("u", "anton"),
            ("h", anton),
            ("to", "TESTGROUP"),
            ("msg", "hello group"),
        ],
    )
    .await;
    let tos: Vec<&str> = bc["data"]
        .as_array()
        .map(|d| d.iter().filter_map(|i| i["to"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(tos, ["+6281200000001", "+6281200000002"], "{bc}");

    // query.
    let q = ws(s, &u("query")).await;
    assert_eq!(q["data"]["user"]["username"], "anton");
    assert_eq!(q["data"]["user"]["status"], 3);
    assert!(
        q["data"]["last_id"]["user_outgoing"].as_u64().unwrap_or(0) >= 4,
        "{q}"
    );
}

/// Seed 003: a new token retires the old one; 104 / 105 / 106; XML, a POSTed
/// form and the tenant-qualified path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_tokens_access_and_formats() {
    let c = Cast::start("playsms-tokens").await;
    let s = &c.s;
    let (t, anton, sub_tok) = (&c.t, &c.anton, &c.sub_tok);
    let u = |op: &'static str| [("op", op), ("u", "anton"), ("h", anton.as_str())];

    c.credit("sub", "0.95").await;
    // set_token: the old token stops working.
    let new = ws(s, &u("set_token")).await;
    let new_token = new["token"].as_str().expect("token").to_owned();
    assert_ne!(&new_token, anton);
    assert_err(&ws(s, &u("cr")).await, "100", "authentication failed");
    let anton = new_token;
    let u = |op: &'static str| [("op", op), ("u", "anton"), ("h", anton.as_str())];
    assert_eq!(code(&ws(s, &u("cr")).await), "0");

    // 104 / 105 / 106: no token, webservices disabled, not from this address.
    let acct = "/v1/gateway/accounts/anton";
    assert_eq!(
        v1(s, t, "PATCH", acct, Some(json!({ "webservices": false })))
            .await
            .status,
        200
    );
    assert_err(
        &ws(s, &u("cr")).await,
        "105",
        "webservice token not enable for this user",
    );
    assert_err(
        &anton_token(s).await,
        "105",
        "webservice token not enable for this user",
    );
    assert_eq!(
        v1(
            s,
            t,
            "PATCH",
            acct,
            Some(json!({ "webservices": true, "webservices_ip": ["10.0.0.0/8"] }))
        )
        .await
        .status,
        200
    );
    assert_err(
        &ws(s, &u("cr")).await,
        "106",
        "webservice token not allowed from this IP address",
    );
    assert_err(
        &anton_token(s).await,
        "106",
        "webservice token not allowed from this IP address",
    );
    assert_eq!(
        v1(
            s,
            t,
            "PATCH",
            acct,
            Some(json!({ "webservices_ip": ["127.0.0.0/8", "::1"] }))
        )
        .await
        .status,
        200
    );
    assert_eq!(code(&ws(s, &u("cr")).await), "0");
    let revoked = v1(s, t, "DELETE", &format!("{acct}/token"), None).await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_err(
        &anton_token(s).await,
        "104",
        "webservice token is not available",
    );

    // Both formats, and POST with a form body: the XML error shape.
    let xml = ws_xml(s, &[("op", "nosuchop")]).await;
    assert_eq!(
        xml,
        "<?xml version=\"1.0\"?>\n<response><status>ERR</status><error>101</error><error_string>type of action is invalid or unknown</error_string></response>\n"
    );
    let posted = s
        .send(s.request("POST", "/playsms/index.php?app=ws", None).form(&[
            ("op", "cr"),
            ("u", "sub"),
            ("h", sub_tok.as_str()),
        ]))
        .await;
    assert_eq!(posted.body["credit"], "0.95", "{posted:?}");
    // The tenant-qualified path answers the same.
    let demo = s
        .send(s.request("GET", "/playsms/demo/index.php", None).query(&[
            ("app", "ws"),
            ("op", "cr"),
            ("u", "sub"),
            ("h", sub_tok.as_str()),
        ]))
        .await;
    assert_eq!(demo.body["credit"], "0.95", "{demo:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_admin_operations_and_inbound_sms() {
    let s = Server::start("playsms-admin", |_| {}).await;
    let t = s.demo_token().await;
    let adm = admin(&s, &t).await;
    let a = |op: &'static str| vec![("op", op), ("u", "admin"), ("h", adm.as_str())];
    for (name, status, parent) in [("anton", "3", ""), ("budi", "3", ""), ("sub", "4", "anton")] {
        let mut add = a("accountadd");
        let email = format!("{name}@example.com");
        let pw = format!("{name}-pass");
        add.extend([
            ("data_status", status),
            ("data_username", name),
            ("data_password", pw.as_str()),
            ("data_name", name),
            ("data_email", email.as_str()),
            ("data_parent", parent),
        ]);
        let r = ws(&s, &add).await;
        assert_eq!(code(&r), "0", "{r}");
    }
    let token = |name: &'static str| {
        let s = &s;
        async move {
            let pw = format!("{name}-pass");
            ws(s, &[("op", "get_token"), ("u", name), ("p", &pw)]).await["token"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    let anton = token("anton").await;

    // parentset / parentget.
    let with = |op: &'static str, user: &'static str| {
        let mut v = a(op);
        v.push(("data_username", user));
        v
    };
    let got = ws(&s, &with("parentget", "sub")).await;
    assert_eq!(
        (code(&got), got["parent"].as_str()),
        ("0", Some("anton")),
        "{got}"
    );
    assert!(got["parent_uid"].as_u64().is_some());
    assert_err(
        &ws(&s, &with("parentget", "anton")).await,
        "610",
        "fail to get parent",
    );
    assert_err(
        &ws(&s, &with("parentget", "nobody")).await,
        "609",
        "get parent failed due to unknown username",
    );
    let mut set = with("parentset", "sub");
    set.push(("data_parent", "budi"));
    assert_eq!(code(&ws(&s, &set).await), "0");
    assert_eq!(ws(&s, &with("parentget", "sub")).await["parent"], "budi");
    let mut set_unknown = with("parentset", "sub");
    set_unknown.push(("data_parent", "nobody"));
    assert_err(
        &ws(&s, &set_unknown).await,
        "607",
        "set parent failed due to unknown username",
    );
    let mut set_user = with("parentset", "anton");
    set_user.push(("data_parent", "budi"));
    assert_err(&ws(&s, &set_user).await, "608", "fail to set parent");

    // accountban / accountunban: a banned account fails authentication.
    assert_eq!(code(&ws(&s, &with("accountban", "anton")).await), "0");
    assert_err(
        &ws(&s, &[("op", "cr"), ("u", "anton"), ("h", &anton)]).await,
        "100",
        "authentication failed",
    );
    assert_err(&anton_token(&s).await, "100", "authentication failed");
    assert_err(
        &ws(&s, &with("accountban", "anton")).await,
        "612",
        "fail to ban account",
    );
    assert_err(
        &ws(&s, &with("accountban", "nobody")).await,
        "611",
        "account ban failed due to unknown username",
    );
    assert_eq!(code(&ws(&s, &with("accountunban", "anton")).await), "0");
    assert_eq!(
        code(&ws(&s, &[("op", "cr"), ("u", "anton"), ("h", &anton)]).await),
        "0"
    );
    assert_err(
        &ws(&s, &with("accountunban", "anton")).await,
        "614",
        "fail to unban account",
    );
    assert_err(
        &ws(&s, &with("accountunban", "nobody")).await,
        "613",
        "account unban failed due to unknown username",
    );

    // loginkeyset / ws_login: a one-time key, then a redirect to index.php.
    let key = ws(&s, &with("loginkeyset", "anton")).await;
    let key = key["login_key"].as_str().expect("login_key").to_owned();
    assert_err(
        &ws(&s, &a("loginkeyset")).await,
        "625",
        "setting login key failed due to missing data",
    );
    assert_err(
        &ws(&s, &with("loginkeyset", "nobody")).await,
        "626",
        "fail to set login key",
    );
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = no_redirects
        .get(format!("{}/playsms/index.php", s.base))
        .query(&[
            ("app", "ws"),
            ("op", "ws_login"),
            ("u", "anton"),
            ("login_key", key.as_str()),
        ])
        .send()
        .await
        .expect("ws_login");
    assert_eq!(login.status(), 302);
    assert_eq!(
        login
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some("index.php")
    );
    let acct = v1(&s, &t, "GET", "/v1/gateway/accounts/anton", None).await;
    let first_login = acct.body["last_login_ms"].clone();
    assert!(first_login.is_i64(), "{acct:?}");

    // Inbound: a keyword owned by anton, an unhandled SMS, STOP and START.
    let kw = v1(
        &s,
        &t,
        "PUT",
        "/v1/gateway/keywords/idol",
        Some(json!({ "account": "anton" })),
    )
    .await;
    assert_eq!(kw.status, 200, "{kw:?}");
    let mut inject = a("inject");
    inject.extend([
        ("from", "+629876543210"),
        ("msg", "IDOL A"),
        ("recvnum", "1234"),
        ("smsc", "fake"),
    ]);
    assert_eq!(code(&ws(&s, &inject).await), "0");
    let mut no_from = a("inject");
    no_from.extend([("msg", "IDOL A"), ("recvnum", "1234"), ("smsc", "fake")]);
    assert_err(
        &ws(&s, &no_from).await,
        "602",
        "sender id or message is empty",
    );
    let mut junk = a("inject");
    junk.extend([
        ("from", "nobody"),
        ("msg", "IDOL B"),
        ("recvnum", "1234"),
        ("smsc", "fake"),
    ]);
    assert_err(&ws(&s, &junk).await, "601", "inject message failed");
    let mut as_user = vec![("op", "inject"), ("u", "anton"), ("h", anton.as_str())];
    as_user.extend(&inject[3..]);
    assert_err(
        &ws(&s, &as_user).await,
        "600",
        "admin level authentication failed",
    );

    // The seed's `in` example, in XML.
    let xml = ws_xml(
        &s,
        &[("op", "in"), ("u", "anton"), ("h", &anton), ("kwd", "IDOL")],
    )
    .await;
    let shape = regex_free_dt(&xml);
    assert_eq!(
        shape,
        "<?xml version=\"1.0\"?>\n<response><data><item><id>1</id><src>+629876543210</src><dst>1234</dst><kwd>IDOL</kwd><msg>A</msg><dt>DT</dt><status>1</status></item></data><error_string/></response>\n",
        "{xml}"
    );
    let inbox = ws(&s, &[("op", "ix"), ("u", "anton"), ("h", &anton)]).await;
    assert_eq!(
        (
            inbox["data"][0]["src"].as_str(),
            inbox["data"][0]["msg"].as_str()
        ),
        (Some("+629876543210"), Some("A")),
        "{inbox}"
    );
    let budi = token("budi").await;
    assert_err(
        &ws(&s, &[("op", "ix"), ("u", "budi"), ("h", &budi)]).await,
        "501",
        "no data returned or result is empty",
    );
    assert_err(
        &ws(&s, &[("op", "in"), ("u", "budi"), ("h", &budi)]).await,
        "501",
        "no data returned or result is empty",
    );

    let mut hello = a("inject");
    hello.extend([
        ("from", "+629876543211"),
        ("msg", "hello there"),
        ("recvnum", "1234"),
        ("smsc", "fake"),
    ]);
    assert_eq!(code(&ws(&s, &hello).await), "0");
    let sx = ws(&s, &a("sx")).await;
    assert_eq!(
        (sx["data"][0]["msg"].as_str(), sx["data"][0]["src"].as_str()),
        (Some("hello there"), Some("+629876543211")),
        "{sx}"
    );
    assert_err(
        &ws(&s, &[("op", "sx"), ("u", "anton"), ("h", &anton)]).await,
        "501",
        "no data returned or result is empty",
    );

    // STOP blocks the next marketing pv to that number, not a transactional one.
    let mut stop = a("inject");
    stop.extend([
        ("from", "+6281234567890"),
        ("msg", "stop"),
        ("recvnum", "1234"),
        ("smsc", "fake"),
    ]);
    assert_eq!(code(&ws(&s, &stop).await), "0");
    let listed = v1(&s, &t, "GET", "/v1/messaging/opt-outs", None).await;
    assert_eq!(
        listed.body["opt_outs"][0]["number"], "+6281234567890",
        "{listed:?}"
    );
    assert_eq!(listed.body["opt_outs"][0]["source"], "sms:STOP");
    let pv = |kind: &'static str| {
        let (s, anton) = (&s, anton.clone());
        async move {
            ws(
                s,
                &[
                    ("op", "pv"),
                    ("u", "anton"),
                    ("h", &anton),
                    ("to", "+6281234567890"),
                    ("msg", "sale!"),
                    ("kind", kind),
                ],
            )
            .await
        }
    };
    let blocked = pv("marketing").await;
    assert_eq!(blocked["data"][0]["error"], "200", "{blocked}");
    let default_kind = ws(
        &s,
        &[
            ("op", "pv"),
            ("u", "anton"),
            ("h", &anton),
            ("to", "+6281234567890"),
            ("msg", "sale!"),
        ],
    )
    .await;
    assert_eq!(
        default_kind["data"][0]["error"], "200",
        "accounts send marketing by default: {default_kind}"
    );
    let otp = pv("transactional").await;
    assert_eq!(otp["data"][0]["error"], "0", "{otp}");
    let mut start = a("inject");
    start.extend([
        ("from", "+6281234567890"),
        ("msg", "START"),
        ("recvnum", "1234"),
        ("smsc", "fake"),
    ]);
    assert_eq!(code(&ws(&s, &start).await), "0");
    assert_eq!(pv("marketing").await["data"][0]["error"], "0");
    // STOP and START are handled, visible to admins through `in`.
    let admin_in = ws(&s, &a("in")).await;
    let kwds: Vec<&str> = admin_in["data"]
        .as_array()
        .map(|d| d.iter().filter_map(|i| i["kwd"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(kwds, ["START", "STOP"], "{admin_in}");

    // accountremove.
    assert_err(
        &ws(&s, &with("accountremove", "nobody")).await,
        "605",
        "account removal failed due to unknown username",
    );
    assert_err(
        &ws(&s, &with("accountremove", "admin")).await,
        "606",
        "fail to remove account",
    );
    assert_eq!(code(&ws(&s, &with("accountremove", "sub")).await), "0");
    assert_eq!(
        v1(&s, &t, "GET", "/v1/gateway/accounts/sub", None)
            .await
            .status,
        404
    );
}

/// The answer with its one `<dt>` replaced by `DT`.
fn regex_free_dt(xml: &str) -> String {
    match (xml.find("<dt>"), xml.find("</dt>")) {
        (Some(a), Some(b)) if a < b => format!("{}<dt>DT{}", &xml[..a], &xml[b..]),
        _ => xml.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_through_twilio_blocks_marketing_from_every_api() {
    let s = Server::start("playsms-twilio-in", |_| {}).await;
    let t = s.demo_token().await;
    let twilio = json!({ "kind": "twilio", "account_sid": "ACtest", "auth_token": "secret-token", "from": "+15005550006" });
    assert_eq!(
        v1(&s, &t, "PUT", "/v1/providers/twilio", Some(twilio))
            .await
            .status,
        200
    );
    let shown = v1(&s, &t, "GET", "/v1/providers/twilio", None).await;
    let url = shown.body["inbound_url"]
        .as_str()
        .expect("inbound_url")
        .to_owned();
    let params = vec![
        ("From".to_owned(), "+14155550100".to_owned()),
        ("To".to_owned(), "+15005550006".to_owned()),
        ("Body".to_owned(), "Stop".to_owned()),
        ("MessageSid".to_owned(), "SM0001".to_owned()),
    ];
    let path = url.trim_start_matches(&s.base).to_owned();
    let forged = s
        .send(
            s.request("POST", &path, None)
                .header("X-Twilio-Signature", "forged")
                .form(&params),
        )
        .await;
    assert_eq!(forged.status, 403, "{forged:?}");
    assert_eq!(
        v1(&s, &t, "GET", "/v1/messaging/opt-outs/+14155550100", None)
            .await
            .body["opted_out"],
        false
    );
    let sig = engage::messaging::providers::twilio_signature("secret-token", &url, &params);
    let signed = s
        .send(
            s.request("POST", &path, None)
                .header("X-Twilio-Signature", sig)
                .form(&params),
        )
        .await;
    assert_eq!(signed.status, 200, "{signed:?}");
    assert!(
        signed
            .body
            .as_str()
            .is_some_and(|b| b.contains("<Response>"))
    );
    // Twilio retrying the same message (same MessageSid) records it once.
    let again = s
        .send(
            s.request("POST", &path, None)
                .header(
                    "X-Twilio-Signature",
                    engage::messaging::providers::twilio_signature("secret-token", &url, &params),
                )
                .form(&params),
        )
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    let incoming = v1(&s, &t, "GET", "/v1/gateway/incoming", None).await;
    assert_eq!(
        incoming.body["incoming"].as_array().map(Vec::len),
        Some(1),
        "{incoming:?}"
    );
    assert_eq!(
        v1(&s, &t, "GET", "/v1/messaging/opt-outs/+14155550100", None)
            .await
            .body["opted_out"],
        true
    );

    // /v1: a marketing message is refused for that number, recorded as such;
    // a transactional one goes.
    let sent = v1(&s, &t, "POST", "/v1/messages",
        Some(json!({ "to": ["+14155550100", "+14155550101"], "body": "20% off", "kind": "marketing" }))).await;
    assert_eq!(sent.status, 202, "{sent:?}");
    let m0 = &sent.body["messages"][0];
    assert_eq!(
        (m0["status"].as_str(), m0["error"].as_str()),
        (
            Some("rejected"),
            Some("the recipient opted out of marketing messages")
        ),
        "{sent:?}"
    );
    assert_eq!(sent.body["messages"][1]["status"], "queued");
    let otp = v1(
        &s,
        &t,
        "POST",
        "/v1/messages",
        Some(json!({ "to": ["+14155550100"], "body": "code 1234", "kind": "transactional" })),
    )
    .await;
    assert_eq!(otp.body["messages"][0]["status"], "queued", "{otp:?}");

    // A scheduled marketing message is stopped at send time too.
    let in_a_moment = engage::ids::now_ms() + 300;
    let scheduled = v1(&s, &t, "POST", "/v1/messages",
        Some(json!({ "to": ["+14155550102"], "body": "soon", "kind": "marketing", "schedule_at_ms": in_a_moment }))).await;
    let sid = scheduled.body["messages"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        v1(&s, &t, "PUT", "/v1/messaging/opt-outs/+14155550102", None)
            .await
            .status,
        200
    );
    let mut last = json!(null);
    for _ in 0..100 {
        last = v1(&s, &t, "GET", &format!("/v1/messages/{sid}"), None)
            .await
            .body;
        if last["status"] == "rejected" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["status"], "rejected", "{last}");
    assert_eq!(
        last["attempts"],
        json!([]),
        "never handed to a provider: {last}"
    );

    // START through the API opts back in.
    let back = v1(
        &s,
        &t,
        "DELETE",
        "/v1/messaging/opt-outs/+14155550100",
        None,
    )
    .await;
    assert_eq!(back.body["changed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_kannel_brings_stop_in_and_reports_delivery_to_ds() {
    let s = Server::start("playsms-kannel", |_| {}).await;
    let t = s.demo_token().await;
    let plan = engage_tests::kannel::Kannel::plan();
    let provider = json!({ "kind": "kannel", "url": plan.url, "username": plan.username,
                           "password": plan.password, "from": "Engage" });
    assert_eq!(
        v1(&s, &t, "PUT", "/v1/providers/kannel", Some(provider))
            .await
            .status,
        200
    );
    let route = json!({ "plugin": "router", "config": { "default_provider": "kannel" } });
    assert_eq!(
        v1(&s, &t, "PUT", "/v1/bindings/route", Some(route))
            .await
            .status,
        200
    );
    let shown = v1(&s, &t, "GET", "/v1/providers/kannel", None).await;
    let get_url = shown.body["inbound_url"]
        .as_str()
        .expect("inbound_url")
        .to_owned();
    // The subscriber texts STOP to the gateway's fake SMSC.
    let _kannel = plan
        .start(Some(engage_tests::kannel::Inbound {
            get_url,
            messages: vec![("+6281234567890".into(), "1234".into(), "STOP".into())],
        }))
        .await;
    let mut opted_out = false;
    for _ in 0..200 {
        let o = v1(&s, &t, "GET", "/v1/messaging/opt-outs/+6281234567890", None).await;
        if o.body["opted_out"] == true {
            opted_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(opted_out, "Kannel's inbound STOP did not arrive");
    let incoming = v1(&s, &t, "GET", "/v1/gateway/incoming", None).await;
    let i = &incoming.body["incoming"][0];
    assert_eq!(
        (
            i["source"].as_str(),
            i["handling"].as_str(),
            i["dst"].as_str()
        ),
        (Some("kannel"), Some("opt_out"), Some("1234")),
        "{incoming:?}"
    );

    // A transactional pv to that number still goes; ds shows the status
    // Kannel's delivery report gave it.
    let acct = v1(
        &s,
        &t,
        "POST",
        "/v1/gateway/accounts",
        Some(
            json!({ "username": "anton", "password": "anton-pass", "name": "Anton",
                     "email": "anton@example.com", "message_kind": "transactional" }),
        ),
    )
    .await;
    assert_eq!(acct.status, 201, "{acct:?}");
    let token = acct.body["token"].as_str().expect("token").to_owned();
    let pv = ws(
        &s,
        &[
            ("op", "pv"),
            ("u", "anton"),
            ("h", &token),
            ("to", "+6281234567890"),
            ("msg", "your code is 1234"),
        ],
    )
    .await;
    let id = pv["data"][0]["smslog_id"]
        .as_str()
        .expect("smslog_id")
        .to_owned();
    let ds = delivered(&s, "anton", &token, &id).await;
    assert_eq!(ds["data"][0]["msg"], "your code is 1234");
    assert_eq!(ds["data"][0]["src"], "");
}

/// `anton`, a gateway account made through /v1 with `amount` of credit on
/// its credit account; his webservices token.
async fn funded_anton(s: &Server, t: &str, amount: u64) -> String {
    let acct = v1(s, t, "POST", "/v1/gateway/accounts",
        Some(json!({ "username": "anton", "password": "anton-pass", "name": "Anton", "email": "anton@example.com" }))).await;
    assert_eq!(acct.status, 201, "{acct:?}");
    let credit_account = acct.body["credit_account"]
        .as_str()
        .expect("credit account");
    let top = v1(
        s,
        t,
        "POST",
        &format!("/v1/messaging/accounts/{credit_account}/credit"),
        Some(json!({ "amount": amount })),
    )
    .await;
    assert_eq!(top.status, 200, "{top:?}");
    acct.body["token"].as_str().expect("token").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_is_never_overspent_by_concurrent_sends() {
    let s = Server::start("playsms-credit", |_| {}).await;
    let t = s.demo_token().await;
    let prices = json!({ "currency": "USD", "prices": [ { "channel": "sms", "price": 0.1 } ] });
    assert_eq!(
        v1(&s, &t, "PUT", "/v1/messaging/prices", Some(prices))
            .await
            .status,
        200
    );
    let token = funded_anton(&s, &t, 1).await;

    // 30 sends at once for credit that pays 10.
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (base, token) = (s.base.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let to = format!("+1415555{i:04}");
            reqwest::Client::new()
                .get(format!("{base}/playsms/index.php"))
                .query(&[
                    ("app", "ws"),
                    ("op", "pv"),
                    ("u", "anton"),
                    ("h", token.as_str()),
                    ("to", to.as_str()),
                    ("msg", "hi"),
                ])
                .send()
                .await
                .expect("pv")
                .json::<Value>()
                .await
                .expect("json")
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let v = task.await.expect("task");
        match (v["data"][0]["error"].as_str(), v["error"].as_str()) {
            (Some("0"), _) => ok += 1,
            (_, Some("103")) => {}
            other => panic!("unexpected answer {other:?}: {v}"),
        }
    }
    assert_eq!(ok, 10);
    let cr = ws(&s, &[("op", "cr"), ("u", "anton"), ("h", &token)]).await;
    assert_eq!(cr["credit"], "0", "{cr}");
    let ds = ws(
        &s,
        &[("op", "ds"), ("u", "anton"), ("h", &token), ("c", "100")],
    )
    .await;
    let delivered = async {
        for _ in 0..200 {
            let v = ws(
                &s,
                &[("op", "ds"), ("u", "anton"), ("h", &token), ("c", "100")],
            )
            .await;
            if v["data"]
                .as_array()
                .is_some_and(|d| d.len() == 10 && d.iter().all(|r| r["status"] == "3"))
            {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("not all ten delivered: {ds}");
    }
    .await;
    // `last` and `c` page through the log.
    let ids: Vec<u64> = delivered["data"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|r| r["smslog_id"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let lowest = ids.iter().min().copied().unwrap_or(0).to_string();
    let after = ws(
        &s,
        &[
            ("op", "ds"),
            ("u", "anton"),
            ("h", &token),
            ("last", &lowest),
            ("c", "3"),
        ],
    )
    .await;
    let page: Vec<&str> = after["data"]
        .as_array()
        .map(|d| d.iter().filter_map(|r| r["smslog_id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(page.len(), 3, "{after}");
    assert!(!page.contains(&lowest.as_str()), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_and_keyword_replies_and_xml_sends() {
    let s = Server::start("playsms-replies", |_| {}).await;
    let t = s.demo_token().await;
    let settings = json!({ "help_reply": "Acme alerts. Reply STOP to opt out.", "stop_reply": "You are unsubscribed." });
    let put = v1(&s, &t, "PUT", "/v1/gateway/settings", Some(settings)).await;
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(put.body["stop_words"][0], "STOP");
    let bad = v1(
        &s,
        &t,
        "PUT",
        "/v1/gateway/settings",
        Some(json!({ "stop_words": ["HELP"] })),
    )
    .await;
    assert_eq!(bad.status, 400, "a word in two lists: {bad:?}");
    let acct = v1(&s, &t, "POST", "/v1/gateway/accounts",
        Some(json!({ "username": "anton", "password": "anton-pass", "name": "Anton", "email": "anton@example.com",
                     "mobile": "+6281100000001" }))).await;
    let token = acct.body["token"].as_str().expect("token").to_owned();
    assert_eq!(
        v1(
            &s,
            &t,
            "PATCH",
            "/v1/gateway/accounts/anton",
            Some(json!({ "fwd_to_mobile": true }))
        )
        .await
        .status,
        200
    );
    let kw = v1(
        &s,
        &t,
        "PUT",
        "/v1/gateway/keywords/PROMO",
        Some(json!({ "account": "anton", "reply": "Thanks, code 55" })),
    )
    .await;
    assert_eq!(kw.status, 200, "{kw:?}");
    let clash = v1(
        &s,
        &t,
        "PUT",
        "/v1/gateway/keywords/help",
        Some(json!({ "account": "anton" })),
    )
    .await;
    assert_eq!(
        (clash.status, clash.body["error"]["code"].as_str()),
        (409, Some("keyword_reserved")),
        "{clash:?}"
    );

    for text in ["help", "PROMO summer", "STOP"] {
        let r = v1(
            &s,
            &t,
            "POST",
            "/v1/gateway/incoming",
            Some(json!({ "from": "+6281234500009", "to": "1234", "text": text })),
        )
        .await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    // Answers went to the sender; the keyword's text was forwarded to
    // anton's mobile.
    let mut bodies: Vec<(String, String)> = Vec::new();
    for _ in 0..100 {
        let list = v1(&s, &t, "GET", "/v1/messages?limit=50", None).await;
        bodies = list.body["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| {
                        (
                            m["to"].as_str().unwrap_or_default().to_owned(),
                            m["body"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if bodies.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bodies.sort();
    assert_eq!(
        bodies,
        [
            (
                "+6281100000001".to_owned(),
                "+6281234500009: PROMO summer".to_owned()
            ),
            (
                "+6281234500009".to_owned(),
                "Acme alerts. Reply STOP to opt out.".to_owned()
            ),
            ("+6281234500009".to_owned(), "Thanks, code 55".to_owned()),
            (
                "+6281234500009".to_owned(),
                "You are unsubscribed.".to_owned()
            ),
        ]
    );

    // pv answered in XML, as playSMS's array-to-XML renders it.
    let xml = ws_xml(
        &s,
        &[
            ("op", "pv"),
            ("u", "anton"),
            ("h", &token),
            ("to", "+6281234500010"),
            ("msg", "caf\u{e9} & more"),
        ],
    )
    .await;
    assert!(xml.starts_with("<?xml version=\"1.0\"?>\n<response><data><item><status>OK</status><error>0</error><smslog_id>"), "{xml}");
    assert!(
        xml.ends_with("<to>+6281234500010</to></item></data><error_string/></response>\n"),
        "{xml}"
    );
    let id = xml
        .split("<smslog_id>")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .expect("smslog_id")
        .to_owned();
    let ds = delivered(&s, "anton", &token, &id).await;
    assert_eq!(
        ds["data"][0]["msg"], "caf\u{e9} & more",
        "non-ASCII and & arrive as sent"
    );
    let ds_xml = ws_xml(
        &s,
        &[
            ("op", "ds"),
            ("u", "anton"),
            ("h", &token),
            ("smslog_id", &id),
        ],
    )
    .await;
    assert!(
        ds_xml.contains("<msg>caf\u{e9} &amp; more</msg>") && ds_xml.contains("<status>3</status>"),
        "{ds_xml}"
    );
}

/// What playSMS's own PHP webservices library, the Laravel notification
/// channel and the Ruby client send, exactly: `format=json` on every call,
/// `get_token` with `u` and `p`, a send at the root `/index.php` (the
/// Laravel channel's absolute path), a POST with everything in the query
/// (Ruby); every answer stamped with `timestamp`; the `stoplist` operation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_libraries_calls() {
    let s = Server::start("playsms-libs", |_| {}).await;
    let t = s.demo_token().await;
    let adm = admin(&s, &t).await;
    let user = v1(
        &s,
        &t,
        "POST",
        "/v1/gateway/accounts",
        Some(
            json!({ "username": "lib", "password": "lib-pass-1", "level": "user",
            "name": "Lib", "email": "lib@example.com" }),
        ),
    )
    .await;
    assert_eq!(user.status, 201, "{user:?}");
    drop(adm);

    // The PHP library: format=json first, then u and p.
    let token = ws(
        &s,
        &[
            ("format", "json"),
            ("u", "lib"),
            ("p", "lib-pass-1"),
            ("op", "get_token"),
        ],
    )
    .await;
    assert_eq!(token["status"], "OK", "{token}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let stamp = token["timestamp"].as_i64().unwrap_or(0);
    assert!(
        (stamp - now).abs() < 60,
        "every answer has a timestamp: {token}"
    );
    let h = token["token"].as_str().expect("token").to_owned();
    let cr = ws(
        &s,
        &[("format", "json"), ("h", &h), ("u", "lib"), ("op", "cr")],
    )
    .await;
    assert_eq!(cr["status"], "OK", "{cr}");
    let pv = ws(
        &s,
        &[
            ("format", "json"),
            ("h", &h),
            ("u", "lib"),
            ("op", "pv"),
            ("to", "+6281234500001"),
            ("nofooter", "1"),
            ("msg", "from the PHP library"),
        ],
    )
    .await;
    assert_eq!(pv["data"][0]["status"], "OK", "{pv}");
    assert!(pv["timestamp"].is_i64());

    // The Laravel channel: GET /index.php at the host's root.
    let laravel = s
        .send(s.request("GET", "/index.php", None).query(&[
            ("app", "ws"),
            ("u", "lib"),
            ("h", h.as_str()),
            ("op", "pv"),
            ("to", "+6281234500002"),
            ("msg", "from Laravel"),
        ]))
        .await;
    assert_eq!(laravel.status, 200, "{laravel:?}");
    assert_eq!(laravel.body["data"][0]["status"], "OK", "{laravel:?}");
    let elsewhere = s.send(s.request("GET", "/index.php", None)).await;
    assert_eq!(elsewhere.status, 404, "no app=ws: {elsewhere:?}");
    assert_eq!(elsewhere.body["error"], "101");

    // Ruby: POST, everything in the query, no body; JSON back.
    let ruby = s
        .send(
            s.request(
                "POST",
                &format!(
                    "/playsms/index.php?app=ws&op=pv&to=%2B6281234500003&msg=from+Ruby&u=lib&h={h}"
                ),
                None,
            )
            .header("User-Agent", "playsms-ruby/0.1 ruby/3.2"),
        )
        .await;
    assert_eq!(ruby.status, 200, "{ruby:?}");
    assert_eq!(ruby.body["data"][0]["status"], "OK", "{ruby:?}");

    // stoplist: the number leaves the marketing audience of every API.
    // A local number, read as the account's sends read it.
    let from = "081234500004";
    let settings = v1(
        &s,
        &t,
        "PUT",
        "/v1/gateway/settings",
        Some(json!({ "default_replace_zero": "62" })),
    )
    .await;
    assert!(settings.status == 200, "{settings:?}");
    let first = ws(
        &s,
        &[("u", "lib"), ("h", &h), ("op", "stoplist"), ("from", from)],
    )
    .await;
    assert_eq!(first["status"], "OK", "{first}");
    let listed = v1(
        &s,
        &t,
        "GET",
        "/v1/messaging/opt-outs/%2B6281234500004",
        None,
    )
    .await;
    assert_eq!(listed.body["opted_out"], true, "{listed:?}");
    let again = ws(
        &s,
        &[
            ("u", "lib"),
            ("h", &h),
            ("op", "stoplist"),
            ("from", "+6281234500004"),
        ],
    )
    .await;
    assert_err(&again, "627", "number is already in the stop list");
    assert_err(
        &ws(&s, &[("u", "lib"), ("h", &h), ("op", "stoplist")]).await,
        "102",
        "one or more field empty",
    );
    assert_err(
        &ws(
            &s,
            &[
                ("u", "lib"),
                ("h", "0123456789abcdef0123456789abcdef"),
                ("op", "stoplist"),
                ("from", "+6281234500005"),
            ],
        )
        .await,
        "100",
        "authentication failed",
    );
    let marketing = ws(
        &s,
        &[
            ("u", "lib"),
            ("h", &h),
            ("op", "pv"),
            ("to", "+6281234500004"),
            ("msg", "sale"),
            ("kind", "marketing"),
        ],
    )
    .await;
    assert_ne!(
        marketing["data"][0]["status"], "OK",
        "a stopped number gets no marketing: {marketing}"
    );
}

/// A send retried with its `Idempotency-Key` (after a timeout, say) is sent
/// and charged once, to numbers and `@user` inboxes alike, and answers as
/// the first time; the key with another send is refused; account
/// operations replay too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_send_with_its_key_is_sent_and_charged_once() {
    let s = Server::start("playsms-idempotent", |_| {}).await;
    let t = s.demo_token().await;
    let prices = json!({ "currency": "USD", "prices": [ { "channel": "sms", "price": 0.1 } ] });
    let set = v1(&s, &t, "PUT", "/v1/messaging/prices", Some(prices)).await;
    assert_eq!(set.status, 200, "{set:?}");
    let adm = admin(&s, &t).await;
    let token = funded_anton(&s, &t, 1).await;
    let keyed = |params: Vec<(&'static str, String)>, key: &'static str| {
        s.send(
            s.request("GET", "/playsms/index.php", None)
                .header("Idempotency-Key", key)
                .query(&[("app", "ws")])
                .query(&params),
        )
    };
    let pv = |to: &str| {
        vec![
            ("op", "pv".to_owned()),
            ("u", "anton".to_owned()),
            ("h", token.clone()),
            ("to", to.to_owned()),
            ("msg", "hello".to_owned()),
        ]
    };
    let to = "+14155550001,+14155550002,@admin";
    let first = keyed(pv(to), "send-1").await;
    let again = keyed(pv(to), "send-1").await;
    assert_eq!(
        first.body["data"].as_array().map(Vec::len),
        Some(3),
        "{first:?}"
    );
    assert_eq!(first.body["data"][0]["error"], "0", "{first:?}");
    assert_eq!(
        again.body["data"], first.body["data"],
        "the first answer, replayed"
    );
    let reused = keyed(pv("+14155550003"), "send-1").await;
    assert_eq!(reused.body["error"], "200", "{reused:?}");

    // Two numbers paid once (0.2 of 1), two log entries, one inbox message.
    let cr = ws(&s, &[("op", "cr"), ("u", "anton"), ("h", &token)]).await;
    assert_eq!(cr["credit"], "0.8", "{cr}");
    let sent = v1(&s, &t, "GET", "/v1/messages", None).await;
    assert_eq!(
        sent.body["messages"].as_array().map(Vec::len),
        Some(2),
        "{sent:?}"
    );
    let ix = ws(&s, &[("op", "ix"), ("u", "admin"), ("h", &adm)]).await;
    assert_eq!(ix["data"].as_array().map(Vec::len), Some(1), "{ix}");

    // An admin operation retried with its key: the first answer again.
    let login_key = || {
        vec![
            ("op", "loginkeyset".to_owned()),
            ("u", "admin".to_owned()),
            ("h", adm.clone()),
            ("data_username", "anton".to_owned()),
        ]
    };
    let k1 = keyed(login_key(), "key-1").await;
    let k2 = keyed(login_key(), "key-1").await;
    assert_eq!(k1.body["error"], "0", "{k1:?}");
    assert_eq!(k2.body["login_key"], k1.body["login_key"], "{k2:?}");
    assert_ne!(
        keyed(login_key(), "key-2").await.body["login_key"],
        k1.body["login_key"],
        "a new key, a new login key"
    );
}
