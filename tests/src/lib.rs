//! The test harness: a real Engage server on a loopback port and a fresh
//! data directory, and a small HTTP client that speaks to it as a client would.

use std::path::PathBuf;

use engage::config::ServerConfig;
use engage::server::Running;
use serde_json::{Value, json};

pub mod kannel;
pub mod smtp;
pub mod tls;
pub mod twilio;

/// The components built by this crate's build script.
pub mod components {
    pub const HOSTILE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hostile.wasm"));
    pub const NO_WORLD: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/no_world.wasm"));
    pub const GIFT_PROBE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/gift_probe.wasm"));
    pub const RUST_RULES: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/engage_example_rust_rules.wasm"));
}

/// A fresh, empty directory under the system's temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("engage-test-{tag}-{}", engage::ids::random_hex(6)));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Whether this run's servers keep their data in PostgreSQL
/// (`ENGAGE_TEST_STORAGE=postgres`, as `scripts/test` sets for its second
/// pass) rather than the embedded default.
pub fn on_postgres() -> bool {
    std::env::var("ENGAGE_TEST_STORAGE").is_ok_and(|v| v == "postgres")
}

/// A fresh database on the test PostgreSQL server (`ENGAGE_TEST_POSTGRES`,
/// started by `scripts/test`).
pub fn test_database(tag: &str) -> String {
    let base = std::env::var("ENGAGE_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "ENGAGE_TEST_POSTGRES is not set: run ./scripts/test, which starts a throw-away PostgreSQL"
        )
    });
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    let name = format!("e2e_{tag}_{}", engage::ids::random_hex(6));
    engage::store_postgres::create_database(&base, &name).expect("create a test database")
}

/// The sealing key every test host on one database shares.
pub const TEST_SECRET_KEY: &str =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Point `config` at this run's backend: a fresh PostgreSQL database when
/// the run is on PostgreSQL, else nothing (the data directory's redb file).
pub fn on_test_backend(config: &mut ServerConfig, tag: &str) {
    if on_postgres() {
        config.storage.backend = engage::config::BackendKind::Postgres;
        config.storage.url = Some(test_database(tag));
        config.secret_key = Some(TEST_SECRET_KEY.into());
    }
}

/// kunalg (fb:kunalg) and abcd (fb:abcd) are friends; abcd plays.
pub async fn friends(s: &Server, t: &str) {
    for (id, first, last) in [("kunal", "Kunal", "TestHG"), ("abcd", "Abc", "D")] {
        let r = s
            .call(
                "POST",
                "/v1/players",
                Some(t),
                Some(json!({ "id": id, "first_name": first, "last_name": last })),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    let l = s
        .call(
            "PUT",
            "/v1/players/kunal/identities/fb",
            Some(t),
            Some(json!({ "id": "kunalg" })),
        )
        .await;
    assert_eq!(l.status, 200, "{l:?}");
    let l = s
        .call(
            "PUT",
            "/v1/players/abcd/identities/fb",
            Some(t),
            Some(json!({ "id": "abcd" })),
        )
        .await;
    assert_eq!(l.status, 200, "{l:?}");
    let f = s
        .call("PUT", "/v1/players/kunal/friends", Some(t), Some(json!({ "friends": [{ "mode": "fb", "id": "abcd" }, { "mode": "fb", "id": "not-playing-yet" }] })))
        .await;
    assert_eq!(f.status, 200, "{f:?}");
}

/// A running server and what a test needs to talk to it.
pub struct Server {
    pub running: Option<Running>,
    pub config: ServerConfig,
    pub base: String,
    pub http: reqwest::Client,
    pub admin_token: String,
}

/// The response of a call: status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    /// The answer was given again for a repeated `Idempotency-Key`
    /// (`Idempotent-Replayed: true`).
    pub replayed: bool,
}

impl Server {
    /// Start a server on a new data directory with the test's configuration.
    pub async fn start(tag: &str, tweak: impl FnOnce(&mut ServerConfig)) -> Server {
        let mut config = ServerConfig {
            data_dir: temp_dir(tag),
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..ServerConfig::default()
        };
        on_test_backend(&mut config, tag);
        tweak(&mut config);
        Server::start_with(config).await
    }

    /// Start (or restart) a server on `config`.
    pub async fn start_with(config: ServerConfig) -> Server {
        let running = engage::server::start(&config).await.expect("server starts");
        let creds: Value = serde_json::from_str(
            &std::fs::read_to_string(config.data_dir.join("credentials.json"))
                .expect("credentials file"),
        )
        .expect("credentials json");
        Server {
            base: format!("http://{}", running.addr),
            running: Some(running),
            config,
            http: reqwest::Client::new(),
            admin_token: creds["admin_token"].as_str().unwrap_or_default().to_owned(),
        }
    }

    /// Stop the server (gracefully) and start it again on the same data.
    pub async fn restart(mut self) -> Server {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("server stops");
        }
        // `stop` returns once the database is closed: no waiting here.
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().expect("addr");
        Server::start_with(config).await
    }

    /// Another host on this server's database (PostgreSQL): a data
    /// directory of its own, the same tenants, credentials and secret key.
    pub async fn another_host(&self) -> Server {
        assert!(
            self.config.storage.backend == engage::config::BackendKind::Postgres,
            "hosts share a PostgreSQL database, not a data directory"
        );
        let mut config = self.config.clone();
        config.data_dir = temp_dir("host");
        config.listen = "127.0.0.1:0".parse().expect("addr");
        std::fs::copy(
            self.config.data_dir.join("credentials.json"),
            config.data_dir.join("credentials.json"),
        )
        .expect("credentials");
        let running = engage::server::start(&config)
            .await
            .expect("another host starts");
        Server {
            base: format!("http://{}", running.addr),
            running: Some(running),
            config,
            http: reqwest::Client::new(),
            admin_token: self.admin_token.clone(),
        }
    }

    /// A server whose data is in a fresh PostgreSQL database, whatever the
    /// run's backend (for the tests of hosts sharing one).
    pub async fn start_on_postgres(tag: &str, tweak: impl FnOnce(&mut ServerConfig)) -> Server {
        Server::start(tag, |c| {
            c.storage.backend = engage::config::BackendKind::Postgres;
            c.storage.url = Some(test_database(tag));
            c.secret_key = Some(TEST_SECRET_KEY.into());
            tweak(c);
        })
        .await
    }

    /// The running server's shared state (for white-box checks).
    pub fn state(&self) -> &engage::api::AppState {
        &self.running.as_ref().expect("running").state
    }

    /// The demo tenant's credentials from the first-start file.
    pub fn demo_credentials(&self) -> (String, String) {
        let creds: Value = serde_json::from_str(
            &std::fs::read_to_string(self.config.data_dir.join("credentials.json")).expect("file"),
        )
        .expect("json");
        (
            creds["demo"]["api_key"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            creds["demo"]["api_secret"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }

    /// Send a request; `body` None sends nothing.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await.expect("request sent")).await
    }

    /// A request builder for `path`, with the bearer token when given.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let req = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Send a prepared request.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        answer(req.send().await.expect("request sent")).await
    }

    /// The demo tenant's access token.
    pub async fn demo_token(&self) -> String {
        let (k, s) = self.demo_credentials();
        self.token(&k, &s).await
    }

    /// Register player `id` (with a phone number), asserting success.
    pub async fn player(&self, token: &str, id: &str) {
        let a = self
            .call(
                "POST",
                "/v1/players",
                Some(token),
                Some(json!({ "id": id, "phone": "+6681234567" })),
            )
            .await;
        assert_eq!(a.status, 201, "{a:?}");
    }

    /// Credit `amount` points to `player`, asserting success.
    pub async fn credit(&self, token: &str, player: &str, amount: i64) {
        let a = self
            .call(
                "POST",
                "/v1/ledger/credit",
                Some(token),
                Some(json!({ "player": player, "amount": amount })),
            )
            .await;
        assert_eq!(a.status, 201, "{a:?}");
    }

    /// Create goods group `id` at `price` points and upload `codes`.
    pub async fn goods(&self, token: &str, id: &str, price: i64, codes: &[String]) {
        let a = self
            .call(
                "PUT",
                &format!("/v1/goods/{id}"),
                Some(token),
                Some(json!({ "name": id, "price": price })),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        let up = self
            .send(
                self.request("POST", &format!("/v1/goods/{id}/codes"), Some(token))
                    .header("content-type", "text/plain")
                    .body(codes.join("\n")),
            )
            .await;
        assert_eq!(up.status, 200, "{up:?}");
    }

    /// A player's balance in points.
    pub async fn balance(&self, token: &str, player: &str) -> i64 {
        let a = self
            .call(
                "GET",
                &format!("/v1/players/{player}/balances"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        a.body["balances"]["points"]
            .as_i64()
            .expect("points balance")
    }

    /// Upload component bytes as plugin `name`.
    pub async fn upload(&self, token: &str, name: &str, bytes: &[u8]) -> Answer {
        let req = self
            .http
            .put(format!("{}/v1/plugins/{name}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/wasm")
            .body(bytes.to_vec());
        answer(req.send().await.expect("request sent")).await
    }

    /// Create a tenant through the admin API and return an access token for it.
    pub async fn tenant(&self, name: &str) -> String {
        // A 503 says "storage is unavailable for a moment; try again": a
        // client does (a store on PostgreSQL under a loaded machine can take
        // longer than its connect timeout now and then).
        let create = || {
            self.call(
                "POST",
                "/admin/tenants",
                Some(&self.admin_token),
                Some(json!({ "name": name })),
            )
        };
        let mut created = create().await;
        for _ in 0..5 {
            if created.status != 503 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            created = create().await;
        }
        assert_eq!(created.status, 201, "{created:?}");
        self.token(
            created.body["api_key"].as_str().unwrap_or_default(),
            created.body["api_secret"].as_str().unwrap_or_default(),
        )
        .await
    }

    /// An access token for an API key and secret.
    pub async fn token(&self, key: &str, secret: &str) -> String {
        let a = self
            .call(
                "POST",
                "/v1/auth/token",
                None,
                Some(json!({ "api_key": key, "api_secret": secret })),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        a.body["token"].as_str().unwrap_or_default().to_owned()
    }

    /// Invoke the `rules` binding with an action called `name`.
    pub async fn act(&self, token: &str, name: &str) -> Answer {
        self.call(
            "POST",
            "/v1/bindings/rules/invoke",
            Some(token),
            Some(action(name)),
        )
        .await
    }
}

/// A `multipart/form-data` body as `curl -F` (and PHP's curl) sends it:
/// the content type and the body.
pub fn multipart(fields: &[(&str, &str)]) -> (String, String) {
    let boundary = "------------------------d74496d66958873e";
    let mut body = String::new();
    for (k, v) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// An `evaluate` call body for an action called `name` by player `p1`.
pub fn action(name: &str) -> Value {
    json!({ "call": "evaluate", "action": { "player": "p1", "name": name, "params": [], "url": null, "time_ms": 1_700_000_000_000i64 } })
}

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let replayed = resp
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        body,
        replayed,
    }
}

/// The amount of the first grant in an invoke answer.
pub fn first_grant(a: &Answer) -> Option<i64> {
    a.body["output"]["outcome"]["grants"][0]["amount"].as_i64()
}

/// The Python and JavaScript example components, built by
/// `scripts/build-examples` (which installs their toolchains in the project
/// on first use). Built once per test process.
pub fn example_component(file: &str) -> Vec<u8> {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let built = BUILT.get_or_init(|| {
        let out = std::process::Command::new(root.join("scripts/build-examples"))
            .output()
            .map_err(|e| format!("running scripts/build-examples: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/build-examples failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    let path = root.join("target/guests/examples").join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
