//! Players: search, a profile with everything the API knows of one, and a
//! ledger reversal behind a confirmation page.

use axum::Form;
use axum::extract::{Path, Query};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{query, seg};
use crate::api::Payload;
use crate::render::{PageError, page};
use crate::session::{Kind, Session};

#[derive(Deserialize)]
pub struct Search {
    q: Option<String>,
    after: Option<String>,
}

pub async fn list(s: Session, Query(q): Query<Search>) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let text = q.q.as_deref().map(str::trim).unwrap_or("");
    let found = s
        .get(&format!(
            "/v1/players{}",
            query(&[
                ("q", Some(text)),
                ("after", q.after.as_deref()),
                ("limit", Some("25"))
            ])
        ))
        .await?;
    let next = found["next"].as_str().map(|n| {
        format!(
            "/console/players{}",
            query(&[("q", Some(text)), ("after", Some(n))])
        )
    });
    page(
        &s,
        "players.html",
        "players",
        context! { q => text, players => crate::render::json(&found["players"]), next },
    )
}

#[derive(Deserialize)]
pub struct ProfileQuery {
    /// The ledger page: entries before this id.
    before: Option<String>,
    done: Option<String>,
}

/// What one section of the profile shows: the answer, or why not.
async fn section(s: &Session, path: &str) -> Result<Json, PageError> {
    let a = s.call(Method::GET, path, Payload::None).await?;
    Ok(if a.ok() {
        a.body
    } else {
        json!({ "unavailable": a.message() })
    })
}

pub async fn profile(
    s: Session,
    Path(id): Path<String>,
    Query(q): Query<ProfileQuery>,
) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let p = format!("/v1/players/{}", seg(&id));
    let player = s.get(&p).await?;
    let ledger = section(
        &s,
        &format!(
            "{p}/ledger{}",
            query(&[("before", q.before.as_deref()), ("limit", Some("20"))])
        ),
    )
    .await?;
    // Entries this page shows reversed (their reversal is on it too).
    let reversed: Vec<Json> = ledger["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("reverses").filter(|r| !r.is_null()).cloned())
        .collect();
    let older = ledger["next"].as_str().map(|n| {
        format!(
            "/console/players/{}{}",
            seg(&id),
            query(&[("before", Some(n))])
        )
    });
    let mut subscriptions = Json::Null;
    for (field, key) in [("phone", "phone"), ("email", "email")] {
        if let Some(v) = player[field].as_str() {
            let found = section(
                &s,
                &format!("/v1/audiences/subscriptions{}", query(&[(key, Some(v))])),
            )
            .await?;
            if subscriptions.is_null() {
                subscriptions = json!({});
            }
            subscriptions[field] = found;
        }
    }
    let ctx = context! {
        player => crate::render::json(&player),
        ledger => crate::render::json(&ledger),
        reversed => crate::render::json(&reversed),
        older,
        redemptions => crate::render::json(section(&s, &format!("{p}/redemptions?limit=20")).await?),
        identities => crate::render::json(section(&s, &format!("{p}/identities")).await?),
        friends => crate::render::json(section(&s, &format!("{p}/friends")).await?),
        received => crate::render::json(section(&s, &format!("{p}/gifts/received")).await?),
        notifications => crate::render::json(section(&s, &format!("{p}/notifications")).await?),
        subscriptions => crate::render::json(&subscriptions),
        done => q.done,
    };
    page(&s, "player.html", "players", ctx)
}

/// Ledger entry `entry`, when it is player `id`'s (a URL naming another
/// player's entry finds nothing).
async fn entry_of(s: &Session, id: &str, entry: &str) -> Result<Json, PageError> {
    let e = s.get(&format!("/v1/ledger/entries/{}", seg(entry))).await?;
    if e["player"].as_str() != Some(id) {
        return Err(PageError::NotFound);
    }
    Ok(e)
}

pub async fn confirm_reverse(
    s: Session,
    Path((id, entry)): Path<(String, String)>,
) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let e = entry_of(&s, &id, &entry).await?;
    page(
        &s,
        "reverse.html",
        "players",
        context! { player => id, entry => crate::render::json(&e), error => None::<String> },
    )
}

#[derive(Deserialize)]
pub struct ReverseForm {
    #[serde(default)]
    reason: String,
}

pub async fn reverse(
    s: Session,
    Path((id, entry)): Path<(String, String)>,
    Form(f): Form<ReverseForm>,
) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let e = entry_of(&s, &id, &entry).await?;
    let reason = f.reason.trim();
    let body = if reason.is_empty() {
        json!({})
    } else {
        json!({ "reason": reason })
    };
    let a = s
        .call(
            Method::POST,
            &format!("/v1/ledger/entries/{}/reverse", seg(&entry)),
            Payload::Json(body),
        )
        .await?;
    if !a.ok() {
        return crate::render::page_with(
            &s,
            "reverse.html",
            "players",
            context! { player => id, entry => crate::render::json(&e), error => a.message() },
            a.status,
        );
    }
    Ok(Redirect::to(&format!("/console/players/{}?done=reversed", seg(&id))).into_response())
}
