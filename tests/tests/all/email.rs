//! E-mail through a real SMTP server on loopback (aiosmtpd): proper MIME
//! with UTF-8 intact, a 550 at RCPT failing over, bounces and complaints
//! through the signed webhook suppressing addresses, and one-click
//! unsubscribe stopping an e-mail campaign and showing in the
//! Attentive-compatible eligibility.

use std::time::Duration;

use engage_tests::Server;
use engage_tests::smtp::{Received, Smtp};
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::{Value, json};

/// Provider `name` on the sink (plain text: it is loopback), and a route
/// that tries it first, then the console provider.
async fn smtp_provider(s: &Server, t: &str, name: &str, sink: &Smtp, auth: Option<(&str, &str)>) {
    let mut p = json!({ "kind": "smtp", "host": "127.0.0.1", "port": sink.port, "tls": "none",
                        "from": "Café Shop <shop@example.com>", "max_in_flight": 4 });
    if let Some((u, pw)) = auth {
        p["username"] = json!(u);
        p["password"] = json!(pw);
    }
    let a = s
        .call("PUT", &format!("/v1/providers/{name}"), Some(t), Some(p))
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.body["provider"]["password"],
        json!(auth.map(|_| "***")),
        "{a:?}"
    );
    let route = json!({ "plugin": "router", "config": { "routes": [
        { "channel": "email", "attempts": [
            { "channel": "email", "provider": name },
            { "channel": "email", "provider": "console" } ] } ] } });
    let r = s
        .call("PUT", "/v1/bindings/route", Some(t), Some(route))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
}

async fn send(s: &Server, t: &str, body: Value) -> engage_tests::Answer {
    s.call("POST", "/v1/messages", Some(t), Some(body)).await
}

/// Poll message `id` until `done` holds (at most 10 s).
async fn message_when(s: &Server, t: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = s
            .call("GET", &format!("/v1/messages/{id}"), Some(t), None)
            .await
            .body;
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("message {id} did not get there: {last}");
}

fn first_id(a: &engage_tests::Answer) -> String {
    a.body["messages"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a message id: {a:?}"))
        .to_owned()
}

fn parsed(r: &Received) -> mail_parser::Message<'_> {
    MessageParser::default()
        .parse(r.raw.as_bytes())
        .expect("the sink's message parses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_goes_out_as_mime_with_utf8_intact_and_is_delivered_when_nothing_bounces() {
    let sink = Smtp::start_with(&["--user", "shop", "--password", "s3cret"]).await;
    let s = Server::start("email-mime", |_| {}).await;
    let t = s.demo_token().await;
    smtp_provider(&s, &t, "mail", &sink, Some(("shop", "s3cret"))).await;

    let a = send(
        &s,
        &t,
        json!({
            "channel": "email", "to": ["Ann@Example.org"],
            "subject": "Ваш код {{code}} ✓",
            "template": "Привет {{name}}, your code is {{code}}.",
            "html": "<html><body><p>Привет <b>{{name}}</b>: {{code}}</p></body></html>",
            "vars": { "name": "Ann", "code": "ÄBC-123" },
            "report_timeout_s": 1,
        }),
    )
    .await;
    assert_eq!(a.status, 202, "{a:?}");
    let m = &a.body["messages"][0];
    assert_eq!(
        m["to"], "ann@example.org",
        "addresses are kept in lower case"
    );
    assert_eq!(m["subject"], "Ваш код ÄBC-123 ✓");
    assert_eq!(m["encoding"], "utf8");
    let id = first_id(&a);
    let got = sink.wait_for(1).await;
    let mail = parsed(&got[0]);
    assert_eq!(got[0].rcpt_tos, vec!["ann@example.org".to_owned()]);
    assert_eq!(got[0].mail_from, "shop@example.com");
    assert!(
        got[0].raw.is_ascii(),
        "headers and parts are encoded for the wire"
    );
    assert_eq!(mail.subject(), Some("Ваш код ÄBC-123 ✓"));
    let from = mail.from().and_then(|f| f.first()).expect("a From");
    assert_eq!(
        (from.name(), from.address()),
        (Some("Café Shop"), Some("shop@example.com"))
    );
    let ct = mail.root_part().content_type().expect("a Content-Type");
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("alternative"))
    );
    assert_eq!(
        mail.body_text(0).as_deref().map(str::trim_end),
        Some("Привет Ann, your code is ÄBC-123.")
    );
    assert!(
        mail.body_html(0)
            .is_some_and(|h| h.contains("<p>Привет <b>Ann</b>: ÄBC-123</p>")),
        "{:?}",
        mail.body_html(0)
    );
    assert_eq!(
        got[0].header("List-Unsubscribe"),
        None,
        "a transactional e-mail has no unsubscribe link"
    );
    // The Message-ID is Engage's message id: how a bounce finds it.
    assert_eq!(
        mail.message_id(),
        Some(format!("{id}@example.com").as_str())
    );
    // The SMTP server took it (sent); with no bounce in the report
    // timeout, it counts as delivered.
    let done = message_when(&s, &t, &id, |m| m["status"] == "delivered").await;
    assert_eq!(done["attempts"][0]["provider"], "mail");
    assert_eq!(
        done["attempts"][0]["provider_id"],
        format!("{id}@example.com")
    );
    assert_eq!(done["attempts"].as_array().map(Vec::len), Some(1));

    // A price list prices an e-mail per message, paid from credit.
    let with_prefix = json!({ "currency": "EUR", "prices": [{ "channel": "email", "prefix": "+1", "price": 1 }] });
    let r = s
        .call("PUT", "/v1/messaging/prices", Some(&t), Some(with_prefix))
        .await;
    assert_eq!(r.status, 400, "an e-mail price has no prefix: {r:?}");
    let prices = json!({ "currency": "EUR", "prices": [{ "channel": "email", "price": 0.002 }] });
    let r = s
        .call("PUT", "/v1/messaging/prices", Some(&t), Some(prices))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = s
        .call(
            "POST",
            "/v1/messaging/accounts/default/credit",
            Some(&t),
            Some(json!({ "amount": 1 })),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let a = send(
        &s,
        &t,
        json!({ "channel": "email", "to": ["cy@example.org"], "subject": "Receipt",
                         "body": "Thanks", "report_timeout_s": 1 }),
    )
    .await;
    assert_eq!(a.body["messages"][0]["reserved_micros"], 2000, "{a:?}");
    let done = message_when(&s, &t, &first_id(&a), |m| m["status"] == "delivered").await;
    assert_eq!(done["charged_micros"], 2000, "{done}");
    let credit = s
        .call(
            "GET",
            "/v1/messaging/accounts/default/credit",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(
        (
            credit.body["available_micros"].clone(),
            credit.body["reserved_micros"].clone()
        ),
        (json!(998_000), json!(0)),
        "{credit:?}"
    );
    // Bad requests change nothing.
    for (bad, code) in [
        (
            json!({ "channel": "email", "to": ["not-an-address"], "subject": "x", "body": "x" }),
            "invalid_email",
        ),
        (
            json!({ "channel": "email", "to": ["a@example.org"], "body": "no subject" }),
            "invalid_message",
        ),
        (
            json!({ "channel": "sms", "to": ["+14155550100"], "subject": "x", "body": "x" }),
            "invalid_message",
        ),
        (
            json!({ "channel": "email", "to": ["a@example.org"], "subject": "\n ", "body": "x" }),
            "invalid_message",
        ),
        (
            json!({ "channel": "email", "subject": "x", "body": "x".repeat(60_000),
                    "to": (0..50).map(|i| format!("u{i}@example.org")).collect::<Vec<_>>() }),
            "invalid_message",
        ),
    ] {
        let r = send(&s, &t, bad.clone()).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].clone()),
            (400, json!(code)),
            "{bad}: {r:?}"
        );
    }
    let bad_from = s
        .call(
            "PUT",
            "/v1/providers/bad",
            Some(&t),
            Some(json!({ "kind": "smtp", "host": "127.0.0.1", "from": "not an address" })),
        )
        .await;
    assert_eq!(
        (bad_from.status, bad_from.body["error"]["code"].clone()),
        (400, json!("invalid_provider")),
        "{bad_from:?}"
    );
    // A wrong password is the provider's problem, not the address's: it
    // fails over and suppresses nothing.
    smtp_provider(&s, &t, "mail", &sink, Some(("shop", "wrong"))).await;
    let a = send(
        &s,
        &t,
        json!({ "channel": "email", "to": ["bea@example.org"], "subject": "Hi", "body": "Hi" }),
    )
    .await;
    let id = first_id(&a);
    let done = message_when(&s, &t, &id, |m| m["status"] == "delivered").await;
    assert_eq!(done["attempts"][0]["status"], "rejected", "{done}");
    assert_eq!(done["attempts"][1]["provider"], "console", "{done}");
    let sup = s
        .call("GET", "/v1/email/suppressions", Some(&t), None)
        .await;
    assert_eq!(sup.body["suppressions"], json!([]), "{sup:?}");
}

/// A delivery status notification as Postfix writes one, for `message_id`.
fn dsn(recipient: &str, status: &str, message_id: Option<&str>) -> String {
    let headers = match message_id {
        Some(id) => format!(
            "--B\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: shop@example.com\r\nTo: {recipient}\r\nMessage-ID: <{id}>\r\n\r\n"
        ),
        None => String::new(),
    };
    format!(
        "From: MAILER-DAEMON@mx.example.net\r\nTo: shop@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\nThe mail system could not deliver it.\r\n\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
         Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n\
         Diagnostic-Code: smtp; 550 {status} mailbox problem\r\n\r\n{headers}--B--\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_550_fails_over_and_bounces_through_the_webhook_suppress_the_address() {
    let sink = Smtp::start().await;
    let s = Server::start("email-bounce", |_| {}).await;
    let t = s.demo_token().await;
    smtp_provider(&s, &t, "mail", &sink, None).await;
    let email = |to: &str| json!({ "channel": "email", "to": [to], "subject": "Your receipt", "body": "Thanks." });

    // A 550 at RCPT: undeliverable, and the next attempt delivers. A bare
    // 550 is one strike against the address, not yet a suppression.
    let a = send(&s, &t, email("reject1@example.org")).await;
    let id = first_id(&a);
    let done = message_when(&s, &t, &id, |m| m["status"] == "delivered").await;
    assert_eq!(done["attempts"][0]["status"], "undeliverable", "{done}");
    assert_eq!(done["attempts"][1]["provider"], "console", "{done}");
    let sup = s
        .call(
            "GET",
            "/v1/email/suppressions/reject1@example.org",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(sup.status, 404, "{sup:?}");
    // 550 5.1.1 says the address does not exist: it is suppressed at once,
    // so no other e-mail attempt is tried for it either.
    let a = send(&s, &t, email("bounce1@example.org")).await;
    let id = first_id(&a);
    let done = message_when(&s, &t, &id, |m| m["final_at_ms"].is_i64()).await;
    assert_eq!(done["attempts"][0]["status"], "undeliverable", "{done}");
    assert!(
        done["attempts"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("5.1.1")),
        "{done}"
    );
    assert_eq!(done["attempts"][1]["status"], "rejected", "{done}");
    assert_eq!(done["status"], "rejected", "{done}");
    let sup = s
        .call(
            "GET",
            "/v1/email/suppressions/Bounce1@example.org",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(sup.status, 200, "{sup:?}");
    assert_eq!(sup.body["bounces"], 1);
    // Nothing more goes to it, transactional or not.
    let a = send(&s, &t, email("bounce1@example.org")).await;
    assert_eq!(a.status, 202);
    assert_eq!(a.body["messages"][0]["status"], "rejected", "{a:?}");
    assert!(
        a.body["messages"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("suppressed"))
    );

    // A later bounce, through the provider's signed webhook.
    let a = send(&s, &t, email("gone@example.org")).await;
    let id = first_id(&a);
    let got = sink.wait_for(1).await;
    let message_id = parsed(&got[0])
        .message_id()
        .expect("a Message-ID")
        .to_owned();
    message_when(&s, &t, &id, |m| m["status"] == "sent").await;
    let provider = s.call("GET", "/v1/providers/mail", Some(&t), None).await;
    let url = provider.body["bounce_url"]
        .as_str()
        .expect("a bounce_url")
        .to_owned();
    let path = url.trim_start_matches(&s.base).to_owned();
    let post = |path: String, body: String| {
        s.send(
            s.request("POST", &path, None)
                .header("content-type", "message/rfc822")
                .body(body),
        )
    };
    let forged = post(
        format!("{}x", path),
        dsn("gone@example.org", "5.1.1", Some(&message_id)),
    )
    .await;
    assert_eq!(
        (forged.status, forged.body["error"]["code"].clone()),
        (403, json!("bad_signature"))
    );
    let not_a_report = post(path.clone(), "Subject: hi\r\n\r\nhello".into()).await;
    assert_eq!(not_a_report.status, 400, "{not_a_report:?}");
    assert_eq!(
        s.call("GET", &format!("/v1/messages/{id}"), Some(&t), None)
            .await
            .body["status"],
        "sent",
        "refused reports change nothing"
    );
    // A full mailbox (5.2.2): the attempt fails over, as after an
    // undeliverable report, and the address has one strike.
    let r = post(
        path.clone(),
        dsn("gone@example.org", "5.2.2", Some(&message_id)),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body,
        json!({ "hard_bounces": 1, "soft_bounces": 0, "complaints": 0, "unknown": 0, "matched": 1,
                "suppressed": [] })
    );
    let done = message_when(&s, &t, &id, |m| m["status"] == "delivered").await;
    assert_eq!(done["attempts"][0]["status"], "undeliverable", "{done}");
    assert_eq!(done["attempts"][1]["provider"], "console", "{done}");
    // An address that does not exist (5.1.1) is suppressed at once.
    let r = post(path.clone(), dsn("Nobody@example.org", "5.1.1", None)).await;
    assert_eq!(r.body["suppressed"], json!(["nobody@example.org"]), "{r:?}");

    // A mailbox that is full is not gone: three such bounces suppress it.
    for n in 1..=3 {
        let r = post(path.clone(), dsn("full@example.org", "5.2.2", None)).await;
        assert_eq!(r.body["hard_bounces"], 1, "{r:?}");
        assert_eq!(
            r.body["suppressed"].as_array().map(Vec::len),
            Some(usize::from(n == 3)),
            "bounce {n}: {r:?}"
        );
    }
    // Lifting a suppression lets mail through again.
    let lift = s
        .call(
            "DELETE",
            "/v1/email/suppressions/full@example.org",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(lift.status, 204, "{lift:?}");
    let again = s
        .call(
            "DELETE",
            "/v1/email/suppressions/full@example.org",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(again.status, 404, "{again:?}");
    let a = send(&s, &t, email("full@example.org")).await;
    assert_eq!(a.body["messages"][0]["status"], "queued", "{a:?}");

    // Another tenant's signature does not open this tenant's webhook.
    let other = s.tenant("other").await;
    let a = s
        .call(
            "PUT",
            "/v1/providers/mail",
            Some(&other),
            Some(json!({ "kind": "smtp", "host": "127.0.0.1", "from": "o@example.net" })),
        )
        .await;
    assert_eq!(a.status, 200);
    let other_url = s
        .call("GET", "/v1/providers/mail", Some(&other), None)
        .await
        .body["bounce_url"]
        .as_str()
        .expect("url")
        .to_owned();
    let sig = other_url.split("sig=").nth(1).expect("sig");
    let swapped = path.split("sig=").next().expect("path").to_owned() + "sig=" + sig;
    let r = post(swapped, dsn("ann@example.org", "5.1.1", None)).await;
    assert_eq!(r.status, 403, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_click_unsubscribe_stops_an_email_campaign_and_shows_in_eligibility() {
    let sink = Smtp::start().await;
    let s = Server::start("email-unsubscribe", |_| {}).await;
    let t = s.demo_token().await;
    let (key, _) = s.demo_credentials();
    smtp_provider(&s, &t, "mail", &sink, None).await;
    let source = s
        .call(
            "PUT",
            "/v1/audiences/sources/web",
            Some(&t),
            Some(json!({ "name": "Web" })),
        )
        .await;
    assert_eq!(source.status, 200);
    for (id, email) in [("ann", "ann@example.org"), ("bob", "bob@example.org")] {
        let p = s
            .call(
                "POST",
                "/v1/players",
                Some(&t),
                Some(json!({ "id": id, "first_name": id, "email": email })),
            )
            .await;
        assert_eq!(p.status, 201, "{p:?}");
        let sub = s
            .send(
                s.request("POST", "/attentive/v1/subscriptions", None)
                    .bearer_auth(&key)
                    .json(&json!({ "user": { "email": email }, "signUpSourceId": "web" })),
            )
            .await;
        assert_eq!(sub.status, 200, "{sub:?}");
    }
    let no_email = s
        .call(
            "POST",
            "/v1/players",
            Some(&t),
            Some(json!({ "id": "cid", "phone": "+14155550199" })),
        )
        .await;
    assert_eq!(no_email.status, 201);
    let campaign = json!({ "name": "News", "channel": "email", "subject": "News for {{first_name}}",
                           "template": "Hello {{first_name}}, here is the news.",
                           "trigger": { "type": "manual" } });
    let c = s
        .call(
            "PUT",
            "/v1/campaigns/news",
            Some(&t),
            Some(campaign.clone()),
        )
        .await;
    assert_eq!(c.status, 200, "{c:?}");
    let no_subject = s
        .call(
            "PUT",
            "/v1/campaigns/bad",
            Some(&t),
            Some(json!({ "name": "x", "channel": "email", "template": "x", "trigger": { "type": "manual" } })),
        )
        .await;
    assert_eq!(no_subject.status, 400, "{no_subject:?}");

    let run = s
        .call("POST", "/v1/campaigns/news/run", Some(&t), None)
        .await;
    assert_eq!(run.status, 202, "{run:?}");
    let got = sink.wait_for(2).await;
    let ann = got
        .iter()
        .find(|m| m.rcpt_tos == ["ann@example.org"])
        .expect("ann's e-mail")
        .clone();
    assert_eq!(parsed(&ann).subject(), Some("News for ann"));
    let link = ann.header("List-Unsubscribe").expect("List-Unsubscribe");
    assert_eq!(
        ann.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let url = link
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned();
    assert!(
        parsed(&ann).body_text(0).is_some_and(|b| b.contains(&url)),
        "the footer carries the link"
    );
    let path = url.trim_start_matches(&s.base).to_owned();
    assert!(path.starts_with("/unsubscribe/"), "{url}");

    let eligible = |who: &'static str| {
        let key = key.clone();
        let s = &s;
        async move {
            let a = s
                .send(
                    s.request(
                        "GET",
                        &format!("/attentive/v1/subscriptions?email={who}"),
                        None,
                    )
                    .bearer_auth(&key),
                )
                .await;
            a.body["subscriptionEligibilities"]
                .as_array()
                .and_then(|l| {
                    l.iter().find(|e| {
                        e["subscription"]["channel"] == "EMAIL"
                            && e["subscription"]["type"] == "MARKETING"
                    })
                })
                .map(|e| e["eligibility"]["isEligible"].clone())
        }
    };
    assert_eq!(eligible("ann@example.org").await, Some(json!(true)));
    // Opening the link changes nothing (mail scanners open links).
    let page = s.send(s.request("GET", &path, None)).await;
    assert_eq!(page.status, 200);
    assert_eq!(eligible("ann@example.org").await, Some(json!(true)));
    // A forged or cut link is refused.
    let cut = s
        .send(s.request("POST", &path[..path.len() - 3], None))
        .await;
    assert_eq!(cut.status, 404);
    // The mailbox provider's one-click POST (RFC 8058).
    let click = s
        .send(
            s.request("POST", &path, None)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("List-Unsubscribe=One-Click"),
        )
        .await;
    assert_eq!(click.status, 200, "{click:?}");
    assert_eq!(eligible("ann@example.org").await, Some(json!(false)));
    assert_eq!(eligible("bob@example.org").await, Some(json!(true)));

    // The campaign's next send reaches bob only; no API sends ann marketing.
    let run = s
        .call("POST", "/v1/campaigns/news/run", Some(&t), None)
        .await;
    assert_eq!(run.status, 202, "{run:?}");
    let mut stats = Value::Null;
    for _ in 0..200 {
        stats = s
            .call("GET", "/v1/campaigns/news", Some(&t), None)
            .await
            .body["stats"]
            .clone();
        if stats["targeted"] == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stats["sent"], 3, "{stats}");
    assert_eq!(stats["skipped"]["opted_out"], 1, "{stats}");
    assert_eq!(stats["skipped"]["no_email"], 2, "{stats}");
    let got = sink.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let to_ann = sink
        .received()
        .iter()
        .filter(|m| m.rcpt_tos == ["ann@example.org"])
        .count();
    assert_eq!(
        (got.len(), to_ann),
        (3, 1),
        "ann got one e-mail, before she left"
    );
    let direct = send(
        &s,
        &t,
        json!({ "channel": "email", "kind": "marketing", "to": ["ANN@example.org"],
                         "subject": "Sale", "body": "Sale!" }),
    )
    .await;
    assert_eq!(
        direct.body["messages"][0]["status"], "rejected",
        "{direct:?}"
    );
}

/// A Playbasis call with form parameters.
async fn playbasis(s: &Server, path: &str, params: &[(&str, &str)]) -> engage_tests::Answer {
    s.send(
        s.request("POST", &format!("/playbasis{path}"), None)
            .form(params),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playbasis_email_goods_mails_the_coupon_and_its_black_list_is_the_suppression_list() {
    let sink = Smtp::start().await;
    let s = Server::start("email-playbasis", |_| {}).await;
    let t = s.demo_token().await;
    let (key, secret) = s.demo_credentials();
    smtp_provider(&s, &t, "mail", &sink, None).await;
    let p = s
        .call(
            "POST",
            "/v1/players",
            Some(&t),
            Some(json!({ "id": "pat", "first_name": "Pat", "email": "Pat@Example.org" })),
        )
        .await;
    assert_eq!(p.status, 201, "{p:?}");
    s.goods(&t, "coupon", 10, &["C-8830644924".to_owned()])
        .await;
    s.credit(&t, "pat", 100).await;
    let auth = playbasis(&s, "/Auth", &[("api_key", &key), ("api_secret", &secret)]).await;
    let token = auth.body["response"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let r = playbasis(
        &s,
        "/Redeem/goodsGroup",
        &[("token", &token), ("player_id", "pat"), ("group", "coupon")],
    )
    .await;
    let ref_id = r.body["response"]["ref_id"]
        .as_str()
        .expect("ref_id")
        .to_owned();

    let sent = playbasis(
        &s,
        "/Email/goods",
        &[
            ("token", &token),
            ("player_id", "pat"),
            ("ref_id", &ref_id),
            ("subject", "Your coupon, {{first_name}}"),
            ("message", "Here is your coupon: {{coupon}} ✓"),
        ],
    )
    .await;
    assert_eq!(sent.body["error_code"], "0000", "{sent:?}");
    assert_eq!(sent.body["response"]["to"], "pat@example.org");
    let got = sink.wait_for(1).await;
    let mail = parsed(&got[0]);
    assert_eq!(mail.subject(), Some("Your coupon, Pat"));
    assert_eq!(
        mail.body_text(0).as_deref().map(str::trim_end),
        Some("Here is your coupon: C-8830644924 ✓")
    );
    let missing = playbasis(
        &s,
        "/Email/goods",
        &[
            ("token", &token),
            ("player_id", "pat"),
            ("ref_id", &ref_id),
            ("message", "x"),
        ],
    )
    .await;
    assert_eq!(missing.body["error_code"], "0903", "{missing:?}");

    // The black list is the suppression list, both ways.
    let add = |path: &'static str| {
        let token = token.clone();
        let s = &s;
        async move { playbasis(s, path, &[("token", &token), ("email", "PAT@example.org")]).await }
    };
    assert_eq!(add("/Email/isBlackList").await.body["response"], false);
    assert_eq!(add("/Email/addBlackList").await.body["error_code"], "0000");
    assert_eq!(add("/Email/addBlackList").await.body["error_code"], "0803");
    assert_eq!(add("/Email/isBlackList").await.body["response"], true);
    let sup = s
        .call(
            "GET",
            "/v1/email/suppressions/pat@example.org",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(sup.status, 200, "{sup:?}");
    let blocked = playbasis(
        &s,
        "/Email/send",
        &[
            ("token", &token),
            ("player_id", "pat"),
            ("subject", "Hi"),
            ("message", "Hi"),
        ],
    )
    .await;
    assert_eq!(blocked.body["error_code"], "0802", "{blocked:?}");
    assert_eq!(
        add("/Email/removeBlackList").await.body["error_code"],
        "0000"
    );
    assert_eq!(
        add("/Email/removeBlackList").await.body["error_code"],
        "0804"
    );
    let again = playbasis(
        &s,
        "/Email/send",
        &[
            ("token", &token),
            ("player_id", "pat"),
            ("subject", "Hi"),
            ("message", "Hi {{first_name}}"),
        ],
    )
    .await;
    assert_eq!(again.body["error_code"], "0000", "{again:?}");
    let got = sink.wait_for(2).await;
    assert_eq!(
        parsed(&got[1]).body_text(0).as_deref().map(str::trim_end),
        Some("Hi Pat")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounced_email_falls_back_to_an_sms_to_the_phone_in_its_metadata() {
    let sink = Smtp::start().await;
    let s = Server::start("email-cross", |_| {}).await;
    let t = s.demo_token().await;
    let p = json!({ "kind": "smtp", "host": "127.0.0.1", "port": sink.port, "tls": "none",
                    "from": "shop@example.com" });
    let a = s.call("PUT", "/v1/providers/mail", Some(&t), Some(p)).await;
    assert_eq!(a.status, 200, "{a:?}");
    // E-mail first, then an SMS through the console provider.
    let route = json!({ "plugin": "router", "config": { "routes": [
        { "channel": "email", "attempts": [
            { "channel": "email", "provider": "mail" },
            { "channel": "sms", "provider": "console" } ] } ] } });
    let r = s
        .call("PUT", "/v1/bindings/route", Some(&t), Some(route))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let a = send(&s, &t, json!({ "channel": "email", "to": ["bounce7@example.org"], "subject": "Your code",
                         "body": "Your code is 8830644924", "metadata": { "phone": "+1 415 555 0177" } })).await;
    assert_eq!(a.status, 202, "{a:?}");
    assert_eq!(a.body["messages"][0]["plan"][1]["to"], "+14155550177");
    let id = first_id(&a);
    let done = message_when(&s, &t, &id, |m| m["status"] == "delivered").await;
    assert_eq!(done["attempts"][0]["status"], "undeliverable", "{done}");
    assert_eq!(
        (
            done["attempts"][1]["channel"].clone(),
            done["attempts"][1]["to"].clone()
        ),
        (json!("sms"), json!("+14155550177")),
        "{done}"
    );
    // Without a phone in its metadata, the SMS attempt has nowhere to go.
    let a = send(
        &s,
        &t,
        json!({ "channel": "email", "to": ["bounce8@example.org"], "subject": "Your code",
                         "body": "Your code is 8830644924" }),
    )
    .await;
    let id = first_id(&a);
    let done = message_when(&s, &t, &id, |m| m["final_at_ms"].is_i64()).await;
    assert_eq!(done["attempts"][1]["status"], "rejected", "{done}");
    assert!(
        done["attempts"][1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("metadata `phone`")),
        "{done}"
    );
}
