//! A fake Twilio on loopback: it records every create-message request,
//! checks it against Twilio's published OpenAPI description of
//! `CreateMessage` (the schema facts in `tests/fixtures`), and answers as
//! Twilio does (201 with a `sid`), or 500 when told to.

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
}

/// `CreateMessage`'s request schema, from twilio/twilio-oai.
const SPEC: &str = include_str!("../fixtures/twilio_create_message.json");

/// What in `seen` does not conform to the spec.
pub fn violations_of(seen: &Seen) -> Vec<String> {
    let spec: Value = serde_json::from_str(SPEC).unwrap_or_default();
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
    /// Listen on a loopback port.
    pub async fn start() -> FakeTwilio {
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .route("/2010-04-01/Accounts/{sid}/Messages.json", post(create))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeTwilio { url, inner }
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
    let n = {
        let mut all = inner.seen.lock().unwrap_or_else(|p| p.into_inner());
        all.push(seen);
        all.len()
    };
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
    (
        StatusCode::CREATED,
        axum::Json(json!({ "sid": format!("SM{n:032x}"), "status": "queued", "to": to })),
    )
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
