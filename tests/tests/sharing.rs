//! Safe to share: each test attacks the server the way a hostile tenant or
//! an anonymous client would, and checks that every other tenant is served
//! as before and that what the attacker gets is bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engage_tests::{Answer, Server, components, first_grant};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The attacks load the machine on purpose (spinning plugins, floods) and
/// some tests measure latency: they run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A component that instantiates `instances` core modules, each defining
/// `memories` linear memories; it implements no world (the limits are
/// checked before the world is).
fn component(instances: u32, memories: u32) -> Vec<u8> {
    use wasm_encoder::{
        Component, InstanceSection, MemorySection, MemoryType, Module, ModuleArg, ModuleSection,
    };
    let mut module = Module::new();
    if memories > 0 {
        let mut m = MemorySection::new();
        for _ in 0..memories {
            m.memory(MemoryType {
                minimum: 1,
                maximum: None,
                memory64: false,
                shared: false,
                page_size_log2: None,
            });
        }
        module.section(&m);
    }
    let mut c = Component::new();
    c.section(&ModuleSection(&module));
    let mut inst = InstanceSection::new();
    for _ in 0..instances {
        inst.instantiate(0, Vec::<(&str, ModuleArg)>::new());
    }
    c.section(&inst);
    c.finish()
}

fn compiled_files(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(server.config.data_dir.join("plugins/compiled"))
        .expect("compiled dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn bind_hostile(server: &Server, token: &str, limits: Value) {
    let up = server.upload(token, "hostile", components::HOSTILE).await;
    assert_eq!(up.status, 201, "{up:?}");
    let b = server
        .call(
            "PUT",
            "/v1/bindings/rules",
            Some(token),
            Some(json!({ "plugin": "hostile", "limits": limits })),
        )
        .await;
    assert_eq!(b.status, 200, "{b:?}");
}

/// Finding 1: one tenant calling many instances at once used to exhaust
/// the shared pool, failing other tenants' calls (first-party ones too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_tenant_cannot_exhaust_the_instance_pool() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // A small pool, so that the flood would exhaust it many times over.
    let server = Arc::new(Server::start("pool", |c| c.runtime.max_concurrent_instances = 48).await);
    let bad = server.tenant("flood").await;
    let good = server.tenant("good").await;
    let third = server.tenant("third").await;
    let spin = json!({ "timeout_ms": 1500, "fuel": 20_000_000_000u64 });
    bind_hostile(&server, &bad, spin.clone()).await;
    bind_hostile(&server, &good, spin).await;

    let flood: Vec<_> = (0..80)
        .map(|_| {
            let (s, t) = (server.clone(), bad.clone());
            tokio::spawn(async move { s.act(&t, "loop").await.status })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let a = server.act(&good, "ok").await;
        assert_eq!((a.status, first_grant(&a)), (200, Some(1)), "{a:?}");
        let render = server
            .call(
                "POST",
                "/v1/bindings/template/invoke",
                Some(&third),
                Some(json!({ "call": "render", "template": "Hi {{n}}", "vars": [{ "name": "n", "value": "x" }] })),
            )
            .await;
        assert_eq!(render.status, 200, "{render:?}");
        assert_eq!(render.body["output"]["text"], "Hi x");
        slowest = slowest.max(started.elapsed());
    }
    let mut statuses = Vec::new();
    for f in flood {
        statuses.push(f.await.expect("flood task"));
    }
    println!("slowest pair of other tenants' calls during the flood: {slowest:?}");
    // The flood itself is refused as busy (503) or times out (502), never more.
    assert!(
        statuses.iter().all(|s| *s == 502 || *s == 503),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&503),
        "the tenant's share ran out: {statuses:?}"
    );
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
}

/// Findings 1, 2 and 6: a component declaring more instances or memories
/// than a call may have is refused at upload, and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_components_are_refused_and_leave_nothing_behind() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Server::start("shape", |_| {}).await;
    let token = server.tenant("shaper").await;
    let before = compiled_files(&server);
    let many = server.upload(&token, "many", &component(80, 0)).await;
    assert_eq!(many.status, 422, "{many:?}");
    let msg = many.body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("80 core module instances"), "{msg}");
    // Five memories: refused before compiling, like the instances.
    let mems = server.upload(&token, "mems", &component(5, 1)).await;
    assert_eq!(mems.status, 422, "{mems:?}");
    let msg = mems.body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("5 linear memories"), "{msg}");
    assert_eq!(compiled_files(&server), before);
    for name in ["many", "mems"] {
        let got = server
            .call("GET", &format!("/v1/plugins/{name}"), Some(&token), None)
            .await;
        assert_eq!(got.status, 404, "{got:?}");
    }
    // The tenant's real plugins still upload and run.
    bind_hostile(&server, &token, json!({})).await;
    assert_eq!(first_grant(&server.act(&token, "ok").await), Some(1));
}

/// Finding 3: a deadline holds while other tenants' plugins spin on every
/// core (the ticker used to fall behind: 6 s calls lasted 7–22 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_hold_with_every_core_spinning() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Arc::new(Server::start("deadline", |_| {}).await);
    let mut spinners = Vec::new();
    for i in 0..3 {
        let t = server.tenant(&format!("spin{i}")).await;
        bind_hostile(
            &server,
            &t,
            json!({ "timeout_ms": 5000, "fuel": 20_000_000_000u64 }),
        )
        .await;
        for _ in 0..6 {
            let (s, t) = (server.clone(), t.clone());
            spinners.push(tokio::spawn(async move { s.act(&t, "loop").await.status }));
        }
    }
    let timed = server.tenant("timed").await;
    bind_hostile(
        &server,
        &timed,
        json!({ "timeout_ms": 3000, "fuel": 20_000_000_000u64 }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let a = server.act(&timed, "loop").await;
    let took = started.elapsed();
    println!("a 3 s deadline with 18 spinning calls ended after {took:?}");
    assert_eq!(a.status, 502, "{a:?}");
    assert_eq!(
        a.body["error"]["details"]["error"]["kind"], "timeout",
        "{a:?}"
    );
    assert!(took < Duration::from_millis(3500), "{took:?}");
    for s in spinners {
        assert_eq!(s.await.expect("spinner"), 502);
    }
}

/// Finding 5: what a plugin puts in an error or its logs is capped in the
/// answer (a 20 MiB message gave a 44 MB body; log fields 226–344 MB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_errors_and_logs_reach_answers_bounded() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Server::start("bounded", |_| {}).await;
    let token = server.tenant("loud").await;
    bind_hostile(
        &server,
        &token,
        json!({ "timeout_ms": 2000, "fuel": 20_000_000_000u64 }),
    )
    .await;
    let size = |a: &Answer| serde_json::to_vec(&a.body).map(|v| v.len()).unwrap_or(0);
    let e = server.act(&token, "error-huge").await;
    assert_eq!(e.status, 502, "{}", &e.body.to_string()[..200]);
    assert_eq!(e.body["error"]["details"]["error"]["kind"], "guest");
    println!("20 MiB plugin error → {} byte answer", size(&e));
    assert!(size(&e) < 8 << 10, "{} bytes", size(&e));
    let l = server.act(&token, "log-fields").await;
    assert_eq!(l.status, 502);
    println!("64 lines × 16 fields × 256 KiB → {} byte answer", size(&l));
    assert!(size(&l) < 160 << 10, "{} bytes", size(&l));
    let logs = l.body["error"]["details"]["logs"].as_array().expect("logs");
    assert!(!logs.is_empty());
    assert!(logs[0]["fields"][0][1].as_str().unwrap_or_default().len() <= 256);
}

/// Finding 4: a tenant's plugins cannot fill the disk through the
/// key-value store (six actions wrote 750 MB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_value_store_has_a_quota_per_tenant() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Server::start("kvquota", |c| {
        c.runtime.kv_max_bytes_per_tenant = 100 << 20;
    })
    .await;
    let token = server.tenant("hoarder").await;
    bind_hostile(&server, &token, json!({ "timeout_ms": 5000 })).await;
    server.player(&token, "p1").await;
    let fill = |batch: usize| {
        server.call(
            "POST",
            "/v1/actions",
            Some(&token),
            Some(json!({ "player": "p1", "action": "kv-fill", "params": { "batch": batch.to_string() } })),
        )
    };
    // 1,000 × 64 KiB is 64 MiB: the first batch fits in 100 MiB, the second not.
    let first = fill(0).await;
    assert_eq!(first.status, 200, "{first:?}");
    for batch in 1..6 {
        let refused = fill(batch).await;
        assert_eq!(refused.status, 507, "{refused:?}");
        assert_eq!(refused.body["error"]["code"], "quota_exceeded");
    }
    // Nothing of the refused actions was written: no point either.
    assert_eq!(server.balance(&token, "p1").await, 1);
    let bytes = dir_size(&server.config.data_dir);
    println!("data directory after six 64 MiB fills: {} MB", bytes >> 20);
    // Without the quota the six fills stored 384 MiB.
    assert!(bytes < 250 << 20, "{bytes}");
    // Rewriting the same keys does not grow the usage: still accepted.
    assert_eq!(fill(0).await.status, 200);
    // Another tenant's plugins have their own quota.
    let other = server.tenant("neighbour").await;
    bind_hostile(&server, &other, json!({ "timeout_ms": 5000 })).await;
    server.player(&other, "p1").await;
    let theirs = server
        .call(
            "POST",
            "/v1/actions",
            Some(&other),
            Some(json!({ "player": "p1", "action": "kv-fill", "params": { "batch": "0" } })),
        )
        .await;
    assert_eq!(theirs.status, 200, "{theirs:?}");
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Finding 7: a rules plugin cannot mint without bound (one action granted
/// 4·10¹⁵ points), and balances cannot overflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_per_action_are_capped_and_balances_cannot_overflow() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Server::start("mint", |_| {}).await;
    let token = server.tenant("minter").await;
    bind_hostile(&server, &token, json!({})).await;
    server.player(&token, "p1").await;
    let act = |name: &str| {
        server.call(
            "POST",
            "/v1/actions",
            Some(&token),
            Some(json!({ "player": "p1", "action": name })),
        )
    };
    let a = act("mint").await;
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (422, Some("grant_limit_exceeded")),
        "{a:?}"
    );
    let b = act("mint-two").await;
    assert_eq!(b.status, 422, "{b:?}");
    assert_eq!(server.balance(&token, "p1").await, 0, "nothing was granted");
    // The tenant raises its own limit: the same answer is then accepted.
    let set = server
        .call(
            "PUT",
            "/v1/actions/settings",
            Some(&token),
            Some(json!({ "max_grants": 64, "max_total_per_currency": 2_000_000_000i64 })),
        )
        .await;
    assert_eq!(set.status, 200, "{set:?}");
    assert_eq!(act("mint-two").await.status, 200);
    assert_eq!(server.balance(&token, "p1").await, 1_200_000_000);
    let bad = server
        .call(
            "PUT",
            "/v1/actions/settings",
            Some(&token),
            Some(json!({ "max_grants": 0, "max_total_per_currency": 1 })),
        )
        .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    // Credits up to the balance ceiling, then a clear refusal.
    server.player(&token, "p2").await;
    for _ in 0..=1000 {
        let c = server
            .call(
                "POST",
                "/v1/ledger/credit",
                Some(&token),
                Some(json!({ "player": "p2", "amount": 1_000_000_000_000i64 })),
            )
            .await;
        if c.status != 201 {
            assert_eq!(c.status, 422, "{c:?}");
            assert_eq!(c.body["error"]["code"], "balance_too_large");
            return;
        }
    }
    panic!("a balance grew past 10^15");
}

/// Finding 8: control characters from a template (or a client) do not
/// reach a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_carry_no_control_characters() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Server::start("controls", |_| {}).await;
    let token = server.demo_token().await;
    let sent = server
        .call(
            "POST",
            "/v1/messages",
            Some(&token),
            Some(json!({
                "to": ["+6681234567"],
                "template": "Code: {{code}}",
                "vars": { "code": "12\u{0}\u{1b}[2J\u{202e}34\r\nbye" },
            })),
        )
        .await;
    assert_eq!(sent.status, 202, "{sent:?}");
    let body = sent.body["messages"][0]["body"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(body, "Code: 12[2J34\nbye", "{sent:?}");
}

/// Finding 12: a stored control character cannot make an XML answer
/// unparseable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_answers_stay_well_formed_with_stored_control_characters() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Server::start("xmlctl", |_| {}).await;
    let token = server.demo_token().await;
    let admin = server
        .call(
            "POST",
            "/v1/gateway/accounts",
            Some(&token),
            Some(json!({ "username": "admin", "password": "s3cret", "level": "admin", "name": "Admin", "email": "admin@example.com" })),
        )
        .await;
    assert_eq!(admin.status, 201, "{admin:?}");
    let server = &server;
    let ws = |q: String| async move {
        server
            .call("GET", &format!("/playsms/index.php?app=ws&{q}"), None, None)
            .await
    };
    let t = ws("op=get_token&u=admin&p=s3cret".into()).await;
    let h = t.body["token"].as_str().expect("token").to_owned();
    let inj = ws(format!(
        "u=admin&h={h}&op=inject&from=%2B6281234567&msg=hi%1B%5B31m%00there%0Bnow"
    ))
    .await;
    assert_eq!(inj.body["error"], "0", "{inj:?}");
    let xml = server
        .http
        .get(format!(
            "{}/playsms/index.php?app=ws&u=admin&h={h}&op=sx&format=xml",
            server.base
        ))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    // What an XML 1.0 parser refuses: any C0 control but tab, LF and CR.
    let bad: Vec<char> = xml
        .chars()
        .filter(|c| (*c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    assert!(bad.is_empty(), "{bad:?} in {xml}");
    assert!(
        xml.contains("<msg>hi\u{FFFD}[31m\u{FFFD}there\u{FFFD}now</msg>"),
        "{xml}"
    );
}

/// Finding 9: a huge password costs nothing, and password checks run off
/// the async workers (a 1 MiB password took 10–15 s of CPU and stalled
/// `/health` for 9 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_passwords_cost_nothing_and_logins_do_not_stall_the_server() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Arc::new(Server::start("pbkdf2", |_| {}).await);
    let token = server.demo_token().await;
    let admin = server
        .call(
            "POST",
            "/v1/gateway/accounts",
            Some(&token),
            Some(json!({ "username": "admin", "password": "s3cret", "level": "admin", "name": "Admin", "email": "admin@example.com" })),
        )
        .await;
    assert_eq!(admin.status, 201, "{admin:?}");
    let huge = "x".repeat(1 << 20);
    let login = |pw: String| {
        let s = server.clone();
        async move {
            let started = Instant::now();
            let a = s
                .send(s.request("POST", "/playsms/index.php", None).form(&[
                    ("app", "ws"),
                    ("op", "get_token"),
                    ("u", "admin"),
                    ("p", &pw),
                ]))
                .await;
            (a, started.elapsed())
        }
    };
    let (a, took) = login(huge.clone()).await;
    assert_eq!(a.body["error"], "100", "{a:?}");
    println!("get_token with a 1 MiB password: {took:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    // Two in flight, and many ordinary wrong ones: /health stays prompt.
    let busy: Vec<_> = (0..2)
        .map(|_| tokio::spawn(login(huge.clone())))
        .chain((0..6).map(|i| tokio::spawn(login(format!("wrong{i}")))))
        .collect();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(server.call("GET", "/health", None, None).await.status, 200);
        slowest = slowest.max(started.elapsed());
    }
    for b in busy {
        let _ = b.await.expect("login task");
    }
    println!("slowest /health during logins: {slowest:?}");
    // Hashing on the async workers stalled /health for seconds; 20–55 ms is
    // this debug build's scheduling on a shared two-core machine. The bound
    // tells the two apart; latency itself is benchmarked, not asserted.
    assert!(slowest < Duration::from_millis(250), "{slowest:?}");
    // An unknown name costs a hash too: names cannot be told by timing
    // (was 4.3 ms for a known name, 0.15 ms for an unknown one).
    let timed = |u: String| {
        let s = server.clone();
        async move {
            let started = Instant::now();
            let a = s
                .send(s.request("POST", "/playsms/index.php", None).form(&[
                    ("app", "ws"),
                    ("op", "get_token"),
                    ("u", u.as_str()),
                    ("p", "not-it"),
                ]))
                .await;
            assert_eq!(a.body["error"], "100", "{a:?}");
            started.elapsed()
        }
    };
    let alice = server
        .call(
            "POST",
            "/v1/gateway/accounts",
            Some(&token),
            Some(json!({ "username": "alice", "password": "s3cret", "level": "user", "name": "Alice", "email": "alice@example.com" })),
        )
        .await;
    assert_eq!(alice.status, 201, "{alice:?}");
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..7 {
        known.push(timed("alice".into()).await);
        unknown.push(timed(format!("nobody{i}")).await);
    }
    known.sort();
    unknown.sort();
    println!(
        "get_token, median: known name {:?}, unknown name {:?}",
        known[3], unknown[3]
    );
    assert!(
        unknown[3] * 2 > known[3] && known[3] * 2 > unknown[3],
        "{known:?} {unknown:?}"
    );
}

/// Finding 11: guessing is slowed to the configured rate; the right
/// credential works again after the lockout window; other tenants are
/// served as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_guessing_is_locked_out_then_allowed_again() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Arc::new(
        Server::start("lockout", |c| {
            c.auth.max_failures_per_login = 5;
            c.auth.max_failures_per_address = 10_000;
            c.auth.window_ms = 1500;
        })
        .await,
    );
    let (key, secret) = server.demo_credentials();
    let try_secret = |s: &str| {
        server.call(
            "POST",
            "/v1/auth/token",
            None,
            Some(json!({ "api_key": key, "api_secret": s })),
        )
    };
    for _ in 0..5 {
        assert_eq!(try_secret("guess").await.status, 401);
    }
    let locked = try_secret(&secret).await;
    assert_eq!(
        locked.status, 429,
        "even the right secret waits: {locked:?}"
    );
    assert_eq!(locked.body["error"]["code"], "too_many_attempts");
    // The same lockout through the Playbasis API, in its own envelope.
    let pb = server
        .send(
            server
                .request("POST", "/playbasis/Auth", None)
                .form(&[("api_key", key.as_str()), ("api_secret", secret.as_str())]),
        )
        .await;
    assert_eq!(
        (pb.body["success"].as_bool(), pb.body["error_code"].as_str()),
        (Some(false), Some("0901")),
        "{pb:?}"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(try_secret(&secret).await.status, 200, "the window ended");

    // A flood of guesses against one tenant while another works.
    let other = server.tenant("bystander").await;
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let (s, k) = (server.clone(), key.clone());
            tokio::spawn(async move {
                let mut refused = 0;
                for _ in 0..150 {
                    let a = s
                        .call(
                            "POST",
                            "/v1/auth/token",
                            None,
                            Some(json!({ "api_key": k, "api_secret": "guess" })),
                        )
                        .await;
                    refused += usize::from(a.status == 429);
                }
                refused
            })
        })
        .collect();
    let mut times = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        let a = server.call("GET", "/v1/bindings", Some(&other), None).await;
        assert_eq!(a.status, 200);
        times.push(started.elapsed());
    }
    let mut refused = 0;
    for f in flood {
        refused += f.await.expect("flood");
    }
    times.sort();
    let p99 = times[98];
    println!("1,200 guesses ({refused} refused at once); bystander p99 {p99:?}");
    assert!(refused >= 1100, "{refused}");
    assert!(p99 < Duration::from_millis(50), "{p99:?}");
}

/// Finding 10: slow and idle connections are closed, and cannot take all
/// the server's connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_and_cannot_lock_others_out() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Server::start("loris", |c| {
        c.http.header_timeout_ms = 1000;
        c.http.body_timeout_ms = 1000;
        c.http.max_connections = 64;
    })
    .await;
    let addr = server.running.as_ref().expect("running").addr;
    // 100 idle sockets (more than the cap) and one sending a byte at a time.
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    let loris = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let started = Instant::now();
        for b in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if s.write_all(&[*b]).await.is_err() || started.elapsed() > Duration::from_secs(6) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        started.elapsed()
    });
    // A well-behaved client gets in once the timeouts free a slot.
    let started = Instant::now();
    let h = tokio::time::timeout(
        Duration::from_secs(5),
        server.call("GET", "/health", None, None),
    )
    .await
    .expect("answered while the attack runs");
    assert_eq!(h.status, 200);
    println!(
        "a client got an answer after {:?} behind 100 idle sockets",
        started.elapsed()
    );
    let lasted = loris.await.expect("loris");
    println!("the slow client was cut off after {lasted:?}");
    assert!(lasted < Duration::from_secs(3), "{lasted:?}");
    // Every idle socket was closed by the server.
    let mut closed = 0;
    for mut s in idle {
        let mut buf = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 100);
    // A body that trickles is cut off too.
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"POST /v1/auth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .await
        .expect("head");
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    println!(
        "a trickling body was answered after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let answer = String::from_utf8_lossy(&buf);
    assert!(
        answer.contains("\"invalid_body\""),
        "in the API's own format: {answer}"
    );
}

/// Finding 10: a body over the limit is refused in each API's own format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_in_each_apis_format() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Server::start("bodies", |_| {}).await;
    let (key, _) = server.demo_credentials();
    let big = "x".repeat(3 << 20);
    let native = server
        .send(
            server
                .request("POST", "/v1/auth/token", None)
                .body(big.clone()),
        )
        .await;
    assert_eq!(
        (native.status, native.body["error"]["code"].as_str()),
        (413, Some("body_too_large")),
        "{native:?}"
    );
    let attentive = server
        .send(
            server
                .request("POST", "/attentive/v1/subscriptions", Some(&key))
                .header("content-type", "application/json")
                .body(big.clone()),
        )
        .await;
    assert_eq!(
        (
            attentive.status,
            attentive.body["errors"][0]["code"].as_str()
        ),
        (413, Some("INVALID_REQUEST")),
        "{attentive:?}"
    );
    let bsg = server
        .send(
            server
                .request("POST", "/bsg/rest/viber/create", None)
                .header("x-api-key", &key)
                .body(big.clone()),
        )
        .await;
    assert_eq!(
        (bsg.status, bsg.body["error"].as_i64()),
        (413, Some(1)),
        "{bsg:?}"
    );
    let pv = server
        .send(
            server
                .request("POST", "/playsms/index.php?app=ws&op=pv", None)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(big),
        )
        .await;
    assert_eq!(
        (pv.body["status"].as_str(), pv.body["error"].as_str()),
        (Some("ERR"), Some("102")),
        "{pv:?}"
    );
}

/// Finding 13: under concurrent load with a real subscriber, no request is
/// dropped (a span held across an await made tracing-subscriber panic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_answered_under_load_with_tracing_on() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_writer(std::io::sink)
        .try_init();
    let server = Arc::new(Server::start("spans", |_| {}).await);
    let token = server.demo_token().await;
    server.player(&token, "p1").await;
    let codes: Vec<String> = (0..400).map(|i| format!("code-{i}")).collect();
    server.goods(&token, "coupon", 1, &codes).await;
    server.credit(&token, "p1", 1_000_000).await;
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (s, t) = (server.clone(), token.clone());
            tokio::spawn(async move {
                let mut answered = 0;
                for j in 0..30 {
                    let a = match (i + j) % 3 {
                        0 => {
                            s.call(
                                "POST",
                                "/v1/actions",
                                Some(&t),
                                Some(json!({ "player": "p1", "action": "buy" })),
                            )
                            .await
                        }
                        1 => {
                            s.call(
                                "POST",
                                "/v1/goods/coupon/redeem",
                                Some(&t),
                                Some(json!({ "player": "p1" })),
                            )
                            .await
                        }
                        _ => {
                            s.call(
                                "POST",
                                "/v1/messages",
                                Some(&t),
                                Some(json!({ "to": ["+6681234567"], "body": "hi" })),
                            )
                            .await
                        }
                    };
                    assert!(a.status < 500, "{a:?}");
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    let mut answered = 0;
    for t in tasks {
        answered += t.await.expect("no request lost");
    }
    assert_eq!(answered, 32 * 30);
}

/// Finding 14: a day of churn (logins, expiring plugin keys, idempotent
/// calls) leaves the store where it started once the sweeper has run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_stops_growing_under_churn() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Server::start("churn", |_| {}).await;
    let (key, secret) = server.demo_credentials();
    let first = server.token(&key, &secret).await;
    bind_hostile(&server, &first, json!({ "timeout_ms": 2000 })).await;
    server.player(&first, "p1").await;
    let store = server.state().store.clone();
    let mut sweeper = engage::sweeper::Sweeper::new(
        store,
        engage::sweeper::RetentionConfig::default(),
        engage::server::sweeps(),
    );
    let census =
        |s: &engage::sweeper::Sweeper| -> Vec<(&'static str, u64)> { s.census().expect("census") };
    let nothing: Vec<(&'static str, u64)> =
        census(&sweeper).into_iter().map(|(n, _)| (n, 0)).collect();
    let mut sizes = Vec::new();
    for round in 0..6 {
        // Every round is "a few hours" of a busy tenant.
        for _ in 0..100 {
            let _ = server.token(&key, &secret).await;
        }
        let token = server.token(&key, &secret).await;
        for i in 0..20 {
            let a = server
                .call(
                    "POST",
                    "/v1/actions",
                    Some(&token),
                    Some(json!({ "player": "p1", "action": "kv-ttl", "params": { "batch": format!("{round}-{i}") } })),
                )
                .await;
            assert_eq!(a.status, 200, "{a:?}");
            let p = server
                .send(
                    server
                        .request("POST", "/v1/players", Some(&token))
                        .header("idempotency-key", format!("k-{round}-{i}"))
                        .json(&json!({ "id": format!("c{round}x{i}") })),
                )
                .await;
            assert_eq!(p.status, 201, "{p:?}");
        }
        let grown = census(&sweeper);
        // Four days later everything of this round has expired.
        let later = engage::ids::now_ms() + 4 * 86_400_000;
        let removed = sweeper.sweep_all(later).await.expect("sweep");
        let after = census(&sweeper);
        println!("round {round}: {grown:?} → removed {removed} → {after:?}");
        assert!(removed >= 100 + 20 * 50 + 20, "{removed}");
        assert_eq!(
            after, nothing,
            "everything of the round expired and was swept"
        );
        sizes.push(dir_size(&server.config.data_dir));
    }
    println!(
        "data directory per round: {:?} KB",
        sizes.iter().map(|s| s >> 10).collect::<Vec<_>>()
    );
    // The file reuses the pages the sweeper freed: it stops growing. It may
    // also shrink for a round (redb trims a free end of the file, which
    // depends on where the writer's batches put their pages), so the bound
    // is the high-water mark of the first three rounds, not round 2 alone.
    let early = sizes[..3].iter().copied().max().unwrap_or(0);
    assert!(sizes[5] <= early + early / 10, "{sizes:?}");
}

/// Finding 14: provider credentials are sealed at rest, and open again
/// after a restart with the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_credentials_are_not_stored_in_clear() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Server::start("sealed", |_| {}).await;
    let token = server.demo_token().await;
    let put = server
        .call(
            "PUT",
            "/v1/providers/twilio",
            Some(&token),
            Some(json!({ "kind": "twilio", "account_sid": "AC123", "auth_token": "tok-SECRET-4711", "from": "+15005550006" })),
        )
        .await;
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(put.body["provider"]["auth_token"], "***");
    let server = server.restart().await;
    let needle = b"tok-SECRET-4711";
    let mut files = vec![server.config.data_dir.clone()];
    while let Some(p) = files.pop() {
        for e in std::fs::read_dir(&p).expect("dir").flatten() {
            let path = e.path();
            if path.is_dir() {
                files.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} holds the credential in clear",
                    path.display()
                );
            }
        }
    }
    // The restarted server opens them again.
    let token = server.demo_token().await;
    let list = server
        .call("GET", "/v1/providers", Some(&token), None)
        .await;
    assert_eq!(list.status, 200, "{list:?}");
    assert_eq!(
        list.body["providers"][0]["provider"]["account_sid"], "AC123",
        "{list:?}"
    );
}
