//! Goods groups: the list with stock at a glance, a form to create or edit
//! one, and a codes file upload (with progress, through `console.js`; a
//! pasted list without it).

use std::collections::BTreeMap;

use axum::Form;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::{seg, slice};
use crate::api::Payload;
use crate::render::{PageError, page_with};
use crate::session::{Kind, Session};

#[derive(Deserialize)]
pub struct ListQuery {
    page: Option<usize>,
}

pub async fn list(s: Session, Query(q): Query<ListQuery>) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    show_list(
        &s,
        q.page.unwrap_or(1),
        BTreeMap::new(),
        None,
        StatusCode::OK,
    )
    .await
}

async fn show_list(
    s: &Session,
    page_no: usize,
    form: BTreeMap<String, String>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let goods = s.get("/v1/goods").await?;
    let (shown, more) = slice(&goods["goods"], page_no, 25);
    page_with(
        s,
        "goods.html",
        "goods",
        context! {
            goods => crate::render::json(&shown),
            page => page_no,
            more,
            form => crate::render::json(&form),
            error,
        },
        status,
    )
}

/// The group's fields from the form, or what is wrong with them (in the
/// words of the field's label).
fn spec(form: &BTreeMap<String, String>) -> Result<Json, String> {
    let mut out = Map::new();
    let text = |k: &str| form.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    for k in ["name", "description", "currency"] {
        if let Some(v) = text(k) {
            out.insert(k.into(), v.into());
        }
    }
    for (k, label) in [
        ("price", "Price"),
        ("per_player_limit", "Limit per player"),
        ("low_stock_threshold", "Low-stock threshold"),
    ] {
        if let Some(v) = text(k) {
            let n: u64 = v
                .parse()
                .map_err(|_| format!("{label} must be a whole number of 0 or more"))?;
            out.insert(k.into(), n.into());
        }
    }
    Ok(Json::Object(out))
}

/// `PUT /v1/goods/{id}`.
async fn put(s: &Session, id: &str, body: Json) -> Result<crate::api::Answer, PageError> {
    let path = format!("/v1/goods/{}", seg(id));
    s.call(Method::PUT, &path, Payload::Json(body)).await
}

pub async fn create(
    s: Session,
    Form(form): Form<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let id = form
        .get("id")
        .map(|v| v.trim().to_owned())
        .unwrap_or_default();
    if id.is_empty() {
        return show_list(
            &s,
            1,
            form,
            Some("Give the group an id.".into()),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    if s.call(
        Method::GET,
        &format!("/v1/goods/{}", seg(&id)),
        Payload::None,
    )
    .await?
    .ok()
    {
        let why = format!("A group with the id `{id}` exists already; open it to edit it.");
        return show_list(&s, 1, form, Some(why), StatusCode::CONFLICT).await;
    }
    let body = match spec(&form) {
        Ok(b) => b,
        Err(why) => return show_list(&s, 1, form, Some(why), StatusCode::BAD_REQUEST).await,
    };
    let a = put(&s, &id, body).await?;
    if !a.ok() {
        return show_list(&s, 1, form, Some(a.message()), a.status).await;
    }
    Ok(Redirect::to(&format!("/console/goods/{}?done=created", seg(&id))).into_response())
}

#[derive(Deserialize)]
pub struct GroupQuery {
    done: Option<String>,
}

pub async fn group(
    s: Session,
    Path(id): Path<String>,
    Query(q): Query<GroupQuery>,
) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    show_group(&s, &id, None, None, q.done, StatusCode::OK).await
}

async fn show_group(
    s: &Session,
    id: &str,
    form: Option<BTreeMap<String, String>>,
    error: Option<String>,
    done: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let g = s.get(&format!("/v1/goods/{}", seg(id))).await?;
    let form = match form {
        Some(f) => crate::render::json(&f),
        None => crate::render::json(&g),
    };
    page_with(
        s,
        "goods_group.html",
        "goods",
        context! { group => crate::render::json(&g), form, error, done },
        status,
    )
}

pub async fn edit(
    s: Session,
    Path(id): Path<String>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let body = match spec(&form) {
        Ok(b) => b,
        Err(why) => {
            return show_group(
                &s,
                &id,
                Some(form),
                Some(why),
                None,
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    let a = put(&s, &id, body).await?;
    if !a.ok() {
        return show_group(&s, &id, Some(form), Some(a.message()), None, a.status).await;
    }
    Ok(Redirect::to(&format!("/console/goods/{}?done=saved", seg(&id))).into_response())
}

/// A codes file (the body, sent by `console.js` with the file's type) or a
/// pasted list (the `codes` field of a plain form): added to the group's
/// stock by the API, its counts and rejected lines shown.
pub async fn upload_codes(
    s: Session,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain")
        .to_ascii_lowercase();
    let fragment = headers.contains_key("x-csrf-token");
    let payload = if kind.starts_with("application/x-www-form-urlencoded") {
        // The CSRF check read this body already; it is at most 1 MiB.
        let bytes = axum::body::to_bytes(body, 1 << 20)
            .await
            .map_err(|e| PageError::BadForm(e.to_string()))?;
        let form: BTreeMap<String, String> =
            serde_urlencoded::from_bytes(&bytes).map_err(|e| PageError::BadForm(e.to_string()))?;
        let codes = form.get("codes").cloned().unwrap_or_default();
        Payload::Bytes(Bytes::from(codes), "text/plain".to_owned())
    } else if kind.starts_with("text/csv") || kind.contains("comma-separated") {
        Payload::Stream(body, "text/csv".to_owned())
    } else {
        Payload::Stream(body, "text/plain".to_owned())
    };
    let a = s
        .call(
            Method::POST,
            &format!("/v1/goods/{}/codes", seg(&id)),
            payload,
        )
        .await?;
    let ctx = context! {
        ok => a.ok(),
        result => crate::render::json(&a.body),
        error => (!a.ok()).then(|| a.message()),
        group => id.clone(),
    };
    if fragment {
        // The script shows this inside the page it was sent from.
        let html = s.console.render("codes_result.html", ctx)?;
        return Ok((a.status, html).into_response());
    }
    let g = s.get(&format!("/v1/goods/{}", seg(&id))).await?;
    page_with(
        &s,
        "goods_group.html",
        "goods",
        context! {
            group => crate::render::json(&g),
            form => crate::render::json(&g),
            upload => ctx,
        },
        a.status,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_becomes_the_apis_fields() {
        let f = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let ok = spec(&f(&[
            ("name", " Coupon "),
            ("price", "100"),
            ("low_stock_threshold", ""),
            ("currency", ""),
        ]))
        .unwrap();
        assert_eq!(ok, serde_json::json!({ "name": "Coupon", "price": 100 }));
        assert!(spec(&f(&[("price", "-1")])).unwrap_err().contains("Price"));
        assert!(
            spec(&f(&[("per_player_limit", "1.5")]))
                .unwrap_err()
                .contains("Limit per player")
        );
    }
}
