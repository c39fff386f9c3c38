//! The plugin authoring kit as an author uses it: `engage plugin new`,
//! `test` (which builds), `run`, `upload`, `bind` and then a real request
//! through the server that the new plugin decides, in Rust (every world),
//! Python and JavaScript; then `invocations` and `replay` of what the
//! server recorded, and a percentage rollout.
//!
//! Toolchains: cargo builds the Rust projects into one shared target
//! directory (`target/kit-projects`); componentize-py and componentize-qjs
//! are installed by the kit itself into `target/kit-toolchains` on first use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use engage::config::ServerConfig;
use serde_json::{Value, json};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// Run `engage ARGS` in `cwd`; exit code, stdout, stderr.
fn engage(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let target = workspace().join("target");
    let out = Command::new(env!("CARGO_BIN_EXE_engage"))
        .current_dir(cwd)
        .args(args)
        .env("ENGAGE_LOG", "warn")
        .env("NO_COLOR", "1")
        .env("CARGO_TARGET_DIR", target.join("kit-projects"))
        .env("ENGAGE_TOOLCHAINS", target.join("kit-toolchains"))
        .output()
        .expect("run engage");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn engage_async(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let cwd = cwd.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        engage(&cwd, &args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .expect("cli task")
}

struct Api {
    base: String,
    http: reqwest::Client,
    token: String,
    key: String,
    secret: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("answer");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    fn auth(&self) -> Vec<String> {
        vec![
            "--server".into(),
            self.base.clone(),
            "--api-key".into(),
            self.key.clone(),
            "--api-secret".into(),
            self.secret.clone(),
        ]
    }
}

async fn start(tag: &str) -> (engage::server::Running, Api, PathBuf) {
    let data =
        std::env::temp_dir().join(format!("engage-kit-{tag}-{}", engage::ids::random_hex(6)));
    let config = ServerConfig {
        data_dir: data.clone(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..ServerConfig::default()
    };
    let running = engage::server::start(&config).await.expect("server starts");
    let base = format!("http://{}", running.addr);
    let creds: Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("credentials.json")).expect("credentials"),
    )
    .expect("json");
    let http = reqwest::Client::new();
    let made: Value = http
        .post(format!("{base}/admin/tenants"))
        .bearer_auth(creds["admin_token"].as_str().unwrap_or_default())
        .json(&json!({ "name": tag }))
        .send()
        .await
        .expect("tenant")
        .json()
        .await
        .expect("json");
    let (key, secret) = (
        made["api_key"].as_str().unwrap_or_default().to_owned(),
        made["api_secret"].as_str().unwrap_or_default().to_owned(),
    );
    let token: Value = http
        .post(format!("{base}/v1/auth/token"))
        .json(&json!({ "api_key": key, "api_secret": secret }))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let api = Api {
        base,
        http,
        token: token["token"].as_str().unwrap_or_default().to_owned(),
        key,
        secret,
    };
    (running, api, data)
}

/// `new`, `test`, `run`, `upload`, `bind` (a bad config refused first):
/// the component's path.
#[allow(clippy::too_many_arguments)]
async fn make_and_bind(
    api: &Api,
    dir: &Path,
    name: &str,
    world: &str,
    lang: &str,
    point: &str,
    config: &str,
    bad_config: &str,
) -> PathBuf {
    let project = dir.join(name);
    let (code, out, err) = engage_async(
        dir,
        &["plugin", "new", name, "--world", world, "--lang", lang],
    )
    .await;
    assert_eq!(code, 0, "new {lang} {world}: {out}{err}");
    for f in [
        "engage-plugin.toml",
        "README.md",
        "fixtures/example.json",
        "wit/since_v0.2.0/host.wit",
    ] {
        assert!(project.join(f).exists(), "{f}");
    }

    let (code, out, err) = engage_async(&project, &["plugin", "test"]).await;
    assert_eq!(code, 0, "test {lang} {world}: {out}{err}");
    assert!(out.contains("1 passed, 0 failed"), "{out}");
    let component = project.join("build").join(format!("{name}.wasm"));
    assert!(component.exists());

    // `run` on the fixture's input prints the report and usage.
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(project.join("fixtures/example.json")).expect("fixture"),
    )
    .expect("json");
    std::fs::write(project.join("input.json"), fixture["input"].to_string()).expect("input");
    let wasm = component.to_string_lossy().into_owned();
    let (code, out, err) =
        engage_async(&project, &["plugin", "run", &wasm, "--input", "input.json"]).await;
    assert_eq!(code, 0, "run: {out}{err}");
    for label in [
        "config check  ok",
        "usage",
        "fuel",
        "memory",
        "wall time",
        "module",
        "result        ok",
    ] {
        assert!(out.contains(label), "`{label}` in {out}");
    }

    let mut args = vec![
        "plugin".to_string(),
        "upload".into(),
        name.into(),
        wasm.clone(),
    ];
    args.extend(api.auth());
    let (code, out, err) = engage_async(
        &project,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(code, 0, "upload: {out}{err}");
    let up: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (up["world"].as_str(), up["wit"].as_str()),
        (Some(world), Some("0.2.0"))
    );

    // The plugin's own config check refuses a config it cannot use.
    let bind = |config: &str| {
        let mut args: Vec<String> = ["plugin", "bind", point, name, "--plugin-config", config]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(api.auth());
        args
    };
    let args = bind(bad_config);
    let (code, out, err) = engage_async(
        &project,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("config_rejected") && err.contains("nothing was bound"),
        "{err}"
    );
    let args = bind(config);
    let (code, out, err) = engage_async(
        &project,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(code, 0, "bind: {out}{err}");
    component
}

async fn balance(api: &Api, player: &str) -> i64 {
    let (_, p) = api
        .call("GET", &format!("/v1/players/{player}/balances"), None)
        .await;
    p["balances"]["points"].as_i64().unwrap_or(0)
}

/// A rules plugin decides real actions: 10 points a `buy`, 3 a day.
async fn rules_decide(api: &Api, player: &str) {
    let (s, b) = api
        .call("POST", "/v1/players", Some(json!({ "id": player })))
        .await;
    assert_eq!(s, 201, "{b}");
    for _ in 0..4 {
        let (s, b) = api
            .call(
                "POST",
                "/v1/actions",
                Some(json!({ "player": player, "action": "buy" })),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }
    assert_eq!(
        balance(api, player).await,
        30,
        "3 awards of 10, the fourth capped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_plugins_for_every_world_from_an_empty_folder() {
    let (running, api, data) = start("kit-rust").await;
    let dir = data.join("projects");
    std::fs::create_dir_all(&dir).expect("dir");

    let started = Instant::now();
    make_and_bind(
        &api,
        &dir,
        "my-rules",
        "rules",
        "rust",
        "rules",
        r#"{"points":10}"#,
        r#"{"pionts":10}"#,
    )
    .await;
    rules_decide(&api, "p1").await;
    eprintln!(
        "rust rules: plugin new to a bound plugin answering its first request in {:?}",
        started.elapsed()
    );

    other_worlds_decide(&api, &dir, "rust", "my").await;

    invocations_and_replay(&api, &dir).await;
    deploy_as_a_canary_then_for_everyone(&api, &dir).await;

    running.stop().await.expect("stop");
    let _ = std::fs::remove_dir_all(&data);
}

/// Gift hooks, templating and routing in `lang`, made, bound and deciding
/// real requests: a second gift request of the day refused, a message
/// rendered and routed.
async fn other_worlds_decide(api: &Api, dir: &Path, lang: &str, prefix: &str) {
    let (g1, g2) = (format!("{prefix}-g1"), format!("{prefix}-g2"));
    // Gift hooks: one request a day.
    make_and_bind(
        api,
        dir,
        &format!("{prefix}-gifts"),
        "gift-hooks",
        lang,
        "gift",
        r#"{"requests_per_day":1}"#,
        r#"{"requests_per_day":"one"}"#,
    )
    .await;
    for p in [g1.as_str(), g2.as_str()] {
        assert_eq!(
            api.call("POST", "/v1/players", Some(json!({ "id": p })))
                .await
                .0,
            201
        );
    }
    let (s, b) = api
        .call(
            "PUT",
            &format!("/v1/players/{g1}/friends"),
            Some(json!({ "friends": [{ "mode": "player", "id": g2 }] })),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = api
        .call("POST", &format!("/v1/players/{g1}/gifts"), Some(json!({})))
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = api
        .call("POST", &format!("/v1/players/{g1}/gifts"), Some(json!({})))
        .await;
    assert_eq!(
        (s, b["error"]["details"]["code_str"].as_str()),
        (422, Some("E_GIFT_QUOTA_EXCEEDED")),
        "{b}"
    );

    // Templating and routing: a message rendered and routed by them.
    make_and_bind(
        api,
        dir,
        &format!("{prefix}-template"),
        "templating",
        lang,
        "template",
        r#"{"missing":"keep"}"#,
        r#"{"missing":"drop"}"#,
    )
    .await;
    make_and_bind(
        api,
        dir,
        &format!("{prefix}-route"),
        "routing",
        lang,
        "route",
        r#"{"provider":"console"}"#,
        r#"{"provider":"console","fallback":true}"#,
    )
    .await;
    let (s, m) = api
        .call("POST", "/v1/messages", Some(json!({ "to": ["+6681234567"], "template": "Hi {{name}} {{unknown}}", "vars": { "name": "Ann" }, "reference": format!("kit-{prefix}") })))
        .await;
    assert!(s < 300, "{m}");
    let mut shown = Value::Null;
    for _ in 0..100 {
        let (_, list) = api
            .call("GET", &format!("/v1/messages?reference=kit-{prefix}"), None)
            .await;
        shown = list["messages"][0].clone();
        if shown["attempts"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(shown["body"], "Hi Ann {{unknown}}", "{shown}");
    assert_eq!(shown["attempts"][0]["provider"], "console", "{shown}");
}

/// The SDK's helpers for JSON values, deletes and the host's views, in
/// `lang` (python or js): a rules project changed to use them, run on
/// given views.
async fn sdk_helpers_work(dir: &Path, lang: &str) {
    let name = format!("{lang}-helpers");
    let (code, out, err) = engage_async(
        dir,
        &["plugin", "new", &name, "--world", "rules", "--lang", lang],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let project = dir.join(&name);
    let (file, from, to) = match lang {
        "python" => (
            "app.py",
            "        config = sdk.config(DEFAULTS)\n",
            "        config = sdk.config(DEFAULTS)\n        sdk.set_json(\"j\", {\"n\": sdk.balance(action.player), \"c\": sdk.action_count(action.player, \"buy\", 2), \"s\": \"é\"})\n        sdk.info(\"seen\", n=sdk.get_json(\"j\")[\"n\"], c=sdk.get_json(\"j\")[\"c\"], s=sdk.get_json(\"j\")[\"s\"])\n        sdk.delete(\"gone\")\n",
        ),
        _ => (
            "app.js",
            "    const cfg = config(DEFAULTS);\n",
            "    const cfg = config(DEFAULTS);\n    setJson(\"j\", { n: balance(action.player), c: actionCount(action.player, \"buy\", 2), s: \"é\" });\n    const j = getJson(\"j\");\n    info(\"seen\", { n: j.n, c: j.c, s: j.s });\n    remove(\"gone\");\n",
        ),
    };
    let path = project.join(file);
    let text = std::fs::read_to_string(&path).expect("source");
    let text = text.replace(from, to).replace(
        "import { config, counter,",
        "import { actionCount, balance, getJson, remove, setJson, config, counter,",
    );
    std::fs::write(&path, text).expect("write");
    let (code, out, err) = engage_async(&project, &["plugin", "build"]).await;
    assert_eq!(code, 0, "{out}{err}");
    std::fs::write(
        project.join("views.json"),
        r#"{"balances":{"p1":{"points":42}},"actions":{"p1":{"buy":[1,2,3]}}}"#,
    )
    .expect("views");
    std::fs::write(
        project.join("input.json"),
        r#"{"player":"p1","name":"buy","params":[],"url":null,"time_ms":1700000000000}"#,
    )
    .expect("input");
    let wasm = format!("build/{name}.wasm");
    let (code, out, err) = engage_async(
        &project,
        &[
            "plugin",
            "run",
            &wasm,
            "--input",
            "input.json",
            "--views",
            "views.json",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).expect("json");
    let seen = &report["logs"][0];
    assert_eq!(seen["message"], "seen", "{report}");
    let field = |k: &str| {
        seen["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f[0] == k)
            .map(|f| f[1].clone())
    };
    assert_eq!(
        (field("n"), field("c"), field("s")),
        (Some(json!("42")), Some(json!("2")), Some(json!("é"))),
        "{report}"
    );
    assert_eq!(
        report["kv_writes"].get("gone"),
        Some(&Value::Null),
        "a delete: {report}"
    );
}

/// What the server recorded of `my-rules`' calls, replayed locally on the
/// same build: the same answer, exactly; on a changed build: the diff.
async fn invocations_and_replay(api: &Api, dir: &Path) {
    let project = dir.join("my-rules");
    let mut args: Vec<String> = ["plugin", "invocations", "my-rules"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(api.auth());
    // The recorder writes in the background.
    let mut listed = Value::Null;
    for _ in 0..40 {
        let (code, out, err) = engage_async(
            &project,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(code, 0, "{out}{err}");
        listed = serde_json::from_str(&out).expect("json");
        if listed["invocations"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let first = listed["invocations"][0].clone();
    assert_eq!(
        (first["plugin"].as_str(), first["call"].as_str()),
        (Some("my-rules"), Some("evaluate")),
        "{listed}"
    );
    let id = first["id"].as_str().unwrap_or_default().to_owned();
    let (s, record) = api
        .call("GET", &format!("/v1/invocations/{id}"), None)
        .await;
    assert_eq!(s, 200, "{record}");
    assert!(
        record["reads"].as_array().is_some_and(|r| !r.is_empty()),
        "the daily counter was read: {record}"
    );

    let wasm = project
        .join("build/my-rules.wasm")
        .to_string_lossy()
        .into_owned();
    let mut args: Vec<String> = ["plugin", "replay", &id, &wasm, "--json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(api.auth());
    let (code, out, err) = engage_async(
        &project,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let replay: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(replay["same"], true, "{replay}");
    assert_eq!(
        replay["output"], record["output"],
        "exactly production's output"
    );

    // A changed build: 20 points. The replay shows where it differs.
    let src = project.join("src/lib.rs");
    let code_text = std::fs::read_to_string(&src).expect("src");
    std::fs::write(
        &src,
        code_text.replace("amount: config.points,", "amount: config.points * 2,"),
    )
    .expect("write");
    let (code, out, err) = engage_async(&project, &["plugin", "build"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = engage_async(
        &project,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(code, 4, "{out}{err}");
    let replay: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(replay["same"], false);
    let diff = replay["diff"].as_str().unwrap_or_default();
    assert!(
        diff.contains("-") && diff.contains("\"amount\": 20"),
        "{diff}"
    );
}

/// `engage ARGS` against the server, in `project`.
async fn engage_on(api: &Api, project: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(api.auth());
    engage_async(project, &all.iter().map(String::as_str).collect::<Vec<_>>()).await
}

/// A player's first `buy` of the day: the points it earned.
async fn first_buy(api: &Api, player: &str) -> i64 {
    let (s, b) = api
        .call("POST", "/v1/players", Some(json!({ "id": player })))
        .await;
    assert_eq!(s, 201, "{b}");
    buy(api, player).await
}

/// One more `buy`: the points it earned.
async fn buy(api: &Api, player: &str) -> i64 {
    let before = balance(api, player).await;
    let (s, b) = api
        .call(
            "POST",
            "/v1/actions",
            Some(json!({ "player": player, "action": "buy" })),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    balance(api, player).await - before
}

/// The build that grants 20 (`invocations_and_replay` made it) deployed:
/// compared with what production recorded, as a canary for half the
/// players, rolled back, deployed for everyone; a build failing calls
/// production answered is not deployed.
async fn deploy_as_a_canary_then_for_everyone(api: &Api, dir: &Path) {
    let project = dir.join("my-rules");
    let latest = || async {
        let (_, p) = api.call("GET", "/v1/plugins/my-rules", None).await;
        p["latest"].as_u64()
    };
    let (code, out, err) = engage_on(
        api,
        &project,
        &["plugin", "deploy", "--no-build", "--dry-run", "--json"],
    )
    .await;
    assert_eq!(code, 4, "differences found: {out}{err}");
    let compared: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(compared["bound"]["version"], 1, "{compared}");
    assert!(compared["different"].as_u64() >= Some(1), "{compared}");
    assert_eq!(compared["now_failing"], 0, "{compared}");
    assert_eq!(latest().await, Some(1), "a dry run uploads nothing");

    let (code, out, err) = engage_on(
        api,
        &project,
        &["plugin", "deploy", "--no-build", "--percent", "50"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("different") && out.contains("\"amount\": 20"),
        "the diff: {out}"
    );
    assert!(out.contains("for 50% of players"), "{out}");
    eprintln!("engage plugin deploy --percent 50:\n{out}");
    // Half the players earn the new version's 20, the others 10; each
    // player keeps the version it met.
    let mut earned = std::collections::BTreeMap::new();
    for i in 0..16 {
        let p = format!("c{i}");
        let first = first_buy(api, &p).await;
        assert!(first == 10 || first == 20, "{p}: {first}");
        assert_eq!(buy(api, &p).await, first, "{p} changed versions");
        earned.insert(p, first);
    }
    let on_canary = earned.values().filter(|&&n| n == 20).count();
    assert!(
        (1..16).contains(&on_canary),
        "{on_canary} of 16 on the canary at 50%"
    );

    let (code, out, err) = engage_on(api, &project, &["plugin", "canary", "rules"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("my-rules v2 for 50% of players (canary)"),
        "{out}"
    );
    eprintln!("engage plugin canary rules:\n{out}");
    let (_, status, _) = engage_on(api, &project, &["plugin", "canary", "rules", "--json"]).await;
    let status: Value = serde_json::from_str(&status).expect("json");
    let calls = |arm: &str| {
        status["canary"]["stats"][arm]["calls"]
            .as_u64()
            .unwrap_or(0)
    };
    assert_eq!(
        (calls("canary"), calls("stable")),
        (2 * on_canary as u64, 2 * (16 - on_canary as u64)),
        "{status}"
    );

    // Rolled back in one call: the canary's players earn 10 again.
    let (code, out, err) = engage_on(api, &project, &["plugin", "rollback", "rules"]).await;
    assert_eq!(code, 0, "{out}{err}");
    for (p, _) in earned.iter().filter(|(_, n)| **n == 20) {
        assert_eq!(buy(api, p).await, 10, "{p} after the rollback");
    }

    // For every player, with the binding's config carried over.
    let (code, out, err) = engage_on(api, &project, &["plugin", "deploy", "--no-build"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("for every player"), "{out}");
    let (_, b) = api.call("GET", "/v1/bindings/rules", None).await;
    assert_eq!(
        (b["version"].as_u64(), b["config"].clone(), b.get("canary")),
        (Some(3), json!({ "points": 10 }), None),
        "{b}"
    );
    assert_eq!(first_buy(api, "everyone").await, 20);

    // A build that fails what production answered stops at the comparison.
    let mut recorded = false;
    for _ in 0..40 {
        let (_, l) = api
            .call("GET", "/v1/plugins/my-rules/invocations", None)
            .await;
        if l["invocations"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["version"] == 3)
        {
            recorded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recorded, "a call of v3 was recorded");
    let src = project.join("src/lib.rs");
    let text = std::fs::read_to_string(&src).expect("src");
    std::fs::write(
        &src,
        text.replace(
            "let config: Config = host::config()?;",
            "let config: Config = host::config()?;\n        if action.name == config.action {\n            return Err(PluginError::new(\"broken\", \"on purpose\"));\n        }",
        ),
    )
    .expect("write");
    let (code, out, err) = engage_on(api, &project, &["plugin", "deploy"]).await;
    assert_eq!(code, 5, "{out}{err}");
    assert!(
        out.contains("now failing") && out.contains("not deployed"),
        "{out}"
    );
    assert_eq!(latest().await, Some(3), "nothing uploaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_from_an_empty_folder() {
    let (running, api, data) = start("kit-python").await;
    let dir = data.join("projects");
    std::fs::create_dir_all(&dir).expect("dir");
    let started = Instant::now();
    make_and_bind(
        &api,
        &dir,
        "py-rules",
        "rules",
        "python",
        "rules",
        r#"{"points":10}"#,
        r#"{"points":"ten"}"#,
    )
    .await;
    rules_decide(&api, "p1").await;
    eprintln!(
        "python rules: plugin new to a bound plugin answering its first request in {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    sdk_helpers_work(&dir, "python").await;
    other_worlds_decide(&api, &dir, "python", "py").await;
    eprintln!(
        "python gift hooks, templating and routing: made, bound and deciding in {:?}",
        started.elapsed()
    );
    running.stop().await.expect("stop");
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_plugin_from_an_empty_folder() {
    let (running, api, data) = start("kit-js").await;
    let dir = data.join("projects");
    std::fs::create_dir_all(&dir).expect("dir");
    let started = Instant::now();
    make_and_bind(
        &api,
        &dir,
        "js-rules",
        "rules",
        "js",
        "rules",
        r#"{"points":10}"#,
        r#"{"daily_cap":1.5}"#,
    )
    .await;
    rules_decide(&api, "p1").await;
    eprintln!(
        "javascript rules: plugin new to a bound plugin answering its first request in {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    sdk_helpers_work(&dir, "js").await;
    other_worlds_decide(&api, &dir, "js", "js").await;
    eprintln!(
        "javascript gift hooks, templating and routing: made, bound and deciding in {:?}",
        started.elapsed()
    );
    running.stop().await.expect("stop");
    let _ = std::fs::remove_dir_all(&data);
}
