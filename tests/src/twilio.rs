//! A fake Twilio on loopback: it records every create-message request and
//! answers as Twilio does (201 with a `sid`), or 500 when told to.

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
    fail_next: Mutex<u32>,
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

    /// Every request so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.inner
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
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
    let to = seen.field("To").map(str::to_owned);
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
