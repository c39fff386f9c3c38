//! The console's only way to Engage's data: the native API, called in
//! process. A call is a real HTTP request handed to the API's router (its
//! middleware, extractors, validation, throttle and limits included), with
//! the session's token as its bearer credential and the browser's address
//! as its peer, so the console can do exactly what that token may do
//! through the API, no more.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

/// The largest API answer the console reads (lists are paginated well
/// below it).
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// The native API, to call in process.
#[derive(Clone)]
pub struct Api {
    router: Router,
}

/// An API answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    /// The JSON body (`null` when empty, a string when not JSON).
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The API error's code (`player_not_found`, …), if this is one.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// What the API said went wrong, for a person to read.
    pub fn message(&self) -> String {
        match self.body["error"]["message"].as_str() {
            Some(m) => m.to_owned(),
            None => format!("the API answered {}", self.status),
        }
    }
}

/// A request body.
pub enum Payload {
    None,
    Json(Value),
    /// Raw bytes with their content type.
    Bytes(axum::body::Bytes, String),
    /// A browser's upload passed on as it streams in, with its content
    /// type (a codes file, a component): the API's own limits apply.
    Stream(Body, String),
}

/// Who a call is made for: a bearer token (empty: none), and the
/// browser's address.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: String,
    pub peer: Option<SocketAddr>,
}

impl Api {
    pub fn new(router: Router) -> Api {
        Api { router }
    }

    /// Call `method path_and_query` as `caller` (no caller: no credential).
    pub async fn call(
        &self,
        caller: Option<&Caller>,
        method: Method,
        path_and_query: &str,
        payload: Payload,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(path_and_query);
        if let Some(c) = caller.filter(|c| !c.token.is_empty()) {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", c.token));
        }
        let body = match payload {
            Payload::None => Body::empty(),
            Payload::Json(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            Payload::Bytes(b, content_type) => {
                req = req.header(header::CONTENT_TYPE, content_type);
                Body::from(b)
            }
            Payload::Stream(b, content_type) => {
                req = req.header(header::CONTENT_TYPE, content_type);
                b
            }
        };
        let mut req = match req.body(body) {
            Ok(r) => r,
            Err(e) => return internal(format!("could not build the API request: {e}")),
        };
        if let Some(peer) = caller.and_then(|c| c.peer) {
            req.extensions_mut().insert(ConnectInfo(peer));
        }
        let res = match self.router.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = res.status();
        let bytes = match axum::body::to_bytes(res.into_body(), MAX_ANSWER_BYTES).await {
            Ok(b) => b,
            Err(e) => return internal(format!("could not read the API's answer: {e}")),
        };
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer { status, body }
    }
}

fn internal(message: String) -> Answer {
    tracing::error!(%message, "console: API call failed");
    Answer {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        body: serde_json::json!({ "error": { "code": "internal", "message": message } }),
    }
}
