//! A fake Twilio on loopback: it records every create-message request,
//! checks it against Twilio's published OpenAPI description of
//! `CreateMessage` (the schema facts in `tests/fixtures`), and answers as
//! Twilio does (201 with a `sid`), or 500 when told to. Started with
//! [`FakeTwilio::reporting`] it also does what Twilio does next: it posts a
//! signed status callback (`delivered`) to each message's `StatusCallback`.
//! The `fake-twilio` binary (`src/bin/fake-twilio.rs`) runs it on its own
//! for `scripts/bench-messages`.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

/// One request received: path, `Authorization` header, form fields.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub authorization: String,
    pub form: Vec<(String, String)>,
}

impl Seen {
    /// The form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Inner {
    seen: Mutex<Vec<Seen>>,
    violations: Mutex<Vec<String>>,
    fail_next: Mutex<u32>,
    hang: std::sync::atomic::AtomicBool,
    /// How long each answer takes (ms).
    delay_ms: std::sync::atomic::AtomicU64,
    /// Requests being answered now, and the most at once so far.
    open: std::sync::atomic::AtomicU32,
    most_open: std::sync::atomic::AtomicU32,
    /// Whether to keep every request for [`FakeTwilio::requests`] (a long
    /// benchmark does not).
    keep: bool,
    /// Requests answered with a 201.
    created: std::sync::atomic::AtomicU64,
    report: Option<Reporter>,
}

/// What posts the status callbacks, and how they were answered.
struct Reporter {
    /// The account's auth token, which signs each callback.
    auth_token: String,
    http: reqwest::Client,
    /// Callbacks answered with a 2xx, and with anything else (or not at all).
    accepted: std::sync::atomic::AtomicU64,
    refused: std::sync::atomic::AtomicU64,
}

/// What the fake has done so far ([`FakeTwilio::counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Messages it took (201).
    pub created: u64,
    /// Status callbacks the server answered with a 2xx.
    pub reports_accepted: u64,
    /// Status callbacks answered otherwise, or not answered.
    pub reports_refused: u64,
}

/// `CreateMessage`'s request schema, from twilio/twilio-oai.
const SPEC: &str = include_str!("../fixtures/twilio_create_message.json");

/// [`SPEC`], parsed once.
fn spec() -> &'static Value {
    static PARSED: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    PARSED.get_or_init(|| serde_json::from_str(SPEC).unwrap_or_default())
}

/// What in `seen` does not conform to the spec.
pub fn violations_of(seen: &Seen) -> Vec<String> {
    let spec = spec();
    let mut out = Vec::new();
    let account = seen
        .path
        .strip_prefix("/2010-04-01/Accounts/")
        .and_then(|p| p.strip_suffix("/Messages.json"))
        .unwrap_or_default();
    if !sid_like(
        account,
        spec["path_parameters"]["AccountSid"]["pattern"].as_str(),
    ) {
        out.push(format!("AccountSid `{account}` does not match the pattern"));
    }
    for required in spec["required"].as_array().into_iter().flatten() {
        let name = required.as_str().unwrap_or_default();
        if seen.field(name).is_none() {
            out.push(format!("required `{name}` is missing"));
        }
    }
    for (name, value) in &seen.form {
        let prop = &spec["properties"][name.as_str()];
        if prop.is_null() {
            out.push(format!("`{name}` is not a CreateMessage parameter"));
            continue;
        }
        let ok = match (prop["type"].as_str(), prop["format"].as_str()) {
            (Some("integer"), _) => value.parse::<i64>().is_ok(),
            (Some("number"), _) => value.parse::<f64>().is_ok(),
            (Some("boolean"), _) => value == "true" || value == "false",
            (_, Some("phone-number")) => phone_like(value),
            (_, Some("uri")) => uri_like(value),
            (_, Some("date-time")) => value.contains('T'),
            _ => true,
        };
        let pattern_ok = sid_like(value, prop["pattern"].as_str());
        let enum_ok = prop["enum"]
            .as_array()
            .is_none_or(|e| e.iter().any(|v| v == value.as_str()));
        if !(ok && pattern_ok && enum_ok) {
            out.push(format!("`{name}` = `{value}` does not conform"));
        }
    }
    out
}

/// Twilio's id patterns are two letters and 32 hex digits.
fn sid_like(value: &str, pattern: Option<&str>) -> bool {
    let Some(p) = pattern else { return true };
    let prefix = p.trim_start_matches('^').get(..2).unwrap_or_default();
    value.len() == 34
        && value.starts_with(prefix)
        && value[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// E.164, or an alphanumeric sender id (up to 11 letters, digits, spaces).
fn phone_like(v: &str) -> bool {
    let e164 = v.len() >= 3
        && v.len() <= 16
        && v.starts_with('+')
        && v[1..].bytes().all(|b| b.is_ascii_digit());
    let alpha = !v.is_empty()
        && v.len() <= 11
        && v.bytes().any(|b| b.is_ascii_alphabetic())
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ');
    e164 || alpha
}

/// An absolute http(s) URL whose host has no underscore (Twilio refuses those).
fn uri_like(v: &str) -> bool {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    rest.and_then(|r| r.split(['/', '?']).next())
        .is_some_and(|host| !host.is_empty() && !host.contains('_'))
}

/// The running fake.
pub struct FakeTwilio {
    /// Its base URL, for a provider's `base_url`.
    pub url: String,
    inner: Arc<Inner>,
}

impl FakeTwilio {
    /// Listen on a loopback port; it takes messages and reports nothing.
    pub async fn start() -> FakeTwilio {
        Self::serve(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
            Inner {
                keep: true,
                ..Inner::default()
            },
        )
    }

    /// Listen on `listener` and, as Twilio does, post a status callback
    /// signed with `auth_token` for every message it takes: `delivered`,
    /// right after its 201. It keeps requests for [`Self::requests`] only
    /// if `keep`.
    pub fn reporting(
        listener: tokio::net::TcpListener,
        auth_token: &str,
        keep: bool,
    ) -> FakeTwilio {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .pool_max_idle_per_host(256)
            .build()
            .expect("an HTTP client");
        Self::serve(
            listener,
            Inner {
                keep,
                report: Some(Reporter {
                    auth_token: auth_token.to_owned(),
                    http,
                    accepted: Default::default(),
                    refused: Default::default(),
                }),
                ..Inner::default()
            },
        )
    }

    fn serve(listener: tokio::net::TcpListener, inner: Inner) -> FakeTwilio {
        let inner = Arc::new(inner);
        let app = axum::Router::new()
            .route("/2010-04-01/Accounts/{sid}/Messages.json", post(create))
            .route("/counts", axum::routing::get(counts))
            .with_state(inner.clone());
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeTwilio { url, inner }
    }

    /// Messages taken and status callbacks answered so far.
    pub fn counts(&self) -> Counts {
        use std::sync::atomic::Ordering::SeqCst;
        let r = self.inner.report.as_ref();
        Counts {
            created: self.inner.created.load(SeqCst),
            reports_accepted: r.map_or(0, |r| r.accepted.load(SeqCst)),
            reports_refused: r.map_or(0, |r| r.refused.load(SeqCst)),
        }
    }

    /// Answer the next `n` requests with a 500.
    pub fn fail_next(&self, n: u32) {
        *self
            .inner
            .fail_next
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = n;
    }

    /// Never answer (until told otherwise): the caller's timeout decides.
    pub fn hang(&self, on: bool) {
        self.inner
            .hang
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Take `ms` to answer each request (so sends overlap).
    pub fn delay(&self, ms: u64) {
        self.inner
            .delay_ms
            .store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// The most requests it was answering at one time.
    pub fn most_at_once(&self) -> u32 {
        self.inner
            .most_open
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every way a request so far broke Twilio's CreateMessage spec.
    pub fn violations(&self) -> Vec<String> {
        self.inner
            .violations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.inner
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A server that accepts every connection and closes it at once, before
/// answering anything; its base URL.
pub async fn closing_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    url
}

async fn create(
    State(inner): State<Arc<Inner>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let seen = Seen {
        path: uri.path().to_owned(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        form,
    };
    if inner.hang.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
    {
        use std::sync::atomic::Ordering::SeqCst;
        let now = inner.open.fetch_add(1, SeqCst) + 1;
        inner.most_open.fetch_max(now, SeqCst);
        let delay = inner.delay_ms.load(SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        inner.open.fetch_sub(1, SeqCst);
    }
    let to = seen.field("To").map(str::to_owned);
    let broken = violations_of(&seen);
    inner
        .violations
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(broken);
    let callback = seen.field("StatusCallback").map(str::to_owned);
    let from = seen.field("From").map(str::to_owned);
    let account = seen
        .path
        .strip_prefix("/2010-04-01/Accounts/")
        .and_then(|p| p.strip_suffix("/Messages.json"))
        .unwrap_or_default()
        .to_owned();
    if inner.keep {
        inner
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(seen);
    }
    {
        let mut f = inner.fail_next.lock().unwrap_or_else(|p| p.into_inner());
        if *f > 0 {
            *f -= 1;
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({ "code": 20500, "message": "Internal Server Error" })),
            );
        }
    }
    let n = inner
        .created
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        + 1;
    let sid = format!("SM{n:032x}");
    if let (Some(_), Some(url)) = (&inner.report, callback) {
        let params = vec![
            ("AccountSid".to_owned(), account),
            ("ApiVersion".to_owned(), "2010-04-01".to_owned()),
            ("From".to_owned(), from.unwrap_or_default()),
            ("MessageSid".to_owned(), sid.clone()),
            ("MessageStatus".to_owned(), "delivered".to_owned()),
            ("SmsSid".to_owned(), sid.clone()),
            ("SmsStatus".to_owned(), "delivered".to_owned()),
            ("To".to_owned(), to.clone().unwrap_or_default()),
        ];
        tokio::spawn(report(inner.clone(), url, params));
    }
    (
        StatusCode::CREATED,
        axum::Json(json!({ "sid": sid, "status": "queued", "to": to })),
    )
}

/// `GET /counts` (not a Twilio API): [`FakeTwilio::counts`] as JSON, for
/// a benchmark that runs the fake as a process of its own.
async fn counts(State(inner): State<Arc<Inner>>) -> axum::Json<Value> {
    let c = FakeTwilio {
        url: String::new(),
        inner,
    }
    .counts();
    axum::Json(json!({
        "created": c.created,
        "reports_accepted": c.reports_accepted,
        "reports_refused": c.reports_refused,
    }))
}

/// Post one signed status callback to `url`, as Twilio does once the
/// handset has the message.
async fn report(inner: Arc<Inner>, url: String, params: Vec<(String, String)>) {
    use std::sync::atomic::Ordering::SeqCst;
    let Some(r) = &inner.report else { return };
    let signature = engage::messaging::providers::twilio_signature(&r.auth_token, &url, &params);
    let body = serde_urlencoded::to_string(&params).unwrap_or_default();
    let answer = r
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .body(body)
        .send()
        .await;
    match answer {
        Ok(a) if a.status().is_success() => r.accepted.fetch_add(1, SeqCst),
        _ => r.refused.fetch_add(1, SeqCst),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(path: &str, form: &[(&str, &str)]) -> Seen {
        Seen {
            path: path.into(),
            authorization: String::new(),
            form: form
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_spec_check_catches_what_twilio_would_refuse() {
        let good = seen(
            "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json",
            &[
                ("To", "+14155550100"),
                ("From", "Engage"),
                ("Body", "hi"),
                ("ValidityPeriod", "600"),
            ],
        );
        assert_eq!(violations_of(&good), Vec::<String>::new());
        let bad = seen(
            "/2010-04-01/Accounts/AC123/Messages.json",
            &[
                ("From", "not a phone!"),
                ("ValidityPeriod", "soon"),
                ("StatusCallback", "http://my_host/x"),
                ("Colour", "red"),
            ],
        );
        assert_eq!(violations_of(&bad).len(), 6, "{:?}", violations_of(&bad));
    }
}
