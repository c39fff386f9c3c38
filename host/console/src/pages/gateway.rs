//! The SMS gateway (playSMS-style): accounts with their credit and
//! webservices tokens, an account's phonebook; keywords; inbound messages.

use axum::extract::{Path, Query};
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;
use serde_json::Value as Json;

use super::{seg, slice};
use crate::render::{self, PageError};
use crate::session::{Kind, Session};

#[derive(Deserialize)]
pub struct GatewayQuery {
    page: Option<usize>,
    /// The keywords' page.
    kpage: Option<usize>,
}

/// A token shown by its first and last characters only: enough to tell
/// two apart, not enough to use.
fn masked(token: &str) -> String {
    let n = token.chars().count();
    if n <= 8 {
        return "•".repeat(n);
    }
    let head: String = token.chars().take(4).collect();
    let tail: String = token.chars().skip(n - 4).collect();
    format!("{head}…{tail}")
}

/// The credit of an account's credit account (null when it has none).
async fn credit(s: &Session, account: &Json) -> Result<Json, PageError> {
    Ok(match account["credit_account"].as_str() {
        Some(c) => s
            .find(&format!("/v1/messaging/accounts/{}/credit", seg(c)))
            .await?
            .unwrap_or(Json::Null),
        None => Json::Null,
    })
}

pub async fn page(s: Session, Query(q): Query<GatewayQuery>) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let accounts = s.get("/v1/gateway/accounts").await?;
    let page_no = q.page.unwrap_or(1);
    let (shown, more) = slice(&accounts["accounts"], page_no, 25);
    let mut rows = Vec::new();
    for mut a in shown {
        a["credit"] = credit(&s, &a).await?;
        let token = a["token"].as_str().map(masked);
        a["token"] = token.into();
        rows.push(a);
    }
    let keywords = s.get("/v1/gateway/keywords").await?;
    let kpage = q.kpage.unwrap_or(1);
    let (keywords, more_keywords) = slice(&keywords["keywords"], kpage, 50);
    let incoming = s.get("/v1/gateway/incoming?limit=25").await?;
    render::page(
        &s,
        "gateway.html",
        "gateway",
        context! {
            accounts => crate::render::json(&rows),
            page => page_no,
            more,
            keywords => crate::render::json(&keywords),
            kpage,
            more_keywords,
            incoming => crate::render::json(&incoming["incoming"]),
        },
    )
}

pub async fn account(s: Session, Path(username): Path<String>) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let p = format!("/v1/gateway/accounts/{}", seg(&username));
    let mut a = s.get(&p).await?;
    let token = a["token"].as_str().map(masked);
    a["token"] = token.into();
    let contacts = s.get(&format!("{p}/contacts")).await?;
    let groups = s.get(&format!("{p}/groups")).await?;
    let credit = credit(&s, &a).await?;
    render::page(
        &s,
        "gateway.html",
        "gateway",
        context! {
            account => crate::render::json(&a),
            credit => crate::render::json(&credit),
            contacts => crate::render::json(&contacts["contacts"]),
            groups => crate::render::json(&groups["groups"]),
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_masked() {
        assert_eq!(
            super::masked("2bbf3f544d7c5cdaf40b24906c9afb89"),
            "2bbf…fb89"
        );
        assert_eq!(super::masked("short"), "•••••");
    }
}
