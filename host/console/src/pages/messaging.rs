//! Messaging: providers (credentials masked by the API), the price list
//! and credit, recent messages with a status filter, one message with every
//! attempt, a test send, the opt-out list.

use axum::Form;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;
use serde_json::json;

use super::{query, seg};
use crate::api::Payload;
use crate::render::{self, PageError, page_with};
use crate::session::{Kind, Session};

#[derive(Deserialize, Default)]
pub struct MessagingQuery {
    status: Option<String>,
    after: Option<String>,
    opt_outs_after: Option<String>,
}

pub async fn page(s: Session, Query(q): Query<MessagingQuery>) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    show(&s, &q, None, None, StatusCode::OK).await
}

async fn show(
    s: &Session,
    q: &MessagingQuery,
    error: Option<String>,
    form: Option<(String, String)>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let providers = s.get("/v1/providers").await?;
    let prices = s.find("/v1/messaging/prices").await?;
    let credit = s.find("/v1/messaging/accounts/default/credit").await?;
    let filter = q.status.as_deref().filter(|v| !v.is_empty());
    let messages = s
        .get(&format!(
            "/v1/messages{}",
            query(&[
                ("status", filter),
                ("after", q.after.as_deref()),
                ("limit", Some("25"))
            ])
        ))
        .await?;
    let list = messages["messages"].as_array().cloned().unwrap_or_default();
    let next = (list.len() == 25)
        .then(|| {
            list.last()
                .and_then(|m| m["id"].as_str())
                .map(str::to_owned)
        })
        .flatten()
        .map(|last| {
            format!(
                "/console/messaging{}",
                query(&[("status", filter), ("after", Some(&last))])
            )
        });
    let opt_outs = s
        .get(&format!(
            "/v1/messaging/opt-outs{}",
            query(&[
                ("after", q.opt_outs_after.as_deref()),
                ("limit", Some("25"))
            ])
        ))
        .await?;
    let opt_outs_next = opt_outs["next"].as_str().map(|n| {
        format!(
            "/console/messaging{}",
            query(&[("opt_outs_after", Some(n))])
        )
    });
    let (to, body) = form.unwrap_or_default();
    page_with(
        s,
        "messaging.html",
        "messaging",
        context! {
            providers => crate::render::json(&providers["providers"]),
            prices => crate::render::json(&prices),
            credit => crate::render::json(&credit),
            messages => crate::render::json(&list),
            next,
            status => filter,
            statuses => ["scheduled", "queued", "sent", "delivered", "read", "expired", "undeliverable", "rejected", "unknown"],
            opt_outs => crate::render::json(&opt_outs["opt_outs"]),
            opt_outs_next,
            error,
            to,
            body,
        },
        status,
    )
}

pub async fn message(s: Session, Path(id): Path<String>) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let m = s.get(&format!("/v1/messages/{}", seg(&id))).await?;
    render::page(
        &s,
        "message.html",
        "messaging",
        context! { m => crate::render::json(&m) },
    )
}

#[derive(Deserialize)]
pub struct TestSend {
    #[serde(default)]
    to: String,
    #[serde(default)]
    body: String,
}

/// A test message, sent as any other through `POST /v1/messages`
/// (transactional, through the tenant's route binding).
pub async fn test_send(s: Session, Form(f): Form<TestSend>) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let to: Vec<&str> =
        f.to.split([',', '\n'])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
    let typed = Some((f.to.clone(), f.body.clone()));
    let none = MessagingQuery::default();
    if to.is_empty() || f.body.trim().is_empty() {
        let why = "Give a number or an e-mail address to send to, and a text.".to_owned();
        return show(&s, &none, Some(why), typed, StatusCode::BAD_REQUEST).await;
    }
    // Addresses make it an e-mail; numbers an SMS.
    let body = if to.iter().all(|t| t.contains('@')) {
        json!({ "to": to, "channel": "email", "subject": "A test message from the Engage console",
                "body": f.body, "kind": "transactional" })
    } else {
        json!({ "to": to, "body": f.body, "kind": "transactional" })
    };
    let a = s
        .call(Method::POST, "/v1/messages", Payload::Json(body))
        .await?;
    if !a.ok() {
        return show(&s, &none, Some(a.message()), typed, a.status).await;
    }
    let id = a.body["messages"][0]["id"]
        .as_str()
        .or_else(|| a.body["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    Err(PageError::Redirect(if id.is_empty() {
        "/console/messaging".into()
    } else {
        format!("/console/messages/{}", seg(&id))
    }))
}
