//! The overview: recent activity as charts, messages by status, plugin
//! calls and errors by binding, low-stock goods.

use axum::extract::Query;
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::chart;
use crate::render::{self, PageError};
use crate::session::{Kind, Session};

#[derive(Deserialize)]
pub struct Window {
    window: Option<String>,
}

pub async fn page(s: Session, Query(w): Query<Window>) -> Result<Response, PageError> {
    s.require(Kind::Tenant)?;
    let window = match w.window.as_deref() {
        Some("hour") => "hour",
        _ => "day",
    };
    let activity = s.get(&format!("/v1/activity?window={window}")).await?;
    let buckets = activity["buckets"].as_array().cloned().unwrap_or_default();
    let label = |b: &Json| crate::render::time_of_day(b["start_ms"].as_i64().unwrap_or(0));
    let series = |field: &str| -> Vec<(String, u64)> {
        buckets
            .iter()
            .map(|b| (label(b), b[field].as_u64().unwrap_or(0)))
            .collect()
    };
    let charts = vec![
        chart::bars("Actions", &series("actions"), 360.0),
        chart::bars("Redemptions", &series("redemptions"), 360.0),
        chart::bars("Messages", &series("messages"), 360.0),
    ];
    let plugins = s.get("/v1/plugins").await?;
    let bindings = s.get("/v1/bindings").await?;
    let goods = s.get("/v1/goods").await?;
    let low_stock: Vec<Json> = goods["goods"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter(|g| g["low_stock"] == true)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    render::page(
        &s,
        "overview.html",
        "overview",
        context! {
            window,
            charts => crate::render::json(&charts),
            capped => activity["capped"].as_bool().unwrap_or(false),
            by_status => crate::render::json(&activity["messages_by_status"]),
            bindings => crate::render::json(binding_stats(&bindings, &plugins)),
            low_stock => crate::render::json(&low_stock),
        },
    )
}

/// Each binding with the statistics of the version it runs.
pub fn binding_stats(bindings: &Json, plugins: &Json) -> Vec<Json> {
    let empty = vec![];
    let plugins = plugins["plugins"].as_array().unwrap_or(&empty);
    bindings["bindings"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|b| {
            let plugin = plugins.iter().find(|p| p["name"] == b["plugin"]);
            let stats = plugin
                .into_iter()
                .flat_map(|p| p["versions"].as_array().cloned().unwrap_or_default())
                .find(|v| v["version"] == b["version"])
                .map(|v| v["stats"].clone())
                .unwrap_or(Json::Null);
            let errors: u64 = stats["errors"]
                .as_object()
                .map(|e| e.values().filter_map(Json::as_u64).sum())
                .unwrap_or(0);
            serde_json::json!({
                "point": b["point"],
                "plugin": b["plugin"],
                "version": b["version"],
                "builtin": plugin.is_some_and(|p| p["builtin"] == true),
                "calls": stats["calls"],
                "errors": errors,
                "errors_by_kind": stats["errors"],
                "p50_us": stats["p50_us"],
                "p99_us": stats["p99_us"],
            })
        })
        .collect()
}
