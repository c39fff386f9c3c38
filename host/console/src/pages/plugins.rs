//! Plugins: upload a component (with progress, through `console.js`), its
//! versions with their statistics and recent invocations, and the
//! bindings: bind a version with a config, roll back to the version before,
//! unbind (back to the first-party plugin).

use axum::Form;
use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::seg;
use crate::api::Payload;
use crate::render::{PageError, page};
use crate::session::{Kind, Session};

/// The point a world's plugins bind to.
pub fn point_of(world: &str) -> &'static str {
    match world {
        "gift-hooks" => "gift",
        "templating" => "template",
        "routing" => "route",
        _ => "rules",
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    done: Option<String>,
    error: Option<String>,
}

pub async fn list(s: Session, Query(q): Query<ListQuery>) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let plugins = s.get("/v1/plugins").await?;
    let bindings = s.get("/v1/bindings").await?;
    let stats = super::overview::binding_stats(&bindings, &plugins);
    page(
        &s,
        "plugins.html",
        "plugins",
        context! {
            plugins => crate::render::json(&plugins["plugins"]),
            bindings => crate::render::json(&bindings["bindings"]),
            stats => crate::render::json(&stats),
            done => q.done,
            error => q.error,
        },
    )
}

#[derive(Deserialize)]
pub struct UploadQuery {
    name: String,
}

/// A component, sent whole as the body by `console.js`: stored as the
/// plugin's next version by `PUT /v1/plugins/{name}`.
pub async fn upload(
    s: Session,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let a = s
        .call(
            Method::PUT,
            &format!("/v1/plugins/{}", seg(q.name.trim())),
            Payload::Stream(body, "application/wasm".into()),
        )
        .await?;
    let html = s.console.render(
        "plugin_uploaded.html",
        context! {
            ok => a.ok(),
            result => crate::render::json(&a.body),
            error => (!a.ok()).then(|| a.message()),
            name => q.name.trim(),
            point => point_of(a.body["world"].as_str().unwrap_or("")),
            me => s.view(),
        },
    )?;
    Ok((a.status, html).into_response())
}

pub async fn plugin(s: Session, Path(name): Path<String>) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let p = s.get(&format!("/v1/plugins/{}", seg(&name))).await?;
    let invocations = s
        .call(
            Method::GET,
            &format!("/v1/plugins/{}/invocations", seg(&name)),
            Payload::None,
        )
        .await?;
    let point = point_of(p["world"].as_str().unwrap_or(""));
    let binding = s.get(&format!("/v1/bindings/{point}")).await?;
    page(
        &s,
        "plugin.html",
        "plugins",
        context! {
            plugin => crate::render::json(&p),
            point,
            binding => crate::render::json(&binding),
            invocations => crate::render::json(&invocations.body["invocations"]),
        },
    )
}

#[derive(Deserialize)]
pub struct BindForm {
    plugin: String,
    version: Option<String>,
    #[serde(default)]
    config: String,
}

/// The binding's settings other than plugin, version and config, as a bind
/// request takes them back (so re-binding keeps them).
pub(super) fn kept_settings(binding: &Json) -> Json {
    let mut body = json!({
        "on_error": binding["on_error"],
        "isolation": binding["isolation"],
    });
    if let Some(l) = binding["limits"].as_object() {
        body["limits"] = json!({
            "timeout_ms": l.get("timeout_ms"),
            "fuel": l.get("fuel"),
            "memory_mib": l.get("memory_bytes").and_then(Json::as_u64).map(|b| b >> 20),
        });
    }
    if let Some(w) = binding
        .get("wasi")
        .filter(|w| w.as_array().is_some_and(|a| !a.is_empty()))
    {
        body["wasi"] = w.clone();
    }
    body
}

/// `PUT /v1/bindings/{point}`.
async fn put_binding(
    s: &Session,
    point: &str,
    body: Json,
) -> Result<crate::api::Answer, PageError> {
    let path = format!("/v1/bindings/{}", seg(point));
    s.call(Method::PUT, &path, Payload::Json(body)).await
}

fn back(done: Option<&str>, error: Option<&str>) -> Response {
    let q = super::query(&[("done", done), ("error", error)]);
    axum::response::Redirect::to(&format!("/console/plugins{q}")).into_response()
}

pub async fn bind(
    s: Session,
    Path(point): Path<String>,
    Form(f): Form<BindForm>,
) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let config: Json = match f.config.trim() {
        "" => json!({}),
        c => match serde_json::from_str(c) {
            Ok(v) => v,
            Err(e) => return Ok(back(None, Some(&format!("The config is not JSON: {e}")))),
        },
    };
    let version = match f
        .version
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        None => Json::Null,
        Some(v) => match v.parse::<u32>() {
            Ok(n) => n.into(),
            Err(_) => return Ok(back(None, Some("The version is a whole number."))),
        },
    };
    let body = json!({ "plugin": f.plugin.trim(), "version": version, "config": config });
    let a = put_binding(&s, &point, body).await?;
    Ok(if a.ok() {
        back(
            Some(&format!(
                "`{point}` runs {} v{}",
                text(&a.body["plugin"]),
                text(&a.body["version"])
            )),
            None,
        )
    } else {
        back(None, Some(&a.message()))
    })
}

fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Bind the version before the bound one, with the same config and
/// settings.
pub async fn roll_back(s: Session, Path(point): Path<String>) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let binding = s.get(&format!("/v1/bindings/{}", seg(&point))).await?;
    let plugin = text(&binding["plugin"]);
    let current = binding["version"].as_u64().unwrap_or(0);
    let p = s.get(&format!("/v1/plugins/{}", seg(&plugin))).await?;
    let previous = p["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["version"].as_u64())
        .filter(|v| *v < current)
        .max();
    let Some(previous) = previous else {
        return Ok(back(
            None,
            Some(&format!(
                "{plugin} has no version before v{current} to roll back to."
            )),
        ));
    };
    let mut body = kept_settings(&binding);
    body["plugin"] = plugin.clone().into();
    body["version"] = previous.into();
    body["config"] = binding["config"].clone();
    let a = put_binding(&s, &point, body).await?;
    Ok(if a.ok() {
        back(
            Some(&format!("`{point}` rolled back to {plugin} v{previous}")),
            None,
        )
    } else {
        back(None, Some(&a.message()))
    })
}

pub async fn unbind(s: Session, Path(point): Path<String>) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let a = s
        .call(
            Method::DELETE,
            &format!("/v1/bindings/{}", seg(&point)),
            Payload::None,
        )
        .await?;
    Ok(if a.ok() {
        back(
            Some(&format!(
                "`{point}` runs the first-party {} again",
                text(&a.body["plugin"])
            )),
            None,
        )
    } else {
        back(None, Some(&a.message()))
    })
}
