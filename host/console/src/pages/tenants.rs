//! Tenants, for the admin: the list, and a form that creates one and shows
//! its API secret once.

use axum::Form;
use axum::extract::Query;
use axum::http::Method;
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;
use serde_json::json;

use super::query;
use crate::api::Payload;
use crate::render::{PageError, page_with};
use crate::session::{Kind, Session};

#[derive(Deserialize)]
pub struct ListQuery {
    after: Option<String>,
}

pub async fn list(s: Session, Query(q): Query<ListQuery>) -> Result<Response, PageError> {
    s.require(Kind::Admin)?;
    show(&s, q.after.as_deref(), None, None, "").await
}

async fn show(
    s: &Session,
    after: Option<&str>,
    created: Option<serde_json::Value>,
    error: Option<(String, axum::http::StatusCode)>,
    name: &str,
) -> Result<Response, PageError> {
    let list = s
        .get(&format!(
            "/admin/tenants{}",
            query(&[("after", after), ("limit", Some("50"))])
        ))
        .await?;
    let next = list["next"]
        .as_str()
        .map(|n| format!("/console/tenants{}", query(&[("after", Some(n))])));
    let status = error.as_ref().map_or(axum::http::StatusCode::OK, |e| e.1);
    page_with(
        s,
        "tenants.html",
        "tenants",
        context! {
            tenants => crate::render::json(&list["tenants"]),
            next,
            created => crate::render::json(&created),
            error => error.map(|e| e.0),
            name,
        },
        status,
    )
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
}

pub async fn create(s: Session, Form(f): Form<CreateForm>) -> Result<Response, PageError> {
    s.require(Kind::Admin)?;
    let name = f.name.trim();
    let a = s
        .call(
            Method::POST,
            "/admin/tenants",
            Payload::Json(json!({ "name": name })),
        )
        .await?;
    if !a.ok() {
        return show(&s, None, None, Some((a.message(), a.status)), name).await;
    }
    show(&s, None, Some(a.body), None, "").await
}
