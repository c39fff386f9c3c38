//! Kill the server (SIGKILL) in the middle of a load of actions and
//! redemptions, start it again, and check that every acknowledged request
//! is there and that no unacknowledged one left a partial effect.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

const PLAYERS: usize = 16;
const CODES: usize = 2000;
const PRICE: i64 = 10;
const START_CREDIT: i64 = 50;

struct Engage {
    child: Child,
    base: String,
}

impl Drop for Engage {
    /// A failing test must not leave a server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(data: &Path) -> Engage {
    start_with(data, "").await
}

/// Start with `toml` as the configuration file.
async fn start_with(data: &Path, toml: &str) -> Engage {
    let _ = std::fs::remove_file(data.join("server.json"));
    let config = data.with_extension("toml");
    std::fs::write(&config, toml).expect("config file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_engage"))
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env_remove("ENGAGE_ADMIN_TOKEN")
        .env("ENGAGE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn engage");
    for _ in 0..600 {
        if let Ok(text) = std::fs::read_to_string(data.join("server.json"))
            && let Ok(v) = serde_json::from_str::<Value>(&text)
            && let Some(addr) = v["listen"].as_str()
        {
            let base = format!("http://{addr}");
            if reqwest::get(format!("{base}/health")).await.is_ok() {
                return Engage { child, base };
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("engage did not start");
}

/// Define campaign `id` and start a run of it.
async fn define_and_run(http: &reqwest::Client, b: &str, t: &str, id: &str, campaign: &Value) {
    let put = http
        .put(format!("{b}/v1/campaigns/{id}"))
        .bearer_auth(t)
        .json(campaign);
    assert_eq!(call(http, put).await.0, 200);
    let run = http
        .post(format!("{b}/v1/campaigns/{id}/run"))
        .bearer_auth(t);
    assert_eq!(call(http, run).await.0, 202);
}

async fn call(http: &reqwest::Client, req: reqwest::RequestBuilder) -> (u16, Value) {
    let _ = http;
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// A token for the demo tenant, from the first-start credentials file.
async fn demo_token(data: &Path, base: &str, http: &reqwest::Client) -> String {
    let creds: Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("credentials.json")).expect("credentials"),
    )
    .expect("json");
    let auth =
        json!({ "api_key": creds["demo"]["api_key"], "api_secret": creds["demo"]["api_secret"] });
    let (_, v) = call(http, http.post(format!("{base}/v1/auth/token")).json(&auth)).await;
    v["token"].as_str().expect("token").to_owned()
}

#[derive(Default)]
struct Acked {
    actions: Vec<(String, String)>,     // (player, action id)
    redemptions: Vec<(String, String)>, // (player, ref_id)
    refused: std::collections::BTreeMap<String, u32>, // "status code" → times
}

/// The goods group `g` with [`CODES`] codes at [`PRICE`], and [`PLAYERS`]
/// players with [`START_CREDIT`] points each.
async fn goods_and_funded_players(http: &reqwest::Client, b: &str, t: &str) {
    let (st, _) = call(
        http,
        http.put(format!("{b}/v1/goods/g"))
            .bearer_auth(t)
            .json(&json!({ "name": "g", "price": PRICE })),
    )
    .await;
    assert_eq!(st, 200);
    let file: String = (0..CODES).map(|i| format!("K{i:06}\n")).collect();
    let (st, up) = call(
        http,
        http.post(format!("{b}/v1/goods/g/codes"))
            .bearer_auth(t)
            .body(file),
    )
    .await;
    assert_eq!((st, up["added"].as_u64()), (200, Some(CODES as u64)));
    for i in 0..PLAYERS {
        let (st, _) = call(
            http,
            http.post(format!("{b}/v1/players"))
                .bearer_auth(t)
                .json(&json!({ "id": format!("p{i}") })),
        )
        .await;
        assert_eq!(st, 201);
        let (st, _) = call(
            http,
            http.post(format!("{b}/v1/ledger/credit"))
                .bearer_auth(t)
                .json(&json!({ "player": format!("p{i}"), "amount": START_CREDIT })),
        )
        .await;
        assert_eq!(st, 201);
    }
}

/// The fake Twilio as provider `twilio` (16 sends in flight), and every
/// message routed to it.
async fn twilio_route(http: &reqwest::Client, b: &str, t: &str, provider_url: &str) {
    let provider = json!({ "kind": "twilio", "account_sid": "AC0123456789abcdef0123456789abcdef", "auth_token": "x",
                           "from": "+15005550006", "base_url": provider_url, "max_in_flight": 16 });
    let (st, _) = call(
        http,
        http.put(format!("{b}/v1/providers/twilio"))
            .bearer_auth(t)
            .json(&provider),
    )
    .await;
    assert_eq!(st, 200);
    let route = json!({ "plugin": "router", "config": { "default_provider": "twilio" } });
    let (st, _) = call(
        http,
        http.put(format!("{b}/v1/bindings/route"))
            .bearer_auth(t)
            .json(&route),
    )
    .await;
    assert_eq!(st, 200);
}

/// Every accepted message is there and reaches a final status (within a
/// minute).
async fn all_final(http: &reqwest::Client, b: &str, t: &str, ids: &[String]) {
    let mut pending: Vec<String> = ids.to_vec();
    for _ in 0..600 {
        let mut still = Vec::new();
        for id in &pending {
            let (st, m) = call(
                http,
                http.get(format!("{b}/v1/messages/{id}")).bearer_auth(t),
            )
            .await;
            assert_eq!(st, 200, "accepted message {id} is there");
            if !m["final_at_ms"].is_i64() {
                still.push(id.clone());
            }
        }
        pending = still;
        if pending.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{} accepted messages never reached a final status",
        pending.len()
    );
}

/// After a crash: every acknowledged action and redemption is there, each
/// player's balance is exactly what its stored actions and redemptions
/// explain and its entries add up, no code was given twice, and the stock
/// matches the codes given out.
async fn check_acknowledged(http: &reqwest::Client, b: &str, t: &str, acked: &Acked) {
    for (_, id) in &acked.actions {
        let (st, v) = call(
            http,
            http.get(format!("{b}/v1/actions/{id}")).bearer_auth(t),
        )
        .await;
        assert_eq!(st, 200, "acknowledged action {id} is missing");
        assert_eq!(v["grants"][0]["amount"], 100);
    }
    for (_, r) in &acked.redemptions {
        let (st, _) = call(
            http,
            http.get(format!("{b}/v1/redemptions/{r}")).bearer_auth(t),
        )
        .await;
        assert_eq!(st, 200, "acknowledged redemption {r} is missing");
    }
    // No partial effect: for every player, the balance is exactly what the
    // stored actions and redemptions explain, and the entries add up.
    let mut codes_out = HashSet::new();
    for i in 0..PLAYERS {
        let p = format!("p{i}");
        let (_, bal) = call(http, http.get(format!("{b}/v1/players/{p}")).bearer_auth(t)).await;
        let balance = bal["balances"]["points"].as_i64().expect("balance");
        let buys = bal["action_counts"]["buy"].as_i64().unwrap_or(0);
        let (_, reds) = call(
            http,
            http.get(format!("{b}/v1/players/{p}/redemptions?limit=500"))
                .bearer_auth(t),
        )
        .await;
        let reds = reds["redemptions"].as_array().cloned().unwrap_or_default();
        for r in &reds {
            for c in r["codes"].as_array().cloned().unwrap_or_default() {
                assert!(
                    codes_out.insert(c.as_str().unwrap_or_default().to_owned()),
                    "a code given twice"
                );
            }
        }
        assert_eq!(
            balance,
            START_CREDIT + 100 * buys - PRICE * reds.len() as i64,
            "player {p}"
        );
        let (_, hist) = call(
            http,
            http.get(format!("{b}/v1/players/{p}/ledger?limit=500"))
                .bearer_auth(t),
        )
        .await;
        let entries = hist["entries"].as_array().cloned().unwrap_or_default();
        let sum: i64 = entries
            .iter()
            .map(|e| e["amount"].as_i64().unwrap_or(0))
            .sum();
        assert_eq!(sum, balance, "entries add up for {p}");
        assert_eq!(
            entries.first().and_then(|e| e["balance_after"].as_i64()),
            Some(balance)
        );
    }
    let (_, g) = call(http, http.get(format!("{b}/v1/goods/g")).bearer_auth(t)).await;
    assert_eq!(
        g["stock"].as_u64(),
        Some((CODES - codes_out.len()) as u64),
        "stock matches the codes given out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_acknowledged() {
    let data: PathBuf =
        std::env::temp_dir().join(format!("engage-crash-{}", engage::ids::random_hex(6)));
    std::fs::create_dir_all(&data).expect("data dir");
    let mut server = start(&data).await;
    let http = reqwest::Client::new();
    let t = demo_token(&data, &server.base, &http).await;
    let b = server.base.clone();
    goods_and_funded_players(&http, &b, &t).await;

    // The load: every player alternates actions (+100) and redemptions (-10).
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut tasks = Vec::new();
    for i in 0..PLAYERS {
        let (http, b, t, acked) = (http.clone(), b.clone(), t.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let p = format!("p{i}");
            for n in 0.. {
                if n % 2 == 0 {
                    let (st, v) = call(
                        &http,
                        http.post(format!("{b}/v1/actions"))
                            .bearer_auth(&t)
                            .json(&json!({ "player": p, "action": "buy" })),
                    )
                    .await;
                    if st == 0 {
                        break;
                    }
                    if st == 200 {
                        let id = v["action"]["id"].as_str().expect("id").to_owned();
                        acked.lock().expect("lock").actions.push((p.clone(), id));
                    }
                } else {
                    let (st, v) = call(
                        &http,
                        http.post(format!("{b}/v1/goods/g/redeem"))
                            .bearer_auth(&t)
                            .json(&json!({ "player": p })),
                    )
                    .await;
                    if st == 0 {
                        break;
                    }
                    if st == 201 {
                        let r = v["ref_id"].as_str().expect("ref").to_owned();
                        acked.lock().expect("lock").redemptions.push((p.clone(), r));
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().expect("SIGKILL");
    let _ = server.child.wait();
    for task in tasks {
        let _ = task.await;
    }
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));
    eprintln!(
        "acknowledged before the kill: {} actions, {} redemptions",
        acked.actions.len(),
        acked.redemptions.len()
    );
    assert!(
        acked.actions.len() > 20 && acked.redemptions.len() > 20,
        "the load ran: {} actions, {} redemptions",
        acked.actions.len(),
        acked.redemptions.len()
    );

    // Restart on the same data.
    let mut server = start(&data).await;
    let b = server.base.clone();
    let t = demo_token(&data, &b, &http).await;
    check_acknowledged(&http, &b, &t, &acked).await;
    server.child.kill().expect("stop");
    let _ = server.child.wait();
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_file(data.with_extension("toml"));
}

/// A gift request is saved with its post hook queued; the server is killed
/// before the hook runs. After the restart the hook runs (the first-party
/// gift plugin's statistics count it) without any new request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_hook_queued_before_a_sigkill_runs_after_the_restart() {
    let data: PathBuf =
        std::env::temp_dir().join(format!("engage-crash-hooks-{}", engage::ids::random_hex(6)));
    std::fs::create_dir_all(&data).expect("data dir");
    let mut server = start_with(&data, "[gifts]\npost_hooks_paused = true\n").await;
    let http = reqwest::Client::new();
    let b = server.base.clone();
    let t = demo_token(&data, &b, &http).await;
    for p in ["a", "b"] {
        let (st, _) = call(
            &http,
            http.post(format!("{b}/v1/players"))
                .bearer_auth(&t)
                .json(&json!({ "id": p })),
        )
        .await;
        assert_eq!(st, 201);
    }
    let (st, _) = call(
        &http,
        http.put(format!("{b}/v1/players/a/friends"))
            .bearer_auth(&t)
            .json(&json!({ "friends": [{ "mode": "player", "id": "b" }] })),
    )
    .await;
    assert_eq!(st, 200);
    let (st, gift) = call(
        &http,
        http.post(format!("{b}/v1/players/a/gifts"))
            .bearer_auth(&t)
            .json(&json!({ "attributes": { "item": "1" } })),
    )
    .await;
    assert_eq!(st, 201, "{gift}");
    assert_eq!(gift["recipients"], json!(["b"]));
    let calls = |v: &Value| {
        v["versions"]
            .as_array()
            .map(|vs| {
                vs.iter()
                    .map(|x| x["stats"]["calls"].as_u64().unwrap_or(0))
                    .sum::<u64>()
            })
            .unwrap_or(0)
    };
    let (_, stats) = call(
        &http,
        http.get(format!("{b}/v1/plugins/gift-quota"))
            .bearer_auth(&t),
    )
    .await;
    assert_eq!(calls(&stats), 1, "only the pre hook ran: {stats}");
    server.child.kill().expect("SIGKILL");
    let _ = server.child.wait();

    let mut server = start_with(&data, "").await;
    let b = server.base.clone();
    let mut ran = 0;
    for _ in 0..100 {
        let (_, stats) = call(
            &http,
            http.get(format!("{b}/v1/plugins/gift-quota"))
                .bearer_auth(&t),
        )
        .await;
        ran = calls(&stats);
        if ran >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ran, 1, "the queued post hook ran once after the restart");
    let (_, got) = call(
        &http,
        http.get(format!("{b}/v1/players/b/gifts/received"))
            .bearer_auth(&t),
    )
    .await;
    assert_eq!(got["requests"][0]["id"], gift["id"]);
    server.child.kill().expect("stop");
    let _ = server.child.wait();
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_file(data.with_extension("toml"));
}

/// Sends a fake provider received, by Engage message id.
#[derive(Default)]
struct ProviderLog {
    sends: Mutex<std::collections::HashMap<String, u32>>,
}

/// A Twilio-shaped provider that answers `delivered` after a short delay,
/// counting sends per Engage message id (from the callback URL).
async fn fake_twilio(log: Arc<ProviderLog>) -> String {
    use axum::extract::State;
    async fn create(
        State(log): State<Arc<ProviderLog>>,
        body: axum::body::Bytes,
    ) -> (axum::http::StatusCode, axum::Json<Value>) {
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        let id = form
            .iter()
            .find(|(k, _)| k == "StatusCallback")
            .and_then(|(_, v)| v.split("message=").nth(1))
            .unwrap_or_default()
            .to_owned();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let n = {
            let mut sends = log.sends.lock().unwrap_or_else(|p| p.into_inner());
            let n = sends.entry(id.clone()).or_default();
            *n += 1;
            *n
        };
        (
            axum::http::StatusCode::CREATED,
            axum::Json(json!({ "sid": format!("SM{id}{n}"), "status": "delivered" })),
        )
    }
    let app = axum::Router::new()
        .route(
            "/2010-04-01/Accounts/{sid}/Messages.json",
            axum::routing::post(create),
        )
        .with_state(log);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_messages_are_queued_and_sending_loses_none() {
    const REQUESTS: usize = 60;
    const PER_REQUEST: usize = 50;
    let data: PathBuf =
        std::env::temp_dir().join(format!("engage-crash-msg-{}", engage::ids::random_hex(6)));
    std::fs::create_dir_all(&data).expect("data dir");
    let log = Arc::new(ProviderLog::default());
    let provider_url = fake_twilio(log.clone()).await;
    let mut server = start(&data).await;
    let http = reqwest::Client::new();
    let b = server.base.clone();
    let t = demo_token(&data, &b, &http).await;
    twilio_route(&http, &b, &t, &provider_url).await;

    // Bulk sends from 4 clients until the kill; remember what was accepted.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut clients = Vec::new();
    for c in 0..4 {
        let (http, b, t, acked) = (http.clone(), b.clone(), t.clone(), acked.clone());
        clients.push(tokio::spawn(async move {
            for r in (c..REQUESTS).step_by(4) {
                let to: Vec<String> = (0..PER_REQUEST)
                    .map(|i| format!("+1415{:03}{:04}", r, i))
                    .collect();
                let body = json!({ "to": to, "body": format!("batch {r}"), "reference": format!("batch-{r}") });
                let (st, v) = call(&http, http.post(format!("{b}/v1/messages")).bearer_auth(&t).json(&body)).await;
                if st != 202 {
                    return;
                }
                let ids = v["messages"]
                    .as_array()
                    .map(|ms| ms.iter().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect::<Vec<_>>())
                    .unwrap_or_default();
                acked.lock().unwrap_or_else(|p| p.into_inner()).extend(ids);
            }
        }));
    }
    // The provider takes 16 at a time, so a backlog builds: kill once
    // thousands are accepted and sends are under way.
    for _ in 0..1500 {
        let accepted = acked.lock().unwrap_or_else(|p| p.into_inner()).len();
        let sent = log.sends.lock().unwrap_or_else(|p| p.into_inner()).len();
        if accepted >= 2000 && sent >= 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.child.kill().expect("SIGKILL");
    let _ = server.child.wait();
    for c in clients {
        let _ = c.await;
    }
    let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let sent_before = log.sends.lock().unwrap_or_else(|p| p.into_inner()).len();
    assert!(!acked.is_empty());

    let server = start(&data).await;
    let b = server.base.clone();
    all_final(&http, &b, &t, &acked).await;
    let sends = log.sends.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let unsent: Vec<&String> = acked.iter().filter(|id| !sends.contains_key(*id)).collect();
    assert!(
        unsent.is_empty(),
        "{} accepted messages were never sent",
        unsent.len()
    );
    let twice: Vec<(&String, &u32)> = sends.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "messages: {} accepted before the kill, {} had reached the provider, {} sent twice (in flight at the kill); all {} reached a final status after the restart",
        acked.len(),
        sent_before,
        twice.len(),
        acked.len()
    );
    // A duplicate is only possible for a send in flight at the kill, and
    // the provider's lane allows 16 in flight.
    assert!(
        twice.iter().all(|(_, n)| **n == 2),
        "nothing is sent three times"
    );
    assert!(twice.len() <= 16, "{} duplicates", twice.len());
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

/// A campaign's stats, once a predicate holds (or after `tries`).
async fn campaign_stats(
    http: &reqwest::Client,
    b: &str,
    t: &str,
    id: &str,
    tries: usize,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..tries {
        let (_, v) = call(
            http,
            http.get(format!("{b}/v1/campaigns/{id}")).bearer_auth(t),
        )
        .await;
        last = v["stats"].clone();
        if done(&last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_killed_mid_run_reaches_everyone_exactly_once() {
    const MEMBERS: usize = 1500;
    let data: PathBuf = std::env::temp_dir().join(format!(
        "engage-crash-campaign-{}",
        engage::ids::random_hex(6)
    ));
    std::fs::create_dir_all(&data).expect("data dir");
    let mut server = start(&data).await;
    let http = reqwest::Client::new();
    let b = server.base.clone();
    let t = demo_token(&data, &b, &http).await;
    let (st, _) = call(
        &http,
        http.put(format!("{b}/v1/audiences/sources/web"))
            .bearer_auth(&t)
            .json(&json!({ "name": "Web" })),
    )
    .await;
    assert_eq!(st, 200);
    let mut clients = Vec::new();
    for c in 0..4 {
        let (http, b, t) = (http.clone(), b.clone(), t.clone());
        clients.push(tokio::spawn(async move {
            for i in (c..MEMBERS).step_by(4) {
                let phone = format!("+1415777{i:04}");
                let p = json!({ "id": format!("m{i:04}"), "phone": phone });
                let (st, _) = call(
                    &http,
                    http.post(format!("{b}/v1/players"))
                        .bearer_auth(&t)
                        .json(&p),
                )
                .await;
                assert_eq!(st, 201);
                let s = json!({ "phone": phone, "source": "web" });
                let (st, _) = call(
                    &http,
                    http.post(format!("{b}/v1/audiences/subscriptions"))
                        .bearer_auth(&t)
                        .json(&s),
                )
                .await;
                assert_eq!(st, 200);
            }
        }));
    }
    for c in clients {
        c.await.expect("client");
    }
    let campaign = json!({ "name": "Crash", "template": "Hello {{player_id}}", "trigger": { "type": "manual" } });
    define_and_run(&http, &b, &t, "crash", &campaign).await;
    // Kill it part way through.
    let mid = campaign_stats(&http, &b, &t, "crash", 400, |s| {
        s["sent"].as_u64() >= Some(200)
    })
    .await;
    server.child.kill().expect("SIGKILL");
    let _ = server.child.wait();
    let before = mid["sent"].as_u64().unwrap_or(0);
    assert!(before < MEMBERS as u64, "killed too late to matter: {mid}");

    let server = start(&data).await;
    let b = server.base.clone();
    let t = demo_token(&data, &b, &http).await;
    let done = campaign_stats(&http, &b, &t, "crash", 1200, |s| {
        s["targeted"].as_u64() >= Some(MEMBERS as u64)
    })
    .await;
    assert_eq!(done["sent"].as_u64(), Some(MEMBERS as u64), "{done}");
    assert_eq!(done["targeted"].as_u64(), Some(MEMBERS as u64), "{done}");

    // Every member has exactly one message from the campaign.
    let mut per_phone: std::collections::HashMap<String, usize> = Default::default();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{b}/v1/messages?limit=500");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let (_, v) = call(&http, http.get(url).bearer_auth(&t)).await;
        for m in v["messages"].as_array().cloned().unwrap_or_default() {
            if m["metadata"]["campaign"] == "crash" {
                *per_phone
                    .entry(m["to"].as_str().unwrap_or_default().to_owned())
                    .or_default() += 1;
            }
        }
        match v["next_after"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(per_phone.len(), MEMBERS);
    assert!(
        per_phone.values().all(|n| *n == 1),
        "someone got two messages"
    );
    eprintln!(
        "campaign killed after {before} of {MEMBERS} sent; after the restart all {MEMBERS} got exactly one"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

/// Three hosts on one PostgreSQL database share a load of actions,
/// redemptions and messages; one is killed (SIGKILL) in the middle and
/// started again. Every acknowledged action and redemption is there once,
/// no code is given twice, every accepted message reaches a final status,
/// and the sends repeated after the kill are bounded by what the dead host
/// had in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_of_three_hosts_loses_nothing_acknowledged() {
    let base = std::env::var("ENGAGE_TEST_POSTGRES")
        .expect("ENGAGE_TEST_POSTGRES: run ./scripts/test, which starts a throw-away PostgreSQL");
    let url = engage::store_postgres::create_database(
        &base,
        &format!("crash_hosts_{}", engage::ids::random_hex(6)),
    )
    .expect("database");
    let toml = format!(
        "secret_key = \"{}\"\n[storage]\nbackend = \"postgres\"\nurl = \"{url}\"\n[messaging]\nprovider_timeout_ms = 2000\n",
        "ab".repeat(32)
    );
    let root =
        std::env::temp_dir().join(format!("engage-crash-hosts-{}", engage::ids::random_hex(6)));
    let dirs: Vec<PathBuf> = (0..3).map(|i| root.join(format!("host{i}"))).collect();
    for d in &dirs {
        std::fs::create_dir_all(d).expect("data dir");
    }
    let log = Arc::new(ProviderLog::default());
    let provider_url = fake_twilio(log.clone()).await;
    // The first host bootstraps the database; the others join it.
    let mut hosts = vec![start_with(&dirs[0], &toml).await];
    for d in &dirs[1..] {
        hosts.push(start_with(d, &toml).await);
    }
    let http = reqwest::Client::new();
    let a = hosts[0].base.clone();
    let t = demo_token(&dirs[0], &a, &http).await;
    goods_and_funded_players(&http, &a, &t).await;
    twilio_route(&http, &a, &t, &provider_url).await;
    // Every host counts the others (heartbeats) before the load.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let bases: Vec<String> = hosts.iter().map(|h| h.base.clone()).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Acked::default()));
    let messages: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for i in 0..PLAYERS {
        let (http, bases, t, acked, messages, stop) = (
            http.clone(),
            bases.clone(),
            t.clone(),
            acked.clone(),
            messages.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let p = format!("p{i}");
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                // Clients spread over the hosts; a dead host's clients move on.
                let b = &bases[(i + n) % bases.len()];
                match n % 3 {
                    0 => {
                        let (st, v) = call(
                            &http,
                            http.post(format!("{b}/v1/actions"))
                                .bearer_auth(&t)
                                .json(&json!({ "player": p, "action": "buy" })),
                        )
                        .await;
                        if st == 200 {
                            let id = v["action"]["id"].as_str().expect("id").to_owned();
                            acked.lock().expect("lock").actions.push((p.clone(), id));
                        } else {
                            // Printed with the counts: why actions were refused.
                            let why =
                                format!("{st} {}", v["error"]["code"].as_str().unwrap_or("-"));
                            *acked.lock().expect("lock").refused.entry(why).or_default() += 1;
                        }
                    }
                    1 => {
                        let (st, v) = call(
                            &http,
                            http.post(format!("{b}/v1/goods/g/redeem"))
                                .bearer_auth(&t)
                                .json(&json!({ "player": p })),
                        )
                        .await;
                        if st == 201 {
                            let r = v["ref_id"].as_str().expect("ref").to_owned();
                            acked.lock().expect("lock").redemptions.push((p.clone(), r));
                        }
                    }
                    _ => {
                        let to: Vec<String> =
                            (0..5).map(|k| format!("+1415{i:03}{n:03}{k}")).collect();
                        let (st, v) = call(
                            &http,
                            http.post(format!("{b}/v1/messages"))
                                .bearer_auth(&t)
                                .json(&json!({ "to": to, "body": "hi" })),
                        )
                        .await;
                        if st == 202 {
                            let ids = v["messages"]
                                .as_array()
                                .map(|ms| {
                                    ms.iter()
                                        .filter_map(|m| m["id"].as_str().map(str::to_owned))
                                        .collect::<Vec<_>>()
                                })
                                .unwrap_or_default();
                            messages.lock().expect("lock").extend(ids);
                        }
                    }
                }
            }
        }));
    }
    // The kill comes in the middle of a load that is running: once every
    // kind has been acknowledged more than 20 times (on a busy machine
    // that takes longer than on a quiet one), at least 2 s in.
    let since = std::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let running = {
            let a = acked.lock().expect("lock");
            a.actions.len() > 20
                && a.redemptions.len() > 20
                && messages.lock().expect("lock").len() > 20
        };
        if (running && since.elapsed() >= Duration::from_secs(2))
            || since.elapsed() > Duration::from_secs(60)
        {
            break;
        }
    }
    let sent_at_kill = log.sends.lock().unwrap_or_else(|p| p.into_inner()).len();
    hosts[1].child.kill().expect("SIGKILL");
    let _ = hosts[1].child.wait();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    hosts[1] = start_with(&dirs[1], &toml).await;
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));
    let messages = messages.lock().expect("lock").clone();
    eprintln!(
        "acknowledged across three hosts: {} actions, {} redemptions, {} messages ({sent_at_kill} sent at the kill); actions refused: {:?}",
        acked.actions.len(),
        acked.redemptions.len(),
        messages.len(),
        acked.refused
    );
    assert!(
        acked.actions.len() > 20 && acked.redemptions.len() > 20 && messages.len() > 20,
        "the load ran"
    );

    let b = hosts[1].base.clone();
    check_acknowledged(&http, &b, &t, &acked).await;

    // Every accepted message reaches a final status (the dead host's
    // claims end after the provider timeout and 5 s).
    all_final(&http, &b, &t, &messages).await;
    let sends = log.sends.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        messages.iter().all(|id| sends.contains_key(id)),
        "every accepted message was sent"
    );
    let twice = sends.values().filter(|n| **n > 1).count();
    eprintln!("{twice} messages sent twice (in flight on the killed host)");
    assert!(
        sends.values().all(|n| *n <= 2),
        "nothing is sent three times"
    );
    // The killed host's share of max_in_flight 16 over three hosts is 5.
    assert!(
        twice <= 6,
        "{twice} repeated sends; the dead host had at most 6 in flight"
    );
    drop(hosts);
    let _ = std::fs::remove_dir_all(&root);
}

/// The SMTP sink (`tests/smtp/sink.py`, aiosmtpd from the venv
/// `scripts/install-smtp` makes), and the directory its messages land in.
struct Sink {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn smtp_sink() -> Sink {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf();
    let dir = std::env::temp_dir().join(format!("engage-crash-smtp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("sink dir");
    let python = root.join("target/smtp/venv/bin/python");
    let mut child = Command::new(&python)
        .arg(root.join("tests/smtp/sink.py"))
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{} ({e}); run scripts/install-smtp", python.display()));
    for _ in 0..200 {
        if let Some(port) = std::fs::read_to_string(dir.join("port"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            return Sink { child, dir, port };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the SMTP sink did not start");
}

impl Sink {
    /// (recipient, Message-ID) of every message taken so far.
    fn received(&self) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("mail")) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .filter_map(|p| {
                let raw = std::fs::read_to_string(&p).ok()?;
                let env: Value =
                    serde_json::from_str(&std::fs::read_to_string(p.with_extension("json")).ok()?)
                        .ok()?;
                let id = raw
                    .lines()
                    .find_map(|l| l.strip_prefix("Message-ID: "))?
                    .trim()
                    .to_owned();
                Some((env["rcpt_tos"][0].as_str()?.to_owned(), id))
            })
            .collect()
    }
}

const MEMBERS: usize = 1000;
/// Sends in flight: the most a crash can repeat.
const SMTP_IN_FLIGHT: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_campaign_of_1000_sends_each_member_once_across_a_sigkill() {
    let sink = smtp_sink().await;
    let data = std::env::temp_dir().join(format!("engage-crash-email-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let http = reqwest::Client::new();
    let server = start(&data).await;
    let b = server.base.clone();
    let t = demo_token(&data, &b, &http).await;
    let provider = json!({ "kind": "smtp", "host": "127.0.0.1", "port": sink.port, "tls": "none",
                           "from": "Shop <shop@example.com>", "max_in_flight": SMTP_IN_FLIGHT });
    let (st, _) = call(
        &http,
        http.put(format!("{b}/v1/providers/mail"))
            .bearer_auth(&t)
            .json(&provider),
    )
    .await;
    assert_eq!(st, 200);
    let route = json!({ "plugin": "router", "config": { "default_provider": "mail" } });
    let (st, _) = call(
        &http,
        http.put(format!("{b}/v1/bindings/route"))
            .bearer_auth(&t)
            .json(&route),
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = call(
        &http,
        http.put(format!("{b}/v1/audiences/sources/web"))
            .bearer_auth(&t)
            .json(&json!({ "name": "Web" })),
    )
    .await;
    assert_eq!(st, 200);
    for i in 0..MEMBERS {
        let email = format!("m{i:04}@example.org");
        let (st, _) = call(
            &http,
            http.post(format!("{b}/v1/players")).bearer_auth(&t).json(
                &json!({ "id": format!("m{i:04}"), "first_name": format!("M{i}"), "email": email }),
            ),
        )
        .await;
        assert_eq!(st, 201);
        let (st, _) = call(
            &http,
            http.post(format!("{b}/v1/audiences/subscriptions"))
                .bearer_auth(&t)
                .json(&json!({ "email": email, "source": "web" })),
        )
        .await;
        assert_eq!(st, 200);
    }
    let campaign = json!({ "name": "News", "channel": "email", "subject": "News for {{first_name}}",
                           "template": "Hello {{first_name}}.", "trigger": { "type": "manual" } });
    define_and_run(&http, &b, &t, "news", &campaign).await;
    // Kill it in the middle of the sends.
    for _ in 0..600 {
        if sink.received().len() >= MEMBERS / 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = sink.received().len();
    assert!(
        before < MEMBERS,
        "the kill came before the end ({before} sent)"
    );
    drop(server); // SIGKILL
    let server = start(&data).await;
    let b = server.base.clone();
    let t = demo_token(&data, &b, &http).await;
    let mut stats = Value::Null;
    for _ in 0..1200 {
        let (_, c) = call(
            &http,
            http.get(format!("{b}/v1/campaigns/news")).bearer_auth(&t),
        )
        .await;
        stats = c["stats"].clone();
        if stats["targeted"] == MEMBERS && sink.received().len() >= MEMBERS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        stats["sent"], MEMBERS,
        "each member's message is made once: {stats}"
    );
    // Let any straggler arrive, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = sink.received();
    let mut by_recipient: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (to, id) in got {
        by_recipient.entry(to).or_default().push(id);
    }
    assert_eq!(by_recipient.len(), MEMBERS, "every member got the e-mail");
    let repeated: Vec<_> = by_recipient
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .collect();
    // SMTP has no idempotency: an e-mail the server took just before the
    // kill, whose send was not yet recorded, goes again after the restart.
    // That is at most the sends in flight, with the same Message-ID, so a
    // receiving system can tell it is the same e-mail.
    assert!(
        repeated.len() <= SMTP_IN_FLIGHT,
        "{} repeated: {repeated:?}",
        repeated.len()
    );
    for (to, ids) in &repeated {
        assert!(ids.len() == 2 && ids[0] == ids[1], "{to}: {ids:?}");
    }
    eprintln!(
        "sent before the kill: {before}; repeated after the restart: {}",
        repeated.len()
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}
