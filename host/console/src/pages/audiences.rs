//! Audiences and campaigns: sign-up sources, a subscription lookup,
//! segments; campaigns with their trigger, a template preview through the
//! tenant's template binding, their funnel as a chart; pause and resume.

use axum::Form;
use axum::extract::{Path, Query};
use axum::http::Method;
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{query, seg, slice};
use crate::api::Payload;
use crate::chart;
use crate::render::{self, PageError};
use crate::session::{Kind, Session};

#[derive(Deserialize)]
pub struct AudienceQuery {
    lookup: Option<String>,
    page: Option<usize>,
}

pub async fn page(s: Session, Query(q): Query<AudienceQuery>) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let sources = s.get("/v1/audiences/sources").await?;
    let segments = s.get("/v1/audiences/segments").await?;
    let page_no = q.page.unwrap_or(1);
    let (shown, more) = slice(&segments["segments"], page_no, 25);
    let lookup = q.lookup.as_deref().map(str::trim).filter(|l| !l.is_empty());
    let found = match lookup {
        Some(l) => {
            let key = if l.contains('@') { "email" } else { "phone" };
            let a = s
                .call(
                    Method::GET,
                    &format!("/v1/audiences/subscriptions{}", query(&[(key, Some(l))])),
                    Payload::None,
                )
                .await?;
            Some(if a.ok() {
                a.body
            } else {
                json!({ "unavailable": a.message() })
            })
        }
        None => None,
    };
    render::page(
        &s,
        "audiences.html",
        "audiences",
        context! {
            sources => crate::render::json(&sources["sources"]),
            segments => crate::render::json(&shown),
            page => page_no,
            more,
            lookup,
            found => crate::render::json(&found),
        },
    )
}

#[derive(Deserialize)]
pub struct CampaignsQuery {
    page: Option<usize>,
}

pub async fn campaigns(s: Session, Query(q): Query<CampaignsQuery>) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let list = s.get("/v1/campaigns").await?;
    let page_no = q.page.unwrap_or(1);
    let (shown, more) = slice(&list["campaigns"], page_no, 25);
    render::page(
        &s,
        "campaigns.html",
        "campaigns",
        context! { campaigns => crate::render::json(&shown), page => page_no, more },
    )
}

/// The funnel: each stage's count, skipped ones by reason.
fn funnel(stats: &Json) -> Vec<(String, u64)> {
    let n = |k: &str| stats[k].as_u64().unwrap_or(0);
    let mut out = vec![("targeted".to_owned(), n("targeted"))];
    if let Some(skipped) = stats["skipped"].as_object() {
        for (why, count) in skipped {
            out.push((
                format!("skipped: {}", why.replace('_', " ")),
                count.as_u64().unwrap_or(0),
            ));
        }
    }
    for k in [
        "deferred_quiet_hours",
        "sent",
        "delivered",
        "failed",
        "pending",
    ] {
        out.push((k.replace("_quiet_hours", " (quiet hours)"), n(k)));
    }
    out
}

#[derive(Deserialize)]
pub struct CampaignQuery {
    done: Option<String>,
    error: Option<String>,
}

pub async fn campaign(
    s: Session,
    Path(id): Path<String>,
    Query(q): Query<CampaignQuery>,
) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let c = s.get(&format!("/v1/campaigns/{}", seg(&id))).await?;
    let stages = funnel(&c["stats"]);
    let chart = chart::rows("Members at each stage", &stages, 720.0);
    // The preview: the tenant's template binding renders the template for
    // a sample player (nothing is sent or written).
    let sample = [
        ("first_name", "Ann"),
        ("last_name", "Example"),
        ("id", "player-1"),
    ];
    let vars: Vec<Json> = sample
        .iter()
        .map(|(k, v)| json!({ "name": k, "value": v }))
        .collect();
    let preview = s
        .call(
            Method::POST,
            "/v1/bindings/template/invoke?dry_run=true",
            Payload::Json(json!({ "call": "render", "template": c["template"], "vars": vars })),
        )
        .await?;
    let preview = if preview.ok() {
        json!({ "text": preview.body["output"]["text"] })
    } else {
        json!({ "unavailable": preview.message() })
    };
    render::page(
        &s,
        "campaign.html",
        "campaigns",
        context! {
            c => crate::render::json(&c),
            chart => crate::render::json(&chart),
            preview => crate::render::json(&preview),
            sample => crate::render::json(sample.iter().map(|(k, v)| json!({ "name": k, "value": v })).collect::<Vec<_>>()),
            done => q.done,
            error => q.error,
        },
    )
}

#[derive(Deserialize)]
pub struct StatusForm {
    status: String,
}

/// Pause or resume: the campaign is put back whole with the new status.
pub async fn set_status(
    s: Session,
    Path(id): Path<String>,
    Form(f): Form<StatusForm>,
) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let path = format!("/v1/campaigns/{}", seg(&id));
    let c = s.get(&path).await?;
    let mut spec = json!({});
    for k in ["name", "template", "channel", "kind", "segment", "trigger"] {
        spec[k] = c[k].clone();
    }
    spec["status"] = f.status.trim().into();
    let a = s.call(Method::PUT, &path, Payload::Json(spec)).await?;
    let q = if a.ok() {
        query(&[(
            "done",
            Some(&format!("The campaign is {}.", f.status.trim())),
        )])
    } else {
        query(&[("error", Some(&a.message()))])
    };
    Err(PageError::Redirect(format!(
        "/console/campaigns/{}{q}",
        seg(&id)
    )))
}

/// Send now to the whole audience (`POST /v1/campaigns/{id}/run`).
pub async fn run(s: Session, Path(id): Path<String>) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let path = format!("/v1/campaigns/{}/run", seg(&id));
    let a = s.call(Method::POST, &path, Payload::None).await?;
    let q = if a.ok() {
        query(&[(
            "done",
            Some("Sending to the audience; the funnel fills as messages go out."),
        )])
    } else {
        query(&[("error", Some(&a.message()))])
    };
    Err(PageError::Redirect(format!(
        "/console/campaigns/{}{q}",
        seg(&id)
    )))
}
